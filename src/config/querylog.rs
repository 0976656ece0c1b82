//! `[querylog]`: what the query log keeps (`mode`, also the choices of a device's own
//! `querylog`), for how long, in how many bytes, and where (under `state_dir` by default, in
//! memory only when `path` is empty), and how many entries may wait for its writer (`queue`).

use std::path::Path;
use std::time::Duration;

use super::defaults::{QUERYLOG_FILE, QUERYLOG_MAX_BYTES, QUERYLOG_QUEUE, QUERYLOG_RETENTION};
use super::error::{ConfigError, Locator};
use super::raw::RawQuerylog;
use super::values::{MAX_TTL, choose, duration_within, relative_to};
use super::{LogMode, QuerylogSettings};

/// Every query log `mode` (and `[[device]] querylog`).
pub(super) const LOG_MODES: [LogMode; 3] = [LogMode::Off, LogMode::Blocked, LogMode::All];

/// The smallest `querylog.max_bytes`: SQLite needs a few pages for its schema and indexes
/// before the first entry.
const MIN_QUERYLOG_BYTES: u64 = 64 * 1024;

/// The largest `queue`: an entry takes a few hundred bytes, so a full queue at the cap holds
/// about 20 MiB.
const MAX_QUERYLOG_QUEUE: usize = 65_536;

/// `[querylog]`: the file defaults to `state_dir`, and an empty `path` keeps the log in memory.
pub(super) fn querylog(
    raw: &RawQuerylog,
    state_dir: &Path,
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<QuerylogSettings, ConfigError> {
    let mode = raw
        .mode
        .as_ref()
        .map(|value| choose(value, &LOG_MODES, LogMode::as_str, "querylog.mode", at))
        .transpose()?
        .unwrap_or_default();
    let retention = duration_within(
        &raw.retention,
        QUERYLOG_RETENTION,
        Duration::ZERO..=MAX_TTL,
        "querylog.retention",
        at,
    )?;
    let max_bytes = match &raw.max_bytes {
        None => QUERYLOG_MAX_BYTES,
        Some(value) if *value.get_ref() < MIN_QUERYLOG_BYTES => {
            let message = format!("must be at least {MIN_QUERYLOG_BYTES} (64 KiB)");
            return Err(at.invalid(value.span(), "querylog.max_bytes", message));
        }
        Some(value) => *value.get_ref(),
    };
    let path = match &raw.path {
        None => Some(state_dir.join(QUERYLOG_FILE)),
        Some(value) if value.get_ref().is_empty() => None,
        Some(value) if value.get_ref().ends_with('/') => {
            let message = "names a directory: give the database file, or \"\" for memory only";
            return Err(at.invalid(value.span(), "querylog.path", message));
        }
        Some(value) => Some(relative_to(config_path, value.get_ref())),
    };
    let queue = match &raw.queue {
        None => QUERYLOG_QUEUE,
        Some(value) => match usize::try_from(*value.get_ref()) {
            Ok(entries @ 1..=MAX_QUERYLOG_QUEUE) => entries,
            _ => {
                let message = format!("must be between 1 and {MAX_QUERYLOG_QUEUE} entries");
                return Err(at.invalid(value.span(), "querylog.queue", message));
            }
        },
    };
    Ok(QuerylogSettings {
        mode,
        retention,
        max_bytes,
        path,
        queue,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::ProfileMode;
    use crate::config::test_support::{PATH, check, choices, error};

    #[test]
    fn querylog_defaults_off_under_state_dir_and_devices_may_set_their_own() {
        let settings = check("[server]\nstate_dir = \"/srv/ms\"\n").unwrap();
        assert_eq!(
            settings.querylog,
            QuerylogSettings {
                mode: LogMode::Off,
                retention: QUERYLOG_RETENTION,
                max_bytes: QUERYLOG_MAX_BYTES,
                path: Some(PathBuf::from("/srv/ms").join(QUERYLOG_FILE)),
                queue: QUERYLOG_QUEUE,
            }
        );
        let text = "[querylog]\nmode = \"blocked\"\nretention = \"2d\"\nmax_bytes = 100000\n\
                    path = \"\"\n[[device]]\nname = \"quest\"\nmatch = [\"10.0.0.2\"]\n\
                    profile = \"quest\"\nquerylog = \"all\"\n\
                    [[profile]]\nname = \"tv\"\nmode = \"observe\"\n";
        let settings = check(text).unwrap();
        assert_eq!(settings.querylog.mode, LogMode::Blocked);
        assert_eq!(settings.querylog.retention, Duration::from_secs(2 * 86400));
        assert_eq!(settings.querylog.max_bytes, 100_000);
        assert_eq!(settings.querylog.path, None);
        assert_eq!(settings.devices[0].querylog, Some(LogMode::All));
        let tv = settings.profiles.iter().find(|p| p.name == "tv").unwrap();
        assert_eq!(tv.mode, ProfileMode::Observe);
    }

    #[test]
    fn querylog_errors_name_file_line_and_key() {
        assert_eq!(
            error("[querylog]\nmode = \"some\"\n"),
            format!(
                "{PATH}:2: querylog.mode: unknown value `some`{}",
                choices(["off", "blocked", "all"])
            )
        );
        assert!(
            error("[querylog]\nretention = \"a week\"\n").starts_with(&format!(
                "{PATH}:2: querylog.retention: `a week` is not a duration"
            )),
        );
        assert_eq!(
            error("[querylog]\nmax_bytes = 1000\n"),
            format!("{PATH}:2: querylog.max_bytes: must be at least 65536 (64 KiB)")
        );
    }

    #[test]
    fn the_queue_defaults_and_may_be_set_within_its_cap() {
        assert_eq!(check("").unwrap().querylog.queue, QUERYLOG_QUEUE);
        assert_eq!(
            check("[querylog]\nqueue = 16\n").unwrap().querylog.queue,
            16
        );
        let most = format!("[querylog]\nqueue = {MAX_QUERYLOG_QUEUE}\n");
        assert_eq!(check(&most).unwrap().querylog.queue, MAX_QUERYLOG_QUEUE);
    }

    #[test]
    fn a_queue_outside_its_bounds_names_file_line_and_key() {
        for value in ["0", "65537", "-1"] {
            let text = format!("[querylog]\nmode = \"all\"\nqueue = {value}\n");
            let error = error(&text);
            assert!(
                error.starts_with(&format!("{PATH}:3: querylog.queue")),
                "{value}: {error}"
            );
        }
    }
}
