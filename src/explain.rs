//! `metasink explain`: why a name is (or is not) blocked for a client or a profile — the
//! device the client maps to, its profile, every list entry that covers the name, whether an
//! allow list overrides the block, and the answer the daemon would give.
//!
//! The verdict comes from the query path itself: the question goes through
//! [`Pipeline::resolve`] (identify, local, decide, …) with an empty cache and no upstream, so
//! what it prints is what the daemon does for the question itself. Names inside upstream
//! answers (CNAME targets) are only known at query time and are not covered here;
//! asked about an address, it says which network list holds it and whether the profile
//! blocks answers holding it (`block_networks`).

use std::fmt;
use std::future::ready;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::cache::Cache;
use crate::config::CacheSettings;
use crate::config::schedule::{next_change, window_at};
use crate::dns::{
    Forward, Forwarding, Question, Transport, UpstreamError, describe_blocked_answer,
};
use crate::local::{Local, LocalAnswer, LocalData, LocalKind, Rcode};
use crate::metrics::Metrics;
use crate::net::ForwardedClient;
use crate::overrides::OverrideStore;
use crate::pipeline::{Asker, BlockedBy, Outcome, Pipeline, Query, Resolution};
use crate::policy::matcher::Scope;
use crate::policy::{ListIndex, Policy, Profile};

/// Whose point of view to explain from.
#[derive(Clone, Debug)]
pub enum Viewpoint {
    /// A client address: mapped to a device, else the default profile.
    Client(IpAddr),
    /// A profile by name (presets included).
    Profile(String),
}

/// One list entry that covers the name.
#[derive(Debug)]
pub struct Hit {
    /// The list's id.
    pub list: String,
    /// The entry as stored (the name or the parent that matched).
    pub entry: String,
    /// Exact or name-and-subdomains.
    pub scope: Scope,
    /// An `@@` exception entry of the list.
    pub exception: bool,
    /// What the profile does with this list.
    pub role: Role,
}

/// A network list holding the address asked about.
#[derive(Debug)]
pub struct NetworkHit {
    /// The list's id.
    pub list: String,
    /// Its network that holds the address.
    pub network: IpNet,
    /// Whether the profile blocks answers into it.
    pub blocks: bool,
}

/// What a profile does with a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The profile blocks the list's names.
    Blocks,
    /// The profile allows the list's names (allow wins).
    Allows,
    /// The profile does not use the list.
    Unused,
}

/// The explanation.
#[derive(Debug)]
pub struct Explanation {
    /// The name asked about.
    pub name: String,
    /// The client and the device it maps to (None: unknown, default profile).
    pub client: Option<(IpAddr, Option<String>)>,
    /// The profile used.
    pub profile: String,
    /// Ids of the lists it blocks and allows.
    pub profile_blocks: Vec<String>,
    /// See `profile_blocks`.
    pub profile_allows: Vec<String>,
    /// Ids of the network lists it blocks (`block_networks`).
    pub profile_block_networks: Vec<String>,
    /// When the name asked about is an address: each network list holding it.
    pub networks: Vec<NetworkHit>,
    /// Every entry covering the name.
    pub hits: Vec<Hit>,
    /// An allow list of the profile that holds the name, if any.
    pub allowed_by: Option<String>,
    /// The list that blocks the name, if any.
    pub blocked_by: Option<String>,
    /// The override that decides it, if one does (which, what, until when).
    pub overridden_by: Option<String>,
    /// For a device with a schedule: which window is in force and until when.
    pub schedule: Option<String>,
    /// The answer the daemon gives.
    pub answer: String,
}

/// Explains `question` from `viewpoint` under `policy` and `overrides`.
pub fn explain(
    policy: &Policy,
    overrides: Arc<OverrideStore>,
    viewpoint: &Viewpoint,
    question: &Question,
) -> Result<Explanation, String> {
    let forwarded = ForwardedClient::default();
    let asker = match viewpoint {
        // Found as the daemon finds a client querying directly (its MAC address too).
        Viewpoint::Client(address) => Asker::Client {
            address: *address,
            forwarded: &forwarded,
        },
        Viewpoint::Profile(name) => {
            Asker::Profile(profile_index(policy, name).ok_or_else(|| {
                let names: Vec<_> = policy.profiles().iter().map(|p| p.name.as_str()).collect();
                format!(
                    "no profile is called {name:?} (valid choices: {})",
                    names.join(", ")
                )
            })?)
        }
    };
    let query = Query {
        asker,
        question,
        // What most clients use; ANY is answered over TCP only.
        transport: Transport::Udp,
        received: tokio::time::Instant::now(),
    };
    let resolution = dry_run(policy, overrides, &query)?;
    let profile = resolution.identity.profile;
    let client = match viewpoint {
        Viewpoint::Client(address) => {
            let device = resolution.identity.device;
            let name = (!policy.is_unknown(device)).then(|| device.name.clone());
            Some((*address, name))
        }
        Viewpoint::Profile(_) => None,
    };
    let lists = policy.lists_containing(question.name());
    let list_ids = |indexes: &mut dyn Iterator<Item = ListIndex>| -> Vec<String> {
        indexes.map(|index| policy.list(index).id.clone()).collect()
    };
    let allowed_by = lists
        .and(profile.allow)
        .first()
        .map(|index| policy.list(index).id.clone());
    let schedule = client
        .as_ref()
        .and_then(|(_, device)| device.as_deref())
        .and_then(|device| schedule_now(policy, device));
    let (blocked_by, answer) = match resolution.outcome {
        Outcome::BlockedByOverride(decision) => (
            Some(decision.to_string()),
            describe_blocked_answer(question, profile.answer, profile.blocked_ttl),
        ),
        Outcome::Blocked {
            list,
            by: BlockedBy::Question,
        } => (
            Some(policy.list(list).id.clone()),
            describe_blocked_answer(question, profile.answer, policy.blocked_ttl(profile, list)),
        ),
        Outcome::Truncated => (
            None,
            "NOERROR with TC over UDP: the answer over TCP".to_owned(),
        ),
        Outcome::NotImplemented => (None, "NOTIMP, never forwarded".to_owned()),
        Outcome::Malformed => (None, "FORMERR, never forwarded".to_owned()),
        Outcome::Refused => (None, "REFUSED, never forwarded".to_owned()),
        Outcome::Local(ref local) => (None, describe_local_answer(local)),
        _ => match policy
            .local()
            .resolve(question.name(), question.qtype_code())
        {
            Some(Local::Forward(index, zone)) => (
                None,
                format!(
                    "forwarded to the upstreams of [[forward]] {index} only (zone {zone}), \
                     or answered from the cache"
                ),
            ),
            _ => (
                None,
                "forwarded to the upstreams (or answered from the cache)".to_owned(),
            ),
        },
    };
    Ok(Explanation {
        name: question.name().to_owned(),
        client,
        profile: profile.name.clone(),
        profile_blocks: list_ids(&mut profile.block.iter()),
        profile_allows: list_ids(&mut profile.allow.iter()),
        profile_block_networks: list_ids(&mut profile.block_networks.iter()),
        networks: network_hits(policy, profile, question.name()),
        hits: hits(policy, profile, question.name()),
        allowed_by,
        blocked_by,
        overridden_by: resolution.overridden.map(|decision| decision.to_string()),
        schedule,
        answer,
    })
}

/// Which window of `device`'s schedule is in force now and until when, in words; `None` for a
/// device without a schedule.
fn schedule_now(policy: &Policy, device: &str) -> Option<String> {
    let windows = policy.schedule_of(device);
    if windows.is_empty() {
        return None;
    }
    let now = jiff::ZonedDateTime::now().datetime();
    let until = next_change(windows, now).map_or_else(
        || "for the whole week".to_owned(),
        |time| format!("until {time}"),
    );
    Some(match window_at(windows, now) {
        Some(index) => format!("window {index} ({}) applies {until}", windows[index]),
        None => {
            let own = policy
                .own_profile_of(device)
                .map_or("?", |p| p.name.as_str());
            format!("no window applies: its own profile {own} {until}")
        }
    })
}

/// A local answer in words: "answered at home from the local names (authoritative): NOERROR,
/// nas.lan A 192.168.1.10".
fn describe_local_answer(answer: &LocalAnswer) -> String {
    let mut text = match answer.kind {
        LocalKind::Record => "answered at home from the local names (authoritative): ",
        LocalKind::PrivateZone => {
            "answered at home, never forwarded: a private reverse zone or home.arpa \
             (authoritative): "
        }
    }
    .to_owned();
    text.push_str(match answer.rcode {
        Rcode::NoError => "NOERROR",
        Rcode::NxDomain => "NXDOMAIN",
    });
    for record in &answer.records {
        let data = match &record.data {
            LocalData::A(ip) => format!("A {ip}"),
            LocalData::Aaaa(ip) => format!("AAAA {ip}"),
            LocalData::Cname(target) => format!("CNAME {target}"),
            LocalData::Ptr(target) => format!("PTR {target}"),
            LocalData::Txt(text) => format!("TXT {text:?}"),
        };
        text.push_str(&format!(", {} {data}", record.owner));
    }
    if let Some((zone, ttl)) = &answer.soa {
        text.push_str(&format!(", SOA of {zone} in authority (TTL {ttl}s)"));
    }
    text
}

/// The index of the profile called `name`.
fn profile_index(policy: &Policy, name: &str) -> Option<usize> {
    policy
        .profiles()
        .iter()
        .position(|profile| profile.name == name)
}

/// Where the dry run's questions go: nowhere, so a question that would be forwarded ends
/// there, past every stage that decides without the upstreams.
struct Nowhere;

impl Forward for Nowhere {
    fn forward<'a>(&'a self, _: &'a Question) -> Forwarding<'a> {
        Box::pin(ready(Err(UpstreamError::NoUpstreams)))
    }
}

/// Runs `query` through the query path with no cache and no upstream.
fn dry_run<'p>(
    policy: &'p Policy,
    overrides: Arc<OverrideStore>,
    query: &Query<'_>,
) -> Result<Resolution<'p>, String> {
    let settings = CacheSettings {
        size: 0,
        min_ttl: Duration::ZERO,
        max_ttl: Duration::ZERO,
    };
    let pipeline = Pipeline::new(Cache::new(&settings, Metrics::new().cache()), Nowhere)
        .with_overrides(overrides)
        .without_forward_zones();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|error| format!("cannot start the dry run: {error}"))?;
    Ok(runtime.block_on(pipeline.resolve(policy, query)))
}

/// When `name` is an address, the network lists holding it: what the pipeline checks in the
/// answers of a profile with `block_networks`.
fn network_hits(policy: &Policy, profile: &Profile, name: &str) -> Vec<NetworkHit> {
    let Ok(address) = name.parse::<IpAddr>() else {
        return Vec::new();
    };
    policy
        .networks_of(address)
        .map(|(list, network)| NetworkHit {
            list: policy.list(list).id.clone(),
            network,
            blocks: profile.block_networks.contains(list),
        })
        .collect()
}

fn hits(policy: &Policy, profile: &Profile, name: &str) -> Vec<Hit> {
    policy
        .matcher()
        .explain(name)
        .into_iter()
        .map(|hit| Hit {
            list: policy.list(hit.list).id.clone(),
            entry: hit.entry,
            scope: hit.scope,
            exception: hit.allow,
            role: if profile.block.contains(hit.list) {
                Role::Blocks
            } else if profile.allow.contains(hit.list) {
                Role::Allows
            } else {
                Role::Unused
            },
        })
        .collect()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name:     {}", self.name)?;
        match &self.client {
            Some((address, Some(device))) => {
                writeln!(f, "client:   {address} is device {device:?}")?
            }
            Some((address, None)) => {
                writeln!(f, "client:   {address} matches no device: default profile")?
            }
            None => {}
        }
        writeln!(f, "profile:  {}", self.profile)?;
        writeln!(f, "  blocks: {}", join_or_none(&self.profile_blocks))?;
        writeln!(f, "  allows: {}", join_or_none(&self.profile_allows))?;
        if !self.profile_block_networks.is_empty() {
            writeln!(
                f,
                "  blocks answers with an address in: {}",
                self.profile_block_networks.join(", ")
            )?;
        }
        for hit in &self.networks {
            let verdict = if hit.blocks {
                format!(
                    "an answer holding it is BLOCKED by this profile, EDE 15 \"blocked by {}\"",
                    hit.list
                )
            } else {
                "not used by this profile".to_owned()
            };
            writeln!(
                f,
                "address:  {} is inside {} of {}: {verdict}",
                self.name, hit.network, hit.list
            )?;
        }
        if self.hits.is_empty() {
            writeln!(f, "lists:    no list contains this name")?;
        } else {
            writeln!(f, "lists containing the name:")?;
        }
        for hit in &self.hits {
            let scope = match hit.scope {
                Scope::Exact => "exact name",
                Scope::Subdomains => "name and subdomains",
            };
            let exception = if hit.exception { " (exception @@)" } else { "" };
            let role = match hit.role {
                Role::Blocks => "blocked by this profile",
                Role::Allows => "allowed by this profile",
                Role::Unused => "not used by this profile",
            };
            writeln!(
                f,
                "  {:<22} entry {:?} as {scope}{exception}: {role}",
                hit.list, hit.entry
            )?;
        }
        match &self.allowed_by {
            Some(allow) => writeln!(f, "allow:    {allow} overrides any block")?,
            None => writeln!(f, "allow:    no allow list of this profile holds it")?,
        }
        if let Some(schedule) = &self.schedule {
            writeln!(f, "schedule: {schedule}")?;
        }
        match (&self.blocked_by, &self.overridden_by) {
            (Some(by), _) => writeln!(f, "verdict:  BLOCKED by {by}")?,
            (None, Some(by)) => writeln!(f, "verdict:  not blocked: {by} decides it")?,
            (None, None) => writeln!(f, "verdict:  not blocked")?,
        }
        write!(f, "answer:   {}", self.answer)?;
        if let Some(list) = &self.blocked_by {
            write!(f, ", EDE 15 \"blocked by {list}\" when the query has EDNS")?;
        }
        Ok(())
    }
}

fn join_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}
