//! A session over an agent's TCP connection, as the relay sees any terminal: INPUT, RESIZE and
//! HANGUP go out from [`Tty`], OUTPUT and EXIT come in through [`TtyOutput`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use termpool_agent_proto::{resize_body, FrameType, Receiver, Reply, Sender, MAX_BODY};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use super::{read_message, AgentError, Link, RemoteAgent};
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
        }),
        hung_up: hung_up.clone(),
        pid,
    });
    let output = Box::new(RemoteOutput {
        reader: link.reader,
        rx: link.rx,
        msg: Vec::new(),
        exit: None,
        hung_up,
        slot: agent.slot.clone(),
    });
    Ok(Spawned { tty, output })
}

/// The sending half: frames are sealed and written in order, one writer at a time.
struct Outgoing {
    writer: OwnedWriteHalf,
    tx: Sender,
    /// The sealed bytes of the frame being written, kept between writes.
    wire: Vec<u8>,
}

impl Outgoing {
    async fn send(&mut self, kind: FrameType, body: &[u8]) -> Result<(), TtyError> {
        self.wire.clear();
        self.tx
            .seal(kind, body, &mut self.wire)
            .map_err(|e| TtyError::Io(std::io::Error::other(e)))?;
        self.writer
            .write_all(&self.wire)
            .await
            .map_err(|_| TtyError::Closed)
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
    reader: BufReader<OwnedReadHalf>,
    rx: Receiver,
    /// The message being read, kept between reads.
    msg: Vec<u8>,
    /// Set once the stream has ended: the exit code, or why the session was lost.
    exit: Option<Result<Option<i32>, String>>,
    hung_up: Arc<AtomicBool>,
    slot: String,
}

impl RemoteOutput {
    /// The next OUTPUT's bytes; `None` (with `exit` set) at EXIT or when the connection ends.
    async fn next(&mut self) -> Option<Bytes> {
        if self.exit.is_some() {
            return None;
        }
        loop {
            let ended = match read_message(&mut self.reader, &mut self.msg).await {
                Ok(()) => match self.rx.open(&self.msg) {
                    Ok(f) if f.kind == FrameType::Output => {
                        return Some(Bytes::copy_from_slice(f.body))
                    }
                    Ok(f) if f.kind == FrameType::Exit => {
                        match serde_json::from_slice::<Reply>(f.body) {
                            Ok(Reply {
                                exit: Some(code), ..
                            }) => Ok(code),
                            _ => Err("an EXIT that makes no sense".to_string()),
                        }
                    }
                    Ok(f) => Err(format!("an unexpected {:?} frame", f.kind)),
                    Err(e) => Err(e.to_string()),
                },
                Err(_) if self.hung_up.load(Ordering::SeqCst) => Ok(None),
                Err(e) => Err(format!("the connection ended without an exit code: {e}")),
            };
            self.exit = Some(ended);
            return None;
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
