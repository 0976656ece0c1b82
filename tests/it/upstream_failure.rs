//! When no upstream answers, clients get SERVFAIL quickly instead of waiting for a timeout.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn a_dead_upstream_yields_servfail_within_three_seconds() {
    let dead = TestUpstream::start_unresponsive();
    let daemon = TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", dead.addr)).await;
    let started = Instant::now();
    let reply = query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    let elapsed = started.elapsed();
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert!(
        elapsed < Duration::from_secs(3),
        "SERVFAIL after {elapsed:?}"
    );
    let (code, text) = ede(&reply).expect("an extended error says why");
    assert_eq!(code, 22, "No Reachable Authority: {text}");
}

#[tokio::test]
async fn the_second_upstream_answers_when_the_first_is_dead() {
    let dead = TestUpstream::start_unresponsive();
    let alive = TestUpstream::start(&[TestRecord::A(
        "www.example.com",
        "192.0.2.9".parse().unwrap(),
        60,
    )])
    .await;
    let config = format!(
        "[[upstream]]\naddress = \"{}\"\n\n[[upstream]]\naddress = \"{}\"\n",
        dead.addr, alive.addr
    );
    let daemon = TestDaemon::start(&config).await;
    let reply = query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&reply),
        vec!["192.0.2.9".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    let metrics = daemon.metrics().await;
    let errors = format!(
        "metasink_upstream_errors_total{{kind=\"timeout\",upstream=\"{}\"}}",
        dead.addr
    );
    assert_eq!(metric(&metrics, &errors), 1.0, "{metrics}");
}
