//! Answer-address filtering (`block_networks`) through the real daemon.
//!
//! An app that knows a name outside Meta's domains (or a name the profile does not list) still
//! reaches Meta when that name resolves into Meta's networks. A profile with
//! `block_networks = ["meta-networks"]` (the `no-meta` preset) answers such an answer as
//! blocked, naming the list; every other profile gets the upstream's answer, from the same
//! shared cache. A household's own network list (a file here; an https:// URL works the same
//! way) does the same for the profiles that name it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::common::*;

/// A name outside Meta's domains whose answer lies inside Meta's networks (AS32934).
const INTO_META: &str = "remembered.example.org";
const META_V4: Ipv4Addr = Ipv4Addr::new(157, 240, 1, 35);
const META_V6: Ipv6Addr = Ipv6Addr::new(0x2a03, 0x2880, 0xf12d, 0x83, 0xface, 0xb00c, 0, 0x25de);

/// A name whose answer lies in the household's own network list.
const INTO_HOUSE_LIST: &str = "gadget.example.org";
const HOUSE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

/// An ordinary name.
const ORDINARY: &str = "ordinary.example.org";
const ORDINARY_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

const NO_META: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 13));
const META_APPS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
const STRICT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 14));
const HOUSE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 15));

async fn start() -> (TestUpstream, TestDaemon) {
    let upstream = TestUpstream::start(&[
        TestRecord::A(INTO_META, META_V4, 300),
        TestRecord::Aaaa(INTO_META, META_V6, 300),
        TestRecord::A(INTO_HOUSE_LIST, HOUSE_V4, 300),
        TestRecord::A(ORDINARY, ORDINARY_V4, 300),
    ])
    .await;
    let config = format!(
        "[[upstream]]\naddress = \"{}\"\n\n\
         [[list]]\nid = \"house-nets\"\nsource = \"house-nets.txt\"\n\n\
         [[profile]]\nname = \"house\"\nextends = \"meta-apps\"\nblock_networks = [\"house-nets\"]\n\n\
         [[device]]\nname = \"no-meta-device\"\nmatch = [\"{NO_META}\"]\nprofile = \"no-meta\"\n\n\
         [[device]]\nname = \"apps-device\"\nmatch = [\"{META_APPS}\"]\nprofile = \"meta-apps\"\n\n\
         [[device]]\nname = \"strict-device\"\nmatch = [\"{STRICT}\"]\nprofile = \"strict\"\n\n\
         [[device]]\nname = \"house-device\"\nmatch = [\"{HOUSE}\"]\nprofile = \"house\"\n",
        upstream.addr
    );
    let files = [("house-nets.txt", "# kind: networks\n198.51.100.0/24\n")];
    let daemon = TestDaemon::start_with_files(&config, &files).await;
    (upstream, daemon)
}

async fn ask(daemon: &TestDaemon, client: IpAddr, name: &str, rtype: RecordType) -> Message {
    query_udp_from(client, daemon.dns, name, rtype, true).await
}

fn blocked_by(reply: &Message) -> Option<String> {
    let (code, text) = ede(reply)?;
    (code == 15).then(|| text.strip_prefix("blocked by ").unwrap_or(&text).to_owned())
}

#[tokio::test]
async fn an_answer_inside_metas_networks_is_blocked_only_where_the_profile_asks() {
    let (_upstream, daemon) = start().await;
    // meta-apps first: the answer is cached, and the same entry serves no-meta after it.
    for client in [META_APPS, STRICT] {
        let a = ask(&daemon, client, INTO_META, RecordType::A).await;
        assert_eq!(a_addrs(&a), [META_V4], "{client}: {a:?}");
        assert_eq!(blocked_by(&a), None);
    }
    for round in 0..2 {
        let a = ask(&daemon, NO_META, INTO_META, RecordType::A).await;
        assert_eq!(rcode(&a), ResponseCode::NoError);
        assert_eq!(a_addrs(&a), [Ipv4Addr::UNSPECIFIED], "round {round}: {a:?}");
        assert_eq!(blocked_by(&a).as_deref(), Some("meta-networks"));
        let aaaa = ask(&daemon, NO_META, INTO_META, RecordType::AAAA).await;
        assert_eq!(aaaa_addrs(&aaaa), [Ipv6Addr::UNSPECIFIED], "round {round}");
        assert_eq!(blocked_by(&aaaa).as_deref(), Some("meta-networks"));
    }
    // Still answered for the others after no-meta's blocks: nothing blocked entered the cache.
    let a = ask(&daemon, META_APPS, INTO_META, RecordType::A).await;
    assert_eq!(a_addrs(&a), [META_V4]);
    let aaaa = ask(&daemon, META_APPS, INTO_META, RecordType::AAAA).await;
    assert_eq!(aaaa_addrs(&aaaa), [META_V6]);
    // An answer outside every listed network is answered for no-meta too.
    let ordinary = ask(&daemon, NO_META, ORDINARY, RecordType::A).await;
    assert_eq!(a_addrs(&ordinary), [ORDINARY_V4]);
    assert_eq!(blocked_by(&ordinary), None);
}

#[tokio::test]
async fn a_households_own_network_list_blocks_for_the_profiles_that_name_it() {
    let (_upstream, daemon) = start().await;
    let gadget = ask(&daemon, HOUSE, INTO_HOUSE_LIST, RecordType::A).await;
    assert_eq!(a_addrs(&gadget), [Ipv4Addr::UNSPECIFIED], "{gadget:?}");
    assert_eq!(blocked_by(&gadget).as_deref(), Some("house-nets"));
    // The house profile does not block Meta's networks, and no-meta not the house's.
    let meta = ask(&daemon, HOUSE, INTO_META, RecordType::A).await;
    assert_eq!(a_addrs(&meta), [META_V4]);
    let gadget = ask(&daemon, NO_META, INTO_HOUSE_LIST, RecordType::A).await;
    assert_eq!(a_addrs(&gadget), [HOUSE_V4]);
}

#[test]
fn a_list_is_for_names_or_for_networks_never_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let config = "[[profile]]\nname = \"odd\"\nblock = [\"meta-networks\"]\n";
    std::fs::write(&path, config).unwrap();
    let error = metasink::config::load(&path).expect_err("accepted a network list in block");
    assert!(
        error.to_string().ends_with(
            "profile[0].block: `meta-networks` is a network list: name it in `block_networks`"
        ),
        "{error}"
    );
}
