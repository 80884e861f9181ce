//! Programs that do not read their input, and clients that do not read their output. A paste the
//! program never reads must not hold back the rest of the protocol (pause, ping, the client going
//! away), and the sessions of clients that vanish or stop reading end as the protocol says.

mod common;

use std::time::Duration;

use common::{alive, eventually, Client, Frame, Server, WAIT};
use futures_util::SinkExt;
use termpool::protocol::{ClientFrame, PingId, Pong, ServerFrame};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::Message;

/// Far more than a TTY's input queue (4 KiB) holds: the write of it blocks until the program reads.
const PASTE: usize = 300_000;

/// Starts `program` in the foreground with the TTY raw and silent, then pastes into it. Returns
/// the shell's pid.
async fn paste_into_program_that_never_reads(c: &mut Client, program: &str) -> i32 {
    c.ready().await;
    let pid = c.shell_pid().await;
    c.run(&format!("stty -icanon -echo; echo ST\"\"ARTED; {program}"))
        .await;
    c.expect_output("STARTED").await;
    c.send_bytes(&vec![b'q'; PASTE]).await;
    pid
}

/// Reads for `time`; the number of output bytes seen, and whether a pong with `id` came.
async fn read_for(c: &mut Client, time: Duration, id: &str) -> (usize, bool) {
    let deadline = tokio::time::Instant::now() + time;
    let (mut bytes, mut ponged) = (0, false);
    let id = PingId::new(&serde_json::to_string(id).unwrap()).unwrap();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_frame(left).await {
            None => return (bytes, ponged),
            Some(Frame::Bytes(b)) => bytes += b.len(),
            Some(Frame::Text(ServerFrame::Pong(Pong { id: got }))) if got == id => ponged = true,
            Some(Frame::Closed(code)) => panic!("closed ({code:?})"),
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn pause_and_ping_pass_a_paste_the_program_does_not_read() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    // `yes` floods output and never reads its input.
    paste_into_program_that_never_reads(&mut c, "yes").await;
    c.send_frame(&ClientFrame::Pause).await;
    let id = PingId::new(r#""after-pause""#).unwrap();
    c.send_frame(&ClientFrame::Ping { id }).await;
    // What was on its way when the pause came still arrives; then nothing.
    let (_, ponged) = read_for(&mut c, Duration::from_secs(2), "after-pause").await;
    assert!(ponged, "the ping behind the paste is answered");
    let (bytes, _) = read_for(&mut c, Duration::from_secs(1), "").await;
    assert_eq!(bytes, 0, "output goes on after pause");
    c.send_frame(&ClientFrame::Resume).await;
    let (bytes, _) = read_for(&mut c, Duration::from_millis(500), "").await;
    assert!(bytes > 0, "resume starts the output again");
}

#[tokio::test]
async fn a_socket_dropped_mid_paste_is_detached_and_hung_up() {
    let server = Server::local(&["--reattach-grace-secs", "0"]);
    let mut c = server.connect("").await;
    let pid = paste_into_program_that_never_reads(&mut c, "yes > /dev/null").await;
    drop(c);
    assert!(
        eventually(WAIT, || alive(&[pid]).is_empty()).await,
        "the shell of a dropped socket lives on behind a blocked paste"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_flood_is_dropped() {
    let server = Server::local(&["--ping-interval-secs", "1", "--reattach-grace-secs", "0"]);
    let mut c = server.connect("").await;
    c.ready().await;
    let pid = c.shell_pid().await;
    c.run("cat /dev/zero").await;
    // The client never reads again, so it answers no ping, and the server's queue to it is full.
    let silent = c;
    assert!(
        eventually(Duration::from_secs(20), || alive(&[pid]).is_empty()).await,
        "the session of a client that stopped reading is never hung up"
    );
    drop(silent);
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    let payload = b"{\"type\":\"input\",\"data\":\"\xff\"}".to_vec();
    let frame = RawFrame::message(payload, OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(frame)).await.unwrap();
    loop {
        match c.next_frame(WAIT).await {
            Some(Frame::Closed(code)) => {
                assert_eq!(code, Some(1007));
                break;
            }
            Some(_) => {}
            None => panic!("no close after text that is not UTF-8"),
        }
    }
}
