//! The HTTP listener against hostile clients: idle and half-sent connections cannot take the
//! file descriptors DNS needs (issue 12, item 2), and a request whose `Host` does not name the
//! server is refused, so a DNS-rebinding web page cannot read `/metrics` (item 8).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The time a client has to send its headers (`src/api.rs`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Whether the daemon closes `stream` (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                // A response (e.g. 408) before the close.
                Ok(_) => {}
            }
        }
    })
    .await;
    read.is_ok()
}

/// Raises this test process's own descriptor limit to its hard limit: it opens over a
/// thousand connections.
fn raise_own_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { maximum, .. } = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: maximum,
        maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise RLIMIT_NOFILE");
}

/// Issue 12 (2): with the unit's `LimitNOFILE`, half-sent requests made every uncached query
/// SERVFAIL, DNS over TCP time out and `/healthz` stop answering. Here with 1,024.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_cannot_starve_dns_of_descriptors() {
    raise_own_fd_limit();
    let names: Vec<String> = (0..30).map(|i| format!("n{i}.example.com")).collect();
    let records: Vec<TestRecord> = names.iter().map(|n| TestRecord::A(n, REAL, 300)).collect();
    let upstream = TestUpstream::start(&records).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\n\
         [[upstream]]\naddress = \"{}\"\n",
        upstream.addr
    );
    std::fs::write(&config, text).unwrap();
    let daemon = DaemonProcess::start_with_fd_limit(&config, 1024);

    // 1,100 connections: half send nothing, half send half a request.
    let mut idle = Vec::new();
    for i in 0..1100 {
        let mut stream = TcpStream::connect(daemon.http).await.unwrap();
        if i % 2 == 1 {
            let half = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
            stream.write_all(half).await.unwrap();
        }
        idle.push(stream);
    }
    let flooded = Instant::now();
    // Every name is new, so each UDP query needs an upstream socket.
    for name in &names[..20] {
        let reply = query_udp(daemon.dns, name, RecordType::A, true).await;
        assert_eq!(a_addrs(&reply), [REAL], "{name} over UDP: {reply:?}");
    }
    for name in &names[20..] {
        let reply = query_tcp(daemon.dns, name, RecordType::A, true).await;
        assert_eq!(a_addrs(&reply), [REAL], "{name} over TCP: {reply:?}");
    }
    let (status, body) = http_get(daemon.http, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    // None of the 1,100 is left open past the header timeout.
    for (i, stream) in idle.iter_mut().enumerate() {
        let left = (HEADER_TIMEOUT + Duration::from_secs(2)).saturating_sub(flooded.elapsed());
        assert!(
            closed_within(stream, left).await,
            "connection {i} still open {:?} after the flood",
            flooded.elapsed()
        );
    }
    // A connection that sends nothing is closed after the header timeout, not before.
    let mut silent = TcpStream::connect(daemon.http).await.unwrap();
    let connected = Instant::now();
    assert!(closed_within(&mut silent, HEADER_TIMEOUT + Duration::from_secs(2)).await);
    let elapsed = connected.elapsed();
    assert!(
        elapsed >= HEADER_TIMEOUT - Duration::from_millis(500),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_left_idle_is_closed_after_the_header_timeout() {
    let daemon = TestDaemon::start("").await;
    let mut stream = TcpStream::connect(daemon.http).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", daemon.http);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = [0u8; 1024];
    let read = stream.read(&mut response).await.unwrap();
    assert!(response[..read].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(closed_within(&mut stream, HEADER_TIMEOUT + Duration::from_secs(2)).await);
    assert!(answered.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500));
}

/// `GET path` with the `Host` header `host` (none when `None`): (status, body).
async fn get_with_host(server: SocketAddr, path: &str, host: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let host = host.map_or(String::new(), |host| format!("Host: {host}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    http_response(stream).await
}

#[tokio::test]
async fn a_host_that_does_not_name_the_server_is_refused() {
    let daemon = TestDaemon::start("").await;
    let port = daemon.http.port();
    for host in [
        daemon.http.to_string(),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        let (status, body) = get_with_host(daemon.http, "/metrics", Some(&host)).await;
        assert_eq!(status, 200, "Host: {host}");
        assert!(body.contains("metasink_"), "Host: {host}");
    }
    // A rebinding page's own name, or another address.
    for host in [
        format!("rebind.attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("127.0.0.2:{port}"),
        format!("localhost.attacker.example:{port}"),
    ] {
        for path in ["/metrics", "/healthz"] {
            let (status, body) = get_with_host(daemon.http, path, Some(&host)).await;
            assert_eq!(status, 421, "Host: {host} {path}: {body}");
            assert!(body.contains("server.http_hosts"), "{body}");
            assert!(!body.contains("metasink_"), "{body}");
        }
    }
    let (status, _) = get_with_host(daemon.http, "/metrics", None).await;
    assert_eq!(status, 400, "no Host");
    // State-changing endpoints too, token or not.
    let mut stream = TcpStream::connect(daemon.http).await.unwrap();
    let request = format!(
        "POST /api/reload HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(http_response(stream).await.0, 421);
}

#[tokio::test]
async fn names_listed_in_http_hosts_are_answered() {
    let daemon = TestDaemon::start(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         http_hosts = [\"metasink.lan\", \"192.168.1.2\"]\n",
    )
    .await;
    let port = daemon.http.port();
    for host in [
        format!("metasink.lan:{port}"),
        "Metasink.LAN".to_owned(),
        "192.168.1.2".to_owned(),
    ] {
        let (status, _) = get_with_host(daemon.http, "/healthz", Some(&host)).await;
        assert_eq!(status, 200, "Host: {host}");
    }
    let (status, _) = get_with_host(daemon.http, "/healthz", Some("other.lan")).await;
    assert_eq!(status, 421);
}
