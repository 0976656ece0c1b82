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
//! §5). [`BlockedPlan`] is the one description of that table: [`super::wire`] writes it as
//! bytes (with the Extended DNS Error naming the list) and `explain` puts it in words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::Question;
use crate::config::BlockAnswer;

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
