//! The closing handshake ends the TCP connection at once: RFC 6455 has the client wait for the
//! server to close the connection, so any linger on the server's side is a stall per closed tab.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Frame, Server, WAIT};
use futures_util::SinkExt;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// Close to the server's FIN, at most; the linger this replaces lasted a second.
const PROMPT: Duration = Duration::from_millis(100);

fn server() -> Server {
    Server::local(&[])
}

/// Reads the raw TCP stream under the WebSocket until the server closes it (end of stream or
/// reset), for at most `within`; true when it did.
async fn server_ended_connection(c: &mut Client, within: Duration) -> bool {
    let MaybeTlsStream::Plain(tcp) = c.ws.get_mut() else {
        panic!("the tests speak plain TCP");
    };
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// Reads frames until a close frame; its code.
async fn close_frame(c: &mut Client) -> Option<u16> {
    loop {
        match c.next_frame(WAIT).await {
            Some(Frame::Closed(code)) => return code,
            None => panic!("no close frame within {WAIT:?}"),
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn the_server_closes_the_connection_right_after_answering_a_close() {
    let server = server();
    for _ in 0..3 {
        let mut c = server.connect("").await;
        c.ready().await;
        c.run("echo UP").await;
        c.expect_output("UP").await;
        let started = Instant::now();
        c.ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await
        .unwrap();
        assert_eq!(close_frame(&mut c).await, Some(1000));
        assert!(
            server_ended_connection(&mut c, WAIT).await,
            "the server never closed the connection"
        );
        let took = started.elapsed();
        eprintln!("close frame to the server's FIN: {took:?}");
        assert!(
            took < PROMPT,
            "the connection closed {took:?} after the close frame"
        );
    }
}

#[tokio::test]
async fn after_its_own_close_the_server_waits_for_the_answer_then_closes_at_once() {
    let server = server();
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("exit 3").await;
    assert_eq!(close_frame(&mut c).await, Some(1000));
    // The client takes its time to answer: the connection stays open for the answer...
    assert!(
        !server_ended_connection(&mut c, Duration::from_millis(300)).await,
        "the server closed the connection before the client answered its close"
    );
    // (tungstenite queued the answer when it read the close frame; flushing sends it.)
    let started = Instant::now();
    let _ = c.ws.flush().await;
    // ... and closes at once when it comes.
    assert!(
        server_ended_connection(&mut c, WAIT).await,
        "the server never closed the connection"
    );
    let took = started.elapsed();
    assert!(
        took < PROMPT,
        "the connection closed {took:?} after the answer"
    );
}

#[tokio::test]
async fn a_client_that_never_answers_a_close_is_let_go_within_seconds() {
    let server = server();
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("exit").await;
    assert_eq!(close_frame(&mut c).await, Some(1000));
    assert!(
        server_ended_connection(&mut c, Duration::from_secs(3)).await,
        "the server kept waiting for a close answer that never came"
    );
}
