//! The UDP listener: one receive loop per socket (one socket per core, sharing the port with
//! SO_REUSEPORT so the kernel spreads clients across them).
//!
//! A question answered from memory (blocked, cached, malformed) is answered inline by the
//! loop that received it: no task, no hand-off. Only a question that must wait for an
//! upstream becomes a task of its own, so a slow upstream never holds up the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::response::Transport;
use super::service::SharedService;

/// Largest datagram we read: the biggest EDNS payload a client may advertise.
const MAX_DATAGRAM: usize = 65_535;

/// Serves `socket` until `shutdown`; forwarded questions run as tasks in `tasks`.
pub async fn serve(
    socket: Arc<UdpSocket>,
    service: SharedService,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (length, client) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // ICMP errors from earlier sends surface here on some systems: keep serving.
                Err(error) => { warn!(%error, "UDP receive failed"); continue; }
            },
            () = shutdown.cancelled() => return,
        };
        answer(&socket, &service, &buffer[..length], client, &tasks).await;
    }
}

/// Answers one datagram: inline when the service answers without waiting, else the same
/// unfinished answer continues as a task (nothing is done twice).
async fn answer(
    socket: &Arc<UdpSocket>,
    service: &SharedService,
    request: &[u8],
    client: SocketAddr,
    tasks: &TaskTracker,
) {
    // Port 0 cannot be answered (and is a classic spoofing sign).
    if client.port() == 0 {
        return;
    }
    let service = service.clone();
    let request = request.to_vec();
    let mut reply =
        Box::pin(async move { service.respond(&request, client.ip(), Transport::Udp).await });
    match std::future::poll_fn(|context| Poll::Ready(reply.as_mut().poll(context))).await {
        Poll::Ready(reply) => send(socket, reply, client).await,
        Poll::Pending => {
            let socket = socket.clone();
            tasks.spawn(async move { send(&socket, reply.await, client).await });
        }
    }
}

async fn send(socket: &UdpSocket, reply: Option<Vec<u8>>, client: SocketAddr) {
    if let Some(reply) = reply {
        if let Err(error) = socket.send_to(&reply, client).await {
            tracing::debug!(%error, %client, "UDP send failed");
        }
    }
}
