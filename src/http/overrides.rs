//! The overrides API: `GET /api/overrides`, `POST /api/overrides`, `DELETE /api/overrides/{id}`.
//! All behind the API token (they change filtering). A request that cannot be taken gets 400
//! with a message naming the field; nothing is half-applied.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::{Invalid, authorize, bad, error};
use crate::lists::parse::normalise_name;
use crate::overrides::store::{MAX_NAMES, NewOverride};
use crate::overrides::{Kind, Override, OverrideStore, Target};
use crate::policy::{Policy, PolicyHandle};

/// Largest body: 100 names of 253 bytes, with room for the JSON around them.
const MAX_BODY_BYTES: usize = 32 * 1024;

/// The longest `for`: an override meant to last longer is one without an expiry.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the handlers need.
#[derive(Clone)]
pub struct OverridesApi {
    /// The overrides.
    pub overrides: Arc<OverrideStore>,
    /// The policy in force: which devices and profiles exist.
    pub policy: PolicyHandle,
    /// The API token; `None` turns these endpoints off.
    pub api_token: Option<Arc<str>>,
}

/// The routes.
pub fn router(state: OverridesApi) -> Router {
    Router::new()
        .route("/api/overrides", get(list).post(create))
        .route("/api/overrides/{id}", delete(remove))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An override as the API shows it: with `active`, false while its device or profile is not
/// in the config in force (it is kept, and applies again once they are back).
fn shown(rule: &Override, policy: &Policy) -> Value {
    let mut value = serde_json::to_value(rule).unwrap_or_default();
    value["active"] = Value::Bool(target_exists(rule.target(), policy));
    value
}

fn target_exists(target: Target<'_>, policy: &Policy) -> bool {
    match target {
        Target::Everyone => true,
        Target::Device(name) => policy.devices().any(|device| device.name == name),
        Target::Profile(name) => policy.profile_named(name).is_some(),
    }
}

/// `GET /api/overrides`.
async fn list(State(state): State<OverridesApi>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(state.api_token.as_deref(), &headers) {
        return denied.into_response();
    }
    let policy = state.policy.load();
    let shown: Vec<_> = (state.overrides.list().iter())
        .map(|rule| shown(rule, &policy))
        .collect();
    Json(json!({ "overrides": shown })).into_response()
}

/// `POST /api/overrides` with a JSON body (see the README).
async fn create(State(state): State<OverridesApi>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = authorize(state.api_token.as_deref(), &headers) {
        return denied.into_response();
    }
    let now = Timestamp::now();
    let policy = state.policy.load();
    let new = match parse_request(&body, &policy, now) {
        Ok(new) => new,
        Err(invalid) => return invalid.into_response(),
    };
    match state.overrides.add(new, now) {
        Ok(created) => (StatusCode::CREATED, Json(shown(&created, &policy))).into_response(),
        Err(full) => error(StatusCode::CONFLICT, full.to_string()),
    }
}

/// `DELETE /api/overrides/{id}`.
async fn remove(
    State(state): State<OverridesApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(denied) = authorize(state.api_token.as_deref(), &headers) {
        return denied.into_response();
    }
    let Ok(id) = id.parse::<u64>() else {
        return bad("id", format!("`{id}` is not an override id (a number)"));
    };
    match state.overrides.remove(id) {
        Some(removed) => Json(shown(&removed, &state.policy.load())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("id: there is no override {id}"),
        ),
    }
}

/// The override `body` asks for, checked field by field against `policy`.
fn parse_request(body: &[u8], policy: &Policy, now: Timestamp) -> Result<NewOverride, Invalid> {
    let fields: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|problem| Invalid::new("body", format!("not a JSON object: {problem}")))?;
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(Invalid::new(
            unknown,
            format!("unknown field (the fields are {})", FIELDS.join(", ")),
        ));
    }
    let kind = match text_field(&fields, "kind")? {
        Some("pause") => Kind::Pause,
        Some("allow") => Kind::Allow,
        Some("block") => Kind::Block,
        Some(other) => {
            return Err(Invalid::new(
                "kind",
                format!("`{other}` is not pause, allow or block"),
            ));
        }
        None => return Err(Invalid::new("kind", "missing: pause, allow or block")),
    };
    let device = text_field(&fields, "device")?.map(str::to_owned);
    let profile = text_field(&fields, "profile")?.map(str::to_owned);
    if let Some(device) = &device {
        if profile.is_some() {
            return Err(Invalid::new(
                "profile",
                "give a device or a profile, not both",
            ));
        }
        if !target_exists(Target::Device(device), policy) {
            let known: Vec<_> = policy.devices().map(|d| d.name.as_str()).collect();
            return Err(Invalid::new(
                "device",
                format!(
                    "no device is called `{device}` (devices: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    if let Some(profile) = &profile
        && !target_exists(Target::Profile(profile), policy)
    {
        let known: Vec<_> = policy.profiles().iter().map(|p| p.name.as_str()).collect();
        return Err(Invalid::new(
            "profile",
            format!(
                "no profile is called `{profile}` (profiles: {})",
                known.join(", ")
            ),
        ));
    }
    let names = names(&fields, kind)?;
    let expires = expiry(&fields, now)?;
    Ok(NewOverride {
        kind,
        device,
        profile,
        names,
        expires,
    })
}

const FIELDS: [&str; 6] = ["kind", "device", "profile", "names", "for", "until"];

/// The string field `key`, if present; anything but a string is an error naming it.
fn text_field<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Invalid> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Invalid::new(key, "must be a string")),
    }
}

fn names(fields: &Map<String, Value>, kind: Kind) -> Result<Vec<String>, Invalid> {
    let given = match fields.get("names") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(Invalid::new("names", "must be an array of names")),
    };
    match kind {
        Kind::Pause if !given.is_empty() => {
            return Err(Invalid::new(
                "names",
                "a pause covers every name: leave names out",
            ));
        }
        Kind::Allow | Kind::Block if given.is_empty() => {
            return Err(Invalid::new(
                "names",
                "missing: the names to allow or block",
            ));
        }
        _ => {}
    }
    if given.len() > MAX_NAMES {
        return Err(Invalid::new("names", format!("at most {MAX_NAMES} names")));
    }
    given
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let field = format!("names[{index}]");
            let Value::String(name) = item else {
                return Err(Invalid::new(&field, "must be a string"));
            };
            normalise_name(name)
                .map_err(|problem| Invalid::new(&field, format!("`{name}`: {problem}")))
        })
        .collect()
}

fn expiry(fields: &Map<String, Value>, now: Timestamp) -> Result<Option<Timestamp>, Invalid> {
    let until = match (text_field(fields, "for")?, text_field(fields, "until")?) {
        (Some(_), Some(_)) => return Err(Invalid::new("until", "give `for` or `until`, not both")),
        (None, None) => return Ok(None),
        (Some(duration), None) => {
            let parsed = humantime::parse_duration(duration).map_err(|_| {
                Invalid::new(
                    "for",
                    format!("`{duration}` is not a duration like 30m, 1h or 2d"),
                )
            })?;
            if parsed.is_zero() || parsed > MAX_DURATION {
                return Err(Invalid::new(
                    "for",
                    "must be more than 0s and at most a year",
                ));
            }
            let span = jiff::SignedDuration::try_from(parsed)
                .map_err(|_| Invalid::new("for", "too long"))?;
            now.checked_add(span)
                .map_err(|_| Invalid::new("for", "too long"))?
        }
        (None, Some(time)) => time.parse::<Timestamp>().map_err(|_| {
            Invalid::new(
                "until",
                format!("`{time}` is not an RFC 3339 time like 2026-12-24T18:00:00Z"),
            )
        })?,
    };
    if until <= now {
        return Err(Invalid::new("until", "is not in the future"));
    }
    Ok(Some(until))
}
