//! The replies the DNS service writes, one function per kind: a blocked answer, an upstream
//! answer (cached or not), a bare response code. Each builds its records and hands them to
//! the one reply writer ([`super::reply`]).

use std::time::Duration;

use hickory_proto::op::ResponseCode;

use super::Question;
use super::TtlRule;
use super::answer::Answer;
use super::blocked::{BlockedRecords, blocked_plan};
use super::reply::{Echo, Ede, MAX_UDP_PAYLOAD, Reply, Transport, write_reply};
use super::request::Rejection;
use crate::config::BlockAnswer;
use crate::local::LocalAnswer;

/// The blocked answer to `question` (the profile's `answer`, records living `ttl`), with the
/// Extended DNS Error `ede` (naming the list).
pub fn write_blocked(
    echo: &Echo<'_>,
    question: &Question,
    answer: BlockAnswer,
    ttl: Duration,
    ede: Option<Ede<'_>>,
    transport: Transport,
) -> Vec<u8> {
    let records = BlockedRecords {
        plan: blocked_plan(question.qtype, answer),
        ttl: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
    };
    let reply = Reply {
        records: Some(&records),
        ede,
        ..Reply::code(records.plan.rcode)
    };
    write_reply(echo, &reply, transport)
}

/// An upstream answer, its TTLs sent as `ttl` says, with `ede` if any (a stale answer's).
pub fn write_answer(
    echo: &Echo<'_>,
    answer: &Answer,
    ttl: TtlRule,
    ede: Option<Ede<'_>>,
    transport: Transport,
) -> Vec<u8> {
    let served = answer.served(ttl);
    let reply = Reply {
        records: Some(&served),
        ede,
        ..Reply::code(answer.rcode)
    };
    write_reply(echo, &reply, transport)
}

/// The house's own answer to `question` (AA set), or SERVFAIL should it not encode.
pub fn write_local(
    echo: &Echo<'_>,
    question: &Question,
    local: &LocalAnswer,
    transport: Transport,
) -> Vec<u8> {
    let Some(answer) = Answer::local(question, local) else {
        return write_reply(echo, &Reply::code(ResponseCode::ServFail), transport);
    };
    let served = answer.served(TtlRule::Aged(0));
    let reply = Reply {
        records: Some(&served),
        authoritative: true,
        ..Reply::code(answer.rcode)
    };
    write_reply(echo, &reply, transport)
}

/// The response codes the daemon answers with itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// NOERROR (with TC: ANY over UDP).
    NoError,
    /// FORMERR: the question makes no sense (a transaction signature asked as data).
    FormErr,
    /// SERVFAIL: no upstream answered.
    ServFail,
    /// NOTIMP: a zone transfer or mailbox query.
    NotImp,
    /// REFUSED: not served to this client, or not the house's business.
    Refused,
}

impl From<Rcode> for ResponseCode {
    fn from(rcode: Rcode) -> Self {
        match rcode {
            Rcode::NoError => Self::NoError,
            Rcode::FormErr => Self::FormErr,
            Rcode::ServFail => Self::ServFail,
            Rcode::NotImp => Self::NotImp,
            Rcode::Refused => Self::Refused,
        }
    }
}

/// A reply carrying only `rcode` (and `ede`, if any); with `truncate`, TC set so the client
/// asks again over TCP.
pub fn write_code(
    echo: &Echo<'_>,
    rcode: Rcode,
    ede: Option<Ede<'_>>,
    truncate: bool,
    transport: Transport,
) -> Vec<u8> {
    let reply = Reply {
        ede,
        truncate,
        ..Reply::code(rcode.into())
    };
    write_reply(echo, &reply, transport)
}

impl Rejection {
    /// The reply to a request rejected before its question was read (FORMERR, NOTIMP,
    /// BADVERS) and its response code (BADVERS is 16: its upper bits are in the OPT record,
    /// not the header), or `None` when nothing must be sent back.
    pub fn reply(&self, transport: Transport) -> Option<(Vec<u8>, u16)> {
        let Self::Reply {
            metadata,
            rcode,
            edns,
        } = self
        else {
            return None;
        };
        let echo = Echo::without_question(metadata, edns.then_some(MAX_UDP_PAYLOAD));
        let reply = write_reply(&echo, &Reply::code(*rcode), transport);
        Some((reply, u16::from(*rcode)))
    }
}
