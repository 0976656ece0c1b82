//! One client asking names that are never answered, end to end: the real daemon in front of a
//! real upstream ([`TestUpstream`]) that never answers one subtree, as a public resolver stays
//! silent about a domain whose own servers never answer. The rest of the house keeps its DNS:
//! upstream health follows the upstream, not the names, and no client fills the table of
//! fetches in flight.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use metasink::metrics::FETCH_LIMITED_TOTAL;
use metasink::pipeline::MAX_FETCHES_PER_CLIENT;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// The subtree the upstream never answers.
const TARPIT: &str = "tarpit.test";
/// What the upstream answers for the house's names.
const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// The client asking names in [`TARPIT`].
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The other devices of the house.
const HOUSE: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)),
];
/// Bursts of the house's questions (a page opening on each device), a second apart.
const BURSTS: usize = 6;
/// Names each device asks per burst.
const NAMES_PER_BURST: usize = 5;

/// The house's names: each asked once, so each reaches the upstream.
fn house_name(n: usize) -> String {
    format!("h{n}.house.test")
}

/// An upstream answering every house name with [`GOOD`] and never answering [`TARPIT`].
async fn upstream() -> TestUpstream {
    let names: Vec<String> = (0..BURSTS * HOUSE.len() * NAMES_PER_BURST)
        .map(house_name)
        .collect();
    let records: Vec<_> = names
        .iter()
        .map(|name| TestRecord::A(name, GOOD, 300))
        .collect();
    TestUpstream::start_silent_under(&records, TARPIT).await
}

fn config(upstream: SocketAddr) -> String {
    format!("[[upstream]]\naddress = \"{upstream}\"\n")
}

/// Sends `count` questions for fresh names under [`TARPIT`] from [`ATTACKER`], one every
/// `gap`, without waiting for the replies (they are SERVFAILs a second later).
async fn ask_the_tarpit(dns: SocketAddr, first: usize, count: usize, gap: Duration) {
    let socket = UdpSocket::bind((ATTACKER, 0)).await.expect("bind");
    let mut ticks = tokio::time::interval(gap);
    for n in first..first + count {
        ticks.tick().await;
        let query = build_query(&format!("n{n}.{TARPIT}"), RecordType::A, true);
        let bytes = query.to_vec().expect("encode");
        socket.send_to(&bytes, dns).await.expect("send");
    }
}

/// Whether `name` asked from `source` is answered NOERROR with [`GOOD`].
async fn answered(source: IpAddr, dns: SocketAddr, name: String) -> bool {
    let query = build_query(&name, RecordType::A, true);
    let bytes = query.to_vec().expect("encode");
    let Some(reply) = exchange_udp_from(source, dns, &bytes).await else {
        return false;
    };
    let reply = Message::from_vec(&reply).expect("a DNS reply");
    rcode(&reply) == ResponseCode::NoError && a_addrs(&reply) == [GOOD]
}

/// `metasink_upstream_healthy` for `upstream`, now.
async fn healthy(daemon: &TestDaemon, upstream: SocketAddr) -> f64 {
    let series = format!("metasink_upstream_healthy{{upstream=\"{upstream}\"}}");
    metric(&daemon.metrics().await, &series)
}

#[tokio::test]
async fn a_client_asking_ten_silent_names_a_second_leaves_the_rest_of_the_house_its_dns() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(upstream.addr)).await;
    let dns = daemon.dns;
    // Ten a second, from 1.5 s before the house asks until it is done.
    let attack = tokio::spawn(ask_the_tarpit(
        dns,
        0,
        10 * (BURSTS + 2),
        Duration::from_millis(100),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Nothing at all came back from the upstream while the first timeouts ran out: that
    // silence marks it down. The house's questions are sent all the same.
    assert_eq!(healthy(&daemon, upstream.addr).await, 0.0, "marked down");

    let mut asked = 0;
    let mut failed = Vec::new();
    let mut down_before = Vec::new();
    // A burst every 900 ms: every timeout of a question sent after a burst's replies runs
    // out after the next burst's first reply, so from then on the upstream is heard from
    // while each of the attacker's questions waits.
    let mut bursts = tokio::time::interval(Duration::from_millis(900));
    for burst in 0..BURSTS {
        bursts.tick().await;
        if burst > 0 && healthy(&daemon, upstream.addr).await != 1.0 {
            down_before.push(burst);
        }
        let mut questions = JoinSet::new();
        for (device, &source) in HOUSE.iter().enumerate() {
            for k in 0..NAMES_PER_BURST {
                let name = house_name((burst * HOUSE.len() + device) * NAMES_PER_BURST + k);
                questions.spawn(async move { (answered(source, dns, name.clone()).await, name) });
            }
        }
        for (ok, name) in questions.join_all().await {
            asked += 1;
            if !ok {
                failed.push(name);
            }
        }
    }
    attack.await.expect("the attacker's task");

    let tarpit_questions =
        (0..10).filter(|n| upstream.queries_for(&format!("n{n}.{TARPIT}"), RecordType::A) > 0);
    assert_eq!(
        tarpit_questions.count(),
        10,
        "the attack reached the upstream"
    );
    assert_eq!(asked, BURSTS * HOUSE.len() * NAMES_PER_BURST);
    // At least 99 % answered: with 120 questions, none may fail.
    let answered_share = (asked - failed.len()) as f64 / asked as f64;
    assert!(
        answered_share >= 0.99,
        "{} of {asked} of the house's questions not answered NOERROR: {failed:?}",
        failed.len()
    );
    assert!(
        down_before.is_empty(),
        "the attacker's timeouts marked an upstream that answers the house down before bursts {down_before:?}"
    );
}

#[tokio::test]
async fn one_client_cannot_fill_the_table_of_fetches_in_flight() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(upstream.addr)).await;
    // More silent names than one client may have in flight, all sent well within the one
    // second each waits for its upstream, in bursts the daemon's socket buffer holds.
    let over = 44;
    let sent = MAX_FETCHES_PER_CLIENT + over;
    for first in (0..sent).step_by(50) {
        ask_the_tarpit(
            daemon.dns,
            first,
            50.min(sent - first),
            Duration::from_micros(100),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = daemon.metrics().await;
    let dropped = |limit: &str| {
        metric(
            &metrics,
            &format!("{FETCH_LIMITED_TOTAL}{{limit=\"{limit}\"}}"),
        )
    };
    assert_eq!(dropped("client"), over as f64, "{metrics}");
    assert_eq!(dropped("total"), 0.0);
    // Another device is answered meanwhile.
    assert!(answered(HOUSE[0], daemon.dns, house_name(0)).await);
    assert!(
        upstream.queries_for(&format!("n{}.{TARPIT}", sent - 1), RecordType::A) == 0,
        "a dropped question never reaches the upstream"
    );
}
