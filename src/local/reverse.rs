//! Reverse names and the zones that are never asked of the Internet.
//!
//! [`reverse_name`] writes an address's `in-addr.arpa` / `ip6.arpa` name (RFC 1035 §3.5,
//! RFC 3596 §2.5), for the PTR records synthesised from local addresses.
//!
//! [`private_zone`] finds the zone of a name that must be answered at home: the locally
//! served zones of RFC 6303 §4 (the reverse zones of RFC 1918, loopback, link-local, "this
//! network", the documentation ranges, the IPv6 unspecified and loopback addresses, ULAs and
//! link-local IPv6) plus the shared address space of RFC 7793 (100.64/10) and `home.arpa`
//! (RFC 8375). Their questions mean nothing outside the house; sent upstream they leak
//! which devices the house has and load the AS112 servers.

use std::collections::HashSet;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::LazyLock;

use crate::net::suffixes;

/// The zones, lower-case without the trailing dot.
static PRIVATE_ZONES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut zones: HashSet<String> = [
        "10.in-addr.arpa",
        "168.192.in-addr.arpa",
        "0.in-addr.arpa",
        "127.in-addr.arpa",
        "254.169.in-addr.arpa",
        "2.0.192.in-addr.arpa",
        "100.51.198.in-addr.arpa",
        "113.0.203.in-addr.arpa",
        "255.255.255.255.in-addr.arpa",
        "d.f.ip6.arpa",
        "8.e.f.ip6.arpa",
        "9.e.f.ip6.arpa",
        "a.e.f.ip6.arpa",
        "b.e.f.ip6.arpa",
        "8.b.d.0.1.0.0.2.ip6.arpa",
        "home.arpa",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    zones.extend((16..=31).map(|octet| format!("{octet}.172.in-addr.arpa")));
    zones.extend((64..=127).map(|octet| format!("{octet}.100.in-addr.arpa")));
    // `::` and `::1`: the whole reverse name is the zone (RFC 6303 §4.4, §4.5).
    zones.insert(reverse_name(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)));
    zones.insert(reverse_name(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)));
    zones
});

/// The reverse name of `ip`, lower-case without the trailing dot.
pub fn reverse_name(ip: IpAddr) -> String {
    let mut name = String::with_capacity(72);
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}.in-addr.arpa");
        }
        IpAddr::V6(ip) => {
            for byte in ip.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            name.push_str("ip6.arpa");
        }
    }
    name
}

/// The private zone holding `name` (lower-case, no trailing dot), as a suffix of it.
pub fn private_zone(name: &str) -> Option<&str> {
    // Every zone ends in `.arpa`: other names cost one comparison.
    if !name.ends_with("arpa") {
        return None;
    }
    suffixes(name).find(|suffix| PRIVATE_ZONES.contains(*suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(
            reverse_name("192.168.1.10".parse().unwrap()),
            "10.1.168.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("fd00::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"
        );
        // An IPv4-mapped address is named as the IPv4 address it is.
        assert_eq!(
            reverse_name("::ffff:10.0.0.1".parse().unwrap()),
            "1.0.0.10.in-addr.arpa"
        );
    }

    #[test]
    fn private_ranges_and_home_arpa_are_found_and_public_ones_are_not() {
        let zone = |name: &str| private_zone(name).map(str::to_owned);
        assert_eq!(
            zone("10.1.168.192.in-addr.arpa").as_deref(),
            Some("168.192.in-addr.arpa")
        );
        assert_eq!(
            zone("168.192.in-addr.arpa").as_deref(),
            Some("168.192.in-addr.arpa")
        );
        assert_eq!(
            zone("5.0.0.10.in-addr.arpa").as_deref(),
            Some("10.in-addr.arpa")
        );
        assert_eq!(
            zone("1.0.20.172.in-addr.arpa").as_deref(),
            Some("20.172.in-addr.arpa")
        );
        assert_eq!(zone("1.0.32.172.in-addr.arpa"), None, "172.32/16 is public");
        assert_eq!(
            zone("1.0.0.127.in-addr.arpa").as_deref(),
            Some("127.in-addr.arpa")
        );
        assert_eq!(
            zone("1.1.254.169.in-addr.arpa").as_deref(),
            Some("254.169.in-addr.arpa")
        );
        assert_eq!(
            zone("1.2.64.100.in-addr.arpa").as_deref(),
            Some("64.100.in-addr.arpa")
        );
        assert_eq!(
            zone("1.2.128.100.in-addr.arpa"),
            None,
            "100.128/9 is public"
        );
        assert_eq!(zone("8.8.8.8.in-addr.arpa"), None);
        let ula = reverse_name("fd12::5".parse().unwrap());
        assert_eq!(zone(&ula).as_deref(), Some("d.f.ip6.arpa"));
        let link_local = reverse_name("fe80::1".parse().unwrap());
        assert_eq!(zone(&link_local).as_deref(), Some("8.e.f.ip6.arpa"));
        let loopback = reverse_name("::1".parse().unwrap());
        assert_eq!(zone(&loopback), Some(loopback.clone()));
        let unspecified = reverse_name("::".parse().unwrap());
        assert_eq!(zone(&unspecified), Some(unspecified.clone()));
        assert_eq!(
            zone(&reverse_name("::2".parse().unwrap())),
            None,
            "only :: and ::1"
        );
        assert_eq!(zone(&reverse_name("2620:fe::fe".parse().unwrap())), None);
        assert_eq!(zone("printer.home.arpa").as_deref(), Some("home.arpa"));
        assert_eq!(zone("home.arpa").as_deref(), Some("home.arpa"));
        assert_eq!(zone("myhome.arpa"), None);
        assert_eq!(zone("in-addr.arpa"), None);
        assert_eq!(zone("www.example.com"), None);
    }
}
