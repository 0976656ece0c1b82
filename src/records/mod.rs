//! Records: what the daemon remembers about the queries it answered — the query log, the Meta
//! names each device reaches (observe) and the clients seen — for the API and the CLI.
//!
//! The query path hands each answered query over once, as a borrowed [`QueryRecord`], to
//! [`Records::submit`]:
//! - clients ([`clients`]) and observe ([`observe`]) are updated inline: one locked map
//!   update (observe only for Meta names), allocating only for a client or Meta name not seen
//!   before;
//! - the query log takes the record only when the device's log mode wants it (a field test
//!   first: nothing more when logging is off). It is then copied into an owned entry and
//!   offered to a bounded queue: a full queue drops the entry and counts it
//!   ([`crate::metrics::QUERYLOG_DROPPED_TOTAL`]), never delaying or failing the answer.
//!
//! A writer thread of its own drains the queue every [`TICK`] (so the query path never wakes
//! it), keeps the in-memory ring of recent entries ([`ring`]), feeds live readers
//! ([`Records::subscribe`]), inserts batches into the SQLite database ([`store`]) in one
//! transaction each, prunes by age and size, and saves the observe table. A database that
//! cannot be written costs log entries (counted), never answers.
//!
//! The writer thread runs at the lowest priority ([`WRITER_NICE`]): on a core the answers
//! keep busy, it gets only what they leave, so a saturated daemon drops log entries (counted)
//! instead of answering slower. A house asks a few queries a second and loses none.
//!
//! Clients that are no configured device get the host name of their DHCP lease ([`names`]):
//! in the clients list when it is read, in a log entry when the records thread takes it in.

pub mod clients;
pub mod entry;
pub mod filter;
pub mod names;
pub mod observe;
pub mod ring;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::broadcast;

pub use self::clients::{ClientSeen, Clients};
use self::entry::Queued;
pub use self::entry::{BlockedAt, LogEntry, LogResult, QueryRecord, Timestamp, coarse_now};
pub use self::filter::Filter;
use self::names::ClientNames;
pub use self::observe::{Observe, ObservedName};
use self::ring::{RING_BYTES, RING_ENTRIES, Ring};
use self::store::Store;
use crate::config::{LogMode, QuerylogSettings, UNKNOWN_DEVICE};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyHandle};

/// How often the writer thread drains the queue.
pub const TICK: Duration = Duration::from_millis(100);
/// How often old entries are pruned and the database size is read.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the observe table is saved (and at shutdown).
const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// The writer thread's nice value: the lowest priority, below the threads that answer.
pub const WRITER_NICE: libc::c_int = 19;
/// Live readers may fall this far behind before they miss entries.
const LIVE_CAPACITY: usize = 1024;

/// The records layer.
pub struct Records {
    queue: SyncSender<Queued>,
    shared: Arc<Shared>,
    clients: Clients,
    dropped: IntCounter,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What the writer thread and the readers share.
struct Shared {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<LogEntry>>,
    observe: Observe,
    names: ClientNames,
    database: Option<PathBuf>,
    stop: AtomicBool,
}

/// The writer thread's metric handles.
struct WriterCounters {
    written: IntCounter,
    write_errors: IntCounter,
    database_bytes: IntGauge,
}

impl Records {
    /// Starts the records of a daemon with `settings` and `state_dir` (where the observe
    /// table lives).
    pub fn start(settings: &QuerylogSettings, state_dir: &Path, metrics: &Metrics) -> Self {
        // Entries the queue holds before it drops them (`[querylog] queue`).
        let (queue, received) = sync_channel(settings.queue);
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring::new(RING_ENTRIES, RING_BYTES)),
            live: broadcast::channel(LIVE_CAPACITY).0,
            observe: Observe::load(
                Some(state_dir.join(observe::OBSERVE_FILE)),
                settings.retention,
            ),
            names: ClientNames::default(),
            database: settings.path.clone(),
            stop: AtomicBool::new(false),
        });
        let handles = metrics.querylog();
        let counters = WriterCounters {
            written: handles.written,
            write_errors: handles.write_errors,
            database_bytes: handles.database_bytes,
        };
        let writer = Writer {
            shared: shared.clone(),
            received,
            batch: settings.queue,
            store: settings.path.clone().map(Store::new),
            retention: settings.retention,
            max_bytes: settings.max_bytes,
            counters,
        };
        let thread = std::thread::Builder::new()
            .name("records".into())
            .spawn(move || writer.run())
            .map_err(|error| tracing::error!(%error, "cannot start the records thread; the query log stays empty"))
            .ok();
        Self {
            queue,
            shared,
            clients: Clients::default(),
            dropped: handles.dropped,
            writer: Mutex::new(thread),
        }
    }

    /// Names clients from the DHCP lease files of the snapshot in force in `policy`.
    pub fn with_lease_names(self, policy: PolicyHandle) -> Self {
        self.shared.names.follow(policy);
        self
    }

    /// Takes in one answered query, as the module doc says; `log` is the device's query
    /// log mode and `policy` the snapshot the query was answered under.
    pub fn submit(&self, record: &QueryRecord<'_>, log: LogMode, policy: &Policy) {
        let blocked = record.result == LogResult::Blocked;
        self.clients.note(record, blocked);
        self.shared.observe.note(record, policy, blocked);
        let kept = match log {
            LogMode::Off => return,
            // A would-block whose upstream then failed is still a block the profile made.
            LogMode::Blocked => record.result.is_block() || record.blocked_at.is_some(),
            LogMode::All => true,
        };
        if kept {
            match self.queue.try_send(Queued::of(record)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
            }
        }
    }

    /// Up to `filter.limit` log entries `filter` keeps, newest first: from the database when
    /// there is one, else from the in-memory ring. Blocking (SQLite): call it off the async
    /// runtime's threads.
    pub fn queries(&self, filter: &Filter) -> Result<Vec<LogEntry>, String> {
        if let Some(path) = &self.shared.database {
            match store::read(path, filter) {
                Ok(Some(entries)) => return Ok(entries),
                Ok(None) => {}
                Err(error) => {
                    return Err(format!(
                        "cannot read the query log at {}: {error}",
                        path.display()
                    ));
                }
            }
        }
        Ok(self
            .shared
            .ring
            .lock()
            .map(|ring| ring.select(filter))
            .unwrap_or_default())
    }

    /// New log entries as they are recorded, for the live view.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.shared.live.subscribe()
    }

    /// The Meta names of `device` (every device's when `None`).
    pub fn observed(&self, device: Option<&str>) -> Vec<ObservedName> {
        self.shared.observe.names(device)
    }

    /// The clients seen, those that are no device named by their DHCP lease.
    pub fn clients(&self) -> Vec<ClientSeen> {
        let mut clients = self.clients.list();
        let names = self.shared.names.current();
        for client in &mut clients {
            if client.device == UNKNOWN_DEVICE {
                client.name = names.of(client.address);
            }
        }
        clients
    }

    /// Writes what is queued, saves the observe table and stops the writer thread. Blocking.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let thread = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(thread) = thread {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!("the records thread panicked");
            }
        }
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Gives the calling thread (the writer) [`WRITER_NICE`], so that under load the threads
/// that answer get the CPU first. A failure (a sandbox without the permission, say) is
/// logged and changes nothing else.
fn yield_to_answers() {
    // SAFETY: gettid and setpriority take and return plain integers. On Linux the nice value
    // belongs to a thread, so this changes only the writer.
    let changed = unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, WRITER_NICE)
    };
    if changed != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot lower the records thread's priority; it competes with answers under load");
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    received: Receiver<Queued>,
    /// The most entries one drain takes: what the queue holds.
    batch: usize,
    store: Option<Store>,
    retention: Duration,
    max_bytes: u64,
    counters: WriterCounters,
}

impl Writer {
    /// Drains the queue every [`TICK`] until told to stop, then once more.
    fn run(mut self) {
        yield_to_answers();
        let mut pruned_at = Instant::now();
        let mut saved_at = Instant::now();
        let mut failing = false;
        loop {
            let stopping = self.shared.stop.load(Ordering::Relaxed);
            self.shared.names.refresh();
            let batch: Vec<Queued> = self.received.try_iter().take(self.batch).collect();
            if !batch.is_empty() {
                let batch = self.named(batch);
                self.keep(&batch, &mut failing);
            }
            if pruned_at.elapsed() >= PRUNE_INTERVAL || stopping {
                pruned_at = Instant::now();
                self.prune(&mut failing);
            }
            if saved_at.elapsed() >= SAVE_INTERVAL || stopping {
                saved_at = Instant::now();
                self.shared.observe.persist();
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(TICK);
        }
    }

    /// The entries of `batch`, clients that are no device named by their DHCP lease.
    fn named(&self, batch: Vec<Queued>) -> Vec<Arc<LogEntry>> {
        let names = self.shared.names.current();
        (batch.into_iter())
            .map(|queued| {
                let mut entry = queued.into_entry();
                if entry.device == UNKNOWN_DEVICE {
                    entry.client_name = names.of(entry.client);
                }
                Arc::new(entry)
            })
            .collect()
    }

    /// Puts `batch` in the ring, hands it to live readers and writes it to the database.
    fn keep(&mut self, batch: &[Arc<LogEntry>], failing: &mut bool) {
        if let Ok(mut ring) = self.shared.ring.lock() {
            batch.iter().for_each(|entry| ring.push(entry.clone()));
        }
        for entry in batch {
            // No live reader is not an error.
            let _ = self.shared.live.send(entry.clone());
        }
        let Some(store) = &mut self.store else {
            return;
        };
        // The cap is checked after every batch: a burst must not take the file far past it.
        let written = store
            .write(batch)
            .and_then(|()| store.enforce_cap(self.max_bytes));
        self.outcome(written, failing, "writing the query log");
        if *failing {
            return;
        }
        self.counters
            .written
            .inc_by(u64::try_from(batch.len()).unwrap_or(u64::MAX));
    }

    /// Drops entries past the retention or over the size cap.
    fn prune(&mut self, failing: &mut bool) {
        let oldest = Timestamp::now().minus(self.retention);
        if let Ok(mut ring) = self.shared.ring.lock() {
            ring.prune_before(oldest);
        }
        let Some(store) = &mut self.store else {
            return;
        };
        // A database not created yet (nothing logged) has nothing to prune, and is not
        // created for it: with the log off no file appears.
        let pruned = (store.bytes() > 0).then(|| store.prune_older(oldest));
        let bytes = store.bytes();
        self.counters
            .database_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        if let Some(pruned) = pruned {
            self.outcome(pruned, failing, "pruning the query log");
        }
    }

    /// Counts a failed database operation, logging the first of a run of failures and the
    /// recovery, not every batch.
    fn outcome(&self, result: rusqlite::Result<()>, failing: &mut bool, what: &str) {
        match result {
            Ok(()) if *failing => {
                *failing = false;
                tracing::info!("the query log database is writable again");
            }
            Ok(()) => {}
            Err(error) => {
                self.counters.write_errors.inc();
                if !*failing {
                    let path = self.shared.database.as_deref().unwrap_or(Path::new(""));
                    tracing::warn!(path = %path.display(), %error, "{what} failed; entries stay in memory only, DNS is not affected");
                }
                *failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of this process's thread named `name`, from /proc.
    fn nice_of_thread(name: &str) -> Option<i64> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        tasks.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the command (which ends at the last ')'): state is the 3rd field
            // of stat, nice the 19th.
            let after = &stat[stat.rfind(')')? + 2..];
            after.split(' ').nth(16)?.parse().ok()
        })
    }

    #[test]
    fn the_writer_thread_runs_at_the_lowest_priority() {
        let state_dir = tempfile::tempdir().unwrap();
        let settings = QuerylogSettings {
            mode: LogMode::All,
            retention: Duration::from_secs(3600),
            max_bytes: 1 << 20,
            path: None,
            queue: 64,
        };
        let records = Records::start(&settings, state_dir.path(), &Metrics::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut nice = None;
        while Instant::now() < deadline {
            nice = nice_of_thread("records");
            if nice == Some(i64::from(WRITER_NICE)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        records.shutdown();
        assert_eq!(nice, Some(i64::from(WRITER_NICE)));
    }

    #[test]
    fn with_nothing_logged_no_database_file_is_made() {
        let state_dir = tempfile::tempdir().unwrap();
        let path = state_dir.path().join("querylog.sqlite3");
        let settings = QuerylogSettings {
            mode: LogMode::Off,
            retention: Duration::from_secs(3600),
            max_bytes: 1 << 20,
            path: Some(path.clone()),
            queue: 64,
        };
        let records = Records::start(&settings, state_dir.path(), &Metrics::new());
        // Stopping runs the writer's last round, pruning included.
        records.shutdown();
        assert!(
            !path.exists(),
            "a query log that logged nothing made its file"
        );
    }
}
