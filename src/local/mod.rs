//! The local network: what the house answers itself, and what it sends where.
//!
//! [`LocalZones`] is compiled from the config (and the hosts files it names) into each policy
//! snapshot, so a reload swaps it with everything else. Its questions are pure look-ups:
//!
//! 1. a local name (`[[record]]`, hosts files, the PTR records of their addresses) → an
//!    authoritative answer ([`records`]);
//! 2. a name inside a `[[forward]]` zone → that forward's upstreams, the most specific zone
//!    winning ([`forward`]);
//! 3. a name in a private reverse zone (RFC 6303) or `home.arpa` (RFC 8375) → NXDOMAIN with
//!    the zone's SOA, answered at home ([`reverse`]).
//!
//! In that order: a local PTR or a forward zone covers part of a private zone, and what the
//! house says about its own names beats any default. The answers are plain data
//! ([`LocalAnswer`]); `dns` writes them on the wire.
//!
//! [`rebind`] says which upstream answers DNS rebinding protection blocks; [`leases`] reads
//! the DHCP servers' lease files that name the house's clients.

mod forward;
pub mod hosts;
pub mod leases;
pub mod rebind;
mod records;
pub mod reverse;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use tracing::warn;

pub use self::forward::ForwardZones;
use self::hosts::Skipped;
pub use self::leases::Leases;
use self::rebind::RebindAllow;
use self::records::Records;
use crate::config::{LOCAL_TTL, LocalSettings};

/// Negative TTL of the private zones' NXDOMAIN (their SOA MINIMUM): short enough that a
/// record added for one of their names shows up soon after a reload.
pub const PRIVATE_ZONE_TTL: u32 = 300;

/// The record types local data has, by their codes (RFC 1035 §3.2.2, RFC 3596).
pub mod qtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Alias.
    pub const CNAME: u16 = 5;
    /// Reverse pointer.
    pub const PTR: u16 = 12;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Every type.
    pub const ANY: u16 = 255;
}

/// The data of one local record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias target.
    Cname(Box<str>),
    /// One TXT string.
    Txt(Box<str>),
    /// A reverse pointer's target.
    Ptr(Box<str>),
}

impl LocalData {
    /// Its type code.
    pub fn qtype(&self) -> u16 {
        match self {
            Self::A(_) => qtype::A,
            Self::Aaaa(_) => qtype::AAAA,
            Self::Cname(_) => qtype::CNAME,
            Self::Txt(_) => qtype::TXT,
            Self::Ptr(_) => qtype::PTR,
        }
    }
}

/// One record of a local answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRecord {
    /// Its owner name (the question's, or a CNAME target's).
    pub owner: Box<str>,
    /// Its TTL.
    pub ttl: u32,
    /// Its data.
    pub data: LocalData,
}

/// The response code of a local answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// The name exists (with or without data of the type asked).
    NoError,
    /// The name does not exist.
    NxDomain,
}

/// Why the house answered itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    /// A local name or the PTR of a local address.
    Record,
    /// A name of a private reverse zone or `home.arpa` that nothing local covers.
    PrivateZone,
}

/// An answer given at home, authoritatively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAnswer {
    /// NOERROR or NXDOMAIN.
    pub rcode: Rcode,
    /// The answer section.
    pub records: Vec<LocalRecord>,
    /// The SOA of a negative answer: its owner (the zone) and its TTL and MINIMUM.
    pub soa: Option<(Box<str>, u32)>,
    /// Why.
    pub kind: LocalKind,
}

/// What the local stage makes of a question about `'n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Local<'n> {
    /// Answered at home.
    Answer(LocalAnswer),
    /// Sent to the upstreams of `[[forward]]` number `.0` only (for the zone `.1`, a suffix
    /// of the name: no allocation on the forwarding path).
    Forward(usize, &'n str),
}

/// The largest hosts or lease file read: files another program writes (an ISC lease file
/// grows between its rewrites) must not grow our memory with them.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The text of `path`, if it holds at most [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("{size} bytes, more than the {MAX_FILE_BYTES} read"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// How reading one hosts file went, for `metasink check` and the log.
#[derive(Clone, Debug)]
pub struct HostsReport {
    /// The file.
    pub path: PathBuf,
    /// Addresses read (one per usable line).
    pub entries: usize,
    /// Lines skipped: how many, and the first few.
    pub skipped: Skipped,
    /// Why it could not be read at all.
    pub error: Option<String>,
}

/// The local network's part of a policy snapshot.
#[derive(Debug, Default)]
pub struct LocalZones {
    records: Records,
    forwards: ForwardZones,
    /// `None`: rebinding protection is off.
    rebind: Option<RebindAllow>,
    hosts: Vec<HostsReport>,
    /// `[server] dhcp_leases`: read by the records layer, which follows the snapshot in force.
    lease_files: Vec<PathBuf>,
}

impl LocalZones {
    /// Compiles `settings`, reading its hosts files now. A hosts file that cannot be read is
    /// reported and left out; the rest still applies.
    pub fn compile(settings: &LocalSettings) -> Self {
        let mut entries = Vec::new();
        let mut reports = Vec::new();
        for path in &settings.hosts {
            let report = match read_capped(path) {
                Ok(text) => {
                    let (read, skipped) = hosts::parse(&text);
                    let count = read.len();
                    entries.extend(read);
                    HostsReport {
                        path: path.clone(),
                        entries: count,
                        skipped,
                        error: None,
                    }
                }
                Err(error) => {
                    warn!(path = %path.display(), "hosts file not read: {error}");
                    HostsReport {
                        path: path.clone(),
                        entries: 0,
                        skipped: Skipped::default(),
                        error: Some(error),
                    }
                }
            };
            reports.push(report);
        }
        let hosts_ttl = u32::try_from(LOCAL_TTL.as_secs()).unwrap_or(u32::MAX);
        let forwards = ForwardZones::new(
            (settings.forwards.iter().enumerate())
                .flat_map(|(index, f)| f.zones.iter().map(move |zone| (index, zone.as_str()))),
        );
        Self {
            records: Records::new(&settings.records, &entries, hosts_ttl),
            forwards,
            rebind: settings
                .rebind_protection
                .then(|| RebindAllow::new(settings.rebind_allow.iter().map(String::as_str))),
            hosts: reports,
            lease_files: settings.dhcp_leases.clone(),
        }
    }

    /// The local stage for `name` (lower-case, no trailing dot) of type `qtype`: `None` when
    /// the question goes to the general upstreams.
    pub fn resolve<'n>(&self, name: &'n str, qtype: u16) -> Option<Local<'n>> {
        if let Some(answer) = self.records.answer(name, qtype) {
            return Some(Local::Answer(answer));
        }
        if let Some((index, zone)) = self.forwards.find(name) {
            return Some(Local::Forward(index, zone));
        }
        let zone = reverse::private_zone(name)?;
        Some(Local::Answer(LocalAnswer {
            rcode: Rcode::NxDomain,
            records: Vec::new(),
            soa: Some((zone.into(), PRIVATE_ZONE_TTL)),
            kind: LocalKind::PrivateZone,
        }))
    }

    /// Whether rebinding protection blocks an upstream answer for `name` that holds an
    /// address inside the house (see [`rebind`]).
    pub fn blocks_rebinding(&self, name: &str) -> bool {
        self.rebind
            .as_ref()
            .is_some_and(|allow| !allow.allows(name))
    }

    /// Whether rebinding protection is on.
    pub fn rebind_protection(&self) -> bool {
        self.rebind.is_some()
    }

    /// How many local names (PTR names included) there are.
    pub fn names(&self) -> usize {
        self.records.name_count()
    }

    /// How each hosts file was read.
    pub fn hosts_reports(&self) -> &[HostsReport] {
        &self.hosts
    }

    /// The DHCP lease files that name unknown clients ([`Leases`]).
    pub fn lease_files(&self) -> &[PathBuf] {
        &self.lease_files
    }
}

/// Whether `ip` is one that rebinding protection guards (re-exported for `dns`).
pub fn is_rebinding_target(ip: IpAddr) -> bool {
    rebind::is_rebinding_target(ip)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::config::{ForwardSettings, RecordSettings};

    fn settings(hosts: Vec<PathBuf>) -> LocalSettings {
        LocalSettings {
            records: vec![RecordSettings {
                name: "nas.lan".to_owned(),
                ttl: Duration::from_secs(300),
                a: vec!["192.168.1.10".parse().unwrap()],
                aaaa: Vec::new(),
                cname: None,
                txt: Vec::new(),
            }],
            hosts,
            forwards: vec![
                ForwardSettings {
                    zones: vec!["lan".to_owned(), "168.192.in-addr.arpa".to_owned()],
                    upstreams: Vec::new(),
                },
                ForwardSettings {
                    zones: vec!["2.168.192.in-addr.arpa".to_owned()],
                    upstreams: Vec::new(),
                },
            ],
            rebind_protection: true,
            rebind_allow: vec!["plex.direct".to_owned()],
            dhcp_leases: Vec::new(),
        }
    }

    #[test]
    fn local_names_then_forward_zones_then_private_zones() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "10.0.0.5 pi.home.arpa\nbad line").unwrap();
        let missing = PathBuf::from("/nonexistent/hosts");
        let zones = LocalZones::compile(&settings(vec![file.path().to_owned(), missing]));
        let answer = |name: &str| match zones.resolve(name, qtype::PTR) {
            Some(Local::Answer(answer)) => Some(answer),
            _ => None,
        };
        // 1. The PTR of a local address, though its zone is forwarded.
        assert_eq!(
            answer("10.1.168.192.in-addr.arpa").unwrap().kind,
            LocalKind::Record
        );
        assert_eq!(
            answer("5.0.0.10.in-addr.arpa").unwrap().kind,
            LocalKind::Record
        );
        assert!(matches!(
            zones.resolve("pi.home.arpa", qtype::A),
            Some(Local::Answer(_))
        ));
        // 2. Forward zones, the most specific first, before the private zones' NXDOMAIN.
        assert_eq!(
            zones.resolve("tv.lan", qtype::A),
            Some(Local::Forward(0, "lan"))
        );
        assert_eq!(
            zones.resolve("9.1.168.192.in-addr.arpa", qtype::PTR),
            Some(Local::Forward(0, "168.192.in-addr.arpa"))
        );
        assert_eq!(
            zones.resolve("9.2.168.192.in-addr.arpa", qtype::PTR),
            Some(Local::Forward(1, "2.168.192.in-addr.arpa"))
        );
        // 3. Private zones nothing covers.
        let nx = answer("9.0.0.10.in-addr.arpa").unwrap();
        assert_eq!(
            (nx.rcode, nx.kind),
            (Rcode::NxDomain, LocalKind::PrivateZone)
        );
        assert_eq!(nx.soa, Some(("10.in-addr.arpa".into(), PRIVATE_ZONE_TTL)));
        assert_eq!(answer("tv.home.arpa").unwrap().rcode, Rcode::NxDomain);
        // Everything else goes upstream.
        assert_eq!(zones.resolve("www.example.com", qtype::A), None);
        assert_eq!(zones.resolve("8.8.8.8.in-addr.arpa", qtype::PTR), None);
        // The hosts files' reports.
        let reports = zones.hosts_reports();
        assert_eq!((reports[0].entries, reports[0].skipped.count), (1, 1));
        assert!(reports[1].error.is_some());
    }

    #[test]
    fn a_hosts_file_larger_than_the_cap_is_reported_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: nothing is written, only the size.
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let zones = LocalZones::compile(&settings(vec![path]));
        let error = zones.hosts_reports()[0]
            .error
            .as_deref()
            .unwrap_or_default();
        assert!(error.contains("more than"), "{error}");
    }

    #[test]
    fn rebinding_is_blocked_only_when_on_and_not_allowed() {
        let on = LocalZones::compile(&settings(Vec::new()));
        assert!(on.blocks_rebinding("evil.example"));
        assert!(!on.blocks_rebinding("abc.plex.direct"));
        let off = LocalZones::compile(&LocalSettings::default());
        assert!(!off.blocks_rebinding("evil.example"));
    }
}
