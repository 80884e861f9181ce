//! One WebSocket attached to one session: client frames to the TTY, session events to the client.
//! The two directions are two halves of one task, joined rather than selected, so neither stalls
//! the other; a pause only stops the session's pump from reading.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::protocol::{parse_client_text, ErrorCode, Exit, Idle, Pong, Request, ServerFrame};
use crate::session::{Attached, Event, LiveSession};
use crate::tty::TtyError;

/// Close code for a socket whose session was re-attached from another socket.
const CLOSE_TAKEN_OVER: u16 = 4001;
/// Close code for a socket detached after no input for `IDLE_SESSION_SECS`.
const CLOSE_IDLE: u16 = 4000;
/// Input the relay holds while the TTY does not take it; with more waiting it stops reading the
/// socket (and the client's TCP window closes) until the program reads.
const INPUT_QUEUE_BYTES: usize = 1 << 20;
/// How long a closing socket waits for the client to answer its close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// What the relay needs besides the session.
pub struct RelayConfig {
    pub ping_interval: Duration,
    pub metrics: Arc<Metrics>,
    /// How long the worker busy-polls after a keystroke (see spin.rs).
    pub busy_poll: Duration,
}

/// Relays between `ws` and `session` until the shell ends, the client goes away (the session
/// then waits for a re-attach), or another socket takes the session over. `greeting` holds the
/// text frames to send first (`ready`, and maybe an `error`).
pub async fn run(
    ws: Session,
    stream: AggregatedMessageStream,
    session: Arc<LiveSession>,
    attached: Attached,
    greeting: Vec<String>,
    cfg: RelayConfig,
) {
    let Attached {
        id,
        events,
        paused,
        screen,
    } = attached;
    if greet(ws.clone(), greeting, screen).await.is_ok() {
        let (client_gone_tx, client_gone_rx) = watch::channel(false);
        let (output_done_tx, output_done_rx) = watch::channel(false);
        let inbound = Inbound {
            ws: ws.clone(),
            session: session.clone(),
            paused,
            metrics: cfg.metrics.clone(),
            busy_poll: cfg.busy_poll,
            ping_interval: cfg.ping_interval,
            last_heard: Instant::now(),
            input: VecDeque::new(),
            input_bytes: 0,
        };
        let inbound = async move {
            inbound.run(stream, output_done_rx).await;
            let _ = client_gone_tx.send(true);
        };
        let outbound = async move {
            relay_events(ws, events, client_gone_rx, cfg.metrics).await;
            let _ = output_done_tx.send(true);
        };
        tokio::join!(inbound, outbound);
    }
    session.detach(id);
}

async fn greet(
    mut ws: Session,
    frames: Vec<String>,
    screen: Vec<u8>,
) -> Result<(), actix_ws::Closed> {
    for frame in frames {
        ws.text(frame).await?;
    }
    if !screen.is_empty() {
        ws.binary(screen).await?;
    }
    Ok(())
}

/// Copies session events to the socket until the session ends (then `exit` and close 1000, or
/// `error` and close 1011), another socket takes over (close 4001), or the client is gone.
async fn relay_events(
    mut ws: Session,
    mut events: mpsc::Receiver<Event>,
    mut client_gone: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        let event = tokio::select! {
            biased;
            _ = client_gone.changed() => return,
            event = events.recv() => event,
        };
        // A client that stops reading fills the socket's queue and every send waits: the inbound
        // half notices the silence and goes, and then so does this half, whatever it was sending.
        let last = tokio::select! {
            biased;
            _ = client_gone.changed() => return,
            last = send_event(&mut ws, event, &metrics) => last,
        };
        if last {
            return;
        }
    }
}

/// Sends one session event; true when it was the last one (or the socket is gone).
async fn send_event(ws: &mut Session, event: Option<Event>, metrics: &Metrics) -> bool {
    match event {
        Some(Event::Output(bytes)) => {
            metrics
                .bytes_out
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            return ws.binary(bytes).await.is_err();
        }
        Some(Event::Ended(Ok(code))) => {
            let _ = ws.text(ServerFrame::Exit(Exit { code }).to_json()).await;
            let _ = ws.clone().close(Some(CloseCode::Normal.into())).await;
        }
        Some(Event::ShuttingDown) => {
            let message = "the server is shutting down (restart or upgrade): reconnect in a moment";
            let code = ErrorCode::BackendUnavailable;
            let _ = ws.text(ServerFrame::error(code, message).to_json()).await;
            let _ = ws.clone().close(Some(CloseCode::Away.into())).await;
        }
        Some(Event::Ended(Err(message))) => {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            let code = ErrorCode::BackendUnavailable;
            let _ = ws.text(ServerFrame::error(code, message).to_json()).await;
            let _ = ws.clone().close(Some(CloseCode::Error.into())).await;
        }
        Some(Event::IdleWarning(detach_in)) => {
            let warning = ServerFrame::Idle(Idle { detach_in }).to_json();
            return ws.text(warning).await.is_err();
        }
        Some(Event::IdleDetach) => {
            let reason = CloseReason {
                code: CloseCode::Other(CLOSE_IDLE),
                description: Some("idle".into()),
            };
            let _ = ws.clone().close(Some(reason)).await;
        }
        None => {
            let reason = CloseReason {
                code: CloseCode::Other(CLOSE_TAKEN_OVER),
                description: Some("session attached from another connection".into()),
            };
            let _ = ws.clone().close(Some(reason)).await;
        }
    }
    true
}

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

struct Inbound {
    ws: Session,
    session: Arc<LiveSession>,
    paused: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    busy_poll: Duration,
    ping_interval: Duration,
    last_heard: Instant,
    /// Input received but not yet written: the TTY takes it only as fast as the program reads.
    input: VecDeque<Bytes>,
    input_bytes: usize,
}

impl Inbound {
    /// Reads client frames until the client goes or the outbound half ends. Input is written to
    /// the TTY beside the reading, not in its way: a program that does not read its input (a
    /// paste into a busy program) must not hold back pause, resize, ping or the client's going
    /// away. Only when `INPUT_QUEUE_BYTES` wait does the relay stop reading the socket.
    async fn run(
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
