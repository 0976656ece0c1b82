//! Keeping downloaded lists fresh: a background task that refreshes each URL list when it is
//! due (its last fetch plus `[download] interval`, plus jitter so households don't hit list
//! servers in step), the same refresh on demand for the API, and a policy rebuild whenever a
//! refresh brought a new copy. A config reload wakes the task, so a list it adds (or points
//! at a new URL) is downloaded at once rather than at the task's next timer.
//!
//! Start-up never waits for any of this: the policy is built from the stored copies first,
//! and a list without one is reported as not loaded until its first download lands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{ListSource, Settings};
use crate::lists::download::{Downloader, RefreshError, Refreshed};
use crate::lists::store::{ListStore, unix_now};
use crate::metrics::Metrics;
use crate::reload::Reloader;

/// After a failed refresh, the next try comes this soon (or at the normal interval, if that
/// is sooner), so a list that never downloaded does not wait a whole day.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15 * 60);

/// How one list's refresh went, as the API reports it.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// The list id.
    pub list: String,
    /// `updated`, `not_modified` or `failed`.
    pub result: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Refreshes URL lists.
pub struct Refresher {
    /// The HTTP client, or why there is none.
    downloader: Result<Downloader, String>,
    store: ListStore,
    interval: Duration,
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    /// When each URL last failed, for the retry delay.
    failures: Mutex<HashMap<String, SystemTime>>,
    /// Makes this daemon's jitter differ from other installations'.
    jitter_seed: u64,
}

impl Refresher {
    /// A refresher for the URL lists of `settings` (and of later reloads).
    ///
    /// Never fails: without an HTTP client (no TLS trust roots on the machine) the daemon
    /// still runs, every refresh reports why, and lists keep their stored copies.
    pub fn new(settings: &Settings, reloader: Arc<Reloader>, metrics: Arc<Metrics>) -> Self {
        let store = ListStore::new(&settings.server.state_dir);
        // Before any download starts, so none of them loses its temporary file.
        store.remove_unfinished_writes();
        for (id, url) in url_lists(settings) {
            if let Some(meta) = store.meta(&url) {
                metrics.record_stored_list(&id, meta.bytes, meta.fetched_at);
            }
        }
        let downloader = Downloader::new(&settings.download, store.clone()).map_err(|error| {
            warn!("lists cannot be downloaded: {error}");
            error.to_string()
        });
        Self {
            downloader,
            store,
            interval: settings.download.interval,
            reloader,
            metrics,
            failures: Mutex::new(HashMap::new()),
            jitter_seed: fastrand::u64(..),
        }
    }

    /// Refreshes every URL list now, or only `only`; rebuilds the policy if any changed.
    pub async fn refresh_now(&self, only: Option<&str>) -> Result<Vec<RefreshReport>, String> {
        let settings = self.reloader.settings().await;
        let lists = url_lists(&settings);
        let chosen: Vec<_> = match only {
            None => lists,
            Some(id) => {
                let found: Vec<_> = lists
                    .iter()
                    .filter(|(list, _)| list == id)
                    .cloned()
                    .collect();
                if found.is_empty() {
                    let ids: Vec<_> = lists.iter().map(|(list, _)| list.as_str()).collect();
                    return Err(format!(
                        "no downloaded list is called {id:?} (valid choices: {})",
                        ids.join(", ")
                    ));
                }
                found
            }
        };
        Ok(self.refresh(chosen).await)
    }

    /// Refreshes lists as they fall due until `shutdown`, which also stops a refresh under
    /// way (the daemon is not held up by a slow list server).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let settings = self.reloader.settings().await;
            let now = SystemTime::now();
            let (due, later): (Vec<_>, Vec<_>) = url_lists(&settings)
                .into_iter()
                .map(|(id, url)| {
                    let when = self.next_due(&url, now);
                    ((id, url), when)
                })
                .partition(|(_, when)| *when <= now);
            if !due.is_empty() {
                // A refresh can take attempts × timeout plus the back-off: minutes. Shutdown
                // drops it where it is. What is on disk stays whole: every file is replaced by
                // a rename, and a write already on the blocking pool runs to its end.
                tokio::select! {
                    _ = self.refresh(due.into_iter().map(|(list, _)| list).collect()) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            // Wake at the next due time, or when a reload may have brought lists without a
            // copy yet (the loop then downloads only those: the others are not due). The
            // sleep runs on the monotonic clock and due times are wall-clock ones, so wake at
            // least hourly too: a clock set forward (a Pi without a battery-backed clock
            // getting NTP time after boot) delays a refresh by an hour at most.
            let next = later.iter().map(|(_, when)| *when).min();
            let wait = next
                .and_then(|when| when.duration_since(now).ok())
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.reloader.config_changed() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// When `url` should next be fetched, seen at `now`.
    fn next_due(&self, url: &str, now: SystemTime) -> SystemTime {
        let failed = self
            .failures
            .lock()
            .ok()
            .and_then(|failures| failures.get(url).copied());
        // A fetch time no clock can show, or one still to come (a corrupt meta file, or a clock
        // that was wrong when it was written), says nothing: the list counts as never fetched,
        // so it is refreshed now rather than never, and that refresh stores a sound time. So
        // does a body that is gone or not the size its meta says (cut by a power failure):
        // waiting for the next scheduled refresh would block from half a list for a day.
        let fetched = self
            .store
            .meta(url)
            .filter(|meta| matches!(self.store.body_len(url), Ok(Some(len)) if len == meta.bytes))
            .and_then(|meta| meta.fetched_time())
            .filter(|fetched| *fetched <= now);
        let due = match (fetched, failed) {
            (_, Some(failed)) if fetched.is_none_or(|fetched| failed > fetched) => {
                failed.checked_add(RETRY_AFTER_FAILURE.min(self.interval))
            }
            (Some(fetched), _) => fetched.checked_add(self.interval.saturating_add(jitter(
                self.interval,
                url,
                self.jitter_seed,
            ))),
            (None, _) => None,
        };
        // `None` past the end of time too: due now beats a panic that ends the refresher.
        due.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Refreshes `lists` (id, url) concurrently, records the outcomes, and rebuilds the
    /// policy when a new copy arrived.
    async fn refresh(&self, lists: Vec<(String, String)>) -> Vec<RefreshReport> {
        let runs = lists
            .iter()
            .map(|(id, url)| async move { (id, url, self.download(id, url).await) });
        let mut reports = Vec::with_capacity(lists.len());
        let mut updated = false;
        // The downloader bounds how many run at once; polling them together lets it.
        for (id, url, result) in join_all(runs).await {
            let report = match result {
                Ok(Refreshed::Updated { bytes, .. }) => {
                    updated = true;
                    self.metrics
                        .record_list_refresh(id, Some(bytes), unix_now());
                    self.forget_failure(url);
                    RefreshReport {
                        list: id.clone(),
                        result: "updated",
                        error: None,
                    }
                }
                Ok(Refreshed::NotModified) => {
                    self.metrics.record_list_refresh(id, None, unix_now());
                    self.forget_failure(url);
                    RefreshReport {
                        list: id.clone(),
                        result: "not_modified",
                        error: None,
                    }
                }
                Err(error) => {
                    self.metrics.count_list_refresh_error(id, error.reason());
                    if let Ok(mut failures) = self.failures.lock() {
                        failures.insert(url.clone(), SystemTime::now());
                    }
                    RefreshReport {
                        list: id.clone(),
                        result: "failed",
                        error: Some(error.to_string()),
                    }
                }
            };
            reports.push(report);
        }
        let rebuilt = if updated {
            Some(self.reloader.reload_lists().await)
        } else {
            None
        };
        if let Some(Err(error)) = rebuilt {
            warn!("rebuilding the policy after a download failed: {error}");
        }
        reports
    }

    async fn download(&self, id: &str, url: &str) -> Result<Refreshed, RefreshError> {
        match &self.downloader {
            Ok(downloader) => downloader.refresh(id, url).await,
            Err(error) => Err(RefreshError::Network(error.clone())),
        }
    }

    fn forget_failure(&self, url: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(url);
        }
    }
}

/// The (id, url) of every URL list.
fn url_lists(settings: &Settings) -> Vec<(String, String)> {
    settings
        .lists
        .iter()
        .filter_map(|list| match &list.source {
            ListSource::Url(url) => Some((list.id.clone(), url.clone())),
            _ => None,
        })
        .collect()
}

/// A delay of up to a tenth of `interval`, fixed per URL for this run of the daemon (so the
/// due time does not move each time it is computed) and different between installations.
fn jitter(interval: Duration, url: &str, seed: u64) -> Duration {
    let hash = url.bytes().fold(seed, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    interval.mul_f64((hash % 1000) as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::lists::store::StoredMeta;
    use crate::policy::{self, PolicyHandle};

    const LIST: &[u8] = b"ads.example\n";

    /// A refresher for one list, `remote`, downloaded from `url` into the state directory
    /// `dir`, with `download` as its `[download]` table.
    fn refresher(dir: &Path, url: &str, download: &str) -> Arc<Refresher> {
        let text = format!(
            "[[list]]\nid = \"remote\"\nsource = \"{url}\"\n\n[download]\n{download}\n\n\
             [[upstream]]\naddress = \"127.0.0.1:9\"\n\n[server]\nstate_dir = '{}'\n",
            dir.display()
        );
        let settings = crate::config::parse(&text, &dir.join("config.toml")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let policy: PolicyHandle = Arc::new(ArcSwap::from_pointee(policy::compile(
            &settings, &metrics, 1,
        )));
        let reloader = Arc::new(Reloader::new(settings.clone(), policy, metrics.clone()));
        Arc::new(Refresher::new(&settings, reloader, metrics))
    }

    fn stored(fetched_at: u64) -> StoredMeta {
        StoredMeta {
            fetched_at,
            bytes: LIST.len() as u64,
            ..StoredMeta::default()
        }
    }

    /// A URL that is never fetched in these tests.
    const UNFETCHED_URL: &str = "http://127.0.0.1:9/list.txt";

    /// A refresher of [`UNFETCHED_URL`] in a fresh state directory, and that directory's store.
    fn scheduling() -> (tempfile::TempDir, Arc<Refresher>, ListStore) {
        let dir = tempfile::tempdir().unwrap();
        let refresher = refresher(dir.path(), UNFETCHED_URL, "");
        let store = ListStore::new(dir.path());
        (dir, refresher, store)
    }

    #[tokio::test]
    async fn a_corrupt_fetch_time_makes_a_list_due_now() {
        let (_dir, refresher, store) = scheduling();
        let (url, now) = (UNFETCHED_URL, SystemTime::now());

        // Past what a clock can show, past what the next due time can be, and far ahead: the
        // first two used to panic (ending the refresher), the last to put the list off for years.
        let ten_years = 10 * 365 * 86_400;
        for fetched_at in [u64::MAX, i64::MAX as u64, unix_now() + ten_years] {
            store.save(url, LIST, &stored(fetched_at)).unwrap();
            assert!(refresher.next_due(url, now) <= now, "{fetched_at}");
        }

        // After a failure it waits for the retry like a list never fetched: no tight loop.
        refresher.failures.lock().unwrap().insert(url.into(), now);
        assert_eq!(refresher.next_due(url, now), now + RETRY_AFTER_FAILURE);

        // A sound fetch time an hour ago: due a day after it, plus up to a tenth.
        refresher.forget_failure(url);
        store.save(url, LIST, &stored(unix_now() - 3600)).unwrap();
        let wait = refresher.next_due(url, now).duration_since(now).unwrap();
        let day = Duration::from_secs(86_400);
        assert!(wait > day * 9 / 10 && wait < day * 11 / 10, "{wait:?}");
    }

    #[tokio::test]
    async fn a_stored_body_cut_short_or_gone_makes_a_list_due_now() {
        let (dir, refresher, store) = scheduling();
        let (url, now) = (UNFETCHED_URL, SystemTime::now());
        let an_hour_ago = stored(unix_now() - 3600);

        store.save(url, LIST, &an_hour_ago).unwrap();
        assert!(
            refresher.next_due(url, now) > now,
            "a whole copy waits its turn"
        );
        store
            .save(url, &LIST[..LIST.len() / 2], &an_hour_ago)
            .unwrap();
        assert!(refresher.next_due(url, now) <= now, "half a body");
        store.save(url, LIST, &an_hour_ago).unwrap();
        for entry in std::fs::read_dir(dir.path().join("lists")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "txt") {
                std::fs::remove_file(path).unwrap();
            }
        }
        assert!(store.meta(url).is_some() && !store.has_body(url));
        assert!(refresher.next_due(url, now) <= now, "no body");
    }

    #[tokio::test]
    async fn shutdown_stops_a_refresh_under_way_and_keeps_the_stored_copy() {
        // A list server that takes requests and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/list.txt", listener.local_addr().unwrap());
        let (connected, mut requested) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                let _ = connected.send(());
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        store.save(&url, LIST, &stored(7)).unwrap();
        // With these, the refresh alone would take over three minutes.
        let refresher = refresher(dir.path(), &url, "timeout = \"60s\"\nattempts = 3");
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(refresher.run(shutdown.clone()));

        tokio::time::timeout(Duration::from_secs(5), requested.recv())
            .await
            .expect("the due list is requested");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), run)
            .await
            .expect("the refresher stops promptly")
            .unwrap();
        assert_eq!(store.load(&url).unwrap().as_deref(), Some(LIST));
        assert_eq!(store.meta(&url), Some(stored(7)));
    }
}
