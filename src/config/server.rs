//! `[server]`: the DNS listen addresses, the HTTP listener and the hosts it answers to,
//! `state_dir` and the API token; and the keys of who may query and how fast (`allow_from`,
//! the rate limit, `trusted_forwarders`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::defaults::{ALLOW_FROM, DNS_PORT, RATE_LIMIT_BURST, RATE_LIMIT_QPS, STATE_DIR};
use super::error::{ConfigError, Locator};
use super::raw::{RawServer, Text};
use super::values::{ip_network, positive, relative_to, socket_addr};
use super::{AdmissionSettings, DEFAULT_DNS_LISTEN, DEFAULT_HTTP_LISTEN, ServerSettings};
use crate::net::allowed;

/// Key of the DNS listen addresses.
const LISTEN_KEY: &str = "server.listen";

/// Key of the networks allowed to query.
const ALLOW_FROM_KEY: &str = "server.allow_from";

/// Key of the forwarders whose EDNS client options are believed.
const TRUSTED_FORWARDERS_KEY: &str = "server.trusted_forwarders";

/// `[server]`: listen addresses default to port 53, the HTTP address to the default's port.
pub(super) fn server(
    raw: &RawServer,
    path: &Path,
    at: &Locator<'_>,
) -> Result<ServerSettings, ConfigError> {
    let listen = match &raw.listen {
        None => vec![DEFAULT_DNS_LISTEN],
        Some(values) if values.get_ref().is_empty() => {
            let message = "needs at least one address (UDP and TCP are bound on each)";
            return Err(at.invalid(values.span(), LISTEN_KEY, message));
        }
        Some(values) => listen_addresses(values.get_ref(), at)?,
    };
    let http = match &raw.http {
        None => DEFAULT_HTTP_LISTEN,
        Some(value) => socket_addr(value, DEFAULT_HTTP_LISTEN.port(), "server.http", at)?,
    };
    // DNS listens on TCP too, so the HTTP listener must keep clear of every DNS address. The
    // built-in addresses never clash: a clash comes from a key of the file.
    let written = match (&raw.http, &raw.listen) {
        (Some(value), _) => Some((value.span(), "server.http")),
        (None, Some(values)) => Some((values.span(), LISTEN_KEY)),
        (None, None) => None,
    };
    // The HTTP socket is bound dual-stack (the system default): `[::]` takes IPv4 too.
    let dual_stack = |dns: SocketAddr| {
        dns.is_ipv4()
            && http.ip() == Ipv6Addr::UNSPECIFIED
            && clash(dns, (dns.ip(), http.port()).into())
    };
    let clashing = (listen.iter()).find(|&&dns| clash(dns, http) || dual_stack(dns));
    if let (Some(dns), Some((span, key))) = (clashing, written) {
        let message = format!(
            "`{http}` clashes with the DNS listen address `{dns}` (DNS is served over TCP \
             too): give HTTP another port"
        );
        return Err(at.invalid(span, key, message));
    }
    let state_dir = match &raw.state_dir {
        None => PathBuf::from(STATE_DIR),
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(at.invalid(value.span(), "server.state_dir", "is empty"));
        }
        Some(value) => relative_to(path, value.get_ref()),
    };
    let (api_token, token_file) = api_token(raw, path, at)?.unzip();
    let http_hosts = match &raw.http_hosts {
        None => Vec::new(),
        Some(values) => http_hosts(values, at)?,
    };
    Ok(ServerSettings {
        listen,
        http,
        http_hosts,
        state_dir,
        api_token,
        token_file,
    })
}

/// The `[server]` keys of [`AdmissionSettings`]: who may query, and how fast.
pub(super) fn admission(
    raw: &RawServer,
    at: &Locator<'_>,
) -> Result<AdmissionSettings, ConfigError> {
    let allow_from = match &raw.allow_from {
        None => ALLOW_FROM.to_vec(),
        Some(values) if values.get_ref().is_empty() => {
            let message = "is empty, so nobody could query: list the clients' addresses or \
                           networks, or leave the key out to allow the local and private ones";
            return Err(at.invalid(values.span(), ALLOW_FROM_KEY, message));
        }
        Some(values) => networks(values.get_ref(), ALLOW_FROM_KEY, at)?,
    };
    let burst_key = "server.rate_limit_burst";
    Ok(AdmissionSettings {
        allow_from,
        rate_limit_qps: raw.rate_limit_qps.unwrap_or(RATE_LIMIT_QPS),
        rate_limit_burst: positive(&raw.rate_limit_burst, RATE_LIMIT_BURST, burst_key, at)?,
    })
}

/// `server.http_hosts`: host names (or IP addresses) without a port, lowercased.
fn http_hosts(values: &[Text], at: &Locator<'_>) -> Result<Vec<String>, ConfigError> {
    values
        .iter()
        .map(|value| {
            let host = value.get_ref().trim().to_ascii_lowercase();
            let host = host.strip_suffix('.').unwrap_or(&host);
            let is_name = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if is_name {
                return Ok(host.to_owned());
            }
            // An IPv6 address is written in brackets in a URL; kept bare, as Host is matched.
            let bare = (host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))).unwrap_or(host);
            if let Ok(address) = bare.parse::<IpAddr>() {
                return Ok(address.to_string());
            }
            let message = format!(
                "`{}` is not a host name or IP address (write it as in the browser's address \
                 bar, without scheme, port or path: `metasink.lan`, `192.168.1.2`)",
                value.get_ref()
            );
            Err(at.invalid(value.span(), "server.http_hosts", message))
        })
        .collect()
}

/// The `server.trusted_forwarders` addresses. Single addresses only: everyone trusted can
/// name any device, so a network would hand every client in it any profile it likes. Each
/// must be inside `allow_from`, or all its queries would be refused.
pub(super) fn forwarders(
    values: &[Text],
    allow_from: &[IpNet],
    at: &Locator<'_>,
) -> Result<Vec<IpAddr>, ConfigError> {
    let key = TRUSTED_FORWARDERS_KEY;
    values
        .iter()
        .map(|value| {
            let network =
                ip_network(value.get_ref()).map_err(|m| at.invalid(value.span(), key, m))?;
            if network.prefix_len() < network.max_prefix_len() {
                let message = format!(
                    "`{network}` is a network: list the router's own addresses, one by one \
                     (every address trusted here can name any device, so any client in a \
                     network could pick another device's profile)"
                );
                return Err(at.invalid(value.span(), key, message));
            }
            let address = network.addr();
            if !allowed(allow_from, address) {
                let message = format!(
                    "`{address}` is outside server.allow_from, so every query it forwards would \
                     be refused: add it there too"
                );
                return Err(at.invalid(value.span(), key, message));
            }
            Ok(address)
        })
        .collect()
}

/// The networks of a `[server]` array (`key`); a bare address is a /32 or /128.
fn networks(values: &[Text], key: &str, at: &Locator<'_>) -> Result<Vec<IpNet>, ConfigError> {
    values
        .iter()
        .map(|value| {
            ip_network(value.get_ref()).map_err(|message| at.invalid(value.span(), key, message))
        })
        .collect()
}

/// `server.api_token`, or the first line of `server.api_token_file` (kept out of the config so
/// the config can be world-readable), with the file it was read from. Tokens shorter than 16
/// characters are refused: they guard the reload and refresh endpoints.
fn api_token(
    raw: &RawServer,
    path: &Path,
    at: &Locator<'_>,
) -> Result<Option<(String, PathBuf)>, ConfigError> {
    const MIN_TOKEN_LEN: usize = 16;
    let (value, key, token, token_file) = match (&raw.api_token, &raw.api_token_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(file)) => {
            let message = "give either api_token or api_token_file, not both";
            return Err(at.invalid(file.span(), "server.api_token_file", message));
        }
        (Some(token), None) => {
            let text = token.get_ref().trim().to_owned();
            (token, "server.api_token", text, path.to_path_buf())
        }
        (None, Some(file)) => {
            let file_path = relative_to(path, file.get_ref());
            let text = std::fs::read_to_string(&file_path).map_err(|error| {
                let message = format!("cannot read `{}`: {error}", file_path.display());
                at.invalid(file.span(), "server.api_token_file", message)
            })?;
            let token = text.lines().next().unwrap_or_default().trim().to_owned();
            (file, "server.api_token_file", token, file_path)
        }
    };
    if token.len() < MIN_TOKEN_LEN {
        let message = format!("the token must be at least {MIN_TOKEN_LEN} characters");
        return Err(at.invalid(value.span(), key, message));
    }
    Ok(Some((token, token_file)))
}

/// The `server.listen` addresses, each given once.
fn listen_addresses(values: &[Text], at: &Locator<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut listen: Vec<SocketAddr> = Vec::with_capacity(values.len());
    for value in values {
        let address = socket_addr(value, DNS_PORT, LISTEN_KEY, at)?;
        if let Some(&other) = listen.iter().find(|&&other| clash(other, address)) {
            let message = if other == address {
                format!("`{address}` is listed twice")
            } else {
                format!(
                    "`{address}` and `{other}` cannot both be bound: a wildcard address already \
                     takes every address of its family on port {}; list one or the other",
                    address.port()
                )
            };
            return Err(at.invalid(value.span(), LISTEN_KEY, message));
        }
        listen.push(address);
    }
    Ok(listen)
}

/// Whether two listeners would fight over one socket address (binding the second fails): the
/// same port (not 0, which picks a free one) and family, and the same address or a wildcard
/// (`0.0.0.0`, `[::]`) on either side. IPv6 sockets are bound IPv6-only, so `[::]:53` and
/// `0.0.0.0:53` live side by side.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{assert_errors, check, error};

    #[test]
    fn bad_addresses_and_networks() {
        assert_errors(&[
            (
                "[server]\nlisten = [\"localhost:53\"]\n",
                "2: server.listen",
                "`localhost:53` is not an IP address with an optional port, like `9.9.9.9`, `192.168.1.1:53` or `[2620:fe::fe]:53` (host names are not resolved)",
            ),
            (
                "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"router\"]\n",
                "2: server.trusted_forwarders",
                "`router` is not an IP address or CIDR network, like `192.168.1.20`",
            ),
            (
                "[server]\ntrusted_forwarders = [\"192.168.1.1\", \"192.168.1.0/24\"]\n",
                "2: server.trusted_forwarders",
                "`192.168.1.0/24` is a network: list the router's own addresses, one by one",
            ),
            (
                "[server]\nallow_from = [\"192.168.1.0/24\"]\ntrusted_forwarders = [\"10.0.0.1\"]\n",
                "3: server.trusted_forwarders",
                "`10.0.0.1` is outside server.allow_from, so every query it forwards would be \
                 refused: add it there too",
            ),
        ]);
    }

    #[test]
    fn bad_listeners() {
        assert_errors(&[
            (
                "[server]\nlisten = []\n",
                "2: server.listen",
                "needs at least one address (UDP and TCP are bound on each)",
            ),
            (
                "[server]\nlisten = [\"[::]:53\", \"::\"]\n",
                "2: server.listen",
                "`[::]:53` is listed twice",
            ),
            (
                "[server]\nlisten = [\n  \"0.0.0.0:53\",\n  \"[::]:53\",\n  \"192.168.1.2\",\n]\n",
                "5: server.listen",
                "`192.168.1.2:53` and `0.0.0.0:53` cannot both be bound: a wildcard address \
                 already takes every address of its family on port 53; list one or the other",
            ),
            (
                "[server]\nlisten = [\"192.168.1.2:53\"]\nhttp = \"0.0.0.0:53\"\n",
                "3: server.http",
                "`0.0.0.0:53` clashes with the DNS listen address `192.168.1.2:53` (DNS is served \
                 over TCP too): give HTTP another port",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:9353\"]\n",
                "2: server.listen",
                "`127.0.0.1:9353` clashes with the DNS listen address `127.0.0.1:9353`",
            ),
        ]);
        assert!(
            error("[server]\nlisten = [\"192.168.1.2:53\"]\nhttp = \"[::]:53\"\n")
                .contains("`[::]:53` clashes with the DNS listen address `192.168.1.2:53`"),
            "a dual-stack HTTP wildcard takes IPv4 too"
        );
        let side_by_side = "[server]\nlisten = [\"0.0.0.0:53\", \"[::]:53\", \"127.0.0.1:0\"]\n\
                            http = \"127.0.0.1:0\"\n";
        assert!(
            check(side_by_side).is_ok(),
            "other families and port 0 never clash"
        );
    }

    #[test]
    fn admission_keys_parse_and_default() {
        let text = "[server]\nallow_from = [\"192.168.1.0/24\", \"fd00::/8\", \"203.0.113.7\", \
                    \"2001:db8::1\", \"10.1.2.3/8\"]\nrate_limit_qps = 20\nrate_limit_burst = 40\n";
        let admission = check(text).expect("valid").admission;
        let networks: Vec<String> = admission.allow_from.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            networks,
            [
                "192.168.1.0/24",
                "fd00::/8",
                "203.0.113.7/32",
                "2001:db8::1/128",
                "10.0.0.0/8"
            ]
        );
        assert_eq!(
            (admission.rate_limit_qps, admission.rate_limit_burst),
            (20, 40)
        );

        let defaults = check("[server]\n").expect("valid").admission;
        assert_eq!(defaults.allow_from, ALLOW_FROM);
        assert_eq!(
            (defaults.rate_limit_qps, defaults.rate_limit_burst),
            (RATE_LIMIT_QPS, RATE_LIMIT_BURST)
        );
        let off = check("[server]\nrate_limit_qps = 0\n").expect("0 turns the limit off");
        assert_eq!(off.admission.rate_limit_qps, 0);
    }

    #[test]
    fn bad_admission_keys_are_located() {
        assert_errors(&[
            (
                "[server]\nallow_from = []\n",
                "2: server.allow_from",
                "is empty, so nobody could query: list the clients' addresses or networks, or \
                 leave the key out to allow the local and private ones",
            ),
            (
                "[server]\nallow_from = [\n  \"192.168.1.0/24\",\n  \"192.168.1.0/33\",\n]\n",
                "4: server.allow_from",
                "`/33` is not a prefix length for `192.168.1.0` (0 to 32)",
            ),
            (
                "[server]\nallow_from = [\"fd00::/129\"]\n",
                "2: server.allow_from",
                "`/129` is not a prefix length for `fd00::` (0 to 128)",
            ),
            (
                "[server]\nallow_from = [\"lan\"]\n",
                "2: server.allow_from",
                "`lan` is not an IP address or CIDR network",
            ),
            (
                "[server]\nallow_from = \"192.168.1.0/24\"\n",
                "2: server.allow_from",
                "invalid type: string \"192.168.1.0/24\", expected a sequence",
            ),
            (
                "[server]\nallow_from = [24]\n",
                "2: server.allow_from[0]",
                "invalid type: integer `24`, expected a string",
            ),
            (
                "[server]\nrate_limit_qps = -1\n",
                "2: server.rate_limit_qps",
                "invalid value: integer `-1`, expected u32",
            ),
            (
                "[server]\nrate_limit_qps = 1.5\n",
                "2: server.rate_limit_qps",
                "invalid type: floating point `1.5`, expected u32",
            ),
            (
                "[server]\nrate_limit_qps = \"100\"\n",
                "2: server.rate_limit_qps",
                "invalid type: string \"100\", expected u32",
            ),
            (
                "[server]\nrate_limit_qps = 5000000000\n",
                "2: server.rate_limit_qps",
                "invalid value: integer `5000000000`, expected u32",
            ),
            (
                "[server]\n\nrate_limit_burst = 0\n",
                "3: server.rate_limit_burst",
                "must be at least 1",
            ),
            (
                "[server]\nrate_limit_burst = -5\n",
                "2: server.rate_limit_burst",
                "invalid value: integer `-5`, expected u32",
            ),
            (
                "[server]\nrate_limit_burst = 2.0\n",
                "2: server.rate_limit_burst",
                "invalid type: floating point `2.0`, expected u32",
            ),
        ]);
    }

    #[test]
    fn http_hosts_are_names_or_addresses_without_a_port() {
        let settings =
            check("[server]\nhttp_hosts = [\"Metasink.LAN.\", \"192.168.1.2\", \"[fd00::2]\"]\n")
                .expect("valid hosts");
        assert_eq!(
            settings.server.http_hosts,
            ["metasink.lan", "192.168.1.2", "fd00::2"]
        );
        assert!(check("").unwrap().server.http_hosts.is_empty());
        for bad in [
            "metasink.lan:9353",
            "http://metasink.lan",
            "",
            "pi lan",
            "-pi.lan",
        ] {
            assert_errors(&[(
                &format!("[server]\nhttp_hosts = [\"ok.lan\", \"{bad}\"]\n"),
                "2: server.http_hosts",
                &format!("`{bad}` is not a host name or IP address"),
            )]);
        }
    }
}
