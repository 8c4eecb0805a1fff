//! Integration tests over HTTP against the real Postgres and Redis. Each test gets
//! its own database and Redis key prefix (see `helpers`), so they run in parallel.

mod alerts;
mod helpers;
mod ingestion;
mod people;
mod pipeline;
