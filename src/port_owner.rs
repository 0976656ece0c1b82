//! Which process holds an address the daemon wants to listen on, for `metasink check`: port 53
//! taken by another resolver (systemd-resolved's stub, dnsmasq, Pi-hole) is the classic first-run
//! failure, and "address in use" alone does not say by whom.
//!
//! Hand-written from Linux's own tables rather than a crate or `ss`: the sockets of
//! `/proc/self/net/{tcp,tcp6,udp,udp6}` (one line each, the local address in hex and the socket's
//! inode) and the processes whose `/proc/PID/fd` links point at that inode. About a hundred
//! lines; the `procfs` crate would bring its dependency tree for it, and `ss` is not on every
//! system and prints a format of its own to parse. `/proc/self/net` (not `/proc/net`) still
//! works under the unit's `ProcSubset=pid`.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The transport of a listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A UDP socket.
    Udp,
    /// A TCP socket (listening).
    Tcp,
}

impl Transport {
    /// Its name as `ss` and the messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// A socket of another process that keeps `wanted` from being bound.
#[derive(Debug)]
pub struct Conflict {
    /// The address the socket is bound to (the same as `wanted`, or overlapping it).
    pub held: SocketAddr,
    /// The processes with the socket open; empty when none is visible to this user.
    pub holders: Vec<Holder>,
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`, at most 15 characters).
    pub name: String,
    /// Its systemd unit, from its control group (`dnsmasq.service`).
    pub unit: Option<String>,
}

/// The sockets bound where `wanted` would be (same port and family, the same address or a
/// wildcard on either side), TCP in the listening state only. An unreadable table counts as
/// no socket: this is advice, and the daemon's own bind has the last word.
pub fn conflicts(wanted: SocketAddr, transport: Transport) -> Vec<Conflict> {
    let table = match (transport, wanted) {
        (Transport::Udp, SocketAddr::V4(_)) => "udp",
        (Transport::Udp, SocketAddr::V6(_)) => "udp6",
        (Transport::Tcp, SocketAddr::V4(_)) => "tcp",
        (Transport::Tcp, SocketAddr::V6(_)) => "tcp6",
    };
    let text = fs::read_to_string(Path::new("/proc/self/net").join(table)).unwrap_or_default();
    let sockets: Vec<_> = (text.lines().skip(1))
        .filter_map(parse_socket_line)
        .filter(|socket| transport == Transport::Udp || socket.state == TCP_LISTEN)
        .filter(|socket| overlaps(socket.local, wanted))
        .collect();
    if sockets.is_empty() {
        return Vec::new();
    }
    let owners = socket_owners();
    sockets
        .into_iter()
        .map(|socket| Conflict {
            held: socket.local,
            holders: (owners.iter())
                .filter(|(inode, _)| *inode == socket.inode)
                .map(|(_, holder)| holder.clone())
                .collect(),
        })
        .collect()
}

/// One line of `metasink check` about an address another process holds.
#[derive(Debug)]
pub struct Finding {
    /// What to print: the address, who holds it and what to do.
    pub message: String,
    /// Whether the daemon could not start because of it: false for metasink itself (the running
    /// service, when `check` is run by hand beside it).
    pub fatal: bool,
}

/// What `metasink check` says about the daemon's addresses: DNS over UDP and TCP on each of
/// `dns`, HTTP over TCP on `http`. Empty when nothing else holds them.
pub fn findings(dns: &[SocketAddr], http: SocketAddr) -> Vec<Finding> {
    let wanted = (dns.iter())
        .flat_map(|&address| [(address, Transport::Udp), (address, Transport::Tcp)])
        .chain([(http, Transport::Tcp)]);
    let mut findings = Vec::new();
    for (address, transport) in wanted {
        let what = format!("{address}/{}", transport.as_str());
        for conflict in conflicts(address, transport) {
            let held = if conflict.held == address {
                String::new()
            } else {
                format!(" (bound to {})", conflict.held)
            };
            if conflict.holders.is_empty() {
                findings.push(Finding {
                    message: format!(
                        "{what} is in use{held} by a process this user cannot see: \
                         run `sudo metasink check` to name it"
                    ),
                    fatal: true,
                });
            }
            for holder in &conflict.holders {
                let unit =
                    (holder.unit.as_deref()).map_or(String::new(), |unit| format!(", {unit}"));
                findings.push(Finding {
                    message: format!(
                        "{what} is in use{held} by {} (pid {}{unit}). {}",
                        holder.name,
                        holder.pid,
                        advice(holder)
                    ),
                    fatal: holder.name != "metasink",
                });
            }
        }
    }
    findings
}

/// What to do about a holder: the fix for the usual suspects, else stopping it.
pub fn advice(holder: &Holder) -> String {
    // The kernel cuts command names to 15 characters: "systemd-resolve".
    match holder.name.as_str() {
        "systemd-resolve" => "systemd-resolved's stub listener: set DNSStubListener=no in \
            /etc/systemd/resolved.conf, point /etc/resolv.conf at the real servers \
            (sudo ln -sf /run/systemd/resolve/resolv.conf /etc/resolv.conf), then \
            sudo systemctl restart systemd-resolved; or listen on the LAN address only \
            (the stub holds 127.0.0.53 and 127.0.0.54)"
            .to_owned(),
        "dnsmasq" => "dnsmasq: set port=0 in /etc/dnsmasq.conf to keep its DHCP without its DNS \
            (then sudo systemctl restart dnsmasq), or sudo systemctl disable --now dnsmasq"
            .to_owned(),
        "pihole-FTL" => {
            "Pi-hole: sudo systemctl disable --now pihole-FTL (or pihole uninstall)".to_owned()
        }
        "metasink" => "metasink itself: nothing to do if that is the running service; \
            otherwise stop that instance"
            .to_owned(),
        _ => match &holder.unit {
            Some(unit) => {
                format!("Stop it (sudo systemctl disable --now {unit}) or listen elsewhere")
            }
            None => format!("Stop it (kill {}) or listen elsewhere", holder.pid),
        },
    }
}

/// `st` of a listening TCP socket in the kernel's tables.
const TCP_LISTEN: u8 = 0x0A;

#[derive(Debug, PartialEq, Eq)]
struct Socket {
    local: SocketAddr,
    state: u8,
    inode: u64,
}

/// One line of `/proc/net/{tcp,udp}[6]`:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …`.
fn parse_socket_line(line: &str) -> Option<Socket> {
    let fields: Vec<_> = line.split_whitespace().collect();
    let (address, port) = fields.get(1)?.split_once(':')?;
    Some(Socket {
        local: SocketAddr::new(parse_address(address)?, u16::from_str_radix(port, 16).ok()?),
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// The kernel prints an address as its 32-bit words in network order, each word formatted as a
/// native-endian number: reading each word back natively gives the bytes in network order.
fn parse_address(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for word in hex.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// Whether a socket bound to `held` keeps `wanted` from being bound: same port, and the same
/// address or a wildcard on either side. (The daemon's IPv6 sockets are IPv6-only, so the two
/// families never collide.)
fn overlaps(held: SocketAddr, wanted: SocketAddr) -> bool {
    held.port() == wanted.port()
        && (held.ip() == wanted.ip() || held.ip().is_unspecified() || wanted.ip().is_unspecified())
}

/// Every (socket inode, process) pair visible to this user: the `socket:[INODE]` links of
/// `/proc/PID/fd`. Processes of other users stay hidden unless run as root.
fn socket_owners() -> Vec<(u64, Holder)> {
    let mut owners = Vec::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return owners;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let inodes: Vec<u64> = fds
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let target = target.to_str()?;
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect();
        if inodes.is_empty() {
            continue;
        }
        let holder = Holder {
            pid,
            name: (fs::read_to_string(process.path().join("comm")).unwrap_or_default())
                .trim()
                .to_owned(),
            unit: fs::read_to_string(process.path().join("cgroup"))
                .ok()
                .and_then(|cgroup| unit_of(&cgroup)),
        };
        owners.extend(inodes.into_iter().map(|inode| (inode, holder.clone())));
    }
    owners
}

/// The service a process runs in, from `/proc/PID/cgroup` (`0::/system.slice/dnsmasq.service`).
fn unit_of(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.rsplit(':').next())
        .flat_map(|path| path.split('/'))
        .rfind(|part| part.ends_with(".service"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ipv4_listener() {
        // systemd-resolved's stub, as /proc/net/tcp shows it on a little-endian machine.
        let line = "   3: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   \
                    991        0 18823 1 0000000000000000 100 0 0 10 5";
        let socket = parse_socket_line(line).expect("parsed");
        if cfg!(target_endian = "little") {
            assert_eq!(socket.local, "127.0.0.53:53".parse().unwrap());
        }
        assert_eq!(socket.state, TCP_LISTEN);
        assert_eq!(socket.inode, 18823);
    }

    #[test]
    fn reads_an_ipv6_wildcard_and_loopback() {
        let wildcard = "  0: 00000000000000000000000000000000:0035 \
                        00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 \
                        00000000     0        0 4242 2 0000000000000000 0";
        assert_eq!(
            parse_socket_line(wildcard).expect("parsed").local,
            "[::]:53".parse().unwrap()
        );
        let loopback = "  1: 00000000000000000000000001000000:1F91 \
                        00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 \
                        00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_socket_line(loopback).expect("parsed").local,
                "[::1]:8081".parse().unwrap()
            );
        }
    }

    #[test]
    fn the_header_and_garbage_are_skipped() {
        assert_eq!(
            parse_socket_line("  sl  local_address rem_address   st tx_queue rx_queue"),
            None
        );
        assert_eq!(parse_socket_line("0: XYZ:0035 0 0A"), None);
    }

    #[test]
    fn wildcards_overlap_every_address_of_their_port() {
        let any: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let stub: SocketAddr = "127.0.0.53:53".parse().unwrap();
        let lan: SocketAddr = "192.168.1.2:53".parse().unwrap();
        assert!(overlaps(stub, any));
        assert!(overlaps(any, lan));
        assert!(overlaps(lan, lan));
        assert!(!overlaps(stub, lan));
        assert!(!overlaps(stub, "0.0.0.0:5353".parse().unwrap()));
    }

    #[test]
    fn the_unit_comes_from_the_control_group() {
        assert_eq!(
            unit_of("0::/system.slice/dnsmasq.service\n").as_deref(),
            Some("dnsmasq.service")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
    }

    #[test]
    fn the_usual_suspects_get_their_fix() {
        let holder = |name: &str, unit: Option<&str>| Holder {
            pid: 7,
            name: name.to_owned(),
            unit: unit.map(str::to_owned),
        };
        assert!(advice(&holder("systemd-resolve", None)).contains("DNSStubListener=no"));
        assert!(advice(&holder("dnsmasq", None)).contains("port=0"));
        assert!(
            advice(&holder("named", Some("named.service"))).contains("disable --now named.service")
        );
        assert!(advice(&holder("a.out", None)).contains("kill 7"));
    }
}
