//! `[[profile]]`: the presets with the file's profiles added or replacing them by name, each
//! resolved on top of the profile it `extends` (cycles refused), its lists checked to exist
//! and to be used for names or for networks, never both; its blocked answer, TTL, answer
//! inspection and `mode` (`observe` counts and logs would-block names but answers them).

use std::collections::HashMap;

use super::defaults::{BLOCKED_TTL, presets};
use super::error::{ConfigError, Locator};
use super::raw::{RawProfile, Text};
use super::values::{choose, declare, entry_key, optional_ttl, reference, replace_or_push};
use super::{BlockAnswer, ListSettings, ProfileMode, ProfileSettings};

/// Every `answer` a profile may give.
const ANSWERS: [BlockAnswer; 4] = [
    BlockAnswer::Null,
    BlockAnswer::NoData,
    BlockAnswer::NxDomain,
    BlockAnswer::Refused,
];

/// Every `mode` a profile may have.
const PROFILE_MODES: [ProfileMode; 2] = [ProfileMode::Enforce, ProfileMode::Observe];

/// The presets with the file's `[[profile]]`s added or replacing them by name. A profile that
/// `extends` another (a preset or a `[[profile]]`) starts from it: its parent is resolved first,
/// and a chain that comes back to a profile is refused.
pub(super) fn profiles(
    raw: &[RawProfile],
    lists: &[ListSettings],
    at: &Locator<'_>,
) -> Result<Vec<ProfileSettings>, ConfigError> {
    let list_ids: Vec<&str> = lists.iter().map(|list| list.id.as_str()).collect();
    let mut seen = HashMap::new();
    for (index, profile) in raw.iter().enumerate() {
        let key = entry_key("profile", index, "name");
        declare(&mut seen, &profile.name, "profile name", &key, at)?;
    }
    let mut resolved = vec![None; raw.len()];
    for index in 0..raw.len() {
        resolve_profile(raw, index, &list_ids, &mut resolved, &mut Vec::new(), at)?;
    }
    let mut profiles = presets();
    for settings in resolved.into_iter().flatten() {
        replace_or_push(&mut profiles, settings, |p| &p.name);
    }
    network_lists_hold_no_names(raw, &profiles, at)?;
    Ok(profiles)
}

/// Refuses a list used both for names (`block`, `allow`) and for networks (`block_networks`):
/// its lines are read one way or the other.
fn network_lists_hold_no_names(
    raw: &[RawProfile],
    profiles: &[ProfileSettings],
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let network_lists: Vec<&str> = profiles
        .iter()
        .flat_map(|p| p.block_networks.iter().map(String::as_str))
        .collect();
    let name_lists: Vec<&str> = profiles
        .iter()
        .flat_map(|p| p.block.iter().chain(&p.allow).map(String::as_str))
        .collect();
    const NETWORKS: &str = "a network list: name it in `block_networks`";
    const NAMES: &str = "a list of names: name it in `block` or `allow`";
    for (index, profile) in raw.iter().enumerate() {
        let uses = [
            ("block", &profile.block, &network_lists, NETWORKS),
            ("allow", &profile.allow, &network_lists, NETWORKS),
            (
                "block_networks",
                &profile.block_networks,
                &name_lists,
                NAMES,
            ),
        ];
        for (field, values, other_use, problem) in uses {
            let clash = values
                .iter()
                .find(|value| other_use.contains(&value.get_ref().as_str()));
            if let Some(value) = clash {
                let message = format!("`{}` is {problem}", value.get_ref());
                let key = entry_key("profile", index, field);
                return Err(at.invalid(value.span(), key, message));
            }
        }
    }
    Ok(())
}

/// The `index`th `[[profile]]`, resolved after its parent. `resolved` keeps the profiles done so
/// far; `chain` holds the indexes whose parent is being resolved, so a cycle is seen.
fn resolve_profile(
    raw: &[RawProfile],
    index: usize,
    list_ids: &[&str],
    resolved: &mut [Option<ProfileSettings>],
    chain: &mut Vec<usize>,
    at: &Locator<'_>,
) -> Result<ProfileSettings, ConfigError> {
    if let Some(done) = &resolved[index] {
        return Ok(done.clone());
    }
    let profile = &raw[index];
    let parent = match &profile.extends {
        None => None,
        Some(name) => {
            let key = entry_key("profile", index, "extends");
            let configured = raw.iter().position(|p| p.name.get_ref() == name.get_ref());
            match configured {
                Some(parent) if parent == index || chain.contains(&parent) => {
                    let start = chain
                        .iter()
                        .position(|&i| i == parent)
                        .unwrap_or(chain.len());
                    let names: Vec<&str> = chain[start..]
                        .iter()
                        .chain([&index, &parent])
                        .map(|&i| raw[i].name.get_ref().as_str())
                        .collect();
                    let message = format!(
                        "`extends` goes round in a cycle: {} (to change a preset, give the new \
                         profile a name of its own)",
                        names.join(" → ")
                    );
                    return Err(at.invalid(name.span(), key, message));
                }
                Some(parent) => {
                    chain.push(index);
                    let settings = resolve_profile(raw, parent, list_ids, resolved, chain, at)?;
                    chain.pop();
                    Some(settings)
                }
                None => {
                    let preset = presets().into_iter().find(|p| &p.name == name.get_ref());
                    if preset.is_none() {
                        let choices = presets()
                            .into_iter()
                            .map(|p| p.name)
                            .chain(raw.iter().map(|p| p.name.get_ref().clone()))
                            .filter(|choice| choice != profile.name.get_ref())
                            .collect();
                        let message = format!("unknown profile `{}`", name.get_ref());
                        return Err(at.invalid_among(name.span(), key, message, choices));
                    }
                    preset
                }
            }
        }
    };
    let settings = profile_settings(profile, index, parent.as_ref(), list_ids, at)?;
    resolved[index] = Some(settings.clone());
    Ok(settings)
}

/// One `[[profile]]` (its name already checked), its lists checked against `list_ids`, on top of
/// `parent` when it extends one: the parent's lists come first, and what the profile leaves
/// unset is the parent's.
fn profile_settings(
    raw: &RawProfile,
    index: usize,
    parent: Option<&ProfileSettings>,
    list_ids: &[&str],
    at: &Locator<'_>,
) -> Result<ProfileSettings, ConfigError> {
    let key = |field: &str| entry_key("profile", index, field);
    let removed = removed_lists(raw, index, parent, at)?;
    let lists = |inherited: Option<&Vec<String>>,
                 values: &[Text],
                 field: &str|
     -> Result<Vec<String>, ConfigError> {
        let key = key(field);
        let mut ids = inherited.cloned().unwrap_or_default();
        ids.retain(|id| !removed.contains(&id.as_str()));
        for value in values {
            let id = reference(value, list_ids, "list", &key, at)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    };
    Ok(ProfileSettings {
        name: raw.name.get_ref().clone(),
        block: lists(parent.map(|p| &p.block), &raw.block, "block")?,
        allow: lists(parent.map(|p| &p.allow), &raw.allow, "allow")?,
        block_networks: lists(
            parent.map(|p| &p.block_networks),
            &raw.block_networks,
            "block_networks",
        )?,
        answer: raw
            .answer
            .as_ref()
            .map(|value| choose(value, &ANSWERS, BlockAnswer::as_str, &key("answer"), at))
            .transpose()?
            .or(parent.map(|p| p.answer))
            .unwrap_or(BlockAnswer::Null),
        blocked_ttl: optional_ttl(
            raw.blocked_ttl.as_ref(),
            parent.map_or(BLOCKED_TTL, |p| p.blocked_ttl),
            &key("blocked_ttl"),
            at,
        )?,
        inspect_answers: raw
            .inspect_answers
            .or(parent.map(|p| p.inspect_answers))
            .unwrap_or(true),
        mode: raw
            .mode
            .as_ref()
            .map(|value| choose(value, &PROFILE_MODES, ProfileMode::as_str, &key("mode"), at))
            .transpose()?
            .or(parent.map(|p| p.mode))
            .unwrap_or_default(),
    })
}

/// The ids of a profile's `remove`: each must be a list its parent blocks or allows.
fn removed_lists<'a>(
    raw: &'a RawProfile,
    index: usize,
    parent: Option<&ProfileSettings>,
    at: &Locator<'_>,
) -> Result<Vec<&'a str>, ConfigError> {
    let key = entry_key("profile", index, "remove");
    raw.remove
        .iter()
        .map(|value| {
            let Some(parent) = parent else {
                let message = "`remove` takes lists out of what `extends` brings: add `extends`";
                return Err(at.invalid(value.span(), key.as_str(), message));
            };
            let id = value.get_ref().as_str();
            let inherited = || {
                parent
                    .block
                    .iter()
                    .chain(&parent.allow)
                    .chain(&parent.block_networks)
            };
            if inherited().any(|used| used == id) {
                return Ok(id);
            }
            let choices = inherited().cloned().collect();
            let message = format!("`{id}` is not a list of `{}`", parent.name);
            Err(at.invalid_among(value.span(), key.as_str(), message, choices))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::catalogue::bundled_ids;
    use crate::config::Settings;
    use crate::config::test_support::{PATH, assert_errors, check, choices, error};

    #[test]
    fn unknown_list_in_a_profile_lists_every_list() {
        let text = "[[list]]\nid = \"mine\"\nsource = \"bundled:meta-ai\"\n\
                    [[profile]]\nname = \"p\"\nblock = [\"mine\"]\n[[profile]]\nname = \"q\"\n\
                    block = [\"meta-ai\"]\nallow = [\n  \"keep-facebook\",\n  \"keep-tiktok\",\n]\n";
        assert_eq!(
            error(text),
            format!(
                "/etc/metasink/config.toml:12: profile[1].allow: unknown list `keep-tiktok`{}",
                choices(bundled_ids().chain(["mine"]))
            )
        );
    }

    /// The profile named `name` of `settings`.
    fn profile<'a>(settings: &'a Settings, name: &str) -> &'a ProfileSettings {
        settings
            .profiles
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no profile {name}"))
    }

    #[test]
    fn a_profile_extends_a_preset_or_a_profile_and_adds_to_it() {
        let settings = check(
            "[[profile]]\nname = \"kid\"\nextends = \"house\"\nblock = [\"app-whatsapp\"]\n\
             answer = \"nodata\"\n\n\
             [[profile]]\nname = \"house\"\nextends = \"meta-apps\"\n\
             remove = [\"keep-instagram\"]\n\
             block = [\"app-instagram\", \"meta-ai\"]\nblocked_ttl = \"1m\"\n",
        )
        .expect("valid");
        let meta_apps = presets()
            .into_iter()
            .find(|p| p.name == "meta-apps")
            .expect("preset");
        let house = profile(&settings, "house");
        let mut block = meta_apps.block.clone();
        block.push("app-instagram".to_owned());
        assert_eq!(house.block, block, "the parent's lists first, no repeat");
        let mut allow = meta_apps.allow.clone();
        allow.retain(|id| id != "keep-instagram");
        assert_eq!(house.allow, allow, "`remove` takes the kept app's list out");
        assert_eq!(house.blocked_ttl, Duration::from_secs(60));
        assert_eq!(house.answer, meta_apps.answer);

        // A profile declared before its parent still gets it, with what it sets itself.
        let kid = profile(&settings, "kid");
        block.push("app-whatsapp".to_owned());
        assert_eq!(kid.block, block);
        assert_eq!(kid.allow, allow);
        assert_eq!(
            (kid.answer, kid.blocked_ttl),
            (BlockAnswer::NoData, Duration::from_secs(60))
        );
    }

    #[test]
    fn extends_refuses_cycles_and_unknown_profiles() {
        assert_errors(&[
            (
                "[[profile]]\nname = \"a\"\nextends = \"b\"\n\n\
                 [[profile]]\nname = \"b\"\nextends = \"c\"\n\n\
                 [[profile]]\nname = \"c\"\nextends = \"a\"\n",
                "11: profile[2].extends",
                "`extends` goes round in a cycle: a → b → c → a",
            ),
            (
                "[[profile]]\nname = \"meta-apps\"\nextends = \"meta-apps\"\n",
                "3: profile[0].extends",
                "`extends` goes round in a cycle: meta-apps → meta-apps",
            ),
            (
                "[[profile]]\nname = \"a\"\nextends = \"nope\"\n",
                "3: profile[0].extends",
                "unknown profile `nope`",
            ),
            (
                "[[profile]]\nname = \"a\"\nextends = \"quest\"\nremove = [\"keep-instagram\"]\n",
                "4: profile[0].remove",
                "`keep-instagram` is not a list of `quest`",
            ),
            (
                "[[profile]]\nname = \"a\"\nremove = [\"meta-ai\"]\n",
                "3: profile[0].remove",
                "`remove` takes lists out of what `extends` brings",
            ),
        ]);
    }

    #[test]
    fn bad_blocked_ttl() {
        assert_errors(&[(
            "[[profile]]\nblocked_ttl = \"10 parsecs\"\nname = \"p\"\n",
            "2: profile[0].blocked_ttl",
            "`10 parsecs` is not a duration",
        )]);
    }

    #[test]
    fn profile_mode_errors_name_file_line_and_key() {
        assert_eq!(
            error("[[profile]]\nname = \"tv\"\nmode = \"dry\"\n"),
            format!(
                "{PATH}:3: profile[0].mode: unknown value `dry`{}",
                choices(["enforce", "observe"])
            )
        );
    }
}
