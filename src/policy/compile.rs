//! Building a [`Policy`] snapshot from validated settings: reading and parsing every list into
//! one matcher, turning profiles into masks, indexing devices and resolving metric handles.
//!
//! Runs off the query path (at start-up and on reload). It never fails: a list that cannot be
//! read is kept in the snapshot as "not loaded" with its reason, so the rest of the policy
//! still works.

use tracing::{info, warn};

use super::devices::DeviceIndexMap;
use super::matcher::{MatcherBuilder, Scope};
use super::{Device, ListIndex, ListInfo, ListMask, Policy, Profile};
use crate::config::{ListSettings, LogMode, ProfileMode, ProfileSettings, Settings};
use crate::lists::MatchMode;
use crate::lists::parse::{EntryScope, ListParser};
use crate::lists::source;
use crate::lists::store::ListStore;
use crate::metrics::Metrics;

/// Device label of clients that match no device.
pub const UNKNOWN_DEVICE: &str = "unknown";

/// The lists that hold every Meta registrable domain: a name in one is Meta's.
const META_LISTS: [&str; 2] = ["all-meta", "all-meta-brands"];

/// Builds the snapshot numbered `generation`.
pub fn compile(settings: &Settings, metrics: &Metrics, generation: u64) -> Policy {
    let mut matcher = MatcherBuilder::new();
    let store = ListStore::new(&settings.server.state_dir);
    let lists: Vec<ListInfo> = settings
        .lists
        .iter()
        .enumerate()
        .map(|(index, list)| load_list(list, list_index(index), &store, &mut matcher))
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
    let devices: Vec<Device> = settings
        .devices
        .iter()
        .map(|device| {
            make_device(
                &device.name,
                profile_index(&device.profile),
                device.querylog,
            )
        })
        .collect();
    let unknown = make_device(
        UNKNOWN_DEVICE,
        profile_index(&settings.default_profile),
        None,
    );
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
    Policy {
        generation,
        meta_lists,
        lists,
        matcher,
        profiles,
        devices,
        unknown,
        device_index,
    }
}

/// Validation caps the number of lists at [`super::MAX_LISTS`], so every index fits.
fn list_index(index: usize) -> ListIndex {
    ListIndex::try_from(index).expect("validation caps the number of lists")
}

/// Reads and parses one list into the matcher, logging a few bad lines and a summary.
fn load_list(
    settings: &ListSettings,
    index: ListIndex,
    store: &ListStore,
    matcher: &mut MatcherBuilder,
) -> ListInfo {
    let origin = source::describe(&settings.source);
    let mut info = ListInfo::new(settings, origin);
    let mut parser = ListParser::default();
    let read = source::for_each_line(&settings.source, store, |line| {
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
    });
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
