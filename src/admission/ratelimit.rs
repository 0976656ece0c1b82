//! The per-client rate limit: a token bucket for each source, kept in a bounded table.
//!
//! # Sources
//! An IPv4 client is one source. An IPv6 client is grouped by its /64: a household device
//! rotates temporary addresses inside its /64 (RFC 8981), and whoever holds a /64 (the
//! smallest prefix a LAN gets, RFC 7421) can send from 2^64 addresses, so limiting single
//! IPv6 addresses would limit nothing. An IPv4-mapped client is its IPv4 address.
//!
//! # Buckets
//! A bucket is one number: the time at which it will be full again (the "theoretical arrival
//! time" of the generic cell rate algorithm, GCRA, ITU-T I.371, which is a token bucket kept
//! this way). A query costs one interval `T = 1 s / qps`, and is admitted when the bucket holds
//! a token, i.e. when after paying it would be full again no more than `burst × T` from now:
//! `max(full_at, now) + T - now <= burst × T`; then `full_at = max(full_at, now) + T`. So
//! `burst` queries pass at once, then one every `T`.
//!
//! # Bounded state
//! Sources live in [`SHARDS`] hash maps, each behind its own mutex and holding at most
//! [`MAX_SOURCES`]` / `[`SHARDS`]. The shard is picked by a hash with a random seed: two cores
//! checking different clients rarely wait for each other, and since clients choose their
//! addresses, they cannot choose ones that pile up in one shard or one hash chain.
//!
//! A source whose bucket is full again carries no information (a new source starts full), so
//! dropping it changes no verdict. Each shard drops those when a check finds its last sweep
//! more than [`SWEEP_INTERVAL`] old, and before it would grow past its share: with the
//! defaults and queries arriving, an entry outlives its last query by at most 5 s of refill
//! plus one second. When a
//! shard is full of sources that are still refilling (20,000 sources busy at once: a flood,
//! not a household), an eighth of it is evicted, those closest to full: forgetting them loses
//! the least (an evicted source that comes back starts with a full bucket), and the heaviest
//! senders, whose buckets refill last, stay limited. That costs one pass over the shard (625
//! entries) once per 78 new sources. Peak memory: about 1 MiB.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use foldhash::fast::RandomState;

use crate::net::{ClientSource, client_source};

/// Most sources tracked at once.
pub(super) const MAX_SOURCES: usize = 20_000;

/// Shards of the table: well above the core count of a household box, so that two checks
/// rarely meet on one lock, and few enough that each shard's map stays a useful size.
const SHARDS: usize = 32;
// `shard_index` takes the top bits of a hash: the shard count must be a power of two.
const _: () = assert!(SHARDS.is_power_of_two());

/// Sources per shard.
const SHARD_CAPACITY: usize = MAX_SOURCES / SHARDS;

/// Sources evicted at once from a shard full of refilling buckets: an eighth, so that the pass
/// finding them is paid once per that many new sources.
const EVICT_BATCH: usize = SHARD_CAPACITY / 8;

/// Buckets sampled to find which eighth of a full shard refills first.
const SAMPLE: usize = 64;

/// Nanoseconds in a second: times are kept as nanoseconds since the limiter was built.
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Time between two sweeps of a shard, in nanoseconds.
const SWEEP_INTERVAL: u64 = NANOS_PER_SECOND;

/// Token buckets for every recent source.
pub(super) struct RateLimiter {
    rate: Rate,
    /// Time zero of the nanosecond timestamps.
    epoch: Instant,
    /// Picks the shard; seeded apart from the shards' own maps, whose bucket and tag bits
    /// would otherwise be the same for every key of a shard. foldhash's quality variant (one
    /// more folded multiply): the fast one's top bits can follow the high bits of nearby
    /// addresses under some process seeds, so that a house's consecutive addresses crowd a
    /// few shards (`idle_sources_expire` failed about once in 60 runs).
    shard_hasher: foldhash::quality::RandomState,
    shards: [Mutex<Shard>; SHARDS],
}

impl RateLimiter {
    /// Buckets of `burst` queries (at least 1) refilled at `qps` per second.
    pub(super) fn new(qps: NonZeroU32, burst: u32) -> Self {
        Self {
            rate: Rate::new(qps, burst),
            epoch: Instant::now(),
            shard_hasher: foldhash::quality::RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    /// Takes a token from `client`'s bucket at `now`; false when it is empty.
    pub(super) fn admit(&self, client: IpAddr, now: Instant) -> bool {
        let source = client_source(client);
        let now = self.nanos(now);
        self.lock(self.shard_index(source))
            .admit(source, now, self.rate)
    }

    /// Sources holding a bucket, swept or not.
    pub(super) fn tracked_sources(&self) -> usize {
        (0..SHARDS).map(|index| self.lock(index).len()).sum()
    }

    /// The shard of `source`.
    fn shard_index(&self, source: ClientSource) -> usize {
        // The top bits: a multiply-and-fold hash mixes them best (its low bits of nearby
        // integer keys can correlate under some seeds, crowding a few shards). Below SHARDS,
        // so it fits any usize.
        (self.shard_hasher.hash_one(source) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    /// The shard at `index` (below [`SHARDS`]), locked.
    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a shard half-updated (every change is one
        // map operation), so a poisoned shard is used as it is.
        self.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `now` in nanoseconds since the epoch (0 before it; saturates after 584 years).
    fn nanos(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(elapsed).unwrap_or(u64::MAX)
    }
}

/// The bucket arithmetic, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Rate {
    /// What one query costs: 1 s / qps. Zero above 10^9 qps, which admits everything.
    interval: u64,
    /// How far ahead of now a bucket's full time may be: burst × interval.
    capacity: u64,
}

impl Rate {
    /// The rate of `qps` queries per second, in bursts of `burst` (at least 1).
    fn new(qps: NonZeroU32, burst: u32) -> Self {
        let interval = NANOS_PER_SECOND / u64::from(qps.get());
        let capacity = interval.saturating_mul(u64::from(burst.max(1)));
        Self { interval, capacity }
    }

    /// Takes a token from the bucket full at `full_at`, at `now`; false when it is empty.
    fn take(self, full_at: &mut u64, now: u64) -> bool {
        let after = (*full_at).max(now).saturating_add(self.interval);
        // `after >= now`, so no underflow.
        if after - now > self.capacity {
            return false;
        }
        *full_at = after;
        true
    }
}

/// One shard of the table.
#[derive(Default)]
struct Shard {
    /// Source → when its bucket is full again.
    full_at: HashMap<ClientSource, u64, RandomState>,
    /// When this shard is next swept.
    next_sweep: u64,
}

impl Shard {
    /// Takes a token from `source`'s bucket at `now`, tracking the source if it is new.
    fn admit(&mut self, source: ClientSource, now: u64, rate: Rate) -> bool {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        if let Some(full_at) = self.full_at.get_mut(&source) {
            return rate.take(full_at, now);
        }
        self.make_room(now);
        let mut full_at = now;
        let admitted = rate.take(&mut full_at, now);
        self.full_at.insert(source, full_at);
        admitted
    }

    /// Sources tracked.
    fn len(&self) -> usize {
        self.full_at.len()
    }

    /// Forgets the sources whose bucket is full again at `now`.
    fn sweep(&mut self, now: u64) {
        self.full_at.retain(|_, full_at| *full_at > now);
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
    }

    /// Makes room for one more source when the shard is full, in one pass: sweeps it, and
    /// evicts up to [`EVICT_BATCH`] of the sources whose buckets refill first unless the
    /// sweep alone seems to free about that many.
    fn make_room(&mut self, now: u64) {
        if self.len() < SHARD_CAPACITY {
            return;
        }
        let threshold = self.batch_threshold();
        let mut budget = EVICT_BATCH;
        self.full_at.retain(|_, &mut full_at| {
            let evict = full_at > now && full_at <= threshold && budget > 0;
            budget -= usize::from(evict);
            full_at > now && !evict
        });
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
    }

    /// About the time at which an eighth of the shard's buckets is full again, estimated from
    /// a sample: the map's iteration order follows the seeded hash of the sources, not their
    /// age, so its first entries are a random sample, and sorting a few of them on the stack
    /// costs far less than sorting the whole shard. `u64::MAX` for a shard of fewer than
    /// `SAMPLE / 8` sources.
    fn batch_threshold(&self) -> u64 {
        let mut sample = [u64::MAX; SAMPLE];
        for (slot, &full_at) in sample.iter_mut().zip(self.full_at.values()) {
            *slot = full_at;
        }
        *sample.select_nth_unstable(SAMPLE / 8 - 1).1
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(qps: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(NonZeroU32::new(qps).expect("qps > 0"), burst)
    }

    #[test]
    fn sources_of_both_families_never_collide() {
        assert_eq!(client_source("10.0.0.1".parse().unwrap()), 0xffff_0a00_0001);
        assert_eq!(
            client_source("::ffff:10.0.0.1".parse().unwrap()),
            0xffff_0a00_0001
        );
        assert_eq!(client_source("::a00:1".parse().unwrap()), 0, "in ::/64");
        assert_eq!(
            client_source("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            0x2001_0db8_0001_0002 << 64
        );
    }

    #[test]
    fn a_full_shard_evicts_the_sources_closest_to_full() {
        let rate = Rate::new(NonZeroU32::new(1).unwrap(), 1);
        let mut shard = Shard::default();
        let capacity = u128::try_from(SHARD_CAPACITY).unwrap();
        for source in 0..capacity {
            let now = u64::try_from(source).unwrap();
            assert!(shard.admit(source, now, rate));
        }
        assert_eq!(shard.len(), SHARD_CAPACITY);
        assert!(shard.admit(capacity, 1_000, rate), "a new source");
        let evicted: Vec<u128> = (0..capacity)
            .filter(|source| !shard.full_at.contains_key(source))
            .collect();
        assert!(!evicted.is_empty() && evicted.len() <= EVICT_BATCH);
        assert_eq!(shard.len(), SHARD_CAPACITY - evicted.len() + 1);
        // The sampled eighth lies in the oldest half unless 57 of 64 samples are in the newest.
        assert!(
            evicted.iter().all(|&source| source < capacity / 2),
            "{evicted:?}"
        );
    }

    #[test]
    fn evicting_ties_removes_one_batch() {
        let rate = Rate::new(NonZeroU32::new(1).unwrap(), 1);
        let mut shard = Shard::default();
        let capacity = u128::try_from(SHARD_CAPACITY).unwrap();
        for source in 0..=capacity {
            assert!(shard.admit(source, 0, rate));
        }
        assert_eq!(shard.len(), SHARD_CAPACITY - EVICT_BATCH + 1);
        assert_eq!(Shard::default().batch_threshold(), u64::MAX);
    }

    #[test]
    fn a_full_shard_with_refilled_buckets_only_sweeps() {
        let rate = Rate::new(NonZeroU32::new(1).unwrap(), 1);
        let mut shard = Shard::default();
        let capacity = u128::try_from(SHARD_CAPACITY).unwrap();
        // Sources 0 to 299 are full again at 1 s + 99 ns; the others later.
        for source in 0..capacity {
            let now = if source < 300 { 99 } else { 1_000_000 };
            assert!(shard.admit(source, now, rate));
        }
        shard.next_sweep = u64::MAX; // No periodic sweep: only making room.
        let now = NANOS_PER_SECOND + 99;
        assert!(shard.admit(capacity, now, rate));
        // Unless fewer than 8 of the 64 sampled buckets are among the 300 refilled ones.
        assert_eq!(
            shard.len(),
            SHARD_CAPACITY - 300 + 1,
            "no busy source evicted"
        );
    }

    #[test]
    fn shards_are_swept_once_a_second_when_used() {
        let limiter = limiter(100, 10);
        let t0 = limiter.epoch;
        let client = |i: u32| IpAddr::from((10 << 24 | i).to_be_bytes());
        // One client per shard, found by trying addresses.
        let mut per_shard: Vec<Option<u32>> = vec![None; SHARDS];
        for i in 0..10_000 {
            let slot = &mut per_shard[limiter.shard_index(client_source(client(i)))];
            slot.get_or_insert(i);
        }
        let per_shard: Vec<u32> = per_shard.into_iter().map(|i| i.expect("hit")).collect();
        for &i in &per_shard {
            limiter.admit(client(i), t0);
            limiter.admit(client(i + 100_000), t0);
        }
        assert_eq!(limiter.tracked_sources(), 2 * SHARDS);
        // Full again after 10 ms, but the shards were swept at t0.
        let soon = t0 + Duration::from_millis(500);
        for &i in &per_shard {
            limiter.admit(client(i), soon);
        }
        assert_eq!(limiter.tracked_sources(), 2 * SHARDS);
        let later = t0 + Duration::from_secs(1);
        for &i in &per_shard {
            limiter.admit(client(i), later);
        }
        assert_eq!(limiter.tracked_sources(), SHARDS, "the idle half is gone");
    }

    #[test]
    fn extreme_rates_and_times_do_not_overflow() {
        let client = "10.0.0.1".parse().unwrap();
        let unlimited = limiter(u32::MAX, u32::MAX);
        assert_eq!(unlimited.rate.interval, 0);
        assert!((0..1_000).all(|_| unlimited.admit(client, unlimited.epoch)));
        let slow = limiter(1, u32::MAX);
        let thousand_years = Duration::from_secs(1_000 * 365 * 24 * 60 * 60);
        let times = [
            slow.epoch.checked_sub(Duration::from_secs(1)),
            Some(slow.epoch),
            slow.epoch.checked_add(thousand_years),
        ];
        for now in times.into_iter().flatten() {
            assert!((0..1_000).all(|_| slow.admit(client, now)));
        }
    }
}
