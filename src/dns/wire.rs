//! Hand-written wire reading and writing for the two hottest shapes of traffic, so a blocked
//! or cached answer does not pay for hickory's general `Message` decoding and encoding.
//!
//! Reading covers the request nearly every stub sends: one question with an uncompressed name
//! of plain host-name characters, class IN, and at most an OPT record without options in the
//! additional section. Anything else returns `None` and goes through the hickory reader in
//! [`super::request`], which stays the parser of record (its tests and the agreement tests
//! below hold the two together). Writing covers blocked answers completely.
//!
//! Layout (RFC 1035 §4.1): a 12-byte header (ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT);
//! the question (§4.1.2: name as length-prefixed labels ending in a zero byte, QTYPE, QCLASS);
//! then resource records (§4.1.3: name, TYPE, CLASS, TTL, RDLENGTH, RDATA). A name may be a
//! pointer (§4.1.4: two bytes, top bits 11, offset); our answers point at the question's name
//! at offset 12. The OPT pseudo-record is RFC 6891 §6.1.2.
//!
//! Every index is checked: no input panics.

use std::ops::Range;

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::Question;
use super::blocked::BlockedPlan;
use super::request::Request;
use super::response::{MAX_UDP_PAYLOAD, PLAIN_UDP_PAYLOAD, Transport};

/// Size of the DNS header (RFC 1035 §4.1.1).
const HEADER_LEN: usize = 12;
/// TYPE of the OPT pseudo-record (RFC 6891 §6.1.1).
const TYPE_OPT: u16 = 41;
/// The DO bit in the OPT record's flags (RFC 3225 §3).
const FLAG_DO: u16 = 0x8000;
/// EDNS option code of Extended DNS Errors (RFC 8914 §2).
const EDE_OPTION: u16 = 15;
/// The blocked SOA's MNAME and RNAME, uncompressed: `blocked.metasink.invalid.` and
/// `hostmaster.metasink.invalid.` (names under `.invalid`, RFC 2606).
const SOA_NAMES: &[u8] =
    b"\x07blocked\x08metasink\x07invalid\x00\x0ahostmaster\x08metasink\x07invalid\x00";
/// The blocked SOA's SERIAL, REFRESH, RETRY and EXPIRE (MINIMUM is the blocked TTL).
const SOA_TIMERS: [u32; 4] = [1, 3600, 600, 86_400];

/// Reads the common request shape; `None` means "ask the hickory reader".
pub(super) fn read_request(bytes: &[u8]) -> Option<Request> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    let metadata = header.metadata;
    if metadata.message_type != MessageType::Query
        || metadata.op_code != OpCode::Query
        || header.counts.queries != 1
        || header.counts.answers != 0
        || header.counts.authorities != 0
        || header.counts.additionals > 1
    {
        return None;
    }
    let (name_end, text) = read_plain_name(bytes, HEADER_LEN)?;
    let qtype = u16_at(bytes, name_end)?;
    let qclass = u16_at(bytes, name_end + 2)?;
    if qtype == TYPE_OPT || qclass != u16::from(DNSClass::IN) {
        return None;
    }
    let question_end = name_end + 4;
    let (edns_payload, dnssec_ok) = if header.counts.additionals == 1 {
        let (payload, dnssec_ok) = read_bare_opt(bytes, question_end)?;
        (Some(payload), dnssec_ok)
    } else {
        if bytes.len() != question_end {
            return None;
        }
        (None, false)
    };
    let name = Name::read(&mut BinDecoder::new(bytes.get(HEADER_LEN..name_end)?)).ok()?;
    let question = Question::from_wire_parts(
        name,
        text,
        RecordType::from(qtype),
        DNSClass::IN,
        dnssec_ok,
        metadata.checking_disabled,
    );
    Some(Request {
        metadata,
        question,
        edns_payload,
        question_range: Some(HEADER_LEN..question_end),
    })
}

/// Reads an uncompressed name at `start` whose labels hold only letters, digits, `_` and
/// inner `-` (the characters hickory writes as they are): the end offset and the name
/// lower-case without the trailing dot.
fn read_plain_name(bytes: &[u8], start: usize) -> Option<(usize, Box<str>)> {
    let mut text = String::new();
    let mut at = start;
    loop {
        let length = usize::from(*bytes.get(at)?);
        if length == 0 {
            break;
        }
        // 64 and above are pointers or reserved label types (RFC 1035 §4.1.4, RFC 6891 §5).
        if length > 63 {
            return None;
        }
        let label = bytes.get(at + 1..at + 1 + length)?;
        if label.first() == Some(&b'-')
            || !label
                .iter()
                .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return None;
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(
            label
                .iter()
                .map(|&byte| char::from(byte.to_ascii_lowercase())),
        );
        at += 1 + length;
        // RFC 1035 §3.1: 255 octets at most, the final zero included.
        if at + 1 - start > 255 {
            return None;
        }
    }
    Some((at + 1, text.into_boxed_str()))
}

/// Reads an OPT record without options that ends the message at `start`: the payload size
/// and the DO bit. Versions above 0, extended RCODE bits, options and payload sizes below 512
/// are left to the hickory reader.
fn read_bare_opt(bytes: &[u8], start: usize) -> Option<(u16, bool)> {
    let record = bytes.get(start..)?;
    let [
        0,
        type_hi,
        type_lo,
        class_hi,
        class_lo,
        0,
        0,
        flags_hi,
        flags_lo,
        0,
        0,
    ] = *record
    else {
        return None;
    };
    if u16::from_be_bytes([type_hi, type_lo]) != TYPE_OPT {
        return None;
    }
    let payload = u16::from_be_bytes([class_hi, class_lo]);
    if payload < PLAIN_UDP_PAYLOAD {
        return None;
    }
    let flags = u16::from_be_bytes([flags_hi, flags_lo]);
    Some((payload, flags & FLAG_DO != 0))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// The question section of `question` as hickory would write it first in a message: the
/// name uncompressed, original case kept. For requests the fast reader did not take.
pub(super) fn question_bytes(question: &Question) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(question.name.len() + 6);
    for label in question.name.iter() {
        // Labels are at most 63 bytes (hickory checks when reading).
        bytes.push(u8::try_from(label.len()).unwrap_or(63));
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
    bytes.extend_from_slice(&u16::from(question.qtype).to_be_bytes());
    bytes.extend_from_slice(&u16::from(question.qclass).to_be_bytes());
    bytes
}

/// Everything a blocked reply says, for [`write_blocked`].
pub(super) struct BlockedReply<'a> {
    /// The request's ID.
    pub id: u16,
    /// The request's RD and CD bits, echoed.
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question section as it goes out (see [`question_bytes`]).
    pub question: &'a [u8],
    /// The client's EDNS payload size; `None` without EDNS.
    pub edns_payload: Option<u16>,
    /// The client's DO bit, echoed in our OPT.
    pub dnssec_ok: bool,
    /// Records and code.
    pub plan: BlockedPlan,
    /// TTL of the records (and the SOA's MINIMUM).
    pub ttl: u32,
    /// The id of the list, named in the Extended DNS Error "blocked by ID".
    pub list_id: &'a str,
}

/// Writes a blocked reply the way [`super::response::encode`] frames any reply: within the
/// transport's size; if it does not fit, header, question and OPT with TC; if even that does
/// not fit, the header alone.
pub(super) fn write_blocked(reply: &BlockedReply<'_>, transport: Transport) -> Vec<u8> {
    let limit = match (transport, reply.edns_payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(payload)) => {
            usize::from(payload.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
        }
        (Transport::Udp, None) => usize::from(PLAIN_UDP_PAYLOAD),
    };
    let full = write_blocked_sections(reply, false);
    if full.len() <= limit {
        return full;
    }
    let truncated = write_blocked_sections(reply, true);
    if truncated.len() <= limit {
        return truncated;
    }
    let mut bare = Vec::with_capacity(HEADER_LEN);
    bare.extend_from_slice(&reply.id.to_be_bytes());
    bare.extend_from_slice(&[0x80, rcode_low(reply.plan.rcode)]);
    bare.extend_from_slice(&[0; 8]);
    bare
}

fn write_blocked_sections(reply: &BlockedReply<'_>, truncate: bool) -> Vec<u8> {
    let plan = &reply.plan;
    let answers = u16::from(!truncate && plan.address.is_some());
    let authorities = u16::from(!truncate && plan.soa);
    let additionals = u16::from(reply.edns_payload.is_some());
    let mut out = Vec::with_capacity(128 + reply.question.len() + reply.list_id.len());
    out.extend_from_slice(&reply.id.to_be_bytes());
    let mut flags: u16 = 0x8000 | 0x0080; // QR, RA
    flags |= u16::from(reply.recursion_desired) << 8;
    flags |= u16::from(truncate) << 9;
    flags |= u16::from(reply.checking_disabled) << 4;
    flags |= u16::from(rcode_low(plan.rcode));
    out.extend_from_slice(&flags.to_be_bytes());
    for count in [1, answers, authorities, additionals] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(reply.question);
    if answers == 1 {
        match plan.address {
            Some(std::net::IpAddr::V4(address)) => {
                record_head(&mut out, RecordType::A, reply.ttl, 4);
                out.extend_from_slice(&address.octets());
            }
            Some(std::net::IpAddr::V6(address)) => {
                record_head(&mut out, RecordType::AAAA, reply.ttl, 16);
                out.extend_from_slice(&address.octets());
            }
            None => {}
        }
    }
    if authorities == 1 {
        let rdata_len = SOA_NAMES.len() + 20;
        record_head(&mut out, RecordType::SOA, reply.ttl, rdata_len as u16);
        out.extend_from_slice(SOA_NAMES);
        for timer in SOA_TIMERS.into_iter().chain([reply.ttl]) {
            out.extend_from_slice(&timer.to_be_bytes());
        }
    }
    if let Some(payload) = reply.edns_payload {
        write_opt(&mut out, payload, reply.dnssec_ok, reply.list_id);
    }
    out
}

/// A record owned by the question's name (a pointer to offset 12), class IN.
fn record_head(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, rdata_len: u16) {
    out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdata_len.to_be_bytes());
}

/// Our OPT (RFC 6891 §6.1.2): payload size clamped, DO echoed, EDE 15 "blocked by ID"
/// (RFC 8914 §4.16). The text is cut so the option length fits its 16 bits.
fn write_opt(out: &mut Vec<u8>, client_payload: u16, dnssec_ok: bool, list_id: &str) {
    const PREFIX: &[u8] = b"blocked by ";
    let id = list_id.as_bytes();
    let id = id.get(..id.len().min(60_000)).unwrap_or_default();
    let option_len = (2 + PREFIX.len() + id.len()) as u16;
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    let payload = client_payload.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(if dnssec_ok { FLAG_DO } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(option_len + 4).to_be_bytes());
    out.extend_from_slice(&EDE_OPTION.to_be_bytes());
    out.extend_from_slice(&option_len.to_be_bytes());
    out.extend_from_slice(&super::service::EDE_BLOCKED.to_be_bytes());
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(id);
}

/// The low four bits of a blocked answer's code (NOERROR, NXDOMAIN, REFUSED: all below 16).
fn rcode_low(rcode: ResponseCode) -> u8 {
    (u16::from(rcode) & 0x0F) as u8
}

/// The question range of a request read by [`read_request`], as a slice of `bytes`.
pub(super) fn slice<'a>(bytes: &'a [u8], range: Option<&Range<usize>>) -> Option<&'a [u8]> {
    bytes.get(range?.clone())
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::opt::EdnsOption;

    use super::super::blocked::blocked_plan;
    use super::*;
    use crate::config::BlockAnswer;

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, bool)>, cd: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0xBEEF;
        message.metadata.recursion_desired = true;
        message.metadata.checking_disabled = cd;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some((payload, dnssec_ok)) = edns {
            let mut opt = Edns::new();
            opt.set_max_payload(payload);
            opt.set_dnssec_ok(dnssec_ok);
            message.set_edns(opt);
        }
        message.to_vec().unwrap()
    }

    /// Whenever the fast reader answers, the hickory reader says the same.
    fn assert_agrees(bytes: &[u8]) -> bool {
        let Some(fast) = read_request(bytes) else {
            return false;
        };
        let slow = Request::parse_general(bytes).expect("the hickory reader accepts it too");
        assert_eq!(fast.metadata, slow.metadata, "{bytes:?}");
        let (f, s) = (&fast.question, &slow.question);
        assert_eq!(f.name.to_ascii(), s.name.to_ascii(), "{bytes:?}");
        assert_eq!(f.name(), s.name(), "{bytes:?}");
        assert_eq!(
            (f.qtype, f.qclass, f.dnssec_ok, f.checking_disabled),
            (s.qtype, s.qclass, s.dnssec_ok, s.checking_disabled),
            "{bytes:?}"
        );
        assert_eq!(fast.edns_payload, slow.edns_payload, "{bytes:?}");
        let echoed = slice(bytes, fast.question_range.as_ref()).unwrap();
        assert_eq!(echoed, &question_bytes(s)[..], "{bytes:?}");
        true
    }

    fn samples() -> Vec<Vec<u8>> {
        let names = [
            ".",
            "com.",
            "WWW.Meta.AI.",
            "_dmarc.example.com.",
            "a-b.x1.example.",
            "xn--bcher-kva.example.",
            "0.1.168.192.in-addr.arpa.",
        ];
        let mut samples = Vec::new();
        for name in names {
            for qtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::HTTPS,
                RecordType::ANY,
            ] {
                for edns in [
                    None,
                    Some((512, false)),
                    Some((1232, true)),
                    Some((4096, false)),
                ] {
                    for cd in [false, true] {
                        samples.push(query(name, qtype, edns, cd));
                    }
                }
            }
        }
        samples
    }

    #[test]
    fn the_fast_reader_agrees_with_hickory() {
        let mut taken = 0;
        for bytes in samples() {
            assert!(assert_agrees(&bytes), "common shape not taken: {bytes:?}");
            taken += 1;
            // Every cut and every single-byte change: agreement or fallback, never a panic.
            for cut in 0..bytes.len() {
                assert_agrees(&bytes[..cut]);
            }
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x2D, 0x3F, 0x40, 0x41, 0x5F, 0xC0, 0xFF] {
                    let mut changed = bytes.clone();
                    changed[at] = value;
                    assert_agrees(&changed);
                }
            }
        }
        assert!(taken > 100);
    }

    #[test]
    fn unusual_shapes_are_left_to_hickory() {
        // A compressed question name, an escaped character, OPT options, EDNS version 1.
        let mut pointer = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        pointer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(read_request(&pointer).is_none());
        let odd = query("a.example.", RecordType::A, None, false);
        let mut odd_char = odd.clone();
        odd_char[13] = b'*';
        assert!(read_request(&odd_char).is_none());
        let mut with_option =
            Message::from_vec(&query("a.example.", RecordType::A, None, false)).unwrap();
        let mut opt = Edns::new();
        opt.options_mut()
            .insert(EdnsOption::Unknown(10, vec![1; 8]));
        with_option.set_edns(opt);
        assert!(read_request(&with_option.to_vec().unwrap()).is_none());
        let mut version = Edns::new();
        version.set_version(1);
        let mut future = Message::from_vec(&odd).unwrap();
        future.set_edns(version);
        assert!(read_request(&future.to_vec().unwrap()).is_none());
    }

    fn blocked(bytes: &[u8], answer: BlockAnswer, transport: Transport, id: &str) -> Message {
        let request = Request::parse(bytes).unwrap();
        let owned = question_bytes(&request.question);
        let reply = BlockedReply {
            id: request.metadata.id,
            recursion_desired: request.metadata.recursion_desired,
            checking_disabled: request.metadata.checking_disabled,
            question: slice(bytes, request.question_range.as_ref()).unwrap_or(&owned),
            edns_payload: request.edns_payload,
            dnssec_ok: request.question.dnssec_ok,
            plan: blocked_plan(request.question.qtype, answer),
            ttl: 10,
            list_id: id,
        };
        Message::from_vec(&write_blocked(&reply, transport)).unwrap()
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

    #[test]
    fn a_blocked_reply_too_big_for_udp_is_truncated() {
        let bytes = query("www.meta.ai.", RecordType::A, Some((512, false)), false);
        let long = "x".repeat(600);
        let udp = blocked(&bytes, BlockAnswer::Null, Transport::Udp, &long);
        // Even header, question and OPT do not fit: the header alone.
        assert!(udp.metadata.response_code == ResponseCode::NoError && udp.queries.is_empty());
        let medium = "x".repeat(440);
        let udp = blocked(&bytes, BlockAnswer::Null, Transport::Udp, &medium);
        assert!(udp.metadata.truncation && udp.answers.is_empty());
        assert_eq!(udp.queries.len(), 1);
        let tcp = blocked(&bytes, BlockAnswer::Null, Transport::Tcp, &long);
        assert!(!tcp.metadata.truncation && tcp.answers.len() == 1);
    }
}
