//! Live reload: re-read the config file and every list, build a new policy snapshot off the
//! query path, and swap it in atomically; a config with an error is refused and the running
//! policy stays.
//!
//! Triggers are SIGHUP and `POST /api/reload` (config and lists) and finished list downloads
//! (lists only). Rebuilds are serialised, so two triggers never race to swap. Queries in
//! flight keep the snapshot they started with: the swap only changes what the next query
//! loads.

use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::{self, ConfigError, Origin, Settings};
use crate::metrics::Metrics;
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
}

/// Rebuilds and swaps the policy.
pub struct Reloader {
    /// The settings the current snapshot was built from; the lock serialises rebuilds.
    settings: Mutex<Settings>,
    policy: PolicyHandle,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// A reloader for the daemon started with `settings`, whose snapshot is in `policy`.
    pub fn new(settings: Settings, policy: PolicyHandle, metrics: Arc<Metrics>) -> Self {
        Self {
            settings: Mutex::new(settings),
            policy,
            metrics,
        }
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
            Ok(settings) => {
                warn_about_restart_only_changes(&current, &settings);
                let generation = self.swap(&settings).await;
                *current = settings;
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
        let generation = self.policy.load().generation() + 1;
        let (settings, metrics) = (settings.clone(), self.metrics.clone());
        let built =
            tokio::task::spawn_blocking(move || policy::compile(&settings, &metrics, generation))
                .await
                .map_err(|error| ReloadError::Build(error.to_string()))?;
        // The previous snapshot is freed when the last query holding it finishes, usually at
        // once; hand its memory back to the system rather than keep it for the next rebuild.
        drop(self.policy.swap(Arc::new(built)));
        crate::memory::release_free_memory();
        self.metrics.set_policy_generation(generation);
        Ok(generation)
    }
}

/// Listeners, upstreams, the cache and the state directory are set up once at start; a reload
/// applies lists, profiles and devices. Say so when the file changed the others.
fn warn_about_restart_only_changes(old: &Settings, new: &Settings) {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        ("server.http", old.server.http != new.server.http),
        (
            "server.state_dir",
            old.server.state_dir != new.server.state_dir,
        ),
        (
            "server.api_token",
            old.server.api_token != new.server.api_token,
        ),
        ("upstream", old.upstreams != new.upstreams),
        (
            "cache",
            old.cache.size != new.cache.size
                || old.cache.min_ttl != new.cache.min_ttl
                || old.cache.max_ttl != new.cache.max_ttl,
        ),
    ];
    for (key, _) in changed.iter().filter(|(_, changed)| *changed) {
        warn!("{key} changed: it takes effect after a restart");
    }
}
