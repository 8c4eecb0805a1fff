//! What the worker's batch sessions set, read back from a real Postgres: a lazy batch
//! commits without waiting for the WAL flush, a durable one as every other session
//! does (the server's setting), and each plans as it was asked to.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use herald_store::pool::{connect_for_batches, get, Commits, Plans};
use herald_store::testing::TestDb;
use herald_store::Pool;

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    setting: String,
}

async fn setting(pool: &Pool, name: &str) -> anyhow::Result<String> {
    let mut conn = get(pool).await?;
    let row: Setting = diesel::sql_query("SELECT current_setting($1) AS setting")
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await?;
    Ok(row.setting)
}

#[tokio::test]
async fn durable_batches_commit_as_every_session_does_and_lazy_ones_do_not_wait(
) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let plain = herald_store::connect(&db.url, 1)?;
    let lazy = connect_for_batches(&db.url, 1, Commits::Lazy, Plans::EachRun)?;
    let durable = connect_for_batches(&db.url, 1, Commits::Durable, Plans::Once)?;

    let server = setting(&plain, "synchronous_commit").await?;
    assert_ne!(
        server, "off",
        "the test server's own setting must wait for the flush"
    );
    assert_eq!(setting(&durable, "synchronous_commit").await?, server);
    assert_eq!(setting(&lazy, "synchronous_commit").await?, "off");
    assert_eq!(
        setting(&lazy, "plan_cache_mode").await?,
        "force_custom_plan"
    );
    assert_eq!(
        setting(&durable, "plan_cache_mode").await?,
        "force_generic_plan"
    );
    assert_eq!(setting(&lazy, "enable_seqscan").await?, "on");
    assert_eq!(setting(&durable, "enable_seqscan").await?, "off");
    for pool in [&lazy, &durable] {
        assert_eq!(setting(pool, "jit").await?, "off");
    }
    Ok(())
}
