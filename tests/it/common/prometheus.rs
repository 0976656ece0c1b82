//! [`Prometheus`]: a real Prometheus server (Debian's `prometheus` package) scraping test
//! daemons every second, started as a process of its own with a temporary config and storage
//! directory and its HTTP API on a free loopback port; and [`promtool_check_metrics`], the
//! same package's linter for an exposition. The server stops when the value is dropped.
//!
//! A machine without the package fails the test that needs it, saying so: `.ci/run` installs
//! it, and a dashboard check that skipped itself would pass without checking anything.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long Prometheus gets to start and answer `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One series of a query's result: its labels and its value at the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its labels (`__name__` included when the result keeps it).
    pub labels: BTreeMap<String, String>,
    /// Its value (NaN for a quantile of no observations).
    pub value: f64,
}

/// A Prometheus server scraping some targets every second. Stops when dropped.
pub struct Prometheus {
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` on each of `targets` every second (job
    /// `metasink`, each target its own `instance`), and waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Self {
        let binary = installed("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: metasink\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let client = reqwest::Client::new();
        // The port is free when picked and taken a moment later: another process may win it
        // in between, so a start that fails is tried again on another port.
        for _ in 0..3 {
            let addr = free_port();
            let mut child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("prometheus log"))
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            if wait_ready(&mut child, addr, &client).await {
                return Self {
                    addr,
                    child,
                    log,
                    client,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "Prometheus did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Evaluates `expr` at Unix time `at` (`/api/v1/query`): the vector or scalar result, or
    /// Prometheus's error (a parse error names the position) with the query.
    pub async fn query(&self, expr: &str, at: f64) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}&time={at:.3}", form_encode(expr));
        let data = self
            .api(&path)
            .await
            .map_err(|e| format!("{e}\n  in `{expr}`"))?;
        let result = &data["result"];
        match data["resultType"].as_str() {
            Some("vector") => Ok(result
                .as_array()
                .expect("a vector is an array")
                .iter()
                .map(|series| Sample {
                    labels: labels(&series["metric"]),
                    value: number(&series["value"][1]),
                })
                .collect()),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: number(&result[1]),
            }]),
            other => Err(format!("unexpected result type {other:?} for `{expr}`")),
        }
    }

    /// The label sets of the series `selector` matches (`/api/v1/series`) over the last hour,
    /// as Grafana's `label_values(selector, label)` reads them.
    pub async fn series(&self, selector: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
        let now = unix_now();
        let path = format!(
            "/api/v1/series?match[]={}&start={:.3}&end={now:.3}",
            form_encode(selector),
            now - 3600.0
        );
        let data = self.api(&path).await?;
        Ok(data
            .as_array()
            .expect("series are an array")
            .iter()
            .map(labels)
            .collect())
    }

    /// Waits until Prometheus holds a successful scrape of `instance` taken after `after`
    /// (Unix time) and returns that scrape's time, or panics after `within`.
    pub async fn scrape_after(&self, instance: &str, mut after: f64, within: Duration) -> f64 {
        let started = Instant::now();
        // `timestamp()` keeps a sample's own time only when it reads a selector directly.
        let up = format!("up{{instance=\"{instance}\"}}");
        let taken = format!("timestamp({up})");
        loop {
            let last = self.query(&taken, unix_now()).await.expect("timestamp(up)");
            if let Some(at) = last
                .first()
                .map(|sample| sample.value)
                .filter(|at| *at > after)
            {
                let up = self.query(&up, at).await.expect("up");
                if up.first().map(|sample| sample.value) == Some(1.0) {
                    return at;
                }
                // A scrape that failed (a slow machine): wait for the next one.
                after = at;
            }
            assert!(
                started.elapsed() < within,
                "no scrape of {instance} after {after} within {within:?}: {last:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the server logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `data` of a successful API answer, or the error Prometheus gave.
    async fn api(&self, path_and_query: &str) -> Result<serde_json::Value, String> {
        let url = format!("http://{}{path_and_query}", self.addr);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let mut body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}: {text}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "Prometheus: {} ({})",
                body["error"].as_str().unwrap_or(&text),
                body["errorType"].as_str().unwrap_or("")
            ));
        }
        Ok(body["data"].take())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `promtool check metrics` says about the exposition `text` (its output, empty when it
/// finds nothing), with its exit status.
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(installed("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// Seconds since the Unix epoch, as Prometheus times are given.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The path of the program `name` on `PATH`; panics, saying how to get it, when it is missing.
fn installed(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: this test runs a real Prometheus. Install Debian's \
                 package (`apt-get install prometheus`, as .ci/run does)."
            )
        })
}

/// Whether the server `child` answered `/-/ready` on `addr` before it exited or
/// [`START_TIMEOUT`] passed.
async fn wait_ready(child: &mut Child, addr: SocketAddr, client: &reqwest::Client) -> bool {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let ready = client.get(format!("http://{addr}/-/ready")).send().await;
        if ready.is_ok_and(|response| response.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A loopback address with a port nothing listens on right now.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("local addr")
}

/// `text` encoded for a URL's query string (RFC 3986: unreserved characters stay).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn labels(metric: &serde_json::Value) -> BTreeMap<String, String> {
    metric
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A sample value: Prometheus sends numbers as strings ("1", "NaN", "+Inf").
fn number(value: &serde_json::Value) -> f64 {
    let text = value.as_str().unwrap_or("NaN");
    text.parse()
        .unwrap_or_else(|_| panic!("not a sample value: {text}"))
}
