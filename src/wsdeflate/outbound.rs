//! The response body filter: compresses the data frames that actix-ws writes, whole messages of
//! at least `MIN_COMPRESSED` bytes, and passes everything else on untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::{Bytes, BytesMut};

use super::codec::deflate;
use super::MIN_COMPRESSED;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// A server frame's head: first byte, head length, payload length.
struct Head {
    first: u8,
    len: usize,
    payload: usize,
}

/// Parses the head of an unmasked frame at the start of `buf`.
fn head(buf: &[u8]) -> Option<Head> {
    let (&first, rest) = buf.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (len, payload) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            usize::try_from(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)).ok()?,
        ),
        n => (2, n as usize),
    };
    Some(Head {
        first,
        len,
        payload,
    })
}

fn write_head(out: &mut BytesMut, first: u8, payload: usize) {
    out.extend_from_slice(&[first]);
    match payload {
        0..=125 => out.extend_from_slice(&[payload as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(payload as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(payload as u64).to_be_bytes());
        }
    }
}

/// Whether a frame is a whole data message worth compressing.
fn worth_compressing(h: &Head) -> bool {
    let op = h.first & 0x0f;
    h.first & FIN != 0 && (op == OP_TEXT || op == OP_BINARY) && h.payload >= MIN_COMPRESSED
}

/// The chunk with its qualifying frames compressed; the chunk itself when none qualifies (or it
/// does not hold whole frames, which actix-ws never yields).
fn compress_frames(chunk: Bytes) -> Bytes {
    let mut at = 0;
    let mut out: Option<BytesMut> = None;
    while at < chunk.len() {
        let Some(h) = head(&chunk[at..]) else {
            return chunk;
        };
        let end = at + h.len + h.payload;
        if end > chunk.len() {
            return chunk;
        }
        let packed = worth_compressing(&h)
            .then(|| deflate(&chunk[at + h.len..end]))
            .flatten();
        match (packed, out.as_mut()) {
            (Some(packed), _) => {
                let out = out.get_or_insert_with(|| {
                    let mut o = BytesMut::with_capacity(chunk.len());
                    o.extend_from_slice(&chunk[..at]);
                    o
                });
                write_head(out, h.first | RSV1, packed.len());
                out.extend_from_slice(&packed);
            }
            (None, Some(out)) => out.extend_from_slice(&chunk[at..end]),
            (None, None) => {}
        }
        at = end;
    }
    out.map_or(chunk, BytesMut::freeze)
}

/// Wraps the body of a WebSocket's 101 response whose client accepted permessage-deflate.
pub struct DeflatingBody {
    inner: BoxBody,
}

impl DeflatingBody {
    pub fn new(inner: BoxBody) -> Self {
        DeflatingBody { inner }
    }
}

impl MessageBody for DeflatingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_next(cx)
            .map(|chunk| chunk.map(|r| r.map(compress_frames)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsdeflate::codec::inflate;

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_head(&mut out, first, payload.len());
        out.extend_from_slice(payload);
        out.to_vec()
    }

    #[test]
    fn big_data_frames_are_compressed_and_the_rest_left_alone() {
        let text = "total 0\r\ndrwxr-xr-x 2 root root 4096 .\r\n".repeat(200);
        let echo = frame(FIN | OP_BINARY, b"x");
        let ping = frame(FIN | 0x9, b"");
        let big = frame(FIN | OP_BINARY, text.as_bytes());
        let chunk: Vec<u8> = [echo.clone(), big, ping.clone()].concat();
        let out = compress_frames(Bytes::from(chunk));
        assert_eq!(&out[..echo.len()], &echo[..]);
        let h = head(&out[echo.len()..]).unwrap();
        assert_eq!(h.first, FIN | RSV1 | OP_BINARY);
        let start = echo.len() + h.len;
        let packed = &out[start..start + h.payload];
        assert!(packed.len() * 4 < text.len());
        assert_eq!(inflate(packed, 1 << 20).unwrap(), text.as_bytes());
        assert_eq!(&out[start + h.payload..], &ping[..]);
        // Nothing worth compressing: the very same bytes.
        let small = Bytes::from([echo.clone(), ping].concat());
        assert_eq!(compress_frames(small.clone()).as_ptr(), small.as_ptr());
    }
}
