//! The inbound half of a relay: client frames to the TTY. Input is queued and written beside the
//! reading, so a program that does not read its input never holds back control frames or pings.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::protocol::{parse_client_text, ErrorCode, Pong, Request, ServerFrame};
use crate::session::LiveSession;
use crate::tty::TtyError;

/// Input the relay holds while the TTY does not take it; with more waiting it stops reading the
/// socket (and the client's TCP window closes) until the program reads.
const INPUT_QUEUE_BYTES: usize = 1 << 20;
/// How long a closing socket waits for the client to answer its close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// After our close frame, reads until the client's (or its going away), for at most
/// `CLOSE_REPLY_WAIT`: only then may the connection close without cutting the client's reply off.
async fn await_close_reply(stream: &mut AggregatedMessageStream) {
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, async {
        while let Some(Ok(message)) = stream.recv().await {
            if matches!(message, AggregatedMessage::Close(_)) {
                return;
            }
        }
    })
    .await;
}

/// A write to the TTY in progress.
type Writing = Pin<Box<dyn Future<Output = Result<(), TtyError>>>>;

pub(super) struct Inbound {
    pub(super) ws: Session,
    pub(super) session: Arc<LiveSession>,
    pub(super) paused: watch::Sender<bool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) busy_poll: Duration,
    pub(super) ping_interval: Duration,
    pub(super) last_heard: Instant,
    /// Input received but not yet written: the TTY takes it only as fast as the program reads.
    pub(super) input: VecDeque<Bytes>,
    pub(super) input_bytes: usize,
}

impl Inbound {
    /// Reads client frames until the client goes or the outbound half ends. Input is written to
    /// the TTY beside the reading, not in its way: a program that does not read its input (a
    /// paste into a busy program) must not hold back pause, resize, ping or the client's going
    /// away. Only when `INPUT_QUEUE_BYTES` wait does the relay stop reading the socket.
    pub(super) async fn run(
        mut self,
        mut stream: AggregatedMessageStream,
        mut output_done: watch::Receiver<bool>,
    ) {
        let interval = self.ping_interval;
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut writing: Option<Writing> = None;
        loop {
            if writing.is_none() {
                writing = self.next_write();
            }
            let reading = self.input_bytes < INPUT_QUEUE_BYTES;
            let message = tokio::select! {
                biased;
                written = async {
                    match writing.as_mut() {
                        Some(write) => write.await,
                        None => std::future::pending().await,
                    }
                } => {
                    writing = None;
                    if !self.written(written).await {
                        return;
                    }
                    continue;
                }
                message = stream.recv(), if reading => message,
                _ = pings.tick() => {
                    if !reading {
                        // The silence is ours: we stopped reading, the client did not.
                        self.last_heard = Instant::now();
                    }
                    if !self.keep_alive().await {
                        return;
                    }
                    continue;
                }
                // The outbound half has closed the socket: the client's answer ends the handshake.
                _ = output_done.changed() => {
                    await_close_reply(&mut stream).await;
                    return;
                }
            };
            self.last_heard = Instant::now();
            match message {
                Some(Ok(message)) => {
                    if !self.handle(message).await {
                        return;
                    }
                }
                Some(Err(err)) => {
                    self.close_for(&err).await;
                    return;
                }
                None => return,
            }
        }
    }

    /// Pings the client; false when it has been silent for three intervals.
    async fn keep_alive(&mut self) -> bool {
        if self.last_heard.elapsed() > self.ping_interval * 3 {
            log::info!("closing a WebSocket whose peer stopped answering pings");
            let ws = self.ws.clone();
            self.bounded(ws.close(Some(CloseCode::Away.into()))).await;
            return false;
        }
        let mut ws = self.ws.clone();
        let _ = self.bounded(async move { ws.ping(b"").await }).await;
        true
    }

    /// Waits for a send at most one ping interval: a client whose queue stays full that long has
    /// stopped reading, and must not hold this half (or the session) forever.
    async fn bounded<T>(&self, send: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.ping_interval, send).await.ok()
    }

    async fn send_text(&mut self, text: String) -> bool {
        let mut ws = self.ws.clone();
        matches!(
            self.bounded(async move { ws.text(text).await }).await,
            Some(Ok(()))
        )
    }

    /// Handles one client message; false when the socket is done.
    async fn handle(&mut self, message: AggregatedMessage) -> bool {
        match message {
            AggregatedMessage::Binary(bytes) => {
                self.queue_input(bytes);
                true
            }
            AggregatedMessage::Text(text) => self.control(&text).await,
            AggregatedMessage::Ping(payload) => {
                let mut ws = self.ws.clone();
                let pong = async move { ws.pong(&payload).await };
                matches!(self.bounded(pong).await, Some(Ok(())))
            }
            AggregatedMessage::Pong(_) => true,
            AggregatedMessage::Close(reason) => {
                let ws = self.ws.clone();
                self.bounded(ws.close(reason)).await;
                false
            }
        }
    }

    fn queue_input(&mut self, bytes: Bytes) {
        crate::spin::after_input(self.busy_poll, &bytes);
        self.metrics
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.input_bytes += bytes.len();
        self.input.push_back(bytes);
    }

    fn next_write(&mut self) -> Option<Writing> {
        let chunk = self.input.pop_front()?;
        self.input_bytes -= chunk.len();
        let session = self.session.clone();
        Some(Box::pin(async move { session.write(&chunk).await }))
    }

    /// After a write: false only when the socket is gone.
    async fn written(&mut self, result: Result<(), TtyError>) -> bool {
        match result {
            Ok(()) | Err(TtyError::Closed) => true,
            Err(e) => {
                self.report(ErrorCode::BackendUnavailable, &e.to_string())
                    .await
            }
        }
    }

    async fn control(&mut self, text: &str) -> bool {
        let request = match parse_client_text(text) {
            Ok(request) => request,
            Err(err) => return self.report(err.code, &err.message).await,
        };
        match request {
            Request::Input(data) => {
                self.queue_input(Bytes::copy_from_slice(data.as_bytes()));
                true
            }
            Request::Resize(size) => match self.session.resize(size).await {
                Ok(()) | Err(TtyError::Closed) => true,
                Err(e) => {
                    self.report(ErrorCode::BackendUnavailable, &e.to_string())
                        .await
                }
            },
            Request::Pause => {
                self.paused.send_replace(true);
                true
            }
            Request::Resume => {
                self.paused.send_replace(false);
                true
            }
            Request::Stay => {
                self.session.touch();
                true
            }
            Request::Ping(id) => {
                let pong = ServerFrame::Pong(Pong { id }).to_json();
                self.send_text(pong).await
            }
        }
    }

    /// Sends an `error` frame; the session goes on. False only when the socket is gone.
    async fn report(&mut self, code: ErrorCode, message: &str) -> bool {
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        let frame = ServerFrame::error(code, message).to_json();
        self.send_text(frame).await
    }

    /// Closes the socket for a protocol violation: 1009 for an oversized frame, 1007 for text
    /// that is not UTF-8, 1002 otherwise.
    async fn close_for(&mut self, err: &actix_ws::ProtocolError) {
        let code = match err {
            actix_ws::ProtocolError::Overflow => CloseCode::Size,
            // actix-ws reports an oversized message split into continuation frames, and a text
            // message that is not UTF-8, as I/O errors; only their text tells them apart.
            actix_ws::ProtocolError::Io(e) if e.to_string().contains("size") => CloseCode::Size,
            actix_ws::ProtocolError::Io(e) if e.to_string().contains("utf-8") => CloseCode::Invalid,
            _ => CloseCode::Protocol,
        };
        log::info!("closing a WebSocket ({code:?}): {err}");
        let reason = CloseReason {
            code,
            description: Some(err.to_string()),
        };
        let ws = self.ws.clone();
        self.bounded(ws.close(Some(reason))).await;
    }
}
