//! `GET /`: where to go from the root, for someone who opens the api in a browser or
//! curls it first. Open, like the console and the document it points to.

use actix_web::HttpResponse;
use serde_json::json;

/// Where to start: the console, the OpenAPI document and the health check.
#[utoipa::path(get, path = "/", tag = "operations", security(()),
    responses((status = 200, description = "links to the console and the API document", body = Object,
        example = json!({"name": "herald-api", "console": "/ui/", "openapi": "/openapi.json", "health": "/healthz/ready"}))))]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "herald-api",
        "version": env!("CARGO_PKG_VERSION"),
        "console": "/ui/",
        "openapi": "/openapi.json",
        "health": "/healthz/ready",
        "auth": "send Authorization: Bearer <key> (a key of HERALD_API_KEYS) on every /api, /webhooks, /preferences and /audit route",
    }))
}
