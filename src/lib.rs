//! metasink: a household filtering DNS resolver that sinkholes Meta tracking, telemetry and AI
//! domains per device profile, forwards everything else, caches, and exposes Prometheus
//! metrics.
//!
//! # One query, end to end
//! ```text
//!  UDP (recvmmsg batches) / TCP (RFC 7766) listeners         server::udp, server::tcp
//!    ▼
//!  edge: admission (allow_from, per-client rate limit),      server::service, admission
//!        parse (fast reader, hickory fallback)               → REFUSED / drop / FORMERR
//!    ▼
//!  the pipeline, one function: Pipeline::resolve
//!  │ identify: client address → device → profile              policy
//!  │ local:    ANY over UDP, meta-types, other classes        → TC / NOTIMP / FORMERR / REFUSED
//!  │           local names, private reverse zones, home.arpa  → authoritative answer
//!  │           forward zones pick their own upstreams           local
//!  │ decide:   the household's overrides (pause/allow/block),   overrides
//!  │           then the lists containing the name; block & !allow → blocked answer (stop)
//!  │           (a dry-run profile only notes what it would block)
//!  │ cache:    one for every profile, upstream answers only   cache → hit
//!  │ upstream: the configured resolvers, in order             dns::Forward (dns::Upstreams)
//!  │ inspect:  CNAME / HTTPS / SVCB targets, same profile     → blocked answer
//!  │           private addresses of public names (rebinding)  → blocked answer
//!    ▼
//!  write the reply (records in wire form), count once        dns, server::service, metrics
//!    ▼
//!  records: clients, observe (Meta names), the query log     records (queue → own thread)
//! ```
//! The order lives in one function, [`pipeline::Pipeline::resolve`], with the reason for each
//! stage; it returns one [`pipeline::Outcome`] the reply writer turns into bytes, and
//! `explain` runs the same function. Config and lists compile into one immutable
//! [`policy::Policy`] snapshot, read by every query through an `ArcSwap`.
//!
//! # Layout
//! Modules import downwards only (a unit test, `module_graph`, fails on a cycle):
//! - [`cli`], [`app`] — `run`, `check`, `explain`, `lists`; start, serve, stop.
//! - [`server`] — the transports (UDP, TCP, the listeners) and the bytes-in, bytes-out
//!   service at their edge.  [`api`], [`http`] — the HTTP listener and its endpoints.
//!   [`remote`] — the CLI commands that talk to a running daemon.  [`reload`], [`refresh`] —
//!   new snapshots from the config and from downloaded lists.
//! - [`records`] — what the daemon remembers of answered queries: the query log (SQLite and
//!   a memory ring, written by a low-priority thread of its own), observe and clients.
//! - [`pipeline`] — the query path, stage by stage.  [`explain`] — why a name is blocked for
//!   a client, through the same path.
//! - [`admission`] — who may query and how fast: the access list and per-client rate limit.
//! - [`policy`] — the snapshot: matcher, profiles, devices.  [`cache`] — the shared answer
//!   cache.  [`neighbours`] — the MAC addresses of LAN clients.
//! - [`dns`] — everything that touches hickory: questions, requests, answers, replies (blocked
//!   answers among them), the upstream client and the [`dns::Forward`] seam.
//! - [`local`] — the local network (below `dns`, which writes its answers; it imports only
//!   `config` and `net`): local names and their PTRs, hosts files, forward zones,
//!   private reverse zones, rebinding protection, DHCP lease names.
//! - [`lists`] — list line formats, sources and downloads.  [`metrics`] — Prometheus metrics
//!   and their label sets.
//! - [`config`] — the TOML file → validated [`config::Settings`] (errors name file, line, key),
//!   over the bottom: [`net`] (address forms, access lists, MAC addresses) and [`catalogue`].
//! - [`memory`] — allocator tuning for a small machine, and huge pages for the matcher's
//!   tables (imports nothing of the crate).
//! - [`overrides`] — pause, allow and block from the API, with an expiry, above the profiles.
//! - [`state_files`] — every read and write under `state_dir` (no links followed, atomic
//!   writes); [`permissions`] — warnings about a `state_dir` others can write and a token
//!   others can read.
//! - [`fd_budget`], [`slots`] — descriptor limits and the connection caps sized from them.
//! - [`port_owner`] — which process holds a listen address (`metasink check`).

pub mod admission;
pub mod api;
pub mod app;
pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod dns;
pub mod explain;
pub mod fd_budget;
pub mod http;
pub mod lists;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod neighbours;
pub mod net;
pub mod overrides;
pub mod permissions;
pub mod pipeline;
pub mod policy;
pub mod port_owner;
pub mod records;
pub mod refresh;
pub mod reload;
pub mod remote;
pub mod server;
pub mod slots;
pub mod state_files;

#[cfg(test)]
mod module_graph;
