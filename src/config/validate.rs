//! From [`RawConfig`] to [`Settings`]: parses addresses, networks and durations, merges the
//! file's lists and profiles over the bundled catalogue, and checks every reference, so that a
//! [`Settings`] never names a list or profile that does not exist.
//!
//! Checks run in file-section order (server, upstreams, cache, lists, profiles, devices) and the
//! first failure is returned, located at the offending value.
//!
//! This file only runs the sections in order and checks what spans them (the trusted
//! forwarders against `allow_from`, `default_profile` against the profiles); each section is
//! checked in a file of its own, beside its tests: [`super::server`], [`super::upstream`],
//! [`super::cache`], [`super::lists`] (with `[download]`), [`super::profiles`],
//! [`super::devices`] and [`super::querylog`], with the value checks they share in
//! [`super::values`]. The local network's sections are in [`super::local`].

use std::path::Path;

use super::cache::cache;
use super::devices::devices;
use super::error::{ConfigError, Locator};
use super::lists::{download, lists};
use super::local::local;
use super::profiles::profiles;
use super::querylog::querylog;
use super::raw::RawConfig;
use super::server::{admission, forwarders, server};
use super::upstream::upstreams;
use super::values::reference;
use super::{Origin, Settings};
use crate::catalogue::DEFAULT_PROFILE;

/// Checks `raw`, read from `text` at `path`, and turns it into [`Settings`].
pub(super) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let at = Locator::new(text, path);
    // The first error is returned, not all of them: a household fixes one named file:line:key
    // at a time, and a later check often stands on an earlier one (a device's profile is
    // looked up among the profiles, which need the lists), so errors after the first would
    // mostly be echoes of it. serde stops at the first error of the raw layer the same way.
    let server = server(&raw.server, path, &at)?;
    let admission = admission(&raw.server, &at)?;
    let upstreams = upstreams(&raw.upstreams, &server.listen, path, &at)?;
    let cache = cache(&raw.cache, &at)?;
    let download = download(&raw.download, &at)?;
    let lists = lists(&raw.lists, path, &at)?;
    let profiles = profiles(&raw.profiles, &lists, &at)?;
    let profile_names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let devices = devices(&raw.devices, &profile_names, &at)?;
    let trusted_forwarders = match &raw.server.trusted_forwarders {
        None => Vec::new(),
        Some(values) => forwarders(values, &admission.allow_from, &at)?,
    };
    let default_profile = match &raw.default_profile {
        None => DEFAULT_PROFILE.to_owned(),
        Some(name) => reference(name, &profile_names, "profile", "default_profile", &at)?,
    };
    let querylog = querylog(&raw.querylog, &server.state_dir, path, &at)?;
    let local = local(&raw, path, &server.listen, &at)?;
    Ok(Settings {
        origin: Origin::File(path.to_path_buf()),
        server,
        admission,
        upstreams,
        cache,
        download,
        lists,
        profiles,
        devices,
        trusted_forwarders,
        default_profile,
        local,
        querylog,
    })
}

#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    use super::*;
    use crate::catalogue::bundled_ids;
    use crate::config::defaults::{BLOCKED_TTL, CACHE_MAX_TTL, CACHE_MIN_TTL, CACHE_SIZE};
    use crate::config::test_support::{PATH, check, choices, error, preset_names};
    use crate::config::{BlockAnswer, DEFAULT_DNS_LISTEN, ListSource, MatchMode};

    #[test]
    fn example_config_is_valid_and_has_devices() {
        let settings = check(include_str!("../../config.example.toml")).expect("example is valid");
        let devices: Vec<&str> = settings.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(devices, ["quest", "kids-tablet", "parent-phone"]);
        let profiles: Vec<&str> = settings
            .devices
            .iter()
            .map(|d| d.profile.as_str())
            .collect();
        assert_eq!(profiles, ["quest", "no-meta", "parent"]);
        assert_eq!(settings.upstreams.len(), 2);
        assert_eq!(settings.server.listen.len(), 2);
        assert_eq!(settings.default_profile, DEFAULT_PROFILE);
        assert!(settings.lists.iter().any(|l| l.id == "voice-exact"));
    }

    #[test]
    fn catalogue_is_always_present_and_replaced_in_place() {
        let text = "[[device]]\nname = \"quest\"\nmatch = [\"192.168.1.20\"]\nprofile = \"quest\"\n\
                    [[list]]\nid = \"meta-ai\"\nsource = \"lists/ai.txt\"\nmatch = \"subdomains\"\n\
                    [[list]]\nid = \"mine\"\nsource = \"/var/lib/mine.txt\"\n\
                    [[profile]]\nname = \"no-meta\"\nblock = [\"mine\"]\nanswer = \"nxdomain\"\n";
        let settings = check(text).expect("valid");
        let ids: Vec<&str> = settings.lists.iter().map(|l| l.id.as_str()).collect();
        let expected: Vec<&str> = bundled_ids().chain(["mine"]).collect();
        assert_eq!(ids, expected, "meta-ai replaced in place, mine appended");
        let meta_ai = settings
            .lists
            .iter()
            .find(|l| l.id == "meta-ai")
            .expect("meta-ai");
        let relative = Path::new("/etc/metasink/lists/ai.txt").to_path_buf();
        assert_eq!(meta_ai.source, ListSource::File(relative));
        assert_eq!(meta_ai.match_mode, Some(MatchMode::Subdomains));
        let mine = settings.lists.last().expect("mine");
        assert_eq!(mine.source, ListSource::File("/var/lib/mine.txt".into()));
        assert_eq!(mine.match_mode, None);
        let names: Vec<String> = settings.profiles.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, preset_names());
        let no_meta = settings
            .profiles
            .iter()
            .find(|p| p.name == "no-meta")
            .expect("no-meta");
        assert_eq!(
            (no_meta.block.as_slice(), no_meta.answer),
            (&["mine".to_owned()][..], BlockAnswer::NxDomain)
        );
        assert_eq!(
            settings.devices[0].addresses,
            ["192.168.1.20/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let text = "[[upstream]]\naddress = \"9.9.9.9\"\n[[upstream]]\naddress = \"[2620:fe::fe]\"\n\
                    [[profile]]\nname = \"p\"\n[server]\nhttp = \"[::1]\"\n";
        let settings = check(text).expect("valid");
        assert_eq!(settings.origin, Origin::File(PATH.into()));
        assert_eq!(settings.server.listen, [DEFAULT_DNS_LISTEN]);
        assert_eq!(settings.server.http.to_string(), "[::1]:9353");
        let upstreams: Vec<String> = settings
            .upstreams
            .iter()
            .map(|u| u.address.to_string())
            .collect();
        assert_eq!(upstreams, ["9.9.9.9:53", "[2620:fe::fe]:53"]);
        assert_eq!(
            (
                settings.cache.size,
                settings.cache.min_ttl,
                settings.cache.max_ttl
            ),
            (CACHE_SIZE, CACHE_MIN_TTL, CACHE_MAX_TTL)
        );
        let profile = settings.profiles.last().expect("p");
        assert!(profile.block.is_empty() && profile.allow.is_empty() && profile.inspect_answers);
        assert_eq!(
            (profile.answer, profile.blocked_ttl),
            (BlockAnswer::Null, BLOCKED_TTL)
        );
        assert_eq!(settings.default_profile, DEFAULT_PROFILE);
        assert!(
            check("").is_ok(),
            "an empty file is the built-in configuration"
        );
    }

    #[test]
    fn unknown_profiles_list_every_profile() {
        let presets = preset_names();
        let all = || presets.iter().map(String::as_str).chain(["mine"]);
        let profile = "[[profile]]\nname = \"mine\"\n";
        assert_eq!(
            error(&format!(
                "{profile}[[device]]\nname = \"tv\"\nmatch = [\"10.0.0.9\"]\nprofile = \"tv\"\n"
            )),
            format!(
                "/etc/metasink/config.toml:6: device[0].profile: unknown profile `tv`{}",
                choices(all())
            )
        );
        assert_eq!(
            error(&format!("default_profile = \"kids\"\n{profile}")),
            format!(
                "/etc/metasink/config.toml:1: default_profile: unknown profile `kids`{}",
                choices(all())
            )
        );
    }

    #[test]
    fn garbage_never_panics() {
        let garbage = [
            "",
            "\0",
            "\u{feff}",
            "[",
            "[[",
            "]]",
            "=",
            "= =",
            "\"",
            "'''",
            "a = ",
            "[server]\n[server]",
            "[[device]]\nmatch = [[[[[]]]]]",
            "device = []",
            "device = [1, 2]",
            "list = { id = 1 }",
            "\u{1F600} = \"\u{1F600}\"",
            "[cache]\nsize = 1e400",
            "[cache]\nsize = 99999999999999999999999",
            "[[profile]]\nname = \"é\"",
            "[[upstream]]\naddress = \"[::1\"",
            "[[upstream]]\naddress = \":\"",
            "[[device]]\nname=\"d\"\nmatch=[\"/\", \"1.2.3.4/\"]\nprofile=\"quest\"",
            "[[list]]\nid=\"x\"\nsource=\"bundled:\"",
            "\n\n\n\u{0}\r\r\n",
        ];
        for text in garbage {
            let _ = check(text);
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = check(&String::from_utf8_lossy(&bytes));
    }
}
