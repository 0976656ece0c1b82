//! The API's routes by area, merged into the listener's router by [`crate::api`], and what
//! every handler shares: the bearer-token check and JSON errors that name what is wrong.

// A handler's error is the response it sends (axum's `Response`, 128 bytes): boxing it would
// only move the same bytes to the heap on the rare error path.
#![allow(
    clippy::result_large_err,
    reason = "handlers return axum's Response as their error"
)]

pub mod overrides;
pub mod records;

use axum::Json;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

/// A JSON error response: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A 400 naming the parameter or field that is wrong.
pub fn bad(field: &str, problem: impl std::fmt::Display) -> Response {
    Invalid::new(field, problem).into_response()
}

/// A parameter or field that is wrong, and why: answered 400 naming it. Small, so parsers can
/// return it in a `Result` cheaply.
#[derive(Debug)]
pub struct Invalid(String);

impl Invalid {
    /// `field` is wrong because of `problem`.
    pub fn new(field: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {problem}"))
    }
}

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// Why a request was turned away before its handler ran.
#[derive(Debug)]
pub enum Denied {
    /// No token is configured: the endpoint is off (403).
    Off,
    /// The request's token is missing or wrong (401).
    BadToken,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Off => error(
                StatusCode::FORBIDDEN,
                "this endpoint is off: set server.api_token",
            ),
            Self::BadToken => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
        }
    }
}

/// Lets a request through only with `Authorization: Bearer <token>` matching `expected`; with
/// no token configured the endpoint is off, so nothing that reveals browsing or changes
/// filtering is ever open.
pub fn authorize(expected: Option<&str>, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = expected.ok_or(Denied::Off)?;
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time, so the comparison does not tell an attacker how much of a guess was right.
    match bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        true => Ok(()),
        false => Err(Denied::BadToken),
    }
}
