//! Turning an upstream's reply into a cache entry (decode, keep the records about the
//! question, encode once), the part of the forwarded path that runs once per upstream answer:
//! a plain answer, a CNAME chain through a CDN, and a reply padded with records about other
//! names.

#![allow(
    missing_docs,
    reason = "criterion_group! writes an undocumented `pub fn`"
)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use metasink::dns::Answer;

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

fn a(owner: &str, last: u8) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    )
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

/// The wire form of a reply to `www.example.com. A` with these sections.
fn reply(answers: Vec<Record>, authorities: Vec<Record>) -> Vec<u8> {
    let mut message = Message::new(1, MessageType::Response, OpCode::Query);
    message.add_query(Query::query(name("www.example.com."), RecordType::A));
    message.answers = answers;
    message.authorities = authorities;
    message.to_vec().expect("encode")
}

fn bench(c: &mut Criterion) {
    let plain = reply(
        vec![a("www.example.com.", 1), a("www.example.com.", 2)],
        vec![],
    );
    let chain = reply(
        vec![
            cname("www.example.com.", "www.example.com.cdn.net."),
            cname("www.example.com.cdn.net.", "e1234.a.cdn.net."),
            a("e1234.a.cdn.net.", 1),
            a("e1234.a.cdn.net.", 2),
            a("e1234.a.cdn.net.", 3),
            a("e1234.a.cdn.net.", 4),
        ],
        vec![],
    );
    let soa = SOA::new(
        name("ns.example.com."),
        name("host.example.com."),
        1,
        60,
        60,
        60,
        60,
    );
    let padded = reply(
        vec![
            a("www.example.com.", 1),
            a("www.victim.test.", 66),
            a("mail.victim.test.", 66),
        ],
        vec![
            Record::from_rdata(name("example.com."), 60, RData::SOA(soa)),
            a("ns.victim.test.", 66),
        ],
    );

    let mut group = c.benchmark_group("answer");
    for (label, bytes) in [
        ("plain", &plain),
        ("cname_chain", &chain),
        ("padded", &padded),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| black_box(Answer::from_message_bytes(black_box(bytes)).expect("kept")))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
