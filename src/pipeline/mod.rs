//! The query path, written down once: what happens to a question between the DNS service's
//! edge (admission and parsing, [`crate::server`]) and the reply writer, stage by stage, each
//! with the reason it sits where it does. It is all in [`Pipeline::resolve`]:
//!
//! ```text
//! identify  client address → device → profile              (every later stage needs them)
//! local     ANY over UDP, meta-types, classes other than IN → Truncated | NotImplemented | …
//!           local names, private reverse zones, home.arpa   → Local (authoritative)
//!           forward zones                                   → their own upstreams
//! decide    lists containing the name, block & !allow       → Blocked (stop)
//! cache     shared by every profile                         → hit
//! upstream  forward (one fetch per question), then cache    → answer | stale | ServFail | Dropped
//! inspect   names inside the answer, same profile           → Blocked
//!           house addresses in a public name's answer       → Rebinding
//! ```
//!
//! The result is one [`Resolution`]: the [`Outcome`] (everything the reply writer needs) with
//! the device and profile it was decided for (what the service counts under). `explain`
//! runs the same function, so what it prints is what a client gets.
//!
//! The cache and upstream stages, with in-flight de-duplication, the query deadline and
//! serve-stale ([`STALE_AFTER`], [`STALE_TTL`]), and the caps on fetches in flight per client
//! ([`MAX_FETCHES_PER_CLIENT`]) live in the `fetch` submodule; upstreams are reached through
//! the [`Forward`] seam.

mod fetch;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::debug;

pub use self::fetch::{FetchLimit, MAX_FETCHES_PER_CLIENT, STALE_AFTER, STALE_TTL, Source};
use self::fetch::{FetchStarter, Fetcher, Unanswered};
use crate::cache::{Cache, Entry};
use crate::dns::{Ecs, Ede, Forward, Question, QuestionKind, Transport, TtlRule, UpstreamError};
use crate::local::{Local, LocalAnswer};
use crate::metrics::QueryResult;
use crate::neighbours::Neighbours;
use crate::net::{ForwardedClient, MacAddress};
use crate::overrides::{Decision, Kind, OverrideStore};
use crate::policy::{Device, IdentifiedBy, ListIndex, ListMask, Policy, Profile};

/// Where a blocked name was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedBy {
    /// The question's own name.
    Question,
    /// A name inside the upstream answer (a CNAME or HTTPS/SVCB target).
    AnswerTarget,
    /// An address of the upstream answer, inside a network the profile blocks.
    AnswerAddress(IpAddr),
}

/// What the pipeline decided for one question.
pub enum Outcome {
    /// Answer with the profile's blocked answer, naming `list`.
    Blocked {
        /// The list that blocked it.
        list: ListIndex,
        /// Where the blocked name was.
        by: BlockedBy,
    },
    /// Answer with an upstream answer, `age` already spent in the cache.
    Answered {
        /// The cached or fresh entry.
        entry: Arc<Entry>,
        /// Forwarded, cached, or cached and expired.
        source: Source,
    },
    /// Answer with the profile's blocked answer because an override blocks the name.
    BlockedByOverride(Decision),
    /// ANY over UDP: NOERROR with TC and no records, so the client asks again over TCP.
    Truncated,
    /// A zone transfer or mailbox query: NOTIMP.
    NotImplemented,
    /// A transaction signature asked as a question: FORMERR.
    Malformed,
    /// A class other than IN: REFUSED.
    Refused,
    /// No upstream answered in time, and why.
    ServFail(UpstreamError),
    /// Answered at home, authoritatively: a local name, or a private reverse zone or
    /// `home.arpa` name nothing local covers.
    Local(LocalAnswer),
    /// A public name answered with an address inside the house: blocked as DNS rebinding.
    Rebinding,
    /// No reply at all: starting a fetch would have passed a cap on fetches in flight.
    Dropped(FetchLimit),
}

impl Outcome {
    /// The `result` metric label.
    pub fn result(&self) -> QueryResult {
        match self {
            Self::Blocked { .. } | Self::BlockedByOverride(_) | Self::Rebinding => {
                QueryResult::Blocked
            }
            Self::Local(_) => QueryResult::Local,
            Self::Answered {
                source: Source::Upstream,
                ..
            } => QueryResult::Forwarded,
            // The result label set is fixed; stale answers are counted on their own too.
            Self::Answered {
                source: Source::Cache | Source::Stale,
                ..
            } => QueryResult::Cached,
            Self::ServFail(_) => QueryResult::ServFail,
            // Not served, and never forwarded: counted as refused, whatever the code says (a
            // dropped question too, as one over the rate limit is).
            Self::Truncated
            | Self::NotImplemented
            | Self::Malformed
            | Self::Refused
            | Self::Dropped(_) => QueryResult::Refused,
        }
    }

    /// How the answer's TTLs are sent: less the time it spent in the cache until `now`
    /// (RFC 1035 §7.3), or all set to [`STALE_TTL`] for a stale answer (RFC 8767 §4).
    pub fn ttl_rule(&self, now: Instant) -> TtlRule {
        match self {
            Self::Answered {
                source: Source::Stale,
                ..
            } => TtlRule::Fixed(STALE_TTL),
            Self::Answered {
                entry,
                source: Source::Cache,
            } => TtlRule::aged(entry.age_at(now)),
            _ => TtlRule::Aged(0),
        }
    }

    /// The Extended DNS Error the reply carries (RFC 8914), if any: the blocking list (its id
    /// from `policy`) or override, a stale answer (RFC 8767 §4), or why no upstream answered
    /// (`why`: [`Self::why`], which the caller keeps alive).
    pub fn ede<'a>(&self, policy: &'a Policy, why: &'a str) -> Option<Ede<'a>> {
        match self {
            Self::Blocked { list, .. } => Some(Ede::blocked(&policy.list(*list).id)),
            Self::Rebinding => Some(Ede::rebinding()),
            Self::Answered {
                source: Source::Stale,
                ..
            } => Some(Ede::stale_answer()),
            Self::BlockedByOverride(_) => Some(Ede::blocked(why)),
            Self::ServFail(_) => Some(Ede::no_reachable_authority(why)),
            _ => None,
        }
    }

    /// The text behind [`Self::ede`] that is made for this outcome: which override blocked,
    /// or why no upstream answered; empty for the others.
    pub fn why(&self) -> String {
        match self {
            Self::BlockedByOverride(decision) => decision.to_string(),
            Self::ServFail(error) => error.to_string(),
            _ => String::new(),
        }
    }
}

/// Who asks: a client, or (for `explain --profile`) a profile.
#[derive(Clone, Copy, Debug)]
pub enum Asker<'a> {
    /// A client at `address`, naming through a forwarder's EDNS options whom it asks for.
    Client {
        /// The address the query came from.
        address: IpAddr,
        /// The client a forwarder's options name (believed from trusted forwarders only).
        forwarded: &'a ForwardedClient,
    },
    /// A profile by itself (its index in the policy's profiles), as `explain` asks for one
    /// (counted as the unknown device).
    Profile(usize),
}

/// Whom a fetch started for `asker` counts against: the client (a trusted forwarder with
/// the larger share); nobody for `explain`'s profile.
fn fetch_starter(asker: Asker<'_>, policy: &Policy) -> Option<FetchStarter> {
    match asker {
        Asker::Client { address, .. } => Some(FetchStarter::new(address, policy.trusts(address))),
        Asker::Profile(_) => None,
    }
}

/// One question as the pipeline gets it.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Who asks.
    pub asker: Asker<'a>,
    /// What.
    pub question: &'a Question,
    /// How the reply travels (ANY is only answered over TCP).
    pub transport: Transport,
    /// When the question arrived: the query's one reading of the clock, from which the
    /// cache's freshness and the answer's age are reckoned (each further read cost 28 ns of
    /// a 0.5 µs cached answer; BENCHMARKS.md).
    pub received: Instant,
}

/// Who a question is answered for: the first stage's result.
#[derive(Clone, Copy)]
pub struct Identity<'p> {
    /// The device (the unknown-client stand-in for a client that is none).
    pub device: &'p Device,
    /// Its profile.
    pub profile: &'p Profile,
    /// How the device was found (address, MAC, router option, default): the query log's
    /// and the clients view's `identified_by`.
    pub by: IdentifiedBy,
    /// The client's MAC address, when the router named it or the neighbour table was read.
    pub mac: Option<MacAddress>,
    /// The client subnet a trusted forwarder named with EDNS Client Subnet, and the scope
    /// its device was found by (RFC 7871 §7.3).
    ecs: Option<Ecs>,
}

/// What the pipeline decided, and for whom.
pub struct Resolution<'p> {
    /// The decision.
    pub outcome: Outcome,
    /// The device and profile it was decided for.
    pub identity: Identity<'p>,
    /// The EDNS Client Subnet option the reply carries back (RFC 7871 §7.3): the subnet a
    /// trusted forwarder named, with scope 0 when the outcome did not depend on who asked.
    pub ecs: Option<Ecs>,
    /// The override that decided it, if one did.
    pub overridden: Option<Decision>,
    /// The list a dry-run profile (`mode = "observe"`) would have blocked the name with, and
    /// where: the outcome is then what an allowed name gets.
    pub would_block: Option<(ListIndex, BlockedBy)>,
    /// Every list that holds the question's name (the profile's or not), when the decide
    /// stage looked them up: the records layer reads it instead of looking again.
    pub lists: Option<ListMask>,
}

/// The stages that hold state: the shared cache, the upstreams, the neighbour table.
pub struct Pipeline {
    fetcher: Fetcher,
    /// The MAC addresses of clients on the LAN, for devices matched by one.
    neighbours: Neighbours,
    /// The household's overrides (pause, allow, block), above the profiles.
    overrides: Arc<OverrideStore>,
    /// Whether forward zones go to their own upstreams (off in `explain`'s dry run, which
    /// must send nothing anywhere).
    forward_zones: bool,
}

impl Pipeline {
    /// A pipeline over `cache`, forwarding to `upstreams`, with no overrides.
    pub fn new(cache: Cache, upstreams: impl Forward + 'static) -> Self {
        Self {
            fetcher: Fetcher::new(cache, Arc::new(upstreams)),
            neighbours: Neighbours::default(),
            overrides: Arc::new(OverrideStore::in_memory()),
            forward_zones: true,
        }
    }

    /// This pipeline with every question that would go upstream sent to its one forwarder,
    /// forward zones' too: for a dry run whose forwarder goes nowhere.
    pub fn without_forward_zones(self) -> Self {
        Self {
            forward_zones: false,
            ..self
        }
    }

    /// The pipeline with `descriptors` left for upstream queries: fewer than the fetch caps
    /// shrink them (see the `fetch` module).
    pub fn with_upstream_descriptors(self, descriptors: usize) -> Self {
        Self {
            fetcher: self.fetcher.within(descriptors),
            ..self
        }
    }

    /// The pipeline deciding with `overrides` (the daemon's, or `explain`'s view of them).
    pub fn with_overrides(self, overrides: Arc<OverrideStore>) -> Self {
        Self { overrides, ..self }
    }

    /// Answers `query` under the snapshot `policy`: every stage, in order.
    pub async fn resolve<'p>(&self, policy: &'p Policy, query: &Query<'_>) -> Resolution<'p> {
        let question = query.question;
        // identify: first, because what every later stage decides depends on the profile.
        let identity = match query.asker {
            Asker::Client { address, forwarded } => self.identify(policy, address, forwarded),
            Asker::Profile(index) => Identity {
                device: policy.unknown_device(),
                profile: &policy.profiles()[index],
                by: IdentifiedBy::Default,
                mac: None,
                ecs: None,
            },
        };
        let profile = identity.profile;
        let done = |outcome, depends_on_client, overridden| Resolution {
            outcome,
            identity,
            ecs: identity.ecs.map(|ecs| match depends_on_client {
                true => ecs,
                false => Ecs { scope: 0, ..ecs },
            }),
            overridden,
            would_block: None,
            lists: None,
        };
        // local: questions a forwarding resolver does not pass on, before the lists, as no
        // list can make them worth forwarding.
        if let Some(outcome) = answered_here(question, query.transport) {
            return done(outcome, false, None);
        }
        // The house's own names and private zones are answered here, before anything can
        // send them out; a forward zone picks the only upstreams its names may go to.
        let via = match policy
            .local()
            .resolve(question.name(), question.qtype_code())
        {
            Some(Local::Answer(answer)) => return done(Outcome::Local(answer), false, None),
            Some(Local::Forward(index, _)) if self.forward_zones => {
                Some(policy.forward_upstreams(index))
            }
            Some(Local::Forward(..)) | None => None,
        };
        // decide: before the cache and the upstreams, so a blocked name never leaves the house
        // and one cache can serve every profile. The household's overrides come first, above
        // the profile: a block beats its allow lists; an allow or a pause beats its block
        // lists and the inspection of the answer. With none in force this is one atomic load.
        let overridden =
            (self.overrides).decide(&identity.device.name, &profile.name, question.name());
        let exempt = match overridden {
            Some(rule) if rule.kind == Kind::Block => {
                return done(Outcome::BlockedByOverride(rule), true, overridden);
            }
            Some(_) => true,
            None => false,
        };
        // A dry-run profile (`mode = "observe"`) decides the same, then answers as if it
        // allowed the name: the first list that would have blocked it is kept for the log
        // and the would-block counter.
        let mut would_block = None;
        let lists = policy.lists_containing(question.name());
        let done = |outcome, depends_on_client, would_block| Resolution {
            would_block,
            lists: Some(lists),
            ..done(outcome, depends_on_client || exempt, overridden)
        };
        if let Some(list) = profile.blocking_list(lists).filter(|_| !exempt)
            && let Some(blocked) = block(profile, &mut would_block, list, BlockedBy::Question)
        {
            return done(blocked, true, None);
        }
        // cache: shared by every profile (the policy was applied above and is applied again
        // to the answer below); only upstream answers are in it.
        let found = match self.fetcher.cached(question, query.received) {
            Ok(live) => Ok((live, Source::Cache)),
            // upstream: identical questions share one fetch (no client may start more than
            // its share of them), and an expired answer stands in when the upstreams fail
            // (RFC 8767). `explain`'s profile is nobody's client: no cap applies to it.
            // Boxed: only a question that goes upstream carries the fetch's state, so the
            // future of one that waits (the UDP listener boxes it) stays within malloc's
            // per-thread cache.
            Err(expired) => {
                let starter = fetch_starter(query.asker, policy);
                let fetching = (self.fetcher).upstream(
                    question,
                    expired,
                    via.as_ref(),
                    starter,
                    query.received,
                );
                Box::pin(fetching).await
            }
        };
        let (entry, source) = match found {
            Ok(found) => found,
            Err(Unanswered::Failed(error)) => {
                return done(Outcome::ServFail(error), false, would_block);
            }
            Err(Unanswered::Dropped(limit)) => return done(Outcome::Dropped(limit), false, None),
        };
        // inspect: after the cache as well, because profiles differ and the cache is shared.
        // A name its profile allows is answered as it is (allow wins, CNAMEs included).
        let inspect = !exempt && profile.inspect_answers && !profile.allows(lists);
        let targets = (inspect || identity.ecs.is_some()).then(|| target_lists(policy, &entry));
        let targets = targets.as_deref().unwrap_or_default();
        let blocked = inspect
            .then(|| {
                targets
                    .iter()
                    .find_map(|&lists| profile.blocking_list(lists))
            })
            .flatten();
        if let Some(list) = blocked
            && let Some(blocked) = block(profile, &mut would_block, list, BlockedBy::AnswerTarget)
        {
            return done(blocked, true, None);
        }
        // inspect addresses: an answer into a network the profile blocks (Meta's, for
        // `no-meta`), whatever name led there; an allowed name is answered as it is.
        if let Some((list, address)) = (!exempt && !profile.allows(lists))
            .then(|| blocked_address(policy, profile, &entry))
            .flatten()
            && let Some(blocked) = block(
                profile,
                &mut would_block,
                list,
                BlockedBy::AnswerAddress(address),
            )
        {
            return done(blocked, true, None);
        }
        // inspect: DNS rebinding, whatever the lists and overrides say (it protects the house,
        // it is no list). Forward zones are the house's own resolvers, exempt.
        if via.is_none()
            && entry.answer.holds_house_address()
            && policy.local().blocks_rebinding(question.name())
        {
            return done(Outcome::Rebinding, false, None);
        }
        // Another client could have been answered otherwise only if a list holds a name, or
        // one of the answer's addresses is in a network list some profile blocks.
        let listed = !lists.is_empty()
            || targets.iter().any(|lists| !lists.is_empty())
            || (identity.ecs.is_some() && in_a_network(policy, &entry));
        done(Outcome::Answered { entry, source }, listed, would_block)
    }

    /// The identify stage: the device a query from `address` is for (naming `forwarded`,
    /// believed from a trusted forwarder only), its profile and how it was found.
    pub fn identify<'p>(
        &self,
        policy: &'p Policy,
        address: IpAddr,
        forwarded: &ForwardedClient,
    ) -> Identity<'p> {
        let (device, identified) = policy.identify(address, forwarded, &self.neighbours);
        let trusted = forwarded.names_anyone() && policy.trusts(address);
        if trusted && policy.is_unknown(device) {
            // How a household finds the MAC address or address to write in a [[device]].
            debug!(forwarder = %address, mac = ?forwarded.mac.map(|mac| mac.to_string()), subnet = ?forwarded.subnet, "a forwarder named a client that is no device: default profile");
        }
        // A device found by MAC address holds for that MAC only: the scope is the whole
        // subnet the forwarder sent, as nothing wider is known to get the same answer.
        let ecs = forwarded.subnet.filter(|_| trusted).map(|subnet| Ecs {
            subnet,
            scope: match forwarded.mac {
                Some(_) => subnet.prefix_len(),
                None => policy.ecs_scope(subnet),
            },
        });
        Identity {
            device,
            profile: policy.profile_of(device),
            by: identified.by,
            mac: identified.mac,
            ecs,
        }
    }
}

/// The block of `list` (found `by`), or, for a dry-run profile, nothing: the first list
/// that would have blocked is kept in `would_block` and the name is answered as allowed.
fn block(
    profile: &Profile,
    would_block: &mut Option<(ListIndex, BlockedBy)>,
    list: ListIndex,
    by: BlockedBy,
) -> Option<Outcome> {
    match profile.observe {
        true => {
            would_block.get_or_insert((list, by));
            None
        }
        false => Some(Outcome::Blocked { list, by }),
    }
}

/// The local stage: the outcome of a question a forwarding resolver does not pass on, if it
/// is one.
///
/// ANY over UDP is an amplification favourite: the full answer only over TCP (RFC 8482 §4.3
/// allows refusing it; TC keeps honest clients working). Meta-types are not data to look up
/// (RFC 6895 §3.1): zone transfers and the obsolete mailbox types are not implemented here,
/// and transaction signatures belong in the additional section, never in a question. Classes
/// other than IN (CHAOS `version.bind`, Hesiod) are not the house's business: refused, as a
/// resolver that keeps its version to itself does.
fn answered_here(question: &Question, transport: Transport) -> Option<Outcome> {
    match question.kind() {
        QuestionKind::Data => None,
        QuestionKind::Any => (transport == Transport::Udp).then_some(Outcome::Truncated),
        QuestionKind::Transfer => Some(Outcome::NotImplemented),
        QuestionKind::Signature => Some(Outcome::Malformed),
        QuestionKind::OtherClass => Some(Outcome::Refused),
    }
}

/// The lists containing each name inside the cached answer. The masks kept with the entry
/// are reused while the policy generation stays the same.
fn target_lists<'e>(policy: &Policy, entry: &'e Entry) -> std::borrow::Cow<'e, [ListMask]> {
    entry.target_lists(policy.generation(), || {
        entry
            .answer
            .targets()
            .iter()
            .map(|name| policy.lists_containing(name))
            .collect()
    })
}

/// Whether an address of the cached answer is inside a network list (which some profile
/// blocks), so that another client could get another answer.
fn in_a_network(policy: &Policy, entry: &Entry) -> bool {
    address_lists(policy, entry)
        .iter()
        .any(|lists| !lists.is_empty())
}

/// The first address of the cached answer inside a network `profile` blocks, with its list.
/// The network lists of each address are kept with the entry, like the target masks.
fn blocked_address(
    policy: &Policy,
    profile: &Profile,
    entry: &Entry,
) -> Option<(ListIndex, IpAddr)> {
    if profile.block_networks.is_empty() {
        return None;
    }
    profile.blocking_network(entry.answer.addresses(), &address_lists(policy, entry))
}

/// The network lists holding each address of the cached answer, kept with the entry for
/// the policy generation they were found under.
fn address_lists<'e>(policy: &Policy, entry: &'e Entry) -> std::borrow::Cow<'e, [ListMask]> {
    let addresses = entry.answer.addresses();
    entry.address_lists(policy.generation(), || policy.networks_holding(addresses))
}
