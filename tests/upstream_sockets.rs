//! How questions leave for the upstream over UDP: on sockets kept open and reused, whose
//! source ports keep changing (`src/dns/upstream/sockets.rs`).

mod common;

use std::collections::HashMap;

use common::*;

/// Queries one upstream socket carries before it is closed (`sockets::MAX_USES`).
const MAX_USES: usize = 64;

#[tokio::test]
async fn upstream_sockets_are_reused_and_their_ports_rotate() {
    let upstream = TestUpstream::start(&[]).await;
    let daemon =
        TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr)).await;
    // One question at a time, each a name never asked before: every one is forwarded.
    let questions = MAX_USES + 6;
    for n in 0..questions {
        let reply = query_udp(
            daemon.dns,
            &format!("n{n}.example.com"),
            RecordType::A,
            true,
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }
    let ports = upstream.udp_source_ports();
    assert_eq!(
        ports.len(),
        questions,
        "each question reached the upstream once"
    );
    let mut uses: HashMap<u16, usize> = HashMap::new();
    for port in &ports {
        *uses.entry(*port).or_default() += 1;
    }
    // A new socket per question would show `questions` ports; one socket forever, one port.
    assert!(
        (2..=3).contains(&uses.len()),
        "ports and their uses: {uses:?}"
    );
    assert!(uses.values().all(|&count| count <= MAX_USES), "{uses:?}");
}
