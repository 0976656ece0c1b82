//! `[[list]]` and `[download]`: the bundled lists with the file's added or replacing them by
//! id (at most [`MAX_LISTS`] in all), each list's source, `match` and `blocked_ttl`; and the
//! bounds on how often, how long and how many times a list is downloaded.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::defaults::{BLOCKED_TTL, DOWNLOAD, bundled_lists};
use super::error::{ConfigError, Locator};
use super::raw::{RawDownload, RawList, Text};
use super::values::{
    MAX_TTL, choose, declare, duration_within, entry_key, optional_ttl, positive, relative_to,
    replace_or_push,
};
use super::{DownloadSettings, ListSettings, ListSource, MAX_LISTS, MatchMode};
use crate::catalogue::bundled_ids;

/// Every `match` a list may have.
const MATCH_MODES: [MatchMode; 2] = [MatchMode::Exact, MatchMode::Subdomains];

/// The shortest `download.interval`: list servers publish a few times a day at most, and every
/// refresh that brings a change rebuilds the policy; seconds would re-download all day long.
const MIN_DOWNLOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The longest `download.timeout`: a stalled server holds up the next round of refreshes, of
/// every list, for up to `download.attempts` times this.
const MAX_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The most `download.attempts`: the delay between attempts doubles from one second, so ten
/// already wait 8½ minutes in all (1 + 2 + … + 256 s), and forty would wait 17,000 years.
const MAX_DOWNLOAD_ATTEMPTS: u32 = 10;

/// The bundled lists with the file's `[[list]]`s added or replacing them by id.
pub(super) fn lists(
    raw: &[RawList],
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<Vec<ListSettings>, ConfigError> {
    let mut lists = bundled_lists();
    let mut seen = HashMap::new();
    for (index, list) in raw.iter().enumerate() {
        let key = entry_key("list", index, "id");
        declare(&mut seen, &list.id, "list id", &key, at)?;
        let settings = list_settings(list, index, config_path, at)?;
        replace_or_push(&mut lists, settings, |l| &l.id);
        if lists.len() > MAX_LISTS {
            let message = format!(
                "too many lists: at most {MAX_LISTS}, the {} bundled ones included",
                bundled_ids().count()
            );
            return Err(at.invalid(list.id.span(), key, message));
        }
    }
    Ok(lists)
}

/// One `[[list]]` (its id already checked).
fn list_settings(
    raw: &RawList,
    index: usize,
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<ListSettings, ConfigError> {
    let key = |field: &str| entry_key("list", index, field);
    let match_mode = raw
        .match_mode
        .as_ref()
        .map(|value| choose(value, &MATCH_MODES, MatchMode::as_str, &key("match"), at));
    Ok(ListSettings {
        id: raw.id.get_ref().clone(),
        source: source(&raw.source, config_path, &key("source"), at)?,
        match_mode: match_mode.transpose()?,
        blocked_ttl: raw
            .blocked_ttl
            .as_ref()
            .map(|value| optional_ttl(Some(value), BLOCKED_TTL, &key("blocked_ttl"), at))
            .transpose()?,
    })
}

/// A list `source`: `bundled:ID`, or a file path relative to the config file's directory.
fn source(
    value: &Text,
    config_path: &Path,
    key: &str,
    at: &Locator<'_>,
) -> Result<ListSource, ConfigError> {
    let text = value.get_ref();
    if let Some(id) = text.strip_prefix("bundled:") {
        if bundled_ids().any(|bundled| bundled == id) {
            return Ok(ListSource::Bundled(id.to_owned()));
        }
        let choices = bundled_ids().map(str::to_owned).collect();
        let message = format!("unknown bundled list `{id}`");
        return Err(at.invalid_among(value.span(), key, message, choices));
    }
    let problem = if text.starts_with("https://") || text.starts_with("http://") {
        if text
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        {
            return Ok(ListSource::Url(text.to_owned()));
        }
        "is not a URL with a host"
    } else if text.contains("://") {
        "only http:// and https:// URLs can be downloaded"
    } else if text.trim().is_empty() {
        "is empty: write `bundled:ID`, a file path or an https:// URL"
    } else {
        return Ok(ListSource::File(relative_to(config_path, text)));
    };
    Err(at.invalid(value.span(), key, problem))
}

/// `[download]`: every value above zero, and the interval, timeout and attempts within bounds
/// that keep list servers from being polled without pause and one refresh (attempts × timeout
/// plus the doubling delays) from holding up the next for hours.
pub(super) fn download(
    raw: &RawDownload,
    at: &Locator<'_>,
) -> Result<DownloadSettings, ConfigError> {
    let interval = duration_within(
        &raw.interval,
        DOWNLOAD.interval,
        MIN_DOWNLOAD_INTERVAL..=MAX_TTL,
        "download.interval",
        at,
    )?;
    let timeout = duration_within(
        &raw.timeout,
        DOWNLOAD.timeout,
        Duration::ZERO..=MAX_DOWNLOAD_TIMEOUT,
        "download.timeout",
        at,
    )?;
    let attempts = count_within(
        &raw.attempts,
        DOWNLOAD.attempts,
        MAX_DOWNLOAD_ATTEMPTS,
        "download.attempts",
        at,
    )?;
    let max_bytes = positive(&raw.max_bytes, DOWNLOAD.max_bytes, "download.max_bytes", at)?;
    let concurrency = positive(
        &raw.concurrency,
        DOWNLOAD.concurrency,
        "download.concurrency",
        at,
    )?;
    Ok(DownloadSettings {
        interval,
        timeout,
        attempts,
        max_bytes,
        concurrency,
    })
}

/// A count of at least one and at most `max`.
fn count_within<T: Copy + PartialOrd + Default + Display>(
    value: &Option<Spanned<T>>,
    default: T,
    max: T,
    key: &str,
    at: &Locator<'_>,
) -> Result<T, ConfigError> {
    let count = positive(value, default, key, at)?;
    match value {
        Some(value) if count > max => {
            Err(at.invalid(value.span(), key, format!("must be at most {max}")))
        }
        _ => Ok(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{PATH, assert_errors, check, choices, error};

    #[test]
    fn a_list_sets_the_ttl_of_what_it_blocks() {
        let settings = check(
            "[[list]]\nid = \"chatty\"\nsource = \"bundled:meta-tracking\"\nblocked_ttl = \"2h\"\n",
        )
        .expect("valid");
        let chatty = settings
            .lists
            .iter()
            .find(|l| l.id == "chatty")
            .expect("list");
        assert_eq!(chatty.blocked_ttl, Some(Duration::from_secs(7200)));
        let bundled = settings
            .lists
            .iter()
            .find(|l| l.id == "meta-ai")
            .expect("list");
        assert_eq!(
            bundled.blocked_ttl, None,
            "unset: the header's, else the profile's"
        );
        assert_errors(&[(
            "[[list]]\nid = \"x\"\nsource = \"bundled:meta-ai\"\nblocked_ttl = \"soon\"\n",
            "4: list[0].blocked_ttl",
            "`soon` is not a duration",
        )]);
    }

    #[test]
    fn download_settings_are_bounded() {
        assert_errors(&[
            (
                "[download]\ninterval = \"1s\"\n",
                "2: download.interval",
                "`1s` is shorter than 1m, the shortest allowed",
            ),
            (
                "[download]\ninterval = \"0s\"\n",
                "2: download.interval",
                "must be longer than zero",
            ),
            (
                "[download]\ntimeout = \"90m\"\n",
                "2: download.timeout",
                "`90m` is longer than 1h, the longest allowed",
            ),
            (
                "[download]\ntimeout = \"0s\"\n",
                "2: download.timeout",
                "must be longer than zero",
            ),
            (
                "[download]\n\nattempts = 40\n",
                "3: download.attempts",
                "must be at most 10",
            ),
            (
                "[download]\nattempts = 0\n",
                "2: download.attempts",
                "must be at least 1",
            ),
        ]);
        let settings = check("[download]\ninterval = \"1m\"\ntimeout = \"1h\"\nattempts = 10\n")
            .expect("the bounds themselves are allowed");
        assert_eq!(settings.download.interval, MIN_DOWNLOAD_INTERVAL);
        assert_eq!(settings.download.timeout, MAX_DOWNLOAD_TIMEOUT);
        assert_eq!(settings.download.attempts, MAX_DOWNLOAD_ATTEMPTS);
    }

    #[test]
    fn list_sources() {
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"bundled:nope\"\n"),
            format!(
                "{PATH}:3: list[0].source: unknown bundled list `nope`{}",
                choices(bundled_ids())
            )
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"ftp://example.com/list.txt\"\n"),
            format!("{PATH}:3: list[0].source: only http:// and https:// URLs can be downloaded")
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \"https:///list.txt\"\n"),
            format!("{PATH}:3: list[0].source: is not a URL with a host")
        );
        assert_eq!(
            error("[[list]]\nid = \"x\"\nsource = \" \"\n"),
            format!(
                "{PATH}:3: list[0].source: is empty: write `bundled:ID`, a file path or an https:// URL"
            )
        );
        let url = "https://example.com/list.txt";
        let settings = check(&format!("[[list]]\nid = \"x\"\nsource = \"{url}\"\n")).unwrap();
        let list = settings.lists.iter().find(|list| list.id == "x").unwrap();
        assert_eq!(list.source, ListSource::Url(url.to_owned()));
    }

    #[test]
    fn at_most_max_lists_in_total() {
        let room = MAX_LISTS - bundled_ids().count();
        let lists = |count: usize| -> String {
            (0..count)
                .map(|i| format!("[[list]]\nid = \"l{i}\"\nsource = \"bundled:meta-ai\"\n"))
                .collect()
        };
        let replacing = "[[list]]\nid = \"meta-ai\"\nsource = \"bundled:meta-ai\"\n";
        let full = check(&format!("{replacing}{}", lists(room))).expect("exactly MAX_LISTS");
        assert_eq!(full.lists.len(), MAX_LISTS);
        assert_eq!(
            error(&lists(room + 1)),
            format!(
                "{PATH}:{}: list[{room}].id: too many lists: at most {MAX_LISTS}, the {} bundled ones included",
                3 * room + 2,
                bundled_ids().count()
            )
        );
    }
}
