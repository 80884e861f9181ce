//! Terminals and account work through a session agent reached over TCP (Swarm mode): one
//! Noise-encrypted connection per session, short ones for ACCOUNT, END, STATUS and MARK. The
//! wire is `termpool-agent-proto`'s; `docs/scaling.md` ("Data path across hosts") explains it.

mod session;
mod upload;

use std::time::Duration;

use termpool_agent_proto::{
    AccountRequest, AgentResult, EndRequest, FailureKind, FrameType, Handshake, Receiver, Sender,
    StatusReport, VolumeMark, WireError, MAX_MESSAGE,
};
pub use termpool_agent_proto::{ShellRequest, WriteRequest, AGENT_PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{Spawned, TtyError, Unavailability};

/// How long connecting and the handshake may take unless the caller says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long ACCOUNT, END and STATUS may take (END waits for a fork bomb to be taken apart, up to
/// 5 s in the agent).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing answered at the address in time, or the connection was refused: the node is down
    /// or cut off, or the agent is not running.
    #[error("the agent of {slot} at {addr} is unreachable: {reason}")]
    Unreachable {
        slot: String,
        addr: String,
        reason: String,
    },
    /// The handshake failed: the key or the slot name is not the agent's.
    #[error("the agent of {slot} refused the handshake (wrong key or slot?): {reason}")]
    Handshake { slot: String, reason: String },
    /// The connection broke, or the agent sent something that makes no sense.
    #[error("the agent of {slot}: {reason}")]
    Protocol { slot: String, reason: String },
    /// The agent refused or failed the request.
    #[error("the agent of {slot} refused ({kind:?}): {message}")]
    Refused {
        slot: String,
        kind: FailureKind,
        message: String,
    },
}

/// The agent of one slot, as the server reaches it.
#[derive(Clone)]
pub struct RemoteAgent {
    /// `host:port`, e.g. the slot's service name and [`AGENT_PORT`].
    addr: String,
    slot: String,
    psk: [u8; 32],
    connect_timeout: Duration,
}

impl std::fmt::Debug for RemoteAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("RemoteAgent")
            .field("addr", &self.addr)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// One end of an established connection: the halves of the socket and of the Noise session.
pub(crate) struct Link {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub tx: Sender,
    pub rx: Receiver,
}

impl RemoteAgent {
    /// The agent of `slot` at `addr` (`host:port`), with the slot's key.
    pub fn new(addr: impl Into<String>, slot: impl Into<String>, psk: [u8; 32]) -> RemoteAgent {
        RemoteAgent {
            addr: addr.into(),
            slot: slot.into(),
            psk,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Sets how long connecting (with the handshake) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> RemoteAgent {
        self.connect_timeout = timeout;
        self
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Starts a login shell through the agent, waiting up to `timeout` for it; the relay sees a
    /// terminal like any other. An agent that cannot be reached is `NotPrepared` here: callers
    /// that tell a node down apart use [`RemoteAgent::open_session`].
    pub async fn spawn(
        &self,
        req: &ShellRequest<'_>,
        timeout: Duration,
    ) -> Result<Spawned, TtyError> {
        self.open_session(req, timeout)
            .await
            .map_err(|e| TtyError::unavailable(Unavailability::NotPrepared, e))
    }

    /// [`RemoteAgent::spawn`] with the agent's own error.
    pub async fn open_session(
        &self,
        req: &ShellRequest<'_>,
        timeout: Duration,
    ) -> Result<Spawned, AgentError> {
        let started = tokio::time::timeout(timeout, async {
            let mut link = self.connect().await?;
            let body = serde_json::to_vec(req).map_err(|e| self.protocol(e))?;
            self.send(&mut link, FrameType::Open, &body).await?;
            let (kind, body) = self.receive(&mut link).await?;
            session::started(self, link, kind, &body)
        })
        .await;
        started.unwrap_or_else(|_| {
            Err(self.protocol(format!(
                "no shell started for {} within {timeout:?}",
                req.user
            )))
        })
    }

    /// Creates the account and its home (the account script's work; its refusals keep their
    /// kinds).
    pub async fn account(&self, req: &AccountRequest) -> Result<(), AgentError> {
        match self.request(FrameType::Account, req).await? {
            AgentResult::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    /// Ends every process of `uid` in the container.
    pub async fn end_processes(&self, uid: u32) -> Result<(), AgentError> {
        match self.request(FrameType::End, &EndRequest { uid }).await? {
            AgentResult::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    /// The agent's lockdown as it reads it back, and the homes on its volume.
    pub async fn status(&self) -> Result<StatusReport, AgentError> {
        match self.request(FrameType::Status, &()).await? {
            AgentResult::Status(report) => Ok(report),
            other => Err(self.unexpected(other)),
        }
    }

    /// Adds the slot's line to the marker of its volume (kept if it is there already).
    pub async fn mark_volume(&self, mark: &VolumeMark) -> Result<(), AgentError> {
        match self.request(FrameType::Mark, mark).await? {
            AgentResult::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    /// One request on a short connection of its own, and its RESULT.
    async fn request<T: serde::Serialize>(
        &self,
        kind: FrameType,
        body: &T,
    ) -> Result<AgentResult, AgentError> {
        let body = match kind {
            FrameType::Status => Vec::new(),
            _ => serde_json::to_vec(body).map_err(|e| self.protocol(e))?,
        };
        let mut link = self.connect().await?;
        self.send(&mut link, kind, &body).await?;
        match self.receive_result(&mut link).await? {
            AgentResult::Failed { kind, message } => Err(AgentError::Refused {
                slot: self.slot.clone(),
                kind,
                message,
            }),
            ok => Ok(ok),
        }
    }

    /// Connects and shakes hands within the connect timeout.
    async fn connect(&self) -> Result<Link, AgentError> {
        let unreachable = |reason: String| AgentError::Unreachable {
            slot: self.slot.clone(),
            addr: self.addr.clone(),
            reason,
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.connect_timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::with_capacity(2 + MAX_MESSAGE, read);
        let shake = async {
            let (handshake, first) =
                Handshake::initiator(&self.slot, &self.psk).map_err(|e| self.handshake(e))?;
            let mut writer = writer;
            writer
                .write_all(&first)
                .await
                .map_err(|e| self.handshake(e))?;
            let mut msg = Vec::new();
            read_message(&mut reader, &mut msg)
                .await
                .map_err(|e| self.handshake(e))?;
            let (tx, rx) = handshake.finish(&msg).map_err(|e| self.handshake(e))?;
            log::debug!(
                "agent of {}: transport cipher {}",
                self.slot,
                tx.cipher().name()
            );
            Ok::<_, AgentError>((writer, tx, rx))
        };
        let (writer, tx, rx) = tokio::time::timeout(self.connect_timeout, shake)
            .await
            .map_err(|_| {
                unreachable(format!("no handshake within {:?}", self.connect_timeout))
            })??;
        Ok(Link {
            reader,
            writer,
            tx,
            rx,
        })
    }

    async fn send(&self, link: &mut Link, kind: FrameType, body: &[u8]) -> Result<(), AgentError> {
        let mut wire = Vec::with_capacity(body.len() + 32);
        link.tx
            .seal(kind, body, &mut wire)
            .map_err(|e| self.protocol(e))?;
        link.writer
            .write_all(&wire)
            .await
            .map_err(|e| self.protocol(e))
    }

    /// The RESULT that answers a request, within [`REQUEST_TIMEOUT`].
    async fn receive_result(&self, link: &mut Link) -> Result<AgentResult, AgentError> {
        let no_answer = |_| self.protocol(format!("no answer within {REQUEST_TIMEOUT:?}"));
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.receive(link)).await;
        match answer.map_err(no_answer)?? {
            (FrameType::Result, body) => {
                serde_json::from_slice(&body).map_err(|e| self.protocol(e))
            }
            (other, _) => Err(self.protocol(WireError::Unexpected(other))),
        }
    }

    async fn receive(&self, link: &mut Link) -> Result<(FrameType, Vec<u8>), AgentError> {
        let mut msg = Vec::new();
        read_message(&mut link.reader, &mut msg)
            .await
            .map_err(|e| self.protocol(e))?;
        let frame = link.rx.open(&mut msg).map_err(|e| self.protocol(e))?;
        Ok((frame.kind, frame.body.to_vec()))
    }

    fn handshake(&self, reason: impl std::fmt::Display) -> AgentError {
        AgentError::Handshake {
            slot: self.slot.clone(),
            reason: reason.to_string(),
        }
    }

    fn protocol(&self, reason: impl std::fmt::Display) -> AgentError {
        AgentError::Protocol {
            slot: self.slot.clone(),
            reason: reason.to_string(),
        }
    }

    fn unexpected(&self, result: AgentResult) -> AgentError {
        self.protocol(format!(
            "an answer that does not fit the request: {result:?}"
        ))
    }
}

/// Reads one length-prefixed message into `msg` (replacing its content).
pub(crate) async fn read_message(
    reader: &mut BufReader<OwnedReadHalf>,
    msg: &mut Vec<u8>,
) -> std::io::Result<()> {
    let len = reader.read_u16().await? as usize;
    if len == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "an empty message",
        ));
    }
    msg.resize(len, 0);
    reader.read_exact(msg).await?;
    Ok(())
}
