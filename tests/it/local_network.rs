//! The local network end to end (issue 17): local names and their PTRs answered at home,
//! private reverse zones and `home.arpa` never forwarded, forward zones sent to "the router"
//! (a second in-process server) with the most specific zone winning, DNS rebinding protection
//! on and off, and DHCP lease names in `check` and `explain`. The upstreams count every
//! question they receive, so "never forwarded" is measured, not assumed.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::str::FromStr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::common::*;

/// A PTR record for a test upstream's zone.
fn ptr(owner: &str, target: &str) -> TestRecord<'static> {
    TestRecord::Raw(Box::new(Record::from_rdata(
        Name::from_str(owner).unwrap(),
        300,
        RData::PTR(PTR(Name::from_str(target).unwrap())),
    )))
}

fn ptr_targets(message: &Message) -> Vec<String> {
    (message.answers.iter())
        .filter_map(|record| match &record.data {
            RData::PTR(target) => Some(target.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The owner of the SOA in the authority section.
fn soa_owner(message: &Message) -> Option<String> {
    (message.authorities.iter())
        .find(|record| record.record_type() == RecordType::SOA)
        .map(|record| record.name.to_string())
}

fn upstream_config(upstream: &TestUpstream, extra: &str) -> String {
    format!("[[upstream]]\naddress = \"{}\"\n{extra}", upstream.addr)
}

#[tokio::test]
async fn local_records_and_their_ptrs_are_answered_at_home_with_aa() {
    let upstream =
        TestUpstream::start(&[TestRecord::A("nas.lan", Ipv4Addr::new(203, 0, 113, 9), 300)]).await;
    let config = upstream_config(
        &upstream,
        r#"
[[record]]
name = "nas.lan"
a = "192.168.1.10"
aaaa = ["fd00::10"]
ttl = "5m"

[[record]]
name = "files.lan"
cname = "nas.lan"

[local]
hosts = ["hosts"]
"#,
    );
    let daemon =
        TestDaemon::start_with_files(&config, &[("hosts", "192.168.1.20 printer.lan printer\n")])
            .await;

    let a = query_udp(daemon.dns, "nas.lan", RecordType::A, true).await;
    assert_eq!(a_addrs(&a), [Ipv4Addr::new(192, 168, 1, 10)]);
    assert!(a.metadata.authoritative, "local answers carry AA");
    assert_eq!(min_answer_ttl(&a), Some(300));
    let aaaa = query_udp(daemon.dns, "NAS.lan", RecordType::AAAA, true).await;
    assert_eq!(
        aaaa_addrs(&aaaa),
        ["fd00::10".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    // A type the name lacks: NODATA with an SOA, as an authoritative server answers.
    let mx = query_udp(daemon.dns, "nas.lan", RecordType::MX, true).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert_eq!(soa_owner(&mx).as_deref(), Some("nas.lan."));
    // The CNAME is followed to the local target.
    let files = query_tcp(daemon.dns, "files.lan", RecordType::A, true).await;
    assert_eq!(cname_targets(&files), ["nas.lan"]);
    assert_eq!(a_addrs(&files), [Ipv4Addr::new(192, 168, 1, 10)]);
    // Hosts-file names, and the PTRs of every local address.
    let printer = query_udp(daemon.dns, "printer", RecordType::A, true).await;
    assert_eq!(a_addrs(&printer), [Ipv4Addr::new(192, 168, 1, 20)]);
    let reverse = query_udp(
        daemon.dns,
        "10.1.168.192.in-addr.arpa",
        RecordType::PTR,
        true,
    )
    .await;
    assert_eq!(ptr_targets(&reverse), ["nas.lan."]);
    assert!(reverse.metadata.authoritative);
    let reverse = query_udp(
        daemon.dns,
        "20.1.168.192.in-addr.arpa",
        RecordType::PTR,
        false,
    )
    .await;
    assert_eq!(ptr_targets(&reverse), ["printer.lan."]);
    assert_eq!(upstream.queries(), 0, "no local name went upstream");
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"metasink_queries_total{device="unknown",profile="meta-apps",qtype="A",result="local"}"#
        ),
        3.0,
        "{metrics}"
    );

    // A reload reads the hosts file again.
    std::fs::write(
        daemon.config_path().with_file_name("hosts"),
        "192.168.1.21 scanner.lan\n",
    )
    .unwrap();
    daemon
        .daemon
        .reloader()
        .reload_config()
        .await
        .expect("reload");
    let scanner = query_udp(daemon.dns, "scanner.lan", RecordType::A, true).await;
    assert_eq!(a_addrs(&scanner), [Ipv4Addr::new(192, 168, 1, 21)]);
    let gone = query_udp(daemon.dns, "printer", RecordType::A, true).await;
    assert_eq!(
        rcode(&gone),
        ResponseCode::NXDomain,
        "gone from the hosts file: asked upstream"
    );
    assert_eq!(upstream.queries(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn private_reverse_lookups_and_home_arpa_never_reach_the_upstream() {
    let upstream = TestUpstream::start(&[ptr("8.8.8.8.in-addr.arpa.", "dns.google.")]).await;
    let daemon = TestDaemon::start(&upstream_config(&upstream, "")).await;
    let ula = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
    let loopback6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa";
    let cases = [
        ("5.0.0.10.in-addr.arpa", RecordType::PTR, "10.in-addr.arpa."),
        (
            "1.0.16.172.in-addr.arpa",
            RecordType::PTR,
            "16.172.in-addr.arpa.",
        ),
        (
            "9.1.168.192.in-addr.arpa",
            RecordType::PTR,
            "168.192.in-addr.arpa.",
        ),
        (
            "1.0.0.127.in-addr.arpa",
            RecordType::PTR,
            "127.in-addr.arpa.",
        ),
        (
            "1.1.254.169.in-addr.arpa",
            RecordType::PTR,
            "254.169.in-addr.arpa.",
        ),
        (ula, RecordType::PTR, "d.f.ip6.arpa."),
        (loopback6, RecordType::PTR, &format!("{loopback6}.")),
        ("printer.home.arpa", RecordType::A, "home.arpa."),
    ];
    for (name, rtype, zone) in &cases {
        let reply = query_udp(daemon.dns, name, *rtype, true).await;
        assert_eq!(rcode(&reply), ResponseCode::NXDomain, "{name}");
        assert_eq!(soa_owner(&reply).as_deref(), Some(*zone), "{name}");
        assert!(reply.metadata.authoritative, "{name}");
    }
    assert_eq!(upstream.queries(), 0, "nothing private was forwarded");
    // A public address's reverse name is forwarded as any other question.
    let public = query_udp(daemon.dns, "8.8.8.8.in-addr.arpa", RecordType::PTR, true).await;
    assert_eq!(ptr_targets(&public), ["dns.google."]);
    assert_eq!(upstream.queries(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn forward_zones_go_to_their_own_upstreams_the_most_specific_winning() {
    let general = TestUpstream::start(&[TestRecord::A(
        "www.example.com",
        Ipv4Addr::new(192, 0, 2, 1),
        300,
    )])
    .await;
    let router = TestUpstream::start_on(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        &[
            TestRecord::A("tv.lan", Ipv4Addr::new(192, 168, 1, 50), 300),
            ptr("50.1.168.192.in-addr.arpa.", "tv.lan."),
        ],
    )
    .await;
    let iot = TestUpstream::start_on(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        &[TestRecord::A(
            "plug.iot.lan",
            Ipv4Addr::new(192, 168, 2, 7),
            300,
        )],
    )
    .await;
    let config = upstream_config(
        &general,
        &format!(
            r#"
[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
rebind_protection = true

[[record]]
name = "nas.lan"
a = "192.168.1.10"

[[forward]]
zones = ["lan", "168.192.in-addr.arpa"]
upstream = ["{}"]

[[forward]]
zones = ["iot.lan"]
upstream = ["{}"]
"#,
            router.addr, iot.addr
        ),
    );
    let daemon = TestDaemon::start(&config).await;

    let tv = query_udp(daemon.dns, "tv.lan", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&tv),
        [Ipv4Addr::new(192, 168, 1, 50)],
        "the router's answer, private address and all"
    );
    assert!(!tv.metadata.authoritative, "forwarded, not ours");
    let reverse = query_udp(
        daemon.dns,
        "50.1.168.192.in-addr.arpa",
        RecordType::PTR,
        true,
    )
    .await;
    assert_eq!(ptr_targets(&reverse), ["tv.lan."]);
    let plug = query_udp(daemon.dns, "plug.iot.lan", RecordType::A, true).await;
    assert_eq!(a_addrs(&plug), [Ipv4Addr::new(192, 168, 2, 7)]);
    // The router does not know it: its NXDOMAIN, not the general upstream's answer.
    let unknown = query_udp(daemon.dns, "nothing.lan", RecordType::A, true).await;
    assert_eq!(rcode(&unknown), ResponseCode::NXDomain);
    // A local name inside a forwarded zone is answered at home.
    let nas = query_udp(daemon.dns, "nas.lan", RecordType::A, true).await;
    assert_eq!(a_addrs(&nas), [Ipv4Addr::new(192, 168, 1, 10)]);
    let www = query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(a_addrs(&www), [Ipv4Addr::new(192, 0, 2, 1)]);

    assert_eq!(router.queries_for("tv.lan", RecordType::A), 1);
    assert_eq!(
        router.queries_for("50.1.168.192.in-addr.arpa", RecordType::PTR),
        1
    );
    assert_eq!(router.queries_for("nothing.lan", RecordType::A), 1);
    assert_eq!(
        router.queries(),
        3,
        "plug.iot.lan went to the iot upstream, nas.lan nowhere"
    );
    assert_eq!(iot.queries(), 1);
    assert_eq!(
        general.queries(),
        1,
        "only www.example.com reached the general upstream"
    );
    // A second ask is a cache hit, as for any upstream.
    query_udp(daemon.dns, "tv.lan", RecordType::A, true).await;
    assert_eq!(router.queries(), 3);
    daemon.stop().await;
}

/// A forward zone's upstream marked down stays down across policy builds (a list refresh, a
/// reload): the next snapshot takes its health over, so the router's dead first address is
/// not asked at full rate (three timeouts) again after each one.
#[tokio::test]
async fn a_forward_upstream_marked_down_stays_down_across_policy_builds() {
    let dead = FaultyUpstream::start(Fault::Drop).await;
    let router = FaultyUpstream::start(Fault::None).await;
    let daemon = TestDaemon::start(&format!(
        "[[forward]]\nzones = [\"lan\"]\nupstream = [\"{}\", \"{}\"]\n",
        dead.addr, router.addr
    ))
    .await;
    // Three timeouts mark it down; the router answers each within the deadline.
    for name in ["a.lan", "b.lan", "c.lan"] {
        let reply = query_udp(daemon.dns, name, RecordType::A, true).await;
        assert_eq!(a_addrs(&reply), [FAULTY_ANSWER], "{name}");
    }
    let marked_down = dead.queries();
    assert!(marked_down >= 3, "{marked_down}");
    for _ in 0..2 {
        daemon.daemon.reloader().reload_lists().await.unwrap();
    }
    for name in ["d.lan", "e.lan", "f.lan"] {
        let reply = query_udp(daemon.dns, name, RecordType::A, true).await;
        assert_eq!(a_addrs(&reply), [FAULTY_ANSWER], "{name}");
    }
    // hickory may send an attempt's datagram more than once: a probe is a third of those.
    assert!(
        dead.queries() <= marked_down + marked_down / 3,
        "still down after two rebuilds: skipped, but for one probe ({} then {})",
        marked_down,
        dead.queries()
    );
    daemon.stop().await;
}

fn rebind_records() -> Vec<TestRecord<'static>> {
    vec![
        TestRecord::A("evil.example", Ipv4Addr::new(192, 168, 1, 1), 300),
        TestRecord::A("loop.example", Ipv4Addr::LOCALHOST, 300),
        TestRecord::Aaaa("v6.example", "fd00::1".parse().unwrap(), 300),
        TestRecord::Cname("alias.example", "inside.example", 300),
        TestRecord::A("inside.example", Ipv4Addr::new(10, 0, 0, 5), 300),
        TestRecord::A("box.plex.direct", Ipv4Addr::new(192, 168, 1, 5), 300),
        TestRecord::A("public.example", Ipv4Addr::new(192, 0, 2, 1), 300),
    ]
}

#[tokio::test]
async fn rebinding_protection_blocks_private_answers_for_public_names_when_on() {
    let upstream = TestUpstream::start(&rebind_records()).await;
    let on = TestDaemon::start(&upstream_config(
        &upstream,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nrebind_protection = true\nrebind_allow = [\"plex.direct\"]\n",
    ))
    .await;
    for (name, rtype) in [
        ("evil.example", RecordType::A),
        ("loop.example", RecordType::A),
        ("v6.example", RecordType::AAAA),
        ("alias.example", RecordType::A),
    ] {
        let reply = query_udp(on.dns, name, rtype, true).await;
        assert!(
            a_addrs(&reply).iter().all(|ip| ip.is_unspecified()),
            "{name}: {reply:?}"
        );
        assert!(
            aaaa_addrs(&reply).iter().all(|ip| ip.is_unspecified()),
            "{name}: {reply:?}"
        );
        assert!(!reply.answers.is_empty(), "{name}: the null answer");
        let (code, text) = ede(&reply).expect("an EDE");
        assert_eq!(code, 15, "{name}");
        assert!(text.contains("rebinding"), "{name}: {text}");
    }
    let allowed = query_udp(on.dns, "box.plex.direct", RecordType::A, true).await;
    assert_eq!(a_addrs(&allowed), [Ipv4Addr::new(192, 168, 1, 5)]);
    let public = query_udp(on.dns, "public.example", RecordType::A, true).await;
    assert_eq!(a_addrs(&public), [Ipv4Addr::new(192, 0, 2, 1)]);
    // Blocked from the cache too (the answer was cached when first fetched).
    let again = query_udp(on.dns, "evil.example", RecordType::A, true).await;
    assert_eq!(a_addrs(&again), [Ipv4Addr::UNSPECIFIED]);
    let metrics = on.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"metasink_queries_total{device="unknown",profile="meta-apps",qtype="A",result="blocked"}"#
        ),
        4.0,
        "{metrics}"
    );
    on.stop().await;

    let off = TestDaemon::start(&upstream_config(&upstream, "")).await;
    let evil = query_udp(off.dns, "evil.example", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&evil),
        [Ipv4Addr::new(192, 168, 1, 1)],
        "off by default"
    );
    assert_eq!(ede(&evil), None);
    off.stop().await;
}

const DNSMASQ_LEASES: &str = "1765000000 02:00:5e:10:00:07 192.168.1.57 pixel-7 01:02:00:5e:10:00:07\n\
                              1765000000 02:00:5e:10:00:08 192.168.1.58 * *\n";

const ISC_LEASES: &str = "authoring-byte-order little-endian;\n\
                          lease 192.168.1.60 {\n  binding state active;\n  client-hostname \"kitchen-tv\";\n}\n\
                          lease 192.168.1.61 {\n  binding state free;\n  client-hostname \"gone\";\n}\n";

#[test]
fn both_lease_formats_name_clients_in_check_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dnsmasq.leases"), DNSMASQ_LEASES).unwrap();
    std::fs::write(dir.path().join("dhcpd.leases"), ISC_LEASES).unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "192.168.1.20 printer\nnot-an-address x\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         dhcp_leases = [\"dnsmasq.leases\", \"dhcpd.leases\", \"missing.leases\"]\n\
         rebind_protection = true\n\
         [[upstream]]\naddress = \"127.0.0.1:9\"\n\
         [[record]]\nname = \"nas.lan\"\na = \"192.168.1.10\"\n\
         [local]\nhosts = [\"hosts\"]\n\
         [[forward]]\nzones = [\"lan\"]\nupstream = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_metasink"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let check = run(&["check"]);
    for expected in [
        "dnsmasq.leases (dnsmasq) 1 named clients",
        "dhcpd.leases (ISC dhcpd) 1 named clients",
        "missing.leases NOT READ",
        "local:     1 records",
        "hosts 1 addresses, 1 lines skipped",
        "hosts:2: `not-an-address` is not an IP address",
        "forward:   lan → 127.0.0.1:9",
        "rebind:    on",
    ] {
        assert!(check.contains(expected), "{expected:?} in\n{check}");
    }
    let pixel = run(&["explain", "www.example.com", "--client", "192.168.1.57"]);
    assert!(
        pixel.contains("lease:    192.168.1.57 is \"pixel-7\""),
        "{pixel}"
    );
    let tv = run(&["explain", "www.example.com", "--client", "192.168.1.60"]);
    assert!(tv.contains("\"kitchen-tv\""), "{tv}");
    let freed = run(&["explain", "www.example.com", "--client", "192.168.1.61"]);
    assert!(!freed.contains("lease:"), "{freed}");
    let nas = run(&["explain", "nas.lan"]);
    assert!(
        nas.contains(
            "answered at home from the local names (authoritative): NOERROR, nas.lan A 192.168.1.10"
        ),
        "{nas}"
    );
    let reverse = run(&["explain", "5.0.0.10.in-addr.arpa", "--type", "PTR"]);
    assert!(
        reverse.contains("never forwarded") && reverse.contains("NXDOMAIN"),
        "{reverse}"
    );
}

/// `metasink ARGS` against the daemon at `http` with `token`: its stdout.
async fn remote_cli(args: &[&str], http: std::net::SocketAddr, token: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (url, token) = (format!("http://{http}"), token.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_metasink"))
            .args(&args)
            .env("METASINK_URL", url)
            .env("METASINK_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `GET path` with the bearer `token`, as JSON, once `ready` holds (or after 5 s).
async fn api_when(
    daemon: &TestDaemon,
    token: &str,
    path: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, body) =
            http_request(daemon.http, "GET", path, &[("Authorization", &auth)], "").await;
        assert_eq!(status, 200, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if ready(&json) || std::time::Instant::now() > deadline {
            return json;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `field` of the object in `array` whose `key` is `value`.
fn field_where<'a>(
    array: &'a serde_json::Value,
    key: &str,
    value: &str,
    field: &str,
) -> Option<&'a serde_json::Value> {
    (array.as_array()?.iter())
        .find(|item| item[key] == value)
        .map(|item| &item[field])
}

#[tokio::test]
async fn the_running_daemon_names_unknown_clients_from_both_lease_formats() {
    const TOKEN: &str = "leases-test-token-0123";
    let upstream = TestUpstream::start(&[
        TestRecord::A("www.example.test", Ipv4Addr::new(192, 0, 2, 10), 300),
        TestRecord::A("later.example.test", Ipv4Addr::new(192, 0, 2, 11), 300),
    ])
    .await;
    let dnsmasq = "1765000000 02:00:5e:10:00:05 127.0.0.5 Pixel-7 *\n\
                   1765000000 02:00:5e:10:00:03 127.0.0.3 tv-by-lease *\n";
    let isc = "authoring-byte-order little-endian;\n\
               lease 127.0.0.6 {\n  binding state active;\n  client-hostname \"kitchen-tv\";\n}\n\
               lease 127.0.0.7 {\n  binding state active;\n  client-hostname \"gone\";\n}\n\
               lease 127.0.0.7 {\n  binding state free;\n}\n";
    let config = upstream_config(
        &upstream,
        &format!(
            r#"
[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
state_dir = "state"
api_token = "{TOKEN}"
dhcp_leases = ["dnsmasq.leases", "dhcpd.leases"]

[querylog]
mode = "all"

[[device]]
name = "tv"
match = ["127.0.0.3"]
profile = "meta-apps"
"#
        ),
    );
    let daemon = TestDaemon::start_with_files(
        &config,
        &[("dnsmasq.leases", dnsmasq), ("dhcpd.leases", isc)],
    )
    .await;
    let client = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    for last in [5, 6, 7, 3] {
        query_udp_from(
            client(last),
            daemon.dns,
            "www.example.test",
            RecordType::A,
            true,
        )
        .await;
    }

    let clients = api_when(&daemon, TOKEN, "/api/clients", |_| true).await;
    let clients = &clients["clients"];
    let name_of = |address: &str| field_where(clients, "address", address, "name").cloned();
    assert_eq!(
        name_of("127.0.0.5"),
        Some("pixel-7".into()),
        "dnsmasq: {clients}"
    );
    assert_eq!(
        name_of("127.0.0.6"),
        Some("kitchen-tv".into()),
        "ISC: {clients}"
    );
    assert_eq!(
        name_of("127.0.0.7"),
        Some(serde_json::Value::Null),
        "freed lease"
    );
    assert_eq!(
        name_of("127.0.0.3"),
        Some(serde_json::Value::Null),
        "a configured device keeps its own name"
    );
    assert_eq!(
        field_where(clients, "address", "127.0.0.5", "device"),
        Some(&"unknown".into())
    );

    let log = api_when(&daemon, TOKEN, "/api/queries", |log| {
        log["queries"].as_array().is_some_and(|q| q.len() == 4)
    })
    .await;
    let logged = |address: &str| field_where(&log["queries"], "client", address, "client_name");
    assert_eq!(logged("127.0.0.5"), Some(&"pixel-7".into()), "{log}");
    assert_eq!(logged("127.0.0.6"), Some(&"kitchen-tv".into()), "{log}");
    assert_eq!(logged("127.0.0.7"), Some(&serde_json::Value::Null));
    assert_eq!(logged("127.0.0.3"), Some(&serde_json::Value::Null));

    let table = remote_cli(&["clients"], daemon.http, TOKEN).await;
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("127.0.0.5") && line.contains("pixel-7")),
        "{table}"
    );
    let printed = remote_cli(&["log"], daemon.http, TOKEN).await;
    assert!(printed.contains("unknown (kitchen-tv)"), "{printed}");
    // Never a metric label: the series count stays bounded by the configured devices.
    let metrics = daemon.metrics().await;
    assert!(
        !metrics.contains("pixel-7") && !metrics.contains("kitchen-tv"),
        "{metrics}"
    );

    // The DHCP server renames the phone: read again once the file's time changes.
    let leases = daemon.dir().join("dnsmasq.leases");
    std::fs::write(
        &leases,
        "1765000001 02:00:5e:10:00:05 127.0.0.5 pixel-8 *\n",
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&leases)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    let renamed = |clients: &serde_json::Value| {
        field_where(&clients["clients"], "address", "127.0.0.5", "name") == Some(&"pixel-8".into())
    };
    let clients = api_when(&daemon, TOKEN, "/api/clients", renamed).await;
    assert!(renamed(&clients), "{clients}");
    query_udp_from(
        client(5),
        daemon.dns,
        "later.example.test",
        RecordType::A,
        true,
    )
    .await;
    let log = api_when(&daemon, TOKEN, "/api/queries?client=127.0.0.5", |log| {
        log["queries"].as_array().is_some_and(|q| q.len() == 2)
    })
    .await;
    let names: Vec<_> = (log["queries"].as_array().unwrap().iter())
        .map(|entry| (entry["name"].clone(), entry["client_name"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("later.example.test".into(), "pixel-8".into()),
            ("www.example.test".into(), "pixel-7".into()),
        ],
        "each entry keeps the name the client had when it asked"
    );
    daemon.stop().await;
}
