//! The agent's wire driven by hand (blocking, without `RemoteAgent`): each transport cipher
//! against the real agent, and frames tampered with in flight.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use termpool_agent_proto::{
    aes_is_fast, Cipher, FrameType, Handshake, Receiver, Sender, ShellRequest,
};

use super::fixture::AgentContainer;
use super::{read_to_close, SLOT};

/// A connection to the agent at `addr` whose handshake offered `offer`.
pub fn connect(addr: &str, psk: &[u8; 32], offer: &[Cipher]) -> (TcpStream, Sender, Receiver) {
    let (h, first) = Handshake::initiator_offering(SLOT, psk, offer).unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&first).unwrap();
    let answer = read_message(&mut stream).expect("the handshake's answer");
    let (tx, rx) = h.finish(&answer).unwrap();
    (stream, tx, rx)
}

/// One length-prefixed message; `None` when the connection ends first.
fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn send(stream: &mut TcpStream, tx: &mut Sender, kind: FrameType, body: &[u8]) {
    let mut wire = Vec::new();
    tx.seal(kind, body, &mut wire).unwrap();
    stream.write_all(&wire).unwrap();
}

fn open_body(user: &str) -> Vec<u8> {
    serde_json::to_vec(&ShellRequest {
        user: user.into(),
        home: format!("/workspace/{user}").into(),
        cols: 80,
        rows: 24,
        env: Cow::Owned(vec!["TERM=dumb".to_string()]),
    })
    .unwrap()
}

/// A session under `offer`'s cipher: OPEN, a command, its output, EXIT with the shell's code.
fn session_under(addr: &str, psk: &[u8; 32], user: &str, offer: &[Cipher]) -> Cipher {
    let (mut stream, mut tx, mut rx) = connect(addr, psk, offer);
    send(&mut stream, &mut tx, FrameType::Open, &open_body(user));
    send(
        &mut stream,
        &mut tx,
        FrameType::Input,
        b"echo o''k; exit 7\r",
    );
    let (mut seen, mut started) = (String::new(), false);
    loop {
        let mut msg = read_message(&mut stream).expect("frames until EXIT");
        let frame = rx.open(&mut msg).expect("every frame opens");
        match frame.kind {
            FrameType::Started => started = true,
            FrameType::Output => seen.push_str(&String::from_utf8_lossy(frame.body)),
            FrameType::Exit => {
                assert_eq!(frame.body, br#"{"exit":7}"#);
                break;
            }
            other => panic!("{other:?} in a session"),
        }
    }
    assert!(started && seen.contains("ok"), "{seen:?}");
    assert_eq!(tx.cipher(), rx.cipher());
    tx.cipher()
}

#[tokio::test]
async fn each_cipher_carries_a_session_and_tampered_frames_get_nothing() {
    let c = AgentContainer::start("ciphers", &[]);
    c.ready().await;
    let (dave, dave_uid) = c.account(4).await;
    let probe = Probe {
        addr: c.addr.clone(),
        psk: c.psk,
    };
    let agent_side = tokio::task::spawn_blocking(move || probe.run(&dave));
    let (fast, chacha, aes) = agent_side.await.unwrap();
    // The agent runs on this machine's CPU: it takes AES-GCM when both ends have AES-NI.
    let expected = if aes_is_fast() {
        Cipher::AesGcm
    } else {
        Cipher::ChaChaPoly
    };
    assert_eq!(
        (fast, chacha, aes),
        (expected, Cipher::ChaChaPoly, Cipher::AesGcm)
    );
    assert!(
        c.processes_of(dave_uid).is_empty(),
        "{:?}",
        c.processes_of(dave_uid)
    );
}

/// The blocking half of the test above, on the container's address and key.
struct Probe {
    addr: String,
    psk: [u8; 32],
}

impl Probe {
    /// The ciphers agreed by the default offer, a ChaCha-only and an AES-only one.
    fn run(&self, user: &str) -> (Cipher, Cipher, Cipher) {
        let (addr, psk) = (&self.addr, &self.psk);
        let fast = session_under(addr, psk, user, Cipher::fast_here());
        let chacha = session_under(addr, psk, user, &[Cipher::ChaChaPoly]);
        let aes = session_under(addr, psk, user, &[Cipher::AesGcm]);
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            self.tampered_open_gets_no_shell(user, cipher);
        }
        (fast, chacha, aes)
    }

    /// An OPEN whose ciphertext, or tag, was changed in flight: the agent closes the connection
    /// without a word.
    fn tampered_open_gets_no_shell(&self, user: &str, cipher: Cipher) {
        for at in [5, usize::MAX] {
            let (mut stream, mut tx, _rx) = connect(&self.addr, &self.psk, &[cipher]);
            assert_eq!(tx.cipher(), cipher);
            let mut wire = Vec::new();
            tx.seal(FrameType::Open, &open_body(user), &mut wire)
                .unwrap();
            let i = at.min(wire.len() - 1);
            wire[i] ^= 0x01;
            stream.write_all(&wire).unwrap();
            assert!(
                read_to_close(&mut stream),
                "{cipher:?}: byte {i} flipped was taken"
            );
        }
    }
}
