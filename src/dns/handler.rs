//! The request handler hickory-server calls for every query: reads the question, identifies
//! the client, runs the [`Pipeline`], writes the answer, counts it.
//!
//! It always answers a well-formed query: FORMERR for a message without exactly one question,
//! NOTIMP for opcodes other than QUERY, SERVFAIL when no upstream answers. (Messages too short
//! to hold a header, and responses, are dropped by hickory-server before they reach us.)

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_resolver::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use prometheus::Histogram;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Question;
use super::blocked::blocked_records;
use crate::metrics::QueryResult;
use crate::pipeline::{Outcome, Pipeline};
use crate::policy::{Policy, PolicyHandle};

/// The largest UDP answer we send (the DNS Flag Day 2020 default): larger answers are
/// truncated and the client retries over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Extended DNS Error codes we send (RFC 8914 §4).
const EDE_BLOCKED: u16 = 15;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// The handler registered with hickory-server.
pub struct Handler {
    policy: PolicyHandle,
    pipeline: Arc<Pipeline>,
    durations: [Histogram; QueryResult::ALL.len()],
}

impl Handler {
    /// A handler reading the policy through `policy`.
    pub fn new(
        policy: PolicyHandle,
        pipeline: Arc<Pipeline>,
        durations: [Histogram; QueryResult::ALL.len()],
    ) -> Self {
        Self {
            policy,
            pipeline,
            durations,
        }
    }
}

/// The records and codes of one response, before encoding.
struct Reply {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// Extended DNS Error (code, text), sent when the query had EDNS.
    ede: Option<(u16, String)>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(request, response, ResponseCode::FormErr).await;
        };
        let edns = request.edns.as_ref();
        let dnssec_ok = edns.is_some_and(|edns| edns.flags().dnssec_ok);
        let question =
            Question::from_query(info.query, dnssec_ok, request.metadata.checking_disabled);

        // One snapshot for the whole query, even if a reload swaps in another meanwhile.
        let policy = self.policy.load_full();
        let client = policy.client(request.src().ip());
        let profile = policy.profile_of(client);
        let outcome = self.pipeline.resolve(&policy, profile, &question).await;

        let reply = reply_for(&policy, client.profile, &question, &outcome);
        let sent = send(request, response, reply).await;
        let result = outcome.result();
        client.counters.count_query(question.qtype_label(), result);
        if let Outcome::Blocked { list, by } = outcome {
            client.counters.count_block(usize::from(list));
            debug!(name = question.name(), device = %client.name, profile = %profile.name, list = %policy.list(list).id, ?by, "blocked");
        }
        self.durations[result as usize].observe(started.elapsed().as_secs_f64());
        sent
    }
}

fn reply_for(policy: &Policy, profile: usize, question: &Question, outcome: &Outcome) -> Reply {
    match outcome {
        Outcome::Blocked { list, .. } => {
            let profile = &policy.profiles()[profile];
            let records = blocked_records(question, profile.answer, profile.blocked_ttl);
            Reply {
                rcode: records.rcode,
                answers: records.answers,
                authorities: records.authorities,
                ede: Some((EDE_BLOCKED, format!("blocked by {}", policy.list(*list).id))),
            }
        }
        Outcome::Answered { entry, .. } => {
            let (answers, authorities) = entry.answer.aged_records(outcome.age());
            Reply {
                rcode: entry.answer.rcode,
                answers,
                authorities,
                ede: None,
            }
        }
        Outcome::ServFail(error) => Reply {
            rcode: ResponseCode::ServFail,
            answers: Vec::new(),
            authorities: Vec::new(),
            ede: Some((EDE_NO_REACHABLE_AUTHORITY, error.to_string())),
        },
    }
}

/// The OPT record of our response: sent only when the query had one (RFC 6891 §7), with the
/// smaller of the client's payload size and ours.
fn response_edns(request: &Request, ede: Option<(u16, String)>) -> Option<Edns> {
    let client = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(client.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    edns.set_dnssec_ok(client.flags().dnssec_ok);
    if let Some((code, text)) = ede {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        edns.options_mut().insert(EdnsOption::Unknown(15, data));
    }
    Some(edns)
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    reply: Reply,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.response_code = reply.rcode;
    let edns = response_edns(request, reply.ede);
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let message = builder.build(
        metadata,
        reply.answers.iter(),
        reply.authorities.iter(),
        None,
        None,
    );
    match response.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            warn!(%error, "sending a response failed");
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    response: R,
    rcode: ResponseCode,
) -> ResponseInfo {
    let reply = Reply {
        rcode,
        answers: Vec::new(),
        authorities: Vec::new(),
        ede: None,
    };
    send(request, response, reply).await
}
