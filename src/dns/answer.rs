//! [`Answer`]: an upstream's answer to one question, as the cache keeps it and as clients get
//! it back: the response code, the answer and authority records, and the names inside them
//! that the policy must also check (CNAME targets, HTTPS/SVCB targets).

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record};

/// An upstream answer (positive, NXDOMAIN or NODATA).
#[derive(Clone, Debug)]
pub struct Answer {
    pub(super) rcode: ResponseCode,
    pub(super) answers: Vec<Record>,
    pub(super) authorities: Vec<Record>,
    /// How long the answer may be kept: the smallest TTL of its answer records, or for a
    /// negative answer the SOA's negative TTL (RFC 2308 §5). `None`: not cacheable.
    lifetime: Option<Duration>,
    /// Names inside the answer, lower-case without trailing dot, for answer inspection.
    targets: Box<[Box<str>]>,
}

impl Answer {
    pub(super) fn new(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Self {
        let lifetime = lifetime(rcode, &answers, &authorities);
        let targets = answers.iter().filter_map(target_name).collect();
        Self {
            rcode,
            answers,
            authorities,
            lifetime,
            targets,
        }
    }

    /// Clamps every TTL into `[min, max]` (the `[cache]` bounds), so what we send and how long
    /// we keep it agree.
    pub fn clamp_ttls(&mut self, min: Duration, max: Duration) {
        let clamp = |ttl: u32| {
            let secs = u64::from(ttl).clamp(min.as_secs(), max.as_secs().max(min.as_secs()));
            u32::try_from(secs).unwrap_or(u32::MAX)
        };
        for record in self.answers.iter_mut().chain(self.authorities.iter_mut()) {
            record.ttl = clamp(record.ttl);
        }
        self.lifetime = lifetime(self.rcode, &self.answers, &self.authorities);
    }

    /// How long this answer may be cached; `None` when it must not be.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// The names this answer points to (CNAME chain targets, HTTPS/SVCB target names).
    pub fn targets(&self) -> &[Box<str>] {
        &self.targets
    }

    /// The response code as a short word for logs.
    pub fn rcode_name(&self) -> String {
        self.rcode.to_string()
    }

    /// The records with `age` taken off every TTL (RFC 1035 §7.3: a cached answer's TTL
    /// counts down).
    pub(super) fn aged_records(&self, age: Duration) -> (Vec<Record>, Vec<Record>) {
        let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        let age_one = |record: &Record| {
            let mut record = record.clone();
            record.ttl = record.ttl.saturating_sub(age);
            record
        };
        (
            self.answers.iter().map(age_one).collect(),
            self.authorities.iter().map(age_one).collect(),
        )
    }
}

fn lifetime(rcode: ResponseCode, answers: &[Record], authorities: &[Record]) -> Option<Duration> {
    let ttl = if answers.is_empty() {
        // RFC 2308 §5: a negative answer is cached for min(SOA TTL, SOA MINIMUM); without
        // an SOA it is not cached at all.
        authorities.iter().find_map(|record| match &record.data {
            RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        })?
    } else if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        answers.iter().map(|record| record.ttl).min()?
    } else {
        return None;
    };
    Some(Duration::from_secs(u64::from(ttl)))
}

fn target_name(record: &Record) -> Option<Box<str>> {
    let name = match &record.data {
        RData::CNAME(cname) => &cname.0,
        RData::HTTPS(https) => &https.0.target_name,
        RData::SVCB(svcb) => &svcb.target_name,
        _ => return None,
    };
    // An SVCB target of "." means "the owner name itself", which was already checked.
    if name.is_root() {
        return None;
    }
    let mut text = name.to_ascii();
    text.make_ascii_lowercase();
    if text.ends_with('.') {
        text.pop();
    }
    Some(text.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(name("ns.test."), name("host.test."), 1, 60, 60, 60, minimum);
        Record::from_rdata(name("test."), ttl, RData::SOA(data))
    }

    #[test]
    fn positive_lifetime_is_the_smallest_ttl_and_targets_are_collected() {
        let cname = Record::from_rdata(
            name("www.example.com."),
            300,
            RData::CNAME(CNAME(name("Edge.CDN.net."))),
        );
        let a = Record::from_rdata(name("edge.cdn.net."), 60, RData::A(A::new(192, 0, 2, 1)));
        let answer = Answer::new(ResponseCode::NoError, vec![cname, a], vec![]);
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(60)));
        assert_eq!(answer.targets(), &["edge.cdn.net".into()]);
    }

    #[test]
    fn negative_lifetime_follows_the_soa_and_needs_one() {
        let answer = Answer::new(ResponseCode::NXDomain, vec![], vec![soa(3600, 120)]);
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(120)));
        let no_soa = Answer::new(ResponseCode::NXDomain, vec![], vec![]);
        assert_eq!(no_soa.lifetime(), None);
    }

    #[test]
    fn clamping_and_ageing_rewrite_ttls() {
        let a = Record::from_rdata(name("a.test."), 5, RData::A(A::new(192, 0, 2, 1)));
        let mut answer = Answer::new(ResponseCode::NoError, vec![a], vec![]);
        answer.clamp_ttls(Duration::from_secs(30), Duration::from_secs(86_400));
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(30)));
        let (aged, _) = answer.aged_records(Duration::from_secs(12));
        assert_eq!(aged[0].ttl, 18);
        let (expired, _) = answer.aged_records(Duration::from_secs(99));
        assert_eq!(expired[0].ttl, 0);
    }
}
