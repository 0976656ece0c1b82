//! Live reload: re-read the config file and every list, build a new policy snapshot off the
//! query path, and swap it in atomically; a config with an error is refused and the running
//! policy stays.
//!
//! Triggers are SIGHUP and `POST /api/reload` (config and lists) and finished list downloads
//! (lists only). Rebuilds are serialised, so two triggers never race to swap. Queries in
//! flight keep the snapshot they started with: the swap only changes what the next query
//! loads.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::config::{self, ConfigError, ListSource, Origin, Settings};
use crate::lists::store::ListStore;
use crate::metrics::Metrics;
use crate::net::allowed;
use crate::policy::{self, PolicyHandle};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file has an error (the same message `metasink check` prints).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building the snapshot panicked or was cancelled (a bug; the old policy stays).
    #[error("building the new policy failed: {0}")]
    Build(String),
    /// A list the running policy has could not be read for the new one (a file removed, or
    /// caught half-written): swapping would drop a good list.
    #[error("list {id} could not be read ({reason}); it stays as it was")]
    ListUnreadable {
        /// The list's id.
        id: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A trusted forwarder the running `allow_from` refuses (the file widened `allow_from`
    /// for it, which takes a restart): trusting it now would change nothing but mislead.
    #[error(
        "trusted forwarder {0} is outside the server.allow_from in force (changing allow_from \
         takes a restart): restart metasink to apply this config"
    )]
    ForwarderNotAllowed(std::net::IpAddr),
}

/// Rebuilds and swaps the policy.
pub struct Reloader {
    /// The settings the current snapshot was built from; the lock serialises rebuilds.
    settings: Mutex<Settings>,
    policy: PolicyHandle,
    metrics: Arc<Metrics>,
    /// Poked by every config reload that took effect, for [`Self::config_changed`].
    config_changed: Notify,
}

impl Reloader {
    /// A reloader for the daemon started with `settings`, whose snapshot is in `policy`.
    pub fn new(settings: Settings, policy: PolicyHandle, metrics: Arc<Metrics>) -> Self {
        Self {
            settings: Mutex::new(settings),
            policy,
            metrics,
            config_changed: Notify::new(),
        }
    }

    /// Returns once a config reload has taken effect: at once if one did since the last
    /// call returned. The refresher sleeps on this besides its timer, because the new
    /// settings may name URL lists it has no copy of (added, or given a new URL), and those
    /// are not loaded until downloaded. One waiter only: the refresher's loop.
    pub async fn config_changed(&self) {
        self.config_changed.notified().await;
    }

    /// The settings in force.
    pub async fn settings(&self) -> Settings {
        self.settings.lock().await.clone()
    }

    /// Re-reads the config file (if the daemon runs from one) and every list, then swaps.
    /// Returns the new generation.
    pub async fn reload_config(&self) -> Result<u64, ReloadError> {
        let mut current = self.settings.lock().await;
        let result = match &current.origin {
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || config::load(&path))
                    .await
                    .map_err(|error| ReloadError::Build(error.to_string()))
                    .and_then(|loaded| loaded.map_err(ReloadError::from))
            }
            Origin::BuiltIn => Ok(current.clone()),
        };
        let outcome = match result {
            Ok(mut settings) => {
                keep_restart_only_settings(&current, &mut settings);
                let generation = match refused_forwarder(&settings) {
                    Some(forwarder) => Err(ReloadError::ForwarderNotAllowed(forwarder)),
                    None => self.swap(&settings).await,
                };
                // Only settings a snapshot was built from become the ones in force: a list
                // refresh rebuilds from them next.
                if generation.is_ok() {
                    *current = settings;
                    // `notify_one` keeps a permit while the refresher is busy downloading
                    // (not waiting), so a reload then is not missed: it re-reads the settings
                    // when it next goes to sleep.
                    self.config_changed.notify_one();
                }
                generation
            }
            Err(error) => Err(error),
        };
        let label = if outcome.is_ok() {
            "success"
        } else {
            "failure"
        };
        self.metrics.count_config_reload(label);
        match &outcome {
            Ok(generation) => info!(generation, "config reloaded"),
            Err(error) => warn!("reload refused, the running policy stays: {error:#}"),
        }
        outcome
    }

    /// Re-reads every list with the settings in force (after a download), then swaps.
    pub async fn reload_lists(&self) -> Result<u64, ReloadError> {
        let current = self.settings.lock().await;
        self.swap(&current).await
    }

    /// Builds the next snapshot on a blocking thread and swaps it in.
    async fn swap(&self, settings: &Settings) -> Result<u64, ReloadError> {
        let running = self.policy.load_full();
        let generation = running.generation() + 1;
        let (mut settings, metrics, base) =
            (settings.clone(), self.metrics.clone(), running.clone());
        let built = tokio::task::spawn_blocking(move || {
            keep_copies_until_downloaded(&base, &mut settings);
            policy::compile_after(&settings, &metrics, generation, Some(&base))
        })
        .await
        .map_err(|error| ReloadError::Build(error.to_string()))?;
        if let Some(lost) = lost_list(&running, &built) {
            return Err(lost);
        }
        // The previous snapshot is freed when the last query holding it finishes, usually at
        // once; hand its memory back to the system rather than keep it for the next rebuild.
        built.record_list_metrics(&self.metrics);
        drop(self.policy.swap(Arc::new(built)));
        crate::memory::release_free_memory();
        self.metrics.set_policy_generation(generation);
        Ok(generation)
    }
}

/// Listeners, upstreams, the cache, the state directory, admission and downloads are set up
/// once at start; a reload applies lists, profiles and devices. A loaded file that changes
/// the others gets a warning and the values in force: the new snapshot must read the lists
/// from the state directory the downloads go to, and the settings in force must say what
/// runs (so the next reload warns again while the file still differs).
fn keep_restart_only_settings(running: &Settings, loaded: &mut Settings) {
    fn keep<T: PartialEq + Clone>(key: &str, running: &T, loaded: &mut T) {
        if running != loaded {
            warn!("{key} changed: it takes effect after a restart");
            loaded.clone_from(running);
        }
    }
    let (old, new) = (&running.server, &mut loaded.server);
    keep("server.listen", &old.listen, &mut new.listen);
    keep("server.http", &old.http, &mut new.http);
    keep("server.state_dir", &old.state_dir, &mut new.state_dir);
    keep("server.api_token", &old.api_token, &mut new.api_token);
    keep(
        "server.allow_from / rate_limit_qps / rate_limit_burst",
        &running.admission,
        &mut loaded.admission,
    );
    keep("upstream", &running.upstreams, &mut loaded.upstreams);
    keep("cache", &running.cache, &mut loaded.cache);
    keep("download", &running.download, &mut loaded.download);
}

/// A trusted forwarder of `settings` that its (running) `allow_from` refuses. The file's own
/// check passed against the file's `allow_from`, but that one waits for a restart.
fn refused_forwarder(settings: &Settings) -> Option<std::net::IpAddr> {
    let allow_from = &settings.admission.allow_from;
    (settings.trusted_forwarders.iter())
        .find(|&&forwarder| !allowed(allow_from, forwarder))
        .copied()
}

/// Points each loaded list that `settings` gives a URL with no stored copy yet back at the
/// source `running` loaded it from, for the snapshot only.
///
/// Built from the new URL at once, the list would not load, and [`lost_list`] would refuse
/// the whole reload: every other change held back, and the new URL never downloaded, since
/// the refresher fetches the lists of the settings in force. So the snapshot keeps the old
/// copy while the settings in force name the new URL; the refresher, woken by the reload,
/// downloads it, and the rebuild after that download reads it.
fn keep_copies_until_downloaded(running: &policy::Policy, settings: &mut Settings) {
    let store = ListStore::new(&settings.server.state_dir);
    for list in &mut settings.lists {
        let ListSource::Url(url) = &list.source else {
            continue;
        };
        if store.has_body(url) {
            continue;
        }
        // Same source: its stored copy vanished, and `lost_list` refuses the swap.
        if let Some(old) = loaded_in(running, &list.id).filter(|old| old.source != list.source) {
            info!(list = %list.id, "{url} is not downloaded yet: {} stays in force until it is", old.origin);
            list.source = old.source.clone();
        }
    }
}

/// The list `id` of `running`, if it loaded there.
fn loaded_in<'a>(running: &'a policy::Policy, id: &str) -> Option<&'a policy::ListInfo> {
    running
        .lists()
        .iter()
        .find(|list| list.id == id && list.load_error.is_none())
}

/// The first list loaded in `running` that `next` has under the same id but could not read.
fn lost_list(running: &policy::Policy, next: &policy::Policy) -> Option<ReloadError> {
    next.lists().iter().find_map(|list| {
        let reason = list.load_error.as_ref()?;
        loaded_in(running, &list.id).map(|_| ReloadError::ListUnreadable {
            id: list.id.clone(),
            reason: reason.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_restart_only_settings_in_force_and_applies_the_rest() {
        let running = config::builtin_settings();
        let mut loaded = running.clone();
        loaded.server.state_dir = "/somewhere/else".into();
        loaded.server.listen = vec!["127.0.0.1:5354".parse().unwrap()];
        loaded.admission.rate_limit_qps += 1;
        loaded.download.attempts += 1;
        loaded.cache.size += 1;
        loaded.default_profile = "strict".to_owned();
        keep_restart_only_settings(&running, &mut loaded);
        // The snapshot must read lists from the directory the downloads go to.
        assert_eq!(loaded.server.state_dir, running.server.state_dir);
        assert_eq!(loaded.server.listen, running.server.listen);
        assert_eq!(loaded.admission, running.admission);
        assert_eq!(loaded.download, running.download);
        assert_eq!(loaded.cache, running.cache);
        assert_eq!(loaded.default_profile, "strict", "policy settings apply");
    }
}
