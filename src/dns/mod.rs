//! Everything that touches hickory's types lives here, so a hickory API change stays in one
//! module: the question and answer types the rest of the daemon uses, reading requests,
//! writing replies (answers for blocked names among them) and forwarding upstream.
//!
//! Below the pipeline and the transports ([`crate::server`]): nothing here decides what a
//! client gets, it only reads and writes what was decided.

mod answer;
mod blocked;
mod forward;
mod local;
mod question;
mod reply;
mod request;
mod respond;
mod upstream;
mod wire;

pub use answer::{Answer, TtlRule};
pub use blocked::describe_blocked_answer;
pub use forward::{Forward, Forwarding};
pub use question::{CacheKey, CacheKeyRef, Question, QuestionKind, qtype_name};
pub use reply::{Echo, Ecs, Ede, MAX_UDP_PAYLOAD, Transport};
pub use request::{Rejection, Request};
pub use respond::{Rcode, write_answer, write_blocked, write_code, write_local};
pub use upstream::{ATTEMPT_TIMEOUT, QUERY_DEADLINE, UpstreamError, Upstreams};
pub use wire::header_rcode;
