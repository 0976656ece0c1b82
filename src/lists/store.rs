//! The on-disk copies of downloaded lists, under `<state_dir>/lists/`, so a restart blocks
//! from the last good copy without waiting for the network.
//!
//! Each URL has two files named after it: the body as downloaded, and a small JSON record of
//! its validators (ETag, Last-Modified) and size for conditional refreshes. Both go through
//! [`crate::state_files`] (a fresh temporary file that is never a planted link, synced, then
//! renamed into place), body first, so a crash or a power cut never leaves a torn copy, nor a
//! meta file describing a body the disk never got. A stored file that is a link, or not a
//! regular file, is an error: never read, and replaced by the next download.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state_files;

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
        state_files::remove_unfinished_writes(&self.dir);
    }

    /// The stored body of `url`, if there is one.
    pub fn load(&self, url: &str) -> io::Result<Option<Vec<u8>>> {
        state_files::read(&self.body_path(url))
    }

    /// Whether a body of `url` is stored (a regular file), without reading it.
    pub fn has_body(&self, url: &str) -> bool {
        matches!(self.body_len(url), Ok(Some(_)))
    }

    /// The stored body of `url` opened for reading, if there is one (big lists are streamed).
    pub fn open(&self, url: &str) -> io::Result<Option<fs::File>> {
        state_files::open(&self.body_path(url))
    }

    /// The size of the stored body of `url`, if there is one, without reading it.
    pub fn body_len(&self, url: &str) -> io::Result<Option<u64>> {
        state_files::size(&self.body_path(url))
    }

    /// The validators of the stored copy of `url`, if there is one.
    pub fn meta(&self, url: &str) -> Option<StoredMeta> {
        let text = state_files::read(&self.meta_path(url)).ok()??;
        serde_json::from_slice(&text).ok()
    }

    /// Replaces the stored copy of `url`.
    pub fn save(&self, url: &str, body: &[u8], meta: &StoredMeta) -> io::Result<()> {
        state_files::create_dir(&self.dir)?;
        // The body is on the disk before the meta is written: a meta that survives a power
        // cut describes a whole body, so its validators never keep a cut one (a 304 would).
        state_files::write(&self.body_path(url), body)?;
        self.save_meta(url, meta)
    }

    /// Replaces only the validators (after a `304 Not Modified`).
    pub fn save_meta(&self, url: &str, meta: &StoredMeta) -> io::Result<()> {
        state_files::create_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        state_files::write(&self.meta_path(url), &json)
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
    fn links_planted_at_every_name_a_write_could_use_are_not_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let url = "https://lists.example/hosts";
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        fs::create_dir_all(&store.dir).unwrap();
        // The final names, and every temporary name a predictable scheme would use: the file
        // name, this process's id and a counter (`<name>.<pid>.<n>.tmp`).
        for path in [store.body_path(url), store.meta_path(url)] {
            symlink(&victim, &path).unwrap();
            for write in 0..10_000 {
                let mut name = path.file_name().unwrap().to_os_string();
                name.push(format!(".{}.{write}.tmp", std::process::id()));
                symlink(&victim, path.with_file_name(name)).unwrap();
            }
        }
        let meta = StoredMeta {
            bytes: 12,
            ..StoredMeta::default()
        };
        store.save(url, b"ads.example\n", &meta).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        assert_eq!(
            store.load(url).unwrap().as_deref(),
            Some(&b"ads.example\n"[..])
        );
        assert_eq!(store.meta(url), Some(meta));
    }

    #[test]
    fn a_stored_copy_replaced_by_a_link_is_not_read() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let url = "https://lists.example/hosts";
        let meta = StoredMeta {
            bytes: 12,
            ..StoredMeta::default()
        };
        store.save(url, b"ads.example\n", &meta).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"root:x:0:0\n").unwrap();
        for path in [store.body_path(url), store.meta_path(url)] {
            fs::remove_file(&path).unwrap();
            symlink(&secret, &path).unwrap();
        }
        assert!(store.load(url).is_err());
        assert!(store.open(url).is_err());
        assert!(store.body_len(url).is_err());
        assert!(!store.has_body(url));
        assert_eq!(store.meta(url), None);
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
