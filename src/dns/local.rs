//! The house's own answers ([`LocalAnswer`]) as [`Answer`]s: the records hickory encodes,
//! and for a negative answer an SOA owned by the zone, shaped as RFC 6303 §3 gives the
//! locally served zones theirs (MNAME the zone, RNAME `nobody.invalid.`).

use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};

use super::{Answer, Question};
use crate::local::{LocalAnswer, LocalData, Rcode};

/// The SOA's SERIAL, REFRESH, RETRY and EXPIRE (RFC 6303 §3's values).
const SOA_TIMERS: (u32, i32, i32, i32) = (1, 3600, 1200, 604_800);

impl Answer {
    /// The answer to `question` the house gives itself; `None` when a name does not encode
    /// (names in local data were checked when the config was read, so never in practice).
    pub fn local(question: &Question, local: &LocalAnswer) -> Option<Self> {
        let answers = (local.records.iter())
            .map(|record| {
                let data = match &record.data {
                    LocalData::A(ip) => RData::A(A(*ip)),
                    LocalData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
                    LocalData::Cname(target) => RData::CNAME(CNAME(fqdn(target)?)),
                    LocalData::Ptr(target) => RData::PTR(PTR(fqdn(target)?)),
                    LocalData::Txt(text) => RData::TXT(TXT::new(vec![text.to_string()])),
                };
                Some(Record::from_rdata(fqdn(&record.owner)?, record.ttl, data))
            })
            .collect::<Option<Vec<_>>>()?;
        let authorities = match &local.soa {
            None => Vec::new(),
            Some((zone, ttl)) => {
                let zone = fqdn(zone)?;
                let (serial, refresh, retry, expire) = SOA_TIMERS;
                let soa = SOA::new(
                    zone.clone(),
                    fqdn("nobody.invalid")?,
                    serial,
                    refresh,
                    retry,
                    expire,
                    *ttl,
                );
                vec![Record::from_rdata(zone, *ttl, RData::SOA(soa))]
            }
        };
        let rcode = match local.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
        };
        Self::new(question, rcode, answers, authorities)
    }
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_str(&format!("{name}.")).ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::dns::TtlRule;
    use crate::local::{LocalKind, LocalRecord};

    fn reply(question: &Question, local: &LocalAnswer) -> Message {
        let answer = Answer::local(question, local).unwrap();
        Message::from_vec(&answer.to_message_bytes(question, 7, TtlRule::Aged(0))).unwrap()
    }

    #[test]
    fn records_and_negative_answers_encode() {
        let question = Question::parse("files.lan", "A").unwrap();
        let local = LocalAnswer {
            rcode: Rcode::NoError,
            records: vec![
                LocalRecord {
                    owner: "files.lan".into(),
                    ttl: 60,
                    data: LocalData::Cname("nas.lan".into()),
                },
                LocalRecord {
                    owner: "nas.lan".into(),
                    ttl: 60,
                    data: LocalData::A("192.168.1.10".parse().unwrap()),
                },
            ],
            soa: None,
            kind: LocalKind::Record,
        };
        let message = reply(&question, &local);
        let types: Vec<_> = message.answers.iter().map(Record::record_type).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::A]);
        assert!(
            Answer::local(&question, &local)
                .unwrap()
                .holds_house_address()
        );

        let question = Question::parse("9.0.0.10.in-addr.arpa", "PTR").unwrap();
        let local = LocalAnswer {
            rcode: Rcode::NxDomain,
            records: Vec::new(),
            soa: Some(("10.in-addr.arpa".into(), 300)),
            kind: LocalKind::PrivateZone,
        };
        let message = reply(&question, &local);
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        let soa = &message.authorities[0];
        assert_eq!(soa.name.to_string(), "10.in-addr.arpa.");
        assert_eq!(
            Answer::local(&question, &local)
                .unwrap()
                .lifetime()
                .unwrap()
                .as_secs(),
            300
        );
    }
}
