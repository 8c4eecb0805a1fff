//! People and their preferences (contract §4): `PUT/GET /api/v1/users/{id}`,
//! `GET/PUT /api/v1/users/{id}/preferences` and seed 002's `PUT /preferences`.
//!
//! The bodies are deserialized into the `*In` types below (serde refuses unknown
//! fields and wrong JSON types, naming them); the rules their values follow are
//! `herald_core::person`'s and `herald_core::preferences`'. A level is stored and
//! answered lowercase whatever case it was sent in.

use crate::body::parse_body;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{unknown_user, Db, FromJsonBody, NewUserId, PathUserId, ValidatedJson};
use crate::state::AppState;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use herald_core::person::{check_person, PersonFields, PersonRules};
use herald_core::preferences::{check_preferences, parse_level, PreferenceError};
use herald_store::people::{self, Person, PersonPatch};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A person's fields; those given are merged into the stored person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// A valid address of at most 254 characters; `""` clears it.
    email: Option<String>,
    /// E.164, e.g. `+4915112345678`; `""` clears it.
    phone: Option<String>,
    /// An IANA time zone, e.g. `Europe/Paris` (default UTC).
    timezone: Option<String>,
    /// Merged into the stored traits; at most 64 KiB and 32 levels deep.
    #[schema(value_type = Option<Object>)]
    traits: Option<Map<String, Value>>,
    /// `standard` (every notification) or `critical` (critical ones only),
    /// case-insensitive.
    level: Option<String>,
    /// Per-channel switches, e.g. `{"sms": false}`; a channel not named stays on.
    #[schema(value_type = Option<Object>)]
    channels: Option<Map<String, Value>>,
    /// The person's own endpoint for the `webhook` channel; `""` clears it.
    webhook_url: Option<String>,
    /// Replaces the person's topic memberships (unknown topics are created).
    topics: Option<Vec<String>>,
    /// Quiet hours in the person's time zone, e.g. `{"start": "22:00", "end":
    /// "07:00"}`; optional `hold_critical` (default false) and `channels` (only these
    /// are held). `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    quiet_hours: Option<Value>,
}

/// A field that may be given as `null` to clear it: absent stays `None`, given
/// (`null` included) becomes `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl FromJsonBody for UserIn {
    fn from_json(body: Value, state: &AppState) -> Result<Self, ApiError> {
        let mut input: UserIn = parse_body(body)?;
        let fields = PersonFields {
            email: input.email.as_deref(),
            phone: input.phone.as_deref(),
            traits: input.traits.as_ref(),
            level: input.level.as_deref(),
            timezone: input.timezone.as_deref(),
            webhook_url: input.webhook_url.as_deref(),
            topics: input.topics.as_deref(),
            channels: input.channels.as_ref(),
        };
        let rules = PersonRules {
            channels: &state.config.channels,
            allowed_targets: &state.allowed_targets,
        };
        let checked = check_person(&fields, &rules)?;
        input.level = checked.level.map(|l| l.as_str().to_string());
        input.quiet_hours = checked_quiet_hours(input.quiet_hours, &state.config.channels)?;
        Ok(input)
    }
}

/// Quiet hours (contract §4), checked apart from the other fields: times as `HH:MM`
/// or `HH:MM:SS`, start and end different, `channels` naming configured channels.
/// Stored normalised; `null` stays `null` (clears them).
fn checked_quiet_hours(
    given: Option<Value>,
    channels: &herald_core::channels::Channels,
) -> Result<Option<Value>, ApiError> {
    let Some(value) = given else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(Some(Value::Null));
    }
    let quiet = herald_core::schedule::QuietHours::parse(&value)
        .map_err(|e| ApiError::invalid_field(&e.field, e.message))?;
    if let Some(unknown) = quiet
        .channels
        .iter()
        .flatten()
        .find(|c| !channels.contains(c))
    {
        return Err(ApiError::invalid_field(
            "quiet_hours.channels",
            format!("unknown channel {unknown:?}"),
        ));
    }
    // Stored in its normal form (no unknown keys: the parse refused them).
    Ok(Some(value))
}

impl From<UserIn> for PersonPatch {
    fn from(input: UserIn) -> Self {
        PersonPatch {
            email: input.email,
            phone: input.phone,
            timezone: input.timezone,
            traits: input.traits.map(Value::Object),
            level: input.level,
            channels: input.channels.map(Value::Object),
            webhook_url: input.webhook_url,
            topics: input.topics,
            quiet_hours: input.quiet_hours,
        }
    }
}

/// A person as stored, with their topics.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    timezone: String,
    #[schema(value_type = Object)]
    traits: Value,
    /// `standard` or `critical`.
    level: String,
    #[schema(value_type = Object)]
    channels: Value,
    webhook_url: Option<String>,
    /// When the webhook answered 410 Gone (deliveries to it stopped); a new
    /// `webhook_url` clears it.
    webhook_disabled_at: Option<DateTime<Utc>>,
    topics: Vec<String>,
    /// The webhook's signing secret, only in the answer that first set a
    /// `webhook_url` (see `POST /api/v1/users/{user_id}/webhook/secret/rotate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
    /// `{"start", "end", "hold_critical"?, "channels"?}` or null.
    #[schema(value_type = Option<Object>)]
    quiet_hours: Option<Value>,
}

impl UserOut {
    fn new(person: Person, topics: Vec<String>) -> UserOut {
        UserOut {
            user_id: person.user_id,
            email: person.email,
            phone: person.phone,
            timezone: person.timezone,
            traits: person.traits,
            level: person.level,
            channels: person.channels,
            webhook_url: person.webhook_url,
            webhook_disabled_at: person.webhook_disabled_at,
            topics,
            webhook_secret: None,
            quiet_hours: person.quiet_hours,
        }
    }
}

/// Create or update a person: fields given are merged, `topics` replaces memberships.
#[utoipa::path(put, path = "/api/v1/users/{user_id}", tag = "people",
    params(("user_id" = String, Path, description = "the person's id (at most 128 characters)")),
    request_body = UserIn,
    responses(
        (status = 201, description = "created", body = UserOut),
        (status = 200, description = "updated", body = UserOut),
        (status = 400, description = "malformed JSON or a bad level", body = ErrorBody),
        (status = 422, description = "invalid fields, named in the error", body = ErrorBody),
    ))]
pub async fn put_user(
    NewUserId(user_id): NewUserId,
    ValidatedJson(input): ValidatedJson<UserIn>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let sets_webhook = input.webhook_url.as_deref().is_some_and(|u| !u.is_empty());
    let created = people::upsert(&mut conn, &user_id, &input.into()).await?;
    let mut body = load_user(&mut conn, &user_id).await?;
    if sets_webhook {
        body.webhook_secret =
            crate::routes::webhook_secret::issue_on_first_set(&mut conn, &user_id).await?;
    }
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(body))
}

/// A person with their topics.
#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "people",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "the person", body = UserOut),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn get_user(
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load_user(&mut conn, &user_id).await?))
}

async fn load_user(conn: &mut herald_store::Conn, user_id: &str) -> Result<UserOut, ApiError> {
    let person = people::find(conn, user_id)
        .await?
        .ok_or_else(|| unknown_user(user_id))?;
    let topics = people::topics_of(conn, user_id).await?;
    Ok(UserOut::new(person, topics))
}

/// The shop-alert preference body: a person and their level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelIn {
    user_id: String,
    /// `CRITICAL` or `STANDARD`, case-insensitive.
    level: String,
}

impl FromJsonBody for LevelIn {
    fn from_json(body: Value, _: &AppState) -> Result<Self, ApiError> {
        let mut input: LevelIn = parse_body(body)?;
        let level = parse_level(&input.level).map_err(PreferenceError::from)?;
        input.level = level.as_str().to_string();
        Ok(input)
    }
}

/// The level now in force for a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelOut {
    user_id: String,
    /// `standard` or `critical`, lowercase.
    level: String,
}

/// Set a person's level (CRITICAL or STANDARD), as shop-alert clients send it.
#[utoipa::path(put, path = "/preferences", tag = "people",
    request_body = LevelIn,
    responses(
        (status = 200, description = "the level now in force, lowercase", body = LevelOut),
        (status = 400, description = "a level other than standard or critical", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn put_preferences_seed(
    ValidatedJson(input): ValidatedJson<LevelIn>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    if !people::set_level(&mut conn, &input.user_id, &input.level).await? {
        return Err(unknown_user(&input.user_id));
    }
    Ok(HttpResponse::Ok().json(LevelOut {
        user_id: input.user_id,
        level: input.level,
    }))
}

/// A person's preferences: their level and per-channel switches.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferencesOut {
    /// `standard` or `critical`.
    level: String,
    /// e.g. `{"email": true, "sms": false}`; a channel not named is on.
    #[schema(value_type = Object)]
    channels: Value,
    /// `{"start", "end", "hold_critical"?, "channels"?}` or null (as on the person).
    #[schema(value_type = Option<Object>)]
    quiet_hours: Option<Value>,
}

/// A person's level and per-channel switches.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/preferences", tag = "people",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "level and channel switches", body = PreferencesOut),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn get_preferences(
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load_preferences(&mut conn, &user_id).await?))
}

async fn load_preferences(
    conn: &mut herald_store::Conn,
    user_id: &str,
) -> Result<PreferencesOut, ApiError> {
    let person = people::find(conn, user_id)
        .await?
        .ok_or_else(|| unknown_user(user_id))?;
    Ok(PreferencesOut {
        level: person.level,
        channels: person.channels,
        quiet_hours: person.quiet_hours,
    })
}

/// A change of a person's preferences: their level and/or per-channel switches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesIn {
    /// `standard` or `critical` (case-insensitive on input, lowercase on output).
    level: Option<String>,
    /// e.g. `{"email": true, "sms": false}`; merged with the stored switches.
    #[schema(value_type = Option<Object>)]
    channels: Option<Map<String, Value>>,
    /// Quiet hours, as on `PUT /api/v1/users/{id}`; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    quiet_hours: Option<Value>,
}

impl FromJsonBody for PreferencesIn {
    fn from_json(body: Value, state: &AppState) -> Result<Self, ApiError> {
        let mut input: PreferencesIn = parse_body(body)?;
        let change = check_preferences(
            input.level.as_deref(),
            input.channels.as_ref(),
            &state.config.channels,
        )?;
        input.level = change.level.map(|l| l.as_str().to_string());
        input.quiet_hours = checked_quiet_hours(input.quiet_hours, &state.config.channels)?;
        Ok(input)
    }
}

/// Set a person's level and/or channel switches (merged).
#[utoipa::path(put, path = "/api/v1/users/{user_id}/preferences", tag = "people",
    params(("user_id" = String, Path)),
    request_body = PreferencesIn,
    responses(
        (status = 200, description = "the preferences now in force", body = PreferencesOut),
        (status = 400, description = "a bad level", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
        (status = 422, description = "an unknown channel or a non-boolean switch", body = ErrorBody),
    ))]
pub async fn put_preferences(
    ValidatedJson(input): ValidatedJson<PreferencesIn>,
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    if people::find(&mut conn, &user_id).await?.is_none() {
        return Err(unknown_user(&user_id));
    }
    let patch = PersonPatch {
        level: input.level,
        channels: input.channels.map(Value::Object),
        quiet_hours: input.quiet_hours,
        ..Default::default()
    };
    people::upsert(&mut conn, &user_id, &patch).await?;
    Ok(HttpResponse::Ok().json(load_preferences(&mut conn, &user_id).await?))
}

/// Delete a person with their memberships, subscriptions, notifications and delivery
/// attempts; their events stay, with `user_id` and traits blanked.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "people",
    params(("user_id" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn delete_user(
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    if people::delete(&mut conn, &user_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(unknown_user(&user_id))
    }
}

/// A 404 unless the person exists.
pub(crate) async fn require_user(
    conn: &mut herald_store::Conn,
    user_id: &str,
) -> Result<(), ApiError> {
    if people::exists(conn, user_id).await? {
        Ok(())
    } else {
        Err(unknown_user(user_id))
    }
}
