//! The DNS service: request bytes in, reply bytes out, whatever the transport. It reads the
//! request, identifies the client, runs the [`Pipeline`], frames the reply and counts it.
//!
//! Transports ([`super::udp`], [`super::tcp`]) only move bytes; everything a client can see
//! is decided here, so UDP, TCP and the fuzzer exercise the same code.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;
use tracing::debug;

use super::blocked::blocked_plan;
use super::request::{Rejection, Request};
use super::response::{Reply, Transport, encode};
use super::wire::{BlockedReply, question_bytes, write_blocked};
use crate::admission::{Admission, Verdict};
use crate::metrics::{Metrics, QueryResult};
use crate::pipeline::{Outcome, Pipeline};
use crate::policy::{PolicyHandle, Profile};

/// Extended DNS Error codes we send (RFC 8914 §4).
pub(super) const EDE_BLOCKED: u16 = 15;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// Turns requests into replies.
pub struct DnsService {
    policy: PolicyHandle,
    pipeline: Pipeline,
    admission: Admission,
    counters: ServiceCounters,
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
        }
    }

    /// Admission comes before anything is decoded: a stranger gets REFUSED (no bigger than
    /// its question, so useless for amplification) and never reaches an upstream; a client
    /// over its rate gets nothing at all.
    fn admit(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Result<(), Option<Vec<u8>>> {
        match self.admission.check(client) {
            Verdict::Answer => Ok(()),
            Verdict::Drop => {
                self.counters.rate_limited.inc();
                Err(None)
            }
            Verdict::Refuse => {
                self.counters.refused.inc();
                let request = Request::parse(bytes).ok();
                let policy = self.policy.load();
                let device = policy.client(client);
                Err(request.map(|request| {
                    let question = &request.question;
                    device
                        .counters
                        .count_query_row(question.qtype_row(), QueryResult::Refused);
                    let reply = Reply::code(ResponseCode::Refused);
                    encode(
                        &request.metadata,
                        Some(question),
                        request.edns_payload,
                        reply,
                        transport,
                    )
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
        if let Err(reply) = self.admit(bytes, client, transport) {
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
                let payload = edns.then_some(super::response::MAX_UDP_PAYLOAD);
                return Some(encode(
                    &metadata,
                    None,
                    payload,
                    Reply::code(rcode),
                    transport,
                ));
            }
        };
        let question = &request.question;
        // ANY over UDP is an amplification favourite: the full answer only over TCP
        // (RFC 8482 §4.3 allows refusing it; TC keeps honest clients working).
        if transport == Transport::Udp && question.qtype == RecordType::ANY {
            let reply = Reply {
                truncate: true,
                ..Reply::default()
            };
            return Some(encode(
                &request.metadata,
                Some(question),
                request.edns_payload,
                reply,
                transport,
            ));
        }

        // One snapshot for the whole query, even if a reload swaps in another meanwhile.
        let policy = self.policy.load_full();
        let device = policy.client(client);
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
        let bytes = match &outcome {
            Outcome::Blocked { list, .. } => {
                write_blocked_reply(bytes, &request, profile, &policy.list(*list).id, transport)
            }
            _ => encode(
                &request.metadata,
                Some(question),
                request.edns_payload,
                reply_for(&outcome),
                transport,
            ),
        };
        self.counters.durations[result as usize].observe(started.elapsed().as_secs_f64());
        Some(bytes)
    }
}

/// The blocked answer to `request` (whose bytes are `bytes`) under `profile`, naming the
/// list `list_id`, written straight to bytes.
fn write_blocked_reply(
    bytes: &[u8],
    request: &Request,
    profile: &Profile,
    list_id: &str,
    transport: Transport,
) -> Vec<u8> {
    let question = &request.question;
    let owned;
    let echoed = match super::wire::slice(bytes, request.question_range.as_ref()) {
        Some(echoed) => echoed,
        None => {
            owned = question_bytes(question);
            &owned
        }
    };
    let reply = BlockedReply {
        id: request.metadata.id,
        recursion_desired: request.metadata.recursion_desired,
        checking_disabled: request.metadata.checking_disabled,
        question: echoed,
        edns_payload: request.edns_payload,
        dnssec_ok: question.dnssec_ok,
        plan: blocked_plan(question.qtype, profile.answer),
        ttl: u32::try_from(profile.blocked_ttl.as_secs()).unwrap_or(u32::MAX),
        list_id,
    };
    write_blocked(&reply, transport)
}

/// The reply to an outcome other than a block.
fn reply_for(outcome: &Outcome) -> Reply {
    match outcome {
        Outcome::Answered { entry, .. } => {
            // Serve-stale (RFC 8767 §4): a stale answer gets a fixed TTL and EDE 3.
            let (answers, authorities) =
                entry.answer.records(outcome.age(), outcome.ttl_override());
            Reply {
                rcode: entry.answer.rcode,
                answers,
                authorities,
                ede: outcome.stale_ede(),
                truncate: false,
            }
        }
        Outcome::ServFail(error) => Reply {
            rcode: ResponseCode::ServFail,
            ede: Some((EDE_NO_REACHABLE_AUTHORITY, error.to_string())),
            ..Reply::default()
        },
        // Written by `write_blocked_reply`; never reached.
        Outcome::Blocked { .. } => Reply::code(ResponseCode::Refused),
    }
}

/// A service shared by every listener task.
pub type SharedService = Arc<DnsService>;
