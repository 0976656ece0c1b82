//! [`Answer`]: an upstream's answer to one question, as the cache keeps it and as clients get
//! it back: the response code, the answer and authority records in wire form, how long it
//! may be kept, and the names inside it that the policy must also check (CNAME targets,
//! HTTPS/SVCB targets). A positive answer keeps its authority records only when they hold
//! an SOA or the client asked for DNSSEC ([`keeps_authority`]).
//!
//! Only records about the question are kept ([`relevant`]): the answer section holds the
//! question's name and the names its CNAME chain reaches, the authority section the
//! question's zones. Done here, once, where an upstream answer becomes a cache entry, so
//! that what the cache keeps is clean too. The additional section is not kept at all (glue
//! and extra addresses are for resolvers, not stubs, and are records about other names
//! too); the OPT record of a reply is always our own ([`super::reply`]), never the
//! upstream's.
//!
//! The records are encoded once, when the answer arrives (hickory's encoder, names
//! compressed against the question at offset 12, as in any reply), and kept as bytes with
//! the place of every TTL: a reply copies them behind the client's own question and rewrites
//! the TTLs on the way. A question with the same cache key has the same labels (only ASCII
//! case may differ), so every compression pointer still lands where it did.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::Question;
use super::reply::Records;
use super::wire::{HEADER_LEN, record_ttl_offsets, skip_name};
use crate::local::is_rebinding_target;

/// An upstream answer (positive, NXDOMAIN or NODATA).
#[derive(Clone, Debug)]
pub struct Answer {
    pub(super) rcode: ResponseCode,
    /// The answer and authority records as they follow the question in a reply.
    records: Box<[u8]>,
    /// Where each record's TTL lies in `records`.
    ttl_offsets: Box<[u16]>,
    answer_count: u16,
    authority_count: u16,
    /// How long the answer may be kept: the smallest TTL of its answer records, or for a
    /// negative answer the SOA's negative TTL (RFC 2308 §5). `None`: not cacheable.
    lifetime: Option<Duration>,
    /// Names inside the answer, lower-case without trailing dot, for answer inspection.
    targets: Box<[Box<str>]>,
    /// The A and AAAA addresses of the answer section, for network inspection.
    addresses: Box<[IpAddr]>,
    /// An A or AAAA record holds an address inside the house (DNS rebinding protection,
    /// [`crate::local::rebind`]).
    house_address: bool,
    /// The upstream that gave it, by the label its metrics use (the query log's `upstream`):
    /// shared with that upstream, so an answer costs a reference count, not a string.
    upstream: Option<Arc<str>>,
}

/// How the TTLs of a served answer are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlRule {
    /// Each TTL less the seconds the answer spent in the cache (RFC 1035 §7.3).
    Aged(u32),
    /// Every TTL set to one value: a stale answer's (RFC 8767 §4 sends a short TTL, not zero,
    /// so a client does not ask again at once).
    Fixed(u32),
}

impl TtlRule {
    /// The rule for an answer `age` old.
    pub fn aged(age: Duration) -> Self {
        Self::Aged(u32::try_from(age.as_secs()).unwrap_or(u32::MAX))
    }

    fn apply(self, ttl: u32) -> u32 {
        match self {
            Self::Aged(age) => ttl.saturating_sub(age),
            Self::Fixed(fixed) => fixed,
        }
    }
}

impl Answer {
    /// The answer to `question` made of these sections; `None` when hickory cannot encode a
    /// record it decoded, or the records would not fit one message.
    pub(super) fn new(
        question: &Question,
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
    ) -> Option<Self> {
        let (answers, authorities) = relevant(question, answers, authorities);
        let authorities = if keeps_authority(question, rcode, &answers, &authorities) {
            authorities
        } else {
            Vec::new()
        };
        let lifetime = lifetime(rcode, &answers, &authorities);
        let targets = answers.iter().filter_map(target_name).collect();
        let addresses: Box<[IpAddr]> = answers.iter().filter_map(address).collect();
        let house_address = addresses.iter().copied().any(is_rebinding_target);
        let answer_count = u16::try_from(answers.len()).ok()?;
        let authority_count = u16::try_from(authorities.len()).ok()?;

        let mut message = Message::new(0, MessageType::Response, OpCode::Query);
        message.add_query(question.to_query());
        message.answers = answers;
        message.authorities = authorities;
        let bytes = message.to_vec().ok()?;

        let start = skip_name(&bytes, HEADER_LEN)? + 4;
        let count = usize::from(answer_count) + usize::from(authority_count);
        let (offsets, end) = record_ttl_offsets(&bytes, start, count)?;
        let ttl_offsets = offsets
            .into_iter()
            .map(|offset| u16::try_from(offset - start).ok())
            .collect::<Option<_>>()?;
        Some(Self {
            rcode,
            records: bytes.get(start..end)?.into(),
            ttl_offsets,
            answer_count,
            authority_count,
            lifetime,
            targets,
            addresses,
            house_address,
            upstream: None,
        })
    }

    /// This answer, given by the upstream labelled `upstream`.
    pub(super) fn answered_by(self, upstream: Arc<str>) -> Self {
        Self {
            upstream: Some(upstream),
            ..self
        }
    }

    /// The label of the upstream that gave this answer (kept with it in the cache), if known.
    pub fn upstream(&self) -> Option<&str> {
        self.upstream.as_deref()
    }

    /// Clamps every TTL into `[min, max]` (the `[cache]` bounds), so what we send and how long
    /// we keep it agree.
    pub fn clamp_ttls(&mut self, min: Duration, max: Duration) {
        let max = max.max(min);
        let clamp = |ttl: u32| {
            let secs = u64::from(ttl).clamp(min.as_secs(), max.as_secs());
            u32::try_from(secs).unwrap_or(u32::MAX)
        };
        rewrite_ttls(&mut self.records, &self.ttl_offsets, clamp);
        // Clamping is monotonic, so clamping the lifetime equals computing it again from the
        // clamped TTLs, a negative answer's SOA MINIMUM included (which no TTL rewrite
        // touches).
        self.lifetime = self.lifetime.map(|lifetime| lifetime.clamp(min, max));
    }

    /// How long this answer may be cached; `None` when it must not be.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// The names this answer points to (CNAME chain targets, HTTPS/SVCB target names).
    pub fn targets(&self) -> &[Box<str>] {
        &self.targets
    }

    /// The A and AAAA addresses of the answer section.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Whether an address record holds an address inside the house (private, loopback,
    /// link-local, unspecified).
    pub fn holds_house_address(&self) -> bool {
        self.house_address
    }

    /// The records as a reply writes them, TTLs per `ttl`.
    pub(super) fn served(&self, ttl: TtlRule) -> ServedAnswer<'_> {
        ServedAnswer { answer: self, ttl }
    }
}

/// An answer's records with the TTLs one reply gives them.
pub(super) struct ServedAnswer<'a> {
    answer: &'a Answer,
    ttl: TtlRule,
}

impl Records for ServedAnswer<'_> {
    fn write(&self, out: &mut Vec<u8>) -> (u16, u16) {
        let answer = self.answer;
        let start = out.len();
        out.extend_from_slice(&answer.records);
        rewrite_ttls(&mut out[start..], &answer.ttl_offsets, |ttl| {
            self.ttl.apply(ttl)
        });
        (answer.answer_count, answer.authority_count)
    }
}

/// Replaces each TTL in `records` (at `offsets`, found by the encoder's walk, so within
/// `records`) with `new(ttl)`.
fn rewrite_ttls(records: &mut [u8], offsets: &[u16], new: impl Fn(u32) -> u32) {
    for at in offsets.iter().map(|&at| usize::from(at)) {
        let field = &mut records[at..at + 4];
        let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
        field.copy_from_slice(&new(ttl).to_be_bytes());
    }
}

/// The records of the answer and authority sections that are about `question`, as Unbound's
/// scrubber and dnsmasq keep them: an upstream's answer for `x.poison.test` carrying
/// `www.victim.test A 6.6.6.6` would otherwise reach the client, whose stub may take it
/// for the victim's address (answers are not cached under other names here, but a client's
/// own cache or a forwarder behind us might).
///
/// - Answer section: records owned by the question's name and by the names its CNAME chain
///   reaches, put in the order of the chain (stubs such as glibc follow it in order and
///   skip what comes out of order); a DNAME (and a signature) owned by an ancestor of a
///   chain name, which synthesised the CNAME that follows it, stays in its place. The chain
///   is not followed for a CNAME or ANY question: the CNAME is then the answer itself.
/// - Authority section: records owned by a name of the chain or one of its ancestors (the
///   SOA of a negative answer, the zone's NS records), never addresses or aliases (Unbound
///   removes those as "potential poison"); DNSSEC denial records (NSEC, NSEC3, RRSIG) are
///   kept whatever their owner, because their owners are neighbouring or hashed names, and
///   no client takes them for data.
fn relevant(
    question: &Question,
    mut answers: Vec<Record>,
    mut authorities: Vec<Record>,
) -> (Vec<Record>, Vec<Record>) {
    let chain = cname_chain(question, &answers);
    let place = |record: &Record| chain_place(&chain, record);
    answers.retain(|record| place(record).is_some());
    // Without a CNAME every record kept is the question name's own: nothing to reorder.
    if chain.len() > 1 && !answers.is_sorted_by_key(place) {
        // Stable: records of one name keep the upstream's order.
        answers.sort_by_key(place);
    }
    authorities.retain(|record| match record.record_type() {
        RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3 => true,
        RecordType::A | RecordType::AAAA | RecordType::CNAME | RecordType::DNAME => false,
        _ => chain.iter().any(|name| record.name.zone_of(name)),
    });
    (answers, authorities)
}

/// The question's name, then each name its CNAME chain in `answers` reaches, in order; a
/// loop ends the chain.
fn cname_chain(question: &Question, answers: &[Record]) -> Vec<Name> {
    let mut chain = vec![question.name.clone()];
    if matches!(question.qtype, RecordType::CNAME | RecordType::ANY) {
        return chain;
    }
    while let Some(target) = answers.iter().find_map(|record| match &record.data {
        RData::CNAME(cname)
            if chain
                .last()
                .is_some_and(|name| same_name(&record.name, name)) =>
        {
            Some(&cname.0)
        }
        _ => None,
    }) {
        if chain.iter().any(|name| same_name(name, target)) {
            break;
        }
        chain.push(target.clone());
    }
    chain
}

/// The place in `chain` of the name `record` is about; `None`: it is about another name.
fn chain_place(chain: &[Name], record: &Record) -> Option<usize> {
    let synthesises = matches!(record.record_type(), RecordType::DNAME | RecordType::RRSIG);
    chain.iter().position(|name| {
        same_name(&record.name, name) || (synthesises && record.name.zone_of(name))
    })
}

/// Whether `a` and `b` are the same name, ignoring ASCII case and whether either is
/// written fully qualified. Asked for every record of every upstream answer: the lengths,
/// which a name keeps (a trailing dot not counted), turn most other names away before a
/// label is read, and one comparison of the labels (not `zone_of` both ways) settles the
/// rest.
fn same_name(a: &Name, b: &Name) -> bool {
    a.len() == b.len() && a.eq_ignore_root(b)
}

/// Whether the answer keeps the upstream's authority section. Minimal responses, as Unbound
/// and dnsmasq (so Pi-hole) give: the zone's NS records behind a positive answer tell a stub
/// client nothing it uses, yet cost bytes in every reply and in the cache, and push big
/// answers towards truncation. Kept where they mean something: the SOA of a negative answer
/// (the client's negative-caching TTL, RFC 2308), a CNAME chain ending in NODATA or
/// NXDOMAIN included, and everything when the client asked for DNSSEC records (a wildcard
/// answer's NSEC/NSEC3 proof travels there, RFC 4035 §3.1.3.3).
fn keeps_authority(
    question: &Question,
    rcode: ResponseCode,
    answers: &[Record],
    authorities: &[Record],
) -> bool {
    answers.is_empty()
        || rcode != ResponseCode::NoError
        || question.dnssec_ok
        || authorities
            .iter()
            .any(|record| record.record_type() == RecordType::SOA)
}

fn lifetime(rcode: ResponseCode, answers: &[Record], authorities: &[Record]) -> Option<Duration> {
    // RFC 2308 §5: the negative part of an answer is cached for min(SOA TTL, SOA MINIMUM).
    let negative = authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    });
    let ttl = if answers.is_empty() {
        // Wholly negative: without an SOA it is not cached at all.
        negative?
    } else if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        // A CNAME chain that ends in NXDOMAIN or no data is negative too, for its last
        // name: kept no longer than the SOA allows, so a name created meanwhile shows up.
        let positive = answers.iter().map(|record| record.ttl).min()?;
        negative.map_or(positive, |negative| positive.min(negative))
    } else {
        return None;
    };
    Some(Duration::from_secs(u64::from(ttl)))
}

/// The address of an A or AAAA record.
fn address(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
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
    /// authority sections to its first question; `None` when the bytes are not a DNS message
    /// with a question, or the answer cannot be kept.
    #[doc(hidden)]
    pub fn from_message_bytes(bytes: &[u8]) -> Option<(Question, Answer)> {
        let message = Message::from_vec(bytes).ok()?;
        // An upstream echoes the DO bit it was asked with: the answer to a client that set it.
        let dnssec_ok = message
            .edns
            .as_ref()
            .is_some_and(|edns| edns.flags().dnssec_ok);
        let question = Question::from_wire_query(message.queries.first()?, dnssec_ok, false);
        let answer = Answer::new(
            &question,
            message.metadata.response_code,
            message.answers,
            message.authorities,
        )?;
        Some((question, answer))
    }

    /// The reply a client asking `question` over TCP gets from this answer with id `id`,
    /// TTLs per `ttl`.
    #[doc(hidden)]
    pub fn to_message_bytes(&self, question: &Question, id: u16, ttl: TtlRule) -> Vec<u8> {
        use super::reply::{Echo, Reply, Transport, write_reply};
        let request = super::request::Request {
            metadata: hickory_proto::op::Metadata::new(id, MessageType::Query, OpCode::Query),
            question: question.clone(),
            edns_payload: None,
            question_range: None,
            forwarded: Default::default(),
        };
        let served = self.served(ttl);
        let reply = Reply {
            records: Some(&served),
            ..Reply::code(self.rcode)
        };
        write_reply(&Echo::of(&request, &[]), &reply, Transport::Tcp)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::{A, CNAME, NS, SOA, TXT};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        soa_of("example.com.", ttl, minimum)
    }

    fn soa_of(zone: &str, ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(name("ns.test."), name("host.test."), 1, 60, 60, 60, minimum);
        Record::from_rdata(name(zone), ttl, RData::SOA(data))
    }

    /// `www.example.com. 300 CNAME target`.
    fn cname_to(target: &str) -> Record {
        Record::from_rdata(
            name("www.example.com."),
            300,
            RData::CNAME(CNAME(name(target))),
        )
    }

    fn a(owner: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    /// `owner 300 A 6.6.6.6`: a record about a name nobody asked for.
    fn poison(owner: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::A(A::new(6, 6, 6, 6)))
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
    }

    /// Records as (owner, type), in order.
    type Listed = Vec<(String, RecordType)>;

    fn listed(records: &[Record]) -> Listed {
        records
            .iter()
            .map(|record| (record.name.to_ascii(), record.record_type()))
            .collect()
    }

    /// What the reply to `qname`/`qtype` made from these sections holds: the answer and
    /// authority sections, listed.
    fn kept(
        qname: &str,
        qtype: &str,
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
    ) -> (Listed, Listed) {
        let question = Question::parse(qname, qtype).unwrap();
        let answer = Answer::new(&question, rcode, answers, authorities).unwrap();
        let message =
            Message::from_vec(&answer.to_message_bytes(&question, 7, TtlRule::Aged(0))).unwrap();
        (listed(&message.answers), listed(&message.authorities))
    }

    fn answer(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Answer {
        let question = Question::parse("www.example.com", "A").unwrap();
        Answer::new(&question, rcode, answers, authorities).unwrap()
    }

    /// The answer to a client that set the DNSSEC OK bit: every section kept.
    fn dnssec_answer(
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
    ) -> Answer {
        let mut question = Question::parse("www.example.com", "A").unwrap();
        question.dnssec_ok = true;
        Answer::new(&question, rcode, answers, authorities).unwrap()
    }

    /// The reply to `asked` (same name in any case), decoded by hickory.
    fn reply(answer: &Answer, asked: &str, ttl: TtlRule) -> Message {
        let query = Query::query(Name::from_ascii(asked).unwrap(), RecordType::A);
        let question = Question::from_wire_query(&query, false, false);
        Message::from_vec(&answer.to_message_bytes(&question, 7, ttl)).unwrap()
    }

    #[test]
    fn positive_lifetime_is_the_smallest_ttl_and_targets_are_collected() {
        let answer = answer(
            ResponseCode::NoError,
            vec![cname_to("Edge.CDN.net."), a("edge.cdn.net.", 60)],
            vec![],
        );
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(60)));
        assert_eq!(answer.targets(), &["edge.cdn.net".into()]);
    }

    #[test]
    fn negative_lifetime_follows_the_soa_and_needs_one() {
        let nxdomain = answer(ResponseCode::NXDomain, vec![], vec![soa(3600, 120)]);
        assert_eq!(nxdomain.lifetime(), Some(Duration::from_secs(120)));
        let no_soa = answer(ResponseCode::NXDomain, vec![], vec![]);
        assert_eq!(no_soa.lifetime(), None);
        // A CNAME (300 s) to a name that does not exist: the SOA's 120 s bound it.
        let dangling = answer(
            ResponseCode::NXDomain,
            vec![cname_to("gone.example.net.")],
            vec![soa(3600, 120)],
        );
        assert_eq!(dangling.lifetime(), Some(Duration::from_secs(120)));
    }

    #[test]
    fn served_records_are_the_upstream_records_behind_the_clients_own_question() {
        let text = Record::from_rdata(
            name("edge.cdn.net."),
            300,
            RData::TXT(TXT::new(vec!["v=spf1 -all".into()])),
        );
        let sent = vec![cname_to("edge.cdn.net."), a("edge.cdn.net.", 60), text];
        let authorities = vec![soa(3600, 120)];
        let answer = dnssec_answer(ResponseCode::NoError, sent.clone(), authorities.clone());
        // Asked in another case (0x20 randomisation): the names point into that question.
        let message = reply(&answer, "WwW.ExAmPlE.cOm", TtlRule::Aged(0));
        assert_eq!(message.metadata.id, 7);
        assert_eq!(message.queries[0].name().to_ascii(), "WwW.ExAmPlE.cOm.");
        assert_eq!(message.answers.len(), 3);
        // Names compare without case; the owner shows the compression pointer at work.
        assert_eq!(message.answers[0].name.to_ascii(), "WwW.ExAmPlE.cOm.");
        for (got, want) in message.answers.iter().zip(&sent) {
            assert_eq!(
                (&got.name, &got.data, got.ttl),
                (&want.name, &want.data, want.ttl)
            );
        }
        assert_eq!(message.authorities, authorities);
    }

    #[test]
    fn a_positive_answer_keeps_its_ns_records_only_for_dnssec() {
        let ns = Record::from_rdata(
            name("example.com."),
            3600,
            RData::NS(NS(name("ns.example.com."))),
        );
        let positive = || (vec![a("www.example.com.", 60)], vec![ns.clone()]);
        let (answers, authorities) = positive();
        let minimal = answer(ResponseCode::NoError, answers, authorities);
        let message = reply(&minimal, "www.example.com", TtlRule::Aged(0));
        assert_eq!((message.answers.len(), message.authorities.len()), (1, 0));
        let (answers, authorities) = positive();
        let whole = dnssec_answer(ResponseCode::NoError, answers, authorities);
        let message = reply(&whole, "www.example.com", TtlRule::Aged(0));
        assert_eq!((message.answers.len(), message.authorities.len()), (1, 1));
        // Negative answers keep their SOA: NODATA, NXDOMAIN at the end of a CNAME, and NODATA
        // at the end of one (NOERROR with the CNAME alone: common for AAAA).
        let negatives = [
            (ResponseCode::NoError, vec![]),
            (ResponseCode::NXDomain, vec![cname_to("gone.example.net.")]),
            (ResponseCode::NoError, vec![cname_to("v4only.example.net.")]),
        ];
        for (rcode, answers) in negatives {
            let count = answers.len();
            let negative = answer(rcode, answers, vec![soa(3600, 120)]);
            let message = reply(&negative, "www.example.com", TtlRule::Aged(0));
            let sections = (message.answers.len(), message.authorities.len());
            assert_eq!(sections, (count, 1), "{rcode:?} with {count} answers");
        }
    }

    #[test]
    fn records_about_other_names_are_dropped_from_the_answer() {
        let (answers, _) = kept(
            "x.poison.test",
            "A",
            ResponseCode::NoError,
            vec![
                poison("www.victim.test."),
                a("x.poison.test.", 60),
                poison("poison.test."),
            ],
            vec![],
        );
        assert_eq!(answers, [("x.poison.test.".into(), RecordType::A)]);
        // Their names are not inspected either.
        let question = Question::parse("x.poison.test", "A").unwrap();
        let injected = vec![
            a("x.poison.test.", 60),
            cname("www.victim.test.", "t.test."),
        ];
        let answer = Answer::new(&question, ResponseCode::NoError, injected, vec![]).unwrap();
        assert!(answer.targets().is_empty());
    }

    #[test]
    fn an_nxdomain_keeps_only_its_zones_records_in_authority() {
        let victim_ns = Record::from_rdata(
            name("victim.test."),
            3600,
            RData::NS(NS(name("ns.evil.test."))),
        );
        let (answers, authorities) = kept(
            "x.poison.test",
            "A",
            ResponseCode::NXDomain,
            vec![],
            vec![
                poison("www.victim.test."),
                soa_of("poison.test.", 3600, 120),
                victim_ns,
                // Owned by an ancestor, but an address in authority is never kept.
                poison("poison.test."),
            ],
        );
        assert!(answers.is_empty());
        assert_eq!(authorities, [("poison.test.".into(), RecordType::SOA)]);
    }

    #[test]
    fn the_cname_chain_is_kept_in_its_order_and_nothing_else() {
        // Out of order, with a stranger in the middle and a record about a name the chain
        // never reaches.
        let (answers, authorities) = kept(
            "www.example.com",
            "A",
            ResponseCode::NoError,
            vec![
                a("edge.cdn.net.", 60),
                poison("www.victim.test."),
                cname("mid.example.net.", "edge.cdn.net."),
                cname("www.example.com.", "mid.example.net."),
                poison("other.cdn.net."),
            ],
            vec![
                soa_of("cdn.net.", 3600, 60),
                soa_of("victim.test.", 3600, 60),
            ],
        );
        let expected = [
            ("www.example.com.", RecordType::CNAME),
            ("mid.example.net.", RecordType::CNAME),
            ("edge.cdn.net.", RecordType::A),
        ];
        assert_eq!(
            answers,
            expected.map(|(owner, rtype)| (owner.into(), rtype))
        );
        // The SOA of the zone the chain ends in stays; another zone's goes.
        assert_eq!(authorities, [("cdn.net.".into(), RecordType::SOA)]);
    }

    #[test]
    fn a_cname_question_is_answered_by_the_cname_alone_and_loops_end() {
        let chain = || {
            vec![
                cname("www.example.com.", "edge.cdn.net."),
                a("edge.cdn.net.", 60),
            ]
        };
        let (answers, _) = kept(
            "www.example.com",
            "CNAME",
            ResponseCode::NoError,
            chain(),
            vec![],
        );
        assert_eq!(answers, [("www.example.com.".into(), RecordType::CNAME)]);
        let (answers, _) = kept(
            "www.example.com",
            "A",
            ResponseCode::NoError,
            chain(),
            vec![],
        );
        assert_eq!(answers.len(), 2);
        let looping = vec![
            cname("b.example.com.", "www.example.com."),
            cname("www.example.com.", "b.example.com."),
        ];
        let (answers, _) = kept(
            "www.example.com",
            "A",
            ResponseCode::NoError,
            looping,
            vec![],
        );
        let expected = [
            ("www.example.com.", RecordType::CNAME),
            ("b.example.com.", RecordType::CNAME),
        ];
        assert_eq!(
            answers,
            expected.map(|(owner, rtype)| (owner.into(), rtype))
        );
    }

    #[test]
    fn a_dname_above_the_question_and_dnssec_denial_records_are_kept() {
        let record = |owner: &str, code: RecordType| {
            let data = RData::Unknown {
                code,
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0]),
            };
            Record::from_rdata(name(owner), 300, data)
        };
        let question = Question::parse("www.old.example", "A").unwrap();
        let (answers, authorities) = relevant(
            &question,
            vec![
                record("old.example.", RecordType::DNAME),
                record("victim.test.", RecordType::DNAME),
                cname("www.old.example.", "www.new.example."),
                a("www.new.example.", 60),
            ],
            vec![
                record("abc123.new.example.", RecordType::NSEC3),
                record("abc123.new.example.", RecordType::RRSIG),
                record("www.old.example.", RecordType::DNAME),
            ],
        );
        let expected = [
            ("old.example.", RecordType::DNAME),
            ("www.old.example.", RecordType::CNAME),
            ("www.new.example.", RecordType::A),
        ];
        assert_eq!(
            listed(&answers),
            expected.map(|(owner, rtype)| (owner.into(), rtype))
        );
        let expected = [
            ("abc123.new.example.", RecordType::NSEC3),
            ("abc123.new.example.", RecordType::RRSIG),
        ];
        assert_eq!(
            listed(&authorities),
            expected.map(|(owner, rtype)| (owner.into(), rtype))
        );
    }

    #[test]
    fn clamping_and_ageing_rewrite_ttls() {
        let mut answer = answer(
            ResponseCode::NoError,
            vec![a("www.example.com.", 5)],
            vec![],
        );
        answer.clamp_ttls(Duration::from_secs(30), Duration::from_secs(86_400));
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(30)));
        let aged = reply(&answer, "www.example.com", TtlRule::Aged(12));
        assert_eq!(aged.answers[0].ttl, 18);
        let expired = reply(&answer, "www.example.com", TtlRule::Aged(99));
        assert_eq!(expired.answers[0].ttl, 0);
        // The cached bytes keep the clamped TTL: ageing is per reply.
        let again = reply(&answer, "www.example.com", TtlRule::Aged(0));
        assert_eq!(again.answers[0].ttl, 30);
    }

    #[test]
    fn a_fixed_ttl_replaces_every_ttl_of_both_sections() {
        let answer = dnssec_answer(
            ResponseCode::NoError,
            vec![a("www.example.com.", 5)],
            vec![soa(3600, 120)],
        );
        let stale = reply(&answer, "www.example.com", TtlRule::Fixed(30));
        assert_eq!((stale.answers[0].ttl, stale.authorities[0].ttl), (30, 30));
        let aged = reply(&answer, "www.example.com", TtlRule::Aged(2));
        assert_eq!((aged.answers[0].ttl, aged.authorities[0].ttl), (3, 3598));
    }

    #[test]
    fn the_same_name_ignores_case_and_the_trailing_dot_only() {
        let www = name("www.Example.com.");
        assert!(same_name(&www, &name("WWW.example.COM")));
        assert!(same_name(&www, &name("www.example.com.")));
        // Same length, other labels; same bytes, other cut; parent and child.
        assert!(!same_name(&www, &name("www.example.org.")));
        assert!(!same_name(&name("ab.c."), &name("a.bc.")));
        assert!(!same_name(&www, &name("example.com.")));
        assert!(!same_name(&name("example.com."), &www));
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
        let question = super::Question::parse("test", "A").unwrap();
        let mut answer = Answer::new(&question, ResponseCode::NoError, vec![], vec![soa]).unwrap();
        answer.clamp_ttls(Duration::from_secs(30), Duration::from_secs(86_400));
        assert_eq!(answer.lifetime(), Some(Duration::from_secs(30)));
    }
}
