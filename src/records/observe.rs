//! Observe: for every device, each Meta name it asked (a name under the `all-meta` or
//! `all-meta-brands` lists) with the other lists that hold it (its category, or none:
//! "uncatalogued"), how often it was asked and blocked, first and last seen.
//!
//! Always on and cheap: a query for a name that is not Meta's costs one mask test (the lists
//! containing the name are already known); a Meta name one locked map update, allocating only
//! the first time a device asks it. Bounded at [`MAX_OBSERVED`] names (the least recently
//! seen eighth goes when it is full), kept for the query log's retention, and persisted under `state_dir` so it
//! survives restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use super::entry::{QueryRecord, Timestamp};
use crate::policy::Policy;

/// Names kept at most, over all devices.
pub const MAX_OBSERVED: usize = 20_000;

/// The file in `state_dir`.
pub const OBSERVE_FILE: &str = "observe.json";

/// The largest observe file read back (a full table is about 4 MB).
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The category of a Meta name no other list holds.
pub const UNCATALOGUED: &str = "uncatalogued";

/// One Meta name a device asked: the API's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservedName {
    /// The device.
    pub device: String,
    /// The name.
    pub name: String,
    /// The lists holding it besides the Meta-wide ones, or `["uncatalogued"]`.
    pub lists: Vec<String>,
    /// Times asked.
    pub asked: u64,
    /// Times blocked.
    pub blocked: u64,
    /// First asked.
    pub first_seen: Timestamp,
    /// Last asked.
    pub last_seen: Timestamp,
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
struct ObserveFile {
    names: Vec<ObservedName>,
}

/// Per device, per name (foldhash, seeded per process: looked up on every Meta query).
type Table = HashMap<Box<str>, HashMap<Box<str>, Observed, RandomState>, RandomState>;

/// A name's counts, and the policy generation its lists were read under.
struct Observed {
    name: ObservedName,
    generation: u64,
}

/// The observe table.
pub struct Observe {
    table: Mutex<Table>,
    path: Option<PathBuf>,
    retention: Duration,
    changed: AtomicBool,
}

impl Observe {
    /// The table kept in `path` (none: memory only) for `retention`, read back from it.
    pub fn load(path: Option<PathBuf>, retention: Duration) -> Self {
        let observe = Self {
            table: Mutex::new(Table::default()),
            path,
            retention,
            changed: AtomicBool::new(false),
        };
        if let Some(path) = &observe.path {
            observe.read_back(path);
        }
        observe
    }

    /// Counts `record` when it asked a Meta name.
    pub fn note(&self, record: &QueryRecord<'_>, policy: &Policy, blocked: bool) {
        if record.lists.and(policy.meta_lists()).is_empty() {
            return;
        }
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let time = Timestamp::of(record.time);
        let generation = policy.generation();
        let name = record.question.name();
        let known = (table.get_mut(record.device)).and_then(|names| names.get_mut(name));
        if let Some(observed) = known {
            observed.name.asked += 1;
            observed.name.blocked += u64::from(blocked);
            observed.name.last_seen = time;
            if observed.generation != generation {
                observed.name.lists = categories(record, policy);
                observed.generation = generation;
            }
        } else {
            if count(&table) >= MAX_OBSERVED {
                evict_oldest(&mut table);
            }
            let observed = Observed {
                name: ObservedName {
                    device: record.device.to_owned(),
                    name: name.to_owned(),
                    lists: categories(record, policy),
                    asked: 1,
                    blocked: u64::from(blocked),
                    first_seen: time,
                    last_seen: time,
                },
                generation,
            };
            (table.entry(record.device.into()).or_default()).insert(name.into(), observed);
        }
        self.changed.store(true, Ordering::Relaxed);
    }

    /// The names of `device` (every device's when `None`), most recently seen first.
    pub fn names(&self, device: Option<&str>) -> Vec<ObservedName> {
        let Ok(table) = self.table.lock() else {
            return Vec::new();
        };
        let mut names: Vec<ObservedName> = (table.iter())
            .filter(|(name, _)| device.is_none_or(|device| device == &***name))
            .flat_map(|(_, names)| names.values().map(|observed| observed.name.clone()))
            .collect();
        names.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.name.cmp(&b.name)));
        names
    }

    /// Drops names not seen within the retention and writes the table to its file when it
    /// changed since the last write. A failure is logged and tried again next time.
    pub fn persist(&self) {
        let oldest = Timestamp::now().minus(self.retention);
        let names = {
            let Ok(mut table) = self.table.lock() else {
                return;
            };
            for names in table.values_mut() {
                names.retain(|_, observed| observed.name.last_seen >= oldest);
            }
            table.retain(|_, names| !names.is_empty());
            if !self.changed.swap(false, Ordering::Relaxed) {
                return;
            }
            (table.values())
                .flat_map(|names| names.values().map(|observed| observed.name.clone()))
                .collect()
        };
        let Some(path) = &self.path else {
            return;
        };
        let written = serde_json::to_vec(&ObserveFile { names })
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::state_files::write(path, &bytes));
        if let Err(error) = written {
            self.changed.store(true, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), %error, "cannot save the observe table");
        }
    }

    /// Reads the table written by an earlier run. A file that cannot be read or parsed is set
    /// aside (renamed `.bad`) and reported, never a reason not to start.
    fn read_back(&self, path: &Path) {
        let names = match crate::state_files::read_at_most(path, MAX_FILE_BYTES) {
            Ok(None) => return,
            Ok(Some(bytes)) => serde_json::from_slice::<ObserveFile>(&bytes)
                .map(|file| file.names)
                .map_err(std::io::Error::other),
            Err(error) => Err(error),
        };
        let names = match names {
            Ok(names) => names,
            Err(error) => {
                let _ = crate::state_files::set_aside(path);
                tracing::warn!(path = %path.display(), %error, "observe table unreadable; set aside, starting empty");
                return;
            }
        };
        let oldest = Timestamp::now().minus(self.retention);
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        // Read from disk, so checked: plausible names only, within the bounds, and recent.
        for name in names
            .into_iter()
            .filter(|name| plausible(name) && name.last_seen >= oldest)
        {
            if count(&table) >= MAX_OBSERVED {
                break;
            }
            let key: Box<str> = name.name.as_str().into();
            let observed = Observed {
                name,
                // Lists are read again at the first query under a policy.
                generation: 0,
            };
            (table
                .entry(observed.name.device.as_str().into())
                .or_default())
            .insert(key, observed);
        }
    }
}

/// Whether a name read from the file looks like one we wrote.
fn plausible(name: &ObservedName) -> bool {
    (1..=253).contains(&name.name.len())
        && (1..=64).contains(&name.device.len())
        && name.lists.len() <= crate::policy::MAX_LISTS
        && name.first_seen <= name.last_seen
        && name.blocked <= name.asked
}

/// The lists holding the record's name other than the Meta-wide ones.
fn categories(record: &QueryRecord<'_>, policy: &Policy) -> Vec<String> {
    let lists: Vec<String> = (record.lists.iter())
        .filter(|&index| !policy.meta_lists().contains(index))
        .map(|index| policy.list(index).id.clone())
        .collect();
    if lists.is_empty() {
        vec![UNCATALOGUED.to_owned()]
    } else {
        lists
    }
}

fn count(table: &Table) -> usize {
    table.values().map(|names| names.len()).sum()
}

/// Drops the least recently seen eighth of the names: one pass over the table pays for the
/// next [`MAX_OBSERVED`]` / 8` new names, where dropping one at a time would scan it for every
/// new name once full (a flood of random Meta subdomains, under the lock every Meta query
/// takes).
fn evict_oldest(table: &mut Table) {
    let mut seen: Vec<(Timestamp, &str, &str)> = (table.iter())
        .flat_map(|(device, names)| {
            (names.iter()).map(move |(name, o)| (o.name.last_seen, &**device, &**name))
        })
        .collect();
    let evicted = (seen.len() / 8).max(1).min(seen.len());
    if evicted == 0 {
        return;
    }
    seen.select_nth_unstable_by_key(evicted - 1, |(last_seen, _, _)| *last_seen);
    let oldest: Vec<(Box<str>, Box<str>)> = (seen[..evicted].iter())
        .map(|(_, device, name)| ((*device).into(), (*name).into()))
        .collect();
    for (device, name) in oldest {
        if let Some(names) = table.get_mut(&device) {
            names.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(device: &str, name: &str, last_seen: Timestamp) -> ObservedName {
        ObservedName {
            device: device.into(),
            name: name.into(),
            lists: vec![UNCATALOGUED.into()],
            asked: 2,
            blocked: 1,
            first_seen: last_seen.minus(Duration::from_secs(60)),
            last_seen,
        }
    }

    #[test]
    fn a_saved_table_is_read_back_checked_and_an_unreadable_one_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OBSERVE_FILE);
        let now = Timestamp::now();
        let week = Duration::from_secs(7 * 86400);
        let names = vec![
            name("quest", "graph.oculus.com", now),
            // Too old for the retention, and implausible: both dropped.
            name("quest", "old.oculus.com", now.minus(week * 2)),
            ObservedName {
                blocked: 5,
                ..name("tv", "www.facebook.com", now)
            },
        ];
        std::fs::write(&path, serde_json::to_vec(&ObserveFile { names }).unwrap()).unwrap();
        let observe = Observe::load(Some(path.clone()), week);
        let kept: Vec<String> = observe.names(None).into_iter().map(|n| n.name).collect();
        assert_eq!(kept, ["graph.oculus.com"]);

        std::fs::write(&path, "{not json").unwrap();
        let observe = Observe::load(Some(path.clone()), week);
        assert!(observe.names(None).is_empty());
        assert!(dir.path().join("observe.json.bad").exists());
        assert!(!path.exists());
    }
}
