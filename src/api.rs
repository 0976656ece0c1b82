//! The HTTP listener: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Kept apart from binding (`router` builds the routes, `serve` runs them on a listener) so
//! tests can drive the routes directly.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::policy::PolicyHandle;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The current policy.
    pub policy: PolicyHandle,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
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
