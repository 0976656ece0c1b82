//! Upstreams over DNS-over-TLS and DNS-over-HTTPS: real hickory TLS and HTTP/2 servers with a
//! certificate from a CA the test makes ([`EncryptedUpstream`]).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::common::*;

/// Names the test upstream answers, `n0.test` to `n9.test` → 192.0.2.0 to 192.0.2.9.
const NAMES: usize = 10;

fn name(index: usize) -> String {
    format!("n{index}.test")
}

fn address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, index as u8)
}

async fn upstream() -> EncryptedUpstream {
    let names: Vec<String> = (0..NAMES).map(name).collect();
    let records: Vec<TestRecord<'_>> = names
        .iter()
        .enumerate()
        .map(|(index, name)| TestRecord::A(name, address(index), 300))
        .collect();
    EncryptedUpstream::start(&records).await
}

/// The `[[upstream]]` table of `url`, checked against the test CA as `tls_name`.
fn config(url: &str, tls_name: &str, ca_file: &str) -> String {
    format!(
        "[[upstream]]\naddress = \"{url}\"\ntls_name = \"{tls_name}\"\nca_file = \"{ca_file}\"\n"
    )
}

fn dot_url(upstream: &EncryptedUpstream) -> String {
    format!("tls://{}", upstream.dot)
}

fn doh_url(upstream: &EncryptedUpstream) -> String {
    format!("https://{}/dns-query", upstream.doh)
}

/// Asks for every name at once and checks each answer.
async fn ask_all_at_once(daemon: &TestDaemon) {
    let replies = futures_util::future::join_all((0..NAMES).map(|index| async move {
        (
            index,
            query_udp(daemon.dns, &name(index), RecordType::A, true).await,
        )
    }))
    .await;
    for (index, reply) in replies {
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{}", name(index));
        assert_eq!(a_addrs(&reply), [address(index)], "{}", name(index));
    }
}

#[tokio::test]
async fn dot_and_doh_answer_pipelined_queries_on_one_kept_connection() {
    let server = upstream().await;
    let ca = server.ca_file.display().to_string();
    for (url, protocol) in [(dot_url(&server), "tls"), (doh_url(&server), "https")] {
        let daemon = TestDaemon::start(&config(&url, SERVER_NAME, &ca)).await;
        let (queries, connections) = (server.queries(), server.connections());
        // Held back, so that all ten are in flight together.
        server.delay_answers(Duration::from_millis(30));
        ask_all_at_once(&daemon).await;
        server.delay_answers(Duration::ZERO);
        let reply = query_udp(daemon.dns, "n0.test", RecordType::AAAA, true).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{url}");
        assert_eq!(server.queries() - queries, NAMES + 1, "{url}");
        assert_eq!(
            server.connections() - connections,
            1,
            "{url}: one connection, reused"
        );
        let metrics = daemon.metrics().await;
        let info = format!("metasink_upstream_info{{protocol=\"{protocol}\",upstream=\"{url}\"}}");
        assert_eq!(metric(&metrics, &info), 1.0, "{metrics}");
        daemon.stop().await;
    }
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_closed_with_a_counted_reason() {
    let server = upstream().await;
    let ca = server.ca_file.display().to_string();
    for url in [dot_url(&server), doh_url(&server)] {
        let daemon = TestDaemon::start(&config(&url, "other.test", &ca)).await;
        let reply = query_udp(daemon.dns, "n1.test", RecordType::A, true).await;
        assert_eq!(rcode(&reply), ResponseCode::ServFail, "{url}");
        let metrics = daemon.metrics().await;
        let errors = format!("metasink_upstream_errors_total{{kind=\"tls\",upstream=\"{url}\"}}");
        assert_eq!(metric(&metrics, &errors), 1.0, "{metrics}");
        daemon.stop().await;
    }
    // Nor is a certificate from a CA the system does not trust accepted without `ca_file`.
    let daemon = TestDaemon::start(&format!(
        "[[upstream]]\naddress = \"{}\"\ntls_name = \"{SERVER_NAME}\"\n",
        dot_url(&server)
    ))
    .await;
    let reply = query_udp(daemon.dns, "n1.test", RecordType::A, true).await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert_eq!(
        server.queries(),
        0,
        "nothing was sent over a connection not trusted"
    );
}

#[tokio::test]
async fn queries_waiting_on_a_connection_the_server_closes_are_sent_again() {
    let mut server = upstream().await;
    let ca = server.ca_file.display().to_string();
    for url in [dot_url(&server), doh_url(&server)] {
        let daemon = TestDaemon::start(&config(&url, SERVER_NAME, &ca)).await;
        // A connection is open and in use.
        let reply = query_udp(daemon.dns, "n0.test", RecordType::TXT, true).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{url}");
        let before = server.queries();
        server.delay_answers(Duration::from_secs(5));
        let asked = tokio::spawn({
            let dns = daemon.dns;
            async move {
                futures_util::future::join_all((0..NAMES).map(|index| async move {
                    (
                        index,
                        query_udp(dns, &name(index), RecordType::A, true).await,
                    )
                }))
                .await
            }
        });
        // Every question has reached the server (one at least, over DoT: its server reads the
        // next request only after answering one) and waits there.
        while server.queries() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.delay_answers(Duration::ZERO);
        server.drop_connections();
        for (index, reply) in asked.await.unwrap() {
            assert_eq!(
                rcode(&reply),
                ResponseCode::NoError,
                "{url}: {}",
                name(index)
            );
            assert_eq!(a_addrs(&reply), [address(index)], "{url}: {}", name(index));
        }
        daemon.stop().await;
    }
}

#[tokio::test]
async fn a_host_named_upstream_connects_to_its_bootstrap_addresses_in_order() {
    let server = upstream().await;
    // Nothing listens on 127.0.0.3 at that port: refused, then the next address.
    let config = format!(
        "[[upstream]]\naddress = \"tls://{SERVER_NAME}:{}\"\nbootstrap = [\"127.0.0.3\", \
         \"127.0.0.1\"]\nca_file = \"{}\"\n",
        server.dot.port(),
        server.ca_file.display()
    );
    let daemon = TestDaemon::start(&config).await;
    let reply = query_udp(daemon.dns, "n2.test", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), [address(2)]);
    assert_eq!(server.queries(), 1);
}

#[tokio::test]
async fn a_tcp_upstream_gets_every_query_over_tcp() {
    let server = TestUpstream::start(&[TestRecord::A("n3.test", address(3), 60)]).await;
    let config = format!("[[upstream]]\naddress = \"tcp://{}\"\n", server.addr);
    let daemon = TestDaemon::start(&config).await;
    let reply = query_udp(daemon.dns, "n3.test", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), [address(3)]);
    assert_eq!(server.queries(), 1);
    assert!(server.udp_source_ports().is_empty(), "nothing over UDP");
}
