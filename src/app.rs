//! The daemon's lifecycle: build the policy from what is on disk, bind the DNS and HTTP
//! listeners, start the list refresher, serve (reloading on SIGHUP) until told to stop, then
//! stop in order: DNS first (queries in flight finish), then HTTP, then background tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, ApiState};
use crate::cache::Cache;
use crate::config::Settings;
use crate::dns::{DnsServer, DnsService, Upstreams};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::policy::{self, PolicyHandle};
use crate::refresh::Refresher;
use crate::reload::Reloader;

/// A running daemon.
pub struct Daemon {
    dns: DnsServer,
    http_addr: SocketAddr,
    http: JoinHandle<()>,
    http_shutdown: CancellationToken,
    background: CancellationToken,
    refresh_task: JoinHandle<()>,
    policy: PolicyHandle,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    refresher: Arc<Refresher>,
}

impl Daemon {
    /// Builds everything from `settings` and starts serving. Returns once every listener is
    /// bound.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        // Built from bundled lists, files and stored downloads only: start-up never waits on
        // the network.
        let first = policy::compile(&settings, &metrics, 1);
        let policy: PolicyHandle = Arc::new(ArcSwap::from_pointee(first));
        metrics.set_policy_generation(1);
        let reloader = Arc::new(Reloader::new(
            settings.clone(),
            policy.clone(),
            metrics.clone(),
        ));
        let refresher = Arc::new(Refresher::new(&settings, reloader.clone(), metrics.clone()));
        let upstreams =
            Upstreams::new(&settings.upstreams, &metrics).map_err(anyhow::Error::msg)?;
        if settings.upstreams.is_empty() {
            tracing::warn!("no upstream configured: every name that is not blocked gets SERVFAIL");
        }
        let cache = Cache::new(&settings.cache, metrics.cache());
        let pipeline = Pipeline::new(cache, upstreams);
        let service = DnsService::new(policy.clone(), pipeline, metrics.request_durations());
        let dns = DnsServer::bind(&settings.server.listen, service)
            .await
            .with_context(|| format!("binding DNS listeners {:?}", settings.server.listen))?;

        let listener = TcpListener::bind(settings.server.http)
            .await
            .with_context(|| format!("binding HTTP listener {}", settings.server.http))?;
        let http_addr = listener.local_addr()?;
        info!("listening for HTTP on {http_addr}");
        let router = api::router(ApiState {
            metrics: metrics.clone(),
            policy: policy.clone(),
            reloader: reloader.clone(),
            refresher: refresher.clone(),
            api_token: settings.server.api_token.as_deref().map(Arc::from),
        });
        let http_shutdown = CancellationToken::new();
        let http = tokio::spawn(api::serve(listener, router, http_shutdown.clone()));
        let background = CancellationToken::new();
        let refresh_task = tokio::spawn(refresher.clone().run(background.clone()));
        Ok(Self {
            dns,
            http_addr,
            http,
            http_shutdown,
            background,
            refresh_task,
            policy,
            metrics,
            reloader,
            refresher,
        })
    }

    /// The first DNS address bound (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.local_addrs[0]
    }

    /// Every DNS address bound.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns.local_addrs
    }

    /// The HTTP address bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The current policy.
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Rebuilds the policy (what SIGHUP and `POST /api/reload` do).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Downloads URL lists (what `POST /api/lists/refresh` does).
    pub fn refresher(&self) -> &Arc<Refresher> {
        &self.refresher
    }

    /// Stops the DNS listeners (letting queries in flight finish), then the HTTP listener,
    /// then background tasks.
    pub async fn shutdown(self) {
        self.dns.shutdown().await;
        self.http_shutdown.cancel();
        let _ = self.http.await;
        self.background.cancel();
        let _ = self.refresh_task.await;
        info!("stopped");
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let daemon = Daemon::start(settings).await?;
    // Tell systemd (Type=notify) we are serving; a no-op when not started by systemd.
    notify_systemd(sd_notify::NotifyState::Ready);
    serve_signals(&daemon).await?;
    info!("stopping");
    notify_systemd(sd_notify::NotifyState::Stopping);
    daemon.shutdown().await;
    Ok(())
}

fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!(%error, "notifying systemd");
    }
}

/// Reloads on SIGHUP; returns on SIGINT or SIGTERM.
async fn serve_signals(daemon: &Daemon) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading");
                // A refused reload is logged and counted by the reloader; the old policy stays.
                let _ = daemon.reloader.reload_config().await;
            }
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        }
    }
}
