//! The query path, written down once: what happens to a question between the socket and the
//! answer, stage by stage, each with the reason it sits where it does.
//!
//! ```text
//! identify  client address → device → profile            (caller: dns::service)
//! local     local names, private zones, forward zones     → Local (stop) | forward set
//! decide    lists containing the name, block & !allow     → Blocked (stop)
//! cache     shared by every profile                       → hit
//! upstream  forward (one fetch per question), then cache  → answer | stale | ServFail
//! inspect   names inside the answer, same profile;        → Blocked
//!           house addresses in a public answer            → Rebinding
//! ```
//!
//! The cache and upstream stages, with in-flight de-duplication and serve-stale
//! ([`STALE_AFTER`], [`STALE_TTL`]), live in the `fetch` submodule.

mod fetch;

use std::sync::Arc;

use self::fetch::Fetcher;
pub use self::fetch::{STALE_AFTER, STALE_TTL, Source};
use crate::cache::{Cache, Entry};
use crate::dns::{Question, TtlRule, UpstreamError, Upstreams};
use crate::local::{Local, LocalAnswer};
use crate::metrics::QueryResult;
use crate::policy::{ListIndex, ListMask, Policy, Profile};

/// Extended DNS Error INFO-CODE of a stale answer: Stale Answer (RFC 8914 §4.4).
const EDE_STALE_ANSWER: u16 = 3;

/// Where a blocked name was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedBy {
    /// The question's own name.
    Question,
    /// A name inside the upstream answer (a CNAME or HTTPS/SVCB target).
    AnswerTarget,
}

/// What the pipeline decided for one question.
pub enum Outcome {
    /// Answer with the profile's blocked answer, naming `list`.
    Blocked {
        /// The list that blocked it.
        list: ListIndex,
        /// Where the blocked name was.
        by: BlockedBy,
    },
    /// Answer with an upstream answer, `age` already spent in the cache.
    Answered {
        /// The cached or fresh entry.
        entry: Arc<Entry>,
        /// Forwarded, cached, or cached and expired.
        source: Source,
    },
    /// No upstream answered in time.
    ServFail(UpstreamError),
    /// Answered at home, authoritatively.
    Local(LocalAnswer),
    /// A public name answered with an address inside the house: blocked as DNS rebinding.
    Rebinding,
}

impl Outcome {
    /// The `result` metric label.
    pub fn result(&self) -> QueryResult {
        match self {
            Self::Blocked { .. } | Self::Rebinding => QueryResult::Blocked,
            Self::Local(_) => QueryResult::Local,
            Self::Answered {
                source: Source::Upstream,
                ..
            } => QueryResult::Forwarded,
            // The result label set is fixed; stale answers are counted on their own too.
            Self::Answered {
                source: Source::Cache | Source::Stale,
                ..
            } => QueryResult::Cached,
            Self::ServFail(_) => QueryResult::ServFail,
        }
    }

    /// How the answer's TTLs are sent: less the time it spent in the cache (RFC 1035 §7.3),
    /// or all set to [`STALE_TTL`] for a stale answer (RFC 8767 §4).
    pub fn ttl_rule(&self) -> TtlRule {
        match self {
            Self::Answered {
                source: Source::Stale,
                ..
            } => TtlRule::Fixed(STALE_TTL),
            Self::Answered {
                entry,
                source: Source::Cache,
            } => TtlRule::aged(entry.age()),
            _ => TtlRule::Aged(0),
        }
    }

    /// The Extended DNS Error of a stale answer (RFC 8767 §4, RFC 8914 §4.4); `None` for
    /// anything else (blocked and SERVFAIL replies get theirs from the DNS service).
    pub fn stale_ede(&self) -> Option<(u16, &'static str)> {
        self.is_stale().then_some((
            EDE_STALE_ANSWER,
            "no upstream answered in time; expired answer",
        ))
    }

    fn is_stale(&self) -> bool {
        matches!(
            self,
            Self::Answered {
                source: Source::Stale,
                ..
            }
        )
    }
}

/// The stages that hold state: the shared cache and the upstreams.
pub struct Pipeline {
    fetcher: Fetcher,
}

impl Pipeline {
    /// A pipeline over `cache` and `upstreams`.
    pub fn new(cache: Cache, upstreams: Upstreams) -> Self {
        Self {
            fetcher: Fetcher::new(cache, upstreams),
        }
    }

    /// Answers `question` for a client using `profile`, under the snapshot `policy`.
    pub async fn resolve(
        &self,
        policy: &Policy,
        profile: &Profile,
        question: &Question,
    ) -> Outcome {
        // local: the house's own names and private zones are answered here, before anything
        // can send them out; a forward zone picks the only upstreams its names may go to.
        let via = match policy.local().resolve(question.name(), question.qtype_code()) {
            Some(Local::Answer(answer)) => return Outcome::Local(answer),
            Some(Local::Forward(index, _)) => Some(policy.forward_upstreams(index)),
            None => None,
        };
        // decide: before the cache and the upstreams, so a blocked name never leaves the house
        // and one cache can serve every profile.
        let lists = policy.lists_containing(question.name());
        if let Some(list) = profile.blocking_list(lists) {
            return Outcome::Blocked {
                list,
                by: BlockedBy::Question,
            };
        }
        // cache, then upstream: only upstream answers are cached; identical questions share
        // one fetch, and an expired answer stands in when the upstreams fail (RFC 8767).
        let (entry, source) = match self.fetcher.answer(question, via).await {
            Ok(found) => found,
            Err(error) => return Outcome::ServFail(error),
        };
        // inspect: after the cache as well, because profiles differ and the cache is shared.
        // A name its profile allows is answered as it is (allow wins, CNAMEs included).
        let inspect = profile.inspect_answers && !profile.allows(lists);
        if let Some(list) = inspect
            .then(|| blocked_target(policy, profile, &entry))
            .flatten()
        {
            return Outcome::Blocked {
                list,
                by: BlockedBy::AnswerTarget,
            };
        }
        // inspect: DNS rebinding. Forward zones are the house's own resolvers, exempt.
        if via.is_none()
            && entry.answer.holds_house_address()
            && policy.local().blocks_rebinding(question.name())
        {
            return Outcome::Rebinding;
        }
        Outcome::Answered { entry, source }
    }
}

/// The lists containing each name inside an answer.
fn target_lists(policy: &Policy, targets: &[Box<str>]) -> Box<[ListMask]> {
    targets
        .iter()
        .map(|name| policy.lists_containing(name))
        .collect()
}

/// The first list of `profile` that blocks a name inside the cached answer. The masks kept
/// with the entry are reused while the policy generation stays the same.
fn blocked_target(policy: &Policy, profile: &Profile, entry: &Entry) -> Option<ListIndex> {
    let masks = entry.target_lists(policy.generation(), || {
        target_lists(policy, entry.answer.targets())
    });
    masks.iter().find_map(|&lists| profile.blocking_list(lists))
}
