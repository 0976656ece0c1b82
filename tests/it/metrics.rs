//! `/metrics` and `/healthz` over real HTTP: counters move by exactly what was asked.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::common::*;

const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{{labels}}}")
}

#[tokio::test]
async fn query_block_and_cache_counters_move_by_the_exact_amounts() {
    let upstream = TestUpstream::start(&[TestRecord::A(
        "www.example.com",
        "192.0.2.1".parse().unwrap(),
        300,
    )])
    .await;
    let config = format!(
        r#"
[[upstream]]
address = "{}"

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "meta-apps"
"#,
        upstream.addr
    );
    let daemon = TestDaemon::start(&config).await;
    let before = daemon.metrics().await;
    for _ in 0..2 {
        query_udp_from(TABLET, daemon.dns, "www.meta.ai", RecordType::A, true).await;
    }
    query_udp_from(TABLET, daemon.dns, "graph.meta.ai", RecordType::HTTPS, true).await;
    query_udp_from(TABLET, daemon.dns, "www.example.com", RecordType::A, true).await;
    query_udp_from(TABLET, daemon.dns, "www.example.com", RecordType::A, true).await;
    query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    let after = daemon.metrics().await;

    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    let queries = |device: &str, qtype: &str, result: &str| {
        series(
            "metasink_queries_total",
            &format!(r#"device="{device}",profile="meta-apps",qtype="{qtype}",result="{result}""#),
        )
    };
    assert_eq!(delta(&queries("tablet", "A", "blocked")), 2.0, "{after}");
    assert_eq!(delta(&queries("tablet", "HTTPS", "blocked")), 1.0);
    assert_eq!(delta(&queries("tablet", "A", "forwarded")), 1.0);
    assert_eq!(delta(&queries("tablet", "A", "cached")), 1.0);
    assert_eq!(delta(&queries("unknown", "A", "cached")), 1.0);
    let blocked = series(
        "metasink_blocked_total",
        r#"device="tablet",list="meta-ai",profile="meta-apps""#,
    );
    assert_eq!(delta(&blocked), 3.0);
    assert_eq!(delta("metasink_cache_hits_total"), 2.0);
    assert_eq!(delta("metasink_cache_misses_total"), 1.0);
    assert_eq!(metric(&after, "metasink_cache_entries"), 1.0);
    let forwarded_time = series(
        "metasink_request_duration_seconds_count",
        r#"result="forwarded""#,
    );
    assert_eq!(delta(&forwarded_time), 1.0);
    let upstream_time = series(
        "metasink_upstream_duration_seconds_count",
        &format!(r#"upstream="{}""#, upstream.addr),
    );
    assert_eq!(delta(&upstream_time), 1.0);
    assert!(
        metric(
            &after,
            &series("metasink_list_entries", r#"list="meta-ai""#)
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &after,
            &series("metasink_list_invalid_lines_total", r#"list="meta-ai""#)
        ),
        0.0
    );
    let build = series(
        "metasink_build_info",
        &format!(
            r#"revision="{}",version="{}""#,
            env!("METASINK_GIT_COMMIT"),
            env!("CARGO_PKG_VERSION")
        ),
    );
    assert_eq!(metric(&after, &build), 1.0);
    // No client address or query name ever becomes a label.
    assert!(
        !after.contains("127.0.0.2")
            && !after.contains("example.com")
            && !after.contains("www.meta.ai")
    );
}

#[tokio::test]
async fn healthz_reports_ok_and_names_lists_that_failed_to_load() {
    let daemon = TestDaemon::start("").await;
    let (status, body) = http_get(daemon.http, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ok""#), "{body}");

    let broken = TestDaemon::start("[[list]]\nid = \"gone\"\nsource = \"missing.txt\"\n").await;
    let (status, body) = http_get(broken.http, "/healthz").await;
    assert_eq!(status, 200, "the house still resolves");
    assert!(
        body.contains(r#""status":"degraded""#) && body.contains("gone"),
        "{body}"
    );
    let metrics = broken.metrics().await;
    assert_eq!(
        metric(&metrics, r#"metasink_list_loaded{list="gone"}"#),
        0.0
    );
    assert_eq!(
        metric(&metrics, r#"metasink_list_loaded{list="meta-ai"}"#),
        1.0
    );
}

#[tokio::test]
async fn stopping_does_not_wait_for_a_half_sent_http_request() {
    use tokio::io::AsyncWriteExt;
    let daemon = TestDaemon::start("").await;
    // Headers never finished: the HTTP server holds the connection open, waiting for them.
    let mut stalled = tokio::net::TcpStream::connect(daemon.http).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metasink\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(20), daemon.stop())
        .await
        .expect("the stop waited for the stalled HTTP client");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "stopped after {:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// `dashboards/metasink.json` stays importable and in step with `/metrics`: it is JSON, its
/// panel ids are unique, every panel queries the templated data source and none overlaps
/// another, and every metric and label its queries name (histograms by their `_bucket`,
/// `_sum` or `_count` series) is exposed by a daemon that has blocked, forwarded and cached
/// queries, downloaded a list, failed to download another and reloaded its config.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_and_labels_the_daemon_exposes() {
    const TOKEN: &str = "dashboard-token-0123456789";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/metasink.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    assert_eq!(dashboard["schemaVersion"], 39);
    check_panels(&dashboard);
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:#?}");
    let uses: Vec<MetricUse> = queries.iter().map(|query| promql_uses(query)).collect();

    let upstream = TestUpstream::start(&[TestRecord::A(
        "www.example.com",
        "192.0.2.1".parse().unwrap(),
        300,
    )])
    .await;
    let list = ListServer::start("ads.example\nnot a name!\n").await;
    let config = format!(
        r#"
default_profile = "family"

[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
state_dir = "state"
api_token = "{TOKEN}"

[[upstream]]
address = "{}"

[download]
attempts = 1

[[list]]
id = "served"
source = "{}"

# The discard port on loopback, where nothing listens: every download fails at once.
[[list]]
id = "unreachable"
source = "http://127.0.0.1:9/list.txt"

[[profile]]
name = "family"
block = ["meta-ai", "served", "unreachable"]

[[device]]
name = "tablet"
match = ["127.0.0.2"]
profile = "family"
"#,
        upstream.addr, list.url
    );
    let daemon = TestDaemon::start(&config).await;
    query_udp_from(TABLET, daemon.dns, "www.meta.ai", RecordType::A, true).await;
    for _ in 0..2 {
        query_udp_from(TABLET, daemon.dns, "www.example.com", RecordType::A, true).await;
    }
    let (status, body) = http_response(daemon.post_with(TOKEN, "/api/reload").await).await;
    assert_eq!(status, 200, "{body}");

    // The first downloads run in the background: wait until their series are there too.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let exposed = daemon.metrics().await;
        let problems = unexposed(&uses, &exposed);
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{path} uses what /metrics does not expose:\n{}\n\n{exposed}",
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unique panel ids, a description on every panel, the `${datasource}` variable on every
/// panel and query, and panels that fit the 24-column grid without overlapping.
fn check_panels(dashboard: &serde_json::Value) {
    let top = dashboard["panels"].as_array().expect("a panels array");
    let mut panels: Vec<&serde_json::Value> = top.iter().collect();
    panels.extend(top.iter().filter_map(|p| p["panels"].as_array()).flatten());
    let mut ids = BTreeSet::new();
    for &panel in &panels {
        let id = panel["id"].as_u64().expect("a numeric panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let title = &panel["title"];
        let described = panel["description"].as_str().is_some_and(|d| !d.is_empty());
        assert!(described, "panel {title} has no description");
        let targets = panel["targets"].as_array().expect("panel targets");
        for source in std::iter::once(panel).chain(targets) {
            assert_eq!(
                source["datasource"]["uid"], "${datasource}",
                "panel {title}: not the templated data source"
            );
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable"
    );
    let boxes: Vec<[u64; 4]> = top
        .iter()
        .map(|p| ["x", "y", "w", "h"].map(|k| p["gridPos"][k].as_u64().expect("gridPos")))
        .collect();
    for (i, [x, y, w, h]) in boxes.iter().enumerate() {
        assert!(x + w <= 24, "panel {} is wider than the grid", top[i]["id"]);
        for (j, [x2, y2, w2, h2]) in boxes.iter().enumerate().skip(i + 1) {
            let apart = x + w <= *x2 || x2 + w2 <= *x || y + h <= *y2 || y2 + h2 <= *y;
            assert!(
                apart,
                "panels {} and {} overlap",
                top[i]["id"], top[j]["id"]
            );
        }
    }
}

/// Every PromQL query of the dashboard: panel targets' `expr` and query variables' `query`.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                if map.get("type").is_some_and(|t| t == "query") {
                    match &map["query"] {
                        serde_json::Value::String(query) => out.push(query.clone()),
                        query => out.extend(query["query"].as_str().map(str::to_owned)),
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// What a query uses: the `metasink_*` names it reads, and the label names it matches or
/// groups by (`{label="…"}`, `by (label, …)`, `label_values(metric, label)`).
#[derive(Debug)]
struct MetricUse {
    query: String,
    metrics: Vec<String>,
    labels: Vec<String>,
}

/// The [`MetricUse`] of `query`. String literals are blanked first, so label values and
/// legends never read as names.
fn promql_uses(query: &str) -> MetricUse {
    let mut in_string = false;
    let code: String = query
        .chars()
        .map(|c| {
            if c == '"' {
                in_string = !in_string;
                return ' ';
            }
            if in_string { ' ' } else { c }
        })
        .collect();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect()
    };
    // The text between each `open` and the bracket that closes it (queries here never nest
    // brackets inside a matcher or a `by` list).
    let inside = |open: &str, close: char| -> Vec<String> {
        code.match_indices(open)
            .filter_map(|(at, _)| code[at + open.len()..].split_once(close))
            .map(|(inner, _)| inner.to_owned())
            .collect()
    };
    let mut labels: Vec<String> = inside("{", '}')
        .iter()
        .flat_map(|matchers| matchers.split(','))
        .flat_map(|matcher| words(matcher.split(['=', '!']).next().unwrap_or_default()))
        .collect();
    labels.extend(inside("by (", ')').iter().flat_map(|list| words(list)));
    labels.extend(
        inside("label_values(", ')')
            .iter()
            .flat_map(|args| words(args).pop()),
    );
    MetricUse {
        query: query.to_owned(),
        metrics: words(&code)
            .into_iter()
            .filter(|word| word.starts_with("metasink_"))
            .collect(),
        labels,
    }
}

/// What `uses` need that the `/metrics` text `exposed` lacks, one line each: a metric with no
/// samples (a histogram through its `_bucket`/`_sum`/`_count` samples), or a label that no
/// metric of its query carries.
fn unexposed(uses: &[MetricUse], exposed: &str) -> Vec<String> {
    let series = exposed_series(exposed);
    let mut problems = Vec::new();
    for MetricUse {
        query,
        metrics,
        labels,
    } in uses
    {
        let mut carried: BTreeSet<&str> = BTreeSet::new();
        for metric in metrics {
            match series.get(metric.as_str()) {
                Some(names) => carried.extend(names),
                None => problems.push(format!(
                    "{metric}: not in /metrics, misspelled, or no series yet (in `{query}`)"
                )),
            }
        }
        for label in labels
            .iter()
            .filter(|label| !carried.contains(label.as_str()))
        {
            problems.push(format!(
                "no metric of the query has label `{label}` (in `{query}`)"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}
/// The sample names of a `/metrics` text, each with the label names its samples carry.
fn exposed_series(exposed: &str) -> HashMap<&str, BTreeSet<&str>> {
    let mut series: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for line in exposed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(&line[..end]).or_default();
        let Some(mut rest) = line[end..].strip_prefix('{') else {
            continue;
        };
        // name="value" pairs; values escape `"` and `\` with a backslash.
        while let Some(eq) = rest.find("=\"") {
            labels.insert(rest[..eq].trim_start_matches(','));
            let value = &rest.as_bytes()[eq + 2..];
            let mut j = 0;
            while value[j] != b'"' {
                j += if value[j] == b'\\' { 2 } else { 1 };
            }
            rest = &rest[eq + 2 + j + 1..];
        }
    }
    series
}
