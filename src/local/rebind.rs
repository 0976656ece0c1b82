//! DNS rebinding protection: a public name whose answer holds an address inside the house
//! lets a web page's script reach the router or the NAS under the page's own origin. With
//! `rebind_protection` such answers are blocked, as dnsmasq's `--stop-dns-rebind` does.
//!
//! Which addresses count ([`is_rebinding_target`]): private (RFC 1918, IPv6 ULA fc00::/7),
//! loopback, link-local, and the unspecified address (0.0.0.0/8 and `::`, which browsers on
//! Linux and macOS reach as the local host, the "0.0.0.0 day" of 2024). IPv4-mapped IPv6
//! addresses count as the IPv4 address they carry. The shared address space 100.64/10
//! (CGNAT) does not: Tailscale gives its devices addresses there under public names, and an
//! ISP's CGNAT range is not the house's.

use std::net::IpAddr;

use crate::net::suffixes;

/// Whether `ip` is an address inside the house (or the host itself).
pub fn is_rebinding_target(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.octets()[0] == 0
        }
        IpAddr::V6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
        }
    }
}

/// Names allowed private answers (`rebind_allow`), each with its subdomains.
#[derive(Debug, Default)]
pub struct RebindAllow {
    names: std::collections::HashSet<Box<str>, foldhash::fast::RandomState>,
}

impl RebindAllow {
    /// The allow list of `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(Box::from).collect(),
        }
    }

    /// Whether `name` or one of its parents is on the list.
    pub fn allows(&self, name: &str) -> bool {
        !self.names.is_empty() && suffixes(name).any(|suffix| self.names.contains(suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn house_addresses_are_rebinding_targets_and_public_ones_are_not() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(is_rebinding_target(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.64.0.1",
            "2620:fe::fe",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_rebinding_target(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_allow_list_covers_subdomains() {
        let allow = RebindAllow::new(["plex.direct"]);
        assert!(allow.allows("plex.direct"));
        assert!(allow.allows("192-168-1-5.abc.plex.direct"));
        assert!(!allow.allows("notplex.direct"));
        assert!(!RebindAllow::default().allows("plex.direct"));
    }
}
