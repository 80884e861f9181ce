//! `cargo bench --bench relay`: what a user of termpool feels, measured end to end over a real
//! WebSocket against the real server binary (local mode by default).
//!
//! Figures: keystroke echo latency (a raw-mode `cat`, and bash's own readline echo), a command
//! line's round trip, output throughput, the time to first output byte of 100 sessions opened at
//! once, and the server's RSS with 100 idle sessions. Every latency is reported as p50/p99 over
//! all samples plus the spread of the per-run p50s, because the machines this runs on are small
//! and noisy.
//!
//! Options (after `--`, or in the env var `TERMPOOL_BENCH_ARGS`): see `USAGE` below.
//!
//! The client runs on a current-thread tokio runtime (one thread), so that it competes with the
//! server and the shells for as little CPU as possible. Timed loops send pre-built `Bytes`
//! (no allocation per sample) and write samples into pre-sized vectors; the only allocation per
//! sample is tungstenite's own buffer for each received frame.

#[path = "support/blocking.rs"]
mod blocking;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/floor.rs"]
mod floor;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use common::{schedstat, Client, Server, TEST_SHELL};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
cargo bench --bench relay -- [options]
  --quick              short smoke run (CI): few samples, 16 MiB, 20 sessions
  --only LIST          comma-separated: echo,readline,cmd,throughput,sessions,reattach,newuser,
                       floor (default: all); floor adds, to the figures chosen, the same measured on a bare
                       PTY without the server, and a TCP loopback ping-pong
  --shell CMD          shell of the server started by the bench (default: the tests' bash)
  --server-arg ARG     extra argument for the server started by the bench (repeatable),
                       e.g. --server-arg --use-containers --server-arg true
  --url ws://H:P/PATH  benchmark an already-running server instead of starting one
  --cookie NAME=VALUE  identity cookie for --url (default: fetched from GET / of that server)
  --pid PID            server pid for --url, for the RSS and CPU figures
  --query Q            extra query parameters for every /ws, e.g. 'cols=120&rows=40'
  --client KIND        client for the keystroke figures: tokio (default: current-thread
                       runtime, tokio-tungstenite), blocking (sync tungstenite, one blocking
                       read per frame: the least a client can add), or both
  --idle-ms N          how long the 100 sessions stay idle before the RSS is read (default 500)
  --runs N             runs per figure (default 5; sessions: 3)
  --samples N          measured samples per run for echo/readline (default 500)
  --cmd-samples N      measured samples per run for the command line (default 80)
  --mib N              MiB of output per throughput run (default 128)
  --sessions N         sessions opened at once (default 100)
The env var TERMPOOL_BENCH_ARGS is split on whitespace and read before the command line.";

/// A one-byte payload for each byte value, so that a timed send never allocates.
static BYTE_VALUES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};
const DEL: u8 = 0x7f;
const COMMAND_LINE: &[u8] = b"echo x$((1+1))\r";
/// How long a terminal must stay silent for its answer to count as complete (calibration only).
const QUIET: Duration = Duration::from_millis(150);
/// The longest any single sample may take before the run is abandoned.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct Opts {
    quick: bool,
    only: Vec<String>,
    shell: String,
    server_args: Vec<String>,
    url: Option<String>,
    cookie: Option<String>,
    pid: Option<u32>,
    query: String,
    runs: usize,
    session_runs: usize,
    samples: usize,
    cmd_samples: usize,
    mib: u64,
    sessions: usize,
    clients: Vec<&'static str>,
    idle_ms: u64,
}

impl Opts {
    fn parse(args: Vec<String>) -> Result<Opts> {
        let mut o = Opts {
            quick: false,
            only: Vec::new(),
            shell: TEST_SHELL.to_owned(),
            server_args: Vec::new(),
            url: None,
            cookie: None,
            pid: None,
            query: String::new(),
            runs: 5,
            session_runs: 3,
            samples: 500,
            cmd_samples: 80,
            mib: 128,
            sessions: 100,
            clients: vec!["tokio"],
            idle_ms: 500,
        };
        let (mut runs, mut samples, mut cmd_samples, mut mib, mut sessions) =
            (None, None, None, None, None);
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let value = |it: &mut std::vec::IntoIter<String>| {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}"))
            };
            let number = |v: String| -> Result<usize> {
                v.parse().map_err(|_| anyhow!("{name}: not a number: {v}"))
            };
            match name.as_str() {
                // cargo passes --bench to harness=false benches.
                "--bench" => {}
                "--quick" => o.quick = true,
                "--only" => o.only.extend(value(&mut it)?.split(',').map(str::to_owned)),
                "--shell" => o.shell = value(&mut it)?,
                "--server-arg" => o.server_args.push(value(&mut it)?),
                "--url" => o.url = Some(value(&mut it)?),
                "--cookie" => o.cookie = Some(value(&mut it)?),
                "--pid" => o.pid = Some(number(value(&mut it)?)? as u32),
                "--query" => o.query = value(&mut it)?,
                "--runs" => runs = Some(number(value(&mut it)?)?),
                "--samples" => samples = Some(number(value(&mut it)?)?),
                "--cmd-samples" => cmd_samples = Some(number(value(&mut it)?)?),
                "--mib" => mib = Some(number(value(&mut it)?)? as u64),
                "--sessions" => sessions = Some(number(value(&mut it)?)?),
                "--idle-ms" => o.idle_ms = number(value(&mut it)?)? as u64,
                "--client" => {
                    o.clients = match value(&mut it)?.as_str() {
                        "tokio" => vec!["tokio"],
                        "blocking" => vec!["blocking"],
                        "both" => vec!["tokio", "blocking"],
                        other => bail!("--client: tokio, blocking or both, not {other}"),
                    }
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option {other}\n{USAGE}"),
            }
        }
        if o.quick {
            (
                o.runs,
                o.session_runs,
                o.samples,
                o.cmd_samples,
                o.mib,
                o.sessions,
            ) = (1, 1, 200, 30, 16, 20);
        }
        o.runs = runs.unwrap_or(o.runs).max(1);
        o.session_runs = runs.unwrap_or(o.session_runs).max(1);
        o.samples = samples.unwrap_or(o.samples).max(1);
        o.cmd_samples = cmd_samples.unwrap_or(o.cmd_samples).max(1);
        o.mib = mib.unwrap_or(o.mib).max(1);
        o.sessions = sessions.unwrap_or(o.sessions).max(1);
        for f in &o.only {
            if ![
                "echo",
                "readline",
                "cmd",
                "throughput",
                "sessions",
                "reattach",
                "newuser",
                "floor",
            ]
            .contains(&f.as_str())
            {
                bail!("--only: unknown figure {f}\n{USAGE}");
            }
        }
        Ok(o)
    }

    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

/// Where the sessions are opened: the address, path, identity and query of `/ws`.
struct Target {
    addr: String,
    path: String,
    cookie: String,
    query: String,
    pid: Option<u32>,
    /// The server runs shells on this machine (`mode` local): their pids are ours to read.
    local: bool,
}

impl Target {
    async fn open(&self) -> Result<Client> {
        let url = format!("ws://{}{}?{}", self.addr, self.path, self.query);
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Cookie", HeaderValue::from_str(&self.cookie)?);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(Client {
            ws,
            pending: Vec::new(),
        })
    }

    /// A session whose shell has printed its prompt and is quiet, and whether it is a local
    /// one (its shell's pid, from `$$`, is then a pid of this machine).
    async fn open_synced(&self) -> Result<(Client, bool)> {
        let mut c = self.open().await?;
        let local = c.ready().await["mode"] == "local";
        c.sync().await;
        drain_quiet(&mut c).await?;
        Ok((c, local))
    }
}

/// Types `keys` that make the shell exit, waits (at most 5 s) for the `exit` frame, and closes.
/// Only closing the socket would leave the session waiting for a re-attach.
async fn end_session(mut c: Client, keys: &[u8]) -> bool {
    c.send_bytes(keys).await;
    let ended = timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = c.ws.next().await {
            match m {
                Message::Text(t) if t.contains("\"exit\"") => return true,
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
async fn drain_quiet(c: &mut Client) -> Result<Vec<u8>> {
    let mut seen = std::mem::take(&mut c.pending);
    loop {
        match timeout(QUIET, c.ws.next()).await {
            Err(_) => return Ok(seen),
            Ok(Some(Ok(Message::Binary(b)))) => seen.extend_from_slice(&b),
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"exit\"") => bail!("shell exited: {t}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("socket ended: {other:?}"),
        }
    }
}

/// The answer the terminal gives to `payload`, learned by sending it and waiting for silence.
async fn calibrate(c: &mut Client, payload: &Bytes) -> Result<Vec<u8>> {
    c.ws.send(Message::Binary(payload.clone())).await?;
    let answer = drain_quiet(c).await?;
    if answer.is_empty() {
        bail!("no answer to {:?}", String::from_utf8_lossy(payload));
    }
    Ok(answer)
}

/// Sends `payload` and waits for exactly `expected`. `Ok(Some(ns))` on a match; `Ok(None)` when
/// the answer differed (the session is then drained, so the next sample starts clean).
async fn round_trip(c: &mut Client, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>> {
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
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"exit\"") => bail!("shell exited: {t}"),
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

/// Percentiles over samples in nanoseconds (nearest rank).
struct Dist {
    sorted: Vec<u64>,
}

impl Dist {
    fn new(mut samples: Vec<u64>) -> Dist {
        samples.sort_unstable();
        Dist { sorted: samples }
    }
    fn pct(&self, p: f64) -> u64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }
    fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// One line of the final table.
struct Row {
    figure: String,
    samples: String,
    p50: String,
    p99: String,
    spread: String,
    target: String,
    verdict: &'static str,
}

impl Row {
    /// A row of durations in milliseconds: the p50 and p99 of `d`.
    fn in_ms(figure: String, d: &Dist, spread: String, target: &str, verdict: &'static str) -> Row {
        Row {
            figure,
            samples: d.len().to_string(),
            p50: ms(d.pct(50.0)),
            p99: ms(d.pct(99.0)),
            spread,
            target: target.into(),
            verdict,
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if cfg!(debug_assertions) {
        "(debug build)"
    } else if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// This process's CPU seconds so far.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM, ...).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib_of_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A keystroke-latency figure: `setup` typed into a fresh shell, then `payloads` sent in turn, each
/// timed until its (calibrated) answer is complete. One fresh session per run.
struct LatencyPlan<'a> {
    label: &'a str,
    setup: Option<(&'a [u8], &'a str)>,
    /// Keys that make the shell exit at the end of a run (a detached session would otherwise
    /// live on for the server's re-attach grace period).
    end: &'static [u8],
    payloads: Vec<Bytes>,
    warmup: usize,
    samples: usize,
}

struct LatencyResult {
    all: Dist,
    run_p50s: Vec<u64>,
    mismatches: usize,
    answers: Vec<Vec<u8>>,
    /// Per process: (name, CPU ns per sample, run-queue wait ns per sample), one entry per run.
    sched: Vec<(&'static str, Vec<(f64, f64)>)>,
}

impl LatencyResult {
    fn new() -> LatencyResult {
        LatencyResult {
            all: Dist::new(Vec::new()),
            run_p50s: Vec::new(),
            mismatches: 0,
            answers: Vec::new(),
            sched: Vec::new(),
        }
    }

    fn add(&mut self, run: Run) {
        self.run_p50s.push(Dist::new(run.samples.clone()).pct(50.0));
        let mut all = std::mem::take(&mut self.all.sorted);
        all.extend_from_slice(&run.samples);
        self.all = Dist::new(all);
        self.mismatches += run.mismatches;
        self.answers = run.answers;
        for (name, per_sample) in run.sched {
            match self.sched.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(per_sample),
                None => self.sched.push((name, vec![per_sample])),
            }
        }
    }

    /// "server 12.3/4.5 µs, ..." : median over runs of CPU / run-queue wait per sample.
    fn sched_summary(&self) -> String {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let parts: Vec<String> = self
            .sched
            .iter()
            .map(|(name, runs)| {
                let cpu = median(runs.iter().map(|r| r.0).collect());
                let wait = median(runs.iter().map(|r| r.1).collect());
                format!("{name} {:.1}/{:.1}", cpu / 1e3, wait / 1e3)
            })
            .collect();
        format!("{} µs", parts.join(", "))
    }
}

/// One run of a latency figure.
struct Run {
    samples: Vec<u64>,
    mismatches: usize,
    answers: Vec<Vec<u8>>,
    sched: Vec<(&'static str, (f64, f64))>,
}

/// A terminal that round trips can be timed through: a termpool session, or a bare PTY (floor).
trait Terminal {
    /// Sends `payload` and returns everything that comes back until the terminal is quiet.
    async fn calibrate(&mut self, payload: &Bytes) -> Result<Vec<u8>>;
    /// Sends `payload` and waits for exactly `expected`; ns on a match, `None` otherwise.
    async fn round_trip(&mut self, payload: &Bytes, expected: &[u8]) -> Result<Option<u64>>;
    /// The processes whose CPU and run-queue wait are worth accounting: (name, pid).
    fn processes(&self) -> Vec<(&'static str, u32)>;
    async fn finish(self);
}

/// A termpool session, with the pids of the server and of the session's shell.
struct Session {
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
async fn tokio_session(target: &Target, plan: &LatencyPlan<'_>) -> Result<Session> {
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
struct BlockingSession {
    client: blocking::Blocking,
    server: Option<u32>,
    shell: Option<u32>,
    end: &'static [u8],
}

impl BlockingSession {
    /// Opens a session, waits for the prompt, learns the shell's pid (local mode) and types
    /// `setup`.
    fn open(target: &Target, plan: &LatencyPlan<'_>, local: bool) -> Result<BlockingSession> {
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
struct PtyTerm(floor::Pty, Vec<u8>);

impl PtyTerm {
    /// The shell on a PTY of its own, prompt printed, `setup` typed and its marker seen.
    fn open(argv: &[String], setup: Option<(&[u8], &str)>) -> Result<PtyTerm> {
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

/// One run: calibrate the answers, warm up, then time `plan.samples` round trips.
async fn measure_run<T: Terminal>(mut t: T, plan: &LatencyPlan<'_>) -> Result<Run> {
    // Learn each payload's answer twice; a shell whose answers vary can't be timed this way.
    let mut answers = Vec::new();
    for p in &plan.payloads {
        answers.push(t.calibrate(p).await?);
    }
    for (p, a) in plan.payloads.iter().zip(&answers) {
        let again = t.calibrate(p).await?;
        if &again != a {
            bail!(
                "{}: the answer to {:?} varies: {:?} then {:?}",
                plan.label,
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(&again)
            );
        }
    }
    let n = plan.payloads.len();
    for i in 0..plan.warmup {
        t.round_trip(&plan.payloads[i % n], &answers[i % n]).await?;
    }
    let processes = t.processes();
    let before: Vec<_> = processes.iter().map(|(_, pid)| schedstat(*pid)).collect();
    let mut samples = Vec::with_capacity(plan.samples);
    let mut mismatches = 0;
    let mut i = 0;
    while samples.len() < plan.samples {
        match t.round_trip(&plan.payloads[i % n], &answers[i % n]).await? {
            Some(ns) => samples.push(ns),
            None => {
                mismatches += 1;
                if mismatches > plan.samples / 20 + 5 {
                    bail!(
                        "{}: too many answers differ from the calibrated ones",
                        plan.label
                    );
                }
            }
        }
        i += 1;
    }
    let count = i as f64;
    let sched = processes
        .iter()
        .zip(before)
        .filter_map(|((name, pid), before)| {
            let (b, a) = (before?, schedstat(*pid)?);
            let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / count;
            Some((*name, (per(b.0, a.0), per(b.1, a.1))))
        })
        .collect();
    t.finish().await;
    Ok(Run {
        samples,
        mismatches,
        answers,
        sched,
    })
}

fn log_run(label: &str, run: usize, runs: usize, r: &Run) {
    let d = Dist::new(r.samples.clone());
    let sched: Vec<String> = r
        .sched
        .iter()
        .map(|(n, (cpu, wait))| format!("{n} {:.1}/{:.1}", cpu / 1e3, wait / 1e3))
        .collect();
    eprintln!(
        "  {label} run {}/{runs}: p50 {} p99 {} ({} samples); per sample CPU/run-queue wait: {} µs",
        run + 1,
        us(d.pct(50.0)),
        us(d.pct(99.0)),
        d.len(),
        sched.join(", ")
    );
}

fn spread(values: &[u64], fmt: fn(u64) -> String) -> String {
    let (lo, hi) = (values.iter().min().copied(), values.iter().max().copied());
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{}..{} ({} runs)", fmt(lo), fmt(hi), values.len()),
        _ => "-".into(),
    }
}

fn latency_row(figure: &str, r: &LatencyResult, p50_target: u64, p99_target: Option<u64>) -> Row {
    let (p50, p99) = (r.all.pct(50.0), r.all.pct(99.0));
    let mut target = format!("p50 ≤ {}", us(p50_target));
    let mut ok = p50 <= p50_target;
    if let Some(t) = p99_target {
        write!(target, ", p99 ≤ {}", us(t)).unwrap();
        ok &= p99 <= t;
    }
    let mut samples = r.all.len().to_string();
    if r.mismatches > 0 {
        write!(samples, " ({} odd)", r.mismatches).unwrap();
    }
    Row {
        figure: figure.to_owned(),
        samples,
        p50: us(p50),
        p99: us(p99),
        spread: format!("run p50s {}", spread(&r.run_p50s, us)),
        target,
        verdict: verdict(ok),
    }
}

/// A row for a floor: no target, it is what the machine gives.
fn floor_row(figure: &str, r: &LatencyResult) -> Row {
    Row {
        verdict: "",
        target: "(floor)".into(),
        ..latency_row(figure, r, u64::MAX, None)
    }
}

async fn bench_throughput(target: &Target, opts: &Opts, notes: &mut Vec<String>) -> Result<Row> {
    let bytes = opts.mib << 20;
    let (mut c, _) = target.open_synced().await?;
    // Raw mode: no output post-processing in the TTY, as a full-screen program would have.
    c.run("stty raw -echo").await;
    c.sync().await;
    drain_quiet(&mut c).await?;
    let command = Bytes::from(format!("head -c {bytes} /dev/zero\r"));
    let mut rates = Vec::new();
    let mut cpu_notes = Vec::new();
    // One unmeasured small run first, to fault in buffers on both sides.
    for run in 0..=opts.runs {
        let warmup = run == 0;
        let want = if warmup { bytes.min(4 << 20) } else { bytes };
        let command = if warmup {
            Bytes::from(format!("head -c {want} /dev/zero\r"))
        } else {
            command.clone()
        };
        let server_cpu = target.pid.and_then(cpu_seconds);
        let client_cpu = own_cpu_seconds();
        let start = Instant::now();
        c.ws.send(Message::Binary(command)).await?;
        let mut zeros: u64 = 0;
        let mut frames: u64 = 0;
        while zeros < want {
            match timeout(Duration::from_secs(120), c.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => {
                    frames += 1;
                    zeros += b.iter().filter(|&&x| x == 0).count() as u64;
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("socket ended after {zeros} bytes: {other:?}"),
                Err(_) => bail!("stalled after {zeros} of {want} bytes"),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let client = (own_cpu_seconds() - client_cpu) / secs * 100.0;
        let server = server_cpu
            .zip(target.pid.and_then(cpu_seconds))
            .map(|(a, b)| format!("{:.0}%", (b - a) / secs * 100.0))
            .unwrap_or_else(|| "?".into());
        drain_quiet(&mut c).await?;
        if warmup {
            continue;
        }
        let rate = want as f64 / (1 << 20) as f64 / secs;
        eprintln!(
            "  throughput run {run}/{}: {rate:.1} MiB/s ({secs:.2} s, {frames} frames, avg {} B/frame, \
             server CPU {server}, client CPU {client:.0}% of one core)",
            opts.runs,
            want / frames.max(1)
        );
        cpu_notes.push(format!("{server}/{client:.0}%"));
        rates.push(rate);
    }
    end_session(c, b"exit\r").await;
    notes.push(format!(
        "throughput: server/client CPU per run (100% = one core): {}",
        cpu_notes.join(", ")
    ));
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(Row {
        figure: format!("throughput, {} MiB of zeros (raw TTY)", opts.mib),
        samples: format!("{} runs", rates.len()),
        p50: format!("{median:.1} MiB/s"),
        p99: "-".into(),
        spread: format!(
            "{:.1}..{:.1} MiB/s ({} runs)",
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        ),
        target: "median ≥ 70 MiB/s".into(),
        verdict: verdict(median >= 70.0),
    })
}

/// The throughput a bare PTY gives, read with blocking 64 KiB reads by this thread.
fn floor_throughput(shell_argv: &[String], opts: &Opts) -> Result<Row> {
    let pty = PtyTerm::open(
        shell_argv,
        Some((b"stty raw -echo; echo RAW$((6*7))\r", "RAW42")),
    )?;
    let mut buf = pty.1;
    let pty = pty.0;
    let bytes = opts.mib << 20;
    let mut rates = Vec::new();
    for run in 0..=opts.runs {
        let want = if run == 0 { bytes.min(4 << 20) } else { bytes };
        let start = Instant::now();
        pty.write(format!("head -c {want} /dev/zero\r").as_bytes())?;
        pty.read_zeros(want, &mut buf)?;
        let secs = start.elapsed().as_secs_f64();
        pty.read_quiet(QUIET)?;
        if run > 0 {
            let rate = want as f64 / (1 << 20) as f64 / secs;
            eprintln!(
                "  floor throughput run {run}/{}: {rate:.1} MiB/s",
                opts.runs
            );
            rates.push(rate);
        }
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Row {
        figure: "  floor: bare PTY, same output".into(),
        samples: format!("{} runs", rates.len()),
        p50: format!("{:.1} MiB/s", sorted[sorted.len() / 2]),
        p99: "-".into(),
        spread: format!("{:.1}..{:.1} MiB/s", sorted[0], sorted[sorted.len() - 1]),
        target: "(floor)".into(),
        verdict: "",
    })
}

/// Re-attach (PROTOCOL.md, Reconnect): a session that has printed a screenful is dropped without
/// a close, and re-opened with `?session=<id>`; timed to the `ready` frame and to the screen that
/// follows it. Needs re-attach on (REATTACH_GRACE_SECS > 0).
async fn bench_reattach(target: &Target, opts: &Opts) -> Result<Vec<Row>> {
    let samples = if opts.quick { 10 } else { 100 };
    let mut c = target.open().await?;
    let first = c.ready().await;
    let session = first["session"].as_str().unwrap_or_default().to_owned();
    c.sync().await;
    c.send_bytes(b"seq 1 200\r").await;
    c.expect_output("200\r\n").await;
    drain_quiet(&mut c).await?;
    let mut to_ready = Vec::with_capacity(samples);
    let mut to_screen = Vec::with_capacity(samples);
    for i in 0..samples + 1 {
        drop(c); // no close frame: a network blink
        let reopen = Target {
            query: format!("{}&session={session}", target.query),
            addr: target.addr.clone(),
            path: target.path.clone(),
            cookie: target.cookie.clone(),
            pid: target.pid,
            local: target.local,
        };
        let start = Instant::now();
        c = reopen.open().await?;
        let ready = c.ready().await;
        let t_ready = start.elapsed().as_nanos() as u64;
        if ready["resumed"] != true {
            bail!("not resumed: {ready}");
        }
        match timeout(Duration::from_secs(5), c.ws.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => {}
            other => bail!("no screen after ready: {other:?}"),
        }
        let t_screen = start.elapsed().as_nanos() as u64;
        if i > 0 {
            to_ready.push(t_ready);
            to_screen.push(t_screen);
        }
    }
    end_session(c, b"\x15exit\r").await;
    let screen = Dist::new(to_screen);
    let ok = screen.pct(50.0) <= 50_000_000;
    Ok(vec![
        Row::in_ms(
            "re-attach: `ready`".into(),
            &Dist::new(to_ready),
            "-".into(),
            "",
            "",
        ),
        Row::in_ms(
            "re-attach: `ready` + screen".into(),
            &screen,
            "-".into(),
            "p50 ≤ 50.0 ms",
            verdict(ok),
        ),
    ])
}

/// A brand-new user's first session, first output byte: a fresh identity each time, so the
/// server places the user and, in container mode, creates their Linux account before the shell
/// starts.
async fn bench_new_users(target: &Target, opts: &Opts) -> Result<Row> {
    let samples = if opts.quick { 3 } else { 20 };
    let mut firsts = Vec::with_capacity(samples);
    let mut mode = String::new();
    for _ in 0..samples {
        let newcomer = Target {
            addr: target.addr.clone(),
            path: target.path.clone(),
            cookie: fresh_identity(&target.addr).await?,
            query: target.query.clone(),
            pid: target.pid,
            local: target.local,
        };
        let start = Instant::now();
        let mut c = newcomer.open().await?;
        mode = c.ready().await["mode"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        while c.pending.is_empty() {
            match timeout(SAMPLE_TIMEOUT, c.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => c.pending.extend_from_slice(&b),
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("socket ended before any output: {other:?}"),
                Err(_) => bail!("no output within {SAMPLE_TIMEOUT:?}"),
            }
        }
        firsts.push(start.elapsed().as_nanos() as u64);
        end_session(c, b"\x15exit\r").await;
    }
    let d = Dist::new(firsts);
    // The issue's target is for container mode, where a new user needs a new account.
    let (target, verdict_text) = match mode.as_str() {
        "container" => ("p50 ≤ 500.0 ms", verdict(d.pct(50.0) <= 500_000_000)),
        _ => ("", ""),
    };
    Ok(Row::in_ms(
        "a new user's first session: first output byte".into(),
        &d,
        format!("max {}", ms(d.pct(100.0))),
        target,
        verdict_text,
    ))
}

/// A new identity cookie, as the page's first GET gives a new browser.
async fn fresh_identity(addr: &str) -> Result<String> {
    let (status, headers, _) = common::http_get(addr, "/", &[]).await;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, v)| v.split(';').next())
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| anyhow!("GET / gave {status} and no identity cookie"))
}

/// Opens one session and times it: (client, ns to `ready`, ns to the first output byte).
async fn open_timed(target: &Target) -> Result<(Client, u64, u64)> {
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

async fn bench_sessions(
    target: &Target,
    opts: &Opts,
    shell_argv: &[String],
    fresh_rss: Option<u64>,
) -> Result<Vec<Row>> {
    let n = opts.sessions;
    let mut firsts = Vec::with_capacity(n * opts.session_runs);
    let mut readies = Vec::with_capacity(n * opts.session_runs);
    let mut run_p50s = Vec::new();
    let mut walls = Vec::new();
    let mut rss_before = Vec::new();
    let mut rss_with = Vec::new();
    for run in 0..opts.session_runs {
        let pid = target.pid;
        rss_before.extend(pid.and_then(|p| status_kib(p, "VmRSS")));
        let start = Instant::now();
        let opened = join_all((0..n).map(|_| open_timed(target))).await;
        let wall = start.elapsed().as_nanos() as u64;
        let mut clients = Vec::with_capacity(n);
        let mut run_firsts = Vec::with_capacity(n);
        for result in opened {
            let (c, ready, first) = result?;
            clients.push(c);
            readies.push(ready);
            run_firsts.push(first);
        }
        let d = Dist::new(run_firsts.clone());
        eprintln!(
            "  sessions run {}/{}: {n} sessions, first byte p50 {} p99 {}, all within {}",
            run + 1,
            opts.session_runs,
            ms(d.pct(50.0)),
            ms(d.pct(99.0)),
            ms(wall)
        );
        run_p50s.push(d.pct(50.0));
        walls.push(wall);
        firsts.extend_from_slice(&run_firsts);
        // Idle: every shell has printed its prompt and answered a command, then nothing happens.
        join_all(clients.iter_mut().map(|c| c.sync())).await;
        for c in clients.iter_mut() {
            drain_quiet(c).await?;
        }
        tokio::time::sleep(Duration::from_millis(opts.idle_ms)).await;
        if let Some(kib) = pid.and_then(|p| status_kib(p, "VmRSS")) {
            eprintln!("  server VmRSS with {n} idle sessions: {}", mib_of_kib(kib));
            rss_with.push(kib);
        }
        let ended = join_all(clients.into_iter().map(|c| end_session(c, b"exit\r"))).await;
        let left = ended.iter().filter(|e| !**e).count();
        if left > 0 {
            eprintln!("  {left} shells did not report their exit within 5 s");
        }
        // Let the server reap the shells before the next run.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = Dist::new(firsts);
    let ready = Dist::new(readies);
    let floor = if opts.wants("floor") {
        eprintln!("floor: {n} shells spawned at once on bare PTYs by one thread, no server");
        let mut p50s = Vec::new();
        let mut bare = Vec::new();
        for run in 0..opts.session_runs {
            let v = floor::first_bytes(shell_argv, n)?;
            let d = Dist::new(v.clone());
            eprintln!(
                "  bare PTY run {}/{}: first byte p50 {} p99 {}",
                run + 1,
                opts.session_runs,
                ms(d.pct(50.0)),
                ms(d.pct(99.0))
            );
            p50s.push(d.pct(50.0));
            bare.extend(v);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let d = Dist::new(bare);
        Some(Row::in_ms(
            format!("  floor: {n} bare PTY shells at once: first byte"),
            &d,
            format!("run p50s {}", spread(&p50s, ms)),
            "(floor)",
            "",
        ))
    } else {
        None
    };
    let mut rows = vec![
        Row::in_ms(
            format!("{n} sessions at once: first output byte"),
            &all,
            format!("run p50s {}", spread(&run_p50s, ms)),
            "p50 ≤ 100.0 ms",
            verdict(all.pct(50.0) <= 100_000_000),
        ),
        Row::in_ms(
            format!("{n} sessions at once: `ready` frame"),
            &ready,
            format!("last session of a run {}", spread(&walls, ms)),
            "-",
            "",
        ),
    ];
    rows.extend(floor);
    if !rss_with.is_empty() {
        let mut sorted = rss_with.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        // Later runs start from what glibc kept of the earlier ones: the first run tells the
        // cost of a session.
        let before = rss_before.first().copied();
        let fresh = fresh_rss.map(mib_of_kib).unwrap_or_else(|| "?".into());
        let before_s = before.map(mib_of_kib).unwrap_or_else(|| "?".into());
        let per_session = before
            .map(|b| {
                let kib = rss_with[0] as f64 - b as f64;
                format!(", {:.0} KiB/session in run 1", kib / n as f64)
            })
            .unwrap_or_default();
        rows.push(Row {
            figure: format!("server VmRSS, {n} idle sessions"),
            samples: format!("{} runs", rss_with.len()),
            p50: mib_of_kib(median),
            p99: "-".into(),
            spread: format!(
                "fresh {fresh}, before run 1 {before_s}{per_session}; {}",
                spread(&rss_with, mib_of_kib)
            ),
            target: "≤ 16.0 MiB".into(),
            verdict: verdict(median <= 16 * 1024),
        });
    }
    Ok(rows)
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "nproc {nproc}, kernel {}, cpu {cpu}, load average {}",
        kernel.trim(),
        load.join(" ")
    )
}

fn print_table(rows: &[Row]) {
    let header = Row {
        figure: "figure".into(),
        samples: "samples".into(),
        p50: "p50/median".into(),
        p99: "p99".into(),
        spread: "spread".into(),
        target: "target".into(),
        verdict: "",
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let w = [
        width(|r| &r.figure),
        width(|r| &r.samples),
        width(|r| &r.p50),
        width(|r| &r.p99),
        width(|r| &r.spread),
        width(|r| &r.target),
    ];
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let line = |r: &Row| {
        format!(
            "{} | {} | {} | {} | {} | {} | {}",
            pad(&r.figure, w[0]),
            pad(&r.samples, w[1]),
            pad(&r.p50, w[2]),
            pad(&r.p99, w[3]),
            pad(&r.spread, w[4]),
            pad(&r.target, w[5]),
            if std::ptr::eq(r, &header) {
                "verdict"
            } else {
                r.verdict
            }
        )
    };
    println!("{}", line(&header));
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 3 * 6 + 7));
    for r in rows {
        println!("{}", line(r));
    }
}

async fn run(opts: Opts, command_line: String) -> Result<()> {
    println!("command:  {command_line}");
    println!("machine:  {}", machine());
    println!("client:   tokio current-thread runtime (1 thread), tokio-tungstenite, TCP_NODELAY");
    if cfg!(debug_assertions) {
        println!("build:    DEBUG (cargo test): a smoke run; the figures mean nothing against the targets");
    }

    // Either the server started here, or one that is already running.
    let mut server = None;
    let target = if let Some(url) = &opts.url {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("--url must start with ws:// (no TLS in this client)"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
            None => (rest.to_owned(), "/ws".to_owned()),
        };
        let cookie = match &opts.cookie {
            Some(c) => c.clone(),
            None => fresh_identity(&addr)
                .await
                .context("pass --cookie for a server that sets none")?,
        };
        println!("server:   {url} (already running; pid {:?})", opts.pid);
        Target {
            addr,
            path,
            cookie,
            query: String::new(),
            pid: opts.pid,
            local: false,
        }
    } else {
        let mut args: Vec<String> = Vec::new();
        let given = |flag: &str| {
            opts.server_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if !given("--shell") {
            args.extend(["--shell".into(), opts.shell.clone()]);
        }
        for (flag, value) in [
            ("--max-sessions-per-user", "1000"),
            ("--max-new-sessions-per-minute", "0"),
            // Every new user of the benchmark comes from 127.0.0.1.
            ("--max-new-identities-per-address-per-minute", "0"),
            ("--max-sessions-per-address", "0"),
            ("--max-identities-per-address", "0"),
        ] {
            if !given(flag) {
                args.extend([flag.into(), value.into()]);
            }
        }
        args.extend(opts.server_args.iter().cloned());
        let printable: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        println!(
            "server:   {} --port 0 --bind 127.0.0.1 {}",
            env!("CARGO_BIN_EXE_termpool"),
            printable.join(" ")
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Server::start(&refs, &[]);
        let cookie = s.new_identity().await;
        let t = Target {
            addr: s.addr.clone(),
            path: "/ws".into(),
            cookie,
            query: String::new(),
            pid: Some(s.pid()),
            local: false,
        };
        server = Some(s);
        t
    };
    let target = Target {
        query: if opts.query.is_empty() {
            "cols=80&rows=24".into()
        } else {
            format!("cols=80&rows=24&{}", opts.query)
        },
        ..target
    };
    println!("query:    /ws?{}", target.query);
    let fresh_rss = target.pid.and_then(|p| status_kib(p, "VmRSS"));
    // One session first: the server answers, and in which mode.
    let mut probe = target.open().await?;
    let ready = probe.ready().await;
    let target = Target {
        local: ready["mode"] == "local",
        ..target
    };
    println!("mode:     {}", ready["mode"]);
    end_session(probe, b"exit\r").await;
    println!();

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let warmup = if opts.quick { 50 } else { 200 };

    let one = |b: u8| Bytes::from_static(&BYTE_VALUES[b as usize..b as usize + 1]);
    // (figure, row title, plan, p50 target, p99 target)
    let latency_figures = [
        (
            "echo",
            "keystroke echo, raw TTY + `cat` (1 B)",
            LatencyPlan {
                label: "echo/cat",
                // isig: so that ^C can end `cat` (and with it the session) after the run.
                setup: Some((
                    b"stty raw -echo isig; echo CAT$((6*7)); exec cat\r",
                    "CAT42",
                )),
                end: b"\x03",
                payloads: b"asdf".iter().map(|&b| one(b)).collect(),
                warmup,
                samples: opts.samples,
            },
            60_000,
            Some(120_000),
        ),
        (
            "readline",
            "keystroke echo, bash readline (x / DEL)",
            LatencyPlan {
                label: "echo/readline",
                setup: None,
                end: b"\x15exit\r",
                payloads: vec![one(b'x'), one(DEL)],
                warmup,
                samples: opts.samples,
            },
            60_000,
            Some(120_000),
        ),
        (
            "cmd",
            "command line `echo x$((1+1))` -> prompt",
            LatencyPlan {
                label: "cmd",
                setup: None,
                end: b"\x15exit\r",
                payloads: vec![Bytes::from_static(COMMAND_LINE)],
                warmup: warmup / 5,
                samples: opts.cmd_samples,
            },
            200_000,
            None,
        ),
    ];
    let shell_argv: Vec<String> = opts.shell.split_whitespace().map(str::to_owned).collect();
    for (figure, title, plan, p50_target, p99_target) in &latency_figures {
        if !opts.wants(figure) {
            continue;
        }
        eprintln!("{title}");
        let with_floor = opts.wants("floor");
        let mut relayed: Vec<(&str, LatencyResult)> = opts
            .clients
            .iter()
            .map(|&kind| (kind, LatencyResult::new()))
            .collect();
        let mut bare = LatencyResult::new();
        let mut failed = None;
        'runs: for run in 0..opts.runs {
            for (kind, result) in relayed.iter_mut() {
                let measured = if *kind == "blocking" {
                    match BlockingSession::open(&target, plan, target.local) {
                        Ok(t) => measure_run(t, plan).await,
                        Err(e) => Err(e),
                    }
                } else {
                    match tokio_session(&target, plan).await {
                        Ok(t) => measure_run(t, plan).await,
                        Err(e) => Err(e),
                    }
                };
                match measured {
                    Ok(r) => {
                        log_run(
                            &format!("{} ({kind} client)", plan.label),
                            run,
                            opts.runs,
                            &r,
                        );
                        result.add(r);
                    }
                    Err(e) => {
                        failed = Some(format!("{figure} ({kind} client): {e:#}"));
                        break 'runs;
                    }
                }
            }
            // The floor right after, so that all see the same background load.
            if with_floor {
                match async { measure_run(PtyTerm::open(&shell_argv, plan.setup)?, plan).await }
                    .await
                {
                    Ok(r) => {
                        log_run("  bare PTY", run, opts.runs, &r);
                        bare.add(r);
                    }
                    Err(e) => {
                        failed = Some(format!("floor {figure}: {e:#}"));
                        break;
                    }
                }
            }
        }
        if let Some(f) = failed {
            failures.push(f);
            continue;
        }
        let first = &relayed[0].1;
        let answers: Vec<String> = first
            .answers
            .iter()
            .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
            .collect();
        notes.push(format!("{}: answers {}", plan.label, answers.join(", ")));
        let mut sched: Vec<String> = relayed
            .iter()
            .map(|(kind, r)| format!("{kind} client: {}", r.sched_summary()))
            .collect();
        if with_floor {
            sched.push(format!("bare PTY: {}", bare.sched_summary()));
        }
        notes.push(format!(
            "{}: per sample CPU/run-queue wait, median of runs: {}",
            plan.label,
            sched.join("; ")
        ));
        if *figure == "cmd" && !common::contains(&first.answers[0], b"x2") {
            failures.push("cmd: the calibrated answer lacks the output x2".into());
        }
        for (kind, r) in &relayed {
            let title = if relayed.len() > 1 || *kind != "tokio" {
                format!("{title} [{kind} client]")
            } else {
                title.to_string()
            };
            rows.push(latency_row(&title, r, *p50_target, *p99_target));
        }
        if with_floor {
            rows.push(floor_row(&format!("  floor: bare PTY, {title}"), &bare));
        }
    }
    if opts.wants("floor") {
        eprintln!("floor: TCP loopback ping-pong");
        let mut p50s = Vec::new();
        let mut all = Vec::new();
        for _ in 0..opts.runs {
            match floor::tcp_ping_pong(warmup, opts.samples) {
                Ok(v) => {
                    p50s.push(Dist::new(v.clone()).pct(50.0));
                    all.extend(v);
                }
                Err(e) => failures.push(format!("floor tcp: {e:#}")),
            }
        }
        let r = LatencyResult {
            all: Dist::new(all),
            run_p50s: p50s,
            ..LatencyResult::new()
        };
        rows.push(floor_row(
            "  floor: TCP loopback 1 B ping-pong (blocking)",
            &r,
        ));
    }
    if opts.wants("throughput") {
        eprintln!(
            "throughput: `head -c {} /dev/zero` in a raw TTY",
            opts.mib << 20
        );
        match bench_throughput(&target, &opts, &mut notes).await {
            Ok(row) => rows.push(row),
            Err(e) => failures.push(format!("throughput: {e:#}")),
        }
        if opts.wants("floor") {
            eprintln!("floor: the same on a bare PTY, no server");
            match floor_throughput(&shell_argv, &opts) {
                Ok(row) => rows.push(row),
                Err(e) => failures.push(format!("floor throughput: {e:#}")),
            }
        }
    }
    if opts.wants("reattach") {
        eprintln!("re-attach: drop the socket of a session, open `?session=<id>`");
        match bench_reattach(&target, &opts).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("reattach: {e:#}")),
        }
    }
    if opts.wants("newuser") {
        eprintln!("newuser: a fresh identity's first session");
        match bench_new_users(&target, &opts).await {
            Ok(r) => rows.push(r),
            Err(e) => failures.push(format!("newuser: {e:#}")),
        }
    }
    if opts.wants("sessions") {
        eprintln!("sessions: {} at once", opts.sessions);
        match bench_sessions(&target, &opts, &shell_argv, fresh_rss).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("sessions: {e:#}")),
        }
    }

    println!();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("load average at the end: {}", load.join(" "));
    print_table(&rows);
    println!();
    for n in &notes {
        println!("note: {n}");
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    drop(server);
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{} figure(s) could not be measured", failures.len())
    }
}

fn smoke_run() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn main() {
    let mut args: Vec<String> = std::env::var("TERMPOOL_BENCH_ARGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it (in
    // the debug profile, with libtest's arguments): then it is only a smoke test, as `--quick`.
    if smoke_run() {
        args.push("--quick".into());
    } else {
        args.extend(std::env::args().skip(1));
    }
    let command_line = {
        let mut s = String::new();
        if let Ok(v) = std::env::var("TERMPOOL_BENCH_ARGS") {
            write!(s, "TERMPOOL_BENCH_ARGS='{v}' ").unwrap();
        }
        s.push_str(if smoke_run() {
            "(run without --bench, e.g. by cargo test: smoke run) relay -- --quick"
        } else {
            "cargo bench --bench relay --"
        });
        if !smoke_run() {
            for a in std::env::args().skip(1).filter(|a| a != "--bench") {
                write!(s, " {a}").unwrap();
            }
        }
        s
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("relay bench: {e:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(opts, command_line)) {
        eprintln!("relay bench: {e:#}");
        std::process::exit(1);
    }
}
