//! The house's own names: `[[record]]`s and hosts-file lines in one table, with a PTR record
//! synthesised for each address, answered as an authoritative server answers its zone.
//!
//! - A type the name has → those records.
//! - A type it lacks → NOERROR with no records and an SOA (NODATA, RFC 2308 §2.2), never a
//!   trip upstream: the name is the house's.
//! - A CNAME → the CNAME, followed while its target is a local name (at most
//!   [`MAX_CHAIN`] links); a target elsewhere is left to the client's resolver to ask.
//!
//! `[[record]]`s win over hosts files: a name the config gives is not extended by a hosts
//! line. The first name given an address (config first, then hosts files in order, their
//! canonical names first) is the one its PTR record gives.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::hosts::HostsEntry;
use super::reverse::reverse_name;
use super::{LocalAnswer, LocalData, LocalKind, LocalRecord, Rcode, qtype};
use crate::config::RecordSettings;

/// CNAME links followed inside the table, against loops.
const MAX_CHAIN: usize = 8;

/// One name's records.
#[derive(Debug)]
struct LocalName {
    ttl: u32,
    data: Vec<LocalData>,
}

/// Every local name, PTR names included.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// foldhash, seeded at random (names come from files others write): every question
    /// that is not local pays one look-up here.
    names: HashMap<Box<str>, LocalName, RandomState>,
}

impl Records {
    /// The table of `records`, then `hosts` (each entry with `hosts_ttl`).
    pub(super) fn new(records: &[RecordSettings], hosts: &[HostsEntry], hosts_ttl: u32) -> Self {
        let mut table = Self::default();
        let mut addresses: Vec<(IpAddr, &str, u32)> = Vec::new();
        for record in records {
            let ttl = u32::try_from(record.ttl.as_secs()).unwrap_or(u32::MAX);
            let mut data: Vec<LocalData> = Vec::new();
            data.extend(record.a.iter().map(|&ip| LocalData::A(ip)));
            data.extend(record.aaaa.iter().map(|&ip| LocalData::Aaaa(ip)));
            data.extend(
                record
                    .cname
                    .iter()
                    .map(|t| LocalData::Cname(t.as_str().into())),
            );
            data.extend(record.txt.iter().map(|t| LocalData::Txt(t.as_str().into())));
            let ips = (record.a.iter().map(|&ip| IpAddr::V4(ip)))
                .chain(record.aaaa.iter().map(|&ip| IpAddr::V6(ip)));
            addresses.extend(ips.map(|ip| (ip, record.name.as_str(), ttl)));
            table
                .names
                .insert(record.name.as_str().into(), LocalName { ttl, data });
        }
        let configured: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        for entry in hosts {
            for name in &entry.names {
                if configured.contains(&name.as_str()) {
                    continue;
                }
                let data = match entry.address {
                    IpAddr::V4(ip) => LocalData::A(ip),
                    IpAddr::V6(ip) => LocalData::Aaaa(ip),
                };
                let local = table
                    .names
                    .entry(name.as_str().into())
                    .or_insert(LocalName {
                        ttl: hosts_ttl,
                        data: Vec::new(),
                    });
                if !local.data.contains(&data) {
                    local.data.push(data);
                }
                addresses.push((entry.address, name, hosts_ttl));
            }
        }
        for (ip, name, ttl) in addresses {
            // A reverse name the config gives a record of its own keeps it; the first name
            // of an address is its PTR.
            if let Entry::Vacant(slot) = table.names.entry(reverse_name(ip).into()) {
                slot.insert(LocalName {
                    ttl,
                    data: vec![LocalData::Ptr(name.into())],
                });
            }
        }
        table
    }

    /// How many names (PTR names included) the table holds.
    pub(super) fn name_count(&self) -> usize {
        self.names.len()
    }

    /// The answer to `name` (lower-case, no trailing dot) of type `qtype`, if it is a local
    /// name.
    pub(super) fn answer(&self, name: &str, qtype: u16) -> Option<LocalAnswer> {
        if self.names.is_empty() {
            return None;
        }
        let mut local = self.names.get(name)?;
        let mut owner: Box<str> = name.into();
        let mut records = Vec::new();
        for _ in 0..MAX_CHAIN {
            let cname = local.data.iter().find_map(|data| match data {
                LocalData::Cname(target) => Some(target),
                _ => None,
            });
            match cname {
                Some(target) if qtype != qtype::CNAME => {
                    records.push(LocalRecord {
                        owner: owner.clone(),
                        ttl: local.ttl,
                        data: LocalData::Cname(target.clone()),
                    });
                    let Some(next) = self.names.get(target) else {
                        // Out of the house: the client asks for the target itself.
                        return Some(LocalAnswer::records(records, None));
                    };
                    owner = target.clone();
                    local = next;
                }
                _ => break,
            }
        }
        let start = records.len();
        records.extend(
            (local.data.iter())
                .filter(|data| qtype == qtype::ANY || data.qtype() == qtype)
                .map(|data| LocalRecord {
                    owner: owner.clone(),
                    ttl: local.ttl,
                    data: data.clone(),
                }),
        );
        // No data of that type at the end of the chain: NODATA, with the SOA of the name that
        // lacks it so the client caches that for the name's TTL.
        let soa = (records.len() == start).then(|| (owner.clone(), local.ttl));
        Some(LocalAnswer::records(records, soa))
    }
}

impl LocalAnswer {
    fn records(records: Vec<LocalRecord>, soa: Option<(Box<str>, u32)>) -> Self {
        Self {
            rcode: Rcode::NoError,
            records,
            soa,
            kind: LocalKind::Record,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(name: &str, f: impl FnOnce(&mut RecordSettings)) -> RecordSettings {
        let mut record = RecordSettings {
            name: name.to_owned(),
            ttl: Duration::from_secs(300),
            a: Vec::new(),
            aaaa: Vec::new(),
            cname: None,
            txt: Vec::new(),
        };
        f(&mut record);
        record
    }

    fn table() -> Records {
        let records = [
            record("nas.lan", |r| {
                r.a = vec!["192.168.1.10".parse().unwrap()];
                r.aaaa = vec!["fd00::10".parse().unwrap()];
                r.txt = vec!["v=nas".to_owned()];
            }),
            record("files.lan", |r| r.cname = Some("nas.lan".to_owned())),
            record("search.lan", |r| r.cname = Some("example.com".to_owned())),
            record("loop.lan", |r| r.cname = Some("loop2.lan".to_owned())),
            record("loop2.lan", |r| r.cname = Some("loop.lan".to_owned())),
        ];
        let (hosts, _) = super::super::hosts::parse(
            "192.168.1.20 printer.lan printer\n192.168.1.10 other-name-for-nas\n192.168.1.30 nas.lan\n",
        );
        Records::new(&records, &hosts, 60)
    }

    fn datas(answer: &LocalAnswer) -> Vec<(String, LocalData)> {
        (answer.records.iter())
            .map(|r| (r.owner.to_string(), r.data.clone()))
            .collect()
    }

    #[test]
    fn names_answer_their_types_and_nodata_with_an_soa() {
        let table = table();
        let a = table.answer("nas.lan", qtype::A).unwrap();
        assert_eq!(
            datas(&a),
            [(
                "nas.lan".to_owned(),
                LocalData::A("192.168.1.10".parse().unwrap())
            )]
        );
        assert_eq!(a.records[0].ttl, 300);
        assert!(a.soa.is_none());
        let mx = table.answer("nas.lan", 15).unwrap();
        assert!(mx.records.is_empty());
        assert_eq!(mx.soa, Some(("nas.lan".into(), 300)));
        assert_eq!(mx.rcode, Rcode::NoError);
        assert_eq!(
            table.answer("nas.lan", qtype::ANY).unwrap().records.len(),
            3
        );
        assert!(table.answer("www.example.com", qtype::A).is_none());
        assert!(
            table.answer("x.nas.lan", qtype::A).is_none(),
            "only the name itself"
        );
    }

    #[test]
    fn hosts_names_get_addresses_and_the_config_wins() {
        let table = table();
        let printer = table.answer("printer", qtype::A).unwrap();
        assert_eq!(
            datas(&printer),
            [(
                "printer".to_owned(),
                LocalData::A("192.168.1.20".parse().unwrap())
            )]
        );
        assert_eq!(printer.records[0].ttl, 60);
        // `192.168.1.30 nas.lan` in the hosts file does not add to the configured record.
        assert_eq!(table.answer("nas.lan", qtype::A).unwrap().records.len(), 1);
    }

    #[test]
    fn ptr_records_give_the_first_name_of_each_address() {
        let table = table();
        let ptr = |name: &str| match &table.answer(name, qtype::PTR).unwrap().records[0].data {
            LocalData::Ptr(target) => target.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ptr("10.1.168.192.in-addr.arpa"), "nas.lan");
        assert_eq!(ptr("20.1.168.192.in-addr.arpa"), "printer.lan");
        assert_eq!(ptr(&reverse_name("fd00::10".parse().unwrap())), "nas.lan");
        assert!(
            table
                .answer("99.1.168.192.in-addr.arpa", qtype::PTR)
                .is_none()
        );
    }

    #[test]
    fn cnames_are_followed_inside_the_house_only() {
        let table = table();
        let files = table.answer("files.lan", qtype::A).unwrap();
        assert_eq!(
            datas(&files),
            [
                ("files.lan".to_owned(), LocalData::Cname("nas.lan".into())),
                (
                    "nas.lan".to_owned(),
                    LocalData::A("192.168.1.10".parse().unwrap())
                ),
            ]
        );
        let search = table.answer("search.lan", qtype::A).unwrap();
        assert_eq!(
            datas(&search),
            [(
                "search.lan".to_owned(),
                LocalData::Cname("example.com".into())
            )]
        );
        assert!(search.soa.is_none());
        let cname = table.answer("files.lan", qtype::CNAME).unwrap();
        assert_eq!(cname.records.len(), 1);
        let looped = table.answer("loop.lan", qtype::A).unwrap();
        assert_eq!(looped.records.len(), MAX_CHAIN, "a loop stops");
    }
}
