//! The transports, above the pipeline: the DNS listeners (UDP and TCP on every configured
//! address, served by our own loops in [`udp`] and [`tcp`]) over one [`DnsService`], the
//! bytes-in, bytes-out edge ([`service`]).
//!
//! hickory-server's `Server` is not used: its TCP handling answers one query at a time per
//! connection with no connection limits (RFC 7766 pipelining and the limits in
//! [`tcp`] need their own loop), and it spawns a task per UDP query even when the
//! answer is already in memory.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

mod service;
mod tcp;
mod udp;

pub use service::{DnsService, ServiceCounters, SharedService, Standing};

/// Time queries in flight get to finish when the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a UDP receive loop, blocked in the kernel, wakes to see if it must stop.
const UDP_WAKE_INTERVAL: Duration = Duration::from_millis(100);

/// Time the UDP threads get to end beyond their own drain (counted from the stop, like it).
const UDP_JOIN_GRACE: Duration = Duration::from_secs(1);

/// The running DNS listeners.
pub struct DnsServer {
    shutdown: CancellationToken,
    /// Listener loops (TCP).
    listeners: TaskTracker,
    /// The UDP receive loops, one OS thread (and runtime) per socket ([`udp`]); each drains
    /// its own queries in flight.
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    /// Stops the UDP threads when the server is dropped without [`DnsServer::shutdown`]:
    /// unlike tasks, they would outlive the runtime.
    _stop_udp_on_drop: DropGuard,
    /// TCP connections and their queries in flight.
    tasks: TaskTracker,
    /// The addresses actually bound (port 0 resolved), UDP and TCP alike.
    pub local_addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP (one socket per core) and TCP on each of `listen` and starts serving, with
    /// at most `tcp_connections` TCP connections over all of them. When a port is 0 the OS
    /// picks one, the same for UDP and TCP.
    pub async fn bind(
        listen: &[SocketAddr],
        service: DnsService,
        tcp_connections: usize,
    ) -> io::Result<Self> {
        let service: SharedService = Arc::new(service);
        let shutdown = CancellationToken::new();
        let stop_udp = shutdown.child_token();
        let server = Self {
            shutdown,
            listeners: TaskTracker::new(),
            udp_threads: Vec::new(),
            _stop_udp_on_drop: stop_udp.clone().drop_guard(),
            tasks: TaskTracker::new(),
            local_addrs: Vec::with_capacity(listen.len()),
        };
        let sockets_per_address = udp_sockets_per_address();
        let tcp_limits = tcp::ConnectionLimits::new(tcp_connections);
        let mut server = server;
        for &address in listen {
            let (udp, tcp) = bind_address(address, sockets_per_address)?;
            let local = tcp.local_addr()?;
            info!("listening for UDP on {local}");
            info!("listening for TCP on {local}");
            for socket in udp {
                let thread = udp::spawn(socket, service.clone(), stop_udp.clone())?;
                server.udp_threads.push(thread);
            }
            let task = tcp::serve(
                tcp,
                service.clone(),
                server.shutdown.clone(),
                server.tasks.clone(),
                tcp_limits.clone(),
            );
            server.listeners.spawn(task);
            server.local_addrs.push(local);
        }
        Ok(server)
    }

    /// Stops accepting, lets queries in flight finish (for up to 3 s), and
    /// returns when the listeners are closed.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        // Each UDP thread sees the stop within one wake interval and drains from there, while
        // the TCP drain runs: its join deadline counts from now, not from the end of a TCP
        // drain that may take no time at all.
        let udp_deadline =
            tokio::time::Instant::now() + UDP_WAKE_INTERVAL + DRAIN_TIMEOUT + UDP_JOIN_GRACE;
        self.listeners.close();
        self.listeners.wait().await;
        // Each UDP thread drains its own queries (for up to DRAIN_TIMEOUT, in parallel with
        // the TCP drain below); joining blocks, so off the runtime.
        let threads = std::mem::take(&mut self.udp_threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    warn!("a UDP listener thread panicked");
                }
            }
        });
        self.tasks.close();
        let tcp_drained = tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait());
        if tcp_drained.await.is_err() {
            warn!("TCP queries still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        if tokio::time::timeout_at(udp_deadline, joined).await.is_err() {
            warn!("UDP listeners still running after their drain; stopping anyway");
        }
    }
}

/// UDP sockets (and receive loops) per listen address: one per core.
fn udp_sockets_per_address() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The descriptors [`DnsServer::bind`] keeps open for `addresses` listen addresses: per
/// address a TCP listener and, per UDP socket, the socket and its thread's runtime (an epoll
/// and a wake-up descriptor).
pub fn listener_descriptors(addresses: usize) -> usize {
    addresses * (udp_sockets_per_address() * 3 + 1)
}

/// Binds `count` UDP sockets sharing one port (SO_REUSEPORT) and a TCP listener on that
/// port. With port 0, the port the OS gave might be taken for TCP: a few tries.
fn bind_address(address: SocketAddr, count: usize) -> io::Result<(Vec<Socket>, TcpListener)> {
    let mut last_error = None;
    for _ in 0..8 {
        let first = bind_udp(address)?;
        let bound = first
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("UDP socket bound to a non-IP address"))?;
        match bind_tcp(bound) {
            Ok(tcp) => {
                let mut udp = vec![first];
                for _ in 1..count {
                    udp.push(bind_udp(bound)?);
                }
                return Ok((udp, tcp));
            }
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
    Ok(socket)
}

/// A socket for a [`udp`] thread, whose blocking receives time out so it can stop.
fn bind_udp(address: SocketAddr) -> io::Result<Socket> {
    let socket = socket(address, Type::DGRAM, Protocol::UDP)?;
    // Several sockets on one port, one receive loop each: the kernel spreads clients.
    socket.set_reuse_port(true)?;
    socket.set_read_timeout(Some(UDP_WAKE_INTERVAL))?;
    socket.bind(&address.into())?;
    Ok(socket)
}

fn bind_tcp(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket(address, Type::STREAM, Protocol::TCP)?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
