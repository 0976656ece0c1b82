//! The local network's sections of the config: `[[record]]`, `[local]`, `[[forward]]` and the
//! `[server]` keys `rebind_protection`, `rebind_allow` and `dhcp_leases`, read into
//! [`LocalSettings`]. Kept apart from `validate` (one file per section); the checks follow the
//! same rules: the first mistake is returned with file, line and key.
//!
//! ```toml
//! [[record]]
//! name = "nas.lan"
//! a = ["192.168.1.10"]
//! ttl = "5m"
//!
//! [local]
//! hosts = ["/etc/hosts"]
//!
//! [[forward]]
//! zones = ["lan", "168.192.in-addr.arpa"]
//! upstream = ["192.168.1.1"]
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::UpstreamSettings;
use super::error::{ConfigError, Locator};
use super::raw::{OneOrMany, RawConfig, RawForward, RawRecord, Text};

/// TTL of a local record without its own `ttl`, and of hosts-file names: short, so an edit
/// and a reload reach clients within a minute (dnsmasq sends 0; a minute spares the house's
/// stubs from asking for the printer on every page).
pub const LOCAL_TTL: Duration = Duration::from_secs(60);

/// The longest name (RFC 1035 §2.3.4, in text form without the trailing dot).
const MAX_NAME: usize = 253;

/// The local network's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalSettings {
    /// `[[record]]`s, in file order; one per name.
    pub records: Vec<RecordSettings>,
    /// `[local] hosts`: hosts files, relative paths against the config file's directory.
    pub hosts: Vec<PathBuf>,
    /// `[[forward]]`s, in file order; no zone is in two.
    pub forwards: Vec<ForwardSettings>,
    /// `[server] rebind_protection`: answers of public names holding a private address are
    /// blocked.
    pub rebind_protection: bool,
    /// `[server] rebind_allow`: names (and their subdomains) allowed private addresses.
    pub rebind_allow: Vec<String>,
    /// `[server] dhcp_leases`: lease files (dnsmasq or ISC dhcpd) that name unknown clients.
    pub dhcp_leases: Vec<PathBuf>,
}

/// One `[[record]]`: a name and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSettings {
    /// Lower-case, without the trailing dot.
    pub name: String,
    /// TTL of its records.
    pub ttl: Duration,
    /// IPv4 addresses.
    pub a: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub aaaa: Vec<Ipv6Addr>,
    /// The alias target (then a, aaaa and txt are empty).
    pub cname: Option<String>,
    /// TXT strings.
    pub txt: Vec<String>,
}

/// One `[[forward]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSettings {
    /// Zones, lower-case without the trailing dot.
    pub zones: Vec<String>,
    /// Where their questions go, in order.
    pub upstreams: Vec<UpstreamSettings>,
}

/// Checks the local sections of `raw` (read from `path`): `[[record]]`, `[local]`,
/// `[[forward]]` and the local keys of `[server]`; `listen` are the DNS listen addresses (a
/// forward upstream may not be one of them).
pub(super) fn local(
    raw: &RawConfig,
    path: &Path,
    listen: &[SocketAddr],
    at: &Locator<'_>,
) -> Result<LocalSettings, ConfigError> {
    let records = records(&raw.records, at)?;
    let hosts = paths(raw.local.hosts.as_deref(), "local.hosts", path, at)?;
    let forwards = forwards(&raw.forwards, listen, at)?;
    let rebind_allow = match &raw.server.rebind_allow {
        None => Vec::new(),
        Some(values) => (values.iter().enumerate())
            .map(|(index, value)| name(value, &format!("server.rebind_allow[{index}]"), at))
            .collect::<Result<_, _>>()?,
    };
    let dhcp_leases = paths(
        raw.server.dhcp_leases.as_deref(),
        "server.dhcp_leases",
        path,
        at,
    )?;
    Ok(LocalSettings {
        records,
        hosts,
        forwards,
        rebind_protection: raw.server.rebind_protection.unwrap_or(false),
        rebind_allow,
        dhcp_leases,
    })
}

fn records(raw: &[RawRecord], at: &Locator<'_>) -> Result<Vec<RecordSettings>, ConfigError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut records = Vec::with_capacity(raw.len());
    for (index, record) in raw.iter().enumerate() {
        let key = |field: &str| format!("record[{index}].{field}");
        let name = name(&record.name, &key("name"), at)?;
        if let Some(first) = seen.insert(name.clone(), at.line(record.name.span().start)) {
            let message = format!(
                "`{name}` already has a [[record]] (line {first}): give one record all of \
                 its data"
            );
            return Err(at.invalid(record.name.span(), key("name"), message));
        }
        let ttl = super::values::optional_ttl(record.ttl.as_ref(), LOCAL_TTL, &key("ttl"), at)?;
        let a = addresses(record.a.as_ref(), &key("a"), at, |ip| match ip {
            IpAddr::V4(ip) => Ok(ip),
            IpAddr::V6(_) => Err("is an IPv6 address: put it in `aaaa`"),
        })?;
        let aaaa = addresses(record.aaaa.as_ref(), &key("aaaa"), at, |ip| match ip {
            IpAddr::V6(ip) => Ok(ip),
            IpAddr::V4(_) => Err("is an IPv4 address: put it in `a`"),
        })?;
        let txt: Vec<String> = (record.txt.iter())
            .flat_map(|txt| txt.get_ref().values())
            .cloned()
            .collect();
        if let Some(txt) = &record.txt
            && txt.get_ref().values().iter().any(|text| text.len() > 255)
        {
            let message = "has a string longer than 255 bytes (the most one TXT string holds)";
            return Err(at.invalid(txt.span(), key("txt"), message));
        }
        let cname = match &record.cname {
            None => None,
            Some(target) => {
                if !(a.is_empty() && aaaa.is_empty() && txt.is_empty()) {
                    let message = "a name with a `cname` has no other records (RFC 1034 §3.6.2): \
                                   drop `a`, `aaaa` and `txt`, or the `cname`";
                    return Err(at.invalid(target.span(), key("cname"), message));
                }
                let target_name = self::name(target, &key("cname"), at)?;
                if target_name == name {
                    return Err(at.invalid(target.span(), key("cname"), "points at its own name"));
                }
                Some(target_name)
            }
        };
        if a.is_empty() && aaaa.is_empty() && txt.is_empty() && cname.is_none() {
            let message = "has no data: give it `a`, `aaaa`, `cname` or `txt`";
            return Err(at.invalid(record.name.span(), key("name"), message));
        }
        records.push(RecordSettings {
            name,
            ttl,
            a,
            aaaa,
            cname,
            txt,
        });
    }
    Ok(records)
}

/// The addresses of one record key, each checked by `family`.
fn addresses<T>(
    values: Option<&Spanned<OneOrMany>>,
    key: &str,
    at: &Locator<'_>,
    family: impl Fn(IpAddr) -> Result<T, &'static str>,
) -> Result<Vec<T>, ConfigError> {
    let Some(values) = values else {
        return Ok(Vec::new());
    };
    (values.get_ref().values().iter())
        .map(|text| {
            let problem = match text.trim().parse::<IpAddr>() {
                Ok(ip) => match family(ip) {
                    Ok(ip) => return Ok(ip),
                    Err(problem) => problem,
                },
                Err(_) => "is not an IP address",
            };
            Err(at.invalid(values.span(), key, format!("`{text}` {problem}")))
        })
        .collect()
}

fn forwards(
    raw: &[RawForward],
    listen: &[SocketAddr],
    at: &Locator<'_>,
) -> Result<Vec<ForwardSettings>, ConfigError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut forwards = Vec::with_capacity(raw.len());
    for (index, forward) in raw.iter().enumerate() {
        let key = |field: &str| format!("forward[{index}].{field}");
        if forward.zones.get_ref().is_empty() {
            return Err(at.invalid(
                forward.zones.span(),
                key("zones"),
                "needs at least one zone",
            ));
        }
        let mut zones = Vec::new();
        for (zone_index, zone) in forward.zones.get_ref().iter().enumerate() {
            let zone_key = format!("forward[{index}].zones[{zone_index}]");
            let name = name(zone, &zone_key, at)?;
            if let Some(first) = seen.insert(name.clone(), at.line(zone.span().start)) {
                let message = format!(
                    "zone `{name}` is already forwarded (line {first}): a zone has one set of \
                     upstreams"
                );
                return Err(at.invalid(zone.span(), zone_key, message));
            }
            zones.push(name);
        }
        if forward.upstream.get_ref().is_empty() {
            let message = "needs at least one address, like `192.168.1.1`";
            return Err(at.invalid(forward.upstream.span(), key("upstream"), message));
        }
        let upstreams = (forward.upstream.get_ref().iter().enumerate())
            .map(|(upstream_index, value)| {
                let key = format!("forward[{index}].upstream[{upstream_index}]");
                super::upstream::forward_upstream(value, listen, &key, at)
            })
            .collect::<Result<_, _>>()?;
        forwards.push(ForwardSettings { zones, upstreams });
    }
    Ok(forwards)
}

/// A domain name: lower-cased, without the trailing dot, made of labels of letters, digits,
/// `-` and `_` (the root alone is refused: forwarding it would be the `[[upstream]]`s' job).
fn name(value: &Text, key: &str, at: &Locator<'_>) -> Result<String, ConfigError> {
    let text = value.get_ref().trim();
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if is_domain_name(&name) {
        return Ok(name);
    }
    let message = format!(
        "`{text}` is not a domain name: labels of letters, digits, `-` and `_`, 1 to 63 \
         characters each, {MAX_NAME} in all, like `nas.lan`"
    );
    Err(at.invalid(value.span(), key, message))
}

/// Whether `name` (lower-case, no trailing dot) is a domain name local data may use: labels
/// of letters, digits, `-` and `_`, 1 to 63 bytes each, [`MAX_NAME`] in all. Hosts files and
/// DHCP leases are held to the same rule.
pub fn is_domain_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (1..=MAX_NAME).contains(&name.len()) && name.split('.').all(label_ok)
}

/// File paths of `key`, relative ones against the config file's directory.
fn paths(
    values: Option<&[Text]>,
    key: &str,
    path: &Path,
    at: &Locator<'_>,
) -> Result<Vec<PathBuf>, ConfigError> {
    (values.unwrap_or_default().iter().enumerate())
        .map(|(index, value)| {
            if value.get_ref().trim().is_empty() {
                return Err(at.invalid(value.span(), format!("{key}[{index}]"), "is empty"));
            }
            Ok(super::values::relative_to(path, value.get_ref()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const PATH: &str = "/etc/metasink/config.toml";

    fn local(text: &str) -> LocalSettings {
        parse(text, Path::new(PATH)).unwrap().local
    }

    fn error(text: &str) -> String {
        parse(text, Path::new(PATH)).unwrap_err().to_string()
    }

    #[test]
    fn the_local_sections_are_read() {
        let settings = local(
            "[server]\nrebind_protection = true\nrebind_allow = [\"Plex.Direct.\"]\n\
             dhcp_leases = [\"leases/dnsmasq.leases\"]\n\
             [[record]]\nname = \"NAS.lan.\"\na = \"192.168.1.10\"\naaaa = [\"fd00::10\"]\n\
             txt = \"hello\"\nttl = \"5m\"\n\
             [[record]]\nname = \"files.lan\"\ncname = \"nas.lan\"\n\
             [local]\nhosts = [\"/etc/hosts\"]\n\
             [[forward]]\nzones = [\"lan\", \"168.192.in-addr.arpa\"]\nupstream = [\"192.168.1.1\", \"192.168.1.2:5353\"]\n",
        );
        assert_eq!(settings.records[0].name, "nas.lan");
        assert_eq!(settings.records[0].ttl, Duration::from_secs(300));
        assert_eq!(
            settings.records[0].a,
            ["192.168.1.10".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(settings.records[0].txt, ["hello"]);
        assert_eq!(settings.records[1].cname.as_deref(), Some("nas.lan"));
        assert_eq!(settings.records[1].ttl, LOCAL_TTL);
        assert_eq!(settings.hosts, [PathBuf::from("/etc/hosts")]);
        assert_eq!(settings.forwards[0].zones, ["lan", "168.192.in-addr.arpa"]);
        let ports: Vec<u16> = (settings.forwards[0].upstreams.iter())
            .map(|u| u.address.port())
            .collect();
        assert_eq!(ports, [53, 5353]);
        assert!(settings.rebind_protection);
        assert_eq!(settings.rebind_allow, ["plex.direct"]);
        assert_eq!(
            settings.dhcp_leases,
            [PathBuf::from("/etc/metasink/leases/dnsmasq.leases")]
        );
        assert_eq!(local(""), LocalSettings::default());
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let cases = [
            (
                "[[record]]\nname = \"nas.lan\"\na = \"fd00::1\"\n",
                "config.toml:3: record[0].a: `fd00::1` is an IPv6 address: put it in `aaaa`",
            ),
            (
                "[[record]]\nname = \"nas.lan\"\naaaa = [\"10.0.0.1\"]\n",
                "config.toml:3: record[0].aaaa: `10.0.0.1` is an IPv4 address: put it in `a`",
            ),
            (
                "[[record]]\nname = \"nas.lan\"\na = \"nas\"\n",
                "config.toml:3: record[0].a: `nas` is not an IP address",
            ),
            (
                "[[record]]\nname = \"nas.lan\"\n",
                "config.toml:2: record[0].name: has no data",
            ),
            (
                "[[record]]\nname = \"bad name\"\na = \"10.0.0.1\"\n",
                "config.toml:2: record[0].name: `bad name` is not a domain name",
            ),
            (
                "[[record]]\nname = \"a.lan\"\na = \"10.0.0.1\"\ncname = \"b.lan\"\n",
                "config.toml:4: record[0].cname: a name with a `cname` has no other records",
            ),
            (
                "[[record]]\nname = \"a.lan\"\na = \"10.0.0.1\"\n[[record]]\nname = \"A.lan\"\na = \"10.0.0.2\"\n",
                "config.toml:5: record[1].name: `a.lan` already has a [[record]] (line 2)",
            ),
            (
                "[[record]]\nname = \"a.lan\"\na = \"10.0.0.1\"\nttl = \"soon\"\n",
                "config.toml:4: record[0].ttl: `soon` is not a duration",
            ),
            (
                "[[record]]\nname = \"a.lan\"\nmx = \"10.0.0.1\"\n",
                "config.toml:3: record[0].mx: unknown field `mx`",
            ),
            (
                "[local]\nhosts = [\"\"]\n",
                "config.toml:2: local.hosts[0]: is empty",
            ),
            (
                "[[forward]]\nzones = []\nupstream = [\"192.168.1.1\"]\n",
                "config.toml:2: forward[0].zones: needs at least one zone",
            ),
            (
                "[[forward]]\nzones = [\"lan\"]\nupstream = []\n",
                "config.toml:3: forward[0].upstream: needs at least one address",
            ),
            (
                "[[forward]]\nzones = [\"lan\"]\nupstream = [\"router\"]\n",
                "config.toml:3: forward[0].upstream[0]: `router` is not an IP address",
            ),
            (
                "[[forward]]\nzones = [\"lan\"]\nupstream = [\"192.168.1.1\"]\n\
                 [[forward]]\nzones = [\"x\", \"LAN.\"]\nupstream = [\"192.168.1.2\"]\n",
                "config.toml:5: forward[1].zones[1]: zone `lan` is already forwarded (line 2)",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:5353\"]\n[[forward]]\nzones = [\"lan\"]\nupstream = [\"127.0.0.1:5353\"]\n",
                "config.toml:5: forward[0].upstream[0]: `127.0.0.1:5353` is this server's own listen address",
            ),
            (
                "[server]\nrebind_allow = [\"*.plex.direct\"]\n",
                "config.toml:2: server.rebind_allow[0]: `*.plex.direct` is not a domain name",
            ),
            (
                "[server]\ndhcp_leases = [\" \"]\n",
                "config.toml:2: server.dhcp_leases[0]: is empty",
            ),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(
                message.contains(expected),
                "{text:?}\n got: {message}\nwant: {expected}"
            );
            assert!(message.starts_with(PATH), "{message}");
        }
    }
}
