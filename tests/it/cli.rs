//! The `metasink` binary as a user runs it: `check`, `explain`, `lists` and `run`.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

fn metasink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metasink"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run metasink")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_example_config_passes_check() {
    let output = metasink(&["check", "--config", "config.example.toml"]);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("config is valid"), "{stdout}");
    assert!(
        stdout.contains("device:") && stdout.contains("meta-ai"),
        "{stdout}"
    );
}

#[test]
fn check_rejects_a_broken_config_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "[[profile]]\nname = \"kids\"\nblock = [\"meta-ai\", \"no-such-list\"]\n",
    )
    .unwrap();
    let output = metasink(&["check", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("profile[0].block") && stderr.contains("no-such-list"),
        "{stderr}"
    );
    assert!(
        stderr.contains("valid choices:") && stderr.contains("all-meta"),
        "{stderr}"
    );
}

#[test]
fn check_fails_when_a_list_file_cannot_be_read_unless_lists_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[[list]]\nid = \"mine\"\nsource = \"missing.txt\"\n").unwrap();
    let path = path.to_str().unwrap();
    let output = metasink(&["check", "--config", path]);
    assert!(!output.status.success());
    assert!(
        text(&output.stdout).contains("mine NOT LOADED"),
        "{}",
        text(&output.stdout)
    );
    // What systemd's ExecStartPre runs: the daemon would start (without the list).
    let output = metasink(&["check", "--config", path, "--lists-optional"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("mine NOT LOADED"));
    // A config error still fails it.
    std::fs::write(path, "[[list]]\nid = \"mine\"\nsorce = \"missing.txt\"\n").unwrap();
    let output = metasink(&["check", "--config", path, "--lists-optional"]);
    assert!(!output.status.success());
}

#[test]
fn explain_names_device_profile_entry_and_answer() {
    let output = metasink(&[
        "explain",
        "www.meta.ai",
        "--client",
        "192.168.1.20",
        "--config",
        "config.example.toml",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(r#"device "quest""#), "{stdout}");
    assert!(stdout.contains("profile:  quest"), "{stdout}");
    assert!(stdout.contains(r#"meta-ai                entry "meta.ai" as name and subdomains: blocked by this profile"#), "{stdout}");
    assert!(stdout.contains("verdict:  BLOCKED by meta-ai"), "{stdout}");
    assert!(stdout.contains("A 0.0.0.0"), "{stdout}");
}

#[test]
fn explain_shows_an_allow_list_overriding_a_block() {
    let output = metasink(&["explain", "graph.oculus.com", "--profile", "quest"]);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("verdict:  not blocked"), "{stdout}");
    assert!(stdout.contains("keep-quest"), "{stdout}");
    let unknown = metasink(&["explain", "graph.oculus.com", "--profile", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("valid choices"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn lists_prints_the_catalogue_with_the_presets_that_use_each_list() {
    let output = metasink(&["lists"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let meta_ai = stdout
        .lines()
        .find(|line| line.starts_with("meta-ai "))
        .expect("meta-ai row");
    assert!(
        meta_ai.contains("meta-apps") && meta_ai.contains("quest"),
        "{meta_ai}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("keep-quest ")),
        "{stdout}"
    );
}

#[test]
fn lists_shows_the_per_app_lists_with_the_presets_that_use_them() {
    let output = metasink(&["lists"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let row = |id: &str| {
        stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no {id} row in\n{stdout}"))
            .to_owned()
    };
    for (id, presets) in [
        ("app-instagram", &["whatsapp-only", "no-instagram"][..]),
        ("app-facebook", &["whatsapp-only"][..]),
        (
            "keep-whatsapp",
            &["whatsapp-only", "no-instagram", "meta-apps"][..],
        ),
    ] {
        let line = row(id);
        for preset in presets {
            assert!(line.contains(preset), "{id} used by {preset}: {line}");
        }
    }
    for opt_in in ["app-whatsapp", "quest-telemetry-unverified"] {
        let line = row(opt_in);
        assert!(line.contains(" - "), "{opt_in} is in no preset: {line}");
    }
}

#[tokio::test]
async fn run_serves_until_sigterm_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\n[[upstream]]\naddress = \"127.0.0.1:9\"\n";
    std::fs::write(&path, config).unwrap();
    let mut daemon = DaemonProcess::start(&path);
    let reply = query_udp(daemon.dns, "www.meta.ai", RecordType::A, true).await;
    assert_eq!(a_addrs(&reply), vec![std::net::Ipv4Addr::UNSPECIFIED]);

    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_under_load_drains_and_exits_cleanly_within_five_seconds() {
    let dead = TestUpstream::start_unresponsive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nrate_limit_qps = 0\n\n[[upstream]]\naddress = \"{}\"\n",
        dead.addr
    );
    std::fs::write(&path, config).unwrap();
    let mut daemon = DaemonProcess::start(&path);
    let dns = daemon.dns;
    // Blocked names answered at once and forwarded ones left waiting on a silent upstream.
    let load = tokio::spawn(async move {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let blocked = build_query("www.meta.ai", RecordType::A, false)
            .to_vec()
            .unwrap();
        let forwarded = build_query("www.example.com", RecordType::A, false)
            .to_vec()
            .unwrap();
        for round in 0..20_000u32 {
            let query = if round % 10 == 0 {
                &forwarded
            } else {
                &blocked
            };
            if socket.send_to(query, dns).await.is_err() {
                break;
            }
            if round % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    load.abort();
}

#[test]
fn check_passes_a_url_list_that_is_not_downloaded_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let config = "[server]\nstate_dir = \"state\"\n\n[[list]]\nid = \"remote\"\nsource = \"https://lists.invalid/hosts.txt\"\n";
    std::fs::write(&path, config).unwrap();
    let output = metasink(&["check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("remote not loaded yet"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn check_shows_trusted_forwarders_and_devices_matched_by_mac_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let config = "[server]\ntrusted_forwarders = [\"192.168.1.1\"]\n\n\
                  [[device]]\nname = \"tablet\"\nmatch = [\"AA-BB-CC-DD-EE-01\", \"192.168.1.70\"]\n\
                  profile = \"no-meta\"\n";
    std::fs::write(&path, config).unwrap();
    let output = metasink(&["check", "--config", path.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("trusted:   192.168.1.1 (may name the device they forward for")
            && stdout.contains("strip-mac and strip-subnet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("device:    tablet → profile no-meta (192.168.1.70/32, aa:bb:cc:dd:ee:01)"),
        "{stdout}"
    );
}

/// Sets the permission bits of `path`.
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The lines of `check`'s output that warn.
fn check_warnings(config: &std::path::Path) -> Vec<String> {
    let output = metasink(&["check", "--config", config.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("warning:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_warns_about_a_token_others_can_read_naming_file_mode_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    // The token in the config itself.
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[server]\nstate_dir = \"state\"\napi_token = \"0123456789abcdef0123\"\n",
    )
    .unwrap();
    chmod(&path, 0o644);
    let warnings = check_warnings(&path);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let shown = path.display();
    assert!(
        warnings[0].contains(&format!("{shown} holds the API token"))
            && warnings[0].contains("(mode 0644)")
            && warnings[0].contains(&format!("chmod 600 {shown}"))
            && warnings[0].contains("chmod 640 and chown root:metasink"),
        "{warnings:?}"
    );
    for safe in [0o600, 0o640] {
        chmod(&path, safe);
        assert_eq!(check_warnings(&path), Vec::<String>::new(), "{safe:o}");
    }

    // The token in a file of its own: the config may then be world-readable.
    let token = dir.path().join("api-token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    std::fs::write(
        &path,
        "[server]\nstate_dir = \"state\"\napi_token_file = \"api-token\"\n",
    )
    .unwrap();
    chmod(&path, 0o644);
    chmod(&token, 0o604);
    let warnings = check_warnings(&path);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("{} holds the API token", token.display()))
            && warnings[0].contains("(mode 0604)"),
        "{warnings:?}"
    );
    chmod(&token, 0o600);
    assert_eq!(check_warnings(&path), Vec::<String>::new());
}

#[test]
fn check_warns_about_a_state_dir_others_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("lists")).unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[server]\nstate_dir = \"state\"\n").unwrap();
    chmod(&state, 0o750);
    chmod(&state.join("lists"), 0o755);
    assert_eq!(check_warnings(&path), Vec::<String>::new());

    chmod(&state, 0o777);
    let warnings = check_warnings(&path);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!(
            "state directory {} can be written",
            state.display()
        )) && warnings[0].contains("(mode 0777)")
            && warnings[0].contains("chmod 750"),
        "{warnings:?}"
    );
}

#[test]
fn run_logs_the_same_warnings_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o777);
    let path = dir.path().join("config.toml");
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
                  api_token = \"0123456789abcdef0123\"\n\n[[upstream]]\naddress = \"127.0.0.1:9\"\n";
    std::fs::write(&path, config).unwrap();
    chmod(&path, 0o644);
    let daemon = DaemonProcess::start(&path);
    let warned = |needle: &str| {
        daemon
            .startup_log
            .iter()
            .any(|line| line.contains("WARN") && line.contains(needle))
    };
    assert!(
        warned(&format!("{} holds the API token", path.display())) && warned("(mode 0644)"),
        "{:#?}",
        daemon.startup_log
    );
    assert!(
        warned(&format!(
            "state directory {} can be written",
            state.display()
        )),
        "{:#?}",
        daemon.startup_log
    );
}
