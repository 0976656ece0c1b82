//! `[[upstream]]`: from the raw table to [`UpstreamSettings`], the protocol included.
//!
//! `address` is `IP[:PORT]` or `udp://IP[:PORT]` (plain DNS over UDP, TCP when truncated),
//! `tcp://IP[:PORT]`, `tls://HOST[:PORT]` (DNS over TLS, port 853) or
//! `https://HOST[:PORT][/PATH]` (DNS over HTTPS, port 443, path `/dns-query`). An encrypted
//! upstream named by host needs its addresses in `bootstrap`: metasink never resolves its own
//! upstream (through itself, that would be a loop; through the system, a leak in clear text).
//! One given by IP address checks its certificate against `tls_name` when set, else against
//! the address itself. `ca_file` replaces the system's roots with the certificates of a PEM
//! file, for a self-hosted resolver.
//!
//! The upstreams of a `[[forward]]` zone are checked here too: plain DNS addresses only.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::defaults::{DNS_PORT, is_own_address, system_upstreams};
use super::error::{ConfigError, Locator};
use super::raw::{RawUpstream, Text};
use super::values::{bare_ip, entry_key, parse_socket_addr, relative_to, socket_addr};

/// Port of DNS over TLS (RFC 7858).
const DOT_PORT: u16 = 853;
/// Port of DNS over HTTPS.
const DOH_PORT: u16 = 443;
/// The DoH path when the URL gives none (RFC 8484's example, used by every public resolver).
const DOH_PATH: &str = "/dns-query";

/// One `[[upstream]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Where queries go first; for an encrypted upstream with several bootstrap addresses, the
    /// others follow in [`TlsSettings::more_addresses`].
    pub address: SocketAddr,
    /// How queries are carried.
    pub protocol: UpstreamProtocol,
}

impl UpstreamSettings {
    /// Plain DNS to `address`: UDP, and TCP when an answer is truncated.
    pub fn plain(address: SocketAddr) -> Self {
        Self {
            address,
            protocol: UpstreamProtocol::Udp,
        }
    }

    /// The upstream's name in metrics and logs: the address for plain UDP (as before
    /// protocols existed, so its series keep their label), else the URL.
    pub fn label(&self) -> String {
        match &self.protocol {
            UpstreamProtocol::Udp => self.address.to_string(),
            UpstreamProtocol::Tcp => format!("tcp://{}", self.address),
            UpstreamProtocol::Tls(tls) => format!("tls://{}", tls.authority),
            UpstreamProtocol::Https(tls, path) => format!("https://{}{path}", tls.authority),
        }
    }
}

/// How an upstream is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// UDP, TCP for truncated answers.
    Udp,
    /// TCP only, one connection kept open.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls(TlsSettings),
    /// DNS over HTTPS (RFC 8484) over HTTP/2, with the request path.
    Https(TlsSettings, String),
}

impl UpstreamProtocol {
    /// The `protocol` of metrics: `udp`, `tcp`, `tls` or `https`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls(_) => "tls",
            Self::Https(..) => "https",
        }
    }
}

/// The TLS side of an encrypted upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The name (or IP address) its certificate must be valid for.
    pub server_name: String,
    /// `HOST[:PORT]` as written in the address, for labels.
    pub authority: String,
    /// Bootstrap addresses after the first, tried in order when a connection cannot be made.
    pub more_addresses: Vec<SocketAddr>,
    /// Roots from `ca_file`; None for the system's.
    pub ca: Option<CaFile>,
}

/// The certificates of a `ca_file`, read (and checked) when the config is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFile {
    /// The file.
    pub path: PathBuf,
    /// Its certificates, in DER.
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
}

/// The scheme of an `address`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Udp,
    Tcp,
    Tls,
    Https,
}

impl Scheme {
    const ALL: [(&'static str, Self); 4] = [
        ("udp", Self::Udp),
        ("tcp", Self::Tcp),
        ("tls", Self::Tls),
        ("https", Self::Https),
    ];

    fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => DNS_PORT,
            Self::Tls => DOT_PORT,
            Self::Https => DOH_PORT,
        }
    }
}

/// `[[upstream]]`s, or the system's resolvers when the file names none.
pub(super) fn upstreams(
    raw: &[RawUpstream],
    listen: &[SocketAddr],
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<Vec<UpstreamSettings>, ConfigError> {
    if raw.is_empty() {
        return Ok(system_upstreams(listen));
    }
    raw.iter()
        .enumerate()
        .map(|(index, table)| upstream(table, index, listen, config_path, at))
        .collect()
}

/// One `[[upstream]]` table (`index` in file order).
fn upstream(
    raw: &RawUpstream,
    index: usize,
    listen: &[SocketAddr],
    config_path: &Path,
    at: &Locator<'_>,
) -> Result<UpstreamSettings, ConfigError> {
    let key = |field| entry_key("upstream", index, field);
    let invalid =
        |text: &Text, field, message: String| at.invalid(text.span(), key(field), message);
    let address_text = raw.address.get_ref().trim();
    let (scheme, rest) = match address_text.split_once("://") {
        None => (Scheme::Udp, address_text),
        Some((name, rest)) => match Scheme::ALL.iter().find(|(word, _)| *word == name) {
            Some(&(_, scheme)) => (scheme, rest),
            None => {
                let choices = Scheme::ALL
                    .iter()
                    .map(|(word, _)| format!("{word}://"))
                    .collect();
                let message = format!("`{name}://` is not an upstream protocol");
                return Err(at.invalid_among(raw.address.span(), key("address"), message, choices));
            }
        },
    };
    let encrypted = matches!(scheme, Scheme::Tls | Scheme::Https);
    if !encrypted {
        let extra = [(&raw.tls_name, "tls_name"), (&raw.ca_file, "ca_file")];
        if let Some((Some(text), field)) = extra.into_iter().find(|(value, _)| value.is_some()) {
            let message = format!("`{field}` is for tls:// and https:// upstreams only");
            return Err(invalid(text, field, message));
        }
        if let Some(bootstrap) = &raw.bootstrap {
            let message = "`bootstrap` is for tls:// and https:// upstreams named by host only";
            return Err(at.invalid(bootstrap.span(), key("bootstrap"), message));
        }
        let address = parse_socket_addr(rest, scheme.default_port())
            .map_err(|message| invalid(&raw.address, "address", message))?;
        check_destination(address, listen).map_err(|m| invalid(&raw.address, "address", m))?;
        let protocol = match scheme {
            Scheme::Tcp => UpstreamProtocol::Tcp,
            _ => UpstreamProtocol::Udp,
        };
        return Ok(UpstreamSettings { address, protocol });
    }

    // tls:// and https://: HOST[:PORT], then a path for https.
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    let path = match (scheme, path) {
        (Scheme::Https, "" | "/") => DOH_PATH.to_owned(),
        (Scheme::Https, path) if !path.contains(['?', '#', ' ']) => path.to_owned(),
        (Scheme::Tls, "" | "/") => String::new(),
        _ => {
            let message = format!(
                "`{address_text}` is not a URL like `tls://dns.quad9.net:853` or \
                 `https://dns.quad9.net/dns-query`"
            );
            return Err(invalid(&raw.address, "address", message));
        }
    };
    let (host, port) = split_host_port(authority, scheme.default_port())
        .map_err(|message| invalid(&raw.address, "address", message))?;
    let (server_name, addresses) = match host {
        Host::Ip(ip) => {
            if let Some(bootstrap) = &raw.bootstrap {
                let message = "the address is already an IP address: `bootstrap` is for an \
                               upstream named by host";
                return Err(at.invalid(bootstrap.span(), key("bootstrap"), message));
            }
            let name = match &raw.tls_name {
                Some(name) => checked_name(name.get_ref())
                    .map_err(|message| invalid(name, "tls_name", message))?,
                None => ip.to_string(),
            };
            (name, vec![SocketAddr::new(ip, port)])
        }
        Host::Name(name) => {
            if let Some(tls_name) = &raw.tls_name {
                let message = format!(
                    "the address names the host `{name}`, which is the certificate's name: \
                     `tls_name` is for an upstream given by IP address"
                );
                return Err(invalid(tls_name, "tls_name", message));
            }
            let name = checked_name(&name).map_err(|m| invalid(&raw.address, "address", m))?;
            let Some(bootstrap) = raw.bootstrap.as_ref().filter(|b| !b.get_ref().is_empty()) else {
                let message = format!(
                    "`{name}` is a host name: give its IP addresses in `bootstrap = [\"…\"]` \
                     (metasink never resolves its own upstream), or write an IP address in \
                     the URL and the name in `tls_name`"
                );
                return Err(invalid(&raw.address, "address", message));
            };
            let addresses = bootstrap
                .get_ref()
                .iter()
                .enumerate()
                .map(|(item, text)| {
                    bare_ip(text.get_ref().trim())
                        .map(|ip| SocketAddr::new(ip, port))
                        .ok_or_else(|| {
                            let message = format!("`{}` is not an IP address", text.get_ref());
                            at.invalid(
                                text.span(),
                                format!("{}[{item}]", key("bootstrap")),
                                message,
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (name, addresses)
        }
    };
    for &address in &addresses {
        check_destination(address, listen).map_err(|m| invalid(&raw.address, "address", m))?;
    }
    let ca = match &raw.ca_file {
        None => None,
        Some(text) => Some(
            ca_file(&relative_to(config_path, text.get_ref()))
                .map_err(|message| invalid(text, "ca_file", message))?,
        ),
    };
    let tls = TlsSettings {
        server_name,
        authority: authority.to_owned(),
        more_addresses: addresses[1..].to_vec(),
        ca,
    };
    let protocol = match scheme {
        Scheme::Https => UpstreamProtocol::Https(tls, path),
        _ => UpstreamProtocol::Tls(tls),
    };
    Ok(UpstreamSettings {
        address: addresses[0],
        protocol,
    })
}

/// A `[[forward]]`'s upstream address: plain DNS, port 53 unless given, and not one of our
/// own `listen` addresses.
pub(super) fn forward_upstream(
    value: &Text,
    listen: &[SocketAddr],
    key: &str,
    at: &Locator<'_>,
) -> Result<UpstreamSettings, ConfigError> {
    let address = socket_addr(value, DNS_PORT, key, at)?;
    check_destination(address, listen).map_err(|message| at.invalid(value.span(), key, message))?;
    Ok(UpstreamSettings::plain(address))
}
/// Why queries cannot be sent to `address`, if they cannot.
fn check_destination(address: SocketAddr, listen: &[SocketAddr]) -> Result<(), String> {
    let problem = if address.port() == 0 || address.ip().is_unspecified() {
        "is not an address a query can be sent to"
    } else if is_own_address(address, listen) {
        "is this server's own listen address: queries would loop"
    } else {
        return Ok(());
    };
    Err(format!("`{address}` {problem}"))
}

/// The host of a URL.
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// `HOST[:PORT]` (IPv6 in brackets) of a URL.
fn split_host_port(authority: &str, default_port: u16) -> Result<(Host, u16), String> {
    if let Some(ip) = bare_ip(authority) {
        return Ok((Host::Ip(ip), default_port));
    }
    if let Ok(address) = authority.parse::<SocketAddr>() {
        return Ok((Host::Ip(address.ip()), address.port()));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{port}` is not a port number (0 to 65535)"))?;
            (host, port)
        }
        None => (authority, default_port),
    };
    if host.is_empty() || host.contains([':', '[', ']', '@']) {
        return Err(format!("`{authority}` is not a host with an optional port"));
    }
    Ok((Host::Name(host.to_owned()), port))
}

/// `name` if a certificate can be checked against it.
fn checked_name(name: &str) -> Result<String, String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    match ServerName::try_from(name.as_str()) {
        Ok(ServerName::DnsName(_)) => Ok(name),
        _ => Err(format!(
            "`{name}` is not a host name a certificate can be checked against"
        )),
    }
}

/// The certificates of the PEM file at `path`.
fn ca_file(path: &Path) -> Result<CaFile, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|error| format!("cannot read `{shown}`: {error}"))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("`{shown}` is not a PEM file of certificates: {error}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "`{shown}` holds no certificate (`-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(CaFile {
        path: path.to_path_buf(),
        certificates: Arc::new(certificates),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::assert_errors;
    use crate::config::{ConfigError, Settings};

    const PATH: &str = "/etc/metasink/config.toml";

    fn check(text: &str) -> Result<Vec<UpstreamSettings>, ConfigError> {
        super::super::parse(text, Path::new(PATH)).map(|settings: Settings| settings.upstreams)
    }

    fn one(table: &str) -> UpstreamSettings {
        let mut upstreams = check(&format!("[[upstream]]\n{table}\n")).expect("accepted");
        assert_eq!(upstreams.len(), 1);
        upstreams.remove(0)
    }

    fn error(table: &str) -> String {
        let text = format!("# upstreams\n[[upstream]]\n{table}\n");
        check(&text).expect_err("refused").to_string()
    }

    #[test]
    fn schemes_ports_and_labels() {
        let cases = [
            ("address = \"9.9.9.9\"", "9.9.9.9:53", "udp", "9.9.9.9:53"),
            (
                "address = \"udp://[2620:fe::fe]:5353\"",
                "[2620:fe::fe]:5353",
                "udp",
                "[2620:fe::fe]:5353",
            ),
            (
                "address = \"tcp://9.9.9.9\"",
                "9.9.9.9:53",
                "tcp",
                "tcp://9.9.9.9:53",
            ),
            (
                "address = \"tls://9.9.9.9\"\ntls_name = \"dns.quad9.net\"",
                "9.9.9.9:853",
                "tls",
                "tls://9.9.9.9",
            ),
            (
                "address = \"tls://dns.quad9.net:8853\"\nbootstrap = [\"9.9.9.9\", \"2620:fe::fe\"]",
                "9.9.9.9:8853",
                "tls",
                "tls://dns.quad9.net:8853",
            ),
            (
                "address = \"https://dns.quad9.net/dns-query\"\nbootstrap = [\"[2620:fe::fe]\"]",
                "[2620:fe::fe]:443",
                "https",
                "https://dns.quad9.net/dns-query",
            ),
            (
                "address = \"https://[::1]:8443\"\ntls_name = \"doh.lan\"",
                "[::1]:8443",
                "https",
                "https://[::1]:8443/dns-query",
            ),
        ];
        for (table, address, protocol, label) in cases {
            let upstream = one(table);
            assert_eq!(upstream.address.to_string(), address, "{table}");
            assert_eq!(upstream.protocol.name(), protocol, "{table}");
            assert_eq!(upstream.label(), label, "{table}");
        }
        let UpstreamProtocol::Tls(tls) = one(
            "address = \"tls://DNS.Quad9.net\"\nbootstrap = [\"9.9.9.9\", \"149.112.112.112\"]",
        )
        .protocol
        else {
            panic!("not tls");
        };
        assert_eq!(tls.server_name, "dns.quad9.net");
        assert_eq!(tls.more_addresses, ["149.112.112.112:853".parse().unwrap()]);
        let UpstreamProtocol::Tls(tls) = one("address = \"tls://1.1.1.1\"").protocol else {
            panic!("not tls");
        };
        assert_eq!(
            tls.server_name, "1.1.1.1",
            "checked against the address itself"
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            (
                "address = \"quic://9.9.9.9\"",
                "3: upstream[0].address: `quic://` is not an upstream protocol (valid choices: udp://, tcp://, tls://, https://)",
            ),
            (
                "address = \"tls://dns.quad9.net\"",
                "3: upstream[0].address: `dns.quad9.net` is a host name: give its IP addresses in `bootstrap",
            ),
            (
                "address = \"https://dns.quad9.net/dns-query\"\nbootstrap = []",
                "3: upstream[0].address: `dns.quad9.net` is a host name",
            ),
            (
                "address = \"tls://dns.quad9.net\"\nbootstrap = [\"9.9.9.9\", \"quad9\"]",
                "4: upstream[0].bootstrap[1]: `quad9` is not an IP address",
            ),
            (
                "address = \"tls://9.9.9.9\"\nbootstrap = [\"9.9.9.9\"]",
                "4: upstream[0].bootstrap: the address is already an IP address",
            ),
            (
                "address = \"tls://dns.quad9.net\"\nbootstrap = [\"9.9.9.9\"]\ntls_name = \"x.net\"",
                "5: upstream[0].tls_name: the address names the host `dns.quad9.net`",
            ),
            (
                "address = \"9.9.9.9\"\ntls_name = \"dns.quad9.net\"",
                "4: upstream[0].tls_name: `tls_name` is for tls:// and https:// upstreams only",
            ),
            (
                "address = \"tcp://9.9.9.9\"\nbootstrap = [\"9.9.9.9\"]",
                "4: upstream[0].bootstrap: `bootstrap` is for tls:// and https://",
            ),
            (
                "address = \"tls://9.9.9.9\"\ntls_name = \"not a name\"",
                "4: upstream[0].tls_name: `not a name` is not a host name",
            ),
            (
                "address = \"tls://9.9.9.9:99999\"",
                "3: upstream[0].address: `99999` is not a port number",
            ),
            (
                "address = \"tls://9.9.9.9/dns-query\"",
                "3: upstream[0].address: `tls://9.9.9.9/dns-query` is not a URL like",
            ),
            (
                "address = \"https://9.9.9.9:0/dns-query\"",
                "3: upstream[0].address: `9.9.9.9:0` is not an address a query can be sent to",
            ),
            (
                "address = \"tcp://dns.quad9.net\"",
                "3: upstream[0].address: `dns.quad9.net` is not an IP address",
            ),
            (
                "address = \"tls://9.9.9.9\"\nca_file = \"/nonexistent/ca.pem\"",
                "4: upstream[0].ca_file: cannot read `/nonexistent/ca.pem`",
            ),
            (
                "address = \"tls://9.9.9.9\"\nport = 853",
                "4: upstream[0].port: unknown field `port`, expected one of `address`, `bootstrap`, `tls_name`, `ca_file`",
            ),
        ];
        for (table, expected) in cases {
            let message = error(table);
            let expected = format!("{PATH}:{expected}");
            assert!(
                message.starts_with(&expected),
                "{table}\n got: {message}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn ca_file_is_read_relative_to_the_config_and_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let config = dir.path().join("config.toml");
        let text = |file: &str| {
            format!(
                "[[upstream]]\naddress = \"tls://127.0.0.1\"\ntls_name = \"dot.test\"\nca_file = \"{file}\"\n"
            )
        };
        let settings = super::super::parse(&text("ca.pem"), &config).unwrap();
        let UpstreamProtocol::Tls(tls) = &settings.upstreams[0].protocol else {
            panic!("not tls");
        };
        let ca_file = tls.ca.as_ref().expect("a ca_file");
        assert_eq!(ca_file.path, dir.path().join("ca.pem"));
        assert_eq!(*ca_file.certificates, [ca.der().clone()]);
        let error = super::super::parse(&text("empty.pem"), &config).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(":4: upstream[0].ca_file: `"), "{message}");
        assert!(
            message.ends_with("holds no certificate (`-----BEGIN CERTIFICATE-----`)"),
            "{message}"
        );
    }

    #[test]
    fn bad_upstream_addresses() {
        assert_errors(&[
            (
                "[[upstream]]\naddress = \"9.9.9.9:99999\"\n",
                "2: upstream[0].address",
                "`99999` is not a port number (0 to 65535)",
            ),
            (
                "[[upstream]]\naddress = \"9.9.9.9:0\"\n",
                "2: upstream[0].address",
                "`9.9.9.9:0` is not an address a query can be sent to",
            ),
            (
                "[server]\nlisten = [\"0.0.0.0:53\"]\n[[upstream]]\naddress = \"127.0.0.1\"\n",
                "4: upstream[0].address",
                "`127.0.0.1:53` is this server's own listen address: queries would loop",
            ),
        ]);
    }
}
