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
//! §5). The Extended DNS Error that names the list is added by the handler.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::Question;
use crate::config::BlockAnswer;

/// The records of a blocked answer.
pub(super) struct BlockedRecords {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

/// The SOA's name server and mailbox: names under `.invalid` (RFC 2606) so nobody mistakes
/// them for a real zone.
static SOA_MNAME: LazyLock<Name> = LazyLock::new(|| name("blocked.metasink.invalid."));
static SOA_RNAME: LazyLock<Name> = LazyLock::new(|| name("hostmaster.metasink.invalid."));

fn name(text: &str) -> Name {
    Name::from_str(text).expect("constant name is valid")
}

/// Builds the blocked answer for `question`.
pub(super) fn blocked_records(
    question: &Question,
    answer: BlockAnswer,
    ttl: Duration,
) -> BlockedRecords {
    let ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
    let address = match (answer, question.qtype) {
        (BlockAnswer::Null, RecordType::A) => Some(RData::A(A(Ipv4Addr::UNSPECIFIED))),
        (BlockAnswer::Null, RecordType::AAAA) => Some(RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))),
        _ => None,
    };
    let rcode = match answer {
        BlockAnswer::Null | BlockAnswer::NoData => ResponseCode::NoError,
        BlockAnswer::NxDomain => ResponseCode::NXDomain,
        BlockAnswer::Refused => ResponseCode::Refused,
    };
    let mut records = BlockedRecords {
        rcode,
        answers: Vec::new(),
        authorities: Vec::new(),
    };
    match address {
        Some(data) => records
            .answers
            .push(Record::from_rdata(question.name.clone(), ttl, data)),
        None if answer != BlockAnswer::Refused => records.authorities.push(soa(question, ttl)),
        None => {}
    }
    records
}

/// The blocked answer for `question` in words, for `explain`: "NOERROR A 0.0.0.0 (TTL 10s)".
pub fn describe_blocked_answer(question: &Question, answer: BlockAnswer, ttl: Duration) -> String {
    let records = blocked_records(question, answer, ttl);
    let mut text = match records.rcode {
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        _ => "NOERROR",
    }
    .to_owned();
    for record in &records.answers {
        text.push_str(&format!(", {} {}", record.record_type(), record.data));
    }
    if records.answers.is_empty() && records.rcode != ResponseCode::Refused {
        text.push_str(", no answer, SOA in authority");
    }
    text.push_str(&format!(" (TTL {}s)", ttl.as_secs()));
    text
}

fn soa(question: &Question, ttl: u32) -> Record {
    let data = SOA::new(
        SOA_MNAME.clone(),
        SOA_RNAME.clone(),
        1,
        3600,
        600,
        86_400,
        ttl,
    );
    Record::from_rdata(question.name.clone(), ttl, RData::SOA(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(qtype: &str, answer: BlockAnswer) -> BlockedRecords {
        let question = Question::parse("www.meta.ai", qtype).unwrap();
        blocked_records(&question, answer, Duration::from_secs(10))
    }

    #[test]
    fn null_answers_addresses_with_the_null_address() {
        let a = block("A", BlockAnswer::Null);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(a.answers[0].ttl, 10);
        let aaaa = block("AAAA", BlockAnswer::Null);
        assert_eq!(
            aaaa.answers[0].data,
            RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))
        );
    }

    #[test]
    fn null_answers_other_types_with_nodata_and_soa() {
        for qtype in ["HTTPS", "TXT", "MX", "ANY"] {
            let records = block(qtype, BlockAnswer::Null);
            assert_eq!(records.rcode, ResponseCode::NoError, "{qtype}");
            assert!(records.answers.is_empty(), "{qtype}");
            assert_eq!(
                records.authorities[0].record_type(),
                RecordType::SOA,
                "{qtype}"
            );
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
        let https = Question::parse("www.meta.ai", "HTTPS").unwrap();
        assert_eq!(
            describe_blocked_answer(&https, BlockAnswer::Null, ttl),
            "NOERROR, no answer, SOA in authority (TTL 10s)"
        );
    }

    #[test]
    fn other_modes() {
        let nodata = block("A", BlockAnswer::NoData);
        assert!(nodata.answers.is_empty() && nodata.authorities.len() == 1);
        let nxdomain = block("A", BlockAnswer::NxDomain);
        assert_eq!(nxdomain.rcode, ResponseCode::NXDomain);
        assert_eq!(nxdomain.authorities.len(), 1);
        let refused = block("A", BlockAnswer::Refused);
        assert_eq!(refused.rcode, ResponseCode::Refused);
        assert!(refused.answers.is_empty() && refused.authorities.is_empty());
    }
}
