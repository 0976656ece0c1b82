//! Address forms shared by everything that matches client addresses against configured
//! networks (the access list, device matching) or counts clients (the rate limit, TCP
//! connection limits).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// One client as the per-client limits count it (the rate limit, TCP connections): an IPv4
/// address, or an IPv6 /64. A household device rotates temporary addresses inside its /64
/// (RFC 8981), and whoever holds a /64 can use any address in it. IPv4 comes as its
/// IPv4-mapped form (low 64 bits never zero), so the two never collide.
pub type ClientSource = u128;

/// The host bits of an IPv6 address, cleared to get its /64.
const IPV6_PREFIX_64: u128 = !0 << 64;

/// The source `client` counts as.
pub fn client_source(client: IpAddr) -> ClientSource {
    match client.to_canonical() {
        IpAddr::V4(ip) => u128::from(ip.to_ipv6_mapped()),
        IpAddr::V6(ip) => u128::from(ip) & IPV6_PREFIX_64,
    }
}

/// `network` as the IPv4 network it maps when it lies inside `::ffff:0:0/96` (IPv4-mapped
/// addresses, RFC 4291 §2.5.5.2), otherwise as it is.
///
/// A dual-stack socket reports an IPv4 client as `::ffff:a.b.c.d`, and clients are matched as
/// the IPv4 address they are ([`std::net::IpAddr::to_canonical`]): a network kept in the
/// mapped form would never match anyone, and would look different from the same network
/// written as IPv4.
pub fn canonical_network(network: IpNet) -> IpNet {
    match network {
        IpNet::V6(net) if net.prefix_len() >= 96 => net
            .addr()
            .to_ipv4_mapped()
            .and_then(|ip| Ipv4Net::new(ip, net.prefix_len() - 96).ok())
            .map_or(network, IpNet::V4),
        _ => network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        canonical_network(text.parse().expect("network")).to_string()
    }

    #[test]
    fn mapped_networks_become_ipv4_and_others_stay() {
        assert_eq!(canonical("::ffff:192.168.1.20/128"), "192.168.1.20/32");
        assert_eq!(canonical("::ffff:192.168.1.0/120"), "192.168.1.0/24");
        assert_eq!(canonical("::ffff:0.0.0.0/96"), "0.0.0.0/0");
        assert_eq!(
            canonical("::ffff:0.0.0.0/95"),
            "::ffff:0.0.0.0/95",
            "wider than IPv4"
        );
        assert_eq!(
            canonical("64:ff9b::/96"),
            "64:ff9b::/96",
            "NAT64 stays IPv6"
        );
        assert_eq!(canonical("fd00::20/128"), "fd00::20/128");
        assert_eq!(canonical("192.168.1.0/24"), "192.168.1.0/24");
    }
}
