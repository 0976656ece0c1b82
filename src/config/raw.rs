//! The config file exactly as serde reads it: one struct per TOML table, unknown keys refused,
//! and every value a later check may point at kept with its byte span ([`Spanned`]).
//!
//! Nothing here is interpreted: addresses, durations and enumerated words stay strings, so
//! that `validate` can report a bad one with its key, its line and the valid choices (serde's
//! own message for a bad enum word would not say which key it was).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Locator};

/// A spanned string, the shape of most values.
pub(super) type Text = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `default_profile`.
    pub default_profile: Option<Text>,
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[[upstream]]`, in file order.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<RawUpstream>,
    /// `[cache]`.
    #[serde(default)]
    pub cache: RawCache,
    /// `[download]`.
    #[serde(default)]
    pub download: RawDownload,
    /// `[[list]]`, in file order.
    #[serde(default, rename = "list")]
    pub lists: Vec<RawList>,
    /// `[[profile]]`, in file order.
    #[serde(default, rename = "profile")]
    pub profiles: Vec<RawProfile>,
    /// `[[device]]`, in file order.
    #[serde(default, rename = "device")]
    pub devices: Vec<RawDevice>,
    /// `[[record]]`, in file order.
    #[serde(default, rename = "record")]
    pub records: Vec<RawRecord>,
    /// `[local]`.
    #[serde(default)]
    pub local: RawLocal,
    /// `[[forward]]`, in file order.
    #[serde(default, rename = "forward")]
    pub forwards: Vec<RawForward>,
    /// `[querylog]`.
    #[serde(default)]
    pub querylog: RawQuerylog,
}

/// `[querylog]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuerylog {
    /// `off`, `blocked` or `all`.
    pub mode: Option<Text>,
    /// Humantime duration entries are kept.
    pub retention: Option<Text>,
    /// Largest database, in bytes.
    pub max_bytes: Option<Spanned<u64>>,
    /// The database file; empty for memory only.
    pub path: Option<Text>,
    /// Entries queued for the writer before new ones are dropped (checked by `querylog`).
    pub queue: Option<Spanned<u64>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    /// DNS listen addresses (the span of the array is kept to point at an empty one).
    pub listen: Option<Spanned<Vec<Text>>>,
    /// HTTP listen address.
    pub http: Option<Text>,
    /// Host names the HTTP listener answers besides its own addresses and `localhost`.
    pub http_hosts: Option<Vec<Text>>,
    /// Directory for downloaded lists.
    pub state_dir: Option<Text>,
    /// Bearer token of the mutating API endpoints.
    pub api_token: Option<Text>,
    /// File holding that token.
    pub api_token_file: Option<Text>,
    /// IP addresses and CIDR networks allowed to query (the span of the array is kept to point
    /// at an empty one).
    pub allow_from: Option<Spanned<Vec<Text>>>,
    /// Sustained queries per second per client; 0 turns the rate limit off.
    pub rate_limit_qps: Option<u32>,
    /// Queries per client at once.
    pub rate_limit_burst: Option<Spanned<u32>>,
    /// Forwarders (IP addresses and CIDR networks) whose EDNS client options are believed.
    pub trusted_forwarders: Option<Vec<Text>>,
    /// Block public names answered with private addresses.
    pub rebind_protection: Option<bool>,
    /// Names allowed private addresses despite `rebind_protection`.
    pub rebind_allow: Option<Vec<Text>>,
    /// DHCP lease files naming the house's clients.
    pub dhcp_leases: Option<Vec<Text>>,
}

/// `[download]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownload {
    /// Humantime duration between refreshes.
    pub interval: Option<Text>,
    /// Humantime duration of one attempt.
    pub timeout: Option<Text>,
    /// Attempts per refresh.
    pub attempts: Option<Spanned<u32>>,
    /// Largest body, in bytes.
    pub max_bytes: Option<Spanned<u64>>,
    /// Downloads at once.
    pub concurrency: Option<Spanned<usize>>,
}

/// One `[[upstream]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// `IP`, `IP:PORT` or `[IPv6]:PORT`, optionally after `udp://` or `tcp://`; or
    /// `tls://HOST[:PORT]`, `https://HOST[:PORT]/PATH`.
    pub address: Text,
    /// IP addresses of an encrypted upstream named by host (the span of the array is kept to
    /// point at an empty one).
    pub bootstrap: Option<Spanned<Vec<Text>>>,
    /// The certificate name of an encrypted upstream given by IP address.
    pub tls_name: Option<Text>,
    /// PEM file of the roots its certificate is checked against, instead of the system's.
    pub ca_file: Option<Text>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    /// Number of entries.
    pub size: Option<usize>,
    /// Humantime duration.
    pub min_ttl: Option<Text>,
    /// Humantime duration.
    pub max_ttl: Option<Text>,
}

/// One `[[list]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawList {
    /// Unique id.
    pub id: Text,
    /// `bundled:ID` or a file path.
    pub source: Text,
    /// `exact` or `subdomains`.
    #[serde(rename = "match")]
    pub match_mode: Option<Text>,
    /// Humantime duration.
    pub blocked_ttl: Option<Text>,
}

/// One `[[profile]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    /// Unique name.
    pub name: Text,
    /// A preset or another profile this one starts from.
    pub extends: Option<Text>,
    /// List ids taken out of what the profile inherits (a kept app's keep list, say).
    #[serde(default)]
    pub remove: Vec<Text>,
    /// List ids to block.
    #[serde(default)]
    pub block: Vec<Text>,
    /// List ids to allow.
    #[serde(default)]
    pub allow: Vec<Text>,
    /// Network list ids: answers with an address inside are blocked.
    #[serde(default)]
    pub block_networks: Vec<Text>,
    /// `null`, `nodata`, `nxdomain` or `refused`.
    pub answer: Option<Text>,
    /// Humantime duration.
    pub blocked_ttl: Option<Text>,
    /// Check names inside upstream answers.
    pub inspect_answers: Option<bool>,
    /// `enforce` or `observe`.
    pub mode: Option<Text>,
}

/// One `[[device]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    /// Unique name.
    pub name: Text,
    /// IP addresses, CIDR networks and MAC addresses (the span of the array is kept to point
    /// at an empty one).
    #[serde(rename = "match")]
    pub matches: Spanned<Vec<Text>>,
    /// Profile name.
    pub profile: Text,
    /// `off`, `blocked` or `all`.
    pub querylog: Option<Text>,
    /// Windows of the week that switch it to another profile.
    #[serde(default)]
    pub schedule: Vec<RawWindow>,
}

/// One window of a `[[device]] schedule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    /// Profile name inside the window.
    pub profile: Text,
    /// `mon-fri`, `sat,sun`, `daily`.
    pub days: Text,
    /// `HH:MM`, local time.
    pub from: Text,
    /// `HH:MM`, local time.
    pub to: Text,
}

/// One `[[record]]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    /// The name the records belong to.
    pub name: Text,
    /// IPv4 addresses.
    pub a: Option<Spanned<OneOrMany>>,
    /// IPv6 addresses.
    pub aaaa: Option<Spanned<OneOrMany>>,
    /// An alias: the one record the name then has (RFC 1034 §3.6.2).
    pub cname: Option<Text>,
    /// TXT strings, one record each.
    pub txt: Option<Spanned<OneOrMany>>,
    /// Humantime duration.
    pub ttl: Option<Text>,
}

/// `a = "192.168.1.10"` or `a = ["192.168.1.10", "192.168.1.11"]` (an untagged enum cannot
/// keep the span of each item: errors point at the whole value).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn values(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// `[local]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    /// Hosts files (`/etc/hosts` format), read at start and on every reload.
    pub hosts: Option<Vec<Text>>,
}

/// One `[[forward]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    /// Zones whose questions go to `upstream` only.
    pub zones: Spanned<Vec<Text>>,
    /// `IP` or `IP:PORT` of the resolvers for those zones.
    pub upstream: Spanned<Vec<Text>>,
}

/// Reads `text` (from `path`) into a [`RawConfig`].
pub(super) fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let key = error.span().and_then(|span| key_path(text, span.start));
        Locator::new(text, path).syntax(error.span(), key, error.message())
    })
}

/// The key path (`profile[1].block[0]`) of the entry at byte `offset` of `text`.
///
/// None when `text` is not valid TOML: the tables read around a syntax error can be made of
/// misparsed text (a stray quote turns values into keys), and a wrong key is worse than none.
fn key_path(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut path = String::new();
    path_in_table(root.get_ref(), offset, &mut path);
    (!path.is_empty()).then_some(path)
}

/// Appends the path of `offset` inside `table` to `path`.
///
/// TOML spans cover a table's header, not its body, so the entry holding `offset` is the last
/// one that starts at or before it: headers and keys appear in the file in that order.
fn path_in_table(table: &DeTable<'_>, offset: usize, path: &mut String) {
    let entry = table
        .iter()
        .map(|(key, value)| (key.span().start.min(value.span().start), key, value))
        .filter(|&(start, _, _)| start <= offset)
        .max_by_key(|&(start, _, _)| start);
    if let Some((_, key, value)) = entry {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        path_in_value(value.get_ref(), offset, path);
    }
}

/// Appends the path of `offset` inside `value` (an array index, then deeper) to `path`.
fn path_in_value(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(table) => path_in_table(table, offset, path),
        DeValue::Array(items) => {
            let item = items
                .iter()
                .enumerate()
                .filter(|(_, item)| item.span().start <= offset)
                .max_by_key(|(_, item)| item.span().start);
            if let Some((index, item)) = item {
                path.push_str(&format!("[{index}]"));
                path_in_value(item.get_ref(), offset, path);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{assert_errors, error};

    fn key_at(text: &str, needle: &str) -> Option<String> {
        key_path(text, text.find(needle).expect("needle in text"))
    }

    #[test]
    fn key_paths_follow_tables_and_arrays() {
        let text = "default_profile = \"x\"\n[server]\nlisten = [\"a\", \"b\"]\n\
                    [[profile]]\nname = \"p\"\n[[profile]]\nname = \"q\"\nblock = [1]\n";
        assert_eq!(key_at(text, "default").as_deref(), Some("default_profile"));
        assert_eq!(key_at(text, "\"b\"").as_deref(), Some("server.listen[1]"));
        assert_eq!(key_at(text, "\"q\"").as_deref(), Some("profile[1].name"));
        assert_eq!(key_at(text, "1]").as_deref(), Some("profile[1].block[0]"));
        assert_eq!(key_path("not toml", 0), None);
    }

    #[test]
    fn unknown_keys_are_named_with_the_expected_ones() {
        assert_eq!(
            error("default_profile = \"quest\"\nbogus = 1\n"),
            "/etc/metasink/config.toml:2: bogus: unknown field `bogus`, expected one of \
             `default_profile`, `server`, `upstream`, `cache`, `download`, `list`, `profile`, `device`, \
             `record`, `local`, `forward`, `querylog`"
        );
        assert_eq!(
            error("[server]\nlisten = [\"127.0.0.1:53\"]\nport = 53\n"),
            "/etc/metasink/config.toml:3: server.port: unknown field `port`, expected one of `listen`, `http`, `http_hosts`, `state_dir`, `api_token`, `api_token_file`, \
             `allow_from`, `rate_limit_qps`, `rate_limit_burst`, `trusted_forwarders`, \
             `rebind_protection`, `rebind_allow`, `dhcp_leases`"
        );
        assert_eq!(
            error(
                "[[profile]]\nname = \"a\"\n\n[[profile]]\nname = \"b\"\nblocks = [\"meta-ai\"]\n"
            ),
            "/etc/metasink/config.toml:6: profile[1].blocks: unknown field `blocks`, expected one of \
             `name`, `extends`, `remove`, `block`, `allow`, `block_networks`, `answer`, `blocked_ttl`, `inspect_answers`, `mode`"
        );
        assert_errors(&[
            (
                "[cache]\nsizes = 1\n",
                "2: cache.sizes",
                "unknown field `sizes`, expected",
            ),
            (
                "[[upstream]]\nport = 53\n",
                "2: upstream[0].port",
                "unknown field `port`",
            ),
            (
                "[[list]]\nurl = \"x\"\n",
                "2: list[0].url",
                "unknown field `url`",
            ),
            (
                "[[device]]\nmac = \"x\"\n",
                "2: device[0].mac",
                "unknown field `mac`",
            ),
        ]);
    }

    #[test]
    fn type_errors_and_missing_keys_are_located() {
        assert_eq!(
            error("[cache]\nsize = \"ten\"\n"),
            "/etc/metasink/config.toml:2: cache.size: invalid type: string \"ten\", expected usize"
        );
        assert_eq!(
            error(
                "[[device]]\nname = \"a\"\nmatch = [\"192.168.1.2\",\n  7]\nprofile = \"quest\"\n"
            ),
            "/etc/metasink/config.toml:4: device[0].match[1]: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"bundled:meta-ai\"\n[[device]]\nname = \"a\"\n"),
            "/etc/metasink/config.toml:4: device[0]: missing field `match`"
        );
    }

    #[test]
    fn text_that_is_not_toml() {
        assert_eq!(
            error("this is not toml\n"),
            "/etc/metasink/config.toml:1: key with no value, expected `=`"
        );
        assert!(error("[server\nlisten = 1").starts_with("/etc/metasink/config.toml:1: "));
    }
}
