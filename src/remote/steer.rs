//! `metasink pause`, `resume`, `allow`, `block` and `overrides`: the command line's side of
//! the overrides API of a running daemon ([`crate::http::overrides`]). What the daemon refuses
//! (an unknown device, a malformed name, a duration that is not one) comes back as its one-line
//! message naming the field, with exit status 1.

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Daemon, RemoteArgs, block_on};

/// When an override ends (neither: when it is removed).
#[derive(Args, Debug)]
struct Expiry {
    /// How long it lasts: 30m, 1h, 2d.
    #[arg(long = "for", conflicts_with = "until")]
    duration: Option<String>,
    /// When it ends, as an RFC 3339 time (2026-12-24T18:00:00Z).
    #[arg(long)]
    until: Option<String>,
}

/// `metasink pause` and `metasink resume`: a device by name, `--profile`, or everyone.
#[derive(Args, Debug)]
pub struct PauseArgs {
    /// The device (a `[[device]]` name); without it and --profile, everyone.
    device: Option<String>,
    /// Every device using this profile instead.
    #[arg(long, conflicts_with = "device")]
    profile: Option<String>,
    #[command(flatten)]
    expiry: Expiry,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// `metasink allow` and `metasink block`.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// The names (each with its subdomains).
    #[arg(required = true)]
    names: Vec<String>,
    /// Only for this device.
    #[arg(long, conflicts_with = "profile")]
    device: Option<String>,
    /// Only for the devices using this profile.
    #[arg(long)]
    profile: Option<String>,
    #[command(flatten)]
    expiry: Expiry,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// `metasink overrides`.
#[derive(Args, Debug)]
pub struct OverridesArgs {
    #[command(subcommand)]
    action: Option<OverridesAction>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
enum OverridesAction {
    /// Remove the override ID (see `metasink overrides`).
    Remove {
        /// Its id.
        id: u64,
    },
}

/// The request body of a new override.
fn body(
    kind: &str,
    device: &Option<String>,
    profile: &Option<String>,
    names: &[String],
    expiry: &Expiry,
) -> Value {
    let mut fields = Map::new();
    fields.insert("kind".into(), json!(kind));
    let optional = [
        ("device", device),
        ("profile", profile),
        ("for", &expiry.duration),
        ("until", &expiry.until),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            fields.insert(key.into(), json!(value));
        }
    }
    if !names.is_empty() {
        fields.insert("names".into(), json!(names));
    }
    Value::Object(fields)
}

/// Sends `body` to `POST /api/overrides` and prints what was made.
fn create(remote: &RemoteArgs, body: &Value) -> anyhow::Result<()> {
    let daemon = Daemon::of(remote)?;
    let created: Value = block_on(daemon.json(Method::POST, "/api/overrides", &[], Some(body)))?;
    match remote.json {
        true => println!("{created}"),
        false => println!("{}", describe(&created)),
    }
    Ok(())
}

/// `metasink pause [DEVICE | --profile P] [--for D | --until T]`.
pub fn pause(args: &PauseArgs) -> anyhow::Result<()> {
    let body = body("pause", &args.device, &args.profile, &[], &args.expiry);
    create(&args.remote, &body)
}

/// `metasink allow NAME... [--device D | --profile P] [--for D | --until T]`.
pub fn allow(args: &NamesArgs) -> anyhow::Result<()> {
    names_override("allow", args)
}

/// `metasink block NAME... [--device D | --profile P] [--for D | --until T]`.
pub fn block(args: &NamesArgs) -> anyhow::Result<()> {
    names_override("block", args)
}

/// An override of `kind` for the names of `args`.
fn names_override(kind: &str, args: &NamesArgs) -> anyhow::Result<()> {
    let body = body(kind, &args.device, &args.profile, &args.names, &args.expiry);
    create(&args.remote, &body)
}

/// `metasink resume [DEVICE | --profile P]`: removes the pauses of exactly that target.
pub fn resume(args: &PauseArgs) -> anyhow::Result<()> {
    let daemon = Daemon::of(&args.remote)?;
    block_on(async {
        let listed: Value = daemon
            .json(Method::GET, "/api/overrides", &[], None)
            .await?;
        let pauses: Vec<u64> = overrides(&listed)
            .iter()
            .filter(|rule| {
                rule["kind"] == "pause"
                    && rule["device"].as_str() == args.device.as_deref()
                    && rule["profile"].as_str() == args.profile.as_deref()
            })
            .filter_map(|rule| rule["id"].as_u64())
            .collect();
        if pauses.is_empty() {
            bail!(
                "no pause is in force for {}",
                target(&args.device, &args.profile)
            );
        }
        for id in &pauses {
            daemon
                .send(Method::DELETE, &format!("/api/overrides/{id}"), &[], None)
                .await?;
        }
        println!(
            "resumed {}: removed {} pause(s)",
            target(&args.device, &args.profile),
            pauses.len()
        );
        Ok(())
    })
}

/// `metasink overrides [remove ID]`.
pub fn list_or_remove(args: &OverridesArgs) -> anyhow::Result<()> {
    let daemon = Daemon::of(&args.remote)?;
    if let Some(OverridesAction::Remove { id }) = &args.action {
        let path = format!("/api/overrides/{id}");
        let removed: Value = block_on(daemon.json(Method::DELETE, &path, &[], None))?;
        println!("removed {}", describe(&removed));
        return Ok(());
    }
    let listed: Value = block_on(daemon.json(Method::GET, "/api/overrides", &[], None))?;
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<6} {:<24} {:<30} {:<26} active",
        "id", "kind", "for", "names", "until"
    );
    for rule in overrides(&listed) {
        let (target, names) = (target_of(rule), names_of(rule));
        println!(
            "{:>4}  {:<6} {:<24} {:<30} {:<26} {}",
            rule["id"],
            rule["kind"].as_str().unwrap_or("?"),
            target,
            if names.is_empty() {
                "(every name)".to_owned()
            } else {
                names.join(",")
            },
            rule["expires"].as_str().unwrap_or("until removed"),
            if rule["active"] == true {
                "yes"
            } else {
                "no (not in the config)"
            },
        );
    }
    Ok(())
}

fn overrides(listed: &Value) -> &[Value] {
    listed["overrides"].as_array().map_or(&[], Vec::as_slice)
}

/// "device kids-tablet", "profile kids" or "everyone".
fn target(device: &Option<String>, profile: &Option<String>) -> String {
    match (device, profile) {
        (Some(device), _) => format!("device {device}"),
        (None, Some(profile)) => format!("profile {profile}"),
        (None, None) => "everyone".to_owned(),
    }
}

/// One override in words: "override 3: pause for device kids-tablet until 2026-…".
fn describe(rule: &Value) -> String {
    let names = names_of(rule);
    let what = match names.is_empty() {
        true => String::new(),
        false => format!(" {}", names.join(", ")),
    };
    format!(
        "override {}: {}{what} for {} until {}",
        rule["id"],
        rule["kind"].as_str().unwrap_or("?"),
        target_of(rule),
        rule["expires"].as_str().unwrap_or("removed")
    )
}

/// Whom the override `rule` (as the API shows it) is for, in words.
fn target_of(rule: &Value) -> String {
    let device = rule["device"].as_str().map(str::to_owned);
    let profile = rule["profile"].as_str().map(str::to_owned);
    target(&device, &profile)
}

/// The names of the override `rule` (as the API shows it); none for a pause.
fn names_of(rule: &Value) -> Vec<&str> {
    (rule["names"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}
