//! The kernel's neighbour tables (ARP for IPv4, neighbour discovery for IPv6): which MAC
//! address a client on the LAN has, so a `[[device]]` matched by MAC address is found whatever
//! IP address DHCP (or IPv6 privacy addressing) gave it today, as Pi-hole and AdGuard Home do.
//!
//! The tables are read over rtnetlink (an `RTM_GETNEIGH` dump, what `ip neigh` shows), both
//! families in one request; the systemd unit allows `AF_NETLINK`. The copy is read again when
//! it is [`REFRESH`] old, or [`MISS_REFRESH`] old when it does not know the client (a device
//! that just joined). One reader at a time; the others use the copy they have. A dump of a
//! household's table takes microseconds, and it only happens for clients no exact address
//! matches, and only while some device is matched by MAC address (see
//! [`crate::policy::DeviceIndexMap::identify`]).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tracing::warn;

use crate::net::MacAddress;

/// Age at which the copy is read again.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Age at which a client missing from the copy makes it be read again.
pub const MISS_REFRESH: Duration = Duration::from_secs(1);
/// How long a dump may keep the reader waiting (the kernel answers at once; this only bounds
/// the worst case on the query path).
const DUMP_TIMEOUT: Duration = Duration::from_millis(200);
/// Room for one datagram of a dump (the kernel fills about a page per datagram).
const DATAGRAM_ROOM: usize = 32 * 1024;

/// Client address → MAC address.
pub type Table = HashMap<IpAddr, MacAddress>;

/// Reads a [`Table`].
type Reader = Box<dyn Fn() -> io::Result<Table> + Send + Sync>;

/// The neighbour tables, as last read.
pub struct Neighbours {
    read_table: Reader,
    copy: ArcSwap<Copy>,
    reading: AtomicBool,
    /// Whether an unreadable table was reported already (once is enough).
    warned: AtomicBool,
}

/// One reading of the table.
struct Copy {
    read_at: Option<Instant>,
    macs: Table,
}

impl Default for Neighbours {
    /// The kernel's tables.
    fn default() -> Self {
        Self::with_reader(kernel_table)
    }
}

impl Neighbours {
    /// The table `read_table` gives, not read yet.
    pub fn with_reader(read_table: impl Fn() -> io::Result<Table> + Send + Sync + 'static) -> Self {
        Self {
            read_table: Box::new(read_table),
            copy: ArcSwap::from_pointee(Copy {
                read_at: None,
                macs: Table::new(),
            }),
            reading: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// The MAC address of `client`, if it is a neighbour.
    pub fn mac_of(&self, client: IpAddr) -> Option<MacAddress> {
        let client = client.to_canonical();
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
        let macs = (self.read_table)().unwrap_or_else(|error| {
            // Only asked while some device has a MAC address: it will never match a client
            // that queries directly, which the household should hear about once.
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(%error, "the neighbour (ARP/NDP) table cannot be read: devices matched by MAC address are found only when a trusted forwarder names them");
            }
            Table::new()
        });
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

/// The complete entries of the kernel's neighbour tables, IPv4 and IPv6.
pub fn kernel_table() -> io::Result<Table> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(DUMP_TIMEOUT))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    let dump = RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default());
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(dump));
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;

    let mut table = Table::new();
    let mut datagram = vec![0; DATAGRAM_ROOM];
    loop {
        let received = socket.recv(&mut &mut datagram[..], 0)?;
        if read_datagram(&datagram[..received.min(DATAGRAM_ROOM)], &mut table)? {
            return Ok(table);
        }
    }
}

/// Adds the complete entries in one datagram of a neighbour dump to `table`; whether the dump
/// is over.
fn read_datagram(mut bytes: &[u8], table: &mut Table) -> io::Result<bool> {
    while !bytes.is_empty() {
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .map_err(|error| io::Error::other(error.to_string()))?;
        match message.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(error) => return Err(io::Error::other(format!("{error:?}"))),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(entry)) => {
                table.extend(complete_entry(&entry));
            }
            _ => {}
        }
        // Messages start on 4-byte boundaries (NLMSG_ALIGN); a zero length would never end.
        let length = (message.header.length as usize).next_multiple_of(4);
        if length == 0 {
            break;
        }
        bytes = bytes.get(length..).unwrap_or_default();
    }
    Ok(false)
}

/// The address and MAC address of `entry`, if the kernel knows the MAC address (the entry is
/// usable, not waiting for an answer or failed) and it is an Ethernet-style one.
fn complete_entry(entry: &NeighbourMessage) -> Option<(IpAddr, MacAddress)> {
    let usable = matches!(
        entry.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if !usable {
        return None;
    }
    let mut address = None;
    let mut mac = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                address = Some(IpAddr::V4(*ip));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                address = Some(IpAddr::V6(*ip));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(&bytes[..])
                    .ok()
                    .filter(|mac| *mac != [0; 6]);
            }
            _ => {}
        }
    }
    Some((address?.to_canonical(), MacAddress(mac?)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use netlink_packet_core::DoneMessage;
    use netlink_packet_route::AddressFamily;

    use super::*;

    fn mac(text: &str) -> MacAddress {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A neighbour entry for `address` as the kernel sends it.
    fn entry(address: &str, lladdr: &[u8], state: NeighbourState) -> Vec<u8> {
        let mut message = NeighbourMessage::default();
        let (family, destination) = match ip(address) {
            IpAddr::V4(ip) => (AddressFamily::Inet, NeighbourAddress::Inet(ip)),
            IpAddr::V6(ip) => (AddressFamily::Inet6, NeighbourAddress::Inet6(ip)),
        };
        message.header.family = family;
        message.header.state = state;
        message.attributes = vec![
            NeighbourAttribute::Destination(destination),
            NeighbourAttribute::LinkLayerAddress(lladdr.to_vec()),
        ];
        serialize(NetlinkPayload::from(RouteNetlinkMessage::NewNeighbour(
            message,
        )))
    }

    fn serialize(payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), payload);
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn usable_entries_of_both_families_are_read_and_the_rest_skipped() {
        let tablet = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01];
        let phone = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x02];
        let entries: [(&str, &[u8], NeighbourState); 5] = [
            ("192.168.1.70", &tablet, NeighbourState::Reachable),
            ("fd00::7", &phone, NeighbourState::Stale),
            ("192.168.1.71", &[0; 6], NeighbourState::Incomplete),
            ("192.168.1.72", &phone, NeighbourState::Failed),
            ("192.168.1.73", &[1, 2, 3], NeighbourState::Permanent),
        ];
        let datagram: Vec<u8> = entries
            .iter()
            .flat_map(|&(address, lladdr, state)| entry(address, lladdr, state))
            .collect();
        let mut table = Table::new();
        assert!(
            !read_datagram(&datagram, &mut table).unwrap(),
            "not over yet"
        );
        assert_eq!(table.len(), 2, "{table:?}");
        assert_eq!(
            table.get(&ip("192.168.1.70")),
            Some(&mac("aa:bb:cc:dd:ee:01"))
        );
        assert_eq!(table.get(&ip("fd00::7")), Some(&mac("aa:bb:cc:dd:ee:02")));

        let done = serialize(NetlinkPayload::Done(DoneMessage::default()));
        assert!(
            read_datagram(&done, &mut table).unwrap(),
            "the dump is over"
        );
        assert!(
            read_datagram(&datagram[..10], &mut table).is_err(),
            "a cut datagram"
        );
    }

    #[test]
    fn the_kernel_table_has_every_complete_arp_entry() {
        // The same table through /proc, where this machine shows its IPv4 neighbours.
        let proc = std::fs::read_to_string("/proc/self/net/arp").unwrap_or_default();
        let table = kernel_table().expect("an rtnetlink dump");
        for line in proc.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let [address, _, "0x2", lladdr, ..] = columns[..] else {
                continue;
            };
            assert_eq!(table.get(&ip(address)), Some(&mac(lladdr)), "{line}");
        }
    }

    #[test]
    fn a_client_missing_from_the_copy_has_it_read_again_soon() {
        let kernel = Arc::new(Mutex::new(Table::from([(
            ip("192.168.1.70"),
            mac("aa:bb:cc:dd:ee:01"),
        )])));
        let reads = Arc::new(Mutex::new(0));
        let neighbours = {
            let (kernel, reads) = (kernel.clone(), reads.clone());
            Neighbours::with_reader(move || {
                *reads.lock().unwrap() += 1;
                Ok(kernel.lock().unwrap().clone())
            })
        };
        let newcomer = ip("192.168.1.80");
        assert_eq!(
            neighbours.mac_of(ip("::ffff:192.168.1.70")),
            Some(mac("aa:bb:cc:dd:ee:01"))
        );
        assert_eq!(neighbours.mac_of(newcomer), None);
        kernel
            .lock()
            .unwrap()
            .insert(newcomer, mac("aa:bb:cc:dd:ee:80"));
        assert_eq!(neighbours.mac_of(newcomer), None, "the copy is fresh");
        assert_eq!(*reads.lock().unwrap(), 1);
        std::thread::sleep(MISS_REFRESH);
        assert_eq!(neighbours.mac_of(newcomer), Some(mac("aa:bb:cc:dd:ee:80")));
        assert_eq!(*reads.lock().unwrap(), 2);
    }

    #[test]
    fn an_unreadable_table_knows_nobody() {
        let neighbours = Neighbours::with_reader(|| Err(io::Error::other("no netlink here")));
        assert_eq!(neighbours.mac_of(ip("192.168.1.70")), None);
        assert_eq!(
            neighbours.mac_of(ip("192.168.1.70")),
            None,
            "and asks again later"
        );
    }
}
