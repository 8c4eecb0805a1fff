//! Per-event-type subscriptions (seed 003, contract §4). A disabled subscription
//! suppresses every notification that event type triggers for the person; rules with
//! `recipients: subscribers` reach only people with an enabled one.

use super::people::require_user;
use crate::body::parse_body;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    unknown_user, Db, FromJsonBody, NewUserId, PathEventType, PathUserId, ValidatedJson,
};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_store::{subscriptions, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A subscription to an event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    /// e.g. `test_scenario.created`
    event_type: String,
    enabled: bool,
}

/// Body of `PUT .../subscriptions/{event_type}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    enabled: bool,
}

impl FromJsonBody for SubscriptionIn {
    fn from_json(body: Value, _: &AppState) -> Result<Self, ApiError> {
        parse_body(body)
    }
}

/// A person's subscriptions, by event type (event types never set are not listed).
#[utoipa::path(get, path = "/api/v1/users/{user_id}/subscriptions", tag = "subscriptions",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "the subscriptions, ordered by event type", body = Vec<Subscription>),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn list_subscriptions(
    state: web::Data<AppState>,
    PathUserId(user_id): PathUserId,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.reads.conn_for(&user_id).await?;
    require_user(&mut conn, &user_id).await?;
    let rows = subscriptions::list(&mut conn, &user_id).await?;
    let body: Vec<Subscription> = rows
        .into_iter()
        .map(|s| Subscription {
            event_type: s.event_type,
            enabled: s.enabled,
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Enable or disable a person's notifications for one event type.
#[utoipa::path(put, path = "/api/v1/users/{user_id}/subscriptions/{event_type}", tag = "subscriptions",
    params(("user_id" = String, Path), ("event_type" = String, Path, description = "`[A-Za-z0-9_.:-]{1,100}`")),
    request_body = SubscriptionIn,
    responses(
        (status = 201, description = "subscription created", body = Subscription),
        (status = 200, description = "subscription changed", body = Subscription),
        (status = 404, description = "unknown person", body = ErrorBody),
        (status = 422, description = "an invalid event type or body", body = ErrorBody),
    ))]
pub async fn put_subscription(
    NewUserId(user_id): NewUserId,
    PathEventType(event_type): PathEventType,
    ValidatedJson(input): ValidatedJson<SubscriptionIn>,
    state: web::Data<AppState>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let created = match subscriptions::set(&mut conn, &user_id, &event_type, input.enabled).await {
        Ok(created) => created,
        Err(StoreError::NotFound) => return Err(unknown_user(&user_id)),
        Err(e) => return Err(e.into()),
    };
    state.reads.wrote(&mut conn, &user_id).await;
    let body = Subscription {
        event_type,
        enabled: input.enabled,
    };
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(body))
}
