//! The on-disk copies of downloaded lists, under `<state_dir>/lists/`, so a restart blocks
//! from the last good copy without waiting for the network.
//!
//! Each URL has two files named after it: the body as downloaded, and a small JSON record of
//! its validators (ETag, Last-Modified) and size for conditional refreshes. Both are written to
//! a temporary file first, synced to the disk and renamed into place, body first, so a crash or
//! a power cut never leaves a torn copy, nor a meta file describing a body the disk never got.
//! Every write has a temporary file of its own: two writes sharing one could rename each
//! other's bytes into place (a list body holding JSON).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What we know about a stored copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    /// The `ETag` the server sent with it.
    pub etag: Option<String>,
    /// The `Last-Modified` the server sent with it.
    pub last_modified: Option<String>,
    /// When it was last fetched or confirmed unchanged (seconds since the Unix epoch).
    pub fetched_at: u64,
    /// Its size.
    pub bytes: u64,
}

impl StoredMeta {
    /// `fetched_at` as a time, or `None` when no clock can show it (a corrupt meta file).
    pub fn fetched_time(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.fetched_at))
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The directory of stored copies.
#[derive(Clone, Debug)]
pub struct ListStore {
    dir: PathBuf,
}

impl ListStore {
    /// The store under `state_dir` (created on the first write).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("lists"),
        }
    }

    /// Removes the temporary files of writes that never finished (the process died between
    /// writing and renaming). Each write names its own, so nothing else would ever replace
    /// them; call it only while nothing writes to the store, i.e. at start-up.
    pub fn remove_unfinished_writes(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let leftovers = entries.flatten().map(|entry| entry.path()).filter(|path| {
            path.extension()
                .is_some_and(|end| end == TEMPORARY_EXTENSION)
        });
        for path in leftovers {
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove an unfinished write");
            }
        }
    }

    /// The stored body of `url`, if there is one.
    pub fn load(&self, url: &str) -> io::Result<Option<Vec<u8>>> {
        if_found(fs::read(self.body_path(url)))
    }

    /// Whether a body of `url` is stored, without reading it.
    pub fn has_body(&self, url: &str) -> bool {
        self.body_path(url).is_file()
    }

    /// The stored body of `url` opened for reading, if there is one (big lists are streamed).
    pub fn open(&self, url: &str) -> io::Result<Option<fs::File>> {
        if_found(fs::File::open(self.body_path(url)))
    }

    /// The size of the stored body of `url`, if there is one, without reading it.
    pub fn body_len(&self, url: &str) -> io::Result<Option<u64>> {
        if_found(fs::metadata(self.body_path(url)).map(|metadata| metadata.len()))
    }

    /// The validators of the stored copy of `url`, if there is one.
    pub fn meta(&self, url: &str) -> Option<StoredMeta> {
        let text = fs::read(self.meta_path(url)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Replaces the stored copy of `url`.
    pub fn save(&self, url: &str, body: &[u8], meta: &StoredMeta) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        // The body is on the disk before the meta is written: a meta that survives a power
        // cut describes a whole body, so its validators never keep a cut one (a 304 would).
        write_atomically(&self.body_path(url), body)?;
        self.save_meta(url, meta)
    }

    /// Replaces only the validators (after a `304 Not Modified`).
    pub fn save_meta(&self, url: &str, meta: &StoredMeta) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        write_atomically(&self.meta_path(url), &json)
    }

    fn body_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.txt", file_stem(url)))
    }

    fn meta_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(url)))
    }
}

/// A file name a person can recognise (the URL's letters and digits) that is still unique
/// (a 64-bit FNV-1a hash of the whole URL).
fn file_stem(url: &str) -> String {
    let readable: String = url
        .split("://")
        .last()
        .unwrap_or(url)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{readable}-{hash:016x}")
}

/// How the temporary files of unfinished writes end.
const TEMPORARY_EXTENSION: &str = "tmp";

/// `Ok(None)` for a file that is not there, the result otherwise.
fn if_found<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes `bytes` to a temporary file beside `path` (the same directory, so the rename is
/// atomic), syncs it, renames it into place and syncs the directory: readers see the old copy
/// or the new one, never a part, and so does the next start after a power cut.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    // Without the sync the rename may reach the disk before the data: after a power cut the
    // name would hold an empty or cut file, and the old copy would be gone.
    let written = write_synced(&temporary, bytes).and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        // Best effort: a full disk is the usual cause, and the leftover would only add to it.
        let _ = fs::remove_file(&temporary);
    }
    written?;
    sync_directory(path);
    Ok(())
}

/// Creates `path` holding `bytes`, and returns once the disk has them.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so a rename into it is on the disk before the next
/// write starts (the body's rename before the meta's).
///
/// A failure is logged, not returned: the new file is already in place for every reader, so
/// calling the write failed would be untrue (and would leave a new body beside the old meta),
/// and on a file system that cannot sync directories no list could ever be updated. Should a
/// power cut then pair a meta with the wrong body, the size check before a conditional
/// refresh catches it.
fn sync_directory(path: &Path) {
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Err(error) = fs::File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::warn!(
            path = %dir.display(),
            %error,
            "cannot sync the list store's directory; a power cut may undo the last write"
        );
    }
}

/// A temporary name for a write to `path` that no other write uses: the file name, this
/// process's id (another process on the same state directory) and a counter (another write in
/// this one, such as the body and the meta of one URL, or two refreshes of it at once).
fn temporary_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(format!(
        ".{}.{write}.{TEMPORARY_EXTENSION}",
        std::process::id()
    ));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_body_and_validators() {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let url = "https://lists.example/hosts?x=1";
        assert_eq!(store.load(url).unwrap(), None);
        assert!(!store.has_body(url));
        assert_eq!(store.body_len(url).unwrap(), None);
        assert_eq!(store.meta(url), None);
        let meta = StoredMeta {
            etag: Some("\"v1\"".into()),
            last_modified: None,
            fetched_at: 42,
            bytes: 12,
        };
        store.save(url, b"ads.example\n", &meta).unwrap();
        assert_eq!(
            store.load(url).unwrap().as_deref(),
            Some(&b"ads.example\n"[..])
        );
        assert!(store.has_body(url));
        assert_eq!(store.body_len(url).unwrap(), Some(12));
        assert_eq!(store.meta(url), Some(meta));
        assert_eq!(store.load("https://lists.example/other").unwrap(), None);
    }

    #[test]
    fn fetch_times_past_any_clock_are_none() {
        let meta = |fetched_at| StoredMeta {
            fetched_at,
            ..StoredMeta::default()
        };
        assert_eq!(
            meta(42).fetched_time(),
            Some(UNIX_EPOCH + Duration::from_secs(42))
        );
        assert_eq!(meta(u64::MAX).fetched_time(), None);
    }

    #[test]
    fn every_write_has_a_temporary_file_of_its_own() {
        let dir = Path::new("/state/lists");
        let body = temporary_path(&dir.join("x-1.txt"));
        let meta = temporary_path(&dir.join("x-1.json"));
        let again = temporary_path(&dir.join("x-1.txt"));
        assert_ne!(body, meta);
        assert_ne!(body, again);
        for path in [&body, &meta, &again] {
            assert_eq!(path.parent(), Some(dir), "{path:?}");
            assert_eq!(path.extension().unwrap(), TEMPORARY_EXTENSION, "{path:?}");
        }
    }

    #[test]
    fn writes_of_one_url_at_once_never_mix_body_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let url = "https://lists.example/hosts";
        let writers: Vec<_> = (0..4_u64)
            .map(|writer| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let body = format!("ads-{writer}.example\n").repeat(500);
                    let meta = StoredMeta {
                        etag: Some(format!("\"{writer}\"")),
                        bytes: body.len() as u64,
                        ..StoredMeta::default()
                    };
                    for _ in 0..100 {
                        store.save(url, body.as_bytes(), &meta).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        // Whichever write won, the body is one writer's, whole.
        let body = String::from_utf8(store.load(url).unwrap().unwrap()).unwrap();
        let first = body.lines().next().unwrap().to_owned();
        assert!(first.starts_with("ads-"), "{first}");
        assert_eq!(body, format!("{first}\n").repeat(500));
        assert!(store.meta(url).is_some());
        let stem = file_stem(url);
        assert_eq!(
            file_names(&store),
            [format!("{stem}.json"), format!("{stem}.txt")]
        );
    }

    #[test]
    fn unfinished_writes_are_removed_and_copies_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        store.remove_unfinished_writes(); // no directory yet: nothing to do
        let url = "https://lists.example/hosts";
        store
            .save(url, b"ads.example\n", &StoredMeta::default())
            .unwrap();
        let stem = file_stem(url);
        for leftover in [format!("{stem}.txt.17.3.tmp"), format!("{stem}.tmp")] {
            fs::write(dir.path().join("lists").join(leftover), b"half a li").unwrap();
        }
        store.remove_unfinished_writes();
        assert_eq!(
            file_names(&store),
            [format!("{stem}.json"), format!("{stem}.txt")]
        );
        assert_eq!(
            store.load(url).unwrap().as_deref(),
            Some(&b"ads.example\n"[..])
        );
    }

    /// The names in the store's directory, sorted.
    fn file_names(store: &ListStore) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(&store.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_names_are_readable_and_distinct() {
        let a = file_stem("https://lists.example/a.txt");
        let b = file_stem("http://lists.example/a.txt");
        assert!(a.starts_with("lists.example_a.txt-"), "{a}");
        assert_ne!(a, b);
    }
}
