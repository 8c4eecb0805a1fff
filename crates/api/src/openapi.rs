//! The OpenAPI document of every route, served at `/openapi.json` without a key.
//! Handlers carry `#[utoipa::path]` annotations (their doc comments become the
//! descriptions) and are listed in [`ApiDoc`]; the `openapi` integration test fails
//! when a route of `routes::ROUTES` is missing here, or documented but not served.

use crate::routes::{
    alerts, audit, events, health, inbox, notifications, ops, people, receipts, stream,
    subscriptions, topics, ui,
};
use actix_web::HttpResponse;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error": {"code", "message", "details": [...]}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// e.g. `invalid_request`, `not_found`, `unauthorized`, `payload_too_large`.
    code: String,
    message: String,
    /// For 422: one entry per invalid field.
    details: Vec<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    field: String,
    message: String,
}

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A self-hosted notification platform: events and alerts in, \
            notifications out through people's preferences, bundles and retried webhooks. \
            Every route except health, metrics, this document and the console's files \
            requires `Authorization: Bearer <key>` when HERALD_API_KEYS is set; the \
            live stream also accepts `?access_token=<key>`."
    ),
    paths(
        health::live,
        health::ready,
        health::metrics,
        openapi_json,
        events::post_events,
        events::get_event_stats,
        alerts::post_alert,
        alerts::post_alert_seed,
        receipts::post_receipts,
        people::put_preferences_seed,
        people::put_user,
        people::get_user,
        people::delete_user,
        people::get_preferences,
        people::put_preferences,
        subscriptions::list_subscriptions,
        subscriptions::put_subscription,
        inbox::list_inbox,
        inbox::mark_read,
        inbox::mark_all_read,
        stream::stream,
        topics::put_topic,
        topics::list_members,
        topics::put_members,
        topics::put_member,
        topics::delete_member,
        notifications::list_notifications,
        notifications::get_notification,
        notifications::retry_notification,
        ops::summary,
        audit::get_audit,
        ui::redirect,
        ui::index,
        ui::asset,
    ),
    components(schemas(ErrorBody, ErrorInfo, ErrorDetail)),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "ingestion", description = "events, alerts and provider receipts in"),
        (name = "people", description = "people and their preferences"),
        (name = "audit", description = "a person's events and notification history (seed 004)"),
        (name = "subscriptions", description = "per-event-type subscriptions (seed 003)"),
        (name = "inbox", description = "a person's notifications and read marks"),
        (name = "topics", description = "topics and their members"),
        (name = "notifications", description = "notifications as operators inspect them"),
        (name = "operations", description = "health, metrics, overview"),
        (name = "console", description = "the web console's files (open, no key)"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!(r#"{{"error": "cannot render the document: {e}"}}"#))
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}
