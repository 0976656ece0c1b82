//! `/metrics` and `/healthz` over real HTTP: counters move by exactly what was asked.

use std::net::{IpAddr, Ipv4Addr};

use crate::common::*;

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
        &format!(
            r#"revision="{}",version="{}""#,
            env!("METASINK_GIT_COMMIT"),
            env!("CARGO_PKG_VERSION")
        ),
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

/// Whether the `/metrics` text holds `series` at exactly 0.
fn at_zero(text: &str, series: &str) -> bool {
    text.lines().any(|line| line == format!("{series} 0"))
}

/// Prometheus's `increase()` never sees the event that creates a series at 1: every labelled
/// counter whose label values are known up front exists at 0 from the start. Config reloads
/// by result, each downloaded list's refreshes by result and failures by reason (a list a
/// reload adds too), replies by response code.
#[tokio::test]
async fn labelled_counters_exist_at_zero_before_their_first_event() {
    use metasink::lists::download::REFRESH_ERROR_REASONS;
    use metasink::metrics::{CONFIG_RELOAD_RESULTS, LIST_REFRESH_RESULTS, RCODE_LABELS};

    const TOKEN: &str = "zero-token-0123456789";
    let list = ListServer::start("ads.example\n").await;
    // Every download stays in flight while the test reads: no refresh ends.
    list.set_delay(std::time::Duration::from_secs(30));
    let config = |lists: &[&str]| {
        let mut text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
             state_dir = \"state\"\napi_token = \"{TOKEN}\"\n"
        );
        for id in lists {
            text.push_str(&format!(
                "\n[[list]]\nid = \"{id}\"\nsource = \"{}\"\n",
                list.url
            ));
        }
        text
    };
    let daemon = TestDaemon::start(&config(&["served"])).await;
    let text = daemon.metrics().await;
    for result in CONFIG_RELOAD_RESULTS {
        let reloads = series(
            "metasink_config_reload_total",
            &format!(r#"result="{result}""#),
        );
        assert!(at_zero(&text, &reloads), "{reloads}\n{text}");
    }
    for rcode in RCODE_LABELS {
        let replies = series("metasink_responses_total", &format!(r#"rcode="{rcode}""#));
        assert!(at_zero(&text, &replies), "{replies}\n{text}");
    }
    let refreshes_at_zero = |text: &str, id: &str| {
        for result in LIST_REFRESH_RESULTS {
            let labels = format!(r#"list="{id}",result="{result}""#);
            let refreshes = series("metasink_list_refresh_total", &labels);
            assert!(at_zero(text, &refreshes), "{refreshes}\n{text}");
        }
        for reason in REFRESH_ERROR_REASONS {
            let labels = format!(r#"list="{id}",reason="{reason}""#);
            let errors = series("metasink_list_refresh_errors_total", &labels);
            assert!(at_zero(text, &errors), "{errors}\n{text}");
        }
    };
    refreshes_at_zero(&text, "served");

    std::fs::write(daemon.config_path(), config(&["served", "added"])).unwrap();
    let (status, body) = http_response(daemon.post_with(TOKEN, "/api/reload").await).await;
    assert_eq!(status, 200, "{body}");
    refreshes_at_zero(&daemon.metrics().await, "added");
}

/// Every reply is counted by its response code, whichever path wrote it: an answer, a block,
/// an NXDOMAIN passed on, a refusal, FORMERR, NOTIMP, BADVERS (as `other`) and a SERVFAIL;
/// and that SERVFAIL, after an upstream timeout of a second, is timed in a bucket below 5 s
/// rather than only in `+Inf`.
#[tokio::test]
async fn replies_are_counted_by_response_code_and_slow_ones_timed_in_the_buckets() {
    use hickory_proto::rr::DNSClass;

    let upstream = FaultyUpstream::start(Fault::None).await;
    let daemon =
        TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr)).await;
    let before = daemon.metrics().await;
    let ask = |name, rtype| query_udp(daemon.dns, name, rtype, true);
    assert_eq!(
        rcode(&ask("www.example.com", RecordType::A).await),
        ResponseCode::NoError
    );
    assert_eq!(
        a_addrs(&ask("www.meta.ai", RecordType::A).await),
        [Ipv4Addr::UNSPECIFIED]
    );
    assert_eq!(
        rcode(&ask("big.example.com", RecordType::AXFR).await),
        ResponseCode::NotImp
    );
    assert_eq!(
        rcode(&ask("key.example.com", RecordType::TSIG).await),
        ResponseCode::FormErr
    );
    let mut chaos = build_query("version.bind", RecordType::TXT, true);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        rcode(&send_udp(daemon.dns, &chaos).await),
        ResponseCode::Refused
    );
    let mut future = build_query("www.example.com", RecordType::A, true);
    future.edns.as_mut().unwrap().set_version(1);
    assert_eq!(u16::from(rcode(&send_udp(daemon.dns, &future).await)), 16);
    upstream.set_fault(Fault::Rcode(ResponseCode::NXDomain));
    assert_eq!(
        rcode(&ask("gone.example.com", RecordType::A).await),
        ResponseCode::NXDomain
    );
    upstream.set_fault(Fault::Drop);
    assert_eq!(
        rcode(&ask("slow.example.com", RecordType::A).await),
        ResponseCode::ServFail
    );
    let after = daemon.metrics().await;

    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    let replies = |rcode: &str| {
        delta(&series(
            "metasink_responses_total",
            &format!(r#"rcode="{rcode}""#),
        ))
    };
    for (rcode, count) in [
        ("noerror", 2.0),
        ("formerr", 1.0),
        ("servfail", 1.0),
        ("nxdomain", 1.0),
        ("notimp", 1.0),
        ("refused", 1.0),
        ("other", 1.0),
    ] {
        assert_eq!(replies(rcode), count, "{rcode}\n{after}");
    }
    let servfail_within = |le: &str| {
        let labels = format!(r#"result="servfail",le="{le}""#);
        delta(&series("metasink_request_duration_seconds_bucket", &labels))
    };
    assert_eq!(servfail_within("0.1"), 0.0, "{after}");
    assert_eq!(servfail_within("5"), 1.0, "{after}");
    assert_eq!(servfail_within("0.0001"), 0.0, "{after}");
}
