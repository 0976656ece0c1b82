//! What the unit tests of the config's section files share: a config text parsed as the
//! daemon parses it, the one-line error it gets, and the text of an error's choices.

use std::path::Path;

use super::defaults::presets;
use super::{ConfigError, Settings};

/// The path every test config is read from.
pub(super) const PATH: &str = "/etc/metasink/config.toml";

/// `text` parsed and validated as the daemon does, read from [`PATH`].
pub(super) fn check(text: &str) -> Result<Settings, ConfigError> {
    super::parse(text, Path::new(PATH))
}

/// The one-line message of the error `text` gets.
pub(super) fn error(text: &str) -> String {
    check(text).expect_err("config accepted").to_string()
}

/// `" (valid choices: a, b)"` for `names`.
pub(super) fn choices<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    format!(" (valid choices: {})", names.join(", "))
}

/// Every preset name.
pub(super) fn preset_names() -> Vec<String> {
    presets().into_iter().map(|p| p.name).collect()
}

/// A config with one device (`d0`, `d1`, …, on profile `quest`) per `match` array.
pub(super) fn devices_config(matches: &[&str]) -> String {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| format!("[[device]]\nname = \"d{i}\"\nmatch = {m}\nprofile = \"quest\"\n"))
        .collect()
}

/// Asserts that each (config, `line: key`, message start) case fails as described.
pub(super) fn assert_errors(cases: &[(&str, &str, &str)]) {
    for (text, located, message) in cases {
        let got = error(text);
        let expected = format!("{PATH}:{located}: {message}");
        assert!(got.starts_with(&expected), "{got}");
    }
}
