//! The command line: `run`, `check`, `explain` and `lists`, each a thin layer over the
//! library (config loading, policy compilation, the daemon), and `log`, `observe` and
//! `clients`, which ask a running daemon ([`crate::remote`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{self, ListSource, Settings};
use crate::dns::Question;
use crate::explain::{Viewpoint, explain};
use crate::local::Leases;
use crate::metrics::Metrics;
use crate::overrides::OverrideStore;
use crate::policy::{self, Policy};
use crate::{app, catalogue, permissions, port_owner, remote};

/// `metasink --version`: the crate's version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("METASINK_GIT_COMMIT"),
    ")"
);

/// metasink: a household DNS resolver that sinkholes Meta tracking, telemetry and AI domains
/// per device.
#[derive(Parser, Debug)]
#[command(version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (built-in defaults without --config: 127.0.0.1:5053, bundled lists).
    Run(ConfigArg),
    /// Validate a config and every list it uses, and name any process holding its listen
    /// addresses (port 53); print a summary. Exit 1 on any error.
    Check(CheckArgs),
    /// Explain why NAME is or is not blocked for a client or a profile.
    Explain(ExplainArgs),
    /// Print the bundled catalogue (or the lists of --config).
    Lists(ConfigArg),
    /// Print the running daemon's query log (`--follow` for new queries as they come).
    Log(remote::LogArgs),
    /// Print the Meta names each device asked, with the lists that hold them.
    Observe(remote::ObserveArgs),
    /// Print the clients the running daemon has seen and the device each is.
    Clients(remote::RemoteArgs),
    /// Pause a device's filtering (or a profile's, or everyone's), for a while or until resumed.
    Pause(remote::PauseArgs),
    /// End the pauses of a device (or a profile, or everyone).
    Resume(remote::PauseArgs),
    /// Never block NAMES (and their subdomains) for a device, a profile or everyone.
    Allow(remote::NamesArgs),
    /// Block NAMES (and their subdomains) for a device, a profile or everyone.
    Block(remote::NamesArgs),
    /// List the overrides in force, or remove one (`overrides remove ID`).
    Overrides(remote::OverridesArgs),
}

#[derive(Args, Debug)]
struct ConfigArg {
    /// Config file (TOML); without it the built-in defaults are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Exit 0 when the daemon would start: a list file that cannot be read is reported but
    /// not an error (the daemon runs without it). For systemd's ExecStartPre, so a list file
    /// gone missing does not keep the house's DNS from coming back after a restart.
    #[arg(long)]
    lists_optional: bool,
}

#[derive(Args, Debug)]
struct ExplainArgs {
    /// The name to explain.
    name: String,
    /// The client address to explain for (mapped to its device and profile).
    #[arg(long, conflicts_with = "profile")]
    client: Option<IpAddr>,
    /// The profile to explain for (presets included).
    #[arg(long)]
    profile: Option<String>,
    /// Query type.
    #[arg(long = "type", default_value = "A")]
    qtype: String,
    #[command(flatten)]
    config: ConfigArg,
}

impl ConfigArg {
    fn settings(&self) -> Result<Settings, config::ConfigError> {
        match &self.config {
            Some(path) => config::load(path),
            None => Ok(config::builtin_settings()),
        }
    }
}

/// Runs the command; errors are printed here, once.
pub fn main(cli: Cli) -> ExitCode {
    // The daemon logs its life at info; one-shot commands print their result and only warn.
    let default_level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    init_logging(default_level);
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Check(args) => check(&args),
        Command::Explain(args) => explain_command(&args),
        Command::Lists(args) => lists(&args),
        Command::Log(args) => remote::log(&args).map(|()| ExitCode::SUCCESS),
        Command::Observe(args) => remote::observe(&args).map(|()| ExitCode::SUCCESS),
        Command::Clients(args) => remote::clients(&args).map(|()| ExitCode::SUCCESS),
        Command::Pause(args) => remote::pause(&args).map(|()| ExitCode::SUCCESS),
        Command::Resume(args) => remote::resume(&args).map(|()| ExitCode::SUCCESS),
        Command::Allow(args) => remote::allow(&args).map(|()| ExitCode::SUCCESS),
        Command::Block(args) => remote::block(&args).map(|()| ExitCode::SUCCESS),
        Command::Overrides(args) => remote::list_or_remove(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` (e.g. `RUST_LOG=metasink=debug`) overrides the level.
fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A failed log write would otherwise be reported with eprintln!, which panics when
        // stderr is gone (a closed pipe, a restarted journal): losing a log line must never
        // stop the house's DNS.
        .log_internal_errors(false)
        .init();
}

fn run(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    crate::memory::tune_allocator();
    let settings = args.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(app::run(settings))?;
    Ok(ExitCode::SUCCESS)
}

fn compile(settings: &Settings) -> Policy {
    policy::compile(settings, &Metrics::new(), 1)
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = args.config.settings()?;
    let policy = compile(&settings);
    let origin = args
        .config
        .config
        .as_ref()
        .map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    println!("{origin}: config is valid");
    for warning in permissions::warnings(&settings) {
        println!("  warning:   {warning}");
    }
    let listen: Vec<_> = settings
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "  listen:    {} (UDP and TCP); HTTP {}",
        listen.join(", "),
        settings.server.http
    );
    if !settings.trusted_forwarders.is_empty() {
        let forwarders: Vec<_> = (settings.trusted_forwarders.iter())
            .map(ToString::to_string)
            .collect();
        println!(
            "  trusted:   {} (may name the device they forward for: they must replace the options a \
             device writes itself, dnsmasq strip-mac and strip-subnet)",
            forwarders.join(", ")
        );
    }
    let upstreams: Vec<_> = settings.upstreams.iter().map(|u| u.label()).collect();
    println!(
        "  upstreams: {}",
        if upstreams.is_empty() {
            "(none)".to_owned()
        } else {
            upstreams.join(", ")
        }
    );
    println!(
        "  cache:     {} entries, TTL {}s..{}s",
        settings.cache.size,
        settings.cache.min_ttl.as_secs(),
        settings.cache.max_ttl.as_secs()
    );
    println!(
        "  profiles:  {} (default {})",
        settings.profiles.len(),
        settings.default_profile
    );
    for profile in &settings.profiles {
        println!(
            "  profile:   {:<22} {}",
            profile.name,
            profile.mode.as_str()
        );
    }
    for device in &settings.devices {
        let addresses: Vec<_> = (device.addresses.iter().map(ToString::to_string))
            .chain(device.macs.iter().map(ToString::to_string))
            .collect();
        println!(
            "  device:    {} → profile {} ({})",
            device.name,
            device.profile,
            addresses.join(", ")
        );
        for window in &device.schedule {
            println!("             schedule: {window}");
        }
        if !device.schedule.is_empty() {
            let now = (policy.devices())
                .find(|known| known.name == device.name)
                .map_or("?", |known| policy.profile_of(known).name.as_str());
            println!("             profile now: {now}");
        }
    }
    print_querylog(&settings);
    print_local(&settings, &policy);
    // Port 53 held by another resolver is the classic first-run failure: name the holder.
    let mut failed = false;
    for finding in port_owner::findings(&settings.server.listen, settings.server.http) {
        failed |= finding.fatal;
        println!("  port:      {}", finding.message);
    }
    for list in policy.lists() {
        match &list.load_error {
            // A URL list without a stored copy is downloaded once the daemon runs: failing
            // here would keep a fresh install (ExecStartPre=metasink check) from ever starting.
            Some(error) if matches!(list.source, ListSource::Url(_)) => {
                println!(
                    "  list:      {} not loaded yet: {error} (downloaded in the background)",
                    list.id
                );
            }
            Some(error) => {
                failed |= !args.lists_optional;
                println!("  list:      {} NOT LOADED: {error}", list.id);
            }
            None => println!(
                "  list:      {:<22} {:>7} entries, {} invalid lines ({})",
                list.id, list.entries, list.invalid_lines, list.origin
            ),
        }
        for sample in &list.invalid_samples {
            println!(
                "             {}:{}: {}",
                list.origin, sample.line, sample.error
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The query log's part of `check`: which queries it keeps (per device where a device sets
/// its own mode), where, for how long and up to what size.
fn print_querylog(settings: &Settings) {
    let querylog = &settings.querylog;
    let file = querylog.path.as_ref().map_or_else(
        || "memory only (recent entries)".to_owned(),
        |path| path.display().to_string(),
    );
    println!(
        "  querylog:  mode {}, {file}, retention {}, max_bytes {} ({:.1} MiB), queue {} entries",
        querylog.mode.as_str(),
        humantime::format_duration(querylog.retention),
        querylog.max_bytes,
        querylog.max_bytes as f64 / (1024.0 * 1024.0),
        querylog.queue
    );
    for device in &settings.devices {
        if let Some(mode) = device.querylog {
            println!(
                "             device {}: mode {}",
                device.name,
                mode.as_str()
            );
        }
    }
}

/// The local network's part of `check`: local names, hosts files, forward zones, rebinding
/// protection and DHCP lease files.
fn print_local(settings: &Settings, policy: &Policy) {
    let local = &settings.local;
    if !local.records.is_empty() || !local.hosts.is_empty() {
        println!(
            "  local:     {} records, {} names with their PTRs (answered at home)",
            local.records.len(),
            policy.local().names()
        );
    }
    for report in policy.local().hosts_reports() {
        match &report.error {
            Some(error) => println!("  hosts:     {} NOT READ: {error}", report.path.display()),
            None => println!(
                "  hosts:     {} {} addresses, {} lines skipped",
                report.path.display(),
                report.entries,
                report.skipped.count
            ),
        }
        for skipped in &report.skipped.samples {
            println!(
                "             {}:{}: {}",
                report.path.display(),
                skipped.line,
                skipped.reason
            );
        }
    }
    for forward in &local.forwards {
        let upstreams: Vec<_> = (forward.upstreams.iter()).map(|u| u.label()).collect();
        println!(
            "  forward:   {} → {}",
            forward.zones.join(", "),
            upstreams.join(", ")
        );
    }
    if local.rebind_protection {
        println!(
            "  rebind:    on; allowed: {}",
            if local.rebind_allow.is_empty() {
                "(none)".to_owned()
            } else {
                local.rebind_allow.join(", ")
            }
        );
    }
    let leases = Leases::load(&local.dhcp_leases);
    for (path, format, names, error) in leases.report() {
        match (error, format) {
            (Some(error), _) => println!("  leases:    {} NOT READ: {error}", path.display()),
            (None, Some(format)) => println!(
                "  leases:    {} ({}) {names} named clients",
                path.display(),
                format.as_str()
            ),
            (None, None) => {}
        }
    }
}

fn explain_command(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let settings = args.config.settings()?;
    let policy = compile(&settings);
    let viewpoint = match (&args.client, &args.profile) {
        (Some(client), _) => Viewpoint::Client(*client),
        (None, Some(profile)) => Viewpoint::Profile(profile.clone()),
        (None, None) => Viewpoint::Profile(settings.default_profile.clone()),
    };
    let question = Question::parse(&args.name, &args.qtype).map_err(anyhow::Error::msg)?;
    // The overrides the daemon keeps in its state_dir, so what is printed is what it does.
    let overrides = OverrideStore::open(
        &settings.server.state_dir,
        Metrics::new().overrides_active(),
    );
    let explanation =
        explain(&policy, Arc::new(overrides), &viewpoint, &question).map_err(anyhow::Error::msg)?;
    println!("{explanation}");
    if let Some((address, None)) = explanation.client {
        let leases = Leases::load(&settings.local.dhcp_leases);
        if let Some(name) = leases.name_of(address) {
            println!("lease:    {address} is {name:?} in a DHCP lease");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lists(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let policy = compile(&settings);
    let presets: Vec<_> = catalogue::presets().collect();
    println!(
        "{:<22} {:>7}  {:<10}  {:<10}  {:<6}  {:<28}  title",
        "id", "entries", "match", "confidence", "kind", "used by presets"
    );
    for list in policy.lists() {
        let used_by: Vec<_> = presets
            .iter()
            .filter(|p| {
                [p.block, p.allow, p.block_networks]
                    .iter()
                    .any(|ids| ids.contains(&list.id.as_str()))
            })
            .map(|p| p.name)
            .collect();
        println!(
            "{:<22} {:>7}  {:<10}  {:<10}  {:<6}  {:<28}  {}",
            list.id,
            list.entries,
            if list.networks {
                "networks"
            } else {
                list.match_mode().as_str()
            },
            list.confidence.as_deref().unwrap_or("-"),
            list.kind.as_deref().unwrap_or("-"),
            if used_by.is_empty() {
                "-".to_owned()
            } else {
                used_by.join(",")
            },
            list.title.as_deref().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}
