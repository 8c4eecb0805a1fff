//! A throw-away database per test, so tests run in parallel against the real Postgres
//! and leave nothing behind. The server comes from `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each [`TestDb`] creates a uniquely
//! named database, migrates it, and drops it (with `FORCE`, closing stray connections)
//! when dropped. Names start `herald_test_<HERALD_TEST_RUN>_` when that is set.

use crate::notifications::NewNotification;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use herald_core::event::NewEvent;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    /// Connection URL of the test's own database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    pub async fn create() -> anyhow::Result<TestDb> {
        TestDb::create_on(&admin_url()).await
    }

    /// Creates and migrates a fresh database on the server of `admin_url` (the private
    /// primary of the replica tests, say).
    pub async fn create_on(admin_url: &str) -> anyhow::Result<TestDb> {
        let db = TestDb::create_empty_on(admin_url).await?;
        crate::migrate::run(&db.url).await?;
        Ok(db)
    }

    /// Creates a fresh database with only the migrations older than `version` (e.g.
    /// `2026-12-02-000400`) applied: the schema an upgrade starts from.
    /// [`crate::migrate::run`] then applies the rest.
    pub async fn create_migrated_before(version: &str) -> anyhow::Result<TestDb> {
        use diesel::migration::MigrationSource;
        use diesel::Connection;
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        use diesel_migrations::MigrationHarness;
        let db = TestDb::create_empty_on(&admin_url()).await?;
        let digits = |v: &str| -> String { v.chars().filter(char::is_ascii_digit).collect() };
        let before = digits(version);
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)?;
            let mut migrations =
                MigrationSource::<diesel::pg::Pg>::migrations(&crate::migrate::MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Creates diesel's bookkeeping table, as a full run would.
            conn.applied_migrations()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            migrations.sort_by_key(|m| digits(&m.name().version().to_string()));
            for m in migrations {
                if digits(&m.name().version().to_string()) < before {
                    conn.run_migration(&m)
                        .map_err(|e| anyhow::anyhow!("migration {} failed: {e}", m.name()))?;
                }
            }
            Ok(())
        })
        .await??;
        Ok(db)
    }

    /// Creates an empty database (no migrations) on the server of `admin_url`.
    async fn create_empty_on(admin_url: &str) -> anyhow::Result<TestDb> {
        let admin_url = admin_url.to_string();
        let name = database_name();
        let mut admin = AsyncPgConnection::establish(&admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = with_database(&admin_url, &name);
        Ok(TestDb {
            url,
            name,
            admin_url,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of this database on another server reached by `server_url` (its
    /// replica, say): `server_url` with this database's name.
    pub fn url_on(&self, server_url: &str) -> String {
        with_database(server_url, &self.name)
    }
}

/// The test server's admin URL: `HERALD_TEST_DATABASE_URL`, else the local server.
fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

/// A fresh database name: `herald_test_[<HERALD_TEST_RUN>_]<uuid>`. `make test` sets
/// HERALD_TEST_RUN per run, so its end can check that its tests dropped their
/// databases (`scripts/test-leftovers.sh`). Only lowercase letters and digits of it
/// are used (the name is an unquoted identifier).
fn database_name() -> String {
    let id = uuid::Uuid::new_v4().simple();
    let run: String = std::env::var("HERALD_TEST_RUN")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(16)
        .collect();
    if run.is_empty() {
        format!("herald_test_{id}")
    } else {
        format!("herald_test_{run}_{id}")
    }
}

/// Replaces the database name at the end of a connection URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if base[..i].contains("//") && i > base.find("//").unwrap_or(0) + 1 => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside or outside a runtime; a thread with its own small
        // runtime works in both cases.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = AsyncPgConnection::establish(&admin_url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// An event of `event_type` at `when`, about nobody and with no properties: the
/// minimal parent row that notification tests need.
pub fn new_event(event_type: &str, when: chrono::DateTime<chrono::Utc>) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        user_id: None,
        topic: None,
        event_timestamp: when,
        properties: serde_json::json!({}),
        user_traits: serde_json::json!({}),
        idempotency_key: None,
        deliver_at: None,
    }
}

/// Stores [`new_event`] and returns its id.
pub async fn insert_event(
    pool: &crate::Pool,
    event_type: &str,
    when: chrono::DateTime<chrono::Utc>,
) -> uuid::Uuid {
    let mut conn = pool.get().await.expect("a test connection");
    crate::events::insert_batch(&mut conn, &[new_event(event_type, when)])
        .await
        .expect("the test event")[0]
        .id
}

/// A pending push notification of `event_id` for `user_id` (None: nobody), due now.
pub fn pending_notification(
    event_id: uuid::Uuid,
    user_id: Option<&str>,
    notification_type: &str,
) -> NewNotification {
    NewNotification {
        id: uuid::Uuid::now_v7(),
        event_id,
        user_id: user_id.map(str::to_string),
        notification_type: notification_type.into(),
        channel: "push".into(),
        status: "pending",
        suppression_reason: None,
        severity: "standard",
        private: false,
        subject: None,
        text: "hello".into(),
        due_at: chrono::Utc::now(),
        sent_at: None,
        bundle_id: None,
        hold_reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t2"),
            "postgres://u@h/t2?sslmode=disable"
        );
    }
}
