//! metasink: a household filtering DNS resolver that sinkholes Meta tracking, telemetry and AI
//! domains per device profile, forwards everything else, caches, and exposes Prometheus
//! metrics.
//!
//! # One query, end to end
//! ```text
//!  UDP (recvmmsg batches) / TCP (RFC 7766) listeners       dns::udp, dns::tcp
//!    ▼
//!  admission: allow_from, per-client rate limit            admission → REFUSED / drop
//!    ▼
//!  request: question (fast reader, hickory fallback),      dns::service, dns::wire, policy
//!           client address → device → profile
//!    ▼
//!  decide: lists containing the name; block & !allow       pipeline → blocked answer (stop)
//!    ▼
//!  cache: one for every profile, upstream answers only     cache    → hit
//!    ▼
//!  upstream: the configured resolvers, in order            dns::upstream
//!    ▼
//!  inspect: CNAME / HTTPS / SVCB targets, same profile     pipeline → blocked answer
//!    ▼
//!  respond (records in wire form), count                   dns::reply, dns::service, metrics
//! ```
//! The order lives in one function, [`pipeline::Pipeline::resolve`], with the reason for each
//! stage. Config and lists compile into one immutable [`policy::Policy`] snapshot, read by
//! every query through an `ArcSwap`.
//!
//! # Layout
//! - [`cli`] — `run`, `check`, `explain`, `lists`.
//! - [`app`] — start, serve, stop.
//! - [`admission`] — who may query and how fast: the access list and per-client rate limit.
//! - [`config`] — the TOML file → validated [`config::Settings`] (errors name file, line, key).
//! - [`catalogue`] — bundled lists (`blocklists/`) and preset profiles.
//! - [`lists`] — list line formats and sources.
//! - [`policy`] — the snapshot: matcher, profiles, devices.
//! - [`pipeline`] — the query path.
//! - [`cache`] — the shared answer cache.
//! - [`dns`] — everything that touches hickory: questions, answers, blocked answers,
//!   upstreams, listeners.
//! - [`metrics`], [`api`] — Prometheus metrics and the HTTP listener.
//! - [`net`] — address forms shared by the access list and device matching.
//! - [`explain`] — why a name is blocked for a client.

pub mod admission;
pub mod api;
pub mod app;
pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod dns;
pub mod explain;
pub mod http;
pub mod lists;
pub mod memory;
pub mod metrics;
pub mod neighbours;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod records;
pub mod refresh;
pub mod reload;
pub mod remote;
