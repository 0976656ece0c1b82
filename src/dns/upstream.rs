//! Forwarding to the configured upstream resolvers through hickory-resolver's name-server
//! connections (UDP, retried over TCP when an answer comes back truncated).
//!
//! Each upstream gets its own single-server pool so that we choose the order, bound the time
//! and label metrics per upstream; hickory-resolver's cache and hosts file are not involved
//! (answers are cached once, by [`crate::cache`]). A query gets [`ATTEMPT_TIMEOUT`] per
//! upstream and [`QUERY_DEADLINE`] in all, so a client sees SERVFAIL well before it gives up
//! on us. hickory checks every reply before we see it: one from another address or port,
//! with another ID or for another question is ignored and the wait goes on (RFC 5452's
//! query matching). The UDP sockets those queries use are kept open and reused ([`sockets`]).
//!
//! # In order, not raced
//! Upstreams are tried one after another in the configured order and the first answer wins.
//! Racing them would send every name to every upstream: the household picked its first
//! resolver (a local one, a filtering service) on purpose, and a race would leak each
//! question to the fallback too and double the load. The cost racing hides, a dead first
//! upstream, is paid only until passive health ([`health`]) skips it: three slow queries,
//! then one probe now and then.
//!
//! # When every upstream is down
//! Nothing is sent and the query fails at once ([`UpstreamError::AllDown`]) until a probe is
//! due: a fast SERVFAIL (or a stale answer, see [`crate::pipeline`]) instead of a two-second
//! wait for an answer that will not come.

mod health;
mod sockets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{DnsRequest, DnsRequestOptions, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_resolver::net::xfer::FirstAnswer;
use hickory_resolver::net::{DnsError, DnsHandle, NetError, NoRecords};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use self::health::{Health, Turn};
use self::sockets::ReusingProvider;
use super::{Answer, Question};
use crate::config::UpstreamSettings;
use crate::metrics::{Metrics, UpstreamCounters};

/// Time one upstream gets to answer one query.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time all upstreams together get for one query.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);

/// Why no answer came back.
#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The config has no upstream (and /etc/resolv.conf had none either).
    #[error("no upstream is configured")]
    NoUpstreams,
    /// Every upstream tried failed or ran out of time.
    #[error("no upstream answered in time")]
    AllFailed,
    /// Every upstream is down and none is due for a probe: nothing was sent.
    #[error("every upstream is down; probing with back-off")]
    AllDown,
}

impl UpstreamError {
    /// Whether a query actually went out (and failed).
    pub fn was_attempted(&self) -> bool {
        matches!(self, Self::AllFailed)
    }
}

/// The configured upstreams, in order.
pub struct Upstreams {
    servers: Vec<Upstream>,
}

struct Upstream {
    pool: NameServerPool<ReusingProvider>,
    counters: UpstreamCounters,
    health: Health,
}

/// Why one attempt failed: the `kind` label of the error metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Timeout,
    Io,
    ServFail,
    Refused,
    /// Anything else, e.g. a reply with the right ID that does not decode.
    Other,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::ServFail => "servfail",
            Self::Refused => "refused",
            Self::Other => "other",
        }
    }

    /// Whether it says the upstream itself is unreachable, rather than that it could not
    /// answer this one name (see [`health`]).
    fn is_unreachable(self) -> bool {
        matches!(self, Self::Timeout | Self::Io | Self::Other)
    }
}

impl Upstreams {
    /// Prepares a connection pool per upstream (connections open on first use).
    pub fn new(settings: &[UpstreamSettings], metrics: &Metrics) -> Result<Self, String> {
        let servers = settings
            .iter()
            .map(|upstream| Upstream::new(upstream, metrics))
            .collect::<Result<_, _>>()?;
        Ok(Self { servers })
    }

    /// Forwards `question` to each upstream in order, skipping those that are down, until
    /// one answers or the deadline passes.
    pub async fn forward(&self, question: &Question) -> Result<Answer, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstreams);
        }
        let deadline = Instant::now() + QUERY_DEADLINE;
        let mut attempted = false;
        for upstream in &self.servers {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                break;
            }
            // Asked only when reached, so a probe is not spent on a query another upstream
            // already answered.
            let Some(turn) = upstream.health.turn(now) else {
                continue;
            };
            attempted = true;
            let limit = remaining.min(ATTEMPT_TIMEOUT);
            if let Some(answer) = upstream.attempt(question, limit, turn).await {
                return Ok(answer);
            }
        }
        Err(if attempted {
            UpstreamError::AllFailed
        } else {
            UpstreamError::AllDown
        })
    }
}

impl Upstream {
    fn new(settings: &UpstreamSettings, metrics: &Metrics) -> Result<Self, String> {
        let address = settings.address;
        let connection = |mut config: ConnectionConfig| {
            config.port = address.port();
            config
        };
        let server = NameServerConfig::new(
            address.ip(),
            true,
            vec![
                connection(ConnectionConfig::udp()),
                connection(ConnectionConfig::tcp()),
            ],
        );
        let mut options = ResolverOpts::default();
        options.timeout = ATTEMPT_TIMEOUT;
        options.num_concurrent_reqs = 1;
        let tls = TlsConfig::new().map_err(|error| format!("upstream {address}: {error}"))?;
        let context = Arc::new(PoolContext::new(options, tls));
        let pool = NameServerPool::from_config([server], context, ReusingProvider::default());
        let label = address.to_string();
        let counters = metrics.upstream(&label);
        let health = Health::new(&label, counters.healthy.clone());
        Ok(Self {
            pool,
            counters,
            health,
        })
    }

    /// One attempt within `limit`, made in `turn`; counts a failure and tells the health
    /// what the attempt showed.
    async fn attempt(&self, question: &Question, limit: Duration, turn: Turn) -> Option<Answer> {
        let result = tokio::time::timeout(limit, self.ask(question))
            .await
            .unwrap_or(Err(Failure::Timeout));
        match result {
            Ok(answer) => {
                self.health.reached();
                Some(answer)
            }
            Err(failure) => {
                self.counters.count_error(failure.label());
                if failure.is_unreachable() {
                    self.health.unreachable(turn, Instant::now());
                } else {
                    self.health.reached();
                }
                None
            }
        }
    }

    /// Sends the question and reads the reply.
    async fn ask(&self, question: &Question) -> Result<Answer, Failure> {
        let mut query = Query::query(question.name.clone(), question.qtype);
        query.query_class = question.qclass;
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = question.dnssec_ok;
        options.recursion_desired = true;
        let mut request = DnsRequest::from_query(query, options);
        // CD is part of the cache key: the upstream must see it to answer accordingly.
        request.metadata.checking_disabled = question.checking_disabled;
        let started = Instant::now();
        let result = self.pool.send(request).first_answer().await;
        let answer = match result {
            Ok(response) => {
                let message = response.into_message();
                // hickory matches replies by ID and question only; a "reply" that is not a
                // QUERY response (found by fuzzing: an UPDATE holding prerequisite records)
                // would be cached and served as if it were one.
                if message.metadata.op_code != OpCode::Query
                    || message.metadata.message_type != MessageType::Response
                {
                    return Err(Failure::Other);
                }
                Answer::new(
                    question,
                    message.metadata.response_code,
                    message.answers,
                    message.authorities,
                )
            }
            Err(error) => negative_answer(question, error)?,
        };
        // A record hickory decoded but cannot encode again (or an answer past 64 KB) cannot
        // be served: as good as no answer.
        let answer = answer.ok_or(Failure::Other)?;
        self.counters
            .duration
            .observe(started.elapsed().as_secs_f64());
        Ok(answer)
    }
}

/// hickory reports NXDOMAIN and NODATA as errors; they are answers to us. Everything else is
/// a failed attempt.
fn negative_answer(question: &Question, error: NetError) -> Result<Option<Answer>, Failure> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: rcode @ (ResponseCode::NXDomain | ResponseCode::NoError),
            soa,
            authorities,
            ..
        })) => {
            let authorities = match (authorities, soa) {
                (Some(records), _) => records.to_vec(),
                (None, Some(soa)) => vec![soa.into_record_of_rdata()],
                (None, None) => Vec::new(),
            };
            Ok(Answer::new(question, rcode, Vec::new(), authorities))
        }
        NetError::Dns(DnsError::NoRecordsFound(_))
        | NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Err(Failure::ServFail),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Err(Failure::Refused),
        NetError::Timeout => Err(Failure::Timeout),
        NetError::Io(_) | NetError::NoConnections => Err(Failure::Io),
        _ => Err(Failure::Other),
    }
}
