//! From [`RawConfig`] to [`Settings`]: parses addresses, networks and durations, merges the
//! file's lists and profiles over the bundled catalogue, and checks every reference, so that a
//! [`Settings`] never names a list or profile that does not exist.
//!
//! Checks run in file-section order (server, upstreams, cache, lists, profiles, devices) and the
//! first failure is returned, located at the offending value.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Display;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::defaults::presets;
use super::defaults::{
    ALLOW_FROM, BLOCKED_TTL, CACHE_MAX_TTL, CACHE_MIN_TTL, CACHE_SIZE, DNS_PORT, DOWNLOAD,
    QUERYLOG_FILE, QUERYLOG_MAX_BYTES, QUERYLOG_RETENTION, RATE_LIMIT_BURST, RATE_LIMIT_QPS,
    STATE_DIR, bundled_lists, system_upstreams,
};
use super::error::{ConfigError, Locator};
use super::raw::{
    RawCache, RawConfig, RawDevice, RawDownload, RawList, RawProfile, RawQuerylog, RawServer,
    RawUpstream, RawWindow, Text,
};
use super::schedule::{Days, TimeOfDay, Window, shadowed};
use super::values::{entry_key, parse_socket_addr, relative_to};
use super::{
    AdmissionSettings, BlockAnswer, CacheSettings, DEFAULT_DNS_LISTEN, DEFAULT_HTTP_LISTEN,
    DeviceSettings, DownloadSettings, ListSettings, ListSource, LocalSettings, LogMode, Origin,
    ProfileMode, ProfileSettings, QuerylogSettings, ServerSettings, Settings, UpstreamSettings,
};
use super::{MAX_LISTS, MatchMode, UNKNOWN_DEVICE};
use crate::catalogue::{DEFAULT_PROFILE, bundled_ids};
use crate::net::{MacAddress, allowed, canonical_network};

/// Every `answer` a profile may give.
const ANSWERS: [BlockAnswer; 4] = [
    BlockAnswer::Null,
    BlockAnswer::NoData,
    BlockAnswer::NxDomain,
    BlockAnswer::Refused,
];

/// Every query log `mode` (and `[[device]] querylog`).
const LOG_MODES: [LogMode; 3] = [LogMode::Off, LogMode::Blocked, LogMode::All];

/// Every `mode` a profile may have.
const PROFILE_MODES: [ProfileMode; 2] = [ProfileMode::Enforce, ProfileMode::Observe];

/// The smallest `querylog.max_bytes`: SQLite needs a few pages for its schema and indexes
/// before the first entry.
const MIN_QUERYLOG_BYTES: u64 = 64 * 1024;

/// Every `match` a list may have.
const MATCH_MODES: [MatchMode; 2] = [MatchMode::Exact, MatchMode::Subdomains];

/// The longest TTL DNS allows (RFC 2181 §8: 2^31 - 1 seconds).
const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);

/// Key of the DNS listen addresses.
const LISTEN_KEY: &str = "server.listen";

/// Key of the networks allowed to query.
const ALLOW_FROM_KEY: &str = "server.allow_from";

/// Key of the forwarders whose EDNS client options are believed.
const TRUSTED_FORWARDERS_KEY: &str = "server.trusted_forwarders";

/// The longest list id, profile name or device name (they become metric label values).
const MAX_NAME_LEN: usize = 64;

/// The shortest `download.interval`: list servers publish a few times a day at most, and every
/// refresh that brings a change rebuilds the policy; seconds would re-download all day long.
const MIN_DOWNLOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The longest `download.timeout`: a stalled server holds up the next round of refreshes, of
/// every list, for up to `download.attempts` times this.
const MAX_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The most `download.attempts`: the delay between attempts doubles from one second, so ten
/// already wait 8½ minutes in all (1 + 2 + … + 256 s), and forty would wait 17,000 years.
const MAX_DOWNLOAD_ATTEMPTS: u32 = 10;

/// Checks `raw`, read from `text` at `path`, and turns it into [`Settings`].
pub(super) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let at = Locator::new(text, path);
    let server = server(&raw.server, path, &at)?;
    let admission = admission(&raw.server, &at)?;
    let upstreams = upstreams(&raw.upstreams, &server.listen, path, &at)?;
    let cache = cache(&raw.cache, &at)?;
    let download = download(&raw.download, &at)?;
    let lists = lists(&raw.lists, path, &at)?;
    let profiles = profiles(&raw.profiles, &lists, &at)?;
    let profile_names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let devices = devices(&raw.devices, &profile_names, &at)?;
    let trusted_forwarders = match &raw.server.trusted_forwarders {
        None => Vec::new(),
        Some(values) => forwarders(values, &admission.allow_from, &at)?,
    };
    let default_profile = match &raw.default_profile {
        None => DEFAULT_PROFILE.to_owned(),
        Some(name) => reference(name, &profile_names, "profile", "default_profile", &at)?,
    };
    let querylog = querylog(&raw.querylog, &server.state_dir, path, &at)?;
    Ok(Settings {
        origin: Origin::File(path.to_path_buf()),
        server,
        admission,
        upstreams,
        cache,
        download,
        lists,
        profiles,
        devices,
        trusted_forwarders,
        default_profile,
        // Checked after the rest, by `super::local`.
        local: LocalSettings::default(),
        querylog,
    })
}

/// `[querylog]`: the file defaults to `state_dir`, and an empty `path` keeps the log in memory.
fn querylog(
    raw: &RawQuerylog,
    state_dir: &Path,
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<QuerylogSettings, ConfigError> {
    let mode = raw
        .mode
        .as_ref()
        .map(|value| choose(value, &LOG_MODES, LogMode::as_str, "querylog.mode", at))
        .transpose()?
        .unwrap_or_default();
    let retention = duration_within(
        &raw.retention,
        QUERYLOG_RETENTION,
        Duration::ZERO..=MAX_TTL,
        "querylog.retention",
        at,
    )?;
    let max_bytes = match &raw.max_bytes {
        None => QUERYLOG_MAX_BYTES,
        Some(value) if *value.get_ref() < MIN_QUERYLOG_BYTES => {
            let message = format!("must be at least {MIN_QUERYLOG_BYTES} (64 KiB)");
            return Err(at.invalid(value.span(), "querylog.max_bytes", message));
        }
        Some(value) => *value.get_ref(),
    };
    let path = match &raw.path {
        None => Some(state_dir.join(QUERYLOG_FILE)),
        Some(value) if value.get_ref().is_empty() => None,
        Some(value) if value.get_ref().ends_with('/') => {
            let message = "names a directory: give the database file, or \"\" for memory only";
            return Err(at.invalid(value.span(), "querylog.path", message));
        }
        Some(value) => Some(relative_to(config_path, value.get_ref())),
    };
    Ok(QuerylogSettings {
        mode,
        retention,
        max_bytes,
        path,
        // Checked after the rest, by `super::querylog`.
        queue: super::defaults::QUERYLOG_QUEUE,
    })
}

/// `[server]`: listen addresses default to port 53, the HTTP address to the default's port.
fn server(raw: &RawServer, path: &Path, at: &Locator<'_>) -> Result<ServerSettings, ConfigError> {
    let listen = match &raw.listen {
        None => vec![DEFAULT_DNS_LISTEN],
        Some(values) if values.get_ref().is_empty() => {
            let message = "needs at least one address (UDP and TCP are bound on each)";
            return Err(at.invalid(values.span(), LISTEN_KEY, message));
        }
        Some(values) => listen_addresses(values.get_ref(), at)?,
    };
    let http = match &raw.http {
        None => DEFAULT_HTTP_LISTEN,
        Some(value) => socket_addr(value, DEFAULT_HTTP_LISTEN.port(), "server.http", at)?,
    };
    // DNS listens on TCP too, so the HTTP listener must keep clear of every DNS address. The
    // built-in addresses never clash: a clash comes from a key of the file.
    let written = match (&raw.http, &raw.listen) {
        (Some(value), _) => Some((value.span(), "server.http")),
        (None, Some(values)) => Some((values.span(), LISTEN_KEY)),
        (None, None) => None,
    };
    // The HTTP socket is bound dual-stack (the system default): `[::]` takes IPv4 too.
    let dual_stack = |dns: SocketAddr| {
        dns.is_ipv4()
            && http.ip() == Ipv6Addr::UNSPECIFIED
            && clash(dns, (dns.ip(), http.port()).into())
    };
    let clashing = (listen.iter()).find(|&&dns| clash(dns, http) || dual_stack(dns));
    if let (Some(dns), Some((span, key))) = (clashing, written) {
        let message = format!(
            "`{http}` clashes with the DNS listen address `{dns}` (DNS is served over TCP \
             too): give HTTP another port"
        );
        return Err(at.invalid(span, key, message));
    }
    let state_dir = match &raw.state_dir {
        None => PathBuf::from(STATE_DIR),
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(at.invalid(value.span(), "server.state_dir", "is empty"));
        }
        Some(value) => relative_to(path, value.get_ref()),
    };
    let (api_token, token_file) = api_token(raw, path, at)?.unzip();
    let http_hosts = match &raw.http_hosts {
        None => Vec::new(),
        Some(values) => http_hosts(values, at)?,
    };
    Ok(ServerSettings {
        listen,
        http,
        http_hosts,
        state_dir,
        api_token,
        token_file,
    })
}

/// The `[server]` keys of [`AdmissionSettings`]: who may query, and how fast.
fn admission(raw: &RawServer, at: &Locator<'_>) -> Result<AdmissionSettings, ConfigError> {
    let allow_from = match &raw.allow_from {
        None => ALLOW_FROM.to_vec(),
        Some(values) if values.get_ref().is_empty() => {
            let message = "is empty, so nobody could query: list the clients' addresses or \
                           networks, or leave the key out to allow the local and private ones";
            return Err(at.invalid(values.span(), ALLOW_FROM_KEY, message));
        }
        Some(values) => networks(values.get_ref(), ALLOW_FROM_KEY, at)?,
    };
    let burst_key = "server.rate_limit_burst";
    Ok(AdmissionSettings {
        allow_from,
        rate_limit_qps: raw.rate_limit_qps.unwrap_or(RATE_LIMIT_QPS),
        rate_limit_burst: positive(&raw.rate_limit_burst, RATE_LIMIT_BURST, burst_key, at)?,
    })
}

/// `server.http_hosts`: host names (or IP addresses) without a port, lowercased.
fn http_hosts(values: &[Text], at: &Locator<'_>) -> Result<Vec<String>, ConfigError> {
    values
        .iter()
        .map(|value| {
            let host = value.get_ref().trim().to_ascii_lowercase();
            let host = host.strip_suffix('.').unwrap_or(&host);
            let is_name = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if is_name {
                return Ok(host.to_owned());
            }
            // An IPv6 address is written in brackets in a URL; kept bare, as Host is matched.
            let bare = (host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))).unwrap_or(host);
            if let Ok(address) = bare.parse::<IpAddr>() {
                return Ok(address.to_string());
            }
            let message = format!(
                "`{}` is not a host name or IP address (write it as in the browser's address \
                 bar, without scheme, port or path: `metasink.lan`, `192.168.1.2`)",
                value.get_ref()
            );
            Err(at.invalid(value.span(), "server.http_hosts", message))
        })
        .collect()
}

/// The `server.trusted_forwarders` addresses. Single addresses only: everyone trusted can
/// name any device, so a network would hand every client in it any profile it likes. Each
/// must be inside `allow_from`, or all its queries would be refused.
fn forwarders(
    values: &[Text],
    allow_from: &[IpNet],
    at: &Locator<'_>,
) -> Result<Vec<IpAddr>, ConfigError> {
    let key = TRUSTED_FORWARDERS_KEY;
    values
        .iter()
        .map(|value| {
            let network =
                ip_network(value.get_ref()).map_err(|m| at.invalid(value.span(), key, m))?;
            if network.prefix_len() < network.max_prefix_len() {
                let message = format!(
                    "`{network}` is a network: list the router's own addresses, one by one \
                     (every address trusted here can name any device, so any client in a \
                     network could pick another device's profile)"
                );
                return Err(at.invalid(value.span(), key, message));
            }
            let address = network.addr();
            if !allowed(allow_from, address) {
                let message = format!(
                    "`{address}` is outside server.allow_from, so every query it forwards would \
                     be refused: add it there too"
                );
                return Err(at.invalid(value.span(), key, message));
            }
            Ok(address)
        })
        .collect()
}

/// The networks of a `[server]` array (`key`); a bare address is a /32 or /128.
fn networks(values: &[Text], key: &str, at: &Locator<'_>) -> Result<Vec<IpNet>, ConfigError> {
    values
        .iter()
        .map(|value| {
            ip_network(value.get_ref()).map_err(|message| at.invalid(value.span(), key, message))
        })
        .collect()
}

/// `server.api_token`, or the first line of `server.api_token_file` (kept out of the config so
/// the config can be world-readable), with the file it was read from. Tokens shorter than 16
/// characters are refused: they guard the reload and refresh endpoints.
fn api_token(
    raw: &RawServer,
    path: &Path,
    at: &Locator<'_>,
) -> Result<Option<(String, PathBuf)>, ConfigError> {
    const MIN_TOKEN_LEN: usize = 16;
    let (value, key, token, token_file) = match (&raw.api_token, &raw.api_token_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(file)) => {
            let message = "give either api_token or api_token_file, not both";
            return Err(at.invalid(file.span(), "server.api_token_file", message));
        }
        (Some(token), None) => {
            let text = token.get_ref().trim().to_owned();
            (token, "server.api_token", text, path.to_path_buf())
        }
        (None, Some(file)) => {
            let file_path = relative_to(path, file.get_ref());
            let text = std::fs::read_to_string(&file_path).map_err(|error| {
                let message = format!("cannot read `{}`: {error}", file_path.display());
                at.invalid(file.span(), "server.api_token_file", message)
            })?;
            let token = text.lines().next().unwrap_or_default().trim().to_owned();
            (file, "server.api_token_file", token, file_path)
        }
    };
    if token.len() < MIN_TOKEN_LEN {
        let message = format!("the token must be at least {MIN_TOKEN_LEN} characters");
        return Err(at.invalid(value.span(), key, message));
    }
    Ok(Some((token, token_file)))
}

/// `[download]`: every value above zero, and the interval, timeout and attempts within bounds
/// that keep list servers from being polled without pause and one refresh (attempts × timeout
/// plus the doubling delays) from holding up the next for hours.
fn download(raw: &RawDownload, at: &Locator<'_>) -> Result<DownloadSettings, ConfigError> {
    let interval = duration_within(
        &raw.interval,
        DOWNLOAD.interval,
        MIN_DOWNLOAD_INTERVAL..=MAX_TTL,
        "download.interval",
        at,
    )?;
    let timeout = duration_within(
        &raw.timeout,
        DOWNLOAD.timeout,
        Duration::ZERO..=MAX_DOWNLOAD_TIMEOUT,
        "download.timeout",
        at,
    )?;
    let attempts = count_within(
        &raw.attempts,
        DOWNLOAD.attempts,
        MAX_DOWNLOAD_ATTEMPTS,
        "download.attempts",
        at,
    )?;
    let max_bytes = positive(&raw.max_bytes, DOWNLOAD.max_bytes, "download.max_bytes", at)?;
    let concurrency = positive(
        &raw.concurrency,
        DOWNLOAD.concurrency,
        "download.concurrency",
        at,
    )?;
    Ok(DownloadSettings {
        interval,
        timeout,
        attempts,
        max_bytes,
        concurrency,
    })
}

/// A duration longer than zero and within `bounds`.
fn duration_within(
    value: &Option<Text>,
    default: Duration,
    bounds: RangeInclusive<Duration>,
    key: &str,
    at: &Locator<'_>,
) -> Result<Duration, ConfigError> {
    let duration = optional_ttl(value.as_ref(), default, key, at)?;
    let Some(value) = value else {
        return Ok(duration);
    };
    let text = value.get_ref();
    let problem = if duration.is_zero() {
        "must be longer than zero".to_owned()
    } else if duration < *bounds.start() {
        let min = humantime::format_duration(*bounds.start());
        format!("`{text}` is shorter than {min}, the shortest allowed")
    } else if duration > *bounds.end() {
        let max = humantime::format_duration(*bounds.end());
        format!("`{text}` is longer than {max}, the longest allowed")
    } else {
        return Ok(duration);
    };
    Err(at.invalid(value.span(), key, problem))
}

/// A count of at least one and at most `max`.
fn count_within<T: Copy + PartialOrd + Default + Display>(
    value: &Option<Spanned<T>>,
    default: T,
    max: T,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    let count = positive(value, default, key, at)?;
    match value {
        Some(value) if count > max => {
            Err(at.invalid(value.span(), key, format!("must be at most {max}")))
        }
        _ => Ok(count),
    }
}

/// A count that must be at least one.
fn positive<T: Copy + PartialEq + Default>(
    value: &Option<Spanned<T>>,
    default: T,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) if *value.get_ref() == T::default() => {
            Err(at.invalid(value.span(), key, "must be at least 1"))
        }
        Some(value) => Ok(*value.get_ref()),
    }
}

/// The `server.listen` addresses, each given once.
fn listen_addresses(values: &[Text], at: &Locator<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut listen: Vec<SocketAddr> = Vec::with_capacity(values.len());
    for value in values {
        let address = socket_addr(value, DNS_PORT, LISTEN_KEY, at)?;
        if let Some(&other) = listen.iter().find(|&&other| clash(other, address)) {
            let message = if other == address {
                format!("`{address}` is listed twice")
            } else {
                format!(
                    "`{address}` and `{other}` cannot both be bound: a wildcard address already \
                     takes every address of its family on port {}; list one or the other",
                    address.port()
                )
            };
            return Err(at.invalid(value.span(), LISTEN_KEY, message));
        }
        listen.push(address);
    }
    Ok(listen)
}

/// Whether two listeners would fight over one socket address (binding the second fails): the
/// same port (not 0, which picks a free one) and family, and the same address or a wildcard
/// (`0.0.0.0`, `[::]`) on either side. IPv6 sockets are bound IPv6-only, so `[::]:53` and
/// `0.0.0.0:53` live side by side.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `[[upstream]]`s, or the system's resolvers when the file names none.
fn upstreams(
    raw: &[RawUpstream],
    listen: &[SocketAddr],
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<Vec<UpstreamSettings>, ConfigError> {
    if raw.is_empty() {
        return Ok(system_upstreams(listen));
    }
    raw.iter()
        .enumerate()
        .map(|(index, upstream)| {
            super::upstream::upstream(upstream, index, listen, config_path, at)
        })
        .collect()
}

/// A `[[forward]]`'s upstream address: plain DNS, port 53 unless given, and not one of our
/// own `listen` addresses.
pub(super) fn upstream(
    value: &Text,
    listen: &[SocketAddr],
    key: &str,
    at: &Locator<'_>,
) -> Result<UpstreamSettings, ConfigError> {
    let address = socket_addr(value, DNS_PORT, key, at)?;
    super::upstream::check_destination(address, listen)
        .map_err(|message| at.invalid(value.span(), key, message))?;
    Ok(UpstreamSettings::plain(address))
}

/// `[cache]`.
fn cache(raw: &RawCache, at: &Locator<'_>) -> Result<CacheSettings, ConfigError> {
    let min_ttl = optional_ttl(raw.min_ttl.as_ref(), CACHE_MIN_TTL, "cache.min_ttl", at)?;
    let max_ttl = optional_ttl(raw.max_ttl.as_ref(), CACHE_MAX_TTL, "cache.max_ttl", at)?;
    // The default min_ttl is zero, so when min > max the file sets min_ttl.
    if let Some(value) = raw.min_ttl.as_ref().filter(|_| min_ttl > max_ttl) {
        let message = format!(
            "{} is longer than cache.max_ttl ({})",
            humantime::format_duration(min_ttl),
            humantime::format_duration(max_ttl)
        );
        return Err(at.invalid(value.span(), "cache.min_ttl", message));
    }
    Ok(CacheSettings {
        size: raw.size.unwrap_or(CACHE_SIZE),
        min_ttl,
        max_ttl,
    })
}

/// The bundled lists with the file's `[[list]]`s added or replacing them by id.
fn lists(
    raw: &[RawList],
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<Vec<ListSettings>, ConfigError> {
    let mut lists = bundled_lists();
    let mut seen = HashMap::new();
    for (index, list) in raw.iter().enumerate() {
        let key = entry_key("list", index, "id");
        declare(&mut seen, &list.id, "list id", &key, at)?;
        let settings = list_settings(list, index, config_path, at)?;
        replace_or_push(&mut lists, settings, |l| &l.id);
        if lists.len() > MAX_LISTS {
            let message = format!(
                "too many lists: at most {MAX_LISTS}, the {} bundled ones included",
                bundled_ids().count()
            );
            return Err(at.invalid(list.id.span(), key, message));
        }
    }
    Ok(lists)
}

/// One `[[list]]` (its id already checked).
fn list_settings(
    raw: &RawList,
    index: usize,
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<ListSettings, ConfigError> {
    let key = |field: &str| entry_key("list", index, field);
    let match_mode = raw
        .match_mode
        .as_ref()
        .map(|value| choose(value, &MATCH_MODES, MatchMode::as_str, &key("match"), at));
    Ok(ListSettings {
        id: raw.id.get_ref().clone(),
        source: source(&raw.source, config_path, &key("source"), at)?,
        match_mode: match_mode.transpose()?,
        blocked_ttl: raw
            .blocked_ttl
            .as_ref()
            .map(|value| optional_ttl(Some(value), BLOCKED_TTL, &key("blocked_ttl"), at))
            .transpose()?,
    })
}

/// A list `source`: `bundled:ID`, or a file path relative to the config file's directory.
fn source(
    value: &Text,
    config_path: &Path,
    key: &str,
    at: &Locator<'_>,
) -> Result<ListSource, ConfigError> {
    let text = value.get_ref();
    if let Some(id) = text.strip_prefix("bundled:") {
        if bundled_ids().any(|bundled| bundled == id) {
            return Ok(ListSource::Bundled(id.to_owned()));
        }
        let choices = bundled_ids().map(str::to_owned).collect();
        let message = format!("unknown bundled list `{id}`");
        return Err(at.invalid_among(value.span(), key, message, choices));
    }
    let problem = if text.starts_with("https://") || text.starts_with("http://") {
        if text
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        {
            return Ok(ListSource::Url(text.to_owned()));
        }
        "is not a URL with a host"
    } else if text.contains("://") {
        "only http:// and https:// URLs can be downloaded"
    } else if text.trim().is_empty() {
        "is empty: write `bundled:ID`, a file path or an https:// URL"
    } else {
        return Ok(ListSource::File(relative_to(config_path, text)));
    };
    Err(at.invalid(value.span(), key, problem))
}

/// The presets with the file's `[[profile]]`s added or replacing them by name. A profile that
/// `extends` another (a preset or a `[[profile]]`) starts from it: its parent is resolved first,
/// and a chain that comes back to a profile is refused.
fn profiles(
    raw: &[RawProfile],
    lists: &[ListSettings],
    at: &Locator<'_>,
) -> Result<Vec<ProfileSettings>, ConfigError> {
    let list_ids: Vec<&str> = lists.iter().map(|list| list.id.as_str()).collect();
    let mut seen = HashMap::new();
    for (index, profile) in raw.iter().enumerate() {
        let key = entry_key("profile", index, "name");
        declare(&mut seen, &profile.name, "profile name", &key, at)?;
    }
    let mut resolved = vec![None; raw.len()];
    for index in 0..raw.len() {
        resolve_profile(raw, index, &list_ids, &mut resolved, &mut Vec::new(), at)?;
    }
    let mut profiles = presets();
    for settings in resolved.into_iter().flatten() {
        replace_or_push(&mut profiles, settings, |p| &p.name);
    }
    network_lists_hold_no_names(raw, &profiles, at)?;
    Ok(profiles)
}

/// Refuses a list used both for names (`block`, `allow`) and for networks (`block_networks`):
/// its lines are read one way or the other.
fn network_lists_hold_no_names(
    raw: &[RawProfile],
    profiles: &[ProfileSettings],
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let network_lists: Vec<&str> = profiles
        .iter()
        .flat_map(|p| p.block_networks.iter().map(String::as_str))
        .collect();
    let name_lists: Vec<&str> = profiles
        .iter()
        .flat_map(|p| p.block.iter().chain(&p.allow).map(String::as_str))
        .collect();
    const NETWORKS: &str = "a network list: name it in `block_networks`";
    const NAMES: &str = "a list of names: name it in `block` or `allow`";
    for (index, profile) in raw.iter().enumerate() {
        let uses = [
            ("block", &profile.block, &network_lists, NETWORKS),
            ("allow", &profile.allow, &network_lists, NETWORKS),
            (
                "block_networks",
                &profile.block_networks,
                &name_lists,
                NAMES,
            ),
        ];
        for (field, values, other_use, problem) in uses {
            let clash = values
                .iter()
                .find(|value| other_use.contains(&value.get_ref().as_str()));
            if let Some(value) = clash {
                let message = format!("`{}` is {problem}", value.get_ref());
                let key = entry_key("profile", index, field);
                return Err(at.invalid(value.span(), key, message));
            }
        }
    }
    Ok(())
}

/// The `index`th `[[profile]]`, resolved after its parent. `resolved` keeps the profiles done so
/// far; `chain` holds the indexes whose parent is being resolved, so a cycle is seen.
fn resolve_profile(
    raw: &[RawProfile],
    index: usize,
    list_ids: &[&str],
    resolved: &mut [Option<ProfileSettings>],
    chain: &mut Vec<usize>,
    at: &Locator<'_>,
) -> Result<ProfileSettings, ConfigError> {
    if let Some(done) = &resolved[index] {
        return Ok(done.clone());
    }
    let profile = &raw[index];
    let parent = match &profile.extends {
        None => None,
        Some(name) => {
            let key = entry_key("profile", index, "extends");
            let configured = raw.iter().position(|p| p.name.get_ref() == name.get_ref());
            match configured {
                Some(parent) if parent == index || chain.contains(&parent) => {
                    let start = chain
                        .iter()
                        .position(|&i| i == parent)
                        .unwrap_or(chain.len());
                    let names: Vec<&str> = chain[start..]
                        .iter()
                        .chain([&index, &parent])
                        .map(|&i| raw[i].name.get_ref().as_str())
                        .collect();
                    let message = format!(
                        "`extends` goes round in a cycle: {} (to change a preset, give the new \
                         profile a name of its own)",
                        names.join(" → ")
                    );
                    return Err(at.invalid(name.span(), key, message));
                }
                Some(parent) => {
                    chain.push(index);
                    let settings = resolve_profile(raw, parent, list_ids, resolved, chain, at)?;
                    chain.pop();
                    Some(settings)
                }
                None => {
                    let preset = presets().into_iter().find(|p| &p.name == name.get_ref());
                    if preset.is_none() {
                        let choices = presets()
                            .into_iter()
                            .map(|p| p.name)
                            .chain(raw.iter().map(|p| p.name.get_ref().clone()))
                            .filter(|choice| choice != profile.name.get_ref())
                            .collect();
                        let message = format!("unknown profile `{}`", name.get_ref());
                        return Err(at.invalid_among(name.span(), key, message, choices));
                    }
                    preset
                }
            }
        }
    };
    let settings = profile_settings(profile, index, parent.as_ref(), list_ids, at)?;
    resolved[index] = Some(settings.clone());
    Ok(settings)
}

/// One `[[profile]]` (its name already checked), its lists checked against `list_ids`, on top of
/// `parent` when it extends one: the parent's lists come first, and what the profile leaves
/// unset is the parent's.
fn profile_settings(
    raw: &RawProfile,
    index: usize,
    parent: Option<&ProfileSettings>,
    list_ids: &[&str],
    at: &Locator<'_>,
) -> Result<ProfileSettings, ConfigError> {
    let key = |field: &str| entry_key("profile", index, field);
    let removed = removed_lists(raw, index, parent, at)?;
    let lists = |inherited: Option<&Vec<String>>,
                 values: &[Text],
                 field: &str|
     -> Result<Vec<String>, ConfigError> {
        let key = key(field);
        let mut ids = inherited.cloned().unwrap_or_default();
        ids.retain(|id| !removed.contains(&id.as_str()));
        for value in values {
            let id = reference(value, list_ids, "list", &key, at)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    };
    Ok(ProfileSettings {
        name: raw.name.get_ref().clone(),
        block: lists(parent.map(|p| &p.block), &raw.block, "block")?,
        allow: lists(parent.map(|p| &p.allow), &raw.allow, "allow")?,
        block_networks: lists(
            parent.map(|p| &p.block_networks),
            &raw.block_networks,
            "block_networks",
        )?,
        answer: raw
            .answer
            .as_ref()
            .map(|value| choose(value, &ANSWERS, BlockAnswer::as_str, &key("answer"), at))
            .transpose()?
            .or(parent.map(|p| p.answer))
            .unwrap_or(BlockAnswer::Null),
        blocked_ttl: optional_ttl(
            raw.blocked_ttl.as_ref(),
            parent.map_or(BLOCKED_TTL, |p| p.blocked_ttl),
            &key("blocked_ttl"),
            at,
        )?,
        inspect_answers: raw
            .inspect_answers
            .or(parent.map(|p| p.inspect_answers))
            .unwrap_or(true),
        mode: raw
            .mode
            .as_ref()
            .map(|value| choose(value, &PROFILE_MODES, ProfileMode::as_str, &key("mode"), at))
            .transpose()?
            .or(parent.map(|p| p.mode))
            .unwrap_or_default(),
    })
}

/// The ids of a profile's `remove`: each must be a list its parent blocks or allows.
fn removed_lists<'a>(
    raw: &'a RawProfile,
    index: usize,
    parent: Option<&ProfileSettings>,
    at: &Locator<'_>,
) -> Result<Vec<&'a str>, ConfigError> {
    let key = entry_key("profile", index, "remove");
    raw.remove
        .iter()
        .map(|value| {
            let Some(parent) = parent else {
                let message = "`remove` takes lists out of what `extends` brings: add `extends`";
                return Err(at.invalid(value.span(), key.as_str(), message));
            };
            let id = value.get_ref().as_str();
            let inherited = || {
                parent
                    .block
                    .iter()
                    .chain(&parent.allow)
                    .chain(&parent.block_networks)
            };
            if inherited().any(|used| used == id) {
                return Ok(id);
            }
            let choices = inherited().cloned().collect();
            let message = format!("`{id}` is not a list of `{}`", parent.name);
            Err(at.invalid_among(value.span(), key.as_str(), message, choices))
        })
        .collect()
}

/// `[[device]]`s: unique names, known profiles, and no address, network or MAC address in two
/// devices.
fn devices(
    raw: &[RawDevice],
    profile_names: &[&str],
    at: &Locator<'_>,
) -> Result<Vec<DeviceSettings>, ConfigError> {
    let mut seen = HashMap::new();
    let mut owners = HashMap::new();
    raw.iter()
        .enumerate()
        .map(|(index, device)| {
            let key = |field: &str| entry_key("device", index, field);
            declare(&mut seen, &device.name, "device name", &key("name"), at)?;
            if device.name.get_ref() == UNKNOWN_DEVICE {
                let message = format!(
                    "`{UNKNOWN_DEVICE}` is the device label of clients that match no device: \
                     pick another name"
                );
                return Err(at.invalid(device.name.span(), key("name"), message));
            }
            let (addresses, macs) = device_matches(device, &key("match"), index, &mut owners, at)?;
            let profile = &device.profile;
            Ok(DeviceSettings {
                name: device.name.get_ref().clone(),
                addresses,
                macs,
                profile: reference(profile, profile_names, "profile", &key("profile"), at)?,
                querylog: (device.querylog.as_ref())
                    .map(|value| choose(value, &LOG_MODES, LogMode::as_str, &key("querylog"), at))
                    .transpose()?,
                schedule: schedule(&device.schedule, &key("schedule"), profile_names, at)?,
            })
        })
        .collect()
}

/// The windows of a device's `schedule` (see [`super::schedule`]).
fn schedule(
    raw: &[RawWindow],
    key: &str,
    profile_names: &[&str],
    at: &Locator<'_>,
) -> Result<Vec<Window>, ConfigError> {
    let windows = raw
        .iter()
        .enumerate()
        .map(|(index, window)| {
            let key = |field: &str| format!("{key}[{index}].{field}");
            let invalid = |text: &Text, field: &str| {
                let (span, key) = (text.span(), key(field));
                move |message: String| at.invalid(span, key, message)
            };
            let from =
                TimeOfDay::parse(window.from.get_ref()).map_err(invalid(&window.from, "from"))?;
            let to = TimeOfDay::parse(window.to.get_ref()).map_err(invalid(&window.to, "to"))?;
            if from == to {
                let message = "a window must end at another time than it starts; for a whole \
                               day write from = \"00:00\", to = \"24:00\"";
                return Err(at.invalid(window.to.span(), key("to"), message));
            }
            Ok(Window {
                profile: reference(
                    &window.profile,
                    profile_names,
                    "profile",
                    &key("profile"),
                    at,
                )?,
                days: Days::parse(window.days.get_ref()).map_err(invalid(&window.days, "days"))?,
                from,
                to,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((never, by)) = shadowed(&windows) {
        let message = format!(
            "this window can never apply: the windows before it ({key}[{by}] and earlier) already \
             cover all of its time, and the first window that covers a time wins"
        );
        return Err(at.invalid(raw[never].days.span(), format!("{key}[{never}]"), message));
    }
    Ok(windows)
}

/// What a `[[device]] match` entry identifies a device by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Identifier {
    Network(IpNet),
    Mac(MacAddress),
}

/// The `match` networks and MAC addresses of `device`, recording in `owners` which device
/// claimed each.
///
/// Only the same network (or MAC address) claimed twice is refused: an address inside another
/// device's network is fine, the more specific one wins.
fn device_matches<'a>(
    device: &'a RawDevice,
    key: &str,
    index: usize,
    owners: &mut HashMap<Identifier, (usize, &'a str)>,
    at: &Locator<'_>,
) -> Result<(Vec<IpNet>, Vec<MacAddress>), ConfigError> {
    let values = &device.matches;
    if values.get_ref().is_empty() {
        let message = "needs at least one IP address, network or MAC address";
        return Err(at.invalid(values.span(), key, message));
    }
    let name = device.name.get_ref().as_str();
    let (mut addresses, mut macs) = (Vec::new(), Vec::new());
    for value in values.get_ref() {
        let text = value.get_ref();
        let identifier = match text.parse::<MacAddress>() {
            Ok(mac) => Identifier::Mac(mac),
            Err(()) => Identifier::Network(ip_network(text).map_err(|message| {
                // Without a `/` it may as well have been meant as a MAC address.
                let message = if text.contains('/') {
                    message
                } else {
                    format!(
                        "`{text}` is not an IP address, CIDR network or MAC address, like \
                         `192.168.1.20`, `192.168.1.64/28` or `aa:bb:cc:dd:ee:ff`"
                    )
                };
                at.invalid(value.span(), key, message)
            })?),
        };
        match owners.entry(identifier) {
            Entry::Occupied(owner) if owner.get().0 != index => {
                let (other_index, other) = *owner.get();
                let note = match identifier {
                    Identifier::Network(network) => mapped_note(text, network),
                    Identifier::Mac(_) => String::new(),
                };
                let message = format!(
                    "`{text}`{note} is claimed by both device `{other}` (device[{other_index}]) \
                     and device `{name}`: an address, network or MAC address may belong to one \
                     device only",
                );
                return Err(at.invalid(value.span(), key, message));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert((index, name));
            }
        }
        match identifier {
            Identifier::Network(network) => addresses.push(network),
            Identifier::Mac(mac) => macs.push(mac),
        }
    }
    Ok((addresses, macs))
}

/// ` (the same as IPv4 `…`)` when `text` was written in the IPv4-mapped form, so the clash
/// with a claim written as IPv4 is explained; empty otherwise.
fn mapped_note(text: &str, network: IpNet) -> String {
    if !(network.addr().is_ipv4() && text.contains(':')) {
        return String::new();
    }
    let ipv4 = if network.prefix_len() == network.max_prefix_len() {
        network.addr().to_string()
    } else {
        network.to_string()
    };
    format!(" (the same as IPv4 `{ipv4}`)")
}

/// An IP address (as a /32 or /128) or a CIDR network (host bits cleared), IPv4-mapped ones
/// (`::ffff:a.b.c.d`) as the IPv4 address or network they map: clients are matched as IPv4,
/// and the two spellings of one address must be one address when claims are compared.
fn ip_network(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(canonical_network(IpNet::from(ip)));
    }
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(canonical_network(network.trunc()));
    }
    Err(match text.split_once('/') {
        Some((ip, prefix)) if ip.parse::<IpAddr>().is_ok() => {
            let max = if ip.contains(':') { 128 } else { 32 };
            format!("`/{prefix}` is not a prefix length for `{ip}` (0 to {max})")
        }
        _ => format!(
            "`{text}` is not an IP address or CIDR network, like `192.168.1.20`, `fd00::20` \
             or `192.168.1.64/28`"
        ),
    })
}

/// An `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` value; `default_port` when none is given.
fn socket_addr(
    value: &Text,
    default_port: u16,
    key: &str,
    at: &Locator<'_>,
) -> Result<SocketAddr, ConfigError> {
    parse_socket_addr(value.get_ref(), default_port)
        .map_err(|message| at.invalid(value.span(), key, message))
}

/// A TTL given as a humantime duration (`"30s"`, `"5m"`, `"1d"`), or `default` when absent.
pub(super) fn optional_ttl(
    value: Option<&Text>,
    default: Duration,
    key: &str,
    at: &Locator<'_>,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let text = value.get_ref();
    let problem = match humantime::parse_duration(text) {
        Ok(duration) if duration <= MAX_TTL => return Ok(duration),
        Ok(_) => "is longer than a DNS TTL can be (68 years)".to_owned(),
        Err(error) => format!("is not a duration ({error}); write e.g. \"30s\", \"5m\" or \"1d\""),
    };
    Err(at.invalid(value.span(), key, format!("`{text}` {problem}")))
}

/// The option of `options` whose `word` is `value`.
fn choose<T: Copy>(
    value: &Text,
    options: &[T],
    word: fn(T) -> &'static str,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    let text = value.get_ref();
    options
        .iter()
        .copied()
        .find(|&option| word(option) == text)
        .ok_or_else(|| {
            let choices = options
                .iter()
                .map(|&option| word(option).to_owned())
                .collect();
            at.invalid_among(
                value.span(),
                key,
                format!("unknown value `{text}`"),
                choices,
            )
        })
}

/// `value` when it is one of the `known` names of a `what` (list, profile).
fn reference(
    value: &Text,
    known: &[&str],
    what: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<String, ConfigError> {
    let text = value.get_ref();
    if known.contains(&text.as_str()) {
        return Ok(text.clone());
    }
    let choices = known.iter().map(|&name| name.to_owned()).collect();
    let message = format!("unknown {what} `{text}`");
    Err(at.invalid_among(value.span(), key, message, choices))
}

/// Checks that `name` is a valid `what` (list id, profile name, device name) not yet declared
/// in the file, and records the line declaring it in `seen`.
fn declare<'a>(
    seen: &mut HashMap<&'a str, usize>,
    name: &'a Text,
    what: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let text = name.get_ref().as_str();
    let valid = (1..=MAX_NAME_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let message = if !valid {
        format!(
            "`{text}` is not a valid {what}: use 1 to {MAX_NAME_LEN} characters among a-z, 0-9, \
             `_` and `-`"
        )
    } else {
        match seen.entry(text) {
            Entry::Occupied(first) => {
                format!(
                    "duplicate {what} `{text}` (first declared on line {})",
                    first.get()
                )
            }
            Entry::Vacant(slot) => {
                slot.insert(at.line(name.span().start));
                return Ok(());
            }
        }
    };
    Err(at.invalid(name.span(), key, message))
}

/// Puts `item` in place of the item with the same id, or at the end when there is none.
fn replace_or_push<T>(items: &mut Vec<T>, item: T, id: impl Fn(&T) -> &str) {
    match items.iter().position(|existing| id(existing) == id(&item)) {
        Some(index) => items[index] = item,
        None => items.push(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/metasink/config.toml";

    fn check(text: &str) -> Result<Settings, ConfigError> {
        super::super::parse(text, Path::new(PATH))
    }

    /// The one-line message of the error `text` gets.
    fn error(text: &str) -> String {
        check(text).expect_err("config accepted").to_string()
    }

    /// `" (valid choices: a, b)"` for `names`.
    fn choices<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
        let names: Vec<&str> = names.into_iter().collect();
        format!(" (valid choices: {})", names.join(", "))
    }

    /// Every preset name.
    fn preset_names() -> Vec<String> {
        presets().into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn example_config_is_valid_and_has_devices() {
        let settings = check(include_str!("../../config.example.toml")).expect("example is valid");
        let devices: Vec<&str> = settings.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(devices, ["quest", "kids-tablet", "parent-phone"]);
        let profiles: Vec<&str> = settings
            .devices
            .iter()
            .map(|d| d.profile.as_str())
            .collect();
        assert_eq!(profiles, ["quest", "no-meta", "parent"]);
        assert_eq!(settings.upstreams.len(), 2);
        assert_eq!(settings.server.listen.len(), 2);
        assert_eq!(settings.default_profile, DEFAULT_PROFILE);
        assert!(settings.lists.iter().any(|l| l.id == "voice-exact"));
    }

    #[test]
    fn catalogue_is_always_present_and_replaced_in_place() {
        let text = "[[device]]\nname = \"quest\"\nmatch = [\"192.168.1.20\"]\nprofile = \"quest\"\n\
                    [[list]]\nid = \"meta-ai\"\nsource = \"lists/ai.txt\"\nmatch = \"subdomains\"\n\
                    [[list]]\nid = \"mine\"\nsource = \"/var/lib/mine.txt\"\n\
                    [[profile]]\nname = \"no-meta\"\nblock = [\"mine\"]\nanswer = \"nxdomain\"\n";
        let settings = check(text).expect("valid");
        let ids: Vec<&str> = settings.lists.iter().map(|l| l.id.as_str()).collect();
        let expected: Vec<&str> = bundled_ids().chain(["mine"]).collect();
        assert_eq!(ids, expected, "meta-ai replaced in place, mine appended");
        let meta_ai = settings
            .lists
            .iter()
            .find(|l| l.id == "meta-ai")
            .expect("meta-ai");
        let relative = Path::new("/etc/metasink/lists/ai.txt").to_path_buf();
        assert_eq!(meta_ai.source, ListSource::File(relative));
        assert_eq!(meta_ai.match_mode, Some(MatchMode::Subdomains));
        let mine = settings.lists.last().expect("mine");
        assert_eq!(mine.source, ListSource::File("/var/lib/mine.txt".into()));
        assert_eq!(mine.match_mode, None);
        let names: Vec<String> = settings.profiles.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, preset_names());
        let no_meta = settings
            .profiles
            .iter()
            .find(|p| p.name == "no-meta")
            .expect("no-meta");
        assert_eq!(
            (no_meta.block.as_slice(), no_meta.answer),
            (&["mine".to_owned()][..], BlockAnswer::NxDomain)
        );
        assert_eq!(
            settings.devices[0].addresses,
            ["192.168.1.20/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let text = "[[upstream]]\naddress = \"9.9.9.9\"\n[[upstream]]\naddress = \"[2620:fe::fe]\"\n\
                    [[profile]]\nname = \"p\"\n[server]\nhttp = \"[::1]\"\n";
        let settings = check(text).expect("valid");
        assert_eq!(settings.origin, Origin::File(PATH.into()));
        assert_eq!(settings.server.listen, [DEFAULT_DNS_LISTEN]);
        assert_eq!(settings.server.http.to_string(), "[::1]:9353");
        let upstreams: Vec<String> = settings
            .upstreams
            .iter()
            .map(|u| u.address.to_string())
            .collect();
        assert_eq!(upstreams, ["9.9.9.9:53", "[2620:fe::fe]:53"]);
        assert_eq!(
            (
                settings.cache.size,
                settings.cache.min_ttl,
                settings.cache.max_ttl
            ),
            (CACHE_SIZE, CACHE_MIN_TTL, CACHE_MAX_TTL)
        );
        let profile = settings.profiles.last().expect("p");
        assert!(profile.block.is_empty() && profile.allow.is_empty() && profile.inspect_answers);
        assert_eq!(
            (profile.answer, profile.blocked_ttl),
            (BlockAnswer::Null, BLOCKED_TTL)
        );
        assert_eq!(settings.default_profile, DEFAULT_PROFILE);
        assert!(
            check("").is_ok(),
            "an empty file is the built-in configuration"
        );
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

    #[test]
    fn unknown_list_in_a_profile_lists_every_list() {
        let text = "[[list]]\nid = \"mine\"\nsource = \"bundled:meta-ai\"\n\
                    [[profile]]\nname = \"p\"\nblock = [\"mine\"]\n[[profile]]\nname = \"q\"\n\
                    block = [\"meta-ai\"]\nallow = [\n  \"keep-facebook\",\n  \"keep-tiktok\",\n]\n";
        assert_eq!(
            error(text),
            format!(
                "/etc/metasink/config.toml:12: profile[1].allow: unknown list `keep-tiktok`{}",
                choices(bundled_ids().chain(["mine"]))
            )
        );
    }

    #[test]
    fn unknown_profiles_list_every_profile() {
        let presets = preset_names();
        let all = || presets.iter().map(String::as_str).chain(["mine"]);
        let profile = "[[profile]]\nname = \"mine\"\n";
        assert_eq!(
            error(&format!(
                "{profile}[[device]]\nname = \"tv\"\nmatch = [\"10.0.0.9\"]\nprofile = \"tv\"\n"
            )),
            format!(
                "/etc/metasink/config.toml:6: device[0].profile: unknown profile `tv`{}",
                choices(all())
            )
        );
        assert_eq!(
            error(&format!("default_profile = \"kids\"\n{profile}")),
            format!(
                "/etc/metasink/config.toml:1: default_profile: unknown profile `kids`{}",
                choices(all())
            )
        );
    }

    /// A config with one device per `match` array.
    fn devices_config(matches: &[&str]) -> String {
        matches
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!("[[device]]\nname = \"d{i}\"\nmatch = {m}\nprofile = \"quest\"\n")
            })
            .collect()
    }

    fn schedule_config(windows: &str) -> String {
        format!(
            "[[device]]\nname = \"tablet\"\nmatch = [\"192.168.1.30\"]\nprofile = \"meta-apps\"\n\
             schedule = [\n{windows}\n]\n"
        )
    }

    #[test]
    fn a_schedule_is_read_and_its_mistakes_name_file_line_and_key() {
        let text = schedule_config(
            "{ profile = \"no-meta\", days = \"mon-fri\", from = \"21:00\", to = \"07:00\" },",
        );
        let settings = check(&text).expect("valid");
        let window = &settings.devices[0].schedule[0];
        assert_eq!(
            window.to_string(),
            "profile no-meta on mon,tue,wed,thu,fri from 21:00 to 07:00 the next day"
        );
        let bad = |window: &str| error(&schedule_config(window));
        assert_eq!(
            bad("{ profile = \"no-meta\", days = \"mon-fry\", from = \"21:00\", to = \"07:00\" },"),
            "/etc/metasink/config.toml:6: device[0].schedule[0].days: `fry` is not a day: use mon, \
             tue, wed, thu, fri, sat, sun, ranges like `mon-fri`, lists like `sat,sun`, or `daily`"
        );
        assert_eq!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"25:00\", to = \"07:00\" },"),
            "/etc/metasink/config.toml:6: device[0].schedule[0].from: `25:00` is not a time of \
             day: write it as HH:MM, like `21:00` or `07:30`"
        );
        assert!(
            bad("{ profile = \"nope\", days = \"daily\", from = \"20:00\", to = \"07:00\" },")
                .starts_with(
                    "/etc/metasink/config.toml:6: device[0].schedule[0].profile: unknown profile `nope`"
                )
        );
        assert!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"20:00\", to = \"20:00\" },")
                .starts_with(
                    "/etc/metasink/config.toml:6: device[0].schedule[0].to: a window must end"
                )
        );
        assert_eq!(
            bad(
                "{ profile = \"no-meta\", days = \"daily\", from = \"20:00\", to = \"08:00\" },\n\
                 { profile = \"strict\", days = \"sat\", from = \"21:00\", to = \"07:00\" },"
            ),
            "/etc/metasink/config.toml:7: device[0].schedule[1]: this window can never apply: the \
             windows before it (device[0].schedule[0] and earlier) already cover all of its time, \
             and the first window that covers a time wins"
        );
        assert!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"20:00\" },")
                .contains("missing field `to`")
        );
    }

    #[test]
    fn an_address_or_network_belongs_to_one_device() {
        assert_eq!(
            error(&devices_config(&[
                "[\"192.168.1.20\", \"fd00::20\"]",
                "[\"fd00::20\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `fd00::20` is claimed by both device \
             `d0` (device[0]) and device `d1`: an address, network or MAC address may belong to one \
             device only"
        );
        assert_eq!(
            error(&devices_config(&[
                "[\"aa:bb:cc:dd:ee:01\"]",
                "[\"10.0.0.2\", \"AA-BB-CC-DD-EE-01\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `AA-BB-CC-DD-EE-01` is claimed by both \
             device `d0` (device[0]) and device `d1`: an address, network or MAC address may belong \
             to one device only"
        );
        assert!(
            error(&devices_config(&["[\"192.168.1.64/28\"]", "[\"192.168.1.70/28\"]"]))
                .starts_with("/etc/metasink/config.toml:7: device[1].match: `192.168.1.70/28` is claimed by both device `d0`")
        );
        let nested = devices_config(&[
            "[\"192.168.1.64/28\", \"192.168.0.0/16\"]",
            "[\"192.168.1.70\", \"192.168.1.64/27\"]",
        ]);
        assert_eq!(check(&nested).expect("more specific wins").devices.len(), 2);
        assert!(check(&devices_config(&["[\"10.0.0.1\", \"10.0.0.1\"]"])).is_ok());
    }

    #[test]
    fn devices_match_mac_addresses_and_forwarders_are_trusted_by_network() {
        let text = format!(
            "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"::ffff:10.0.0.1\"]\n{}",
            devices_config(&["[\"192.168.1.20\", \"AA-BB-CC-DD-EE-01\", \"aa:bb:cc:dd:ee:02\"]"])
        );
        let settings = check(&text).expect("valid");
        let forwarders: Vec<String> = settings
            .trusted_forwarders
            .iter()
            .map(IpAddr::to_string)
            .collect();
        assert_eq!(forwarders, ["192.168.1.1", "10.0.0.1"]);
        let device = &settings.devices[0];
        assert_eq!(
            device.addresses,
            ["192.168.1.20/32".parse::<IpNet>().unwrap()]
        );
        let macs: Vec<String> = device.macs.iter().map(MacAddress::to_string).collect();
        assert_eq!(macs, ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]);
        assert!(
            check("").unwrap().trusted_forwarders.is_empty(),
            "nobody by default"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_read_as_ipv4() {
        let settings = check(&devices_config(&[
            "[\"::ffff:192.168.1.20\", \"::ffff:192.168.2.0/120\", \"::ffff:10.1.2.3/104\"]",
        ]))
        .expect("valid");
        let addresses: Vec<String> = settings.devices[0]
            .addresses
            .iter()
            .map(IpNet::to_string)
            .collect();
        assert_eq!(
            addresses,
            ["192.168.1.20/32", "192.168.2.0/24", "10.0.0.0/8"]
        );
        assert_eq!(
            error(&devices_config(&[
                "[\"192.168.1.20\"]",
                "[\"::ffff:192.168.1.20\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `::ffff:192.168.1.20` (the same as \
             IPv4 `192.168.1.20`) is claimed by both device `d0` (device[0]) and device `d1`: an \
             address, network or MAC address may belong to one device only"
        );
        assert!(
            error(&devices_config(&[
                "[\"::ffff:192.168.2.0/120\"]",
                "[\"192.168.2.0/24\"]"
            ]))
            .contains("`192.168.2.0/24` is claimed by both device `d0`")
        );
    }

    /// Asserts that each (config, `line: key`, message start) case fails as described.
    fn assert_errors(cases: &[(&str, &str, &str)]) {
        for (text, located, message) in cases {
            let got = error(text);
            let expected = format!("{PATH}:{located}: {message}");
            assert!(got.starts_with(&expected), "{got}");
        }
    }

    /// The profile named `name` of `settings`.
    fn profile<'a>(settings: &'a Settings, name: &str) -> &'a ProfileSettings {
        settings
            .profiles
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no profile {name}"))
    }

    #[test]
    fn a_profile_extends_a_preset_or_a_profile_and_adds_to_it() {
        let settings = check(
            "[[profile]]\nname = \"kid\"\nextends = \"house\"\nblock = [\"app-whatsapp\"]\n\
             answer = \"nodata\"\n\n\
             [[profile]]\nname = \"house\"\nextends = \"meta-apps\"\n\
             remove = [\"keep-instagram\"]\n\
             block = [\"app-instagram\", \"meta-ai\"]\nblocked_ttl = \"1m\"\n",
        )
        .expect("valid");
        let meta_apps = presets()
            .into_iter()
            .find(|p| p.name == "meta-apps")
            .expect("preset");
        let house = profile(&settings, "house");
        let mut block = meta_apps.block.clone();
        block.push("app-instagram".to_owned());
        assert_eq!(house.block, block, "the parent's lists first, no repeat");
        let mut allow = meta_apps.allow.clone();
        allow.retain(|id| id != "keep-instagram");
        assert_eq!(house.allow, allow, "`remove` takes the kept app's list out");
        assert_eq!(house.blocked_ttl, Duration::from_secs(60));
        assert_eq!(house.answer, meta_apps.answer);

        // A profile declared before its parent still gets it, with what it sets itself.
        let kid = profile(&settings, "kid");
        block.push("app-whatsapp".to_owned());
        assert_eq!(kid.block, block);
        assert_eq!(kid.allow, allow);
        assert_eq!(
            (kid.answer, kid.blocked_ttl),
            (BlockAnswer::NoData, Duration::from_secs(60))
        );
    }

    #[test]
    fn a_list_sets_the_ttl_of_what_it_blocks() {
        let settings = check(
            "[[list]]\nid = \"chatty\"\nsource = \"bundled:meta-tracking\"\nblocked_ttl = \"2h\"\n",
        )
        .expect("valid");
        let chatty = settings
            .lists
            .iter()
            .find(|l| l.id == "chatty")
            .expect("list");
        assert_eq!(chatty.blocked_ttl, Some(Duration::from_secs(7200)));
        let bundled = settings
            .lists
            .iter()
            .find(|l| l.id == "meta-ai")
            .expect("list");
        assert_eq!(
            bundled.blocked_ttl, None,
            "unset: the header's, else the profile's"
        );
        assert_errors(&[(
            "[[list]]\nid = \"x\"\nsource = \"bundled:meta-ai\"\nblocked_ttl = \"soon\"\n",
            "4: list[0].blocked_ttl",
            "`soon` is not a duration",
        )]);
    }

    #[test]
    fn extends_refuses_cycles_and_unknown_profiles() {
        assert_errors(&[
            (
                "[[profile]]\nname = \"a\"\nextends = \"b\"\n\n\
                 [[profile]]\nname = \"b\"\nextends = \"c\"\n\n\
                 [[profile]]\nname = \"c\"\nextends = \"a\"\n",
                "11: profile[2].extends",
                "`extends` goes round in a cycle: a → b → c → a",
            ),
            (
                "[[profile]]\nname = \"meta-apps\"\nextends = \"meta-apps\"\n",
                "3: profile[0].extends",
                "`extends` goes round in a cycle: meta-apps → meta-apps",
            ),
            (
                "[[profile]]\nname = \"a\"\nextends = \"nope\"\n",
                "3: profile[0].extends",
                "unknown profile `nope`",
            ),
            (
                "[[profile]]\nname = \"a\"\nextends = \"quest\"\nremove = [\"keep-instagram\"]\n",
                "4: profile[0].remove",
                "`keep-instagram` is not a list of `quest`",
            ),
            (
                "[[profile]]\nname = \"a\"\nremove = [\"meta-ai\"]\n",
                "3: profile[0].remove",
                "`remove` takes lists out of what `extends` brings",
            ),
        ]);
    }

    #[test]
    fn bad_addresses_and_networks() {
        assert_errors(&[
            (
                "[server]\nlisten = [\"localhost:53\"]\n",
                "2: server.listen",
                "`localhost:53` is not an IP address with an optional port, like `9.9.9.9`, `192.168.1.1:53` or `[2620:fe::fe]:53` (host names are not resolved)",
            ),
            (
                "[[upstream]]\naddress = \"9.9.9.9:99999\"\n",
                "2: upstream[0].address",
                "`99999` is not a port number (0 to 65535)",
            ),
            (
                "[[upstream]]\naddress = \"9.9.9.9:0\"\n",
                "2: upstream[0].address",
                "`9.9.9.9:0` is not an address a query can be sent to",
            ),
            (
                "[server]\nlisten = [\"0.0.0.0:53\"]\n[[upstream]]\naddress = \"127.0.0.1\"\n",
                "4: upstream[0].address",
                "`127.0.0.1:53` is this server's own listen address: queries would loop",
            ),
            (
                "[[device]]\nname = \"d\"\nmatch = [\"192.168.1.0/33\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`/33` is not a prefix length for `192.168.1.0` (0 to 32)",
            ),
            (
                "[[device]]\nname = \"d\"\nmatch = [\"192.168.1\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`192.168.1` is not an IP address, CIDR network or MAC address, like `192.168.1.20`, `192.168.1.64/28` or `aa:bb:cc:dd:ee:ff`",
            ),
            (
                "[[device]]\nname = \"d\"\nmatch = [\"aa:bb:cc:dd:ee\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`aa:bb:cc:dd:ee` is not an IP address, CIDR network or MAC address",
            ),
            (
                "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"router\"]\n",
                "2: server.trusted_forwarders",
                "`router` is not an IP address or CIDR network, like `192.168.1.20`",
            ),
            (
                "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"192.168.1.0/24\"]\n",
                "2: server.trusted_forwarders",
                "`192.168.1.0/24` is a network: list the router's own addresses, one by one",
            ),
            (
                "[[device]]\nname = \"unknown\"\nmatch = [\"10.0.0.9\"]\nprofile = \"quest\"\n",
                "2: device[0].name",
                "`unknown` is the device label of clients that match no device: pick another name",
            ),
            (
                "[server]\nallow_from = [\"192.168.1.0/24\"]\ntrusted_forwarders = [\"10.0.0.1\"]\n",
                "3: server.trusted_forwarders",
                "`10.0.0.1` is outside server.allow_from, so every query it forwards would be \
                 refused: add it there too",
            ),
        ]);
    }

    #[test]
    fn bad_durations_and_listeners() {
        assert_errors(&[
            (
                "[[profile]]\nblocked_ttl = \"10 parsecs\"\nname = \"p\"\n",
                "2: profile[0].blocked_ttl",
                "`10 parsecs` is not a duration",
            ),
            (
                "[cache]\nmin_ttl = \"2d\"\n",
                "2: cache.min_ttl",
                "2days is longer than cache.max_ttl (1day)",
            ),
            (
                "[cache]\nmax_ttl = \"100y\"\n",
                "2: cache.max_ttl",
                "`100y` is longer than a DNS TTL can be (68 years)",
            ),
            (
                "[server]\nlisten = []\n",
                "2: server.listen",
                "needs at least one address (UDP and TCP are bound on each)",
            ),
            (
                "[server]\nlisten = [\"[::]:53\", \"::\"]\n",
                "2: server.listen",
                "`[::]:53` is listed twice",
            ),
            (
                "[server]\nlisten = [\n  \"0.0.0.0:53\",\n  \"[::]:53\",\n  \"192.168.1.2\",\n]\n",
                "5: server.listen",
                "`192.168.1.2:53` and `0.0.0.0:53` cannot both be bound: a wildcard address \
                 already takes every address of its family on port 53; list one or the other",
            ),
            (
                "[server]\nlisten = [\"192.168.1.2:53\"]\nhttp = \"0.0.0.0:53\"\n",
                "3: server.http",
                "`0.0.0.0:53` clashes with the DNS listen address `192.168.1.2:53` (DNS is served \
                 over TCP too): give HTTP another port",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:9353\"]\n",
                "2: server.listen",
                "`127.0.0.1:9353` clashes with the DNS listen address `127.0.0.1:9353`",
            ),
        ]);
        assert!(
            error("[server]\nlisten = [\"192.168.1.2:53\"]\nhttp = \"[::]:53\"\n")
                .contains("`[::]:53` clashes with the DNS listen address `192.168.1.2:53`"),
            "a dual-stack HTTP wildcard takes IPv4 too"
        );
        let side_by_side = "[server]\nlisten = [\"0.0.0.0:53\", \"[::]:53\", \"127.0.0.1:0\"]\n\
                            http = \"127.0.0.1:0\"\n";
        assert!(
            check(side_by_side).is_ok(),
            "other families and port 0 never clash"
        );
    }

    #[test]
    fn download_settings_are_bounded() {
        assert_errors(&[
            (
                "[download]\ninterval = \"1s\"\n",
                "2: download.interval",
                "`1s` is shorter than 1m, the shortest allowed",
            ),
            (
                "[download]\ninterval = \"0s\"\n",
                "2: download.interval",
                "must be longer than zero",
            ),
            (
                "[download]\ntimeout = \"90m\"\n",
                "2: download.timeout",
                "`90m` is longer than 1h, the longest allowed",
            ),
            (
                "[download]\ntimeout = \"0s\"\n",
                "2: download.timeout",
                "must be longer than zero",
            ),
            (
                "[download]\n\nattempts = 40\n",
                "3: download.attempts",
                "must be at most 10",
            ),
            (
                "[download]\nattempts = 0\n",
                "2: download.attempts",
                "must be at least 1",
            ),
        ]);
        let settings = check("[download]\ninterval = \"1m\"\ntimeout = \"1h\"\nattempts = 10\n")
            .expect("the bounds themselves are allowed");
        assert_eq!(settings.download.interval, MIN_DOWNLOAD_INTERVAL);
        assert_eq!(settings.download.timeout, MAX_DOWNLOAD_TIMEOUT);
        assert_eq!(settings.download.attempts, MAX_DOWNLOAD_ATTEMPTS);
    }

    #[test]
    fn admission_keys_parse_and_default() {
        let text = "[server]\nallow_from = [\"192.168.1.0/24\", \"fd00::/8\", \"203.0.113.7\", \
                    \"2001:db8::1\", \"10.1.2.3/8\"]\nrate_limit_qps = 20\nrate_limit_burst = 40\n";
        let admission = check(text).expect("valid").admission;
        let networks: Vec<String> = admission.allow_from.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            networks,
            [
                "192.168.1.0/24",
                "fd00::/8",
                "203.0.113.7/32",
                "2001:db8::1/128",
                "10.0.0.0/8"
            ]
        );
        assert_eq!(
            (admission.rate_limit_qps, admission.rate_limit_burst),
            (20, 40)
        );

        let defaults = check("[server]\n").expect("valid").admission;
        assert_eq!(defaults.allow_from, ALLOW_FROM);
        assert_eq!(
            (defaults.rate_limit_qps, defaults.rate_limit_burst),
            (RATE_LIMIT_QPS, RATE_LIMIT_BURST)
        );
        let off = check("[server]\nrate_limit_qps = 0\n").expect("0 turns the limit off");
        assert_eq!(off.admission.rate_limit_qps, 0);
    }

    #[test]
    fn bad_admission_keys_are_located() {
        assert_errors(&[
            (
                "[server]\nallow_from = []\n",
                "2: server.allow_from",
                "is empty, so nobody could query: list the clients' addresses or networks, or \
                 leave the key out to allow the local and private ones",
            ),
            (
                "[server]\nallow_from = [\n  \"192.168.1.0/24\",\n  \"192.168.1.0/33\",\n]\n",
                "4: server.allow_from",
                "`/33` is not a prefix length for `192.168.1.0` (0 to 32)",
            ),
            (
                "[server]\nallow_from = [\"fd00::/129\"]\n",
                "2: server.allow_from",
                "`/129` is not a prefix length for `fd00::` (0 to 128)",
            ),
            (
                "[server]\nallow_from = [\"lan\"]\n",
                "2: server.allow_from",
                "`lan` is not an IP address or CIDR network",
            ),
            (
                "[server]\nallow_from = \"192.168.1.0/24\"\n",
                "2: server.allow_from",
                "invalid type: string \"192.168.1.0/24\", expected a sequence",
            ),
            (
                "[server]\nallow_from = [24]\n",
                "2: server.allow_from[0]",
                "invalid type: integer `24`, expected a string",
            ),
            (
                "[server]\nrate_limit_qps = -1\n",
                "2: server.rate_limit_qps",
                "invalid value: integer `-1`, expected u32",
            ),
            (
                "[server]\nrate_limit_qps = 1.5\n",
                "2: server.rate_limit_qps",
                "invalid type: floating point `1.5`, expected u32",
            ),
            (
                "[server]\nrate_limit_qps = \"100\"\n",
                "2: server.rate_limit_qps",
                "invalid type: string \"100\", expected u32",
            ),
            (
                "[server]\nrate_limit_qps = 5000000000\n",
                "2: server.rate_limit_qps",
                "invalid value: integer `5000000000`, expected u32",
            ),
            (
                "[server]\n\nrate_limit_burst = 0\n",
                "3: server.rate_limit_burst",
                "must be at least 1",
            ),
            (
                "[server]\nrate_limit_burst = -5\n",
                "2: server.rate_limit_burst",
                "invalid value: integer `-5`, expected u32",
            ),
            (
                "[server]\nrate_limit_burst = 2.0\n",
                "2: server.rate_limit_burst",
                "invalid type: floating point `2.0`, expected u32",
            ),
        ]);
    }

    #[test]
    fn bad_words_list_the_valid_ones() {
        assert_eq!(
            error("[[profile]]\nname = \"p\"\nanswer = \"drop\"\n"),
            format!(
                "{PATH}:3: profile[0].answer: unknown value `drop` (valid choices: null, nodata, nxdomain, refused)"
            )
        );
        assert_eq!(
            error("[[list]]\nid = \"l\"\nsource = \"bundled:meta-ai\"\nmatch = \"suffix\"\n"),
            format!(
                "{PATH}:4: list[0].match: unknown value `suffix` (valid choices: exact, subdomains)"
            )
        );
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let list = "[[list]]\nid = \"mine\"\nsource = \"bundled:meta-ai\"\n";
        assert_eq!(
            error(&format!("{list}\n{list}")),
            format!("{PATH}:6: list[1].id: duplicate list id `mine` (first declared on line 2)")
        );
        let profile = "[[profile]]\nname = \"kids\"\n";
        assert_eq!(
            error(&format!("{profile}{profile}")),
            format!(
                "{PATH}:4: profile[1].name: duplicate profile name `kids` (first declared on line 2)"
            )
        );
        assert_eq!(
            error(&devices_config(&["[\"10.0.0.1\"]", "[\"10.0.0.2\"]"]).replace("d1", "d0")),
            format!(
                "{PATH}:6: device[1].name: duplicate device name `d0` (first declared on line 2)"
            )
        );
        let rule = "use 1 to 64 characters among a-z, 0-9, `_` and `-`";
        assert_eq!(
            error("[[profile]]\nname = \"Kids Room\"\n"),
            format!("{PATH}:2: profile[0].name: `Kids Room` is not a valid profile name: {rule}")
        );
        assert_eq!(
            error(&format!(
                "[[list]]\nid = \"{}\"\nsource = \"x\"\n",
                "a".repeat(65)
            )),
            format!(
                "{PATH}:2: list[0].id: `{}` is not a valid list id: {rule}",
                "a".repeat(65)
            )
        );
        assert_eq!(
            error("[[device]]\nname = \"\"\nmatch = [\"10.0.0.1\"]\nprofile = \"quest\"\n"),
            format!("{PATH}:2: device[0].name: `` is not a valid device name: {rule}")
        );
    }

    #[test]
    fn list_sources() {
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"bundled:nope\"\n"),
            format!(
                "{PATH}:3: list[0].source: unknown bundled list `nope`{}",
                choices(bundled_ids())
            )
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"ftp://example.com/list.txt\"\n"),
            format!("{PATH}:3: list[0].source: only http:// and https:// URLs can be downloaded")
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"https:///list.txt\"\n"),
            format!("{PATH}:3: list[0].source: is not a URL with a host")
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \" \"\n"),
            format!(
                "{PATH}:3: list[0].source: is empty: write `bundled:ID`, a file path or an https:// URL"
            )
        );
        let url = "https://example.com/list.txt";
        let settings = check(&format!("[[list]]\nid = \"x\"\nsource = \"{url}\"\n")).unwrap();
        let list = settings.lists.iter().find(|list| list.id == "x").unwrap();
        assert_eq!(list.source, ListSource::Url(url.to_owned()));
    }

    #[test]
    fn at_most_max_lists_in_total() {
        let room = MAX_LISTS - bundled_ids().count();
        let lists = |count: usize| -> String {
            (0..count)
                .map(|i| format!("[[list]]\nid = \"l{i}\"\nsource = \"bundled:meta-ai\"\n"))
                .collect()
        };
        let replacing = "[[list]]\nid = \"meta-ai\"\nsource = \"bundled:meta-ai\"\n";
        let full = check(&format!("{replacing}{}", lists(room))).expect("exactly MAX_LISTS");
        assert_eq!(full.lists.len(), MAX_LISTS);
        assert_eq!(
            error(&lists(room + 1)),
            format!(
                "{PATH}:{}: list[{room}].id: too many lists: at most {MAX_LISTS}, the {} bundled ones included",
                3 * room + 2,
                bundled_ids().count()
            )
        );
    }

    #[test]
    fn garbage_never_panics() {
        let garbage = [
            "",
            "\0",
            "\u{feff}",
            "[",
            "[[",
            "]]",
            "=",
            "= =",
            "\"",
            "'''",
            "a = ",
            "[server]\n[server]",
            "[[device]]\nmatch = [[[[[]]]]]",
            "device = []",
            "device = [1, 2]",
            "list = { id = 1 }",
            "\u{1F600} = \"\u{1F600}\"",
            "[cache]\nsize = 1e400",
            "[cache]\nsize = 99999999999999999999999",
            "[[profile]]\nname = \"é\"",
            "[[upstream]]\naddress = \"[::1\"",
            "[[upstream]]\naddress = \":\"",
            "[[device]]\nname=\"d\"\nmatch=[\"/\", \"1.2.3.4/\"]\nprofile=\"quest\"",
            "[[list]]\nid=\"x\"\nsource=\"bundled:\"",
            "\n\n\n\u{0}\r\r\n",
        ];
        for text in garbage {
            let _ = check(text);
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn querylog_defaults_off_under_state_dir_and_devices_may_set_their_own() {
        let settings = check("[server]\nstate_dir = \"/srv/ms\"\n").unwrap();
        assert_eq!(
            settings.querylog,
            QuerylogSettings {
                mode: LogMode::Off,
                retention: QUERYLOG_RETENTION,
                max_bytes: QUERYLOG_MAX_BYTES,
                path: Some(PathBuf::from("/srv/ms").join(QUERYLOG_FILE)),
                queue: super::super::defaults::QUERYLOG_QUEUE,
            }
        );
        let text = "[querylog]\nmode = \"blocked\"\nretention = \"2d\"\nmax_bytes = 100000\n\
                    path = \"\"\n[[device]]\nname = \"quest\"\nmatch = [\"10.0.0.2\"]\n\
                    profile = \"quest\"\nquerylog = \"all\"\n\
                    [[profile]]\nname = \"tv\"\nmode = \"observe\"\n";
        let settings = check(text).unwrap();
        assert_eq!(settings.querylog.mode, LogMode::Blocked);
        assert_eq!(settings.querylog.retention, Duration::from_secs(2 * 86400));
        assert_eq!(settings.querylog.max_bytes, 100_000);
        assert_eq!(settings.querylog.path, None);
        assert_eq!(settings.devices[0].querylog, Some(LogMode::All));
        let tv = settings.profiles.iter().find(|p| p.name == "tv").unwrap();
        assert_eq!(tv.mode, ProfileMode::Observe);
    }

    #[test]
    fn querylog_errors_name_file_line_and_key() {
        assert_eq!(
            error("[querylog]\nmode = \"some\"\n"),
            format!(
                "{PATH}:2: querylog.mode: unknown value `some`{}",
                choices(["off", "blocked", "all"])
            )
        );
        assert!(
            error("[querylog]\nretention = \"a week\"\n").starts_with(&format!(
                "{PATH}:2: querylog.retention: `a week` is not a duration"
            )),
        );
        assert_eq!(
            error("[querylog]\nmax_bytes = 1000\n"),
            format!("{PATH}:2: querylog.max_bytes: must be at least 65536 (64 KiB)")
        );
        let device = "[[device]]\nname = \"tv\"\nmatch = [\"10.0.0.3\"]\nprofile = \"strict\"\n";
        assert_eq!(
            error(&format!("{device}querylog = \"yes\"\n")),
            format!(
                "{PATH}:5: device[0].querylog: unknown value `yes`{}",
                choices(["off", "blocked", "all"])
            )
        );
        assert_eq!(
            error("[[profile]]\nname = \"tv\"\nmode = \"dry\"\n"),
            format!(
                "{PATH}:3: profile[0].mode: unknown value `dry`{}",
                choices(["enforce", "observe"])
            )
        );
    }

    #[test]
    fn http_hosts_are_names_or_addresses_without_a_port() {
        let settings =
            check("[server]\nhttp_hosts = [\"Metasink.LAN.\", \"192.168.1.2\", \"[fd00::2]\"]\n")
                .expect("valid hosts");
        assert_eq!(
            settings.server.http_hosts,
            ["metasink.lan", "192.168.1.2", "fd00::2"]
        );
        assert!(check("").unwrap().server.http_hosts.is_empty());
        for bad in [
            "metasink.lan:9353",
            "http://metasink.lan",
            "",
            "pi lan",
            "-pi.lan",
        ] {
            assert_errors(&[(
                &format!("[server]\nhttp_hosts = [\"ok.lan\", \"{bad}\"]\n"),
                "2: server.http_hosts",
                &format!("`{bad}` is not a host name or IP address"),
            )]);
        }
    }
}
