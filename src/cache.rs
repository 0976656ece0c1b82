//! The answer cache: one for every profile, holding only upstream answers.
//!
//! Blocked answers never enter it (the block decision runs before it), so one cache serves
//! every profile; what differs per profile, whether a name inside a cached answer is blocked,
//! is re-checked on every hit from the per-target list masks stored with the entry. Entries
//! live for their answer's TTL (clamped by `[cache] min_ttl`/`max_ttl`); TTLs count down on
//! every hit; the size is bounded, and the least useful entries are evicted first (S3-FIFO,
//! via the `quick_cache` crate).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CacheSettings;
use crate::dns::{Answer, CacheKey};
use crate::metrics::CacheCounters;
use crate::policy::ListMask;

/// A cached answer and what the policy saw in it.
pub struct Entry {
    /// The upstream answer, TTLs clamped.
    pub answer: Arc<Answer>,
    stored: Instant,
    lifetime: Duration,
    /// The lists containing each target name of the answer, under the policy generation
    /// `targets_generation`.
    targets_generation: u64,
    target_lists: Box<[ListMask]>,
}

impl Entry {
    /// A fresh entry for an answer just received.
    pub fn new(answer: Arc<Answer>, generation: u64, target_lists: Box<[ListMask]>) -> Self {
        let lifetime = answer.lifetime().unwrap_or_default();
        Self {
            answer,
            stored: Instant::now(),
            lifetime,
            targets_generation: generation,
            target_lists,
        }
    }

    /// Time since the answer was received.
    pub fn age(&self) -> Duration {
        self.stored.elapsed()
    }

    fn is_expired(&self) -> bool {
        self.age() >= self.lifetime
    }

    /// The lists containing each target name, if they were computed under `generation`
    /// (after a reload the caller recomputes them from the new matcher).
    pub fn target_lists(&self, generation: u64) -> Option<&[ListMask]> {
        (self.targets_generation == generation).then_some(&self.target_lists)
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

    /// The live entry for `key`, if any; expired entries are dropped on the way.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let entries = self.entries.as_ref()?;
        let entry = entries.get(key).filter(|entry| {
            let live = !entry.is_expired();
            if !live {
                entries.remove(key);
            }
            live
        });
        match entry {
            Some(_) => self.counters.hits.inc(),
            None => self.counters.misses.inc(),
        }
        self.counters
            .entries
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
        entry
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
        self.counters
            .entries
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
    }
}
