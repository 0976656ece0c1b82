//! Admission end to end: only allowed networks are answered (others get REFUSED without an
//! upstream query), and a client over its rate is dropped while others are served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use hickory_proto::op::Message;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

async fn upstream() -> TestUpstream {
    TestUpstream::start(&[TestRecord::A("www.example.com", REAL, 300)]).await
}

/// A config that serves 127.0.0.2 alone: every other loopback address is a stranger.
fn only_127_0_0_2(upstream: &TestUpstream) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nallow_from = [\"127.0.0.2/32\"]\n\n\
         [[upstream]]\naddress = \"{}\"\n",
        upstream.addr
    )
}

#[tokio::test]
async fn clients_outside_allow_from_are_refused_and_never_reach_the_upstream() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&only_127_0_0_2(&upstream)).await;
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let refused =
        query_udp_from(stranger, daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&refused), ResponseCode::Refused);
    assert!(refused.answers.is_empty());
    let over_tcp = query_tcp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&over_tcp), ResponseCode::Refused);
    assert_eq!(
        upstream.queries(),
        0,
        "a refused query never causes an upstream query"
    );

    let member = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let answered = query_udp_from(member, daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(a_addrs(&answered), vec![REAL]);
    let metrics = daemon.metrics().await;
    assert_eq!(metric(&metrics, "metasink_refused_total"), 2.0, "{metrics}");
}

/// Sends `count` queries from `source` as fast as it can and counts the answers that come
/// back within half a second after the last one.
async fn burst(source: IpAddr, server: SocketAddr, count: usize) -> usize {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap();
    let query = build_query("www.meta.ai", RecordType::A, false)
        .to_vec()
        .unwrap();
    for _ in 0..count {
        socket.send_to(&query, server).await.unwrap();
    }
    let mut answers = 0;
    let mut buffer = [0u8; 512];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buffer)).await
    {
        answers += 1;
    }
    answers
}

#[tokio::test]
async fn a_client_over_its_rate_is_dropped_while_others_are_served() {
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nrate_limit_qps = 5\nrate_limit_burst = 20\n";
    let daemon = TestDaemon::start(config).await;
    let greedy = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
    let answered = burst(greedy, daemon.dns, 200).await;
    assert!(
        (20..=40).contains(&answered),
        "the burst and a little refill, not 200: {answered}"
    );
    let polite = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8));
    assert_eq!(
        burst(polite, daemon.dns, 10).await,
        10,
        "another client is not affected"
    );
    let metrics = daemon.metrics().await;
    let dropped = metric(&metrics, "metasink_rate_limited_total");
    assert_eq!(dropped as usize, 200 - answered, "{metrics}");
}

#[tokio::test]
async fn a_trusted_forwarder_asks_for_the_whole_house_without_a_rate_limit() {
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
                  rate_limit_qps = 5\nrate_limit_burst = 20\ntrusted_forwarders = [\"127.0.0.10\"]\n";
    let daemon = TestDaemon::start(config).await;
    let router = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
    assert_eq!(
        burst(router, daemon.dns, 200).await,
        200,
        "the router is not limited"
    );
    let device = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
    let answered = burst(device, daemon.dns, 200).await;
    assert!(
        (20..=40).contains(&answered),
        "a device still is: {answered}"
    );
}

#[tokio::test]
async fn strangers_share_a_few_tcp_connections_and_cannot_take_the_houses() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&only_127_0_0_2(&upstream)).await;
    // Four strangers open five connections each and send nothing: 20, over the 16 they share.
    let mut strangers = Vec::new();
    for host in 10..14 {
        for _ in 0..5 {
            let stranger = IpAddr::V4(Ipv4Addr::new(127, 0, 0, host));
            strangers.push(connect_tcp_from(stranger, daemon.dns).await.unwrap());
        }
    }
    // Time to accept them all; then the ones past the share have been closed already.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for stream in &mut strangers {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(10), stream.read(&mut byte)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 20 - 16, "closed at once past the strangers' share");
    // The house still gets in.
    let member = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let query = build_query("www.example.com", RecordType::A, false)
        .to_vec()
        .unwrap();
    let reply = exchange_tcp_from(member, daemon.dns, &query)
        .await
        .expect("an answer over TCP");
    assert_eq!(a_addrs(&Message::from_vec(&reply).unwrap()), vec![REAL]);
}

/// The sum of every series of `family` whose labels include `label`.
fn sum_of(text: &str, family: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn queries_turned_away_or_answered_here_are_counted_once_with_their_time() {
    let upstream = upstream().await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         allow_from = [\"127.0.0.2/32\", \"127.0.0.3/32\"]\nrate_limit_qps = 1\nrate_limit_burst = 5\n\n\
         [[upstream]]\naddress = \"{}\"\n",
        upstream.addr
    );
    let daemon = TestDaemon::start(&config).await;
    let [stranger, member, greedy] = [1, 2, 3].map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)));

    let refused =
        query_udp_from(stranger, daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&refused), ResponseCode::Refused);
    let any = query_udp_from(member, daemon.dns, "www.example.com", RecordType::ANY, true).await;
    assert!(any.metadata.truncation, "ANY over UDP: TC");
    let axfr = query_udp_from(member, daemon.dns, "example.com", RecordType::AXFR, true).await;
    assert_eq!(rcode(&axfr), ResponseCode::NotImp);
    let mut two_questions = build_query("www.example.com", RecordType::A, false);
    two_questions.queries.push(two_questions.queries[0].clone());
    let formerr = exchange_udp_from(member, daemon.dns, &two_questions.to_vec().unwrap())
        .await
        .expect("a FORMERR reply");
    assert_eq!(formerr[3] & 0x0F, 1, "FORMERR");
    let answered = burst(greedy, daemon.dns, 20).await;
    assert!(answered < 20, "some dropped: {answered}");

    let metrics = daemon.metrics().await;
    let dropped = metric(&metrics, "metasink_rate_limited_total");
    assert_eq!(dropped as usize, 20 - answered, "{metrics}");
    let turned_away = 4.0 + dropped;
    let refused = r#"result="refused""#;
    assert_eq!(
        sum_of(&metrics, "metasink_queries_total", refused),
        turned_away,
        "refused, ANY over UDP, NOTIMP, FORMERR and rate-limited, each once\n{metrics}"
    );
    assert_eq!(
        sum_of(&metrics, "metasink_request_duration_seconds_count", refused),
        turned_away,
        "each with its time\n{metrics}"
    );
    let any_counted = r#"metasink_queries_total{device="unknown",profile="meta-apps",qtype="ANY",result="refused"}"#;
    assert_eq!(metric(&metrics, any_counted), 1.0, "{metrics}");
}
