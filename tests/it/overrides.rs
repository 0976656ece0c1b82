//! Overrides and schedules end to end (issue 15): pause, allow and block through the API with
//! short expiries, their precedence against the profile's lists, persistence across restarts and
//! reloads, every API error, the token, and a device's schedule in force right now.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

const TOKEN: &str = "override-test-token";
const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TV: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

const LISTS: &[(&str, &str)] = &[("ai.txt", "meta.ai\n"), ("keep.txt", "school.example\n")];

fn upstream_records() -> Vec<TestRecord<'static>> {
    [
        "www.meta.ai",
        "other.meta.ai",
        "school.example",
        "tiktok.example",
    ]
    .into_iter()
    .map(|name| TestRecord::A(name, ANSWER, 300))
    .collect()
}

/// A house whose tablet and TV use `kids` (blocks `ai`, allows `keep`); state under `state`.
fn config(upstream: &TestUpstream, state: &Path, extra_device: &str) -> String {
    format!(
        r#"
default_profile = "kids"

[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
api_token = "{TOKEN}"
state_dir = '{}'

[[upstream]]
address = "{}"

[[list]]
id = "ai"
source = "ai.txt"

[[list]]
id = "keep"
source = "keep.txt"

[[profile]]
name = "kids"
block = ["ai"]
allow = ["keep"]

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "kids"
{extra_device}
"#,
        state.display(),
        upstream.addr
    )
}

const TV_DEVICE: &str = "[[device]]\nname = \"tv\"\nmatch = [\"127.0.0.3\"]\nprofile = \"kids\"\n";

async fn start(upstream: &TestUpstream, state: &Path, extra_device: &str) -> TestDaemon {
    TestDaemon::start_with_files(&config(upstream, state, extra_device), LISTS).await
}

async fn api(daemon: &TestDaemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    http_request(daemon.http, method, path, &headers, body).await
}

/// Creates an override; returns its id.
async fn create(daemon: &TestDaemon, body: &str) -> u64 {
    let (status, reply) = api(daemon, "POST", "/api/overrides", body).await;
    assert_eq!(status, 201, "{reply}");
    let created: serde_json::Value = serde_json::from_str(&reply).unwrap();
    created["id"].as_u64().expect("an id")
}

/// The first A address `client` gets for `name` (0.0.0.0 when blocked).
async fn address_for(daemon: &TestDaemon, client: IpAddr, name: &str) -> Ipv4Addr {
    let reply = query_udp_from(client, daemon.dns, name, RecordType::A, true).await;
    a_addrs(&reply)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no address for {name}: {reply:?}"))
}

const BLOCKED: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

#[tokio::test]
async fn a_pause_lifts_a_devices_blocking_until_it_ends_or_is_removed() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start(&upstream, state.path(), TV_DEVICE).await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, BLOCKED);

    let id = create(
        &daemon,
        r#"{"kind": "pause", "device": "tablet", "for": "2s"}"#,
    )
    .await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, ANSWER);
    assert_eq!(
        address_for(&daemon, TV, "www.meta.ai").await,
        BLOCKED,
        "only the tablet"
    );
    let metrics = daemon.metrics().await;
    let decided =
        r#"metasink_override_decisions_total{device="tablet",kind="pause",profile="kids"}"#;
    assert_eq!(metric(&metrics, decided), 1.0, "{metrics}");
    assert_eq!(
        metric(&metrics, r#"metasink_overrides_active{kind="pause"}"#),
        1.0
    );

    // It ends by itself: blocked again, and gone from the list within a second after.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, BLOCKED);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, listed) = api(&daemon, "GET", "/api/overrides", "").await;
    assert!(!listed.contains(&format!("\"id\":{id}")), "{listed}");

    // One without an end lasts until removed.
    let id = create(&daemon, r#"{"kind": "pause", "device": "tablet"}"#).await;
    assert_eq!(address_for(&daemon, TABLET, "other.meta.ai").await, ANSWER);
    let (status, _) = api(&daemon, "DELETE", &format!("/api/overrides/{id}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(address_for(&daemon, TABLET, "other.meta.ai").await, BLOCKED);
    daemon.stop().await;
}

#[tokio::test]
async fn allow_beats_the_profiles_block_lists_and_block_beats_its_allow_lists() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start(&upstream, state.path(), TV_DEVICE).await;

    // An allow for the profile covers the name and its subdomains, nothing else.
    create(
        &daemon,
        r#"{"kind": "allow", "profile": "kids", "names": ["WWW.Meta.AI."], "for": "1h"}"#,
    )
    .await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, ANSWER);
    assert_eq!(address_for(&daemon, TV, "www.meta.ai").await, ANSWER);
    assert_eq!(address_for(&daemon, TABLET, "other.meta.ai").await, BLOCKED);

    // A block for one device wins over the profile's allow list, and says which override.
    create(
        &daemon,
        r#"{"kind": "block", "device": "tablet", "names": ["school.example"]}"#,
    )
    .await;
    let reply = query_udp_from(TABLET, daemon.dns, "school.example", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), [BLOCKED]);
    let (code, text) = ede(&reply).expect("an extended error");
    assert_eq!(code, 15);
    assert!(
        text.contains("override") && text.contains("(block)"),
        "{text}"
    );
    assert_eq!(
        address_for(&daemon, TV, "school.example").await,
        ANSWER,
        "tv keeps its allow"
    );

    // The device's own allow beats a block for everyone.
    create(&daemon, r#"{"kind": "block", "names": ["tiktok.example"]}"#).await;
    create(
        &daemon,
        r#"{"kind": "allow", "device": "tv", "names": ["tiktok.example"]}"#,
    )
    .await;
    assert_eq!(
        address_for(&daemon, TABLET, "tiktok.example").await,
        BLOCKED
    );
    assert_eq!(address_for(&daemon, TV, "tiktok.example").await, ANSWER);
    daemon.stop().await;
}

#[tokio::test]
async fn overrides_survive_a_restart_and_a_reload_and_outlive_their_device() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start(&upstream, state.path(), TV_DEVICE).await;
    create(&daemon, r#"{"kind": "pause", "device": "tv", "for": "1h"}"#).await;
    daemon.stop().await;

    // Restarted on the same state_dir, without the tv in the config: kept, listed inactive.
    let daemon = start(&upstream, state.path(), "").await;
    let (_, listed) = api(&daemon, "GET", "/api/overrides", "").await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let first = &listed["overrides"][0];
    assert_eq!(first["device"], "tv", "{listed}");
    assert_eq!(first["active"], false, "{listed}");
    daemon.stop().await;

    // With the tv back it applies again, and a reload keeps it.
    let daemon = start(&upstream, state.path(), TV_DEVICE).await;
    assert_eq!(address_for(&daemon, TV, "www.meta.ai").await, ANSWER);
    let (status, body) = api(&daemon, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(address_for(&daemon, TV, "www.meta.ai").await, ANSWER);
    daemon.stop().await;
}

#[tokio::test]
async fn a_corrupt_overrides_file_is_set_aside_and_the_daemon_starts() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("overrides.json"), "{ this is not json").unwrap();
    let daemon = start(&upstream, state.path(), "").await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, BLOCKED);
    let aside = std::fs::read_to_string(state.path().join("overrides.json.bad")).unwrap();
    assert_eq!(aside, "{ this is not json");
    create(&daemon, r#"{"kind": "pause"}"#).await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, ANSWER);
    daemon.stop().await;
}

#[tokio::test]
async fn every_api_error_names_its_field_and_the_token_is_required() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start(&upstream, state.path(), "").await;
    let body = r#"{"kind": "pause"}"#;
    for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
        for (method, path) in [
            ("GET", "/api/overrides"),
            ("POST", "/api/overrides"),
            ("DELETE", "/api/overrides/1"),
        ] {
            let (status, reply) = http_request(daemon.http, method, path, &headers, body).await;
            assert_eq!(status, 401, "{method} {path}: {reply}");
        }
    }
    let cases = [
        (r#"{"kind": "snooze"}"#, "kind:"),
        (r#"{"device": "tablet"}"#, "kind:"),
        (r#"{"kind": "pause", "device": "fridge"}"#, "device:"),
        (r#"{"kind": "pause", "profile": "nobody"}"#, "profile:"),
        (
            r#"{"kind": "pause", "device": "tablet", "profile": "kids"}"#,
            "profile:",
        ),
        (r#"{"kind": "allow"}"#, "names:"),
        (
            r#"{"kind": "allow", "names": ["ok.example", "not a name"]}"#,
            "names[1]:",
        ),
        (r#"{"kind": "pause", "names": ["a.example"]}"#, "names:"),
        (r#"{"kind": "pause", "for": "soon"}"#, "for:"),
        (r#"{"kind": "pause", "until": "yesterday"}"#, "until:"),
        (
            r#"{"kind": "pause", "until": "2001-01-01T00:00:00Z"}"#,
            "until:",
        ),
        (
            r#"{"kind": "pause", "for": "1h", "until": "2999-01-01T00:00:00Z"}"#,
            "until:",
        ),
        (r#"{"kind": "pause", "colour": "red"}"#, "colour:"),
        ("not json", "body:"),
    ];
    for (body, field) in cases {
        let (status, reply) = api(&daemon, "POST", "/api/overrides", body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.contains(field), "{body}: {reply} should name {field}");
    }
    let (status, reply) = api(&daemon, "DELETE", "/api/overrides/abc", "").await;
    assert_eq!((status, reply.contains("id:")), (400, true), "{reply}");
    let (status, _) = api(&daemon, "DELETE", "/api/overrides/999", "").await;
    assert_eq!(status, 404);
    // Nothing was half-applied.
    let (_, listed) = api(&daemon, "GET", "/api/overrides", "").await;
    assert_eq!(listed, r#"{"overrides":[]}"#);
    daemon.stop().await;
}

/// `HH:MM` of local time shifted by `minutes`, as a schedule window is written.
fn local_time(minutes: i64) -> String {
    let time = jiff::ZonedDateTime::now()
        .checked_add(jiff::SignedDuration::from_mins(minutes))
        .unwrap();
    format!("{:02}:{:02}", time.hour(), time.minute())
}

#[tokio::test]
async fn a_device_takes_the_profile_of_the_window_it_is_in_now() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    // The tablet's window covers now (it may cross midnight: that is covered too); the TV's
    // starts in two hours.
    let devices = format!(
        "schedule = [{{ profile = \"open\", days = \"daily\", from = \"{}\", to = \"{}\" }}]\n\
         [[device]]\nname = \"tv\"\nmatch = [\"127.0.0.3\"]\nprofile = \"kids\"\n\
         schedule = [{{ profile = \"open\", days = \"daily\", from = \"{}\", to = \"{}\" }}]\n\
         [[profile]]\nname = \"open\"\nblock = []\n",
        local_time(-60),
        local_time(60),
        local_time(120),
        local_time(180)
    );
    let daemon = start(&upstream, state.path(), &devices).await;
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, ANSWER);
    assert_eq!(address_for(&daemon, TV, "www.meta.ai").await, BLOCKED);
    let metrics = daemon.metrics().await;
    let now = |device: &str, profile: &str| {
        metric(
            &metrics,
            &format!(r#"metasink_device_profile{{device="{device}",profile="{profile}"}}"#),
        )
    };
    assert_eq!(
        (now("tablet", "open"), now("tablet", "kids")),
        (1.0, 0.0),
        "{metrics}"
    );
    assert_eq!(
        (now("tv", "open"), now("tv", "kids")),
        (0.0, 1.0),
        "{metrics}"
    );
    // Counted under the profile that decided.
    let counted =
        r#"metasink_queries_total{device="tablet",profile="open",qtype="A",result="forwarded"}"#;
    assert_eq!(metric(&metrics, counted), 1.0, "{metrics}");
    daemon.stop().await;
}

/// `metasink ARGS` against the daemon at `daemon`, its address and token from the environment.
/// Run off the runtime's thread, which the in-process daemon needs to answer it.
async fn cli(daemon: &TestDaemon, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let url = format!("http://{}", daemon.http);
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_metasink"))
            .args(args)
            .env("METASINK_URL", url)
            .env("METASINK_TOKEN", TOKEN)
            .output()
            .expect("run metasink")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_command_line_pauses_resumes_allows_blocks_and_lists() {
    let upstream = TestUpstream::start(&upstream_records()).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start(&upstream, state.path(), TV_DEVICE).await;
    let text = |output: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };

    let paused = cli(&daemon, &["pause", "tablet", "--for", "30m"]).await;
    assert!(paused.status.success(), "{}", text(&paused));
    assert!(
        text(&paused).contains("pause for device tablet until 20"),
        "{}",
        text(&paused)
    );
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, ANSWER);

    let blocked = cli(&daemon, &["block", "school.example", "--device", "tv"]).await;
    assert!(blocked.status.success(), "{}", text(&blocked));
    assert_eq!(address_for(&daemon, TV, "school.example").await, BLOCKED);

    let listed = cli(&daemon, &["overrides"]).await;
    let table = text(&listed);
    assert!(
        table.contains("device tablet") && table.contains("school.example"),
        "{table}"
    );

    let resumed = cli(&daemon, &["resume", "tablet"]).await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(address_for(&daemon, TABLET, "www.meta.ai").await, BLOCKED);
    let again = cli(&daemon, &["resume", "tablet"]).await;
    assert!(!again.status.success());
    assert!(
        text(&again).contains("no pause is in force for device tablet"),
        "{}",
        text(&again)
    );

    // The daemon's refusal comes back as one line naming the field, with status 1.
    let refused = cli(
        &daemon,
        &["allow", "graph.oculus.com", "--device", "fridge"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("device: no device is called `fridge`"),
        "{}",
        text(&refused)
    );
    let bad = cli(&daemon, &["pause", "--for", "soon"]).await;
    assert!(
        text(&bad).contains("for: `soon` is not a duration"),
        "{}",
        text(&bad)
    );

    // Removing by id.
    let listed: serde_json::Value =
        serde_json::from_slice(&cli(&daemon, &["overrides", "--json"]).await.stdout).unwrap();
    let id = listed["overrides"][0]["id"].as_u64().unwrap();
    let removed = cli(&daemon, &["overrides", "remove", &id.to_string()]).await;
    assert!(removed.status.success(), "{}", text(&removed));
    assert_eq!(address_for(&daemon, TV, "school.example").await, ANSWER);
    daemon.stop().await;
}
