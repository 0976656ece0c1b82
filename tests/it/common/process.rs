//! The `metasink` binary run as a separate process, for what only a process has: signals
//! (SIGHUP reload, SIGTERM stop) and its exit status.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `metasink run`; killed when dropped.
pub struct DaemonProcess {
    child: Child,
    /// Its DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// What it logged until it was listening.
    pub startup_log: Vec<String>,
}

impl DaemonProcess {
    /// Starts `metasink run --config <config>` and waits for its listening lines.
    pub fn start(config: &Path) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_metasink")), config)
    }

    /// [`Self::start`] with at most `limit` open files (soft and hard `RLIMIT_NOFILE`), set
    /// by util-linux's `prlimit`, which then runs the daemon in its place.
    pub fn start_with_fd_limit(config: &Path, limit: u64) -> Self {
        let mut prlimit = Command::new("prlimit");
        prlimit.arg(format!("--nofile={limit}:{limit}"));
        prlimit.arg(env!("CARGO_BIN_EXE_metasink"));
        Self::spawn(prlimit, config)
    }

    /// Runs `program` with the arguments of `metasink run --config <config>`.
    fn spawn(mut program: Command, config: &Path) -> Self {
        let mut child = program
            .args(["run", "--config", config.to_str().expect("UTF-8 path")])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn metasink run");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (mut dns, mut http) = (None, None);
        let mut startup_log = Vec::new();
        let mut lines = stderr.lines();
        for line in lines.by_ref() {
            let line = line.expect("read stderr");
            startup_log.push(line.clone());
            let address = |marker: &str| {
                line.split(marker)
                    .nth(1)
                    .map(|a| a.trim().parse().expect("address"))
            };
            dns = dns.or(address("listening for UDP on "));
            http = http.or(address("listening for HTTP on "));
            if http.is_some() {
                break;
            }
        }
        // Keep draining stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            dns: dns.expect("UDP address logged"),
            http: http.expect("HTTP address logged"),
            startup_log,
        }
    }

    /// Sends `signal` (e.g. "HUP", "TERM").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
