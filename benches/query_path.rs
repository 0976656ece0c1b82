//! The whole in-process query path (request bytes → parse → decide → cache → encode → reply
//! bytes) without sockets, so a change's cost shows without a network: a blocked question, a
//! cached one (for the default profile, and for `no-meta`, which also checks the answer's
//! addresses against Meta's networks), and a malformed one.
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

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use metasink::admission::Admission;
use metasink::cache::Cache;
use metasink::dns::{Transport, Upstreams};
use metasink::metrics::Metrics;
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

/// The service for clients of `profile` (`default_profile`); with `querylog` (a
/// `[querylog] mode`), the records layer too, its state in `state_dir`.
fn service(profile: &str, querylog: Option<(&str, &std::path::Path)>) -> DnsService {
    let upstream = start_responder();
    // One client asks millions of times: no per-client rate limit here.
    let mut text = format!(
        "default_profile = \"{profile}\"\n[server]\nrate_limit_qps = 0\n\n\
         [[upstream]]\naddress = \"{upstream}\"\n"
    );
    if let Some((mode, state_dir)) = querylog {
        text = text.replace(
            "[server]\n",
            &format!("[server]\nstate_dir = \"{}\"\n", state_dir.display()),
        );
        text.push_str(&format!("[querylog]\nmode = \"{mode}\"\npath = \"\"\n"));
    }
    let settings = config::parse(&text, std::path::Path::new("bench.toml")).expect("config");
    let metrics = Metrics::new();
    let snapshot = policy::compile(&settings, &metrics, 1);
    let upstreams = Upstreams::new(&settings.upstreams, &metrics);
    let pipeline = Pipeline::new(Cache::new(&settings.cache, metrics.cache()), upstreams);
    let service = DnsService::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        pipeline,
        Admission::new(&settings.admission),
        ServiceCounters::new(&metrics),
    );
    match querylog {
        None => service,
        Some((_, state_dir)) => service.with_records(Arc::new(Records::start(
            &settings.querylog,
            state_dir,
            &metrics,
        ))),
    }
}

fn bench(c: &mut Criterion) {
    let state_dir = tempfile::tempdir().expect("state dir");
    let mut group = c.benchmark_group("query_path");
    for (suffix, querylog) in [
        ("", None),
        (", records, log off", Some("off")),
        (", records, log all", Some("all")),
    ] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let querylog = querylog.map(|mode| (mode, state_dir.path()));
        let networks = querylog.is_none().then(|| service("no-meta", None));
        let service = service("meta-apps", querylog);
        let cached = query("www.example.com.");
        for service in std::iter::once(&service).chain(networks.as_ref()) {
            runtime
                .block_on(service.respond(&cached, CLIENT, Transport::Udp))
                .expect("warm the cache");
        }
        let blocked = query("www.meta.ai.");
        let malformed = cached[..cached.len() - 3].to_vec();
        let mut run = |label: &str, service: &DnsService, request: &[u8]| {
            group.bench_function(format!("{label}{suffix}"), |b| {
                b.iter(|| {
                    let reply = service
                        .respond(black_box(request), CLIENT, Transport::Udp)
                        .now_or_never();
                    black_box(reply.flatten().expect("answered without waiting"))
                })
            });
        };
        run("blocked", &service, &blocked);
        run("cached", &service, &cached);
        if let Some(networks) = &networks {
            run(
                "cached, no-meta (answer addresses checked)",
                networks,
                &cached,
            );
            run("malformed", &service, &malformed);
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
