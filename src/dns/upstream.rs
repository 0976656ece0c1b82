//! Forwarding to the configured upstream resolvers through hickory-resolver's name-server
//! connections (UDP, retried over TCP when an answer comes back truncated).
//!
//! Each upstream gets its own single-server pool so that we choose the order, bound the time
//! and label metrics per upstream; hickory-resolver's cache and hosts file are not involved
//! (answers are cached once, by [`crate::cache`]). Upstreams are tried in the configured
//! order; the first answer wins; a query gets [`ATTEMPT_TIMEOUT`] per upstream and
//! [`QUERY_DEADLINE`] in all, so a client sees SERVFAIL well before it gives up on us.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{DnsRequest, DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::FirstAnswer;
use hickory_resolver::net::{DnsError, DnsHandle, NetError, NoRecords};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::{Answer, Question};
use crate::config::UpstreamSettings;
use crate::metrics::{Metrics, UpstreamCounters};

/// Time one upstream gets to answer one query.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time all upstreams together get for one query.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The config has no upstream (and /etc/resolv.conf had none either).
    #[error("no upstream is configured")]
    NoUpstreams,
    /// Every upstream failed or ran out of time.
    #[error("no upstream answered in time")]
    AllFailed,
}

/// The configured upstreams, in order.
pub struct Upstreams {
    servers: Vec<Upstream>,
}

struct Upstream {
    pool: NameServerPool<TokioRuntimeProvider>,
    counters: UpstreamCounters,
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

    /// Forwards `question`, trying each upstream in order until one answers or the deadline
    /// passes.
    pub async fn forward(&self, question: &Question) -> Result<Answer, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstreams);
        }
        let deadline = Instant::now() + QUERY_DEADLINE;
        for upstream in &self.servers {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let attempt =
                tokio::time::timeout(remaining.min(ATTEMPT_TIMEOUT), upstream.ask(question));
            match attempt.await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(kind)) => upstream.counters.count_error(kind),
                Err(_elapsed) => upstream.counters.count_error("timeout"),
            }
        }
        Err(UpstreamError::AllFailed)
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
        let pool = NameServerPool::from_config([server], context, TokioRuntimeProvider::default());
        let counters = metrics.upstream(&address.to_string());
        Ok(Self { pool, counters })
    }

    /// One attempt; on failure, the error kind for the metric.
    async fn ask(&self, question: &Question) -> Result<Answer, &'static str> {
        let mut query = Query::query(question.name.clone(), question.qtype);
        query.query_class = question.qclass;
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = question.dnssec_ok;
        options.recursion_desired = true;
        let started = Instant::now();
        let result = self
            .pool
            .send(DnsRequest::from_query(query, options))
            .first_answer()
            .await;
        let answer = match result {
            Ok(response) => {
                let message = response.into_message();
                Answer::new(
                    message.metadata.response_code,
                    message.answers,
                    message.authorities,
                )
            }
            Err(error) => negative_answer(error)?,
        };
        self.counters
            .duration
            .observe(started.elapsed().as_secs_f64());
        Ok(answer)
    }
}

/// hickory reports NXDOMAIN and NODATA as errors; they are answers to us. Everything else is
/// a failed attempt, classified for the metric.
fn negative_answer(error: NetError) -> Result<Answer, &'static str> {
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
            Ok(Answer::new(rcode, Vec::new(), authorities))
        }
        NetError::Dns(DnsError::NoRecordsFound(_))
        | NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Err("servfail"),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Err("refused"),
        NetError::Timeout => Err("timeout"),
        NetError::Io(_) | NetError::NoConnections => Err("io"),
        _ => Err("other"),
    }
}
