//! Throws garbage at a live session: random binary and text frames, frames of the full 1 MiB
//! limit, and resize storms. The server must stay healthy and the session must keep working.

mod common;

use std::time::Duration;

use common::{Frame, Server};
use termpool::protocol::{ClientFrame, PingId, Pong, ServerFrame};

/// A small deterministic generator (xorshift): the same garbage every run, no extra crate.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self, len: usize) -> String {
        let pieces = [
            "{",
            "}",
            "\"type\"",
            ":",
            "\"resize\"",
            "\"cols\"",
            "1e9",
            "-1",
            "[",
            "null",
            "é",
            "\\u0000",
            ",",
        ];
        (0..len)
            .map(|_| pieces[(self.next() % pieces.len() as u64) as usize])
            .collect()
    }
}

/// Reads and discards whatever the server sends for `time`; counts error frames.
async fn drain(c: &mut common::Client, time: Duration) -> usize {
    let mut errors = 0;
    let deadline = tokio::time::Instant::now() + time;
    while let Some(frame) = c
        .next_frame(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        match frame {
            Frame::Text(ServerFrame::Error(_)) => errors += 1,
            Frame::Closed(code) => panic!("the session was closed ({code:?})"),
            _ => {}
        }
    }
    errors
}

#[tokio::test]
async fn garbage_resize_storms_and_huge_frames_leave_the_session_working() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    // Everything typed below goes to `cat`, which throws it away.
    c.run("stty raw -echo; printf 'SI''NK>'; cat > /dev/null; stty sane")
        .await;
    c.expect_output("SINK>").await;
    let mut g = Garbage(0x9e37_79b9_7f4a_7c15);

    let mut bad_text = 0;
    for round in 0..300 {
        match round % 3 {
            0 => {
                let len = (g.next() % 4096) as usize;
                c.send_bytes(&g.bytes(len)).await;
            }
            1 => {
                let len = (g.next() % 64) as usize;
                c.send_text(&g.text(len)).await;
                bad_text += 1;
            }
            _ => {
                let cols = (g.next() % 1200) as i64 - 100;
                let rows = (g.next() % 1200) as i64 - 100;
                c.send_frame(&ClientFrame::Resize { cols, rows }).await;
            }
        }
    }
    for _ in 0..3 {
        c.send_bytes(&vec![b'x'; 1 << 20]).await; // exactly the frame limit: accepted
    }
    let errors = drain(&mut c, Duration::from_secs(2)).await;
    assert!(
        errors >= bad_text,
        "every bad text frame got an error frame ({errors} < {bad_text})"
    );

    let server_pid = server.pid();
    let (status, _, body) = common::http_get(&server.addr, "/healthz", &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // The same session still answers, and a new one works too.
    let id = PingId::new(r#""still-there""#).unwrap();
    c.send_frame(&ClientFrame::Ping { id: id.clone() }).await;
    loop {
        if let ServerFrame::Pong(Pong { id: got }) = c.next_server_frame().await {
            assert_eq!(got, id);
            break;
        }
    }
    let mut fresh = server.connect("").await;
    fresh.ready().await;
    fresh.run("echo OK$((1+1))").await;
    fresh.expect_output("OK2").await;
    assert!(common::alive(&[server_pid as i32]) == vec![server_pid as i32]);
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_only_that_socket() {
    let server = Server::local(&[]);
    let mut bystander = server.connect("").await;
    bystander.ready().await;
    let mut c = server.connect("").await;
    c.ready().await;
    c.send_bytes(&vec![b'y'; (1 << 20) + 1]).await;
    loop {
        match c.next_frame(common::WAIT).await {
            Some(Frame::Closed(code)) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Some(_) => {}
            None => panic!("no close"),
        }
    }
    bystander.run("echo B$((1+1))").await;
    bystander.expect_output("B2").await;
}
