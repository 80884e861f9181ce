//! One connection, in its own process: the Noise handshake, the first frame, then a session's
//! relay, or one request's RESULT (after the file, for WRITE). Anything unexpected closes the
//! connection, never the agent.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use termpool_agent_proto::{AgentResult, FailureKind, FrameType, Handshake, Reply, Sender};

use super::{relay, requests, upload, Context};
use crate::log;

const NOT_LOCKED_DOWN: &str = "the agent did not lock its container down";

/// How long a client may take over the handshake and its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

pub fn serve(stream: TcpStream, context: &Context) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    if let Err(e) = handle(stream, context) {
        log(&format!("connection from {peer}: {e}"));
    }
}

fn handle(mut owned: TcpStream, context: &Context) -> io::Result<()> {
    let stream = &mut owned;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(FIRST_FRAME_TIMEOUT))?;
    stream.set_write_timeout(Some(FIRST_FRAME_TIMEOUT))?;
    let mut msg = Vec::new();
    read_message(stream, &mut msg)?;
    let (answer, mut tx, mut rx) = Handshake::responder(&context.slot, &context.psk)
        .and_then(|h| h.respond(&msg))
        .map_err(|e| invalid(format!("handshake refused: {e}")))?;
    stream.write_all(&answer)?;
    read_message(stream, &mut msg)?;
    let frame = rx.open(&mut msg).map_err(invalid)?;
    let (kind, body) = (frame.kind, frame.body.to_vec());
    let result = match (kind, &context.lockdown_error) {
        (FrameType::Status, _) => requests::status(context),
        (FrameType::Open, None) => return relay::run(owned, tx, rx, &body, context),
        (FrameType::Open, Some(e)) => {
            let refused = Reply::refused(format!("{NOT_LOCKED_DOWN}: {e}"));
            return send(
                stream,
                &mut tx,
                FrameType::Started,
                &serde_json_vec(&refused),
            );
        }
        (kind, Some(e)) => {
            // WRITE's answer comes after its body, or the server, still sending, would meet a
            // reset connection instead of the reason.
            if kind == FrameType::Write {
                upload::drain(stream, &mut rx, &body)?;
            }
            AgentResult::Failed {
                kind: FailureKind::NotLockedDown,
                message: format!("{NOT_LOCKED_DOWN}: {e}"),
            }
        }
        (FrameType::Account, None) => requests::account(&body, context.uid_min),
        (FrameType::End, None) => requests::end(&body, context.uid_min),
        (FrameType::Mark, None) => requests::mark(&body),
        (FrameType::Write, None) => upload::write(stream, &mut rx, &body, context.uid_min)?,
        (other, None) => return Err(invalid(format!("{other:?} as the first frame"))),
    };
    let body = serde_json_vec(&result);
    send(stream, &mut tx, FrameType::Result, &body)
}

/// Seals and writes one frame, blocking.
pub fn send(
    stream: &mut TcpStream,
    tx: &mut Sender,
    kind: FrameType,
    body: &[u8],
) -> io::Result<()> {
    let mut wire = Vec::with_capacity(body.len() + 32);
    tx.seal(kind, body, &mut wire).map_err(invalid)?;
    stream.write_all(&wire)
}

/// Reads one length-prefixed message, blocking.
pub fn read_message(stream: &mut TcpStream, msg: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let len = u16::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(invalid("an empty message"));
    }
    msg.resize(len, 0);
    stream.read_exact(msg)
}

pub fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

pub fn serde_json_vec<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
