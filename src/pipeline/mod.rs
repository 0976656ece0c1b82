//! The query path, written down once: what happens to a question between the socket and the
//! answer, stage by stage, each with the reason it sits where it does.
//!
//! ```text
//! identify  client address → device → profile            (caller: dns::handler)
//! decide    lists containing the name, block & !allow     → Blocked (stop)
//! cache     shared by every profile                       → hit
//! upstream  forward, then cache                           → answer | ServFail
//! inspect   names inside the answer, same profile         → Blocked
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Entry};
use crate::dns::{Question, UpstreamError, Upstreams};
use crate::metrics::QueryResult;
use crate::policy::{ListIndex, ListMask, Policy, Profile};

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
        /// Cached or forwarded.
        fresh: bool,
    },
    /// No upstream answered in time.
    ServFail(UpstreamError),
}

impl Outcome {
    /// The `result` metric label.
    pub fn result(&self) -> QueryResult {
        match self {
            Self::Blocked { .. } => QueryResult::Blocked,
            Self::Answered { fresh: true, .. } => QueryResult::Forwarded,
            Self::Answered { fresh: false, .. } => QueryResult::Cached,
            Self::ServFail(_) => QueryResult::ServFail,
        }
    }

    /// Time the answer spent in the cache (zero for anything else).
    pub fn age(&self) -> Duration {
        match self {
            Self::Answered {
                entry,
                fresh: false,
            } => entry.age(),
            _ => Duration::ZERO,
        }
    }
}

/// The stages that hold state: the shared cache and the upstreams.
pub struct Pipeline {
    cache: Cache,
    upstreams: Upstreams,
}

impl Pipeline {
    /// A pipeline over `cache` and `upstreams`.
    pub fn new(cache: Cache, upstreams: Upstreams) -> Self {
        Self { cache, upstreams }
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
        let lists = policy.lists_containing(question.name());
        if let Some(list) = profile.blocking_list(lists) {
            return Outcome::Blocked {
                list,
                by: BlockedBy::Question,
            };
        }
        // cache, then upstream: only upstream answers are cached.
        let key = question.cache_key();
        let (entry, fresh) = match self.cache.get(&key) {
            Some(entry) => (entry, false),
            None => match self.upstreams.forward(question).await {
                Ok(mut answer) => {
                    self.cache.clamp(&mut answer);
                    let targets = target_lists(policy, answer.targets());
                    let entry =
                        Arc::new(Entry::new(Arc::new(answer), policy.generation(), targets));
                    self.cache.insert(key, entry.clone());
                    (entry, true)
                }
                Err(error) => return Outcome::ServFail(error),
            },
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
        Outcome::Answered { entry, fresh }
    }
}

/// The lists containing each name inside an answer.
fn target_lists(policy: &Policy, targets: &[Box<str>]) -> Box<[ListMask]> {
    targets
        .iter()
        .map(|name| policy.lists_containing(name))
        .collect()
}

/// The first list of `profile` that blocks a name inside the cached answer. The masks stored
/// with the entry are reused when the entry was made under this policy generation.
fn blocked_target(policy: &Policy, profile: &Profile, entry: &Entry) -> Option<ListIndex> {
    let find = |masks: &[ListMask]| masks.iter().find_map(|&lists| profile.blocking_list(lists));
    match entry.target_lists(policy.generation()) {
        Some(masks) => find(masks),
        None => find(&target_lists(policy, entry.answer.targets())),
    }
}
