//! Reading a client's request from the wire: what must be dropped, refused as malformed or
//! not implemented, and otherwise the one question with the EDNS details the answer depends on.
//!
//! RFC 1035 §4.1.1 and RFC 6891 govern the replies: a message shorter than a header, or one
//! that is itself a response (QR=1), gets no reply at all (answering responses would let
//! anyone bounce traffic off us); an opcode other than QUERY gets NOTIMP; anything that does
//! not decode, or asks anything but exactly one question, gets FORMERR; an EDNS version above
//! 0 gets BADVERS.
//!
//! A forwarding router may name the client it forwards for in EDNS options: ECS (RFC 7871),
//! dnsmasq's `--add-mac` option 65001 (six raw bytes) or, with `--add-mac=base64|text`, option
//! 65073. They are read into [`ForwardedClient`]; whether to believe them is the policy's call.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;

use std::ops::Range;

use super::Question;
use super::wire::read_request;
use crate::net::ForwardedClient;
use crate::net::MacAddress;

/// dnsmasq `--add-mac`: the client's MAC address as six bytes (a private-use code).
const OPTION_MAC: u16 = 65001;
/// dnsmasq `--add-mac=base64` or `=text`: the MAC address as base64 of its six bytes or as
/// `aa:bb:cc:dd:ee:ff` (Nominum's device-id code).
const OPTION_DEVICE_ID: u16 = 65073;

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
    /// The client a forwarder says it asks for, if any.
    pub forwarded: ForwardedClient,
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
        match read_request(bytes) {
            Some(common) => Ok(Self {
                metadata: common.metadata,
                question: common.question,
                edns_payload: common.edns_payload,
                question_range: Some(common.question_range),
                // An OPT with options is left to the hickory reader, which reads who a
                // forwarder names.
                forwarded: ForwardedClient::default(),
            }),
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
            forwarded: edns.map(forwarded_client).unwrap_or_default(),
        })
    }
}

/// The client `edns` names. A subnet without a single bit of address (dnsmasq's default
/// `/0`, meaning "add nothing upstream") names nobody; an option that does not read as a MAC
/// address is ignored, and never undoes one that did. A forwarder sends each option once;
/// should one come twice, the first that reads is kept.
fn forwarded_client(edns: &Edns) -> ForwardedClient {
    let mut forwarded = ForwardedClient::default();
    for (_, option) in &edns.options().options {
        let (mac, subnet) = match option {
            EdnsOption::Subnet(subnet) if subnet.source_prefix() > 0 => {
                let network = IpNet::new(subnet.addr(), subnet.source_prefix()).ok();
                (None, network.map(|net| net.trunc()))
            }
            EdnsOption::Unknown(OPTION_MAC, bytes) => {
                (<[u8; 6]>::try_from(&bytes[..]).ok().map(MacAddress), None)
            }
            EdnsOption::Unknown(OPTION_DEVICE_ID, bytes) => (device_id_mac(bytes), None),
            _ => (None, None),
        };
        forwarded.mac = forwarded.mac.or(mac);
        forwarded.subnet = forwarded.subnet.or(subnet);
    }
    forwarded
}

/// The MAC address in an option 65073: `aa:bb:cc:dd:ee:ff`, or base64 of the six bytes.
fn device_id_mac(bytes: &[u8]) -> Option<MacAddress> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(mac) = text.parse() {
        return Some(mac);
    }
    let decoded = BASE64.decode(text).ok()?;
    <[u8; 6]>::try_from(&decoded[..]).ok().map(MacAddress)
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

    /// The client a query with `options` in its OPT record names.
    fn forwarded_by(options: Vec<EdnsOption>) -> ForwardedClient {
        let mut message = query("a.example.", RecordType::A);
        let mut edns = Edns::new();
        for option in options {
            edns.options_mut().insert(option);
        }
        message.set_edns(edns);
        Request::parse(&message.to_vec().unwrap())
            .unwrap()
            .forwarded
    }

    #[test]
    fn the_client_a_forwarder_names_is_read_from_edns_options() {
        use hickory_proto::rr::rdata::opt::ClientSubnet;

        let subnet = |ip: &str, prefix| {
            EdnsOption::Subnet(ClientSubnet::new(ip.parse().unwrap(), prefix, 0))
        };
        let mac = "02:00:5e:10:00:07".parse::<MacAddress>().ok();
        let named = |mac, subnet: Option<&str>| ForwardedClient {
            mac,
            subnet: subnet.map(|text| text.parse().unwrap()),
        };

        assert_eq!(forwarded_by(vec![]), ForwardedClient::default());
        assert_eq!(
            forwarded_by(vec![subnet("192.168.1.20", 32)]),
            named(None, Some("192.168.1.20/32"))
        );
        assert_eq!(
            forwarded_by(vec![subnet("fd00::20", 56)]),
            named(None, Some("fd00::/56"))
        );
        assert_eq!(
            forwarded_by(vec![subnet("0.0.0.0", 0)]),
            ForwardedClient::default(),
            "a /0 names nobody"
        );
        let raw = vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x07];
        assert_eq!(
            forwarded_by(vec![EdnsOption::Unknown(OPTION_MAC, raw.clone())]),
            named(mac, None)
        );
        for text in ["02:00:5e:10:00:07", "AgBeEAAH"] {
            let option = EdnsOption::Unknown(OPTION_DEVICE_ID, text.as_bytes().to_vec());
            assert_eq!(
                forwarded_by(vec![option, subnet("10.0.0.9", 32)]),
                named(mac, Some("10.0.0.9/32")),
                "{text}"
            );
        }
        let bad_mac = EdnsOption::Unknown(OPTION_MAC, vec![1, 2, 3]);
        let good_mac = EdnsOption::Unknown(OPTION_MAC, raw.clone());
        for options in [
            vec![good_mac.clone(), bad_mac.clone()],
            vec![bad_mac, good_mac],
        ] {
            assert_eq!(
                forwarded_by(options),
                named(mac, None),
                "a bad option undoes nothing"
            );
        }
        assert_eq!(
            forwarded_by(vec![
                subnet("10.0.0.9", 32),
                subnet("0.0.0.0", 0),
                subnet("10.0.0.1", 32)
            ]),
            named(None, Some("10.0.0.9/32")),
            "the first subnet that names someone"
        );
        for (code, bytes) in [
            (OPTION_MAC, raw[..5].to_vec()),
            (OPTION_MAC, [&raw[..], &[0]].concat()),
            (OPTION_DEVICE_ID, b"AgBeEAA".to_vec()),
            (OPTION_DEVICE_ID, b"not a mac".to_vec()),
            (OPTION_DEVICE_ID, vec![0xff, 0xfe]),
        ] {
            assert_eq!(
                forwarded_by(vec![EdnsOption::Unknown(code, bytes.clone())]),
                ForwardedClient::default(),
                "{code} {bytes:?} is no MAC address"
            );
        }
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
