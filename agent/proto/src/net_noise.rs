//! The Noise layer both ends use, without I/O: the two-message handshake, then one [`Sender`] and
//! one [`Receiver`] per end that seal and open frames (explicit nonces, so the two directions
//! are independent and each may live in its own task).

use std::sync::Arc;

use snow::{Builder, HandshakeState, StatelessTransportState};

use crate::net::{prologue, NOISE_PARAMS};
use crate::net_frame::{Frame, FrameType, WireError, MAX_MESSAGE, TAG_LEN};

/// The length of each handshake message: an ephemeral key and the tag of an empty payload.
pub const HANDSHAKE_LEN: usize = 32 + TAG_LEN;

fn noise(e: snow::Error) -> WireError {
    WireError::Noise(e.to_string())
}

/// A handshake in progress, on either end.
pub struct Handshake {
    state: HandshakeState,
}

impl Handshake {
    fn builder_state(slot: &str, psk: &[u8; 32], initiator: bool) -> Result<Self, WireError> {
        let params = NOISE_PARAMS.parse().map_err(noise)?;
        let prologue = prologue(slot);
        let builder = Builder::new(params)
            .psk(0, psk)
            .and_then(|b| b.prologue(&prologue))
            .map_err(noise)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(noise)?;
        Ok(Handshake { state })
    }

    /// The server's side: the handshake and the first message to send (length-prefixed).
    pub fn initiator(slot: &str, psk: &[u8; 32]) -> Result<(Handshake, Vec<u8>), WireError> {
        let mut h = Self::builder_state(slot, psk, true)?;
        let first = h.write()?;
        Ok((h, first))
    }

    /// The agent's side, before the initiator's message.
    pub fn responder(slot: &str, psk: &[u8; 32]) -> Result<Handshake, WireError> {
        Self::builder_state(slot, psk, false)
    }

    /// The agent reads the initiator's message (without its length) and answers: the answer
    /// (length-prefixed) and the session's two halves. A wrong key or slot fails here.
    pub fn respond(mut self, message: &[u8]) -> Result<(Vec<u8>, Sender, Receiver), WireError> {
        self.read(message)?;
        let answer = self.write()?;
        let (tx, rx) = self.split()?;
        Ok((answer, tx, rx))
    }

    /// The server reads the agent's answer (without its length): the session's two halves.
    pub fn finish(mut self, message: &[u8]) -> Result<(Sender, Receiver), WireError> {
        self.read(message)?;
        self.split()
    }

    fn read(&mut self, message: &[u8]) -> Result<(), WireError> {
        if message.len() != HANDSHAKE_LEN {
            return Err(WireError::Noise(format!(
                "a handshake message of {} bytes, not {HANDSHAKE_LEN}",
                message.len()
            )));
        }
        let mut payload = [0u8; HANDSHAKE_LEN];
        match self
            .state
            .read_message(message, &mut payload)
            .map_err(noise)?
        {
            0 => Ok(()),
            _ => Err(WireError::Noise("a handshake with a payload".into())),
        }
    }

    fn write(&mut self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![0u8; 2 + HANDSHAKE_LEN];
        let n = self
            .state
            .write_message(&[], &mut out[2..])
            .map_err(noise)?;
        out.truncate(2 + n);
        out[..2].copy_from_slice(&(n as u16).to_be_bytes());
        Ok(out)
    }

    fn split(self) -> Result<(Sender, Receiver), WireError> {
        let state = Arc::new(self.state.into_stateless_transport_mode().map_err(noise)?);
        Ok((
            Sender {
                state: state.clone(),
                nonce: 0,
                plain: Vec::new(),
            },
            Receiver {
                state,
                nonce: 0,
                plain: Vec::new(),
            },
        ))
    }
}

/// Seals this end's frames, in order.
pub struct Sender {
    state: Arc<StatelessTransportState>,
    nonce: u64,
    /// The plaintext of the frame being sealed, kept between frames.
    plain: Vec<u8>,
}

impl Sender {
    /// Appends the sealed frame, length first, to `out`.
    pub fn seal(
        &mut self,
        kind: FrameType,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        self.plain.clear();
        Frame::encode(kind, body, &mut self.plain)?;
        let start = out.len();
        let len = self.plain.len() + TAG_LEN;
        out.resize(start + 2 + len, 0);
        out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        let n = self
            .state
            .write_message(self.nonce, &self.plain, &mut out[start + 2..])
            .map_err(noise)?;
        debug_assert_eq!(n, len);
        self.nonce += 1;
        Ok(())
    }
}

/// Opens the other end's frames, in order.
pub struct Receiver {
    state: Arc<StatelessTransportState>,
    nonce: u64,
    plain: Vec<u8>,
}

impl Receiver {
    /// Decrypts one message (without its length) into a frame. Any tampering, replay or
    /// reordering fails here.
    pub fn open(&mut self, message: &[u8]) -> Result<Frame<'_>, WireError> {
        if message.len() > MAX_MESSAGE || message.len() <= TAG_LEN {
            return Err(WireError::Oversized(message.len()));
        }
        self.plain.resize(message.len(), 0);
        let n = self
            .state
            .read_message(self.nonce, message, &mut self.plain)
            .map_err(noise)?;
        self.nonce += 1;
        Frame::decode(&self.plain[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net_frame::split_message;

    fn unframe(wire: &[u8]) -> &[u8] {
        split_message(wire).unwrap().unwrap().0
    }

    fn pair(
        server: (&str, [u8; 32]),
        agent: (&str, [u8; 32]),
    ) -> Result<(Sender, Receiver, Sender, Receiver), WireError> {
        let (h, first) = Handshake::initiator(server.0, &server.1)?;
        let (answer, atx, arx) =
            Handshake::responder(agent.0, &agent.1)?.respond(unframe(&first))?;
        let (stx, srx) = h.finish(unframe(&answer))?;
        Ok((stx, srx, atx, arx))
    }

    #[test]
    fn frames_cross_both_ways_in_order() {
        let (mut stx, mut srx, mut atx, mut arx) = pair(("s1", [7; 32]), ("s1", [7; 32])).unwrap();
        let mut wire = Vec::new();
        stx.seal(FrameType::Input, b"echo hi\r", &mut wire).unwrap();
        stx.seal(FrameType::Hangup, b"", &mut wire).unwrap();
        let (m, used) = split_message(&wire).unwrap().unwrap();
        let f = arx.open(m).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Input, &b"echo hi\r"[..]));
        let (m, _) = split_message(&wire[used..]).unwrap().unwrap();
        assert_eq!(arx.open(m).unwrap().kind, FrameType::Hangup);
        let mut back = Vec::new();
        atx.seal(FrameType::Output, b"hi\r\n", &mut back).unwrap();
        let f = srx.open(unframe(&back)).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Output, &b"hi\r\n"[..]));
        // A replayed message does not open again.
        assert!(srx.open(unframe(&back)).is_err());
    }

    #[test]
    fn a_wrong_key_or_slot_fails_the_handshake() {
        assert!(pair(("s1", [7; 32]), ("s1", [8; 32])).is_err());
        assert!(pair(("s1", [7; 32]), ("s2", [7; 32])).is_err());
        // The agent refuses at the first message: it never answers a wrong key.
        let (_, first) = Handshake::initiator("s1", &[1; 32]).unwrap();
        assert!(Handshake::responder("s1", &[2; 32])
            .unwrap()
            .respond(unframe(&first))
            .is_err());
    }

    #[test]
    fn garbage_truncated_and_oversized_messages_are_errors() {
        let responder = || Handshake::responder("s1", &[7; 32]).unwrap();
        assert!(responder().respond(b"GET / HTTP/1.1\r\n").is_err());
        assert!(responder().respond(&[0u8; HANDSHAKE_LEN]).is_err());
        let (_, first) = Handshake::initiator("s1", &[7; 32]).unwrap();
        assert!(responder()
            .respond(&unframe(&first)[..HANDSHAKE_LEN - 1])
            .is_err());
        let (_, _, _, mut arx) = pair(("s1", [7; 32]), ("s1", [7; 32])).unwrap();
        assert!(arx.open(&[0u8; 3]).is_err());
        assert!(arx.open(&vec![0u8; MAX_MESSAGE + 1]).is_err());
        assert!(arx.open(&[0u8; 64]).is_err());
    }
}
