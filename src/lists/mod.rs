//! Blocklists: the line formats we read ([`parse`]), where a list's text comes from
//! ([`source`]), and the per-list result the policy compiler consumes.

pub mod download;
pub mod parse;
pub mod source;
pub mod store;

pub use crate::config::MatchMode;
