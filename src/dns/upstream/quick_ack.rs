//! The TCP streams of upstream connections (`tcp://`, and under TLS `tls://` and `https://`),
//! handed to hickory through [`super::sockets::ReusingProvider`]: tokio's streams, which
//! acknowledge what they read at once (`TCP_QUICKACK`, set again after every read that got
//! data: Linux clears it by itself as soon as the connection looks interactive).
//!
//! Why: servers that do not set `TCP_NODELAY` on their side (Unbound and nsd among them)
//! hold a reply back (Nagle) while their previous reply is still unacknowledged, and Linux
//! delays the acknowledgement of a received reply until it has something to send, or for
//! 40 ms at least. With queries pipelined on one connection, that something is the next
//! query: every reply waited for the next query to go out. At a steady 2000 uncached
//! queries a second through a local Unbound, the median took 0.70 ms over `tcp://` and
//! `tls://` against 0.27 ms over UDP; acknowledging at once brought it to 0.31 and 0.33 ms
//! (scripts/bench, BENCHMARKS.md).
//! The cost is one `setsockopt` per read and one bare ACK segment per reply burst.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream to an upstream that acknowledges every reply as soon as it is read.
pub(super) struct QuickAckStream {
    stream: TcpStream,
}

impl QuickAckStream {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// Sends the acknowledgement of what was read now (if one is owed), not after the
    /// delayed-ACK timer or with the next query.
    fn acknowledge(&self) {
        // If it fails, acknowledgements are only later: the reply still came.
        let _ = SockRef::from(&self.stream).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut this.stream).poll_read(cx, buf));
        if result.is_ok() && buf.filled().len() > before {
            this.acknowledge();
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hickory writes a message's length and body in one call: one segment, not two.
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Ipv4Addr, TcpListener};

    use hickory_resolver::net::runtime::RuntimeProvider;
    use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::dns::upstream::sockets::ReusingProvider;

    fn acknowledges_at_once(stream: &QuickAckStream) -> bool {
        SockRef::from(&stream.stream).tcp_quickack().unwrap()
    }

    #[tokio::test]
    async fn a_read_reply_is_acknowledged_at_once_even_on_an_interactive_connection() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        // The stream hickory gets for a connected upstream.
        let provider = ReusingProvider::default();
        let AsyncIoTokioAsStd(mut client) =
            provider.connect_tcp(address, None, None).await.unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // Delayed acknowledgements, as Linux switches to when queries follow replies.
        SockRef::from(&client.stream)
            .set_tcp_quickack(false)
            .unwrap();
        assert!(!acknowledges_at_once(&client));

        server.write_all(b"\x00\x01r").unwrap();
        let mut reply = [0; 3];
        client.read_exact(&mut reply).await.unwrap();

        assert!(
            acknowledges_at_once(&client),
            "the reply is acknowledged now, not with the next query"
        );
    }
}
