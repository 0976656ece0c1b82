//! The query log, observe, clients, explain and dry-run profiles end to end (issue 14): the
//! real daemon on loopback, a real upstream, queries from several 127.0.0.x "devices", the
//! API over HTTP and the `metasink` binary as a user runs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const TOKEN: &str = "records-test-token-0123";
const QUEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TV: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const WWW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PIXEL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

async fn upstream() -> TestUpstream {
    TestUpstream::start(&[
        TestRecord::A("www.example.test", WWW, 300),
        TestRecord::A("pixel.facebook.com", PIXEL, 300),
        TestRecord::Cname("cdn.example.test", "pixel.facebook.com", 300),
        TestRecord::A("new-thing.fbsbx.com", Ipv4Addr::new(192, 0, 2, 30), 300),
    ])
    .await
}

/// A house with a Quest (preset profile), a TV trying a profile in observe mode and a phone;
/// `querylog` is the `[querylog]` table's body and `devices` extra keys for each device.
fn config(upstream: &TestUpstream, querylog: &str, quest_log: &str) -> String {
    config_for(upstream.addr, querylog, quest_log)
}

/// [`config`] with the upstream at `upstream`.
fn config_for(upstream: SocketAddr, querylog: &str, quest_log: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
state_dir = "state"
api_token = "{TOKEN}"

[querylog]
{querylog}

[[upstream]]
address = "{upstream}"

[[profile]]
name = "tv-trial"
block = ["meta-tracking"]
mode = "observe"

[[device]]
name = "quest"
match = ["127.0.0.2"]
profile = "quest"
{quest_log}

[[device]]
name = "tv"
match = ["127.0.0.3"]
profile = "tv-trial"

[[device]]
name = "phone"
match = ["127.0.0.4"]
profile = "meta-apps"
"#
    )
}

/// `GET path` with `token` (none: no Authorization header): status and JSON body.
async fn get_with(daemon: &TestDaemon, token: Option<&str>, path: &str) -> (u16, Value) {
    let auth = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, body) = http_request(daemon.http, "GET", path, &headers, "").await;
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, json)
}

/// `text` without the per-client rate limit (for tests that send hundreds of queries).
fn unlimited(text: &str) -> String {
    text.replace("[server]\n", "[server]\nrate_limit_qps = 0\n")
}

/// The field names of a JSON object, sorted.
fn keys(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn get(daemon: &TestDaemon, path: &str) -> Value {
    let (status, body) = get_with(daemon, Some(TOKEN), path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The log entries of `path` once `ready` holds for them (the writer drains every 100 ms).
async fn entries_when(
    daemon: &TestDaemon,
    path: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = get(daemon, path).await;
        let entries = body["queries"].as_array().cloned().unwrap_or_default();
        if ready(&entries) || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the metric `series` once it reaches `value` (or after 5 s): the writer
/// counts after it writes, and reads the database size once a second.
async fn metric_reaching(daemon: &TestDaemon, series: &str, value: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = metric(&daemon.metrics().await, series);
        if now >= value || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(entries: &'a [Value], name: &str, result: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["name"] == name && e["result"] == result)
}

async fn ask(daemon: &TestDaemon, from: IpAddr, name: &str) -> Message {
    query_udp_from(from, daemon.dns, name, RecordType::A, true).await
}

#[tokio::test]
async fn each_result_appears_in_the_log_with_its_device_list_and_fields() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"", "")).await;

    let blocked = ask(&daemon, QUEST, "analytics.facebook.com").await;
    assert_eq!(a_addrs(&blocked), [Ipv4Addr::UNSPECIFIED]);
    assert_eq!(
        a_addrs(&ask(&daemon, QUEST, "www.example.test").await),
        [WWW]
    );
    assert_eq!(
        a_addrs(&ask(&daemon, QUEST, "www.example.test").await),
        [WWW]
    );
    assert_eq!(
        a_addrs(&ask(&daemon, QUEST, "cdn.example.test").await),
        [Ipv4Addr::UNSPECIFIED]
    );
    // Dry run: the TV's profile would block the pixel, and answers it.
    assert_eq!(
        a_addrs(&ask(&daemon, TV, "pixel.facebook.com").await),
        [PIXEL]
    );
    let axfr = query_udp_from(QUEST, daemon.dns, "example.test", RecordType::AXFR, false).await;
    assert_eq!(rcode(&axfr), ResponseCode::NotImp);

    let entries = entries_when(&daemon, "/api/queries?limit=100", |e| e.len() >= 6).await;
    let entry = find(&entries, "analytics.facebook.com", "blocked").expect("blocked entry");
    assert_eq!(
        (
            &entry["device"],
            &entry["profile"],
            &entry["list"],
            &entry["blocked_by"]
        ),
        (
            &Value::from("quest"),
            &Value::from("quest"),
            &Value::from("meta-tracking"),
            &Value::from("question")
        )
    );
    assert_eq!(
        (&entry["client"], &entry["identified_by"], &entry["rcode"]),
        (
            &Value::from("127.0.0.2"),
            &Value::from("address"),
            &Value::from("NOERROR")
        )
    );
    let fields = keys(entry);
    assert_eq!(
        fields,
        [
            "answers",
            "blocked_by",
            "client",
            "client_name",
            "device",
            "duration_ms",
            "identified_by",
            "list",
            "mac",
            "name",
            "profile",
            "rcode",
            "result",
            "time",
            "type",
            "upstream"
        ]
    );
    assert!(
        humantime::parse_rfc3339(entry["time"].as_str().unwrap()).is_ok(),
        "{entry}"
    );
    let forwarded = find(&entries, "www.example.test", "forwarded").expect("forwarded entry");
    assert_eq!(forwarded["answers"], serde_json::json!(["192.0.2.10"]));
    assert_eq!(forwarded["type"], "A");
    assert!(
        find(&entries, "www.example.test", "cached").is_some(),
        "{entries:?}"
    );
    let target = find(&entries, "cdn.example.test", "blocked").expect("CNAME target entry");
    assert_eq!(
        (&target["list"], &target["blocked_by"]),
        (&Value::from("meta-tracking"), &Value::from("answer-target"))
    );
    let would = find(&entries, "pixel.facebook.com", "would-block").expect("would-block entry");
    assert_eq!(
        (&would["device"], &would["list"]),
        (&Value::from("tv"), &Value::from("meta-tracking"))
    );
    assert_eq!(would["answers"], serde_json::json!(["192.0.2.20"]));
    let refused = find(&entries, "example.test", "refused").expect("refused entry");
    assert_eq!(
        (&refused["type"], &refused["rcode"]),
        (&Value::from("AXFR"), &Value::from("NOTIMP"))
    );
    // Newest first.
    assert_eq!(entries[0]["name"], "example.test", "{entries:?}");

    // Filters.
    let tv = get(&daemon, "/api/queries?device=tv").await;
    assert_eq!(tv["queries"].as_array().unwrap().len(), 1, "{tv}");
    let only = get(&daemon, "/api/queries?result=cached&client=127.0.0.2").await;
    assert_eq!(only["queries"].as_array().unwrap().len(), 1, "{only}");
    let by_name = get(&daemon, "/api/queries?name=example.test&limit=2").await;
    assert_eq!(by_name["queries"].as_array().unwrap().len(), 2, "{by_name}");
    let future = get(&daemon, "/api/queries?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["queries"], serde_json::json!([]));

    // Dry run counted as would-block, not blocked.
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"metasink_would_block_total{device="tv",list="meta-tracking",profile="tv-trial"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_if_present(
            &metrics,
            r#"metasink_blocked_total{device="tv",list="meta-tracking",profile="tv-trial"}"#
        ),
        None
    );
    assert!(metric_reaching(&daemon, "metasink_querylog_written_total", 6.0).await >= 6.0);
    assert!(metric_reaching(&daemon, "metasink_querylog_database_bytes", 1.0).await > 0.0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_servfail_is_logged() {
    // No upstream listens: every forwarded question fails.
    let upstream = UnresponsiveUpstream::start();
    let text = config_without_upstream(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr));
    let daemon = TestDaemon::start(&text).await;
    let reply = ask(&daemon, QUEST, "www.example.test").await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    let entries = entries_when(&daemon, "/api/queries", |e| !e.is_empty()).await;
    let entry = find(&entries, "www.example.test", "servfail").expect("servfail entry");
    assert_eq!(
        (&entry["rcode"], &entry["device"]),
        (&Value::from("SERVFAIL"), &Value::from("quest"))
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_stale_answer_is_logged_as_stale() {
    let faulty = FaultyUpstream::start_with_ttl(Fault::None, 1).await;
    let text = config_without_upstream(&format!("[[upstream]]\naddress = \"{}\"\n", faulty.addr));
    let daemon = TestDaemon::start(&text).await;
    ask(&daemon, QUEST, "www.example.test").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Expired, and the upstream stops answering: the expired answer.
    faulty.set_fault(Fault::Drop);
    let reply = ask(&daemon, QUEST, "www.example.test").await;
    assert_eq!(a_addrs(&reply), [FAULTY_ANSWER]);
    let entries = entries_when(&daemon, "/api/queries", |e| e.len() >= 2).await;
    let results: Vec<&Value> = entries.iter().map(|e| &e["result"]).collect();
    assert_eq!(results, ["stale", "forwarded"], "{entries:?}");
    daemon.stop().await;
}

fn config_without_upstream(upstream: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         api_token = \"{TOKEN}\"\n[querylog]\nmode = \"all\"\npath = \"\"\n{upstream}\
         [[device]]\nname = \"quest\"\nmatch = [\"127.0.0.2\"]\nprofile = \"quest\"\n"
    )
}

#[tokio::test]
async fn each_device_logs_by_its_own_mode() {
    let upstream = upstream().await;
    // Off for the house, everything for the Quest; the TV follows the house.
    let daemon = TestDaemon::start(&config(
        &upstream,
        "mode = \"off\"\npath = \"\"",
        "querylog = \"all\"",
    ))
    .await;
    ask(&daemon, TV, "www.example.test").await;
    ask(&daemon, PHONE, "pixel.facebook.com").await;
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    let entries = entries_when(&daemon, "/api/queries", |e| e.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries_later = get(&daemon, "/api/queries").await["queries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries, entries_later);
    let devices: Vec<&Value> = entries.iter().map(|e| &e["device"]).collect();
    assert_eq!(devices, ["quest", "quest"], "{entries:?}");
    daemon.stop().await;

    // "blocked": only blocked and would-block queries.
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"blocked\"\npath = \"\"", "")).await;
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    ask(&daemon, TV, "pixel.facebook.com").await;
    let entries = entries_when(&daemon, "/api/queries", |e| e.len() >= 2).await;
    let mut results: Vec<&str> = entries
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    results.sort_unstable();
    assert_eq!(results, ["blocked", "would-block"], "{entries:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn retention_and_the_size_cap_prune_the_oldest_entries() {
    let upstream = upstream().await;
    let daemon =
        TestDaemon::start(&config(&upstream, "mode = \"all\"\nretention = \"1s\"", "")).await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    let entries = entries_when(&daemon, "/api/queries", |e| !e.is_empty()).await;
    assert_eq!(entries.len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get(&daemon, "/api/queries").await["queries"],
        serde_json::json!([])
    );
    daemon.stop().await;

    let text = config(&upstream, "mode = \"all\"\nmax_bytes = 65536", "");
    let daemon = TestDaemon::start(&unlimited(&text)).await;
    for index in 0..1500 {
        ask(&daemon, QUEST, &format!("n{index}.meta.ai")).await;
    }
    let newest = "n1499.meta.ai";
    let entries = entries_when(&daemon, "/api/queries?limit=1", |e| {
        e.first().is_some_and(|e| e["name"] == newest)
    })
    .await;
    assert_eq!(entries[0]["name"], newest);
    // Pruned within a second of the write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let database = daemon.dir().join("state/querylog.sqlite3");
    let wal = daemon.dir().join("state/querylog.sqlite3-wal");
    let bytes = std::fs::metadata(&database).unwrap().len()
        + std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(bytes <= 65536, "{bytes} bytes on disk");
    let oldest = get(&daemon, "/api/queries?name=n0.meta.ai").await;
    assert_eq!(
        oldest["queries"],
        serde_json::json!([]),
        "the oldest entry is gone"
    );
    let kept = get(&daemon, "/api/queries?limit=10000").await["queries"]
        .as_array()
        .unwrap()
        .len();
    assert!((50..1500).contains(&kept), "{kept} entries kept");
    let metrics = daemon.metrics().await;
    assert!(
        metric(&metrics, "metasink_querylog_database_bytes") <= 65536.0,
        "{metrics}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_unwritable_database_loses_no_answer_and_counts_the_error() {
    let upstream = upstream().await;
    let text = config(
        &upstream,
        "mode = \"all\"\npath = \"log/queries.sqlite3\"",
        "",
    );
    let daemon = TestDaemon::start(&unlimited(&text)).await;
    ask(&daemon, QUEST, "www.example.test").await;
    entries_when(&daemon, "/api/queries", |e| !e.is_empty()).await;
    assert!(daemon.dir().join("log/queries.sqlite3").exists());

    // The database's directory becomes a plain file: nothing can be written there any more.
    let dir = daemon.dir().join("log");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    two_hundred_answered(&daemon).await;
    let errors = metric_reaching(&daemon, "metasink_querylog_write_errors_total", 1.0).await;
    assert!(errors > 0.0, "write errors counted");
    // The live view still has them, from memory.
    let entries = entries_when(&daemon, "/api/queries?limit=500", |e| e.len() >= 200).await;
    assert!(entries.len() >= 200, "{} entries in memory", entries.len());
    daemon.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_the_log_and_the_observed_names() {
    let upstream = upstream().await;
    let text = config(&upstream, "mode = \"all\"", "");
    let daemon = TestDaemon::start(&text).await;
    ask(&daemon, QUEST, "new-thing.fbsbx.com").await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    entries_when(&daemon, "/api/queries", |e| e.len() >= 2).await;
    let dir = daemon.stop_keeping_dir().await;

    let daemon = TestDaemon::start_in(dir, &text, &[]).await;
    let entries = get(&daemon, "/api/queries").await["queries"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&Value> = entries.iter().map(|e| &e["name"]).collect();
    assert_eq!(names, ["analytics.facebook.com", "new-thing.fbsbx.com"]);
    let observed = get(&daemon, "/api/observe?device=quest").await;
    let names: Vec<&Value> = observed["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["name"])
        .collect();
    assert!(
        names.contains(&&Value::from("new-thing.fbsbx.com")),
        "{observed}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn observe_lists_an_uncatalogued_meta_name_under_its_device_only() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "", "")).await;
    for _ in 0..3 {
        ask(&daemon, QUEST, "new-thing.fbsbx.com").await;
    }
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, PHONE, "pixel.facebook.com").await;

    let quest = get(&daemon, "/api/observe?device=quest").await;
    let names = quest["names"].as_array().unwrap();
    let new = names
        .iter()
        .find(|n| n["name"] == "new-thing.fbsbx.com")
        .expect("observed");
    assert_eq!(
        (
            &new["device"],
            &new["lists"],
            &new["asked"],
            &new["blocked"]
        ),
        (
            &Value::from("quest"),
            &serde_json::json!(["uncatalogued"]),
            &Value::from(3),
            &Value::from(0)
        )
    );
    let fields = keys(new);
    assert_eq!(
        fields,
        [
            "asked",
            "blocked",
            "device",
            "first_seen",
            "last_seen",
            "lists",
            "name"
        ]
    );
    let telemetry = names
        .iter()
        .find(|n| n["name"] == "analytics.facebook.com")
        .expect("observed");
    assert_eq!(
        (&telemetry["lists"], &telemetry["blocked"]),
        (
            &serde_json::json!(["meta-tracking", "quest-telemetry"]),
            &Value::from(1)
        )
    );
    assert!(
        !names.iter().any(|n| n["name"] == "www.example.test"),
        "not a Meta name: {quest}"
    );
    let phone = get(&daemon, "/api/observe?device=phone").await;
    let phone_names: Vec<&Value> = phone["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["name"])
        .collect();
    assert_eq!(phone_names, ["pixel.facebook.com"], "{phone}");

    // The clients seen, with how each was identified.
    let clients = get(&daemon, "/api/clients").await;
    let quest = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "127.0.0.2")
        .expect("the Quest");
    assert_eq!(
        (
            &quest["device"],
            &quest["profile"],
            &quest["identified_by"],
            &quest["queries"],
            &quest["blocked"]
        ),
        (
            &Value::from("quest"),
            &Value::from("quest"),
            &Value::from("address"),
            &Value::from(5),
            &Value::from(1)
        )
    );
    let fields = keys(quest);
    assert_eq!(
        fields,
        [
            "address",
            "blocked",
            "device",
            "first_seen",
            "identified_by",
            "last_seen",
            "mac",
            "name",
            "profile",
            "queries"
        ]
    );
    ask(
        &daemon,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        "www.example.test",
    )
    .await;
    let clients = get(&daemon, "/api/clients").await;
    let stranger = &clients["clients"][0];
    assert_eq!(
        (
            &stranger["address"],
            &stranger["device"],
            &stranger["identified_by"]
        ),
        (
            &Value::from("127.0.0.9"),
            &Value::from("unknown"),
            &Value::from("default")
        )
    );

    // Explain as JSON: the same verdict `metasink explain` prints.
    let explained = get(
        &daemon,
        "/api/explain?name=analytics.facebook.com&client=127.0.0.2",
    )
    .await;
    assert_eq!(
        (&explained["device"], &explained["blocked_by"]),
        (&Value::from("quest"), &Value::from("meta-tracking")),
        "{explained}"
    );
    assert!(
        explained["text"]
            .as_str()
            .unwrap()
            .contains("verdict:  BLOCKED by meta-tracking")
    );
    let explained = get(
        &daemon,
        "/api/explain?name=pixel.facebook.com&profile=strict",
    )
    .await;
    assert_eq!(explained["blocked_by"], "meta-tracking", "{explained}");
    daemon.stop().await;
}

#[tokio::test]
async fn the_live_stream_sends_new_entries() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"\npath = \"\"", "")).await;
    let auth = format!("Bearer {TOKEN}");
    let mut stream = http_send(
        daemon.http,
        "GET",
        "/api/queries/stream?device=quest",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ask(&daemon, TV, "www.example.test").await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("analytics.facebook.com") && Instant::now() < deadline {
        use tokio::io::AsyncReadExt;
        if let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    }
    assert!(
        seen.contains("event: query") && seen.contains("\"name\":\"analytics.facebook.com\""),
        "{seen}"
    );
    assert!(
        !seen.contains("\"device\":\"tv\""),
        "filtered by device: {seen}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn every_endpoint_refuses_a_missing_or_wrong_token_and_bad_parameters() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"", "")).await;
    let endpoints = [
        "/api/queries",
        "/api/queries/stream",
        "/api/observe",
        "/api/clients",
        "/api/explain?name=meta.ai",
    ];
    for path in endpoints {
        assert_eq!(
            get_with(&daemon, None, path).await.0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            get_with(&daemon, Some("records-test-token-0124"), path)
                .await
                .0,
            401,
            "{path} with a wrong token"
        );
    }
    let bad = [
        ("/api/queries?limit=0", "limit"),
        ("/api/queries?limit=many", "limit"),
        ("/api/queries?client=quest", "client"),
        ("/api/queries?result=maybe", "result"),
        ("/api/queries?since=yesterday", "since"),
        ("/api/queries?colour=red", "colour"),
        ("/api/queries/stream?limit=5", "limit"),
        ("/api/observe?name=x", "name"),
        ("/api/clients?all=1", "all"),
        ("/api/explain", "name"),
        ("/api/explain?name=meta.ai&profile=nope", "profile"),
        ("/api/explain?name=meta.ai&client=1.2.3", "client"),
        ("/api/explain?name=meta.ai&type=NOPE", "type"),
    ];
    for (path, parameter) in bad {
        let (status, body) = get_with(&daemon, Some(TOKEN), path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{parameter}: ")),
            "{path}: {message}"
        );
    }
    daemon.stop().await;

    // No token configured: off.
    let text = config(&upstream, "", "").replace(&format!("api_token = \"{TOKEN}\"\n"), "");
    let daemon = TestDaemon::start(&text).await;
    for path in endpoints {
        assert_eq!(
            get_with(&daemon, Some(TOKEN), path).await.0,
            403,
            "{path} with no token configured"
        );
    }
    daemon.stop().await;
}

/// Runs `metasink ARGS` against `url` with `token`, off the test's runtime (the daemon runs
/// on it).
async fn metasink(args: &[&str], url: &str, token: &str) -> Output {
    let (args, url, token): (Vec<String>, String, String) = (
        args.iter().map(|a| a.to_string()).collect(),
        url.into(),
        token.into(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_metasink"))
            .args(&args)
            .env("METASINK_URL", url)
            .env("METASINK_TOKEN", token)
            .output()
            .expect("run metasink")
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_cli_prints_the_log_observe_and_clients() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"", "")).await;
    let url = format!("http://{}", daemon.http);
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, TV, "pixel.facebook.com").await;
    ask(&daemon, QUEST, "new-thing.fbsbx.com").await;
    entries_when(&daemon, "/api/queries", |e| e.len() >= 4).await;

    let output = metasink(&["log", "--device", "quest", "--blocked"], &url, TOKEN).await;
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one entry: {text}");
    assert!(
        lines[1].contains("quest")
            && lines[1].contains("blocked")
            && lines[1].contains("analytics.facebook.com")
            && lines[1].contains("meta-tracking"),
        "{text}"
    );

    let output = metasink(
        &["log", "--json", "--name", "pixel.facebook.com"],
        &url,
        TOKEN,
    )
    .await;
    let entry: Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON entry");
    assert_eq!(
        (&entry["device"], &entry["result"], &entry["list"]),
        (
            &Value::from("tv"),
            &Value::from("would-block"),
            &Value::from("meta-tracking")
        )
    );

    let output = metasink(
        &["observe", "--device", "quest", "--uncatalogued"],
        &url,
        TOKEN,
    )
    .await;
    let text = stdout(&output);
    assert!(
        text.starts_with(
            "new-thing.fbsbx.com  # evidence: metasink observe, device quest: asked 1 times"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");

    let output = metasink(&["clients"], &url, TOKEN).await;
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|line| line.starts_with("127.0.0.3") && line.contains("tv-trial")),
        "{text}"
    );

    // --follow prints what comes next.
    let mut follow = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_metasink"))
                .args(["log", "--follow", "--limit", "1"])
                .env("METASINK_URL", url)
                .env("METASINK_TOKEN", TOKEN)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn metasink log --follow")
        })
        .await
        .unwrap()
    };
    let stdout_pipe = follow.stdout.take().unwrap();
    let (lines_in, lines_out) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_in.send(line);
        }
    });
    let mut followed = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !followed.contains("followed.facebook.com") && Instant::now() < deadline {
        ask(&daemon, QUEST, "followed.facebook.com").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        followed.extend(lines_out.try_iter().map(|line| line + "\n"));
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(followed.contains("followed.facebook.com"), "{followed}");

    // A wrong token: one line naming the address, exit 1.
    let output = metasink(&["log"], &url, "records-test-token-0124").await;
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains(&url) && error.contains("token"), "{error}");
    daemon.stop().await;

    // No daemon: one line naming the address, exit 1.
    let output = metasink(&["clients"], &url, TOKEN).await;
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains(&format!("cannot reach metasink at {url}")),
        "{error}"
    );
}

#[tokio::test]
async fn a_block_by_override_is_logged_with_the_override() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"\npath = \"\"", "")).await;
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = r#"{"kind": "block", "device": "quest", "names": ["www.example.test"]}"#;
    let (status, reply) = http_request(daemon.http, "POST", "/api/overrides", &headers, body).await;
    assert_eq!(status, 201, "{reply}");
    let id = serde_json::from_str::<Value>(&reply).unwrap()["id"].clone();

    let blocked = ask(&daemon, QUEST, "www.example.test").await;
    assert_eq!(a_addrs(&blocked), [Ipv4Addr::UNSPECIFIED]);
    let entries = entries_when(&daemon, "/api/queries?device=quest", |e| !e.is_empty()).await;
    let entry = find(&entries, "www.example.test", "blocked").expect("blocked entry");
    assert_eq!(
        (&entry["list"], &entry["blocked_by"]),
        (
            &Value::from(format!("override {id}")),
            &Value::from("question")
        ),
        "{entries:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn each_answer_names_the_upstream_that_gave_it() {
    let upstream = upstream().await;
    let daemon = TestDaemon::start(&config(&upstream, "mode = \"all\"", "")).await;
    let url = format!("http://{}", daemon.http);
    // A plain UDP upstream is labelled by its address, as in its metrics.
    let label = Value::from(upstream.addr.to_string());
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, QUEST, "www.example.test").await;
    ask(&daemon, QUEST, "analytics.facebook.com").await;
    let entries = entries_when(&daemon, "/api/queries", |e| e.len() >= 3).await;
    let upstream_of = |name, result| {
        find(&entries, name, result)
            .unwrap_or_else(|| panic!("{name} {result}: {entries:?}"))["upstream"]
            .clone()
    };
    assert_eq!(upstream_of("www.example.test", "forwarded"), label);
    // A cached answer names the upstream it came from, as AdGuard Home shows it.
    assert_eq!(upstream_of("www.example.test", "cached"), label);
    assert_eq!(
        upstream_of("analytics.facebook.com", "blocked"),
        Value::Null
    );

    let output = metasink(
        &["log", "--json", "--name", "www.example.test"],
        &url,
        TOKEN,
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let logged: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON entry per line"))
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged.iter().all(|entry| entry["upstream"] == label),
        "{logged:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_writer_held_up_by_a_lock_drops_entries_not_answers_and_then_resumes() {
    let upstream = upstream().await;
    // A small queue, so that a burst fills it while the writer waits.
    let text = config(&upstream, "mode = \"all\"\nqueue = 16", "");
    let daemon = TestDaemon::start(&unlimited(&text)).await;
    ask(&daemon, QUEST, "www.example.test").await;
    entries_when(&daemon, "/api/queries", |e| !e.is_empty()).await;

    // Another program (a user's sqlite3 shell, a backup) holds the database's write lock:
    // every insert of the writer waits for it, then gives up.
    let database = daemon.dir().join("state/querylog.sqlite3");
    let holder = rusqlite::Connection::open(&database).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    two_hundred_answered(&daemon).await;
    let dropped = metric(&daemon.metrics().await, "metasink_querylog_dropped_total");
    assert!(dropped > 0.0, "the full queue dropped entries");
    assert!(metric_reaching(&daemon, "metasink_querylog_write_errors_total", 1.0).await > 0.0);

    // The lock is released: the writer first writes the batch it held and what is queued
    // (the queue may stay full until then), and then what comes next.
    holder.execute_batch("ROLLBACK;").unwrap();
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let name = format!("resumed-{attempt}.meta.ai");
        ask(&daemon, QUEST, &name).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = format!("/api/queries?name={name}");
        if !get(&daemon, &path).await["queries"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "logging never resumed");
    }
    let dropped = metric(&daemon.metrics().await, "metasink_querylog_dropped_total");
    ask(&daemon, QUEST, "after.meta.ai").await;
    let after = entries_when(&daemon, "/api/queries?name=after.meta.ai", |e| {
        !e.is_empty()
    })
    .await;
    assert_eq!(after.len(), 1, "logged to the database again");
    let reader = rusqlite::Connection::open(&database).unwrap();
    let rows: i64 = reader
        .query_row(
            "SELECT count(*) FROM queries WHERE name = 'after.meta.ai'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "the entry is in the file");
    assert_eq!(
        metric(&daemon.metrics().await, "metasink_querylog_dropped_total"),
        dropped,
        "nothing dropped once the writer keeps up"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_would_block_whose_upstream_fails_keeps_its_list() {
    let upstream = UnresponsiveUpstream::start();
    let text = config_for(upstream.addr, "mode = \"blocked\"\npath = \"\"", "");
    let daemon = TestDaemon::start(&text).await;
    let reply = ask(&daemon, TV, "pixel.facebook.com").await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    let entries = entries_when(&daemon, "/api/queries", |e| !e.is_empty()).await;
    let entry = find(&entries, "pixel.facebook.com", "servfail").expect("servfail entry");
    assert_eq!(
        (&entry["device"], &entry["list"], &entry["blocked_by"]),
        (
            &Value::from("tv"),
            &Value::from("meta-tracking"),
            &Value::from("question")
        ),
        "{entries:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn check_shows_the_query_log_and_each_profiles_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // Nothing is sent: `check` only reads the config.
    let text = config_for(
        "127.0.0.1:9".parse().unwrap(),
        "mode = \"blocked\"\nretention = \"2d\"\nmax_bytes = 1048576\nqueue = 64",
        "querylog = \"all\"",
    );
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metasink"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{output:?}");
    let database = dir.path().join("state/querylog.sqlite3");
    assert!(
        text.contains(&format!(
            "  querylog:  mode blocked, {}, retention 2days, max_bytes 1048576 (1.0 MiB), queue 64 entries\n",
            database.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("             device quest: mode all\n"),
        "{text}"
    );
    assert!(!text.contains("device tv: mode"), "{text}");
    let mode_of = |profile: &str| {
        text.lines()
            .find(|line| line.split_whitespace().take(2).eq(["profile:", profile]))
            .and_then(|line| line.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("no line for profile {profile}: {text}"))
            .to_owned()
    };
    assert_eq!(mode_of("tv-trial"), "observe");
    assert_eq!(mode_of("quest"), "enforce");
}

/// Asks 200 questions as the Quest (every other one a Meta name never asked before, so the
/// log has something new to keep) and checks each gets its one answer: whatever the query log
/// goes through, no answer is lost.
async fn two_hundred_answered(daemon: &TestDaemon) {
    for index in 0..200 {
        let name = if index % 2 == 0 {
            "www.example.test".to_owned()
        } else {
            format!("n{index}.meta.ai")
        };
        let reply = ask(daemon, QUEST, &name).await;
        assert_eq!(
            (rcode(&reply), reply.answers.len()),
            (ResponseCode::NoError, 1),
            "query {index} ({name})"
        );
    }
}

/// The daemon makes state_dir when it is missing (observe and overrides save there even with
/// the query log off and no list downloaded), and clears the temporary files a crash left
/// there mid-write.
#[tokio::test]
async fn state_dir_is_made_and_cleared_of_unfinished_writes_at_start() {
    let daemon = TestDaemon::start("").await;
    assert!(daemon.dir().join("state").is_dir(), "state_dir made");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let leftover = dir.path().join("state/observe.json.a1b2c3.tmp");
    std::fs::write(&leftover, "{\"names\": [").unwrap();
    let _daemon = TestDaemon::start_in(dir, "", &[]).await;
    assert!(!leftover.exists(), "an unfinished write left in state_dir");
}
