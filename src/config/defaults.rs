//! Built-in defaults: every value a config file may leave out, the settings `metasink run` uses
//! without `--config`, and the upstreams read from `/etc/resolv.conf` when none are configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    AdmissionSettings, BlockAnswer, CacheSettings, DownloadSettings, ListSettings, ListSource,
    LocalSettings, LogMode, Origin, ProfileMode, ProfileSettings, QuerylogSettings, ServerSettings,
    Settings, UpstreamSettings,
};
use crate::catalogue::{self, DEFAULT_PROFILE, bundled_ids};

/// DNS listen address (UDP and TCP) when none is configured: loopback, and an unprivileged port
/// so that trying metasink needs no root and does not fight a system resolver for port 53.
pub const DEFAULT_DNS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5053));

/// HTTP listen address (`/metrics`, `/healthz`, API) when none is configured: loopback only.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9353));

/// Port of an upstream or listen address written without one.
pub(super) const DNS_PORT: u16 = 53;

/// `cache.size` when not configured.
pub(super) const CACHE_SIZE: usize = 10_000;

/// `cache.min_ttl` when not configured: upstream TTLs are not raised.
pub(super) const CACHE_MIN_TTL: Duration = Duration::ZERO;

/// `cache.max_ttl` when not configured: one day.
pub(super) const CACHE_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `blocked_ttl` of a configured profile when not given: short, so a change of profile takes
/// effect quickly (the presets use the same).
pub(super) const BLOCKED_TTL: Duration = Duration::from_secs(10);

/// `server.state_dir` of a config file that does not set it (the systemd unit's StateDirectory).
pub(super) const STATE_DIR: &str = "/var/lib/metasink";

/// `[querylog] retention` when not configured: a week, long enough to catch what broke
/// since the weekend.
pub(super) const QUERYLOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `[querylog] max_bytes` when not configured: 256 MiB, a small share of a Pi's SD card.
pub(super) const QUERYLOG_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// `[querylog] queue` when not configured: a few seconds of a busy house between two drains
/// of the writer (every 100 ms), or a slow disk's pause of a second.
pub(super) const QUERYLOG_QUEUE: usize = 8192;

/// The query log's file in `state_dir` when `[querylog] path` is not configured.
pub(super) const QUERYLOG_FILE: &str = "querylog.sqlite3";

/// `[download]` defaults: daily refresh, a minute per attempt, three attempts, 64 MiB, two at once.
pub(super) const DOWNLOAD: DownloadSettings = DownloadSettings {
    interval: Duration::from_secs(24 * 60 * 60),
    timeout: Duration::from_secs(60),
    attempts: 3,
    max_bytes: 64 * 1024 * 1024,
    concurrency: 2,
};

/// `server.allow_from` when not configured: the networks a household's own devices query from,
/// so that metasink is not an open resolver that strangers can use or aim at a victim with
/// spoofed queries (RFC 5358).
pub(super) const ALLOW_FROM: [IpNet; 9] = [
    // Loopback (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3).
    v4(Ipv4Addr::new(127, 0, 0, 0), 8),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
    // Private networks (RFC 1918 §3).
    v4(Ipv4Addr::new(10, 0, 0, 0), 8),
    v4(Ipv4Addr::new(172, 16, 0, 0), 12),
    v4(Ipv4Addr::new(192, 168, 0, 0), 16),
    // Shared address space behind carrier-grade NAT (RFC 6598), also used by VPN overlays.
    v4(Ipv4Addr::new(100, 64, 0, 0), 10),
    // Link-local (RFC 3927, RFC 4291 §2.5.6).
    v4(Ipv4Addr::new(169, 254, 0, 0), 16),
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
    )),
    // Unique local addresses (RFC 4193).
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
    )),
];

/// `server.rate_limit_qps` when not configured: far above what a household device sends (a
/// busy phone or a browser opening a page stays in the tens), far below a flood.
pub(super) const RATE_LIMIT_QPS: u32 = 100;

/// `server.rate_limit_burst` when not configured: room for a device that wakes up, or a page
/// with hundreds of third-party names, without touching the sustained rate.
pub(super) const RATE_LIMIT_BURST: u32 = 500;

/// An IPv4 network, in a constant.
const fn v4(address: Ipv4Addr, prefix_len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(address, prefix_len))
}

impl Default for AdmissionSettings {
    /// Loopback, private, CGNAT, link-local and unique local networks; 100 queries per second
    /// in bursts of 500.
    fn default() -> Self {
        Self {
            allow_from: ALLOW_FROM.to_vec(),
            rate_limit_qps: RATE_LIMIT_QPS,
            rate_limit_burst: RATE_LIMIT_BURST,
        }
    }
}

/// The preset profiles of the catalogue as settings, in its order: blocked names get the
/// null address (never NXDOMAIN: WhatsApp retries NXDOMAIN in a storm) for `BLOCKED_TTL`,
/// and names inside answers are inspected.
pub fn presets() -> Vec<ProfileSettings> {
    catalogue::presets()
        .map(|preset| ProfileSettings {
            name: preset.name.to_owned(),
            block: preset.block.iter().map(|&id| id.to_owned()).collect(),
            allow: preset.allow.iter().map(|&id| id.to_owned()).collect(),
            block_networks: (preset.block_networks.iter())
                .map(|&id| id.to_owned())
                .collect(),
            answer: BlockAnswer::Null,
            blocked_ttl: BLOCKED_TTL,
            inspect_answers: true,
            mode: ProfileMode::Enforce,
        })
        .collect()
}

/// Where the system's resolvers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The settings used when no config file is given: loopback listeners, the system's resolvers
/// as upstreams (none when `/etc/resolv.conf` lists no usable one), every bundled list, every
/// preset, no devices and [`DEFAULT_PROFILE`] for every client.
pub fn builtin_settings() -> Settings {
    let listen = vec![DEFAULT_DNS_LISTEN];
    let state_dir = user_state_dir();
    Settings {
        origin: Origin::BuiltIn,
        upstreams: system_upstreams(&listen),
        server: ServerSettings {
            listen,
            http: DEFAULT_HTTP_LISTEN,
            http_hosts: Vec::new(),
            state_dir: state_dir.clone(),
            api_token: None,
            token_file: None,
        },
        querylog: QuerylogSettings {
            mode: LogMode::Off,
            retention: QUERYLOG_RETENTION,
            max_bytes: QUERYLOG_MAX_BYTES,
            path: Some(state_dir.join(QUERYLOG_FILE)),
            queue: QUERYLOG_QUEUE,
        },
        admission: AdmissionSettings::default(),
        download: DOWNLOAD,
        cache: CacheSettings {
            size: CACHE_SIZE,
            min_ttl: CACHE_MIN_TTL,
            max_ttl: CACHE_MAX_TTL,
        },
        lists: bundled_lists(),
        profiles: presets(),
        devices: Vec::new(),
        trusted_forwarders: Vec::new(),
        default_profile: DEFAULT_PROFILE.to_owned(),
        local: LocalSettings::default(),
    }
}

/// The state directory of a run without a config file: somewhere the user can write
/// (`$XDG_STATE_HOME/metasink`, else `~/.local/state/metasink`, else the temp directory).
fn user_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("metasink")
}

/// Every bundled list, in catalogue order, matching as its header says.
pub(super) fn bundled_lists() -> Vec<ListSettings> {
    bundled_ids()
        .map(|id| ListSettings {
            id: id.to_owned(),
            source: ListSource::Bundled(id.to_owned()),
            match_mode: None,
            blocked_ttl: None,
        })
        .collect()
}

/// The nameservers of `/etc/resolv.conf` usable as upstreams next to `listen` (none when the
/// file cannot be read).
pub(super) fn system_upstreams(listen: &[SocketAddr]) -> Vec<UpstreamSettings> {
    std::fs::read_to_string(Path::new(RESOLV_CONF))
        .map(|text| resolv_conf_upstreams(&text, listen))
        .unwrap_or_default()
}

/// The `nameserver` lines of resolv.conf `text`, on port 53, in order, without the ones that
/// would send queries back to ourselves (one of `listen`) or nowhere (`0.0.0.0`, `::`).
pub(super) fn resolv_conf_upstreams(text: &str, listen: &[SocketAddr]) -> Vec<UpstreamSettings> {
    text.lines()
        .filter_map(nameserver)
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .filter(|&address| !address.ip().is_unspecified() && !is_own_address(address, listen))
        .map(UpstreamSettings::plain)
        .collect()
}

/// The address of a `nameserver IP` line.
///
/// An IPv6 address with a `%zone` is skipped: it is link-local, and without its interface it
/// cannot be reached.
fn nameserver(line: &str) -> Option<IpAddr> {
    let line = line.split(['#', ';']).next()?;
    let mut words = line.split_whitespace();
    if words.next()? != "nameserver" {
        return None;
    }
    words.next()?.parse().ok()
}

/// True when queries sent to `address` would reach one of the `listen` sockets, i.e. loop
/// back to this daemon. A wildcard listener catches every local address; loopback is the only
/// local one known without asking the system.
pub(super) fn is_own_address(address: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|&own| {
        own == address
            || (own.port() == address.port()
                && own.ip().is_unspecified()
                && address.ip().is_loopback())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(upstreams: &[UpstreamSettings]) -> Vec<String> {
        upstreams
            .iter()
            .map(|upstream| upstream.address.to_string())
            .collect()
    }

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\n; also a comment\nsearch lan\nnameserver 192.168.1.1  # router\n\
                    nameserver\tfd00::1\noptions edns0\nnameserver fe80::1%eth0\n\
                    nameserver 0.0.0.0\nnameserver ::\nnameserver not-an-ip\n \
                    nameserver 9.9.9.9\n#nameserver 1.1.1.1\nnameservers 8.8.8.8\n";
        let upstreams = resolv_conf_upstreams(text, &[DEFAULT_DNS_LISTEN]);
        assert_eq!(
            addresses(&upstreams),
            ["192.168.1.1:53", "[fd00::1]:53", "9.9.9.9:53"]
        );
    }

    #[test]
    fn resolv_conf_skips_our_own_listeners() {
        let text = "nameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver ::1\n";
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:53".parse().unwrap()];
        assert_eq!(
            addresses(&resolv_conf_upstreams(text, &listen)),
            ["127.0.0.53:53", "[::1]:53"]
        );
        let wildcard: Vec<SocketAddr> = vec!["[::]:53".parse().unwrap()];
        assert!(resolv_conf_upstreams(text, &wildcard).is_empty());
        assert!(resolv_conf_upstreams("", &listen).is_empty());
    }

    #[test]
    fn builtin_settings_hold_the_whole_catalogue() {
        let settings = builtin_settings();
        assert_eq!(settings.origin, Origin::BuiltIn);
        assert_eq!(settings.server.listen, [DEFAULT_DNS_LISTEN]);
        assert_eq!(settings.server.http.to_string(), "127.0.0.1:9353");
        assert_eq!(settings.lists.len(), bundled_ids().count());
        assert_eq!(settings.profiles.len(), presets().len());
        assert!(settings.profiles.iter().any(|p| p.name == DEFAULT_PROFILE));
        assert_eq!(settings.cache.size, 10_000);
        assert_eq!(settings.cache.max_ttl, Duration::from_secs(86_400));
        assert_eq!(settings.admission, AdmissionSettings::default());
    }

    #[test]
    fn default_allow_from_is_the_local_and_private_networks() {
        let networks: Vec<String> = ALLOW_FROM.iter().map(IpNet::to_string).collect();
        assert_eq!(
            networks,
            [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "169.254.0.0/16",
                "fe80::/10",
                "fc00::/7",
            ]
        );
        let admission = AdmissionSettings::default();
        assert_eq!(
            (admission.rate_limit_qps, admission.rate_limit_burst),
            (100, 500)
        );
    }
}
