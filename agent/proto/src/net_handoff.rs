//! A session's transport state, as the agent hands it to its node's relay over a unix socket
//! (with the connection and the PTY as descriptors): each direction's cipher, key and next nonce,
//! so that the relay seals and opens exactly where the agent stopped.

use crate::net_cipher::{Cipher, Key};
use crate::net_frame::WireError;
use crate::net_noise::{Receiver, Sender};

/// The layout's version, its first byte.
const VERSION: u8 = 1;
/// A direction: the cipher's byte, the key, the next nonce (big-endian).
const DIRECTION_LEN: usize = 1 + 32 + 8;
/// The whole state: the version, the sending direction, the receiving one.
pub const HANDOFF_LEN: usize = 1 + 2 * DIRECTION_LEN;

/// The state of a session whose frames `tx` seals and `rx` opens.
pub fn encode_handoff(tx: &Sender, rx: &Receiver) -> [u8; HANDOFF_LEN] {
    let mut out = [0u8; HANDOFF_LEN];
    out[0] = VERSION;
    put(&mut out[1..1 + DIRECTION_LEN], &tx.key, tx.nonce);
    put(&mut out[1 + DIRECTION_LEN..], &rx.key, rx.nonce);
    out
}

/// The sender and receiver [`encode_handoff`] was given, as they were.
pub fn decode_handoff(bytes: &[u8]) -> Result<(Sender, Receiver), WireError> {
    if bytes.len() != HANDOFF_LEN || bytes[0] != VERSION {
        return Err(WireError::Noise(format!(
            "a hand-off of {} bytes, version {:?}",
            bytes.len(),
            bytes.first()
        )));
    }
    let (key, nonce) = take(&bytes[1..1 + DIRECTION_LEN])?;
    let tx = Sender { key, nonce };
    let (key, nonce) = take(&bytes[1 + DIRECTION_LEN..])?;
    Ok((tx, Receiver { key, nonce }))
}

fn put(out: &mut [u8], key: &Key, nonce: u64) {
    out[0] = key.cipher() as u8;
    out[1..33].copy_from_slice(key.raw());
    out[33..41].copy_from_slice(&nonce.to_be_bytes());
}

fn take(bytes: &[u8]) -> Result<(Key, u64), WireError> {
    let cipher = Cipher::from_byte(bytes[0])
        .ok_or_else(|| WireError::Noise(format!("a hand-off with cipher {}", bytes[0])))?;
    let raw: [u8; 32] = bytes[1..33].try_into().expect("32 bytes");
    let nonce = u64::from_be_bytes(bytes[33..41].try_into().expect("8 bytes"));
    Ok((Key::new(cipher, &raw), nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{message_len, FrameType, Handshake};

    fn pair(cipher: Cipher) -> ((Sender, Receiver), (Sender, Receiver)) {
        let psk = [7u8; 32];
        let (client, hello) = Handshake::initiator_offering("slot-0", &psk, &[cipher]).unwrap();
        let (answer, tx, rx) = Handshake::responder("slot-0", &psk)
            .unwrap()
            .respond(&hello[2..])
            .unwrap();
        (client.finish(&answer[2..]).unwrap(), (tx, rx))
    }

    #[test]
    fn a_handed_off_session_goes_on_where_it_stopped_in_both_directions() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            let ((mut ctx, mut crx), (mut atx, arx)) = pair(cipher);
            // A few frames before the hand-off, so the nonces are not at zero.
            let mut wire = Vec::new();
            for _ in 0..3 {
                atx.seal(FrameType::Output, b"before", &mut wire).unwrap();
            }
            let mut msgs = wire.clone();
            while !msgs.is_empty() {
                let len = message_len(&msgs).unwrap().unwrap();
                assert_eq!(crx.open(&mut msgs[2..2 + len]).unwrap().body, b"before");
                msgs.drain(..2 + len);
            }

            let state = encode_handoff(&atx, &arx);
            let (mut rtx, mut rrx) = decode_handoff(&state).unwrap();
            assert_eq!(rtx.cipher(), cipher);

            let mut out = Vec::new();
            rtx.seal(FrameType::Output, b"after", &mut out).unwrap();
            let frame = crx.open(&mut out[2..]).unwrap();
            assert_eq!((frame.kind, frame.body), (FrameType::Output, &b"after"[..]));
            let mut input = Vec::new();
            ctx.seal(FrameType::Input, b"typed", &mut input).unwrap();
            assert_eq!(rrx.open(&mut input[2..]).unwrap().body, b"typed");
        }
    }

    #[test]
    fn a_garbled_hand_off_is_refused() {
        let ((_, _), (tx, rx)) = pair(Cipher::ChaChaPoly);
        let state = encode_handoff(&tx, &rx);
        assert!(decode_handoff(&state[..HANDOFF_LEN - 1]).is_err());
        let mut wrong = state;
        wrong[0] = 9;
        assert!(decode_handoff(&wrong).is_err());
        let mut wrong = state;
        wrong[1] = 77;
        assert!(decode_handoff(&wrong).is_err());
    }
}
