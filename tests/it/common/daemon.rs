//! The real daemon, started in-process from a config text on loopback ports the OS picks, plus
//! a small HTTP client for `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use metasink::app::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running daemon and the directory its config lives in.
pub struct TestDaemon {
    /// The daemon.
    pub daemon: Daemon,
    /// Where to send DNS queries (UDP and TCP).
    pub dns: SocketAddr,
    /// Where `/metrics` and `/healthz` are served.
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

/// The `[server]` table every test daemon gets unless its config has one: loopback, OS ports,
/// and a state directory inside the test's own (observe and the query log are kept there).
const TEST_SERVER: &str =
    "\n[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nstate_dir = \"state\"\n";

/// The upstream of test daemons whose config names none: the discard port on loopback, where
/// nothing listens.
const NO_UPSTREAM: &str = "\n[[upstream]]\naddress = \"127.0.0.1:9\"\n";

impl TestDaemon {
    /// Writes `config` (plus a loopback `[server]` table and upstream when it has none) to a fresh
    /// directory, with `files` (name, contents) beside it, and starts the daemon on it.
    pub async fn start_with_files(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config, files).await
    }

    /// [`Self::start_with_files`] in a directory the test prepared (e.g. with a state dir).
    pub async fn start_in(dir: tempfile::TempDir, config: &str, files: &[(&str, &str)]) -> Self {
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write test file");
        }
        let mut text = config.to_owned();
        if !config.contains("[server]") {
            text.push_str(TEST_SERVER);
        }
        // Without an [[upstream]] the daemon would use /etc/resolv.conf: tests never leave
        // loopback, so they get a port where nothing listens instead.
        if !config.contains("[[upstream]]") {
            text.push_str(NO_UPSTREAM);
        }
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        let settings = metasink::config::load(&path).unwrap_or_else(|e| panic!("test config: {e}"));
        // A config with its own [server] table gets no loopback ports from us: without
        // `listen` and `http` it would take the daemon's fixed defaults, which tests running
        // side by side (or a daemon the developer runs) already hold.
        assert!(
            !settings
                .server
                .listen
                .contains(&metasink::config::DEFAULT_DNS_LISTEN)
                && settings.server.http != metasink::config::DEFAULT_HTTP_LISTEN,
            "a test config's [server] must set listen and http (\"127.0.0.1:0\")"
        );
        let daemon = Daemon::start(settings).await.expect("daemon starts");
        let (dns, http) = (daemon.dns_addr(), daemon.http_addr());
        Self {
            daemon,
            dns,
            http,
            dir,
        }
    }

    /// [`Self::start_with_files`] without extra files.
    pub async fn start(config: &str) -> Self {
        Self::start_with_files(config, &[]).await
    }

    /// The directory holding the config file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }

    /// Sends an empty `POST path` to the API with bearer `token`, without reading the
    /// response (see [`http_send`]).
    pub async fn post_with(&self, token: &str, path: &str) -> TcpStream {
        let auth = format!("Bearer {token}");
        http_send(self.http, "POST", path, &[("Authorization", &auth)], "").await
    }

    /// Stops the daemon.
    pub async fn stop(self) {
        self.daemon.shutdown().await;
    }

    /// Stops the daemon and hands back its directory (config and state), for a restart with
    /// [`Self::start_in`].
    pub async fn stop_keeping_dir(self) -> tempfile::TempDir {
        self.daemon.shutdown().await;
        self.dir
    }
}

/// `GET path` over HTTP/1.1; returns (status code, body).
pub async fn http_get(server: SocketAddr, path: &str) -> (u16, String) {
    http_request(server, "GET", path, &[], "").await
}

/// Sends one HTTP/1.1 request with `Connection: close`; returns (status code, body).
pub async fn http_request(
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http_response(http_send(server, method, path, headers, body).await).await
}

/// Reads the response to a request sent with [`http_send`]: (status code, body).
pub async fn http_response(mut stream: TcpStream) -> (u16, String) {
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read HTTP response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// Sends one HTTP/1.1 request with `Connection: close` and returns the connection without
/// reading anything: a test can read the response, or drop the stream to hang up early.
pub async fn http_send(
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.expect("connect HTTP");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send HTTP request");
    stream
}

/// The value of the sample `series` (name with its labels exactly as exposed, e.g.
/// `metasink_cache_hits_total` or `metasink_queries_total{device="quest",...}`); panics naming the series when it is absent, so a renamed metric fails the test.
pub fn metric(text: &str, series: &str) -> f64 {
    metric_if_present(text, series)
        .unwrap_or_else(|| panic!("series `{series}` is missing from /metrics:\n{text}"))
}

/// The value of `series`, or `None` when /metrics has no such series (a renamed metric, or a
/// label combination not created yet). [`metric`] is the one to use unless absence is expected.
pub fn metric_if_present(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}
