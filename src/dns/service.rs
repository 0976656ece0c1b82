//! The DNS service: request bytes in, reply bytes out, whatever the transport. It reads the
//! request, identifies the client, runs the [`Pipeline`], frames the reply and counts it.
//!
//! Transports ([`super::udp`], [`super::tcp`]) only move bytes; everything a client can see
//! is decided here, so UDP, TCP and the fuzzer exercise the same code.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::Histogram;
use tokio::time::Instant;
use tracing::debug;

use super::blocked::blocked_records;
use super::request::{Rejection, Request};
use super::response::{Reply, Transport, encode};
use crate::metrics::QueryResult;
use crate::pipeline::{Outcome, Pipeline};
use crate::policy::{Policy, PolicyHandle, Profile};

/// Extended DNS Error codes we send (RFC 8914 §4).
const EDE_BLOCKED: u16 = 15;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// Turns requests into replies.
pub struct DnsService {
    policy: PolicyHandle,
    pipeline: Pipeline,
    durations: [Histogram; QueryResult::ALL.len()],
}

impl DnsService {
    /// A service answering from the snapshot in `policy` through `pipeline`.
    pub fn new(
        policy: PolicyHandle,
        pipeline: Pipeline,
        durations: [Histogram; QueryResult::ALL.len()],
    ) -> Self {
        Self {
            policy,
            pipeline,
            durations,
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
        device.counters.count_query(question.qtype_label(), result);
        if let Outcome::Blocked { list, by } = &outcome {
            device.counters.count_block(usize::from(*list));
            debug!(name = question.name(), device = %device.name, profile = %profile.name, list = %policy.list(*list).id, ?by, "blocked");
        }
        let reply = reply_for(&policy, profile, question, &outcome);
        let bytes = encode(
            &request.metadata,
            Some(question),
            request.edns_payload,
            reply,
            transport,
        );
        self.durations[result as usize].observe(started.elapsed().as_secs_f64());
        Some(bytes)
    }
}

fn reply_for(
    policy: &Policy,
    profile: &Profile,
    question: &super::Question,
    outcome: &Outcome,
) -> Reply {
    match outcome {
        Outcome::Blocked { list, .. } => {
            let records = blocked_records(question, profile.answer, profile.blocked_ttl);
            Reply {
                rcode: records.rcode,
                answers: records.answers,
                authorities: records.authorities,
                ede: Some((EDE_BLOCKED, format!("blocked by {}", policy.list(*list).id))),
                truncate: false,
            }
        }
        Outcome::Answered { entry, .. } => {
            let (answers, authorities) = entry.answer.aged_records(outcome.age());
            Reply {
                rcode: entry.answer.rcode,
                answers,
                authorities,
                ede: None,
                truncate: false,
            }
        }
        Outcome::ServFail(error) => Reply {
            rcode: ResponseCode::ServFail,
            ede: Some((EDE_NO_REACHABLE_AUTHORITY, error.to_string())),
            ..Reply::default()
        },
    }
}

/// A service shared by every listener task.
pub type SharedService = Arc<DnsService>;
