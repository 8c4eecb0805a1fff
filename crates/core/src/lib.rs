//! Herald's pure domain. Nothing here does I/O: the adapters (`herald-store`,
//! `herald-queue`) and the binaries call into these types and functions.
//!
//! | module | owns |
//! |---|---|
//! | [`access`] | API keys, their scopes and the scope each request needs |
//! | [`ids`] | identifier rules shared by people, topics and events |
//! | [`fields`] | refusing unknown fields, with the closest known name |
//! | [`limits`] | size and depth bounds of the free-form JSON clients store |
//! | [`event`] | parsing and validating ingested events (contract §3.1) |
//! | [`bundle`] | bundling chatty notifications: state machine, ranker, offline optimum (contract §8) |
//! | [`alert`] | shop alerts and how they become events (contract §3.2) |
//! | [`severity`] | notification severity and a person's preference level |
//! | [`status`] | a notification's status (`pending` … `suppressed`) |
//! | [`queues`] | which queue work travels on: [`queues::queue_for`] |
//! | [`partitions`] | which partition work belongs to (a hash of the person or topic) |
//! | [`preferences`] | whether a recipient gets a notification or a suppressed row; checking a level and channel switches |
//! | [`person`] | the rules a person's fields follow (time zone, webhook address, topics) |
//! | [`receipt`] | parsing provider receipts (contract §3.3) |
//! | [`routing`] | the plan of one rule's notifications: status, reason, severity, queue, due time, text; debounce |
//! | [`schedule`] | when a notification may go: quiet hours, send windows, `deliver_at` |
//! | [`rules`] | notification rules from `rules.yml` and which ones an event triggers |
//! | [`conditions`] | rule conditions: predicates, proximity, absence |
//! | [`debounce`] | at most N per period, in the person's calendar |
//! | [`circuit`] | when a failing destination host stops getting tries |
//! | [`delivery`] | delivering one notification: the next step, and what a try records |
//! | [`channels`] | delivery channels from `channels.yml` |
//! | [`config`] | loading and validating the whole `config/` directory |
//! | [`template`] | rendering notification text with minijinja |
//! | [`payload`] | the JSON body every delivery POSTs |
//! | [`retry`] | retry schedule and the classification of an HTTP attempt |
//! | [`signing`] | Standard Webhooks signatures |
//! | [`targets`] | which webhook addresses a person may point Herald at |
//! | [`envsubst`], [`duration`] | small parsers the config relies on |

pub mod access;
pub mod alert;
pub mod bundle;
pub mod channels;
pub mod circuit;
pub mod conditions;
pub mod config;
pub mod debounce;
pub mod delivery;
pub mod duration;
pub mod envsubst;
pub mod event;
pub mod fields;
pub mod ids;
pub mod limits;
pub mod partitions;
pub mod payload;
pub mod person;
pub mod preferences;
pub mod provider_request;
pub mod queues;
pub mod receipt;
pub mod retry;
pub mod routing;
pub mod rules;
pub mod schedule;
pub mod severity;
pub mod signing;
pub mod status;
pub mod targets;
pub mod template;
