//! Every route, one file per resource; [`configure`] mounts them all.

pub mod alerts;
pub mod events;
pub mod health;
pub mod notifications;
pub mod people;
pub mod topics;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz/live", web::get().to(health::live))
        .route("/healthz/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .route("/api/v1/events", web::post().to(events::post_events))
        .route("/webhooks/alerts", web::post().to(alerts::post_alert))
        .route("/webhook/notifications", web::post().to(alerts::post_alert))
        .route("/preferences", web::put().to(people::put_preferences_seed))
        .route("/api/v1/users/{user_id}", web::put().to(people::put_user))
        .route("/api/v1/users/{user_id}", web::get().to(people::get_user))
        .route(
            "/api/v1/users/{user_id}/preferences",
            web::get().to(people::get_preferences),
        )
        .route(
            "/api/v1/users/{user_id}/preferences",
            web::put().to(people::put_preferences),
        )
        .route("/api/v1/topics/{topic}", web::put().to(topics::put_topic))
        .route(
            "/api/v1/topics/{topic}/members",
            web::get().to(topics::list_members),
        )
        .route(
            "/api/v1/topics/{topic}/members/{user_id}",
            web::put().to(topics::put_member),
        )
        .route(
            "/api/v1/topics/{topic}/members/{user_id}",
            web::delete().to(topics::delete_member),
        )
        .route(
            "/api/v1/notifications",
            web::get().to(notifications::list_notifications),
        )
        .route(
            "/api/v1/notifications/{id}",
            web::get().to(notifications::get_notification),
        );
}
