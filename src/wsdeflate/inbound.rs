//! The request payload filter: passes client frames through to actix-ws as they come, except
//! compressed messages (RSV1), which it gathers, inflates within the size limit and hands on as
//! one plain frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;

use super::codec::{inflate, InflateError};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const MASKED: u8 = 0x80;

/// A client frame's head.
struct Head {
    first: u8,
    len: usize,
    payload: u64,
    mask: Option<[u8; 4]>,
}

impl Head {
    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
}

/// Parses the head of a frame at the start of `buf`; `None` until it is all there.
fn head(buf: &[u8]) -> Option<Head> {
    let (&first, rest) = buf.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (ext, payload) = match second & 0x7f {
        126 => (
            2,
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as u64,
        ),
        127 => (8, u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)),
        n => (0, n as u64),
    };
    let mask = match second & MASKED {
        0 => None,
        _ => Some(rest.get(ext..ext + 4)?.try_into().ok()?),
    };
    Some(Head {
        first,
        len: 2 + ext + if mask.is_some() { 4 } else { 0 },
        payload,
        mask,
    })
}

/// Wraps the upgraded request payload of a socket that negotiated permessage-deflate.
pub struct InflatingStream {
    inner: Payload,
    buf: BytesMut,
    /// Bytes of the current plain frame still to pass through as they come.
    passing: u64,
    /// The compressed message being gathered (its opcode and payload so far), if any.
    gathering: Option<(u8, Vec<u8>)>,
    /// The size limit of a message, compressed or not.
    limit: usize,
    ended: bool,
}

impl InflatingStream {
    pub fn new(inner: Payload, limit: usize) -> Self {
        InflatingStream {
            inner,
            buf: BytesMut::new(),
            passing: 0,
            gathering: None,
            limit,
            ended: false,
        }
    }

    /// Takes what can go on from the buffer: plain bytes as they are, a compressed message once
    /// it is whole. `Ok(None)` when more input is needed.
    fn next_out(&mut self) -> Result<Option<Bytes>, PayloadError> {
        loop {
            if self.passing > 0 && !self.buf.is_empty() {
                let n = self.passing.min(self.buf.len() as u64) as usize;
                self.passing -= n as u64;
                return Ok(Some(self.buf.split_to(n).freeze()));
            }
            let Some(h) = head(&self.buf) else {
                return Ok(None);
            };
            let gathering = self.gathering.is_some();
            let compressed = h.first & RSV1 != 0;
            let continues = h.opcode() == 0;
            if !(compressed || gathering && continues) {
                // Plain frames, and control frames between the pieces of a compressed message.
                self.passing = h.len as u64 + h.payload;
                continue;
            }
            if (compressed && (continues || h.opcode() >= 8)) || (gathering && !continues) {
                return Err(PayloadError::EncodingCorrupted);
            }
            let Some(mask) = h.mask else {
                return Err(PayloadError::EncodingCorrupted);
            };
            let gathered = self.gathering.as_ref().map_or(0, |(_, g)| g.len());
            if h.payload > (self.limit - gathered.min(self.limit)) as u64 {
                return Err(PayloadError::Overflow);
            }
            let end = h.len + h.payload as usize;
            if self.buf.len() < end {
                return Ok(None);
            }
            let frame = self.buf.split_to(end);
            let (_, message) = self
                .gathering
                .get_or_insert_with(|| (h.opcode(), Vec::new()));
            let start = message.len();
            message.extend_from_slice(&frame[h.len..]);
            for (i, byte) in message[start..].iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            if h.first & FIN != 0 {
                let (opcode, message) = self.gathering.take().unwrap_or_default();
                return self.inflated_frame(opcode, &message).map(Some);
            }
        }
    }

    /// One whole frame of the inflated message, masked with a zero key as actix-ws expects.
    fn inflated_frame(&self, opcode: u8, message: &[u8]) -> Result<Bytes, PayloadError> {
        let plain = inflate(message, self.limit).map_err(|e| match e {
            InflateError::TooBig => PayloadError::Overflow,
            InflateError::Corrupt => PayloadError::EncodingCorrupted,
        })?;
        let mut out = BytesMut::with_capacity(plain.len() + 14);
        out.extend_from_slice(&[FIN | opcode]);
        match plain.len() {
            n @ 0..=125 => out.extend_from_slice(&[MASKED | n as u8]),
            n @ 126..=0xffff => {
                out.extend_from_slice(&[MASKED | 126]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.extend_from_slice(&[MASKED | 127]);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&plain);
        Ok(out.freeze())
    }
}

impl Stream for InflatingStream {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.next_out() {
                Ok(Some(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                Ok(None) if this.ended => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.ended = true;
                    this.buf.clear();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
