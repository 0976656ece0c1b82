//! The UDP sockets of upstream queries, handed to hickory-resolver through its
//! `RuntimeProvider` hook: kept open and reused, where hickory on its own opens, binds,
//! registers and closes a fresh socket for every query. (Its TCP streams come through the
//! same hook: [`QuickAckStream`]s.)
//!
//! Why: under forwarding load that life cycle (`socket`, `bind`, two `epoll_ctl`, `close`) took
//! about a sixth of the daemon's core (a `perf` profile, BENCHMARKS.md); reusing sockets lifted
//! uncached queries per core by a quarter or more.
//!
//! What a fresh socket per query was for is kept: a source port an off-path attacker cannot
//! guess (RFC 5452 §9.2), matched together with the random ID and the question by hickory.
//! - Each socket is bound to the random port hickory picked for the query that opened it.
//! - A query takes a random idle socket, not the one returned last.
//! - A socket serves at most [`MAX_USES`] queries and is then closed, so ports keep changing.
//! - A socket goes back to the idle set only after it received a datagram (the reply, in all
//!   but odd cases). One whose query timed out or was abandoned is closed instead, so a late
//!   reply never reaches the next query on that socket (hickory would ignore it, by ID, but
//!   log a warning).
//!
//! Idle sockets are kept per tokio runtime: a socket's readiness is reported by the I/O
//! driver of the runtime it was opened on, and a UDP listener's runtime does not poll its
//! driver while it has nothing waiting (it blocks in the kernel instead, see
//! `crate::server::udp`). A query on another runtime could wait on such a socket forever.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{
    DnsUdpSocket, RuntimeProvider, TokioHandle, TokioRuntimeProvider, TokioTime,
};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::runtime::{self, Handle};

use super::quick_ack::QuickAckStream;

/// Queries one socket carries before it is closed.
const MAX_USES: u32 = 64;
/// Idle sockets kept per upstream and runtime (each is an open file); more are closed when
/// returned. Far above what one upstream has in flight at a household's rates.
const MAX_IDLE: usize = 64;

/// hickory's Tokio runtime, with UDP sockets from a [`SocketPool`] and TCP streams that
/// acknowledge replies at once.
#[derive(Clone, Default)]
pub(super) struct ReusingProvider {
    tokio: TokioRuntimeProvider,
    pool: Arc<SocketPool>,
}

impl ReusingProvider {
    /// The idle sockets of `runtime`, for tests.
    #[cfg(test)]
    fn idle(&self, runtime: runtime::Id) -> usize {
        self.pool.lock().get(&runtime).map_or(0, Vec::len)
    }
}

/// Idle sockets, by the runtime they were opened on, and how many queries each has carried.
#[derive(Default)]
struct SocketPool {
    idle: Mutex<HashMap<runtime::Id, Vec<(UdpSocket, u32)>>>,
}

impl SocketPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<runtime::Id, Vec<(UdpSocket, u32)>>> {
        // Each update is one push or one removal: nothing is left half-done by a panic.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A random idle socket of `runtime`, if any.
    fn take(&self, runtime: runtime::Id) -> Option<(UdpSocket, u32)> {
        let mut pool = self.lock();
        let idle = pool.get_mut(&runtime)?;
        let count = idle.len();
        (count > 0).then(|| idle.swap_remove(fastrand::usize(..count)))
    }

    /// Keeps `socket` of `runtime` for another query, unless it has carried enough or there
    /// are enough.
    fn give_back(&self, runtime: runtime::Id, socket: UdpSocket, uses: u32) {
        let mut pool = self.lock();
        let idle = pool.entry(runtime).or_default();
        if uses < MAX_USES && idle.len() < MAX_IDLE {
            idle.push((socket, uses));
        }
    }
}

/// The socket of one upstream query: back to the pool when hickory drops it, if it received
/// something.
pub(super) struct PooledSocket {
    socket: Option<UdpSocket>,
    /// The runtime whose I/O driver reports the socket's readiness.
    runtime: runtime::Id,
    uses: u32,
    received: AtomicBool,
    pool: Arc<SocketPool>,
}

impl PooledSocket {
    fn socket(&self) -> io::Result<&UdpSocket> {
        self.socket
            .as_ref()
            .ok_or_else(|| io::Error::other("socket already returned"))
    }
}

impl Drop for PooledSocket {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take()
            && self.received.load(Ordering::Relaxed)
        {
            self.pool.give_back(self.runtime, socket, self.uses);
        }
    }
}

impl DnsUdpSocket for PooledSocket {
    type Time = TokioTime;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buf = ReadBuf::new(buf);
        let from = ready!(self.socket()?.poll_recv_from(cx, &mut buf))?;
        self.received.store(true, Ordering::Relaxed);
        Poll::Ready(Ok((buf.filled().len(), from)))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket()?.poll_send_to(cx, buf, target)
    }
}

impl RuntimeProvider for ReusingProvider {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = PooledSocket;
    type Tcp = AsyncIoTokioAsStd<QuickAckStream>;

    fn create_handle(&self) -> Self::Handle {
        self.tokio.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Tcp>>>> {
        // hickory's own connect (TCP_NODELAY, its timeout), then our reading side.
        let connect = self.tokio.connect_tcp(server_addr, bind_addr, timeout);
        Box::pin(async move {
            let AsyncIoTokioAsStd(stream) = connect.await?;
            Ok(AsyncIoTokioAsStd(QuickAckStream::new(stream)))
        })
    }

    /// An idle socket of the calling task's runtime, or a new one bound to `local_addr`
    /// (hickory's random port).
    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        _server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Udp>>>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            // Polled by the query's task: this is the runtime a new socket registers with.
            let runtime = Handle::current().id();
            let (socket, uses) = match pool.take(runtime) {
                Some(idle) => idle,
                None => (UdpSocket::bind(local_addr).await?, 0),
            };
            Ok(PooledSocket {
                socket: Some(socket),
                runtime,
                uses: uses + 1,
                received: AtomicBool::new(false),
                pool,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    const ANY_PORT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

    /// Takes a socket, sends one datagram to `peer` and, if `answered`, reads the echo.
    async fn exchange(provider: &ReusingProvider, peer: &UdpSocket, answered: bool) -> u16 {
        let socket = provider.bind_udp(ANY_PORT, ANY_PORT).await.unwrap();
        let target = peer.local_addr().unwrap();
        socket.send_to(b"q", target).await.unwrap();
        let port = socket.socket().unwrap().local_addr().unwrap().port();
        let mut buf = [0; 8];
        let (_, from) = peer.recv_from(&mut buf).await.unwrap();
        if answered {
            peer.send_to(b"a", from).await.unwrap();
            socket.recv_from(&mut buf).await.unwrap();
        }
        port
    }

    /// The idle sockets of the test's own runtime.
    fn idle_here(provider: &ReusingProvider) -> usize {
        provider.idle(Handle::current().id())
    }

    #[tokio::test]
    async fn answered_sockets_are_reused_up_to_their_limit_and_unanswered_ones_closed() {
        let provider = ReusingProvider::default();
        let peer = UdpSocket::bind(ANY_PORT).await.unwrap();
        let first = exchange(&provider, &peer, true).await;
        assert_eq!(idle_here(&provider), 1, "an answered socket goes back");
        for _ in 1..MAX_USES {
            assert_eq!(exchange(&provider, &peer, true).await, first, "reused");
        }
        assert_eq!(idle_here(&provider), 0, "closed after {MAX_USES} queries");
        let next = exchange(&provider, &peer, true).await;
        assert_ne!(next, first, "a new socket, a new port");
        let unanswered = exchange(&provider, &peer, false).await;
        assert_eq!(unanswered, next, "the idle socket is taken");
        assert_eq!(
            idle_here(&provider),
            0,
            "a socket without a reply is closed, not kept"
        );
    }

    #[tokio::test]
    async fn concurrent_queries_get_sockets_of_their_own() {
        let provider = ReusingProvider::default();
        let one = provider.bind_udp(ANY_PORT, ANY_PORT).await.unwrap();
        let two = provider.bind_udp(ANY_PORT, ANY_PORT).await.unwrap();
        let port = |socket: &PooledSocket| socket.socket().unwrap().local_addr().unwrap().port();
        assert_ne!(port(&one), port(&two));
    }

    #[tokio::test]
    async fn a_socket_is_reused_only_on_the_runtime_it_was_opened_on() {
        let provider = ReusingProvider::default();
        let peer = UdpSocket::bind(ANY_PORT).await.unwrap();
        let here = exchange(&provider, &peer, true).await;
        assert_eq!(idle_here(&provider), 1);
        // A query on another runtime (a UDP listener's) gets a socket of its own.
        let (other_provider, target) = (provider.clone(), peer.local_addr().unwrap());
        let there = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let socket = other_provider.bind_udp(ANY_PORT, target).await.unwrap();
                socket.socket().unwrap().local_addr().unwrap().port()
            })
        })
        .join()
        .unwrap();
        assert_ne!(there, here, "not the idle socket of the test's runtime");
        assert_eq!(idle_here(&provider), 1, "which stays idle for this runtime");
    }
}
