//! Reading JSON bodies with Herald's limits: over 1 MiB is a 413 (checked against
//! `Content-Length` before reading, and while reading for chunked bodies), malformed
//! JSON or invalid UTF-8 a 400. serde_json's recursion limit turns absurdly deep
//! nesting into a 400 as well, never a stack overflow.

use crate::error::ApiError;
use actix_web::web;
use actix_web::HttpRequest;
use futures::StreamExt;
use serde_json::Value;

pub const MAX_BODY_BYTES: usize = 1 << 20;

pub async fn read_json(req: &HttpRequest, mut payload: web::Payload) -> Result<Value, ApiError> {
    let too_large =
        || ApiError::TooLarge(format!("the body exceeds {MAX_BODY_BYTES} bytes (1 MiB)"));
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty; expected JSON".into(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// Parses a JSON value into `T`, turning serde's message (which names the field) into
/// a 422.
pub fn parse_body<T: for<'de> serde::Deserialize<'de>>(body: Value) -> Result<T, ApiError> {
    // Postgres stores no NUL character: refuse it here, naming where, rather than
    // let the insert fail with a 500.
    if let Some(at) = herald_core::event::nul_path(&body) {
        let field = at.trim_start_matches('.');
        let field = if field.is_empty() { "body" } else { field };
        return Err(ApiError::invalid_field(
            field,
            herald_core::event::nul_message(""),
        ));
    }
    serde_json::from_value(body).map_err(|e| ApiError::Invalid {
        message: e.to_string(),
        details: vec![crate::error::Detail {
            field: "body".into(),
            message: e.to_string(),
        }],
    })
}
