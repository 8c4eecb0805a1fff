//! Bundling (contract §8, seed 000): hold chatty notifications ("Matthew went on a tour")
//! in a pending bundle per person and send each bundle as one notification, at most
//! `max_per_day` per person per calendar day (UTC), as early as the ranker dares.
//!
//! Everything here is pure: the clock is always an argument (`now`, Unix seconds),
//! so the online worker (real clock, Redis sorted set of ready instants) and the
//! offline replay (`herald-worker bundle FILE`, simulated clock, a binary heap) drive
//! the *same* state machine and the *same* ranker.
//!
//! Only what the online worker runs lives here. The offline tools (the komoot CSV
//! format, the replay, the exact optimum, the statistics and the fitter) live in the
//! `herald-bundle-lab` crate, which depends on this module and not the other way round.
//!
//! # API
//!
//! | item | what |
//! |---|---|
//! | [`BundleState`] | one person's bundling state: the pending bundle, sends and tours today |
//! | [`BundleState::on_tour`] | a tour arrived: add it, return the new [`Schedule`] (ready instant) |
//! | [`BundleState::ready_at`] | when the pending bundle becomes ready if nothing else arrives |
//! | [`BundleState::set_friends`] | what is known of the person's friends today ([`FriendSignal`], from [`Ranker::friend_signal`]) |
//! | [`BundleState::take`] | send now: empties the pending bundle, counts the send, refuses past the cap |
//! | [`Ranker`] | pluggable readiness score in [0,1] + threshold; [`ranker::LogisticRanker`] is the shipped one |
//! | [`BundlingConfig`] | `config/bundling.yml`: `max_per_day`, threshold, weights, prior, hour profile |
//! | [`message`] | the offline replay's message column (`Matthew and 2 others went on a tour`); online the rule's digest template speaks ([`digest`]) |
//! | [`digest`] | a rule's digests: the bundle key, the actors and the template variables |
//!
//! Online use, per person (the caller holds a lock or a Lua script per person so two
//! workers never interleave):
//!
//! ```
//! use herald_core::bundle::{BundleState, BundlingConfig, ranker::LogisticRanker, Schedule};
//! let cfg = BundlingConfig::default();
//! let ranker = LogisticRanker::new(&cfg);
//! let mut st = BundleState::default();
//! let now = 1_501_545_600 + 12 * 3600; // 2017-08-01 12:00:00 UTC
//! match st.on_tour(now, now, "Matthew", &ranker) {
//!     Schedule::At(t) => { /* ZADD bundles:ready t person; when t comes: */
//!         let sent = st.take(t, cfg.max_per_day).expect("cap");
//!         assert_eq!(sent.message(), "Matthew went on a tour");
//!     }
//!     Schedule::Idle => unreachable!(),
//! }
//! ```
//!
//! A scheduled instant can go stale when another tour arrives first; the caller
//! re-reads `ready_at` (or compares with the newest `on_tour` result) before sending.

mod clock;
pub mod digest;
pub mod ranker;
mod state;

// The module's API in one place; the files below it import from each other directly
// (clock ← ranker ← state), never through here, so no file imports one that imports it.
pub use clock::{day_of, next_day_start, UnixSecs, DAY};
pub use ranker::{BundlingConfig, Features, FriendSignal, Ranker};
pub use state::{message, BundleState, Pending, Schedule, Sent, TakeError};
