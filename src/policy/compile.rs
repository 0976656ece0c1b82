//! Building a [`Policy`] snapshot from validated settings: reading and parsing every list into
//! one matcher, turning profiles into masks, indexing devices and resolving metric handles.
//!
//! Runs off the query path (at start-up and on reload). It never fails: a list that cannot be
//! read is kept in the snapshot as "not loaded" with its reason, so the rest of the policy
//! still works.

use std::sync::Arc;

use tracing::{info, warn};

use super::devices::DeviceIndexMap;
use super::matcher::{MatcherBuilder, Scope};
use super::schedules::ConfiguredDevice;
use super::{Device, ListIndex, ListInfo, ListMask, NetworkSet, Policy, Profile};
pub use crate::config::UNKNOWN_DEVICE;
use crate::config::{ListSettings, LogMode, ProfileMode, ProfileSettings, Settings};
use crate::dns::Upstreams;
use crate::lists::MatchMode;
use crate::lists::parse::{EntryScope, ListParser};
use crate::lists::source;
use crate::lists::store::ListStore;
use crate::local::LocalZones;
use crate::metrics::Metrics;

/// The lists that hold every Meta registrable domain: a name in one is Meta's.
const META_LISTS: [&str; 2] = ["all-meta", "all-meta-brands"];

/// Builds the snapshot numbered `generation`.
pub fn compile(settings: &Settings, metrics: &Metrics, generation: u64) -> Policy {
    compile_after(settings, metrics, generation, None)
}

/// [`compile`], the next snapshot after `previous`: the forward zones' upstreams whose
/// settings are unchanged are taken over from it, health and connections included (see
/// [`Upstreams::keeping`]).
pub fn compile_after(
    settings: &Settings,
    metrics: &Metrics,
    generation: u64,
    previous: Option<&Policy>,
) -> Policy {
    let mut matcher = MatcherBuilder::new();
    let store = ListStore::new(&settings.server.state_dir);
    // A list some profile names in `block_networks` holds networks, not names (validation
    // refuses a list used both ways).
    let is_network_list = |id: &str| {
        settings
            .profiles
            .iter()
            .any(|profile| profile.block_networks.iter().any(|used| used == id))
    };
    let mut networks = Vec::new();
    let lists: Vec<ListInfo> = settings
        .lists
        .iter()
        .enumerate()
        .map(|(index, list)| {
            let index = list_index(index);
            if is_network_list(&list.id) {
                let (info, set) = load_network_list(list, &store);
                networks.push((index, set));
                info
            } else {
                load_list(list, index, &store, &mut matcher)
            }
        })
        .collect();
    let profiles: Vec<Profile> = settings
        .profiles
        .iter()
        .map(|p| compile_profile(p, &lists))
        .collect();
    let profile_index = |name: &str| profiles.iter().position(|p| p.name == name).unwrap_or(0);
    let make_device = |name: &str, profile: usize, querylog: Option<LogMode>| Device {
        name: name.to_owned(),
        profile,
        querylog: querylog.unwrap_or(settings.querylog.mode),
        counters: match profiles[profile].observe {
            false => metrics.client_counters(
                name,
                &profiles[profile].name,
                &blocking_ids(&profiles[profile], &lists),
            ),
            true => metrics.observe_counters(
                name,
                &profiles[profile].name,
                &blocking_ids(&profiles[profile], &lists),
            ),
        },
    };
    let devices: Vec<ConfiguredDevice> = settings
        .devices
        .iter()
        .map(|device| {
            ConfiguredDevice::new(&device.schedule, &device.profile, |profile| {
                make_device(&device.name, profile_index(profile), device.querylog)
            })
        })
        .collect();
    let unknown = make_device(
        UNKNOWN_DEVICE,
        profile_index(&settings.default_profile),
        None,
    );
    unknown.counters.set_in_force(true);
    let device_index = DeviceIndexMap::new(
        settings
            .devices
            .iter()
            .enumerate()
            .map(|(index, device)| (index, &device.addresses[..], &device.macs[..])),
        &settings.trusted_forwarders,
    );
    let matcher = matcher.build();
    info!(
        generation,
        lists = lists.len(),
        names = matcher.len(),
        "policy built"
    );
    let meta_lists = (lists.iter().enumerate())
        .filter(|(_, list)| META_LISTS.contains(&list.id.as_str()))
        .map(|(index, _)| list_index(index))
        .collect();
    let policy = Policy {
        generation,
        meta_lists,
        lists,
        matcher,
        networks,
        profiles,
        devices,
        unknown,
        device_index,
        local: LocalZones::compile(&settings.local),
        forward_upstreams: (settings.local.forwards.iter())
            .map(|forward| {
                let kept = previous.into_iter().flat_map(|p| &p.forward_upstreams);
                Arc::new(Upstreams::keeping(
                    &forward.upstreams,
                    metrics,
                    kept.map(|set| &**set),
                ))
            })
            .collect(),
    };
    policy.apply_schedules(jiff::ZonedDateTime::now().datetime());
    policy
}

/// Validation caps the number of lists at [`super::MAX_LISTS`], so every index fits.
fn list_index(index: usize) -> ListIndex {
    ListIndex::try_from(index).expect("validation caps the number of lists")
}

/// Reads and parses one network list (a `block_networks` list) into its set.
fn load_network_list(settings: &ListSettings, store: &ListStore) -> (ListInfo, NetworkSet) {
    let mut networks = Vec::new();
    let mut info = read_list(settings, store, |parser, line| {
        parser.feed_network(line, |network| networks.push(network));
    });
    info.networks = true;
    (info, NetworkSet::new(networks))
}

/// Reads and parses one list into the matcher.
fn load_list(
    settings: &ListSettings,
    index: ListIndex,
    store: &ListStore,
    matcher: &mut MatcherBuilder,
) -> ListInfo {
    read_list(settings, store, |parser, line| {
        // The config's `match` wins; else the list's own header (read before any entry);
        // else name and subdomains.
        let plain = match settings.match_mode.or(parser.header().match_mode) {
            Some(MatchMode::Exact) => Scope::Exact,
            Some(MatchMode::Subdomains) | None => Scope::Subdomains,
        };
        parser.feed(line, |entry| {
            let scope = match entry.scope {
                EntryScope::Exact => Scope::Exact,
                EntryScope::Subdomains => Scope::Subdomains,
                EntryScope::ListDefault => plain,
            };
            matcher.add(&entry.name, index, scope, entry.allow);
        });
    })
}

/// Reads a list's lines from its source through `feed`, logging a few bad lines and a
/// summary; a list that cannot be read is kept as not loaded, with its reason.
fn read_list(
    settings: &ListSettings,
    store: &ListStore,
    mut feed: impl FnMut(&mut ListParser, &str),
) -> ListInfo {
    let origin = source::describe(&settings.source);
    let mut info = ListInfo::new(settings, origin);
    let mut parser = ListParser::default();
    let read = source::for_each_line(&settings.source, store, |line| feed(&mut parser, line));
    if let Err(error) = read {
        warn!(list = %settings.id, %error, "list not loaded");
        info.load_error = Some(error.to_string());
        return info;
    }
    let report = parser.finish();
    for sample in &report.invalid_samples {
        warn!(list = %settings.id, "{}:{}: {} ({:?})", info.origin, sample.line, sample.error, sample.text);
    }
    if report.invalid_count > report.invalid_samples.len() {
        warn!(list = %settings.id, "{} more invalid lines skipped", report.invalid_count - report.invalid_samples.len());
    }
    info.record(report);
    info
}

fn compile_profile(settings: &ProfileSettings, lists: &[ListInfo]) -> Profile {
    let mask = |ids: &[String]| -> ListMask {
        ids.iter()
            .filter_map(|id| lists.iter().position(|list| &list.id == id))
            .map(list_index)
            .collect()
    };
    Profile {
        name: settings.name.clone(),
        block: mask(&settings.block),
        allow: mask(&settings.allow),
        block_networks: mask(&settings.block_networks),
        answer: settings.answer,
        blocked_ttl: settings.blocked_ttl,
        inspect_answers: settings.inspect_answers,
        observe: settings.mode == ProfileMode::Observe,
    }
}

/// For each list index, its id when `profile` blocks it (the `list` label of blocked counts).
fn blocking_ids<'a>(profile: &Profile, lists: &'a [ListInfo]) -> Vec<Option<&'a str>> {
    lists
        .iter()
        .enumerate()
        .map(|(index, list)| {
            profile
                .block
                .contains(list_index(index))
                .then_some(list.id.as_str())
        })
        .collect()
}
