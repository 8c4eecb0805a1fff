//! Every route, one file per resource. The table in [`routes!`] is the one list of
//! what the server serves: it generates [`configure`], which mounts the routes, and
//! [`ROUTES`], which the OpenAPI test compares with `/openapi.json` so that a route
//! added without documentation fails the tests.
//!
//! To add a route: write the handler (a doc comment one-liner becomes its API
//! description) with a `#[utoipa::path(...)]` annotation, add a line below, and list
//! the handler in `crate::openapi::ApiDoc`.

pub mod alerts;
pub mod audit;
pub mod dead_letters;
pub mod events;
pub mod health;
pub mod inbox;
pub mod index;
pub mod notifications;
pub mod ops;
pub mod people;
pub mod receipts;
pub mod stream;
pub mod subscriptions;
pub mod topics;
pub mod ui;
pub mod webhook_secret;

use actix_web::web;

/// A registered route: HTTP method (lowercase, as actix's `web::get` etc.) and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// `method "path" => handler,` lines become [`configure`] and [`ROUTES`].
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Mounts every route of [`ROUTES`].
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }

        /// Every route the server registers, in mounting order.
        pub const ROUTES: &[Route] = &[$(Route { method: stringify!($method), path: $path },)*];
    };
}

routes! {
    get "/" => index::index,
    get "/healthz/live" => health::live,
    get "/healthz/ready" => health::ready,
    get "/metrics" => health::metrics,
    get "/openapi.json" => crate::openapi::openapi_json,
    post "/api/v1/events" => events::post_events,
    get "/api/v1/events/{event_id}/stats" => events::get_event_stats,
    post "/webhooks/alerts" => alerts::post_alert,
    post "/webhook/notifications" => alerts::post_alert_seed,
    post "/webhooks/receipts" => receipts::post_receipts,
    put "/preferences" => people::put_preferences_seed,
    put "/api/v1/users/{user_id}" => people::put_user,
    get "/api/v1/users/{user_id}" => people::get_user,
    delete "/api/v1/users/{user_id}" => people::delete_user,
    post "/api/v1/users/{user_id}/webhook/secret/rotate" => webhook_secret::rotate_secret,
    get "/api/v1/users/{user_id}/preferences" => people::get_preferences,
    put "/api/v1/users/{user_id}/preferences" => people::put_preferences,
    get "/api/v1/users/{user_id}/subscriptions" => subscriptions::list_subscriptions,
    put "/api/v1/users/{user_id}/subscriptions/{event_type}" => subscriptions::put_subscription,
    get "/api/v1/users/{user_id}/notifications" => inbox::list_inbox,
    post "/api/v1/users/{user_id}/notifications/read-all" => inbox::mark_all_read,
    post "/api/v1/users/{user_id}/notifications/{id}/read" => inbox::mark_read,
    get "/api/v1/users/{user_id}/stream" => stream::stream,
    put "/api/v1/topics/{topic}" => topics::put_topic,
    get "/api/v1/topics/{topic}/members" => topics::list_members,
    put "/api/v1/topics/{topic}/members" => topics::put_members,
    put "/api/v1/topics/{topic}/members/{user_id}" => topics::put_member,
    delete "/api/v1/topics/{topic}/members/{user_id}" => topics::delete_member,
    get "/api/v1/notifications" => notifications::list_notifications,
    get "/api/v1/notifications/{id}" => notifications::get_notification,
    post "/api/v1/notifications/{id}/retry" => notifications::retry_notification,
    get "/api/v1/ops/summary" => ops::summary,
    get "/api/v1/dead-letters" => dead_letters::list_dead_letters,
    get "/audit/{user_id}" => audit::get_audit,
    get "/ui" => ui::redirect,
    get "/ui/" => ui::index,
    get "/ui/{file}" => ui::asset,
}
