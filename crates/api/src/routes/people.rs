//! People and their preferences (SPEC 4): `PUT/GET /api/v1/users/{id}`,
//! `GET/PUT /api/v1/users/{id}/preferences` and seed 002's `PUT /preferences`.

use crate::body::{parse_body, read_json};
use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use herald_core::ids::validate_id;
use herald_core::severity::Level;
use herald_core::targets::check_webhook_url;
use herald_store::people::{self, PersonPatch};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The most topics one `PUT` may set.
const MAX_TOPICS: usize = 1000;

/// A person's fields; those given are merged into the stored person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    email: Option<String>,
    phone: Option<String>,
    /// An IANA time zone, e.g. `Europe/Paris` (default UTC).
    timezone: Option<String>,
    /// Merged into the stored traits.
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
}

/// A person as stored, with their topics.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct UserOut {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    timezone: String,
    #[schema(value_type = Object)]
    traits: Value,
    level: String,
    #[schema(value_type = Object)]
    channels: Value,
    webhook_url: Option<String>,
    topics: Vec<String>,
}

/// A 422 unless `id` is a valid identifier (at most 128 characters, no control
/// characters).
pub(crate) fn path_id(field: &str, id: &str) -> Result<(), ApiError> {
    validate_id(field, id).map_err(|e| ApiError::invalid_fields(&[e]))
}

fn parse_level(raw: &str) -> Result<Level, ApiError> {
    raw.parse::<Level>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn check_channels(state: &AppState, channels: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, on) in channels {
        if state.config.channels.get(name).is_none() {
            return Err(ApiError::invalid_field(
                "channels",
                format!("unknown channel {name:?}"),
            ));
        }
        if !on.is_boolean() {
            return Err(ApiError::invalid_field(
                "channels",
                format!("{name} must be true or false"),
            ));
        }
    }
    Ok(())
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
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    path_id("user_id", &user_id)?;
    let input: UserIn = parse_body(read_json(&req, payload).await?)?;
    let level = input.level.as_deref().map(parse_level).transpose()?;
    if let Some(tz) = &input.timezone {
        tz.parse::<chrono_tz::Tz>().map_err(|_| {
            ApiError::invalid_field(
                "timezone",
                format!("{tz:?} is not an IANA time zone such as Europe/Paris"),
            )
        })?;
    }
    if let Some(url) = input.webhook_url.as_deref().filter(|u| !u.is_empty()) {
        check_webhook_url(url, &state.allowed_targets)
            .map_err(|e| ApiError::invalid_field("webhook_url", e.to_string()))?;
    }
    if let Some(topics) = &input.topics {
        if topics.len() > MAX_TOPICS {
            return Err(ApiError::invalid_field("topics", "at most 1000 topics"));
        }
        for t in topics {
            validate_id("topics", t).map_err(|e| ApiError::invalid_fields(&[e]))?;
        }
    }
    if let Some(channels) = &input.channels {
        check_channels(&state, channels)?;
    }
    let patch = PersonPatch {
        email: input.email,
        phone: input.phone,
        timezone: input.timezone,
        traits: input.traits.map(Value::Object),
        level: level.map(|l| l.as_str().to_string()),
        channels: input.channels.map(Value::Object),
        webhook_url: input.webhook_url,
        topics: input.topics,
    };
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let created = people::upsert(&mut conn, &user_id, &patch).await?;
    let body = user_json(&mut conn, &user_id).await?;
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
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let mut conn = herald_store::pool::get(&state.pool).await?;
    Ok(HttpResponse::Ok().json(user_json(&mut conn, &user_id).await?))
}

async fn user_json(conn: &mut herald_store::Conn, user_id: &str) -> Result<Value, ApiError> {
    let person = people::find(conn, user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown user {user_id:?}")))?;
    let topics = people::topics_of(conn, user_id).await?;
    let mut body = serde_json::to_value(&person).map_err(anyhow::Error::from)?;
    body["topics"] = json!(topics);
    Ok(body)
}

/// Seed 002's preference body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelIn {
    user_id: String,
    /// `CRITICAL` or `STANDARD`, case-insensitive.
    level: String,
}

/// Seed 002's preference route: set a person's level (CRITICAL or STANDARD).
#[utoipa::path(put, path = "/preferences", tag = "people",
    request_body = LevelIn,
    responses(
        (status = 200, description = "the level now in force, lowercase", body = LevelIn),
        (status = 400, description = "a level other than standard or critical", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn put_preferences_seed(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: LevelIn = parse_body(read_json(&req, payload).await?)?;
    let level = parse_level(&input.level)?;
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if !people::set_level(&mut conn, &input.user_id, level.as_str()).await? {
        return Err(ApiError::NotFound(format!(
            "unknown user {:?}",
            input.user_id
        )));
    }
    Ok(HttpResponse::Ok().json(json!({"user_id": input.user_id, "level": level})))
}

/// A person's level and per-channel switches.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/preferences", tag = "people",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "level and channel switches", body = PreferencesIn),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn get_preferences(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let person = people::find(&mut conn, &user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown user {user_id:?}")))?;
    Ok(HttpResponse::Ok().json(json!({"level": person.level, "channels": person.channels})))
}

/// A person's preferences: their level and per-channel switches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesIn {
    /// `standard` or `critical` (case-insensitive on input, lowercase on output).
    level: Option<String>,
    /// e.g. `{"email": true, "sms": false}`; merged with the stored switches.
    #[schema(value_type = Option<Object>)]
    channels: Option<Map<String, Value>>,
}

/// Set a person's level and/or channel switches (merged).
#[utoipa::path(put, path = "/api/v1/users/{user_id}/preferences", tag = "people",
    params(("user_id" = String, Path)),
    request_body = PreferencesIn,
    responses(
        (status = 200, description = "the preferences now in force", body = PreferencesIn),
        (status = 400, description = "a bad level", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
        (status = 422, description = "an unknown channel or a non-boolean switch", body = ErrorBody),
    ))]
pub async fn put_preferences(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let input: PreferencesIn = parse_body(read_json(&req, payload).await?)?;
    let level = input.level.as_deref().map(parse_level).transpose()?;
    if let Some(channels) = &input.channels {
        check_channels(&state, channels)?;
    }
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if people::find(&mut conn, &user_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown user {user_id:?}")));
    }
    let patch = PersonPatch {
        level: level.map(|l| l.as_str().to_string()),
        channels: input.channels.map(Value::Object),
        ..Default::default()
    };
    people::upsert(&mut conn, &user_id, &patch).await?;
    get_preferences(state, web::Path::from(user_id)).await
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
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if people::delete(&mut conn, &user_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("unknown user {user_id:?}")))
    }
}

/// The 404 for a person who does not exist.
pub(crate) fn unknown_user(user_id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown user {user_id:?}"))
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
