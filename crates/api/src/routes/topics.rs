//! Topics and memberships (contract §4). A shop location is a topic; its members receive
//! its alerts.

use crate::body::parse_body;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Db, FromJsonBody, NewTopic, ReadDb, ValidatedJson};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_core::event::MAX_BATCH_ITEMS;
use herald_core::ids::validate_id;
use herald_store::people;
use herald_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicOut {
    /// e.g. a shop location.
    topic: String,
}

/// A person's membership of a topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct Membership {
    topic: String,
    user_id: String,
}

/// Create a topic (201), or confirm it exists (200).
#[utoipa::path(put, path = "/api/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path, description = "e.g. a shop location")),
    responses(
        (status = 201, description = "created", body = TopicOut, example = json!({"topic": "Carrefour"})),
        (status = 200, description = "already existed", body = TopicOut),
        (status = 422, description = "an invalid topic name", body = ErrorBody),
    ))]
pub async fn put_topic(NewTopic(topic): NewTopic, mut conn: Db) -> Result<HttpResponse, ApiError> {
    let created = people::create_topic(&mut conn, &topic).await?;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(TopicOut { topic }))
}

/// Add a person to a topic (201 when new, 200 when already a member).
#[utoipa::path(put, path = "/api/v1/topics/{topic}/members/{user_id}", tag = "topics",
    params(("topic" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 201, description = "added", body = Membership),
        (status = 200, description = "already a member", body = Membership),
        (status = 404, description = "unknown topic or person", body = ErrorBody),
    ))]
pub async fn put_member(
    path: web::Path<(String, String)>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    // Not checked as ids: an id no topic or person can have is simply not found.
    let (topic, user_id) = path.into_inner();
    match people::add_member(&mut conn, &topic, &user_id).await {
        Ok(created) => Ok(if created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        }
        .json(Membership { topic, user_id })),
        Err(StoreError::NotFound) => Err(which_is_unknown(&mut conn, &topic, &user_id).await?),
        Err(e) => Err(e.into()),
    }
}

/// The 404 of a membership that could not be made: it names the topic, the person
/// or both, whichever does not exist.
async fn which_is_unknown(conn: &mut Db, topic: &str, user_id: &str) -> Result<ApiError, ApiError> {
    let topic_known = people::topic_exists(conn, topic).await?;
    let user_known = people::find(conn, user_id).await?.is_some();
    let message = match (topic_known, user_known) {
        (false, false) => format!(
            "unknown topic {topic:?} and unknown user {user_id:?}: create both first \
             (PUT /api/v1/topics/{{topic}}, PUT /api/v1/users/{{user_id}})"
        ),
        (false, true) => {
            format!("unknown topic {topic:?}: create it first (PUT /api/v1/topics/{{topic}})")
        }
        (true, false) => {
            format!("unknown user {user_id:?}: create them first (PUT /api/v1/users/{{user_id}})")
        }
        // Both exist now: one was created meanwhile; the client may simply retry.
        (true, true) => {
            format!("topic {topic:?} or user {user_id:?} was just created or removed; retry")
        }
    };
    Ok(ApiError::NotFound(message))
}

/// Remove a person from a topic.
#[utoipa::path(delete, path = "/api/v1/topics/{topic}/members/{user_id}", tag = "topics",
    params(("topic" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "not a member", body = ErrorBody),
    ))]
pub async fn delete_member(
    path: web::Path<(String, String)>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let (topic, user_id) = path.into_inner();
    if people::remove_member(&mut conn, &topic, &user_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "{user_id:?} is not a member of {topic:?}"
        )))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of member ids.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersPage {
    items: Vec<String>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// A topic's members, ordered by user id; `next_cursor` continues the list.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/members", tag = "topics",
    params(("topic" = String, Path), Page),
    responses(
        (status = 200, description = "one page of member ids", body = MembersPage),
        (status = 404, description = "unknown topic", body = ErrorBody),
    ))]
pub async fn list_members(
    path: web::Path<String>,
    page: web::Query<Page>,
    mut conn: ReadDb,
) -> Result<HttpResponse, ApiError> {
    let topic = path.into_inner();
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    if !people::topic_exists(&mut conn, &topic).await? {
        return Err(ApiError::NotFound(format!("unknown topic {topic:?}")));
    }
    let items = people::member_ids(&mut conn, &topic, page.cursor.as_deref(), limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().cloned())
        .flatten();
    Ok(HttpResponse::Ok().json(MembersPage { items, next_cursor }))
}

/// Body of the bulk membership route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersIn {
    /// At most 1,000 ids; people who do not exist yet are created.
    user_ids: Vec<String>,
}

impl FromJsonBody for MembersIn {
    /// At most [`MAX_BATCH_ITEMS`] ids (413 beyond), each a valid id (422 naming
    /// every bad one by index).
    fn from_json(body: Value, _: &AppState) -> Result<Self, ApiError> {
        let input: MembersIn = parse_body(body)?;
        if input.user_ids.len() > MAX_BATCH_ITEMS {
            return Err(ApiError::TooLarge(format!(
                "at most {MAX_BATCH_ITEMS} user_ids per request, this one has {}",
                input.user_ids.len()
            )));
        }
        let errors: Vec<_> = input
            .user_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| validate_id(&format!("user_ids[{i}]"), id).err())
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(&errors));
        }
        Ok(input)
    }
}

/// What a bulk membership change did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersAdded {
    topic: String,
    /// Distinct ids in the request.
    requested: usize,
    /// New memberships (the others were members already).
    added: usize,
    /// People who did not exist and were created with default preferences.
    created_users: usize,
}

/// Add up to 1,000 people to a topic at once (existing members stay; unknown people
/// are created).
#[utoipa::path(put, path = "/api/v1/topics/{topic}/members", tag = "topics",
    params(("topic" = String, Path)),
    request_body = MembersIn,
    responses(
        (status = 200, description = "the memberships exist", body = MembersAdded),
        (status = 404, description = "unknown topic", body = ErrorBody),
        (status = 413, description = "more than 1,000 ids", body = ErrorBody),
        (status = 422, description = "an invalid id, named by index", body = ErrorBody),
    ))]
pub async fn put_members(
    NewTopic(topic): NewTopic,
    ValidatedJson(input): ValidatedJson<MembersIn>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let mut ids = input.user_ids;
    ids.sort_unstable();
    ids.dedup();
    match people::add_members(&mut conn, &topic, &ids).await {
        Ok(done) => Ok(HttpResponse::Ok().json(MembersAdded {
            topic,
            requested: ids.len(),
            added: done.added,
            created_users: done.created_users,
        })),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!(
            "unknown topic {topic:?}: create it with PUT /api/v1/topics/{{topic}}"
        ))),
        Err(e) => Err(e.into()),
    }
}
