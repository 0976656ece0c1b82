//! Tests that keep the bundled Meta catalogue honest.
//!
//! - The files: every bundled list parses without an invalid line, has a complete header whose
//!   `id` is its file name, repeats no entry, and cites evidence on every entry line.
//! - The scope: every name of every Meta list lies inside a registrable domain of `all-meta`, and
//!   no list names (or covers) a domain of another company, with one allowed Google name.
//! - The presets: they name only bundled lists, of the right kind.
//! - End to end: one real daemon in front of a test upstream, one device per preset (by name,
//!   with no `[[profile]]` or `[[list]]` in the config). The presets that keep an app resolve
//!   every kept name and Meta's shared edges behind a CNAME; `no-meta` blocks every Meta name and
//!   every alias pointing into Meta; every preset blocks every name of its block lists (none is
//!   undone by its keep lists), and blocked names never reach the upstream.
//!
//! The upstream answers every name the tests ask about with [`UPSTREAM_ADDR`] (the shared edges
//! with [`EDGE_ADDR`]), so a blocked answer (0.0.0.0) can never be mistaken for a real one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::common::*;
use ipnet::IpNet;
use metasink::catalogue::{DEFAULT_PROFILE, bundled_ids, bundled_text};
use metasink::config::presets;
use metasink::lists::MatchMode;
use metasink::lists::parse::{
    EntryScope, ListHeader, ListParser, ParseReport, parse_line, parse_list,
};
use metasink::policy::NetworkSet;

// ---------------------------------------------------------------------------------------------
// The catalogue as the tests see it
// ---------------------------------------------------------------------------------------------

/// The lists whose every name must lie inside `all-meta` (the Meta block lists and the keep
/// lists).
const META_LISTS: &[&str] = &[
    "meta-ai",
    "meta-ai-voice",
    "meta-tracking",
    "meta-tracking-strict",
    "quest-telemetry",
    "glasses",
    "keep-facebook",
    "keep-messenger",
    "keep-instagram",
    "keep-whatsapp",
    "keep-quest",
    "keep-glasses",
    "quest-telemetry-unverified",
    "app-facebook",
    "app-instagram",
    "app-messenger",
    "app-threads",
    "app-whatsapp",
    "app-quest",
    "app-meta-ai",
];

/// `all-meta` itself, the brand/typo and open-source registrations that need not lie inside
/// it, and the network lists (addresses, not names). Every bundled list is in [`META_LISTS`] or
/// here.
const OUTSIDE_META_LISTS: &[&str] = &[
    "all-meta",
    "all-meta-brands",
    "meta-oss-sites",
    "meta-networks",
];

/// The lists of networks (`# kind: networks`): read as addresses and CIDR networks.
const NETWORK_LISTS: &[&str] = &["meta-networks"];

/// The only non-Meta name in the catalogue: Google's captive-portal check, allowed (exactly) in
/// this list, because a Quest says "no internet" without it.
const GOOGLE_CHECK_LIST: &str = "keep-quest";
const GOOGLE_CHECK_NAME: &str = "connectivitycheck.gstatic.com";

/// Other companies' infrastructure that some "Facebook" lists carry and this catalogue must not
/// (README.md, "What DNS can and cannot block"): blocking them breaks a large part of the web.
const FORBIDDEN_DOMAINS: &[&str] = &[
    "akamaihd.net",
    "edgekey.net",
    "edgesuite.net",
    "appspot.com",
    "gvt2.com",
    "gstatic.com",
    "hootsuite.com",
    "wechat.com",
    "foursquare.com",
    "addtoany.com",
    "online-metrix.net",
    "energized.pro",
];

/// The words a list header uses for `confidence` (README.md, "The lists").
const CONFIDENCE_WORDS: &[&str] = &["high", "medium", "low", "mixed"];

/// One entry of a bundled list, with the scope it has once the list's `match` header applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Rule {
    /// The normalised name.
    name: String,
    /// True when the entry covers the name and every name below it.
    subdomains: bool,
    /// True for an `@@` exception.
    allow: bool,
}

impl Rule {
    /// Whether this entry covers `name`.
    fn covers(&self, name: &str) -> bool {
        if self.subdomains {
            is_at_or_under(name, &self.name)
        } else {
            name == self.name
        }
    }

    /// The names a test asks about: the entry's own name and, for an entry that covers
    /// subdomains, one name below it.
    fn sample_names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        if self.subdomains {
            names.push(format!("probe.{}", self.name));
        }
        names
    }

    /// Whether this is the one permitted Google name, in the one list that may hold it.
    fn is_permitted_google_check(&self, list_id: &str) -> bool {
        list_id == GOOGLE_CHECK_LIST && self.name == GOOGLE_CHECK_NAME && !self.subdomains
    }
}

/// True when `name` is `domain` or below it on a label boundary (`a.facebook.com` is under
/// `facebook.com`, `notfacebook.com` is not).
fn is_at_or_under(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// One bundled list: its text, what the parser reports, and its entries with their lines.
struct BundledList {
    id: &'static str,
    text: &'static str,
    report: ParseReport,
    /// (line number counting from 1, entry), in file order.
    rules: Vec<(usize, Rule)>,
}

impl BundledList {
    fn read(id: &'static str) -> Self {
        let text = bundled_text(id).unwrap_or_else(|| panic!("`{id}` is not a bundled list"));
        if NETWORK_LISTS.contains(&id) {
            let (report, _) = read_networks(text);
            return Self {
                id,
                text,
                report,
                rules: Vec::new(),
            };
        }
        let report = parse_list(text, |_| {});
        let plain_covers_subdomains =
            report.header.match_mode.unwrap_or(MatchMode::Subdomains) == MatchMode::Subdomains;
        let mut rules = Vec::new();
        for (index, line) in entry_text(text).lines().enumerate() {
            // Errors are `parse_list`'s to report (see the parsing test).
            let _ = parse_line(line, |entry| {
                let subdomains = match entry.scope {
                    EntryScope::Exact => false,
                    EntryScope::Subdomains => true,
                    EntryScope::ListDefault => plain_covers_subdomains,
                };
                let rule = Rule {
                    name: entry.name.into_owned(),
                    subdomains,
                    allow: entry.allow,
                };
                rules.push((index + 1, rule));
            });
        }
        Self {
            id,
            text,
            report,
            rules,
        }
    }

    fn header(&self) -> &ListHeader {
        &self.report.header
    }

    /// (line number counting from 1, line) of every line holding an entry. In a network list
    /// every line that is not blank or a comment is one (the parsing test checks it is valid).
    fn entry_lines(&self) -> Vec<(usize, &'static str)> {
        let network_list = NETWORK_LISTS.contains(&self.id);
        entry_text(self.text)
            .lines()
            .enumerate()
            .filter(|&(_, line)| {
                if network_list {
                    let line = line.trim();
                    return !line.is_empty() && !line.starts_with('#');
                }
                let mut found = false;
                let _ = parse_line(line, |_| found = true);
                found
            })
            .map(|(index, line)| (index + 1, line))
            .collect()
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(_, rule)| rule)
    }

    /// Whether one of this list's entries covers `name`.
    fn covers(&self, name: &str) -> bool {
        self.rules().any(|rule| rule.covers(name))
    }
}

/// The report of a network list and its networks, the way the daemon reads them.
fn read_networks(text: &str) -> (ParseReport, Vec<IpNet>) {
    let mut networks = Vec::new();
    let mut parser = ListParser::default();
    for line in text.lines() {
        parser.feed_network(line, |network| networks.push(network));
    }
    (parser.finish(), networks)
}

/// The text without a byte-order mark, the way `parse_list` reads it.
fn entry_text(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Every bundled list, sorted by id.
fn catalogue() -> Vec<BundledList> {
    bundled_ids().map(BundledList::read).collect()
}

/// The inline comment of an entry line, from its `#` on: the first `#` preceded by whitespace,
/// the way the parser finds it.
fn inline_comment(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    line.match_indices('#')
        .map(|(at, _)| at)
        .find(|&at| at > 0 && bytes[at - 1].is_ascii_whitespace())
        .map(|at| &line[at..])
}

/// Fails with every line of `failures` when there is one.
fn assert_no_failures(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} {what}:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The files
// ---------------------------------------------------------------------------------------------

#[test]
fn every_file_of_blocklists_is_bundled_and_nothing_else() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name())
        .filter_map(|name| name.to_str()?.strip_suffix(".txt").map(str::to_owned))
        .collect();
    let bundled: BTreeSet<String> = bundled_ids().map(str::to_owned).collect();
    assert!(!bundled.is_empty(), "the catalogue is empty");
    assert_eq!(bundled, files, "bundled ids vs blocklists/*.txt");
}

#[test]
fn every_bundled_list_parses_cleanly_with_a_complete_header() {
    let mut failures = Vec::new();
    for list in catalogue() {
        let id = list.id;
        let report = &list.report;
        if report.invalid_count > 0 {
            let samples: Vec<String> = report
                .invalid_samples
                .iter()
                .map(|s| s.to_string())
                .collect();
            failures.push(format!(
                "{id}: {} invalid lines, e.g. {}",
                report.invalid_count,
                samples.join("; ")
            ));
        }
        if report.entries == 0 {
            failures.push(format!("{id}: no entries"));
        }
        // The per-line reading used by the other tests sees what the parser sees.
        let read_line_by_line = if NETWORK_LISTS.contains(&id) {
            list.entry_lines().len()
        } else {
            list.rules.len()
        };
        if read_line_by_line != report.entries {
            failures.push(format!(
                "{id}: {} entries read line by line, {} by the parser",
                read_line_by_line, report.entries
            ));
        }
        let header = list.header();
        if header.id.as_deref() != Some(id) {
            failures.push(format!("{id}: header id is {:?}", header.id));
        }
        for (field, value) in [
            ("title", &header.title),
            ("description", &header.description),
        ] {
            if value.as_deref().is_none_or(|text| text.trim().is_empty()) {
                failures.push(format!("{id}: no `# {field}:` in the header"));
            }
        }
        let network_list = NETWORK_LISTS.contains(&id);
        if header.match_mode.is_none() && !network_list {
            failures.push(format!("{id}: no `# match:` in the header"));
        }
        match header.confidence.as_deref() {
            Some(word) if CONFIDENCE_WORDS.contains(&word) => {}
            other => failures.push(format!(
                "{id}: header confidence {other:?}, expected one of {CONFIDENCE_WORDS:?}"
            )),
        }
        match (header.kind.as_deref(), network_list) {
            (Some("block" | "allow"), false) | (Some("networks"), true) => {}
            (other, _) => failures.push(format!(
                "{id}: header kind {other:?}, expected block or allow for names, networks for \
                 the lists in NETWORK_LISTS"
            )),
        }
    }
    assert_no_failures(&failures, "problems in the bundled lists");
}

#[test]
fn no_list_repeats_an_entry() {
    let mut failures = Vec::new();
    for list in catalogue() {
        // Effective scope: in a `match: subdomains` list, `x` and `||x^` are the same entry.
        let mut first_line: HashMap<&Rule, usize> = HashMap::new();
        for (line, rule) in &list.rules {
            if let Some(first) = first_line.insert(rule, *line) {
                failures.push(format!(
                    "{}: line {line} repeats line {first} ({rule:?})",
                    list.id
                ));
            }
        }
    }
    assert_no_failures(&failures, "repeated entries");
}

#[test]
fn every_entry_line_cites_its_evidence() {
    let mut failures = Vec::new();
    let mut entry_lines = 0;
    for list in catalogue() {
        for (line_number, line) in list.entry_lines() {
            entry_lines += 1;
            let evidence = inline_comment(line)
                .and_then(|comment| comment.strip_prefix("# evidence:"))
                .map(str::trim);
            if evidence.is_none_or(str::is_empty) {
                failures.push(format!(
                    "{}:{line_number}: no inline `# evidence: ...` comment: {line}",
                    list.id
                ));
            }
        }
    }
    assert!(entry_lines > 0, "no entry lines found");
    assert_no_failures(&failures, "entry lines without evidence");
}

/// The evidence part of an entry line: its inline comment after `# evidence:`, up to the first
/// `; breaks:` / `; needed for:` / `; confidence:` that follows.
fn evidence_of(line: &str) -> Option<&str> {
    let evidence = inline_comment(line)?.strip_prefix("# evidence:")?;
    let end = ["; breaks:", "; needed for:", "; confidence:"]
        .iter()
        .filter_map(|marker| evidence.find(marker))
        .min()
        .unwrap_or(evidence.len());
    Some(evidence[..end].trim())
}

/// The words of `text`, split on whitespace and on the punctuation that surrounds a reference.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | '\''))
        .map(|word| word.trim_end_matches([':', '.']))
        .filter(|word| !word.is_empty())
}

/// `owner/name`, the way GitHub spells a repository.
fn is_repository(word: &str) -> bool {
    let mut parts = word.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    valid(owner)
        && valid(name)
        && owner
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
}

/// A file in a repository: a word with a file extension (`android-tracking.txt`,
/// `services/facebook.yml`, `ServerProtocol.kt`).
fn is_file_path(word: &str) -> bool {
    word.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && [
                "txt", "yml", "yaml", "go", "kt", "py", "cpp", "md", "json", "tld", "js", "conf",
            ]
            .contains(&ext)
    })
}

/// `name#123`: an issue or pull request of a repository the list names.
fn is_issue_reference(word: &str) -> bool {
    word.split_once('#').is_some_and(|(repo, number)| {
        !repo.is_empty() && !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())
    })
}

/// What a list's header declares a reader can follow: the files it names next to their
/// repository (`Perflyst/PiHoleBlocklist android-tracking.txt at <commit>`) and the source
/// keys it defines (`BM = Bundy01/meta-blocklists manual-domains at <commit>`): one to three
/// capitals or digits.
#[derive(Default)]
struct DeclaredSources {
    files: BTreeSet<String>,
    keys: BTreeSet<String>,
}

impl DeclaredSources {
    fn of(text: &str) -> Self {
        let mut declared = Self::default();
        for line in entry_text(text)
            .lines()
            .take_while(|line| line.starts_with('#'))
        {
            let words: Vec<&str> = words(line).collect();
            // Every file a header names next to an `owner/name` counts as declared.
            for (at, word) in words.iter().enumerate() {
                if !is_repository(word) {
                    continue;
                }
                for next in &words[at + 1..] {
                    if is_repository(next) {
                        break;
                    }
                    if is_file_path(next) || next.contains('/') {
                        declared.files.insert((*next).to_owned());
                        if let Some((_, base)) = next.rsplit_once('/') {
                            declared.files.insert(base.to_owned());
                        }
                    }
                }
            }
            // `KEY = owner/name ...`: a source key.
            for window in words.windows(3) {
                let [key, "=", repo] = window else { continue };
                if (1..=3).contains(&key.len())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                    && is_repository(repo)
                {
                    declared.keys.insert((*key).to_owned());
                }
            }
        }
        declared
    }

    /// Whether `evidence` names at least one source a reader can follow: an address, an issue
    /// number, a repository with a path, or a file or source key this header declares.
    fn followable(&self, evidence: &str) -> bool {
        if evidence.contains("https://") || evidence.contains("http://") {
            return true;
        }
        let words: Vec<&str> = words(evidence).collect();
        words.iter().enumerate().any(|(at, word)| {
            is_issue_reference(word)
                || self.keys.contains(*word)
                || self.files.contains(*word)
                || (is_repository(word)
                    && words
                        .get(at + 1)
                        .is_some_and(|next| is_file_path(next) || next.contains('/')))
        })
    }
}

#[test]
fn followable_sources_are_told_apart_from_vague_ones() {
    let header = "# Sources - A = AdguardTeam/HostlistsRegistry services/facebook.yml;\n\
                  #   1P = badmojr/1Hosts Pro/domains.txt at 907973d3\n\
                  #   Perflyst/PiHoleBlocklist android-tracking.txt at 88546cfa\n";
    let declared = DeclaredSources::of(header);
    for good in [
        "A",
        "1P, A",
        "hagezi#4422",
        "Perflyst android-tracking.txt comment",
        "https://developers.facebook.com/docs/meta-pixel/",
        "facebook/facebook-android-sdk facebook-core/src/main/java/ServerProtocol.kt",
    ] {
        assert!(declared.followable(good), "{good:?} should be followable");
    }
    for vague in [
        "public code",
        "research section 7 WhatsApp keep set",
        "decompiled Meta app enum (public code, research section 1)",
        "B",
        "AB",
        "hagezi META tracker set",
    ] {
        assert!(
            !declared.followable(vague),
            "{vague:?} should not be followable"
        );
    }
}

#[test]
fn every_entry_names_a_followable_source() {
    let mut failures = Vec::new();
    for list in catalogue() {
        let declared = DeclaredSources::of(list.text);
        for (line_number, line) in list.entry_lines() {
            // A missing `# evidence:` is `every_entry_line_cites_its_evidence`'s to report.
            let Some(evidence) = evidence_of(line) else {
                continue;
            };
            if !declared.followable(evidence) {
                failures.push(format!("{}:{line_number}: {evidence}", list.id));
            }
        }
    }
    assert_no_failures(
        &failures,
        "entries whose evidence names no source a reader can follow (an address, an issue \
         number, a repository and path, or a file or source key the header declares)",
    );
}

#[test]
fn network_lists_never_cover_the_house_or_the_tests() {
    // Private, loopback, link-local, documentation and unspecified addresses: a network list
    // holding one would block local answers (and the test upstreams).
    let local: Vec<IpAddr> = [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.1.1",
        "192.0.2.77",
        "198.51.100.9",
        "0.0.0.0",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
    ]
    .map(|text| text.parse().expect("address"))
    .to_vec();
    let mut all = Vec::new();
    for &id in NETWORK_LISTS {
        let (_, networks) = read_networks(bundled_text(id).expect("bundled"));
        assert!(!networks.is_empty(), "{id} holds no network");
        for network in &networks {
            for address in &local {
                assert!(
                    !network.contains(address),
                    "{id}: {network} holds {address}"
                );
            }
            assert!(
                network.prefix_len() >= 8,
                "{id}: {network} is wider than a /8"
            );
        }
        all.extend(networks);
    }
    // The snapshot holds the addresses Meta's edges answer from (www.facebook.com's
    // star-mini.c10r.facebook.com, WhatsApp's and the IPv6 face:b00c addresses).
    let set = NetworkSet::new(all);
    for edge in [
        "157.240.1.35",
        "31.13.72.36",
        "2a03:2880:f12d:83:face:b00c:0:25de",
    ] {
        let address: IpAddr = edge.parse().expect("address");
        assert!(
            set.network_of(address).is_some(),
            "{edge} is not in Meta's networks"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. all-meta covers every Meta name
// ---------------------------------------------------------------------------------------------

#[test]
fn label_boundaries_decide_what_is_under_a_domain() {
    assert!(is_at_or_under("facebook.com", "facebook.com"));
    assert!(is_at_or_under("a.b.facebook.com", "facebook.com"));
    assert!(!is_at_or_under("notfacebook.com", "facebook.com"));
    assert!(!is_at_or_under("facebook.com", "www.facebook.com"));
    assert!(!is_at_or_under("facebook.com.evil", "facebook.com"));
}

#[test]
fn every_bundled_list_is_either_a_meta_list_or_knowingly_outside() {
    for id in META_LISTS.iter().chain(OUTSIDE_META_LISTS) {
        assert!(bundled_text(id).is_some(), "`{id}` is not bundled");
    }
    let unclassified: Vec<&str> = bundled_ids()
        .filter(|id| !META_LISTS.contains(id) && !OUTSIDE_META_LISTS.contains(id))
        .collect();
    assert!(
        unclassified.is_empty(),
        "new lists must be added to META_LISTS (names under all-meta) or OUTSIDE_META_LISTS: \
         {unclassified:?}"
    );
}

#[test]
fn all_meta_covers_every_name_of_the_other_meta_lists() {
    let all_meta = BundledList::read("all-meta");
    assert_eq!(all_meta.header().match_mode, Some(MatchMode::Subdomains));
    let domains: Vec<&str> = all_meta.rules().map(|rule| rule.name.as_str()).collect();
    for (line, rule) in &all_meta.rules {
        assert!(
            rule.subdomains && !rule.allow,
            "all-meta:{line}: {rule:?} must cover its subdomains"
        );
        let parents: Vec<&&str> = domains
            .iter()
            .filter(|&&d| d != rule.name && is_at_or_under(&rule.name, d))
            .collect();
        assert!(
            parents.is_empty(),
            "all-meta:{line}: {} is already under {parents:?}",
            rule.name
        );
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for &id in META_LISTS {
        let list = BundledList::read(id);
        for (line, rule) in &list.rules {
            if rule.is_permitted_google_check(id) {
                continue;
            }
            checked += 1;
            if !domains.iter().any(|d| is_at_or_under(&rule.name, d)) {
                failures.push(format!(
                    "{id}:{line}: {} is under no all-meta domain",
                    rule.name
                ));
            }
        }
    }
    assert!(checked > 0, "no names checked");
    assert_no_failures(&failures, "names outside all-meta");
}

// ---------------------------------------------------------------------------------------------
// 3. No third-party domains; presets name real lists
// ---------------------------------------------------------------------------------------------

#[test]
fn no_list_names_or_covers_a_forbidden_third_party_domain() {
    let mut failures = Vec::new();
    let mut google_check_found = false;
    for list in catalogue() {
        for (line, rule) in &list.rules {
            if rule.is_permitted_google_check(list.id) {
                google_check_found = true;
                continue;
            }
            for forbidden in FORBIDDEN_DOMAINS {
                // The forbidden domain is the name or a parent of it, or the entry covers it.
                let hit = is_at_or_under(&rule.name, forbidden)
                    || (rule.subdomains && is_at_or_under(forbidden, &rule.name));
                if hit {
                    failures.push(format!("{}:{line}: {rule:?} touches {forbidden}", list.id));
                }
            }
        }
    }
    assert_no_failures(&failures, "third-party domains in the catalogue");
    assert!(
        google_check_found,
        "{GOOGLE_CHECK_LIST} should allow exactly {GOOGLE_CHECK_NAME} (Quest captive-portal check)"
    );
}

#[test]
fn presets_name_only_bundled_lists_of_the_right_kind() {
    let kinds: BTreeMap<&str, Option<String>> = catalogue()
        .into_iter()
        .map(|list| (list.id, list.report.header.kind))
        .collect();
    let presets = presets();
    let names: BTreeSet<&str> = presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), presets.len(), "preset names repeat");
    assert!(
        names.contains(DEFAULT_PROFILE),
        "default profile {DEFAULT_PROFILE}"
    );
    for (preset, _) in PRESET_DEVICES {
        assert!(names.contains(preset), "no preset named {preset}");
    }

    let mut failures = Vec::new();
    for preset in &presets {
        for (ids, kind) in [(&preset.block, "block"), (&preset.allow, "allow")] {
            for id in ids {
                match kinds.get(id.as_str()) {
                    None => failures.push(format!(
                        "{}: {kind} list `{id}` is not bundled",
                        preset.name
                    )),
                    Some(found) if found.as_deref() != Some(kind) => failures.push(format!(
                        "{}: {kind} list `{id}` has kind {found:?}",
                        preset.name
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    assert_no_failures(&failures, "bad list references in presets");
}

// ---------------------------------------------------------------------------------------------
// 4. End to end through the daemon
// ---------------------------------------------------------------------------------------------

/// What the upstream answers for every ordinary name.
const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// What the upstream answers for Meta's shared edges.
const EDGE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 88);

const RECORD_TTL: u32 = 300;

/// One device per preset, picked by its source address.
const PRESET_DEVICES: &[(&str, Ipv4Addr)] = &[
    ("meta-apps", Ipv4Addr::new(127, 0, 0, 10)),
    ("quest", Ipv4Addr::new(127, 0, 0, 11)),
    ("glasses-phone", Ipv4Addr::new(127, 0, 0, 12)),
    ("no-meta", Ipv4Addr::new(127, 0, 0, 13)),
    ("strict", Ipv4Addr::new(127, 0, 0, 14)),
    ("whatsapp-only", Ipv4Addr::new(127, 0, 0, 15)),
    ("no-instagram", Ipv4Addr::new(127, 0, 0, 16)),
];

/// The keep lists a household is promised for each preset that keeps an app.
const KEPT_APPS: &[(&str, &[&str])] = &[
    (
        "meta-apps",
        &[
            "keep-facebook",
            "keep-messenger",
            "keep-instagram",
            "keep-whatsapp",
        ],
    ),
    ("quest", &["keep-quest"]),
    (
        "glasses-phone",
        &["keep-glasses", "keep-whatsapp", "keep-instagram"],
    ),
    ("whatsapp-only", &["keep-whatsapp"]),
    (
        "no-instagram",
        &["keep-facebook", "keep-messenger", "keep-whatsapp"],
    ),
];

/// Meta's shared edges, each reached through `alias-N.example.org CNAME edge`.
const SHARED_EDGES: &[&str] = &[
    "scontent.xx.fbcdn.net",
    "star.c10r.facebook.com",
    "mmx-ds.cdn.whatsapp.net",
    "instagram.fhel1-1.fna.fbcdn.net",
    "z-p42-instagram.c10r.instagram.com",
];

/// A shop that hides the Meta Pixel behind its own name.
const CLOAKED_PIXEL: &str = "shop.example.org";
const PIXEL_HOST: &str = "connect.facebook.net";

/// Other CNAMEs of the upstream zone: (name, target), as in real life.
const OTHER_CNAMES: &[(&str, &str)] = &[
    (PIXEL_HOST, "scontent.xx.fbcdn.net"),
    (CLOAKED_PIXEL, PIXEL_HOST),
];

fn edge_alias(index: usize) -> String {
    format!("alias-{}.example.org", index + 1)
}

fn device(preset: &str) -> IpAddr {
    PRESET_DEVICES
        .iter()
        .find(|(name, _)| *name == preset)
        .map(|&(_, ip)| IpAddr::V4(ip))
        .unwrap_or_else(|| panic!("no device for preset {preset}"))
}

/// Every rule of every Meta list and of all-meta, except the Google name: what `no-meta` blocks.
fn meta_rules() -> BTreeSet<Rule> {
    META_LISTS
        .iter()
        .chain(["all-meta"].iter())
        .flat_map(|&id| {
            let list = BundledList::read(id);
            list.rules
                .into_iter()
                .map(|(_, rule)| rule)
                .filter(move |rule| !rule.is_permitted_google_check(id))
        })
        .collect()
}

/// The sample names of `rules`, sorted, each once.
fn sample_names<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> BTreeSet<String> {
    rules.into_iter().flat_map(Rule::sample_names).collect()
}

/// The daemon config: an upstream and one `[[device]]` per preset, nothing else.
fn config(upstream: &TestUpstream) -> String {
    let mut text = format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr);
    for (preset, ip) in PRESET_DEVICES {
        text.push_str(&format!(
            "\n[[device]]\nname = \"{preset}-device\"\nmatch = [\"{ip}\"]\nprofile = \"{preset}\"\n"
        ));
    }
    text
}

/// An upstream with an address for every name of every list a test asks about (and the Google
/// check), the shared edges, their aliases and the cloaked Pixel; and the daemon in front of it.
async fn start_house() -> (TestUpstream, TestDaemon) {
    let mut addresses: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for id in META_LISTS.iter().chain(["all-meta"].iter()) {
        for name in sample_names(BundledList::read(id).rules()) {
            addresses.insert(name, UPSTREAM_ADDR);
        }
    }
    let mut cnames: Vec<(String, String)> = OTHER_CNAMES
        .iter()
        .map(|&(name, target)| (name.to_owned(), target.to_owned()))
        .collect();
    for (index, edge) in SHARED_EDGES.iter().enumerate() {
        let previous = addresses.insert((*edge).to_owned(), EDGE_ADDR);
        assert_eq!(
            previous, None,
            "{edge} is a list name too: pick another edge name"
        );
        cnames.push((edge_alias(index), (*edge).to_owned()));
    }
    // A CNAME must be alone at its name.
    for (name, _) in &cnames {
        addresses.remove(name);
    }

    let mut records: Vec<TestRecord<'_>> = addresses
        .iter()
        .map(|(name, &addr)| TestRecord::A(name, addr, RECORD_TTL))
        .collect();
    records.extend(
        cnames
            .iter()
            .map(|(name, target)| TestRecord::Cname(name, target, RECORD_TTL)),
    );
    let upstream = TestUpstream::start(&records).await;
    let daemon = TestDaemon::start(&config(&upstream)).await;
    (upstream, daemon)
}

async fn ask(daemon: &TestDaemon, preset: &str, name: &str, rtype: RecordType) -> Message {
    query_udp_from(device(preset), daemon.dns, name, rtype, true).await
}

/// The reply in one line, for failure messages.
fn summary(reply: &Message) -> String {
    format!(
        "{:?} A {:?} CNAME {:?} EDE {:?}",
        rcode(reply),
        a_addrs(reply),
        cname_targets(reply),
        ede(reply)
    )
}

/// `None` when `reply` is the upstream's answer `addr` without any EDE, else what it is.
fn unless_answered_with(reply: &Message, addr: Ipv4Addr) -> Option<String> {
    let answered =
        rcode(reply) == ResponseCode::NoError && a_addrs(reply) == [addr] && ede(reply).is_none();
    (!answered).then(|| summary(reply))
}

/// `None` when `reply` is the null answer naming one of `lists`, else what it is.
fn unless_blocked_by(reply: &Message, lists: &[&str]) -> Option<String> {
    let named = ede(reply).is_some_and(|(code, text)| {
        code == 15
            && text
                .strip_prefix("blocked by ")
                .is_some_and(|list| lists.contains(&list))
    });
    let blocked =
        rcode(reply) == ResponseCode::NoError && a_addrs(reply) == [Ipv4Addr::UNSPECIFIED] && named;
    (!blocked).then(|| summary(reply))
}

#[tokio::test]
async fn presets_that_keep_an_app_resolve_every_kept_name() {
    let (upstream, daemon) = start_house().await;
    let mut failures = Vec::new();
    for &(preset, keep_lists) in KEPT_APPS {
        let rules: Vec<Rule> = keep_lists
            .iter()
            .flat_map(|id| BundledList::read(id).rules)
            .map(|(_, rule)| rule)
            .collect();
        let names = sample_names(&rules);
        assert!(!names.is_empty(), "{preset}: nothing to check");
        for name in &names {
            let reply = ask(&daemon, preset, name, RecordType::A).await;
            if let Some(got) = unless_answered_with(&reply, UPSTREAM_ADDR) {
                failures.push(format!("{preset}: {name} → {got}"));
            }
        }
        eprintln!("{preset}: {} kept names checked", names.len());
    }
    assert_no_failures(&failures, "kept names not answered by the upstream");
    assert!(upstream.queries_for("www.facebook.com", RecordType::A) >= 1);
}

#[tokio::test]
async fn presets_that_keep_an_app_reach_the_shared_edges_behind_a_cname() {
    let (_upstream, daemon) = start_house().await;
    let mut failures = Vec::new();
    for &(preset, keep_ids) in KEPT_APPS {
        let keep: Vec<BundledList> = keep_ids.iter().map(|&id| BundledList::read(id)).collect();
        for (index, edge) in SHARED_EDGES.iter().enumerate() {
            // An edge of an app the preset drops (Instagram's for `whatsapp-only`) may be
            // blocked; every edge a kept app's keep list names must not be.
            if !keep.iter().any(|list| list.covers(edge)) {
                continue;
            }
            let alias = edge_alias(index);
            let reply = ask(&daemon, preset, &alias, RecordType::A).await;
            let problem = unless_answered_with(&reply, EDGE_ADDR)
                .or_else(|| (cname_targets(&reply) != [*edge]).then(|| summary(&reply)));
            if let Some(got) = problem {
                failures.push(format!("{preset}: {alias} CNAME {edge} → {got}"));
            }
        }
    }
    assert_no_failures(&failures, "shared edges blocked behind a CNAME");
}

#[tokio::test]
async fn no_meta_blocks_every_meta_name_and_every_alias_into_meta() {
    let (upstream, daemon) = start_house().await;
    let names = sample_names(&meta_rules());
    let mut failures = Vec::new();
    for name in &names {
        let reply = ask(&daemon, "no-meta", name, RecordType::A).await;
        if let Some(got) = unless_blocked_by(&reply, &["all-meta"]) {
            failures.push(format!("{name} → {got}"));
        }
    }
    let aliases: Vec<String> = (0..SHARED_EDGES.len())
        .map(edge_alias)
        .chain([CLOAKED_PIXEL.to_owned()])
        .collect();
    for alias in &aliases {
        // Blocked by answer inspection: the upstream was asked, its answer points into Meta.
        let reply = ask(&daemon, "no-meta", alias, RecordType::A).await;
        if let Some(got) = unless_blocked_by(&reply, &["all-meta"]) {
            failures.push(format!("{alias} (a CNAME into Meta) → {got}"));
        } else if !cname_targets(&reply).is_empty() {
            failures.push(format!(
                "{alias}: blocked answer leaks the chain {}",
                summary(&reply)
            ));
        }
    }
    assert_no_failures(
        &failures,
        "Meta names not blocked by all-meta under no-meta",
    );

    let leaked: Vec<&String> = names
        .iter()
        .filter(|name| upstream.queries_for(name, RecordType::A) > 0)
        .collect();
    assert!(
        leaked.is_empty(),
        "blocked names reached the upstream: {leaked:?}"
    );
    assert_eq!(
        upstream.queries_for(CLOAKED_PIXEL, RecordType::A),
        1,
        "the alias itself is forwarded, then its answer inspected"
    );
    eprintln!(
        "no-meta: {} Meta names and {} aliases blocked",
        names.len(),
        aliases.len()
    );
}

#[tokio::test]
async fn meta_apps_blocks_meta_ai_and_the_pixel_but_keeps_facebook() {
    let (upstream, daemon) = start_house().await;
    let meta_ai = ask(&daemon, "meta-apps", "www.meta.ai", RecordType::A).await;
    assert_eq!(unless_blocked_by(&meta_ai, &["meta-ai"]), None);
    // Blocked on the name asked, although it points to an edge keep-facebook allows.
    let pixel = ask(&daemon, "meta-apps", PIXEL_HOST, RecordType::A).await;
    assert_eq!(unless_blocked_by(&pixel, &["meta-tracking"]), None);
    let cloaked = ask(&daemon, "meta-apps", CLOAKED_PIXEL, RecordType::A).await;
    assert_eq!(unless_blocked_by(&cloaked, &["meta-tracking"]), None);
    let facebook = ask(&daemon, "meta-apps", "www.facebook.com", RecordType::A).await;
    assert_eq!(unless_answered_with(&facebook, UPSTREAM_ADDR), None);

    assert_eq!(upstream.queries_for("www.meta.ai", RecordType::A), 0);
    assert_eq!(upstream.queries_for(PIXEL_HOST, RecordType::A), 0);
    assert_eq!(upstream.queries_for("www.facebook.com", RecordType::A), 1);
}

#[tokio::test]
async fn lists_that_are_retried_in_a_storm_answer_blocked_names_for_an_hour() {
    let (_upstream, daemon) = start_house().await;
    // (preset, name, list that blocks it, TTL of the blocked answer)
    let cases: &[(&str, &str, &str, u32)] = &[
        (
            "meta-apps",
            "privatestats.whatsapp.net",
            "meta-tracking",
            3600,
        ),
        ("strict", "dit.whatsapp.net", "meta-tracking-strict", 3600),
        ("whatsapp-only", "www.facebook.com", "app-facebook", 10),
        ("meta-apps", "www.meta.ai", "meta-ai", 10),
    ];
    let mut failures = Vec::new();
    for &(preset, name, list, ttl) in cases {
        let header_ttl = BundledList::read(id_of(list)).header().blocked_ttl;
        let reply = ask(&daemon, preset, name, RecordType::A).await;
        let problem = unless_blocked_by(&reply, &[list])
            .or_else(|| (min_answer_ttl(&reply) != Some(ttl)).then(|| summary(&reply)));
        if let Some(got) = problem {
            failures.push(format!(
                "{preset}: {name} (list {list}, header blocked_ttl {header_ttl:?}): expected TTL {ttl}, got {got} with TTL {:?}",
                min_answer_ttl(&reply)
            ));
        }
    }
    assert_no_failures(&failures, "blocked answers with the wrong TTL");
}

#[tokio::test]
async fn strict_answers_whatsapp_telemetry_with_the_null_address_never_nxdomain() {
    let (upstream, daemon) = start_house().await;
    let a = ask(&daemon, "strict", "dit.whatsapp.net", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError, "{}", summary(&a));
    assert_eq!(unless_blocked_by(&a, &["meta-tracking-strict"]), None);
    let aaaa = ask(&daemon, "strict", "dit.whatsapp.net", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError);
    assert_eq!(aaaa_addrs(&aaaa), [Ipv6Addr::UNSPECIFIED]);
    assert_eq!(
        upstream.queries(),
        0,
        "dit.whatsapp.net never leaves the house"
    );
    // Not even a profile that pairs the strict lists with keep lists lets it through.
    let keeping: Vec<&str> = catalogue()
        .into_iter()
        .filter(|list| list.header().kind.as_deref() == Some("allow"))
        .filter(|list| list.covers("dit.whatsapp.net"))
        .map(|list| list.id)
        .collect();
    assert!(
        keeping.is_empty(),
        "dit.whatsapp.net is kept by {keeping:?}"
    );
}

#[tokio::test]
async fn every_preset_blocks_every_name_of_its_block_lists() {
    // Keep lists win over block lists, so a keep entry that covers a blocked name would quietly
    // undo the block (the reason keep-facebook must never hold `||facebook.com^`).
    let (upstream, daemon) = start_house().await;
    let presets = presets();
    let mut failures = Vec::new();
    for &(preset, _) in PRESET_DEVICES {
        let settings = presets
            .iter()
            .find(|p| p.name == preset)
            .unwrap_or_else(|| panic!("no preset {preset}"));
        let read = |ids: &[String]| -> Vec<BundledList> {
            ids.iter().map(|id| BundledList::read(id_of(id))).collect()
        };
        let (block, allow) = (read(&settings.block), read(&settings.allow));
        let names = sample_names(block.iter().flat_map(BundledList::rules));
        assert!(!names.is_empty(), "{preset} blocks nothing");
        for name in &names {
            let lists_covering = |lists: &[BundledList]| -> Vec<&'static str> {
                lists
                    .iter()
                    .filter(|list| list.covers(name))
                    .map(|list| list.id)
                    .collect()
            };
            let keeping = lists_covering(&allow);
            if !keeping.is_empty() {
                failures.push(format!(
                    "{preset}: {name} is blocked and kept by {keeping:?}"
                ));
                continue;
            }
            let blocking = lists_covering(&block);
            let reply = ask(&daemon, preset, name, RecordType::A).await;
            if let Some(got) = unless_blocked_by(&reply, &blocking) {
                failures.push(format!("{preset}: {name} (in {blocking:?}) → {got}"));
            }
        }
        eprintln!("{preset}: {} block-list names blocked", names.len());
    }
    assert_no_failures(&failures, "block-list names not blocked");
    assert_eq!(
        upstream.queries(),
        0,
        "a blocked name never reaches the upstream"
    );
}

/// The `&'static str` bundled id equal to `id` (preset list ids are owned strings).
fn id_of(id: &str) -> &'static str {
    bundled_ids()
        .find(|bundled| *bundled == id)
        .unwrap_or_else(|| panic!("`{id}` is not a bundled list"))
}
