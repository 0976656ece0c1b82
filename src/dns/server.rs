//! The DNS listeners: UDP and TCP sockets on every configured address, served by
//! hickory-server's `Server` with our [`Handler`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use super::Handler;

/// A TCP connection that sends nothing for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running DNS server.
pub struct DnsServer {
    server: Server<Handler>,
    /// The addresses actually bound (port 0 resolved), UDP and TCP alike.
    pub local_addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on each of `listen` and starts serving. When a port is 0 the OS
    /// picks one, the same for UDP and TCP.
    pub async fn bind(listen: &[SocketAddr], handler: Handler) -> io::Result<Self> {
        let mut server = Server::new(handler);
        let mut local_addrs = Vec::with_capacity(listen.len());
        for &address in listen {
            let (udp, tcp) = bind_pair(address)?;
            let local = udp.local_addr()?;
            info!("listening for UDP on {local}");
            info!("listening for TCP on {}", tcp.local_addr()?);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, 4096);
            local_addrs.push(local);
        }
        Ok(Self {
            server,
            local_addrs,
        })
    }

    /// Stops accepting, lets queries in flight finish, and returns when every listener task
    /// has ended.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(%error, "DNS server stopped with an error");
        }
    }
}

/// Binds UDP and TCP on the same address and port. With port 0, the port the OS gave UDP
/// might be taken for TCP: a few tries with fresh ports.
fn bind_pair(address: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..8 {
        let udp = bind_udp(address)?;
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if address.port() == 0 => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("could not bind UDP and TCP on one port")))
}

/// IPv6 sockets are IPv6-only, so `0.0.0.0:53` and `[::]:53` can both be listed.
fn socket(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket(address, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket(address, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
