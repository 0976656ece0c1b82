//! The forwarding seam: what the pipeline asks of "the upstreams". [`Upstreams`] is the one
//! the daemon runs with; the pipeline's unit tests put their own behind it, to prove the
//! stage order under a paused clock without sockets.

use std::future::Future;
use std::pin::Pin;

use super::{Answer, Question, UpstreamError, Upstreams};

/// The future of one [`Forward::forward`].
pub type Forwarding<'a> = Pin<Box<dyn Future<Output = Result<Answer, UpstreamError>> + Send + 'a>>;

/// Something questions are forwarded to.
pub trait Forward: Send + Sync {
    /// The answer to `question`, or why there is none. May take as long as it likes: the
    /// pipeline gives up at [`super::QUERY_DEADLINE`].
    fn forward<'a>(&'a self, question: &'a Question) -> Forwarding<'a>;
}

impl Forward for Upstreams {
    fn forward<'a>(&'a self, question: &'a Question) -> Forwarding<'a> {
        Box::pin(Upstreams::forward(self, question))
    }
}
