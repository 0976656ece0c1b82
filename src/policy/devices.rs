//! Which device a client is: exact addresses in a hash map, networks by longest prefix, and
//! MAC addresses. Built once per policy snapshot, so the query path does no parsing.
//!
//! Behind a forwarding router every query comes from the router's address. A router that
//! names the client it forwards for (dnsmasq `--add-mac`, `--add-subnet=32,128`) is believed
//! when it is one of `trusted_forwarders`: the device is then the one with that MAC address,
//! else the one the client subnet belongs to. A name from anyone else is ignored, or any
//! client could pick another device's profile. A client that queries directly is found by
//! MAC address through the neighbour table ([`crate::neighbours`]).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::net::{ForwardedClient, MacAddress, canonical_network};

/// Index of a device in its policy snapshot.
pub type DeviceIndex = usize;

/// How a client's device was found: the `identified_by` of the query log and clients view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifiedBy {
    /// Its address, or a network holding it.
    Address,
    /// Its MAC address, from the neighbour table.
    Mac,
    /// The MAC address or client subnet a trusted forwarder (the router) named.
    RouterOption,
    /// No device matched: the default profile.
    Default,
}

impl IdentifiedBy {
    /// The word the API and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Mac => "mac",
            Self::RouterOption => "router-option",
            Self::Default => "default",
        }
    }
}

/// The outcome of [`DeviceIndexMap::identify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    /// The device, `None` for a client that is no device.
    pub device: Option<DeviceIndex>,
    /// How it was found.
    pub by: IdentifiedBy,
    /// The client's MAC address, when the router named it or the neighbour table was read.
    pub mac: Option<MacAddress>,
}

/// Client → device.
#[derive(Debug, Default)]
pub struct DeviceIndexMap {
    exact: HashMap<IpAddr, DeviceIndex>,
    /// Networks, most specific first, so the first hit is the longest prefix.
    networks: Vec<(IpNet, DeviceIndex)>,
    macs: HashMap<MacAddress, DeviceIndex>,
    /// Forwarders whose [`ForwardedClient`] is believed (canonical: IPv4-mapped as IPv4).
    trusted_forwarders: Vec<IpAddr>,
}

impl DeviceIndexMap {
    /// Builds the map from each device's addresses (a /32 or /128 is an exact address) and MAC
    /// addresses.
    ///
    /// IPv4-mapped addresses and networks are kept as IPv4: [`Self::find`] looks clients up
    /// as IPv4, so the mapped form would never match.
    pub fn new<'a>(
        devices: impl IntoIterator<Item = (DeviceIndex, &'a [IpNet], &'a [MacAddress])>,
        trusted_forwarders: &[IpAddr],
    ) -> Self {
        let mut map = Self {
            trusted_forwarders: trusted_forwarders
                .iter()
                .map(IpAddr::to_canonical)
                .collect(),
            ..Self::default()
        };
        for (device, addresses, macs) in devices {
            for net in addresses.iter().map(|&net| canonical_network(net)) {
                if net.prefix_len() == net.max_prefix_len() {
                    map.exact.insert(net.addr(), device);
                } else {
                    map.networks.push((net, device));
                }
            }
            map.macs.extend(macs.iter().map(|&mac| (mac, device)));
        }
        map.networks
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        map
    }

    /// The device of a query from `address` that names `forwarded`: the named client's when
    /// `address` is a trusted forwarder that names one (`None` if it is no device), otherwise
    /// the device of `address` itself: its exact address, else the MAC address
    /// `neighbour_mac` finds for it (asked only while some device has one), else the longest
    /// network holding it. Also says how the device was found, and the client's MAC address when one was read on
    /// the way (for the query log and the clients view).
    pub fn identify(
        &self,
        address: IpAddr,
        forwarded: &ForwardedClient,
        neighbour_mac: impl FnOnce(IpAddr) -> Option<MacAddress>,
    ) -> Identified {
        let found =
            |device: Option<DeviceIndex>, by: IdentifiedBy, mac: Option<MacAddress>| match device {
                Some(device) => Identified {
                    device: Some(device),
                    by,
                    mac,
                },
                None => Identified {
                    device: None,
                    by: IdentifiedBy::Default,
                    mac,
                },
            };
        if forwarded.names_anyone() && self.trusts(address) {
            let by_mac = forwarded.mac.and_then(|mac| self.macs.get(&mac).copied());
            let device = by_mac.or_else(|| forwarded.subnet.and_then(|net| self.find_network(net)));
            return found(device, IdentifiedBy::RouterOption, forwarded.mac);
        }
        let address = address.to_canonical();
        if let Some(&device) = self.exact.get(&address) {
            return found(Some(device), IdentifiedBy::Address, None);
        }
        let mac = match self.macs.is_empty() {
            true => None,
            false => neighbour_mac(address),
        };
        if let Some(&device) = mac.and_then(|mac| self.macs.get(&mac)) {
            return found(Some(device), IdentifiedBy::Mac, mac);
        }
        found(self.in_networks(address), IdentifiedBy::Address, mac)
    }

    /// Whether `address` is a trusted forwarder.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.trusted_forwarders.contains(&address.to_canonical())
    }

    /// The device whose network is the longest holding `address` (canonical).
    fn in_networks(&self, address: IpAddr) -> Option<DeviceIndex> {
        self.networks
            .iter()
            .find_map(|(net, device)| net.contains(&address).then_some(*device))
    }

    /// The prefix length of the device address or network a forwarded client `subnet` was
    /// matched by ([`Self::identify`]), `None` when it matched none: what the answer's EDNS
    /// Client Subnet scope is (RFC 7871 §7.3).
    pub fn subnet_scope(&self, subnet: IpNet) -> Option<u8> {
        self.match_subnet(subnet).map(|(_, prefix_len)| prefix_len)
    }

    /// The device a whole client subnet belongs to: a full-length one is an address; a wider
    /// one (a forwarder sending `/24`) only fits a device network at least as wide.
    fn find_network(&self, subnet: IpNet) -> Option<DeviceIndex> {
        self.match_subnet(subnet).map(|(device, _)| device)
    }

    /// [`Self::find_network`], with the prefix length of the device address or network
    /// that matched.
    fn match_subnet(&self, subnet: IpNet) -> Option<(DeviceIndex, u8)> {
        let subnet = canonical_network(subnet);
        let full = subnet.max_prefix_len();
        if subnet.prefix_len() == full
            && let Some(&device) = self.exact.get(&subnet.addr())
        {
            return Some((device, full));
        }
        self.networks.iter().find_map(|(net, device)| {
            (net.prefix_len() <= subnet.prefix_len() && net.contains(&subnet.addr()))
                .then_some((*device, net.prefix_len()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .unwrap_or_else(|_| IpNet::from(text.parse::<IpAddr>().unwrap()))
            })
            .collect()
    }

    #[test]
    fn exact_then_longest_prefix() {
        let quest = nets(&["192.168.1.20", "fd00::20", "192.168.1.64/28"]);
        let lan = nets(&["192.168.0.0/16"]);
        let tablet = nets(&["192.168.1.70"]);
        let map = DeviceIndexMap::new(
            [
                (0, &quest[..], &[][..]),
                (1, &lan[..], &[]),
                (2, &tablet[..], &[]),
            ],
            &[],
        );
        let none = ForwardedClient::default();
        let find = |text: &str| map.identify(text.parse().unwrap(), &none, |_| None).device;
        assert_eq!(find("192.168.1.20"), Some(0));
        assert_eq!(find("fd00::20"), Some(0));
        assert_eq!(find("192.168.1.65"), Some(0));
        assert_eq!(
            find("192.168.1.70"),
            Some(2),
            "an exact address beats a network"
        );
        assert_eq!(find("192.168.7.7"), Some(1));
        assert_eq!(find("::ffff:192.168.1.20"), Some(0));
        assert_eq!(find("10.0.0.1"), None);
    }

    #[test]
    fn mapped_addresses_and_networks_match_ipv4_clients() {
        let tv = nets(&["::ffff:192.168.1.30"]);
        let guests = nets(&["::ffff:192.168.9.0/120"]);
        let map = DeviceIndexMap::new([(0, &tv[..], &[][..]), (1, &guests[..], &[])], &[]);
        let none = ForwardedClient::default();
        let find = |text: &str| map.identify(text.parse().unwrap(), &none, |_| None).device;
        assert_eq!(find("192.168.1.30"), Some(0));
        assert_eq!(find("::ffff:192.168.1.30"), Some(0));
        assert_eq!(find("192.168.9.77"), Some(1));
        assert_eq!(find("192.168.8.77"), None);
    }

    fn forwarded(mac: Option<&str>, subnet: Option<&str>) -> ForwardedClient {
        ForwardedClient {
            mac: mac.map(|text| text.parse().unwrap()),
            subnet: subnet.map(|text| text.parse().unwrap()),
        }
    }

    #[test]
    fn a_trusted_forwarder_names_the_device_by_mac_then_subnet() {
        let router = nets(&["192.168.1.1"]);
        let tablet = nets(&["192.168.1.70"]);
        let kids_vlan = nets(&["192.168.2.0/24"]);
        let tablet_mac = ["aa:bb:cc:dd:ee:01".parse().unwrap()];
        let map = DeviceIndexMap::new(
            [
                (0, &router[..], &[][..]),
                (1, &tablet[..], &tablet_mac[..]),
                (2, &kids_vlan[..], &[]),
            ],
            &[
                "192.168.1.1".parse().unwrap(),
                "::ffff:10.1.2.3".parse().unwrap(),
            ],
        );
        let identify = |from: &str, named: ForwardedClient| {
            map.identify(from.parse().unwrap(), &named, |_| None).device
        };
        let router_ip = "192.168.1.1";

        assert_eq!(
            identify(router_ip, ForwardedClient::default()),
            Some(0),
            "names nobody"
        );
        assert_eq!(
            identify(router_ip, forwarded(Some("aa:bb:cc:dd:ee:01"), None)),
            Some(1)
        );
        assert_eq!(
            identify(router_ip, forwarded(None, Some("192.168.1.70/32"))),
            Some(1)
        );
        assert_eq!(
            identify(
                router_ip,
                forwarded(Some("aa:bb:cc:dd:ee:99"), Some("192.168.1.70/32"))
            ),
            Some(1),
            "an unknown MAC falls back to the subnet"
        );
        assert_eq!(
            identify(router_ip, forwarded(Some("aa:bb:cc:dd:ee:99"), None)),
            None,
            "a named client that is no device is unknown, not the router"
        );
        assert_eq!(
            identify(router_ip, forwarded(None, Some("192.168.2.0/24"))),
            Some(2)
        );
        assert_eq!(
            identify(router_ip, forwarded(None, Some("192.168.2.9/32"))),
            Some(2)
        );
        assert_eq!(
            identify(router_ip, forwarded(None, Some("192.168.0.0/16"))),
            None,
            "a subnet wider than every device network fits none"
        );
        assert_eq!(
            identify(
                "::ffff:10.1.2.3",
                forwarded(None, Some("::ffff:192.168.1.70/128"))
            ),
            Some(1),
            "mapped forwarder and subnet"
        );
        assert_eq!(
            identify("192.168.1.70", forwarded(Some("aa:bb:cc:dd:ee:99"), None)),
            Some(1),
            "a client that is no trusted forwarder is its own device, whatever it says"
        );
        assert_eq!(
            identify("192.168.1.9", forwarded(Some("aa:bb:cc:dd:ee:01"), None)),
            None
        );
    }

    #[test]
    fn a_direct_client_is_its_exact_address_then_its_neighbour_mac_then_its_network() {
        let kids_room = nets(&["192.168.1.64/28"]);
        let quest = nets(&["192.168.1.70"]);
        let phone_mac: [MacAddress; 1] = ["aa:bb:cc:dd:ee:01".parse().unwrap()];
        let devices = [
            (0, &kids_room[..], &[][..]),
            (1, &quest[..], &[][..]),
            (2, &[][..], &phone_mac[..]),
        ];
        let map = DeviceIndexMap::new(devices, &[]);
        let none = ForwardedClient::default();
        let neighbours = |address: IpAddr| {
            let known = ["192.168.1.70", "192.168.1.66", "192.168.1.9"];
            known
                .contains(&address.to_string().as_str())
                .then(|| phone_mac[0])
        };
        let identify = |from: &str| {
            map.identify(from.parse().unwrap(), &none, neighbours)
                .device
        };
        assert_eq!(identify("192.168.1.70"), Some(1), "an exact address first");
        assert_eq!(identify("192.168.1.66"), Some(2), "then the MAC address");
        assert_eq!(identify("::ffff:192.168.1.9"), Some(2), "looked up as IPv4");
        assert_eq!(identify("192.168.1.67"), Some(0), "then the network");
        assert_eq!(identify("192.168.7.7"), None);

        let without_macs = DeviceIndexMap::new([(0, &kids_room[..], &[][..])], &[]);
        let asked = std::cell::Cell::new(false);
        let lookup = |_| {
            asked.set(true);
            None
        };
        assert_eq!(
            without_macs
                .identify("192.168.1.66".parse().unwrap(), &none, lookup)
                .device,
            Some(0)
        );
        assert!(
            !asked.get(),
            "no device has a MAC address: the table is never read"
        );
    }
}
