//! Readable accessors over a DNS reply, for assertions.
//!
//! Names are returned lower-case without the trailing dot (`"www.example.com"`, root = `""`).
//! Record accessors look at the answer section only, unless their name says otherwise.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_OPTION_CODE: u16 = 15;

/// The reply's RCODE (including EDNS extended bits).
pub fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

/// The first Extended DNS Error in the reply's OPT record: (INFO-CODE, EXTRA-TEXT). The text is
/// empty when absent, and decoded lossily if it is not UTF-8.
pub fn ede(msg: &Message) -> Option<(u16, String)> {
    ede_all(msg).into_iter().next()
}

/// Every Extended DNS Error in the reply's OPT record, in order. An option shorter than the
/// 2-byte INFO-CODE is skipped.
pub fn ede_all(msg: &Message) -> Vec<(u16, String)> {
    let Some(edns) = msg.edns.as_ref() else {
        return Vec::new();
    };
    edns.options()
        .get_all(EdnsCode::Unknown(EDE_OPTION_CODE))
        .into_iter()
        .filter_map(|option| match option {
            EdnsOption::Unknown(EDE_OPTION_CODE, data) if data.len() >= 2 => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// IPv4 addresses of the answer section's A records, in order.
pub fn a_addrs(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// IPv6 addresses of the answer section's AAAA records, in order.
pub fn aaaa_addrs(msg: &Message) -> Vec<Ipv6Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(aaaa) => Some(aaaa.0),
            _ => None,
        })
        .collect()
}

/// Targets of the answer section's CNAME records, in order (i.e. the chain after the qname).
pub fn cname_targets(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(cname) => Some(name_str(&cname.0)),
            _ => None,
        })
        .collect()
}

/// Texts of the answer section's TXT records, their character-strings concatenated.
pub fn txt_strings(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// (SvcPriority, TargetName) of the answer section's HTTPS records, in order.
pub fn https_targets(msg: &Message) -> Vec<(u16, String)> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::HTTPS(https) => Some((https.0.svc_priority, name_str(&https.0.target_name))),
            _ => None,
        })
        .collect()
}

/// Types of the answer section's records, in order.
pub fn answer_types(msg: &Message) -> Vec<RecordType> {
    msg.answers.iter().map(|r| r.record_type()).collect()
}

/// Types of the authority section's records, in order.
pub fn authority_types(msg: &Message) -> Vec<RecordType> {
    msg.authorities.iter().map(|r| r.record_type()).collect()
}

/// The smallest TTL in the answer section, `None` when it is empty.
pub fn min_answer_ttl(msg: &Message) -> Option<u32> {
    msg.answers.iter().map(|r| r.ttl).min()
}

/// Whether the authority section holds an SOA record.
pub fn has_soa_in_authority(msg: &Message) -> bool {
    msg.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

/// The negative-caching TTL of a reply (RFC 2308 §5): min(SOA TTL, SOA MINIMUM) of the first SOA
/// in the authority section, `None` without one.
pub fn negative_ttl(msg: &Message) -> Option<u32> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

fn name_str(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}
