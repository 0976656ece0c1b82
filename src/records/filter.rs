//! What `/api/queries` and `metasink log` ask for: the same filter runs as SQL over the
//! database and as a predicate over the in-memory ring.

use std::net::IpAddr;

use super::entry::{LogEntry, LogResult, Timestamp};
use crate::net::is_same_or_below;

/// The most entries one request returns.
pub const MAX_LIMIT: usize = 10_000;
/// Entries returned when the request does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// A query log filter. Every field that is set must match.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The device's name.
    pub device: Option<String>,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The name asked: exactly, or a subdomain of it.
    pub name: Option<String>,
    /// How it was answered.
    pub result: Option<LogResult>,
    /// Only entries after this time.
    pub since: Option<Timestamp>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            device: None,
            client: None,
            name: None,
            result: None,
            since: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl Filter {
    /// Whether `entry` passes.
    pub fn keeps(&self, entry: &LogEntry) -> bool {
        self.device
            .as_ref()
            .is_none_or(|device| *device == entry.device)
            && self.client.is_none_or(|client| client == entry.client)
            && self
                .name
                .as_ref()
                .is_none_or(|name| is_same_or_below(&entry.name, name))
            && self
                .result
                .is_none_or(|result| result.as_str() == entry.result)
            && self.since.is_none_or(|since| entry.time > since)
    }
}
