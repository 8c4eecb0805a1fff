//! Topics and memberships (SPEC 4). A shop location is a topic; its members receive
//! its alerts.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_core::ids::validate_id;
use herald_store::people;
use herald_store::StoreError;
use serde::Deserialize;
use serde_json::json;

fn check(field: &str, id: &str) -> Result<(), ApiError> {
    validate_id(field, id).map_err(|e| ApiError::invalid_fields(&[e]))
}

/// Create a topic (201), or confirm it exists (200).
pub async fn put_topic(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let topic = path.into_inner();
    check("topic", &topic)?;
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let created = people::create_topic(&mut conn, &topic).await?;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(json!({"topic": topic})))
}

/// Add a person to a topic (201 when new, 200 when already a member).
pub async fn put_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (topic, user_id) = path.into_inner();
    let mut conn = herald_store::pool::get(&state.pool).await?;
    match people::add_member(&mut conn, &topic, &user_id).await {
        Ok(created) => Ok(if created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        }
        .json(json!({"topic": topic, "user_id": user_id}))),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!(
            "unknown topic {topic:?} or user {user_id:?}: create both first"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Remove a person from a topic.
pub async fn delete_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (topic, user_id) = path.into_inner();
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if people::remove_member(&mut conn, &topic, &user_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "{user_id:?} is not a member of {topic:?}"
        )))
    }
}

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A topic's members, ordered by user id; `next_cursor` continues the list.
pub async fn list_members(
    state: web::Data<AppState>,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let topic = path.into_inner();
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if !people::topic_exists(&mut conn, &topic).await? {
        return Err(ApiError::NotFound(format!("unknown topic {topic:?}")));
    }
    let items = people::member_ids(&mut conn, &topic, page.cursor.as_deref(), limit).await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().cloned())
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next})))
}
