//! Small readers of values that several sections of the config share: addresses, paths and
//! the key paths errors name.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// `text` as a path, relative ones resolved against the config file's directory.
pub(super) fn relative_to(config_path: &Path, text: &str) -> PathBuf {
    config_path.parent().unwrap_or(Path::new("")).join(text)
}

/// `text` as `IP`, `IP:PORT` or `[IPv6]:PORT` (`default_port` when none is given).
pub(super) fn parse_socket_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    if let Some(ip) = bare_ip(text) {
        return Ok(SocketAddr::new(ip, default_port));
    }
    match text.rsplit_once(':') {
        Some((ip, port)) if bare_ip(ip).is_some() => {
            Err(format!("`{port}` is not a port number (0 to 65535)"))
        }
        _ => Err(format!(
            "`{text}` is not an IP address with an optional port, like `9.9.9.9`, \
             `192.168.1.1:53` or `[2620:fe::fe]:53` (host names are not resolved)"
        )),
    }
}

/// `text` as an IP address, IPv6 optionally in brackets.
pub(super) fn bare_ip(text: &str) -> Option<IpAddr> {
    let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    unbracketed.unwrap_or(text).parse().ok()
}

/// The key path of `field` in the `index`th `[[table]]` of the file: `profile[2].block`.
pub(super) fn entry_key(table: &str, index: usize, field: &str) -> String {
    format!("{table}[{index}].{field}")
}
