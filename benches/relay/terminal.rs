//! The terminals a keystroke figure can be timed through: a session driven by the tokio client or
//! by the blocking one, and a bare PTY without the server (the floor).

use anyhow::Result;
use bytes::Bytes;

use crate::latency::LatencyPlan;
use crate::session::{calibrate, drain_quiet, end_session, round_trip, Target, QUIET};
use crate::{blocking, common::Client, floor};

/// A terminal that round trips can be timed through: a termpool session, or a bare PTY (floor).
pub trait Terminal {
    /// Sends `payload` and returns everything that comes back until the terminal is quiet.
    async fn calibrate(&mut self, payload: &Bytes) -> Result<Vec<u8>>;
    /// Sends `payload` and waits for exactly `expected`; ns on a match, `None` otherwise.
    async fn round_trip(&mut self, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>>;
    /// The processes whose CPU and run-queue wait are worth accounting: (name, pid).
    fn processes(&self) -> Vec<(&'static str, u32)>;
    async fn finish(self);
}

/// A termpool session, with the pids of the server and of the session's shell.
pub struct Session {
    client: Client,
    server: Option<u32>,
    shell: Option<u32>,
    end: &'static [u8],
}

impl Terminal for Session {
    async fn calibrate(&mut self, payload: &Bytes) -> Result<Vec<u8>> {
        calibrate(&mut self.client, payload).await
    }
    async fn round_trip(&mut self, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>> {
        round_trip(&mut self.client, payload, expected).await
    }
    fn processes(&self) -> Vec<(&'static str, u32)> {
        let mut p = vec![("client", std::process::id())];
        p.extend(self.server.map(|pid| ("server", pid)));
        p.extend(self.shell.map(|pid| ("shell", pid)));
        p
    }
    async fn finish(self) {
        end_session(self.client, self.end).await;
    }
}

/// A session driven by the harness client (tokio): prompt seen, shell pid learned (local
/// mode), `setup` typed.
pub async fn tokio_session(target: &Target, plan: &LatencyPlan<'_>) -> Result<Session> {
    let (mut client, local) = target.open_synced().await?;
    let shell = if local && target.pid.is_some() {
        let pid = client.shell_pid().await as u32;
        drain_quiet(&mut client).await?;
        Some(pid)
    } else {
        None
    };
    if let Some((line, marker)) = plan.setup {
        client.send_bytes(line).await;
        client.expect_output(marker).await;
        drain_quiet(&mut client).await?;
    }
    Ok(Session {
        client,
        server: target.pid,
        shell,
        end: plan.end,
    })
}

/// A session driven by the blocking client.
pub struct BlockingSession {
    client: blocking::Blocking,
    server: Option<u32>,
    shell: Option<u32>,
    end: &'static [u8],
}

impl BlockingSession {
    /// Opens a session, waits for the prompt, learns the shell's pid (local mode) and types
    /// `setup`.
    pub fn open(target: &Target, plan: &LatencyPlan<'_>, local: bool) -> Result<BlockingSession> {
        let mut client =
            blocking::Blocking::open(&target.addr, &target.path, &target.query, &target.cookie)?;
        client.send(Bytes::from_static(b"echo SYNC$((40+2))\r"))?;
        client.read_until(b"SYNC42")?;
        client.read_quiet(QUIET)?;
        let shell = if local && target.pid.is_some() {
            Some(client.shell_pid()?)
        } else {
            None
        };
        if let Some((line, marker)) = plan.setup {
            client.send(Bytes::copy_from_slice(line))?;
            client.read_until(marker.as_bytes())?;
            client.read_quiet(QUIET)?;
        }
        Ok(BlockingSession {
            client,
            server: target.pid,
            shell,
            end: plan.end,
        })
    }
}

impl Terminal for BlockingSession {
    async fn calibrate(&mut self, payload: &Bytes) -> Result<Vec<u8>> {
        self.client.send(payload.clone())?;
        self.client.read_quiet(QUIET)
    }
    async fn round_trip(&mut self, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>> {
        let r = self.client.round_trip(payload, expected)?;
        if r.is_none() {
            self.client.read_quiet(QUIET)?;
        }
        Ok(r)
    }
    fn processes(&self) -> Vec<(&'static str, u32)> {
        let mut p = vec![("client", std::process::id())];
        p.extend(self.server.map(|pid| ("server", pid)));
        p.extend(self.shell.map(|pid| ("shell", pid)));
        p
    }
    async fn finish(self) {
        self.client.end(self.end);
    }
}

/// A bare PTY and a buffer for its answers.
pub struct PtyTerm(pub floor::Pty, pub Vec<u8>);

impl PtyTerm {
    /// The shell on a PTY of its own, prompt printed, `setup` typed and its marker seen.
    pub fn open(argv: &[String], setup: Option<(&[u8], &str)>) -> Result<PtyTerm> {
        let pty = floor::Pty::spawn(argv)?;
        pty.write(b"echo SYNC$((40+2))\r")?;
        pty.read_until(b"SYNC42")?;
        if let Some((line, marker)) = setup {
            pty.write(line)?;
            pty.read_until(marker.as_bytes())?;
        }
        pty.read_quiet(QUIET)?;
        Ok(PtyTerm(pty, vec![0; 1 << 16]))
    }
}

impl Terminal for PtyTerm {
    async fn calibrate(&mut self, payload: &Bytes) -> Result<Vec<u8>> {
        self.0.write(payload)?;
        self.0.read_quiet(QUIET)
    }
    async fn round_trip(&mut self, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>> {
        let r = self.0.round_trip(payload, expected, &mut self.1)?;
        if r.is_none() {
            self.0.read_quiet(QUIET)?;
        }
        Ok(r)
    }
    fn processes(&self) -> Vec<(&'static str, u32)> {
        let mut p = vec![("client", std::process::id())];
        p.extend(self.0.pid().map(|pid| ("shell", pid)));
        p
    }
    async fn finish(self) {}
}
