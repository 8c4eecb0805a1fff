//! Embedded migrations, applied at the start of the api and the worker and by
//! `herald-api migrate`. Processes that start together take a Postgres advisory lock
//! first, so only one applies the migrations and the others then find nothing to do.

use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// An arbitrary constant naming Herald's migration lock ("herald" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6865_7261_6c64;

/// Applies pending migrations under the advisory lock; returns how many ran.
pub async fn run(database_url: &str) -> anyhow::Result<usize> {
    let url = database_url.to_string();
    // Diesel's migration harness is synchronous; the wrapper drives the async
    // connection from this blocking thread.
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
        applied
    })
    .await?
}
