//! The TCP listener (RFC 7766), with the limits that keep one client from starving the house:
//! a cap on connections in all (sized from the descriptor budget, [`crate::fd_budget`]),
//! [`MAX_PER_CLIENT`] per client and [`MAX_STRANGER_CONNECTIONS`] for all clients outside
//! `allow_from` together, [`FIRST_MESSAGE_TIMEOUT`] to send the first query and
//! [`IDLE_TIMEOUT`] between queries, at most [`MAX_QUERIES`] queries per connection, up to
//! [`MAX_IN_FLIGHT`] answered concurrently and sent back as they complete (out of order, RFC
//! 7766 §6.2.1.1), and a client that stops reading its answers is reset after
//! [`WRITE_TIMEOUT`].
//!
//! Under pressure (more than three quarters of the cap open) idle connections get only
//! [`PRESSURE_IDLE_TIMEOUT`], and a new connection that finds the cap reached takes the slot of
//! the oldest idle one ([`crate::slots`]), as Unbound and Knot Resolver do: many quiet
//! connections, from however many addresses, cannot keep a new client out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::service::{SharedService, Standing};
use crate::dns::Transport;
use crate::net::{ClientSource, client_source};
use crate::slots::{self, Slots};

/// Connections open at once from one client address.
pub(super) const MAX_PER_CLIENT: usize = 16;
/// Connections open at once from clients outside `allow_from`, all together: they only ever
/// get REFUSED, and must not be able to take the house's connections.
pub(super) const MAX_STRANGER_CONNECTIONS: usize = 16;
/// Time a new connection has to deliver its first query.
pub(super) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may sit idle between queries.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may wait for a query while more than three quarters of the connection
/// cap is open (Unbound cuts its idle timeout likewise under load).
pub(crate) const PRESSURE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Queries answered on one connection before it is closed.
pub(super) const MAX_QUERIES: usize = 100;
/// Queries of one connection being answered at once.
pub(super) const MAX_IN_FLIGHT: usize = 16;
/// Time the client has to take one answer off our hands.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection we ended waits for the client to end its side (see `Connection::run`).
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Pause after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Kernel send buffer of each connection (Linux doubles it for its bookkeeping). Fixing it
/// turns off the kernel's autotuning, which on a fast path like loopback grows a buffer to
/// megabytes: a client that stops reading would pin that much kernel memory per connection,
/// 256 times over, and hide from [`WRITE_TIMEOUT`] until the buffer filled. One full-size
/// DNS message still fits.
const SEND_BUFFER: usize = 64 * 1024;

/// Open connections, in all and per client (an IPv4 address or an IPv6 /64, as the rate
/// limit counts them: one host holds every address of its /64).
/// One set serves every listen address.
pub(crate) struct ConnectionLimits {
    total: Arc<Slots>,
    strangers: Arc<Semaphore>,
    per_client: Mutex<HashMap<ClientSource, usize>>,
}

impl ConnectionLimits {
    /// Limits with at most `max_connections` connections in all.
    pub(crate) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Slots::new(max_connections),
            strangers: Arc::new(Semaphore::new(MAX_STRANGER_CONNECTIONS)),
            per_client: Mutex::new(HashMap::new()),
        })
    }
}

/// A connection's place within the limits, given back when it closes.
struct Slot {
    place: slots::Slot,
    _stranger_permit: Option<OwnedSemaphorePermit>,
    limits: Arc<ConnectionLimits>,
    /// The client it counts against; `None` for a trusted forwarder, which has no limit of
    /// its own.
    client: Option<ClientSource>,
}

impl ConnectionLimits {
    /// A place for a connection from `client`, whose [`Standing`] is `standing`. At the cap,
    /// the oldest idle connection is evicted to make room.
    fn admit(self: &Arc<Self>, client: IpAddr, standing: Standing) -> Option<Slot> {
        let stranger_permit = match standing {
            Standing::Stranger => Some(self.strangers.clone().try_acquire_owned().ok()?),
            Standing::Member | Standing::Forwarder => None,
        };
        let client = (standing != Standing::Forwarder).then(|| client_source(client));
        // Held while a slot is taken, so a client's count and its slots agree.
        let mut per_client = self.per_client.lock().ok()?;
        if let Some(client) = client
            && per_client
                .get(&client)
                .is_some_and(|&open| open >= MAX_PER_CLIENT)
        {
            return None;
        }
        let place = self.total.admit()?;
        if let Some(client) = client {
            *per_client.entry(client).or_default() += 1;
        }
        Some(Slot {
            place,
            _stranger_permit: stranger_permit,
            limits: self.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let Ok(mut per_client) = self.limits.per_client.lock() else {
            return;
        };
        if let Some(open) = per_client.get_mut(&client) {
            *open -= 1;
            if *open == 0 {
                per_client.remove(&client);
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown`; connections run as tasks in `tasks`.
pub(super) async fn serve(
    listener: TcpListener,
    service: SharedService,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    limits: Arc<ConnectionLimits>,
) {
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory, the listener stays ready: retrying at
                    // once would spin a core until a connection closes.
                    tracing::warn!(%error, "TCP accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        // Over a limit (every connection busy, or this client's own limit): close at once;
        // the client retries elsewhere or later.
        let Some(slot) = limits.admit(client.ip(), service.standing(client.ip())) else {
            tracing::debug!(%client, "TCP connection refused: limit reached");
            continue;
        };
        if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!(%client, %error, "TCP send buffer left as the kernel set it");
        }
        let connection = Connection {
            service: service.clone(),
            client,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(connection.run(stream, slot));
    }
}

/// One client connection.
struct Connection {
    service: SharedService,
    client: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Connection {
    async fn run(self, stream: TcpStream, slot: Slot) {
        let (mut reader, writer) = stream.into_split();
        let (replies, queue) = mpsc::channel(MAX_IN_FLIGHT);
        let closed = CancellationToken::new();
        let writer = tokio::spawn(write_replies(writer, queue, closed.clone()));
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        for answered in 0..MAX_QUERIES {
            let mut wait = if answered == 0 {
                FIRST_MESSAGE_TIMEOUT
            } else {
                IDLE_TIMEOUT
            };
            if slot.place.slots().under_pressure() {
                wait = wait.min(PRESSURE_IDLE_TIMEOUT);
            }
            let frame = tokio::select! {
                frame = timeout(wait, read_frame(&mut reader)) => frame,
                () = self.shutdown.cancelled() => break,
                () = closed.cancelled() => break,
                () = slot.place.evicted() => break,
            };
            // Timeout, read error, end of stream or a zero-length frame: done reading.
            let Ok(Some(request)) = frame else { break };
            let received = Instant::now();
            // Busy until its answer is queued: an evicted connection starts nothing more.
            let Some(busy) = slot.place.busy() else { break };
            // At most MAX_IN_FLIGHT at once: past that we stop reading until one finishes.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (service, replies, client) = (self.service.clone(), replies.clone(), self.client);
            self.tasks.spawn(async move {
                if let Some(reply) = service
                    .respond(&request, client.ip(), Transport::Tcp, received)
                    .await
                {
                    // A closed writer means the connection is gone: the answer has nowhere to go.
                    let _ = replies.send(reply).await;
                }
                drop((permit, busy));
            });
        }
        // The writer ends once every answer in flight has been sent (or the client is gone).
        drop(replies);
        let kept_up = writer.await.unwrap_or(false);
        // Closing a socket with bytes still unread (queries pipelined past our limit) makes
        // the kernel reset the connection and throw away answers it has not delivered yet.
        // Our end of the stream follows the last answer: read, and discard, until the client
        // closes its end too, for a little while. Not for a client that stopped reading, nor
        // when the daemon is stopping.
        if kept_up && !self.shutdown.is_cancelled() {
            let mut discarded = tokio::io::sink();
            let _ = timeout(CLOSE_LINGER, tokio::io::copy(&mut reader, &mut discarded)).await;
        }
    }
}

/// Reads one length-prefixed message; `None` at the end of the stream or on a zero length.
async fn read_frame(reader: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let length = usize::from(reader.read_u16().await.ok()?);
    if length == 0 {
        return None;
    }
    let mut message = vec![0; length];
    reader.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// Sends answers as they come, then ends our side of the stream; gives up on a client that
/// does not read them in time, and has the connection reset on close. Whether every answer
/// went out.
async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
) -> bool {
    let mut kept_up = true;
    while let Some(reply) = queue.recv().await {
        let Ok(length) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&reply);
        match timeout(WRITE_TIMEOUT, writer.write_all(&framed)).await {
            Ok(Ok(())) => continue,
            // The client is gone: the kernel has ended the connection already.
            Ok(Err(_)) => {}
            Err(_) => {
                // A plain close would queue our FIN behind the answers the client is not
                // reading: the kernel would keep the orphaned socket and its full send buffer
                // for as long as it keeps probing. With a zero linger, closing resets the
                // connection and frees the buffer at once.
                if let Err(error) =
                    socket2::SockRef::from(writer.as_ref()).set_linger(Some(Duration::ZERO))
                {
                    tracing::debug!(%error, "TCP connection left to close normally");
                }
            }
        }
        kept_up = false;
        break;
    }
    closed.cancel();
    let _ = writer.shutdown().await;
    kept_up
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 256;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn the_addresses_of_one_ipv6_64_count_as_one_client() {
        let limits = ConnectionLimits::new(CAP);
        let held: Vec<Slot> = (1..=MAX_PER_CLIENT)
            .map(|host| limits.admit(ip(&format!("2001:db8:0:1::{host:x}")), Standing::Member))
            .collect::<Option<_>>()
            .expect("within the limit");
        assert!(
            limits
                .admit(ip("2001:db8:0:1::ffff"), Standing::Member)
                .is_none(),
            "another address of the same /64"
        );
        assert!(
            limits
                .admit(ip("2001:db8:0:2::1"), Standing::Member)
                .is_some(),
            "another /64"
        );
        drop(held);
        assert!(
            limits
                .admit(ip("2001:db8:0:1::ffff"), Standing::Member)
                .is_some(),
            "slots given back"
        );
    }

    #[test]
    fn a_trusted_forwarder_has_no_per_client_limit_but_counts_in_the_total() {
        let limits = ConnectionLimits::new(CAP);
        let router = ip("192.168.1.1");
        let held: Vec<Slot> = (0..MAX_PER_CLIENT * 2)
            .map(|_| limits.admit(router, Standing::Forwarder))
            .collect::<Option<_>>()
            .expect("no per-client limit");
        assert_eq!(limits.total.open(), MAX_PER_CLIENT * 2);
        assert!(
            limits.per_client.lock().unwrap().is_empty(),
            "nothing counted against its address"
        );
        drop(held);
        assert_eq!(limits.total.open(), 0);
    }
}
