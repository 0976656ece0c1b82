//! The stage order, proved in milliseconds: a scripted forwarder behind the [`Forward`] seam
//! and tokio's paused clock (a timer fires as soon as nothing else can run, so a 2 s deadline
//! costs no wall time and is measured exactly).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record};
use tokio::time::Instant;

use super::*;
use crate::config::{
    BlockAnswer, CacheSettings, ListSettings, ListSource, ProfileMode, ProfileSettings,
    RecordSettings, Settings, builtin_settings,
};
use crate::dns::{Answer, Forwarding, UpstreamError};
use crate::metrics::Metrics;

/// Answers A questions after `delay` (or never, while `hang` is set), following the CNAMEs
/// in `cnames`, and counts what it is asked.
#[derive(Default)]
struct Scripted {
    cnames: HashMap<&'static str, &'static str>,
    ttl: u32,
    delay: Duration,
    hang: AtomicBool,
    asked: AtomicUsize,
}

impl Scripted {
    fn answer(&self, question: &Question) -> Answer {
        let mut reply = Message::new(0, MessageType::Response, OpCode::Query);
        reply.queries = vec![question.to_query()];
        let mut owner = question.name().to_owned();
        while let Some(&target) = self.cnames.get(owner.as_str()) {
            let data = RData::CNAME(CNAME(name(target)));
            reply.add_answer(Record::from_rdata(name(&owner), self.ttl, data));
            owner = target.to_owned();
        }
        let data = RData::A(A::new(192, 0, 2, 1));
        reply.add_answer(Record::from_rdata(name(&owner), self.ttl, data));
        let bytes = reply.to_vec().unwrap();
        Answer::from_message_bytes(&bytes).unwrap().1
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Forward for Arc<Scripted> {
    fn forward<'a>(&'a self, question: &'a Question) -> Forwarding<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            Ok(self.answer(question))
        })
    }
}

fn name(text: &str) -> Name {
    Name::from_str(&format!("{text}.")).unwrap()
}

/// A pipeline over a fresh cache and `forwarder`.
fn pipeline(forwarder: &Arc<Scripted>) -> Pipeline {
    let settings = CacheSettings {
        size: 1000,
        min_ttl: Duration::ZERO,
        max_ttl: Duration::from_secs(3600),
    };
    Pipeline::new(
        Cache::new(&settings, Metrics::new().cache()),
        forwarder.clone(),
    )
}

/// A house whose default profile blocks the list `block` and allows the list `keep` (each
/// the names given, one a line, in files under `dir`), snapshot number `generation`.
fn house(dir: &Path, block: &str, keep: &str, generation: u64) -> Policy {
    house_in_mode(dir, block, keep, generation, ProfileMode::Enforce)
}

/// [`house`], its profile in `mode` (`Observe`: a dry run).
fn house_in_mode(
    dir: &Path,
    block: &str,
    keep: &str,
    generation: u64,
    mode: ProfileMode,
) -> Policy {
    let settings = house_settings(dir, block, keep, generation, mode);
    crate::policy::compile(&settings, &Metrics::new(), generation)
}

/// The settings of [`house_in_mode`].
fn house_settings(
    dir: &Path,
    block: &str,
    keep: &str,
    generation: u64,
    mode: ProfileMode,
) -> Settings {
    let mut settings = builtin_settings();
    let list = |id: &str, text: &str| {
        let path = dir.join(format!("{id}-{generation}.txt"));
        std::fs::write(&path, text).unwrap();
        ListSettings {
            id: id.to_owned(),
            source: ListSource::File(path),
            match_mode: None,
            blocked_ttl: None,
        }
    };
    settings.lists = vec![list("block", block), list("keep", keep)];
    settings.profiles = vec![ProfileSettings {
        name: "house".to_owned(),
        block: vec!["block".to_owned()],
        allow: vec!["keep".to_owned()],
        block_networks: Vec::new(),
        answer: BlockAnswer::Null,
        blocked_ttl: Duration::from_secs(10),
        inspect_answers: true,
        mode,
    }];
    settings.default_profile = "house".to_owned();
    settings.server.state_dir = dir.to_owned();
    settings
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20));

async fn ask<'p>(pipeline: &Pipeline, policy: &'p Policy, name: &str) -> Resolution<'p> {
    let question = Question::parse(name, "A").unwrap();
    let forwarded = ForwardedClient::default();
    let query = Query {
        asker: Asker::Client {
            address: CLIENT,
            forwarded: &forwarded,
        },
        question: &question,
        transport: Transport::Udp,
        received: Instant::now(),
    };
    pipeline.resolve(policy, &query).await
}

fn blocked_by(outcome: &Outcome) -> Option<BlockedBy> {
    match outcome {
        Outcome::Blocked { by, .. } => Some(*by),
        _ => None,
    }
}

fn source(outcome: &Outcome) -> Option<Source> {
    match outcome {
        Outcome::Answered { source, .. } => Some(*source),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_blocked_name_never_reaches_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "ads.test\n", "", 1);
    let forwarder = Arc::new(Scripted::default());
    let pipeline = pipeline(&forwarder);

    let blocked = ask(&pipeline, &policy, "tracker.ads.test").await;
    assert_eq!(blocked_by(&blocked.outcome), Some(BlockedBy::Question));
    assert_eq!(forwarder.asked(), 0, "a blocked name is never forwarded");

    let other = ask(&pipeline, &policy, "www.example.test").await;
    assert_eq!(source(&other.outcome), Some(Source::Upstream));
    assert_eq!(forwarder.asked(), 1, "other names are");
}

#[tokio::test(start_paused = true)]
async fn a_cache_hit_is_inspected_again_under_a_newer_policy() {
    let dir = tempfile::tempdir().unwrap();
    let forwarder = Arc::new(Scripted {
        cnames: HashMap::from([("www.shop.test", "edge.tracker.test")]),
        ttl: 300,
        ..Scripted::default()
    });
    let pipeline = pipeline(&forwarder);

    let before = house(dir.path(), "", "", 1);
    let first = ask(&pipeline, &before, "www.shop.test").await;
    assert_eq!(source(&first.outcome), Some(Source::Upstream));

    let after = house(dir.path(), "tracker.test\n", "", 2);
    let again = ask(&pipeline, &after, "www.shop.test").await;
    assert_eq!(blocked_by(&again.outcome), Some(BlockedBy::AnswerTarget));
    assert_eq!(
        forwarder.asked(),
        1,
        "answered from the cache, not forwarded again"
    );
}

#[tokio::test(start_paused = true)]
async fn two_hundred_identical_questions_make_one_forward() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "", "", 1);
    let forwarder = Arc::new(Scripted {
        ttl: 300,
        delay: Duration::from_millis(50),
        ..Scripted::default()
    });
    let pipeline = pipeline(&forwarder);

    let asked = (0..200).map(|_| ask(&pipeline, &policy, "www.example.test"));
    let resolutions = join_all(asked).await;
    assert!(
        resolutions
            .iter()
            .all(|r| source(&r.outcome) == Some(Source::Upstream)),
        "every question gets the one fetch's answer"
    );
    assert_eq!(forwarder.asked(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_answer_is_served_stale_after_1_8_s() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "", "", 1);
    let forwarder = Arc::new(Scripted {
        ttl: 60,
        ..Scripted::default()
    });
    let pipeline = pipeline(&forwarder);
    let fresh = ask(&pipeline, &policy, "www.example.test").await;
    assert_eq!(source(&fresh.outcome), Some(Source::Upstream));

    tokio::time::advance(Duration::from_secs(61)).await;
    forwarder.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let stale = ask(&pipeline, &policy, "www.example.test").await;
    assert_eq!(source(&stale.outcome), Some(Source::Stale));
    assert_eq!(started.elapsed(), STALE_AFTER);
    assert_eq!(
        stale.outcome.ttl_rule(Instant::now()),
        TtlRule::Fixed(STALE_TTL)
    );
    let ede = stale.outcome.ede(&policy, "").map(|ede| ede.code());
    assert_eq!(ede, Some(3), "Stale Answer");
    assert_eq!(forwarder.asked(), 2, "the refresh was forwarded");
}

#[tokio::test(start_paused = true)]
async fn servfail_with_ede_22_at_the_2_s_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "", "", 1);
    let forwarder = Arc::new(Scripted::default());
    forwarder.hang.store(true, Ordering::SeqCst);
    let pipeline = pipeline(&forwarder);

    let started = Instant::now();
    let failed = ask(&pipeline, &policy, "www.example.test").await;
    assert_eq!(started.elapsed(), crate::dns::QUERY_DEADLINE);
    assert!(matches!(
        failed.outcome,
        Outcome::ServFail(UpstreamError::AllFailed)
    ));
    assert_eq!(failed.outcome.result(), QueryResult::ServFail);
    let ede = failed.outcome.ede(&policy, "why").map(|ede| ede.code());
    assert_eq!(ede, Some(22), "No Reachable Authority");
}

#[tokio::test(start_paused = true)]
async fn an_allowed_name_is_never_blocked_through_its_cname() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "edge.test\n", "app.test\n", 1);
    let forwarder = Arc::new(Scripted {
        cnames: HashMap::from([("app.test", "x.edge.test"), ("other.test", "x.edge.test")]),
        ttl: 300,
        ..Scripted::default()
    });
    let pipeline = pipeline(&forwarder);

    let allowed = ask(&pipeline, &policy, "app.test").await;
    assert_eq!(source(&allowed.outcome), Some(Source::Upstream));
    let other = ask(&pipeline, &policy, "other.test").await;
    assert_eq!(
        blocked_by(&other.outcome),
        Some(BlockedBy::AnswerTarget),
        "the same CNAME blocks a name the profile does not allow"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_profile_answers_as_allowed_and_says_what_would_have_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house_in_mode(dir.path(), "ads.test\n", "", 1, ProfileMode::Observe);
    let forwarder = Arc::new(Scripted {
        cnames: HashMap::from([("cdn.test", "x.ads.test")]),
        ttl: 300,
        ..Scripted::default()
    });
    let pipeline = pipeline(&forwarder);
    let would_block = |resolution: &Resolution<'_>| {
        (resolution.would_block).map(|(list, by)| (policy.list(list).id.clone(), by))
    };
    let block = "block".to_owned();

    let asked = ask(&pipeline, &policy, "tracker.ads.test").await;
    assert_eq!(source(&asked.outcome), Some(Source::Upstream));
    assert_eq!(
        would_block(&asked),
        Some((block.clone(), BlockedBy::Question))
    );
    let target = ask(&pipeline, &policy, "cdn.test").await;
    assert_eq!(source(&target.outcome), Some(Source::Upstream));
    assert_eq!(would_block(&target), Some((block, BlockedBy::AnswerTarget)));
    let other = ask(&pipeline, &policy, "www.example.test").await;
    assert_eq!(other.would_block, None);
    assert_eq!(forwarder.asked(), 3, "every name is forwarded");
    // An unknown client: the default profile, found by no address.
    assert_eq!(other.identity.by, IdentifiedBy::Default);

    let enforced = house(dir.path(), "ads.test\n", "", 2);
    let blocked = ask(&pipeline, &enforced, "tracker.ads.test").await;
    assert_eq!(blocked_by(&blocked.outcome), Some(BlockedBy::Question));
    assert_eq!(blocked.would_block, None);
}

#[tokio::test(start_paused = true)]
async fn meta_types_and_any_over_udp_are_answered_here_and_never_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "", "", 1);
    let forwarder = Arc::new(Scripted::default());
    let pipeline = pipeline(&forwarder);
    let forwarded = ForwardedClient::default();
    let outcome = |qtype: &'static str, transport| {
        let question = Question::parse("example.test", qtype).unwrap();
        let pipeline = &pipeline;
        let policy = &policy;
        let forwarded = &forwarded;
        async move {
            let query = Query {
                asker: Asker::Client {
                    address: CLIENT,
                    forwarded,
                },
                question: &question,
                transport,
                received: Instant::now(),
            };
            pipeline.resolve(policy, &query).await.outcome
        }
    };
    assert!(matches!(
        outcome("ANY", Transport::Udp).await,
        Outcome::Truncated
    ));
    assert!(matches!(
        outcome("AXFR", Transport::Tcp).await,
        Outcome::NotImplemented
    ));
    assert!(matches!(
        outcome("TSIG", Transport::Tcp).await,
        Outcome::Malformed
    ));
    assert_eq!(forwarder.asked(), 0);
    assert!(matches!(
        outcome("ANY", Transport::Tcp).await,
        Outcome::Answered { .. }
    ));
}

/// The local stage comes before the lists and the upstreams: a local name is answered even
/// when a list holds it, and neither it nor a private reverse name reaches the forwarder.
#[tokio::test(start_paused = true)]
async fn local_names_and_private_zones_are_answered_before_the_lists_and_never_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = house_settings(dir.path(), "nas.lan\n", "", 1, ProfileMode::Enforce);
    settings.local.records = vec![RecordSettings {
        name: "nas.lan".to_owned(),
        ttl: Duration::from_secs(60),
        a: vec!["192.168.1.10".parse().unwrap()],
        aaaa: Vec::new(),
        cname: None,
        txt: Vec::new(),
    }];
    let policy = crate::policy::compile(&settings, &Metrics::new(), 1);
    let forwarder = Arc::new(Scripted::default());
    let pipeline = pipeline(&forwarder);
    for name in ["nas.lan", "9.0.0.10.in-addr.arpa", "tv.home.arpa"] {
        let resolution = ask(&pipeline, &policy, name).await;
        assert!(matches!(resolution.outcome, Outcome::Local(_)), "{name}");
        assert_eq!(resolution.outcome.result(), QueryResult::Local);
    }
    assert_eq!(forwarder.asked(), 0);
    let public = ask(&pipeline, &policy, "www.example.com").await;
    assert_eq!(source(&public.outcome), Some(Source::Upstream));
    assert_eq!(forwarder.asked(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_over_its_fetches_in_flight_is_dropped_and_explain_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let policy = house(dir.path(), "", "", 1);
    let forwarder = Arc::new(Scripted::default());
    forwarder.hang.store(true, Ordering::SeqCst);
    let pipeline = Arc::new(pipeline(&forwarder));
    let policy = Arc::new(policy);

    // The client's share of fetches, each waiting on a name the forwarder never answers.
    let waiting: Vec<_> = (0..MAX_FETCHES_PER_CLIENT)
        .map(|n| {
            let (pipeline, policy) = (pipeline.clone(), policy.clone());
            tokio::spawn(async move {
                ask(&pipeline, &policy, &format!("n{n}.tarpit.test"))
                    .await
                    .outcome
                    .result()
            })
        })
        .collect();
    while forwarder.asked() < MAX_FETCHES_PER_CLIENT {
        tokio::task::yield_now().await;
    }

    let over = ask(&pipeline, &policy, "over.tarpit.test").await;
    assert!(matches!(over.outcome, Outcome::Dropped(FetchLimit::Client)));
    assert_eq!(over.outcome.result(), QueryResult::Refused);
    assert_eq!(forwarder.asked(), MAX_FETCHES_PER_CLIENT, "never forwarded");

    // `explain --profile` is nobody's client: it forwards all the same.
    let question = Question::parse("explain.tarpit.test", "A").unwrap();
    let query = Query {
        asker: Asker::Profile(0),
        question: &question,
        transport: Transport::Udp,
        received: Instant::now(),
    };
    let explained = pipeline.resolve(&policy, &query).await;
    assert!(matches!(explained.outcome, Outcome::ServFail(_)));
    assert_eq!(forwarder.asked(), MAX_FETCHES_PER_CLIENT + 1);
    for task in waiting {
        assert_eq!(task.await.unwrap(), QueryResult::ServFail);
    }
}
