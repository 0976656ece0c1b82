//! Admission: whether a query is looked at at all, decided from the client's address alone,
//! before anything beyond the DNS header is decoded.
//!
//! Two checks, in this order:
//! 1. The access list ([`crate::net::AccessList`]): clients outside `server.allow_from` (by default loopback,
//!    private, CGNAT, link-local and unique local networks) are refused. metasink is not an
//!    open resolver (RFC 5358): a stranger never causes an upstream query.
//! 2. The rate limit (`ratelimit`): each allowed source (an IPv4 address, or an IPv6 /64) has a
//!    token bucket of `server.rate_limit_burst` queries, refilled at `server.rate_limit_qps`;
//!    queries beyond it are dropped without a response. A trusted forwarder is not limited
//!    ([`Admission::check_forwarder`]): it asks for the whole house behind it.
//!
//! The access list comes first so that strangers never take a slot in the rate limiter's
//! bounded table: a flood from outside cannot push the household's own sources out of it. It
//! does mean strangers are not rate limited; that is safe because a REFUSED response carries
//! at most the question back, so it amplifies nothing towards a spoofed victim.
//!
//! An [`Admission`] is built once per daemon start from [`AdmissionSettings`]; its checks take
//! `&self` from any number of threads and cost a scan of a few networks, a clock read, a hash,
//! an uncontended lock and a map lookup (`benches/admission.rs`).

mod ratelimit;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

use crate::config::AdmissionSettings;
use crate::net::AccessList;

use ratelimit::RateLimiter;

/// What to do with a query, from its client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: decode and answer it.
    Answer,
    /// The client is not allowed to query: answer REFUSED (RCODE 5, RFC 1035 §4.1.1) without
    /// looking further, and count it in `metasink_refused_total`.
    Refuse,
    /// The client exceeded its rate limit: send nothing, and count it in
    /// `metasink_rate_limited_total`. Silence rather than an error: every response costs a
    /// send and goes to whoever the (possibly spoofed) source is, while a real client treats
    /// silence as loss and retries later.
    Drop,
}

/// The admission checks of one daemon run: the access list and the per-source rate limit.
///
/// `Send + Sync`: shared by every listener task behind an `Arc`.
pub struct Admission {
    access: AccessList,
    /// `None` when `rate_limit_qps` is 0.
    limiter: Option<RateLimiter>,
}

impl Admission {
    /// The checks `settings` describe. An empty `allow_from` refuses everyone (a validated
    /// config never has one); a `rate_limit_burst` of 0 is read as 1.
    pub fn new(settings: &AdmissionSettings) -> Self {
        let limiter = NonZeroU32::new(settings.rate_limit_qps)
            .map(|qps| RateLimiter::new(qps, settings.rate_limit_burst));
        Self {
            access: AccessList::new(&settings.allow_from),
            limiter,
        }
    }

    /// Whether `client` is inside `allow_from` (the access list alone, no rate limit).
    pub fn allows(&self, client: IpAddr) -> bool {
        self.access.allows(client)
    }

    /// The verdict on a query from `client`, now (on the monotonic clock).
    pub fn check(&self, client: IpAddr) -> Verdict {
        self.verdict(client, Instant::now)
    }

    /// The verdict on a query from `client`, a trusted forwarder: the access list alone. A
    /// router forwarding for every device of the house would otherwise hold them all to one
    /// client's rate (and dnsmasq does not cache the answers to the queries it names a device
    /// in, so all of them reach us).
    pub fn check_forwarder(&self, client: IpAddr) -> Verdict {
        match self.access.allows(client) {
            true => Verdict::Answer,
            false => Verdict::Refuse,
        }
    }

    /// The verdict on a query from `client` at `now`: [`check`](Self::check) with the clock
    /// given, for tests and for callers that already read it (saving a clock read). `now`
    /// should not go backwards: a query dated before the previous one from its source finds
    /// the bucket emptier than it was (never a panic).
    pub fn check_at(&self, client: IpAddr, now: Instant) -> Verdict {
        self.verdict(client, || now)
    }

    /// Sources (IPv4 addresses, IPv6 /64s) the rate limiter holds a bucket for: at most
    /// 20,000. Includes sources whose bucket has refilled but which have not been swept yet
    /// (they are, within a second of the next check landing in their shard). 0 when the rate
    /// limit is off.
    pub fn tracked_sources(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, RateLimiter::tracked_sources)
    }

    /// The verdict, reading the clock only when the rate limit needs it.
    fn verdict(&self, client: IpAddr, now: impl FnOnce() -> Instant) -> Verdict {
        if !self.access.allows(client) {
            return Verdict::Refuse;
        }
        match &self.limiter {
            Some(limiter) if !limiter.admit(client, now()) => Verdict::Drop,
            _ => Verdict::Answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn settings(allow_from: &[&str], qps: u32, burst: u32) -> AdmissionSettings {
        AdmissionSettings {
            allow_from: allow_from.iter().map(|n| n.parse().expect("net")).collect(),
            rate_limit_qps: qps,
            rate_limit_burst: burst,
        }
    }

    /// Queries from `client` at `now` answered, out of `count`.
    fn answered(admission: &Admission, client: IpAddr, now: Instant, count: u32) -> u32 {
        let verdicts = (0..count).map(|_| admission.check_at(client, now));
        let answered = verdicts.filter(|&v| v == Verdict::Answer).count();
        u32::try_from(answered).expect("small count")
    }

    #[test]
    fn default_networks_are_answered_and_others_refused() {
        let admission = Admission::new(&AdmissionSettings::default());
        let inside = [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.0.1",
            "169.254.255.255",
            "::1",
            "fe80::1",
            "febf:ffff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "::ffff:192.168.1.20",
            "::ffff:127.0.0.1",
        ];
        let outside = [
            "9.9.9.9",
            "0.0.0.0",
            "11.0.0.1",
            "9.255.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "255.255.255.255",
            "::",
            "::2",
            "fec0::1",
            "fe7f::1",
            "fbff::1",
            "fe00::1",
            "2001:db8::1",
            "2620:fe::fe",
            "::ffff:9.9.9.9",
            "::ffff:0:0",
            "64:ff9b::c0a8:114",
        ];
        for client in inside {
            assert_eq!(admission.check(ip(client)), Verdict::Answer, "{client}");
        }
        for client in outside {
            assert_eq!(admission.check(ip(client)), Verdict::Refuse, "{client}");
        }
    }

    #[test]
    fn allow_from_replaces_the_defaults() {
        let allowed = ["192.168.1.0/24", "fd00::/8", "203.0.113.7/32"];
        let admission = Admission::new(&settings(&allowed, 100, 500));
        for client in [
            "192.168.1.1",
            "::ffff:192.168.1.254",
            "fd00::1",
            "203.0.113.7",
        ] {
            assert_eq!(admission.check(ip(client)), Verdict::Answer, "{client}");
        }
        for client in ["192.168.2.1", "127.0.0.1", "::1", "fc00::1", "203.0.113.8"] {
            assert_eq!(admission.check(ip(client)), Verdict::Refuse, "{client}");
        }
        assert_eq!(
            admission.tracked_sources(),
            4,
            "refused clients take no slot"
        );
    }

    #[test]
    fn an_empty_allow_list_refuses_everyone() {
        let admission = Admission::new(&settings(&[], 100, 500));
        assert_eq!(admission.check(ip("127.0.0.1")), Verdict::Refuse);
        assert_eq!(admission.check(ip("::1")), Verdict::Refuse);
    }

    #[test]
    fn burst_then_the_sustained_rate() {
        let admission = Admission::new(&settings(&["10.0.0.0/8"], 100, 500));
        let client = ip("10.0.0.1");
        let t0 = Instant::now();
        assert_eq!(
            answered(&admission, client, t0, 600),
            500,
            "the burst, no more"
        );
        assert_eq!(admission.check_at(client, t0), Verdict::Drop);
        // One token every 10 ms.
        let ms = Duration::from_millis;
        assert_eq!(admission.check_at(client, t0 + ms(9)), Verdict::Drop);
        assert_eq!(answered(&admission, client, t0 + ms(10), 5), 1);
        assert_eq!(answered(&admission, client, t0 + ms(1_010), 200), 100);
        // Five seconds of silence refill the whole bucket, not more.
        assert_eq!(answered(&admission, client, t0 + ms(6_010), 600), 500);
        // Steady 100 qps from an empty bucket never drops.
        let steady = (1..=1_000).map(|i| admission.check_at(client, t0 + ms(6_010 + 10 * i)));
        assert!(steady.into_iter().all(|v| v == Verdict::Answer));
    }

    #[test]
    fn ipv4_sources_are_addresses_and_ipv6_sources_are_slash_64s() {
        let admission = Admission::new(&settings(&["0.0.0.0/0", "::/0"], 1, 2));
        let now = Instant::now();
        assert_eq!(answered(&admission, ip("10.0.0.1"), now, 3), 2);
        assert_eq!(
            answered(&admission, ip("10.0.0.2"), now, 3),
            2,
            "its own bucket"
        );
        assert_eq!(
            answered(&admission, ip("::ffff:10.0.0.1"), now, 1),
            0,
            "mapped: same source as 10.0.0.1"
        );
        assert_eq!(answered(&admission, ip("2001:db8:0:1::1"), now, 1), 1);
        let same_64 = ip("2001:db8:0:1:ffff:ffff:ffff:ffff");
        assert_eq!(answered(&admission, same_64, now, 3), 1, "shares the /64");
        assert_eq!(answered(&admission, ip("2001:db8:0:2::1"), now, 3), 2);
        assert_eq!(admission.tracked_sources(), 4);
    }

    #[test]
    fn state_stays_bounded_under_many_sources() {
        let admission = Admission::new(&settings(&["10.0.0.0/8", "fd00::/8"], 1, 1));
        let now = Instant::now();
        for i in 0..50_000u32 {
            let v4 = IpAddr::from((10 << 24 | i).to_be_bytes());
            assert_eq!(admission.check_at(v4, now), Verdict::Answer, "a new source");
            let v6 = IpAddr::from(((0xfd00u128 << 112) | (u128::from(i) << 64)).to_be_bytes());
            assert_eq!(admission.check_at(v6, now), Verdict::Answer, "a new source");
            assert!(admission.tracked_sources() <= 20_000);
        }
        assert!(admission.tracked_sources() > 15_000, "the table is used");
    }

    #[test]
    fn idle_sources_expire() {
        let admission = Admission::new(&settings(&["10.0.0.0/8"], 100, 500));
        let t0 = Instant::now();
        for i in 0..1_000u32 {
            admission.check_at(IpAddr::from((10 << 24 | i).to_be_bytes()), t0);
        }
        assert_eq!(admission.tracked_sources(), 1_000);
        // Full again after 10 ms; swept at the first check of each shard a second later.
        let later = t0 + Duration::from_secs(2);
        for i in 1_000..2_000u32 {
            admission.check_at(IpAddr::from((10 << 24 | i).to_be_bytes()), later);
        }
        assert!(admission.tracked_sources() < 1_100, "old sources swept");
        assert!(admission.tracked_sources() >= 1_000, "new sources kept");
    }

    #[test]
    fn rate_limit_off() {
        let admission = Admission::new(&settings(&["10.0.0.0/8"], 0, 1));
        let now = Instant::now();
        assert_eq!(answered(&admission, ip("10.0.0.1"), now, 10_000), 10_000);
        assert_eq!(admission.check(ip("11.0.0.1")), Verdict::Refuse);
        assert_eq!(admission.tracked_sources(), 0);
    }

    #[test]
    fn zero_burst_is_read_as_one() {
        let admission = Admission::new(&settings(&["10.0.0.0/8"], 10, 0));
        assert_eq!(answered(&admission, ip("10.0.0.1"), Instant::now(), 3), 1);
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Admission>();
    }
}
