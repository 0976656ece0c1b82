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
    /// When it was last seen, as a count of the queries noted before: an order that has no
    /// ties, where `last_seen` (to the clock tick, see [`super::coarse_now`]) has some.
    recency: u64,
}

/// The clients table. Hashed with foldhash (seeded per process): it is looked up on every
/// query, and SipHash would cost as much as the rest of the update.
#[derive(Default)]
pub struct Clients {
    table: Mutex<Table>,
}

/// The clients by address, and the queries noted so far (the next [`Client::recency`]).
#[derive(Default)]
struct Table {
    clients: HashMap<IpAddr, Client, RandomState>,
    noted: u64,
}

impl Clients {
    /// Counts `record`.
    pub fn note(&self, record: &QueryRecord<'_>, blocked: bool) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let Table { clients, noted } = &mut *table;
        *noted += 1;
        let address = record.client.to_canonical();
        let time = Timestamp::of(record.time);
        if let Some(client) = clients.get_mut(&address) {
            client.last_seen = time;
            client.recency = *noted;
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
        if clients.len() >= MAX_CLIENTS {
            evict_oldest(clients);
        }
        clients.insert(
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
                recency: *noted,
            },
        );
    }

    /// Every client, most recently seen first.
    pub fn list(&self) -> Vec<ClientSeen> {
        let Ok(table) = self.table.lock() else {
            return Vec::new();
        };
        let mut clients: Vec<(u64, ClientSeen)> = (table.clients.iter())
            .map(|(address, client)| {
                let seen = ClientSeen {
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
                };
                (client.recency, seen)
            })
            .collect();
        clients.sort_unstable_by_key(|(recency, _)| std::cmp::Reverse(*recency));
        clients.into_iter().map(|(_, seen)| seen).collect()
    }
}

/// Drops the least recently seen eighth of the clients: one pass over the table pays for the
/// next [`MAX_CLIENTS`]` / 8` new clients, where dropping one at a time would scan it for every
/// new address once full (a flood of spoofed sources, on the query path).
fn evict_oldest(table: &mut HashMap<IpAddr, Client, RandomState>) {
    let mut seen: Vec<(u64, IpAddr)> = (table.iter())
        .map(|(address, client)| (client.recency, *address))
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
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::dns::Question;
    use crate::policy::ListMask;
    use crate::records::LogResult;

    #[test]
    fn the_client_that_asked_last_comes_first_even_within_one_clock_tick() {
        let question = Question::parse("www.example.test", "A").unwrap();
        let time = SystemTime::now();
        let record = |client: &str| QueryRecord {
            time,
            client: client.parse().unwrap(),
            mac: None,
            device: "unknown",
            profile: "default",
            identified_by: IdentifiedBy::Default,
            question: &question,
            lists: ListMask::EMPTY,
            result: LogResult::Forwarded,
            list: None,
            blocked_at: None,
            rcode: 0,
            answer: None,
            duration: Duration::ZERO,
        };
        let clients = Clients::default();
        for client in ["192.168.1.9", "192.168.1.2", "192.168.1.5"] {
            clients.note(&record(client), false);
        }
        let order: Vec<String> = (clients.list().iter())
            .map(|client| client.address.to_string())
            .collect();
        assert_eq!(order, ["192.168.1.5", "192.168.1.2", "192.168.1.9"]);
    }

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
                recency: u64::from(i),
            };
            table.insert(address(i), client);
        }
        evict_oldest(&mut table);
        assert_eq!(table.len(), MAX_CLIENTS - MAX_CLIENTS / 8);
        assert!((0..full / 8).all(|i| !table.contains_key(&address(i))));
        assert!((full / 8..full).all(|i| table.contains_key(&address(i))));
    }
}
