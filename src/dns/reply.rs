//! Writing replies, for every kind of answer: a header echoing the request (ID, opcode, RD and
//! CD; RA set), the question as the client sent it, the records in wire form, and an OPT
//! record when the request had one (payload size, DO echoed, an Extended DNS Error), sized for
//! the transport. Records come already in wire form ([`Records`]): blocked answers write
//! theirs directly, cached answers were encoded once when they entered the cache. So no reply
//! builds a hickory `Message`.
//!
//! UDP replies stay within the client's EDNS payload size and our own 1232-byte ceiling (the
//! DNS Flag Day 2020 figure that avoids IP fragmentation), or 512 bytes without EDNS (RFC 1035
//! §4.2.1). A reply that does not fit first loses the Extended DNS Error's text (its code
//! stays); if it still does not fit, all its records, with TC set so the client asks again
//! over TCP (RFC 7766 §5). The question always stays: stubs match a reply to their query by
//! it. Header, question and OPT always fit: a name takes at most 255 bytes (RFC 1035 §3.1),
//! so with an EDE code they make at most 288 of the 512 bytes every client can take.
//!
//! Layout (RFC 1035 §4.1): a 12-byte header (ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT);
//! the question; resource records (name, TYPE, CLASS, TTL, RDLENGTH, RDATA). The OPT
//! pseudo-record is RFC 6891 §6.1.2; its TTL field carries the upper bits of a response code
//! above 15 (BADVERS).

use std::borrow::Cow;

use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use ipnet::IpNet;

use super::request::Request;
use super::wire::{FLAG_DO, HEADER_LEN, PLAIN_UDP_PAYLOAD, TYPE_OPT, question_bytes};

/// The largest UDP reply we send.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// EDNS option code of Extended DNS Errors (RFC 8914 §2).
const EDE_OPTION: u16 = 15;
/// EDNS option code of EDNS Client Subnet (RFC 7871 §6).
const ECS_OPTION: u16 = 8;
/// Offsets of the answer and authority counts in the header.
const ANCOUNT: usize = 6;
const NSCOUNT: usize = 8;

/// How a reply travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram: size-limited.
    Udp,
    /// A TCP stream: up to 65535 bytes.
    Tcp,
}

/// What a reply takes from its request.
pub struct Echo<'a> {
    id: u16,
    op_code: OpCode,
    recursion_desired: bool,
    checking_disabled: bool,
    /// The question section as it goes out; empty for a request whose question could not be
    /// read (then QDCOUNT is 0).
    question: Cow<'a, [u8]>,
    /// The client's EDNS payload size and DO bit; `None` without EDNS (then no OPT is sent).
    edns: Option<(u16, bool)>,
    /// The EDNS Client Subnet option to send back, if any.
    ecs: Option<Ecs>,
}

/// An EDNS Client Subnet option echoed in a reply (RFC 7871 §7.3): the client subnet as the
/// request gave it, and the scope the answer holds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecs {
    /// FAMILY, SOURCE PREFIX-LENGTH and ADDRESS, as the request had them.
    pub subnet: IpNet,
    /// SCOPE PREFIX-LENGTH: how much of the address the answer depended on (0: not at all).
    pub scope: u8,
}

impl<'a> Echo<'a> {
    /// The echo of `request`, read from `bytes`: the question bytes as the client sent them
    /// when the fast reader kept their place, else written again from the question.
    pub fn of(request: &Request, bytes: &'a [u8]) -> Self {
        let question = &request.question;
        let echoed = request
            .question_range
            .clone()
            .and_then(|range| bytes.get(range));
        Self {
            question: match echoed {
                Some(echoed) => Cow::Borrowed(echoed),
                None => Cow::Owned(question_bytes(question)),
            },
            edns: request
                .edns_payload
                .map(|payload| (payload, question.dnssec_ok)),
            ..Self::without_question(&request.metadata, None)
        }
    }

    /// The echo of a request whose question is not answered (FORMERR, NOTIMP, BADVERS):
    /// header fields only, with an OPT of our own size when `edns_payload` is given.
    pub fn without_question(metadata: &Metadata, edns_payload: Option<u16>) -> Self {
        Self {
            id: metadata.id,
            op_code: metadata.op_code,
            recursion_desired: metadata.recursion_desired,
            checking_disabled: metadata.checking_disabled,
            question: Cow::Borrowed(&[]),
            edns: edns_payload.map(|payload| (payload, false)),
            ecs: None,
        }
    }

    /// This echo with `ecs` in its OPT (when the request had EDNS).
    pub fn with_ecs(self, ecs: Option<Ecs>) -> Self {
        Self { ecs, ..self }
    }

    /// The reply size the transport allows this client.
    fn limit(&self, transport: Transport) -> usize {
        let limit = match (transport, self.edns) {
            (Transport::Tcp, _) => u16::MAX,
            (Transport::Udp, Some((payload, _))) => {
                payload.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
            }
            (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
        };
        usize::from(limit)
    }
}

/// Answer and authority records that write themselves in wire form after the question.
pub(super) trait Records {
    /// Appends the records to `out` (whose question starts at offset 12, for name
    /// compression); returns how many answer and authority records were written.
    fn write(&self, out: &mut Vec<u8>) -> (u16, u16);
}

/// An Extended DNS Error (RFC 8914): INFO-CODE and EXTRA-TEXT, the text as a fixed prefix
/// and a variable part so callers need not allocate to join them.
///
/// Every code the daemon sends is made here, by name.
#[derive(Clone, Copy, Debug)]
pub struct Ede<'a> {
    code: u16,
    prefix: &'static str,
    text: &'a str,
}

impl<'a> Ede<'a> {
    /// Blocked (RFC 8914 §4.16), naming the list.
    pub fn blocked(list: &'a str) -> Self {
        Self {
            code: 15,
            prefix: "blocked by ",
            text: list,
        }
    }

    /// Stale Answer (RFC 8914 §4.4; RFC 8767 §4).
    pub fn stale_answer() -> Self {
        Self {
            code: 3,
            prefix: "",
            text: "no upstream answered in time; expired answer",
        }
    }

    /// No Reachable Authority (RFC 8914 §4.23), with why.
    pub fn no_reachable_authority(why: &'a str) -> Self {
        Self {
            code: 22,
            prefix: "",
            text: why,
        }
    }

    /// Blocked (RFC 8914 §4.16) by DNS rebinding protection: refused "due to a security
    /// policy implemented on the server being directly talked to", which this is. Not
    /// Filtered (17, a blocklist the client asked for) nor Prohibited (18, a policy about the
    /// client); the text says it was no list.
    pub fn rebinding() -> Self {
        Self {
            code: 15,
            prefix: "",
            text: "DNS rebinding: a public name answered with a private address",
        }
    }

    /// The INFO-CODE.
    pub fn code(&self) -> u16 {
        self.code
    }
}

/// The content of a reply.
#[derive(Clone, Copy)]
pub(super) struct Reply<'a> {
    pub rcode: ResponseCode,
    pub records: Option<&'a dyn Records>,
    /// Sent when the request had EDNS.
    pub ede: Option<Ede<'a>>,
    /// Send only the header and question with TC set (ANY over UDP).
    pub truncate: bool,
    /// Set AA: the house's own data (local names, private zones), not a forwarded answer.
    pub authoritative: bool,
}

impl Reply<'_> {
    /// A reply carrying only a response code.
    pub(super) fn code(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            records: None,
            ede: None,
            truncate: false,
            authoritative: false,
        }
    }
}

/// Writes `reply` to the request `echo` describes, within what `transport` allows.
pub(super) fn write_reply(echo: &Echo<'_>, reply: &Reply<'_>, transport: Transport) -> Vec<u8> {
    let limit = echo.limit(transport);
    let mut out = Vec::with_capacity(512);
    write_header(&mut out, echo, reply);
    out.extend_from_slice(&echo.question);
    let question_end = out.len();
    if let Some(records) = reply.records.filter(|_| !reply.truncate) {
        let (answers, authorities) = records.write(&mut out);
        put_u16(&mut out, ANCOUNT, answers);
        put_u16(&mut out, NSCOUNT, authorities);
    }
    let records_end = out.len();
    write_opt(&mut out, echo, reply.rcode, reply.ede);
    if out.len() <= limit {
        return out;
    }
    // The text only explains the code to a person: it goes first, and whole (a list id cut
    // short would name another list).
    let ede = reply.ede.map(|ede| Ede {
        prefix: "",
        text: "",
        ..ede
    });
    out.truncate(records_end);
    write_opt(&mut out, echo, reply.rcode, ede);
    if out.len() <= limit {
        return out;
    }
    // Partial answers would be cached by some stubs as if complete: send none at all.
    out.truncate(question_end);
    out[2] |= 0x02; // TC
    put_u16(&mut out, ANCOUNT, 0);
    put_u16(&mut out, NSCOUNT, 0);
    write_opt(&mut out, echo, reply.rcode, ede);
    debug_assert!(out.len() <= limit, "header, question and OPT always fit");
    out
}

/// The header, with QDCOUNT and ARCOUNT already right and no records counted yet.
fn write_header(out: &mut Vec<u8>, echo: &Echo<'_>, reply: &Reply<'_>) {
    let rcode = reply.rcode;
    out.extend_from_slice(&echo.id.to_be_bytes());
    let mut flags: u16 = 0x8000 | 0x0080; // QR, RA
    flags |= u16::from(u8::from(echo.op_code) & 0x0F) << 11;
    flags |= u16::from(reply.authoritative) << 10;
    flags |= u16::from(reply.truncate) << 9;
    flags |= u16::from(echo.recursion_desired) << 8;
    flags |= u16::from(echo.checking_disabled) << 4;
    flags |= u16::from(rcode) & 0x0F;
    out.extend_from_slice(&flags.to_be_bytes());
    let questions = u16::from(!echo.question.is_empty());
    let additionals = u16::from(echo.edns.is_some());
    for count in [questions, 0, 0, additionals] {
        out.extend_from_slice(&count.to_be_bytes());
    }
}

/// Overwrites the 16-bit field at `at` (a count or a length written before it was known).
fn put_u16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Our OPT (RFC 6891 §6.1.2), when the request had one: payload size clamped, the upper bits
/// of `rcode`, DO echoed, and the Extended DNS Error if any (its text cut so the option
/// length fits 16 bits).
fn write_opt(out: &mut Vec<u8>, echo: &Echo<'_>, rcode: ResponseCode, ede: Option<Ede<'_>>) {
    let Some((payload, dnssec_ok)) = echo.edns else {
        return;
    };
    out.push(0); // the root name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(
        &payload
            .clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
            .to_be_bytes(),
    );
    let extended_rcode = (u16::from(rcode) >> 4) as u8;
    out.extend_from_slice(&[extended_rcode, 0]); // EXTENDED-RCODE, VERSION 0
    out.extend_from_slice(&(if dnssec_ok { FLAG_DO } else { 0 }).to_be_bytes());
    let rdlength_at = out.len();
    out.extend_from_slice(&[0, 0]);
    if let Some(ecs) = echo.ecs {
        write_ecs(out, ecs);
    }
    if let Some(ede) = ede {
        out.extend_from_slice(&EDE_OPTION.to_be_bytes());
        let option_length_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&ede.code.to_be_bytes());
        let mut room = 60_000usize;
        for piece in [ede.prefix, ede.text] {
            let piece = &piece.as_bytes()[..piece.len().min(room)];
            out.extend_from_slice(piece);
            room -= piece.len();
        }
        let option_length = (out.len() - option_length_at - 2) as u16;
        put_u16(out, option_length_at, option_length);
    }
    let rdlength = (out.len() - rdlength_at - 2) as u16;
    put_u16(out, rdlength_at, rdlength);
}

/// An EDNS Client Subnet option (RFC 7871 §6): FAMILY, SOURCE PREFIX-LENGTH, SCOPE
/// PREFIX-LENGTH, and as many bytes of the address as the source prefix covers.
fn write_ecs(out: &mut Vec<u8>, ecs: Ecs) {
    let (family, octets): (u16, Vec<u8>) = match ecs.subnet.trunc() {
        IpNet::V4(net) => (1, net.addr().octets().to_vec()),
        IpNet::V6(net) => (2, net.addr().octets().to_vec()),
    };
    let source = ecs.subnet.prefix_len();
    let address = &octets[..usize::from(source).div_ceil(8)];
    out.extend_from_slice(&ECS_OPTION.to_be_bytes());
    out.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
    out.extend_from_slice(&family.to_be_bytes());
    out.extend_from_slice(&[source, ecs.scope]);
    out.extend_from_slice(address);
}

/// Starts a record owned by the question's name (a pointer to offset 12), class IN.
pub(super) fn record_head(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, rdata_len: u16) {
    out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdata_len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::opt::EdnsOption;

    use super::super::blocked::{BlockedRecords, blocked_plan};
    use super::super::wire::header_rcode;
    use super::super::wire::tests::{query, samples};
    use super::*;
    use crate::config::BlockAnswer;

    /// Ten TXT records of 200 bytes owned by the question's name: 2 KB.
    struct BigRecords;

    impl Records for BigRecords {
        fn write(&self, out: &mut Vec<u8>) -> (u16, u16) {
            for _ in 0..10 {
                record_head(out, RecordType::TXT, 60, 201);
                out.push(200);
                out.extend_from_slice(&[b'x'; 200]);
            }
            (10, 0)
        }
    }

    fn write(bytes: &[u8], reply: &Reply<'_>, transport: Transport) -> Message {
        let request = Request::parse(bytes).unwrap();
        decode(&write_reply(&Echo::of(&request, bytes), reply, transport))
    }

    /// Decodes a reply written here, and checks that the response code the metrics read from
    /// its header is the one hickory reads (its low four bits; BADVERS comes with its own).
    fn decode(written: &[u8]) -> Message {
        let message = Message::from_vec(written).unwrap();
        let rcode = u16::from(message.metadata.response_code);
        assert_eq!(header_rcode(written), rcode & 0x0F, "{message:?}");
        message
    }

    fn blocked(bytes: &[u8], answer: BlockAnswer, transport: Transport, id: &str) -> Message {
        let request = Request::parse(bytes).unwrap();
        let records = BlockedRecords {
            plan: blocked_plan(request.question.qtype, answer),
            ttl: 10,
        };
        let reply = Reply {
            records: Some(&records),
            ede: Some(Ede {
                code: 15,
                prefix: "blocked by ",
                text: id,
            }),
            ..Reply::code(records.plan.rcode)
        };
        write(bytes, &reply, transport)
    }

    #[test]
    fn echoes_the_request_and_sets_ra() {
        let bytes = query(
            "WWW.Example.com.",
            RecordType::TXT,
            Some((4096, true)),
            true,
        );
        let reply = Reply {
            records: Some(&BigRecords),
            ..Reply::code(ResponseCode::NoError)
        };
        let message = write(&bytes, &reply, Transport::Tcp);
        let header = &message.metadata;
        assert_eq!(header.id, 0xBEEF);
        assert_eq!(header.message_type, MessageType::Response);
        assert!(header.recursion_desired && header.recursion_available);
        assert!(header.checking_disabled && !header.truncation);
        assert_eq!(message.queries[0].name().to_ascii(), "WWW.Example.com.");
        assert_eq!(message.answers.len(), 10);
        assert_eq!(message.answers[0].name.to_ascii(), "WWW.Example.com.");
        let edns = message.edns.as_ref().unwrap();
        assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
        assert!(edns.flags().dnssec_ok);
    }

    #[test]
    fn oversized_udp_replies_are_truncated_to_an_empty_answer() {
        let reply = Reply {
            records: Some(&BigRecords),
            ..Reply::code(ResponseCode::NoError)
        };
        for edns in [None, Some((1232, false))] {
            let bytes = query("big.example.com.", RecordType::TXT, edns, false);
            let udp = write(&bytes, &reply, Transport::Udp);
            assert!(udp.metadata.truncation && udp.answers.is_empty());
            assert_eq!(udp.queries.len(), 1);
            assert_eq!(udp.edns.is_some(), edns.is_some());
            let tcp = write(&bytes, &reply, Transport::Tcp);
            assert!(!tcp.metadata.truncation);
            assert_eq!(tcp.answers.len(), 10);
        }
    }

    #[test]
    fn an_extended_error_rides_in_the_opt_record_only_with_edns() {
        let reply = Reply {
            ede: Some(Ede {
                code: 22,
                prefix: "",
                text: "no upstream",
            }),
            ..Reply::code(ResponseCode::ServFail)
        };
        let with = query(
            "www.example.com.",
            RecordType::A,
            Some((1232, false)),
            false,
        );
        let with = write(&with, &reply, Transport::Udp);
        assert_eq!(with.metadata.response_code, ResponseCode::ServFail);
        let options = with.edns.unwrap().options().as_ref().to_vec();
        let mut ede = 22u16.to_be_bytes().to_vec();
        ede.extend_from_slice(b"no upstream");
        assert_eq!(options, vec![(options[0].0, EdnsOption::Unknown(15, ede))]);
        let without = query("www.example.com.", RecordType::A, None, false);
        let without = write(&without, &reply, Transport::Udp);
        assert!(without.edns.is_none());
        assert_eq!(without.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn codes_without_a_question_keep_the_opcode_and_extended_bits() {
        let mut metadata = Metadata::new(9, MessageType::Query, OpCode::Notify);
        metadata.recursion_desired = true;
        let echo = Echo::without_question(&metadata, None);
        let bytes = write_reply(&echo, &Reply::code(ResponseCode::NotImp), Transport::Udp);
        let notimp = decode(&bytes);
        assert_eq!(notimp.metadata.op_code, OpCode::Notify);
        assert_eq!(notimp.metadata.response_code, ResponseCode::NotImp);
        assert!(notimp.queries.is_empty());
        // BADVERS is 16: its upper bits travel in the OPT record.
        let metadata = Metadata::new(9, MessageType::Query, OpCode::Query);
        let echo = Echo::without_question(&metadata, Some(MAX_UDP_PAYLOAD));
        let bytes = write_reply(&echo, &Reply::code(ResponseCode::BADVERS), Transport::Udp);
        let badvers = decode(&bytes);
        // (16 is BADVERS in an OPT and BADSIG in a TSIG: hickory names it the latter.)
        assert_eq!(u16::from(badvers.metadata.response_code), 16);
    }

    #[test]
    fn blocked_replies_decode_as_planned() {
        let modes = [
            BlockAnswer::Null,
            BlockAnswer::NoData,
            BlockAnswer::NxDomain,
            BlockAnswer::Refused,
        ];
        for bytes in samples() {
            let request = Request::parse(&bytes).unwrap();
            for answer in modes {
                let plan = blocked_plan(request.question.qtype, answer);
                let reply = blocked(&bytes, answer, Transport::Udp, "meta-ai");
                let header = &reply.metadata;
                assert_eq!(header.id, 0xBEEF);
                assert_eq!(header.message_type, MessageType::Response);
                assert!(header.recursion_desired && header.recursion_available);
                assert!(!header.truncation);
                assert_eq!(header.checking_disabled, request.metadata.checking_disabled);
                assert_eq!(header.response_code, plan.rcode);
                assert_eq!(
                    reply.queries[0].name().to_ascii(),
                    request.question.name.to_ascii()
                );
                assert_eq!(reply.queries[0].query_type(), request.question.qtype);
                match plan.address {
                    Some(address) => {
                        let record = &reply.answers[0];
                        assert_eq!(record.name, request.question.name);
                        assert_eq!(record.ttl, 10);
                        assert_eq!(record.data.ip_addr(), Some(address));
                    }
                    None => assert!(reply.answers.is_empty()),
                }
                match (plan.soa, reply.authorities.first()) {
                    (true, Some(record)) => {
                        let RData::SOA(soa) = &record.data else {
                            panic!("not an SOA: {record:?}");
                        };
                        assert_eq!(record.name, request.question.name);
                        assert_eq!(soa.mname.to_ascii(), "blocked.metasink.invalid.");
                        assert_eq!(soa.rname.to_ascii(), "hostmaster.metasink.invalid.");
                        assert_eq!((soa.serial, soa.minimum, record.ttl), (1, 10, 10));
                    }
                    (false, None) => {}
                    other => panic!("authority {other:?} for {plan:?}"),
                }
                match (&reply.edns, request.edns_payload) {
                    (Some(edns), Some(payload)) => {
                        assert_eq!(edns.max_payload(), payload.clamp(512, 1232));
                        assert_eq!(edns.flags().dnssec_ok, request.question.dnssec_ok);
                        let options = edns.options().as_ref();
                        let mut ede = 15u16.to_be_bytes().to_vec();
                        ede.extend_from_slice(b"blocked by meta-ai");
                        assert_eq!(options.len(), 1);
                        assert_eq!(options[0].1, EdnsOption::Unknown(EDE_OPTION, ede));
                    }
                    (None, None) => {}
                    other => panic!("edns {other:?}"),
                }
            }
        }
    }

    /// A name of 255 bytes in wire form, the longest there is (RFC 1035 §3.1).
    fn longest_name() -> String {
        format!("{0}.{0}.{0}.{1}.", "a".repeat(63), "b".repeat(61))
    }

    #[test]
    fn a_reply_too_big_for_udp_sheds_the_error_text_then_the_records_never_the_question() {
        // With the longest name and a 600-byte list id, even header, question and OPT with
        // the whole text do not fit 512 bytes.
        let name = longest_name();
        let bytes = query(&name, RecordType::A, Some((512, false)), false);
        let request = Request::parse(&bytes).unwrap();
        let echo = Echo::of(&request, &bytes);
        let id = "x".repeat(600);
        let blocked = BlockedRecords {
            plan: blocked_plan(RecordType::A, BlockAnswer::Null),
            ttl: 10,
        };
        let code_only = EdnsOption::Unknown(EDE_OPTION, 15u16.to_be_bytes().to_vec());
        let whole = EdnsOption::Unknown(
            EDE_OPTION,
            [
                &15u16.to_be_bytes(),
                "blocked by ".as_bytes(),
                id.as_bytes(),
            ]
            .concat(),
        );
        // A blocked answer keeps its record without the text; 2 KB of records go too, with TC.
        for (records, answers) in [(&blocked as &dyn Records, 1), (&BigRecords, 0)] {
            let reply = Reply {
                records: Some(records),
                ede: Some(Ede {
                    code: 15,
                    prefix: "blocked by ",
                    text: &id,
                }),
                ..Reply::code(ResponseCode::NoError)
            };
            let udp = write_reply(&echo, &reply, Transport::Udp);
            assert!(udp.len() <= 512, "{} bytes", udp.len());
            let udp = decode(&udp);
            assert_eq!(udp.queries.len(), 1);
            assert_eq!(udp.queries[0].name().to_ascii(), name);
            assert_eq!(udp.queries[0].query_type(), RecordType::A);
            assert_eq!(udp.answers.len(), answers);
            assert_eq!(udp.metadata.truncation, answers == 0);
            let edns = udp.edns.expect("the OPT stays");
            assert_eq!(edns.options().as_ref()[0].1, code_only);
            // TCP carries it all.
            let tcp = write_reply(&echo, &reply, Transport::Tcp);
            let tcp = decode(&tcp);
            assert!(!tcp.metadata.truncation && !tcp.answers.is_empty());
            assert_eq!(tcp.edns.unwrap().options().as_ref()[0].1, whole);
        }
    }
}
