//! `GET /api/v1/dead-letters`: the jobs workers gave up on after too many deliveries
//! (`HERALD_MAX_DELIVERIES`), newest first, with the reason each was given up.

use crate::error::{ApiError, ErrorBody};
use crate::extract::Db;
use actix_web::{web, HttpResponse};
use herald_store::dead_letters::{self, DeadLetterRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersQuery {
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersPage {
    /// Each: `id`, `kind` (route, deliver, flush_bundle), `stream`, `entry_id`, `job`,
    /// `event_id`, `notification_id`, `reason`, `deliveries`, `created_at`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<DeadLetterRow>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<i64>,
}

/// Jobs given up on after too many deliveries, newest first; `next_cursor` continues.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "operations",
    params(DeadLettersQuery),
    responses(
        (status = 200, description = "one page, newest first", body = DeadLettersPage),
        (status = 400, description = "a malformed parameter", body = ErrorBody),
        (status = 503, description = "the database is unavailable", body = ErrorBody),
    ))]
pub async fn list_dead_letters(
    query: web::Query<DeadLettersQuery>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = dead_letters::list(&mut conn, q.cursor, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    Ok(HttpResponse::Ok().json(DeadLettersPage { items, next_cursor }))
}
