//! The DNS service: request bytes in, reply bytes out, whatever the transport. It keeps only
//! the edge: admit the client, parse the request, run the [`Pipeline`], write the reply and
//! count it, once, whatever happened.
//!
//! Transports ([`super::udp`], [`super::tcp`]) only move bytes; everything a client can see
//! is decided here and in the pipeline, so UDP, TCP and the fuzzer exercise the same code.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;
use tracing::debug;

use crate::admission::{Admission, Verdict};
use crate::dns::{
    Echo, Rcode, Request, Transport, header_rcode, write_answer, write_blocked, write_code,
    write_local,
};
use crate::metrics::{Metrics, QTYPE_LABELS, QueryResult, ResponseCounters};
use crate::net::ForwardedClient;
use crate::pipeline::{Asker, BlockedBy, FetchLimit, Outcome, Pipeline, Query, Resolution, Source};
use crate::policy::{Device, ListIndex, Policy, PolicyHandle};
use crate::records::{BlockedAt, LogResult, QueryRecord, Records};

/// Who a client is to the per-client limits ([`DnsService::standing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Outside `allow_from`.
    Stranger,
    /// One of the house's clients.
    Member,
    /// A trusted forwarder: the whole house behind one address.
    Forwarder,
}

/// Turns requests into replies.
pub struct DnsService {
    policy: PolicyHandle,
    pipeline: Pipeline,
    admission: Admission,
    counters: ServiceCounters,
    /// The query log, observe and clients (issue 14); `None` in benches and the fuzzer.
    records: Option<Arc<Records>>,
}

/// The service's own metric handles.
pub struct ServiceCounters {
    /// Time to answer, per result.
    pub durations: [Histogram; QueryResult::ALL.len()],
    /// Queries refused by the access list.
    pub refused: IntCounter,
    /// Queries dropped by the rate limit.
    pub rate_limited: IntCounter,
    /// Queries dropped by the caps on fetches in flight, indexed by [`FetchLimit`].
    pub fetch_limited: [IntCounter; FetchLimit::ALL.len()],
    /// Replies sent, by response code.
    pub responses: ResponseCounters,
}

impl ServiceCounters {
    /// The handles from `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            durations: metrics.request_durations(),
            refused: metrics.refused(),
            rate_limited: metrics.rate_limited(),
            fetch_limited: FetchLimit::ALL.map(|limit| metrics.fetch_limited(limit.label())),
            responses: metrics.responses(),
        }
    }
}

impl DnsService {
    /// A service answering the clients `admission` lets in, from the snapshot in `policy`
    /// through `pipeline`.
    pub fn new(
        policy: PolicyHandle,
        pipeline: Pipeline,
        admission: Admission,
        counters: ServiceCounters,
    ) -> Self {
        Self {
            policy,
            pipeline,
            admission,
            counters,
            records: None,
        }
    }

    /// This service, handing every answered query to `records`.
    pub fn with_records(self, records: Arc<Records>) -> Self {
        Self {
            records: Some(records),
            ..self
        }
    }

    /// Who `client` is to the per-client limits: a stranger (outside `allow_from`, only ever
    /// answered REFUSED), one of the house's, or a trusted forwarder asking for many of them.
    pub fn standing(&self, client: IpAddr) -> Standing {
        if !self.admission.allows(client) {
            Standing::Stranger
        } else if self.policy.load().trusts(client) {
            Standing::Forwarder
        } else {
            Standing::Member
        }
    }

    /// The reply to `bytes` from `client`, received at `received`, or `None` when nothing
    /// must be sent back. Every reply is counted by its response code, whichever path wrote
    /// it.
    ///
    /// `received` is the query's one reading of the clock before its answer is counted: the
    /// transport reads it once per datagram batch or stream message, and the time to answer,
    /// the cache's freshness and the answer's age are reckoned from it.
    pub async fn respond(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
        received: Instant,
    ) -> Option<Vec<u8>> {
        let (reply, rcode) = self.reply_to(bytes, client, transport, received).await?;
        self.counters.responses.count(rcode);
        Some(reply)
    }

    /// [`Self::respond`]'s reply and its response code, before it is counted. The code is
    /// the header's, read off the bytes written, except for a rejection, which says its own.
    async fn reply_to(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
        received: Instant,
    ) -> Option<(Vec<u8>, u16)> {
        // One snapshot for the whole query, even if a reload swaps in another meanwhile.
        let policy = self.policy.load_full();
        // admit: before anything is decoded. A stranger gets REFUSED (no bigger than its
        // question, so useless for amplification) and never reaches an upstream; a client
        // over its rate gets nothing at all. A trusted forwarder has no rate limit.
        let verdict = match policy.trusts(client) {
            true => self.admission.check_forwarder(client),
            false => self.admission.check(client),
        };
        if verdict != Verdict::Answer {
            return self
                .turn_away(bytes, client, transport, verdict, &policy, received)
                .map(with_header_rcode);
        }
        // parse: a request whose question cannot be read gets its error code, if any.
        let request = match Request::parse(bytes) {
            Ok(request) => request,
            Err(rejection) => {
                let replied = rejection.reply(transport)?;
                let device = self.device(&policy, client, &ForwardedClient::default());
                self.count(device, OTHER_QTYPE, QueryResult::Refused, received);
                return Some(replied);
            }
        };
        let query = Query {
            asker: Asker::Client {
                address: client,
                forwarded: &request.forwarded,
            },
            question: &request.question,
            transport,
            received,
        };
        let resolution = self.pipeline.resolve(&policy, &query).await;
        let reply = write_resolution(&request, bytes, &resolution, &policy, transport, received);
        if let Outcome::Dropped(limit) = resolution.outcome {
            self.counters.fetch_limited[limit as usize].inc();
        }
        let device = resolution.identity.device;
        if let Outcome::Blocked { list, by } = &resolution.outcome {
            device.counters.count_block(usize::from(*list));
            debug!(name = request.question.name(), device = %device.name, profile = %resolution.identity.profile.name, list = %policy.list(*list).id, ?by, "blocked");
        }
        // A dry-run profile's block counters are `metasink_would_block_total`.
        if let Some((list, by)) = &resolution.would_block {
            device.counters.count_block(usize::from(*list));
            debug!(name = request.question.name(), device = %device.name, profile = %resolution.identity.profile.name, list = %policy.list(*list).id, ?by, "would block (observe mode)");
        }
        if let Some(decision) = &resolution.overridden {
            device.counters.count_override(decision.kind.as_str());
        }
        if let Outcome::Rebinding = &resolution.outcome {
            debug!(name = request.question.name(), device = %device.name, "blocked: a public name answered with a private address (DNS rebinding)");
        }
        let result = resolution.outcome.result();
        let duration = self.count(device, request.question.qtype_row(), result, received);
        // records: after the reply is written, once per answered query (the query log,
        // observe and clients); never delays or fails the reply. A question dropped unanswered
        // is counted, not logged, as a rate-limited one is.
        if let (Some(records), Some(reply)) = (&self.records, &reply) {
            let override_name = match &resolution.outcome {
                Outcome::BlockedByOverride(decision) => Some(format!("override {}", decision.id)),
                _ => None,
            };
            let record = query_record(
                client,
                &request,
                &resolution,
                &policy,
                override_name.as_deref(),
                reply,
                duration,
            );
            records.submit(&record, device.querylog, &policy);
        }
        reply.map(with_header_rcode)
    }

    /// A query admission does not let in: refused (a stranger) or dropped (over its rate),
    /// counted under `refused` like every other query not served.
    fn turn_away(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
        verdict: Verdict,
        policy: &Policy,
        received: Instant,
    ) -> Option<Vec<u8>> {
        let refused = verdict == Verdict::Refuse;
        match refused {
            true => self.counters.refused.inc(),
            false => self.counters.rate_limited.inc(),
        }
        // Only a query that reads as one is counted (and answered): bytes that are no DNS
        // are no query.
        let request = Request::parse(bytes).ok()?;
        let reply = refused.then(|| {
            let echo = Echo::of(&request, bytes);
            write_code(&echo, Rcode::Refused, None, false, transport)
        });
        let device = self.device(policy, client, &request.forwarded);
        self.count(
            device,
            request.question.qtype_row(),
            QueryResult::Refused,
            received,
        );
        reply
    }

    fn device<'p>(
        &self,
        policy: &'p Policy,
        client: IpAddr,
        forwarded: &ForwardedClient,
    ) -> &'p Device {
        self.pipeline.identify(policy, client, forwarded).device
    }

    /// Counts one query: the one place every answer (and every query turned away) is counted.
    /// Returns the time it took (one clock read, shared with the records layer).
    fn count(
        &self,
        device: &Device,
        qtype_row: usize,
        result: QueryResult,
        received: Instant,
    ) -> Duration {
        let duration = received.elapsed();
        device.counters.count_query_row(qtype_row, result);
        self.counters.durations[result as usize].observe(duration.as_secs_f64());
        duration
    }
}

/// A reply we wrote, with the response code in its header (see [`header_rcode`]).
fn with_header_rcode(reply: Vec<u8>) -> (Vec<u8>, u16) {
    let rcode = header_rcode(&reply);
    (reply, rcode)
}

/// The `qtype` row of a query whose question could not be read: "other".
const OTHER_QTYPE: usize = QTYPE_LABELS.len() - 1;

/// The reply to `request` (read from `bytes`, received at `received`) from what the
/// pipeline decided; `None` for a question dropped unanswered.
fn write_resolution(
    request: &Request,
    bytes: &[u8],
    resolution: &Resolution<'_>,
    policy: &Policy,
    transport: Transport,
    received: Instant,
) -> Option<Vec<u8>> {
    let echo = Echo::of(request, bytes).with_ecs(resolution.ecs);
    let outcome = &resolution.outcome;
    let why = outcome.why();
    let ede = outcome.ede(policy, &why);
    let code = |rcode, truncate| write_code(&echo, rcode, ede, truncate, transport);
    let reply = match outcome {
        // A rebinding block is answered as a list's block is (with the profile's TTL); its
        // EDE says which it was.
        Outcome::Blocked { .. } | Outcome::Rebinding => {
            let profile = resolution.identity.profile;
            let ttl = match outcome {
                Outcome::Blocked { list, .. } => policy.blocked_ttl(profile, *list),
                _ => profile.blocked_ttl,
            };
            write_blocked(
                &echo,
                &request.question,
                profile.answer,
                ttl,
                ede,
                transport,
            )
        }
        Outcome::BlockedByOverride(decision) => {
            let profile = resolution.identity.profile;
            write_blocked(
                &echo,
                &request.question,
                profile.answer,
                ttl_within(profile.blocked_ttl, decision.expires),
                ede,
                transport,
            )
        }
        Outcome::Answered { entry, .. } => write_answer(
            &echo,
            &entry.answer,
            outcome.ttl_rule(received),
            ede,
            transport,
        ),
        Outcome::Local(local) => write_local(&echo, &request.question, local, transport),
        Outcome::Truncated => code(Rcode::NoError, true),
        Outcome::NotImplemented => code(Rcode::NotImp, false),
        Outcome::Malformed => code(Rcode::FormErr, false),
        Outcome::Refused => code(Rcode::Refused, false),
        Outcome::ServFail(_) => code(Rcode::ServFail, false),
        Outcome::Dropped(_) => return None,
    };
    Some(reply)
}

/// What the records layer is told about one answered query: all borrowed from the query,
/// the resolution and the policy (`override_name`: `override 7`, for a block by override).
fn query_record<'a>(
    client: IpAddr,
    request: &'a Request,
    resolution: &'a Resolution<'a>,
    policy: &'a Policy,
    override_name: Option<&'a str>,
    reply: &[u8],
    duration: Duration,
) -> QueryRecord<'a> {
    let list_id = |list: ListIndex| Cow::Borrowed(policy.list(list).id.as_str());
    let at = |by: BlockedBy| match by {
        BlockedBy::Question => BlockedAt::Question,
        BlockedBy::AnswerTarget => BlockedAt::AnswerTarget,
        BlockedBy::AnswerAddress(_) => BlockedAt::AnswerAddress,
    };
    // A dry-run profile's block is told whatever the client got: an answer or a SERVFAIL.
    let would_block = resolution.would_block;
    let would_list = would_block.map(|(list, _)| list_id(list));
    let would_at = would_block.map(|(_, by)| at(by));
    let (result, list, blocked_at, answer) = match &resolution.outcome {
        Outcome::Blocked { list, by } => (
            LogResult::Blocked,
            Some(list_id(*list)),
            Some(at(*by)),
            None,
        ),
        Outcome::BlockedByOverride(_) => (
            LogResult::Blocked,
            override_name.map(Cow::Borrowed),
            Some(BlockedAt::Question),
            None,
        ),
        Outcome::Answered { entry, source } => {
            let result = match (would_block, source) {
                (Some(_), _) => LogResult::WouldBlock,
                (None, Source::Upstream) => LogResult::Forwarded,
                (None, Source::Cache) => LogResult::Cached,
                (None, Source::Stale) => LogResult::Stale,
            };
            (result, would_list, would_at, Some(&entry.answer))
        }
        Outcome::Rebinding => (
            LogResult::Blocked,
            Some(Cow::Borrowed("rebinding")),
            Some(BlockedAt::AnswerAddress),
            None,
        ),
        Outcome::Local(_) => (LogResult::Local, None, None, None),
        Outcome::ServFail(_) => (LogResult::ServFail, would_list, would_at, None),
        // A dropped question has no reply and is never logged; it reads as not served.
        Outcome::Truncated
        | Outcome::NotImplemented
        | Outcome::Malformed
        | Outcome::Refused
        | Outcome::Dropped(_) => (LogResult::Refused, None, None, None),
    };
    let identity = &resolution.identity;
    let question = &request.question;
    QueryRecord {
        time: crate::records::coarse_now(),
        client,
        mac: identity.mac,
        device: &identity.device.name,
        profile: &identity.profile.name,
        identified_by: identity.by,
        question,
        // The decide stage's lookup when it made one (most queries): the same name, the same
        // snapshot, so the same lists; one matcher lookup fewer per query.
        lists: (resolution.lists).unwrap_or_else(|| policy.lists_containing(question.name())),
        result,
        list,
        blocked_at,
        rcode: u8::try_from(header_rcode(reply)).unwrap_or(0),
        answer,
        duration,
    }
}

/// A service shared by every listener task.
pub type SharedService = Arc<DnsService>;

/// The TTL of a blocked answer that an override decided: the profile's, but never past the
/// override's end, so a client does not keep the block cached after it is lifted.
fn ttl_within(ttl: std::time::Duration, expires: Option<jiff::Timestamp>) -> std::time::Duration {
    let Some(end) = expires else { return ttl };
    let left = end.duration_since(jiff::Timestamp::now()).as_secs().max(0);
    ttl.min(std::time::Duration::from_secs(left.unsigned_abs()))
}
