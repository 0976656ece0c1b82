//! Shared harness for metasink's integration tests.
//!
//! Everything here talks over real sockets on loopback and lets the OS pick every port.
//!
//! - [`upstream`]: [`TestUpstream`], an in-process authoritative DNS server (UDP + TCP on the same
//!   127.0.0.1 port) that counts the queries it receives, and [`UnresponsiveUpstream`], an address
//!   where nothing ever answers.
//! - [`faulty`]: [`FaultyUpstream`], a raw UDP + TCP server that delays, drops, SERVFAILs,
//!   truncates, sends garbage, replies with the wrong ID, question or port, or resets TCP.
//! - [`client`]: a tiny stub client (`query_udp`, `query_tcp`, raw `exchange_udp`/`exchange_tcp`).
//! - [`daemon`]: [`TestDaemon`], the real daemon started in-process from a config text, and an
//!   HTTP helper for `/metrics`.
//! - [`list_server`]: an HTTP server for one downloadable list (ETag, 304, request count).
//! - [`process`]: the `metasink` binary as a process, for signals and exit status.
//! - [`inspect`]: readable accessors over a reply (`rcode`, `a_addrs`, `ede`, `min_answer_ttl`, ...).
//! - [`prometheus`]: [`Prometheus`], a real Prometheus process scraping test daemons every
//!   second, and `promtool check metrics`.
//!
//! Use it from a test module with `use crate::common::*;`.

#![allow(
    unreachable_pub,
    reason = "the integration binary's shared harness: its items are `pub` for the test modules"
)]

pub mod client;
pub mod daemon;
pub mod faulty;
pub mod inspect;
pub mod list_server;
pub mod process;
pub mod prometheus;
pub mod upstream;

// Re-exports so a test only needs `use crate::common::*;`.
pub use client::*;
pub use daemon::*;
pub use faulty::*;
pub use inspect::*;
pub use list_server::*;
pub use process::*;
pub use prometheus::*;
pub use upstream::*;

// The types a test needs to build queries and read replies.
pub use hickory_proto::op::{Message, ResponseCode};
pub use hickory_proto::rr::RecordType;
