//! Liveness, readiness and metrics (contract §4).

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// The process is up.
#[utoipa::path(get, path = "/healthz/live", tag = "operations", security(()),
    responses((status = 200, description = "up", body = Object, example = json!({"status": "ok"}))))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to accept events: Postgres must answer (503 otherwise). Without Redis the api
/// still accepts events (they wait in Postgres), so that is only `degraded`.
#[utoipa::path(get, path = "/healthz/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "ready (`degraded` when only Redis is down)", body = Object,
            example = json!({"status": "ok", "postgres": "up", "redis": "up"})),
        (status = 503, description = "Postgres does not answer", body = Object),
    ))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = ping_database(&state).await {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "postgres": "down", "error": e.to_string()}));
    }
    match state.queue.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "postgres": "up", "redis": "up"})),
        Err(_) => HttpResponse::Ok()
            .json(json!({"status": "degraded", "postgres": "up", "redis": "down"})),
    }
}

/// Prometheus text: this process's counters, histograms and gauges, all kept in
/// memory (see `crate::metrics`): a scrape runs no SQL. With `HERALD_METRICS_KEY`
/// set, it needs `Authorization: Bearer <that key>`.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "HERALD_METRICS_KEY is set and was not sent", body = ErrorBody),
    ))]
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !crate::metrics::scrape_allowed(&state.metrics_key, &req) {
        return Err(ApiError::Unauthorized);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render()))
}

async fn ping_database(state: &AppState) -> Result<(), herald_store::StoreError> {
    let mut conn = herald_store::pool::get(&state.pool).await?;
    herald_store::stats::ping(&mut conn).await
}
