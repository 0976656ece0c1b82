//! The kernel's IPv4 neighbour (ARP) table: which MAC address a client on the LAN has, so a
//! `[[device]]` matched by MAC address is found whatever IP address DHCP gave it today, as
//! Pi-hole and AdGuard Home do.
//!
//! The table is `/proc/self/net/arp`, read again when the copy is [`REFRESH`] old, or [`MISS_REFRESH`]
//! old when it does not know the client (a device that just joined). One reader at a time; the
//! others use the copy they have. The file is small and in memory, so the read costs
//! microseconds, and it only happens for clients no exact address matches, and only while some
//! device is matched by MAC address (see [`crate::policy::DeviceIndexMap::identify`]).
//!
//! IPv6 neighbours are not in `/proc` (only netlink has them): an IPv6 client is found by MAC
//! address only when a trusted forwarder names it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::warn;

use crate::net::MacAddress;

/// Where Linux shows the IPv4 neighbour table of this process's network namespace. Not
/// `/proc/net/arp`: the systemd unit's `ProcSubset=pid` hides `/proc/net`, but not
/// `/proc/self/net`.
const ARP_TABLE: &str = "/proc/self/net/arp";
/// Age at which the copy is read again.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Age at which a client missing from the copy makes it be read again.
pub const MISS_REFRESH: Duration = Duration::from_secs(1);
/// `ATF_COM` in the Flags column: the entry is complete (the MAC address is known).
const FLAG_COMPLETE: u32 = 0x2;

/// The neighbour table, as last read.
pub struct Neighbours {
    path: PathBuf,
    copy: ArcSwap<Copy>,
    reading: AtomicBool,
    /// Whether an unreadable table was reported already (once is enough).
    warned: AtomicBool,
}

/// One reading of the table.
struct Copy {
    read_at: Option<Instant>,
    macs: HashMap<Ipv4Addr, MacAddress>,
}

impl Default for Neighbours {
    fn default() -> Self {
        Self::from_file(ARP_TABLE)
    }
}

impl Neighbours {
    /// The table in `path` (a file in `/proc/net/arp`'s format), not read yet.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            copy: ArcSwap::from_pointee(Copy {
                read_at: None,
                macs: HashMap::new(),
            }),
            reading: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// The MAC address of `client`, if it is an IPv4 neighbour.
    pub fn mac_of(&self, client: IpAddr) -> Option<MacAddress> {
        let IpAddr::V4(client) = client.to_canonical() else {
            return None;
        };
        let copy = self.copy.load();
        let mac = copy.macs.get(&client).copied();
        let age = copy.read_at.map(|at| at.elapsed());
        let limit = if mac.is_some() { REFRESH } else { MISS_REFRESH };
        if age.is_some_and(|age| age < limit) {
            return mac;
        }
        match self.read() {
            Some(copy) => copy.macs.get(&client).copied(),
            None => mac,
        }
    }

    /// Reads the table again, unless another thread is at it; the new copy, if read.
    fn read(&self) -> Option<Arc<Copy>> {
        if self.reading.swap(true, Ordering::Acquire) {
            return None;
        }
        // Lowered however this ends, or the copy would never be read again.
        let _turn = ReadingTurn(&self.reading);
        let macs = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse_arp_table(&text),
            Err(error) => {
                // Only asked while some device has a MAC address: it will never match a
                // client that queries directly, which the household should hear about once.
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(%error, path = %self.path.display(), "the neighbour (ARP) table cannot be read: devices matched by MAC address are found only when a trusted forwarder names them");
                }
                HashMap::new()
            }
        };
        let copy = Arc::new(Copy {
            read_at: Some(Instant::now()),
            macs,
        });
        self.copy.store(copy.clone());
        Some(copy)
    }
}

/// Holds the one reader's turn; gives it back when dropped.
struct ReadingTurn<'a>(&'a AtomicBool);

impl Drop for ReadingTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The complete entries of an ARP table text: `IP  HW-type  Flags  HW-address  Mask
/// Device` after a header line. Incomplete entries (a neighbour that did not answer) and lines
/// that do not read are skipped.
fn parse_arp_table(text: &str) -> HashMap<Ipv4Addr, MacAddress> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let ip = columns.next()?.parse().ok()?;
            let _hw_type = columns.next()?;
            let flags = columns.next()?.strip_prefix("0x")?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let mac: MacAddress = columns.next()?.parse().ok()?;
            (flags & FLAG_COMPLETE != 0 && mac.0 != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.70     0x1         0x2         aa:bb:cc:dd:ee:01     *        eth0
192.168.1.71     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.72     0x1         0x6         AA:BB:CC:DD:EE:02     *        eth0
garbage line
192.168.1.73     0x1         0x2         not-a-mac             *        eth0
";

    fn mac(text: &str) -> MacAddress {
        text.parse().unwrap()
    }

    #[test]
    fn complete_entries_are_read_and_the_rest_skipped() {
        let table = parse_arp_table(TABLE);
        assert_eq!(table.len(), 2, "{table:?}");
        assert_eq!(
            table.get(&Ipv4Addr::new(192, 168, 1, 70)),
            Some(&mac("aa:bb:cc:dd:ee:01"))
        );
        assert_eq!(
            table.get(&Ipv4Addr::new(192, 168, 1, 72)),
            Some(&mac("aa:bb:cc:dd:ee:02")),
            "a permanent entry (ATF_PERM) is complete too"
        );
    }

    #[test]
    fn a_client_missing_from_the_copy_has_it_read_again_soon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arp");
        std::fs::write(&path, TABLE).unwrap();
        let neighbours = Neighbours::from_file(&path);
        let newcomer: IpAddr = "192.168.1.80".parse().unwrap();
        assert_eq!(
            neighbours.mac_of("::ffff:192.168.1.70".parse().unwrap()),
            Some(mac("aa:bb:cc:dd:ee:01"))
        );
        assert_eq!(neighbours.mac_of(newcomer), None);

        std::fs::write(
            &path,
            format!(
                "{TABLE}192.168.1.80     0x1         0x2         aa:bb:cc:dd:ee:80     *  eth0\n"
            ),
        )
        .unwrap();
        assert_eq!(neighbours.mac_of(newcomer), None, "the copy is fresh");
        std::thread::sleep(MISS_REFRESH);
        assert_eq!(neighbours.mac_of(newcomer), Some(mac("aa:bb:cc:dd:ee:80")));
        assert_eq!(neighbours.mac_of("fd00::70".parse().unwrap()), None);
    }

    #[test]
    fn an_unreadable_table_knows_nobody() {
        let neighbours = Neighbours::from_file("/nonexistent/arp");
        assert_eq!(neighbours.mac_of("192.168.1.70".parse().unwrap()), None);
    }
}
