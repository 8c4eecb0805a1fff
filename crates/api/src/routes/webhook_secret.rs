//! A person's webhook signing secret (contract §4). Issued when a `webhook_url` is
//! first set and shown once, in that `PUT`'s answer; `POST …/webhook/secret/rotate`
//! issues a new one, shown once too. After a rotation deliveries carry both
//! signatures for `HERALD_WEBHOOK_SECRET_OVERLAP` (24 h by default) so the receiver
//! can switch without losing a delivery. The secret is never answered again.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{unknown_user, Db, PathUserId};
use actix_web::HttpResponse;
use herald_core::signing::format_secret;
use herald_store::webhook_secrets::{self, Rotation};
use serde::Serialize;
use utoipa::ToSchema;

/// A fresh secret, `whsec_` and 24 random bytes in base64.
fn new_secret() -> String {
    format_secret(&rand::random::<[u8; 24]>())
}

/// Issues the person's webhook secret if they have none yet (their `webhook_url` was
/// just set for the first time); returns it then, and only then.
pub async fn issue_on_first_set(
    conn: &mut herald_store::Conn,
    user_id: &str,
) -> Result<Option<String>, ApiError> {
    let secret = new_secret();
    let issued = webhook_secrets::issue_if_absent(conn, user_id, &secret).await?;
    Ok(issued.then_some(secret))
}

/// The new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    user_id: String,
    /// `whsec_<base64>`: verify deliveries with it (Standard Webhooks).
    webhook_secret: String,
}

/// Issue a new signing secret for the person's webhook. The previous one keeps
/// signing beside it for the overlap (`HERALD_WEBHOOK_SECRET_OVERLAP`, 24 h).
#[utoipa::path(post, path = "/api/v1/users/{user_id}/webhook/secret/rotate", tag = "people",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "the new secret, shown once", body = SecretOut),
        (status = 404, description = "unknown person", body = ErrorBody),
        (status = 409, description = "the person has no webhook_url", body = ErrorBody),
    ))]
pub async fn rotate_secret(
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let secret = new_secret();
    match webhook_secrets::rotate(&mut conn, &user_id, &secret).await? {
        Rotation::Rotated => Ok(HttpResponse::Ok().json(SecretOut {
            user_id,
            webhook_secret: secret,
        })),
        Rotation::UnknownPerson => Err(unknown_user(&user_id)),
        Rotation::NoWebhook => Err(ApiError::Conflict(format!(
            "person {user_id} has no webhook_url: set one first"
        ))),
    }
}
