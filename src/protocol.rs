//! The WebSocket protocol's frames (`docs/protocol.md`, version 1) as serde types both ways, so the
//! server and its clients (tests, benchmark) share them; and client text frames checked into a
//! `Request`. Terminal bytes never pass through here: they travel in binary frames, untouched.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const PROTOCOL_VERSION: u32 = 1;
/// Terminal sizes a client may ask for, in columns and in rows.
pub const SIZE_RANGE: std::ops::RangeInclusive<u16> = 1..=1000;

/// A terminal size that has been checked against `SIZE_RANGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

impl Default for TermSize {
    fn default() -> Self {
        TermSize { cols: 80, rows: 24 }
    }
}

impl TermSize {
    /// Checks untrusted numbers; `None` when either is outside `SIZE_RANGE`.
    pub fn checked(cols: i64, rows: i64) -> Option<TermSize> {
        let fit = |v: i64| u16::try_from(v).ok().filter(|v| SIZE_RANGE.contains(v));
        Some(TermSize {
            cols: fit(cols)?,
            rows: fit(rows)?,
        })
    }
}

/// A control frame from the client (a text frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Input {
        data: String,
    },
    Resize {
        cols: i64,
        rows: i64,
    },
    Pause,
    Resume,
    /// The user wants to stay after an `idle` warning.
    Stay,
    Ping {
        /// Read from the frame's text by [`parse_client_text`]: serde's buffering of a tagged
        /// enum would turn a long number into a float.
        #[serde(skip_deserializing)]
        id: PingId,
    },
}

/// A ping's `id` as the JSON text the client sent, so that the pong carries the same value:
/// read into a `serde_json::Value`, an integer past 64 bits would come back as a float.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct PingId(Box<RawValue>);

impl PingId {
    /// An id from its JSON text, e.g. `"7"` or `"{\"a\":1}"`.
    pub fn new(json: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json.to_owned()).map(PingId)
    }

    /// Reads the `id` of a `ping` or `pong` frame that has parsed as one already.
    fn of(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Frame {
            #[serde(default)]
            id: Option<Box<RawValue>>,
        }
        let id = serde_json::from_str::<Frame>(text)?.id;
        Ok(id.map(PingId).unwrap_or_default())
    }

    pub fn json(&self) -> &RawValue {
        &self.0
    }
}

impl Default for PingId {
    /// The id of a ping that has none: `null`.
    fn default() -> Self {
        PingId(RawValue::from_string("null".into()).expect("null is JSON"))
    }
}

impl PartialEq for PingId {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ResizeRefused,
    BackendUnavailable,
    SessionNotFound,
    Internal,
}

/// A frame from the server (sent as a text frame). The server borrows its strings; a client
/// parses a `ServerFrame<'static>` with [`ServerFrame::from_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Ready(Ready<'a>),
    Exit(Exit),
    Error(ErrorFrame<'a>),
    Pong(Pong),
    Idle(Idle),
}

/// No input for a while: the socket is closed (4000, "idle") in `detach_in` seconds unless input
/// or `stay` comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idle {
    pub detach_in: u64,
}

/// The first frame of every session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready<'a> {
    pub protocol: u32,
    pub session: Cow<'a, str>,
    pub user: Cow<'a, str>,
    pub container: Option<Cow<'a, str>>,
    pub mode: Cow<'a, str>,
    pub cols: u16,
    pub rows: u16,
    pub resumed: bool,
}

/// The shell ended, with its exit code when it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
}

/// A refused request or a failure; the frame's `code` says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame<'a> {
    pub code: ErrorCode,
    pub message: Cow<'a, str>,
}

/// The answer to a ping, with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// Read from the frame's text by [`ServerFrame::from_json`], like a ping's.
    #[serde(skip_deserializing)]
    pub id: PingId,
}

impl<'a> ServerFrame<'a> {
    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<Cow<'a, str>>) -> Self {
        ServerFrame::Error(ErrorFrame {
            code,
            message: message.into(),
        })
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encoding"}"#.into())
    }
}

impl ServerFrame<'static> {
    /// Parses a server text frame, as a client does; a pong's id keeps its JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut frame: ServerFrame = serde_json::from_str(text)?;
        if let ServerFrame::Pong(pong) = &mut frame {
            pong.id = PingId::of(text)?;
        }
        Ok(frame)
    }
}

/// Why a client text frame was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

/// What a client text frame asks for, with its numbers checked.
#[derive(Debug, PartialEq)]
pub enum Request {
    Input(String),
    Resize(TermSize),
    Pause,
    Resume,
    Stay,
    Ping(PingId),
}

/// Parses one client text frame. Every failure is a `FrameError` for an `error` frame; the session
/// goes on either way.
pub fn parse_client_text(text: &str) -> Result<Request, FrameError> {
    let malformed = |e: serde_json::Error| FrameError {
        code: ErrorCode::BadRequest,
        message: format!("malformed control frame: {e}"),
    };
    let frame: ClientFrame = serde_json::from_str(text).map_err(malformed)?;
    Ok(match frame {
        ClientFrame::Input { data } => Request::Input(data),
        ClientFrame::Resize { cols, rows } => {
            Request::Resize(TermSize::checked(cols, rows).ok_or_else(|| FrameError {
                code: ErrorCode::ResizeRefused,
                message: format!(
                    "size {cols}x{rows} refused: columns and rows must be within {}..={}",
                    SIZE_RANGE.start(),
                    SIZE_RANGE.end()
                ),
            })?)
        }
        ClientFrame::Pause => Request::Pause,
        ClientFrame::Resume => Request::Resume,
        ClientFrame::Stay => Request::Stay,
        ClientFrame::Ping { .. } => Request::Ping(PingId::of(text).map_err(malformed)?),
    })
}

#[cfg(test)]
mod tests;
