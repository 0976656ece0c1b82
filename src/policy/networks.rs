//! Address lists: the networks of a `block_networks` list (Meta's, for `no-meta`), looked up by
//! the addresses of an upstream answer.
//!
//! Hand-written rather than a prefix-trie crate: the question is only "which network of this
//! list holds the address", never the longest prefix, and CIDR networks either nest or do not
//! overlap at all. So the outermost networks, sorted, form disjoint ranges, and a binary search
//! answers in about ten comparisons for a list of a thousand networks. The pipeline asks once
//! per cached answer and policy generation, not once per query.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::net::canonical_network;

/// The networks of one list: disjoint, sorted, each kept as written for `explain`.
#[derive(Debug, Default)]
pub struct NetworkSet {
    v4: Vec<(u32, u32, IpNet)>,
    v6: Vec<(u128, u128, IpNet)>,
}

impl NetworkSet {
    /// The set of `networks`; a network inside another one adds nothing and is dropped.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        let mut set = Self::default();
        for network in networks {
            match canonical_network(network.trunc()) {
                IpNet::V4(net) => {
                    let range = (net.network().into(), net.broadcast().into(), IpNet::V4(net));
                    set.v4.push(range);
                }
                IpNet::V6(net) => {
                    let range = (net.network().into(), net.broadcast().into(), IpNet::V6(net));
                    set.v6.push(range);
                }
            }
        }
        outermost(&mut set.v4);
        outermost(&mut set.v6);
        set
    }

    /// How many networks remain once nested ones are dropped.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The network of the set that holds `address` (an IPv4-mapped IPv6 address is read as
    /// IPv4), if any.
    pub fn network_of(&self, address: IpAddr) -> Option<IpNet> {
        match address.to_canonical() {
            IpAddr::V4(ip) => find(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => find(&self.v6, u128::from(ip)),
        }
    }
}

/// Sorts `ranges` by start, widest first, and drops every range inside an earlier one.
fn outermost<T: Ord + Copy>(ranges: &mut Vec<(T, T, IpNet)>) {
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut last_end: Option<T> = None;
    ranges.retain(|&(start, end, _)| {
        if last_end.is_some_and(|last| start <= last) {
            // CIDR networks do not partly overlap: starting inside means lying inside.
            return false;
        }
        last_end = Some(end);
        true
    });
}

/// The range of the sorted, disjoint `ranges` that holds `value`.
fn find<T: Ord + Copy>(ranges: &[(T, T, IpNet)], value: T) -> Option<IpNet> {
    let after = ranges.partition_point(|&(start, _, _)| start <= value);
    let &(_, end, network) = ranges.get(after.checked_sub(1)?)?;
    (value <= end).then_some(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("network")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn finds_the_outermost_network_holding_an_address() {
        let set = NetworkSet::new(
            [
                "157.240.0.0/17",
                "157.240.1.0/24",
                "31.13.64.0/18",
                "2a03:2880::/32",
                "2a03:2880:f000::/36",
                "192.0.2.7/32",
            ]
            .map(net),
        );
        assert_eq!(set.len(), 4, "the nested /24 and /36 add nothing");
        assert_eq!(
            set.network_of(ip("157.240.1.35")),
            Some(net("157.240.0.0/17"))
        );
        assert_eq!(
            set.network_of(ip("157.240.127.255")),
            Some(net("157.240.0.0/17"))
        );
        assert_eq!(set.network_of(ip("157.240.128.0")), None);
        assert_eq!(set.network_of(ip("31.13.63.255")), None);
        assert_eq!(set.network_of(ip("31.13.64.0")), Some(net("31.13.64.0/18")));
        assert_eq!(set.network_of(ip("192.0.2.7")), Some(net("192.0.2.7/32")));
        assert_eq!(set.network_of(ip("192.0.2.8")), None);
        assert_eq!(
            set.network_of(ip("2a03:2880:f12d:83:face:b00c:0:25de")),
            Some(net("2a03:2880::/32"))
        );
        assert_eq!(set.network_of(ip("2a03:2881::1")), None);
        assert_eq!(
            set.network_of(ip("::ffff:157.240.1.35")),
            Some(net("157.240.0.0/17"))
        );
        assert_eq!(set.network_of(ip("1.1.1.1")), None);
        assert!(NetworkSet::new([]).network_of(ip("157.240.1.35")).is_none());
    }
}
