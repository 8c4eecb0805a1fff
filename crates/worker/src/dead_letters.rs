//! Dead letters: a job reclaimed with a delivery count above `max_deliveries` failed
//! (or killed its worker) every time it ran. It is not run again: Postgres records it
//! with the last error its runs left, its event becomes `failed_routing` or its
//! notification `failed`, and it is acknowledged off its stream.

use crate::context::Context;
use herald_queue::{Job, Received};
use herald_store::dead_letters::NewDeadLetter;

/// Whether a reclaimed job has had its deliveries: it ran `max` times already.
pub fn exhausted(received: &Received, max: u32) -> bool {
    received.deliveries > u64::from(max)
}

/// Buries one job; on error it stays pending, to be buried at its next reclaim.
pub async fn bury(ctx: &Context, received: &Received) -> anyhow::Result<()> {
    let runs = received.deliveries.saturating_sub(1);
    let last = ctx
        .queue
        .last_failure(received.lane, &received.entry_id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "no error recorded: its worker died or stopped while running it".into());
    let reason = format!("dead-lettered after {runs} deliveries: {last}");
    let (event_id, notification_id) = match &received.job {
        Some(Job::Route { event_id, .. }) => (Some(*event_id), None),
        Some(Job::Deliver { notification_id }) => (None, Some(*notification_id)),
        Some(Job::FlushBundle { .. }) | None => (None, None),
    };
    let letter = NewDeadLetter {
        kind: received
            .job
            .as_ref()
            .map_or("undecodable", Job::kind)
            .to_string(),
        stream: ctx.queue.keys().stream(received.lane),
        entry_id: received.entry_id.clone(),
        job: received
            .job
            .as_ref()
            .and_then(|j| serde_json::to_value(j).ok())
            .unwrap_or(serde_json::Value::Null),
        event_id,
        notification_id,
        reason,
        deliveries: i32::try_from(runs).unwrap_or(i32::MAX),
    };
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    let person = herald_store::dead_letters::bury(&mut conn, &letter).await?;
    drop(conn);
    tracing::error!(job = ?received.job, entry = %received.entry_id, runs, reason = %letter.reason,
        "job dead-lettered");
    ctx.metrics.dead_lettered(&letter.kind);
    if let Some(user_id) = person {
        ctx.changes.announce(&[user_id.as_str()]);
    }
    ctx.acker
        .ack(received.lane, received.entry_id.clone(), received.marker());
    Ok(())
}
