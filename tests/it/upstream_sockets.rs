//! How questions leave for the upstream over UDP: on sockets kept open and reused, whose
//! source ports keep changing (`src/dns/upstream/sockets.rs`), each used only by the UDP
//! listener (runtime) that opened it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;

/// Queries one upstream socket carries before it is closed (`sockets::MAX_USES`).
const MAX_USES: usize = 64;

/// A daemon forwarding to a test upstream that has no names (it answers NXDOMAIN).
async fn forwarding_daemon() -> (TestUpstream, TestDaemon) {
    let upstream = TestUpstream::start(&[]).await;
    let daemon =
        TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr)).await;
    (upstream, daemon)
}

/// Asks `name` over UDP from a new client socket; the upstream's NXDOMAIN must come back.
async fn ask_new_name(daemon: &TestDaemon, name: &str) {
    let reply = query_udp(daemon.dns, name, RecordType::A, true).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn upstream_sockets_are_reused_and_their_ports_rotate() {
    let (upstream, daemon) = forwarding_daemon().await;
    // One question at a time, each a name never asked before: every one is forwarded.
    let questions = MAX_USES + 6;
    for n in 0..questions {
        ask_new_name(&daemon, &format!("n{n}.example.com")).await;
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
    // Each client socket lands on one of the UDP listeners (one per core), each with its
    // own idle sockets: at most one listener reaches 64 uses and opens a second socket. A new
    // socket per question would show `questions` ports; one socket forever, one port.
    assert!(
        (2..=listeners() + 1).contains(&uses.len()),
        "ports and their uses: {uses:?}"
    );
    assert!(uses.values().all(|&count| count <= MAX_USES), "{uses:?}");
}

/// The daemon's UDP listeners: one per core.
fn listeners() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[tokio::test]
async fn questions_from_many_clients_are_forwarded_promptly_by_every_listener() {
    let (_upstream, daemon) = forwarding_daemon().await;
    // A new client socket per question: the kernel spreads them over the listeners, and an
    // idle listener blocks in the kernel without watching its runtime's sockets. A listener
    // that took another's idle socket would wait for a reply nobody reports to it, until
    // hickory re-sends after a third of a second.
    for n in 0..40 {
        let started = Instant::now();
        ask_new_name(&daemon, &format!("c{n}.example.com")).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(250),
            "question {n} answered after {elapsed:?}"
        );
    }
}
