//! The benchmark's side of a session: where sessions are opened, and reading a session's frames
//! with timeouts and without allocating per sample.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use termpool::protocol::ServerFrame;

use crate::common::{self, Client};

/// How long a terminal must stay silent for its answer to count as complete (calibration only).
pub const QUIET: Duration = Duration::from_millis(150);
/// The longest any single sample may take before the run is abandoned.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the sessions are opened: the address, path, identity and query of `/ws`.
pub struct Target {
    pub addr: String,
    pub path: String,
    pub cookie: String,
    pub query: String,
    pub pid: Option<u32>,
    /// The server runs shells on this machine (`mode` local): their pids are ours to read.
    pub local: bool,
}

impl Target {
    pub async fn open(&self) -> Result<Client> {
        let url = format!("ws://{}{}?{}", self.addr, self.path, self.query);
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Cookie", HeaderValue::from_str(&self.cookie)?);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(Client::new(ws))
    }

    /// A session whose shell has printed its prompt and is quiet, and whether it is a local
    /// one (its shell's pid, from `$$`, is then a pid of this machine).
    pub async fn open_synced(&self) -> Result<(Client, bool)> {
        let mut c = self.open().await?;
        let local = c.ready().await.mode == "local";
        c.sync().await;
        drain_quiet(&mut c).await?;
        Ok((c, local))
    }
}

/// Types `keys` that make the shell exit, waits (at most 5 s) for the `exit` frame, and closes.
/// Only closing the socket would leave the session waiting for a re-attach.
pub async fn end_session(mut c: Client, keys: &[u8]) -> bool {
    c.send_bytes(keys).await;
    let ended = timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = c.ws.next().await {
            match m {
                Message::Text(t) if is_exit(&t) => return true,
                Message::Close(_) => return false,
                _ => {}
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    c.close().await;
    ended
}

/// Reads until the session has been silent for `QUIET`; returns what arrived.
pub async fn drain_quiet(c: &mut Client) -> Result<Vec<u8>> {
    let mut seen = std::mem::take(&mut c.pending);
    loop {
        match timeout(QUIET, c.ws.next()).await {
            Err(_) => return Ok(seen),
            Ok(Some(Ok(Message::Binary(b)))) => seen.extend_from_slice(&b),
            Ok(Some(Ok(Message::Text(t)))) if is_exit(&t) => bail!("shell exited: {t}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("socket ended: {other:?}"),
        }
    }
}

/// The answer the terminal gives to `payload`, learned by sending it and waiting for silence.
pub async fn calibrate(c: &mut Client, payload: &Bytes) -> Result<Vec<u8>> {
    c.ws.send(Message::Binary(payload.clone())).await?;
    let answer = drain_quiet(c).await?;
    if answer.is_empty() {
        bail!("no answer to {:?}", String::from_utf8_lossy(payload));
    }
    Ok(answer)
}

/// Sends `payload` and waits for exactly `expected`. `Ok(Some(ns))` on a match; `Ok(None)` when
/// the answer differed (the session is then drained, so the next sample starts clean).
pub async fn round_trip(c: &mut Client, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>> {
    let start = Instant::now();
    c.ws.send(Message::Binary(payload.clone())).await?;
    let mut got = 0;
    let mut same = true;
    while got < expected.len() {
        match timeout(SAMPLE_TIMEOUT, c.ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                let end = got + b.len();
                same &= end <= expected.len() && b[..] == expected[got..end];
                got = end;
            }
            Ok(Some(Ok(Message::Text(t)))) if is_exit(&t) => bail!("shell exited: {t}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("socket ended: {other:?}"),
            Err(_) => bail!("no answer within {SAMPLE_TIMEOUT:?}"),
        }
    }
    let elapsed = start.elapsed().as_nanos() as u64;
    if same {
        Ok(Some(elapsed))
    } else {
        drain_quiet(c).await?;
        Ok(None)
    }
}

/// A new identity cookie, as the page's first GET gives a new browser.
pub async fn fresh_identity(addr: &str) -> Result<String> {
    let (status, headers, _) = common::http_get(addr, "/", &[]).await;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, v)| v.split(';').next())
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| anyhow!("GET / gave {status} and no identity cookie"))
}

/// Opens one session and times it: (client, ns to `ready`, ns to the first output byte).
pub async fn open_timed(target: &Target) -> Result<(Client, u64, u64)> {
    let start = Instant::now();
    let mut c = target.open().await?;
    c.ready().await;
    let ready = start.elapsed().as_nanos() as u64;
    loop {
        match timeout(SAMPLE_TIMEOUT, c.ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if !b.is_empty() => {
                let first = start.elapsed().as_nanos() as u64;
                c.pending.extend_from_slice(&b);
                return Ok((c, ready, first));
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("socket ended before any output: {other:?}"),
            Err(_) => bail!("no output within {SAMPLE_TIMEOUT:?}"),
        }
    }
}

/// Whether a text frame is the `exit` frame (text frames are rare: parsing them costs nothing).
fn is_exit(text: &str) -> bool {
    matches!(ServerFrame::from_json(text), Ok(ServerFrame::Exit(_)))
}
