//! Clients: every client address seen recently, with its MAC address when known, the device
//! and profile it got, how it was identified, and its counts. How a household finds what to
//! write in `[[device]] match`.
//!
//! Updated inline for every answered query: one locked map lookup, allocating nothing for a
//! client already known whose device and profile did not change. Bounded at [`MAX_CLIENTS`];
//! the least recently seen eighth goes when it is full. Memory only: it is rebuilt within minutes of a start.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use super::entry::{QueryRecord, Timestamp};
use crate::net::MacAddress;
use crate::policy::IdentifiedBy;

/// Clients kept at most.
pub const MAX_CLIENTS: usize = 2048;

/// One client: the API's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSeen {
    /// Its address.
    pub address: IpAddr,
    /// Its MAC address, when known.
    pub mac: Option<String>,
    /// The device it was identified as (`unknown`: none).
    pub device: String,
    /// The host name a DHCP lease gives it, for a client that is no configured device.
    #[serde(default)]
    pub name: Option<String>,
    /// The profile it got.
    pub profile: String,
    /// How: address, mac, router-option or default.
    pub identified_by: String,
    /// First query seen.
    pub first_seen: Timestamp,
    /// Last query seen.
    pub last_seen: Timestamp,
    /// Queries answered.
    pub queries: u64,
    /// Queries blocked.
    pub blocked: u64,
}

/// What is kept per client.
struct Client {
    mac: Option<MacAddress>,
    device: Box<str>,
    profile: Box<str>,
    identified_by: IdentifiedBy,
    first_seen: Timestamp,
    last_seen: Timestamp,
    queries: u64,
    blocked: u64,
}

/// The clients table. Hashed with foldhash (seeded per process): it is looked up on every
/// query, and SipHash would cost as much as the rest of the update.
#[derive(Default)]
pub struct Clients {
    table: Mutex<HashMap<IpAddr, Client, RandomState>>,
}

impl Clients {
    /// Counts `record`.
    pub fn note(&self, record: &QueryRecord<'_>, blocked: bool) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let address = record.client.to_canonical();
        let time = Timestamp::of(record.time);
        if let Some(client) = table.get_mut(&address) {
            client.last_seen = time;
            client.queries += 1;
            client.blocked += u64::from(blocked);
            client.identified_by = record.identified_by;
            client.mac = record.mac.or(client.mac);
            if *client.device != *record.device {
                client.device = record.device.into();
            }
            if *client.profile != *record.profile {
                client.profile = record.profile.into();
            }
            return;
        }
        if table.len() >= MAX_CLIENTS {
            evict_oldest(&mut table);
        }
        table.insert(
            address,
            Client {
                mac: record.mac,
                device: record.device.into(),
                profile: record.profile.into(),
                identified_by: record.identified_by,
                first_seen: time,
                last_seen: time,
                queries: 1,
                blocked: u64::from(blocked),
            },
        );
    }

    /// Every client, most recently seen first.
    pub fn list(&self) -> Vec<ClientSeen> {
        let Ok(table) = self.table.lock() else {
            return Vec::new();
        };
        let mut clients: Vec<ClientSeen> = (table.iter())
            .map(|(address, client)| ClientSeen {
                address: *address,
                mac: client.mac.map(|mac| mac.to_string()),
                device: client.device.to_string(),
                name: None,
                profile: client.profile.to_string(),
                identified_by: client.identified_by.as_str().to_owned(),
                first_seen: client.first_seen,
                last_seen: client.last_seen,
                queries: client.queries,
                blocked: client.blocked,
            })
            .collect();
        clients.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.address.cmp(&b.address))
        });
        clients
    }
}

/// Drops the least recently seen eighth of the clients: one pass over the table pays for the
/// next [`MAX_CLIENTS`]` / 8` new clients, where dropping one at a time would scan it for every
/// new address once full (a flood of spoofed sources, on the query path).
fn evict_oldest(table: &mut HashMap<IpAddr, Client, RandomState>) {
    let mut seen: Vec<(Timestamp, IpAddr)> = (table.iter())
        .map(|(address, client)| (client.last_seen, *address))
        .collect();
    let evicted = (seen.len() / 8).max(1).min(seen.len());
    if evicted == 0 {
        return;
    }
    seen.select_nth_unstable(evicted - 1);
    for (_, address) in &seen[..evicted] {
        table.remove(address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_drops_its_least_recently_seen_eighth_in_one_pass() {
        let address = |i: u32| IpAddr::from(i.to_be_bytes());
        let mut table = HashMap::default();
        let full = u32::try_from(MAX_CLIENTS).unwrap();
        for i in 0..full {
            let seen = Timestamp(i64::from(i));
            let client = Client {
                mac: None,
                device: "tv".into(),
                profile: "strict".into(),
                identified_by: IdentifiedBy::Default,
                first_seen: seen,
                last_seen: seen,
                queries: 1,
                blocked: 0,
            };
            table.insert(address(i), client);
        }
        evict_oldest(&mut table);
        assert_eq!(table.len(), MAX_CLIENTS - MAX_CLIENTS / 8);
        assert!((0..full / 8).all(|i| !table.contains_key(&address(i))));
        assert!((full / 8..full).all(|i| table.contains_key(&address(i))));
    }
}
