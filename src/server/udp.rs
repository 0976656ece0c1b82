//! The UDP listener: one receive loop per socket (one socket per core, sharing the port with
//! SO_REUSEPORT so the kernel spreads clients across them), each on an OS thread of its own
//! with a single-threaded tokio runtime that also drives that socket's waiting questions.
//!
//! Why not tasks on the shared runtime: a question answered from memory (blocked, cached,
//! malformed) costs the service about 1–2 µs, so per-datagram overhead decides the rate.
//! A plain tokio loop pays for one `recvfrom` and one `sendto` per query, and a copy plus a
//! boxed future per datagram. Here one `recvmmsg` takes up to [`BATCH`] datagrams, every
//! answer ready without waiting goes back in one `sendmmsg`, and the buffers and the boxed
//! future are reused: nothing is allocated per datagram on that path except the reply the
//! service builds.
//!
//! A question that must wait for an upstream is not answered twice: the same unfinished
//! future (with the request buffer it owns) continues as a task on this thread's runtime,
//! which sends its reply with a plain non-blocking `sendto` on the same socket. Its upstream
//! exchange, timers and wake-ups all stay on this thread: no hand-off to another thread and
//! back, which cost forwarded queries a cross-thread wake-up each way.
//!
//! # Two ways to wait
//! While no task is alive on the runtime, the loop blocks in `recvmmsg` itself, the
//! cheapest wait (one system call a batch). While questions wait, it waits through the
//! runtime instead (readiness from `epoll`, like any tokio socket), so their upstream
//! replies and timers wake it too, and it yields after every batch so they get their turn.
//! The catch: while blocked in the kernel the runtime's I/O driver is not polled, so a task
//! of another runtime must never wait on a socket or timer of this one; the upstream
//! sockets are therefore kept per runtime (`crate::dns::Upstreams`), and a fetch shared by
//! questions of several runtimes is driven only by its own task
//! ([`crate::pipeline`]).
//!
//! Stopping: the loop ends when `shutdown` is cancelled (a blocked receive times out every
//! so often to look); the questions still waiting get [`DRAIN_TIMEOUT`] to finish before
//! the runtime (and with it the thread) ends.

use std::future::Future;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use socket2::{SockAddr, Socket};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::DRAIN_TIMEOUT;
use super::service::SharedService;
use crate::dns::Transport;

/// Datagrams taken (and replies sent) per system call.
const BATCH: usize = 32;

/// Largest request we read. Queries are tiny (a question and an OPT record); a datagram
/// longer than this is cut by the kernel and dropped (like a malformed one, unanswered).
const MAX_REQUEST: usize = 4096;

/// What a question's future gives back: the reply, and the request buffer for reuse.
type Answered = (Option<Vec<u8>>, Vec<u8>);

/// Starts the receive loop for `socket` (blocking, with a receive timeout) on a thread of
/// its own; the thread ends once `shutdown` is cancelled and the questions it was waiting
/// on are done. The thread builds its runtime itself and reports whether the socket could
/// be watched: a runtime dropped inside another runtime makes tokio panic, so it never
/// leaves its thread, even when starting fails.
pub(super) fn spawn(
    socket: Socket,
    service: SharedService,
    shutdown: CancellationToken,
) -> io::Result<JoinHandle<()>> {
    let name = match socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
    {
        Some(address) => format!("udp {address}"),
        None => "udp".to_owned(),
    };
    let (report, started) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        match Listener::start(socket, service) {
            Ok((runtime, listener)) => {
                // The caller waits for this; it cannot have gone.
                let _ = report.send(Ok(()));
                runtime.block_on(listener.run(shutdown));
            }
            Err(error) => {
                let _ = report.send(Err(error));
            }
        }
    })?;
    // Blocks the caller for the few microseconds it takes to build a runtime and register a
    // socket, once per socket at startup.
    started
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the UDP listener thread died starting")))?;
    Ok(thread)
}

/// One socket's loop and the questions it left waiting.
struct Listener {
    socket: AsyncFd<Arc<Socket>>,
    service: SharedService,
    tasks: TaskTracker,
}

impl Listener {
    /// A single-threaded runtime for the calling thread, and the listener of `socket`,
    /// registered with that runtime's I/O driver so readiness is reported on this thread.
    fn start(socket: Socket, service: SharedService) -> io::Result<(Runtime, Self)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let socket = {
            let _runtime = runtime.enter();
            // SAFETY: the AsyncFd owns an Arc of the socket, so the descriptor stays open
            // (and the same) for as long as the AsyncFd lives.
            unsafe { AsyncFd::register_with_interest(Arc::new(socket), Interest::READABLE) }?
        };
        let listener = Self {
            socket,
            service,
            tasks: TaskTracker::new(),
        };
        Ok((runtime, listener))
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut stopped = pin!(shutdown.cancelled());
        let runtime = tokio::runtime::Handle::current().metrics();
        let mut batch = Batch::new();
        // One boxed future, reused for every question answered without waiting.
        let mut spare = None;
        loop {
            let received = if runtime.num_alive_tasks() == 0 {
                // Nothing on this runtime waits: block in the kernel for the next datagrams,
                // the cheapest wait there is (one system call a batch, where waiting through
                // the runtime adds an `epoll_wait` and the scheduler's turn). The receive
                // times out now and then so the loop sees `shutdown`.
                if shutdown.is_cancelled() {
                    break;
                }
                batch.receive(self.socket.get_ref(), Wait::Blocking)
            } else {
                // Questions wait for upstreams: wait through the runtime, which also wakes
                // for their replies and timers.
                let mut ready = tokio::select! {
                    biased;
                    () = &mut stopped => break,
                    ready = self.socket.readable() => match ready {
                        Ok(ready) => ready,
                        Err(error) => {
                            warn!(%error, "UDP socket failed; this listener stops");
                            break;
                        }
                    },
                };
                let received = batch.receive(self.socket.get_ref(), Wait::No);
                // Fewer than asked for, or none: the queue is empty, and the next datagram
                // raises a new readiness event.
                match &received {
                    Ok(count) if *count == BATCH => {}
                    Ok(_) => ready.clear_ready(),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                    Err(_) => {}
                }
                received
            };
            let received = match received {
                Ok(received) => received,
                // Nothing yet (the receive timeout, or an empty queue), or a signal.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                // ICMP errors from earlier sends surface here on some systems: keep serving.
                Err(error) => {
                    warn!(%error, "UDP receive failed");
                    continue;
                }
            };
            // One reading of the clock for the whole batch: the datagrams arrived together.
            let received_at = Instant::now();
            for slot in 0..received {
                // Port 0 and cut datagrams are dropped unanswered.
                let Some(client) = batch.source(slot) else {
                    continue;
                };
                let request = std::mem::take(&mut batch.buffers[slot]);
                let length = batch.length(slot);
                let future = respond(self.service.clone(), request, length, client, received_at);
                self.answer(&mut batch, slot, client, future, &mut spare);
            }
            batch.send_replies(self.socket.get_ref());
            // Let the questions that wait, and the I/O driver behind their upstream
            // replies, run before the next batch.
            if runtime.num_alive_tasks() > 0 {
                tokio::task::yield_now().await;
            }
        }
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("UDP queries still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }

    /// Runs `future`, the answer to the datagram in `slot`, in `spare`'s box if there is one.
    /// When the service answers without waiting, the reply joins the batch's and the request
    /// buffer and the box are kept; else the same unfinished answer continues as a task. An
    /// answer that panics is dropped unanswered, like any other bad datagram.
    fn answer<F>(
        &self,
        batch: &mut Batch,
        slot: usize,
        client: SocketAddr,
        future: F,
        spare: &mut Option<Pin<Box<F>>>,
    ) where
        F: Future<Output = Answered> + Send + 'static,
    {
        let mut reply = match spare.take() {
            Some(mut boxed) => {
                boxed.set(future);
                boxed
            }
            None => Box::pin(future),
        };
        match poll_inline(reply.as_mut()) {
            None => {
                // The request buffer went down with the future.
                batch.buffers[slot] = vec![0; MAX_REQUEST];
                error!(%client, "answering a UDP question panicked: it is dropped, the listener goes on");
            }
            Some(Poll::Ready((reply_bytes, request))) => {
                batch.buffers[slot] = request;
                if let Some(reply_bytes) = reply_bytes {
                    batch.replies.push((reply_bytes, slot));
                }
                *spare = Some(reply);
            }
            Some(Poll::Pending) => {
                batch.buffers[slot] = vec![0; MAX_REQUEST];
                let socket = self.socket.get_ref().clone();
                self.tasks.spawn(async move {
                    if let (Some(reply), _) = reply.await {
                        send_one(&socket, &reply, client);
                    }
                });
            }
        }
    }
}

/// Polls `future` once, on this thread, with a waker that does nothing (a question that
/// waits must not wake the loop; as a task it registers its own); `None` if it panicked.
/// A panic in a task only ends that task, but here it would unwind the listener's thread and
/// take the socket's share of the clients with it.
fn poll_inline<F: Future>(future: Pin<&mut F>) -> Option<Poll<F::Output>> {
    let mut context = Context::from_waker(Waker::noop());
    std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(&mut context))).ok()
}

/// The service's answer to the first `length` bytes of `request`, received at `received`. The future owns what it
/// uses, so it can outlive the loop's turn, and gives the buffer back when done. Every call
/// has the same future type, so one box can hold them all in turn.
async fn respond(
    service: SharedService,
    request: Vec<u8>,
    length: usize,
    client: SocketAddr,
    received: Instant,
) -> Answered {
    let reply = service
        .respond(&request[..length], client.ip(), Transport::Udp, received)
        .await;
    (reply, request)
}

/// A reply that waited for an upstream: sent alone, without blocking the runtime's thread.
fn send_one(socket: &Socket, reply: &[u8], client: SocketAddr) {
    if let Err(error) =
        socket.send_to_with_flags(reply, &SockAddr::from(client), libc::MSG_DONTWAIT)
    {
        debug!(%error, %client, "UDP send failed");
    }
}

/// Whether a receive waits for the first datagram.
#[derive(Clone, Copy)]
enum Wait {
    Blocking,
    No,
}

/// The buffers of one `recvmmsg`/`sendmmsg` round, reused from round to round.
struct Batch {
    /// One request buffer per slot, [`MAX_REQUEST`] bytes each.
    buffers: Vec<Vec<u8>>,
    /// The source address of each slot's datagram, also the destination of its reply.
    sources: [libc::sockaddr_storage; BATCH],
    /// The receive headers; only valid during [`Batch::receive`] (they point into `self`).
    received: [libc::mmsghdr; BATCH],
    /// The replies of this round and the slot each answers.
    replies: Vec<(Vec<u8>, usize)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            buffers: (0..BATCH).map(|_| vec![0; MAX_REQUEST]).collect(),
            // SAFETY: sockaddr_storage and mmsghdr are plain C structs (integers, arrays and
            // raw pointers) for which all-zero bytes are a valid value.
            sources: unsafe { zeroed() },
            // SAFETY: as above.
            received: unsafe { zeroed() },
            replies: Vec::with_capacity(BATCH),
        }
    }

    /// Takes the datagrams queued on `socket`, up to [`BATCH`]; returns how many, or
    /// `WouldBlock` when there are none (after the socket's receive timeout, if `wait` is
    /// [`Wait::Blocking`]).
    fn receive(&mut self, socket: &Socket, wait: Wait) -> io::Result<usize> {
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|slot| {
            let buffer = &mut self.buffers[slot];
            libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            }
        });
        for (slot, header) in self.received.iter_mut().enumerate() {
            header.msg_hdr = libc::msghdr {
                msg_name: (&raw mut self.sources[slot]).cast(),
                msg_namelen: socklen_of::<libc::sockaddr_storage>(),
                msg_iov: &raw mut iovecs[slot],
                msg_iovlen: 1,
                msg_control: std::ptr::null_mut(),
                msg_controllen: 0,
                msg_flags: 0,
            };
            header.msg_len = 0;
        }
        // SAFETY: `received` holds BATCH headers whose name and iovec pointers point at
        // `sources`, `iovecs` and `buffers` with the lengths given; all of them outlive the
        // call and are not otherwise touched during it. A null timeout is allowed.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.received.as_mut_ptr(),
                BATCH as libc::c_uint,
                match wait {
                    // Returns as soon as one datagram is in, with the others queued by then.
                    Wait::Blocking => libc::MSG_WAITFORONE,
                    Wait::No => libc::MSG_DONTWAIT,
                },
                std::ptr::null_mut(),
            )
        };
        // The headers point at `iovecs`, which dies here: forget the pointers.
        for header in &mut self.received {
            header.msg_hdr.msg_iov = std::ptr::null_mut();
        }
        usize::try_from(count).map_err(|_| io::Error::last_os_error())
    }

    /// How many bytes the datagram in `slot` holds.
    fn length(&self, slot: usize) -> usize {
        self.received[slot].msg_len as usize
    }

    /// Who sent the datagram in `slot`, or `None` when it must be dropped unanswered: cut
    /// to [`MAX_REQUEST`], from port 0 (cannot be answered, a classic spoofing sign), or
    /// from an address that is neither IPv4 nor IPv6.
    fn source(&self, slot: usize) -> Option<SocketAddr> {
        let header = &self.received[slot].msg_hdr;
        if header.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let client = socket_addr(&self.sources[slot], header.msg_namelen)?;
        (client.port() != 0).then_some(client)
    }

    /// Sends this round's replies, each to the address its question came from, in as few
    /// `sendmmsg` calls as the kernel allows; a reply the kernel refuses is skipped.
    fn send_replies(&mut self, socket: &Socket) {
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let count = self.replies.len();
        for (index, (reply, slot)) in self.replies.iter_mut().enumerate() {
            iovecs[index] = libc::iovec {
                iov_base: reply.as_mut_ptr().cast(),
                iov_len: reply.len(),
            };
            headers[index].msg_hdr.msg_name = (&raw mut self.sources[*slot]).cast();
            headers[index].msg_hdr.msg_namelen = self.received[*slot].msg_hdr.msg_namelen;
            headers[index].msg_hdr.msg_iov = &raw mut iovecs[index];
            headers[index].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            let remaining = &mut headers[sent..count];
            // SAFETY: the first `count` headers point at `sources` (address lengths as
            // received), `iovecs` and the reply buffers in `replies`; none of them moves or
            // is freed before the call returns.
            let result = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    remaining.as_mut_ptr(),
                    remaining.len() as libc::c_uint,
                    0,
                )
            };
            match usize::try_from(result) {
                Ok(done) if done > 0 => sent += done,
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        // This reply cannot be sent (say, no route): skip it, keep the rest.
                        let client = socket_addr(
                            &self.sources[self.replies[sent].1],
                            headers[sent].msg_hdr.msg_namelen,
                        );
                        debug!(%error, ?client, "UDP send failed");
                        sent += 1;
                    }
                }
            }
        }
        self.replies.clear();
    }
}

/// `size_of::<T>()` as a socket address length.
fn socklen_of<T>() -> libc::socklen_t {
    // Socket address structs are a few dozen bytes: the cast cannot truncate.
    size_of::<T>() as libc::socklen_t
}

/// The address the kernel wrote into `storage` (`length` bytes of it).
fn socket_addr(storage: &libc::sockaddr_storage, length: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if length >= socklen_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked) into
            // storage, which is larger and at least as aligned.
            let v4 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(v4.sin_port)).into())
        }
        libc::AF_INET6 if length >= socklen_of::<libc::sockaddr_in6>() => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6, length checked) into
            // storage, which is larger and at least as aligned.
            let v6 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, IntoRawFd};

    use arc_swap::ArcSwap;

    use super::*;
    use crate::admission::Admission;
    use crate::cache::Cache;
    use crate::dns::Upstreams;
    use crate::metrics::Metrics;
    use crate::pipeline::Pipeline;
    use crate::server::{DnsService, ServiceCounters};

    /// The service on built-in settings, forwarding nowhere.
    fn service() -> SharedService {
        let settings = crate::config::builtin_settings();
        let metrics = Metrics::new();
        let policy = crate::policy::compile(&settings, &metrics, 1);
        let pipeline = Pipeline::new(
            Cache::new(&settings.cache, metrics.cache()),
            Upstreams::new(&[], &metrics),
        );
        Arc::new(DnsService::new(
            Arc::new(ArcSwap::from_pointee(policy)),
            pipeline,
            Admission::new(&settings.admission),
            ServiceCounters::new(&metrics),
        ))
    }

    /// The listener boxes this future for every question that waits (for an upstream): up
    /// to glibc's per-thread cache limit (1032 bytes), that box costs a few nanoseconds;
    /// past it, malloc's slow bins. It was 1152 bytes while the fetch's state was inline.
    #[test]
    fn a_waiting_questions_future_fits_mallocs_per_thread_cache() {
        let client = "127.0.0.1:5353".parse().unwrap();
        let answering = respond(service(), vec![0; 64], 64, client, Instant::now());
        let size = std::mem::size_of_val(&answering);
        assert!(size <= 1032, "the UDP answer's future is {size} bytes");
    }

    #[tokio::test]
    async fn a_socket_the_runtime_cannot_watch_is_an_error_not_a_panic() {
        // epoll refuses regular files (EPERM): a registration that fails, as one could when
        // the process runs out of memory or watches.
        let file = tempfile::tempfile().unwrap();
        // SAFETY: the descriptor is open and owned by nobody else once taken from `file`.
        let socket = unsafe { Socket::from_raw_fd(file.into_raw_fd()) };
        let error = spawn(socket, service(), CancellationToken::new()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
    }

    async fn buggy_service() -> u8 {
        panic!("a bug in the service (expected by this test)")
    }

    #[test]
    fn a_panic_while_answering_inline_is_caught_and_other_answers_are_untouched() {
        let mut ready = pin!(async { 7 });
        assert_eq!(poll_inline(ready.as_mut()), Some(Poll::Ready(7)));
        let mut waiting = pin!(std::future::pending::<u8>());
        assert_eq!(poll_inline(waiting.as_mut()), Some(Poll::Pending));
        let mut panicking = pin!(buggy_service());
        assert_eq!(poll_inline(panicking.as_mut()), None);
    }
}
