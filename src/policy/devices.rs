//! Which device a client address belongs to: exact addresses in a hash map, networks by
//! longest prefix. Built once per policy snapshot, so the query path does no parsing.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::net::canonical_network;

/// Index of a device in its policy snapshot.
pub type DeviceIndex = usize;

/// Address → device.
#[derive(Debug, Default)]
pub struct DeviceIndexMap {
    exact: HashMap<IpAddr, DeviceIndex>,
    /// Networks, most specific first, so the first hit is the longest prefix.
    networks: Vec<(IpNet, DeviceIndex)>,
}

impl DeviceIndexMap {
    /// Builds the map from each device's addresses (a /32 or /128 is an exact address).
    ///
    /// IPv4-mapped addresses and networks are kept as IPv4: [`Self::find`] looks clients up
    /// as IPv4, so the mapped form would never match.
    pub fn new<'a>(devices: impl IntoIterator<Item = (DeviceIndex, &'a [IpNet])>) -> Self {
        let mut map = Self::default();
        for (device, addresses) in devices {
            for net in addresses.iter().map(|&net| canonical_network(net)) {
                if net.prefix_len() == net.max_prefix_len() {
                    map.exact.insert(net.addr(), device);
                } else {
                    map.networks.push((net, device));
                }
            }
        }
        map.networks
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        map
    }

    /// The device `address` belongs to. IPv4 clients reaching an IPv6 socket arrive as
    /// `::ffff:a.b.c.d`; they are looked up as the IPv4 address they are.
    pub fn find(&self, address: IpAddr) -> Option<DeviceIndex> {
        let address = address.to_canonical();
        if let Some(&device) = self.exact.get(&address) {
            return Some(device);
        }
        self.networks
            .iter()
            .find_map(|(net, device)| net.contains(&address).then_some(*device))
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
        let map = DeviceIndexMap::new([(0, &quest[..]), (1, &lan[..]), (2, &tablet[..])]);
        let find = |text: &str| map.find(text.parse().unwrap());
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
        let map = DeviceIndexMap::new([(0, &tv[..]), (1, &guests[..])]);
        let find = |text: &str| map.find(text.parse().unwrap());
        assert_eq!(find("192.168.1.30"), Some(0));
        assert_eq!(find("::ffff:192.168.1.30"), Some(0));
        assert_eq!(find("192.168.9.77"), Some(1));
        assert_eq!(find("192.168.8.77"), None);
    }
}
