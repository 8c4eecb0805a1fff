//! The signing secret of each person's webhook (contract §4): issued when a
//! `webhook_url` is first set, rotated on demand, the previous one kept with the
//! rotation's time so deliveries can carry both signatures for an overlap.

use crate::pool::{Conn, StoreError};
use crate::schema::{users, webhook_secrets};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

/// Stores `secret` as the person's webhook secret unless they have one; returns
/// whether it was stored (the caller shows it then, and only then).
pub async fn issue_if_absent(
    conn: &mut Conn,
    user_id: &str,
    secret: &str,
) -> Result<bool, StoreError> {
    let n = diesel::insert_into(webhook_secrets::table)
        .values((
            webhook_secrets::user_id.eq(user_id),
            webhook_secrets::secret.eq(secret),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// What a rotation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The new secret is stored; the old one (if any) keeps signing for the overlap.
    Rotated,
    UnknownPerson,
    /// The person has no webhook_url: there is nothing to sign for.
    NoWebhook,
}

/// Makes `secret` the person's webhook secret, keeping the current one as previous.
pub async fn rotate(conn: &mut Conn, user_id: &str, secret: &str) -> Result<Rotation, StoreError> {
    let url: Option<Option<String>> = users::table
        .find(user_id)
        .select(users::webhook_url)
        .first(conn)
        .await
        .optional()?;
    match url {
        None => return Ok(Rotation::UnknownPerson),
        Some(None) => return Ok(Rotation::NoWebhook),
        Some(Some(_)) => {}
    }
    diesel::insert_into(webhook_secrets::table)
        .values((
            webhook_secrets::user_id.eq(user_id),
            webhook_secrets::secret.eq(secret),
            webhook_secrets::rotated_at.eq(diesel::dsl::now),
        ))
        .on_conflict(webhook_secrets::user_id)
        .do_update()
        .set((
            webhook_secrets::previous_secret.eq(webhook_secrets::secret.nullable()),
            webhook_secrets::secret.eq(excluded(webhook_secrets::secret)),
            webhook_secrets::rotated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Rotation::Rotated)
}
