//! The Noise layer both ends use, without I/O: the two-message handshake, which also agrees on
//! the transport cipher, then one [`Sender`] and one [`Receiver`] per end that seal and open
//! frames in place (explicit nonces, so the two directions are independent).

use snow::{Builder, HandshakeState};

use crate::net::{prologue, NOISE_PARAMS};
use crate::net_cipher::{Cipher, Key};
use crate::net_frame::{
    Frame, FrameType, WireError, FRAME_OVERHEAD, MAX_BODY, MAX_MESSAGE, TAG_LEN,
};

#[cfg(test)]
mod tests;

/// The length of a handshake message without payload: an ephemeral key and a tag.
pub const HANDSHAKE_LEN: usize = 32 + TAG_LEN;
/// The most cipher bytes an offer may hold.
pub const MAX_OFFER: usize = 8;

fn noise(e: snow::Error) -> WireError {
    WireError::Noise(e.to_string())
}

/// A handshake in progress, on either end: the initiator's offer of transport ciphers, or the
/// responder's preference among them.
pub struct Handshake {
    state: HandshakeState,
    ciphers: Vec<Cipher>,
}

impl Handshake {
    fn build(
        slot: &str,
        psk: &[u8; 32],
        initiator: bool,
        ciphers: &[Cipher],
    ) -> Result<Self, WireError> {
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
        Ok(Handshake {
            state,
            ciphers: ciphers.to_vec(),
        })
    }

    /// The server's side, offering the ciphers this machine runs fast: the handshake and the
    /// first message to send (length-prefixed).
    pub fn initiator(slot: &str, psk: &[u8; 32]) -> Result<(Handshake, Vec<u8>), WireError> {
        Self::initiator_offering(slot, psk, Cipher::fast_here())
    }

    /// The server's side with its own offer, best first (at most [`MAX_OFFER`]). The offer is
    /// the first message's payload, encrypted and authenticated under the slot's key; an empty
    /// offer is the first version's handshake (no payload, ChaCha20-Poly1305).
    pub fn initiator_offering(
        slot: &str,
        psk: &[u8; 32],
        offer: &[Cipher],
    ) -> Result<(Handshake, Vec<u8>), WireError> {
        if offer.len() > MAX_OFFER {
            return Err(WireError::Noise(format!(
                "an offer of {} ciphers",
                offer.len()
            )));
        }
        let mut h = Self::build(slot, psk, true, offer)?;
        let payload: Vec<u8> = offer.iter().map(|&c| c as u8).collect();
        let first = h.write(&payload)?;
        Ok((h, first))
    }

    /// The agent's side, before the initiator's message, preferring the ciphers this machine
    /// runs fast.
    pub fn responder(slot: &str, psk: &[u8; 32]) -> Result<Handshake, WireError> {
        Self::responder_preferring(slot, psk, Cipher::fast_here())
    }

    /// The agent's side with its own preference, best first: it takes the first of `prefer` the
    /// server offers, else the first offered cipher it knows.
    pub fn responder_preferring(
        slot: &str,
        psk: &[u8; 32],
        prefer: &[Cipher],
    ) -> Result<Handshake, WireError> {
        Self::build(slot, psk, false, prefer)
    }

    /// The agent reads the initiator's message (without its length) and answers with its
    /// choice: the answer (length-prefixed) and the session's two halves. A wrong key or slot
    /// fails here.
    pub fn respond(mut self, message: &[u8]) -> Result<(Vec<u8>, Sender, Receiver), WireError> {
        let offer = self.read(message, HANDSHAKE_LEN..=HANDSHAKE_LEN + MAX_OFFER)?;
        let (cipher, choice) = if offer.is_empty() {
            (Cipher::ChaChaPoly, Vec::new())
        } else {
            let cipher = self.choose(&offer)?;
            (cipher, vec![cipher as u8])
        };
        let answer = self.write(&choice)?;
        let (tx, rx) = self.split(cipher)?;
        Ok((answer, tx, rx))
    }

    fn choose(&self, offer: &[u8]) -> Result<Cipher, WireError> {
        let offered: Vec<Cipher> = offer.iter().filter_map(|&b| Cipher::from_byte(b)).collect();
        self.ciphers
            .iter()
            .find(|c| offered.contains(c))
            .or(offered.first())
            .copied()
            .ok_or_else(|| WireError::Noise(format!("no known cipher offered: {offer:?}")))
    }

    /// The server reads the agent's answer (without its length), which names one of the
    /// ciphers offered: the session's two halves.
    pub fn finish(mut self, message: &[u8]) -> Result<(Sender, Receiver), WireError> {
        let len = HANDSHAKE_LEN + usize::from(!self.ciphers.is_empty());
        let choice = self.read(message, len..=len)?;
        let cipher = match choice.first() {
            None => Cipher::ChaChaPoly,
            Some(&b) => Cipher::from_byte(b)
                .filter(|c| self.ciphers.contains(c))
                .ok_or_else(|| {
                    WireError::Noise(format!("the answer chose cipher {b}, not offered"))
                })?,
        };
        self.split(cipher)
    }

    /// Reads a handshake message whose length must be in `lens`: its payload.
    fn read(
        &mut self,
        message: &[u8],
        lens: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<u8>, WireError> {
        if !lens.contains(&message.len()) {
            return Err(WireError::Noise(format!(
                "a handshake message of {} bytes, not {lens:?}",
                message.len()
            )));
        }
        let mut payload = vec![0u8; message.len()];
        let n = self
            .state
            .read_message(message, &mut payload)
            .map_err(noise)?;
        payload.truncate(n);
        Ok(payload)
    }

    fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut out = vec![0u8; 2 + HANDSHAKE_LEN + payload.len()];
        let n = self
            .state
            .write_message(payload, &mut out[2..])
            .map_err(noise)?;
        out.truncate(2 + n);
        out[..2].copy_from_slice(&(n as u16).to_be_bytes());
        Ok(out)
    }

    /// Noise's Split: the initiator sends with the first key, the responder with the second.
    fn split(mut self, cipher: Cipher) -> Result<(Sender, Receiver), WireError> {
        if !self.state.is_handshake_finished() {
            return Err(WireError::Noise("the handshake is not finished".into()));
        }
        let (k1, k2) = self.state.dangerously_get_raw_split();
        let (send, receive) = if self.state.is_initiator() {
            (k1, k2)
        } else {
            (k2, k1)
        };
        Ok((
            Sender {
                key: Key::new(cipher, &send),
                nonce: 0,
            },
            Receiver {
                key: Key::new(cipher, &receive),
                nonce: 0,
            },
        ))
    }
}

/// The next nonce of a direction; the last one is Noise's reserved value, never used.
fn next_nonce(nonce: &mut u64) -> Result<u64, WireError> {
    if *nonce == u64::MAX {
        return Err(WireError::Noise("the connection used up its nonces".into()));
    }
    *nonce += 1;
    Ok(*nonce - 1)
}

/// Seals this end's frames, in order.
pub struct Sender {
    pub(crate) key: Key,
    pub(crate) nonce: u64,
}

impl Sender {
    /// The transport cipher the handshake agreed on.
    pub fn cipher(&self) -> Cipher {
        self.key.cipher()
    }

    /// Seals in place the frame laid out at the start of `wire`, whose body of `body_len` bytes
    /// the caller wrote at [`crate::BODY_OFFSET`]: writes the length and the type byte before
    /// it, encrypts, and writes the tag after it. Returns the frame's length on the wire,
    /// `body_len` + [`FRAME_OVERHEAD`].
    pub fn seal_in_place(
        &mut self,
        kind: FrameType,
        wire: &mut [u8],
        body_len: usize,
    ) -> Result<usize, WireError> {
        let total = body_len + FRAME_OVERHEAD;
        if body_len > MAX_BODY || wire.len() < total {
            return Err(WireError::Oversized(body_len + 1));
        }
        let nonce = next_nonce(&mut self.nonce)?;
        let frame = &mut wire[..total];
        frame[..2].copy_from_slice(&((total - 2) as u16).to_be_bytes());
        frame[2] = kind as u8;
        let (plain, tag) = frame[2..].split_at_mut(1 + body_len);
        tag.copy_from_slice(&self.key.seal(nonce, plain)?);
        Ok(total)
    }

    /// Appends the sealed frame, length first, to `out` (the body copied once).
    pub fn seal(
        &mut self,
        kind: FrameType,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        if body.len() > MAX_BODY {
            return Err(WireError::Oversized(body.len() + 1));
        }
        let start = out.len();
        out.extend_from_slice(&[0; crate::BODY_OFFSET]);
        out.extend_from_slice(body);
        out.extend_from_slice(&[0; TAG_LEN]);
        match self.seal_in_place(kind, &mut out[start..], body.len()) {
            Ok(_) => Ok(()),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Opens the other end's frames, in order.
pub struct Receiver {
    pub(crate) key: Key,
    pub(crate) nonce: u64,
}

impl Receiver {
    /// The transport cipher the handshake agreed on.
    pub fn cipher(&self) -> Cipher {
        self.key.cipher()
    }

    /// Decrypts one message (without its length) in place into a frame that borrows it. Any
    /// tampering, replay or reordering fails here.
    pub fn open<'m>(&mut self, message: &'m mut [u8]) -> Result<Frame<'m>, WireError> {
        if message.len() > MAX_MESSAGE || message.len() <= TAG_LEN {
            return Err(WireError::Oversized(message.len()));
        }
        let n = self.key.open(self.nonce, message)?;
        next_nonce(&mut self.nonce)?;
        Frame::decode(&message[..n])
    }
}
