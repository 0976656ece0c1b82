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
//!
//! Every request must name this server in its `Host` header (see `check_host`), so a web page
//! that rebinds its own name to the listener's address cannot read it.
//!
//! Connections are capped (the descriptor budget, [`crate::fd_budget`], sizes the cap) and a
//! client has [`HEADER_TIMEOUT`] to send a request's headers, from the moment it connects or
//! its previous answer went out: a connection that sends nothing, half a request, or nothing
//! more after an answer is closed then. At the cap a new connection takes the slot of the
//! oldest idle one ([`crate::slots`]) and is only closed at once when every connection is
//! working on a request. Not waiting at the cap (leaving newcomers in the kernel's accept
//! queue, where they cost no descriptor) because Prometheus or a health check would then wait
//! behind every idle connection an attacker queued; not closing newcomers at once because
//! idle connections would then lock everyone out for the header timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::http::overrides::{self, OverridesApi};
use crate::http::records::{self, RecordsApi};
use crate::http::{authorize, error};
use crate::metrics::Metrics;
use crate::overrides::OverrideStore;
use crate::policy::PolicyHandle;
use crate::records::Records;
use crate::refresh::Refresher;
use crate::reload::Reloader;
use crate::slots::{Slot, Slots};

/// Largest request body accepted (the API takes its parameters in the query string).
const MAX_BODY_BYTES: usize = 1024;
/// Time a client has to send a request's headers, counted from the connection's start or
/// from its previous answer (so it is the keep-alive idle timeout too).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of descriptors, the listener stays ready: retrying at
/// once would spin a core).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

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
    /// `server.http_hosts`: names `Host` may carry besides the listener's own addresses and
    /// `localhost`.
    pub http_hosts: Arc<[String]>,
    /// The household's overrides.
    pub overrides: Arc<OverrideStore>,
    /// The query log, observe and clients.
    pub records: Arc<Records>,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    let hosts = state.http_hosts.clone();
    let overrides = overrides::router(OverridesApi {
        overrides: state.overrides.clone(),
        policy: state.policy.clone(),
        api_token: state.api_token.clone(),
    });
    let records = records::router(RecordsApi {
        records: state.records.clone(),
        policy: state.policy.clone(),
        overrides: state.overrides.clone(),
        api_token: state.api_token.clone(),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/reload", post(reload))
        .route("/api/lists/refresh", post(refresh_lists))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(overrides)
        .merge(records)
        // Last, so it guards every route merged above.
        .layer(middleware::from_fn_with_state(hosts, check_host))
}

/// The address a request's connection was accepted on (a request extension).
#[derive(Clone, Copy)]
struct ListenerAddr(SocketAddr);

/// Refuses a request whose `Host` does not name this server: against DNS rebinding, where a
/// web page points its own name at the listener and reads the answers as same-origin. The
/// page's name is what such a request carries, so only names the server is known by pass:
/// the address the client connected to, `localhost`, and `server.http_hosts`. The port is not
/// checked: a rebinding page must use the listener's port anyway, and a reverse proxy may
/// forward another.
///
/// 421 Misdirected Request, not 403: the server is not the one that name points at, which
/// is no question of permission (RFC 9110 §15.5.20); the body says which key to extend.
async fn check_host(State(hosts): State<Arc<[String]>>, request: Request, next: Next) -> Response {
    let Some(host) = request.headers().get(HOST) else {
        // RFC 9112 §3.2: a request without Host gets 400.
        return error(StatusCode::BAD_REQUEST, "the Host header is missing");
    };
    let listener = request.extensions().get::<ListenerAddr>().map(|a| a.0.ip());
    let named = host
        .to_str()
        .ok()
        .is_some_and(|host| names_this_server(host, listener, &hosts));
    if !named {
        let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
        let message =
            format!("`Host: {shown}` does not name this server: add the name to server.http_hosts");
        return error(StatusCode::MISDIRECTED_REQUEST, message);
    }
    next.run(request).await
}

/// Whether the `Host` value `host` (a name or address, with or without a port) is `localhost`,
/// `listener` (the address the client connected to) or one of `hosts`.
fn names_this_server(host: &str, listener: Option<IpAddr>, hosts: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(bracketed) => bracketed.split_once(']').map_or("", |(address, _)| address),
        None => host.split_once(':').map_or(host.as_str(), |(name, _)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let own_address = |address: IpAddr| {
        // A dual-stack listener sees IPv4 clients at IPv4-mapped IPv6 addresses.
        listener.is_some_and(|own| own.to_canonical() == address.to_canonical())
    };
    name == "localhost"
        || hosts.iter().any(|allowed| allowed == name)
        || name.parse().is_ok_and(own_address)
}

/// Serves `router` on `listener`, at most `slots` connections at once, until `shutdown` is
/// cancelled; then lets each connection finish the request it is working on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    slots: Arc<Slots>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = slots.admit() else {
            tracing::debug!("HTTP connection refused: every connection is answering a request");
            continue;
        };
        let connection = serve_connection(stream, router.clone(), slot, shutdown.clone());
        connections.spawn(connection);
    }
    connections.close();
    connections.wait().await;
}

/// Serves one connection (HTTP/1.1 with keep-alive) until it ends, is evicted or `shutdown`.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    slot: Slot,
    shutdown: CancellationToken,
) {
    let listener = stream.local_addr().ok().map(ListenerAddr);
    let slot = Arc::new(slot);
    let service = {
        let slot = slot.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            // Busy while the answer is made, so the connection is not evicted under it.
            let busy = slot.busy();
            if let Some(listener) = listener {
                request.extensions_mut().insert(listener);
            }
            let answer = busy.is_some().then(|| router.clone().call(request));
            async move {
                let Some(answer) = answer else {
                    // Evicted between two requests: the newcomer has the slot.
                    let mut refused =
                        error(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
                    let close = HeaderValue::from_static("close");
                    refused.headers_mut().insert(CONNECTION, close);
                    return Ok::<_, Infallible>(refused);
                };
                let response = answer.await;
                drop(busy);
                response
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "HTTP connection ended");
            }
        }
        // Idle (or it would not have been chosen): closing it loses no answer.
        () = slot.evicted() => {}
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
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
    if let Err(denied) = authorize(state.api_token.as_deref(), &headers) {
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
    if let Err(denied) = authorize(state.api_token.as_deref(), &headers) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_the_server_by_its_address_localhost_or_a_configured_name() {
        let hosts: Vec<String> = vec!["metasink.lan".into()];
        let v4 = Some("192.168.1.2".parse().unwrap());
        let mapped = Some("::ffff:192.168.1.2".parse().unwrap());
        let v6 = Some("fd00::2".parse().unwrap());
        for (host, listener) in [
            ("192.168.1.2", v4),
            ("192.168.1.2:9353", v4),
            ("192.168.1.2:9353", mapped),
            ("[fd00::2]:9353", v6),
            ("[FD00::2]", v6),
            ("localhost:9353", None),
            ("LocalHost", v4),
            ("metasink.lan", v4),
            ("Metasink.Lan.:9353", v4),
        ] {
            assert!(names_this_server(host, listener, &hosts), "{host}");
        }
        for (host, listener) in [
            ("rebind.attacker.example:9353", v4),
            ("192.168.1.3:9353", v4),
            ("[fd00::3]:9353", v6),
            ("localhost.attacker.example", v4),
            ("metasink.lan.attacker.example", v4),
            ("", v4),
            ("[fd00::2", v6),
        ] {
            assert!(!names_this_server(host, listener, &hosts), "{host}");
        }
    }
}
