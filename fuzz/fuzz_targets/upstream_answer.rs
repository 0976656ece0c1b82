//! Upstream answers: arbitrary bytes as an upstream's response, decoded by hickory-proto and
//! built into our `Answer` the way the forwarder does (records encoded once, TTL places
//! found), clamped to `[cache]` TTL bounds, its targets read for answer inspection, and
//! written as a client's reply with aged TTLs; the reply must decode.
//!
//! Input layout: 4 bytes min TTL, 4 bytes max TTL, 4 bytes age (seconds, big-endian), then the
//! DNS message.

#![no_main]

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use libfuzzer_sys::fuzz_target;
use metasink::dns::{Answer, TtlRule};

fuzz_target!(|data: &[u8]| {
    let Some((head, message)) = data.split_at_checked(12) else {
        return;
    };
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (min, max, age) = (secs(word(0)), secs(word(4)), secs(word(8)));

    // The forwarder drops a reply that is not a QUERY response (`dns::upstream`; found here:
    // hickory-resolver matches replies by ID and question only, and an UPDATE "reply" may hold
    // records with empty RDATA that no QUERY reply can carry). Skipped the same way.
    let is_query_response = message.get(2).is_some_and(|flags| flags & 0xf8 == 0x80);
    if !is_query_response {
        return;
    }
    let Some((question, mut answer)) = Answer::from_message_bytes(message) else {
        return;
    };
    check_targets(&answer);
    let _ = answer.lifetime();

    answer.clamp_ttls(min, max);
    if let Some(lifetime) = answer.lifetime() {
        // Clamping happens before caching: what the cache keeps lies within the bounds (max
        // is raised to min when the config has them the wrong way round).
        assert!(lifetime >= min, "lifetime {lifetime:?} below min {min:?}");
        assert!(
            lifetime <= max.max(min),
            "lifetime {lifetime:?} above max {max:?}"
        );
    }
    check_targets(&answer);

    // The reply we write from it must decode, with the records the upstream sent: all its
    // answers, and its authority section unless minimal answers drop it (a positive NOERROR
    // answer with no SOA there, to a client that did not set DO).
    let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
    let bytes = answer.to_message_bytes(&question, 0x4d53, TtlRule::Aged(age));
    let reply = hickory_proto::op::Message::from_vec(&bytes)
        .expect("our reply from a cached answer does not decode");
    let upstream = hickory_proto::op::Message::from_vec(message).expect("decoded once already");
    assert_eq!(reply.answers.len(), upstream.answers.len());
    let dnssec_ok = upstream
        .edns
        .as_ref()
        .is_some_and(|edns| edns.flags().dnssec_ok);
    let minimal = upstream.metadata.response_code == ResponseCode::NoError
        && !upstream.answers.is_empty()
        && !dnssec_ok
        && !upstream
            .authorities
            .iter()
            .any(|record| record.record_type() == RecordType::SOA);
    let authorities = if minimal {
        0
    } else {
        upstream.authorities.len()
    };
    assert_eq!(reply.authorities.len(), authorities, "minimal: {minimal}");
});

fn secs(value: u32) -> Duration {
    Duration::from_secs(u64::from(value))
}

/// Targets are matched against lists as they are, in the form questions take
/// (`dns::question`): presentation format, lower-case, without the root's trailing dot, not
/// empty. A dot inside a label stays escaped (`exampl\.`), so a name ending in one is fine.
fn check_targets(answer: &Answer) {
    for target in answer.targets() {
        assert!(!target.is_empty(), "an empty target");
        assert!(
            !target.ends_with('.') || ends_with_escaped_dot(target),
            "{target:?} keeps its trailing dot"
        );
        assert!(
            !target.bytes().any(|b| b.is_ascii_uppercase()),
            "{target:?} is not lower-case"
        );
    }
}

/// True when `text` ends in `\.` with an odd number of backslashes (`\\.` is an escaped
/// backslash, then a separator).
fn ends_with_escaped_dot(text: &str) -> bool {
    let before_dot = &text.as_bytes()[..text.len() - 1];
    let backslashes = before_dot.iter().rev().take_while(|&&b| b == b'\\').count();
    backslashes % 2 == 1
}
