//! Everything that touches hickory's types lives here, so a hickory API change stays in one
//! module: the question and answer types the rest of the daemon uses, answers for blocked
//! names, forwarding upstream, and the listeners with their request handler.

mod answer;
mod blocked;
mod handler;
mod question;
mod server;
mod upstream;

pub use answer::Answer;
pub use blocked::describe_blocked_answer;
pub use handler::Handler;
pub use question::{CacheKey, QTYPE_LABELS, Question};
pub use server::DnsServer;
pub use upstream::{ATTEMPT_TIMEOUT, QUERY_DEADLINE, UpstreamError, Upstreams};
