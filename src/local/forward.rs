//! Forward zones (`[[forward]]`): which set of upstreams a name's questions go to. The most
//! specific zone wins (`1.168.192.in-addr.arpa` over `168.192.in-addr.arpa`), found by
//! looking up the name and then each parent, longest first: a hash look-up per label, and
//! nothing at all when no zone is configured.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::net::suffixes;

/// Zone → index of its `[[forward]]`.
#[derive(Debug, Default)]
pub struct ForwardZones {
    /// foldhash, seeded at random: a few nanoseconds a label on every forwarded question.
    zones: HashMap<Box<str>, usize, RandomState>,
}

impl ForwardZones {
    /// The zones of each forward, in order (`zones[i]` are the zones of forward `i`).
    pub fn new<'a>(zones: impl IntoIterator<Item = (usize, &'a str)>) -> Self {
        Self {
            zones: zones
                .into_iter()
                .map(|(index, zone)| (Box::from(zone), index))
                .collect(),
        }
    }

    /// The forward whose zone holds `name` most specifically, and that zone.
    pub fn find<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        if self.zones.is_empty() {
            return None;
        }
        suffixes(name).find_map(|zone| self.zones.get(zone).map(|&index| (index, zone)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_zone_wins() {
        let zones = ForwardZones::new([
            (0, "lan"),
            (0, "168.192.in-addr.arpa"),
            (1, "iot.lan"),
            (1, "1.168.192.in-addr.arpa"),
        ]);
        assert_eq!(zones.find("nas.lan"), Some((0, "lan")));
        assert_eq!(zones.find("lan"), Some((0, "lan")));
        assert_eq!(zones.find("plug.iot.lan"), Some((1, "iot.lan")));
        assert_eq!(
            zones.find("5.1.168.192.in-addr.arpa"),
            Some((1, "1.168.192.in-addr.arpa"))
        );
        assert_eq!(
            zones.find("5.2.168.192.in-addr.arpa"),
            Some((0, "168.192.in-addr.arpa"))
        );
        assert_eq!(zones.find("plan"), None, "a zone matches whole labels only");
        assert_eq!(zones.find("example.com"), None);
        assert_eq!(ForwardZones::default().find("nas.lan"), None);
    }
}
