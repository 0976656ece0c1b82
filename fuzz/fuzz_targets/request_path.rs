//! The request path: a client's bytes through `DnsService::respond`, the function both the UDP
//! and the TCP listener call, with the daemon's policy (bundled lists, preset profiles, two
//! devices), its admission control (without the rate limit) and no upstream, so every name
//! is either blocked or SERVFAIL and nothing leaves the process.
//!
//! Input layout: one byte (bit 0: TCP; bits 1-2: the client, see `CLIENTS`), then the
//! request as it arrives in a datagram or after a TCP length prefix.
//!
//! Besides "no panic", the reply must keep the promises of `dns::request`, `dns::response`
//! and admission: nothing back for runts and responses, REFUSED or nothing for a stranger,
//! otherwise a well-formed response with the request's ID and opcode, within the UDP size
//! limit.

#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use libfuzzer_sys::fuzz_target;
use metasink::admission::Admission;
use metasink::cache::Cache;
use metasink::dns::{MAX_UDP_PAYLOAD, Transport, Upstreams};
use metasink::metrics::Metrics;
use metasink::pipeline::Pipeline;
use metasink::server::{DnsService, ServiceCounters};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// The clients bits 1-2 of the first byte choose: loopback (no device: the default profile),
/// the quest and the kids' devices of `CONFIG`, and a stranger outside `allow_from`.
const CLIENTS: [&str; 4] = ["127.0.0.1", "192.168.1.20", "::1", "203.0.113.9"];
const STRANGER: usize = 3;

/// No per-client rate limit: every input comes from one of four addresses, and a dropped
/// query would hide the path behind it.
const CONFIG: &str = r#"
[server]
rate_limit_qps = 0

[[device]]
name = "quest"
match = ["192.168.1.20"]
profile = "quest"

[[device]]
name = "kids"
match = ["::1"]
profile = "no-meta"
"#;

struct Fixture {
    runtime: Runtime,
    service: DnsService,
    clients: [IpAddr; 4],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut settings = metasink::config::parse(CONFIG, Path::new("/fuzz/config.toml"))
            .expect("the fixture config is valid");
        // No [[upstream]] means resolv.conf's nameservers: clear them so nothing is forwarded.
        settings.upstreams.clear();
        let metrics = Metrics::new();
        let policy = Arc::new(ArcSwap::from_pointee(metasink::policy::compile(
            &settings, &metrics, 1,
        )));
        let upstreams = Upstreams::new(&settings.upstreams, &metrics);
        let cache = Cache::new(&settings.cache, metrics.cache());
        let service = DnsService::new(
            policy,
            Pipeline::new(cache, upstreams),
            Admission::new(&settings.admission),
            ServiceCounters::new(&metrics),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let clients = CLIENTS.map(|text| text.parse().expect("a client address"));
        Fixture {
            runtime,
            service,
            clients,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, request)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let transport = if selector & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client_index = usize::from((selector >> 1) & 3);
    let client = fixture.clients[client_index];
    let reply = fixture
        .runtime
        .block_on(fixture.service.respond(request, client, transport, Instant::now()));

    let is_runt = request.len() < 12;
    let is_response = request.get(2).is_some_and(|flags| flags & 0x80 != 0);
    let Some(reply) = reply else {
        // A stranger gets REFUSED for a well-formed query and nothing for anything else.
        assert!(
            is_runt || is_response || client_index == STRANGER,
            "a query got no reply"
        );
        return;
    };
    assert!(!is_runt && !is_response, "a runt or a response got a reply");
    assert_eq!(reply[..2], request[..2], "the reply does not echo the ID");
    let message = match Message::from_vec(&reply) {
        Ok(message) => message,
        Err(error) => panic!("our reply does not decode: {error}"),
    };
    assert_eq!(message.metadata.message_type, MessageType::Response);
    if client_index == STRANGER {
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
    }
    assert_eq!(
        (reply[2] >> 3) & 0xf,
        (request[2] >> 3) & 0xf,
        "the reply does not echo the opcode"
    );
    if transport == Transport::Udp {
        // RFC 1035 §4.2.1 and RFC 6891 §6.2.5: 512 bytes, or what the client's EDNS allows up
        // to our ceiling.
        let payload = Message::from_vec(request)
            .ok()
            .and_then(|request| request.edns.map(|edns| edns.max_payload()));
        let limit = payload.map_or(512, |payload| payload.clamp(512, MAX_UDP_PAYLOAD));
        assert!(
            reply.len() <= usize::from(limit),
            "a {}-byte UDP reply exceeds {limit}",
            reply.len()
        );
    }
});
