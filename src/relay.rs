//! One session's loop: WebSocket frames to and from a `Tty`.
//!
//! The two directions run as two halves of one task, joined rather than selected, so that a
//! program that is not reading its input (a writer blocked on the TTY) never stops its output from
//! flowing, and a slow browser (a full send queue) never stops keystrokes from arriving. Flow
//! control is simply not reading the TTY while the client has asked for a pause: the program then
//! blocks on its own output, and nothing is lost or buffered without bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::protocol::{parse_client_text, ErrorCode, Request, ServerFrame};
use crate::tty::{Tty, TtyError, TtyOutput};

/// What the relay needs to know about its session, besides the TTY.
pub struct RelayConfig {
    pub ping_interval: Duration,
}

/// Relays between `ws` and the TTY until the shell exits or the client goes away, then hangs the
/// TTY up. `ready` is the already-encoded first frame.
pub async fn run(
    ws: Session,
    stream: AggregatedMessageStream,
    tty: Arc<dyn Tty>,
    output: Box<dyn TtyOutput>,
    ready: String,
    cfg: RelayConfig,
    metrics: Arc<Metrics>,
) {
    if ws.clone().text(ready).await.is_ok() {
        let (paused_tx, paused_rx) = watch::channel(false);
        let (client_gone_tx, client_gone_rx) = watch::channel(false);
        let (output_done_tx, output_done_rx) = watch::channel(false);
        let inbound = Inbound {
            ws: ws.clone(),
            tty: tty.clone(),
            paused: paused_tx,
            metrics: metrics.clone(),
            last_heard: Instant::now(),
        };
        let inbound = async move {
            inbound.run(stream, output_done_rx, cfg.ping_interval).await;
            let _ = client_gone_tx.send(true);
        };
        let outbound = async move {
            relay_output(ws, output, paused_rx, client_gone_rx, metrics).await;
            let _ = output_done_tx.send(true);
        };
        tokio::join!(inbound, outbound);
    }
    tty.hangup().await;
}

/// Copies TTY output to the socket until the shell exits (then sends `exit` and closes with 1000)
/// or `done` says the client is gone.
async fn relay_output(
    mut ws: Session,
    mut output: Box<dyn TtyOutput>,
    mut paused: watch::Receiver<bool>,
    mut done: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        if *paused.borrow_and_update() {
            tokio::select! {
                _ = paused.changed() => continue,
                _ = done.changed() => return,
            }
        }
        let chunk = tokio::select! {
            biased;
            _ = done.changed() => return,
            _ = paused.changed() => continue,
            chunk = output.read() => chunk,
        };
        match chunk {
            Some(bytes) => {
                metrics.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if ws.binary(bytes).await.is_err() {
                    return;
                }
            }
            None => break,
        }
    }
    match output.exit_code().await {
        Ok(code) => {
            let _ = ws.text(ServerFrame::Exit { code }.to_json()).await;
            let _ = ws.close(Some(CloseCode::Normal.into())).await;
        }
        Err(e) => {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            let message = e.to_string();
            let code = ErrorCode::BackendUnavailable;
            let _ = ws.text(ServerFrame::Error { code, message: &message }.to_json()).await;
            let _ = ws.close(Some(CloseCode::Error.into())).await;
        }
    }
}

struct Inbound {
    ws: Session,
    tty: Arc<dyn Tty>,
    paused: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    last_heard: Instant,
}

impl Inbound {
    async fn run(
        mut self,
        mut stream: AggregatedMessageStream,
        mut output_done: watch::Receiver<bool>,
        ping_interval: Duration,
    ) {
        let mut pings = tokio::time::interval_at(
            tokio::time::Instant::now() + ping_interval,
            ping_interval,
        );
        loop {
            let message = tokio::select! {
                message = stream.recv() => message,
                _ = pings.tick() => {
                    if !self.keep_alive(ping_interval).await {
                        return;
                    }
                    continue;
                }
                // The shell exited and the outbound half has closed the socket.
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

    /// Handles one client message; false when the session is over.
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
        self.metrics
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match self.tty.write(bytes).await {
            Ok(()) | Err(TtyError::Closed) => true,
            Err(e) => self.report(ErrorCode::BackendUnavailable, &e.to_string()).await,
        }
    }

    async fn control(&mut self, text: &str) -> bool {
        let request = match parse_client_text(text) {
            Ok(request) => request,
            Err(err) => return self.report(err.code, &err.message).await,
        };
        match request {
            Request::Input(data) => self.write(data.as_bytes()).await,
            Request::Resize(size) => match self.tty.resize(size).await {
                Ok(()) | Err(TtyError::Closed) => true,
                Err(e) => self.report(ErrorCode::BackendUnavailable, &e.to_string()).await,
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
