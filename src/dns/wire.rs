//! Hand-written wire reading, so the request nearly every stub sends does not pay for
//! hickory's general `Message` decoder, and the small wire helpers the reply writer
//! ([`super::reply`]) and the cached answers ([`super::answer`]) share.
//!
//! Reading covers one question with an uncompressed name of plain host-name characters,
//! class IN, and at most an OPT record without options in the additional section. Anything
//! else returns `None` and goes through the hickory reader in [`super::request`], which stays
//! the parser of record (its tests and the agreement tests below hold the two together).
//!
//! Layout (RFC 1035 §4.1): a 12-byte header (ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT);
//! the question (§4.1.2: name as length-prefixed labels ending in a zero byte, QTYPE, QCLASS);
//! then resource records (§4.1.3: name, TYPE, CLASS, TTL, RDLENGTH, RDATA). A name may be a
//! pointer (§4.1.4: two bytes, top bits 11, offset). The OPT pseudo-record is RFC 6891 §6.1.2.
//!
//! Every index is checked: no input panics.

use std::ops::Range;

use hickory_proto::op::{Header, MessageType, Metadata, OpCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::Question;

/// Size of the DNS header (RFC 1035 §4.1.1).
pub(super) const HEADER_LEN: usize = 12;
/// TYPE of the OPT pseudo-record (RFC 6891 §6.1.1).
pub(super) const TYPE_OPT: u16 = 41;
/// The DO bit in the OPT record's flags (RFC 3225 §3).
pub(super) const FLAG_DO: u16 = 0x8000;
/// RFC 1035's UDP limit for clients without EDNS.
pub(super) const PLAIN_UDP_PAYLOAD: u16 = 512;

/// A request of the common shape, as the fast reader found it (see [`super::request`]).
pub(super) struct CommonRequest {
    pub metadata: Metadata,
    pub question: Question,
    /// The EDNS payload size, when the request had an OPT.
    pub edns_payload: Option<u16>,
    /// Where the question section lies in the request bytes.
    pub question_range: Range<usize>,
}

/// Reads the common request shape; `None` means "ask the hickory reader".
pub(super) fn read_request(bytes: &[u8]) -> Option<CommonRequest> {
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
    Some(CommonRequest {
        metadata,
        question,
        edns_payload,
        question_range: HEADER_LEN..question_end,
    })
}

/// Reads an uncompressed name at `start` whose labels hold only letters, digits, `_` and
/// inner `-` (the characters hickory writes as they are): the end offset and the name
/// lower-case without the trailing dot.
fn read_plain_name(bytes: &[u8], start: usize) -> Option<(usize, Box<str>)> {
    // Built on the stack and allocated once at its final size: a string grown label by label
    // reallocated two or three times per query, a measurable share of a blocked answer.
    let mut text = [0u8; 255];
    let mut length_so_far = 0;
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
        at += 1 + length;
        // RFC 1035 §3.1: 255 octets at most, the final zero included. The text (a dot where
        // each length octet was, none before the first label) is then at most 253 bytes.
        if at + 1 - start > 255 {
            return None;
        }
        if length_so_far > 0 {
            text[length_so_far] = b'.';
            length_so_far += 1;
        }
        let into = &mut text[length_so_far..length_so_far + length];
        into.copy_from_slice(label);
        into.make_ascii_lowercase();
        length_so_far += length;
    }
    // Only ASCII letters, digits, `-`, `_` and dots were written.
    let text = std::str::from_utf8(&text[..length_so_far]).ok()?;
    Some((at + 1, text.into()))
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

/// The end of the name starting at `at` in `bytes`: after its zero label or its pointer
/// (RFC 1035 §4.1.4). Pointers are not followed: only the name's own bytes are skipped.
pub(super) fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *bytes.get(at)?;
        match length {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(length),
            0xC0..=0xFF => return (at + 2 <= bytes.len()).then_some(at + 2),
            _ => return None,
        }
    }
}

/// The offsets of the TTLs of `count` records starting at `at` in `bytes`, and the end of
/// the last one; `None` when the bytes do not hold that many records.
pub(super) fn record_ttl_offsets(
    bytes: &[u8],
    mut at: usize,
    count: usize,
) -> Option<(Vec<usize>, usize)> {
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        // NAME, then TYPE and CLASS (4 bytes), TTL (4), RDLENGTH (2), RDATA.
        let ttl = skip_name(bytes, at)? + 4;
        let rdlength = usize::from(u16_at(bytes, ttl + 4)?);
        offsets.push(ttl);
        at = ttl + 6 + rdlength;
        if at > bytes.len() {
            return None;
        }
    }
    Some((offsets, at))
}

/// The response code in a reply's header (its four bits): the whole code of every reply we
/// write, except a rejection's BADVERS ([`super::Rejection::reply`] gives that one).
pub fn header_rcode(reply: &[u8]) -> u16 {
    reply.get(3).map_or(0, |flags| u16::from(flags & 0x0F))
}

#[cfg(test)]
pub(super) mod tests {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::rdata::opt::EdnsOption;

    use super::*;
    use crate::dns::request::Request;

    /// A request with ID 0xBEEF and RD set.
    pub(in crate::dns) fn query(
        name: &str,
        qtype: RecordType,
        edns: Option<(u16, bool)>,
        cd: bool,
    ) -> Vec<u8> {
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
        let echoed = &bytes[fast.question_range.clone()];
        assert_eq!(echoed, &question_bytes(s)[..], "{bytes:?}");
        true
    }

    /// Requests of the common shape: names, types, EDNS sizes and CD in combination.
    pub(in crate::dns) fn samples() -> Vec<Vec<u8>> {
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
    fn the_longest_name_is_read_whole_and_one_longer_is_not() {
        // 255 octets on the wire (63 + 63 + 63 + 61 bytes of labels): 253 bytes of text.
        let label = |c: char, n| c.to_string().repeat(n);
        let longest = format!(
            "{}.{}.{}.{}.",
            label('A', 63),
            label('b', 63),
            label('C', 63),
            label('d', 61)
        );
        let bytes = query(&longest, RecordType::A, Some((1232, false)), false);
        assert!(assert_agrees(&bytes));
        let read = read_request(&bytes).expect("the fast reader takes it");
        assert_eq!(read.question.name().len(), 253);
        assert_eq!(
            read.question.name(),
            longest.trim_end_matches('.').to_ascii_lowercase()
        );
        // One more byte in the last label: 256 octets, not a name.
        let mut longer = bytes.clone();
        let last_label = 12 + 3 * 64;
        longer[last_label] = 62;
        longer.insert(last_label + 1, b'x');
        assert!(read_request(&longer).is_none());
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
}
