//! Matcher benchmarks on the 1.1 M-name union of real blocklists (`shared/benchdata`): build time,
//! lookups of hits (listed names and names below them) and of misses, plus a one-off report of
//! resident bytes per name. The data set is test data kept outside the crate; without it the
//! benchmarks print a note and do nothing.

#![allow(
    missing_docs,
    reason = "criterion_group! writes an undocumented `pub fn`"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use metasink::lists::parse::{EntryScope, parse_list};
use metasink::policy::mask::ListIndex;
use metasink::policy::matcher::{Matcher, MatcherBuilder, Scope};

const DATA: &str = "../shared/benchdata/union-1.1m.domains.txt";

/// Queries per lookup benchmark: more than fit in cache, as on a busy resolver.
const QUERIES: usize = 1 << 16;

/// Queries in the warm benchmark: hits and misses that stay in cache.
const WARM_QUERIES: usize = 3 * 1024;

/// Lists the names are spread over, so that the mask table holds a few sets as in real use.
const LISTS: usize = 4;

/// The benchmark names, or `None` (with a note) when the data set is not there.
fn load() -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DATA);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) => {
            println!(
                "note: {} not readable ({error}); matcher benchmarks skipped",
                path.display()
            );
            None
        }
    }
}

/// Every name is a subdomain rule, so that names below listed ones are hits too.
fn build(names: &[&str], mut builder: MatcherBuilder) -> Matcher {
    for (index, name) in names.iter().enumerate() {
        builder.add(name, (index % LISTS) as ListIndex, Scope::Subdomains, false);
    }
    builder.build()
}

/// The whole path from list text to matcher, as a reload does it.
fn parse_and_build(text: &str) -> Matcher {
    let mut builder = MatcherBuilder::with_capacity(text.len() / 20);
    parse_list(text, |entry| {
        let scope = match entry.scope {
            EntryScope::Exact => Scope::Exact,
            EntryScope::Subdomains | EntryScope::ListDefault => Scope::Subdomains,
        };
        builder.add(&entry.name, 0, scope, entry.allow);
    });
    builder.build()
}

/// Deterministic query sets (a fixed seed).
struct Rng(fastrand::Rng);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }

    fn label(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let len = 3 + self.below(10);
        (0..len)
            .map(|i| {
                // No hyphen first, as in real names.
                let pool = if i == 0 { CHARS.len() - 1 } else { CHARS.len() };
                char::from(CHARS[self.below(pool)])
            })
            .collect()
    }
}

/// Listed names, and names one or two labels below listed names, in random order.
fn hit_queries(names: &[&str], rng: &mut Rng) -> (Vec<String>, Vec<String>) {
    let listed = (0..QUERIES)
        .map(|_| names[rng.below(names.len())].to_owned())
        .collect();
    let below = (0..QUERIES)
        .map(|i| {
            let name = names[rng.below(names.len())];
            if i % 2 == 0 {
                format!("www.{name}")
            } else {
                format!("cdn.{}.{name}", rng.label())
            }
        })
        .collect();
    (listed, below)
}

/// Random names of two to four labels that no entry covers.
fn miss_queries(matcher: &Matcher, rng: &mut Rng) -> Vec<String> {
    const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "xyz"];
    let mut queries = Vec::with_capacity(QUERIES);
    while queries.len() < QUERIES {
        let mut labels: Vec<String> = (0..1 + rng.below(3)).map(|_| rng.label()).collect();
        labels.push(TLDS[rng.below(TLDS.len())].to_owned());
        let name = labels.join(".");
        if matcher.lookup(&name).is_empty() {
            queries.push(name);
        }
    }
    queries
}

/// One field of `/proc/self/status`, in bytes (Linux only).
fn status_bytes(field: &str) -> Option<usize> {
    proc_bytes("/proc/self/status", field)
}

/// One `field:   N kB` line of a `/proc` file, in bytes.
fn proc_bytes(file: &str, field: &str) -> Option<usize> {
    let status = std::fs::read_to_string(file).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How much the peak resident memory rose while `build` ran: what a reload costs on top of the
/// snapshot still serving. Writing 5 to `clear_refs` resets the peak to the current size.
fn peak_growth(build: impl FnOnce() -> Matcher) -> (Matcher, Option<usize>) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS:");
    let matcher = build();
    let peak = status_bytes("VmHWM:");
    let growth = match (reset, before, peak) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    (matcher, growth)
}

/// Builds the matcher once each way and prints time, size and peak memory.
fn report(names: &[&str]) -> Matcher {
    let mut kept = None;
    for (how, builder) in [
        ("with_capacity", MatcherBuilder::with_capacity(names.len())),
        ("growing", MatcherBuilder::new()),
    ] {
        let started = Instant::now();
        let (matcher, growth) = peak_growth(|| build(names, builder));
        let elapsed = started.elapsed();
        let bytes = matcher.heap_bytes();
        print!(
            "matcher ({how}): {} names in {:.0} ms; {bytes} resident bytes = {:.1} bytes/name",
            matcher.len(),
            elapsed.as_secs_f64() * 1e3,
            bytes as f64 / matcher.len() as f64,
        );
        if let Some(growth) = growth {
            print!(
                "; peak RSS +{:.1} MiB while building ({:.2}x the result)",
                growth as f64 / 1048576.0,
                growth as f64 / bytes as f64,
            );
        }
        // What the process holds in huge pages now (this matcher's and any kept before it).
        match proc_bytes("/proc/self/smaps_rollup", "AnonHugePages:") {
            Some(huge) => println!("; {:.0} MiB in huge pages", huge as f64 / 1048576.0),
            None => println!(),
        }
        kept.get_or_insert(matcher);
    }
    kept.unwrap_or_default()
}

/// One lookup per iteration, cycling through `queries`.
fn lookups(c: &mut Criterion, name: &str, matcher: &Matcher, queries: &[String]) {
    let mut next = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            black_box(matcher.lookup(black_box(&queries[next])))
        })
    });
}

/// Build benchmarks (ten samples: a build takes a fraction of a second), then lookups.
fn benches(c: &mut Criterion) {
    let Some(text) = load() else {
        return;
    };
    let names: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
    let matcher = report(&names);

    let mut group = c.benchmark_group("build");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("with_capacity_1.1m", |b| {
        let builder = || MatcherBuilder::with_capacity(names.len());
        b.iter_batched(
            builder,
            |builder| build(&names, builder),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("growing_1.1m", |b| {
        b.iter_batched(
            MatcherBuilder::new,
            |builder| build(&names, builder),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("parse_and_build_1.1m", |b| {
        b.iter_with_large_drop(|| parse_and_build(&text))
    });
    group.finish();

    let mut rng = Rng(fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d));
    let (listed, below) = hit_queries(&names, &mut rng);
    let misses = miss_queries(&matcher, &mut rng);
    lookups(c, "lookup/hit_listed", &matcher, &listed);
    lookups(c, "lookup/hit_below_listed", &matcher, &below);
    lookups(c, "lookup/miss", &matcher, &misses);
    // A household's working set is a few thousand names, which stay in cache between queries.
    let warm: Vec<String> = [&listed, &below, &misses]
        .iter()
        .flat_map(|queries| queries[..WARM_QUERIES / 3].iter().cloned())
        .collect();
    lookups(c, "lookup/warm_mix", &matcher, &warm);
}

criterion_group! {
    name = matcher;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(matcher);
