//! Prometheus metrics: the names (as constants tests can import), one registry, and handles
//! resolved ahead of time so the query path only increments.
//!
//! Label values come from the config (device, profile, list and upstream names) or from small
//! fixed sets (query type, result, error kind), plus `unknown`/`default`: never a client
//! address or a query name, so the number of series stays bounded whatever clients send.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The query types metrics name one by one (the `qtype` label); every other type is counted as
/// "other", so the label set stays bounded whatever clients send.
pub const QTYPE_LABELS: &[&str] = &[
    "A", "AAAA", "CNAME", "HTTPS", "SVCB", "MX", "TXT", "PTR", "SRV", "NS", "SOA", "ANY", "other",
];

use crate::lists::download::REFRESH_ERROR_REASONS;

/// Queries answered, by device, profile, query type and result.
pub const QUERIES_TOTAL: &str = "metasink_queries_total";
/// Blocked queries, by device, profile and the list that blocked them.
pub const BLOCKED_TOTAL: &str = "metasink_blocked_total";
/// Questions answered from the cache.
pub const CACHE_HITS_TOTAL: &str = "metasink_cache_hits_total";
/// Questions the cache could not answer.
pub const CACHE_MISSES_TOTAL: &str = "metasink_cache_misses_total";
/// Answers in the cache.
pub const CACHE_ENTRIES: &str = "metasink_cache_entries";
/// Time an upstream took to answer, by upstream.
pub const UPSTREAM_DURATION_SECONDS: &str = "metasink_upstream_duration_seconds";
/// Failed upstream attempts, by upstream and kind.
pub const UPSTREAM_ERRORS_TOTAL: &str = "metasink_upstream_errors_total";
/// Whether each upstream is in use (1) or skipped after repeated failures (0), by upstream.
pub const UPSTREAM_HEALTHY: &str = "metasink_upstream_healthy";
/// 1 for each configured upstream, by upstream and protocol (udp, tcp, tls, https). An info
/// series of its own: a `protocol` label on the other upstream series would change the
/// documented label sets of series that exist already.
pub const UPSTREAM_INFO: &str = "metasink_upstream_info";
/// Expired answers served because no upstream answered in time (RFC 8767 serve-stale). They
/// are also counted with `result="cached"` in [`QUERIES_TOTAL`], whose result set is fixed.
pub const STALE_ANSWERS_TOTAL: &str = "metasink_stale_answers_total";
/// Entries loaded from each list.
pub const LIST_ENTRIES: &str = "metasink_list_entries";
/// Lines skipped as invalid while loading each list (every load and reload adds them again).
pub const LIST_INVALID_LINES_TOTAL: &str = "metasink_list_invalid_lines_total";
/// Invalid lines in each list as loaded now.
pub const LIST_INVALID_LINES: &str = "metasink_list_invalid_lines";
/// Whether each list is loaded (1) or not (0).
pub const LIST_LOADED: &str = "metasink_list_loaded";
/// Config reloads, by result (success, failure).
pub const CONFIG_RELOAD_TOTAL: &str = "metasink_config_reload_total";
/// Generation of the policy snapshot in force.
pub const POLICY_GENERATION: &str = "metasink_policy_generation";
/// When each downloaded list was last fetched or confirmed unchanged.
pub const LIST_LAST_REFRESH_TIMESTAMP_SECONDS: &str =
    "metasink_list_last_refresh_timestamp_seconds";
/// Refreshes of downloaded lists, by result (updated, not_modified, failed).
pub const LIST_REFRESH_TOTAL: &str = "metasink_list_refresh_total";
/// Failed refreshes of downloaded lists, by reason.
pub const LIST_REFRESH_ERRORS_TOTAL: &str = "metasink_list_refresh_errors_total";
/// Size of each downloaded list's stored copy.
pub const LIST_BYTES: &str = "metasink_list_bytes";
/// Time from receiving a query to having its answer, by result.
pub const REQUEST_DURATION_SECONDS: &str = "metasink_request_duration_seconds";
/// Queries an override decided, by device, profile and the override's kind.
pub const OVERRIDE_DECISIONS_TOTAL: &str = "metasink_override_decisions_total";
/// Overrides in force, by kind.
pub const OVERRIDES_ACTIVE: &str = "metasink_overrides_active";
/// 1 for the profile each device has right now (its schedule's, else its own), 0 for the
/// other profiles its schedule can give it.
pub const DEVICE_PROFILE: &str = "metasink_device_profile";

/// The kinds of override: the `kind` label of the override metrics.
pub const OVERRIDE_KINDS: [&str; 3] = ["pause", "allow", "block"];
/// Always 1; the version is a label.
pub const BUILD_INFO: &str = "metasink_build_info";
/// Queries refused because the client is not in `server.allow_from`.
pub const REFUSED_TOTAL: &str = "metasink_refused_total";
/// Queries dropped, unanswered, because the client exceeded its rate limit.
pub const RATE_LIMITED_TOTAL: &str = "metasink_rate_limited_total";
/// Queries dropped, unanswered, because the client (`limit="client"`) or everyone
/// (`limit="total"`) had as many upstream fetches in flight as allowed.
pub const FETCH_LIMITED_TOTAL: &str = "metasink_fetch_limited_total";
/// Query log entries written to the database.
pub const QUERYLOG_WRITTEN_TOTAL: &str = "metasink_querylog_written_total";
/// Query log entries dropped because the queue to the writer was full.
pub const QUERYLOG_DROPPED_TOTAL: &str = "metasink_querylog_dropped_total";
/// Failed writes (and prunes) of the query log database.
pub const QUERYLOG_WRITE_ERRORS_TOTAL: &str = "metasink_querylog_write_errors_total";
/// Size of the query log database on disk, its WAL included.
pub const QUERYLOG_DATABASE_BYTES: &str = "metasink_querylog_database_bytes";
/// Queries an observe-mode profile would have blocked, by device, profile and list.
pub const WOULD_BLOCK_TOTAL: &str = "metasink_would_block_total";
/// Replies sent, by response code ([`RCODE_LABELS`]): every reply, whatever its result.
pub const RESPONSES_TOTAL: &str = "metasink_responses_total";

/// The `result` label of [`CONFIG_RELOAD_TOTAL`].
pub const CONFIG_RELOAD_RESULTS: [&str; 2] = ["success", "failure"];
/// The `result` label of [`LIST_REFRESH_TOTAL`].
pub const LIST_REFRESH_RESULTS: [&str; 3] = ["updated", "not_modified", "failed"];
/// The `rcode` label of [`RESPONSES_TOTAL`], indexed by response code; codes past NOTIMP and
/// REFUSED (BADVERS, the dynamic-update codes) are rare enough to share `other`.
pub const RCODE_LABELS: [&str; 7] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "other",
];

/// How a query was answered: the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryResult {
    /// A list of the client's profile blocked the name (or a name in its answer).
    Blocked,
    /// Answered from the cache.
    Cached,
    /// Answered by an upstream.
    Forwarded,
    /// No upstream answered in time.
    ServFail,
    /// Refused (admission, or a question we do not serve).
    Refused,
    /// Answered at home: a local name, or a private reverse zone or `home.arpa` name.
    Local,
}

impl QueryResult {
    /// Every result, in label order.
    pub const ALL: [Self; 6] = [
        Self::Blocked,
        Self::Cached,
        Self::Forwarded,
        Self::ServFail,
        Self::Refused,
        Self::Local,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Cached => "cached",
            Self::Forwarded => "forwarded",
            Self::ServFail => "servfail",
            Self::Refused => "refused",
            Self::Local => "local",
        }
    }
}

/// Kinds of upstream failure: the `kind` label.
pub const UPSTREAM_ERROR_KINDS: &[&str] = &[
    "timeout", "io", "tls", "servfail", "refused", "unusable", "other",
];

/// Buckets for the time to answer a query: fine below a millisecond, where cache hits and
/// blocks land (10 µs to 1 ms), then on to 5 s, where SERVFAILs (1–2 s, after the upstream
/// deadline) and stale answers (about 1.8 s) land: a p99 must never stop at the last bucket.
const REQUEST_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];
/// Buckets for round trips to an upstream: 1 ms to 5 s.
const NETWORK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];

/// The registry and every metric family.
pub struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    blocked: IntCounterVec,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_entries: IntGauge,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    upstream_healthy: IntGaugeVec,
    upstream_info: IntGaugeVec,
    stale_answers: IntCounter,
    list_entries: IntGaugeVec,
    list_invalid_lines: IntCounterVec,
    list_invalid_lines_now: IntGaugeVec,
    list_loaded: IntGaugeVec,
    request_duration: HistogramVec,
    config_reloads: IntCounterVec,
    policy_generation: IntGauge,
    list_last_refresh: IntGaugeVec,
    list_refreshes: IntCounterVec,
    list_refresh_errors: IntCounterVec,
    list_bytes: IntGaugeVec,
    refused: IntCounter,
    rate_limited: IntCounter,
    fetch_limited: IntCounterVec,
    override_decisions: IntCounterVec,
    overrides_active: IntGaugeVec,
    device_profile: IntGaugeVec,
    responses: IntCounterVec,
    would_block: IntCounterVec,
    querylog: QuerylogCounters,
}

/// The query log's handles.
#[derive(Clone)]
pub struct QuerylogCounters {
    /// Entries written to the database.
    pub written: IntCounter,
    /// Entries dropped at the full queue.
    pub dropped: IntCounter,
    /// Failed database writes.
    pub write_errors: IntCounter,
    /// The database's size.
    pub database_bytes: IntGauge,
}

/// Per-client handles: one counter per (query type, result), one per blocking list, one per
/// kind of override, and whether this (device, profile) pair is the one in force.
pub struct ClientCounters {
    queries: Vec<[IntCounter; QueryResult::ALL.len()]>,
    blocked: Vec<Option<IntCounter>>,
    overrides: [IntCounter; OVERRIDE_KINDS.len()],
    in_force: IntGauge,
}

impl ClientCounters {
    /// Counts one query of type `qtype_label` answered with `result`.
    pub fn count_query(&self, qtype_label: &str, result: QueryResult) {
        let row = QTYPE_LABELS
            .iter()
            .position(|label| *label == qtype_label)
            .unwrap_or(QTYPE_LABELS.len() - 1);
        self.queries[row][result as usize].inc();
    }

    /// Counts one query in row `qtype_row` of `QTYPE_LABELS` (see `Question::qtype_row`),
    /// answered with `result`: the hot path's form of [`Self::count_query`].
    pub fn count_query_row(&self, qtype_row: usize, result: QueryResult) {
        if let Some(row) = self.queries.get(qtype_row) {
            row[result as usize].inc();
        }
    }

    /// Counts one query blocked by the list at `list_index`.
    pub fn count_block(&self, list_index: usize) {
        if let Some(Some(counter)) = self.blocked.get(list_index) {
            counter.inc();
        }
    }
    /// Counts one query an override of `kind` (one of [`OVERRIDE_KINDS`]) decided.
    pub fn count_override(&self, kind: &str) {
        if let Some(index) = OVERRIDE_KINDS.iter().position(|known| *known == kind) {
            self.overrides[index].inc();
        }
    }

    /// Marks this device's profile as the one in force (1) or not (0).
    pub fn set_in_force(&self, in_force: bool) {
        self.in_force.set(i64::from(in_force));
    }
}

/// Handles for one upstream.
#[derive(Clone)]
pub struct UpstreamCounters {
    /// Round-trip time of answered attempts.
    pub duration: Histogram,
    /// 1 while the upstream is in use, 0 while it is skipped (see `dns::upstream`).
    pub healthy: IntGauge,
    errors: Vec<IntCounter>,
}

impl UpstreamCounters {
    /// Counts one failed attempt of `kind` (one of [`UPSTREAM_ERROR_KINDS`]).
    pub fn count_error(&self, kind: &str) {
        let index = UPSTREAM_ERROR_KINDS
            .iter()
            .position(|known| *known == kind)
            .unwrap_or(UPSTREAM_ERROR_KINDS.len() - 1);
        self.errors[index].inc();
    }
}

/// Counters of replies by response code ([`RESPONSES_TOTAL`]).
#[derive(Clone)]
pub struct ResponseCounters {
    by_rcode: [IntCounter; RCODE_LABELS.len()],
}

impl ResponseCounters {
    /// Counts one reply with the response code `rcode` (the header's four bits and the
    /// OPT record's upper eight together).
    pub fn count(&self, rcode: u16) {
        let other = RCODE_LABELS.len() - 1;
        let index = usize::from(rcode).min(other);
        self.by_rcode[index].inc();
    }
}

/// Cache handles, shared with the cache.
#[derive(Clone)]
pub struct CacheCounters {
    /// Hits.
    pub hits: IntCounter,
    /// Misses.
    pub misses: IntCounter,
    /// Current number of entries.
    pub entries: IntGauge,
    /// Expired answers served stale.
    pub stale_answers: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Self {
            queries: counter_vec(
                &registry,
                QUERIES_TOTAL,
                "Queries answered",
                &["device", "profile", "qtype", "result"],
            ),
            blocked: counter_vec(
                &registry,
                BLOCKED_TOTAL,
                "Queries blocked",
                &["device", "profile", "list"],
            ),
            cache_hits: counter(
                &registry,
                CACHE_HITS_TOTAL,
                "Questions answered from the cache",
            ),
            cache_misses: counter(&registry, CACHE_MISSES_TOTAL, "Questions not in the cache"),
            cache_entries: gauge(&registry, CACHE_ENTRIES, "Answers in the cache"),
            upstream_duration: histogram_vec(
                &registry,
                UPSTREAM_DURATION_SECONDS,
                "Upstream round-trip time",
                &["upstream"],
                NETWORK_BUCKETS,
            ),
            upstream_errors: counter_vec(
                &registry,
                UPSTREAM_ERRORS_TOTAL,
                "Failed upstream attempts",
                &["upstream", "kind"],
            ),
            upstream_healthy: gauge_vec(
                &registry,
                UPSTREAM_HEALTHY,
                "1 while the upstream is in use, 0 while it is skipped after repeated failures",
                &["upstream"],
            ),
            upstream_info: gauge_vec(
                &registry,
                UPSTREAM_INFO,
                "1 for each configured upstream, with the protocol queries go over",
                &["upstream", "protocol"],
            ),
            stale_answers: counter(
                &registry,
                STALE_ANSWERS_TOTAL,
                "Expired answers served because no upstream answered in time",
            ),
            list_entries: gauge_vec(
                &registry,
                LIST_ENTRIES,
                "Entries loaded from the list",
                &["list"],
            ),
            list_invalid_lines: counter_vec(
                &registry,
                LIST_INVALID_LINES_TOTAL,
                "Invalid lines skipped while loading the list",
                &["list"],
            ),
            list_invalid_lines_now: gauge_vec(
                &registry,
                LIST_INVALID_LINES,
                "Invalid lines skipped in the list as loaded now",
                &["list"],
            ),
            list_loaded: gauge_vec(
                &registry,
                LIST_LOADED,
                "1 when the list is loaded",
                &["list"],
            ),
            request_duration: histogram_vec(
                &registry,
                REQUEST_DURATION_SECONDS,
                "Time to answer a query",
                &["result"],
                REQUEST_BUCKETS,
            ),
            config_reloads: counter_vec(
                &registry,
                CONFIG_RELOAD_TOTAL,
                "Config reloads",
                &["result"],
            ),
            policy_generation: gauge(
                &registry,
                POLICY_GENERATION,
                "Generation of the policy in force",
            ),
            list_last_refresh: gauge_vec(
                &registry,
                LIST_LAST_REFRESH_TIMESTAMP_SECONDS,
                "Last successful refresh of the list (Unix time)",
                &["list"],
            ),
            list_refreshes: counter_vec(
                &registry,
                LIST_REFRESH_TOTAL,
                "Refreshes of downloaded lists",
                &["list", "result"],
            ),
            list_refresh_errors: counter_vec(
                &registry,
                LIST_REFRESH_ERRORS_TOTAL,
                "Failed refreshes of downloaded lists",
                &["list", "reason"],
            ),
            list_bytes: gauge_vec(
                &registry,
                LIST_BYTES,
                "Size of the list's stored copy",
                &["list"],
            ),
            refused: counter(
                &registry,
                REFUSED_TOTAL,
                "Queries refused: the client is not in server.allow_from",
            ),
            rate_limited: counter(
                &registry,
                RATE_LIMITED_TOTAL,
                "Queries dropped unanswered: the client exceeded its rate limit",
            ),
            fetch_limited: counter_vec(
                &registry,
                FETCH_LIMITED_TOTAL,
                "Queries dropped unanswered: too many upstream fetches in flight, for the client or in all",
                &["limit"],
            ),
            override_decisions: counter_vec(
                &registry,
                OVERRIDE_DECISIONS_TOTAL,
                "Queries an override (pause, allow, block) decided",
                &["device", "profile", "kind"],
            ),
            overrides_active: gauge_vec(
                &registry,
                OVERRIDES_ACTIVE,
                "Overrides in force",
                &["kind"],
            ),
            device_profile: gauge_vec(
                &registry,
                DEVICE_PROFILE,
                "1 for the profile the device has right now",
                &["device", "profile"],
            ),
            responses: counter_vec(
                &registry,
                RESPONSES_TOTAL,
                "Replies sent, by response code",
                &["rcode"],
            ),
            would_block: counter_vec(
                &registry,
                WOULD_BLOCK_TOTAL,
                "Queries an observe-mode profile would have blocked (answered as allowed)",
                &["device", "profile", "list"],
            ),
            querylog: QuerylogCounters {
                written: counter(
                    &registry,
                    QUERYLOG_WRITTEN_TOTAL,
                    "Query log entries written to the database",
                ),
                dropped: counter(
                    &registry,
                    QUERYLOG_DROPPED_TOTAL,
                    "Query log entries dropped: the queue to the writer was full",
                ),
                write_errors: counter(
                    &registry,
                    QUERYLOG_WRITE_ERRORS_TOTAL,
                    "Failed writes of the query log database",
                ),
                database_bytes: gauge(
                    &registry,
                    QUERYLOG_DATABASE_BYTES,
                    "Size of the query log database on disk",
                ),
            },
            registry,
        };
        // Series that exist from the start read 0 before their first event, so Prometheus's
        // `increase()` sees that event (a series born at 1 shows no increase).
        for result in CONFIG_RELOAD_RESULTS {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for rcode in RCODE_LABELS {
            metrics.responses.with_label_values(&[rcode]);
        }
        let build_info = gauge_vec(
            &metrics.registry,
            BUILD_INFO,
            "Build information",
            &["version", "revision"],
        );
        // The revision is the git commit (build.rs), as `metasink --version` prints it.
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("METASINK_GIT_COMMIT")])
            .set(1);
        metrics
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which registration rules out.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Handles for a client identified as `device` using `profile`; `lists` are the ids of
    /// the policy's lists by index, `Some` for those the profile blocks.
    pub fn client_counters(
        &self,
        device: &str,
        profile: &str,
        lists: &[Option<&str>],
    ) -> ClientCounters {
        let queries = QTYPE_LABELS
            .iter()
            .map(|qtype| {
                QueryResult::ALL.map(|result| {
                    self.queries
                        .with_label_values(&[device, profile, qtype, result.as_str()])
                })
            })
            .collect();
        let blocked = lists
            .iter()
            .map(|list| list.map(|id| self.blocked.with_label_values(&[device, profile, id])))
            .collect();
        let overrides = OVERRIDE_KINDS.map(|kind| {
            self.override_decisions
                .with_label_values(&[device, profile, kind])
        });
        let in_force = self.device_profile.with_label_values(&[device, profile]);
        ClientCounters {
            queries,
            blocked,
            overrides,
            in_force,
        }
    }

    /// The gauges of overrides in force, by kind, in the order of [`OVERRIDE_KINDS`].
    pub fn overrides_active(&self) -> [IntGauge; OVERRIDE_KINDS.len()] {
        OVERRIDE_KINDS.map(|kind| self.overrides_active.with_label_values(&[kind]))
    }

    /// [`Self::client_counters`] for a device whose profile only observes: its blocks are
    /// counted in [`WOULD_BLOCK_TOTAL`] instead of [`BLOCKED_TOTAL`].
    pub fn observe_counters(
        &self,
        device: &str,
        profile: &str,
        lists: &[Option<&str>],
    ) -> ClientCounters {
        let mut counters = self.client_counters(device, profile, &[]);
        counters.blocked = lists
            .iter()
            .map(|list| list.map(|id| self.would_block.with_label_values(&[device, profile, id])))
            .collect();
        counters
    }

    /// The query log's handles.
    pub fn querylog(&self) -> QuerylogCounters {
        self.querylog.clone()
    }

    /// Handles for the upstream labelled `label` (its configured address).
    pub fn upstream(&self, label: &str) -> UpstreamCounters {
        UpstreamCounters {
            duration: self.upstream_duration.with_label_values(&[label]),
            healthy: self.upstream_healthy.with_label_values(&[label]),
            errors: UPSTREAM_ERROR_KINDS
                .iter()
                .map(|kind| self.upstream_errors.with_label_values(&[label, kind]))
                .collect(),
        }
    }

    /// Records that upstream `label` is reached over `protocol`.
    pub fn upstream_protocol(&self, label: &str, protocol: &str) {
        self.upstream_info
            .with_label_values(&[label, protocol])
            .set(1);
    }

    /// Cache handles.
    pub fn cache(&self) -> CacheCounters {
        CacheCounters {
            hits: self.cache_hits.clone(),
            misses: self.cache_misses.clone(),
            entries: self.cache_entries.clone(),
            stale_answers: self.stale_answers.clone(),
        }
    }

    /// The counter of queries refused by the access list ([`REFUSED_TOTAL`]). No client label:
    /// refused clients are strangers, and a series per address would be unbounded.
    pub fn refused(&self) -> IntCounter {
        self.refused.clone()
    }

    /// The counter of queries dropped by the rate limit ([`RATE_LIMITED_TOTAL`]). No client
    /// label: a flood from spoofed addresses would otherwise create a series per address.
    pub fn rate_limited(&self) -> IntCounter {
        self.rate_limited.clone()
    }

    /// The counter of queries dropped by the cap `limit` on fetches in flight
    /// ([`FETCH_LIMITED_TOTAL`]). No client label, as for the rate limit.
    pub fn fetch_limited(&self, limit: &str) -> IntCounter {
        self.fetch_limited.with_label_values(&[limit])
    }

    /// The counters of replies by response code ([`RESPONSES_TOTAL`]).
    pub fn responses(&self) -> ResponseCounters {
        ResponseCounters {
            by_rcode: RCODE_LABELS.map(|rcode| self.responses.with_label_values(&[rcode])),
        }
    }

    /// Creates the refresh series of the downloaded list `id` at 0 (every result and every
    /// failure reason), so the first refresh, and the first failure of each kind, shows as an
    /// increase in Prometheus. Idempotent: a series that exists keeps its count.
    pub fn create_list_refresh_series(&self, id: &str) {
        for result in LIST_REFRESH_RESULTS {
            self.list_refreshes.with_label_values(&[id, result]);
        }
        for reason in REFRESH_ERROR_REASONS {
            self.list_refresh_errors.with_label_values(&[id, reason]);
        }
    }

    /// Records the outcome of loading the list `id`.
    pub fn record_list_load(&self, id: &str, loaded: bool, entries: usize, invalid_lines: usize) {
        self.list_loaded
            .with_label_values(&[id])
            .set(i64::from(loaded));
        self.list_entries
            .with_label_values(&[id])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.list_invalid_lines
            .with_label_values(&[id])
            .inc_by(u64::try_from(invalid_lines).unwrap_or(u64::MAX));
        self.list_invalid_lines_now
            .with_label_values(&[id])
            .set(i64::try_from(invalid_lines).unwrap_or(i64::MAX));
    }

    /// Counts one config reload with `result` ("success" or "failure").
    pub fn count_config_reload(&self, result: &str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Records the generation of the snapshot now in force.
    pub fn set_policy_generation(&self, generation: u64) {
        self.policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Records a refresh of the downloaded list `id` that fetched a new copy (`Some(bytes)`)
    /// or confirmed the stored one (`None`), at Unix time `at`.
    pub fn record_list_refresh(&self, id: &str, bytes: Option<u64>, at: u64) {
        let result = if bytes.is_some() {
            "updated"
        } else {
            "not_modified"
        };
        self.list_refreshes.with_label_values(&[id, result]).inc();
        self.list_last_refresh
            .with_label_values(&[id])
            .set(i64::try_from(at).unwrap_or(i64::MAX));
        if let Some(bytes) = bytes {
            self.list_bytes
                .with_label_values(&[id])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Records the stored copy found at start-up for the downloaded list `id`.
    pub fn record_stored_list(&self, id: &str, bytes: u64, fetched_at: u64) {
        self.list_bytes
            .with_label_values(&[id])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.list_last_refresh
            .with_label_values(&[id])
            .set(i64::try_from(fetched_at).unwrap_or(i64::MAX));
    }

    /// Counts a failed refresh of the downloaded list `id` for `reason`.
    pub fn count_list_refresh_error(&self, id: &str, reason: &str) {
        self.list_refreshes.with_label_values(&[id, "failed"]).inc();
        self.list_refresh_errors
            .with_label_values(&[id, reason])
            .inc();
    }

    /// The request-duration histogram for each result, in [`QueryResult::ALL`] order.
    pub fn request_durations(&self) -> [Histogram; QueryResult::ALL.len()] {
        QueryResult::ALL.map(|result| self.request_duration.with_label_values(&[result.as_str()]))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// Registration only fails for a duplicate or malformed name; every name here is a constant
// registered once, so a failure is a programming error caught by the first test that runs.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric registers once");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_with_their_labels() {
        let metrics = Metrics::new();
        let client = metrics.client_counters("quest", "quest", &[Some("meta-ai"), None]);
        client.count_query("A", QueryResult::Blocked);
        client.count_query("NAPTR", QueryResult::Forwarded);
        client.count_block(0);
        client.count_block(1); // not a blocking list of this profile: ignored
        let text = metrics.render();
        assert!(text.contains(r#"metasink_queries_total{device="quest",profile="quest",qtype="A",result="blocked"} 1"#), "{text}");
        assert!(text.contains(r#"qtype="other",result="forwarded"} 1"#));
        assert!(text.contains(
            r#"metasink_blocked_total{device="quest",list="meta-ai",profile="quest"} 1"#
        ));
        assert!(text.contains(&format!(
            "{BUILD_INFO}{{revision=\"{}\",version=\"{}\"}} 1",
            env!("METASINK_GIT_COMMIT"),
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn admission_counters_have_no_labels() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(text.contains(&format!("{REFUSED_TOTAL} 0")), "{text}");
        assert!(text.contains(&format!("{RATE_LIMITED_TOTAL} 0")), "{text}");
        metrics.refused().inc();
        let rate_limited = metrics.rate_limited();
        rate_limited.inc_by(3);
        let text = metrics.render();
        assert!(text.contains(&format!("{REFUSED_TOTAL} 1")), "{text}");
        assert!(text.contains(&format!("{RATE_LIMITED_TOTAL} 3")), "{text}");
    }
}
