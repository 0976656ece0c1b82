//! List line formats: turns the text of one blocklist into entries (name, scope, allow) plus a
//! report of the list's header and of the lines that could not be read.
//!
//! One list may mix plain names, hosts-file lines (`0.0.0.0 a.com b.com`), adblock domain rules
//! (`||name^`, `@@||name^`) and `*.name` wildcards. Everything else the adblock syntax can say
//! (modifiers, address, regex and cosmetic rules) has no meaning for a DNS resolver, so such a
//! line is refused with a [`LineError`] that says why, and the rest of the list still loads.
//!
//! Names come out the way the matcher stores them: lower-case ASCII (IDN turned into punycode),
//! no trailing dot. A big list has over a million lines, so a name that already has that form is
//! borrowed from the input instead of copied.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use std::time::Duration;

use crate::lists::MatchMode;
use crate::net::parse_network;

/// The most [`InvalidLine`] samples a [`ParseReport`] keeps; later bad lines are only counted.
pub const MAX_INVALID_SAMPLES: usize = 5;

/// Longest name in presentation form (RFC 1035: 255 wire bytes).
const MAX_NAME_LEN: usize = 253;

/// Longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// How much of a bad line an [`InvalidLine`] keeps: enough to recognise it in a warning.
const SAMPLE_TEXT_CHARS: usize = 80;

/// Which names an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryScope {
    /// Only the name itself. No line syntax yields it: it is there for callers that resolve
    /// [`EntryScope::ListDefault`] or build entries of their own.
    Exact,
    /// The name and every name below it on a label boundary (`||name^`, `*.name`).
    Subdomains,
    /// A plain entry (plain name or hosts line): the caller applies the list's [`MatchMode`].
    ListDefault,
}

/// One entry read from a list line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The normalised name: lower-case ASCII, punycode for IDN, no trailing dot.
    pub name: Cow<'a, str>,
    /// Which names the entry covers.
    pub scope: EntryScope,
    /// True for an exception (`@@||name^`): the entry lets the name through instead of blocking it.
    pub allow: bool,
}

/// Why a list line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// An adblock rule carries `$` options, which a DNS resolver cannot honour.
    #[error("the adblock option `${0}` is not supported; only plain `||name^` rules are")]
    UnsupportedModifier(String),
    /// An adblock rule of a kind other than a domain rule.
    #[error("{0} rules are not supported; only domain rules like `||example.com^` are")]
    UnsupportedRule(&'static str),
    /// A subdomain rule for a whole top-level domain.
    #[error("`{0}` is too broad: it would block a whole top-level domain")]
    TooBroad(String),
    /// A `*` anywhere but a leading `*.`.
    #[error("a wildcard is only allowed as a leading `*.` (as in `*.example.com`)")]
    MisplacedWildcard,
    /// An IP address where a name was expected.
    #[error("`{0}` is an IP address, not a domain name")]
    AddressAsName(String),
    /// A name with one label, like `com` or `router`.
    #[error("`{0}` has a single label; an entry needs at least two (like `example.com`)")]
    SingleLabel(String),
    /// A name longer than DNS allows.
    #[error("the name is {0} bytes long; a domain name has at most {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// A label longer than DNS allows.
    #[error("the label `{0}` is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong(String),
    /// An empty name or label (leading dot, two dots in a row).
    #[error("the name is empty or has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel,
    /// A character that cannot appear in a host name.
    #[error("`{0}` cannot appear in a domain name (allowed: letters, digits, `-`, `_`, dots)")]
    InvalidCharacter(char),
    /// A Unicode name that IDNA cannot turn into ASCII.
    #[error("`{0}` is not a valid internationalised domain name")]
    InvalidIdn(String),
    /// More than one name on a line that is not a hosts line.
    #[error("unexpected text `{0}` after the entry (a comment must start with ` #`)")]
    TrailingText(String),
    /// A header `# match:` line with a value other than `exact` or `subdomains`.
    #[error("unknown match mode `{0}`; expected `exact` or `subdomains`")]
    UnknownMatchMode(String),
    /// A line of a network list that is neither an address nor a CIDR network.
    #[error("`{0}` is not an IP address or a CIDR network like `192.0.2.0/24`")]
    NotANetwork(String),
    /// A header `# blocked_ttl:` line whose value is not a duration a DNS TTL can hold.
    #[error("`{0}` is not a blocked_ttl; write a duration like `1h` (at most 68 years)")]
    BadBlockedTtl(String),
}

/// A line that was refused, for the warning that names file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidLine {
    /// The line number, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub error: LineError,
    /// The line itself, trimmed and cut to about 80 characters.
    pub text: String,
}

impl fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} (`{}`)", self.line, self.error, self.text)
    }
}

/// What the `# key: value` lines at the top of a list say about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListHeader {
    /// `# id:` — the list's identifier.
    pub id: Option<String>,
    /// `# title:` — its human name.
    pub title: Option<String>,
    /// `# description:` — one sentence on what it blocks.
    pub description: Option<String>,
    /// `# match:` — how its plain entries match.
    pub match_mode: Option<MatchMode>,
    /// `# confidence:` — how sure its authors are that its entries are what it claims.
    pub confidence: Option<String>,
    /// `# kind:` — for example `block`.
    pub kind: Option<String>,
    /// `# blocked_ttl:` — the TTL of answers this list blocks, over the profile's.
    pub blocked_ttl: Option<Duration>,
}

/// The outcome of reading one list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// The header fields found in the leading comment block.
    pub header: ListHeader,
    /// How many entries were passed on (a hosts line with three names counts three).
    pub entries: usize,
    /// How many lines were refused.
    pub invalid_count: usize,
    /// The first refused lines, at most [`MAX_INVALID_SAMPLES`].
    pub invalid_samples: Vec<InvalidLine>,
}

impl ParseReport {
    fn record_invalid(&mut self, line: usize, error: LineError, text: &str) {
        self.invalid_count += 1;
        if self.invalid_samples.len() < MAX_INVALID_SAMPLES {
            self.invalid_samples.push(InvalidLine {
                line,
                error,
                text: truncate(text.trim()),
            });
        }
    }
}

/// Reads a whole list, passing each entry to `on_entry`. Bad lines are counted and sampled in
/// the report; they never stop the rest of the list from loading.
pub fn parse_list(text: &str, mut on_entry: impl FnMut(Entry<'_>)) -> ParseReport {
    let mut parser = ListParser::default();
    for line in text.lines() {
        parser.feed(line, &mut on_entry);
    }
    parser.finish()
}

/// Reads a list one line at a time, so a caller can stream a large file instead of holding
/// all of it in memory: [`parse_list`] over lines that arrive one by one.
#[derive(Debug)]
pub struct ListParser {
    report: ParseReport,
    line: usize,
    in_header: bool,
}

impl Default for ListParser {
    fn default() -> Self {
        Self {
            report: ParseReport::default(),
            line: 0,
            in_header: true,
        }
    }
}

impl ListParser {
    /// The header read so far: complete once the first entry line has been fed, which is
    /// when a caller needs its match mode.
    pub fn header(&self) -> &ListHeader {
        &self.report.header
    }

    /// Reads the next line (without its line ending).
    pub fn feed(&mut self, line: &str, on_entry: impl FnMut(Entry<'_>)) {
        let Some(line) = self.entry_line(line) else {
            return;
        };
        let mut found = 0;
        let mut on_entry = on_entry;
        let result = parse_line(line, |entry| {
            found += 1;
            on_entry(entry);
        });
        self.report.entries += found;
        if let Err(error) = result {
            self.report.record_invalid(self.line, error, line);
        }
    }

    /// Reads the next line of a network list (one address or CIDR network a line, `#`
    /// comments), passing each network to `on_network`.
    pub fn feed_network(&mut self, line: &str, mut on_network: impl FnMut(IpNet)) {
        let Some(line) = self.entry_line(line) else {
            return;
        };
        match parse_network_line(line) {
            Ok(Some(network)) => {
                self.report.entries += 1;
                on_network(network);
            }
            Ok(None) => {}
            Err(error) => self.report.record_invalid(self.line, error, line),
        }
    }

    /// Counts `line` and reads it into the header while the leading comment block lasts;
    /// the line to read entries from once it is over.
    fn entry_line<'l>(&mut self, line: &'l str) -> Option<&'l str> {
        self.line += 1;
        let line = if self.line == 1 {
            strip_bom(line)
        } else {
            line
        };
        self.in_header = self.in_header && is_blank_or_comment(line.trim());
        if !self.in_header {
            return Some(line);
        }
        if let Err(error) = read_header_line(line, &mut self.report.header) {
            self.report.record_invalid(self.line, error, line);
        }
        None
    }

    /// The report of everything fed.
    pub fn finish(self) -> ParseReport {
        self.report
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Reads one line, passing each entry to `on_entry` (a hosts line may hold several). Blank and
/// comment lines give no entry and `Ok`. On a hosts line with a bad name, the good names are
/// still passed on and the first error is returned.
pub fn parse_line(line: &str, on_entry: impl FnMut(Entry<'_>)) -> Result<(), LineError> {
    let line = line.trim();
    if is_blank_or_comment(line) {
        return Ok(());
    }
    // Most lines are one bare token; only the others need comment and token handling.
    if line.bytes().any(|b| b == b'#' || b.is_ascii_whitespace()) {
        return parse_compound_line(line, on_entry);
    }
    parse_tokens(line, std::iter::empty(), on_entry)
}

/// A line with a comment or several tokens (a hosts line, or a mistake).
fn parse_compound_line(line: &str, on_entry: impl FnMut(Entry<'_>)) -> Result<(), LineError> {
    let line = without_comment(line)?;
    let mut tokens = line.split_ascii_whitespace();
    match tokens.next() {
        Some(first) => parse_tokens(first, tokens, on_entry),
        None => Ok(()),
    }
}

/// The tokens of one line: an address and its names, or a single entry.
fn parse_tokens<'a>(
    first: &'a str,
    mut rest: impl Iterator<Item = &'a str>,
    mut on_entry: impl FnMut(Entry<'_>),
) -> Result<(), LineError> {
    if is_host_address(first) {
        return parse_hosts_names(first, rest, on_entry);
    }
    if let Some(extra) = rest.next() {
        return Err(LineError::TrailingText(extra.to_owned()));
    }
    if let Some(entry) = parse_rule(first)? {
        on_entry(entry);
    }
    Ok(())
}

/// True for (trimmed) lines that carry no entry: blank, `#`/`!` comments,
/// `[Adblock Plus 2.0]`.
fn is_blank_or_comment(line: &str) -> bool {
    line.is_empty()
        || line.starts_with(['#', '!'])
        || (line.starts_with('[') && line.ends_with(']'))
}

/// The line without a trailing ` # comment`. Cosmetic rules (`a.com##.ad`), the other use of
/// `#`, are refused here.
fn without_comment(line: &str) -> Result<&str, LineError> {
    // The common case costs one scan: no `#` at all.
    if !line.as_bytes().contains(&b'#') {
        return Ok(line);
    }
    let line = strip_inline_comment(line);
    if is_cosmetic(line) {
        return Err(LineError::UnsupportedRule("cosmetic (`##`)"));
    }
    Ok(line)
}

/// Drops a trailing ` # comment`. A `#` needs whitespace before it, so `a.com##.ad` (a cosmetic
/// rule) stays whole and is refused as such.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let start = line
        .match_indices('#')
        .map(|(at, _)| at)
        .find(|&at| at > 0 && bytes[at - 1].is_ascii_whitespace());
    start.map_or(line, |at| line[..at].trim_end())
}

/// True for adblock element-hiding and scriptlet rules (`##`, `#@#`, `#?#`, `#$#`, `#%#`).
fn is_cosmetic(line: &str) -> bool {
    ["##", "#@#", "#?#", "#$#", "#%#"]
        .iter()
        .any(|marker| line.contains(marker))
}

/// True when the first token of a line is an IP address, i.e. the line is a hosts line.
/// A zone (`fe80::1%lo0`, seen in macOS hosts files) is allowed.
fn is_host_address(token: &str) -> bool {
    // The quick test first, as for any name (an address with a zone is IPv6).
    if !might_be_address(token) {
        return false;
    }
    let zone = token.bytes().position(|byte| byte == b'%');
    looks_like_address(zone.map_or(token, |at| &token[..at]))
}

/// True when `text` is an IPv4 or IPv6 address. The quick test first: every name in a list
/// passes through here, and almost none ends in a digit or holds a colon.
fn looks_like_address(text: &str) -> bool {
    might_be_address(text) && text.parse::<IpAddr>().is_ok()
}

/// False for text that cannot be an address: IPv4 ends in a digit, and IPv6 has a colon within
/// its first five characters (a group has at most four digits).
fn might_be_address(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.last().is_some_and(u8::is_ascii_digit) || bytes.iter().take(5).any(|&b| b == b':')
}

/// The names after the address of a hosts line; housekeeping names are skipped.
fn parse_hosts_names<'a>(
    address: &str,
    names: impl Iterator<Item = &'a str>,
    mut on_entry: impl FnMut(Entry<'_>),
) -> Result<(), LineError> {
    let mut first_error = None;
    let mut any_name = false;
    for raw in names {
        any_name = true;
        match plain_entry(raw) {
            Ok(Some(entry)) => on_entry(entry),
            Ok(None) => {}
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if !any_name {
        // A lone address is more likely a mistaken entry than a hosts line.
        return Err(LineError::AddressAsName(address.to_owned()));
    }
    first_error.map_or(Ok(()), Err)
}

/// One non-hosts token: an adblock rule, a `*.name` wildcard or a plain name.
fn parse_rule(token: &str) -> Result<Option<Entry<'_>>, LineError> {
    if let Some(rest) = token.strip_prefix("@@") {
        let body = rest.strip_prefix("||").ok_or(LineError::UnsupportedRule(
            "exception (other than `@@||name^`)",
        ))?;
        return adblock_entry(body, true).map(Some);
    }
    if let Some(body) = token.strip_prefix("||") {
        return adblock_entry(body, false).map(Some);
    }
    if token.starts_with('|') {
        return Err(LineError::UnsupportedRule("address (`|…`)"));
    }
    if token.starts_with('/') {
        return Err(LineError::UnsupportedRule(
            "regular-expression or path (`/…`)",
        ));
    }
    if let Some(name) = token.strip_prefix("*.") {
        return subdomain_entry(name, false).map(Some);
    }
    plain_entry(token)
}

/// The part of `||name^` or `@@||name^` after the `||`.
fn adblock_entry(body: &str, allow: bool) -> Result<Entry<'_>, LineError> {
    if let Some((_, options)) = body.split_once('$') {
        return Err(LineError::UnsupportedModifier(options.to_owned()));
    }
    let name = body.strip_suffix('^').ok_or(LineError::UnsupportedRule(
        "adblock (without a closing `^`)",
    ))?;
    subdomain_entry(name, allow)
}

/// An entry for `name` and everything below it.
fn subdomain_entry(name: &str, allow: bool) -> Result<Entry<'_>, LineError> {
    let name = normalise(name)?;
    if !has_dot(&name) {
        return Err(LineError::TooBroad(name.into_owned()));
    }
    Ok(Entry {
        name,
        scope: EntryScope::Subdomains,
        allow,
    })
}

/// A plain name (alone on its line or in a hosts line); `None` for housekeeping names.
fn plain_entry(raw: &str) -> Result<Option<Entry<'_>>, LineError> {
    if is_housekeeping(raw) {
        return Ok(None);
    }
    let name = normalise(raw)?;
    // Only a name that normalising changed (`LOCALHOST.`) can have become one.
    if matches!(name, Cow::Owned(_)) && is_housekeeping(&name) {
        return Ok(None);
    }
    if !has_dot(&name) {
        return Err(LineError::SingleLabel(name.into_owned()));
    }
    Ok(Some(Entry {
        name,
        scope: EntryScope::ListDefault,
        allow: false,
    }))
}

/// Names that hosts files map for the machine itself; they are no blocking entries, so they are
/// skipped without a warning.
fn is_housekeeping(name: &str) -> bool {
    matches!(
        name,
        "localhost"
            | "localhost.localdomain"
            | "local"
            | "broadcasthost"
            | "ip6-localhost"
            | "ip6-loopback"
            | "ip6-localnet"
            | "ip6-mcastprefix"
            | "ip6-allnodes"
            | "ip6-allrouters"
            | "ip6-allhosts"
            | "0.0.0.0"
    )
}

/// A host name as every list entry is stored (lower-case ASCII, punycode, no trailing dot),
/// for names that come from elsewhere (overrides) and must match what the matcher holds.
pub fn normalise_name(raw: &str) -> Result<String, LineError> {
    let name = normalise(raw.trim())?;
    if !has_dot(&name) {
        return Err(LineError::SingleLabel(name.into_owned()));
    }
    Ok(name.into_owned())
}

/// Lower-case ASCII, punycode for IDN, one trailing dot dropped, then checked against the rules
/// for host names. Borrows when the input already has that form (the common case).
fn normalise(raw: &str) -> Result<Cow<'_, str>, LineError> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    // Nearly every name in a real list is already valid as it stands: one pass confirms it.
    match validate(name) {
        Ok(()) if !looks_like_address(name) => Ok(Cow::Borrowed(name)),
        _ => normalise_slowly(name),
    }
}

/// Everything `normalise` does not expect: wildcards, addresses, upper case, IDN, bad names.
fn normalise_slowly(name: &str) -> Result<Cow<'_, str>, LineError> {
    if name.contains('*') {
        return Err(LineError::MisplacedWildcard);
    }
    if looks_like_address(name) {
        return Err(LineError::AddressAsName(name.to_owned()));
    }
    let name = if !name.is_ascii() {
        let ascii = to_punycode(name)?;
        // IDNA maps full-width and other Unicode digits to ASCII ones: `１２７.０.０.１` is
        // an address too.
        if looks_like_address(&ascii) {
            return Err(LineError::AddressAsName(ascii));
        }
        Cow::Owned(ascii)
    } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    validate(&name)?;
    Ok(name)
}

fn has_dot(name: &str) -> bool {
    name.as_bytes().contains(&b'.')
}

fn to_punycode(name: &str) -> Result<String, LineError> {
    idna::domain_to_ascii(name).map_err(|_| LineError::InvalidIdn(name.to_owned()))
}

/// Checks a lower-case ASCII name: length, labels, characters. One pass over the bytes, as
/// it runs on every entry.
fn validate(name: &str) -> Result<(), LineError> {
    if name.len() > MAX_NAME_LEN {
        return Err(LineError::NameTooLong(name.len()));
    }
    let mut label_start = 0;
    for (at, byte) in name.bytes().enumerate() {
        if byte == b'.' {
            check_label_length(&name[label_start..at])?;
            label_start = at + 1;
        } else if !is_name_byte(byte) {
            // Every byte before `at` is ASCII, so `at` starts a character.
            let bad = name[at..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(LineError::InvalidCharacter(bad));
        }
    }
    check_label_length(&name[label_start..])
}

/// Underscores are not valid in host names, but real lists are full of them (`_dmarc`, tracker
/// hosts), and they are valid in DNS names, so they are kept.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
}

fn check_label_length(label: &str) -> Result<(), LineError> {
    match label.len() {
        0 => Err(LineError::EmptyLabel),
        1..=MAX_LABEL_LEN => Ok(()),
        _ => Err(LineError::LabelTooLong(label.to_owned())),
    }
}

/// Fills `header` from one line of the leading comment block (`# key: value`). Unknown keys and
/// ordinary comments are ignored; a repeated key keeps its last value.
fn read_header_line(line: &str, header: &mut ListHeader) -> Result<(), LineError> {
    let Some((key, value)) = header_field(line) else {
        return Ok(());
    };
    let value = value.to_owned();
    match key.to_ascii_lowercase().as_str() {
        "id" => header.id = Some(value),
        "title" => header.title = Some(value),
        "description" => header.description = Some(value),
        "confidence" => header.confidence = Some(value),
        "kind" => header.kind = Some(value),
        "match" => header.match_mode = Some(parse_match_mode(&value)?),
        "blocked_ttl" => header.blocked_ttl = Some(parse_blocked_ttl(&value)?),
        _ => {}
    }
    Ok(())
}

/// Splits `# key: value` (or `! key: value`, as adblock lists write it) into key and value.
fn header_field(line: &str) -> Option<(&str, &str)> {
    let body = line.trim().strip_prefix(['#', '!'])?;
    let (key, value) = body.split_once(':')?;
    let (key, value) = (key.trim(), value.trim());
    let is_word = !key.is_empty() && !key.contains(char::is_whitespace);
    (is_word && !value.is_empty()).then_some((key, value))
}

fn parse_match_mode(value: &str) -> Result<MatchMode, LineError> {
    match value.to_ascii_lowercase().as_str() {
        "exact" => Ok(MatchMode::Exact),
        "subdomains" => Ok(MatchMode::Subdomains),
        _ => Err(LineError::UnknownMatchMode(value.to_owned())),
    }
}

/// The longest TTL DNS allows: 2^31 - 1 seconds, about 68 years (RFC 2181 section 8).
const MAX_TTL_SECS: u64 = 0x7fff_ffff;

/// One line of a network list: an address (a /32 or /128) or a CIDR network, host bits
/// cleared, IPv4-mapped IPv6 read as IPv4; `None` for a blank or comment line.
fn parse_network_line(line: &str) -> Result<Option<IpNet>, LineError> {
    let text = line.split('#').next().unwrap_or_default().trim();
    if text.is_empty() || text.starts_with('!') {
        return Ok(None);
    }
    let network = parse_network(text).ok_or_else(|| LineError::NotANetwork(text.to_owned()))?;
    Ok(Some(network))
}

/// A `# blocked_ttl:` value: a duration whose seconds fit a DNS TTL.
fn parse_blocked_ttl(value: &str) -> Result<Duration, LineError> {
    humantime::parse_duration(value)
        .ok()
        .filter(|ttl| ttl.as_secs() <= MAX_TTL_SECS)
        .ok_or_else(|| LineError::BadBlockedTtl(value.to_owned()))
}

/// The first [`SAMPLE_TEXT_CHARS`] characters of `text`, with `…` when cut.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(SAMPLE_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of one line, names owned.
    fn entries(line: &str) -> Result<Vec<(String, EntryScope, bool)>, LineError> {
        let mut found = Vec::new();
        parse_line(line, |e| {
            found.push((e.name.into_owned(), e.scope, e.allow))
        })?;
        Ok(found)
    }

    fn one(line: &str) -> (String, EntryScope, bool) {
        let mut found = entries(line).expect("line should parse");
        assert_eq!(found.len(), 1, "{line}: {found:?}");
        found.remove(0)
    }

    fn error(line: &str) -> LineError {
        entries(line).expect_err("line should be refused")
    }

    fn plain(name: &str) -> (String, EntryScope, bool) {
        (name.to_owned(), EntryScope::ListDefault, false)
    }

    fn subtree(name: &str, allow: bool) -> (String, EntryScope, bool) {
        (name.to_owned(), EntryScope::Subdomains, allow)
    }

    #[test]
    fn plain_names_are_normalised() {
        assert_eq!(one("example.com"), plain("example.com"));
        assert_eq!(one("  Example.COM.  "), plain("example.com"));
        assert_eq!(
            one("_dmarc.ads-1.example.com"),
            plain("_dmarc.ads-1.example.com")
        );
    }

    #[test]
    fn normalised_names_are_borrowed() {
        for line in [
            "example.com",
            "example.com.",
            "||example.com^",
            "0.0.0.0 example.com",
        ] {
            parse_line(line, |e| {
                assert!(matches!(e.name, Cow::Borrowed(_)), "{line}")
            })
            .unwrap();
        }
        parse_line("Example.com", |e| assert!(matches!(e.name, Cow::Owned(_)))).unwrap();
    }

    #[test]
    fn hosts_lines() {
        assert_eq!(
            entries("0.0.0.0 a.com b.com").unwrap(),
            [plain("a.com"), plain("b.com")]
        );
        assert_eq!(one("127.0.0.1\tname.example"), plain("name.example"));
        assert_eq!(one(":: v6.example"), plain("v6.example"));
        assert_eq!(one("fe80::1%lo0 zone.example"), plain("zone.example"));
        assert_eq!(
            one("192.168.1.1 router.example # the router"),
            plain("router.example")
        );
    }

    #[test]
    fn hosts_housekeeping_names_are_skipped() {
        for line in [
            "127.0.0.1 localhost",
            "127.0.0.1 localhost.localdomain local",
            "255.255.255.255 broadcasthost",
            "::1 ip6-localhost ip6-loopback",
            "fe00::0 ip6-localnet",
            "ff00::0 ip6-mcastprefix",
            "ff02::1 ip6-allnodes",
            "ff02::2 ip6-allrouters",
            "ff02::3 ip6-allhosts",
            "0.0.0.0 0.0.0.0",
            "localhost",
        ] {
            assert_eq!(entries(line).unwrap(), [], "{line}");
        }
        assert_eq!(one("0.0.0.0 localhost ads.example"), plain("ads.example"));
    }

    #[test]
    fn hosts_line_keeps_good_names_and_reports_the_bad_one() {
        let mut found = Vec::new();
        let result = parse_line("0.0.0.0 a.com bad..com c.com", |e| {
            found.push(e.name.into_owned())
        });
        assert_eq!(result, Err(LineError::EmptyLabel));
        assert_eq!(found, ["a.com", "c.com"]);
    }

    #[test]
    fn adblock_rules() {
        assert_eq!(one("||meta.ai^"), subtree("meta.ai", false));
        assert_eq!(one("@@||safe.meta.ai^"), subtree("safe.meta.ai", true));
        assert_eq!(
            one("||Tracker.Example.^"),
            subtree("tracker.example", false)
        );
    }

    #[test]
    fn wildcard_rules() {
        assert_eq!(one("*.example.com"), subtree("example.com", false));
        assert_eq!(one("*.co.uk"), subtree("co.uk", false));
    }

    #[test]
    fn comments_and_blank_lines_give_nothing() {
        for line in [
            "",
            "   ",
            "# comment",
            "  ! adblock comment",
            "[Adblock Plus 2.0]",
            "\r",
        ] {
            assert_eq!(entries(line).unwrap(), [], "{line:?}");
        }
    }

    #[test]
    fn inline_comments_are_dropped() {
        let line = "genai-graph.facebook.com  # evidence: decompiled app; breaks: ## nothing";
        assert_eq!(one(line), plain("genai-graph.facebook.com"));
        assert_eq!(one("||meta.ai^\t# evidence: x"), subtree("meta.ai", false));
    }

    #[test]
    fn idn_names_become_punycode() {
        assert_eq!(one("bücher.de"), plain("xn--bcher-kva.de"));
        assert_eq!(one("||BÜCHER.de^"), subtree("xn--bcher-kva.de", false));
        assert_eq!(one("xn--bcher-kva.de"), plain("xn--bcher-kva.de"));
    }

    #[test]
    fn unsupported_modifier() {
        assert_eq!(
            error("||meta.ai^$important"),
            LineError::UnsupportedModifier("important".into())
        );
        assert_eq!(
            error("@@||a.com^$third-party,dnstype=A"),
            LineError::UnsupportedModifier("third-party,dnstype=A".into())
        );
    }

    #[test]
    fn unsupported_rules() {
        for line in [
            "|https://example.com/ads",
            "/ads[0-9]+\\.example/",
            "example.com##.banner",
            "example.com#@#.ad",
            "example.com##.ad # with a comment",
            "@@example.com",
            "||example.com",
            "||example.com^*",
        ] {
            let err = error(line);
            assert!(
                matches!(err, LineError::UnsupportedRule(_)),
                "{line}: {err:?}"
            );
        }
        // A generic cosmetic rule starts with `#`: a comment, as in hosts files.
        assert_eq!(entries("##.banner-ad-generic").unwrap(), []);
    }

    #[test]
    fn too_broad() {
        assert_eq!(error("*.com"), LineError::TooBroad("com".into()));
        assert_eq!(error("||com^"), LineError::TooBroad("com".into()));
        assert_eq!(error("@@||COM.^"), LineError::TooBroad("com".into()));
    }

    #[test]
    fn misplaced_wildcard() {
        for line in [
            "a*.b.com",
            "*a.com",
            "||*.a.com^",
            "a.*.com",
            "*.*.com",
            "*",
        ] {
            assert_eq!(error(line), LineError::MisplacedWildcard, "{line}");
        }
    }

    #[test]
    fn address_as_name() {
        assert_eq!(error("1.2.3.4"), LineError::AddressAsName("1.2.3.4".into()));
        assert_eq!(
            error("0.0.0.0 10.0.0.1"),
            LineError::AddressAsName("10.0.0.1".into())
        );
        assert_eq!(
            error("||1.2.3.4^"),
            LineError::AddressAsName("1.2.3.4".into())
        );
        assert_eq!(error("::1"), LineError::AddressAsName("::1".into()));
    }

    /// Found by `fuzz/` (list_parser): IDNA turns full-width digits into ASCII ones, so the
    /// address check must also run on the name IDNA returns.
    #[test]
    fn address_in_unicode_digits() {
        assert_eq!(
            error("１２７.０.０.１"),
            LineError::AddressAsName("127.0.0.1".into())
        );
        assert_eq!(
            error("||１.２.３.４^"),
            LineError::AddressAsName("1.2.3.4".into())
        );
    }

    #[test]
    fn single_label() {
        assert_eq!(error("com"), LineError::SingleLabel("com".into()));
        assert_eq!(
            error("0.0.0.0 router"),
            LineError::SingleLabel("router".into())
        );
    }

    #[test]
    fn name_too_long() {
        let name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert_eq!(error(&name), LineError::NameTooLong(255));
        let fits = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(one(&fits), plain(&fits));
    }

    #[test]
    fn label_too_long() {
        let label = "x".repeat(64);
        assert_eq!(
            error(&format!("{label}.com")),
            LineError::LabelTooLong(label)
        );
    }

    #[test]
    fn empty_label() {
        for line in ["a..com", ".a.com", "||^", "a.com..", "@@||.^"] {
            assert_eq!(error(line), LineError::EmptyLabel, "{line}");
        }
    }

    #[test]
    fn invalid_character() {
        assert_eq!(error("a$b.com"), LineError::InvalidCharacter('$'));
        assert_eq!(error("ex:ample.com"), LineError::InvalidCharacter(':'));
        assert_eq!(error("||a.com/ads^"), LineError::InvalidCharacter('/'));
        assert_eq!(error("a.com#frag"), LineError::InvalidCharacter('#'));
    }

    #[test]
    fn invalid_idn() {
        // An unassigned code point, and a punycode prefix on a Unicode label.
        for line in ["\u{378}.com", "xn--ü.de"] {
            assert_eq!(error(line), LineError::InvalidIdn(line.into()), "{line:?}");
        }
        // IDNA lets a NUL through; the character check still refuses it.
        assert_eq!(error("a\u{0}ü.de"), LineError::InvalidCharacter('\u{0}'));
    }

    #[test]
    fn trailing_text() {
        assert_eq!(
            error("a.com b.com"),
            LineError::TrailingText("b.com".into())
        );
    }

    #[test]
    fn blocked_ttl_header() {
        let report = parse_list("# blocked_ttl: 1h\na.com\n", |_| {});
        assert_eq!(report.header.blocked_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(report.invalid_count, 0);
        for bad in ["soon", "100years"] {
            let report = parse_list(&format!("# blocked_ttl: {bad}\na.com\n"), |_| {});
            assert_eq!(report.header.blocked_ttl, None, "{bad}");
            assert_eq!(
                report.invalid_samples[0].error,
                LineError::BadBlockedTtl(bad.into())
            );
            assert_eq!(report.entries, 1, "a bad header line loses no entry");
        }
    }

    #[test]
    fn unknown_match_mode() {
        let report = parse_list("# match: fuzzy\na.com\n", |_| {});
        assert_eq!(report.invalid_count, 1);
        assert_eq!(report.invalid_samples[0].line, 1);
        assert_eq!(
            report.invalid_samples[0].error,
            LineError::UnknownMatchMode("fuzzy".into())
        );
        assert_eq!(report.entries, 1);
    }

    #[test]
    fn errors_read_as_plain_words() {
        let message = error("||meta.ai^$important").to_string();
        assert!(message.contains("$important"), "{message}");
        let message = error("*.com").to_string();
        assert!(message.contains("too broad"), "{message}");
    }

    const BUNDLED: &str = "\
# id: meta-ai
# title: Meta AI
# description: Meta AI assistant endpoints.
# match: exact
# confidence: high
# kind: block
#
||meta.ai^  # evidence: AdGuard services/meta_ai.yml; breaks: meta.ai web chat
genai-graph.facebook.com  # evidence: decompiled Meta app enum; breaks: Meta AI in Facebook apps
# id: not-a-header-any-more
";

    #[test]
    fn bundled_list_with_header() {
        let mut names = Vec::new();
        let report = parse_list(BUNDLED, |e| names.push((e.name.into_owned(), e.scope)));
        let header = ListHeader {
            id: Some("meta-ai".into()),
            title: Some("Meta AI".into()),
            description: Some("Meta AI assistant endpoints.".into()),
            match_mode: Some(MatchMode::Exact),
            confidence: Some("high".into()),
            kind: Some("block".into()),
            blocked_ttl: None,
        };
        assert_eq!(report.header, header);
        assert_eq!(report.entries, 2);
        assert_eq!(report.invalid_count, 0);
        assert_eq!(
            names,
            [
                ("meta.ai".to_owned(), EntryScope::Subdomains),
                (
                    "genai-graph.facebook.com".to_owned(),
                    EntryScope::ListDefault
                ),
            ]
        );
    }

    #[test]
    fn the_header_is_complete_before_the_first_entry_reaches_the_caller() {
        let mut parser = ListParser::default();
        let mut seen = Vec::new();
        for line in "\u{feff}# match: Subdomains\r\n# id: x\na.com\n# id: late\n".lines() {
            let mode = parser.header().match_mode;
            parser.feed(line, |entry| seen.push((entry.name.into_owned(), mode)));
        }
        assert_eq!(
            seen,
            vec![("a.com".to_owned(), Some(MatchMode::Subdomains))]
        );
        let report = parser.finish();
        assert_eq!(
            report.header.id.as_deref(),
            Some("x"),
            "a late `# id:` is a comment"
        );
        assert_eq!(
            report,
            parse_list("# match: Subdomains\n# id: x\na.com\n# id: late\n", |_| {})
        );
    }

    #[test]
    fn adblock_style_header() {
        let report = parse_list("[Adblock Plus 2.0]\n! Title: EasyList\n||a.com^\n", |_| {});
        assert_eq!(report.header.title.as_deref(), Some("EasyList"));
        assert_eq!(report.header.match_mode, None);
        assert_eq!(report.entries, 1);
    }

    #[test]
    fn bom_and_crlf() {
        let mut names = Vec::new();
        let report = parse_list("\u{feff}# id: x\r\na.com\r\n0.0.0.0 b.com\r\n", |e| {
            names.push(e.name.into_owned())
        });
        assert_eq!(report.header.id.as_deref(), Some("x"));
        assert_eq!(names, ["a.com", "b.com"]);
        assert_eq!(report.invalid_count, 0);
        // Without a header the BOM sits right before the first entry.
        names.clear();
        parse_list("\u{feff}c.com\n", |e| names.push(e.name.into_owned()));
        assert_eq!(names, ["c.com"]);
    }

    #[test]
    fn invalid_samples_are_capped_while_counting_goes_on() {
        let text = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    format!("bad{i}")
                } else {
                    format!("ok{i}.com")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let report = parse_list(&text, |_| {});
        assert_eq!(report.entries, 6);
        assert_eq!(report.invalid_count, 6);
        assert_eq!(report.invalid_samples.len(), MAX_INVALID_SAMPLES);
        let lines: Vec<usize> = report.invalid_samples.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1, 3, 5, 7, 9]);
        assert_eq!(report.invalid_samples[0].text, "bad0");
    }

    #[test]
    fn sample_text_is_truncated() {
        let long = format!("{}.com extra", "ü".repeat(200));
        let report = parse_list(&long, |_| {});
        let text = &report.invalid_samples[0].text;
        assert_eq!(text.chars().count(), SAMPLE_TEXT_CHARS + 1);
        assert!(text.ends_with('…'));
        let shown = report.invalid_samples[0].to_string();
        assert!(
            shown.starts_with("line 1: unexpected text `extra`"),
            "{shown}"
        );
    }

    #[test]
    fn random_lines_never_panic_and_entries_are_always_valid() {
        const PIECES: [&str; 24] = [
            "a", "b", "-", "_", ".", "..", "*", "|", "||", "^", "$", "@@", "#", "!", " ", "\t",
            "/", ":", "%", "ü", "1", "0.0.0.0", "com", "A",
        ];
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let line: String = (0..next(12)).map(|_| PIECES[next(PIECES.len())]).collect();
            let _ = parse_line(&line, |entry| {
                let name = &entry.name;
                assert_eq!(validate(name), Ok(()), "{line:?} gave {name:?}");
                assert!(
                    has_dot(name) && !looks_like_address(name),
                    "{line:?} gave {name:?}"
                );
            });
        }
    }

    #[test]
    fn no_line_panics() {
        let odd = [
            "\u{0}",
            "||",
            "@@",
            "@@||",
            "*.",
            "*",
            ".",
            "..",
            "|",
            "^",
            "$",
            "#",
            "a.com #",
            "\u{feff}",
            "0.0.0.0",
            "::",
            "%",
            "fe80::%",
            "||ü^",
            "||.com^",
            "ü",
            "\u{10ffff}.com",
            "a. b",
        ];
        for line in odd {
            let _ = parse_line(line, |_| {});
            let _ = parse_list(line, |_| {});
        }
    }
}
