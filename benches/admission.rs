//! Admission benchmarks: the cost of one `Admission::check`, which runs for every query before
//! anything else. A household (64 sources) with and without reading the clock, a refused
//! stranger, the rate limit off, a flood of new sources into a full table, and two threads
//! checking at once (to see whether they slow each other down).

#![allow(
    missing_docs,
    reason = "criterion_group! writes an undocumented `pub fn`"
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use metasink::admission::Admission;
use metasink::config::AdmissionSettings;

/// Sources of the household benchmarks: half IPv4, half IPv6 /64s.
const HOUSEHOLD: usize = 64;

/// `count` clients: `192.168.1.x` and `fd00:0:0:x::1`, from `first` on.
fn clients(first: usize, count: usize) -> Vec<IpAddr> {
    (first..first + count)
        .map(|i| {
            let i = u16::try_from(i % 65_536).unwrap_or_default();
            if i % 2 == 0 {
                let [high, low] = i.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(192, 168, high, low))
            } else {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, i, 0, 0, 0, 1))
            }
        })
        .collect()
}

fn household(c: &mut Criterion) {
    let admission = Admission::new(&AdmissionSettings::default());
    let clients = clients(0, HOUSEHOLD);
    let mut next = clients.iter().cycle();
    c.bench_function("admission/check household", |b| {
        b.iter(|| admission.check(black_box(*next.next().unwrap_or(&clients[0]))));
    });
    let now = Instant::now();
    c.bench_function("admission/check_at household (no clock read)", |b| {
        b.iter(|| admission.check_at(black_box(*next.next().unwrap_or(&clients[0])), now));
    });
    let stranger = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    c.bench_function("admission/check refused", |b| {
        b.iter(|| admission.check(black_box(stranger)));
    });
    let unlimited = Admission::new(&AdmissionSettings {
        rate_limit_qps: 0,
        ..AdmissionSettings::default()
    });
    c.bench_function("admission/check rate limit off", |b| {
        b.iter(|| unlimited.check(black_box(clients[0])));
    });
}

fn flood(c: &mut Criterion) {
    // One query per second per source: every bucket keeps refilling, so nothing is swept and
    // the table stays full; each check is a new source.
    let admission = Admission::new(&AdmissionSettings {
        allow_from: vec!["10.0.0.0/8".parse().expect("net")],
        rate_limit_qps: 1,
        rate_limit_burst: 1,
    });
    let mut source = 0u32;
    c.bench_function("admission/check new source, full table", |b| {
        b.iter(|| {
            source = source.wrapping_add(1) & 0x00ff_ffff;
            let client = IpAddr::V4(Ipv4Addr::from(10 << 24 | source));
            admission.check(black_box(client))
        });
    });
    assert!(admission.tracked_sources() <= 20_000);
}

fn two_threads(c: &mut Criterion) {
    let admission = Admission::new(&AdmissionSettings::default());
    let per_thread = [clients(0, HOUSEHOLD), clients(HOUSEHOLD, HOUSEHOLD)];
    c.bench_function("admission/check household, two threads at once", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(per_thread.len());
            std::thread::scope(|scope| {
                let runs: Vec<_> = per_thread
                    .iter()
                    .map(|clients| {
                        let (admission, barrier) = (&admission, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            let start = Instant::now();
                            for client in clients.iter().cycle().take(iters as usize) {
                                black_box(admission.check(black_box(*client)));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                // Each thread's time per check; the slower one counts.
                runs.into_iter()
                    .filter_map(|run| run.join().ok())
                    .max()
                    .unwrap_or(Duration::ZERO)
            })
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = household, flood, two_threads
}
criterion_main!(benches);
