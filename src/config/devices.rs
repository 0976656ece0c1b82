//! `[[device]]`: unique names (never `unknown`, the label of clients that match no device),
//! the addresses, networks and MAC addresses that identify each (none claimed by two devices),
//! its profile, its own query log `mode`, and the windows of its `schedule`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use ipnet::IpNet;

use super::error::{ConfigError, Locator};
use super::querylog::LOG_MODES;
use super::raw::{RawDevice, RawWindow, Text};
use super::schedule::{Days, TimeOfDay, Window, shadowed};
use super::values::{choose, declare, entry_key, ip_network, reference};
use super::{DeviceSettings, LogMode, UNKNOWN_DEVICE};
use crate::net::MacAddress;

/// `[[device]]`s: unique names, known profiles, and no address, network or MAC address in two
/// devices.
pub(super) fn devices(
    raw: &[RawDevice],
    profile_names: &[&str],
    at: &Locator<'_>,
) -> Result<Vec<DeviceSettings>, ConfigError> {
    let mut seen = HashMap::new();
    let mut owners = HashMap::new();
    raw.iter()
        .enumerate()
        .map(|(index, device)| {
            let key = |field: &str| entry_key("device", index, field);
            declare(&mut seen, &device.name, "device name", &key("name"), at)?;
            if device.name.get_ref() == UNKNOWN_DEVICE {
                let message = format!(
                    "`{UNKNOWN_DEVICE}` is the device label of clients that match no device: \
                     pick another name"
                );
                return Err(at.invalid(device.name.span(), key("name"), message));
            }
            let (addresses, macs) = device_matches(device, &key("match"), index, &mut owners, at)?;
            let profile = &device.profile;
            Ok(DeviceSettings {
                name: device.name.get_ref().clone(),
                addresses,
                macs,
                profile: reference(profile, profile_names, "profile", &key("profile"), at)?,
                querylog: (device.querylog.as_ref())
                    .map(|value| choose(value, &LOG_MODES, LogMode::as_str, &key("querylog"), at))
                    .transpose()?,
                schedule: schedule(&device.schedule, &key("schedule"), profile_names, at)?,
            })
        })
        .collect()
}

/// The windows of a device's `schedule` (see [`super::schedule`]).
fn schedule(
    raw: &[RawWindow],
    key: &str,
    profile_names: &[&str],
    at: &Locator<'_>,
) -> Result<Vec<Window>, ConfigError> {
    let windows = raw
        .iter()
        .enumerate()
        .map(|(index, window)| {
            let key = |field: &str| format!("{key}[{index}].{field}");
            let invalid = |text: &Text, field: &str| {
                let (span, key) = (text.span(), key(field));
                move |message: String| at.invalid(span, key, message)
            };
            let from =
                TimeOfDay::parse(window.from.get_ref()).map_err(invalid(&window.from, "from"))?;
            let to = TimeOfDay::parse(window.to.get_ref()).map_err(invalid(&window.to, "to"))?;
            if from == to {
                let message = "a window must end at another time than it starts; for a whole \
                               day write from = \"00:00\", to = \"24:00\"";
                return Err(at.invalid(window.to.span(), key("to"), message));
            }
            Ok(Window {
                profile: reference(
                    &window.profile,
                    profile_names,
                    "profile",
                    &key("profile"),
                    at,
                )?,
                days: Days::parse(window.days.get_ref()).map_err(invalid(&window.days, "days"))?,
                from,
                to,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((never, by)) = shadowed(&windows) {
        let message = format!(
            "this window can never apply: the windows before it ({key}[{by}] and earlier) already \
             cover all of its time, and the first window that covers a time wins"
        );
        return Err(at.invalid(raw[never].days.span(), format!("{key}[{never}]"), message));
    }
    Ok(windows)
}

/// What a `[[device]] match` entry identifies a device by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Identifier {
    Network(IpNet),
    Mac(MacAddress),
}

/// The `match` networks and MAC addresses of `device`, recording in `owners` which device
/// claimed each.
///
/// Only the same network (or MAC address) claimed twice is refused: an address inside another
/// device's network is fine, the more specific one wins.
fn device_matches<'a>(
    device: &'a RawDevice,
    key: &str,
    index: usize,
    owners: &mut HashMap<Identifier, (usize, &'a str)>,
    at: &Locator<'_>,
) -> Result<(Vec<IpNet>, Vec<MacAddress>), ConfigError> {
    let values = &device.matches;
    if values.get_ref().is_empty() {
        let message = "needs at least one IP address, network or MAC address";
        return Err(at.invalid(values.span(), key, message));
    }
    let name = device.name.get_ref().as_str();
    let (mut addresses, mut macs) = (Vec::new(), Vec::new());
    for value in values.get_ref() {
        let text = value.get_ref();
        let identifier = match text.parse::<MacAddress>() {
            Ok(mac) => Identifier::Mac(mac),
            Err(()) => Identifier::Network(ip_network(text).map_err(|message| {
                // Without a `/` it may as well have been meant as a MAC address.
                let message = if text.contains('/') {
                    message
                } else {
                    format!(
                        "`{text}` is not an IP address, CIDR network or MAC address, like \
                         `192.168.1.20`, `192.168.1.64/28` or `aa:bb:cc:dd:ee:ff`"
                    )
                };
                at.invalid(value.span(), key, message)
            })?),
        };
        match owners.entry(identifier) {
            Entry::Occupied(owner) if owner.get().0 != index => {
                let (other_index, other) = *owner.get();
                let note = match identifier {
                    Identifier::Network(network) => mapped_note(text, network),
                    Identifier::Mac(_) => String::new(),
                };
                let message = format!(
                    "`{text}`{note} is claimed by both device `{other}` (device[{other_index}]) \
                     and device `{name}`: an address, network or MAC address may belong to one \
                     device only",
                );
                return Err(at.invalid(value.span(), key, message));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert((index, name));
            }
        }
        match identifier {
            Identifier::Network(network) => addresses.push(network),
            Identifier::Mac(mac) => macs.push(mac),
        }
    }
    Ok((addresses, macs))
}

/// ` (the same as IPv4 `…`)` when `text` was written in the IPv4-mapped form, so the clash
/// with a claim written as IPv4 is explained; empty otherwise.
fn mapped_note(text: &str, network: IpNet) -> String {
    if !(network.addr().is_ipv4() && text.contains(':')) {
        return String::new();
    }
    let ipv4 = if network.prefix_len() == network.max_prefix_len() {
        network.addr().to_string()
    } else {
        network.to_string()
    };
    format!(" (the same as IPv4 `{ipv4}`)")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::test_support::{PATH, assert_errors, check, choices, devices_config, error};

    fn schedule_config(windows: &str) -> String {
        format!(
            "[[device]]\nname = \"tablet\"\nmatch = [\"192.168.1.30\"]\nprofile = \"meta-apps\"\n\
             schedule = [\n{windows}\n]\n"
        )
    }

    #[test]
    fn a_schedule_is_read_and_its_mistakes_name_file_line_and_key() {
        let text = schedule_config(
            "{ profile = \"no-meta\", days = \"mon-fri\", from = \"21:00\", to = \"07:00\" },",
        );
        let settings = check(&text).expect("valid");
        let window = &settings.devices[0].schedule[0];
        assert_eq!(
            window.to_string(),
            "profile no-meta on mon,tue,wed,thu,fri from 21:00 to 07:00 the next day"
        );
        let bad = |window: &str| error(&schedule_config(window));
        assert_eq!(
            bad("{ profile = \"no-meta\", days = \"mon-fry\", from = \"21:00\", to = \"07:00\" },"),
            "/etc/metasink/config.toml:6: device[0].schedule[0].days: `fry` is not a day: use mon, \
             tue, wed, thu, fri, sat, sun, ranges like `mon-fri`, lists like `sat,sun`, or `daily`"
        );
        assert_eq!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"25:00\", to = \"07:00\" },"),
            "/etc/metasink/config.toml:6: device[0].schedule[0].from: `25:00` is not a time of \
             day: write it as HH:MM, like `21:00` or `07:30`"
        );
        assert!(
            bad("{ profile = \"nope\", days = \"daily\", from = \"20:00\", to = \"07:00\" },")
                .starts_with(
                    "/etc/metasink/config.toml:6: device[0].schedule[0].profile: unknown profile `nope`"
                )
        );
        assert!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"20:00\", to = \"20:00\" },")
                .starts_with(
                    "/etc/metasink/config.toml:6: device[0].schedule[0].to: a window must end"
                )
        );
        assert_eq!(
            bad(
                "{ profile = \"no-meta\", days = \"daily\", from = \"20:00\", to = \"08:00\" },\n\
                 { profile = \"strict\", days = \"sat\", from = \"21:00\", to = \"07:00\" },"
            ),
            "/etc/metasink/config.toml:7: device[0].schedule[1]: this window can never apply: the \
             windows before it (device[0].schedule[0] and earlier) already cover all of its time, \
             and the first window that covers a time wins"
        );
        assert!(
            bad("{ profile = \"no-meta\", days = \"daily\", from = \"20:00\" },")
                .contains("missing field `to`")
        );
    }

    #[test]
    fn an_address_or_network_belongs_to_one_device() {
        assert_eq!(
            error(&devices_config(&[
                "[\"192.168.1.20\", \"fd00::20\"]",
                "[\"fd00::20\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `fd00::20` is claimed by both device \
             `d0` (device[0]) and device `d1`: an address, network or MAC address may belong to one \
             device only"
        );
        assert_eq!(
            error(&devices_config(&[
                "[\"aa:bb:cc:dd:ee:01\"]",
                "[\"10.0.0.2\", \"AA-BB-CC-DD-EE-01\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `AA-BB-CC-DD-EE-01` is claimed by both \
             device `d0` (device[0]) and device `d1`: an address, network or MAC address may belong \
             to one device only"
        );
        assert!(
            error(&devices_config(&["[\"192.168.1.64/28\"]", "[\"192.168.1.70/28\"]"]))
                .starts_with("/etc/metasink/config.toml:7: device[1].match: `192.168.1.70/28` is claimed by both device `d0`")
        );
        let nested = devices_config(&[
            "[\"192.168.1.64/28\", \"192.168.0.0/16\"]",
            "[\"192.168.1.70\", \"192.168.1.64/27\"]",
        ]);
        assert_eq!(check(&nested).expect("more specific wins").devices.len(), 2);
        assert!(check(&devices_config(&["[\"10.0.0.1\", \"10.0.0.1\"]"])).is_ok());
    }

    #[test]
    fn devices_match_mac_addresses_and_forwarders_are_trusted_by_network() {
        let text = format!(
            "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"::ffff:10.0.0.1\"]\n{}",
            devices_config(&["[\"192.168.1.20\", \"AA-BB-CC-DD-EE-01\", \"aa:bb:cc:dd:ee:02\"]"])
        );
        let settings = check(&text).expect("valid");
        let forwarders: Vec<String> = settings
            .trusted_forwarders
            .iter()
            .map(IpAddr::to_string)
            .collect();
        assert_eq!(forwarders, ["192.168.1.1", "10.0.0.1"]);
        let device = &settings.devices[0];
        assert_eq!(
            device.addresses,
            ["192.168.1.20/32".parse::<IpNet>().unwrap()]
        );
        let macs: Vec<String> = device.macs.iter().map(MacAddress::to_string).collect();
        assert_eq!(macs, ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]);
        assert!(
            check("").unwrap().trusted_forwarders.is_empty(),
            "nobody by default"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_read_as_ipv4() {
        let settings = check(&devices_config(&[
            "[\"::ffff:192.168.1.20\", \"::ffff:192.168.2.0/120\", \"::ffff:10.1.2.3/104\"]",
        ]))
        .expect("valid");
        let addresses: Vec<String> = settings.devices[0]
            .addresses
            .iter()
            .map(IpNet::to_string)
            .collect();
        assert_eq!(
            addresses,
            ["192.168.1.20/32", "192.168.2.0/24", "10.0.0.0/8"]
        );
        assert_eq!(
            error(&devices_config(&[
                "[\"192.168.1.20\"]",
                "[\"::ffff:192.168.1.20\"]"
            ])),
            "/etc/metasink/config.toml:7: device[1].match: `::ffff:192.168.1.20` (the same as \
             IPv4 `192.168.1.20`) is claimed by both device `d0` (device[0]) and device `d1`: an \
             address, network or MAC address may belong to one device only"
        );
        assert!(
            error(&devices_config(&[
                "[\"::ffff:192.168.2.0/120\"]",
                "[\"192.168.2.0/24\"]"
            ]))
            .contains("`192.168.2.0/24` is claimed by both device `d0`")
        );
    }

    #[test]
    fn bad_device_matches_and_names() {
        assert_errors(&[
            (
                "[[device]]\nname = \"d\"\nmatch = [\"192.168.1.0/33\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`/33` is not a prefix length for `192.168.1.0` (0 to 32)",
            ),
            (
                "[[device]]\nname = \"d\"\nmatch = [\"192.168.1\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`192.168.1` is not an IP address, CIDR network or MAC address, like `192.168.1.20`, `192.168.1.64/28` or `aa:bb:cc:dd:ee:ff`",
            ),
            (
                "[[device]]\nname = \"d\"\nmatch = [\"aa:bb:cc:dd:ee\"]\nprofile = \"quest\"\n",
                "3: device[0].match",
                "`aa:bb:cc:dd:ee` is not an IP address, CIDR network or MAC address",
            ),
            (
                "[[device]]\nname = \"unknown\"\nmatch = [\"10.0.0.9\"]\nprofile = \"quest\"\n",
                "2: device[0].name",
                "`unknown` is the device label of clients that match no device: pick another name",
            ),
        ]);
    }

    #[test]
    fn device_querylog_errors_name_file_line_and_key() {
        let device = "[[device]]\nname = \"tv\"\nmatch = [\"10.0.0.3\"]\nprofile = \"strict\"\n";
        assert_eq!(
            error(&format!("{device}querylog = \"yes\"\n")),
            format!(
                "{PATH}:5: device[0].querylog: unknown value `yes`{}",
                choices(["off", "blocked", "all"])
            )
        );
    }
}
