//! The query path, written down once: what happens to a question between the socket and the
//! answer, stage by stage, each with the reason it sits where it does.
//!
//! ```text
//! identify  client address → device → profile            (caller: dns::service)
//! decide    lists containing the name, block & !allow     → Blocked (stop)
//! cache     shared by every profile                       → hit
//! upstream  forward (one fetch per question), then cache  → answer | stale | ServFail
//! inspect   names inside the answer, same profile         → Blocked
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
        /// The list an observe-mode profile would have blocked it with (issue 14 dry run).
        would_block: Option<(ListIndex, BlockedBy)>,
    },
    /// No upstream answered in time.
    ServFail(UpstreamError),
}

impl Outcome {
    /// The `result` metric label.
    pub fn result(&self) -> QueryResult {
        match self {
            Self::Blocked { .. } => QueryResult::Blocked,
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
                ..
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
        // decide: before the cache and the upstreams, so a blocked name never leaves the house
        // and one cache can serve every profile.
        // An observe-mode profile decides the same, then answers as if it allowed the name.
        let lists = policy.lists_containing(question.name());
        let mut would_block = None;
        if let Some(list) = profile.blocking_list(lists) {
            if !profile.observe {
                return Outcome::Blocked {
                    list,
                    by: BlockedBy::Question,
                };
            }
            would_block = Some((list, BlockedBy::Question));
        }
        // cache, then upstream: only upstream answers are cached; identical questions share
        // one fetch, and an expired answer stands in when the upstreams fail (RFC 8767).
        let (entry, source) = match self.fetcher.answer(question).await {
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
            if !profile.observe {
                return Outcome::Blocked {
                    list,
                    by: BlockedBy::AnswerTarget,
                };
            }
            would_block = would_block.or(Some((list, BlockedBy::AnswerTarget)));
        }
        Outcome::Answered {
            entry,
            source,
            would_block,
        }
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
