//! `dashboards/metasink.json` against a real Prometheus: two daemons are scraped every second,
//! one is driven through every series, and every panel's query is evaluated through
//! Prometheus's HTTP API with the Grafana variables filled in. Each must parse and return
//! series, and where it reads a counter or a gauge it must agree with the daemon's own
//! `/metrics`, for the selected instance only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::common::*;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/metasink.json");
const TOKEN: &str = "dashboard-token-0123456789";
const TABLET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HOUSE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Importable into Grafana: unique panel ids, a description on every panel, the
/// `${datasource}` variable on every panel and query, panels that fit the 24-column grid
/// without overlapping, and an `instance` variable that every metric selector uses, so two
/// resolvers scraped by one Prometheus are never summed.
#[test]
fn the_dashboard_is_laid_out_for_grafana_one_instance_at_a_time() {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39);
    check_panels(&dashboard);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let instance = variables
        .iter()
        .find(|v| v["name"] == "instance")
        .expect("an instance variable");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["multi"], false, "one instance at a time");
    assert_eq!(instance["includeAll"], false, "one instance at a time");
    let targets = targets(&dashboard);
    assert!(targets.len() >= 25, "{targets:#?}");
    // The instance variable itself lists every instance.
    let variables = variable_queries(&dashboard);
    let device = variables.iter().filter(|(name, _)| *name != "instance");
    for expr in targets
        .iter()
        .map(|t| &t.expr)
        .chain(device.map(|(_, q)| q))
    {
        let unfiltered = unfiltered_selectors(expr);
        assert!(
            unfiltered.is_empty(),
            "`{expr}`: {unfiltered:?} read every instance, not instance=\"$instance\" only"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_agrees_with_the_daemons_counters_through_a_real_prometheus() {
    let dashboard = dashboard();
    let upstream = FaultyUpstream::start(Fault::None).await;
    let list = ListServer::start("ads.example\nnot a name!\n").await;
    let config = config(&upstream, &list);
    let house = TestDaemon::start(&config).await;
    // A second resolver on the same Prometheus, with traffic of its own on the same series.
    let other = TestDaemon::start(OTHER_CONFIG).await;

    // The first downloads (one list updated, one failed) and the rebuild after them happen at
    // start: wait for them so that nothing changes between Prometheus's first scrape and the
    // baseline read below.
    wait_for(&house, |text| {
        metric(
            text,
            r#"metasink_list_refresh_total{list="served",result="updated"}"#,
        ) == 1.0
            && metric(
                text,
                r#"metasink_list_refresh_total{list="unreachable",result="failed"}"#,
            ) == 1.0
            && metric(text, "metasink_policy_generation") == 2.0
    })
    .await;
    let prometheus = Prometheus::start(&[house.http, other.http]).await;
    let (instance, other_instance) = (house.http.to_string(), other.http.to_string());
    let within = Duration::from_secs(10);
    let first = prometheus.scrape_after(&instance, 0.0, within).await;
    prometheus.scrape_after(&other_instance, 0.0, within).await;
    let baseline = house.metrics().await;

    for _ in 0..3 {
        let reply = query_udp_from(HOUSE, other.dns, "www.meta.ai", RecordType::A, true).await;
        assert_eq!(a_addrs(&reply), [Ipv4Addr::UNSPECIFIED]);
    }
    let other_done = unix_now();
    drive(&house, &upstream).await;
    let counted = house.metrics().await;
    let read_at = unix_now();
    prometheus
        .scrape_after(&other_instance, other_done, within)
        .await;
    let at = prometheus.scrape_after(&instance, read_at, within).await;

    // The variables, as Grafana's `label_values` reads them.
    let variables = variable_queries(&dashboard);
    let instances = label_values(&prometheus, &variables["instance"], &instance).await;
    assert_eq!(
        instances,
        BTreeSet::from([instance.clone(), other_instance.clone()])
    );
    let devices = label_values(&prometheus, &variables["device"], &instance).await;
    assert_eq!(devices, BTreeSet::from(["tablet".into(), "unknown".into()]));

    let checks = expectations(&baseline, &counted, (first, at));
    let mut checked = BTreeSet::new();
    for target in targets(&dashboard) {
        let expr = grafana(&target.expr, &instance);
        let result = prometheus
            .query(&expr, at)
            .await
            .unwrap_or_else(|error| panic!("panel {:?}: {error}", target.panel));
        assert!(
            !result.is_empty(),
            "panel {:?} shows nothing: `{expr}`\n{counted}",
            target.panel
        );
        let quantile = expr.starts_with("histogram_quantile(");
        assert!(
            quantile || result.iter().all(|sample| sample.value.is_finite()),
            "panel {:?}: {result:?}",
            target.panel
        );
        let key = (target.panel.as_str(), target.ref_id.as_str());
        if let Some(check) = checks
            .iter()
            .find(|check| (check.panel, check.ref_id) == key)
        {
            let got = grouped(&result, check.by);
            assert!(
                check.agrees(&got),
                "panel {:?} ({}): Prometheus says {got:?}, the daemon counted {:?}\n`{expr}`",
                target.panel,
                target.ref_id,
                check.want
            );
            checked.insert((check.panel, check.ref_id));
        }
        check_rates(&target.panel, &result);
    }
    for check in &checks {
        assert!(
            checked.contains(&(check.panel, check.ref_id)),
            "no panel {:?} with query {}",
            check.panel,
            check.ref_id
        );
    }

    let (clean, said) = promtool_check_metrics(&counted);
    assert!(clean && said.is_empty(), "promtool check metrics: {said}");
}

/// The other resolver's config: its unknown clients block what the house's do, so the two
/// share series.
const OTHER_CONFIG: &str = r#"
default_profile = "family"

[[profile]]
name = "family"
block = ["meta-ai"]
"#;

/// The house's config: a device, the bundled list, a list served over HTTP (with one invalid
/// line), one whose server is never there, and the token for reloads and refreshes.
fn config(upstream: &FaultyUpstream, list: &ListServer) -> String {
    format!(
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
    )
}

/// Drives `daemon` through every series: blocked, forwarded, cached, NXDOMAIN and SERVFAIL
/// (after an upstream timeout) answers, a reload that succeeds and one that fails, and a
/// refresh of both URL lists (one not modified, one failing).
async fn drive(daemon: &TestDaemon, upstream: &FaultyUpstream) {
    let ask = |from, name| query_udp_from(from, daemon.dns, name, RecordType::A, true);
    for _ in 0..2 {
        assert_eq!(
            rcode(&ask(TABLET, "www.meta.ai").await),
            ResponseCode::NoError
        );
    }
    assert_eq!(
        a_addrs(&ask(TABLET, "ads.example").await),
        [Ipv4Addr::UNSPECIFIED]
    );
    for from in [TABLET, TABLET, HOUSE] {
        assert_eq!(
            a_addrs(&ask(from, "www.example.com").await),
            [FAULTY_ANSWER]
        );
    }
    upstream.set_fault(Fault::Rcode(ResponseCode::NXDomain));
    assert_eq!(
        rcode(&ask(TABLET, "gone.example.com").await),
        ResponseCode::NXDomain
    );
    upstream.set_fault(Fault::Drop);
    assert_eq!(
        rcode(&ask(TABLET, "slow.example.com").await),
        ResponseCode::ServFail
    );
    upstream.set_fault(Fault::None);

    let post = |path| async move { http_response(daemon.post_with(TOKEN, path).await).await };
    let (status, body) = post("/api/reload").await;
    assert_eq!(status, 200, "{body}");
    let config = std::fs::read_to_string(daemon.config_path()).unwrap();
    std::fs::write(daemon.config_path(), "[[list]\nbroken").unwrap();
    let (status, body) = post("/api/reload").await;
    assert_ne!(status, 200, "a broken config is refused: {body}");
    std::fs::write(daemon.config_path(), config).unwrap();
    let (status, body) = post("/api/lists/refresh").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("not_modified") && body.contains("failed"),
        "{body}"
    );
}

/// Polls `daemon`'s `/metrics` until `ready` holds; panics after 5 s.
async fn wait_for(daemon: &TestDaemon, ready: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = daemon.metrics().await;
        if ready(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "never ready:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a panel's result must compare with what the daemon counted.
#[derive(Clone, Copy, Debug)]
enum Agreement {
    /// A gauge or a plain read: the same value.
    Equal,
    /// `increase()` over the range: the count, exactly for series that read 0 before their
    /// first event; for those that did not, Prometheus extrapolates their first sample half a
    /// scrape interval back, which this much more per second of samples allows for.
    Increase(f64),
    /// A ratio of increases.
    Ratio,
}

/// What one panel query must show, grouped by its `by` labels.
struct Check {
    panel: &'static str,
    ref_id: &'static str,
    by: &'static [&'static str],
    agreement: Agreement,
    want: BTreeMap<Vec<String>, f64>,
}

impl Check {
    fn agrees(&self, got: &BTreeMap<Vec<String>, f64>) -> bool {
        got.len() == self.want.len()
            && self.want.iter().all(|(labels, &want)| {
                let Some(&got) = got.get(labels) else {
                    return false;
                };
                match self.agreement {
                    Agreement::Equal => (got - want).abs() < 1e-6,
                    Agreement::Increase(slack) => {
                        got >= want - 1e-6 && got <= want * (1.0 + slack) + 1e-6
                    }
                    Agreement::Ratio => (got - want).abs() < 0.02,
                }
            })
    }
}

/// The panels that read a counter or a gauge, and what each must show at time `at` given
/// the daemon's `/metrics` at the scrape at time `first` (`baseline`) and at the one at `at`
/// (`counted`).
fn expectations(baseline: &str, counted: &str, (first, at): (f64, f64)) -> Vec<Check> {
    let (before, after) = (exposition(baseline), exposition(counted));
    let increase = |name: &str, by: &[&str]| {
        let mut grown = sum_by(&after, name, by, &[]);
        for (labels, before) in sum_by(&before, name, by, &[]) {
            *grown.entry(labels).or_default() -= before;
        }
        grown
    };
    let read = |name: &str, by: &[&str]| sum_by(&after, name, by, &[]);
    let check = |panel, ref_id, by, agreement, want| Check {
        panel,
        ref_id,
        by,
        agreement,
        want,
    };
    let blocked_share = {
        let total = |result: &[(&str, &str)], set: &[Series]| {
            sum_by(set, "metasink_queries_total", &[], result)
                .into_values()
                .sum::<f64>()
        };
        let blocked = [("result", "blocked")];
        (total(&blocked, &after) - total(&blocked, &before))
            / (total(&[], &after) - total(&[], &before))
    };
    let samples = after.len() as f64;
    let refresh_errors: BTreeMap<_, _> =
        increase("metasink_list_refresh_errors_total", &["list", "reason"])
            .into_iter()
            .filter(|(_, grown)| *grown > 0.0)
            .collect();
    let refresh_age = read("metasink_list_last_refresh_timestamp_seconds", &["list"])
        .into_iter()
        .map(|(list, refreshed)| (list, at - refreshed))
        .collect();
    use Agreement::*;
    // Half of a 1 s scrape interval, with room for late scrapes.
    let increased = Increase(1.0 / (at - first));
    vec![
        check("Up", "A", &[], Equal, BTreeMap::from([(vec![], 1.0)])),
        check(
            "Version",
            "A",
            &["version"],
            Equal,
            BTreeMap::from([(vec![env!("CARGO_PKG_VERSION").to_owned()], 1.0)]),
        ),
        check(
            "Series exposed",
            "A",
            &[],
            Equal,
            BTreeMap::from([(vec![], samples)]),
        ),
        check(
            "Share of queries blocked",
            "A",
            &[],
            Ratio,
            BTreeMap::from([(vec![], blocked_share)]),
        ),
        check(
            "Blocked in the selected range, by list",
            "A",
            &["list"],
            increased,
            increase("metasink_blocked_total", &["list"]),
        ),
        check(
            "Blocked in the selected range, by device and list",
            "A",
            &["device", "list"],
            increased,
            increase("metasink_blocked_total", &["device", "list"]),
        ),
        check(
            "Replies in the selected range, by response code",
            "A",
            &["rcode"],
            increased,
            increase("metasink_responses_total", &["rcode"]),
        ),
        check(
            "Cache entries",
            "A",
            &[],
            Equal,
            read("metasink_cache_entries", &[]),
        ),
        check(
            "Upstream healthy",
            "A",
            &["upstream"],
            Equal,
            read("metasink_upstream_healthy", &["upstream"]),
        ),
        check(
            "Lists",
            "A",
            &["list"],
            Equal,
            read("metasink_list_entries", &["list"]),
        ),
        check(
            "Lists",
            "B",
            &["list"],
            Equal,
            read("metasink_list_loaded", &["list"]),
        ),
        check(
            "Lists",
            "C",
            &["list"],
            Equal,
            read("metasink_list_bytes", &["list"]),
        ),
        check(
            "Invalid lines skipped",
            "A",
            &["list"],
            increased,
            increase("metasink_list_invalid_lines_total", &["list"]),
        ),
        check("Last refresh age", "A", &["list"], Equal, refresh_age),
        check(
            "List refreshes by result",
            "A",
            &["list", "result"],
            increased,
            increase("metasink_list_refresh_total", &["list", "result"]),
        ),
        check(
            "List refresh errors by reason",
            "A",
            &["list", "reason"],
            increased,
            refresh_errors,
        ),
        check(
            "Config reloads",
            "A",
            &["result"],
            increased,
            increase("metasink_config_reload_total", &["result"]),
        ),
        check(
            "Policy generation",
            "A",
            &[],
            Equal,
            read("metasink_policy_generation", &[]),
        ),
    ]
}

/// What the panels drawing rates must show after [`drive`]: each kind of answer, the
/// upstream timeout, and a SERVFAIL's time to answer above 0.1 s (where the buckets once
/// stopped) and within the last bucket.
fn check_rates(panel: &str, result: &[Sample]) {
    let by = |label: &str, value: &str| {
        result
            .iter()
            .find(|sample| sample.labels.get(label).is_some_and(|v| v == value))
            .map(|sample| sample.value)
    };
    match panel {
        "Queries per second by result" => {
            for answer in ["blocked", "forwarded", "cached", "servfail"] {
                assert!(by("result", answer) > Some(0.0), "{panel}: {result:?}");
            }
        }
        "Replies per second by response code" => {
            for rcode in ["noerror", "nxdomain", "servfail"] {
                assert!(by("rcode", rcode) > Some(0.0), "{panel}: {result:?}");
            }
        }
        "Upstream errors per second" => {
            assert!(by("kind", "timeout") > Some(0.0), "{panel}: {result:?}");
        }
        "Request duration p99 by result" => {
            let servfail = by("result", "servfail").unwrap_or(f64::NAN);
            assert!(
                servfail > 0.5 && servfail <= 5.0,
                "{panel}: a SERVFAIL after an upstream timeout took {servfail} s: {result:?}"
            );
        }
        _ => {}
    }
}

/// One panel query.
#[derive(Debug)]
struct Target {
    panel: String,
    ref_id: String,
    expr: String,
}

/// Every panel's queries, rows' panels included.
fn targets(dashboard: &serde_json::Value) -> Vec<Target> {
    let top = dashboard["panels"].as_array().expect("a panels array");
    let nested = top.iter().filter_map(|p| p["panels"].as_array()).flatten();
    top.iter()
        .chain(nested)
        .flat_map(|panel| {
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().map(|target| Target {
                panel: panel["title"].as_str().unwrap_or_default().to_owned(),
                ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                expr: target["expr"].as_str().expect("an expr").to_owned(),
            })
        })
        .collect()
}

/// The query of each query variable, by variable name.
fn variable_queries(dashboard: &serde_json::Value) -> BTreeMap<String, String> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    variables
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"].as_str().or(v["query"].as_str());
            (
                v["name"].as_str().expect("a name").to_owned(),
                query.expect("a variable query").to_owned(),
            )
        })
        .collect()
}

/// `expr` as Grafana sends it with `instance` picked, every device selected ("All"), a
/// range covering the whole test and the rate interval Grafana computes for a 15 s scrape.
fn grafana(expr: &str, instance: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$instance", instance)
        .replace("$device", ".*");
    assert!(
        !expr.contains('$'),
        "a variable the test does not know: {expr}"
    );
    expr
}

/// The values of a `label_values(selector, label)` variable with `instance` picked.
async fn label_values(prometheus: &Prometheus, query: &str, instance: &str) -> BTreeSet<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    let series = prometheus
        .series(&grafana(selector, instance))
        .await
        .unwrap_or_else(|error| panic!("variable `{query}`: {error}"));
    series
        .iter()
        .filter_map(|labels| labels.get(label.trim()).cloned())
        .collect()
}

/// The matcher blocks (`{…}`) of `expr`'s metric selectors that do not pick
/// `instance="$instance"`, a bare metric name counting as `{}`.
fn unfiltered_selectors(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let word_end = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(rest.len(), |end| start + end);
        let word = &rest[start..word_end];
        let after = &rest[word_end..];
        let is_metric =
            word.starts_with("metasink_") || word == "up" || word.starts_with("scrape_");
        if after.starts_with('{') {
            let block = &after[..=after.find('}').expect("a closed matcher")];
            if !block.contains(r#"instance="$instance""#) {
                found.push(block.to_owned());
            }
            rest = &after[block.len()..];
        } else {
            if is_metric {
                found.push("{}".to_owned());
            }
            rest = after;
        }
    }
    found
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

/// One sample of a `/metrics` text.
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a `/metrics` text.
fn exposition(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            // Label values here are config names and fixed words: no quote or comma inside.
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (label, value) = pair.split_once('=').expect("label=value");
                    (label.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            Series {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a sample value"),
            }
        })
        .collect()
}

/// The samples of `name` whose labels include `only`, summed by the values of `by`.
fn sum_by(
    samples: &[Series],
    name: &str,
    by: &[&str],
    only: &[(&str, &str)],
) -> BTreeMap<Vec<String>, f64> {
    let mut sums = BTreeMap::new();
    let picked = samples.iter().filter(|s| {
        s.name == name
            && only
                .iter()
                .all(|(label, value)| s.labels.get(*label).is_some_and(|v| v == value))
    });
    for sample in picked {
        let key = by
            .iter()
            .map(|label| sample.labels.get(*label).cloned().unwrap_or_default())
            .collect();
        *sums.entry(key).or_default() += sample.value;
    }
    sums
}

/// A query's result keyed like [`sum_by`]: by the values of `by`.
fn grouped(result: &[Sample], by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    result
        .iter()
        .map(|sample| {
            let key = by
                .iter()
                .map(|label| sample.labels.get(*label).cloned().unwrap_or_default())
                .collect();
            (key, sample.value)
        })
        .collect()
}
