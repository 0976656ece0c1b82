//! `/metrics` and `/healthz` over real HTTP: counters move by exactly what was asked.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;

const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{{labels}}}")
}

#[tokio::test]
async fn query_block_and_cache_counters_move_by_the_exact_amounts() {
    let upstream = TestUpstream::start(&[TestRecord::A(
        "www.example.com",
        "192.0.2.1".parse().unwrap(),
        300,
    )])
    .await;
    let config = format!(
        r#"
[[upstream]]
address = "{}"

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "meta-apps"
"#,
        upstream.addr
    );
    let daemon = TestDaemon::start(&config).await;
    let before = daemon.metrics().await;
    for _ in 0..2 {
        query_udp_from(TABLET, daemon.dns, "www.meta.ai", RecordType::A, true).await;
    }
    query_udp_from(TABLET, daemon.dns, "graph.meta.ai", RecordType::HTTPS, true).await;
    query_udp_from(TABLET, daemon.dns, "www.example.com", RecordType::A, true).await;
    query_udp_from(TABLET, daemon.dns, "www.example.com", RecordType::A, true).await;
    query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    let after = daemon.metrics().await;

    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    let queries = |device: &str, qtype: &str, result: &str| {
        series(
            "metasink_queries_total",
            &format!(r#"device="{device}",profile="meta-apps",qtype="{qtype}",result="{result}""#),
        )
    };
    assert_eq!(delta(&queries("tablet", "A", "blocked")), 2.0, "{after}");
    assert_eq!(delta(&queries("tablet", "HTTPS", "blocked")), 1.0);
    assert_eq!(delta(&queries("tablet", "A", "forwarded")), 1.0);
    assert_eq!(delta(&queries("tablet", "A", "cached")), 1.0);
    assert_eq!(delta(&queries("unknown", "A", "cached")), 1.0);
    let blocked = series(
        "metasink_blocked_total",
        r#"device="tablet",list="meta-ai",profile="meta-apps""#,
    );
    assert_eq!(delta(&blocked), 3.0);
    assert_eq!(delta("metasink_cache_hits_total"), 2.0);
    assert_eq!(delta("metasink_cache_misses_total"), 1.0);
    assert_eq!(metric(&after, "metasink_cache_entries"), 1.0);
    let forwarded_time = series(
        "metasink_request_duration_seconds_count",
        r#"result="forwarded""#,
    );
    assert_eq!(delta(&forwarded_time), 1.0);
    let upstream_time = series(
        "metasink_upstream_duration_seconds_count",
        &format!(r#"upstream="{}""#, upstream.addr),
    );
    assert_eq!(delta(&upstream_time), 1.0);
    assert!(
        metric(
            &after,
            &series("metasink_list_entries", r#"list="meta-ai""#)
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &after,
            &series("metasink_list_invalid_lines_total", r#"list="meta-ai""#)
        ),
        0.0
    );
    let build = series(
        "metasink_build_info",
        &format!(r#"version="{}""#, env!("CARGO_PKG_VERSION")),
    );
    assert_eq!(metric(&after, &build), 1.0);
    // No client address or query name ever becomes a label.
    assert!(
        !after.contains("127.0.0.2")
            && !after.contains("example.com")
            && !after.contains("www.meta.ai")
    );
}

#[tokio::test]
async fn healthz_reports_ok_and_names_lists_that_failed_to_load() {
    let daemon = TestDaemon::start("").await;
    let (status, body) = http_get(daemon.http, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ok""#), "{body}");

    let broken = TestDaemon::start("[[list]]\nid = \"gone\"\nsource = \"missing.txt\"\n").await;
    let (status, body) = http_get(broken.http, "/healthz").await;
    assert_eq!(status, 200, "the house still resolves");
    assert!(
        body.contains(r#""status":"degraded""#) && body.contains("gone"),
        "{body}"
    );
    let metrics = broken.metrics().await;
    assert_eq!(
        metric(&metrics, r#"metasink_list_loaded{list="gone"}"#),
        0.0
    );
    assert_eq!(
        metric(&metrics, r#"metasink_list_loaded{list="meta-ai"}"#),
        1.0
    );
}

#[tokio::test]
async fn stopping_does_not_wait_for_a_half_sent_http_request() {
    use tokio::io::AsyncWriteExt;
    let daemon = TestDaemon::start("").await;
    // Headers never finished: the HTTP server holds the connection open, waiting for them.
    let mut stalled = tokio::net::TcpStream::connect(daemon.http).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metasink\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(20), daemon.stop())
        .await
        .expect("the stop waited for the stalled HTTP client");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "stopped after {:?}",
        started.elapsed()
    );
    drop(stalled);
}
