//! List files: arbitrary bytes (lossy UTF-8, as a download with a bad byte is read) through
//! `parse_list` and, line by line, `parse_line`. Besides "no panic", every entry must be a
//! name the matcher can store (see `check_name`), and normalising must be idempotent.

#![no_main]

use std::borrow::Cow;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use metasink::lists::parse::{Entry, EntryScope, MAX_INVALID_SAMPLES, parse_line, parse_list};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let mut seen = 0;
    let report = parse_list(&text, |entry| {
        seen += 1;
        check_entry(&entry);
    });
    assert_eq!(
        report.entries, seen,
        "the report counts every entry passed on"
    );
    assert!(report.invalid_samples.len() <= MAX_INVALID_SAMPLES);
    assert!(report.invalid_samples.len() <= report.invalid_count);
    for sample in &report.invalid_samples {
        // Display is what the warning prints; it must not panic either.
        let _ = sample.to_string();
    }

    // The header block is read differently by parse_list; here every line is an entry line.
    for line in text.lines() {
        let _ = parse_line(line, |entry| check_entry(&entry)).map_err(|error| error.to_string());
    }
});

fn check_entry(entry: &Entry<'_>) {
    check_name(&entry.name);
    // An entry written back as `||name^` must read as the same name: normalising a normalised
    // name changes nothing (a list exported from the matcher loads the same again).
    let rule = format!("||{}^", entry.name);
    let mut again = Vec::new();
    let result = parse_line(&rule, |entry| again.push(entry.name.into_owned()));
    assert!(
        result.is_ok(),
        "{rule:?} was emitted but re-reads as {result:?}"
    );
    assert_eq!(
        again,
        [entry.name.as_ref()],
        "{rule:?} re-reads differently"
    );
    if entry.allow {
        assert_eq!(
            entry.scope,
            EntryScope::Subdomains,
            "only `@@||name^` allows"
        );
    }
}

/// What `lists::parse` promises of a name: lower-case ASCII letters, digits, `-` and `_`, at
/// least two labels of 1 to 63 bytes, 253 bytes at most, no trailing dot, not an IP address.
fn check_name(name: &Cow<'_, str>) {
    assert!(name.len() <= 253, "{name:?} is too long");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
        "{name:?} has a byte a name cannot hold"
    );
    let labels: Vec<&str> = name.split('.').collect();
    assert!(labels.len() >= 2, "{name:?} has a single label");
    assert!(
        labels.iter().all(|label| (1..=63).contains(&label.len())),
        "{name:?} has an empty or over-long label"
    );
    assert!(name.parse::<IpAddr>().is_err(), "{name:?} is an IP address");
}
