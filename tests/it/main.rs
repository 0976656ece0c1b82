//! metasink's integration tests: one binary, a module per area (as hickory-dns does), so the
//! whole dependency graph is linked once instead of once per area.
//!
//! Every test drives the real daemon over real sockets on loopback against real servers the
//! harness in [`common`] starts.

mod common;

mod admission;
mod blocking;
mod cache;
mod catalogue;
mod cli;
mod dashboard;
mod downloads;
mod encrypted_upstreams;
mod harness_selftest;
mod http_listener;
mod install;
mod local_network;
mod metrics;
mod networks;
mod overrides;
mod records;
mod reload;
mod transport;
mod upstream_failure;
mod upstream_faults;
mod upstream_health;
mod upstream_sockets;
