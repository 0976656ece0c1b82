//! Everything that touches hickory's types lives here, so a hickory API change stays in one
//! module: the question and answer types the rest of the daemon uses, answers for blocked
//! names, forwarding upstream, reading requests and writing replies, and the UDP and TCP
//! listeners over one service.

mod answer;
mod blocked;
mod local;
mod question;
mod reply;
mod request;
mod server;
mod service;
mod tcp;
mod udp;
mod upstream;
mod wire;

pub use answer::{Answer, TtlRule};
pub use blocked::describe_blocked_answer;
pub use question::{CacheKey, CacheKeyRef, QTYPE_LABELS, Question};
pub use reply::{MAX_UDP_PAYLOAD, Transport};
pub use server::{DnsServer, listener_descriptors};
pub use service::{DnsService, ServiceCounters};
pub use upstream::{ATTEMPT_TIMEOUT, QUERY_DEADLINE, UpstreamError, Upstreams};
