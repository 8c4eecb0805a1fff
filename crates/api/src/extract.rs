//! Extractors: the prologue every handler used to write by hand (read the body
//! within its limit, validate it, check the ids in the path, take a database
//! connection) done once, before the handler runs. A handler then starts with values
//! that are known to be valid, and every route answers a bad input the same way.
//!
//! * [`ValidatedJson<T>`]: the body, read within [`crate::body::MAX_BODY_BYTES`] (400
//!   for malformed JSON, 413 when too large) and turned into `T` by
//!   [`FromJsonBody::from_json`], which applies the domain's rules (from `herald_core`)
//!   and answers 400/413/422 naming the field at fault.
//! * Path ids: [`PathUserId`] (a person looked up: an id no person can have names
//!   nobody, 404), [`NewUserId`] and [`NewTopic`] (ids about to be stored: 422 naming
//!   the field), [`PathEventType`], [`PathNotificationId`] and [`PathEventId`] (a
//!   malformed UUID names nothing: 404).
//! * [`Db`]: a pooled connection to the primary, [`ReadDb`] one for reads that may go
//!   to a replica; an unreachable database is a 503 with `Retry-After`.
//!
//! Extractors run before the handler, in parallel; path checks answer at once, so a
//! bad id is reported before the body is even read.

use crate::body::read_json;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::{ready, LocalBoxFuture, Ready};
use herald_core::event::validate_event_type;
use herald_core::ids::validate_id;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// A request body type that validates itself from the JSON value read off the wire.
pub trait FromJsonBody: Sized {
    /// Turns a well-formed JSON body into `Self`, or the 4xx that names what is wrong.
    /// `state` gives the configuration some rules depend on (channels, alert labels,
    /// allowed webhook targets).
    fn from_json(body: Value, state: &AppState) -> Result<Self, ApiError>;
}

/// A JSON body that passed `T`'s validation.
#[derive(Debug)]
pub struct ValidatedJson<T>(pub T);

impl<T> ValidatedJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: FromJsonBody + 'static> FromRequest for ValidatedJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = web::Payload::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let state = app_state(&req)?;
            let payload = payload
                .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
            let body = read_json(&req, payload).await?;
            T::from_json(body, &state).map(ValidatedJson)
        })
    }
}

/// A database connection from the pool, returned to it when dropped (drop it early
/// when the handler goes on to other slow work). `Db` is the primary's; [`ReadDb`]
/// the read replica's when one is set.
pub struct Db<Server = Primary>(pub herald_store::Conn, std::marker::PhantomData<Server>);

/// The primary: every write, and every read that decides something.
pub struct Primary;

/// Where the reads that decide nothing and concern no one person go (stats, lists,
/// the operations summary): the read replica when one is set (see [`crate::reads`]).
/// Reads of what one person sees use `Reads::conn_for` instead (read-your-writes).
pub struct Replica;

pub type ReadDb = Db<Replica>;

impl<S> std::ops::Deref for Db<S> {
    type Target = herald_store::Conn;
    fn deref(&self) -> &herald_store::Conn {
        &self.0
    }
}

impl<S> std::ops::DerefMut for Db<S> {
    fn deref_mut(&mut self) -> &mut herald_store::Conn {
        &mut self.0
    }
}

impl FromRequest for Db<Primary> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = app_state(req);
        Box::pin(async move {
            let state = state?;
            let conn = herald_store::pool::get(&state.pool).await?;
            Ok(Db(conn, std::marker::PhantomData))
        })
    }
}

impl FromRequest for Db<Replica> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = app_state(req);
        Box::pin(async move { Ok(Db(state?.reads.conn().await?, std::marker::PhantomData)) })
    }
}

/// The `{user_id}` of a route that looks a person up. An id that breaks the id rules
/// (too long, control characters) names nobody: 404, as the lookup would answer,
/// without sending Postgres (or Redis) a string it cannot hold.
#[derive(Debug, Clone)]
pub struct PathUserId(pub String);

impl FromRequest for PathUserId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            segment(req, "user_id").and_then(|id| match validate_id("user_id", &id) {
                Ok(()) => Ok(PathUserId(id)),
                Err(_) => Err(unknown_user(&id)),
            }),
        )
    }
}

/// The 404 for a person who does not exist.
pub fn unknown_user(user_id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown user {user_id:?}"))
}

/// The `{user_id}` of a route that may create the person: 422 naming `user_id`
/// unless it is a valid id (at most 128 characters, no control characters or `/`).
#[derive(Debug, Clone)]
pub struct NewUserId(pub String);

impl FromRequest for NewUserId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(valid_id(req, "user_id").map(NewUserId))
    }
}

/// The `{topic}` of a route that may create the topic: 422 naming `topic` unless it
/// is a valid id.
#[derive(Debug, Clone)]
pub struct NewTopic(pub String);

impl FromRequest for NewTopic {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(valid_id(req, "topic").map(NewTopic))
    }
}

/// The `{event_type}` of a subscription: 422 naming `event_type` unless it matches
/// `[A-Za-z0-9_.:-]{1,100}`.
#[derive(Debug, Clone)]
pub struct PathEventType(pub String);

impl FromRequest for PathEventType {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(segment(req, "event_type").and_then(|t| {
            validate_event_type(&t).map_err(|e| ApiError::invalid_fields(&[e]))?;
            Ok(PathEventType(t))
        }))
    }
}

/// The `{id}` of a notification: a malformed UUID names no notification (404).
#[derive(Debug, Clone, Copy)]
pub struct PathNotificationId(pub Uuid);

impl FromRequest for PathNotificationId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(segment(req, "id").and_then(|raw| {
            Uuid::parse_str(&raw)
                .map(PathNotificationId)
                .map_err(|_| ApiError::NotFound(format!("no notification {raw:?}")))
        }))
    }
}

/// The `{event_id}` of an event: a malformed UUID names no event (404).
#[derive(Debug, Clone, Copy)]
pub struct PathEventId(pub Uuid);

impl FromRequest for PathEventId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(segment(req, "event_id").and_then(|raw| {
            Uuid::parse_str(&raw)
                .map(PathEventId)
                .map_err(|_| ApiError::NotFound(format!("unknown event {raw:?}")))
        }))
    }
}

/// The shared state the server was started with.
fn app_state(req: &HttpRequest) -> Result<AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref().clone())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the server has no state")))
}

/// The path segments the extractors read, by name. Loading them through serde
/// decodes them exactly as `web::Path` does (the router's keys are identifiers, so
/// each name needs its own field).
#[derive(Deserialize)]
struct UserIdSegment {
    user_id: String,
}

#[derive(Deserialize)]
struct TopicSegment {
    topic: String,
}

#[derive(Deserialize)]
struct EventTypeSegment {
    event_type: String,
}

#[derive(Deserialize)]
struct IdSegment {
    id: String,
}

#[derive(Deserialize)]
struct EventIdSegment {
    event_id: String,
}

/// Path segment `name` of the matched route.
fn segment(req: &HttpRequest, name: &str) -> Result<String, ApiError> {
    let path = req.match_info();
    let loaded = match name {
        "user_id" => path.load::<UserIdSegment>().map(|s| s.user_id),
        "topic" => path.load::<TopicSegment>().map(|s| s.topic),
        "event_type" => path.load::<EventTypeSegment>().map(|s| s.event_type),
        "id" => path.load::<IdSegment>().map(|s| s.id),
        "event_id" => path.load::<EventIdSegment>().map(|s| s.event_id),
        _ => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "no extractor reads the path segment {{{name}}}"
            )))
        }
    };
    loaded.map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Path segment `name`, which must be a valid id (422 naming it otherwise).
fn valid_id(req: &HttpRequest, name: &str) -> Result<String, ApiError> {
    let id = segment(req, name)?;
    validate_id(name, &id).map_err(|e| ApiError::invalid_fields(&[e]))?;
    Ok(id)
}
