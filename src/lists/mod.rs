//! Blocklists: the line formats we read ([`parse`]), where a list's text comes from
//! ([`source`]), and the per-list result the policy compiler consumes.

pub mod download;
pub mod parse;
pub mod source;
pub mod store;

use serde::Deserialize;

/// How a plain entry (one written without `||x^` or `*.x`) matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Only the name itself.
    Exact,
    /// The name and every name below it (on label boundaries).
    Subdomains,
}

impl MatchMode {
    /// The word used in config files and list headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Subdomains => "subdomains",
        }
    }

    /// How a person reads it in `explain` and `lists` output.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exact => "exact name",
            Self::Subdomains => "name and subdomains",
        }
    }
}
