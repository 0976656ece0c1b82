//! The DNS service: request bytes in, reply bytes out, whatever the transport. It reads the
//! request, identifies the client, runs the [`Pipeline`], frames the reply and counts it.
//!
//! Transports ([`super::udp`], [`super::tcp`]) only move bytes; everything a client can see
//! is decided here, so UDP, TCP and the fuzzer exercise the same code.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};
use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;
use tracing::debug;

use super::Question;
use super::blocked::{BlockedRecords, blocked_plan};
use super::reply::{Echo, Ede, MAX_UDP_PAYLOAD, Reply, Transport, write_reply};
use super::request::{Rejection, Request};
use crate::admission::{Admission, Verdict};
use crate::metrics::{Metrics, QueryResult};
use crate::neighbours::Neighbours;
use crate::pipeline::{BlockedBy, Outcome, Pipeline, Source};
use crate::policy::{Device, Identified, Policy, PolicyHandle, Profile};
use crate::records::{BlockedAt, LogResult, QueryRecord, Records};

/// Extended DNS Error codes we send (RFC 8914 §4).
pub(super) const EDE_BLOCKED: u16 = 15;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

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
    /// The MAC addresses of clients on the LAN, for devices matched by one.
    neighbours: Neighbours,
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
}

impl ServiceCounters {
    /// The handles from `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            durations: metrics.request_durations(),
            refused: metrics.refused(),
            rate_limited: metrics.rate_limited(),
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
            neighbours: Neighbours::default(),
            records: None,
        }
    }

    /// This service, handing every answered query to `records`.
    pub fn with_records(mut self, records: Arc<Records>) -> Self {
        self.records = Some(records);
        self
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

    /// Admission comes before anything is decoded: a stranger gets REFUSED (no bigger than
    /// its question, so useless for amplification) and never reaches an upstream; a client
    /// over its rate gets nothing at all. A trusted forwarder of `policy` has no rate limit.
    fn admit(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
        policy: &Policy,
    ) -> Result<(), Option<Vec<u8>>> {
        let verdict = match policy.trusts(client) {
            true => self.admission.check_forwarder(client),
            false => self.admission.check(client),
        };
        match verdict {
            Verdict::Answer => Ok(()),
            Verdict::Drop => {
                self.counters.rate_limited.inc();
                Err(None)
            }
            Verdict::Refuse => {
                self.counters.refused.inc();
                let request = Request::parse(bytes).ok();
                Err(request.map(|request| {
                    let device = policy.client(client, &request.forwarded, &self.neighbours);
                    device
                        .counters
                        .count_query_row(request.question.qtype_row(), QueryResult::Refused);
                    let reply = Reply::code(ResponseCode::Refused);
                    write_reply(&Echo::of(&request, bytes), &reply, transport)
                }))
            }
        }
    }

    /// The reply to `bytes` from `client`, or `None` when nothing must be sent back.
    pub async fn respond(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        // One snapshot for the whole query, even if a reload swaps in another meanwhile.
        let policy = self.policy.load_full();
        if let Err(reply) = self.admit(bytes, client, transport, &policy) {
            return reply;
        }
        let request = match Request::parse(bytes) {
            Ok(request) => request,
            Err(Rejection::Drop) => return None,
            Err(Rejection::Reply {
                metadata,
                rcode,
                edns,
            }) => {
                let echo = Echo::without_question(&metadata, edns.then_some(MAX_UDP_PAYLOAD));
                return Some(write_reply(&echo, &Reply::code(rcode), transport));
            }
        };
        let question = &request.question;
        let echo = Echo::of(&request, bytes);
        // ANY over UDP is an amplification favourite: the full answer only over TCP
        // (RFC 8482 §4.3 allows refusing it; TC keeps honest clients working).
        if transport == Transport::Udp && question.qtype == RecordType::ANY {
            let reply = Reply {
                truncate: true,
                ..Reply::code(ResponseCode::NoError)
            };
            return Some(write_reply(&echo, &reply, transport));
        }

        let (device, identified) = policy.identify(client, &request.forwarded, &self.neighbours);
        // ── records hook (issue 14): what the records layer is told about this query ──
        let seen = Seen {
            client,
            identified,
            device,
            question,
            started,
        };
        if request.forwarded.names_anyone() && policy.is_unknown(device) && policy.trusts(client) {
            // How a household finds the MAC address or address to write in a [[device]].
            debug!(forwarder = %client, mac = ?request.forwarded.mac.map(|mac| mac.to_string()), subnet = ?request.forwarded.subnet, "a forwarder named a client that is no device: default profile");
        }
        if let Some(rcode) = answered_here(question) {
            // Not served, and never forwarded: counted as refused, whatever the code says.
            device
                .counters
                .count_query_row(question.qtype_row(), QueryResult::Refused);
            let bytes = write_reply(&echo, &Reply::code(rcode), transport);
            // ── records hook (issue 14), refused questions ──
            if let Some(records) = &self.records {
                records.submit(&seen.refused(&policy, &bytes), device.querylog, &policy);
            }
            return Some(bytes);
        }
        let profile = policy.profile_of(device);
        let outcome = self.pipeline.resolve(&policy, profile, question).await;

        let result = outcome.result();
        device
            .counters
            .count_query_row(question.qtype_row(), result);
        if let Outcome::Blocked { list, by } = &outcome {
            device.counters.count_block(usize::from(*list));
            debug!(name = question.name(), device = %device.name, profile = %profile.name, list = %policy.list(*list).id, ?by, "blocked");
        }
        // An observe-mode profile's block counters are `metasink_would_block_total`.
        if let Outcome::Answered {
            would_block: Some((list, by)),
            ..
        } = &outcome
        {
            device.counters.count_block(usize::from(*list));
            debug!(name = question.name(), device = %device.name, profile = %profile.name, list = %policy.list(*list).id, ?by, "would block (observe mode)");
        }
        let bytes = write_outcome(&echo, question, &outcome, profile, &policy, transport);
        self.counters.durations[result as usize].observe(started.elapsed().as_secs_f64());
        // ── records hook (issue 14): the query log, observe and clients ──
        if let Some(records) = &self.records {
            let record = seen.record(&outcome, &policy, &bytes);
            records.submit(&record, device.querylog, &policy);
        }
        // ── end of records hook ──
        Some(bytes)
    }
}

/// The code for a question a forwarding resolver does not pass on, if it is one.
///
/// Meta-types are not data to look up (RFC 6895 §3.1): zone transfers (AXFR, IXFR) and the
/// obsolete mailbox types (MAILA, MAILB) are not implemented here, and transaction signatures
/// (TSIG, TKEY) belong in the additional section, never in a question. Classes other than IN
/// (CHAOS `version.bind`, Hesiod) are not the house's business: refused, as a resolver that
/// keeps its version to itself does.
fn answered_here(question: &Question) -> Option<ResponseCode> {
    const TKEY: u16 = 249;
    const MAILB: u16 = 253;
    const MAILA: u16 = 254;
    if question.qclass != DNSClass::IN {
        return Some(ResponseCode::Refused);
    }
    match question.qtype {
        RecordType::AXFR | RecordType::IXFR | RecordType::Unknown(MAILB | MAILA) => {
            Some(ResponseCode::NotImp)
        }
        RecordType::TSIG | RecordType::Unknown(TKEY) => Some(ResponseCode::FormErr),
        _ => None,
    }
}

/// The reply to `question` (whose request `echo` describes), from what the pipeline decided.
fn write_outcome(
    echo: &Echo<'_>,
    question: &Question,
    outcome: &Outcome,
    profile: &Profile,
    policy: &Policy,
    transport: Transport,
) -> Vec<u8> {
    match outcome {
        Outcome::Blocked { list, .. } => {
            let records = BlockedRecords {
                plan: blocked_plan(question.qtype, profile.answer),
                ttl: u32::try_from(profile.blocked_ttl.as_secs()).unwrap_or(u32::MAX),
            };
            let reply = Reply {
                records: Some(&records),
                ede: Some(Ede {
                    code: EDE_BLOCKED,
                    prefix: "blocked by ",
                    text: &policy.list(*list).id,
                }),
                ..Reply::code(records.plan.rcode)
            };
            write_reply(echo, &reply, transport)
        }
        Outcome::Answered { entry, .. } => {
            // Serve-stale (RFC 8767 §4): a stale answer gets a fixed TTL and EDE 3.
            let served = entry.answer.served(outcome.ttl_rule());
            let reply = Reply {
                records: Some(&served),
                ede: outcome.stale_ede().map(|(code, text)| Ede {
                    code,
                    prefix: "",
                    text,
                }),
                ..Reply::code(entry.answer.rcode)
            };
            write_reply(echo, &reply, transport)
        }
        Outcome::ServFail(error) => {
            let text = error.to_string();
            let reply = Reply {
                ede: Some(Ede {
                    code: EDE_NO_REACHABLE_AUTHORITY,
                    prefix: "",
                    text: &text,
                }),
                ..Reply::code(ResponseCode::ServFail)
            };
            write_reply(echo, &reply, transport)
        }
    }
}

/// ── records hook (issue 14) ── What the query path knows about one answered query, turned
/// into the [`QueryRecord`] the records layer takes. Everything is borrowed: building it
/// allocates nothing.
struct Seen<'a> {
    client: IpAddr,
    identified: Identified,
    device: &'a Device,
    question: &'a Question,
    started: Instant,
}

impl<'a> Seen<'a> {
    /// The record of a question the pipeline answered with `outcome` in `reply`.
    fn record(&self, outcome: &'a Outcome, policy: &'a Policy, reply: &[u8]) -> QueryRecord<'a> {
        let (result, list, at, answer) = match outcome {
            Outcome::Blocked { list, by } => (LogResult::Blocked, Some(*list), Some(*by), None),
            Outcome::Answered {
                entry,
                source,
                would_block,
            } => {
                let result = match (would_block, source) {
                    (Some(_), _) => LogResult::WouldBlock,
                    (None, Source::Upstream) => LogResult::Forwarded,
                    (None, Source::Cache) => LogResult::Cached,
                    (None, Source::Stale) => LogResult::Stale,
                };
                let list = would_block.map(|(list, _)| list);
                let at = would_block.map(|(_, by)| by);
                (result, list, at, Some(&entry.answer))
            }
            Outcome::ServFail(_) => (LogResult::ServFail, None, None, None),
        };
        QueryRecord {
            result,
            list: list.map(|list| policy.list(list).id.as_str()),
            blocked_at: at.map(|by| match by {
                BlockedBy::Question => BlockedAt::Question,
                BlockedBy::AnswerTarget => BlockedAt::AnswerTarget,
            }),
            answer,
            ..self.refused(policy, reply)
        }
    }

    /// The record of a question answered here (REFUSED, NOTIMP, …) in `reply`.
    fn refused(&self, policy: &'a Policy, reply: &[u8]) -> QueryRecord<'a> {
        QueryRecord {
            time: std::time::SystemTime::now(),
            client: self.client,
            mac: self.identified.mac,
            device: &self.device.name,
            profile: &policy.profile_of(self.device).name,
            identified_by: self.identified.by,
            question: self.question,
            lists: policy.lists_containing(self.question.name()),
            result: LogResult::Refused,
            list: None,
            blocked_at: None,
            // The reply's header: flags in bytes 2 and 3, RCODE in the low four bits.
            rcode: reply.get(3).map_or(0, |flags| flags & 0x0F),
            answer: None,
            upstream: None,
            duration: self.started.elapsed(),
        }
    }
}

/// A service shared by every listener task.
pub type SharedService = Arc<DnsService>;
