//! Frames of the agent's network wire: a plaintext frame is one type byte and a body; on the
//! wire each Noise message is preceded by its length, a big-endian `u16`.

/// The largest Noise message (the length prefix's range, and Noise's own limit).
pub const MAX_MESSAGE: usize = 65535;
/// What the AEAD (ChaCha20-Poly1305 or AES-256-GCM) adds to each message.
pub const TAG_LEN: usize = 16;
/// The largest plaintext frame, type byte included.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// The largest body of a frame (OUTPUT, INPUT).
pub const MAX_BODY: usize = MAX_PLAINTEXT - 1;
/// Where a frame's body starts on the wire: after the length and the type byte.
pub const BODY_OFFSET: usize = 3;
/// A frame's bytes on the wire beyond its body: the length, the type byte, the tag.
pub const FRAME_OVERHEAD: usize = BODY_OFFSET + TAG_LEN;

/// What can be wrong with bytes received: never a panic, always one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("an empty frame")]
    Empty,
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("a frame of {0} bytes is too large")]
    Oversized(usize),
    #[error("a frame type that was not expected here: {0:?}")]
    Unexpected(FrameType),
    #[error("bad frame body: {0}")]
    BadBody(&'static str),
    /// The handshake failed (wrong key, wrong slot, garbage) or a message did not decrypt.
    #[error("noise: {0}")]
    Noise(String),
}

/// The frame types of `docs/scaling.md`'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Open = 0x01,
    Input = 0x02,
    Resize = 0x03,
    Hangup = 0x04,
    Account = 0x10,
    End = 0x11,
    Status = 0x12,
    Mark = 0x13,
    Write = 0x14,
    Started = 0x81,
    Output = 0x82,
    Exit = 0x83,
    Result = 0x90,
}

impl FrameType {
    pub fn from_byte(b: u8) -> Result<FrameType, WireError> {
        use FrameType::*;
        Ok(match b {
            0x01 => Open,
            0x02 => Input,
            0x03 => Resize,
            0x04 => Hangup,
            0x10 => Account,
            0x11 => End,
            0x12 => Status,
            0x13 => Mark,
            0x14 => Write,
            0x81 => Started,
            0x82 => Output,
            0x83 => Exit,
            0x90 => Result,
            other => return Err(WireError::UnknownType(other)),
        })
    }
}

/// A decrypted frame, borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameType,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a plaintext frame.
    pub fn decode(plain: &'a [u8]) -> Result<Frame<'a>, WireError> {
        let (&kind, body) = plain.split_first().ok_or(WireError::Empty)?;
        if plain.len() > MAX_PLAINTEXT {
            return Err(WireError::Oversized(plain.len()));
        }
        Ok(Frame {
            kind: FrameType::from_byte(kind)?,
            body,
        })
    }

    /// Appends the plaintext frame to `out`.
    pub fn encode(kind: FrameType, body: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        if body.len() > MAX_BODY {
            return Err(WireError::Oversized(body.len() + 1));
        }
        out.push(kind as u8);
        out.extend_from_slice(body);
        Ok(())
    }
}

/// RESIZE's body: columns then rows, big-endian.
pub fn resize_body(cols: u16, rows: u16) -> [u8; 4] {
    let (c, r) = (cols.to_be_bytes(), rows.to_be_bytes());
    [c[0], c[1], r[0], r[1]]
}

/// Reads RESIZE's body: (cols, rows).
pub fn parse_resize(body: &[u8]) -> Result<(u16, u16), WireError> {
    match body {
        [c0, c1, r0, r1] => Ok((
            u16::from_be_bytes([*c0, *c1]),
            u16::from_be_bytes([*r0, *r1]),
        )),
        _ => Err(WireError::BadBody("a resize is 4 bytes")),
    }
}

/// The first whole message in `buf`, if it holds one, and how many bytes it spans with its
/// length. A zero length is an error: no Noise message is empty.
pub fn split_message(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(len) = message_len(buf)? else {
        return Ok(None);
    };
    Ok(buf.get(2..2 + len).map(|m| (m, 2 + len)))
}

/// The length announced at the start of `buf`, once its two bytes are there.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    match buf {
        [0, 0, ..] => Err(WireError::Empty),
        [hi, lo, ..] => Ok(Some(u16::from_be_bytes([*hi, *lo]) as usize)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_errors() {
        let mut out = Vec::new();
        Frame::encode(FrameType::Input, b"ls\r", &mut out).unwrap();
        let f = Frame::decode(&out).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Input, &b"ls\r"[..]));
        assert_eq!(Frame::decode(&[]), Err(WireError::Empty));
        assert_eq!(Frame::decode(&[0x7f, 1]), Err(WireError::UnknownType(0x7f)));
        let big = vec![0u8; MAX_BODY + 1];
        assert!(Frame::encode(FrameType::Output, &big, &mut Vec::new()).is_err());
        assert_eq!(parse_resize(&resize_body(132, 43)), Ok((132, 43)));
        assert!(parse_resize(&[1, 2, 3]).is_err());
    }

    #[test]
    fn messages_are_split_at_their_length() {
        assert_eq!(split_message(&[0]), Ok(None));
        assert_eq!(split_message(&[0, 3, 1, 2]), Ok(None));
        assert_eq!(
            split_message(&[0, 2, 1, 2, 9]),
            Ok(Some((&[1u8, 2][..], 4)))
        );
        assert_eq!(split_message(&[0, 0, 1]), Err(WireError::Empty));
    }
}
