//! A session over an agent's TCP connection, as the relay sees any terminal: INPUT, RESIZE and
//! HANGUP go out from [`Tty`], OUTPUT and EXIT come in through [`TtyOutput`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use termpool_agent_proto::{
    resize_body, split_message, FrameType, Receiver, Reply, Sender, MAX_BODY, MAX_MESSAGE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use super::{AgentError, Link, RemoteAgent};
use crate::protocol::TermSize;
use crate::tty::{Spawned, Tty, TtyError, TtyOutput, Unavailability};

/// The session from the agent's answer to OPEN.
pub(super) fn started(
    agent: &RemoteAgent,
    link: Link,
    kind: FrameType,
    body: &[u8],
) -> Result<Spawned, AgentError> {
    let reply: Reply = match kind {
        FrameType::Started => serde_json::from_slice(body).map_err(|e| agent.protocol(e))?,
        other => return Err(agent.protocol(format!("{other:?} instead of STARTED"))),
    };
    let pid = match reply {
        Reply { pid: Some(pid), .. } => pid,
        Reply {
            error: Some(error), ..
        } => return Err(agent.protocol(format!("refused to start a shell: {error}"))),
        _ => return Err(agent.protocol("an answer to OPEN that makes no sense")),
    };
    let hung_up = Arc::new(AtomicBool::new(false));
    let tty = Arc::new(RemoteTty {
        out: Mutex::new(Outgoing {
            writer: link.writer,
            tx: link.tx,
            wire: Vec::new(),
            sent: 0,
        }),
        hung_up: hung_up.clone(),
        pid,
    });
    // What the handshake's reader holds beyond STARTED is the session's first output.
    let pending = link.reader.buffer().to_vec();
    let output = Box::new(RemoteOutput {
        reader: link.reader.into_inner(),
        rx: link.rx,
        pending,
        start: 0,
        exit: None,
        hung_up,
        slot: agent.slot.clone(),
    });
    Ok(Spawned { tty, output })
}

/// The sending half: frames are sealed and written in order, one writer at a time. A write
/// the relay cancels halfway leaves its frame here, finished before the next one, so that the
/// stream of sealed frames is never cut.
struct Outgoing {
    writer: OwnedWriteHalf,
    tx: Sender,
    /// The sealed bytes of the frame being written, kept between writes.
    wire: Vec<u8>,
    /// How much of `wire` is written.
    sent: usize,
}

impl Outgoing {
    async fn send(&mut self, kind: FrameType, body: &[u8]) -> Result<(), TtyError> {
        self.flush().await?;
        self.wire.clear();
        self.sent = 0;
        self.tx
            .seal(kind, body, &mut self.wire)
            .map_err(|e| TtyError::Io(std::io::Error::other(e)))?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), TtyError> {
        while self.sent < self.wire.len() {
            match self.writer.write(&self.wire[self.sent..]).await {
                Ok(0) | Err(_) => return Err(TtyError::Closed),
                Ok(n) => self.sent += n,
            }
        }
        Ok(())
    }
}

struct RemoteTty {
    out: Mutex<Outgoing>,
    hung_up: Arc<AtomicBool>,
    /// The shell's pid in its container.
    pid: u32,
}

#[async_trait]
impl Tty for RemoteTty {
    async fn write(&self, data: &[u8]) -> Result<(), TtyError> {
        if self.hung_up.load(Ordering::SeqCst) {
            return Err(TtyError::Closed);
        }
        let mut out = self.out.lock().await;
        for chunk in data.chunks(MAX_BODY) {
            out.send(FrameType::Input, chunk).await?;
        }
        Ok(())
    }

    async fn resize(&self, size: TermSize) -> Result<(), TtyError> {
        if self.hung_up.load(Ordering::SeqCst) {
            return Err(TtyError::Closed);
        }
        let body = resize_body(size.cols, size.rows);
        self.out.lock().await.send(FrameType::Resize, &body).await
    }

    async fn hangup(&self) {
        if self.hung_up.swap(true, Ordering::SeqCst) {
            return;
        }
        // The agent hangs the session up at HANGUP or when the connection closes, whichever it
        // sees first; when the connection is gone already there is nothing left to tell.
        let mut out = self.out.lock().await;
        let _ = out.send(FrameType::Hangup, &[]).await;
        let _ = out.writer.shutdown().await;
    }

    fn shell_pid(&self) -> Option<i32> {
        i32::try_from(self.pid).ok()
    }
}

struct RemoteOutput {
    reader: OwnedReadHalf,
    rx: Receiver,
    /// Bytes received, kept across reads the relay cancels; those before `start` are used.
    pending: Vec<u8>,
    start: usize,
    /// Set once the stream has ended: the exit code, or why the session was lost.
    exit: Option<Ended>,
    hung_up: Arc<AtomicBool>,
    slot: String,
}

/// How a session's stream ended: the shell's exit code, or why the session was lost.
type Ended = Result<Option<i32>, String>;

impl RemoteOutput {
    /// The next OUTPUT's bytes; `None` (with `exit` set) at EXIT or when the connection ends.
    async fn next(&mut self) -> Option<Bytes> {
        if self.exit.is_some() {
            return None;
        }
        let ended = loop {
            match split_message(&self.pending[self.start..]) {
                Ok(Some((message, used))) => {
                    let frame = self.open(message.len());
                    self.start += used;
                    match frame {
                        Ok(bytes) => return Some(bytes),
                        Err(ended) => break ended,
                    }
                }
                Ok(None) => match self.fill().await {
                    Ok(()) => {}
                    Err(_) if self.hung_up.load(Ordering::SeqCst) => break Ok(None),
                    Err(e) => break Err(format!("the connection ended without an exit code: {e}")),
                },
                Err(e) => break Err(e.to_string()),
            }
        };
        self.exit = Some(ended);
        None
    }

    /// Opens the message of `len` bytes at `start`: OUTPUT's bytes, or the end.
    fn open(&mut self, len: usize) -> Result<Bytes, Ended> {
        let frame = self
            .rx
            .open(&mut self.pending[self.start + 2..self.start + 2 + len])
            .map_err(|e| Err(e.to_string()))?;
        match frame.kind {
            FrameType::Output => Ok(Bytes::copy_from_slice(frame.body)),
            FrameType::Exit => match serde_json::from_slice::<Reply>(frame.body) {
                Ok(Reply {
                    exit: Some(code), ..
                }) => Err(Ok(code)),
                _ => Err(Err("an EXIT that makes no sense".to_string())),
            },
            other => Err(Err(format!("an unexpected {other:?} frame"))),
        }
    }

    /// Reads what the socket has into `pending` (cancel-safe: a cancelled read reads nothing).
    async fn fill(&mut self) -> std::io::Result<()> {
        // Only a partial message is left from `start` on: move it to the front once.
        self.pending.drain(..self.start);
        self.start = 0;
        self.pending.reserve(2 + MAX_MESSAGE);
        match self.reader.read_buf(&mut self.pending).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl TtyOutput for RemoteOutput {
    async fn read(&mut self) -> Option<Bytes> {
        self.next().await
    }

    async fn exit_code(&mut self) -> Result<Option<i32>, TtyError> {
        while self.next().await.is_some() {}
        match self.exit.clone().unwrap_or(Ok(None)) {
            Ok(code) => Ok(code),
            Err(detail) => Err(TtyError::unavailable(
                Unavailability::SessionLost,
                format!("the session agent of {}: {detail}", self.slot),
            )),
        }
    }
}
