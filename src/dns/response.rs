//! Writing replies: the records and codes the service chose, framed as a response to the
//! request (ID, question, RD and CD echoed, RA set), with an OPT record when the request had
//! one, sized for the transport.
//!
//! UDP replies stay within the client's EDNS payload size and our own 1232-byte ceiling (the
//! DNS Flag Day 2020 figure that avoids IP fragmentation), or 512 bytes without EDNS (RFC 1035
//! §4.2.1). A reply that does not fit is sent as the header, question and OPT with TC set, and
//! the client asks again over TCP (RFC 7766 §5).

use hickory_proto::op::{Edns, Message, MessageType, Metadata, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::Question;

/// The largest UDP reply we send.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// RFC 1035's UDP limit for clients without EDNS.
pub(super) const PLAIN_UDP_PAYLOAD: u16 = 512;

/// EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_OPTION: u16 = 15;

/// The content of a reply, before framing.
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    /// Extended DNS Error (INFO-CODE, EXTRA-TEXT), sent when the request had EDNS.
    pub ede: Option<(u16, String)>,
    /// Send only the header and question with TC set (ANY over UDP).
    pub truncate: bool,
}

impl Reply {
    /// A reply carrying only a response code.
    pub fn code(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

/// How a reply travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram: size-limited.
    Udp,
    /// A TCP stream: up to 65535 bytes.
    Tcp,
}

/// Encodes `reply` as the response to the request with header `request` and `question`
/// (none for a request whose question could not be read), whose EDNS payload size was
/// `edns_payload` (none without EDNS).
pub(super) fn encode(
    request: &Metadata,
    question: Option<&Question>,
    edns_payload: Option<u16>,
    reply: Reply,
    transport: Transport,
) -> Vec<u8> {
    let limit = match (transport, edns_payload) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, Some(payload)) => payload.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
        (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
    };
    let mut message = Message::new(request.id, MessageType::Response, request.op_code);
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.checking_disabled = request.checking_disabled;
    message.metadata.recursion_available = true;
    message.metadata.response_code = reply.rcode;
    if let Some(question) = question {
        let mut query = Query::query(question.name.clone(), question.qtype);
        query.query_class = question.qclass;
        message.add_query(query);
    }
    if let Some(payload) = edns_payload {
        message.set_edns(response_edns(payload, question, reply.ede));
    }
    if reply.truncate {
        message.metadata.truncation = true;
    } else {
        message.answers = reply.answers;
        message.authorities = reply.authorities;
    }
    let bytes = emit(&message, limit);
    match bytes {
        Some(bytes) if !truncated(&bytes) => bytes,
        // Partial answers would be cached by some stubs as if complete: send none at all.
        _ => {
            message.answers.clear();
            message.authorities.clear();
            message.metadata.truncation = true;
            emit(&message, limit).unwrap_or_else(|| header_only(request, reply.rcode))
        }
    }
}

/// Our OPT record: the smaller of the client's payload size and ours, DO echoed, and the
/// Extended DNS Error if any.
fn response_edns(
    client_payload: u16,
    question: Option<&Question>,
    ede: Option<(u16, String)>,
) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(client_payload.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD));
    edns.set_dnssec_ok(question.is_some_and(|question| question.dnssec_ok));
    if let Some((code, text)) = ede {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        edns.options_mut()
            .insert(EdnsOption::Unknown(EDE_OPTION, data));
    }
    edns
}

fn emit(message: &Message, limit: u16) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    message.emit(&mut encoder).ok()?;
    Some(bytes)
}

/// The TC bit of an encoded message (byte 2, bit 1).
fn truncated(bytes: &[u8]) -> bool {
    bytes.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// Last resort when even the question does not encode: a bare header with the code.
fn header_only(request: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    let mut message = Message::new(request.id, MessageType::Response, request.op_code);
    message.metadata.response_code = rcode;
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData};

    use super::*;

    fn metadata() -> Metadata {
        let mut metadata = Metadata::new(4242, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = true;
        metadata
    }

    fn big_reply(question: &Question) -> Reply {
        let text = "x".repeat(200);
        let answers = (0..10)
            .map(|_| {
                Record::from_rdata(
                    question.name.clone(),
                    60,
                    RData::TXT(TXT::new(vec![text.clone()])),
                )
            })
            .collect();
        Reply {
            answers,
            ..Reply::default()
        }
    }

    #[test]
    fn echoes_the_request_and_sets_ra() {
        let question = Question::parse("www.example.com", "A").unwrap();
        let a = Record::from_rdata(
            question.name.clone(),
            60,
            RData::A(Ipv4Addr::new(192, 0, 2, 1).into()),
        );
        let reply = Reply {
            answers: vec![a],
            ..Reply::default()
        };
        let bytes = encode(
            &metadata(),
            Some(&question),
            Some(4096),
            reply,
            Transport::Udp,
        );
        let message = Message::from_vec(&bytes).unwrap();
        assert_eq!(message.metadata.id, 4242);
        assert!(message.metadata.recursion_desired && message.metadata.recursion_available);
        assert_eq!(message.queries[0].name().to_ascii(), "www.example.com.");
        assert_eq!(message.answers.len(), 1);
        assert_eq!(
            message.edns.as_ref().unwrap().max_payload(),
            MAX_UDP_PAYLOAD
        );
    }

    #[test]
    fn oversized_udp_replies_are_truncated_to_an_empty_answer() {
        let question = Question::parse("big.example.com", "TXT").unwrap();
        let udp = encode(
            &metadata(),
            Some(&question),
            None,
            big_reply(&question),
            Transport::Udp,
        );
        assert!(udp.len() <= 512);
        let message = Message::from_vec(&udp).unwrap();
        assert!(message.metadata.truncation && message.answers.is_empty());
        assert_eq!(message.queries.len(), 1);

        let tcp = encode(
            &metadata(),
            Some(&question),
            None,
            big_reply(&question),
            Transport::Tcp,
        );
        let message = Message::from_vec(&tcp).unwrap();
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 10);
    }

    #[test]
    fn an_extended_error_rides_in_the_opt_record_only_with_edns() {
        let question = Question::parse("www.meta.ai", "A").unwrap();
        let reply = || Reply {
            ede: Some((15, "blocked by meta-ai".into())),
            ..Reply::default()
        };
        let with = Message::from_vec(&encode(
            &metadata(),
            Some(&question),
            Some(1232),
            reply(),
            Transport::Udp,
        ))
        .unwrap();
        let options = with.edns.unwrap().options().as_ref().to_vec();
        assert_eq!(options.len(), 1);
        let without = Message::from_vec(&encode(
            &metadata(),
            Some(&question),
            None,
            reply(),
            Transport::Udp,
        ))
        .unwrap();
        assert!(without.edns.is_none());
        assert_eq!(
            Name::from_ascii("www.meta.ai.").unwrap(),
            *without.queries[0].name()
        );
    }
}
