//! The whole in-process query path (request bytes → parse → decide → cache → encode → reply
//! bytes) without sockets, so a change's cost shows without a network: a blocked question, a
//! cached one (for the default profile, and for `no-meta`, which also checks the answer's
//! addresses against Meta's networks), and a malformed one; the blocked and cached ones again
//! with 100 household overrides in force that apply to everyone but match neither name (the
//! most an override costs a question it does not decide), and with a local network configured
//! (100 local names, forward zones, rebinding protection on), and a local name's answer.
//!
//! Each runs twice more with the records layer attached (issue 14): with the query log off
//! (clients and observe only; the hook's standing cost) and with it on for every query (in
//! this tight loop the queue fills between the writer's 100 ms drains, so most entries take
//! the drop path).
//!
//! The upstream is a tiny UDP responder on 127.0.0.1 inside this process, used once to fill
//! the cache; the measured loops never wait on it.

#![allow(
    missing_docs,
    reason = "criterion_group! writes an undocumented `pub fn`"
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use tokio::time::Instant;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use metasink::admission::Admission;
use metasink::cache::Cache;
use metasink::dns::{Transport, Upstreams};
use metasink::metrics::Metrics;
use metasink::overrides::Kind;
use metasink::overrides::OverrideStore;
use metasink::overrides::store::NewOverride;
use metasink::pipeline::Pipeline;
use metasink::records::Records;
use metasink::server::{DnsService, ServiceCounters};
use metasink::{config, policy};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Answers every A question with 192.0.2.1, TTL one hour, forever (a background thread).
fn start_responder() -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind responder");
    let address = socket.local_addr().expect("responder address");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((length, from)) = socket.recv_from(&mut buffer) {
            let Ok(mut message) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            message.metadata.message_type = MessageType::Response;
            message.metadata.recursion_available = true;
            if let Some(query) = message.queries.first().cloned() {
                let data = RData::A(Ipv4Addr::new(192, 0, 2, 1).into());
                message
                    .answers
                    .push(Record::from_rdata(query.name().clone(), 3600, data));
            }
            if let Ok(bytes) = message.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    address
}

fn query(name: &str) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 4242;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    message.to_vec().expect("encode")
}

/// 100 overrides for everyone, each allowing or blocking a name the bench never asks.
fn hundred_overrides() -> Arc<OverrideStore> {
    let store = OverrideStore::in_memory();
    let now = jiff::Timestamp::now();
    for n in 0..100 {
        let kind = if n % 2 == 0 { Kind::Allow } else { Kind::Block };
        let rule = NewOverride {
            kind,
            device: None,
            profile: None,
            names: vec![format!("site{n}.example.org")],
            expires: Some(now + jiff::SignedDuration::from_hours(1)),
        };
        store.add(rule, now).expect("room for 100");
    }
    Arc::new(store)
}

/// A house with 100 local names, two forward zones and rebinding protection on.
fn local_network() -> String {
    let mut text = String::from(
        "[[forward]]\nzones = [\"lan\", \"168.192.in-addr.arpa\"]\nupstream = [\"127.0.0.1:9\"]\n",
    );
    for host in 0..100 {
        text.push_str(&format!(
            "[[record]]\nname = \"host{host}.home.arpa\"\na = \"10.0.0.{host}\"\n"
        ));
    }
    text
}

/// What a benchmarked service has besides its profile.
#[derive(Default)]
struct House<'a> {
    /// Lines of `[server]`.
    server: &'a str,
    /// The local network's config.
    local: &'a str,
    /// Overrides in force.
    overrides: Option<Arc<OverrideStore>>,
    /// `[querylog] mode` and the state directory: the records layer too.
    querylog: Option<(&'a str, &'a std::path::Path)>,
}

/// The service for clients of `profile` (`default_profile`) in `house`.
fn service(profile: &str, house: House<'_>) -> DnsService {
    let upstream = start_responder();
    let server = match house.querylog {
        Some((_, state_dir)) => {
            format!("{}\nstate_dir = \"{}\"", house.server, state_dir.display())
        }
        None => house.server.to_owned(),
    };
    // One client asks millions of times: no per-client rate limit here.
    let mut text = format!(
        "default_profile = \"{profile}\"\n[server]\nrate_limit_qps = 0\n{server}\n\
         [[upstream]]\naddress = \"{upstream}\"\n{}",
        house.local
    );
    if let Some((mode, _)) = house.querylog {
        text.push_str(&format!("[querylog]\nmode = \"{mode}\"\npath = \"\"\n"));
    }
    let settings = config::parse(&text, std::path::Path::new("bench.toml")).expect("config");
    let metrics = Metrics::new();
    let snapshot = policy::compile(&settings, &metrics, 1);
    let upstreams = Upstreams::new(&settings.upstreams, &metrics);
    let overrides = house
        .overrides
        .unwrap_or_else(|| Arc::new(OverrideStore::in_memory()));
    let pipeline = Pipeline::new(Cache::new(&settings.cache, metrics.cache()), upstreams)
        .with_overrides(overrides);
    let service = DnsService::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        pipeline,
        Admission::new(&settings.admission),
        ServiceCounters::new(&metrics),
    );
    match house.querylog {
        None => service,
        Some((_, state_dir)) => service.with_records(Arc::new(Records::start(
            &settings.querylog,
            state_dir,
            &metrics,
        ))),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state_dir = tempfile::tempdir().expect("state dir");
    let logging = |mode| House {
        querylog: Some((mode, state_dir.path())),
        ..House::default()
    };
    let services = [
        ("", service("meta-apps", House::default())),
        (
            ", no-meta (answer addresses checked)",
            service("no-meta", House::default()),
        ),
        (
            ", 100 overrides in force",
            service(
                "meta-apps",
                House {
                    overrides: Some(hundred_overrides()),
                    ..House::default()
                },
            ),
        ),
        (
            ", local network",
            service(
                "meta-apps",
                House {
                    server: "rebind_protection = true",
                    local: &local_network(),
                    ..House::default()
                },
            ),
        ),
        (", records, log off", service("meta-apps", logging("off"))),
        (", records, log all", service("meta-apps", logging("all"))),
    ];
    let cached = query("www.example.com.");
    for (_, service) in &services {
        runtime
            .block_on(service.respond(&cached, CLIENT, Transport::Udp, Instant::now()))
            .expect("warm the cache");
    }
    let blocked = query("www.meta.ai.");
    let malformed = cached[..cached.len() - 3].to_vec();
    let local = query("host42.home.arpa.");

    let mut group = c.benchmark_group("query_path");
    let mut run = |label: String, service: &DnsService, request: &[u8]| {
        group.bench_function(label, |b| {
            b.iter(|| {
                let reply = service
                    .respond(black_box(request), CLIENT, Transport::Udp, Instant::now())
                    .now_or_never();
                black_box(reply.flatten().expect("answered without waiting"))
            })
        });
    };
    for (suffix, service) in &services {
        run(format!("blocked{suffix}"), service, &blocked);
        run(format!("cached{suffix}"), service, &cached);
    }
    run("malformed".to_owned(), &services[0].1, &malformed);
    run("local name".to_owned(), &services[3].1, &local);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
