//! One query log entry as it is stored, served and printed, and the query-path record it is
//! made from.
//!
//! [`QueryRecord`] borrows everything from the query that produced it, so handing it over
//! allocates nothing; [`LogEntry`] is the owned form made only for queries the log keeps
//! (and observe, for Meta names). Its serde field names are the API's (issue 14 lists them):
//! scripts and the web page rely on them.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dns::{Answer, Question, qtype_name};
use crate::net::MacAddress;
use crate::policy::{IdentifiedBy, ListMask};

/// How many answer addresses an entry keeps.
pub const MAX_ANSWERS: usize = 4;

/// How a query was answered, as the log tells it (finer than the metrics' `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogResult {
    /// A list of the profile blocked the name, or a CNAME/HTTPS target in its answer.
    Blocked,
    /// An observe-mode profile would have blocked it; answered as allowed.
    WouldBlock,
    /// Answered by an upstream.
    Forwarded,
    /// Answered from the cache.
    Cached,
    /// An expired answer served because no upstream answered in time.
    Stale,
    /// No upstream answered in time.
    ServFail,
    /// A question this resolver does not serve (zone transfers, other classes).
    Refused,
    /// Answered at home: a local name, a private reverse zone or `home.arpa`.
    Local,
}

impl LogResult {
    /// Every result, for parameter checks.
    pub const ALL: [Self; 8] = [
        Self::Blocked,
        Self::WouldBlock,
        Self::Forwarded,
        Self::Cached,
        Self::Stale,
        Self::ServFail,
        Self::Refused,
        Self::Local,
    ];

    /// The word the API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::WouldBlock => "would-block",
            Self::Forwarded => "forwarded",
            Self::Cached => "cached",
            Self::Stale => "stale",
            Self::ServFail => "servfail",
            Self::Refused => "refused",
            Self::Local => "local",
        }
    }

    /// Whether a `mode = "blocked"` log keeps it.
    pub fn is_block(self) -> bool {
        matches!(self, Self::Blocked | Self::WouldBlock)
    }
}

/// Which name a list held: the question's own, or a name inside the upstream answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedAt {
    /// The question's name.
    Question,
    /// A CNAME or HTTPS/SVCB target in the answer.
    AnswerTarget,
    /// An address of the answer, inside a network the profile blocks.
    AnswerAddress,
}

impl BlockedAt {
    /// The word the API uses (`blocked_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::AnswerTarget => "answer-target",
            Self::AnswerAddress => "answer-address",
        }
    }
}

/// What the query path hands to [`super::Records::submit`] once a reply is written: all
/// borrowed, nothing allocated.
pub struct QueryRecord<'a> {
    /// When the query arrived.
    pub time: SystemTime,
    /// The client's address (a trusted forwarder's, for a client it forwards for).
    pub client: IpAddr,
    /// The client's MAC address, when known.
    pub mac: Option<MacAddress>,
    /// The device's name (`unknown` for a client that is no device).
    pub device: &'a str,
    /// Its profile's name.
    pub profile: &'a str,
    /// How the device was found.
    pub identified_by: IdentifiedBy,
    /// The question.
    pub question: &'a Question,
    /// The lists containing the question's name (observe reads the Meta ones).
    pub lists: ListMask,
    /// How it was answered.
    pub result: LogResult,
    /// The list that blocked (or would have blocked) it, or the override (`override 7`).
    pub list: Option<Cow<'a, str>>,
    /// Where that list found the name.
    pub blocked_at: Option<BlockedAt>,
    /// The RCODE of the reply sent (its low four bits, as in the header).
    pub rcode: u8,
    /// The upstream answer, for its first addresses and the upstream that gave it (read off
    /// the query path).
    pub answer: Option<&'a Arc<Answer>>,
    /// Time from receiving the query to the reply.
    pub duration: Duration,
}

/// The record in the owned form the writer thread needs, made on the query path: the text
/// fields share one allocation, the words (result, how identified, RCODE, type) stay as
/// codes, and the answer is kept whole (an `Arc`). The writer thread turns it into a
/// [`LogEntry`] (many small strings) off the query path.
pub(super) struct Queued {
    time: SystemTime,
    client: IpAddr,
    mac: Option<MacAddress>,
    identified_by: IdentifiedBy,
    qtype: u16,
    result: LogResult,
    blocked_at: Option<BlockedAt>,
    rcode: u8,
    duration: Duration,
    answer: Option<Arc<Answer>>,
    /// The device, profile, name and list, one after the other.
    text: String,
    /// Where each of [`Self::text`]'s fields ends, in that order.
    ends: [usize; 4],
    has_list: bool,
}

impl Queued {
    pub(super) fn of(record: &QueryRecord<'_>) -> Self {
        let list = record.list.as_deref();
        let fields = [
            record.device,
            record.profile,
            record.question.name(),
            list.unwrap_or(""),
        ];
        let mut text = String::with_capacity(fields.iter().map(|field| field.len()).sum());
        let mut ends = [0; 4];
        for (field, end) in fields.iter().zip(&mut ends) {
            text.push_str(field);
            *end = text.len();
        }
        Self {
            time: record.time,
            client: record.client,
            mac: record.mac,
            identified_by: record.identified_by,
            qtype: record.question.qtype_code(),
            result: record.result,
            blocked_at: record.blocked_at,
            rcode: record.rcode,
            duration: record.duration,
            answer: record.answer.cloned(),
            text,
            ends,
            has_list: list.is_some(),
        }
    }

    /// Text field `index` (see [`Self::text`]).
    fn field(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[index]]
    }

    /// The entry, with the answer's first addresses and the upstream that gave it (a cached
    /// answer's too, as AdGuard Home shows it).
    pub(super) fn into_entry(self) -> LogEntry {
        let answers = self.answer.as_ref().map_or_else(Vec::new, |answer| {
            answer
                .addresses()
                .iter()
                .take(MAX_ANSWERS)
                .copied()
                .collect()
        });
        LogEntry {
            time: Timestamp::of(self.time),
            client: self.client.to_canonical(),
            mac: self.mac.map(|mac| mac.to_string()),
            device: self.field(0).to_owned(),
            profile: self.field(1).to_owned(),
            identified_by: self.identified_by.as_str().to_owned(),
            // Named by the records thread (`super::names`), off the query path.
            client_name: None,
            name: self.field(2).to_owned(),
            qtype: qtype_name(self.qtype),
            result: self.result.as_str().to_owned(),
            list: self.has_list.then(|| self.field(3).to_owned()),
            blocked_by: self.blocked_at.map(|at| at.as_str().to_owned()),
            rcode: rcode_name(self.rcode),
            answers,
            // The upstream that gave the answer (for a cached one, the one it came from).
            upstream: (self.answer.as_ref())
                .and_then(|answer| answer.upstream())
                .map(str::to_owned),
            duration_ms: self.duration.as_secs_f64() * 1000.0,
        }
    }
}

/// The mnemonic of a header RCODE (RFC 1035 §4.1.1, RFC 2136 §2.2), as dig prints it.
fn rcode_name(rcode: u8) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    let rcode = rcode & 0x0F;
    NAMES
        .get(usize::from(rcode))
        .map_or_else(|| format!("RCODE{rcode}"), |name| (*name).to_owned())
}

/// One query log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When the query arrived (RFC 3339 in JSON).
    pub time: Timestamp,
    /// The client's address.
    pub client: IpAddr,
    /// Its MAC address, when known.
    pub mac: Option<String>,
    /// Its device.
    pub device: String,
    /// Its profile.
    pub profile: String,
    /// How the device was found: address, mac, router-option or default.
    pub identified_by: String,
    /// The host name a DHCP lease gave the client when it asked (clients that are no
    /// configured device only).
    #[serde(default)]
    pub client_name: Option<String>,
    /// The name asked.
    pub name: String,
    /// The query type.
    #[serde(rename = "type")]
    pub qtype: String,
    /// blocked, would-block, forwarded, cached, stale, servfail or refused.
    pub result: String,
    /// The list that blocked it (or would have).
    pub list: Option<String>,
    /// question, or answer-target (a CNAME or HTTPS/SVCB target was blocked).
    pub blocked_by: Option<String>,
    /// The reply's RCODE (NOERROR, NXDOMAIN, …).
    pub rcode: String,
    /// The first few addresses of the answer.
    pub answers: Vec<IpAddr>,
    /// The upstream that answered, when known.
    pub upstream: Option<String>,
    /// Time taken, in milliseconds.
    pub duration_ms: f64,
}

impl LogEntry {
    /// Roughly what the entry takes in memory, for the ring's byte cap.
    pub fn approximate_bytes(&self) -> usize {
        let strings = [
            self.mac.as_deref().unwrap_or(""),
            &self.device,
            &self.profile,
            &self.identified_by,
            self.client_name.as_deref().unwrap_or(""),
            &self.name,
            &self.qtype,
            &self.result,
            self.list.as_deref().unwrap_or(""),
            self.blocked_by.as_deref().unwrap_or(""),
            &self.rcode,
            self.upstream.as_deref().unwrap_or(""),
        ];
        std::mem::size_of::<Self>()
            + strings.iter().map(|text| text.len()).sum::<usize>()
            + self.answers.len() * std::mem::size_of::<IpAddr>()
    }
}

/// The wall clock as of the kernel's last timer tick (1–10 ms ago): what a query's record is
/// stamped with. Reading it touches no clock hardware: 8 ns where `SystemTime::now` takes
/// 28 (measured on the 2-core VM), once per answered query. A log to the tick is precise
/// enough: the time to answer is measured apart, on the monotonic clock.
pub fn coarse_now() -> SystemTime {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a pointer to a live one.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } == 0
            && let (Ok(seconds), Ok(nanos)) =
                (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec))
        {
            return UNIX_EPOCH + Duration::new(seconds, nanos);
        }
    }
    SystemTime::now()
}

/// A point in time, to the millisecond: RFC 3339 in JSON, Unix milliseconds in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `time` in Unix milliseconds (0 before 1970).
    pub fn of(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    /// Now.
    pub fn now() -> Self {
        Self::of(SystemTime::now())
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }

    /// `self` less `duration`.
    pub fn minus(self, duration: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 with milliseconds, UTC.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }

    /// An RFC 3339 time.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        humantime::parse_rfc3339_weak(text).ok().map(Self::of)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_the_wall_clock_to_a_tick() {
        for _ in 0..100 {
            let before = SystemTime::now();
            let coarse = coarse_now();
            let after = SystemTime::now();
            // At most one tick (10 ms at HZ=100) behind, never ahead.
            assert!(coarse <= after, "{coarse:?} after {after:?}");
            let behind = before.duration_since(coarse).unwrap_or_default();
            assert!(behind <= Duration::from_millis(20), "{behind:?} behind");
        }
    }
}
