//! Reading a client's request from the wire: what must be dropped, refused as malformed or
//! not implemented, and otherwise the one question with the EDNS details the answer depends on.
//!
//! RFC 1035 §4.1.1 and RFC 6891 govern the replies: a message shorter than a header, or one
//! that is itself a response (QR=1), gets no reply at all (answering responses would let
//! anyone bounce traffic off us); an opcode other than QUERY gets NOTIMP; anything that does
//! not decode, or asks anything but exactly one question, gets FORMERR; an EDNS version above
//! 0 gets BADVERS.

use hickory_proto::op::{Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use std::ops::Range;

use super::Question;

/// A request we answer.
#[derive(Debug)]
pub struct Request {
    /// The request's header fields (ID, RD, CD …), for the reply.
    pub(super) metadata: Metadata,
    /// The question.
    pub question: Question,
    /// The client's EDNS UDP payload size, when the request had an OPT record.
    pub(super) edns_payload: Option<u16>,
    /// Where the question section lies in the request bytes, when [`super::wire`] read it
    /// (the reply echoes those bytes).
    pub(super) question_range: Option<Range<usize>>,
}

/// What to do with bytes that are not a request we answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Send nothing (runts, responses).
    Drop,
    /// Reply with this code and the request's ID.
    Reply {
        /// The request's header, echoed.
        metadata: Metadata,
        /// FORMERR, NOTIMP or BADVERS.
        rcode: ResponseCode,
        /// Whether the request had EDNS (BADVERS needs an OPT in the reply).
        edns: bool,
    },
}

impl Request {
    /// Reads `bytes` as a client request: the common shape by hand ([`super::wire`]), the
    /// rest through hickory.
    pub fn parse(bytes: &[u8]) -> Result<Self, Rejection> {
        match super::wire::read_request(bytes) {
            Some(request) => Ok(request),
            None => Self::parse_general(bytes),
        }
    }

    /// Reads `bytes` with hickory's `Message` decoder: the reference for [`Self::parse`].
    pub(super) fn parse_general(bytes: &[u8]) -> Result<Self, Rejection> {
        let header = Header::read(&mut BinDecoder::new(bytes)).map_err(|_| Rejection::Drop)?;
        let metadata = header.metadata;
        if metadata.message_type == MessageType::Response {
            return Err(Rejection::Drop);
        }
        let reply = |rcode, edns| {
            Err(Rejection::Reply {
                metadata,
                rcode,
                edns,
            })
        };
        let message = Message::from_vec(bytes);
        if metadata.op_code != OpCode::Query {
            // A request with an OPT gets one back whatever the answer (RFC 6891 §7).
            let edns = message.is_ok_and(|message| message.edns.is_some());
            return reply(ResponseCode::NotImp, edns);
        }
        let Ok(message) = message else {
            return reply(ResponseCode::FormErr, false);
        };
        let edns = message.edns.as_ref();
        if edns.is_some_and(|edns| edns.version() > 0) {
            return reply(ResponseCode::BADVERS, true);
        }
        let [query] = &message.queries[..] else {
            return reply(ResponseCode::FormErr, edns.is_some());
        };
        // OPT is a pseudo-type of the additional section, never a question (RFC 6891 §6.1.1).
        if query.query_type() == RecordType::OPT {
            return reply(ResponseCode::FormErr, edns.is_some());
        }
        let dnssec_ok = edns.is_some_and(|edns| edns.flags().dnssec_ok);
        Ok(Self {
            metadata,
            question: Question::from_wire_query(query, dnssec_ok, metadata.checking_disabled),
            edns_payload: edns.map(|edns| edns.max_payload()),
            question_range: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::Name;

    use super::*;

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.id = 77;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message
    }

    fn rcode_of(bytes: &[u8]) -> Option<ResponseCode> {
        match Request::parse(bytes) {
            Err(Rejection::Reply {
                rcode, metadata, ..
            }) => {
                assert_eq!(metadata.id, 77);
                Some(rcode)
            }
            _ => None,
        }
    }

    #[test]
    fn a_plain_query_is_read() {
        let mut message = query("WWW.Example.COM.", RecordType::AAAA);
        let mut edns = Edns::new();
        edns.set_max_payload(1400);
        edns.set_dnssec_ok(true);
        message.set_edns(edns);
        let request = Request::parse(&message.to_vec().unwrap()).unwrap();
        assert_eq!(request.question.name(), "www.example.com");
        assert_eq!(request.question.qtype_label(), "AAAA");
        assert_eq!(request.edns_payload, Some(1400));
        assert!(request.question.dnssec_ok);
    }

    #[test]
    fn runts_and_responses_get_no_reply() {
        assert_eq!(Request::parse(&[0; 11]).unwrap_err(), Rejection::Drop);
        let mut response = query("a.example.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(
            Request::parse(&response.to_vec().unwrap()).unwrap_err(),
            Rejection::Drop
        );
    }

    #[test]
    fn malformed_and_unsupported_requests_get_their_codes() {
        let mut bytes = query("a.example.", RecordType::A).to_vec().unwrap();
        bytes.truncate(bytes.len() - 3);
        assert_eq!(rcode_of(&bytes), Some(ResponseCode::FormErr), "cut short");

        let mut two = query("a.example.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("b.example.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            rcode_of(&two.to_vec().unwrap()),
            Some(ResponseCode::FormErr),
            "two questions"
        );

        let mut none = query("a.example.", RecordType::A);
        none.queries.clear();
        assert_eq!(
            rcode_of(&none.to_vec().unwrap()),
            Some(ResponseCode::FormErr),
            "no question"
        );

        let mut notify = query("a.example.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(
            rcode_of(&notify.to_vec().unwrap()),
            Some(ResponseCode::NotImp)
        );

        let mut future = query("a.example.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_version(1);
        future.set_edns(edns);
        assert_eq!(
            rcode_of(&future.to_vec().unwrap()),
            Some(ResponseCode::BADVERS)
        );
    }

    #[test]
    fn a_compression_loop_is_formerr_not_a_hang() {
        // Header with one question whose name is a pointer to itself (offset 12).
        let mut bytes = vec![0, 77, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(rcode_of(&bytes), Some(ResponseCode::FormErr));
    }
}
