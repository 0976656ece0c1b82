//! The most recent query log entries in memory: the live view's source, and the whole log
//! when `path = ""`. Bounded in entries and in bytes; the oldest go first.

use std::collections::VecDeque;
use std::sync::Arc;

use super::entry::LogEntry;
use super::filter::Filter;

/// Entries kept at most.
pub const RING_ENTRIES: usize = 10_000;
/// Bytes (as [`LogEntry::approximate_bytes`] counts them) kept at most.
pub const RING_BYTES: usize = 4 * 1024 * 1024;

/// The ring.
pub struct Ring {
    entries: VecDeque<Arc<LogEntry>>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Ring {
    /// An empty ring holding at most `max_entries` entries and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Adds `entry`, dropping the oldest ones over either cap.
    pub fn push(&mut self, entry: Arc<LogEntry>) {
        self.bytes += entry.approximate_bytes();
        self.entries.push_back(entry);
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.approximate_bytes();
        }
    }

    /// Up to `filter.limit` entries `filter` keeps, newest first.
    pub fn select(&self, filter: &Filter) -> Vec<LogEntry> {
        (self.entries.iter().rev())
            .filter(|entry| filter.keeps(entry))
            .take(filter.limit)
            .map(|entry| LogEntry::clone(entry))
            .collect()
    }

    /// Drops entries older than `oldest` (retention).
    pub fn prune_before(&mut self, oldest: super::entry::Timestamp) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.time < oldest)
        {
            if let Some(entry) = self.entries.pop_front() {
                self.bytes -= entry.approximate_bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::entry::Timestamp;

    fn entry(name: &str, time: i64) -> Arc<LogEntry> {
        Arc::new(LogEntry {
            time: Timestamp(time),
            client: "192.0.2.1".parse().unwrap(),
            mac: None,
            device: "tv".into(),
            profile: "strict".into(),
            identified_by: "address".into(),
            client_name: None,
            name: name.into(),
            qtype: "A".into(),
            result: "forwarded".into(),
            list: None,
            blocked_by: None,
            rcode: "NOERROR".into(),
            answers: Vec::new(),
            upstream: None,
            duration_ms: 0.1,
        })
    }

    fn names(ring: &Ring) -> Vec<String> {
        let all = Filter {
            limit: 100,
            ..Filter::default()
        };
        ring.select(&all).into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn the_oldest_entries_go_first_over_either_cap() {
        let mut by_count = Ring::new(2, usize::MAX);
        for (time, name) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
            by_count.push(entry(name, time as i64));
        }
        assert_eq!(names(&by_count), ["c.test", "b.test"]);

        let one = entry("a.test", 0).approximate_bytes();
        let mut by_bytes = Ring::new(100, one * 2 + one / 2);
        for (time, name) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
            by_bytes.push(entry(name, time as i64));
        }
        assert_eq!(names(&by_bytes), ["c.test", "b.test"]);

        by_bytes.prune_before(Timestamp(2));
        assert_eq!(names(&by_bytes), ["c.test"]);
        by_bytes.prune_before(Timestamp(3));
        assert!(names(&by_bytes).is_empty());
    }
}
