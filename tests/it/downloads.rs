//! Lists from URLs end to end: the daemon starts without waiting for the network, blocks
//! from the stored copy when the server is down, and swaps in a changed list on refresh.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::*;
use metasink::lists::download::{Downloader, Refreshed};
use metasink::lists::store::{ListStore, StoredMeta};
use tokio::net::TcpStream;

const TOKEN: &str = "test-token-0123456789";

/// A daemon blocking with the one list at `list_url`, once its first download is in force
/// (`ads.example` is on every list these tests serve first).
async fn start_blocking_ads(list_url: &str, upstream: &TestUpstream) -> TestDaemon {
    let daemon = TestDaemon::start(&config(list_url, upstream)).await;
    wait_for_answer(&daemon, "ads.example", Ipv4Addr::UNSPECIFIED).await;
    daemon
}

fn config(list_url: &str, upstream: &TestUpstream) -> String {
    config_with_lists(&[("remote", list_url)], upstream)
}

/// A config whose `family` profile (the default) blocks every list of `lists` (id, URL).
fn config_with_lists(lists: &[(&str, &str)], upstream: &TestUpstream) -> String {
    let tables: String = lists
        .iter()
        .map(|(id, url)| format!("[[list]]\nid = \"{id}\"\nsource = \"{url}\"\n\n"))
        .collect();
    let ids: Vec<String> = lists.iter().map(|(id, _)| format!("{id:?}")).collect();
    format!(
        r#"
default_profile = "family"

[[upstream]]
address = "{}"

{tables}[[profile]]
name = "family"
block = [{}]

[download]
attempts = 1

[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
state_dir = "state"
api_token = "{TOKEN}"
"#,
        upstream.addr,
        ids.join(", ")
    )
}

async fn upstream() -> TestUpstream {
    let real = Ipv4Addr::new(192, 0, 2, 5);
    TestUpstream::start(&[
        TestRecord::A("ads.example", real, 60),
        TestRecord::A("tracker.example", real, 60),
        TestRecord::A("www.example.org", real, 60),
    ])
    .await
}

async fn refresh(daemon: &TestDaemon) -> (u16, String) {
    http_response(send_refresh(daemon).await).await
}

/// Sends `POST /api/lists/refresh` with the token, without reading the response.
async fn send_refresh(daemon: &TestDaemon) -> TcpStream {
    daemon.post_with(TOKEN, "/api/lists/refresh").await
}

/// `POST /api/reload` with the token: (status, body).
async fn reload(daemon: &TestDaemon) -> (u16, String) {
    http_response(daemon.post_with(TOKEN, "/api/reload").await).await
}

/// Polls until `name` gets `expected` (the first download runs in the background).
async fn wait_for_answer(daemon: &TestDaemon, name: &str, expected: Ipv4Addr) {
    let started = Instant::now();
    loop {
        let reply = query_udp(daemon.dns, name, RecordType::A, true).await;
        if a_addrs(&reply) == vec![expected] {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} never answered {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_downloaded_list_blocks_and_a_refresh_that_changes_it_flips_a_name() {
    let upstream = upstream().await;
    let server = ListServer::start("ads.example\n").await;
    let daemon = start_blocking_ads(&server.url, &upstream).await;
    let tracker = query_udp(daemon.dns, "tracker.example", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&tracker),
        vec![Ipv4Addr::new(192, 0, 2, 5)],
        "not listed yet"
    );

    server.set_body("ads.example\ntracker.example\n");
    let (status, body) = refresh(&daemon).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""result":"updated""#), "{body}");
    let tracker = query_udp(daemon.dns, "tracker.example", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&tracker),
        vec![Ipv4Addr::UNSPECIFIED],
        "blocked without a restart"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(&metrics, r#"metasink_list_entries{list="remote"}"#),
        2.0
    );
    assert!(
        metric(
            &metrics,
            r#"metasink_list_last_refresh_timestamp_seconds{list="remote"}"#
        ) > 0.0
    );
    assert!(metric(&metrics, r#"metasink_list_bytes{list="remote"}"#) > 0.0);
}

#[tokio::test]
async fn an_unchanged_list_is_answered_304_and_not_parsed_again() {
    let upstream = upstream().await;
    let server = ListServer::start("ads.example\n").await;
    let daemon = start_blocking_ads(&server.url, &upstream).await;
    let generation = daemon.daemon.policy().load().generation();

    let (status, body) = refresh(&daemon).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""result":"not_modified""#), "{body}");
    assert_eq!(server.not_modified(), 1);
    assert_eq!(
        daemon.daemon.policy().load().generation(),
        generation,
        "no rebuild on 304"
    );
    let metrics = daemon.metrics().await;
    let series = r#"metasink_list_refresh_total{list="remote",result="not_modified"}"#;
    assert_eq!(metric(&metrics, series), 1.0, "{metrics}");
}

#[tokio::test]
async fn with_the_server_down_and_no_stored_copy_dns_still_answers_and_health_says_why() {
    let upstream = upstream().await;
    let down = "http://127.0.0.1:9/list.txt";
    let started = Instant::now();
    let daemon = TestDaemon::start(&config(down, &upstream)).await;
    let reply = query_udp(daemon.dns, "www.example.org", RecordType::A, true).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(a_addrs(&reply), vec![Ipv4Addr::new(192, 0, 2, 5)]);
    let (status, health) = http_get(daemon.http, "/healthz").await;
    assert_eq!(status, 200);
    assert!(
        health.contains("degraded") && health.contains("remote"),
        "{health}"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(&metrics, r#"metasink_list_loaded{list="remote"}"#),
        0.0
    );
}

#[tokio::test]
async fn with_the_server_down_a_stored_copy_keeps_blocking_from_the_start() {
    let upstream = upstream().await;
    let down = "http://127.0.0.1:9/list.txt";
    let dir = tempfile::tempdir().unwrap();
    let store = ListStore::new(&dir.path().join("state"));
    store
        .save(
            down,
            b"ads.example\n",
            &StoredMeta {
                fetched_at: 1,
                bytes: 12,
                ..Default::default()
            },
        )
        .unwrap();
    // The daemon's state_dir is relative to its config: write the config into the same dir.
    let config = config(down, &upstream);
    let daemon = TestDaemon::start_in(dir, &config, &[]).await;
    let started = Instant::now();
    let reply = query_udp(daemon.dns, "ads.example", RecordType::A, true).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        a_addrs(&reply),
        vec![Ipv4Addr::UNSPECIFIED],
        "blocked from the stored copy"
    );
    // The failed refresh is counted, and the stored copy stays in force.
    let (_, body) = refresh(&daemon).await;
    assert!(body.contains(r#""result":"failed""#), "{body}");
    let metrics = daemon.metrics().await;
    let errors = r#"metasink_list_refresh_errors_total{list="remote",reason="network"}"#;
    assert!(metric(&metrics, errors) >= 1.0, "{metrics}");
    let reply = query_udp(daemon.dns, "ads.example", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), vec![Ipv4Addr::UNSPECIFIED]);
}

#[tokio::test]
async fn a_refresh_whose_client_hangs_up_still_applies_the_new_copy() {
    let upstream = upstream().await;
    let server = ListServer::start("ads.example\n").await;
    let daemon = start_blocking_ads(&server.url, &upstream).await;

    server.set_body("ads.example\ntracker.example\n");
    // The list server holds its answer, so the client hangs up while the download is in flight.
    server.set_delay(Duration::from_millis(300));
    let seen = server.requests();
    let stream = send_refresh(&daemon).await;
    let started = Instant::now();
    while server.requests() == seen {
        assert!(started.elapsed() < Duration::from_secs(5), "no download");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Hang up before the answer: the handler's future is dropped with the connection.
    drop(stream);

    wait_for_answer(&daemon, "tracker.example", Ipv4Addr::UNSPECIFIED).await;
    assert_eq!(
        server.requests(),
        seen + 1,
        "applied without another download"
    );
}

#[tokio::test]
async fn a_url_list_a_reload_adds_is_downloaded_at_once_and_a_fresh_one_is_not_fetched_again() {
    let upstream = upstream().await;
    let first = ListServer::start("ads.example\n").await;
    let added = ListServer::start("tracker.example\n").await;
    let daemon = start_blocking_ads(&first.url, &upstream).await;

    // The first list is now due again in a day: the refresher sleeps (an hour at most), and
    // only the reload can tell it about the new list in time.
    let lists = [
        ("remote", first.url.as_str()),
        ("added", added.url.as_str()),
    ];
    std::fs::write(daemon.config_path(), config_with_lists(&lists, &upstream)).unwrap();
    let (status, body) = reload(&daemon).await;
    assert_eq!(status, 200, "{body}");
    wait_for_answer(&daemon, "tracker.example", Ipv4Addr::UNSPECIFIED).await;
    assert_eq!(added.requests(), 1);
    assert_eq!(
        first.requests(),
        1,
        "the fresh list is not downloaded again"
    );
    let (_, health) = http_get(daemon.http, "/healthz").await;
    assert!(health.contains(r#""status":"ok""#), "{health}");
}

#[tokio::test]
async fn a_list_a_reload_points_at_a_new_url_keeps_its_copy_until_the_new_one_is_downloaded() {
    let upstream = upstream().await;
    let old = ListServer::start("ads.example\n").await;
    let new = ListServer::start("tracker.example\n").await;
    let daemon = start_blocking_ads(&old.url, &upstream).await;

    // The new server holds its answer, so the test sees the time between reload and download.
    new.set_delay(Duration::from_secs(1));
    std::fs::write(daemon.config_path(), config(&new.url, &upstream)).unwrap();
    let (status, body) = reload(&daemon).await;
    assert_eq!(status, 200, "{body}");
    let ads = query_udp(daemon.dns, "ads.example", RecordType::A, true).await;
    assert_eq!(
        a_addrs(&ads),
        vec![Ipv4Addr::UNSPECIFIED],
        "the old copy blocks until the new one lands"
    );
    wait_for_answer(&daemon, "tracker.example", Ipv4Addr::UNSPECIFIED).await;
    wait_for_answer(&daemon, "ads.example", Ipv4Addr::new(192, 0, 2, 5)).await;
    let (_, health) = http_get(daemon.http, "/healthz").await;
    assert!(health.contains(r#""status":"ok""#), "{health}");
    assert_eq!((old.requests(), new.requests()), (1, 1));
}

#[tokio::test]
async fn a_stored_copy_cut_short_is_downloaded_whole_at_start_not_kept_by_a_304() {
    const FIRST_LINE: &str = "ads.example\n";
    let upstream = upstream().await;
    let server = ListServer::start(&format!("{FIRST_LINE}tracker.example\n")).await;
    // The first download, stored as the daemon stores it: the body, and a meta holding the
    // server's ETag and the body's size.
    let dir = tempfile::tempdir().unwrap();
    let store = ListStore::new(&dir.path().join("state"));
    let settings = metasink::config::builtin_settings().download;
    let downloader = Downloader::new(&settings, store.clone()).unwrap();
    let first = downloader.refresh("remote", &server.url).await.unwrap();
    assert!(matches!(first, Refreshed::Updated { .. }), "{first:?}");
    assert!(store.meta(&server.url).unwrap().etag.is_some());
    // A power cut left the meta whole and the body cut after its first line.
    let lists = dir.path().join("state").join("lists");
    let body = std::fs::read_dir(&lists)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|end| end == "txt"))
        .expect("a stored body");
    let cut = std::fs::OpenOptions::new().write(true).open(&body).unwrap();
    cut.set_len(FIRST_LINE.len() as u64).unwrap();
    drop(cut);

    // The daemon starts blocking from the cut copy and fetches the list at once, not at its
    // next turn a day later.
    let daemon = TestDaemon::start_in(dir, &config(&server.url, &upstream), &[]).await;
    wait_for_answer(&daemon, "tracker.example", Ipv4Addr::UNSPECIFIED).await;
    // The server's ETag still matches: only a request without it gets the list again.
    assert_eq!(server.not_modified(), 0);
    assert_eq!(server.requests(), 2);
    assert_eq!(
        std::fs::read_to_string(&body).unwrap(),
        format!("{FIRST_LINE}tracker.example\n")
    );
}

#[tokio::test]
async fn a_stored_copy_replaced_by_a_link_is_not_read_but_downloaded_again() {
    let upstream = upstream().await;
    let server = ListServer::start("ads.example\n").await;
    let dir = tempfile::tempdir().unwrap();
    // A file of someone else's, planted as the stored copy (with a meta that matches it, so
    // only refusing the link gets the list downloaded again).
    let planted = dir.path().join("planted.txt");
    std::fs::write(&planted, "www.example.org\n").unwrap();
    let store = ListStore::new(&dir.path().join("state"));
    let meta = StoredMeta {
        fetched_at: metasink::lists::store::unix_now(),
        bytes: 16,
        ..Default::default()
    };
    store
        .save(&server.url, b"www.example.org\n", &meta)
        .unwrap();
    let body = std::fs::read_dir(dir.path().join("state").join("lists"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|end| end == "txt"))
        .expect("a stored body");
    std::fs::remove_file(&body).unwrap();
    std::os::unix::fs::symlink(&planted, &body).unwrap();

    let daemon = TestDaemon::start_in(dir, &config(&server.url, &upstream), &[]).await;
    wait_for_answer(&daemon, "ads.example", Ipv4Addr::UNSPECIFIED).await;
    let reply = query_udp(daemon.dns, "www.example.org", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), vec![Ipv4Addr::new(192, 0, 2, 5)]);
    assert_eq!(server.requests(), 1);
    // The download replaced the link, not the file it pointed at.
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "www.example.org\n"
    );
    assert!(std::fs::symlink_metadata(&body).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&body).unwrap(), "ads.example\n");
}
