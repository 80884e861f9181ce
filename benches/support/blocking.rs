//! A second way to drive a session, for comparison: synchronous tungstenite over a blocking
//! `TcpStream`, the least a client can add, so its difference from the tokio client is the
//! client's own share of a round trip.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

pub struct Blocking {
    ws: WebSocket<TcpStream>,
    timeout: Option<Duration>,
}

/// How long a read may block outside the quiet-detection reads.
const LONG: Duration = Duration::from_secs(15);

impl Blocking {
    /// Opens `ws://addr{path}?{query}` with `cookie` and reads the `ready` frame.
    pub fn open(addr: &str, path: &str, query: &str, cookie: &str) -> Result<Blocking> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut request = format!("ws://{addr}{path}?{query}").into_client_request()?;
        request
            .headers_mut()
            .insert("Cookie", HeaderValue::from_str(cookie)?);
        let (ws, _) = tungstenite::client(request, stream).map_err(|e| anyhow!("{e}"))?;
        let mut b = Blocking { ws, timeout: None };
        b.set_timeout(Some(LONG))?;
        match b.ws.read()? {
            Message::Text(t) if t.contains("\"ready\"") => Ok(b),
            other => bail!("expected ready first, got {other:?}"),
        }
    }

    fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        if self.timeout != t {
            self.ws.get_mut().set_read_timeout(t)?;
            self.timeout = t;
        }
        Ok(())
    }

    /// The next frame's terminal bytes (empty for other frames); `None` after `wait` of silence.
    fn next_bytes(&mut self, wait: Duration) -> Result<Option<tungstenite::Bytes>> {
        self.set_timeout(Some(wait))?;
        match self.ws.read() {
            Ok(Message::Binary(b)) => Ok(Some(b)),
            Ok(Message::Text(t)) if t.contains("\"exit\"") => bail!("shell exited: {t}"),
            Ok(_) => Ok(Some(tungstenite::Bytes::new())),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn send(&mut self, bytes: tungstenite::Bytes) -> Result<()> {
        self.ws.send(Message::Binary(bytes))?;
        Ok(())
    }

    /// Reads until the output holds `needle`; returns everything read.
    pub fn read_until(&mut self, needle: &[u8]) -> Result<Vec<u8>> {
        let deadline = Instant::now() + LONG;
        let mut seen = Vec::new();
        while !seen.windows(needle.len()).any(|w| w == needle) {
            if Instant::now() > deadline {
                bail!("no {:?} in the output", String::from_utf8_lossy(needle));
            }
            if let Some(b) = self.next_bytes(LONG)? {
                seen.extend_from_slice(&b);
            }
        }
        Ok(seen)
    }

    /// Everything that arrives until the session has been silent for `quiet`.
    pub fn read_quiet(&mut self, quiet: Duration) -> Result<Vec<u8>> {
        let mut seen = Vec::new();
        while let Some(b) = self.next_bytes(quiet)? {
            seen.extend_from_slice(&b);
        }
        Ok(seen)
    }

    /// Sends `payload` and reads exactly as many bytes as `expected` has; ns, or `None` when the
    /// answer differed.
    pub fn round_trip(
        &mut self,
        payload: &tungstenite::Bytes,
        expected: &[u8],
    ) -> Result<Option<u64>> {
        self.set_timeout(Some(LONG))?;
        let start = Instant::now();
        self.ws.send(Message::Binary(payload.clone()))?;
        let mut got = 0;
        let mut same = true;
        while got < expected.len() {
            match self.ws.read()? {
                Message::Binary(b) => {
                    let end = got + b.len();
                    same &= end <= expected.len() && b[..] == expected[got..end];
                    got = end;
                }
                Message::Text(t) if t.contains("\"exit\"") => bail!("shell exited: {t}"),
                _ => {}
            }
        }
        Ok(same.then(|| start.elapsed().as_nanos() as u64))
    }

    /// The shell's pid, from `$$` (local mode only: in a container it is another namespace's).
    pub fn shell_pid(&mut self) -> Result<u32> {
        // The typed line shows `PID$((0))=`; only the output shows `PID0=<digits>=`.
        self.send(tungstenite::Bytes::from_static(b"echo PID$((0))=$$=\r"))?;
        let deadline = Instant::now() + LONG;
        let mut seen = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&seen);
            let pid = text.split("PID0=").nth(1).and_then(|rest| {
                let (digits, _) = rest.split_once('=')?;
                digits.parse().ok()
            });
            if let Some(pid) = pid {
                self.read_quiet(Duration::from_millis(150))?;
                return Ok(pid);
            }
            if Instant::now() > deadline {
                bail!("no pid in {text:?}");
            }
            if let Some(b) = self.next_bytes(LONG)? {
                seen.extend_from_slice(&b);
            }
        }
    }

    /// Types `keys` that end the shell, waits (at most 5 s) for the `exit` frame, and closes.
    pub fn end(mut self, keys: &'static [u8]) {
        let _ = self.send(tungstenite::Bytes::from_static(keys));
        let deadline = Instant::now() + Duration::from_secs(5);
        let _ = self.set_timeout(Some(Duration::from_millis(200)));
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) if t.contains("\"exit\"") => break,
                Ok(Message::Close(_)) => break,
                Err(tungstenite::Error::Io(_)) | Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
