//! The one API error type. It owns the HTTP mapping: every error leaves as an
//! [`ErrorBody`], `{"error": {"code", "message", "details": [...]}}`; unexpected ones
//! are logged in full and answered with an opaque 500. The OpenAPI document describes
//! errors with these same types, so the document and the wire cannot drift apart.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use herald_core::event::FieldError;
use herald_core::preferences::PreferenceError;
use herald_queue::QueueError;
use herald_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message", "details": [...]}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// e.g. `invalid_request`, `not_found`, `unauthorized`, `payload_too_large`.
    code: &'static str,
    message: String,
    /// For 422: one entry per invalid field.
    details: Vec<Detail>,
}

/// One invalid field, for 422 details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Detail {
    pub field: String,
    pub message: String,
}

impl From<&FieldError> for Detail {
    fn from(e: &FieldError) -> Self {
        Detail {
            field: e.field.clone(),
            message: e.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API key: send Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the resource's state forbids it (e.g. retrying a
    /// notification that has not failed).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// A body that is not JSON by its `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A 400 that names the field at fault (a bad preference level).
    #[error("{message}")]
    BadField {
        message: String,
        details: Vec<Detail>,
    },
    /// A key used outside its scope.
    #[error("{0}")]
    Forbidden(String),
    /// Signed receipts whose signature does not hold.
    #[error("invalid receipts signature: {0}")]
    BadSignature(String),
    /// Too many requests without a valid key from this address.
    #[error(
        "too many requests without a valid API key from this address; retry in {retry_after_s} s"
    )]
    TooManyFailedKeys { retry_after_s: u64 },
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<Detail>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Over the key's rate limit (`HERALD_RATE_LIMIT_PER_S`): retry after this many
    /// seconds.
    #[error("rate limit exceeded: at most {per_second} requests per second per API key; retry in {retry_after_s} s")]
    RateLimited { per_second: u64, retry_after_s: u64 },
    /// Over the open live streams allowed per key in this api process
    /// (`HERALD_MAX_STREAMS_PER_KEY`).
    #[error("too many open streams: at most {max} per API key in each api process (HERALD_MAX_STREAMS_PER_KEY); close one first")]
    TooManyStreams { max: usize },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 naming one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::Invalid {
            message: format!("invalid field {field}: {message}"),
            details: vec![Detail {
                field: field.into(),
                message,
            }],
        }
    }

    pub fn invalid_fields(errors: &[FieldError]) -> ApiError {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::Invalid {
            message,
            details: errors.iter().map(Detail::from).collect(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BadField { .. } => "invalid_request",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadSignature(_) => "unauthorized",
            ApiError::TooManyFailedKeys { .. } => "too_many_failed_keys",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadField { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyFailedKeys { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let details = match self {
            ApiError::Invalid { details, .. } | ApiError::BadField { details, .. } => {
                details.clone()
            }
            _ => Vec::new(),
        };
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unavailable(_)) {
            resp.insert_header(("Retry-After", "5"));
        }
        if let ApiError::RateLimited { retry_after_s, .. }
        | ApiError::TooManyFailedKeys { retry_after_s } = self
        {
            resp.insert_header(("Retry-After", retry_after_s.to_string()));
        }
        resp.json(ErrorBody {
            error: ErrorInfo {
                code: self.code(),
                message,
                details,
            },
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("the database is unavailable: {m}"))
            }
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Query(q) => ApiError::Internal(anyhow::Error::new(q)),
        }
    }
}

/// A bad level is a 400 (shop-alert clients expect it) naming `level` in its details;
/// any other bad preference or person field a 422 naming it.
impl From<PreferenceError> for ApiError {
    fn from(e: PreferenceError) -> Self {
        match e {
            PreferenceError::Level(e) => ApiError::BadField {
                message: e.to_string(),
                details: vec![Detail {
                    field: "level".into(),
                    message: e.to_string(),
                }],
            },
            PreferenceError::Field(e) => ApiError::invalid_field(&e.field, e.message),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

/// JSON errors for actix's own extractors (bad path or query parameters).
pub fn extractor_error(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::BadRequest(err.to_string()).into()
}
