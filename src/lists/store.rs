//! The on-disk copies of downloaded lists, under `<state_dir>/lists/`, so a restart blocks
//! from the last good copy without waiting for the network.
//!
//! Each URL has two files named after it: the body as downloaded, and a small JSON record of
//! its validators (ETag, Last-Modified) for conditional refreshes. Both are written to a
//! temporary file first and renamed into place, so a crash mid-write never leaves a torn copy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
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
    /// `fetched_at` as a time.
    pub fn fetched_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.fetched_at)
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

    /// The stored body of `url`, if there is one.
    pub fn load(&self, url: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.body_path(url)) {
            Ok(body) => Ok(Some(body)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether a body of `url` is stored, without reading it.
    pub fn has_body(&self, url: &str) -> bool {
        self.body_path(url).is_file()
    }

    /// The stored body of `url` opened for reading, if there is one (big lists are streamed).
    pub fn open(&self, url: &str) -> io::Result<Option<fs::File>> {
        match fs::File::open(self.body_path(url)) {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The validators of the stored copy of `url`, if there is one.
    pub fn meta(&self, url: &str) -> Option<StoredMeta> {
        let text = fs::read(self.meta_path(url)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Replaces the stored copy of `url`.
    pub fn save(&self, url: &str, body: &[u8], meta: &StoredMeta) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
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

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, path)
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
        assert_eq!(store.meta(url), Some(meta));
        assert_eq!(store.load("https://lists.example/other").unwrap(), None);
    }

    #[test]
    fn file_names_are_readable_and_distinct() {
        let a = file_stem("https://lists.example/a.txt");
        let b = file_stem("http://lists.example/a.txt");
        assert!(a.starts_with("lists.example_a.txt-"), "{a}");
        assert_ne!(a, b);
    }
}
