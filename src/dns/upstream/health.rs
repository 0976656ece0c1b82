//! Passive health of one upstream: the queries themselves are the probes, nothing is sent
//! just to check.
//!
//! An upstream that fails [`FAILURES_TO_MARK_DOWN`] attempts in a row is marked down and
//! queries skip it. One query is let through to it after [`FIRST_PROBE_AFTER`], then after
//! twice as long each time that probe fails, up to [`MAX_PROBE_INTERVAL`]; any answer marks
//! it up again. The probe is sent in the upstream's configured place, so a preferred upstream
//! that recovers becomes the preferred one again.
//!
//! Only failures that say the upstream is unreachable count (no reply in time, a broken
//! connection, a reply that cannot be read): SERVFAIL, REFUSED and any other well-formed
//! reply (NOTIMP, FORMERR...) come from a live server about one question (a recursive
//! upstream answers SERVFAIL when that name's own servers are broken), and counting them
//! would let one broken domain, or one odd question, that a client keeps retrying take the
//! whole house offline. The caller decides which is which.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use prometheus::IntGauge;
use tracing::{info, warn};

/// Consecutive unreachable attempts that mark an upstream down.
pub(super) const FAILURES_TO_MARK_DOWN: u32 = 3;
/// Time from being marked down to the first probe.
pub(super) const FIRST_PROBE_AFTER: Duration = Duration::from_secs(1);
/// The longest wait between two probes of an upstream that stays down.
pub(super) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// How a query may use an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// The upstream is up.
    Up,
    /// The upstream is down and this query is its probe.
    Probe,
}

/// The health of one upstream, shared by every query.
pub(super) struct Health {
    /// The upstream's label, for logs.
    name: Box<str>,
    state: Mutex<State>,
    /// `metasink_upstream_healthy` for this upstream.
    gauge: IntGauge,
}

#[derive(Debug, Default)]
struct State {
    /// Unreachable attempts since the last reply.
    failures: u32,
    /// While down: when the next probe may go.
    down: Option<Backoff>,
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    next_probe: Instant,
    /// The wait before `next_probe`, doubled after each failed probe.
    interval: Duration,
}

impl Health {
    /// An upstream presumed up until it fails.
    pub(super) fn new(name: &str, gauge: IntGauge) -> Self {
        gauge.set(1);
        Self {
            name: name.into(),
            state: Mutex::default(),
            gauge,
        }
    }

    /// Whether a query that reaches this upstream at `now` may use it: `None` to skip it.
    /// When a probe is due, this query becomes the probe.
    pub(super) fn turn(&self, now: Instant) -> Option<Turn> {
        let mut state = self.lock();
        let Some(backoff) = &mut state.down else {
            return Some(Turn::Up);
        };
        if now < backoff.next_probe {
            return None;
        }
        // Other queries keep skipping it while this probe is out, however long it takes.
        backoff.next_probe = now + backoff.interval;
        Some(Turn::Probe)
    }

    /// Records a reply (any reply: the upstream is reachable).
    pub(super) fn reached(&self) {
        let mut state = self.lock();
        state.failures = 0;
        if state.down.take().is_some() {
            info!(upstream = %self.name, "upstream answers again: back in use");
        }
        self.gauge.set(1);
    }

    /// Records an attempt made in `turn` that got no usable reply, at `now`.
    pub(super) fn unreachable(&self, turn: Turn, now: Instant) {
        let mut state = self.lock();
        match (turn, &mut state.down) {
            (Turn::Probe, Some(backoff)) => {
                backoff.interval = (backoff.interval * 2).min(MAX_PROBE_INTERVAL);
                backoff.next_probe = now + backoff.interval;
            }
            // Queries sent before it went down, failing late, say nothing new.
            (Turn::Up, Some(_)) => {}
            (_, None) => {
                state.failures = state.failures.saturating_add(1);
                if state.failures >= FAILURES_TO_MARK_DOWN {
                    state.down = Some(Backoff {
                        next_probe: now + FIRST_PROBE_AFTER,
                        interval: FIRST_PROBE_AFTER,
                    });
                    self.gauge.set(0);
                    warn!(upstream = %self.name, failures = state.failures, "upstream keeps failing: skipped, probed with back-off");
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: every update is a
        // single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new("test", IntGauge::new("healthy", "test gauge").unwrap())
    }

    fn mark_down(health: &Health, now: Instant) {
        for _ in 0..FAILURES_TO_MARK_DOWN {
            health.unreachable(Turn::Up, now);
        }
    }

    #[test]
    fn repeated_failures_mark_it_down_until_a_probe_is_due() {
        let health = health();
        let start = Instant::now();
        for _ in 1..FAILURES_TO_MARK_DOWN {
            health.unreachable(Turn::Up, start);
        }
        assert_eq!(health.turn(start), Some(Turn::Up), "not yet");
        health.unreachable(Turn::Up, start);
        assert_eq!(health.gauge.get(), 0);
        assert_eq!(health.turn(start + Duration::from_millis(999)), None);
        let probe_time = start + FIRST_PROBE_AFTER;
        assert_eq!(health.turn(probe_time), Some(Turn::Probe));
        assert_eq!(health.turn(probe_time), None, "one probe at a time");
    }

    #[test]
    fn failed_probes_double_the_wait_up_to_the_cap() {
        let health = health();
        let mut now = Instant::now();
        mark_down(&health, now);
        let mut waits = Vec::new();
        let mut wait = FIRST_PROBE_AFTER;
        for _ in 0..7 {
            now += wait;
            assert_eq!(health.turn(now - Duration::from_millis(1)), None);
            assert_eq!(health.turn(now), Some(Turn::Probe));
            health.unreachable(Turn::Probe, now);
            wait = health.lock().down.unwrap().interval;
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_reply_brings_it_back_and_late_failures_do_not_extend_the_wait() {
        let health = health();
        let now = Instant::now();
        mark_down(&health, now);
        // Queries sent while it was up keep timing out after it went down.
        health.unreachable(Turn::Up, now + Duration::from_millis(500));
        assert_eq!(health.turn(now + FIRST_PROBE_AFTER), Some(Turn::Probe));
        health.reached();
        assert_eq!(health.gauge.get(), 1);
        assert_eq!(health.turn(now + FIRST_PROBE_AFTER), Some(Turn::Up));
        // The count starts over.
        health.unreachable(Turn::Up, now);
        assert_eq!(health.turn(now), Some(Turn::Up));
    }
}
