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
        // A negative answer lives for the SOA's MINIMUM field too (RFC 2308 §5), which is not
        // a TTL the loop above rewrites: the lifetime itself is clamped as well.
        self.lifetime = lifetime(self.rcode, &self.answers, &self.authorities)
            .map(|lifetime| lifetime.clamp(min, max.max(min)));
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

    /// The records as sent: with `age` taken off every TTL, or with every TTL set to
    /// `fixed_ttl` when given (a stale answer: RFC 8767 §4 sends a short TTL, not zero, so a
    /// client does not ask again at once).
    pub(super) fn records(
        &self,
        age: Duration,
        fixed_ttl: Option<u32>,
    ) -> (Vec<Record>, Vec<Record>) {
        match fixed_ttl {
            Some(ttl) => self.records_with_ttls(|_| ttl),
            None => self.aged_records(age),
        }
    }

    /// The records with `age` taken off every TTL (RFC 1035 §7.3: a cached answer's TTL
    /// counts down).
    pub(super) fn aged_records(&self, age: Duration) -> (Vec<Record>, Vec<Record>) {
        let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        self.records_with_ttls(|ttl| ttl.saturating_sub(age))
    }

    /// Copies of the answer and authority records, each TTL replaced by `ttl(TTL)`.
    fn records_with_ttls(&self, ttl: impl Fn(u32) -> u32) -> (Vec<Record>, Vec<Record>) {
        let copy = |record: &Record| {
            let mut record = record.clone();
            record.ttl = ttl(record.ttl);
            record
        };
        (
            self.answers.iter().map(copy).collect(),
            self.authorities.iter().map(copy).collect(),
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

/// Entry points for `fuzz/` (the `upstream_answer` target): an upstream's wire bytes through
/// the same construction the forwarder uses, and back to wire bytes the way a cached answer
/// is served. Hidden because nothing in the daemon calls them; kept apart from the rest of
/// the file so the code above can change without touching them.
impl Answer {
    /// Decodes a DNS message and builds the [`Answer`] of its response code, answer and
    /// authority sections; `None` when the bytes are not a DNS message.
    #[doc(hidden)]
    pub fn from_message_bytes(bytes: &[u8]) -> Option<Answer> {
        let message = hickory_proto::op::Message::from_vec(bytes).ok()?;
        Some(Answer::new(
            message.metadata.response_code,
            message.answers,
            message.authorities,
        ))
    }

    /// Encodes this answer as a response with id `id`, its TTLs aged by `age`; `None` when
    /// hickory cannot encode a record it decoded.
    #[doc(hidden)]
    pub fn to_message_bytes(&self, id: u16, age: Duration) -> Option<Vec<u8>> {
        use hickory_proto::op::{Message, OpCode};
        let (answers, authorities) = self.aged_records(age);
        let mut message = Message::response(id, OpCode::Query);
        message.metadata.response_code = self.rcode;
        message.insert_answers(answers);
        message.insert_authorities(authorities);
        message.to_vec().ok()
    }
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

    #[test]
    fn a_fixed_ttl_replaces_every_ttl_of_both_sections() {
        let a = Record::from_rdata(name("a.test."), 5, RData::A(A::new(192, 0, 2, 1)));
        let answer = Answer::new(ResponseCode::NoError, vec![a], vec![soa(3600, 120)]);
        let (answers, authorities) = answer.records(Duration::from_secs(99), Some(30));
        assert_eq!((answers[0].ttl, authorities[0].ttl), (30, 30));
        let (answers, authorities) = answer.records(Duration::from_secs(2), None);
        assert_eq!((answers[0].ttl, authorities[0].ttl), (3, 3598));
    }
}

/// Inputs `fuzz/` found, kept as tests (see fuzz/README.md).
#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// fuzz/ upstream_answer: a NODATA answer whose SOA has MINIMUM 0, with `[cache] min_ttl
    /// = "30s"`. Clamping raises the SOA record's TTL but not its MINIMUM field, so the
    /// answer's lifetime stays 0 s, below min_ttl, which README and config.example.toml
    /// describe as "upstream TTLs below min_ttl are raised to it". It now applies to negative
    /// caching too.
    #[test]
    fn negative_lifetime_below_min_ttl() {
        use hickory_proto::rr::Name;
        use hickory_proto::rr::rdata::SOA;
        let name = |text: &str| Name::from_ascii(text).unwrap();
        let soa = SOA::new(name("ns.test."), name("host.test."), 1, 60, 60, 60, 0);
        let soa = Record::from_rdata(name("test."), 60, RData::SOA(soa));
        let mut answer = Answer::new(ResponseCode::NoError, vec![], vec![soa]);
        answer.clamp_ttls(Duration::from_secs(30), Duration::from_secs(86_400));
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(30)));
    }
}
