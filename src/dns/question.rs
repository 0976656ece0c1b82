//! [`Question`]: the one question of a client query, in the form the rest of the daemon needs
//! (a lower-case name without the trailing dot for matching, a bounded type label for metrics,
//! the cache key), with the hickory types kept inside this module.

use std::str::FromStr;

use hickory_proto::op::Query;
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::metrics::QTYPE_LABELS;

/// What a question asks for, as far as whether it is looked up at all is concerned.
///
/// Meta-types are not data to look up (RFC 6895 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionKind {
    /// Records of class IN: looked up.
    Data,
    /// ANY (RFC 8482).
    Any,
    /// A zone transfer (AXFR, IXFR) or an obsolete mailbox type (MAILA, MAILB).
    Transfer,
    /// A transaction signature (TSIG, TKEY): belongs in the additional section, never in a
    /// question.
    Signature,
    /// A class other than IN (CHAOS `version.bind`, Hesiod).
    OtherClass,
}

/// A question the daemon answers.
#[derive(Clone, Debug)]
pub struct Question {
    pub(super) name: Name,
    pub(super) qtype: RecordType,
    pub(super) qclass: DNSClass,
    /// The query asked for DNSSEC records (EDNS DO bit).
    pub(super) dnssec_ok: bool,
    /// The query asked us not to validate (CD bit).
    pub(super) checking_disabled: bool,
    /// Lower-case, no trailing dot: what lists and the matcher use.
    text: Box<str>,
}

/// The name of query type `code` as DNS writes it ("A", "HTTPS", "TYPE65534").
pub fn qtype_name(code: u16) -> String {
    RecordType::from(code).to_string()
}

/// What separates one cached answer from another (RFC 2181 §5: name, type and class; DO and
/// CD change what an upstream sends back, so they are part of the key too).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Box<str>,
    qtype: u16,
    qclass: u16,
    flags: u8,
}

impl Question {
    pub(super) fn from_wire_query(query: &Query, dnssec_ok: bool, checking_disabled: bool) -> Self {
        Self::new(
            query.name().clone(),
            query.query_type(),
            query.query_class(),
            dnssec_ok,
            checking_disabled,
        )
    }

    /// A question read by [`super::wire`], whose lower-case `text` was built from the wire
    /// bytes (saving `Name::to_ascii` and a second allocation).
    pub(super) fn from_wire_parts(
        name: Name,
        text: Box<str>,
        qtype: RecordType,
        qclass: DNSClass,
        dnssec_ok: bool,
        checking_disabled: bool,
    ) -> Self {
        Self {
            name,
            qtype,
            qclass,
            dnssec_ok,
            checking_disabled,
            text,
        }
    }

    fn new(
        name: Name,
        qtype: RecordType,
        qclass: DNSClass,
        dnssec_ok: bool,
        checking_disabled: bool,
    ) -> Self {
        let text = normalized_text(&name);
        Self::from_wire_parts(name, text, qtype, qclass, dnssec_ok, checking_disabled)
    }

    /// A question for `name` of type `qtype` (e.g. "AAAA"), class IN, as `explain` and tests
    /// ask it.
    pub fn parse(name: &str, qtype: &str) -> Result<Self, String> {
        let qtype = RecordType::from_str(&qtype.to_ascii_uppercase())
            .map_err(|_| format!("unknown query type {qtype:?}"))?;
        let mut name =
            Name::from_str(name).map_err(|error| format!("bad name {name:?}: {error}"))?;
        name.set_fqdn(true);
        Ok(Self::new(name, qtype, DNSClass::IN, false, false))
    }

    /// The name, lower-case, without the trailing dot (the root is "").
    pub fn name(&self) -> &str {
        &self.text
    }

    /// The query type as a metric label from a bounded set.
    pub fn qtype_label(&self) -> &'static str {
        qtype_label(self.qtype)
    }

    /// The row of [`QTYPE_LABELS`] this question is counted under (a match, not a search).
    pub fn qtype_row(&self) -> usize {
        qtype_row(self.qtype)
    }

    /// The query type's code (1 for A, 28 for AAAA).
    pub fn qtype_code(&self) -> u16 {
        u16::from(self.qtype)
    }

    /// What kind of question this is to the pipeline's local stage (see [`QuestionKind`]).
    pub fn kind(&self) -> QuestionKind {
        /// Query types hickory has no name for.
        const TKEY: u16 = 249;
        const MAILB: u16 = 253;
        const MAILA: u16 = 254;
        if self.qclass != DNSClass::IN {
            return QuestionKind::OtherClass;
        }
        match self.qtype {
            RecordType::ANY => QuestionKind::Any,
            RecordType::AXFR | RecordType::IXFR | RecordType::Unknown(MAILB | MAILA) => {
                QuestionKind::Transfer
            }
            RecordType::TSIG | RecordType::Unknown(TKEY) => QuestionKind::Signature,
            _ => QuestionKind::Data,
        }
    }

    /// The question as hickory's [`Query`]: name, type and class.
    pub fn to_query(&self) -> Query {
        let mut query = Query::query(self.name.clone(), self.qtype);
        query.query_class = self.qclass;
        query
    }

    /// The key of this question's answer in the cache, borrowed from the question: a cache
    /// hit allocates nothing; [`CacheKeyRef::to_key`] makes the owned key when one is stored.
    pub fn cache_key(&self) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name: &self.text,
            qtype: u16::from(self.qtype),
            qclass: u16::from(self.qclass),
            flags: u8::from(self.dnssec_ok) | (u8::from(self.checking_disabled) << 1),
        }
    }
}

/// A [`CacheKey`] borrowing its name. It hashes exactly as the owned key does (the same
/// fields in the same order, `&str` hashing as `Box<str>`), so a map of owned keys can be
/// searched with it.
#[derive(Clone, Copy, Debug, Hash)]
pub struct CacheKeyRef<'a> {
    name: &'a str,
    qtype: u16,
    qclass: u16,
    flags: u8,
}

impl CacheKeyRef<'_> {
    /// The owned key.
    pub fn to_key(&self) -> CacheKey {
        CacheKey {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

impl PartialEq<CacheKey> for CacheKeyRef<'_> {
    fn eq(&self, key: &CacheKey) -> bool {
        *self.name == *key.name
            && (self.qtype, self.qclass, self.flags) == (key.qtype, key.qclass, key.flags)
    }
}

/// Lower-case ASCII (IDNs arrive as punycode on the wire) without the trailing dot.
fn normalized_text(name: &Name) -> Box<str> {
    let mut text = name.to_ascii();
    text.make_ascii_lowercase();
    if text.ends_with('.') {
        text.pop();
    }
    text.into_boxed_str()
}

fn qtype_label(qtype: RecordType) -> &'static str {
    QTYPE_LABELS[qtype_row(qtype)]
}

/// The index of `qtype`'s label in [`QTYPE_LABELS`] (the last row, "other", for the rest).
fn qtype_row(qtype: RecordType) -> usize {
    match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::CNAME => 2,
        RecordType::HTTPS => 3,
        RecordType::SVCB => 4,
        RecordType::MX => 5,
        RecordType::TXT => 6,
        RecordType::PTR => 7,
        RecordType::SRV => 8,
        RecordType::NS => 9,
        RecordType::SOA => 10,
        RecordType::ANY => 11,
        _ => QTYPE_LABELS.len() - 1,
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::*;

    #[test]
    fn a_borrowed_key_hashes_and_compares_as_the_owned_one() {
        let question = Question::parse("WWW.Example.com", "AAAA").unwrap();
        let key = question.cache_key();
        let owned = key.to_key();
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(key), hasher.hash_one(&owned));
        assert!(key == owned);
        let other_type = Question::parse("www.example.com", "A").unwrap();
        assert!(other_type.cache_key() != owned);
        let other_name = Question::parse("www.example.org", "AAAA").unwrap();
        assert!(other_name.cache_key() != owned);
    }

    #[test]
    fn name_is_lowercase_without_trailing_dot() {
        let question = Question::parse("WWW.Meta.AI.", "https").unwrap();
        assert_eq!(question.name(), "www.meta.ai");
        assert_eq!(question.qtype_label(), "HTTPS");
    }

    #[test]
    fn rows_match_labels() {
        for (qtype, label) in [
            ("A", "A"),
            ("ANY", "ANY"),
            ("SOA", "SOA"),
            ("NAPTR", "other"),
        ] {
            let question = Question::parse("example.com", qtype).unwrap();
            assert_eq!(QTYPE_LABELS[question.qtype_row()], label);
            assert_eq!(question.qtype_label(), label);
        }
    }

    #[test]
    fn unknown_types_share_one_label() {
        let question = Question::parse("example.com", "NAPTR").unwrap();
        assert_eq!(question.qtype_label(), "other");
        assert!(QTYPE_LABELS.contains(&question.qtype_label()));
    }

    #[test]
    fn cache_key_separates_types_and_flags() {
        let a = Question::parse("example.com", "A").unwrap();
        let aaaa = Question::parse("example.com", "AAAA").unwrap();
        let mut a_do = a.clone();
        a_do.dnssec_ok = true;
        let key = a.cache_key().to_key();
        assert!(aaaa.cache_key() != key);
        assert!(a_do.cache_key() != key);
        assert!(Question::parse("EXAMPLE.com.", "a").unwrap().cache_key() == key);
    }
}
