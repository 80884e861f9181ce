//! The frames of the WebSocket protocol (`docs/protocol.md`, version 1) as serde types, and the parsing
//! of client text frames into a `ClientFrame` or the `error` frame the client gets instead.
//! Terminal bytes never pass through here: they travel in binary frames, untouched.

use serde::de::IgnoredAny;
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
#[derive(Debug, Deserialize, PartialEq)]
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
        /// Checked here, kept as text by [`PingId`].
        #[serde(default)]
        id: IgnoredAny,
    },
}

/// A ping's `id` as the JSON text the client sent, so that the pong carries the same value:
/// read into a `serde_json::Value`, an integer past 64 bits would come back as a float.
#[derive(Debug)]
pub struct PingId(Box<RawValue>);

impl PingId {
    /// Reads the `id` of a ping frame that has parsed as one already.
    fn of(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Frame {
            #[serde(default)]
            id: Option<Box<RawValue>>,
        }
        let id = serde_json::from_str::<Frame>(text)?.id;
        Ok(PingId(id.unwrap_or_else(null)))
    }

    pub fn json(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for PingId {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ResizeRefused,
    BackendUnavailable,
    SessionNotFound,
    Internal,
}

/// A frame from the server (sent as a text frame).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Ready {
        protocol: u32,
        session: &'a str,
        user: &'a str,
        container: Option<&'a str>,
        mode: &'a str,
        cols: u16,
        rows: u16,
        resumed: bool,
    },
    Exit {
        code: Option<i32>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    Pong {
        id: &'a RawValue,
    },
    /// No input for a while: the socket is closed (4000, "idle") in `detach_in` seconds unless
    /// input or `stay` comes.
    Idle {
        detach_in: u64,
    },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encoding"}"#.into())
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
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            parse_client_text(r#"{"type":"input","data":"ls\r"}"#),
            Ok(Request::Input("ls\r".into()))
        );
        assert_eq!(
            parse_client_text(r#"{"type":"resize","cols":120,"rows":40}"#),
            Ok(Request::Resize(TermSize {
                cols: 120,
                rows: 40
            }))
        );
        assert_eq!(parse_client_text(r#"{"type":"pause"}"#), Ok(Request::Pause));
        assert_eq!(
            parse_client_text(r#"{"type":"resume"}"#),
            Ok(Request::Resume)
        );
        assert_eq!(parse_client_text(r#"{"type":"stay"}"#), Ok(Request::Stay));
        for (text, id) in [
            (r#"{"type":"ping","id":{"a":[1]}}"#, r#"{"a":[1]}"#),
            (r#"{"type":"ping"}"#, "null"),
            (r#"{"type":"ping","id":null}"#, "null"),
            // Past u64 and past f64's precision: the pong must carry these digits, not a float.
            (
                r#"{"id":123456789012345678901234567890,"type":"ping"}"#,
                "123456789012345678901234567890",
            ),
            (
                r#"{"type":"ping","id":0.10000000000000000001}"#,
                "0.10000000000000000001",
            ),
        ] {
            match parse_client_text(text) {
                Ok(Request::Ping(got)) => assert_eq!(got.json().get(), id, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_compatibility() {
        assert_eq!(
            parse_client_text(r#"{"type":"pause","future":true}"#),
            Ok(Request::Pause)
        );
    }

    #[test]
    fn bad_frames_are_bad_requests() {
        for text in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"input"}"#,
            r#"{"type":"input","data":5}"#,
            r#"{"type":"resize","cols":"80","rows":24}"#,
            r#"{"type":"resize","cols":80.5,"rows":24}"#,
            r#"{"type":"resize","cols":1e30,"rows":24}"#,
        ] {
            let err = parse_client_text(text).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        for (c, r) in [
            (0, 24),
            (80, 0),
            (1001, 24),
            (80, 1001),
            (-1, 5),
            (i64::MAX, 1),
        ] {
            let text = format!(r#"{{"type":"resize","cols":{c},"rows":{r}}}"#);
            assert_eq!(
                parse_client_text(&text).unwrap_err().code,
                ErrorCode::ResizeRefused
            );
        }
        assert!(TermSize::checked(1, 1).is_some());
        assert!(TermSize::checked(1000, 1000).is_some());
    }

    #[test]
    fn server_frames_match_the_protocol() {
        let ready = ServerFrame::Ready {
            protocol: PROTOCOL_VERSION,
            session: "s",
            user: "u",
            container: None,
            mode: "local",
            cols: 80,
            rows: 24,
            resumed: false,
        };
        assert_eq!(
            ready.to_json(),
            r#"{"type":"ready","protocol":1,"session":"s","user":"u","container":null,"mode":"local","cols":80,"rows":24,"resumed":false}"#
        );
        assert_eq!(
            ServerFrame::Exit { code: Some(3) }.to_json(),
            r#"{"type":"exit","code":3}"#
        );
        let err = ServerFrame::Error {
            code: ErrorCode::ResizeRefused,
            message: "m",
        };
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"resize_refused","message":"m"}"#
        );
        let Ok(Request::Ping(id)) =
            parse_client_text(r#"{"type":"ping","id":-18446744073709551617}"#)
        else {
            panic!("a ping");
        };
        assert_eq!(
            ServerFrame::Pong { id: id.json() }.to_json(),
            r#"{"type":"pong","id":-18446744073709551617}"#
        );
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever text a client sends: no panic, and a resize is only ever accepted in range.
            #[test]
            fn any_text_frame_parses_or_is_refused(text in ".{0,200}") {
                if let Ok(Request::Resize(size)) = parse_client_text(&text) {
                    prop_assert!(SIZE_RANGE.contains(&size.cols) && SIZE_RANGE.contains(&size.rows));
                }
            }

            #[test]
            fn json_shaped_frames_never_panic(
                kind in prop::sample::select(vec!["input", "resize", "pause", "resume", "ping", "x", ""]),
                cols in any::<i64>(), rows in any::<i64>(), data in ".{0,40}",
            ) {
                let frame = serde_json::json!({"type": kind, "cols": cols, "rows": rows, "data": data, "id": data});
                match parse_client_text(&frame.to_string()) {
                    Ok(Request::Resize(size)) => {
                        prop_assert_eq!((i64::from(size.cols), i64::from(size.rows)), (cols, rows));
                    }
                    Err(e) if kind == "resize" => prop_assert_eq!(e.code, ErrorCode::ResizeRefused),
                    _ => {}
                }
            }
        }
    }
}
