use super::*;
use crate::net_frame::split_message;

const BOTH: [Cipher; 2] = [Cipher::AesGcm, Cipher::ChaChaPoly];

fn unframe(wire: &[u8]) -> &[u8] {
    split_message(wire).unwrap().unwrap().0
}

type Ends = (Sender, Receiver, Sender, Receiver);

/// A handshake between a server offering `offer` and an agent preferring `prefer`.
fn shake(
    server: (&str, [u8; 32]),
    agent: (&str, [u8; 32]),
    offer: &[Cipher],
    prefer: &[Cipher],
) -> Result<Ends, WireError> {
    let (h, first) = Handshake::initiator_offering(server.0, &server.1, offer)?;
    let (answer, atx, arx) =
        Handshake::responder_preferring(agent.0, &agent.1, prefer)?.respond(unframe(&first))?;
    let (stx, srx) = h.finish(unframe(&answer))?;
    Ok((stx, srx, atx, arx))
}

fn pair(server: (&str, [u8; 32]), agent: (&str, [u8; 32])) -> Result<Ends, WireError> {
    let (h, first) = Handshake::initiator(server.0, &server.1)?;
    let (answer, atx, arx) = Handshake::responder(agent.0, &agent.1)?.respond(unframe(&first))?;
    let (stx, srx) = h.finish(unframe(&answer))?;
    Ok((stx, srx, atx, arx))
}

fn with(cipher: Cipher) -> Ends {
    shake(("s1", [7; 32]), ("s1", [7; 32]), &[cipher], &[cipher]).unwrap()
}

#[test]
fn frames_cross_both_ways_in_order_under_each_cipher() {
    for cipher in BOTH {
        let (mut stx, mut srx, mut atx, mut arx) = with(cipher);
        assert_eq!(
            (stx.cipher(), arx.cipher(), atx.cipher(), srx.cipher()),
            (cipher, cipher, cipher, cipher)
        );
        let mut wire = Vec::new();
        stx.seal(FrameType::Input, b"echo hi\r", &mut wire).unwrap();
        stx.seal(FrameType::Hangup, b"", &mut wire).unwrap();
        let used = split_message(&wire).unwrap().unwrap().1;
        let f = arx.open(&mut wire[2..used]).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Input, &b"echo hi\r"[..]));
        assert_eq!(
            arx.open(&mut wire[used + 2..]).unwrap().kind,
            FrameType::Hangup
        );
        let mut back = Vec::new();
        atx.seal(FrameType::Output, b"hi\r\n", &mut back).unwrap();
        let replay = back.clone();
        let f = srx.open(&mut back[2..]).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Output, &b"hi\r\n"[..]));
        // A replayed message does not open again.
        assert!(srx.open(&mut replay.clone()[2..]).is_err());
    }
}

#[test]
fn a_frame_is_sealed_in_place_within_its_bounds() {
    for cipher in BOTH {
        let (mut a, _, _, mut r) = with(cipher);
        let (mut b, _, _, _) = with(cipher);
        let body: Vec<u8> = (0..MAX_BODY).map(|i| (i % 251) as u8).collect();
        let mut wire = vec![0xaa; MAX_BODY + FRAME_OVERHEAD + 5];
        wire[crate::BODY_OFFSET..crate::BODY_OFFSET + body.len()].copy_from_slice(&body);
        let n = a
            .seal_in_place(FrameType::Output, &mut wire, body.len())
            .unwrap();
        assert_eq!(n, 2 + MAX_MESSAGE);
        assert_eq!(&wire[n..], &[0xaa; 5], "nothing written beyond the frame");
        let f = r.open(&mut wire[2..n]).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Output, &body[..]));
        // Too large a body, or too small a buffer, is refused without sealing anything.
        let mut big = vec![0; MAX_BODY + FRAME_OVERHEAD + 1];
        assert!(b
            .seal_in_place(FrameType::Output, &mut big, MAX_BODY + 1)
            .is_err());
        assert!(b.seal_in_place(FrameType::Output, &mut [0; 20], 2).is_err());
        assert!(b.seal(FrameType::Output, &big, &mut Vec::new()).is_err());
    }
}

#[test]
fn a_frame_tampered_in_flight_is_refused_under_each_cipher() {
    for cipher in BOTH {
        let (mut stx, _, _, mut arx) = with(cipher);
        let mut wire = Vec::new();
        stx.seal(FrameType::Input, b"rm -rf ~\r", &mut wire)
            .unwrap();
        // Each byte after the length flipped in turn (the type, the body, the tag), then bytes
        // cut off or added: all refused by the receiver the genuine frame is for...
        let mut tampered: Vec<Vec<u8>> = (2..wire.len())
            .map(|i| {
                let mut bad = wire.clone();
                bad[i] ^= 0x20;
                bad
            })
            .collect();
        tampered.push(wire[..wire.len() - 1].to_vec());
        tampered.push([&wire[..], &[0]].concat());
        for mut bad in tampered {
            assert!(
                arx.open(&mut bad[2..]).is_err(),
                "{cipher:?}: {bad:?} was taken"
            );
        }
        // ...which still opens the genuine frame: only the tampering was refused.
        let f = arx.open(&mut wire[2..]).unwrap();
        assert_eq!((f.kind, f.body), (FrameType::Input, &b"rm -rf ~\r"[..]));
    }
}

#[test]
fn the_cipher_is_the_agents_pick_among_those_offered() {
    let keys = (("s1", [7; 32]), ("s1", [7; 32]));
    let agreed = |offer: &[Cipher], prefer: &[Cipher]| {
        let (stx, srx, atx, arx) = shake(keys.0, keys.1, offer, prefer).unwrap();
        let c = stx.cipher();
        assert_eq!([srx.cipher(), atx.cipher(), arx.cipher()], [c, c, c]);
        c
    };
    use Cipher::{AesGcm as Aes, ChaChaPoly as ChaCha};
    assert_eq!(agreed(&[Aes, ChaCha], &[Aes, ChaCha]), Aes);
    // An agent without AES instructions prefers ChaCha only.
    assert_eq!(agreed(&[Aes, ChaCha], &[ChaCha]), ChaCha);
    // A server without them offers ChaCha only.
    assert_eq!(agreed(&[ChaCha], &[Aes, ChaCha]), ChaCha);
    // A deployment that offers AES only gets it, in software if need be.
    assert_eq!(agreed(&[Aes], &[ChaCha]), Aes);
    // The default ends agree on what this machine runs fast.
    let (stx, ..) = pair(keys.0, keys.1).unwrap();
    assert_eq!(stx.cipher(), Cipher::fast_here()[0]);
}

#[test]
fn an_offer_or_choice_tampered_with_fails_the_handshake() {
    // Flip the encrypted offer's byte: the first message no longer authenticates.
    let (_, mut first) = Handshake::initiator("s1", &[7; 32]).unwrap();
    first[2 + 32] ^= 1;
    assert!(Handshake::responder("s1", &[7; 32])
        .unwrap()
        .respond(unframe(&first))
        .is_err());
    // Flip the encrypted choice in the answer: the server refuses it.
    let (h, first) = Handshake::initiator("s1", &[7; 32]).unwrap();
    let (mut answer, ..) = Handshake::responder("s1", &[7; 32])
        .unwrap()
        .respond(unframe(&first))
        .unwrap();
    answer[2 + 32] ^= 1;
    assert!(h.finish(unframe(&answer)).is_err());
    // The first version's answer (no choice) to an offer is refused.
    let (h, first) = Handshake::initiator("s1", &[7; 32]).unwrap();
    let (answer, ..) = Handshake::responder("s1", &[7; 32])
        .unwrap()
        .respond(unframe(&first))
        .unwrap();
    assert!(h.finish(&unframe(&answer)[..HANDSHAKE_LEN]).is_err());
}

/// A raw offer, as a later version might send it.
fn offer_bytes(payload: &[u8]) -> Result<Cipher, WireError> {
    let mut h = Handshake::build("s1", &[7; 32], true, &[])?;
    let first = h.write(payload)?;
    let (_, tx, _) = Handshake::responder_preferring("s1", &[7; 32], &[Cipher::ChaChaPoly])?
        .respond(unframe(&first))?;
    Ok(tx.cipher())
}

#[test]
fn unknown_cipher_bytes_in_an_offer_are_passed_over() {
    assert_eq!(offer_bytes(&[9, 2]).unwrap(), Cipher::AesGcm);
    assert_eq!(offer_bytes(&[0, 2, 1]).unwrap(), Cipher::ChaChaPoly);
    assert!(offer_bytes(&[9, 0, 200]).is_err());
    assert!(offer_bytes(&[1; MAX_OFFER + 1]).is_err());
}

#[test]
fn an_agent_answers_the_first_versions_server_with_chacha() {
    // The first version's server: snow's own initiator, no payload, snow's transport.
    let params = NOISE_PARAMS.parse().unwrap();
    let prologue = prologue("s1");
    let mut old = Builder::new(params)
        .psk(0, &[7; 32])
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_initiator())
        .unwrap();
    let mut first = [0u8; HANDSHAKE_LEN];
    assert_eq!(old.write_message(&[], &mut first).unwrap(), HANDSHAKE_LEN);
    let (answer, mut atx, mut arx) = Handshake::responder("s1", &[7; 32])
        .unwrap()
        .respond(&first)
        .unwrap();
    assert_eq!(atx.cipher(), Cipher::ChaChaPoly);
    let mut none = [0u8; HANDSHAKE_LEN];
    assert_eq!(old.read_message(unframe(&answer), &mut none).unwrap(), 0);
    let old = old.into_stateless_transport_mode().unwrap();
    let mut wire = Vec::new();
    atx.seal(FrameType::Output, b"hi", &mut wire).unwrap();
    let mut plain = [0u8; 64];
    let n = old.read_message(0, unframe(&wire), &mut plain).unwrap();
    assert_eq!(&plain[..n], b"\x82hi");
    let mut msg = [0u8; 64];
    let n = old.write_message(0, b"\x02ls", &mut msg).unwrap();
    let f = arx.open(&mut msg[..n]).unwrap();
    assert_eq!((f.kind, f.body), (FrameType::Input, &b"ls"[..]));
}

/// The transport is Noise's for each cipher (key use and nonce layout): snow's own transport
/// of the protocol named with that cipher opens what a [`Sender`] seals and the reverse.
#[test]
fn the_transport_is_noises_for_each_cipher() {
    for cipher in BOTH {
        let name = format!("Noise_NNpsk0_25519_{}_BLAKE2s", cipher.name());
        let build = |initiator: bool| {
            let b = Builder::new(name.parse().unwrap())
                .psk(0, &[3; 32])
                .unwrap();
            if initiator {
                b.build_initiator()
            } else {
                b.build_responder()
            }
            .unwrap()
        };
        let (mut i, mut r) = (build(true), build(false));
        let mut m = [0u8; 128];
        let mut p = [0u8; 128];
        let n = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n], &mut p).unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        let (k1, k2) = r.dangerously_get_raw_split();
        let snow_i = i.into_stateless_transport_mode().unwrap();
        // The responder's halves: it receives with k1, sends with k2.
        let mut rx = Receiver {
            key: Key::new(cipher, &k1),
            nonce: 0,
        };
        let mut tx = Sender {
            key: Key::new(cipher, &k2),
            nonce: 0,
        };
        for nonce in 0..3u64 {
            let n = snow_i.write_message(nonce, b"\x02abc", &mut m).unwrap();
            let f = rx.open(&mut m[..n]).unwrap();
            assert_eq!(
                (f.kind, f.body),
                (FrameType::Input, &b"abc"[..]),
                "{cipher:?}"
            );
            let mut wire = Vec::new();
            tx.seal(FrameType::Output, b"xyz", &mut wire).unwrap();
            let n = snow_i.read_message(nonce, unframe(&wire), &mut p).unwrap();
            assert_eq!(&p[..n], b"\x82xyz", "{cipher:?}");
        }
    }
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
    assert!(responder()
        .respond(&[0u8; HANDSHAKE_LEN + MAX_OFFER + 1])
        .is_err());
    let (_, first) = Handshake::initiator("s1", &[7; 32]).unwrap();
    assert!(responder()
        .respond(&unframe(&first)[..HANDSHAKE_LEN - 1])
        .is_err());
    let (_, _, _, mut arx) = pair(("s1", [7; 32]), ("s1", [7; 32])).unwrap();
    assert!(arx.open(&mut [0u8; 3]).is_err());
    assert!(arx.open(&mut vec![0u8; MAX_MESSAGE + 1]).is_err());
    assert!(arx.open(&mut [0u8; 64]).is_err());
}
