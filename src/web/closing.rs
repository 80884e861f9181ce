//! The body of a WebSocket's 101 response: when the closing handshake is over it ends the
//! connection's read side, so actix closes the TCP connection at once instead of lingering until
//! the client closes it (which an RFC 6455 client never does first) or a second has passed.

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use tokio::sync::oneshot;

/// The connection's socket, put into each connection's data when it is accepted.
#[derive(Clone, Copy)]
pub(super) struct ConnSocket(pub RawFd);

/// Held by the relay: dropping it says the relay reads no more (the closing handshake is done,
/// or the client is gone).
pub(super) type ReadingDone = oneshot::Sender<()>;

/// Wraps a WebSocket response body. Once it has ended and the relay has dropped its
/// [`ReadingDone`], the socket's read side is shut: actix's dispatcher, which after a body that
/// left its request's payload unread waits for the client's end of the stream, then reads that
/// end at once, sends what it still holds, and closes the connection.
pub(super) struct ClosingBody {
    inner: BoxBody,
    socket: Option<ConnSocket>,
    reading_done: oneshot::Receiver<()>,
    inner_ended: bool,
}

impl ClosingBody {
    pub(super) fn new(inner: BoxBody, socket: Option<ConnSocket>) -> (Self, ReadingDone) {
        let (tx, reading_done) = oneshot::channel();
        let body = ClosingBody {
            inner,
            socket,
            reading_done,
            inner_ended: false,
        };
        (body, tx)
    }
}

impl MessageBody for ClosingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if !this.inner_ended {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(None) => this.inner_ended = true,
                other => return other,
            }
        }
        // Until the relay has the client's close frame, the dispatcher must go on reading.
        if Pin::new(&mut this.reading_done).poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(ConnSocket(fd)) = this.socket.take() {
            // The dispatcher that polls this body owns the connection, so `fd` is still this
            // connection's socket. Only reading ends: what is queued to send still goes, then FIN.
            // SAFETY: shutdown(2) on a file descriptor touches no memory of ours.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
        Poll::Ready(None)
    }
}
