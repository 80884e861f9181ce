//! Idle detach against the real server: an attached session with no input for
//! `IDLE_SESSION_SECS` gets an `idle` warning, stays on input or `stay`, and is otherwise closed
//! with 4000 "idle" while its shell waits for a re-attach.

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use common::{Client, Frame, Server, WAIT};

/// Four seconds without input: the warning comes after two, with `detach_in` 2.
fn idle_server() -> Server {
    Server::local(&["--idle-session-secs", "4"])
}

/// Waits for the `idle` warning; how long it took.
async fn warning(c: &mut Client) -> Duration {
    let start = Instant::now();
    let frame = c.next_text().await;
    let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(frame, json!({"type": "idle", "detach_in": 2}));
    start.elapsed()
}

/// The close code and reason the server ends the socket with, within `within`.
async fn closed(c: &mut Client, within: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Some((u16::from(frame.code), frame.reason.to_string()))
            }
            Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected frame {t}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("closed without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_idle_session_is_warned_stays_when_asked_then_is_detached() {
    let server = idle_server();
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let id = c.ready().await.session.into_owned();
    let pid = c.shell_pid().await;
    let waited = warning(&mut c).await;
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // The user stays a second later: no close at the deadline a second after that, and a new
    // warning two seconds after the stay instead.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.send_json(json!({"type": "stay"})).await;
    assert_eq!(closed(&mut c, Duration::from_millis(1500)).await, None);
    warning(&mut c).await;
    // Nobody answers this time.
    let close = closed(&mut c, Duration::from_secs(4)).await;
    assert_eq!(close, Some((4000, "idle".to_owned())));
    // Detached, not ended: the shell waits for a re-attach, like after any drop.
    assert_eq!(common::alive(&[pid]), [pid]);
    let mut back = server.connect_as(&cookie, &format!("session={id}")).await;
    assert!(back.ready().await.resumed);
    back.sync().await;
}

#[tokio::test]
async fn typing_keeps_a_session_attached() {
    let server = idle_server();
    let mut c = server.connect("").await;
    c.ready().await;
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        c.send_bytes(b"x").await;
        match c.next_frame(Duration::from_millis(800)).await {
            Some(Frame::Text(v)) => panic!("a typing user got {v:?}"),
            Some(Frame::Closed(code)) => panic!("a typing user was closed: {code:?}"),
            _ => {}
        }
    }
    // And idle is off with 0.
    let off = Server::local(&["--idle-session-secs", "0"]);
    let mut c = off.connect("").await;
    c.ready().await;
    assert!(
        !matches!(
            c.next_frame(Duration::from_secs(3)).await,
            Some(Frame::Text(_) | Frame::Closed(_))
        ),
        "nothing from the server when idle detach is off"
    );
    let _ = WAIT;
}
