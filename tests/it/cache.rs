//! The shared cache end to end: hits don't reach the upstream and count TTLs down, negative
//! answers are cached, and names inside cached answers are re-checked per profile.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::common::*;

const KIDS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PARENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const EDGE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn config(upstream: &TestUpstream) -> String {
    format!(
        r#"
default_profile = "open"

[[upstream]]
address = "{}"

[[list]]
id = "trackers"
source = "trackers.txt"

[[profile]]
name = "kids"
block = ["trackers"]

[[profile]]
name = "open"
block = []

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "kids"

[[device]]
name = "phone"
match = ["127.0.0.3"]
profile = "open"
"#,
        upstream.addr
    )
}

async fn setup() -> (TestUpstream, TestDaemon) {
    let upstream = TestUpstream::start(&[
        TestRecord::A("www.example.com", Ipv4Addr::new(192, 0, 2, 1), 300),
        TestRecord::Cname("cloaked.example.com", "pixel.tracker.example", 300),
        TestRecord::A("pixel.tracker.example", EDGE, 300),
        TestRecord::Https("svc.example.com", "api.tracker.example", 300),
    ])
    .await;
    let files = [("trackers.txt", "tracker.example\n")];
    let daemon = TestDaemon::start_with_files(&config(&upstream), &files).await;
    (upstream, daemon)
}

#[tokio::test]
async fn a_repeated_question_is_answered_from_the_cache_with_a_lower_ttl() {
    let (upstream, daemon) = setup().await;
    let first = query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(min_answer_ttl(&first), Some(300));
    assert_eq!(upstream.queries_for("www.example.com", RecordType::A), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = query_tcp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(a_addrs(&second), a_addrs(&first));
    let ttl = min_answer_ttl(&second).expect("an answer");
    assert!(
        (290..300).contains(&ttl),
        "TTL counts down in the cache: {ttl}"
    );
    assert_eq!(
        upstream.queries_for("www.example.com", RecordType::A),
        1,
        "served from cache"
    );
}

#[tokio::test]
async fn nxdomain_is_cached_for_the_soa_minimum() {
    let (upstream, daemon) = setup().await;
    for _ in 0..3 {
        let reply = query_udp(daemon.dns, "nothing.example.com", RecordType::A, true).await;
        assert_eq!(rcode(&reply), ResponseCode::NXDomain);
        assert!(has_soa_in_authority(&reply));
    }
    assert_eq!(
        upstream.queries_for("nothing.example.com", RecordType::A),
        1
    );
}

#[tokio::test]
async fn a_cname_to_a_blocked_name_is_blocked_only_for_profiles_that_block_it_cache_included() {
    let (upstream, daemon) = setup().await;
    // The phone's profile does not block trackers: it gets the chain (and fills the cache).
    let open = query_udp_from(
        PARENT,
        daemon.dns,
        "cloaked.example.com",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(cname_targets(&open), vec!["pixel.tracker.example"]);
    assert_eq!(a_addrs(&open), vec![EDGE]);
    // The tablet's profile blocks the CNAME target: blocked, answered from the same cache entry.
    let kids = query_udp_from(KIDS, daemon.dns, "cloaked.example.com", RecordType::A, true).await;
    assert_eq!(a_addrs(&kids), vec![Ipv4Addr::UNSPECIFIED]);
    assert_eq!(ede(&kids), Some((15, "blocked by trackers".to_owned())));
    // And the phone is still answered from the cache.
    let again = query_udp_from(
        PARENT,
        daemon.dns,
        "cloaked.example.com",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(a_addrs(&again), vec![EDGE]);
    assert_eq!(
        upstream.queries_for("cloaked.example.com", RecordType::A),
        1
    );
}

#[tokio::test]
async fn a_blocked_cname_target_is_blocked_on_the_first_forwarded_answer_too() {
    let (_upstream, daemon) = setup().await;
    let kids = query_udp_from(KIDS, daemon.dns, "cloaked.example.com", RecordType::A, true).await;
    assert_eq!(a_addrs(&kids), vec![Ipv4Addr::UNSPECIFIED]);
}

#[tokio::test]
async fn https_targets_are_inspected_as_well() {
    let (_upstream, daemon) = setup().await;
    let kids = query_udp_from(KIDS, daemon.dns, "svc.example.com", RecordType::HTTPS, true).await;
    assert_eq!(rcode(&kids), ResponseCode::NoError);
    assert!(kids.answers.is_empty() && has_soa_in_authority(&kids));
    assert_eq!(ede(&kids), Some((15, "blocked by trackers".to_owned())));
    let open = query_udp_from(
        PARENT,
        daemon.dns,
        "svc.example.com",
        RecordType::HTTPS,
        true,
    )
    .await;
    assert_eq!(
        https_targets(&open),
        vec![(1, "api.tracker.example".to_owned())]
    );
}

/// Minimal responses: a positive answer comes without the upstream's authority section (the
/// zone's NS records), cache hit or not, unless the client asked for DNSSEC records; a
/// negative answer keeps its SOA (checked above).
#[tokio::test]
async fn a_positive_answer_comes_without_the_upstreams_ns_records_unless_dnssec_is_asked() {
    let ns = hickory_proto::rr::Record::from_rdata(
        fqdn("."),
        300,
        hickory_proto::rr::RData::NS(hickory_proto::rr::rdata::NS(fqdn("ns.example.com"))),
    );
    let upstream = TestUpstream::start(&[TestRecord::Raw(Box::new(ns))]).await;
    // The upstream itself puts the NS records behind its positive answer for the apex SOA.
    let direct = query_udp(upstream.addr, ".", RecordType::SOA, true).await;
    assert_eq!(answer_types(&direct), vec![RecordType::SOA]);
    assert_eq!(authority_types(&direct), vec![RecordType::NS]);

    let daemon =
        TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr)).await;
    for round in ["forwarded", "cached"] {
        let reply = query_udp(daemon.dns, ".", RecordType::SOA, true).await;
        assert_eq!(answer_types(&reply), vec![RecordType::SOA], "{round}");
        assert_eq!(authority_types(&reply), vec![], "{round}");
    }
    // Asked directly once, forwarded once: the second answer came from the cache.
    assert_eq!(upstream.queries_for(".", RecordType::SOA), 2);
    let mut with_do = build_query(".", RecordType::SOA, true);
    with_do.edns.as_mut().unwrap().set_dnssec_ok(true);
    let reply = send_udp(daemon.dns, &with_do).await;
    assert_eq!(answer_types(&reply), vec![RecordType::SOA]);
    assert_eq!(authority_types(&reply), vec![RecordType::NS]);
}
