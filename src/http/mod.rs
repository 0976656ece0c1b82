//! HTTP routes by area. The listener, `/metrics`, `/healthz` and the state-changing endpoints
//! are in [`crate::api`], which merges these.

pub mod records;
