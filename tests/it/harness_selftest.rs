//! Self-test of the shared harness in `tests/it/common/`: a `TestUpstream` queried directly with the
//! test client, over UDP and TCP, on 127.0.0.1 only.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::common::*;
use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::EdnsOption;

const WWW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const WWW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const EDGE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn zone() -> Vec<TestRecord<'static>> {
    vec![
        TestRecord::A("www.example.com", WWW_V4, 300),
        TestRecord::Aaaa("www.example.com", WWW_V6, 200),
        TestRecord::Cname("alias.example.com", "cdn.example.net.", 120),
        TestRecord::Cname("cdn.example.net", "edge.example.org", 90),
        TestRecord::A("edge.example.org", EDGE_V4, 30),
        TestRecord::Cname("dangling.example.com", "nowhere.example.com", 50),
        TestRecord::Txt("txt.example.com", "v=test1", 100),
        TestRecord::Https("svc.example.com", ".", 400),
        TestRecord::HttpsAlias("alias-svc.example.com", "svc.example.com", 500),
    ]
}

#[tokio::test]
async fn a_and_aaaa_answers_over_udp_and_tcp() {
    let upstream = TestUpstream::start(&zone()).await;

    for edns in [false, true] {
        let udp = query_udp(upstream.addr, "www.example.com", RecordType::A, edns).await;
        assert_eq!(rcode(&udp), ResponseCode::NoError);
        assert_eq!(a_addrs(&udp), vec![WWW_V4]);
        assert_eq!(min_answer_ttl(&udp), Some(300));
        assert!(udp.metadata.authoritative);
        assert_eq!(
            udp.edns.is_some(),
            edns,
            "OPT in the reply iff in the query"
        );

        let tcp = query_tcp(upstream.addr, "www.example.com", RecordType::AAAA, edns).await;
        assert_eq!(rcode(&tcp), ResponseCode::NoError);
        assert_eq!(aaaa_addrs(&tcp), vec![WWW_V6]);
        assert!(a_addrs(&tcp).is_empty());
        assert_eq!(min_answer_ttl(&tcp), Some(200));
    }

    // Names match case-insensitively.
    let mixed = query_udp(upstream.addr, "WWW.Example.COM.", RecordType::A, true).await;
    assert_eq!(a_addrs(&mixed), vec![WWW_V4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chain_is_followed_inside_the_zone() {
    let upstream = TestUpstream::start(&zone()).await;

    for tcp in [false, true] {
        let msg = if tcp {
            query_tcp(upstream.addr, "alias.example.com", RecordType::A, true).await
        } else {
            query_udp(upstream.addr, "alias.example.com", RecordType::A, true).await
        };
        assert_eq!(rcode(&msg), ResponseCode::NoError);
        assert_eq!(
            answer_types(&msg),
            vec![RecordType::CNAME, RecordType::CNAME, RecordType::A]
        );
        assert_eq!(
            cname_targets(&msg),
            vec!["cdn.example.net", "edge.example.org"]
        );
        assert_eq!(a_addrs(&msg), vec![EDGE_V4]);
        assert_eq!(min_answer_ttl(&msg), Some(30));
        assert!(!has_soa_in_authority(&msg));
    }

    // The chain for a type the target lacks: just the CNAMEs, NOERROR.
    let msg = query_udp(upstream.addr, "alias.example.com", RecordType::AAAA, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert_eq!(
        answer_types(&msg),
        vec![RecordType::CNAME, RecordType::CNAME]
    );

    // Asking for the CNAME itself returns only that record.
    let msg = query_udp(upstream.addr, "alias.example.com", RecordType::CNAME, true).await;
    assert_eq!(cname_targets(&msg), vec!["cdn.example.net"]);

    // A CNAME whose target does not exist: hickory answers NOERROR with the lone CNAME.
    let msg = query_udp(upstream.addr, "dangling.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert_eq!(cname_targets(&msg), vec!["nowhere.example.com"]);
    assert!(a_addrs(&msg).is_empty());
}

#[tokio::test]
async fn unknown_name_is_nxdomain_with_soa() {
    let upstream = TestUpstream::start(&zone()).await;

    for tcp in [false, true] {
        let msg = if tcp {
            query_tcp(upstream.addr, "missing.example.com", RecordType::A, false).await
        } else {
            query_udp(upstream.addr, "missing.example.com", RecordType::A, true).await
        };
        assert_eq!(rcode(&msg), ResponseCode::NXDomain);
        assert!(msg.answers.is_empty());
        assert!(has_soa_in_authority(&msg));
        assert_eq!(negative_ttl(&msg), Some(NEGATIVE_TTL));
    }

    // A name under a TLD that has no record at all is NXDOMAIN too (the zone is the root).
    let msg = query_udp(upstream.addr, "host.invalid-tld", RecordType::AAAA, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    assert!(has_soa_in_authority(&msg));
}

#[tokio::test]
async fn missing_type_is_nodata_with_soa() {
    let upstream = TestUpstream::start(&zone()).await;

    let msg = query_udp(upstream.addr, "txt.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    assert!(has_soa_in_authority(&msg));
    assert_eq!(negative_ttl(&msg), Some(NEGATIVE_TTL));

    // An empty non-terminal ("example.com" only has names below it) is NODATA, not NXDOMAIN.
    let msg = query_tcp(upstream.addr, "example.com", RecordType::A, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    assert!(has_soa_in_authority(&msg));
}

#[tokio::test]
async fn txt_and_https_records() {
    let upstream = TestUpstream::start(&zone()).await;

    let msg = query_udp(upstream.addr, "txt.example.com", RecordType::TXT, true).await;
    assert_eq!(txt_strings(&msg), vec!["v=test1"]);
    assert_eq!(min_answer_ttl(&msg), Some(100));

    let msg = query_udp(upstream.addr, "svc.example.com", RecordType::HTTPS, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert_eq!(https_targets(&msg), vec![(1, String::new())]);
    assert_eq!(min_answer_ttl(&msg), Some(400));

    let msg = query_tcp(
        upstream.addr,
        "alias-svc.example.com",
        RecordType::HTTPS,
        true,
    )
    .await;
    assert_eq!(https_targets(&msg), vec![(0, "svc.example.com".to_owned())]);

    // A name with only an HTTPS record has no A: NODATA.
    let msg = query_udp(upstream.addr, "svc.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.answers.is_empty());
}

#[tokio::test]
async fn counters_move_by_exactly_the_queries_sent() {
    let upstream = TestUpstream::start(&zone()).await;
    assert_eq!(upstream.queries(), 0);

    query_udp(upstream.addr, "www.example.com", RecordType::A, true).await;
    query_tcp(upstream.addr, "WWW.EXAMPLE.COM", RecordType::A, false).await;
    query_udp(upstream.addr, "www.example.com.", RecordType::A, false).await;
    query_udp(upstream.addr, "www.example.com", RecordType::AAAA, true).await;
    query_udp(upstream.addr, "missing.example.com", RecordType::A, true).await;

    assert_eq!(upstream.queries(), 5);
    assert_eq!(upstream.queries_for("www.example.com", RecordType::A), 3);
    assert_eq!(upstream.queries_for("Www.Example.Com.", RecordType::A), 3);
    assert_eq!(upstream.queries_for("www.example.com", RecordType::AAAA), 1);
    assert_eq!(
        upstream.queries_for("missing.example.com", RecordType::A),
        1
    );
    assert_eq!(upstream.queries_for("www.example.com", RecordType::TXT), 0);
    assert_eq!(upstream.queries_for("other.example.com", RecordType::A), 0);

    // A CNAME chain is answered from one query: only the asked name is counted.
    query_udp(upstream.addr, "alias.example.com", RecordType::A, true).await;
    assert_eq!(upstream.queries(), 6);
    assert_eq!(upstream.queries_for("alias.example.com", RecordType::A), 1);
    assert_eq!(upstream.queries_for("edge.example.org", RecordType::A), 0);

    upstream.reset_counts();
    assert_eq!(upstream.queries(), 0);
    assert_eq!(upstream.queries_for("www.example.com", RecordType::A), 0);
}

#[tokio::test]
async fn raw_exchange_round_trips_bytes() {
    let upstream = TestUpstream::start(&zone()).await;
    let query = build_query("www.example.com", RecordType::A, true);
    let bytes = query.to_vec().unwrap();

    let udp = exchange_udp(upstream.addr, &bytes)
        .await
        .expect("UDP reply");
    let tcp = exchange_tcp(upstream.addr, &bytes)
        .await
        .expect("TCP reply");
    for raw in [udp, tcp] {
        assert_eq!(raw[..2], bytes[..2], "reply starts with the query ID");
        let msg = Message::from_vec(&raw).unwrap();
        assert_eq!(a_addrs(&msg), vec![WWW_V4]);
    }
    assert_eq!(upstream.queries(), 2);
}

#[tokio::test]
async fn unresponsive_upstream_times_out_quickly() {
    let dead = TestUpstream::start_unresponsive();
    assert!(dead.addr.ip().is_loopback());
    let bytes = build_query("www.example.com", RecordType::A, true)
        .to_vec()
        .unwrap();

    let started = Instant::now();
    let (udp, tcp) = tokio::join!(
        exchange_udp(dead.addr, &bytes),
        exchange_tcp(dead.addr, &bytes)
    );
    let elapsed = started.elapsed();

    assert_eq!(udp, None);
    assert_eq!(tcp, None);
    assert!(
        elapsed >= CLIENT_TIMEOUT - Duration::from_millis(100),
        "gave up early ({elapsed:?}): something answered or refused"
    );
    assert!(
        elapsed < CLIENT_TIMEOUT + Duration::from_millis(500),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn dropping_the_upstream_stops_it() {
    let upstream = TestUpstream::start(&zone()).await;
    let addr = upstream.addr;
    let bytes = build_query("www.example.com", RecordType::A, false)
        .to_vec()
        .unwrap();
    assert!(exchange_tcp(addr, &bytes).await.is_some());
    drop(upstream);

    // Aborted tasks release their sockets shortly after: TCP connections are then refused.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts TCP after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn ede_is_read_from_the_opt_record() {
    let mut reply = Message::response(7, hickory_proto::op::OpCode::Query);
    let mut edns = Edns::new();
    let mut data = 17u16.to_be_bytes().to_vec();
    data.extend_from_slice("blocked by policy".as_bytes());
    edns.options_mut().insert(EdnsOption::Unknown(15, data));
    edns.options_mut()
        .insert(EdnsOption::Unknown(15, 3u16.to_be_bytes().to_vec()));
    reply.set_edns(edns);

    // Through the wire format, as a test would see it.
    let decoded = Message::from_vec(&reply.to_vec().unwrap()).unwrap();
    assert_eq!(ede(&decoded), Some((17, "blocked by policy".to_owned())));
    assert_eq!(
        ede_all(&decoded),
        vec![(17, "blocked by policy".to_owned()), (3, String::new())]
    );

    let plain = Message::from_vec(
        &Message::response(8, hickory_proto::op::OpCode::Query)
            .to_vec()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ede(&plain), None);
}
