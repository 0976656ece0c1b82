//! The kernel's neighbour tables (ARP for IPv4, neighbour discovery for IPv6): which MAC
//! address a client on the LAN has, so a `[[device]]` matched by MAC address is found whatever
//! IP address DHCP (or IPv6 privacy addressing) gave it today, as Pi-hole and AdGuard Home do.
//!
//! The tables are read over rtnetlink (an `RTM_GETNEIGH` dump, what `ip neigh` shows), both
//! families in one request; the systemd unit allows `AF_NETLINK`. The copy is read again when
//! it is [`REFRESH`] old, or [`MISS_REFRESH`] old when it does not know the client (a device
//! that just joined), by a thread of its own: a dump takes the kernel's rtnl lock (before
//! Linux 6.10), which another process may hold for long, so the query path only ever reads the
//! copy, or waits [`MISS_WAIT`] at most for a new one. All this only happens for clients no
//! exact address matches, and only while some device is matched by MAC address (see
//! [`crate::policy::DeviceIndexMap::identify`]).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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
const REFRESH: Duration = Duration::from_secs(10);
/// Age at which a client missing from the copy makes it be read again.
const MISS_REFRESH: Duration = Duration::from_secs(1);
/// How long a dump may keep the reader waiting (the kernel answers at once; this only bounds
/// the worst case on the query path).
const DUMP_TIMEOUT: Duration = Duration::from_millis(200);
/// Room for one datagram of a dump (the kernel fills about a page per datagram).
const DATAGRAM_ROOM: usize = 32 * 1024;

/// Client address → MAC address.
pub type Table = HashMap<IpAddr, MacAddress>;

/// Reads a [`Table`].
type Reader = Box<dyn Fn() -> io::Result<Table> + Send + Sync>;

/// How long the query that finds a client missing from a stale copy waits for the reader's
/// new one. Bounded: a dump takes the kernel's rtnl lock (before Linux 6.10), which another
/// process may hold for long; a query never waits longer than this for it.
const MISS_WAIT: Duration = Duration::from_millis(10);

/// The neighbour tables, as last read. Reading happens on a thread of its own (started at the
/// first question), never on the query path.
pub struct Neighbours {
    shared: Arc<Shared>,
    reader: OnceLock<()>,
}

/// What the query path and the reader thread share.
struct Shared {
    read_table: Reader,
    copy: ArcSwap<Copy>,
    requests: Mutex<Requests>,
    /// Wakes the reader thread.
    wanted: Condvar,
    /// Tells waiting queries a copy was read.
    read_done: Condvar,
}

/// What the reader thread is asked to do.
#[derive(Default)]
struct Requests {
    /// Read the table again.
    read: bool,
    /// End (the [`Neighbours`] is gone).
    stop: bool,
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
        let shared = Shared {
            read_table: Box::new(read_table),
            copy: ArcSwap::from_pointee(Copy {
                read_at: None,
                macs: Table::new(),
            }),
            requests: Mutex::new(Requests::default()),
            wanted: Condvar::new(),
            read_done: Condvar::new(),
        };
        Self {
            shared: Arc::new(shared),
            reader: OnceLock::new(),
        }
    }

    /// The MAC address of `client`, if it is a neighbour. A copy [`REFRESH`] old (or
    /// [`MISS_REFRESH`] old, for a client it does not know) is read again by the reader
    /// thread; a query that finds a client missing waits up to [`MISS_WAIT`] for it, unless
    /// a read is under way already.
    pub fn mac_of(&self, client: IpAddr) -> Option<MacAddress> {
        let client = client.to_canonical();
        let copy = self.shared.copy.load();
        let mac = copy.macs.get(&client).copied();
        let age = copy.read_at.map(|at| at.elapsed());
        let limit = if mac.is_some() { REFRESH } else { MISS_REFRESH };
        if age.is_some_and(|age| age < limit) {
            return mac;
        }
        self.reader
            .get_or_init(|| start_reader(self.shared.clone()));
        let Ok(mut requests) = self.shared.requests.lock() else {
            return mac;
        };
        let first_to_ask = !requests.read;
        requests.read = true;
        self.shared.wanted.notify_one();
        if mac.is_some() || !first_to_ask {
            return mac;
        }
        let waited = self
            .shared
            .read_done
            .wait_timeout_while(requests, MISS_WAIT, |requests| requests.read);
        drop(waited);
        self.shared.copy.load().macs.get(&client).copied()
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        if let Ok(mut requests) = self.shared.requests.lock() {
            requests.stop = true;
        }
        self.shared.wanted.notify_one();
    }
}

/// Starts the thread that reads the table when asked, until its [`Neighbours`] is dropped.
fn start_reader(shared: Arc<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("neighbours".into())
        .spawn(move || {
            // Reports a table that cannot be read once per run of failures.
            let mut failing = false;
            while shared.wait_for_request() {
                let read = (shared.read_table)();
                failing = match &read {
                    Err(error) if !failing => {
                        warn!(%error, "the neighbour (ARP/NDP) table cannot be read: devices matched by MAC address are found only when a trusted forwarder names them");
                        true
                    }
                    Err(_) => true,
                    Ok(_) => false,
                };
                shared.store(read);
            }
        });
    if let Err(error) = spawned {
        warn!(%error, "no thread to read the neighbour table: devices are not matched by MAC address");
    }
}

impl Shared {
    /// Waits until a read is asked for; false when the reader should end instead.
    fn wait_for_request(&self) -> bool {
        let Ok(requests) = self.requests.lock() else {
            return false;
        };
        match self
            .wanted
            .wait_while(requests, |requests| !requests.read && !requests.stop)
        {
            Ok(requests) => !requests.stop,
            Err(_) => false,
        }
    }

    /// Makes `read` the copy (a failed read keeps the entries of the last good one: a passing
    /// error must not hand every MAC-matched device the default profile) and wakes the
    /// queries waiting for it.
    fn store(&self, read: io::Result<Table>) {
        let macs = read.unwrap_or_else(|_| self.copy.load().macs.clone());
        self.copy.store(Arc::new(Copy {
            read_at: Some(Instant::now()),
            macs,
        }));
        if let Ok(mut requests) = self.requests.lock() {
            requests.read = false;
        }
        self.read_done.notify_all();
    }
}

/// The complete entries of the kernel's neighbour tables, IPv4 and IPv6.
fn kernel_table() -> io::Result<Table> {
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
            // Multicast and point-to-point entries: never a DNS client, but what /proc/net/arp
            // lists as complete too.
            | NeighbourState::Noarp
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
            // Complete entries with an address (a zero one says the device has none).
            let [address, _, "0x2", lladdr, ..] = columns[..] else {
                continue;
            };
            if lladdr == "00:00:00:00:00:00" {
                continue;
            }
            assert_eq!(table.get(&ip(address)), Some(&mac(lladdr)), "{line}");
        }
    }

    /// Asks for `client` until `expected` comes (the reader thread answers within
    /// [`MISS_WAIT`] when the machine is idle; a busy test machine may need more).
    fn eventually(neighbours: &Neighbours, client: IpAddr, expected: Option<MacAddress>) {
        let started = Instant::now();
        while neighbours.mac_of(client) != expected {
            assert!(started.elapsed() < Duration::from_secs(3), "{client}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What a test's kernel answers a dump with (it can change it).
    type Kernel = Arc<Mutex<io::Result<Table>>>;
    /// How many times a test's kernel was read.
    type Reads = Arc<Mutex<usize>>;

    /// Neighbours over `kernel`, and how many times it was read.
    fn counted(kernel: &Kernel) -> (Neighbours, Reads) {
        let reads = Arc::new(Mutex::new(0));
        let (kernel, counter) = (kernel.clone(), reads.clone());
        let neighbours = Neighbours::with_reader(move || {
            *counter.lock().unwrap() += 1;
            match &*kernel.lock().unwrap() {
                Ok(table) => Ok(table.clone()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            }
        });
        (neighbours, reads)
    }

    /// The tablet's address and MAC address.
    const TABLET: (&str, &str) = ("192.168.1.70", "aa:bb:cc:dd:ee:01");

    /// A kernel table holding the tablet, and neighbours over it that have read it once.
    fn tablet_known() -> (Kernel, Neighbours, Reads) {
        let (address, lladdr) = (ip(TABLET.0), mac(TABLET.1));
        let kernel = Arc::new(Mutex::new(Ok(Table::from([(address, lladdr)]))));
        let (neighbours, reads) = counted(&kernel);
        eventually(&neighbours, address, Some(lladdr));
        (kernel, neighbours, reads)
    }

    #[test]
    fn a_client_missing_from_the_copy_has_it_read_again_soon() {
        let (kernel, neighbours, reads) = tablet_known();
        assert_eq!(
            neighbours.mac_of(ip("::ffff:192.168.1.70")),
            Some(mac(TABLET.1)),
            "as IPv4"
        );
        let newcomer = ip("192.168.1.80");
        assert_eq!(neighbours.mac_of(newcomer), None);
        let newcomer_mac = mac("aa:bb:cc:dd:ee:80");
        if let Ok(table) = &mut *kernel.lock().unwrap() {
            table.insert(newcomer, newcomer_mac);
        }
        assert_eq!(neighbours.mac_of(newcomer), None, "the copy is fresh");
        assert_eq!(*reads.lock().unwrap(), 1);
        std::thread::sleep(MISS_REFRESH);
        eventually(&neighbours, newcomer, Some(newcomer_mac));
        assert_eq!(*reads.lock().unwrap(), 2);
    }

    #[test]
    fn a_failed_read_keeps_the_last_good_entries() {
        let (kernel, neighbours, reads) = tablet_known();
        *kernel.lock().unwrap() = Err(io::Error::from(io::ErrorKind::Interrupted));
        std::thread::sleep(MISS_REFRESH);
        // A stranger's miss has the table read again, and that read fails.
        let stranger = ip("192.168.1.99");
        let started = Instant::now();
        while *reads.lock().unwrap() < 2 {
            assert_eq!(neighbours.mac_of(stranger), None);
            assert!(started.elapsed() < Duration::from_secs(3));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(neighbours.mac_of(ip(TABLET.0)), Some(mac(TABLET.1)));
    }

    #[test]
    fn an_unreadable_table_knows_nobody() {
        let kernel = Arc::new(Mutex::new(Err(io::Error::other("no netlink here"))));
        let (neighbours, reads) = counted(&kernel);
        let started = Instant::now();
        while *reads.lock().unwrap() == 0 {
            assert_eq!(neighbours.mac_of(ip("192.168.1.70")), None);
            assert!(started.elapsed() < Duration::from_secs(3));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(neighbours.mac_of(ip("192.168.1.70")), None);
    }
}
