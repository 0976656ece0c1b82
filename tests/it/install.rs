//! What a household meets when it installs metasink: the Debian package's metadata, unit,
//! maintainer scripts and man page (checked from the source tree here; the built package by the
//! ignored test at the end, which `.ci/run` runs on the package `scripts/package` builds), and
//! `metasink check` naming the process that holds a listen address.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use clap::CommandFactory;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --- metasink check: who holds the port -----------------------------------------------------

/// `metasink check` on a config that listens on `dns` and serves HTTP on `http`.
fn check(dns: SocketAddr, http: SocketAddr) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{dns}\"]\nhttp = \"{http}\"\n\n\
             [[upstream]]\naddress = \"127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_metasink"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .expect("run metasink check")
}

/// A loopback address with a port that nothing holds right now (UDP and TCP).
fn free_address() -> SocketAddr {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = udp.local_addr().unwrap();
        if TcpListener::bind(address).is_ok() {
            return address;
        }
    }
}

#[test]
fn check_names_the_process_holding_a_listen_address() {
    // This test process holds the DNS port over UDP and the HTTP port over TCP.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let (dns, http_address) = (udp.local_addr().unwrap(), http.local_addr().unwrap());
    let output = check(dns, http_address);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    let pid = std::process::id();
    assert!(
        stdout.contains(&format!("{dns}/udp is in use by "))
            && stdout.contains(&format!("(pid {pid}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{http_address}/tcp is in use by ")),
        "{stdout}"
    );
    // Nothing holds the DNS port over TCP: no line about it.
    assert!(!stdout.contains(&format!("{dns}/tcp")), "{stdout}");
    assert!(stdout.contains(&format!("kill {pid}")), "{stdout}");
}

#[test]
fn check_sees_a_wildcard_holder_of_a_loopback_address() {
    // A resolver bound to every address (0.0.0.0) keeps a loopback listener from binding too.
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let dns = SocketAddr::from(([127, 0, 0, 1], port));
    let output = check(dns, free_address());
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{dns}/udp is in use (bound to 0.0.0.0:{port})")),
        "{stdout}"
    );
}

#[test]
fn check_passes_when_nothing_holds_the_addresses() {
    let output = check(free_address(), free_address());
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(!stdout.contains("port:"), "{stdout}");
}

#[test]
fn check_beside_the_running_daemon_is_not_an_error() {
    // `sudo metasink check` while the service runs: the holder is metasink itself.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\n\
         [[upstream]]\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let daemon = DaemonProcess::start(&config);
    let output = check(daemon.dns, daemon.http);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!("{}/udp is in use by metasink", daemon.dns))
            && stdout.contains("nothing to do if that is the running service"),
        "{stdout}"
    );
}

/// A real dnsmasq (Debian's dnsmasq-base, installed by `.ci/run`) on a loopback port.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(address: SocketAddr) -> Self {
        // /usr/sbin is not on every user's PATH.
        let program = Some("/usr/sbin/dnsmasq")
            .filter(|path| Path::new(path).exists())
            .unwrap_or("dnsmasq");
        let child = Command::new(program)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--pid-file=",
                &format!("--listen-address={}", address.ip()),
                &format!("--port={}", address.port()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base; .ci/run installs it)");
        let dnsmasq = Self(child);
        // Up once it accepts TCP (it binds UDP first).
        let started = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq did not bind {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        dnsmasq
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_tells_how_to_quiet_a_leftover_dnsmasq() {
    let dns = free_address();
    let dnsmasq = Dnsmasq::start(dns);
    let output = check(dns, free_address());
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{dns}/udp is in use by dnsmasq (pid {}",
            dnsmasq.0.id()
        )) && stdout.contains(&format!("{dns}/tcp is in use by dnsmasq")),
        "{stdout}"
    );
    assert!(
        stdout.contains("set port=0 in /etc/dnsmasq.conf"),
        "{stdout}"
    );
}

// --- the package, from the source tree ------------------------------------------------------

/// `[package.metadata.deb]` of Cargo.toml.
fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = read(&root().join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml");
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// The package's assets as (source, destination) pairs.
fn assets() -> Vec<(String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|asset| {
            let asset = asset.as_array().expect("[source, dest, mode]");
            (
                asset[0].as_str().unwrap().to_owned(),
                asset[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn metadata_path(key: &str) -> PathBuf {
    root().join(
        deb_metadata()[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}")),
    )
}

/// The unit file cargo-deb packages.
fn unit_path() -> PathBuf {
    let units = deb_metadata()["systemd-units"].clone();
    root()
        .join(units["unit-scripts"].as_str().expect("unit-scripts"))
        .join("metasink.service")
}

/// The values of the unit's `Key=value` lines.
fn unit_values(key: &str) -> Vec<String> {
    let unit = read(&unit_path());
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_package_installs_binary_config_man_page_and_docs() {
    let assets = assets();
    for (source, dest) in [
        ("target/release/metasink", "usr/bin/"),
        ("config.example.toml", "etc/metasink/config.toml"),
        ("doc/metasink.1", "usr/share/man/man1/metasink.1"),
        ("README.md", "usr/share/doc/metasink/README.md"),
    ] {
        assert!(
            assets.contains(&(source.to_owned(), dest.to_owned())),
            "{source} → {dest} missing from {assets:?}"
        );
    }
    for (source, _) in &assets {
        assert!(
            source.starts_with("target/release/") || root().join(source).is_file(),
            "asset {source} does not exist"
        );
    }
    let deb = deb_metadata();
    let units = deb["systemd-units"].as_table().expect("systemd-units");
    for key in ["enable", "start", "restart-after-upgrade"] {
        assert_eq!(units[key].as_bool(), Some(true), "systemd-units.{key}");
    }
    assert!(unit_path().is_file());
    // The copyright file (machine-readable, as cargo-deb takes it whole); the licence files
    // match Cargo.toml's `license`.
    let licences = read(&root().join(deb["license-file"][0].as_str().expect("license-file")));
    for licence in [
        "License: MIT\n",
        "License: Apache-2.0\n",
        "common-licenses/Apache-2.0",
    ] {
        assert!(licences.contains(licence), "{licence}");
    }
    assert!(read(&root().join("LICENSE-MIT")).starts_with("MIT License"));
    assert!(read(&root().join("LICENSE-APACHE")).contains("Version 2.0, January 2004"));
}

#[test]
fn the_changelog_is_at_the_crate_version() {
    let changelog = read(&metadata_path("changelog"));
    let first = changelog.lines().next().unwrap();
    let revision = deb_metadata()
        .get("revision")
        .and_then(|r| r.as_str().map(str::to_owned))
        .unwrap_or_else(|| "1".to_owned());
    assert!(
        first.starts_with(&format!(
            "metasink ({}-{revision}) ",
            env!("CARGO_PKG_VERSION")
        )),
        "debian/changelog starts with {first:?}: add an entry for this version"
    );
}

#[test]
fn the_unit_runs_the_packaged_binary_on_the_conffile() {
    let config = "/etc/metasink/config.toml";
    for key in ["ExecStartPre", "ExecStart"] {
        let lines = unit_values(key);
        assert_eq!(lines.len(), 1, "{key}");
        assert!(
            lines[0].starts_with("/usr/bin/metasink ")
                && lines[0].ends_with(&format!("--config {config}")),
            "{key}={}",
            lines[0]
        );
    }
    assert_eq!(unit_values("StateDirectory"), ["metasink"]);
    // A throw-away user: the package creates none.
    assert_eq!(unit_values("DynamicUser"), ["yes"]);
    let stop_post = unit_values("ExecStopPost").join("\n");
    assert!(
        stop_post.contains(&format!("metasink check --config {config}")),
        "the failure message points to metasink check: {stop_post}"
    );
}

#[test]
fn maintainer_scripts_parse_and_keep_the_debhelper_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = metadata_path("maintainer-scripts");
    let mut seen = 0;
    for name in ["preinst", "postinst", "prerm", "postrm"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        seen += 1;
        let script = read(&path);
        assert!(script.starts_with("#!/bin/sh\n"), "{name}");
        assert!(script.contains("\nset -e\n"), "{name}");
        // cargo-deb puts the systemd blocks there; without the token it fails the build.
        assert!(script.contains("\n#DEBHELPER#\n"), "{name}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{name} is not executable");
        let syntax = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(syntax.status.success(), "{name}: {}", text(&syntax.stderr));
    }
    assert!(seen >= 2, "postinst and postrm");
    let postrm = read(&dir.join("postrm"));
    for gone in [
        "/var/lib/private/metasink",
        "/var/lib/metasink",
        "/etc/metasink",
    ] {
        assert!(postrm.contains(gone), "purge removes {gone}");
    }
}

#[test]
fn the_man_page_names_every_command_and_option() {
    let page = read(&root().join("doc/metasink.1"));
    let cli = metasink::cli::Cli::command();
    for command in cli.get_subcommands() {
        let name = command.get_name();
        assert!(
            page.contains(&format!(".B {name}\n")) || page.contains(&format!(".BI \"{name} ")),
            "doc/metasink.1 has no entry for `{name}`"
        );
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(
                    page.contains(&roff),
                    "doc/metasink.1 does not describe --{long} ({name})"
                );
            }
        }
    }
}

// --- the built package ----------------------------------------------------------------------

/// `dpkg-deb ARGS DEB`'s standard output.
fn dpkg_deb(args: &[&str], deb: &str) -> String {
    let output = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        output.status.success(),
        "dpkg-deb {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
#[ignore = "needs the built package: METASINK_DEB=target/debian/metasink_…_amd64.deb (.ci/run)"]
fn the_built_package_holds_its_files() {
    let deb = std::env::var("METASINK_DEB").expect("METASINK_DEB: the .deb to check");
    let contents = dpkg_deb(&["--contents"], &deb);
    let paths: Vec<&str> = contents
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .collect();
    for wanted in [
        "./usr/bin/metasink",
        "./etc/metasink/config.toml",
        "./usr/share/man/man1/metasink.1.gz",
        "./usr/share/doc/metasink/README.md",
        "./usr/share/doc/metasink/copyright",
        "./usr/share/doc/metasink/changelog.Debian.gz",
    ] {
        assert!(paths.contains(&wanted), "{wanted} missing:\n{contents}");
    }
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("lib/systemd/system/metasink.service")),
        "no unit:\n{contents}"
    );
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        dpkg_deb(&["--field"], &deb)
            .lines()
            .find(|l| l.starts_with("Version:")),
        Some(format!("Version: {version}").as_str())
    );
    assert!(dpkg_deb(&["--info"], &deb).contains("Depends: libc6"));

    // The control area: the conffile and the maintainer scripts cargo-deb completed.
    let control = tempfile::tempdir().unwrap();
    let dir = control.path().join("DEBIAN");
    let status = Command::new("dpkg-deb")
        .args(["--control", &deb])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        read(&dir.join("conffiles")).trim(),
        "/etc/metasink/config.toml"
    );
    let postinst = read(&dir.join("postinst"));
    assert_eq!(
        postinst
            .matches("deb-systemd-helper enable metasink.service")
            .count(),
        1,
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke $_dh_action 'metasink.service'")
            || postinst.contains("deb-systemd-invoke $_dh_action metasink.service"),
        "{postinst}"
    );
    let prerm = read(&dir.join("prerm"));
    assert!(prerm.contains("deb-systemd-invoke stop"), "{prerm}");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(
            !read(&dir.join(script)).contains("#DEBHELPER#"),
            "{script}: token left"
        );
        let syntax = Command::new("sh")
            .arg("-n")
            .arg(dir.join(script))
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{script}: {}",
            text(&syntax.stderr)
        );
    }

    // The files: the unit and config as in the tree, a binary that runs and says its version.
    let files = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .args(["--extract", &deb])
        .arg(files.path())
        .status()
        .unwrap();
    assert!(status.success());
    let unit = ["lib", "usr/lib"]
        .iter()
        .map(|dir| {
            files
                .path()
                .join(dir)
                .join("systemd/system/metasink.service")
        })
        .find(|path| path.exists())
        .expect("unit");
    assert_eq!(read(&unit), read(&unit_path()));
    assert_eq!(
        read(&files.path().join("etc/metasink/config.toml")),
        read(&root().join("config.example.toml"))
    );
    assert_eq!(
        read(&files.path().join("usr/share/doc/metasink/copyright")),
        read(&root().join("debian/copyright"))
    );
    let binary = files.path().join("usr/bin/metasink");
    if std::env::consts::ARCH == "x86_64" && deb.ends_with("_amd64.deb") {
        let output = Command::new(&binary).arg("--version").output().unwrap();
        let stdout = text(&output.stdout);
        assert!(
            stdout.starts_with(&format!("metasink {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{stdout}"
        );
    }
}

#[test]
fn version_names_the_git_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_metasink"))
        .arg("--version")
        .output()
        .unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or("unknown".to_owned(), |output| {
            text(&output.stdout).trim().to_owned()
        });
    assert_eq!(
        text(&output.stdout).trim(),
        format!("metasink {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}
