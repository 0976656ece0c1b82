//! `[querylog] queue`: the query log's queue between the query path and its writer, checked
//! on its own after the rest of `[querylog]` (one file per section, as `validate` is to be
//! split).
//!
//! ```toml
//! [querylog]
//! queue = 8192
//! ```

use std::path::Path;

use toml::Spanned;

use super::defaults::QUERYLOG_QUEUE;
use super::error::{ConfigError, Locator};
use super::raw::RawConfig;

/// The largest `queue`: an entry takes a few hundred bytes, so a full queue at the cap holds
/// about 20 MiB.
pub const MAX_QUERYLOG_QUEUE: usize = 65_536;

/// The key errors name.
const QUEUE_KEY: &str = "querylog.queue";

/// The `queue` key, taken out of `raw` before the rest is checked.
pub(super) struct RawQueue(Option<Spanned<u64>>);

impl RawQueue {
    pub(super) fn take(raw: &mut RawConfig) -> Self {
        Self(raw.querylog.queue.take())
    }
}

/// The queue's capacity in entries: [`QUERYLOG_QUEUE`] unless set, between 1 and
/// [`MAX_QUERYLOG_QUEUE`].
pub(super) fn queue(raw: RawQueue, text: &str, path: &Path) -> Result<usize, ConfigError> {
    let Some(value) = raw.0 else {
        return Ok(QUERYLOG_QUEUE);
    };
    match usize::try_from(*value.get_ref()) {
        Ok(entries @ 1..=MAX_QUERYLOG_QUEUE) => Ok(entries),
        _ => Err(Locator::new(text, path).invalid(
            value.span(),
            QUEUE_KEY,
            format!("must be between 1 and {MAX_QUERYLOG_QUEUE} entries"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/metasink/config.toml";

    fn parse(text: &str) -> Result<super::super::Settings, ConfigError> {
        super::super::parse(text, Path::new(PATH))
    }

    #[test]
    fn the_queue_defaults_and_may_be_set_within_its_cap() {
        assert_eq!(parse("").unwrap().querylog.queue, QUERYLOG_QUEUE);
        let settings = parse("[querylog]\nqueue = 16\n").unwrap();
        assert_eq!(settings.querylog.queue, 16);
        let most = format!("[querylog]\nqueue = {MAX_QUERYLOG_QUEUE}\n");
        assert_eq!(parse(&most).unwrap().querylog.queue, MAX_QUERYLOG_QUEUE);
    }

    #[test]
    fn a_queue_outside_its_bounds_names_file_line_and_key() {
        for value in ["0", "65537", "-1"] {
            let text = format!("[querylog]\nmode = \"all\"\nqueue = {value}\n");
            let error = parse(&text).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("{PATH}:3: querylog.queue")),
                "{value}: {error}"
            );
        }
    }
}
