//! Configuration: the TOML file a household writes, checked and turned into [`Settings`].
//!
//! Two layers, as in ripgrep's low/high args: `raw` holds what serde reads (every table denies
//! unknown keys, and keeps the span of each value so errors can name file, line and key);
//! `validate` turns it into [`Settings`], where every reference (profile → list, device →
//! profile) is known to resolve and every address and duration is parsed; each section is
//! checked in a file of its own (`server`, `upstream`, `cache`, `lists`, `profiles`,
//! `devices`, `querylog`, `local`), beside its tests, sharing the value checks of `values`. The same path runs
//! at start-up, in `metasink check` and on every reload.
//!
//! Bundled lists and preset profiles (see [`crate::catalogue`]) are always present: a config
//! declares only what it adds or replaces.

mod cache;
mod defaults;
mod devices;
mod error;
mod lists;
pub mod local;
mod profiles;
mod querylog;
mod raw;
pub mod schedule;
mod server;
#[cfg(test)]
mod test_support;
mod upstream;
mod validate;
mod values;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use defaults::{DEFAULT_DNS_LISTEN, DEFAULT_HTTP_LISTEN, builtin_settings, presets};
pub use error::ConfigError;
pub use local::{ForwardSettings, LOCAL_TTL, LocalSettings, RecordSettings};
pub use schedule::Window;
pub use upstream::{CaFile, TlsSettings, UpstreamProtocol, UpstreamSettings};

use serde::Deserialize;

use crate::net::MacAddress;

/// Device label of clients that match no device: reserved, no `[[device]]` may take it.
pub const UNKNOWN_DEVICE: &str = "unknown";

/// The most lists one configuration (and so one policy snapshot) can hold: one bit each in
/// the policy's list masks.
pub const MAX_LISTS: usize = 64;

/// How a plain entry (one written without `||x^` or `*.x`) matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Only the name itself.
    Exact,
    /// The name and every name below it (on label boundaries).
    Subdomains,
}

impl MatchMode {
    /// The word used in config files and list headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Subdomains => "subdomains",
        }
    }

    /// How a person reads it in `explain` and `lists` output.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exact => "exact name",
            Self::Subdomains => "name and subdomains",
        }
    }
}

/// A validated configuration: what the daemon runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where these settings came from (a file, or the built-in defaults).
    pub origin: Origin,
    /// Listeners.
    pub server: ServerSettings,
    /// Who may query, and how fast (`[server]` keys `allow_from`, `rate_limit_qps`,
    /// `rate_limit_burst`).
    pub admission: AdmissionSettings,
    /// Upstream resolvers, in the order given.
    pub upstreams: Vec<UpstreamSettings>,
    /// The shared answer cache.
    pub cache: CacheSettings,
    /// Downloads of URL lists.
    pub download: DownloadSettings,
    /// Every list the policy holds: bundled lists first, then those the config adds or
    /// replaces. Ids are unique.
    pub lists: Vec<ListSettings>,
    /// Every profile: presets, then those the config adds or replaces. Names are unique.
    pub profiles: Vec<ProfileSettings>,
    /// Devices, each naming a profile. No address, network or MAC address is claimed twice.
    pub devices: Vec<DeviceSettings>,
    /// `[server] trusted_forwarders`: the forwarders (a router running dnsmasq, say) whose
    /// queries may name the client they forward for, by MAC address or EDNS Client Subnet.
    /// Single addresses, IPv4-mapped ones as IPv4. Part of each policy snapshot, so a reload
    /// applies it. Empty: nobody is believed.
    pub trusted_forwarders: Vec<IpAddr>,
    /// Profile used for clients that match no device.
    pub default_profile: String,
    /// The house's own names, forward zones, rebinding protection and DHCP leases.
    pub local: LocalSettings,
    /// `[querylog]`: which queries are kept, for how long, and where.
    pub querylog: QuerylogSettings,
}

/// Which queries of a device the query log keeps (`[querylog] mode`, `[[device]] querylog`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogMode {
    /// None.
    #[default]
    Off,
    /// Blocked and would-block queries only.
    Blocked,
    /// Every answered query.
    All,
}

impl LogMode {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Blocked => "blocked",
            Self::All => "all",
        }
    }
}

/// `[querylog]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerylogSettings {
    /// The mode of devices that do not set their own (and of unknown clients).
    pub mode: LogMode,
    /// Entries older than this are deleted.
    pub retention: Duration,
    /// The database is kept under this size; the oldest entries go first.
    pub max_bytes: u64,
    /// The SQLite file; `None` (`path = ""`) keeps only the in-memory ring of recent entries.
    pub path: Option<PathBuf>,
    /// Entries the queue to the writer holds; more are dropped (and counted) while it is full.
    pub queue: usize,
}

/// Where a [`Settings`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in defaults (no `--config`).
    BuiltIn,
    /// A config file.
    File(PathBuf),
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// UDP and TCP are bound on each address.
    pub listen: Vec<SocketAddr>,
    /// `/metrics`, `/healthz` and the API.
    pub http: SocketAddr,
    /// Names (lowercase, no port) a request's `Host` may carry besides the listener's own
    /// addresses and `localhost`; any other is refused, against DNS rebinding.
    pub http_hosts: Vec<String>,
    /// Where downloaded lists are kept between runs.
    pub state_dir: PathBuf,
    /// Bearer token of the state-changing API endpoints; `None` turns them off.
    pub api_token: Option<String>,
    /// The file `api_token` was read from: the config file itself, or `api_token_file`
    /// (`metasink check` and start-up warn when others can read it).
    pub token_file: Option<PathBuf>,
}

/// Who may query and how fast: the `[server]` keys read by [`crate::admission::Admission`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Networks whose clients are answered; every other client gets REFUSED. Never empty in a
    /// validated config. IPv4-mapped IPv6 clients are judged as their IPv4 address.
    pub allow_from: Vec<IpNet>,
    /// Sustained queries per second each client (an IPv4 address, or an IPv6 /64) may send;
    /// 0 turns the rate limit off.
    pub rate_limit_qps: u32,
    /// Queries a client may send at once before the sustained rate applies; at least 1.
    pub rate_limit_burst: u32,
}

/// `[download]`: how URL lists are fetched and refreshed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadSettings {
    /// Time between refreshes of a list (a random jitter of up to a tenth is added).
    pub interval: Duration,
    /// Time one download attempt may take, body included.
    pub timeout: Duration,
    /// Attempts per refresh; the delay between them doubles from one second.
    pub attempts: u32,
    /// Largest body accepted.
    pub max_bytes: u64,
    /// Downloads running at once.
    pub concurrency: usize,
}

/// `[cache]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Maximum number of cached answers.
    pub size: usize,
    /// TTLs below this are raised to it.
    pub min_ttl: Duration,
    /// TTLs above this are lowered to it.
    pub max_ttl: Duration,
}

/// One `[[list]]` (or a bundled list).
#[derive(Clone, Debug)]
pub struct ListSettings {
    /// Unique id, used by profiles and in metrics labels.
    pub id: String,
    /// Where its text comes from.
    pub source: ListSource,
    /// How plain entries match; `None` means "as the list's header says, else subdomains".
    pub match_mode: Option<MatchMode>,
    /// TTL of the answers this list blocks, over the profile's; `None` means "as the list's
    /// header says, else the profile's".
    pub blocked_ttl: Option<Duration>,
}

/// Where a list's text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListSource {
    /// Compiled into the binary (`bundled:ID`).
    Bundled(String),
    /// A file on disk; relative paths are resolved against the config file's directory.
    File(PathBuf),
    /// An `http://` or `https://` URL, downloaded in the background and kept in the state
    /// directory.
    Url(String),
}

/// What a blocked name is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// A → 0.0.0.0, AAAA → ::, other types NOERROR with no answer and an SOA.
    Null,
    /// NOERROR with no answer and an SOA, for every type.
    NoData,
    /// NXDOMAIN with an SOA.
    NxDomain,
    /// REFUSED.
    Refused,
}

impl BlockAnswer {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::NoData => "nodata",
            Self::NxDomain => "nxdomain",
            Self::Refused => "refused",
        }
    }
}

/// One `[[profile]]` (or a preset).
#[derive(Clone, Debug)]
pub struct ProfileSettings {
    /// Unique name, used by devices and in metrics labels.
    pub name: String,
    /// Ids of the lists whose names are blocked.
    pub block: Vec<String>,
    /// Ids of the lists whose names are never blocked (allow wins over block).
    pub allow: Vec<String>,
    /// Ids of network lists: an upstream answer with an address inside one of their networks
    /// is blocked (Meta's networks, for `no-meta`).
    pub block_networks: Vec<String>,
    /// How blocked names are answered.
    pub answer: BlockAnswer,
    /// TTL of blocked answers.
    pub blocked_ttl: Duration,
    /// Check the names inside upstream answers (CNAME targets, HTTPS/SVCB targets) too.
    pub inspect_answers: bool,
    /// Enforce its blocks, or only observe them (log and count would-block, answer as allowed).
    pub mode: ProfileMode,
}

/// `[[profile]] mode`: whether a profile's blocks are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProfileMode {
    /// Blocked names get the blocked answer.
    #[default]
    Enforce,
    /// A dry run: blocked names are logged and counted as would-block, and answered.
    Observe,
}

impl ProfileMode {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Observe => "observe",
        }
    }
}

/// One `[[device]]`.
#[derive(Clone, Debug)]
pub struct DeviceSettings {
    /// Unique name, used in metrics labels.
    pub name: String,
    /// Addresses and networks that identify it (a bare address is a /32 or /128).
    pub addresses: Vec<IpNet>,
    /// MAC addresses that identify it, when a trusted forwarder names them.
    pub macs: Vec<MacAddress>,
    /// The profile it uses outside its schedule's windows.
    pub profile: String,
    /// Its own query log mode; `None` follows `[querylog] mode`.
    pub querylog: Option<LogMode>,
    /// Windows of the week with another profile; the first that covers the time wins.
    pub schedule: Vec<Window>,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates config text; `path` is used in error messages and to resolve relative
/// list paths.
pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let raw = raw::parse(text, path)?;
    validate::validate(raw, text, path)
}
