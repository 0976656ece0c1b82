//! Address forms shared by everything that matches client addresses against configured
//! networks (the access list, device matching) or counts clients (the rate limit, TCP
//! connection limits), the MAC addresses devices may be matched by, what a forwarder says
//! about the client it forwards for, and a domain name's parents ([`suffixes`]), which the
//! matcher and the local zones walk.
//!
//! The bottom layer, with `config`: it imports nothing else of the crate.

mod access;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// `name`, then each parent on a label boundary, longest first: `a.b.c`, `b.c`, `c` (the
/// text form: lower-case, no trailing dot).
pub fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    let parents = name
        .bytes()
        .enumerate()
        .filter(|&(_, byte)| byte == b'.')
        .map(move |(dot, _)| &name[dot + 1..]);
    std::iter::once(name).chain(parents)
}

/// Whether `name` is `parent` or a name below it on a label boundary (both in the text form).
pub fn is_same_or_below(name: &str, parent: &str) -> bool {
    match name.strip_suffix(parent) {
        Some("") => true,
        Some(rest) => rest.ends_with('.'),
        None => false,
    }
}

/// One client as the per-client limits count it (the rate limit, TCP connections): an IPv4
/// address, or an IPv6 /64. A household device rotates temporary addresses inside its /64
/// (RFC 8981), and whoever holds a /64 can use any address in it. IPv4 comes as its
/// IPv4-mapped form (low 64 bits never zero), so the two never collide.
pub type ClientSource = u128;

pub use access::{AccessList, allowed};

/// The host bits of an IPv6 address, cleared to get its /64.
const IPV6_PREFIX_64: u128 = !0 << 64;

/// The source `client` counts as.
pub fn client_source(client: IpAddr) -> ClientSource {
    match client.to_canonical() {
        IpAddr::V4(ip) => u128::from(ip.to_ipv6_mapped()),
        IpAddr::V6(ip) => u128::from(ip) & IPV6_PREFIX_64,
    }
}

/// `text` as a network: a CIDR network (host bits cleared) or a single address (a /32 or
/// /128), in the canonical form [`canonical_network`] gives; `None` if it is neither.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let network = (text.parse::<IpNet>().map(|network| network.trunc()))
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()?;
    Some(canonical_network(network))
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

/// A device's hardware (MAC) address: how a `[[device]]` can be matched when a forwarding
/// router names the client it forwards for (dnsmasq `--add-mac`), whatever IP address the
/// device has today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

/// What a forwarder's query says about the client it forwards for (EDNS options, read by
/// [`crate::dns`]). Empty for a query that names nobody.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardedClient {
    /// The client's MAC address (EDNS option 65001, or 65073 as text or base64).
    pub mac: Option<MacAddress>,
    /// The client's address or network (EDNS Client Subnet, RFC 7871), when it has at least
    /// one bit of address.
    pub subnet: Option<IpNet>,
}

impl ForwardedClient {
    /// Whether the query names a client at all.
    pub fn names_anyone(&self) -> bool {
        self.mac.is_some() || self.subnet.is_some()
    }
}

impl FromStr for MacAddress {
    type Err = ();

    /// Six two-digit hex groups separated by `:` or by `-` (one kind throughout), in either
    /// case: `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`.
    fn from_str(text: &str) -> Result<Self, ()> {
        let separator = if text.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut groups = text.split(separator);
        for octet in &mut octets {
            let group = groups.next().ok_or(())?;
            // `from_str_radix` would also take a sign ("+a").
            if group.len() != 2 || !group.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(());
            }
            *octet = u8::from_str_radix(group, 16).map_err(|_| ())?;
        }
        match groups.next() {
            None => Ok(Self(octets)),
            Some(_) => Err(()),
        }
    }
}

impl fmt::Display for MacAddress {
    /// The colon form, lower case (`aa:bb:cc:dd:ee:ff`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_and_its_parents_longest_first() {
        assert_eq!(
            suffixes("a.b.example").collect::<Vec<_>>(),
            ["a.b.example", "b.example", "example"]
        );
        assert_eq!(suffixes("lan").collect::<Vec<_>>(), ["lan"]);
    }

    #[test]
    fn networks_and_single_addresses_read_as_canonical_networks() {
        let read = |text: &str| parse_network(text).map(|network| network.to_string());
        assert_eq!(read("192.168.1.77/24").as_deref(), Some("192.168.1.0/24"));
        assert_eq!(read("fd00::20").as_deref(), Some("fd00::20/128"));
        assert_eq!(read("::ffff:10.0.0.0/104").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(read("not a network"), None);
    }

    #[test]
    fn a_name_is_below_its_parents_on_label_boundaries_only() {
        assert!(is_same_or_below("meta.ai", "meta.ai"));
        assert!(is_same_or_below("www.meta.ai", "meta.ai"));
        assert!(!is_same_or_below("notmeta.ai", "meta.ai"));
        assert!(!is_same_or_below("meta.ai", "www.meta.ai"));
    }

    #[test]
    fn mac_addresses_read_both_separators_and_print_one_form() {
        for text in [
            "aa:bb:cc:0d:ee:ff",
            "AA-BB-CC-0D-EE-FF",
            "aA:Bb:cC:0d:EE:ff",
        ] {
            let mac: MacAddress = text.parse().expect(text);
            assert_eq!(mac, MacAddress([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]));
            assert_eq!(mac.to_string(), "aa:bb:cc:0d:ee:ff");
        }
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc-dd:ee:ff",
            "a:bb:cc:dd:ee:fff",
            "aa:bb:cc:dd:ee:gg",
            "+a:bb:cc:dd:ee:ff",
            "aabb.ccdd.eeff",
            "192.168.1.20",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
    }

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
