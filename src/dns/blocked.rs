//! Answers for blocked names, per the profile's `answer` setting:
//!
//! | setting   | A / AAAA             | every other type (HTTPS, MX, TXT, ANY …) |
//! |-----------|----------------------|------------------------------------------|
//! | `null`    | 0.0.0.0 / ::         | NOERROR, no answer, SOA in authority      |
//! | `nodata`  | NOERROR, SOA         | NOERROR, SOA                              |
//! | `nxdomain`| NXDOMAIN, SOA        | NXDOMAIN, SOA                             |
//! | `refused` | REFUSED              | REFUSED                                   |
//!
//! The SOA lets resolvers behind us cache the negative answer for the blocked TTL (RFC 2308
//! §5). [`BlockedPlan`] is the one description of that table: [`BlockedRecords`] writes it as
//! bytes (the service adds the Extended DNS Error naming the list) and `explain` puts it in
//! words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::Question;
use super::reply::{Records, record_head};
use crate::config::BlockAnswer;

/// The blocked SOA's MNAME and RNAME, uncompressed: `blocked.metasink.invalid.` and
/// `hostmaster.metasink.invalid.` (names under `.invalid`, RFC 2606).
const SOA_NAMES: &[u8] =
    b"\x07blocked\x08metasink\x07invalid\x00\x0ahostmaster\x08metasink\x07invalid\x00";
/// The blocked SOA's SERIAL, REFRESH, RETRY and EXPIRE (MINIMUM is the blocked TTL).
const SOA_TIMERS: [u32; 4] = [1, 3600, 600, 86_400];

/// What a blocked answer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockedPlan {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub rcode: ResponseCode,
    /// The one answer record's address (0.0.0.0 or ::), if any.
    pub address: Option<IpAddr>,
    /// Whether the authority section holds the blocked SOA.
    pub soa: bool,
}

/// The blocked answer to a question of type `qtype` under the profile setting `answer`.
pub(super) fn blocked_plan(qtype: RecordType, answer: BlockAnswer) -> BlockedPlan {
    let address = match (answer, qtype) {
        (BlockAnswer::Null, RecordType::A) => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        (BlockAnswer::Null, RecordType::AAAA) => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    };
    let rcode = match answer {
        BlockAnswer::Null | BlockAnswer::NoData => ResponseCode::NoError,
        BlockAnswer::NxDomain => ResponseCode::NXDomain,
        BlockAnswer::Refused => ResponseCode::Refused,
    };
    BlockedPlan {
        rcode,
        address,
        soa: address.is_none() && answer != BlockAnswer::Refused,
    }
}

/// The records of a blocked answer, owned by the question's name.
pub(super) struct BlockedRecords {
    pub plan: BlockedPlan,
    /// TTL of the records (and the SOA's MINIMUM).
    pub ttl: u32,
}

impl Records for BlockedRecords {
    fn write(&self, out: &mut Vec<u8>) -> (u16, u16) {
        match self.plan.address {
            Some(IpAddr::V4(address)) => {
                record_head(out, RecordType::A, self.ttl, 4);
                out.extend_from_slice(&address.octets());
            }
            Some(IpAddr::V6(address)) => {
                record_head(out, RecordType::AAAA, self.ttl, 16);
                out.extend_from_slice(&address.octets());
            }
            None => {}
        }
        if self.plan.soa {
            let rdata_len = SOA_NAMES.len() + 20;
            record_head(out, RecordType::SOA, self.ttl, rdata_len as u16);
            out.extend_from_slice(SOA_NAMES);
            for timer in SOA_TIMERS.into_iter().chain([self.ttl]) {
                out.extend_from_slice(&timer.to_be_bytes());
            }
        }
        (
            u16::from(self.plan.address.is_some()),
            u16::from(self.plan.soa),
        )
    }
}

/// The blocked answer for `question` in words, for `explain`: "NOERROR, A 0.0.0.0 (TTL 10s)".
pub fn describe_blocked_answer(question: &Question, answer: BlockAnswer, ttl: Duration) -> String {
    let plan = blocked_plan(question.qtype, answer);
    let mut text = match plan.rcode {
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        _ => "NOERROR",
    }
    .to_owned();
    match plan.address {
        Some(IpAddr::V4(address)) => text.push_str(&format!(", A {address}")),
        Some(IpAddr::V6(address)) => text.push_str(&format!(", AAAA {address}")),
        None => {}
    }
    if plan.soa {
        text.push_str(", no answer, SOA in authority");
    }
    text.push_str(&format!(" (TTL {}s)", ttl.as_secs()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(qtype: &str, answer: BlockAnswer) -> BlockedPlan {
        let question = Question::parse("www.meta.ai", qtype).unwrap();
        blocked_plan(question.qtype, answer)
    }

    #[test]
    fn null_answers_addresses_with_the_null_address() {
        let a = block("A", BlockAnswer::Null);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.address, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert!(!a.soa);
        let aaaa = block("AAAA", BlockAnswer::Null);
        assert_eq!(aaaa.address, Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    }

    #[test]
    fn null_answers_other_types_with_nodata_and_soa() {
        for qtype in ["HTTPS", "TXT", "MX", "ANY"] {
            let plan = block(qtype, BlockAnswer::Null);
            assert_eq!(plan.rcode, ResponseCode::NoError, "{qtype}");
            assert!(plan.address.is_none(), "{qtype}");
            assert!(plan.soa, "{qtype}");
        }
    }

    #[test]
    fn descriptions_name_rcode_and_records() {
        let question = Question::parse("www.meta.ai", "A").unwrap();
        let ttl = Duration::from_secs(10);
        assert_eq!(
            describe_blocked_answer(&question, BlockAnswer::Null, ttl),
            "NOERROR, A 0.0.0.0 (TTL 10s)"
        );
        let aaaa = Question::parse("www.meta.ai", "AAAA").unwrap();
        assert_eq!(
            describe_blocked_answer(&aaaa, BlockAnswer::Null, ttl),
            "NOERROR, AAAA :: (TTL 10s)"
        );
        let https = Question::parse("www.meta.ai", "HTTPS").unwrap();
        assert_eq!(
            describe_blocked_answer(&https, BlockAnswer::Null, ttl),
            "NOERROR, no answer, SOA in authority (TTL 10s)"
        );
    }

    #[test]
    fn other_modes() {
        let nodata = block("A", BlockAnswer::NoData);
        assert!(nodata.address.is_none() && nodata.soa);
        let nxdomain = block("A", BlockAnswer::NxDomain);
        assert_eq!(nxdomain.rcode, ResponseCode::NXDomain);
        assert!(nxdomain.soa);
        let refused = block("A", BlockAnswer::Refused);
        assert_eq!(refused.rcode, ResponseCode::Refused);
        assert!(refused.address.is_none() && !refused.soa);
    }
}
