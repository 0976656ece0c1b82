//! Device names from DHCP leases: the lease files of dnsmasq (Pi-hole's DHCP server, most
//! routers) and ISC dhcpd give each client address the host name its device sent, so an
//! unknown client shows as `pixel-7` instead of `192.168.1.57` in `metasink clients`, the
//! query log and `explain`. Never as a metric label: the device label stays the configured
//! devices, so the number of series stays bounded.
//!
//! The format is told apart per file: ISC dhcpd writes `lease ADDRESS { ... }` blocks,
//! dnsmasq one line per lease, `EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID` (`*` for no name; the
//! `duid` line and IPv6 lines, `EXPIRY IAID ADDRESS HOSTNAME DUID`, have the address in the
//! same place). In an ISC file a later block for an address replaces an earlier one (the
//! file is a log, RFC-less but documented in dhcpd.leases(5)), and only `binding state
//! active` leases name anyone.
//!
//! A file is read again when its modification time changes ([`Leases::refresh`]); one that
//! cannot be read keeps the names it last gave. Files and names are capped: a lease file is
//! written by another program, and a broken one must not grow our memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::warn;

use crate::config::local::is_domain_name;

/// The most leases kept from one file.
pub const MAX_LEASES: usize = 65_536;

/// Which DHCP server wrote a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseFormat {
    /// dnsmasq's one line per lease.
    Dnsmasq,
    /// ISC dhcpd's `lease { }` blocks.
    Isc,
}

impl LeaseFormat {
    /// Its name, for `metasink check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dnsmasq => "dnsmasq",
            Self::Isc => "ISC dhcpd",
        }
    }
}

/// The format of a lease file's `text`.
pub fn detect(text: &str) -> LeaseFormat {
    let first = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    match first {
        Some(line)
            if line.starts_with("lease ")
                || line.starts_with("authoring-byte-order")
                || line.starts_with("server-duid")
                || line.starts_with("failover ") =>
        {
            LeaseFormat::Isc
        }
        _ => LeaseFormat::Dnsmasq,
    }
}

/// Address → host name of the leases in `text`.
pub fn parse(text: &str) -> (LeaseFormat, HashMap<IpAddr, Box<str>>) {
    let format = detect(text);
    let names = match format {
        LeaseFormat::Dnsmasq => parse_dnsmasq(text),
        LeaseFormat::Isc => parse_isc(text),
    };
    (format, names)
}

fn parse_dnsmasq(text: &str) -> HashMap<IpAddr, Box<str>> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, _, address, name, ..] = fields[..] else {
            continue;
        };
        if let (Ok(address), Some(name)) = (address.parse::<IpAddr>(), host_name(name))
            && names.len() < MAX_LEASES
        {
            names.insert(address.to_canonical(), name);
        }
    }
    names
}

fn parse_isc(text: &str) -> HashMap<IpAddr, Box<str>> {
    let mut names: HashMap<IpAddr, Box<str>> = HashMap::new();
    let mut lease: Option<(IpAddr, Option<Box<str>>, bool)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("lease ") {
            let address = rest.trim_end_matches('{').trim().parse::<IpAddr>().ok();
            lease = address.map(|address| (address.to_canonical(), None, true));
        } else if line == "}" {
            if let Some((address, name, active)) = lease.take() {
                // The file is a log: the last block of an address is its state now.
                names.remove(&address);
                if let (Some(name), true) = (name, active)
                    && names.len() < MAX_LEASES
                {
                    names.insert(address, name);
                }
            }
        } else if let Some((_, name, active)) = lease.as_mut() {
            if let Some(value) = line.strip_prefix("client-hostname ") {
                *name = host_name(value.trim_end_matches(';').trim().trim_matches('"'));
            } else if let Some(state) = line.strip_prefix("binding state ") {
                *active = state.trim_end_matches(';').trim() == "active";
            }
        }
    }
    names
}

/// A lease's host name as shown: `*` (none) and names that are not host names are dropped.
fn host_name(name: &str) -> Option<Box<str>> {
    let name = name.to_ascii_lowercase();
    (name != "*" && is_domain_name(&name)).then(|| name.into_boxed_str())
}

/// One lease file as last read.
#[derive(Debug)]
struct LeaseFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    format: Option<LeaseFormat>,
    names: HashMap<IpAddr, Box<str>>,
    error: Option<String>,
}

/// The names of every configured lease file.
#[derive(Debug, Default)]
pub struct Leases {
    files: Vec<LeaseFile>,
}

impl Leases {
    /// Reads `paths` now.
    pub fn load(paths: &[PathBuf]) -> Self {
        let mut leases = Self {
            files: (paths.iter())
                .map(|path| LeaseFile {
                    path: path.clone(),
                    modified: None,
                    format: None,
                    names: HashMap::new(),
                    error: None,
                })
                .collect(),
        };
        leases.refresh();
        leases
    }

    /// Reads again each file whose modification time changed; returns whether any did.
    pub fn refresh(&mut self) -> bool {
        let mut changed = false;
        for file in &mut self.files {
            let modified = std::fs::metadata(&file.path)
                .and_then(|m| m.modified())
                .ok();
            if modified.is_some() && modified == file.modified {
                continue;
            }
            match super::read_capped(&file.path) {
                Ok(text) => {
                    let (format, names) = parse(&text);
                    file.format = Some(format);
                    file.names = names;
                    file.error = None;
                    file.modified = modified;
                    changed = true;
                }
                Err(error) => {
                    if file.error.as_deref() != Some(error.as_str()) {
                        warn!(path = %file.path.display(), "lease file not read: {error}");
                    }
                    file.error = Some(error);
                }
            }
        }
        changed
    }

    /// The host name a lease gives `ip`: the first file that names it.
    pub fn name_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.files
            .iter()
            .find_map(|file| file.names.get(&ip).map(|name| &**name))
    }

    /// Each file's path, format, names and read error, for `metasink check`.
    pub fn report(&self) -> Vec<(&Path, Option<LeaseFormat>, usize, Option<&str>)> {
        (self.files.iter())
            .map(|f| {
                (
                    f.path.as_path(),
                    f.format,
                    f.names.len(),
                    f.error.as_deref(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNSMASQ: &str = "1733600000 aa:bb:cc:dd:ee:01 192.168.1.57 Pixel-7 01:aa:bb:cc:dd:ee:01\n\
        1733600000 aa:bb:cc:dd:ee:02 192.168.1.58 * *\n\
        duid 00:01:00:01:2c:aa\n\
        1733600000 1234 fd00::57 laptop 00:01:00:01\n";

    const ISC: &str = "# The format of this file is documented in the dhcpd.leases(5) manual page.\n\
        authoring-byte-order little-endian;\n\n\
        lease 192.168.1.60 {\n  starts 4 2026/12/03 10:00:00;\n  binding state active;\n  \
        hardware ethernet aa:bb:cc:dd:ee:03;\n  client-hostname \"kitchen-tv\";\n}\n\
        lease 192.168.1.61 {\n  binding state active;\n  client-hostname \"old\";\n}\n\
        lease 192.168.1.61 {\n  binding state free;\n}\n\
        lease 192.168.1.62 {\n  binding state active;\n}\n";

    #[test]
    fn dnsmasq_leases_name_their_addresses() {
        let (format, names) = parse(DNSMASQ);
        assert_eq!(format, LeaseFormat::Dnsmasq);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            names.get(&ip("192.168.1.57")).map(|n| &**n),
            Some("pixel-7")
        );
        assert_eq!(names.get(&ip("fd00::57")).map(|n| &**n), Some("laptop"));
        assert_eq!(names.len(), 2, "`*` names no one: {names:?}");
    }

    #[test]
    fn isc_leases_keep_the_last_active_block_of_each_address() {
        let (format, names) = parse(ISC);
        assert_eq!(format, LeaseFormat::Isc);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            names.get(&ip("192.168.1.60")).map(|n| &**n),
            Some("kitchen-tv")
        );
        assert_eq!(names.get(&ip("192.168.1.61")), None, "freed since");
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn files_are_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        std::fs::write(&path, DNSMASQ).unwrap();
        let missing = dir.path().join("missing.leases");
        let mut leases = Leases::load(&[missing, path.clone()]);
        let ip: IpAddr = "192.168.1.57".parse().unwrap();
        assert_eq!(leases.name_of(ip), Some("pixel-7"));
        assert_eq!(
            leases.name_of("::ffff:192.168.1.57".parse().unwrap()),
            Some("pixel-7")
        );
        assert!(!leases.refresh(), "unchanged: not read again");
        std::fs::write(&path, "1 aa:bb:cc:dd:ee:01 192.168.1.57 renamed *\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(leases.refresh());
        assert_eq!(leases.name_of(ip), Some("renamed"));
        let report = leases.report();
        assert!(report[0].3.is_some(), "the missing file is reported");
        assert_eq!(report[1].1, Some(LeaseFormat::Dnsmasq));
    }
}
