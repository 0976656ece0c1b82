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
use tracing::{info, warn};

use crate::admission::Admission;
use crate::api::{self, ApiState};
use crate::cache::Cache;
use crate::config::Settings;
use crate::dns::Upstreams;
use crate::fd_budget::FdBudget;
use crate::metrics::Metrics;
use crate::overrides::OverrideStore;
use crate::permissions;
use crate::pipeline::Pipeline;
use crate::policy::{self, PolicyHandle};
use crate::records::Records;
use crate::refresh::Refresher;
use crate::reload::Reloader;
use crate::server::{DnsServer, DnsService, ServiceCounters, listener_descriptors};
use crate::slots::Slots;
use crate::state_files;

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
    records: Arc<Records>,
}

impl Daemon {
    /// Builds everything from `settings` and starts serving. Returns once every listener is
    /// bound.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        for warning in permissions::warnings(&settings) {
            warn!("{warning}");
        }
        // First, so the caps of what clients can open leave room for everything else.
        // Forward zones' upstreams as configured at start (a reload adding encrypted ones
        // spends the margin of `fd_budget::RESERVED`).
        let forward_upstreams = (settings.local.forwards.iter()).flat_map(|f| &f.upstreams);
        let budget = FdBudget::raise_and_plan(
            listener_descriptors(settings.server.listen.len()) + 1,
            Upstreams::connection_descriptors(settings.upstreams.iter().chain(forward_upstreams)),
        );
        let metrics = Arc::new(Metrics::new());
        // Built from bundled lists, files and stored downloads only: start-up never waits on
        // the network.
        let first = policy::compile(&settings, &metrics, 1);
        first.record_list_metrics(&metrics);
        let policy: PolicyHandle = Arc::new(ArcSwap::from_pointee(first));
        metrics.set_policy_generation(1);
        let reloader = Arc::new(Reloader::new(
            settings.clone(),
            policy.clone(),
            metrics.clone(),
        ));
        let refresher = Arc::new(Refresher::new(&settings, reloader.clone(), metrics.clone()));
        let upstreams = Upstreams::new(&settings.upstreams, &metrics);
        if settings.upstreams.is_empty() {
            tracing::warn!("no upstream configured: every name that is not blocked gets SERVFAIL");
        }
        let cache = Cache::new(&settings.cache, metrics.cache());
        // state_dir once, for every file kept there (overrides, observe, the query log): made
        // if missing (0750), and cleared of the temporary files a crash left mid-write.
        let state_dir = &settings.server.state_dir;
        if let Err(error) = state_files::create_dir(state_dir) {
            tracing::warn!(path = %state_dir.display(), %error, "cannot create state_dir; overrides, observe and the query log stay in memory");
        }
        state_files::remove_unfinished_writes(state_dir);
        let overrides = Arc::new(OverrideStore::open(
            &settings.server.state_dir,
            metrics.overrides_active(),
        ));
        let pipeline = Pipeline::new(cache, upstreams)
            .with_upstream_descriptors(budget.upstream_sockets)
            .with_overrides(overrides.clone());
        let admission = Admission::new(&settings.admission);
        let records = Arc::new(
            Records::start(&settings.querylog, &settings.server.state_dir, &metrics)
                .with_lease_names(policy.clone()),
        );
        let service = DnsService::new(
            policy.clone(),
            pipeline,
            admission,
            ServiceCounters::new(&metrics),
        )
        .with_records(records.clone());
        let dns = DnsServer::bind(&settings.server.listen, service, budget.tcp_connections)
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
            http_hosts: settings.server.http_hosts.clone().into(),
            overrides: overrides.clone(),
            records: records.clone(),
        });
        let http_shutdown = CancellationToken::new();
        let http_slots = Slots::new(budget.http_connections);
        let http = tokio::spawn(api::serve(
            listener,
            router,
            http_slots,
            http_shutdown.clone(),
        ));
        let background = CancellationToken::new();
        let refresh_task = tokio::spawn(refresher.clone().run(background.clone()));
        tokio::spawn(keep_time(policy.clone(), overrides, background.clone()));
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
            records,
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
    /// then background tasks. DNS is already down by then, and a restart waits for this: an
    /// HTTP client that never finishes its request, or a download that would take minutes,
    /// gets `STOP_GRACE` (2 s) and no more.
    pub async fn shutdown(mut self) {
        self.dns.shutdown().await;
        self.http_shutdown.cancel();
        finish_within_grace(&mut self.http, "HTTP connections").await;
        self.background.cancel();
        finish_within_grace(&mut self.refresh_task, "list downloads").await;
        // DNS is down: the last records are in the queue. Written (and observe saved) on the
        // records thread; this waits for it without blocking the runtime.
        let records = self.records.clone();
        if tokio::task::spawn_blocking(move || records.shutdown())
            .await
            .is_err()
        {
            warn!("saving the query log and observe table failed");
        }
        info!("stopped");
    }
}

/// Waits [`STOP_GRACE`] for `task` to end, then aborts it (`what` names it in the warning).
async fn finish_within_grace(task: &mut JoinHandle<()>, what: &str) {
    if tokio::time::timeout(STOP_GRACE, &mut *task).await.is_err() {
        warn!("{what} still running after {STOP_GRACE:?}; abandoning them");
        task.abort();
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives while the listeners come up must stop us
    // cleanly, not kill us with the default action.
    let signals = Signals::install()?;
    let daemon = Daemon::start(settings).await?;
    // Tell systemd (Type=notify) we are serving; a no-op when not started by systemd.
    notify_systemd(sd_notify::NotifyState::Ready);
    let _watchdog = Watchdog::start(daemon.dns_addr());
    signals.serve(&daemon).await;
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

/// The signals the daemon acts on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Reloads on SIGHUP; returns on SIGINT or SIGTERM.
    async fn serve(mut self, daemon: &Daemon) {
        loop {
            tokio::select! {
                _ = self.hangup.recv() => {
                    info!("SIGHUP: reloading");
                    // A refused reload is logged and counted by the reloader; the old policy stays.
                    let _ = daemon.reloader.reload_config().await;
                }
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
            }
        }
    }
}

/// systemd's watchdog (`WatchdogSec=` in the unit). When systemd asks for pings
/// (`WATCHDOG_USEC` names this process), a task pings every half interval, but only after the
/// DNS listener has answered a probe: a runtime that still schedules timers while the
/// listener is wedged would otherwise keep a resolver that answers nobody alive. Two missed
/// pings in a row and systemd restarts the service (`Restart=on-failure`). The task ends when
/// this value is dropped.
struct Watchdog(JoinHandle<()>);

impl Watchdog {
    /// `None` when systemd does not want pings (not under systemd, or no `WatchdogSec=`).
    fn start(dns: SocketAddr) -> Option<Self> {
        let mut usec = 0;
        // `false`: leave the environment alone; changing it in a threaded process is unsound.
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        let period = std::time::Duration::from_micros(usec) / 2;
        info!(?period, "pinging the systemd watchdog");
        Some(Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match probe_dns(dns, WATCHDOG_PROBE_TIMEOUT).await {
                    Ok(()) => notify_systemd(sd_notify::NotifyState::Watchdog),
                    Err(error) => {
                        tracing::warn!(%error, %dns, "DNS listener did not answer the watchdog probe; not pinging systemd");
                    }
                }
            }
        })))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Time the HTTP server and the list refresher each get to finish once DNS has stopped.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one watchdog probe waits for each of its [`WATCHDOG_PROBE_TRIES`] datagrams.
const WATCHDOG_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// A lost loopback datagram (a full socket buffer under a burst) is no reason to restart.
const WATCHDOG_PROBE_TRIES: usize = 3;

/// Asks the DNS listener at `dns` (a wildcard address probed through loopback) two things it
/// answers at once, without cache or upstream, and waits for a reply to either (any reply
/// proves the receive loop and the service are running):
/// - a header with opcode STATUS, which a client in `allow_from` gets NOTIMP for;
/// - a question of type ANY over UDP, which such a client gets TC for, and a client outside
///   `allow_from` (loopback, when the config narrows it) gets REFUSED for; malformed or
///   non-QUERY messages from such a client get no reply at all.
async fn probe_dns(dns: SocketAddr, timeout: std::time::Duration) -> std::io::Result<()> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let target = match dns.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dns.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), dns.port())
        }
        _ => dns,
    };
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    let status_id = fastrand::u16(..);
    let any_id = status_id.wrapping_add(1);
    // RFC 1035 §4.1: ID; QR=0, OPCODE=2 (STATUS), no flags; all counts zero.
    let mut status = [0u8; 12];
    status[..2].copy_from_slice(&status_id.to_be_bytes());
    status[2] = 2 << 3;
    // ID; a standard query without RD; one question: metasink-watchdog.invalid ANY IN.
    let mut any = Vec::with_capacity(44);
    any.extend_from_slice(&any_id.to_be_bytes());
    any.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    any.extend_from_slice(b"\x11metasink-watchdog\x07invalid\x00\x00\xff\x00\x01");
    let mut reply = [0u8; 512];
    for _ in 0..WATCHDOG_PROBE_TRIES {
        socket.send(&status).await?;
        socket.send(&any).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        // Replies to an earlier try may still come in: read until this try's time is up.
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut reply)).await {
            let length = received?;
            let id = [reply[0], reply[1]];
            let ours = id == status_id.to_be_bytes() || id == any_id.to_be_bytes();
            if length >= 12 && ours && reply[2] & 0x80 != 0 {
                return Ok(());
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no reply in {WATCHDOG_PROBE_TRIES} tries of {timeout:?}"),
    ))
}

/// Once a second, puts in force the profile each device's schedule gives it at the local time
/// (the system time zone, read again each time, so a daylight saving change or a new TZ is
/// followed), and drops the overrides that have ended. A tick is a clock read and a few atomic
/// stores; queries never read the clock for schedules.
async fn keep_time(policy: PolicyHandle, overrides: Arc<OverrideStore>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                let now = jiff::ZonedDateTime::now();
                policy.load().apply_schedules(now.datetime());
                overrides.sweep(now.timestamp());
            }
        }
    }
}

#[cfg(test)]
mod watchdog_tests {
    use std::time::Duration;

    use super::*;

    /// Starts a daemon listening on `listen` (no upstream; `allow_from` when given) and
    /// probes it as the watchdog does.
    async fn probe_a_daemon(listen: &str, allow_from: Option<&str>) {
        let mut settings = crate::config::builtin_settings();
        settings.server.listen = vec![listen.parse().unwrap()];
        settings.server.http = "127.0.0.1:0".parse().unwrap();
        settings.upstreams.clear();
        if let Some(network) = allow_from {
            settings.admission.allow_from = vec![network.parse().unwrap()];
        }
        let daemon = Daemon::start(settings).await.unwrap();
        probe_dns(daemon.dns_addr(), Duration::from_secs(2))
            .await
            .unwrap();
        daemon.shutdown().await;
    }

    #[tokio::test]
    async fn the_probe_is_answered_by_a_running_daemon_through_loopback() {
        probe_a_daemon("0.0.0.0:0", None).await;
    }

    #[tokio::test]
    async fn the_probe_is_answered_when_allow_from_leaves_loopback_out() {
        probe_a_daemon("127.0.0.1:0", Some("192.0.2.0/24")).await;
    }

    #[tokio::test]
    async fn a_silent_listener_fails_the_probe() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap();
        let error = probe_dns(address, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }
}
