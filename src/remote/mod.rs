//! The commands that talk to a running daemon: `metasink log`, `observe` and `clients` (the
//! records API, [`crate::http::records`]) here, and `pause`, `resume`, `allow`, `block` and
//! `overrides` (the overrides API) in `steer`.
//!
//! The daemon's address and token come from `--config` (`server.http`, `server.api_token`),
//! else from `METASINK_URL` and `METASINK_TOKEN`, else the built-in address. Output is a
//! table, or with `--json` the API's JSON as it came. A daemon that is not running, or a
//! wrong token, is one line naming the address tried (and exit status 1, from the caller).

mod steer;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{self, DEFAULT_HTTP_LISTEN};
use crate::records::observe::UNCATALOGUED;
use crate::records::{ClientSeen, LogEntry, ObservedName};

pub use steer::{NamesArgs, OverridesArgs, PauseArgs, allow, block, list_or_remove, pause, resume};

/// Where the daemon is, and how the output is written.
#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// The daemon's config file (its HTTP address and API token); without it METASINK_URL and
    /// METASINK_TOKEN are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `metasink log`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Only this device's queries.
    #[arg(long)]
    device: Option<String>,
    /// Only blocked queries.
    #[arg(long)]
    blocked: bool,
    /// Only this name and its subdomains.
    #[arg(long)]
    name: Option<String>,
    /// Keep printing new queries as they come (like `pihole -t`).
    #[arg(long, short)]
    follow: bool,
    /// How many recent queries to print.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// `metasink observe`.
#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Only this device's names.
    #[arg(long)]
    device: Option<String>,
    /// Only the names no list knows, written as list lines with their evidence comment.
    #[arg(long)]
    uncatalogued: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// A daemon's API.
struct Daemon {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Daemon {
    /// The daemon `args` point at.
    fn of(args: &RemoteArgs) -> anyhow::Result<Self> {
        let (base, token) = match &args.config {
            Some(path) => {
                let settings = config::load(path)?;
                (url_of(settings.server.http), settings.server.api_token)
            }
            None => (
                std::env::var("METASINK_URL")
                    .map(|url| url.trim_end_matches('/').to_owned())
                    .unwrap_or_else(|_| url_of(DEFAULT_HTTP_LISTEN)),
                std::env::var("METASINK_TOKEN").ok(),
            ),
        };
        // reqwest is built with rustls and no crypto provider of its own; plain http needs
        // none, but building a client asks for one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            token,
            client,
        })
    }

    /// `GET path` with `query`, as a response whose status was checked.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<reqwest::Response> {
        self.send(Method::GET, path, query, None).await
    }

    /// `method path` with `query` and, if given, `body` as JSON, with the token; the response
    /// once its status was checked (an error status is turned into a one-line error naming
    /// the daemon's address and what it said).
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query).map_err(
            |error| {
                anyhow!(
                    "`{}` is not a URL metasink can be reached at: {error}",
                    self.base
                )
            },
        )?;
        let mut request = self.client.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = (request.header(reqwest::header::CONTENT_TYPE, "application/json"))
                .body(serde_json::to_vec(body).context("writing the request body")?);
        }
        let response = request.send().await.map_err(|error| {
            anyhow!(
                "cannot reach metasink at {}: {}",
                self.base,
                root_cause(&error)
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<ApiError>(&body)
            .map_or_else(|_| status.to_string(), |body| body.error);
        match status.as_u16() {
            401 => bail!(
                "metasink at {} refused the token ({message}): set METASINK_TOKEN, or give --config with server.api_token",
                self.base
            ),
            _ => bail!("metasink at {} answered {status}: {message}", self.base),
        }
    }

    /// [`Self::send`], its answer read as JSON of type `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<T> {
        let response = self.send(method, path, query, body).await?;
        let body = response.bytes().await;
        let read = || format!("reading the answer of metasink at {}", self.base);
        serde_json::from_slice(&body.with_context(read)?).with_context(read)
    }
}

/// The innermost error's text: "connection refused", not reqwest's wrapper.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The URL of an HTTP listener; a wildcard address is reached through loopback.
fn url_of(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

#[derive(Deserialize)]
struct ApiError {
    error: String,
}

#[derive(Deserialize)]
struct Queries {
    queries: Vec<LogEntry>,
}

#[derive(Deserialize)]
struct Names {
    names: Vec<ObservedName>,
}

#[derive(Deserialize)]
struct ClientList {
    clients: Vec<ClientSeen>,
}

/// Runs `future` on a small runtime of its own.
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// `metasink log`.
pub fn log(args: &LogArgs) -> anyhow::Result<()> {
    let daemon = Daemon::of(&args.remote)?;
    let mut filter = Vec::new();
    if let Some(device) = &args.device {
        filter.push(("device", device.clone()));
    }
    if let Some(name) = &args.name {
        filter.push(("name", name.clone()));
    }
    if args.blocked {
        filter.push(("result", "blocked".to_owned()));
    }
    block_on(async {
        let mut query = filter.clone();
        query.push(("limit", args.limit.to_string()));
        let Queries { mut queries } = daemon
            .json(Method::GET, "/api/queries", &query, None)
            .await?;
        // Oldest first, as a log reads (and as --follow continues).
        queries.reverse();
        if !args.remote.json {
            println!("{}", log_header());
        }
        for entry in &queries {
            print_entry(entry, args.remote.json);
        }
        if args.follow {
            follow(&daemon, &filter, args.remote.json).await?;
        }
        Ok(())
    })
}

/// Prints entries from the live stream until it ends.
async fn follow(daemon: &Daemon, filter: &[(&str, String)], json: bool) -> anyhow::Result<()> {
    let mut response = daemon.get("/api/queries/stream", filter).await?;
    let mut pending = String::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("following metasink at {}", daemon.base))?
    {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        // Server-sent events end with a blank line; only `data:` of `query` events matter.
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.lines().find_map(|line| line.strip_prefix("data:"));
            let is_query = event.lines().any(|line| line.trim() == "event: query");
            if let (true, Some(data)) = (is_query, data)
                && let Ok(entry) = serde_json::from_str::<LogEntry>(data.trim())
            {
                print_entry(&entry, json);
            }
        }
    }
    bail!("metasink at {} closed the stream", daemon.base)
}

fn log_header() -> String {
    format!(
        "{:<24} {:<14} {:<12} {:<6} {:<40} {}",
        "time", "device", "result", "type", "name", "list"
    )
}

fn print_entry(entry: &LogEntry, json: bool) {
    if json {
        println!("{}", serde_json::to_string(entry).unwrap_or_default());
        return;
    }
    let list = match (&entry.list, &entry.blocked_by) {
        (Some(list), Some(by)) if by != "question" => format!("{list} ({by})"),
        (Some(list), _) => list.clone(),
        (None, _) => "-".to_owned(),
    };
    // An unknown client by its DHCP lease name, when it has one: `unknown (pixel-7)`.
    let device = match &entry.client_name {
        Some(name) => format!("{} ({name})", entry.device),
        None => entry.device.clone(),
    };
    println!(
        "{:<24} {:<14} {:<12} {:<6} {:<40} {}",
        entry.time.to_rfc3339(),
        device,
        entry.result,
        entry.qtype,
        entry.name,
        list
    );
}

/// `metasink observe`.
pub fn observe(args: &ObserveArgs) -> anyhow::Result<()> {
    let daemon = Daemon::of(&args.remote)?;
    let query: Vec<(&str, String)> = args.device.iter().map(|d| ("device", d.clone())).collect();
    let Names { names } = block_on(daemon.json(Method::GET, "/api/observe", &query, None))?;
    let names: Vec<&ObservedName> = (names.iter())
        .filter(|name| !args.uncatalogued || name.lists.iter().any(|list| list == UNCATALOGUED))
        .collect();
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else if args.uncatalogued {
        // Lines a list file takes as they are, each with its evidence comment.
        for name in names {
            println!(
                "{}  # evidence: metasink observe, device {}: asked {} times ({} blocked) from {} to {}; breaks: unknown",
                name.name,
                name.device,
                name.asked,
                name.blocked,
                name.first_seen.to_rfc3339(),
                name.last_seen.to_rfc3339()
            );
        }
    } else {
        println!(
            "{:<14} {:<44} {:>6} {:>7}  {:<24}  lists",
            "device", "name", "asked", "blocked", "last seen"
        );
        for name in names {
            println!(
                "{:<14} {:<44} {:>6} {:>7}  {:<24}  {}",
                name.device,
                name.name,
                name.asked,
                name.blocked,
                name.last_seen.to_rfc3339(),
                name.lists.join(",")
            );
        }
    }
    Ok(())
}

/// `metasink clients`.
pub fn clients(args: &RemoteArgs) -> anyhow::Result<()> {
    let daemon = Daemon::of(args)?;
    let ClientList { clients } = block_on(daemon.json(Method::GET, "/api/clients", &[], None))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&clients)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<17} {:<14} {:<20} {:<14} {:<13} {:>8} {:>8}  last seen",
        "address", "mac", "device", "name", "profile", "identified by", "queries", "blocked"
    );
    for client in clients {
        println!(
            "{:<40} {:<17} {:<14} {:<20} {:<14} {:<13} {:>8} {:>8}  {}",
            client.address.to_string(),
            client.mac.as_deref().unwrap_or("-"),
            client.device,
            client.name.as_deref().unwrap_or("-"),
            client.profile,
            client.identified_by,
            client.queries,
            client.blocked,
            client.last_seen.to_rfc3339()
        );
    }
    Ok(())
}
