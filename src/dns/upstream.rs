//! Forwarding to the configured upstream resolvers over UDP, again over TCP when an answer
//! comes back truncated, through hickory's client streams (`hickory_resolver::net`).
//!
//! Each query is one exchange on a [`UdpClientStream`], driven by the task that asks it;
//! hickory-resolver's name-server pool is not used. The pool sends each request to a
//! background task over a channel and back (two task switches a query), keeps a map of
//! questions in flight (the pipeline already merges those) and ranks servers by round-trip
//! time (we keep the configured order, below): all of that cost a quarter of the forwarded
//! throughput and 10–40 µs a query (BENCHMARKS.md). hickory still sends, matches and retries:
//! a reply from another address or port, with another ID or for another question is ignored
//! and the wait goes on (RFC 5452's query matching). The UDP sockets those queries use are
//! kept open and reused ([`sockets`]). A truncated answer is asked again on a TCP connection
//! of its own, closed when the answer is in (truncation is rare; Unbound and dnsmasq open
//! one per query too). Upstreams written `tcp://`, `tls://` (DoT) or `https://` (DoH) are
//! reached over a connection kept open instead ([`connection`]); everything else here
//! (order, deadlines, health, what a reply means) is the same for every protocol.
//!
//! A query gets [`ATTEMPT_TIMEOUT`] per upstream and [`QUERY_DEADLINE`] in all, so a client
//! sees SERVFAIL well before it gives up on us. Answers are cached once, by
//! [`crate::cache`].
//!
//! # In order, not raced
//! Upstreams are tried one after another in the configured order and the first answer wins.
//! Racing them would send every name to every upstream: the household picked its first
//! resolver (a local one, a filtering service) on purpose, and a race would leak each
//! question to the fallback too and double the load. The cost racing hides, a dead first
//! upstream, is paid only until passive health ([`health`]) skips it: three timeouts with
//! nothing at all heard from it meanwhile, then one probe now and then.
//!
//! # When every upstream is down
//! Upstreams that health skips are the last resort: when no upstream in service answered
//! (or none is in service), they are asked anyway, in order, within the same deadline. So a
//! query never fails without having been sent: health only decides the order. Failing fast
//! instead once looked cheaper (a quick SERVFAIL rather than a two-second wait), but it
//! turned a wrong verdict into an outage for everybody: one client's timeouts could mark
//! the only upstream down, and every other device then got SERVFAIL for queries the
//! upstream would have answered. Unbound and dnsmasq keep sending too.

mod connection;
mod health;
mod quick_ack;
mod sockets;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, MessageType, OpCode, ResponseCode,
};
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::{DnsRequestSender, FirstAnswer};
use hickory_resolver::net::{DnsHandle, NetError};

use self::connection::Connected;
use self::health::{Health, Turn};
use self::sockets::ReusingProvider;
use super::{Answer, Question};
use crate::config::{UpstreamProtocol, UpstreamSettings};
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
}

impl UpstreamError {
    /// Whether a query actually went out (and failed).
    pub fn was_attempted(&self) -> bool {
        matches!(self, Self::AllFailed)
    }
}

/// The configured upstreams, in order.
pub struct Upstreams {
    /// Shared with the sets built before and after this one (see [`Upstreams::keeping`]).
    servers: Vec<Arc<Upstream>>,
    /// Source ports never used: every upstream's port (see [`Upstreams::new`]).
    avoided_ports: Arc<HashSet<u16>>,
}

struct Upstream {
    /// What it was made from: a set built later with the same settings takes it over.
    settings: UpstreamSettings,
    address: SocketAddr,
    /// Its name in metrics, logs and the query log ([`UpstreamSettings::label`]), given to
    /// each answer it sends.
    label: Arc<str>,
    /// hickory's sockets and timers, with UDP sockets reused.
    provider: ReusingProvider,
    /// The kept-open connection of a `tcp://`, `tls://` or `https://` upstream; None for UDP.
    connected: Option<Connected>,
    counters: UpstreamCounters,
    health: Health,
}

/// Why one attempt failed: the `kind` label of the error metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Timeout,
    Io,
    /// The TLS handshake failed: a certificate not valid for the name, not signed by a trusted
    /// root, expired... Fails closed: nothing is sent unencrypted instead.
    Tls,
    ServFail,
    Refused,
    /// A reply we cannot serve: another response code (FORMERR, NOTIMP...), not a response
    /// to a query, or records we cannot encode again. The upstream is there; the question
    /// is the trouble, and clients can ask odd ones.
    Unusable,
    /// Anything else, e.g. a reply with the right ID that does not decode.
    Other,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::Tls => "tls",
            Self::ServFail => "servfail",
            Self::Refused => "refused",
            Self::Unusable => "unusable",
            Self::Other => "other",
        }
    }

    /// Whether it says the upstream itself is unreachable, rather than that it could not
    /// answer this one name (see [`health`]). Every well-formed reply says it is reachable:
    /// otherwise three odd questions in a row from one client would take it out of service
    /// for everyone.
    fn is_unreachable(self) -> bool {
        matches!(self, Self::Timeout | Self::Io | Self::Tls | Self::Other)
    }
}

impl Upstreams {
    /// Prepares each upstream (sockets open on first use).
    pub fn new(settings: &[UpstreamSettings], metrics: &Metrics) -> Self {
        Self::keeping(settings, metrics, [])
    }

    /// [`Self::new`], taking over from the sets in `previous` each upstream whose settings
    /// (address, protocol, TLS name and roots, bootstrap) are unchanged: its health, its
    /// kept-open connection and its sockets. The forward zones' upstreams are built again
    /// with every policy snapshot (a reload, a list refresh); without this, a router marked
    /// down would be asked at full rate again after each one, and an encrypted upstream
    /// would pay a new handshake.
    pub fn keeping<'a>(
        settings: &[UpstreamSettings],
        metrics: &Metrics,
        previous: impl IntoIterator<Item = &'a Self>,
    ) -> Self {
        let previous: Vec<&Arc<Upstream>> = (previous.into_iter())
            .flat_map(|set| &set.servers)
            .collect();
        // A source port is picked at random and kept for up to 64 queries. Were it the port
        // of an upstream on this host that is down (restarting), our socket would take its
        // place: the upstream could not bind it again, and our queries to it would reach our
        // own socket (seen in the soak, with nsd restarted on loopback).
        let avoided_ports: Arc<HashSet<u16>> = Arc::new(
            settings
                .iter()
                .map(|upstream| upstream.address.port())
                .collect(),
        );
        let servers = settings
            .iter()
            .map(|upstream| {
                (previous.iter())
                    .find(|kept| kept.settings == *upstream)
                    .map_or_else(
                        || Arc::new(Upstream::new(upstream, metrics)),
                        |&kept| kept.clone(),
                    )
            })
            .collect();
        Self {
            servers,
            avoided_ports,
        }
    }

    /// Descriptors the upstreams of `settings` keep open themselves: the connections of each
    /// `tcp://`, `tls://` and `https://` upstream, at most [`connection::MAX_CONNECTIONS`] at
    /// once. (UDP sockets, and the TCP connection of a truncated answer, belong to a query
    /// and are counted with the queries in flight.)
    pub fn connection_descriptors<'a>(
        settings: impl IntoIterator<Item = &'a UpstreamSettings>,
    ) -> usize {
        (settings.into_iter())
            .filter(|upstream| upstream.protocol != UpstreamProtocol::Udp)
            .count()
            * connection::MAX_CONNECTIONS
    }

    /// Forwards `question` to each upstream in order, those that are down last, until one
    /// answers or the deadline passes.
    pub async fn forward(&self, question: &Question) -> Result<Answer, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstreams);
        }
        // One clock reading starts the question's deadline and its first attempt; each
        // attempt's end is the next one's start.
        let mut now = Instant::now();
        let deadline = now + QUERY_DEADLINE;
        // Allocated only when an upstream is down.
        let mut skipped = Vec::new();
        for upstream in &self.servers {
            if now >= deadline {
                break;
            }
            // Asked only when reached, so a probe is not spent on a query another upstream
            // already answered (or on one out of time).
            let Some(turn) = upstream.health.turn(now) else {
                skipped.push(upstream);
                continue;
            };
            match (upstream)
                .attempt(question, now, deadline, turn, &self.avoided_ports)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(ended) => now = ended,
            }
        }
        for upstream in skipped {
            match (upstream)
                .attempt(
                    question,
                    now,
                    deadline,
                    Turn::LastResort,
                    &self.avoided_ports,
                )
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(ended) => now = ended,
            }
        }
        Err(UpstreamError::AllFailed)
    }
}

impl Upstream {
    fn new(settings: &UpstreamSettings, metrics: &Metrics) -> Self {
        let address = settings.address;
        let label = settings.label();
        let counters = metrics.upstream(&label);
        metrics.upstream_protocol(&label, settings.protocol.name());
        let health = Health::new(&label, counters.healthy.clone());
        let provider = ReusingProvider::default();
        Self {
            settings: settings.clone(),
            address,
            label: label.into(),
            connected: Connected::new(settings, provider.clone()),
            provider,
            counters,
            health,
        }
    }

    /// One attempt of at most [`ATTEMPT_TIMEOUT`], sent at `sent` and ending by `deadline`,
    /// made in `turn`, from no source port in `avoided_ports`; counts a failure and tells the
    /// health what the attempt showed. A failure gives the time it ended (at once, `sent`,
    /// when the deadline has passed): the clock is read once per attempt, after the reply.
    async fn attempt(
        &self,
        question: &Question,
        sent: Instant,
        deadline: Instant,
        turn: Turn,
        avoided_ports: &Arc<HashSet<u16>>,
    ) -> Result<Answer, Instant> {
        let limit = deadline
            .saturating_duration_since(sent)
            .min(ATTEMPT_TIMEOUT);
        if limit.is_zero() {
            return Err(sent);
        }
        let result = tokio::time::timeout_at(sent + limit, self.ask(question, avoided_ports))
            .await
            .unwrap_or(Err(Failure::Timeout));
        let now = Instant::now();
        match result {
            Ok(answer) => {
                self.counters
                    .duration
                    .observe(now.saturating_duration_since(sent).as_secs_f64());
                self.health.reached(now);
                Ok(answer.answered_by(self.label.clone()))
            }
            Err(failure) => {
                self.counters.count_error(failure.label());
                if failure.is_unreachable() {
                    self.health.unreachable(turn, sent, now);
                } else {
                    self.health.reached(now);
                }
                Err(now)
            }
        }
    }

    /// Sends the question and reads the reply.
    async fn ask(
        &self,
        question: &Question,
        avoided_ports: &Arc<HashSet<u16>>,
    ) -> Result<Answer, Failure> {
        let message = self
            .exchange(question, avoided_ports)
            .await
            .map_err(|error| failure_of(&error))?;
        answer_of(question, message)
    }

    /// One exchange over UDP, and again over TCP if the UDP answer was truncated; or one on
    /// the upstream's connection.
    ///
    /// The connection and TCP exchanges are boxed futures of their own: inline, their state
    /// (TLS, HTTP/2 and TCP clients) made every forwarded question's future 7.7 KB, which
    /// malloc serves from its slow bins, for the rare question that takes them.
    async fn exchange(
        &self,
        question: &Question,
        avoided_ports: &Arc<HashSet<u16>>,
    ) -> Result<Message, NetError> {
        if let Some(connected) = &self.connected {
            return Box::pin(connected.exchange(|| request(question)))
                .await
                .map(DnsResponse::into_message);
        }
        let mut udp = UdpClientStream::builder(self.address, self.provider.clone())
            .with_timeout(Some(ATTEMPT_TIMEOUT))
            .avoid_local_ports(avoided_ports.clone())
            .build();
        let response = udp.send_message(request(question)).first_answer().await?;
        if !response.metadata.truncation {
            return Ok(response.into_message());
        }
        Box::pin(self.exchange_over_tcp(question)).await
    }

    /// One exchange over a TCP connection of its own: a UDP answer was truncated.
    async fn exchange_over_tcp(&self, question: &Question) -> Result<Message, NetError> {
        let tcp = TcpClientStream::exchange(
            self.address,
            None,
            ATTEMPT_TIMEOUT,
            None,
            self.provider.clone(),
        )
        .await?;
        let response: DnsResponse = tcp.send(request(question)).first_answer().await?;
        Ok(response.into_message())
    }
}

/// The query for `question`, as hickory sends it (with a fresh random ID).
fn request(question: &Question) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = question.dnssec_ok;
    options.recursion_desired = true;
    let mut request = DnsRequest::from_query(question.to_query(), options);
    // CD is part of the cache key: the upstream must see it to answer accordingly.
    request.metadata.checking_disabled = question.checking_disabled;
    request
}

/// What an upstream's reply means to us: an answer to cache and serve (records, NXDOMAIN,
/// NODATA) or a failed attempt.
fn answer_of(question: &Question, message: Message) -> Result<Answer, Failure> {
    // hickory matches replies by ID and question only; a "reply" that is not a QUERY
    // response (found by fuzzing: an UPDATE holding prerequisite records) would be cached
    // and served as if it were one.
    if message.metadata.op_code != OpCode::Query
        || message.metadata.message_type != MessageType::Response
    {
        return Err(Failure::Unusable);
    }
    match message.metadata.response_code {
        rcode @ (ResponseCode::NoError | ResponseCode::NXDomain) => {
            // A record hickory decoded but cannot encode again (or an answer past 64 KB)
            // cannot be served: as good as no answer.
            Answer::new(question, rcode, message.answers, message.authorities)
                .ok_or(Failure::Unusable)
        }
        ResponseCode::ServFail => Err(Failure::ServFail),
        ResponseCode::Refused => Err(Failure::Refused),
        _ => Err(Failure::Unusable),
    }
}

/// Why an exchange that produced no reply failed.
fn failure_of(error: &NetError) -> Failure {
    match error {
        NetError::Timeout => Failure::Timeout,
        NetError::Io(error) if is_tls(error) => Failure::Tls,
        NetError::Io(_) => Failure::Io,
        NetError::RustlsError(_) => Failure::Tls,
        _ => Failure::Other,
    }
}

/// Whether an I/O error is rustls refusing the connection (tokio-rustls reports handshake
/// failures as I/O errors holding the rustls error).
fn is_tls(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_upstream_port_is_ever_a_source_port() {
        let settings = ["127.0.0.1:5300", "127.0.0.1:5301", "[::1]:53"]
            .map(|address| UpstreamSettings::plain(address.parse().unwrap()));
        let upstreams = Upstreams::new(&settings, &Metrics::new());
        assert_eq!(*upstreams.avoided_ports, HashSet::from([5300, 5301, 53]));
    }

    /// Every forwarded question allocates this future (`Forward` boxes it): past about a
    /// kilobyte, malloc serves it from its slow bins, not its per-thread cache. It was 7.7 KB
    /// while the TLS, HTTP/2 and TCP exchanges were inline.
    #[test]
    fn a_forwarded_questions_future_stays_small() {
        let settings = [UpstreamSettings::plain("127.0.0.1:5300".parse().unwrap())];
        let upstreams = Upstreams::new(&settings, &Metrics::new());
        let question = Question::parse("www.example.com", "A").unwrap();
        let size = std::mem::size_of_val(&upstreams.forward(&question));
        assert!(size <= 1024, "the forwarding future is {size} bytes");
    }

    #[test]
    fn each_connected_upstream_holds_its_connections_and_udp_none() {
        let udp = UpstreamSettings::plain("127.0.0.1:53".parse().unwrap());
        let tcp = UpstreamSettings {
            protocol: UpstreamProtocol::Tcp,
            ..udp.clone()
        };
        assert_eq!(Upstreams::connection_descriptors([&udp, &udp]), 0);
        assert_eq!(
            Upstreams::connection_descriptors([&udp, &tcp, &tcp]),
            2 * connection::MAX_CONNECTIONS
        );
    }

    #[test]
    fn a_new_set_takes_over_the_upstreams_whose_settings_are_unchanged() {
        let metrics = Metrics::new();
        let first = UpstreamSettings::plain("127.0.0.1:5300".parse().unwrap());
        let second = UpstreamSettings::plain("127.0.0.1:5301".parse().unwrap());
        let over_tcp = UpstreamSettings {
            protocol: crate::config::UpstreamProtocol::Tcp,
            ..first.clone()
        };
        let old = Upstreams::new(&[first.clone(), second.clone()], &metrics);
        let new = Upstreams::keeping(&[second, first, over_tcp], &metrics, [&old]);
        assert!(Arc::ptr_eq(&new.servers[0], &old.servers[1]));
        assert!(Arc::ptr_eq(&new.servers[1], &old.servers[0]));
        assert!(
            !Arc::ptr_eq(&new.servers[2], &old.servers[0]),
            "another protocol: another upstream"
        );
    }
}
