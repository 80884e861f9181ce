//! One WebSocket attached to one session: client frames to the TTY, session events to the client.
//! The two directions are two halves of one task, joined rather than selected, so neither stalls
//! the other; a pause only stops the session's pump from reading.

mod inbound;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Exit, Idle, ServerFrame};
use crate::session::{Attached, Event, LiveSession};
use inbound::Inbound;

/// Close code for a socket whose session was re-attached from another socket.
const CLOSE_TAKEN_OVER: u16 = 4001;
/// Close code for a socket detached after no input for `IDLE_SESSION_SECS`.
const CLOSE_IDLE: u16 = 4000;

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
