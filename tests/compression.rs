//! permessage-deflate on the wire, seen by a raw client of the test's own that speaks it (as every
//! browser does): the offer is accepted without context takeover, terminal output comes
//! compressed, echoes do not, compressed input works, and a message that inflates past the frame
//! limit closes the socket (1009) instead of filling memory.

mod common;

use std::time::Duration;

use common::{contains, Server};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
const WAIT: Duration = Duration::from_secs(15);

/// A frame as the server sent it.
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn compressed(&self) -> bool {
        self.first & 0x40 != 0
    }
    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
    /// The message, inflated when compressed (each on its own: no context takeover).
    fn message(&self) -> Vec<u8> {
        if !self.compressed() {
            return self.payload.clone();
        }
        let input = [&self.payload[..], &TAIL].concat();
        let mut out = Vec::with_capacity(input.len() * 50 + 1024);
        let mut inflater = Decompress::new(false);
        inflater
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflater.total_in() as usize, input.len(), "room enough");
        out
    }
}

struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Payload bytes of every frame received, as on the wire.
    wire_bytes: usize,
}

impl RawClient {
    /// Upgrades with `offer`; the client and the response's head.
    async fn connect(server: &Server, offer: &str) -> (RawClient, String) {
        let cookie = server.new_identity().await;
        let mut tcp = TcpStream::connect(&server.addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {offer}\r\nCookie: {cookie}\r\n\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut c = RawClient {
            tcp,
            buf: Vec::new(),
            wire_bytes: 0,
        };
        let end = loop {
            if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            c.fill().await;
        };
        let head = String::from_utf8(c.buf.drain(..end).collect()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (c, head)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("the server answers")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if let Some((len, payload)) = frame_len(&self.buf) {
                let first = self.buf[0];
                let payload = self.buf[len..len + payload].to_vec();
                self.buf.drain(..len + payload.len());
                self.wire_bytes += payload.len();
                return Frame { first, payload };
            }
            self.fill().await;
        }
    }

    /// Sends a binary message, compressed (RSV1) or not, masked as a client must.
    async fn send(&mut self, message: &[u8], compress: bool) {
        let (first, payload) = if compress {
            (0x80 | 0x40 | 0x2, deflate(message))
        } else {
            (0x80 | 0x2, message.to_vec())
        };
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![first];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// Reads frames until the terminal output (inflated) holds `needle`; the frames read.
    async fn output_until(&mut self, needle: &[u8]) -> Vec<Frame> {
        let (mut frames, mut output) = (Vec::new(), Vec::new());
        while !contains(&output, needle) {
            let f = self.frame().await;
            if f.opcode() == 2 {
                output.extend_from_slice(&f.message());
            }
            frames.push(f);
        }
        frames
    }
}

/// Head and payload length of the whole frame at the start of `buf`, if it is all there.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let (head, len) = match *buf.get(1)? & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (buf.len() >= head + len).then_some((head, len))
}

fn deflate(message: &[u8]) -> Vec<u8> {
    let mut deflater = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() + 1024);
    deflater
        .compress_vec(message, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

#[tokio::test]
async fn output_comes_compressed_echoes_do_not_and_compressed_input_works() {
    let server = Server::local(&[]);
    let (mut c, head) =
        RawClient::connect(&server, "permessage-deflate; client_max_window_bits").await;
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{head}"
    );
    let ready = c.frame().await;
    assert_eq!((ready.opcode(), ready.compressed()), (1, false));
    assert!(contains(&ready.message(), b"\"ready\""));

    // A command sent compressed; its output (a listing-like text) comes compressed.
    let command = b"for i in $(seq 1 3000); do echo \"-rw-r--r-- 1 user user 4096 file-$i.txt\"; done; echo EN\"\"D; PS1='REA''DY> '\r";
    c.send(command, true).await;
    let before = c.wire_bytes;
    // Until the prompt the command line sets: the echo below must be a frame of its own.
    let frames = c.output_until(b"READY> ").await;
    let raw: usize = frames.iter().map(|f| f.message().len()).sum();
    let wire = c.wire_bytes - before;
    assert!(
        frames.iter().any(Frame::compressed),
        "no frame came compressed"
    );
    assert!(
        wire * 2 < raw,
        "{wire} bytes on the wire for {raw} of output"
    );

    // A keystroke is sent plain and its echo comes plain.
    c.send(b"x", false).await;
    let echo = c.frame().await;
    assert_eq!((echo.message(), echo.compressed()), (b"x".to_vec(), false));
}

#[tokio::test]
async fn without_an_offer_nothing_is_compressed() {
    let server = Server::local(&[]);
    let (mut c, head) = RawClient::connect(&server, "x-unknown-extension").await;
    assert!(!head
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    c.frame().await;
    c.send(b"seq 1 5000; echo EN\"\"D\r", false).await;
    let frames = c.output_until(b"END").await;
    assert!(!frames.iter().any(Frame::compressed));
}

#[tokio::test]
async fn a_message_that_inflates_past_the_frame_limit_closes_with_1009() {
    let server = Server::local(&["--max-frame-bytes", "65536"]);
    let (mut c, _) = RawClient::connect(&server, "permessage-deflate").await;
    c.frame().await;
    // 16 MiB of zeros compress to about 16 KiB, well under the limit: inflated, far over it.
    let bomb = vec![0u8; 16 << 20];
    c.send(&bomb, true).await;
    let close = loop {
        let f = c.frame().await;
        if f.opcode() == 8 {
            break f;
        }
    };
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1009
    );
}
