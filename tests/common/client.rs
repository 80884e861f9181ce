//! A WebSocket client of a test server: typed control frames, terminal output awaited by content.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use termpool::protocol::{ClientFrame, ErrorFrame, Ready, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::process::{contains, tail};

/// One frame as the client sees it.
#[derive(Debug)]
pub enum Frame {
    Text(ServerFrame<'static>),
    Bytes(Vec<u8>),
    Ping,
    Closed(Option<u16>),
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Terminal output received but not consumed by `expect_output` yet.
    pub pending: Vec<u8>,
}

pub const WAIT: Duration = Duration::from_secs(15);

impl Client {
    pub fn new(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            pending: Vec::new(),
        }
    }

    /// The next frame, or `None` after `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let msg = tokio::time::timeout(timeout, self.ws.next()).await.ok()?;
        Some(match msg {
            None => Frame::Closed(None),
            Some(Err(_)) => Frame::Closed(None),
            Some(Ok(Message::Text(t))) => Frame::Text(
                ServerFrame::from_json(&t)
                    .unwrap_or_else(|e| panic!("not a server frame: {e}: {t}")),
            ),
            Some(Ok(Message::Binary(b))) => Frame::Bytes(b.to_vec()),
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => Frame::Ping,
            Some(Ok(Message::Close(c))) => Frame::Closed(c.map(|c| u16::from(c.code))),
            Some(Ok(Message::Frame(_))) => Frame::Ping,
        })
    }

    /// The first frame, which must be `ready`.
    pub async fn ready(&mut self) -> Ready<'static> {
        match self.next_frame(WAIT).await {
            Some(Frame::Text(ServerFrame::Ready(ready))) => ready,
            other => panic!("expected ready first, got {other:?}"),
        }
    }

    /// The next `error` frame, collecting any output before it into `pending`.
    pub async fn next_error(&mut self) -> ErrorFrame<'static> {
        match self.next_server_frame().await {
            ServerFrame::Error(error) => error,
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    /// The next control frame, collecting any output before it into `pending`.
    pub async fn next_server_frame(&mut self) -> ServerFrame<'static> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Text(frame)) => return frame,
                Some(Frame::Bytes(b)) => self.pending.extend_from_slice(&b),
                Some(Frame::Ping) => {}
                other => panic!("expected a control frame, got {other:?}"),
            }
        }
    }

    /// The next text frame as sent, byte for byte, skipping output and pings.
    pub async fn next_text(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
                Ok(Some(Ok(Message::Binary(b)))) => self.pending.extend_from_slice(&b),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send");
    }

    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        self.send_text(&serde_json::to_string(frame).unwrap()).await;
    }

    /// Sends any JSON, e.g. a frame the protocol does not know.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// Types a command line.
    pub async fn run(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r").as_bytes()).await;
    }

    /// Runs `cmd` in the shell and returns what it printed between two markers the typed line
    /// does not show (`B""EGIN` is typed, `BEGIN` printed), trimmed, without carriage returns.
    pub async fn output_of(&mut self, cmd: &str) -> String {
        self.run(&format!("echo B\"\"EGIN; {cmd}; echo E\"\"ND"))
            .await;
        self.expect_output("BEGIN").await;
        let out = self.expect_output("END").await;
        out.trim_end_matches("END")
            .replace('\r', "")
            .trim()
            .to_owned()
    }

    /// Waits until the output contains `needle`; returns everything up to and including it.
    pub async fn expect_output(&mut self, needle: &str) -> String {
        self.expect_output_within(needle, WAIT).await
    }

    /// Like [`Client::expect_output`], waiting up to `within` (a shell that is slow to start,
    /// e.g. one whose startup files cannot fork).
    pub async fn expect_output_within(&mut self, needle: &str, within: Duration) -> String {
        self.expect_bytes_within(needle.as_bytes(), within).await;
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        let end = text.find(needle).unwrap() + needle.len();
        let seen = text[..end].to_owned();
        self.pending.drain(..seen.len().min(self.pending.len()));
        seen
    }

    /// Waits until the output holds `needle`; panics with what was seen after `WAIT`.
    pub async fn expect_bytes(&mut self, needle: &[u8]) {
        self.expect_bytes_within(needle, WAIT).await
    }

    async fn expect_bytes_within(&mut self, needle: &[u8], within: Duration) {
        let deadline = Instant::now() + within;
        let mut searched: usize = 0;
        loop {
            // Only the new bytes (and a needle's length before them) need searching.
            let from = searched.saturating_sub(needle.len());
            if contains(&self.pending[from..], needle) {
                return;
            }
            searched = self.pending.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Bytes(b)) => self.pending.extend_from_slice(&b),
                Some(Frame::Ping) => {}
                other => panic!(
                    "waiting {within:?} for {:?}: got {other:?}; output so far ends with {:?}",
                    String::from_utf8_lossy(&needle[..needle.len().min(40)]),
                    tail(&self.pending)
                ),
            }
        }
    }

    /// Waits for the shell prompt to be ready by round-tripping a marker through it.
    pub async fn sync(&mut self) {
        // The typed line shows `$((40+2))`; only the shell's output shows `42`.
        self.run("echo SYNC$((40+2))").await;
        self.expect_output("SYNC42").await;
        self.pending.clear();
    }

    /// Resizes the terminal and waits for the foreground program to get SIGWINCH. The program is
    /// a child shell that traps it while polling, so its trap runs within 50 ms of the signal:
    /// an interactive bash can hold a WINCH trap back until the next command line when the signal
    /// lands between printing its prompt and reading.
    pub async fn resize_expecting_winch(&mut self, cols: u16, rows: u16) {
        // The typed line shows `WIN""CH` and `WAIT""ING`; only the program's output is whole.
        self.run(
            "bash --norc --noprofile -c 'trap \"echo WIN\"\"CH; exit\" WINCH; \
             echo WAIT\"\"ING; while :; do sleep 0.05; done'",
        )
        .await;
        self.expect_output("WAITING").await;
        let (cols, rows) = (cols.into(), rows.into());
        self.send_frame(&ClientFrame::Resize { cols, rows }).await;
        self.expect_output("WINCH").await;
        self.sync().await;
    }

    /// The account's UID, via `id -u`.
    pub async fn uid(&mut self) -> u32 {
        self.run("echo UID=$(id -u)=$((1))E").await;
        let out = self.expect_output("=1E").await;
        let uid = out.rsplit("UID=").next().unwrap().trim_end_matches("=1E");
        uid.parse().unwrap_or_else(|_| panic!("no UID in {out:?}"))
    }

    /// The pid of the shell, via `$$`.
    pub async fn shell_pid(&mut self) -> i32 {
        // The quotes keep the typed line's echo from matching `PID:<digits>:`.
        self.run("echo \"P\"\"ID:$$:\"").await;
        let deadline = Instant::now() + WAIT;
        loop {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            let found = text.match_indices("PID:").find_map(|(i, _)| {
                let digits: String = text[i + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let end = i + 4 + digits.len();
                (!digits.is_empty() && text[end..].starts_with(':')).then(|| (digits, end + 1))
            });
            if let Some((digits, end)) = found {
                self.pending.drain(..end);
                return digits.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no PID in {:?}",
                tail(&self.pending)
            );
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(Frame::Bytes(b)) = self.next_frame(left).await {
                self.pending.extend_from_slice(&b);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        // Read until the server's close answer, so the close is fully delivered; then drop the
        // TCP connection ourselves (the server waits a while for the client to do so).
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(msg)) = self.ws.next().await {
                if msg.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}
