//! The read-only API over the records layer and the policy: `/api/queries`,
//! `/api/queries/stream`, `/api/observe`, `/api/clients` and `/api/explain`. All GET, all
//! behind the API token (a query log is as private as a browser history: with no token
//! configured they are off, 403). Parameters are checked one by one; a bad one gets 400 with
//! a message naming it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::broadcast;

use crate::dns::Question;
use crate::explain::{Role, Viewpoint, explain};
use crate::http::{authorize, bad, error};
use crate::overrides::OverrideStore;
use crate::policy::PolicyHandle;
use crate::policy::matcher::Scope;
use crate::records::filter::MAX_LIMIT;
use crate::records::{Filter, LogEntry, LogResult, Records, Timestamp};

/// What the handlers need.
#[derive(Clone)]
pub struct RecordsApi {
    /// The records layer.
    pub records: Arc<Records>,
    /// The policy in force (for explain).
    pub policy: PolicyHandle,
    /// The daemon's live overrides, so explain agrees with what clients get.
    pub overrides: Arc<OverrideStore>,
    /// The API token; `None` turns these endpoints off.
    pub api_token: Option<Arc<str>>,
}

/// The routes.
pub fn router(state: RecordsApi) -> Router {
    Router::new()
        .route("/api/queries", get(queries))
        .route("/api/queries/stream", get(stream))
        .route("/api/observe", get(observe))
        .route("/api/clients", get(clients))
        .route("/api/explain", get(explain_name))
        .with_state(state)
}

/// The parameters of `/api/queries/stream`: what an entry must match.
const FILTER_PARAMS: [&str; 4] = ["device", "client", "name", "result"];
/// The parameters of `/api/queries`: the filter, where to start and how many.
const QUERIES_PARAMS: [&str; 6] = ["device", "client", "name", "result", "since", "limit"];
/// The parameters of `/api/explain`.
const EXPLAIN_PARAMS: [&str; 4] = ["name", "client", "profile", "type"];

/// The query string, as given.
type Params = Query<HashMap<String, String>>;

/// Refuses parameters other than `known`, naming the first.
fn only(params: &HashMap<String, String>, known: &[&str]) -> Result<(), Response> {
    match params.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(bad(
            key,
            format!("unknown; the parameters are {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The filter of `/api/queries` (`with_limit`) or its stream.
fn filter(params: &HashMap<String, String>, with_limit: bool) -> Result<Filter, Response> {
    let mut filter = Filter::default();
    for (key, value) in params {
        match key.as_str() {
            "device" => filter.device = Some(value.clone()),
            "client" => {
                let client = value
                    .parse::<IpAddr>()
                    .map_err(|_| bad(key, format!("`{value}` is not an IP address")))?;
                filter.client = Some(client.to_canonical());
            }
            "name" => filter.name = Some(normal_name(key, value)?),
            "result" => {
                let result = LogResult::ALL
                    .into_iter()
                    .find(|result| result.as_str() == value);
                let words: Vec<&str> = LogResult::ALL
                    .iter()
                    .map(|result| result.as_str())
                    .collect();
                filter.result = Some(result.ok_or_else(|| {
                    bad(key, format!("`{value}` is not one of {}", words.join(", ")))
                })?);
            }
            "since" => filter.since = Some(since(key, value)?),
            "limit" if with_limit => {
                filter.limit = match value.parse::<usize>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                    _ => {
                        return Err(bad(
                            key,
                            format!("`{value}` is not a number from 1 to {MAX_LIMIT}"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(filter)
}

/// A name as the log keeps it: lower case, no trailing dot.
fn normal_name(key: &str, value: &str) -> Result<String, Response> {
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(bad(key, "is not a DNS name"));
    }
    Ok(name)
}

/// `since=`: an RFC 3339 time, or a duration back from now (`10m`, `1h`).
fn since(key: &str, value: &str) -> Result<Timestamp, Response> {
    if let Some(time) = Timestamp::parse_rfc3339(value) {
        return Ok(time);
    }
    match humantime::parse_duration(value) {
        Ok(back) => Ok(Timestamp::now().minus(back)),
        Err(_) => Err(bad(
            key,
            format!("`{value}` is neither an RFC 3339 time nor a duration like 10m"),
        )),
    }
}

/// Lets a request through with the right token and only the `known` parameters.
fn admit(
    state: &RecordsApi,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(), Response> {
    authorize(state.api_token.as_deref(), headers).map_err(IntoResponse::into_response)?;
    only(params, known)
}

/// `GET /api/queries`: log entries, newest first.
async fn queries(
    State(state): State<RecordsApi>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Response> {
    admit(&state, &headers, &params, &QUERIES_PARAMS)?;
    let filter = filter(&params, true)?;
    let records = state.records.clone();
    // SQLite blocks: off the runtime's threads.
    match tokio::task::spawn_blocking(move || records.queries(&filter)).await {
        Ok(Ok(entries)) => Ok(Json(json!({ "queries": entries })).into_response()),
        Ok(Err(message)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, message)),
        Err(failure) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            failure.to_string(),
        )),
    }
}

/// `GET /api/queries/stream`: server-sent events, one `query` event (a JSON entry) per new
/// entry the filter keeps; a `lagged` event tells a reader it fell behind and missed some.
async fn stream(
    State(state): State<RecordsApi>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Response> {
    admit(&state, &headers, &params, &FILTER_PARAMS)?;
    let filter = filter(&params, false)?;
    let receiver = state.records.subscribe();
    let events =
        futures_util::stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(entry) if filter.keeps(&entry) => query_event(&entry),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Event::default().event("lagged").data(missed.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok::<_, Infallible>(event), (receiver, filter)));
            }
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn query_event(entry: &LogEntry) -> Event {
    let data = serde_json::to_string(entry).unwrap_or_default();
    Event::default().event("query").data(data)
}

/// `GET /api/observe[?device=D]`: the Meta names each device asked.
async fn observe(
    State(state): State<RecordsApi>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Response> {
    admit(&state, &headers, &params, &["device"])?;
    let device = params.get("device").map(String::as_str);
    let names = state.records.observed(device);
    Ok(Json(json!({ "names": names })).into_response())
}

/// `GET /api/clients`: the clients seen.
async fn clients(
    State(state): State<RecordsApi>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Response> {
    admit(&state, &headers, &params, &[])?;
    Ok(Json(json!({ "clients": state.records.clients() })).into_response())
}

/// `GET /api/explain?name=N[&client=IP|&profile=P][&type=T]`: what `metasink explain`
/// prints, as JSON (its text too, under `text`).
async fn explain_name(
    State(state): State<RecordsApi>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Response> {
    admit(&state, &headers, &params, &EXPLAIN_PARAMS)?;
    let name = params
        .get("name")
        .ok_or_else(|| bad("name", "is required"))?;
    let policy = state.policy.load();
    let viewpoint = match (params.get("client"), params.get("profile")) {
        (Some(_), Some(_)) => return Err(bad("profile", "give client or profile, not both")),
        (Some(client), None) => Viewpoint::Client(
            (client.parse::<IpAddr>())
                .map_err(|_| bad("client", format!("`{client}` is not an IP address")))?,
        ),
        (None, Some(profile)) => Viewpoint::Profile(profile.clone()),
        (None, None) => Viewpoint::Profile(policy.default_profile().name.clone()),
    };
    let qtype = params.get("type").map_or("A", String::as_str);
    let question = Question::parse(name, qtype).map_err(|problem| {
        // The name alone parses: the type is what is wrong.
        let parameter = if Question::parse(name, "A").is_ok() {
            "type"
        } else {
            "name"
        };
        bad(parameter, problem)
    })?;
    // explain runs the query path on a runtime of its own: off this one's threads.
    let (policy, overrides) = (state.policy.load_full(), state.overrides.clone());
    let explanation =
        tokio::task::spawn_blocking(move || explain(&policy, overrides, &viewpoint, &question))
            .await
            .map_err(|failure| error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()))?
            .map_err(|problem| bad("profile", problem))?;
    let hits: Vec<_> = (explanation.hits.iter())
        .map(|hit| {
            json!({
                "list": hit.list,
                "entry": hit.entry,
                "scope": match hit.scope { Scope::Exact => "exact", Scope::Subdomains => "subdomains" },
                "exception": hit.exception,
                "role": match hit.role { Role::Blocks => "blocks", Role::Allows => "allows", Role::Unused => "unused" },
            })
        })
        .collect();
    let (client, device) = match &explanation.client {
        Some((address, device)) => (Some(address.to_string()), device.clone()),
        None => (None, None),
    };
    Ok(Json(json!({
        "name": explanation.name,
        "client": client,
        "device": device,
        "profile": explanation.profile,
        "profile_blocks": explanation.profile_blocks,
        "profile_allows": explanation.profile_allows,
        "profile_block_networks": explanation.profile_block_networks,
        "lists": hits,
        "allowed_by": explanation.allowed_by,
        "blocked_by": explanation.blocked_by,
        "overridden_by": explanation.overridden_by,
        "schedule": explanation.schedule,
        "answer": explanation.answer,
        "text": explanation.to_string(),
    }))
    .into_response())
}
