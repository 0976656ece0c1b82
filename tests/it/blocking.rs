//! Per-profile blocking end to end: the real daemon on loopback, a real upstream, queries over
//! UDP and TCP from several 127.0.0.x "devices", directly or through a forwarding "router"
//! that names them in EDNS options.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::common::*;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};

const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PARENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const NX_DEVICE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// Given to its device in the IPv4-mapped form `::ffff:127.0.0.5`.
const MAPPED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
/// Inside the device network given as `::ffff:127.0.1.0/120`.
const IN_MAPPED_NETWORK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 9));
const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A trusted forwarder (a router running dnsmasq) that is no device itself.
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
/// The MAC address of the device "phone" (profile open), which has no IP address configured.
const PHONE_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x07];

const LISTS: &[(&str, &str)] = &[
    ("ai.txt", "# plain entries of a subdomains list\nmeta.ai\n"),
    ("exact.txt", "tracker.example\n"),
    ("keep.txt", "||allowed.meta.ai^\n"),
];

fn config(upstream: &TestUpstream) -> String {
    format!(
        r#"
default_profile = "kids"

[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
trusted_forwarders = ["127.0.0.10"]

[[upstream]]
address = "{}"

[[list]]
id = "ai"
source = "ai.txt"
match = "subdomains"

[[list]]
id = "exact-list"
source = "exact.txt"
match = "exact"

[[list]]
id = "keep"
source = "keep.txt"

[[profile]]
name = "kids"
block = ["ai", "exact-list"]
allow = ["keep"]

[[profile]]
name = "open"
block = []

[[profile]]
name = "nx"
block = ["ai"]
answer = "nxdomain"
blocked_ttl = "30s"

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "kids"

[[device]]
name = "parent"
match = ["127.0.0.3/32"]
profile = "open"

[[device]]
name = "nx-device"
match = ["127.0.0.4"]
profile = "nx"

[[device]]
name = "mapped"
match = ["::ffff:127.0.0.5", "::ffff:127.0.1.0/120"]
profile = "open"

[[device]]
name = "phone"
match = ["02-00-5E-10-00-07"]
profile = "open"
"#,
        upstream.addr
    )
}

async fn setup() -> (TestUpstream, TestDaemon) {
    let upstream = TestUpstream::start(&[
        TestRecord::A("www.meta.ai", REAL, 300),
        TestRecord::Aaaa("www.meta.ai", "2001:db8::1".parse().unwrap(), 300),
        TestRecord::A("allowed.meta.ai", REAL, 300),
        TestRecord::A("xmeta.ai", REAL, 300),
        TestRecord::A("tracker.example", REAL, 300),
        TestRecord::A("sub.tracker.example", REAL, 300),
    ])
    .await;
    let daemon = TestDaemon::start_with_files(&config(&upstream), LISTS).await;
    (upstream, daemon)
}

fn assert_blocked_ede(reply: &Message, list: &str) {
    assert_eq!(
        ede(reply),
        Some((15, format!("blocked by {list}"))),
        "{reply:?}"
    );
}

#[tokio::test]
async fn blocked_names_get_the_null_answer_for_every_type_over_udp_and_tcp() {
    let (upstream, daemon) = setup().await;
    for tcp in [false, true] {
        let ask = |rtype| async move {
            if tcp {
                query_tcp(daemon.dns, "www.meta.ai", rtype, true).await
            } else {
                query_udp(daemon.dns, "www.meta.ai", rtype, true).await
            }
        };
        let a = ask(RecordType::A).await;
        assert_eq!(rcode(&a), ResponseCode::NoError);
        assert_eq!(a_addrs(&a), vec![Ipv4Addr::UNSPECIFIED]);
        assert_eq!(min_answer_ttl(&a), Some(10));
        assert_blocked_ede(&a, "ai");
        assert_eq!(
            a.queries[0].name().to_ascii(),
            "www.meta.ai.",
            "question echoed"
        );
        assert!(a.metadata.recursion_desired && a.metadata.recursion_available);

        let aaaa = ask(RecordType::AAAA).await;
        assert_eq!(aaaa_addrs(&aaaa), vec![Ipv6Addr::UNSPECIFIED]);
        assert_blocked_ede(&aaaa, "ai");

        for rtype in [RecordType::HTTPS, RecordType::TXT, RecordType::MX] {
            let reply = ask(rtype).await;
            assert_eq!(rcode(&reply), ResponseCode::NoError, "{rtype}");
            assert!(reply.answers.is_empty(), "{rtype}: {reply:?}");
            assert!(has_soa_in_authority(&reply), "{rtype}");
            assert_blocked_ede(&reply, "ai");
        }
    }
    assert_eq!(
        upstream.queries(),
        0,
        "a blocked name never reaches the upstream"
    );
}

#[tokio::test]
async fn queries_without_edns_get_no_opt_record() {
    let (_upstream, daemon) = setup().await;
    let reply = query_udp(daemon.dns, "www.meta.ai", RecordType::A, false).await;
    assert_eq!(a_addrs(&reply), vec![Ipv4Addr::UNSPECIFIED]);
    assert!(reply.edns.is_none());
}

#[tokio::test]
async fn subdomain_rules_follow_label_boundaries_and_match_modes() {
    let (_upstream, daemon) = setup().await;
    let ask = |name: &'static str| query_udp(daemon.dns, name, RecordType::A, true);
    // `meta.ai` in a subdomains list covers the name itself and everything below it…
    assert_eq!(a_addrs(&ask("meta.ai").await), vec![Ipv4Addr::UNSPECIFIED]);
    assert_eq!(
        a_addrs(&ask("a.b.www.meta.ai").await),
        vec![Ipv4Addr::UNSPECIFIED]
    );
    // …but not a name that merely ends with the same letters.
    let xmeta = ask("xmeta.ai").await;
    assert_eq!(a_addrs(&xmeta), vec![REAL]);
    assert_eq!(ede(&xmeta), None);
    // An exact entry blocks the name only.
    assert_eq!(
        a_addrs(&ask("tracker.example").await),
        vec![Ipv4Addr::UNSPECIFIED]
    );
    assert_eq!(a_addrs(&ask("sub.tracker.example").await), vec![REAL]);
}

#[tokio::test]
async fn allow_lists_win_over_block_lists() {
    let (upstream, daemon) = setup().await;
    let reply = query_udp(daemon.dns, "allowed.meta.ai", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), vec![REAL]);
    assert_eq!(upstream.queries_for("allowed.meta.ai", RecordType::A), 1);
}

#[tokio::test]
async fn devices_get_their_own_profile_and_unknown_clients_the_default() {
    let (_upstream, daemon) = setup().await;
    let ask = |source| query_udp_from(source, daemon.dns, "www.meta.ai", RecordType::A, true);
    assert_eq!(a_addrs(&ask(TABLET).await), vec![Ipv4Addr::UNSPECIFIED]);
    assert_eq!(a_addrs(&ask(PARENT).await), vec![REAL]);
    assert_eq!(
        a_addrs(&ask(UNKNOWN).await),
        vec![Ipv4Addr::UNSPECIFIED],
        "default profile kids"
    );
}

#[tokio::test]
async fn a_device_given_as_ipv4_mapped_matches_its_ipv4_clients() {
    let (_upstream, daemon) = setup().await;
    let ask = |source| query_udp_from(source, daemon.dns, "www.meta.ai", RecordType::A, true);
    assert_eq!(a_addrs(&ask(MAPPED).await), vec![REAL], "profile open");
    assert_eq!(a_addrs(&ask(IN_MAPPED_NETWORK).await), vec![REAL]);
}

/// Asks for www.meta.ai from `source`, with `options` in the query's EDNS record.
async fn ask_naming(daemon: &TestDaemon, source: IpAddr, options: &[EdnsOption]) -> Message {
    query_udp_naming(source, daemon.dns, "www.meta.ai", options).await
}

#[tokio::test]
async fn a_trusted_forwarder_names_devices_by_client_subnet_and_mac_address() {
    let (_upstream, daemon) = setup().await;
    let subnet =
        |ip: &str, prefix| EdnsOption::Subnet(ClientSubnet::new(ip.parse().unwrap(), prefix, 0));
    let blocked = vec![Ipv4Addr::UNSPECIFIED];
    let open = vec![REAL];

    let router_alone = ask_naming(&daemon, ROUTER, &[]).await;
    assert_eq!(
        a_addrs(&router_alone),
        blocked,
        "the router itself: default profile kids"
    );
    let parent = ask_naming(&daemon, ROUTER, &[subnet("127.0.0.3", 32)]).await;
    assert_eq!(
        a_addrs(&parent),
        open,
        "ECS names the parent (profile open)"
    );
    let in_network = ask_naming(&daemon, ROUTER, &[subnet("127.0.1.0", 24)]).await;
    assert_eq!(
        a_addrs(&in_network),
        open,
        "a /24 inside the device network 127.0.1.0/24"
    );
    let nobody = ask_naming(&daemon, ROUTER, &[subnet("0.0.0.0", 0)]).await;
    assert_eq!(
        a_addrs(&nobody),
        blocked,
        "dnsmasq's default /0 names nobody"
    );

    // dnsmasq --add-mac (six bytes), --add-mac=text and --add-mac=base64.
    for (code, bytes) in [
        (65001, PHONE_MAC.to_vec()),
        (65073, b"02:00:5e:10:00:07".to_vec()),
        (65073, b"AgBeEAAH".to_vec()),
    ] {
        let phone = ask_naming(&daemon, ROUTER, &[EdnsOption::Unknown(code, bytes.clone())]).await;
        assert_eq!(
            a_addrs(&phone),
            open,
            "option {code} {bytes:?} names the phone"
        );
    }
    let stranger_mac = EdnsOption::Unknown(65001, vec![0x02, 0, 0, 0, 0, 0x99]);
    let stranger = ask_naming(&daemon, ROUTER, &[stranger_mac]).await;
    assert_eq!(
        a_addrs(&stranger),
        blocked,
        "a MAC that is no device: default profile"
    );

    // The metrics count each query against the device it was for, not the router.
    let text = daemon.metrics().await;
    let unknown_blocked = r#"metasink_blocked_total{device="unknown",list="ai",profile="kids"}"#;
    assert_eq!(metric(&text, unknown_blocked), 3.0, "{text}");
    let phone = |result| {
        let series = format!(
            r#"metasink_queries_total{{device="phone",profile="open",qtype="A",result="{result}"}}"#
        );
        metric(&text, &series)
    };
    assert_eq!(phone("forwarded") + phone("cached"), 3.0, "{text}");
}

/// The EDNS Client Subnet option of `reply`: (address, source prefix, scope prefix).
fn echoed_subnet(reply: &Message) -> Option<(IpAddr, u8, u8)> {
    let edns = reply.edns.as_ref()?;
    edns.options()
        .options
        .iter()
        .find_map(|(_, option)| match option {
            EdnsOption::Subnet(subnet) => {
                Some((subnet.addr(), subnet.source_prefix(), subnet.scope_prefix()))
            }
            _ => None,
        })
}

#[tokio::test]
async fn an_answer_decided_from_a_client_subnet_echoes_it_with_the_scope_used() {
    // RFC 7871 §7.3: an ECS-aware cache in the router keeps the answer for the scope only.
    let (_upstream, daemon) = setup().await;
    let subnet = |ip: &str, prefix| ClientSubnet::new(ip.parse().unwrap(), prefix, 0);
    let ask = |name: &'static str, source, subnet: ClientSubnet| {
        let daemon = &daemon;
        async move {
            let option = EdnsOption::Subnet(subnet);
            query_udp_naming(source, daemon.dns, name, &[option]).await
        }
    };
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();

    let parent = ask("www.meta.ai", ROUTER, subnet("127.0.0.3", 32)).await;
    assert_eq!(a_addrs(&parent), vec![REAL]);
    assert_eq!(
        echoed_subnet(&parent),
        Some((ip("127.0.0.3"), 32, 32)),
        "the device's own address decided"
    );
    let in_network = ask("www.meta.ai", ROUTER, subnet("127.0.1.0", 24)).await;
    assert_eq!(
        echoed_subnet(&in_network),
        Some((ip("127.0.1.0"), 24, 24)),
        "the device network 127.0.1.0/24 decided"
    );
    let nobody = ask("www.meta.ai", ROUTER, subnet("127.0.9.0", 24)).await;
    assert_eq!(a_addrs(&nobody), vec![Ipv4Addr::UNSPECIFIED]);
    assert_eq!(
        echoed_subnet(&nobody),
        Some((ip("127.0.9.0"), 24, 24)),
        "no device: the default profile holds for this subnet"
    );
    let unlisted = ask("xmeta.ai", ROUTER, subnet("127.0.0.3", 32)).await;
    assert_eq!(a_addrs(&unlisted), vec![REAL]);
    assert_eq!(
        echoed_subnet(&unlisted),
        Some((ip("127.0.0.3"), 32, 0)),
        "a name on no list is answered alike for everyone"
    );

    let untrusted = ask("www.meta.ai", TABLET, subnet("127.0.0.3", 32)).await;
    assert_eq!(echoed_subnet(&untrusted), None, "ignored, so not echoed");
    let plain = ask_naming(&daemon, ROUTER, &[]).await;
    assert_eq!(echoed_subnet(&plain), None);
}

#[tokio::test]
async fn a_client_that_is_no_trusted_forwarder_cannot_name_another_device() {
    let (_upstream, daemon) = setup().await;
    let as_parent = EdnsOption::Subnet(ClientSubnet::new(PARENT, 32, 0));
    let as_phone = EdnsOption::Unknown(65001, PHONE_MAC.to_vec());
    for option in [as_parent, as_phone] {
        let reply = ask_naming(&daemon, TABLET, &[option]).await;
        assert_eq!(
            a_addrs(&reply),
            vec![Ipv4Addr::UNSPECIFIED],
            "the tablet stays kids"
        );
    }
}

#[tokio::test]
async fn a_profile_can_answer_nxdomain_with_its_own_ttl() {
    let (_upstream, daemon) = setup().await;
    let reply = query_udp_from(NX_DEVICE, daemon.dns, "www.meta.ai", RecordType::A, true).await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert!(has_soa_in_authority(&reply));
    assert_eq!(negative_ttl(&reply), Some(30));
    assert_blocked_ede(&reply, "ai");
}
