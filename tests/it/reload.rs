//! Live reload end to end: SIGHUP and `POST /api/reload` swap the policy while clients keep
//! querying; a broken config is refused and the running policy stays.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 8);
const TOKEN: &str = "reload-token-0123456789";

fn config(upstream: &TestUpstream, tablet_profile: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
api_token = "{TOKEN}"
# The client below queries as fast as it can from one address.
rate_limit_qps = 0

[[upstream]]
address = "{}"

[[profile]]
name = "open"
block = []

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "{tablet_profile}"
"#,
        upstream.addr
    )
}

async fn upstream() -> TestUpstream {
    TestUpstream::start(&[TestRecord::A("www.meta.ai", REAL, 60)]).await
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Polls until the tablet gets the real address (its new profile is in force); panics with
/// `why` after 3 s.
async fn await_tablet_unblocked(dns: std::net::SocketAddr, why: &str) {
    let started = Instant::now();
    while tablet_answer(dns).await != vec![REAL] {
        assert!(started.elapsed() < Duration::from_secs(3), "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tablet_answer(dns: std::net::SocketAddr) -> Vec<Ipv4Addr> {
    a_addrs(&query_udp_from(TABLET, dns, "www.meta.ai", RecordType::A, true).await)
}

/// Queries `name` from the tablet as fast as it can for `duration`; every query must be
/// answered with `expected`. Returns how many were sent.
async fn query_continuously(
    dns: std::net::SocketAddr,
    duration: Duration,
    expected: Ipv4Addr,
) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < duration {
        assert_eq!(
            tablet_answer(dns).await,
            vec![expected],
            "query {sent} during reloads"
        );
        sent += 1;
    }
    sent
}

/// The daemon as a process, reading a config file (in a temporary directory that lives as long
/// as the returned handle) that gives the tablet `meta-apps`: its Meta AI name is blocked.
async fn start_with_tablet_blocked() -> (TestUpstream, tempfile::TempDir, PathBuf, DaemonProcess) {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write(&path, &config(&upstream, "meta-apps"));
    let daemon = DaemonProcess::start(&path);
    assert_eq!(tablet_answer(daemon.dns).await, vec![Ipv4Addr::UNSPECIFIED]);
    (upstream, dir, path, daemon)
}

#[tokio::test]
async fn sighup_with_a_broken_config_keeps_the_running_policy_without_losing_a_query() {
    let (upstream, _dir, path, daemon) = start_with_tablet_blocked().await;

    write(
        &path,
        &format!("{}\nbogus_key = 1\n", config(&upstream, "open")),
    );
    let dns = daemon.dns;
    let client = tokio::spawn(query_continuously(
        dns,
        Duration::from_millis(800),
        Ipv4Addr::UNSPECIFIED,
    ));
    for _ in 0..3 {
        daemon.signal("HUP");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let sent = client
        .await
        .expect("every query answered and still blocked");
    assert!(sent > 10, "the client kept querying ({sent})");
    let metrics = http_get(daemon.http, "/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            r#"metasink_config_reload_total{result="failure"}"#
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "metasink_policy_generation"), 1.0);
}

#[tokio::test]
async fn sighup_with_a_valid_change_moves_a_device_to_another_profile() {
    let (upstream, _dir, path, daemon) = start_with_tablet_blocked().await;

    write(&path, &config(&upstream, "open"));
    daemon.signal("HUP");
    await_tablet_unblocked(daemon.dns, "the tablet never moved to `open`").await;
    // Once moved it stays moved: the swap is one atomic step, not a mix of old and new.
    for _ in 0..20 {
        assert_eq!(tablet_answer(daemon.dns).await, vec![REAL]);
    }
    let metrics = http_get(daemon.http, "/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            r#"metasink_config_reload_total{result="success"}"#
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "metasink_policy_generation"), 2.0);
}

#[tokio::test]
async fn the_reload_endpoint_needs_post_and_the_token_and_reports_config_errors() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "meta-apps")).await;
    let (status, _) = http_request(daemon.http, "POST", "/api/reload", &[], "").await;
    assert_eq!(status, 401, "no token");
    let wrong = [("Authorization", "Bearer reload-token-0123456780")];
    assert_eq!(post_status(&daemon, "/api/reload", &wrong).await, 401);
    assert_eq!(
        http_get(daemon.http, "/api/reload").await.0,
        405,
        "GET changes nothing"
    );
    assert_eq!(daemon.daemon.policy().load().generation(), 1);

    std::fs::write(daemon.config_path(), config(&upstream, "open")).unwrap();
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""policy_generation":2"#), "{body}");
    assert_eq!(tablet_answer(daemon.dns).await, vec![REAL]);

    std::fs::write(daemon.config_path(), config(&upstream, "no-such-profile")).unwrap();
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("device[0].profile") && body.contains("valid choices"),
        "{body}"
    );
    assert_eq!(
        tablet_answer(daemon.dns).await,
        vec![REAL],
        "the running policy stays"
    );
}

/// An empty `POST path` with the configured bearer token: (status, body).
async fn post_with_token(daemon: &TestDaemon, path: &str) -> (u16, String) {
    http_response(daemon.post_with(TOKEN, path).await).await
}

#[tokio::test]
async fn a_reload_applies_a_new_trusted_forwarder() {
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};

    let router: IpAddr = Ipv4Addr::new(127, 0, 0, 10).into();
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "open")).await;
    let naming_tablet = [EdnsOption::Subnet(ClientSubnet::new(TABLET, 32, 0))];
    let ask = || query_udp_naming(router, daemon.dns, "www.meta.ai", &naming_tablet);
    assert_eq!(
        a_addrs(&ask().await),
        vec![Ipv4Addr::UNSPECIFIED],
        "not trusted yet: the router's own (default) profile blocks Meta AI"
    );

    let trusting = config(&upstream, "open").replace(
        "rate_limit_qps = 0",
        "rate_limit_qps = 0\ntrusted_forwarders = [\"127.0.0.10\"]",
    );
    write(&daemon.config_path(), &trusting);
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        a_addrs(&ask().await),
        vec![REAL],
        "now the tablet's profile (open)"
    );
}

#[tokio::test]
async fn a_reload_cannot_trust_a_forwarder_the_running_allow_from_refuses() {
    let upstream = upstream().await;
    let with = |server_keys: &str| {
        config(&upstream, "open").replace(
            "rate_limit_qps = 0",
            &format!("rate_limit_qps = 0\n{server_keys}"),
        )
    };
    let daemon = TestDaemon::start(&with(r#"allow_from = ["127.0.0.1/32"]"#)).await;
    // Valid as a file, but allow_from waits for a restart: the router would stay refused.
    let widened = with(
        "allow_from = [\"127.0.0.1/32\", \"127.0.0.10/32\"]\ntrusted_forwarders = [\"127.0.0.10\"]",
    );
    write(&daemon.config_path(), &widened);
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.contains("trusted forwarder 127.0.0.10 is outside the server.allow_from in force"),
        "{body}"
    );
    assert_eq!(daemon.daemon.policy().load().generation(), 1);
}

#[tokio::test]
async fn a_reload_whose_client_hangs_up_still_swaps_the_policy() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "meta-apps")).await;
    assert_eq!(tablet_answer(daemon.dns).await, vec![Ipv4Addr::UNSPECIFIED]);

    // The config file becomes a FIFO: the reload's read of it waits for the test, so the test
    // knows the reload is under way and hangs up right then.
    let path = daemon.config_path();
    std::fs::remove_file(&path).unwrap();
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    let stream = daemon.post_with(TOKEN, "/api/reload").await;
    let mut config_writer = open_fifo_writer(&path).await;
    drop(stream);
    // Time for the HTTP server to see the hang-up and drop the handler's future.
    tokio::time::sleep(Duration::from_millis(200)).await;
    config_writer
        .write_all(config(&upstream, "open").as_bytes())
        .unwrap();
    drop(config_writer);

    await_tablet_unblocked(daemon.dns, "the reload was abandoned with its request").await;
    assert_eq!(daemon.daemon.policy().load().generation(), 2);
}

/// Opens the FIFO at `path` for writing once a reader has it open. Non-blocking (the open
/// fails until there is a reader), so a reader that never comes fails the test rather than
/// leaving a thread stuck in `open`.
async fn open_fifo_writer(path: &Path) -> std::fs::File {
    let started = Instant::now();
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => return file,
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(5),
                "nobody read {}: {error}",
                path.display()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status of an empty `POST path` with `headers`.
async fn post_status(daemon: &TestDaemon, path: &str, headers: &[(&str, &str)]) -> u16 {
    http_request(daemon.http, "POST", path, headers, "").await.0
}

#[tokio::test]
async fn without_a_configured_token_the_mutating_endpoints_are_off() {
    let daemon = TestDaemon::start("").await;
    let any = [("Authorization", "Bearer anything-at-all-123")];
    assert_eq!(post_status(&daemon, "/api/reload", &any).await, 403);
    assert_eq!(post_status(&daemon, "/api/lists/refresh", &any).await, 403);
    assert_eq!(
        http_get(daemon.http, "/metrics").await.0,
        200,
        "metrics stay open"
    );
}

#[tokio::test]
async fn a_reload_that_cannot_read_a_loaded_list_file_is_refused_and_the_list_stays() {
    let upstream = TestUpstream::start(&[TestRecord::A("pixel.tracker.example", REAL, 60)]).await;
    let config = format!(
        r#"
default_profile = "kids"

[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
api_token = "{TOKEN}"

[[upstream]]
address = "{}"

[[list]]
id = "trackers"
source = "trackers.txt"

[[profile]]
name = "kids"
block = ["trackers"]
"#,
        upstream.addr
    );
    let daemon =
        TestDaemon::start_with_files(&config, &[("trackers.txt", "tracker.example\n")]).await;
    let answer = || async {
        a_addrs(&query_udp(daemon.dns, "pixel.tracker.example", RecordType::A, true).await)
    };
    assert_eq!(answer().await, vec![Ipv4Addr::UNSPECIFIED], "blocked");

    // The file is gone (or being rewritten) when the reload comes.
    let list = daemon.config_path().with_file_name("trackers.txt");
    std::fs::remove_file(&list).unwrap();
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("trackers") && body.contains("could not be read"),
        "{body}"
    );
    assert_eq!(answer().await, vec![Ipv4Addr::UNSPECIFIED], "still blocked");
    assert_eq!(daemon.daemon.policy().load().generation(), 1);
    // The refused rebuild reports nothing: the metrics describe the lists in force.
    let loaded = r#"metasink_list_loaded{list="trackers"}"#;
    assert_eq!(metric(&daemon.metrics().await, loaded), 1.0);

    // Back, and the reload goes through.
    write(&list, "tracker.example\n");
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer().await, vec![Ipv4Addr::UNSPECIFIED]);
}

#[tokio::test]
async fn the_invalid_lines_gauge_holds_the_current_count_across_reloads() {
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\napi_token = \"{TOKEN}\"\n\n\
         [[list]]\nid = \"mine\"\nsource = \"mine.txt\"\n"
    );
    let list = "ads.example\nnot a name!\n{\"json\": 1}\ntracker.example\n";
    let daemon = TestDaemon::start_with_files(&config, &[("mine.txt", list)]).await;
    let gauge = r#"metasink_list_invalid_lines{list="mine"}"#;
    let counter = r#"metasink_list_invalid_lines_total{list="mine"}"#;
    assert_eq!(metric(&daemon.metrics().await, gauge), 2.0);
    for reloads in 1..=2 {
        let (status, body) = post_with_token(&daemon, "/api/reload").await;
        assert_eq!(status, 200, "{body}");
        let metrics = daemon.metrics().await;
        assert_eq!(metric(&metrics, gauge), 2.0, "after {reloads} reloads");
        // The counter adds every load's lines: what the dashboard's increase() reads.
        assert_eq!(metric(&metrics, counter), 2.0 * f64::from(reloads + 1));
    }
    // One line fixed: the gauge follows the list.
    write(
        &daemon.config_path().with_file_name("mine.txt"),
        "ads.example\nnot a name!\ntracker.example\n",
    );
    let (status, body) = post_with_token(&daemon, "/api/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(&daemon.metrics().await, gauge), 1.0);
}
