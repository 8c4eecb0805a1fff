//! The OpenAPI document of every route, served at `/openapi.json` without a key.
//! Handlers carry `#[utoipa::path]` annotations (their doc comments become the
//! descriptions) and are listed in [`ApiDoc`]; the `openapi` integration test fails
//! when a route of `routes::ROUTES` is missing here, or documented but not served.
//!
//! The schemas are those of the types the handlers really read and write (their
//! `*In` bodies and `*Out` answers, and [`crate::error::ErrorBody`] for every error),
//! so the document cannot describe a shape the server does not produce. This module
//! only reads the route modules; none of them reads it.

use crate::error::{Detail, ErrorBody, ErrorInfo};
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        crate::routes::index::index,
        crate::routes::health::live,
        crate::routes::health::ready,
        crate::routes::health::metrics,
        openapi_json,
        crate::routes::events::post_events,
        crate::routes::events::get_event_stats,
        crate::routes::alerts::post_alert,
        crate::routes::alerts::post_alert_seed,
        crate::routes::receipts::post_receipts,
        crate::routes::people::put_preferences_seed,
        crate::routes::people::put_user,
        crate::routes::people::get_user,
        crate::routes::people::delete_user,
        crate::routes::webhook_secret::rotate_secret,
        crate::routes::people::get_preferences,
        crate::routes::people::put_preferences,
        crate::routes::subscriptions::list_subscriptions,
        crate::routes::subscriptions::put_subscription,
        crate::routes::inbox::list_inbox,
        crate::routes::inbox::mark_read,
        crate::routes::inbox::mark_all_read,
        crate::routes::stream::stream,
        crate::routes::topics::put_topic,
        crate::routes::topics::list_members,
        crate::routes::topics::put_members,
        crate::routes::topics::put_member,
        crate::routes::topics::delete_member,
        crate::routes::notifications::list_notifications,
        crate::routes::notifications::get_notification,
        crate::routes::notifications::retry_notification,
        crate::routes::ops::summary,
        crate::routes::dead_letters::list_dead_letters,
        crate::routes::audit::get_audit,
        crate::routes::ui::redirect,
        crate::routes::ui::index,
        crate::routes::ui::asset,
    ),
    components(schemas(ErrorBody, ErrorInfo, Detail)),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "ingestion", description = "events, alerts and provider receipts in"),
        (name = "people", description = "people and their preferences"),
        (name = "audit", description = "a person's events and notification history"),
        (name = "subscriptions", description = "per-event-type subscriptions"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `$ref` of `value`, recursively.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_the_document_refers_to_is_in_it() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is referred to but not defined"
            );
        }
    }

    #[test]
    fn the_bodies_core_parses_are_documented_with_their_fields() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            (&schemas["AlertIn"], "alert_uuid"),
            (&schemas["EventsIn"]["items"], "event_timestamp"),
            (&schemas["ReceiptsIn"]["items"], "notification_id"),
            (&schemas["ErrorBody"]["properties"]["error"], "$ref"),
        ] {
            let has = schema["properties"].get(field).is_some() || schema.get(field).is_some();
            assert!(has, "{field} missing from {schema}");
        }
    }
}
