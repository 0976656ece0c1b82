//! Small readers of values that several sections of the config share: addresses, paths and
//! the key paths errors name; and the checks each section runs on its values, located at the
//! value on failure: networks, durations and TTLs, counts, words from a fixed set, names
//! declared once and references to them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, Locator};
use super::raw::Text;
use crate::net::parse_network;

/// `text` as a path, relative ones resolved against the config file's directory.
pub(super) fn relative_to(config_path: &Path, text: &str) -> PathBuf {
    config_path.parent().unwrap_or(Path::new("")).join(text)
}

/// `text` as `IP`, `IP:PORT` or `[IPv6]:PORT` (`default_port` when none is given).
pub(super) fn parse_socket_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    if let Some(ip) = bare_ip(text) {
        return Ok(SocketAddr::new(ip, default_port));
    }
    match text.rsplit_once(':') {
        Some((ip, port)) if bare_ip(ip).is_some() => {
            Err(format!("`{port}` is not a port number (0 to 65535)"))
        }
        _ => Err(format!(
            "`{text}` is not an IP address with an optional port, like `9.9.9.9`, \
             `192.168.1.1:53` or `[2620:fe::fe]:53` (host names are not resolved)"
        )),
    }
}

/// `text` as an IP address, IPv6 optionally in brackets.
pub(super) fn bare_ip(text: &str) -> Option<IpAddr> {
    let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    unbracketed.unwrap_or(text).parse().ok()
}

/// The key path of `field` in the `index`th `[[table]]` of the file: `profile[2].block`.
pub(super) fn entry_key(table: &str, index: usize, field: &str) -> String {
    format!("{table}[{index}].{field}")
}

/// The longest TTL DNS allows (RFC 2181 §8: 2^31 - 1 seconds).
pub(super) const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);

/// The longest list id, profile name or device name (they become metric label values).
const MAX_NAME_LEN: usize = 64;

/// A duration longer than zero and within `bounds`.
pub(super) fn duration_within(
    value: &Option<Text>,
    default: Duration,
    bounds: RangeInclusive<Duration>,
    key: &str,
    at: &Locator<'_>,
) -> Result<Duration, ConfigError> {
    let duration = optional_ttl(value.as_ref(), default, key, at)?;
    let Some(value) = value else {
        return Ok(duration);
    };
    let text = value.get_ref();
    let problem = if duration.is_zero() {
        "must be longer than zero".to_owned()
    } else if duration < *bounds.start() {
        let min = humantime::format_duration(*bounds.start());
        format!("`{text}` is shorter than {min}, the shortest allowed")
    } else if duration > *bounds.end() {
        let max = humantime::format_duration(*bounds.end());
        format!("`{text}` is longer than {max}, the longest allowed")
    } else {
        return Ok(duration);
    };
    Err(at.invalid(value.span(), key, problem))
}

/// A count that must be at least one.
pub(super) fn positive<T: Copy + PartialEq + Default>(
    value: &Option<Spanned<T>>,
    default: T,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) if *value.get_ref() == T::default() => {
            Err(at.invalid(value.span(), key, "must be at least 1"))
        }
        Some(value) => Ok(*value.get_ref()),
    }
}

/// An IP address (as a /32 or /128) or a CIDR network (host bits cleared), IPv4-mapped ones
/// (`::ffff:a.b.c.d`) as the IPv4 address or network they map: clients are matched as IPv4,
/// and the two spellings of one address must be one address when claims are compared.
pub(super) fn ip_network(text: &str) -> Result<IpNet, String> {
    if let Some(network) = parse_network(text) {
        return Ok(network);
    }
    Err(match text.split_once('/') {
        Some((ip, prefix)) if ip.parse::<IpAddr>().is_ok() => {
            let max = if ip.contains(':') { 128 } else { 32 };
            format!("`/{prefix}` is not a prefix length for `{ip}` (0 to {max})")
        }
        _ => format!(
            "`{text}` is not an IP address or CIDR network, like `192.168.1.20`, `fd00::20` \
             or `192.168.1.64/28`"
        ),
    })
}

/// An `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` value; `default_port` when none is given.
pub(super) fn socket_addr(
    value: &Text,
    default_port: u16,
    key: &str,
    at: &Locator<'_>,
) -> Result<SocketAddr, ConfigError> {
    parse_socket_addr(value.get_ref(), default_port)
        .map_err(|message| at.invalid(value.span(), key, message))
}

/// A TTL given as a humantime duration (`"30s"`, `"5m"`, `"1d"`), or `default` when absent.
pub(super) fn optional_ttl(
    value: Option<&Text>,
    default: Duration,
    key: &str,
    at: &Locator<'_>,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let text = value.get_ref();
    let problem = match humantime::parse_duration(text) {
        Ok(duration) if duration <= MAX_TTL => return Ok(duration),
        Ok(_) => "is longer than a DNS TTL can be (68 years)".to_owned(),
        Err(error) => format!("is not a duration ({error}); write e.g. \"30s\", \"5m\" or \"1d\""),
    };
    Err(at.invalid(value.span(), key, format!("`{text}` {problem}")))
}

/// The option of `options` whose `word` is `value`.
pub(super) fn choose<T: Copy>(
    value: &Text,
    options: &[T],
    word: fn(T) -> &'static str,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    let text = value.get_ref();
    options
        .iter()
        .copied()
        .find(|&option| word(option) == text)
        .ok_or_else(|| {
            let choices = options
                .iter()
                .map(|&option| word(option).to_owned())
                .collect();
            at.invalid_among(
                value.span(),
                key,
                format!("unknown value `{text}`"),
                choices,
            )
        })
}

/// `value` when it is one of the `known` names of a `what` (list, profile).
pub(super) fn reference(
    value: &Text,
    known: &[&str],
    what: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<String, ConfigError> {
    let text = value.get_ref();
    if known.contains(&text.as_str()) {
        return Ok(text.clone());
    }
    let choices = known.iter().map(|&name| name.to_owned()).collect();
    let message = format!("unknown {what} `{text}`");
    Err(at.invalid_among(value.span(), key, message, choices))
}

/// Checks that `name` is a valid `what` (list id, profile name, device name) not yet declared
/// in the file, and records the line declaring it in `seen`.
pub(super) fn declare<'a>(
    seen: &mut HashMap<&'a str, usize>,
    name: &'a Text,
    what: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let text = name.get_ref().as_str();
    let valid = (1..=MAX_NAME_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let message = if !valid {
        format!(
            "`{text}` is not a valid {what}: use 1 to {MAX_NAME_LEN} characters among a-z, 0-9, \
             `_` and `-`"
        )
    } else {
        match seen.entry(text) {
            Entry::Occupied(first) => {
                format!(
                    "duplicate {what} `{text}` (first declared on line {})",
                    first.get()
                )
            }
            Entry::Vacant(slot) => {
                slot.insert(at.line(name.span().start));
                return Ok(());
            }
        }
    };
    Err(at.invalid(name.span(), key, message))
}

/// Puts `item` in place of the item with the same id, or at the end when there is none.
pub(super) fn replace_or_push<T>(items: &mut Vec<T>, item: T, id: impl Fn(&T) -> &str) {
    match items.iter().position(|existing| id(existing) == id(&item)) {
        Some(index) => items[index] = item,
        None => items.push(item),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{PATH, devices_config, error};

    #[test]
    fn bad_words_list_the_valid_ones() {
        assert_eq!(
            error("[[profile]]\nname = \"p\"\nanswer = \"drop\"\n"),
            format!(
                "{PATH}:3: profile[0].answer: unknown value `drop` (valid choices: null, nodata, nxdomain, refused)"
            )
        );
        assert_eq!(
            error("[[list]]\nid = \"l\"\nsource = \"bundled:meta-ai\"\nmatch = \"suffix\"\n"),
            format!(
                "{PATH}:4: list[0].match: unknown value `suffix` (valid choices: exact, subdomains)"
            )
        );
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let list = "[[list]]\nid = \"mine\"\nsource = \"bundled:meta-ai\"\n";
        assert_eq!(
            error(&format!("{list}\n{list}")),
            format!("{PATH}:6: list[1].id: duplicate list id `mine` (first declared on line 2)")
        );
        let profile = "[[profile]]\nname = \"kids\"\n";
        assert_eq!(
            error(&format!("{profile}{profile}")),
            format!(
                "{PATH}:4: profile[1].name: duplicate profile name `kids` (first declared on line 2)"
            )
        );
        assert_eq!(
            error(&devices_config(&["[\"10.0.0.1\"]", "[\"10.0.0.2\"]"]).replace("d1", "d0")),
            format!(
                "{PATH}:6: device[1].name: duplicate device name `d0` (first declared on line 2)"
            )
        );
        let rule = "use 1 to 64 characters among a-z, 0-9, `_` and `-`";
        assert_eq!(
            error("[[profile]]\nname = \"Kids Room\"\n"),
            format!("{PATH}:2: profile[0].name: `Kids Room` is not a valid profile name: {rule}")
        );
        assert_eq!(
            error(&format!(
                "[[list]]\nid = \"{}\"\nsource = \"x\"\n",
                "a".repeat(65)
            )),
            format!(
                "{PATH}:2: list[0].id: `{}` is not a valid list id: {rule}",
                "a".repeat(65)
            )
        );
        assert_eq!(
            error("[[device]]\nname = \"\"\nmatch = [\"10.0.0.1\"]\nprofile = \"quest\"\n"),
            format!("{PATH}:2: device[0].name: `` is not a valid device name: {rule}")
        );
    }
}
