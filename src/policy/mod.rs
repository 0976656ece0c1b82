//! The compiled policy: one immutable snapshot of lists, profiles and devices that every
//! query reads through [`PolicyHandle`], and that reload replaces whole.
//!
//! A snapshot answers two questions fast: which device (and so which profile and metric
//! handles) is this client, and which lists contain this name. Everything else (parsing,
//! reference checks, label resolution) happened when it was built ([`compile()`]).

mod compile;
mod devices;
pub mod mask;
pub mod matcher;
mod networks;
mod profile;
mod schedules;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use jiff::civil::DateTime;

pub use compile::{UNKNOWN_DEVICE, compile, compile_after};
pub use devices::{DeviceIndex, DeviceIndexMap, Identified, IdentifiedBy};
pub use mask::{ListIndex, ListMask, MAX_LISTS};
pub use networks::NetworkSet;
pub use profile::Profile;

use crate::config::{ListSettings, ListSource, LogMode, Window};
use crate::dns::{Forward, Upstreams};
use crate::lists::MatchMode;
use crate::lists::parse::{InvalidLine, ParseReport};
use crate::local::LocalZones;
use crate::metrics::{ClientCounters, Metrics};
use crate::neighbours::Neighbours;
use crate::net::ForwardedClient;
use matcher::Matcher;
use schedules::ConfiguredDevice;

/// One snapshot.
pub struct Policy {
    generation: u64,
    lists: Vec<ListInfo>,
    matcher: Matcher,
    /// The networks of each network list (`block_networks`), by list.
    networks: Vec<(ListIndex, NetworkSet)>,
    profiles: Vec<Profile>,
    devices: Vec<ConfiguredDevice>,
    /// Clients that match no device: the default profile.
    unknown: Device,
    device_index: DeviceIndexMap,
    /// Local names, forward zones, private zones, rebinding protection.
    local: LocalZones,
    /// The upstreams of each `[[forward]]`, in order (the next snapshot takes over those it
    /// keeps, health and all: see [`compile_after`]).
    forward_upstreams: Vec<Arc<Upstreams>>,
    /// See [`Self::meta_lists`].
    meta_lists: ListMask,
}

/// A device of the snapshot (or the stand-in for unknown clients).
pub struct Device {
    /// Its name (a metric label).
    pub name: String,
    /// Index of its profile.
    pub profile: usize,
    /// Which of its queries the query log keeps (its own mode, else `[querylog] mode`).
    pub querylog: LogMode,
    /// Its metric handles.
    pub counters: ClientCounters,
}

/// A list of the snapshot and how loading it went.
#[derive(Debug, Clone)]
pub struct ListInfo {
    /// Its id.
    pub id: String,
    /// Where it came from (`bundled:ID` or a path).
    pub origin: String,
    /// Its source.
    pub source: ListSource,
    /// The match mode the config asked for, if any.
    pub configured_match: Option<MatchMode>,
    /// Whether its lines are networks (a `block_networks` list) rather than names.
    pub networks: bool,
    /// `blocked_ttl` of its `[[list]]`, if any.
    pub configured_blocked_ttl: Option<Duration>,
    /// The title, description, confidence and kind its header gives, if any.
    pub title: Option<String>,
    /// See `title`.
    pub description: Option<String>,
    /// See `title`.
    pub confidence: Option<String>,
    /// See `title`.
    pub kind: Option<String>,
    /// The match mode its header gives, if any.
    pub header_match: Option<MatchMode>,
    /// `# blocked_ttl:` of its header, if any.
    pub header_blocked_ttl: Option<Duration>,
    /// Entries loaded.
    pub entries: usize,
    /// Lines skipped as invalid.
    pub invalid_lines: usize,
    /// A few of them, for `check`.
    pub invalid_samples: Vec<InvalidLine>,
    /// Why it could not be loaded at all.
    pub load_error: Option<String>,
}

impl ListInfo {
    fn new(settings: &ListSettings, origin: String) -> Self {
        Self {
            id: settings.id.clone(),
            origin,
            source: settings.source.clone(),
            configured_match: settings.match_mode,
            networks: false,
            configured_blocked_ttl: settings.blocked_ttl,
            title: None,
            description: None,
            confidence: None,
            kind: None,
            header_match: None,
            header_blocked_ttl: None,
            entries: 0,
            invalid_lines: 0,
            invalid_samples: Vec::new(),
            load_error: None,
        }
    }

    fn record(&mut self, report: ParseReport) {
        self.title = report.header.title;
        self.description = report.header.description;
        self.confidence = report.header.confidence;
        self.kind = report.header.kind;
        self.header_match = report.header.match_mode;
        self.header_blocked_ttl = report.header.blocked_ttl;
        self.entries = report.entries;
        self.invalid_lines = report.invalid_count;
        self.invalid_samples = report.invalid_samples;
    }

    /// How plain entries of this list match: config, else header, else subdomains.
    pub fn match_mode(&self) -> MatchMode {
        self.configured_match
            .or(self.header_match)
            .unwrap_or(MatchMode::Subdomains)
    }

    /// The TTL of answers this list blocks, when it sets one: its `[[list]]`'s, else its
    /// header's. It wins over the profile's, because the list knows how its names are retried
    /// (WhatsApp retries blocked telemetry in a storm when the answer expires every 10 s).
    pub fn blocked_ttl(&self) -> Option<Duration> {
        self.configured_blocked_ttl.or(self.header_blocked_ttl)
    }
}

impl Policy {
    /// Its number: each reload builds the next one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Publishes how each list loaded (`metasink_list_*`), and creates the refresh series of
    /// downloaded lists (new ones too, after a reload) at 0. Called for the snapshot in force
    /// once it is in force: a rebuild that is refused must not report its lists.
    pub fn record_list_metrics(&self, metrics: &Metrics) {
        for list in &self.lists {
            if let ListSource::Url(_) = list.source {
                metrics.create_list_refresh_series(&list.id);
            }
            metrics.record_list_load(
                &list.id,
                list.load_error.is_none(),
                list.entries,
                list.invalid_lines,
            );
        }
    }

    /// The device of a query from `address` naming `forwarded`, with `neighbours` for the MAC
    /// address of a client on the LAN, or the unknown-client stand-in; and how it was
    /// identified (see [`DeviceIndexMap::identify`]).
    pub fn identify(
        &self,
        address: IpAddr,
        forwarded: &ForwardedClient,
        neighbours: &Neighbours,
    ) -> (&Device, Identified) {
        let identified = self
            .device_index
            .identify(address, forwarded, |address| neighbours.mac_of(address));
        let device = (identified.device)
            .and_then(|index| self.devices.get(index))
            .map(ConfiguredDevice::now);
        (device.unwrap_or(&self.unknown), identified)
    }

    /// The lists whose names are Meta's (`all-meta`, `all-meta-brands`): what the observe
    /// view watches.
    pub fn meta_lists(&self) -> ListMask {
        self.meta_lists
    }

    /// Puts in force, for every device with a schedule, the profile of local time `time`.
    /// Called when the snapshot is built and once a second after: a query only reads it.
    pub fn apply_schedules(&self, time: DateTime) {
        for device in &self.devices {
            device.apply(time);
        }
    }

    /// The schedule of the device called `name` (empty without one).
    pub fn schedule_of(&self, name: &str) -> &[Window] {
        self.configured(name).map_or(&[], ConfiguredDevice::windows)
    }

    /// The profile the device called `name` has outside its schedule's windows.
    pub fn own_profile_of(&self, name: &str) -> Option<&Profile> {
        let own = self.configured(name)?.variants().first()?;
        Some(self.profile_of(own))
    }

    /// Every configured device as it is now.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().map(ConfiguredDevice::now)
    }

    fn configured(&self, name: &str) -> Option<&ConfiguredDevice> {
        self.devices.iter().find(|device| device.now().name == name)
    }

    /// Whether `address` is a trusted forwarder (`server.trusted_forwarders`).
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.device_index.trusts(address)
    }

    /// The profile of `device`.
    pub fn profile_of(&self, device: &Device) -> &Profile {
        &self.profiles[device.profile]
    }

    /// The profile called `name`.
    pub fn profile_named(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|profile| profile.name == name)
    }

    /// Every profile.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The lists containing `name` (lower-case, no trailing dot).
    pub fn lists_containing(&self, name: &str) -> ListMask {
        self.matcher.lookup(name)
    }

    /// For each of `addresses`, the network lists holding it (what the pipeline keeps with a
    /// cached answer for the policy generation, as it does with the lists of its names).
    pub fn networks_holding(&self, addresses: &[IpAddr]) -> Box<[ListMask]> {
        addresses
            .iter()
            .map(|&address| {
                self.networks_of(address)
                    .map(|(list, _)| list)
                    .collect::<ListMask>()
            })
            .collect()
    }

    /// Each network list holding `address`, with the network that does.
    pub fn networks_of(&self, address: IpAddr) -> impl Iterator<Item = (ListIndex, IpNet)> + '_ {
        self.networks
            .iter()
            .filter_map(move |(list, set)| Some((*list, set.network_of(address)?)))
    }

    /// The list at `index`.
    pub fn list(&self, index: ListIndex) -> &ListInfo {
        &self.lists[usize::from(index)]
    }

    /// The TTL of an answer `profile` blocks because of `list`: the list's own when it sets one
    /// ([`ListInfo::blocked_ttl`]), else the profile's.
    pub fn blocked_ttl(&self, profile: &Profile, list: ListIndex) -> Duration {
        self.list(list).blocked_ttl().unwrap_or(profile.blocked_ttl)
    }

    /// Every list, by index.
    pub fn lists(&self) -> &[ListInfo] {
        &self.lists
    }

    /// The matcher, for `explain`.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The local network's names and zones.
    pub fn local(&self) -> &LocalZones {
        &self.local
    }

    /// The upstreams of `[[forward]]` number `index` (as [`LocalZones::resolve`] gives it).
    pub fn forward_upstreams(&self, index: usize) -> Arc<dyn Forward> {
        self.forward_upstreams[index].clone()
    }

    /// Whether `device` is the stand-in for clients that match no device.
    pub fn is_unknown(&self, device: &Device) -> bool {
        std::ptr::eq(device, &self.unknown)
    }

    /// The stand-in for clients that match no device.
    pub fn unknown_device(&self) -> &Device {
        &self.unknown
    }

    /// The EDNS Client Subnet scope of an answer that depended on which device the client
    /// `subnet` a trusted forwarder named is (RFC 7871 §7.3): the prefix length of the device
    /// network (or address) that matched it; for a subnet that matched none (the default
    /// profile), the subnet's own length, as nothing says the rest of a wider network gets
    /// the same answer.
    pub fn ecs_scope(&self, subnet: IpNet) -> u8 {
        self.device_index
            .subnet_scope(subnet)
            .unwrap_or(subnet.prefix_len())
    }

    /// The profile of the unknown-client stand-in (the default profile).
    pub fn default_profile(&self) -> &Profile {
        self.profile_of(&self.unknown)
    }
}

/// The current snapshot, shared by every query; reload swaps in a new one atomically, and a
/// query in flight keeps the one it started with.
pub type PolicyHandle = Arc<ArcSwap<Policy>>;
