//! Integration tests over HTTP against the real Postgres and Redis. Each test gets
//! its own database and Redis key prefix (see `helpers`), so they run in parallel.

mod alerts;
mod auth;
mod bundle_defects;
mod bundling;
mod channels;
mod critical_queue;
mod fixtures;
mod group_commit;
mod hand_off;
mod helpers;
mod inbox;
mod ingestion;
mod metrics;
mod openapi;
mod operations;
mod people;
mod pipeline;
mod rate_limit;
mod receipts;
mod replica;
mod rules;
mod scheduling;
mod ssrf;
mod stream;
mod strict_input;
mod subscriptions;
