//! [`ConfigError`]: everything that can be wrong with a config file, and where.
//!
//! Every error about the file's content names the file, the 1-based line and the key path
//! (`profile[2].block`, `server.listen`; array-of-tables indexes count from 0 in file order),
//! and lists the valid choices when there is a closed set of them. Display is one line:
//! `{path}:{line}: {key}: {message}`, then ` (valid choices: a, b, c)` when there are choices.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a config file could not be turned into [`Settings`](super::Settings).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read; the reason is the error's source.
    #[error("{}: cannot read the config file", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The text is not TOML, or does not have the config's shape: a syntax error, an unknown
    /// key, a missing key, or a value of the wrong type.
    #[error("{}:{line}: {}{message}", .path.display(), key_prefix(.key))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// Key path of the offending text; None for a TOML syntax error (the line says where).
        key: Option<String>,
        /// What the TOML reader said (for an unknown key it names the expected keys).
        message: String,
    },
    /// A value has the right type but is not acceptable: a bad address, an unknown list, a
    /// duplicate name, …
    #[error("{}:{line}: {key}: {message}{}", .path.display(), choices_suffix(.choices))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// Key path of the offending value.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The values that would have been accepted, when they form a closed set.
        choices: Vec<String>,
    },
}

/// `"key: "` or nothing.
fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|key| format!("{key}: "))
        .unwrap_or_default()
}

/// `" (valid choices: a, b)"` or nothing.
fn choices_suffix(choices: &[String]) -> String {
    if choices.is_empty() {
        String::new()
    } else {
        format!(" (valid choices: {})", choices.join(", "))
    }
}

/// Turns byte spans of one config text into located errors.
pub(super) struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `path`.
    pub(super) fn new(text: &'a str, path: &'a Path) -> Self {
        Self { text, path }
    }

    /// The 1-based line holding byte `offset` (clamped to the text).
    pub(super) fn line(&self, offset: usize) -> usize {
        // Count bytes, not chars: a span need not fall on a char boundary, and slicing a `str`
        // there would panic.
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
    }

    /// A [`ConfigError::Syntax`] at `span` (the start of the text when unknown).
    pub(super) fn syntax(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: &str,
    ) -> ConfigError {
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            line: self.line(span.map_or(0, |span| span.start)),
            key,
            message: message.to_owned(),
        }
    }

    /// A [`ConfigError::Invalid`] at `span` with no choices to offer.
    pub(super) fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid_among(span, key, message, Vec::new())
    }

    /// A [`ConfigError::Invalid`] at `span` that lists the values that would be accepted.
    pub(super) fn invalid_among(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        choices: Vec<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(span.start),
            key: key.into(),
            message: message.into(),
            choices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one_and_clamp() {
        let at = Locator::new("a\nbé\nc", Path::new("x.toml"));
        assert_eq!(at.line(0), 1);
        assert_eq!(at.line(2), 2);
        assert_eq!(at.line(4), 2, "inside a multi-byte char");
        assert_eq!(at.line(6), 3);
        assert_eq!(at.line(usize::MAX), 3);
    }

    #[test]
    fn display_is_one_line_with_choices() {
        let at = Locator::new("x = 1\n", Path::new("/etc/metasink.toml"));
        let error = at.invalid_among(0..1, "x", "bad", vec!["a".into(), "b".into()]);
        assert_eq!(
            error.to_string(),
            "/etc/metasink.toml:1: x: bad (valid choices: a, b)"
        );
        assert_eq!(
            at.syntax(None, None, "oops").to_string(),
            "/etc/metasink.toml:1: oops"
        );
    }
}
