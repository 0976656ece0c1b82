//! A minimal stub DNS client for tests, over UDP and TCP (RFC 1035 2-byte length framing).
//!
//! Queries carry a random ID and RD set; with `edns`, an OPT record advertising a 1232-byte
//! payload. Every exchange gives up after [`CLIENT_TIMEOUT`]. The `query_*`/`send_*` helpers panic
//! (failing the test) on timeout, on a reply that does not decode, and on a reply whose ID differs
//! from the query's; use `exchange_*` to see raw bytes or the absence of a reply.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

use super::upstream::fqdn;

/// How long a client exchange waits for the whole reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// EDNS UDP payload size the client advertises.
const EDNS_PAYLOAD: u16 = 1232;

/// A standard query for `name`/`rtype`: random ID, RD set, and an EDNS OPT (payload 1232, DO
/// clear) when `edns`. Tweak the returned message (flags, `edns`) before `send_udp`/`send_tcp`.
pub fn build_query(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(fqdn(name), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_PAYLOAD);
        opt.set_version(0);
        msg.set_edns(opt);
    }
    msg
}

/// Sends `name`/`rtype` over UDP and returns the reply (see [`build_query`]).
pub async fn query_udp(server: SocketAddr, name: &str, rtype: RecordType, edns: bool) -> Message {
    send_udp(server, &build_query(name, rtype, edns)).await
}

/// Sends `name`/`rtype` over TCP and returns the reply (see [`build_query`]).
pub async fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType, edns: bool) -> Message {
    send_tcp(server, &build_query(name, rtype, edns)).await
}

/// Sends `query` over UDP; panics unless a well-formed response with the same ID arrives in time.
pub async fn send_udp(server: SocketAddr, query: &Message) -> Message {
    let bytes = query.to_vec().expect("encode query");
    let reply = exchange_udp(server, &bytes).await.unwrap_or_else(|| {
        panic!(
            "no UDP reply from {server} within {CLIENT_TIMEOUT:?} to {}",
            describe(query)
        )
    });
    decode_reply(query, &reply, "UDP")
}

/// Sends `query` over TCP; panics unless a well-formed response with the same ID arrives in time.
pub async fn send_tcp(server: SocketAddr, query: &Message) -> Message {
    let bytes = query.to_vec().expect("encode query");
    let reply = exchange_tcp(server, &bytes).await.unwrap_or_else(|| {
        panic!(
            "no TCP reply from {server} within {CLIENT_TIMEOUT:?} to {}",
            describe(query)
        )
    });
    decode_reply(query, &reply, "TCP")
}

/// Sends one datagram from a fresh loopback socket and returns the first datagram that comes
/// back from `server`, or `None` if nothing does within [`CLIENT_TIMEOUT`].
pub async fn exchange_udp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    exchange_udp_from(loopback_like(server), server, bytes).await
}

/// Sends `name`/`rtype` over UDP from the source address `source` (another 127.0.0.x stands in
/// for another device of the house) and returns the reply.
pub async fn query_udp_from(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: bool,
) -> Message {
    send_udp_from(source, server, &build_query(name, rtype, edns)).await
}

/// [`query_udp_from`] with `options` in the query's EDNS record: a forwarding router naming
/// the client it asks for (EDNS Client Subnet, dnsmasq's MAC address options).
pub async fn query_udp_naming(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
    options: &[EdnsOption],
) -> Message {
    let mut query = build_query(name, RecordType::A, true);
    let edns = query.edns.as_mut().expect("an EDNS query");
    for option in options {
        edns.options_mut().insert(option.clone());
    }
    send_udp_from(source, server, &query).await
}

/// [`send_udp`] from the source address `source`.
pub async fn send_udp_from(source: IpAddr, server: SocketAddr, query: &Message) -> Message {
    let bytes = query.to_vec().expect("encode query");
    let reply = exchange_udp_from(source, server, &bytes)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no UDP reply from {server} to {source} for {}",
                describe(query)
            )
        });
    decode_reply(query, &reply, "UDP")
}

/// [`exchange_udp`] from the source address `source`.
pub async fn exchange_udp_from(
    source: IpAddr,
    server: SocketAddr,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .expect("bind client UDP socket");
    socket
        .connect(server)
        .await
        .expect("connect client UDP socket");
    socket.send(bytes).await.expect("send UDP query");
    let mut buf = vec![0u8; 65535];
    // A connected socket only receives from `server`. An ICMP "port unreachable" surfaces as an
    // error: treat it like silence.
    match timeout(CLIENT_TIMEOUT, socket.recv(&mut buf)).await {
        Ok(Ok(len)) => {
            buf.truncate(len);
            Some(buf)
        }
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Opens a TCP connection, sends `bytes` with a 2-byte length prefix and returns the first framed
/// message read back, or `None` on refusal, close, or timeout (all within [`CLIENT_TIMEOUT`]).
pub async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    exchange_tcp_from(loopback_like(server), server, bytes).await
}

/// A TCP connection to `server` from the source address `source` (another 127.0.0.x stands in
/// for another device of the house).
pub async fn connect_tcp_from(source: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(server).await
}

/// [`exchange_tcp`] from the source address `source`.
pub async fn exchange_tcp_from(
    source: IpAddr,
    server: SocketAddr,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let len = u16::try_from(bytes.len()).expect("DNS message over 65535 bytes");
    let exchange = async {
        let mut stream = connect_tcp_from(source, server).await.ok()?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.ok()?;
        let mut len_buf = [0u8; 2];
        stream.read_exact(&mut len_buf).await.ok()?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len_buf))];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    timeout(CLIENT_TIMEOUT, exchange).await.ok().flatten()
}

fn decode_reply(query: &Message, reply: &[u8], proto: &str) -> Message {
    let msg = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("undecodable {proto} reply to {}: {e}", describe(query)));
    assert_eq!(
        msg.metadata.id,
        query.metadata.id,
        "{proto} reply ID differs from the query's for {}",
        describe(query)
    );
    assert_eq!(
        msg.metadata.message_type,
        MessageType::Response,
        "{proto} reply to {} is not a response",
        describe(query)
    );
    msg
}

fn describe(query: &Message) -> String {
    match query.queries.first() {
        Some(q) => format!("{} {}", q.name(), q.query_type()),
        None => "a query without question".to_owned(),
    }
}

/// The client binds the same loopback family as the server it talks to.
fn loopback_like(server: SocketAddr) -> IpAddr {
    match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}
