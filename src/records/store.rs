//! The query log's SQLite database: one writer (the records thread) inserting batches in
//! transactions, readers opening their own read-only connections, and pruning by age and size
//! (oldest first).
//!
//! SQLite because it is what a Pi-hole user's tools already read, it is indexed, and it
//! needs no server (rusqlite with the bundled library, so no system package). The database
//! is in WAL mode: a reader never waits for the writer, nor the writer for a reader.
//!
//! Nothing here is on the query path. A database that cannot be written (a full or
//! read-only disk, a file replaced or removed under us) makes [`Store::write`] fail; the
//! caller counts it and the entries stay in the in-memory ring. The store opens the file
//! again when it was replaced, and retries a failed open at most every
//! [`REOPEN_INTERVAL`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params, params_from_iter};

use super::entry::{LogEntry, Timestamp};
use super::filter::Filter;
use crate::state_files;

/// How long a failed open waits before the next try.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(5);

/// How long a statement waits for a lock another connection holds (a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// The schema. `auto_vacuum = INCREMENTAL`, set before it, is what lets pruning give the
/// space back to the file system.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    client TEXT NOT NULL,
    mac TEXT,
    device TEXT NOT NULL,
    profile TEXT NOT NULL,
    identified_by TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    result TEXT NOT NULL,
    list TEXT,
    blocked_by TEXT,
    rcode TEXT NOT NULL,
    answers TEXT NOT NULL,
    upstream TEXT,
    duration_ms REAL NOT NULL,
    client_name TEXT
);
CREATE INDEX IF NOT EXISTS queries_time ON queries (time_ms);
CREATE INDEX IF NOT EXISTS queries_device ON queries (device, time_ms);
DROP INDEX IF EXISTS queries_name;
";

/// The column a database written before DHCP lease names lacks: added (NULL in older rows)
/// when the writer opens it; readers select NULL in its place until then.
const CLIENT_NAME_COLUMN: &str = "ALTER TABLE queries ADD COLUMN client_name TEXT";

/// The writer's side of the database.
pub struct Store {
    path: PathBuf,
    open: Option<Open>,
    /// When the last open failed.
    failed_at: Option<Instant>,
}

/// An open connection and the file it opened (device, inode), to notice a replaced file.
struct Open {
    connection: Connection,
    identity: (u64, u64),
}

impl Store {
    /// The store at `path`, opened at the first write.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            open: None,
            failed_at: None,
        }
    }

    /// Inserts `entries` in one transaction.
    pub fn write(&mut self, entries: &[Arc<LogEntry>]) -> rusqlite::Result<()> {
        insert(self.connection()?, entries)
    }

    /// Deletes entries older than `oldest`.
    pub fn prune_older(&mut self, oldest: Timestamp) -> rusqlite::Result<()> {
        let connection = self.connection()?;
        if connection.execute("DELETE FROM queries WHERE time_ms < ?1", [oldest.0])? > 0 {
            connection.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        Ok(())
    }

    /// Deletes the oldest entries until the database (its WAL included) is under `max_bytes`.
    ///
    /// Deleting the oldest rows frees whole pages of the table and of the time and device
    /// indexes (all in insertion order), which `incremental_vacuum` gives back; the name
    /// index is in name order, so its pages only thin out. When that is not enough (the
    /// first time the cap is reached, mostly) the file is rebuilt with `VACUUM`. The loop is
    /// bounded, so a database that will not shrink costs a few rounds, not a spin.
    pub fn enforce_cap(&mut self, max_bytes: u64) -> rusqlite::Result<()> {
        for round in 0..5 {
            if self.bytes() <= max_bytes {
                return Ok(());
            }
            let connection = self.connection()?;
            connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            if self.bytes() <= max_bytes {
                return Ok(());
            }
            let connection = self.connection()?;
            let rows: i64 =
                connection.query_row("SELECT count(*) FROM queries", [], |row| row.get(0))?;
            let rows = u64::try_from(rows).unwrap_or(0);
            // Down to four fifths of the cap, by the share of the file the rows take now.
            let target = max_bytes / 5 * 4;
            let keep = u64::try_from(
                u128::from(rows) * u128::from(target) / u128::from(self.bytes().max(1)),
            )
            .unwrap_or(0)
            .min(rows.saturating_sub(1));
            let connection = self.connection()?;
            connection.execute(
                "DELETE FROM queries WHERE id IN (SELECT id FROM queries ORDER BY id LIMIT ?1)",
                [i64::try_from(rows - keep).unwrap_or(i64::MAX)],
            )?;
            connection
                .execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
            if self.bytes() > max_bytes && round > 0 || rows <= 1 {
                let connection = self.connection()?;
                connection.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
            }
        }
        Ok(())
    }

    /// The database's size on disk, its WAL included.
    pub fn bytes(&self) -> u64 {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        size(&self.path) + size(&wal_path(&self.path))
    }

    /// The open connection, opening the file (again) when it is not open or was replaced.
    fn connection(&mut self) -> rusqlite::Result<&Connection> {
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|meta| (meta.dev(), meta.ino()));
        if self
            .open
            .as_ref()
            .is_some_and(|open| Some(open.identity) != current)
        {
            tracing::warn!(path = %self.path.display(), "the query log database was replaced or removed; opening it again");
            self.open = None;
        }
        if self.open.is_none() {
            if self
                .failed_at
                .is_some_and(|at| at.elapsed() < REOPEN_INTERVAL)
            {
                return Err(rusqlite::Error::InvalidPath(self.path.clone()));
            }
            match open_for_writing(&self.path) {
                Ok(open) => {
                    self.failed_at = None;
                    self.open = Some(open);
                }
                Err(error) => {
                    self.failed_at = Some(Instant::now());
                    return Err(error);
                }
            }
        }
        match &self.open {
            Some(open) => Ok(&open.connection),
            None => Err(rusqlite::Error::InvalidPath(self.path.clone())),
        }
    }
}

/// Inserts `entries` over `connection` in one transaction.
fn insert(connection: &Connection, entries: &[Arc<LogEntry>]) -> rusqlite::Result<()> {
    let transaction = connection.unchecked_transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO queries (time_ms, client, mac, device, profile, identified_by, name, \
             type, result, list, blocked_by, rcode, answers, upstream, duration_ms, client_name) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for entry in entries {
            let answers: Vec<String> = entry.answers.iter().map(ToString::to_string).collect();
            insert.execute(params![
                entry.time.0,
                entry.client.to_string(),
                entry.mac,
                entry.device,
                entry.profile,
                entry.identified_by,
                entry.name,
                entry.qtype,
                entry.result,
                entry.list,
                entry.blocked_by,
                entry.rcode,
                answers.join(" "),
                entry.upstream,
                entry.duration_ms,
                entry.client_name,
            ])?;
        }
    }
    transaction.commit()
}

/// Opens (creating it and its directory if need be) the database at `path` for writing.
fn open_for_writing(path: &Path) -> rusqlite::Result<Open> {
    if let Some(dir) = path.parent() {
        // Best effort: a failure shows up as the open's own error.
        let _ = state_files::create_dir(dir);
    }
    // A query log is as private as a browser history: the file (and so the WAL and shared
    // memory files SQLite makes beside it, which take its mode) is the owner's alone.
    state_files::create_private(path)
        .map_err(|_| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Before anything writes the first page, or it does not take (see SCHEMA).
    connection.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // WAL: readers and the writer never wait for each other; NORMAL sync is safe in WAL
    // mode (a power cut may lose the last batch, never the database).
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.execute_batch(SCHEMA)?;
    if !has_client_name(&connection)? {
        connection.execute_batch(CLIENT_NAME_COLUMN)?;
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|_| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    Ok(Open {
        connection,
        identity: (meta.dev(), meta.ino()),
    })
}

/// Whether the `queries` table has the `client_name` column (see [`CLIENT_NAME_COLUMN`]).
fn has_client_name(connection: &Connection) -> rusqlite::Result<bool> {
    connection.query_row(
        "SELECT count(*) FROM pragma_table_info('queries') WHERE name = 'client_name'",
        [],
        |row| row.get::<_, i64>(0).map(|count| count > 0),
    )
}

/// The WAL file beside the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Reads up to `filter.limit` entries `filter` keeps, newest first, from the database at
/// `path` on a connection of its own (read-only). `Ok(None)` when there is no database yet.
pub fn read(path: &Path, filter: &Filter) -> rusqlite::Result<Option<Vec<LogEntry>>> {
    if !path.exists() {
        return Ok(None);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // The writer creates the file, then the table: in between there is nothing to read.
    let tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'queries'",
        [],
        |row| row.get(0),
    )?;
    if tables == 0 {
        return Ok(None);
    }
    let client_name = match has_client_name(&connection)? {
        true => "client_name",
        false => "NULL",
    };
    // Only the filters that are set make the WHERE clause, so that SQLite can use the
    // device index (an `?N IS NULL OR device = ?N` term it cannot). A name filter matches
    // the name and the names below it: no index serves that, so there is none on names
    // (every insert would pay for it).
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(device) = &filter.device {
        conditions.push("device = ?");
        values.push(device.clone().into());
    }
    if let Some(client) = filter.client {
        conditions.push("client = ?");
        values.push(client.to_string().into());
    }
    if let Some(name) = &filter.name {
        conditions.push(
            "(name = ? OR (length(name) > length(?) AND substr(name, -length(?) - 1) = '.' || ?))",
        );
        values.extend(std::iter::repeat_n(Value::from(name.clone()), 4));
    }
    if let Some(result) = filter.result {
        conditions.push("result = ?");
        values.push(result.as_str().to_owned().into());
    }
    if let Some(since) = filter.since {
        conditions.push("time_ms > ?");
        values.push(since.0.into());
    }
    values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    let condition = match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    };
    let mut statement = connection.prepare(&format!(
        "SELECT time_ms, client, mac, device, profile, identified_by, name, type, result, list, \
         blocked_by, rcode, answers, upstream, duration_ms, {client_name} FROM queries \
         {condition} ORDER BY time_ms DESC, id DESC LIMIT ?"
    ))?;
    let rows = statement.query_map(params_from_iter(values), |row| {
        let client: String = row.get(1)?;
        let answers: String = row.get(12)?;
        Ok(LogEntry {
            time: Timestamp(row.get(0)?),
            // Written by us, but read from disk: a value that does not parse is shown
            // as the unspecified address rather than failing the whole request.
            client: client
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            mac: row.get(2)?,
            device: row.get(3)?,
            profile: row.get(4)?,
            identified_by: row.get(5)?,
            client_name: row.get(15)?,
            name: row.get(6)?,
            qtype: row.get(7)?,
            result: row.get(8)?,
            list: row.get(9)?,
            blocked_by: row.get(10)?,
            rcode: row.get(11)?,
            answers: answers
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect(),
            upstream: row.get(13)?,
            duration_ms: row.get(14)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as written before DHCP lease names.
    const OLD_TABLE: &str =
        "CREATE TABLE queries (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, \
        client TEXT NOT NULL, mac TEXT, device TEXT NOT NULL, profile TEXT NOT NULL, \
        identified_by TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, result TEXT NOT NULL, \
        list TEXT, blocked_by TEXT, rcode TEXT NOT NULL, answers TEXT NOT NULL, upstream TEXT, \
        duration_ms REAL NOT NULL);
        INSERT INTO queries (time_ms, client, device, profile, identified_by, name, type, result, \
        rcode, answers, duration_ms) VALUES (1, '192.0.2.5', 'unknown', 'default', 'default', \
        'old.test', 'A', 'forwarded', 'NOERROR', '', 0.5);";

    #[test]
    fn a_database_from_before_client_names_is_read_then_given_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("querylog.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch(OLD_TABLE)
            .unwrap();
        let all = Filter::default();
        let before = read(&path, &all).unwrap().unwrap();
        assert_eq!((before.len(), &before[0].client_name), (1, &None));

        let mut store = Store::new(path.clone());
        let mut entry = before[0].clone();
        entry.name = "new.test".into();
        entry.time = Timestamp(2);
        entry.client_name = Some("pixel-7".into());
        store.write(&[Arc::new(entry)]).unwrap();
        let after = read(&path, &all).unwrap().unwrap();
        let names: Vec<_> = (after.iter())
            .map(|e| (e.name.as_str(), e.client_name.as_deref()))
            .collect();
        assert_eq!(names, [("new.test", Some("pixel-7")), ("old.test", None)]);
    }

    #[test]
    fn the_database_and_its_journals_are_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o777;
        // A new database.
        let path = dir.path().join("new.sqlite3");
        let mut store = Store::new(path.clone());
        store.prune_older(Timestamp(0)).unwrap();
        // While it is open: SQLite removes the WAL with the last connection.
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal_path(&path)), 0o600);
        drop(store);
        // One an earlier version left readable by everyone.
        let path = dir.path().join("old.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch(OLD_TABLE)
            .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        Store::new(path.clone()).prune_older(Timestamp(0)).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
