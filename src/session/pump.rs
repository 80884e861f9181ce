//! The pump: one task per session that reads the shell's output into the screen and on to the
//! attached socket, and stops reading while the client has paused (the flow control).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::{Event, LiveSession};
use crate::tty::TtyOutput;

/// How the pump treats output; it changes only with the attachment (a `generation` bump).
enum Reading {
    /// A socket is attached: read unless it has asked for a pause.
    Attached(watch::Receiver<bool>),
    /// No socket: read all the same (see `LiveSession::reading`).
    Detached,
    /// No socket has come yet and there is no screen: leave output in the TTY (the program
    /// waits) until one comes.
    Waiting,
}

/// What the pump waits for next.
enum Wake {
    Output(Option<Bytes>),
    /// The attachment changed.
    Reattached,
    /// The attached client paused or resumed.
    PauseChanged,
}

impl LiveSession {
    /// Feeds output to the screen; returns where to send it.
    fn record(&self, chunk: &Bytes) -> Option<mpsc::Sender<Event>> {
        // Under the lock that `attach` takes: a chunk goes either into the screen a new socket is
        // sent or to that socket, never both.
        let mut shared = self.shared();
        if let Some(screen) = &self.screen {
            screen.feed(chunk.clone());
        }
        shared.output_seen = true;
        shared.attachment.as_ref().map(|a| a.tx.clone())
    }

    /// How the pump treats output under the current attachment.
    fn reading(&self) -> Reading {
        let shared = self.shared();
        match &shared.attachment {
            Some(a) => Reading::Attached(a.paused.clone()),
            // Into the emulated screen; without one, after a socket has come and gone, only
            // the end of the shell is still of interest.
            None if self.screen.is_some() || shared.next_attach > 0 => Reading::Detached,
            None => Reading::Waiting,
        }
    }
}

/// Reads the shell's output until it ends: into the screen, and to the attached socket if any.
/// Not reading while the client has paused is the flow control: the program then blocks.
pub(super) async fn pump(
    session: Arc<LiveSession>,
    mut output: Box<dyn TtyOutput>,
    mut generation: watch::Receiver<u64>,
) {
    let mut reading = session.reading();
    loop {
        let wake = match &mut reading {
            Reading::Attached(paused) if *paused.borrow() => tokio::select! {
                _ = pause_changed(paused) => Wake::PauseChanged,
                _ = generation.changed() => Wake::Reattached,
            },
            Reading::Attached(paused) => tokio::select! {
                biased;
                _ = generation.changed() => Wake::Reattached,
                _ = pause_changed(paused) => Wake::PauseChanged,
                chunk = output.read() => Wake::Output(chunk),
            },
            Reading::Detached => tokio::select! {
                biased;
                _ = generation.changed() => Wake::Reattached,
                chunk = output.read() => Wake::Output(chunk),
            },
            Reading::Waiting => match generation.changed().await {
                Ok(()) => Wake::Reattached,
                Err(_) => break,
            },
        };
        match wake {
            Wake::Output(Some(chunk)) => {
                forward(&session, chunk).await;
                // The socket's tasks share this thread: let them send the chunk before this task
                // reads again (that read mostly finds the PTY empty; it needn't delay an echo).
                tokio::task::yield_now().await;
            }
            Wake::Output(None) => break,
            Wake::Reattached => reading = session.reading(),
            Wake::PauseChanged => {}
        }
    }
    let result = output.exit_code().await.map_err(|e| e.to_string());
    session.end(result).await;
}

/// Resolves when the client pauses or resumes; never once its socket is gone (its detach then
/// bumps the generation instead).
async fn pause_changed(paused: &mut watch::Receiver<bool>) {
    if paused.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn forward(session: &LiveSession, chunk: Bytes) {
    crate::spin::after_output();
    session.count_output(chunk.len());
    if let Some(tx) = session.record(&chunk) {
        // A slow client makes this wait (backpressure); a client that went away makes it fail.
        let _ = tx.send(Event::Output(chunk)).await;
    }
}
