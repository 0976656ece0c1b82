//! The answer cache: one for every profile, holding only upstream answers.
//!
//! Blocked answers never enter it (the block decision runs before it), so one cache serves
//! every profile; what differs per profile, whether a name inside a cached answer is blocked,
//! is re-checked on every hit from the per-target list masks kept with the entry. Entries
//! live for their answer's TTL (clamped by `[cache] min_ttl`/`max_ttl`); TTLs count down on
//! every hit; the size is bounded, and the least useful entries are evicted first (S3-FIFO,
//! via the `quick_cache` crate).
//!
//! An expired entry is kept for [`MAX_STALENESS`] more, to be served stale when the
//! upstreams fail (RFC 8767 §5 suggests one to three days; the pipeline decides when). It
//! still counts towards the size bound, so stale entries are evicted like any other.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CacheSettings;
use crate::dns::{Answer, CacheKey, CacheKeyRef};
use crate::metrics::CacheCounters;
use crate::policy::ListMask;

/// How long past its expiry an entry may still be served stale.
pub const MAX_STALENESS: Duration = Duration::from_secs(24 * 60 * 60);

/// A cached answer and what the policy saw in it.
pub struct Entry {
    /// The upstream answer, TTLs clamped.
    pub answer: Arc<Answer>,
    stored: Instant,
    lifetime: Duration,
    /// The lists containing each target name of the answer: computed on first inspection.
    target_lists: PerGeneration,
    /// The network lists holding each address of the answer: computed on first inspection by
    /// a profile with `block_networks`.
    address_lists: PerGeneration,
    /// When a refresh of this entry, once expired, last failed (RFC 8767 §5's failure
    /// recheck timer).
    refresh_failed: Mutex<Option<Instant>>,
}

impl Entry {
    /// A fresh entry for an answer just received.
    pub fn new(answer: Arc<Answer>) -> Self {
        let lifetime = answer.lifetime().unwrap_or_default();
        Self {
            answer,
            stored: Instant::now(),
            lifetime,
            target_lists: PerGeneration::default(),
            address_lists: PerGeneration::default(),
            refresh_failed: Mutex::new(None),
        }
    }

    /// Time from when the answer was received to `now` (zero for an earlier `now`).
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored)
    }

    fn freshness_at(&self, now: Instant) -> Freshness {
        freshness(self.age_at(now), self.lifetime)
    }

    /// The lists containing each target name under the policy `generation`: those computed
    /// by `compute` on the first call, reused while the generation stays the same (after a
    /// reload they are recomputed on every call, from the new matcher).
    pub fn target_lists(
        &self,
        generation: u64,
        compute: impl Fn() -> Box<[ListMask]>,
    ) -> Cow<'_, [ListMask]> {
        self.target_lists.get(generation, compute)
    }

    /// The network lists holding each address of the answer under the policy `generation`,
    /// kept like [`Self::target_lists`].
    pub fn address_lists(
        &self,
        generation: u64,
        compute: impl Fn() -> Box<[ListMask]>,
    ) -> Cow<'_, [ListMask]> {
        self.address_lists.get(generation, compute)
    }

    /// Records that a refresh of this expired entry failed just now.
    pub fn refresh_failed(&self) {
        *self.lock_refresh_failed() = Some(Instant::now());
    }

    /// Whether a refresh of this entry failed less than `window` ago.
    pub fn refresh_failed_within(&self, window: Duration) -> bool {
        self.lock_refresh_failed()
            .is_some_and(|failed| failed.elapsed() < window)
    }

    fn lock_refresh_failed(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A single timestamp cannot be left half-written.
        self.refresh_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// List masks computed once and kept with an entry, with the policy generation they were
/// computed under.
#[derive(Default)]
struct PerGeneration(OnceLock<(u64, Box<[ListMask]>)>);

impl PerGeneration {
    /// The masks `compute` gives, computed on the first call and reused while the generation
    /// stays the same (after a reload they are recomputed on every call, from the new policy).
    fn get(&self, generation: u64, compute: impl Fn() -> Box<[ListMask]>) -> Cow<'_, [ListMask]> {
        let (computed_under, lists) = self.0.get_or_init(|| (generation, compute()));
        if *computed_under == generation {
            Cow::Borrowed(lists)
        } else {
            Cow::Owned(compute().into_vec())
        }
    }
}

/// Where an entry of a given age stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freshness {
    /// Within its lifetime.
    Live,
    /// Expired, less than [`MAX_STALENESS`] ago.
    Stale,
    /// Expired longer ago: of no use any more.
    TooStale,
}

fn freshness(age: Duration, lifetime: Duration) -> Freshness {
    match age.checked_sub(lifetime) {
        None => Freshness::Live,
        Some(staleness) if staleness < MAX_STALENESS => Freshness::Stale,
        Some(_) => Freshness::TooStale,
    }
}

/// What the cache holds for a key.
pub enum Lookup {
    /// A live entry.
    Fresh(Arc<Entry>),
    /// An expired entry, less than [`MAX_STALENESS`] past its expiry.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// A borrowed key finds an owned one in the map (both hash alike: see [`CacheKeyRef`]).
impl quick_cache::Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self == key
    }
}

/// The shared cache.
pub struct Cache {
    entries: Option<quick_cache::sync::Cache<CacheKey, Arc<Entry>>>,
    settings: CacheSettings,
    counters: CacheCounters,
}

impl Cache {
    /// An empty cache; `size = 0` disables caching.
    pub fn new(settings: &CacheSettings, counters: CacheCounters) -> Self {
        let entries = (settings.size > 0).then(|| quick_cache::sync::Cache::new(settings.size));
        Self {
            entries,
            settings: settings.clone(),
            counters,
        }
    }

    /// The entry for `key`, live or stale at `now` (the query's reading of the clock).
    /// Entries too stale to serve are dropped on the way. Only a live entry counts as a hit.
    pub fn get(&self, key: &CacheKeyRef<'_>, now: Instant) -> Lookup {
        let Some(entries) = &self.entries else {
            return Lookup::Miss;
        };
        let lookup = match entries.get(key) {
            Some(entry) => match entry.freshness_at(now) {
                Freshness::Live => Lookup::Fresh(entry),
                Freshness::Stale => Lookup::Stale(entry),
                Freshness::TooStale => {
                    // Only this entry: a fresh one stored meanwhile stays.
                    entries.remove_if(key, |current| Arc::ptr_eq(current, &entry));
                    self.count_entries(entries);
                    Lookup::Miss
                }
            },
            None => Lookup::Miss,
        };
        match lookup {
            Lookup::Fresh(_) => self.counters.hits.inc(),
            Lookup::Stale(_) | Lookup::Miss => self.counters.misses.inc(),
        }
        lookup
    }

    /// Records that a refresh of the entry for `key` failed, if it is expired (a live entry
    /// stored meanwhile by another query needs no recheck timer).
    pub fn refresh_failed(&self, key: &CacheKey) {
        let Some(entries) = &self.entries else { return };
        let expired = |entry: &Arc<Entry>| entry.freshness_at(Instant::now()) != Freshness::Live;
        if let Some(entry) = entries.peek(key).filter(expired) {
            entry.refresh_failed();
        }
    }

    /// Counts one stale answer served.
    pub fn count_stale_answer(&self) {
        self.counters.stale_answers.inc();
    }

    /// Clamps `answer`'s TTLs to the configured bounds, the form in which it is both cached
    /// and sent.
    pub fn clamp(&self, answer: &mut Answer) {
        answer.clamp_ttls(self.settings.min_ttl, self.settings.max_ttl);
    }

    /// Stores `entry` when its answer may be cached (it has a lifetime above zero).
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>) {
        let Some(entries) = &self.entries else { return };
        if entry.lifetime.is_zero() {
            return;
        }
        entries.insert(key, entry);
        self.count_entries(entries);
    }

    /// Sets the entries gauge. Only where the count changes (an insert, which may also evict,
    /// or a removal): counting reads every shard under its lock, too much for every lookup.
    fn count_entries(&self, entries: &quick_cache::sync::Cache<CacheKey, Arc<Entry>>) {
        self.counters
            .entries
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_live_then_stale_for_a_day_then_gone() {
        let minute = Duration::from_secs(60);
        assert_eq!(freshness(Duration::from_secs(59), minute), Freshness::Live);
        assert_eq!(freshness(minute, minute), Freshness::Stale);
        let last_stale_moment = minute + MAX_STALENESS - Duration::from_millis(1);
        assert_eq!(freshness(last_stale_moment, minute), Freshness::Stale);
        assert_eq!(
            freshness(minute + MAX_STALENESS, minute),
            Freshness::TooStale
        );
    }
}
