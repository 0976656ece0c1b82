//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz`, and the state-changing
//! API (`POST /api/reload`, `POST /api/lists/refresh`).
//!
//! State-changing endpoints are POST only (a GET gets 405 and changes nothing), need
//! `Authorization: Bearer <server.api_token>` compared in constant time, and are off (403)
//! when no token is configured. Request bodies are capped; no CORS headers are ever sent, so
//! a web page in a household browser cannot drive the API. Kept apart from binding (`router`
//! builds the routes, `serve` runs them) so tests can drive the routes directly.
//!
//! A state change, once accepted, runs to the end even if the client hangs up: see
//! `run_to_completion`.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::policy::PolicyHandle;
use crate::refresh::Refresher;
use crate::reload::Reloader;

/// Largest request body accepted (the API takes its parameters in the query string).
const MAX_BODY_BYTES: usize = 1024;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The current policy.
    pub policy: PolicyHandle,
    /// Rebuilds the policy.
    pub reloader: Arc<Reloader>,
    /// Downloads URL lists.
    pub refresher: Arc<Refresher>,
    /// The bearer token of state-changing endpoints; `None` turns them off.
    pub api_token: Option<Arc<str>>,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/reload", post(reload))
        .route("/api/lists/refresh", post(refresh_lists))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "HTTP listener stopped");
    }
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// The DNS listeners are bound before this listener, so answering at all means they are up.
/// Lists that could not be loaded make the status "degraded" (still 200: the house resolves).
async fn healthz(State(state): State<ApiState>) -> impl IntoResponse {
    let policy = state.policy.load();
    let not_loaded: Vec<_> = policy
        .lists()
        .iter()
        .filter_map(|list| {
            let error = list.load_error.as_ref()?;
            Some(json!({ "list": list.id, "reason": error }))
        })
        .collect();
    let status = if not_loaded.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "policy_generation": policy.generation(),
        "lists_not_loaded": not_loaded,
    }))
}

/// A JSON error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Why a state-changing request was turned away.
enum Denied {
    /// No token is configured: the endpoints are off.
    Off,
    /// The request's token is missing or wrong.
    BadToken,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Off => error(
                StatusCode::FORBIDDEN,
                "state-changing endpoints are off: set server.api_token",
            ),
            Self::BadToken => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
        }
    }
}

/// Lets a state-changing request through only with the configured bearer token.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = state.api_token.as_ref().ok_or(Denied::Off)?;
    if bearer_token_matches(expected, headers) {
        Ok(())
    } else {
        Err(Denied::BadToken)
    }
}

/// Whether the request's `Authorization: Bearer` token is `expected`.
pub(crate) fn bearer_token_matches(expected: &str, headers: &HeaderMap) -> bool {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time, so the comparison does not tell an attacker how much of a guess was right.
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Runs the state change `work` on its own task and waits for it.
///
/// hyper drops a handler's future when the client's connection closes. Dropped halfway, a
/// refresh would have stored a new list copy but never rebuilt the policy from it (and the
/// next refresh gets 304, so it would stay unapplied until a reload), and a reload would
/// leave its compile running after releasing the reloader's lock, so a retry could build a
/// second snapshot alongside it. A spawned task is not dropped with the connection: the work
/// finishes, and only its answer is lost.
async fn run_to_completion<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, Response> {
    tokio::spawn(work).await.map_err(|failure| {
        // The task panicked (a bug; the panic hook has printed it) or the runtime is shutting
        // down. Either way no new snapshot was swapped in: the policy in force stays.
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {failure}"),
        )
    })
}

/// `POST /api/reload`: re-read the config and every list, as SIGHUP does.
async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
    let reloader = state.reloader.clone();
    let outcome = run_to_completion(async move { reloader.reload_config().await }).await;
    match outcome {
        Err(failed) => failed,
        Ok(Ok(generation)) => {
            Json(json!({ "result": "reloaded", "policy_generation": generation })).into_response()
        }
        Ok(Err(failure)) => error(StatusCode::BAD_REQUEST, format!("{failure:#}")),
    }
}

/// `?list=ID` of `POST /api/lists/refresh`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshParams {
    list: Option<String>,
}

/// `POST /api/lists/refresh[?list=ID]`: download URL lists now.
async fn refresh_lists(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<RefreshParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "the only parameter is list=ID");
    };
    let refresher = state.refresher.clone();
    let outcome =
        run_to_completion(async move { refresher.refresh_now(params.list.as_deref()).await }).await;
    match outcome {
        Err(failed) => failed,
        Ok(Ok(results)) => Json(json!({ "lists": results })).into_response(),
        Ok(Err(message)) => error(StatusCode::NOT_FOUND, message),
    }
}
