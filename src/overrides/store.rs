//! Where overrides live: in memory for the query path, and in `state_dir/overrides.json` so
//! they survive restarts. A file that cannot be read or parsed is set aside (renamed) and
//! reported, never a reason not to start; entries read back are checked again like new ones.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};
use jiff::Timestamp;
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Active, Decision, Kind, Override};
use crate::lists::parse::normalise_name;
use crate::state_files;

/// Most overrides kept at once: each is looked at by the queries of its target.
pub const MAX_OVERRIDES: usize = 1000;
/// Most names one override may list.
pub const MAX_NAMES: usize = 100;

/// The file under `state_dir`.
const FILE_NAME: &str = "overrides.json";
/// The largest overrides file read: a full store ([`MAX_OVERRIDES`] of [`MAX_NAMES`] names of
/// up to 253 bytes) with room for the JSON around them.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// An override as asked for, before it has an id.
#[derive(Clone, Debug)]
pub struct NewOverride {
    /// What it does.
    pub kind: Kind,
    /// The device it applies to.
    pub device: Option<String>,
    /// The profile it applies to.
    pub profile: Option<String>,
    /// Normalised names (see [`normalise_name`]).
    pub names: Vec<String>,
    /// When it ends.
    pub expires: Option<Timestamp>,
}

/// Why an override was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The store is full.
    #[error("at most {MAX_OVERRIDES} overrides can be in force; remove some first")]
    Full,
}

/// The file's layout.
#[derive(Serialize, Deserialize)]
struct Saved {
    next_id: u64,
    overrides: Vec<Override>,
}

struct Inner {
    next_id: u64,
    overrides: Vec<Override>,
}

/// The overrides of a running daemon.
pub struct OverrideStore {
    /// What the query path reads; replaced whole on every change.
    active: ArcSwap<Active>,
    inner: Mutex<Inner>,
    /// `state_dir/overrides.json`; `None` keeps them in memory only (`explain`, tests).
    file: Option<PathBuf>,
    /// `metasink_overrides_active`, by kind in the order of [`Kind::ALL`].
    gauges: [IntGauge; 3],
}

impl OverrideStore {
    /// The store of `state_dir`, with what its file holds, counting what is in force in
    /// `gauges` (see [`crate::metrics::Metrics::overrides_active`]).
    pub fn open(state_dir: &Path, gauges: [IntGauge; 3]) -> Self {
        let file = state_dir.join(FILE_NAME);
        let saved = load(&file);
        let store = Self::with(saved, Some(file), gauges);
        let count = store.lock().overrides.len();
        if count > 0 {
            info!("{count} override(s) restored from {FILE_NAME}");
        }
        store
    }

    /// A store that keeps nothing on disk.
    pub fn in_memory() -> Self {
        let saved = Saved {
            next_id: 1,
            overrides: Vec::new(),
        };
        // Registered nowhere: nothing reads them.
        let gauges = Kind::ALL.map(|kind| {
            IntGauge::new(format!("overrides_{}", kind.as_str()), "unregistered")
                .expect("a valid metric name")
        });
        Self::with(saved, None, gauges)
    }

    fn with(mut saved: Saved, file: Option<PathBuf>, gauges: [IntGauge; 3]) -> Self {
        // Overrides that expired while nothing ran are dropped here, in memory only: the
        // daemon's next change or once-a-second sweep saves the list.
        let now = Timestamp::now();
        saved.overrides.retain(|rule| rule.is_live(now));
        let store = Self {
            active: ArcSwap::from_pointee(Active::new(&saved.overrides)),
            inner: Mutex::new(Inner {
                next_id: saved.next_id,
                overrides: saved.overrides,
            }),
            file,
            gauges,
        };
        // Counted, not saved: opening must not rewrite the file (`explain` opens it too).
        store.count(&store.lock());
        store
    }

    /// What the query path reads.
    pub fn active(&self) -> Guard<Arc<Active>> {
        self.active.load()
    }

    /// The override that decides `name` for a client of `device` with `profile` now, if any.
    /// The query path's call: with none in force it costs one atomic load and no clock read.
    pub fn decide(&self, device: &str, profile: &str, name: &str) -> Option<Decision> {
        let active = self.active.load();
        if active.is_empty() {
            return None;
        }
        let rule = active.decide(device, profile, name, Timestamp::now())?;
        Some(Decision::from(rule))
    }

    /// Every override kept (expired ones are gone within a second of ending).
    pub fn list(&self) -> Vec<Override> {
        self.lock().overrides.clone()
    }

    /// Adds `new`, made at `now`; in force for the next query.
    pub fn add(&self, new: NewOverride, now: Timestamp) -> Result<Override, AddError> {
        let mut inner = self.lock();
        if inner.overrides.len() >= MAX_OVERRIDES {
            return Err(AddError::Full);
        }
        let created = Override {
            id: inner.next_id,
            kind: new.kind,
            device: new.device,
            profile: new.profile,
            names: new.names,
            created: now,
            expires: new.expires,
        };
        inner.next_id += 1;
        inner.overrides.push(created.clone());
        self.publish(&inner);
        Ok(created)
    }

    /// Removes the override `id`; `None` when there is none.
    pub fn remove(&self, id: u64) -> Option<Override> {
        let mut inner = self.lock();
        let at = inner.overrides.iter().position(|rule| rule.id == id)?;
        let removed = inner.overrides.remove(at);
        self.publish(&inner);
        Some(removed)
    }

    /// Drops the overrides that ended before `now`; returns how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let mut inner = self.lock();
        let before = inner.overrides.len();
        inner.overrides.retain(|rule| rule.is_live(now));
        let dropped = before - inner.overrides.len();
        if dropped > 0 {
            self.publish(&inner);
        }
        dropped
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the list whole (every change is one push,
        // remove or retain), so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `inner` what queries see, then saves it. A failed save is logged: the change
    /// is in force, and the next change writes the file again.
    fn publish(&self, inner: &Inner) {
        self.active.store(Arc::new(Active::new(&inner.overrides)));
        self.count(inner);
        self.save(inner);
    }

    /// Sets `metasink_overrides_active` from `inner`.
    fn count(&self, inner: &Inner) {
        for (kind, gauge) in Kind::ALL.iter().zip(&self.gauges) {
            let count = inner
                .overrides
                .iter()
                .filter(|rule| rule.kind == *kind)
                .count();
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Writes `inner` to the file, if the store has one.
    fn save(&self, inner: &Inner) {
        let Some(file) = &self.file else { return };
        let saved = Saved {
            next_id: inner.next_id,
            overrides: inner.overrides.clone(),
        };
        let written = serde_json::to_vec_pretty(&saved)
            .map_err(io::Error::other)
            .and_then(|body| {
                state_files::create_dir(file.parent().unwrap_or(Path::new(".")))?;
                state_files::write(file, &body)
            });
        if let Err(error) = written {
            warn!(file = %file.display(), %error, "could not save the overrides; they are in force until the daemon stops");
        }
    }
}

/// What `file` holds; nothing when it is absent. A file that cannot be read or parsed is set
/// aside as `overrides.json.bad`, so the next save does not overwrite what a person may want
/// to look at.
fn load(file: &Path) -> Saved {
    let empty = || Saved {
        next_id: 1,
        overrides: Vec::new(),
    };
    let text = match read(file) {
        Ok(Some(text)) => text,
        Ok(None) => return empty(),
        Err(error) => {
            set_aside(file, &error.to_string());
            return empty();
        }
    };
    let mut saved: Saved = match serde_json::from_str(&text) {
        Ok(saved) => saved,
        Err(error) => {
            set_aside(file, &error.to_string());
            return empty();
        }
    };
    saved.overrides.retain_mut(|rule| match checked(rule) {
        Ok(()) => true,
        Err(problem) => {
            warn!(file = %file.display(), id = rule.id, "dropping a stored override: {problem}");
            false
        }
    });
    saved.overrides.truncate(MAX_OVERRIDES);
    let highest = saved
        .overrides
        .iter()
        .map(|rule| rule.id)
        .max()
        .unwrap_or(0);
    saved.next_id = saved.next_id.max(highest + 1);
    saved
}

/// Reads `file` without following a link planted in its place; `None` when it is absent. A
/// file larger than a full store could be ([`MAX_FILE_BYTES`]) is refused unread.
fn read(file: &Path) -> io::Result<Option<String>> {
    let Some(bytes) = state_files::read_at_most(file, MAX_FILE_BYTES)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

fn set_aside(file: &Path, problem: &str) {
    let moved = state_files::set_aside(file);
    warn!(
        file = %file.display(),
        moved_to = ?moved.as_ref().ok(),
        moved = moved.is_ok(),
        "the overrides file is unreadable ({problem}); starting without overrides"
    );
}

/// Checks a stored override as a new one is checked: what is read back from disk is not
/// trusted blindly.
fn checked(rule: &mut Override) -> Result<(), String> {
    if rule.device.is_some() && rule.profile.is_some() {
        return Err("names both a device and a profile".into());
    }
    if rule.names.len() > MAX_NAMES {
        return Err(format!("lists more than {MAX_NAMES} names"));
    }
    match (rule.kind, rule.names.is_empty()) {
        (Kind::Pause, false) => return Err("a pause lists names".into()),
        (Kind::Allow | Kind::Block, true) => return Err("lists no names".into()),
        _ => {}
    }
    for name in &mut rule.names {
        *name = normalise_name(name).map_err(|error| error.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> [IntGauge; 3] {
        crate::metrics::Metrics::new().overrides_active()
    }

    /// The store counts its kinds into the gauges by position: their orders must agree.
    #[test]
    fn the_kinds_are_in_the_metrics_label_order() {
        assert_eq!(Kind::ALL.map(Kind::as_str), crate::metrics::OVERRIDE_KINDS);
    }

    fn pause_for(device: &str, expires: Option<Timestamp>) -> NewOverride {
        NewOverride {
            kind: Kind::Pause,
            device: Some(device.into()),
            profile: None,
            names: Vec::new(),
            expires,
        }
    }

    #[test]
    fn overrides_survive_a_restart_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let store = OverrideStore::open(dir.path(), gauges());
        let first = store.add(pause_for("tablet", None), now).unwrap();
        let second = store.add(pause_for("tv", None), now).unwrap();
        store.remove(second.id).unwrap();
        drop(store);

        let reopened = OverrideStore::open(dir.path(), gauges());
        assert_eq!(reopened.list(), vec![first.clone()]);
        assert!(!reopened.active().is_empty());
        let third = reopened.add(pause_for("tv", None), now).unwrap();
        assert!(third.id > second.id, "{third:?}");
    }

    #[test]
    fn expired_overrides_are_swept_and_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let store = OverrideStore::open(dir.path(), gauges());
        let soon = now + jiff::SignedDuration::from_secs(1);
        store.add(pause_for("tablet", Some(soon)), now).unwrap();
        assert_eq!(store.sweep(now), 0);
        assert_eq!(store.sweep(soon), 1);
        assert!(store.active().is_empty());
        assert!(OverrideStore::open(dir.path(), gauges()).list().is_empty());
    }

    #[test]
    fn a_file_larger_than_a_full_store_is_set_aside_unread() {
        let dir = tempfile::tempdir().unwrap();
        // Valid JSON (trailing blanks are), but bigger than any store this code writes.
        let mut text = String::from(r#"{"next_id": 1, "overrides": []}"#);
        text.push_str(&" ".repeat(usize::try_from(MAX_FILE_BYTES).unwrap()));
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let store = OverrideStore::open(dir.path(), gauges());
        assert!(store.list().is_empty());
        assert!(dir.path().join("overrides.json.bad").exists());
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_the_store_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{ not json").unwrap();
        let store = OverrideStore::open(dir.path(), gauges());
        assert!(store.list().is_empty());
        let aside = std::fs::read_to_string(dir.path().join("overrides.json.bad")).unwrap();
        assert_eq!(aside, "{ not json");
        // The next change writes a good file again.
        store
            .add(pause_for("tablet", None), Timestamp::now())
            .unwrap();
        assert_eq!(OverrideStore::open(dir.path(), gauges()).list().len(), 1);
    }

    #[test]
    fn stored_entries_are_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"next_id": 1, "overrides": [
            {"id": 7, "kind": "allow", "names": ["Graph.Oculus.COM."], "created": "2026-12-07T10:00:00Z"},
            {"id": 8, "kind": "block", "names": ["not a name"], "created": "2026-12-07T10:00:00Z"},
            {"id": 9, "kind": "pause", "device": "a", "profile": "b", "created": "2026-12-07T10:00:00Z"}
        ]}"#;
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let store = OverrideStore::open(dir.path(), gauges());
        let kept = store.list();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].names, vec!["graph.oculus.com".to_owned()]);
        let next = store.add(pause_for("tv", None), Timestamp::now()).unwrap();
        assert_eq!(next.id, 8, "ids continue after the highest stored one");
    }

    #[test]
    fn opening_a_store_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(OverrideStore::open(dir.path(), gauges()));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn opening_a_store_whose_overrides_expired_rewrites_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let an_hour_ago = Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap();
        let expired = an_hour_ago
            .checked_add(jiff::SignedDuration::from_mins(1))
            .unwrap();
        OverrideStore::open(dir.path(), gauges())
            .add(pause_for("tablet", Some(expired)), an_hour_ago)
            .unwrap();
        let path = dir.path().join(FILE_NAME);
        let saved = std::fs::read(&path).unwrap();
        let store = OverrideStore::open(dir.path(), gauges());
        assert!(
            store.active().is_empty(),
            "the expired pause is not in force"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            saved,
            "the file was rewritten"
        );
    }

    #[test]
    fn a_link_planted_as_the_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, r#"{"next_id": 1, "overrides": []}"#).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(FILE_NAME)).unwrap();
        let store = OverrideStore::open(dir.path(), gauges());
        store
            .add(pause_for("tablet", None), Timestamp::now())
            .unwrap();
        let untouched = std::fs::read_to_string(&elsewhere).unwrap();
        assert_eq!(untouched, r#"{"next_id": 1, "overrides": []}"#);
    }

    #[test]
    fn the_store_is_capped() {
        let store = OverrideStore::in_memory();
        let now = Timestamp::now();
        for _ in 0..MAX_OVERRIDES {
            store.add(pause_for("tablet", None), now).unwrap();
        }
        assert!(matches!(
            store.add(pause_for("tablet", None), now),
            Err(AddError::Full)
        ));
    }
}
