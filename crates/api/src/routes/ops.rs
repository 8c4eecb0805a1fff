//! `GET /api/v1/ops/summary`: what an operator looks at first. Queue depths and live
//! workers come from Redis; when it is down they are null and `redis` says so.

use crate::error::{ApiError, ErrorBody};
use crate::extract::ReadDb;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Jobs waiting.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDepths {
    critical: u64,
    default: u64,
    /// Retries and delayed notifications waiting for their due time.
    delayed: u64,
}

/// The operator's overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsSummary {
    /// `up` or `down`.
    redis: &'static str,
    /// Null when Redis is down.
    queues: Option<QueueDepths>,
    /// Notifications created in the last hour, by status.
    notifications_last_hour: BTreeMap<String, i64>,
    /// The live workers' heartbeats (id, pid, queues, concurrency, started_at); null
    /// when Redis is down.
    #[schema(value_type = Option<Vec<Object>>)]
    workers: Option<Vec<Value>>,
}

/// Queue depths, notifications by status over the last hour, and live workers.
#[utoipa::path(get, path = "/api/v1/ops/summary", tag = "operations",
    responses(
        (status = 200, description = "the overview", body = OpsSummary),
        (status = 503, description = "the database is unavailable", body = ErrorBody),
    ))]
pub async fn summary(
    state: web::Data<AppState>,
    mut conn: ReadDb,
) -> Result<HttpResponse, ApiError> {
    let mut by_status: BTreeMap<String, i64> = herald_core::status::NotificationStatus::ALL
        .into_iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    by_status.extend(herald_store::stats::last_hour(&mut conn).await?.by_status);
    drop(conn);
    let queues = state.queue.depths().await.ok().map(|d| QueueDepths {
        critical: d.critical,
        default: d.default,
        delayed: d.delayed,
    });
    let workers = state.heartbeats.live_workers().await.ok().map(|beats| {
        beats
            .into_iter()
            .map(|b| serde_json::from_str(&b).unwrap_or(Value::String(b)))
            .collect()
    });
    Ok(HttpResponse::Ok().json(OpsSummary {
        redis: if queues.is_some() { "up" } else { "down" },
        queues,
        notifications_last_hour: by_status,
        workers,
    }))
}
