//! Upstreams that misbehave, end to end: real misbehaving servers on loopback
//! ([`FaultyUpstream`]) in front of the real daemon. Slow, silent, failing, truncating and
//! lying upstreams; passive health with probes; serve-stale; one upstream query for many
//! identical questions; forwarding loops.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use metasink::dns::{ATTEMPT_TIMEOUT, QUERY_DEADLINE};
use metasink::pipeline::{STALE_AFTER, STALE_TTL};
use tokio::net::UdpSocket;

/// What the [`TestUpstream`] of these tests answers, unlike any [`FaultyUpstream`].
const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

/// A config forwarding to `upstreams`, in order.
fn config(upstreams: &[SocketAddr]) -> String {
    upstreams
        .iter()
        .map(|address| format!("[[upstream]]\naddress = \"{address}\"\n\n"))
        .collect()
}

/// How long [`timed_query`] waits: past the daemon's 2 s deadline, which the shared client's
/// own 2 s timeout would race.
const PATIENCE: Duration = Duration::from_secs(4);

/// Asks `name`/A over UDP (with EDNS) and waits up to [`PATIENCE`]; the reply and how long
/// it took.
async fn timed_query(daemon: &TestDaemon, name: &str) -> (Message, Duration) {
    let query = build_query(name, RecordType::A, true);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    socket.connect(daemon.dns).await.expect("connect");
    let started = Instant::now();
    socket
        .send(&query.to_vec().expect("encode"))
        .await
        .expect("send");
    let mut buffer = vec![0u8; 65_535];
    let length = tokio::time::timeout(PATIENCE, socket.recv(&mut buffer))
        .await
        .unwrap_or_else(|_| panic!("no reply for {name} within {PATIENCE:?}"))
        .expect("receive");
    let elapsed = started.elapsed();
    let reply = Message::from_vec(&buffer[..length]).expect("a DNS reply");
    assert_eq!(reply.metadata.id, query.metadata.id);
    (reply, elapsed)
}

/// `metasink_upstream_errors_total` for `upstream` and `kind`.
fn upstream_errors(metrics: &str, upstream: SocketAddr, kind: &str) -> f64 {
    let series =
        format!("metasink_upstream_errors_total{{kind=\"{kind}\",upstream=\"{upstream}\"}}");
    metric(metrics, &series)
}

/// `metasink_upstream_healthy` for `upstream`.
fn healthy(metrics: &str, upstream: SocketAddr) -> f64 {
    metric(
        metrics,
        &format!("metasink_upstream_healthy{{upstream=\"{upstream}\"}}"),
    )
}

/// Every `metasink_queries_total` series added up.
fn queries_answered(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("metasink_queries_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_slow_upstream_within_the_attempt_timeout_still_answers() {
    let delay = Duration::from_millis(600);
    let slow = FaultyUpstream::start(Fault::Delay(delay)).await;
    let daemon = TestDaemon::start(&config(&[slow.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "slow.example").await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert!(
        delay <= elapsed && elapsed < ATTEMPT_TIMEOUT,
        "answered after {elapsed:?}"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(upstream_errors(&metrics, slow.addr, "timeout"), 0.0);
}

#[tokio::test]
async fn a_udp_question_waiting_on_its_upstream_when_the_daemon_stops_is_still_answered() {
    let delay = Duration::from_millis(500);
    let slow = FaultyUpstream::start(Fault::Delay(delay)).await;
    let daemon = TestDaemon::start(&config(&[slow.addr])).await;
    let dns = daemon.dns;
    let asked =
        tokio::spawn(async move { query_udp(dns, "draining.example", RecordType::A, true).await });
    // Stop once the question is at the upstream, well inside its delay.
    let deadline = Instant::now() + delay / 2;
    while slow.udp_queries() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slow.udp_queries(), 1, "the question reached the upstream");
    let stopping = Instant::now();
    daemon.stop().await;
    let stopped_after = stopping.elapsed();
    let reply = asked.await.expect("the client task");
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert!(
        stopped_after < delay + Duration::from_secs(1),
        "the stop waited for the answer, not the whole drain timeout: {stopped_after:?}"
    );
}

#[tokio::test]
async fn stopping_waits_for_a_udp_question_that_needs_more_than_a_second() {
    // A silent first upstream (1 s) and a slow second one: answered 1.4 s in, with no TCP
    // query to drain meanwhile.
    let silent = FaultyUpstream::start(Fault::Drop).await;
    let slow = FaultyUpstream::start(Fault::Delay(Duration::from_millis(400))).await;
    let daemon = TestDaemon::start(&config(&[silent.addr, slow.addr])).await;
    let dns = daemon.dns;
    let asked =
        tokio::spawn(async move { query_udp(dns, "patient.example", RecordType::A, true).await });
    let deadline = Instant::now() + Duration::from_millis(500);
    while silent.udp_queries() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        silent.udp_queries(),
        1,
        "the question reached the first upstream"
    );
    daemon.stop().await;
    assert!(
        asked.is_finished(),
        "the stop returned before the answer went out"
    );
    assert_eq!(
        a_addrs(&asked.await.expect("the client task")),
        [FAULTY_ANSWER]
    );
}

#[tokio::test]
async fn a_silent_upstream_is_passed_over_for_the_next_one_after_the_attempt_timeout() {
    let silent = FaultyUpstream::start(Fault::Drop).await;
    let next = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&config(&[silent.addr, next.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "silent.example").await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert!(silent.udp_queries() >= 1 && next.udp_queries() == 1);
    let waited = ATTEMPT_TIMEOUT - Duration::from_millis(50)..QUERY_DEADLINE;
    assert!(waited.contains(&elapsed), "answered after {elapsed:?}");
    let metrics = daemon.metrics().await;
    assert_eq!(upstream_errors(&metrics, silent.addr, "timeout"), 1.0);
}

#[tokio::test]
async fn silent_upstreams_give_servfail_with_a_reason_within_three_seconds() {
    let first = FaultyUpstream::start(Fault::Drop).await;
    let second = FaultyUpstream::start(Fault::Drop).await;
    let daemon = TestDaemon::start(&config(&[first.addr, second.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "silent.example").await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert_eq!(ede(&reply).map(|(code, _)| code), Some(22));
    assert!(
        elapsed < Duration::from_secs(3),
        "SERVFAIL after {elapsed:?}"
    );
    assert!(first.udp_queries() >= 1 && second.udp_queries() >= 1);
}

#[tokio::test]
async fn servfail_moves_on_to_the_next_upstream_at_once() {
    let failing = FaultyUpstream::start(Fault::Rcode(ResponseCode::ServFail)).await;
    let next = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&config(&[failing.addr, next.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "servfail.example").await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert_eq!((failing.udp_queries(), next.udp_queries()), (1, 1));
    assert!(
        elapsed < Duration::from_millis(500),
        "answered after {elapsed:?}"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(upstream_errors(&metrics, failing.addr, "servfail"), 1.0);
    assert_eq!(
        healthy(&metrics, failing.addr),
        1.0,
        "a SERVFAIL is a reply"
    );
}

#[tokio::test]
async fn an_upstream_answering_with_an_odd_response_code_stays_in_service() {
    // NOTIMP (or FORMERR) is the upstream's answer to the question, not a sign it is gone: a
    // client asking odd questions must not take it out of service for everyone.
    let odd = FaultyUpstream::start(Fault::Rcode(ResponseCode::NotImp)).await;
    let next = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&config(&[odd.addr, next.addr])).await;
    for n in 1..=4 {
        let (reply, _) = timed_query(&daemon, &format!("odd{n}.example")).await;
        assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    }
    assert_eq!(
        (odd.udp_queries(), next.udp_queries()),
        (4, 4),
        "asked every time"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(upstream_errors(&metrics, odd.addr, "unusable"), 4.0);
    assert_eq!(healthy(&metrics, odd.addr), 1.0);
}

#[tokio::test]
async fn garbage_is_never_taken_for_an_answer_and_the_next_upstream_answers() {
    let garbage = FaultyUpstream::start(Fault::Garbage).await;
    let next = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&config(&[garbage.addr, next.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "garbage.example").await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert_eq!(next.udp_queries(), 1);
    assert!(elapsed < QUERY_DEADLINE, "answered after {elapsed:?}");
    let metrics = daemon.metrics().await;
    let failed: f64 = ["timeout", "other"]
        .iter()
        .map(|kind| upstream_errors(&metrics, garbage.addr, kind))
        .sum();
    assert_eq!(failed, 1.0, "{metrics}");
}

#[tokio::test]
async fn replies_with_the_wrong_id_question_or_port_are_ignored_and_the_right_one_taken() {
    for fault in [
        Fault::WrongIdFirst,
        Fault::WrongQuestionFirst,
        Fault::WrongSourceFirst,
    ] {
        let lying = FaultyUpstream::start(fault).await;
        let daemon = TestDaemon::start(&config(&[lying.addr])).await;
        let (reply, elapsed) = timed_query(&daemon, "lying.example").await;
        assert_eq!(a_addrs(&reply), [FAULTY_ANSWER], "{fault:?}: not {POISON}");
        assert!(elapsed < ATTEMPT_TIMEOUT, "{fault:?}: after {elapsed:?}");
    }
}

#[tokio::test]
async fn a_truncated_udp_reply_is_asked_again_over_tcp() {
    let truncating = FaultyUpstream::start(Fault::Truncate).await;
    let daemon = TestDaemon::start(&config(&[truncating.addr])).await;
    let (reply, _) = timed_query(&daemon, "truncated.example").await;
    assert!(!reply.metadata.truncation);
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert_eq!((truncating.udp_queries(), truncating.tcp_queries()), (1, 1));
}

#[tokio::test]
async fn a_reset_tcp_connection_moves_on_to_the_next_upstream() {
    let resetting = FaultyUpstream::start(Fault::ResetTcp).await;
    let next = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&config(&[resetting.addr, next.addr])).await;
    let (reply, elapsed) = timed_query(&daemon, "reset.example").await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert_eq!(resetting.tcp_queries(), 1, "the TC retry reached TCP");
    assert_eq!(next.udp_queries(), 1);
    assert!(
        elapsed < ATTEMPT_TIMEOUT,
        "no wait for a timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn identical_concurrent_questions_cause_one_upstream_query() {
    // Below hickory's 333 ms UDP retransmission floor, so one query is one datagram.
    let slow = FaultyUpstream::start(Fault::Delay(Duration::from_millis(200))).await;
    let daemon = TestDaemon::start(&config(&[slow.addr])).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let dns = daemon.dns;
        clients.spawn(async move { query_udp(dns, "popular.example", RecordType::A, true).await });
    }
    let replies = clients.join_all().await;
    assert_eq!(replies.len(), 200);
    assert!(
        replies
            .iter()
            .all(|reply| a_addrs(reply) == [FAULTY_ANSWER])
    );
    assert_eq!(slow.queries(), 1);
}

#[tokio::test]
async fn a_failing_upstream_is_skipped_probed_with_back_off_and_taken_back() {
    let names: Vec<String> = (1..=8).map(|n| format!("h{n}.example")).collect();
    let records: Vec<_> = names
        .iter()
        .map(|name| TestRecord::A(name, GOOD, 60))
        .collect();
    let good = TestUpstream::start(&records).await;
    // Garbage fails each attempt at once (a reply that does not decode counts like a
    // timeout): a silent upstream goes down the same way, a second per attempt slower.
    let bad = FaultyUpstream::start(Fault::Garbage).await;
    let daemon = TestDaemon::start(&config(&[bad.addr, good.addr])).await;
    let ask = |name: &'static str| {
        let dns = daemon.dns;
        async move { a_addrs(&query_udp(dns, name, RecordType::A, true).await) }
    };

    // Three failures in a row mark it down.
    for name in ["h1.example", "h2.example", "h3.example"] {
        assert_eq!(ask(name).await, [GOOD]);
    }
    assert_eq!(bad.udp_queries(), 3);
    let metrics = daemon.metrics().await;
    let health = |metrics: &str| (healthy(metrics, bad.addr), healthy(metrics, good.addr));
    assert_eq!(health(&metrics), (0.0, 1.0));

    // Skipped: nothing reaches it.
    assert_eq!(ask("h4.example").await, [GOOD]);
    assert_eq!(bad.udp_queries(), 3);

    // A second later one question goes through as a probe; it fails, and the wait doubles.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask("h5.example").await, [GOOD]);
    assert_eq!(bad.udp_queries(), 4, "probed");
    assert_eq!(ask("h6.example").await, [GOOD]);
    assert_eq!(bad.udp_queries(), 4, "skipped again");

    // Healed: the next probe, two seconds after the last, answers and puts it back first.
    bad.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        ask("h7.example").await,
        [FAULTY_ANSWER],
        "the probe's answer"
    );
    assert_eq!(health(&daemon.metrics().await), (1.0, 1.0));
    assert_eq!(ask("h8.example").await, [FAULTY_ANSWER]);
    assert_eq!(bad.udp_queries(), 6);
}

#[tokio::test]
async fn an_expired_answer_is_served_stale_only_when_the_upstreams_fail() {
    let first = FaultyUpstream::start_with_ttl(Fault::None, 1).await;
    let second = FaultyUpstream::start_with_ttl(Fault::Drop, 1).await;
    let daemon = TestDaemon::start(&config(&[first.addr, second.addr])).await;
    let (refreshed, stale) = ("refreshed.example", "stale.example");
    for name in [refreshed, stale] {
        let (reply, _) = timed_query(&daemon, name).await;
        assert_eq!(min_answer_ttl(&reply), Some(1));
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Expired, but the upstream answers: a fresh answer, not the stale one.
    let (reply, _) = timed_query(&daemon, refreshed).await;
    assert_eq!((min_answer_ttl(&reply), ede(&reply)), (Some(1), None));
    assert_eq!(first.udp_queries(), 3);

    // Expired, and no upstream answers: the expired answer, 1.8 s into the query.
    first.set_fault(Fault::Drop);
    let (reply, elapsed) = timed_query(&daemon, stale).await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    assert_eq!(min_answer_ttl(&reply), Some(STALE_TTL));
    assert_eq!(ede(&reply).map(|(code, _)| code), Some(3), "Stale Answer");
    let timer = STALE_AFTER - Duration::from_millis(50)..QUERY_DEADLINE;
    assert!(timer.contains(&elapsed), "stale after {elapsed:?}");

    // Once that refresh has failed (at the 2 s deadline), the stale answer comes at once,
    // without asking upstream again.
    tokio::time::sleep(QUERY_DEADLINE - elapsed + Duration::from_millis(200)).await;
    let sent = first.queries() + second.queries();
    let (reply, elapsed) = timed_query(&daemon, stale).await;
    assert_eq!(min_answer_ttl(&reply), Some(STALE_TTL));
    assert!(
        elapsed < Duration::from_millis(200),
        "at once, not after {elapsed:?}"
    );
    assert_eq!(first.queries() + second.queries(), sent);

    let metrics = daemon.metrics().await;
    assert_eq!(metric(&metrics, "metasink_stale_answers_total"), 2.0);
}

#[tokio::test]
async fn two_resolvers_forwarding_to_each_other_fail_within_the_deadline() {
    // A's port is chosen first so that B can forward to it before A starts.
    let port = UnresponsiveUpstream::start().addr.port();
    let b = TestDaemon::start(&config(&[SocketAddr::from((Ipv4Addr::LOCALHOST, port))])).await;
    let a_config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nhttp = \"127.0.0.1:0\"\n\n{}",
        config(&[b.dns])
    );
    let a = TestDaemon::start(&a_config).await;
    for daemon in [&a, &b] {
        let (reply, elapsed) = timed_query(daemon, "loop.example").await;
        assert_eq!(rcode(&reply), ResponseCode::ServFail);
        assert!(
            elapsed < Duration::from_secs(3),
            "SERVFAIL after {elapsed:?}"
        );
    }
    // Neither melted: each saw the questions and their retransmissions going round once or
    // twice, not a storm (the looped question joins the fetch it caused).
    for daemon in [&a, &b] {
        let answered = queries_answered(&daemon.metrics().await);
        assert!((2.0..=20.0).contains(&answered), "{answered} queries");
    }
}

#[test]
fn an_upstream_at_our_own_listen_address_is_a_config_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let text =
        "[server]\nlisten = [\"127.0.0.1:5399\"]\n\n[[upstream]]\naddress = \"127.0.0.1:5399\"\n";
    std::fs::write(&path, text).expect("write config");
    let error = metasink::config::load(&path)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("own listen address"), "{error}");
}
