//! One WebSocket attached to one session: client frames to the TTY, session events to the client.
//!
//! The two directions run as two halves of one task, joined rather than selected, so that a
//! program that is not reading its input (a write blocked on the TTY) never stops its output from
//! flowing, and a slow browser (a full send queue) never stops keystrokes from arriving. The
//! session's pump (session.rs) reads the TTY; pausing simply tells it to stop reading, so the
//! program blocks on its own output and nothing is lost or buffered without bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::protocol::{parse_client_text, ErrorCode, Request, ServerFrame};
use crate::session::{Attached, Event, LiveSession};
use crate::tty::TtyError;

/// Close code for a socket whose session was re-attached from another socket.
const CLOSE_TAKEN_OVER: u16 = 4001;

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
            last_heard: Instant::now(),
        };
        let inbound = async move {
            inbound.run(stream, output_done_rx, cfg.ping_interval).await;
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
        match event {
            Some(Event::Output(bytes)) => {
                metrics
                    .bytes_out
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if ws.binary(bytes).await.is_err() {
                    return;
                }
            }
            Some(Event::Ended(Ok(code))) => {
                let _ = ws.text(ServerFrame::Exit { code }.to_json()).await;
                let _ = ws.close(Some(CloseCode::Normal.into())).await;
                return;
            }
            Some(Event::ShuttingDown) => {
                let message =
                    "the server is shutting down (restart or upgrade): reconnect in a moment";
                let code = ErrorCode::BackendUnavailable;
                let _ = ws
                    .text(ServerFrame::Error { code, message }.to_json())
                    .await;
                let _ = ws.close(Some(CloseCode::Away.into())).await;
                return;
            }
            Some(Event::Ended(Err(message))) => {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                let code = ErrorCode::BackendUnavailable;
                let frame = ServerFrame::Error {
                    code,
                    message: &message,
                };
                let _ = ws.text(frame.to_json()).await;
                let _ = ws.close(Some(CloseCode::Error.into())).await;
                return;
            }
            None => {
                let reason = CloseReason {
                    code: CloseCode::Other(CLOSE_TAKEN_OVER),
                    description: Some("session attached from another connection".into()),
                };
                let _ = ws.close(Some(reason)).await;
                return;
            }
        }
    }
}

struct Inbound {
    ws: Session,
    session: Arc<LiveSession>,
    paused: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    busy_poll: Duration,
    last_heard: Instant,
}

impl Inbound {
    async fn run(
        mut self,
        mut stream: AggregatedMessageStream,
        mut output_done: watch::Receiver<bool>,
        ping_interval: Duration,
    ) {
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
        loop {
            let message = tokio::select! {
                message = stream.recv() => message,
                _ = pings.tick() => {
                    if !self.keep_alive(ping_interval).await {
                        return;
                    }
                    continue;
                }
                // The outbound half has closed the socket.
                _ = output_done.changed() => return,
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
    async fn keep_alive(&mut self, interval: Duration) -> bool {
        if self.last_heard.elapsed() > interval * 3 {
            log::info!("closing a WebSocket whose peer stopped answering pings");
            let _ = self.ws.clone().close(Some(CloseCode::Away.into())).await;
            return false;
        }
        // A full send queue (a peer that stopped reading) must not stall this half.
        let _ = tokio::time::timeout(interval, self.ws.ping(b"")).await;
        true
    }

    /// Handles one client message; false when the socket is done.
    async fn handle(&mut self, message: AggregatedMessage) -> bool {
        match message {
            AggregatedMessage::Binary(bytes) => self.write(&bytes).await,
            AggregatedMessage::Text(text) => self.control(&text).await,
            AggregatedMessage::Ping(payload) => self.ws.pong(&payload).await.is_ok(),
            AggregatedMessage::Pong(_) => true,
            AggregatedMessage::Close(reason) => {
                let _ = self.ws.clone().close(reason).await;
                false
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        crate::spin::after_input(self.busy_poll);
        self.metrics
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match self.session.tty.write(bytes).await {
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
            Request::Input(data) => self.write(data.as_bytes()).await,
            Request::Resize(size) => match self.session.tty.resize(size).await {
                Ok(()) => {
                    self.session.resized(size);
                    true
                }
                Err(TtyError::Closed) => true,
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
            Request::Ping(id) => {
                let pong = ServerFrame::Pong { id: &id }.to_json();
                self.ws.text(pong).await.is_ok()
            }
        }
    }

    /// Sends an `error` frame; the session goes on. False only when the socket is gone.
    async fn report(&mut self, code: ErrorCode, message: &str) -> bool {
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        let frame = ServerFrame::Error { code, message }.to_json();
        self.ws.text(frame).await.is_ok()
    }

    /// Closes the socket for a protocol violation: 1009 for an oversized frame, 1002 otherwise.
    async fn close_for(&mut self, err: &actix_ws::ProtocolError) {
        let code = match err {
            actix_ws::ProtocolError::Overflow => CloseCode::Size,
            // actix-ws reports an oversized message split into continuation frames as an I/O error.
            actix_ws::ProtocolError::Io(e) if e.to_string().contains("size") => CloseCode::Size,
            _ => CloseCode::Protocol,
        };
        log::info!("closing a WebSocket ({code:?}): {err}");
        let reason = CloseReason {
            code,
            description: Some(err.to_string()),
        };
        let _ = self.ws.clone().close(Some(reason)).await;
    }
}
