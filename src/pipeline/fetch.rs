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
//! # Serve-stale (RFC 8767)
//! When the cache only has an expired answer (kept for [`crate::cache::MAX_STALENESS`]), the
//! question is forwarded as usual; if no upstream has answered [`STALE_AFTER`] into the query
//! (§5's client response timer), or all have failed before that, the expired answer is sent
//! with every TTL set to [`STALE_TTL`] (§4) and EDE 3, Stale Answer (RFC 8914). After a
//! refresh that failed, the expired answer is sent at once, without asking upstream, for
//! [`FAILURE_RECHECK`] (§5's failure recheck timer): at most one refresh per question per
//! 30 s while the upstreams keep failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::oneshot;

use crate::cache::{Cache, Entry, Lookup};
use crate::dns::{CacheKey, Forward, QUERY_DEADLINE, Question, UpstreamError};

/// Time a client waits for an upstream before it gets the expired answer, if there is one:
/// below the 2 s query deadline, so the stale answer beats the SERVFAIL.
pub const STALE_AFTER: Duration = Duration::from_millis(1800);
/// The TTL of every record of a stale answer (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;
/// Time after a failed refresh during which the expired answer is served without asking
/// upstream again (RFC 8767 §5 recommends 30 s).
pub(super) const FAILURE_RECHECK: Duration = Duration::from_secs(30);

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

/// The result of one fetch, shared by every question waiting for it.
type Fetched = Result<Arc<Entry>, UpstreamError>;
/// A fetch's result as its waiters share it: the task's channel (closed without a result if
/// the task was dropped).
type SharedFetch = Shared<oneshot::Receiver<Fetched>>;
type InFlight = Mutex<HashMap<CacheKey, SharedFetch>>;

/// The cache and the upstreams, and the fetches under way.
pub(super) struct Fetcher {
    cache: Arc<Cache>,
    upstreams: Arc<dyn Forward>,
    in_flight: Arc<InFlight>,
}

impl Fetcher {
    /// Fetches through `upstreams` into `cache`.
    pub(super) fn new(cache: Cache, upstreams: Arc<dyn Forward>) -> Self {
        Self {
            cache: Arc::new(cache),
            upstreams,
            in_flight: Arc::default(),
        }
    }

    /// The answer to `question` and where it came from.
    pub(super) async fn answer(
        &self,
        question: &Question,
    ) -> Result<(Arc<Entry>, Source), UpstreamError> {
        let key = question.cache_key();
        let stale = match self.cache.get(&key) {
            Lookup::Fresh(entry) => return Ok((entry, Source::Cache)),
            Lookup::Stale(entry) => entry,
            Lookup::Miss => {
                let entry = self.fetched(key.to_key(), question).await?;
                return Ok((entry, Source::Upstream));
            }
        };
        if stale.refresh_failed_within(FAILURE_RECHECK) {
            return Ok(self.serve_stale(stale));
        }
        match tokio::time::timeout(STALE_AFTER, self.fetched(key.to_key(), question)).await {
            Ok(Ok(entry)) => Ok((entry, Source::Upstream)),
            Ok(Err(_)) | Err(_) => Ok(self.serve_stale(stale)),
        }
    }

    fn serve_stale(&self, entry: Arc<Entry>) -> (Arc<Entry>, Source) {
        self.cache.count_stale_answer();
        (entry, Source::Stale)
    }

    /// The result of the fetch under way for `key`, or of a new one. A task that did not
    /// finish (its runtime stopping) drops its sender: failed.
    async fn fetched(&self, key: CacheKey, question: &Question) -> Fetched {
        let fetch = self.fetch(key, question);
        fetch.await.unwrap_or(Err(UpstreamError::AllFailed))
    }

    /// The fetch under way for `key`, or a new one.
    fn fetch(&self, key: CacheKey, question: &Question) -> SharedFetch {
        let (fetch, done) = {
            let mut in_flight = lock(&self.in_flight);
            if let Some(fetch) = in_flight.get(&key) {
                return fetch.clone();
            }
            // Waiters share the task's result, not the fetch itself: only the task polls the
            // upstream exchange, so its sockets and timers belong to the runtime that runs it
            // (each UDP listener has its own, see `crate::server::udp`), and it completes
            // whoever is still waiting.
            let (done, result) = oneshot::channel();
            let fetch = result.shared();
            in_flight.insert(key.clone(), fetch.clone());
            (fetch, done)
        };
        // Spawned once in the map (the task leaves it when done, which must come after) but
        // not under the lock: a runtime that is shutting down drops a new task at once, and
        // its `InFlightEntry` takes the lock to leave the map.
        tokio::spawn(forward(
            self.cache.clone(),
            self.upstreams.clone(),
            InFlightEntry {
                in_flight: self.in_flight.clone(),
                key,
            },
            question.clone(),
            done,
        ));
        fetch
    }
}

/// Forwards `question`, caches the answer and hands the result to the waiters through
/// `done`. The fetch leaves the in-flight map when `entry` is dropped: after the cache has
/// the answer, so a question arriving in between finds one or the other.
async fn forward(
    cache: Arc<Cache>,
    upstreams: Arc<dyn Forward>,
    entry: InFlightEntry,
    question: Question,
    done: oneshot::Sender<Fetched>,
) {
    let key = &entry.key;
    // The deadline is the pipeline's promise to the client, whatever the forwarder does.
    let forwarded = tokio::time::timeout(QUERY_DEADLINE, upstreams.forward(&question)).await;
    let fetched = match forwarded.unwrap_or(Err(UpstreamError::AllFailed)) {
        Ok(mut answer) => {
            cache.clamp(&mut answer);
            let fetched = Arc::new(Entry::new(Arc::new(answer)));
            cache.insert(key.clone(), fetched.clone());
            Ok(fetched)
        }
        Err(error) => {
            // Only a refresh that went out starts the recheck timer: with every upstream
            // down nothing was asked, and the next question may well find one back up.
            if error.was_attempted() {
                cache.refresh_failed(key);
            }
            Err(error)
        }
    };
    // Everyone may have gone (answered stale, or left): then nobody needs it.
    let _ = done.send(fetched);
}

/// A fetch's place in the in-flight map, given up when the fetch ends however it ends
/// (answered, failed, or dropped with its runtime), so a question is never left waiting
/// on a fetch that is gone.
struct InFlightEntry {
    in_flight: Arc<InFlight>,
    key: CacheKey,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.key);
    }
}

fn lock(in_flight: &InFlight) -> MutexGuard<'_, HashMap<CacheKey, SharedFetch>> {
    // Each update is one insert or remove: nothing is left half-done by a panic.
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

    /// A question asked while its runtime shuts down (tokio drops a task spawned then at
    /// once, inside `spawn`) fails at once and leaves no fetch behind, instead of the task's
    /// drop guard waiting for the in-flight lock its own spawn still held.
    #[test]
    fn a_fetch_spawned_on_a_runtime_that_has_stopped_fails_at_once() {
        let metrics = Metrics::new();
        let settings = CacheSettings {
            size: 16,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(60),
        };
        // Nothing is sent: the task is dropped before it runs.
        let upstream = UpstreamSettings {
            address: "127.0.0.1:9".parse().unwrap(),
        };
        let fetcher = Arc::new(Fetcher::new(
            Cache::new(&settings, metrics.cache()),
            Arc::new(crate::dns::Upstreams::new(&[upstream], &metrics)),
        ));
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
            let mut answer = pin!(asking.answer(&question));
            let polled = answer
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            sent.send(matches!(polled, Poll::Ready(Err(UpstreamError::AllFailed))))
                .unwrap();
        });
        let failed = outcome
            .recv_timeout(Duration::from_secs(10))
            .expect("the question is stuck: spawning deadlocked on the in-flight lock");
        assert!(failed, "the question fails with AllFailed");
        assert!(
            lock(&fetcher.in_flight).is_empty(),
            "no fetch is left behind"
        );
    }
}
