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

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
