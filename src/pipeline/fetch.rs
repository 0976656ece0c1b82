//! The cache and upstream stages: an answer from the cache, else from an upstream, else an
//! expired one.
//!
//! # One fetch per question
//! Questions with the same [`CacheKey`] asked while one is being forwarded wait for that
//! one: 200 clients asking the same name at once cause one upstream query. The fetch runs as
//! a task of its own, so it completes and fills the cache even when every client waiting for
//! it has been answered stale or has gone. This also ends forwarding loops early: a question
//! that comes back to us from upstream joins the fetch it caused instead of starting another,
//! and fails with it at the deadline.
//!
//! # Caps on the fetches in flight
//! Each fetch holds a task and, while it waits, an upstream socket, and one waiting on a
//! name whose servers never answer holds them for the whole deadline. At most
//! [`MAX_FETCHES`] are in flight, and one client (an IPv4 address or an IPv6 /64, as the
//! rate limit counts them) starts at most [`MAX_FETCHES_PER_CLIENT`] of them, a trusted
//! forwarder (the whole house behind one address) [`MAX_FETCHES_PER_FORWARDER`]: one
//! device cannot fill the table the others need. Joining a fetch under way costs nothing
//! and is never refused. A question over a cap is dropped unanswered ([`FetchLimit`]), as
//! Unbound drops one over its `wait-limit` (per address) or `num-queries-per-thread`: a
//! SERVFAIL may be cached by a stub or forwarder as the name's answer (RFC 2308 §7.1 allows
//! five minutes), costs a send to whatever address the datagram claims, and tells a flood
//! to come again at once, while a real client takes silence for loss and retries after its
//! timeout, by when a slot is usually free. An expired answer, when the cache has one, is
//! served instead of nothing. `explain`'s dry run is nobody's client: no cap applies to it.
//!
//! A fetch holds at most one upstream descriptor at a time (a UDP socket, the TCP connection
//! of a truncated answer), so the caps shrink with the descriptor budget where it leaves
//! fewer than [`MAX_FETCHES`] for upstream queries (`crate::fd_budget::FdBudget::
//! upstream_sockets`: about 16 000 under the unit's `LimitNOFILE=16384`, under 700 with a
//! hard limit of 1024): the table then holds as many fetches as there are descriptors, and
//! the per-client shares keep their proportions ([`FetchCaps`]).
//!
//! # Serve-stale (RFC 8767)
//! When the cache only has an expired answer (kept for [`crate::cache::MAX_STALENESS`]), the
//! question is forwarded as usual; if no upstream has answered [`STALE_AFTER`] into the query
//! (§5's client response timer), or all have failed before that, the expired answer is sent
//! with every TTL set to [`STALE_TTL`] (§4) and EDE 3, Stale Answer (RFC 8914). After a
//! refresh that failed, the expired answer is sent at once, without asking upstream, for
//! [`FAILURE_RECHECK`] (§5's failure recheck timer): at most one refresh per question per
//! 30 s while the upstreams keep failing.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use foldhash::fast::RandomState;
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cache::{Cache, Entry, Lookup};
use crate::dns::{CacheKey, Forward, QUERY_DEADLINE, Question, UpstreamError};
use crate::net::{ClientSource, client_source};

/// Time a client waits for an upstream before it gets the expired answer, if there is one:
/// below the 2 s query deadline, so the stale answer beats the SERVFAIL.
pub const STALE_AFTER: Duration = Duration::from_millis(1800);
/// The TTL of every record of a stale answer (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;
/// Time after a failed refresh during which the expired answer is served without asking
/// upstream again (RFC 8767 §5 recommends 30 s).
pub(super) const FAILURE_RECHECK: Duration = Duration::from_secs(30);
/// Most fetches in flight for everyone together. Unbound's `num-queries-per-thread` is 1024
/// too; a household's fetches in flight number in the tens.
pub(super) const MAX_FETCHES: usize = 1024;
/// Most fetches one client starts that are in flight at once: a quarter of the table, more
/// than a browser opening a page with hundreds of names needs (most are answered in
/// milliseconds), while four devices asking at once never leave the rest without room.
pub const MAX_FETCHES_PER_CLIENT: usize = MAX_FETCHES / 4;
/// Most fetches a trusted forwarder starts that are in flight at once: it asks for the whole
/// house, yet devices asking directly keep half the table.
pub(super) const MAX_FETCHES_PER_FORWARDER: usize = MAX_FETCHES / 2;

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An upstream, for this question (or an identical one asked at the same time).
    Upstream,
    /// A live cache entry.
    Cache,
    /// An expired cache entry: no upstream answered in time.
    Stale,
}

/// Who would start a fetch.
#[derive(Clone, Copy, Debug)]
pub(super) struct FetchStarter {
    source: ClientSource,
    /// A trusted forwarder, with the larger share.
    forwarder: bool,
}

impl FetchStarter {
    /// The client at `address`, a trusted `forwarder` or not.
    pub(super) fn new(address: IpAddr, forwarder: bool) -> Self {
        Self {
            source: client_source(address),
            forwarder,
        }
    }
}

/// The caps of the fetches in flight: [`MAX_FETCHES`] and its shares, or as many as the
/// descriptors left for upstream queries, shared out in the same proportions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FetchCaps {
    total: usize,
    per_client: usize,
    per_forwarder: usize,
}

impl FetchCaps {
    /// The caps with `descriptors` for upstream queries.
    pub(super) fn within(descriptors: usize) -> Self {
        let total = MAX_FETCHES.min(descriptors).max(1);
        Self {
            total,
            per_client: (total * MAX_FETCHES_PER_CLIENT / MAX_FETCHES).max(1),
            per_forwarder: (total * MAX_FETCHES_PER_FORWARDER / MAX_FETCHES).max(1),
        }
    }

    /// The most fetches `starter` may have in flight.
    fn of(self, starter: FetchStarter) -> usize {
        match starter.forwarder {
            true => self.per_forwarder,
            false => self.per_client,
        }
    }
}

/// The cap that refused to start a fetch: the question is dropped unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchLimit {
    /// The client has its share of fetches in flight.
    Client,
    /// The table is full.
    Total,
}

impl FetchLimit {
    /// Every cap, in the order of their discriminants.
    pub const ALL: [Self; 2] = [Self::Client, Self::Total];

    /// The `limit` label of [`crate::metrics::FETCH_LIMITED_TOTAL`].
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Total => "total",
        }
    }
}

/// Why the cache and upstream stages have no answer.
#[derive(Clone, Debug)]
pub(super) enum Unanswered {
    /// The fetch failed.
    Failed(UpstreamError),
    /// No fetch was started: a cap refused it.
    Dropped(FetchLimit),
}

/// The result of one fetch, shared by every question waiting for it.
type Fetched = Result<Arc<Entry>, UpstreamError>;
/// A fetch's result as its waiters share it: the task's channel (closed without a result if
/// the task was dropped).
type SharedFetch = Shared<oneshot::Receiver<Fetched>>;

/// The fetches under way, and how many each client started. Hashed with foldhash (seeded
/// per process, and both maps are capped): each forwarded question looks both up and
/// leaves them again, and SipHash cost more than the rest of that bookkeeping.
#[derive(Default)]
struct Table {
    fetches: HashMap<CacheKey, SharedFetch, RandomState>,
    /// Fetches in flight per client that started them; a client with none has no entry.
    started_by: HashMap<ClientSource, usize, RandomState>,
}

type InFlight = Mutex<Table>;

/// The cache and the upstreams, and the fetches under way.
pub(super) struct Fetcher {
    cache: Arc<Cache>,
    upstreams: Arc<dyn Forward>,
    in_flight: Arc<InFlight>,
    caps: FetchCaps,
}

impl Fetcher {
    /// Fetches through `upstreams` into `cache`, with the full caps.
    pub(super) fn new(cache: Cache, upstreams: Arc<dyn Forward>) -> Self {
        Self {
            cache: Arc::new(cache),
            upstreams,
            in_flight: Arc::default(),
            caps: FetchCaps::within(usize::MAX),
        }
    }

    /// This fetcher with `descriptors` left for upstream queries (see the module doc).
    pub(super) fn within(self, descriptors: usize) -> Self {
        Self {
            caps: FetchCaps::within(descriptors),
            ..self
        }
    }

    /// The cache stage: the live answer to `question` as of `now`, or else the expired one
    /// the upstream stage may fall back on (`None`: the cache has nothing).
    pub(super) fn cached(
        &self,
        question: &Question,
        now: Instant,
    ) -> Result<Arc<Entry>, Option<Arc<Entry>>> {
        match self.cache.get(&question.cache_key(), now) {
            Lookup::Fresh(entry) => Ok(entry),
            Lookup::Stale(entry) => Err(Some(entry)),
            Lookup::Miss => Err(None),
        }
    }

    /// The upstream stage, for a question the cache had no live answer to: the answer and
    /// where it came from, asked of `via` (a forward zone's upstreams) or else of the general
    /// upstreams, for `starter` (`None`: for nobody the caps count, `explain`'s dry run) at
    /// `now`; `expired`, the cache's expired answer, stands in when they fail.
    pub(super) async fn upstream(
        &self,
        question: &Question,
        expired: Option<Arc<Entry>>,
        via: Option<&Arc<dyn Forward>>,
        starter: Option<FetchStarter>,
        now: Instant,
    ) -> Result<(Arc<Entry>, Source), Unanswered> {
        let upstreams = via.unwrap_or(&self.upstreams);
        let key = question.cache_key();
        let Some(stale) = expired else {
            let fetch = self
                .fetch(key.to_key(), question, upstreams, starter, now)
                .map_err(Unanswered::Dropped)?;
            let entry = fetched(fetch).await.map_err(Unanswered::Failed)?;
            return Ok((entry, Source::Upstream));
        };
        if stale.refresh_failed_within(FAILURE_RECHECK) {
            return Ok(self.serve_stale(stale));
        }
        let Ok(fetch) = self.fetch(key.to_key(), question, upstreams, starter, now) else {
            return Ok(self.serve_stale(stale));
        };
        match tokio::time::timeout_at(now + STALE_AFTER, fetched(fetch)).await {
            Ok(Ok(entry)) => Ok((entry, Source::Upstream)),
            Ok(Err(_)) | Err(_) => Ok(self.serve_stale(stale)),
        }
    }

    fn serve_stale(&self, entry: Arc<Entry>) -> (Arc<Entry>, Source) {
        self.cache.count_stale_answer();
        (entry, Source::Stale)
    }

    /// The fetch under way for `key`, or a new one through `upstreams` started for `starter`
    /// if the caps allow (with no `starter`, no cap applies), at `now`. A name is in one
    /// forward zone or none, so questions sharing a key share their upstreams too.
    fn fetch(
        &self,
        key: CacheKey,
        question: &Question,
        upstreams: &Arc<dyn Forward>,
        starter: Option<FetchStarter>,
        now: Instant,
    ) -> Result<SharedFetch, FetchLimit> {
        let (fetch, done) = {
            let mut in_flight = lock(&self.in_flight);
            if let Some(fetch) = in_flight.fetches.get(&key) {
                return Ok(fetch.clone());
            }
            if let Some(starter) = starter {
                if in_flight.fetches.len() >= self.caps.total {
                    return Err(FetchLimit::Total);
                }
                let started = in_flight.started_by.entry(starter.source).or_default();
                if *started >= self.caps.of(starter) {
                    return Err(FetchLimit::Client);
                }
                *started += 1;
            }
            // Waiters share the task's result, not the fetch itself: only the task polls the
            // upstream exchange, so its sockets and timers belong to the runtime that runs it
            // (each UDP listener has its own, see `crate::server::udp`), and it completes
            // whoever is still waiting.
            let (done, result) = oneshot::channel();
            let fetch = result.shared();
            in_flight.fetches.insert(key.clone(), fetch.clone());
            (fetch, done)
        };
        // Spawned once in the map (the task leaves it when done, which must come after) but
        // not under the lock: a runtime that is shutting down drops a new task at once, and
        // its `InFlightEntry` takes the lock to leave the map.
        tokio::spawn(forward(
            self.cache.clone(),
            upstreams.clone(),
            InFlightEntry {
                in_flight: self.in_flight.clone(),
                key,
                source: starter.map(|starter| starter.source),
            },
            question.clone(),
            now + QUERY_DEADLINE,
            done,
        ));
        Ok(fetch)
    }
}

/// The result of `fetch`. A task that did not finish (its runtime stopping) drops its
/// sender: failed.
async fn fetched(fetch: SharedFetch) -> Fetched {
    fetch.await.unwrap_or(Err(UpstreamError::AllFailed))
}

/// Forwards `question` by `deadline`, caches the answer and hands the result to the waiters
/// through `done`. The fetch leaves the in-flight map when `entry` is dropped: after the
/// cache has the answer, so a question arriving in between finds one or the other.
async fn forward(
    cache: Arc<Cache>,
    upstreams: Arc<dyn Forward>,
    entry: InFlightEntry,
    question: Question,
    deadline: Instant,
    done: oneshot::Sender<Fetched>,
) {
    let key = &entry.key;
    // The deadline is the pipeline's promise to the client, whatever the forwarder does.
    let forwarded = tokio::time::timeout_at(deadline, upstreams.forward(&question)).await;
    let fetched = match forwarded.unwrap_or(Err(UpstreamError::AllFailed)) {
        Ok(mut answer) => {
            cache.clamp(&mut answer);
            let fetched = Arc::new(Entry::new(Arc::new(answer)));
            cache.insert(key.clone(), fetched.clone());
            Ok(fetched)
        }
        Err(error) => {
            // Only a refresh that went out starts the recheck timer: with no upstream
            // configured nothing was asked.
            if error.was_attempted() {
                cache.refresh_failed(key);
            }
            Err(error)
        }
    };
    // Everyone may have gone (answered stale, or left): then nobody needs it.
    let _ = done.send(fetched);
}

/// A fetch's place in the in-flight table, given up when the fetch ends however it ends
/// (answered, failed, or dropped with its runtime), so a question is never left waiting
/// on a fetch that is gone and the client that started it gets its slot back.
struct InFlightEntry {
    in_flight: Arc<InFlight>,
    key: CacheKey,
    /// The client that started the fetch, if the caps count it.
    source: Option<ClientSource>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.fetches.remove(&self.key);
        if let Some(source) = self.source
            && let MapEntry::Occupied(mut started) = in_flight.started_by.entry(source)
        {
            *started.get_mut() -= 1;
            if *started.get() == 0 {
                started.remove();
            }
        }
    }
}

fn lock(in_flight: &InFlight) -> MutexGuard<'_, Table> {
    // Each update is an insert or a remove with its count: nothing is left half-done by a
    // panic.
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::mpsc;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::config::{CacheSettings, UpstreamSettings};
    use crate::metrics::Metrics;

    /// A fetcher whose upstream is the discard port on loopback, where nothing listens.
    fn fetcher() -> Fetcher {
        let metrics = Metrics::new();
        let settings = CacheSettings {
            size: 16,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(60),
        };
        let upstream = UpstreamSettings::plain("127.0.0.1:9".parse().unwrap());
        Fetcher::new(
            Cache::new(&settings, metrics.cache()),
            Arc::new(crate::dns::Upstreams::new(&[upstream], &metrics)),
        )
    }

    /// A question asked while its runtime shuts down (tokio drops a task spawned then at
    /// once, inside `spawn`) fails at once and leaves no fetch behind, instead of the task's
    /// drop guard waiting for the in-flight lock its own spawn still held.
    #[test]
    fn a_fetch_spawned_on_a_runtime_that_has_stopped_fails_at_once() {
        // Nothing is sent: the task is dropped before it runs.
        let fetcher = Arc::new(fetcher());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        drop(runtime);

        let (sent, outcome) = mpsc::channel();
        let asking = fetcher.clone();
        std::thread::spawn(move || {
            let _runtime = handle.enter();
            let question = Question::parse("www.example.com", "A").unwrap();
            let starter = Some(member("192.0.2.1"));
            let mut answer = pin!(asking.upstream(&question, None, None, starter, Instant::now()));
            let polled = answer
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            let failed = matches!(
                polled,
                Poll::Ready(Err(Unanswered::Failed(UpstreamError::AllFailed)))
            );
            sent.send(failed).unwrap();
        });
        let failed = outcome
            .recv_timeout(Duration::from_secs(10))
            .expect("the question is stuck: spawning deadlocked on the in-flight lock");
        assert!(failed, "the question fails with AllFailed");
        let in_flight = lock(&fetcher.in_flight);
        assert!(
            in_flight.fetches.is_empty() && in_flight.started_by.is_empty(),
            "no fetch is left behind"
        );
    }

    /// A device of the house at `address` (not a trusted forwarder).
    fn member(address: &str) -> FetchStarter {
        FetchStarter::new(address.parse().unwrap(), false)
    }

    /// Starts a fetch of `name` for `starter`; the fetch itself never runs (nothing yields to
    /// the runtime), so it stays in flight.
    fn start(fetcher: &Fetcher, name: &str, starter: FetchStarter) -> Result<(), FetchLimit> {
        let question = Question::parse(name, "A").unwrap();
        fetcher
            .fetch(
                question.cache_key().to_key(),
                &question,
                &fetcher.upstreams,
                Some(starter),
                Instant::now(),
            )
            .map(drop)
    }

    #[tokio::test]
    async fn one_client_cannot_fill_the_in_flight_table() {
        let fetcher = fetcher();
        let greedy = member("192.0.2.1");
        for n in 0..MAX_FETCHES_PER_CLIENT {
            start(&fetcher, &format!("n{n}.tarpit.test"), greedy).unwrap();
        }
        let over = start(&fetcher, "over.tarpit.test", greedy);
        assert_eq!(over, Err(FetchLimit::Client));
        // Joining a fetch under way is free; another client starts its own; the addresses
        // of one IPv6 /64 are one client.
        assert_eq!(start(&fetcher, "n0.tarpit.test", greedy), Ok(()));
        assert_eq!(
            start(&fetcher, "www.example.com", member("192.0.2.2")),
            Ok(())
        );
        let same_64 = [member("2001:db8::1"), member("2001:db8::2")];
        for n in 0..MAX_FETCHES_PER_CLIENT {
            start(&fetcher, &format!("v6-{n}.tarpit.test"), same_64[n % 2]).unwrap();
        }
        assert_eq!(
            start(&fetcher, "over.v6.tarpit.test", same_64[0]),
            Err(FetchLimit::Client),
            "a /64 is one client"
        );
    }

    #[tokio::test]
    async fn the_table_has_a_cap_for_everyone_and_a_forwarder_gets_half() {
        let fetcher = fetcher();
        let router = FetchStarter::new("192.168.1.1".parse().unwrap(), true);
        for n in 0..MAX_FETCHES_PER_FORWARDER {
            start(&fetcher, &format!("r{n}.example"), router).unwrap();
        }
        assert_eq!(
            start(&fetcher, "over.example", router),
            Err(FetchLimit::Client)
        );
        let devices = (1..=4).map(|n| member(&format!("192.168.1.{}", 10 + n)));
        for (device, client) in devices.enumerate() {
            for n in 0..MAX_FETCHES_PER_CLIENT {
                let started = start(&fetcher, &format!("d{device}-{n}.example"), client);
                let full = device * MAX_FETCHES_PER_CLIENT + n + MAX_FETCHES_PER_FORWARDER;
                let expected = if full < MAX_FETCHES {
                    Ok(())
                } else {
                    Err(FetchLimit::Total)
                };
                assert_eq!(started, expected, "device {device}, fetch {n}");
            }
        }
        assert_eq!(lock(&fetcher.in_flight).fetches.len(), MAX_FETCHES);
    }

    #[tokio::test]
    async fn few_descriptors_shrink_the_caps_in_proportion() {
        assert_eq!(FetchCaps::within(16_000), FetchCaps::within(usize::MAX));
        let fetcher = fetcher().within(40);
        let router = FetchStarter::new("192.168.1.1".parse().unwrap(), true);
        for n in 0..20 {
            start(&fetcher, &format!("r{n}.example"), router).unwrap();
        }
        assert_eq!(
            start(&fetcher, "r20.example", router),
            Err(FetchLimit::Client)
        );
        for n in 0..10 {
            start(&fetcher, &format!("a{n}.example"), member("192.168.1.10")).unwrap();
        }
        let over = start(&fetcher, "a10.example", member("192.168.1.10"));
        assert_eq!(over, Err(FetchLimit::Client));
        for n in 0..10 {
            start(&fetcher, &format!("b{n}.example"), member("192.168.1.11")).unwrap();
        }
        let full = start(&fetcher, "c0.example", member("192.168.1.12"));
        assert_eq!(
            full,
            Err(FetchLimit::Total),
            "40 in flight: one per descriptor"
        );
    }

    // Under a paused clock the fetches' deadlines pass as soon as the runtime is idle: the
    // test takes milliseconds instead of the upstream timeout.
    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_slots_back_when_its_fetches_end() {
        let fetcher = fetcher();
        let greedy = member("192.0.2.1");
        for n in 0..MAX_FETCHES_PER_CLIENT {
            start(&fetcher, &format!("n{n}.tarpit.test"), greedy).unwrap();
        }
        // Nothing listens on the discard port: each fetch fails (port unreachable) or times
        // out and leaves the table.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !lock(&fetcher.in_flight).fetches.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the fetches end");
        assert!(lock(&fetcher.in_flight).started_by.is_empty());
        assert_eq!(start(&fetcher, "again.tarpit.test", greedy), Ok(()));
    }
}
