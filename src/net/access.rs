//! The access list: which client addresses are answered at all (`server.allow_from`).
//!
//! A resolver that answers anyone is an open resolver: strangers use it, and aim its answers
//! at a victim by spoofing the victim's address (RFC 5358). Only clients inside a configured
//! network are answered.
//!
//! Networks are kept as (network, mask) integer pairs, so a check is one AND and one compare
//! per network: a household lists a handful of networks, and a scan of a few cache lines beats
//! any tree at that size.

use std::net::IpAddr;

use ipnet::IpNet;

use super::canonical_network;

/// The networks allowed to query, by family.
#[derive(Debug)]
pub struct AccessList {
    /// IPv4 networks as (network address, netmask).
    v4: Vec<(u32, u32)>,
    /// IPv6 networks as (network address, netmask).
    v6: Vec<(u128, u128)>,
}

impl AccessList {
    /// The list allowing the clients of `networks` (nobody when it is empty).
    pub fn new(networks: &[IpNet]) -> Self {
        let mut list = Self {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        // Clients from `::ffff:0:0/96` are judged as IPv4, so only the IPv4 form of a network
        // there could ever match them.
        for network in networks
            .iter()
            .map(|&network| canonical_network(network.trunc()))
        {
            match network {
                IpNet::V4(net) => list
                    .v4
                    .push((u32::from(net.network()), u32::from(net.netmask()))),
                IpNet::V6(net) => list
                    .v6
                    .push((u128::from(net.network()), u128::from(net.netmask()))),
            }
        }
        list
    }

    /// True when `client` is inside one of the networks.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), which is how a
    /// dual-stack socket reports an IPv4 client, is judged as that IPv4 address: only IPv4
    /// networks match IPv4 clients.
    pub fn allows(&self, client: IpAddr) -> bool {
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                self.v4.iter().any(|&(network, mask)| ip & mask == network)
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                self.v6.iter().any(|&(network, mask)| ip & mask == network)
            }
        }
    }
}

/// Whether `allow_from` lets `client` query: the access list's own check, for judging a
/// configuration (a trusted forwarder must be a client that is answered).
pub fn allowed(allow_from: &[IpNet], client: IpAddr) -> bool {
    AccessList::new(allow_from).allows(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(networks: &[&str]) -> AccessList {
        let networks: Vec<IpNet> = networks.iter().map(|n| n.parse().expect("net")).collect();
        AccessList::new(&networks)
    }

    fn allows(list: &AccessList, client: &str) -> bool {
        list.allows(client.parse().expect("address"))
    }

    #[test]
    fn host_bits_and_bare_addresses() {
        let list = list(&["192.168.1.77/24", "203.0.113.7/32", "2001:db8::1/128"]);
        assert!(allows(&list, "192.168.1.0") && allows(&list, "192.168.1.255"));
        assert!(!allows(&list, "192.168.0.255") && !allows(&list, "192.168.2.0"));
        assert!(allows(&list, "203.0.113.7") && !allows(&list, "203.0.113.6"));
        assert!(allows(&list, "2001:db8::1") && !allows(&list, "2001:db8::2"));
    }

    #[test]
    fn families_do_not_mix() {
        let everything_v6 = list(&["::/0"]);
        assert!(allows(&everything_v6, "2001:db8::1"));
        assert!(
            !allows(&everything_v6, "::ffff:192.0.2.1"),
            "an IPv4 client"
        );
        let everything_v4 = list(&["0.0.0.0/0"]);
        assert!(allows(&everything_v4, "::ffff:192.0.2.1"));
        assert!(!allows(&everything_v4, "::1"));
    }

    #[test]
    fn mapped_networks_are_read_as_ipv4() {
        let list = list(&["::ffff:192.168.1.0/120", "64:ff9b::/96"]);
        assert!(allows(&list, "192.168.1.9") && allows(&list, "::ffff:192.168.1.9"));
        assert!(!allows(&list, "192.168.2.9"));
        assert!(allows(&list, "64:ff9b::192.0.2.1"), "NAT64 stays IPv6");
        assert!(!allows(&list, "192.0.2.1"));
    }
}
