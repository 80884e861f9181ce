//! Test harness shared by the integration tests and the benchmark: starts the real `termpool`
//! binary on 127.0.0.1 port 0 and drives it like a client, over a real WebSocket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A shell that starts fast and predictably: no profile, no rc, a fixed prompt.
pub const TEST_SHELL: &str = "/bin/bash --noprofile --norc";

/// Server arguments for tests that open many sessions of one user at once: no per-user or
/// per-address limit refuses them, and a closed one is hung up at once rather than kept for a
/// re-attach.
pub const MANY_SESSIONS: [&str; 8] = [
    "--max-sessions-per-user",
    "1000",
    "--max-sessions-per-address",
    "0",
    "--max-new-sessions-per-minute",
    "0",
    "--reattach-grace-secs",
    "0",
];

/// A running server process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts the server in local mode with a fast shell plus `args`.
    pub fn local(args: &[&str]) -> Server {
        let mut all = vec!["--shell", TEST_SHELL];
        all.extend_from_slice(args);
        Server::start(&all, &[])
    }

    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with_stderr(args, env, Stdio::inherit())
    }

    /// Like `start`, with the server's log (stderr) going to `stderr`.
    pub fn start_with_stderr(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_termpool"));
        cmd.args(["--port", "0", "--bind", "127.0.0.1"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start termpool");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("listening on http://") {
                        break rest.trim().to_owned();
                    }
                }
                _ => panic!(
                    "termpool exited before listening (status {:?})",
                    child.wait()
                ),
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Loads the page like a browser and returns the identity cookie (`name=value`) it set.
    pub async fn new_identity(&self) -> String {
        let (status, headers, _) = http_get(&self.addr, "/", &[]).await;
        assert_eq!(status, 200);
        let set_cookie = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .expect("the page sets an identity cookie");
        set_cookie.split(';').next().unwrap().trim().to_owned()
    }

    /// Opens a session as a new user.
    pub async fn connect(&self, query: &str) -> Client {
        let cookie = self.new_identity().await;
        self.connect_as(&cookie, query).await
    }

    pub async fn connect_as(&self, cookie: &str, query: &str) -> Client {
        self.try_connect(cookie, query, None)
            .await
            .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"))
    }

    /// Opens `/ws?query`; on refusal, the HTTP status and body.
    pub async fn try_connect(
        &self,
        cookie: &str,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Client, (u16, String)> {
        self.try_connect_path("/ws", cookie, query, origin).await
    }

    /// The HTTP status and body of an upgrade that must be refused.
    pub async fn refusal(&self, cookie: &str, query: &str, origin: Option<&str>) -> (u16, String) {
        match self.try_connect(cookie, query, origin).await {
            Ok(_) => panic!("the upgrade was accepted, but must be refused"),
            Err(refused) => refused,
        }
    }

    /// Connects as `cookie`, retrying while the server refuses, for at most `within`.
    pub async fn connect_within(&self, cookie: &str, within: Duration) -> Client {
        let deadline = Instant::now() + within;
        loop {
            match self.try_connect(cookie, "", None).await {
                Ok(c) => return c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((status, body)) => panic!("still refused after {within:?}: {status} {body}"),
            }
        }
    }

    pub async fn try_connect_path(
        &self,
        path: &str,
        cookie: &str,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Client, (u16, String)> {
        let url = format!("ws://{}{path}?{query}", self.addr);
        let mut request = url.into_client_request().unwrap();
        if !cookie.is_empty() {
            request
                .headers_mut()
                .insert("Cookie", HeaderValue::from_str(cookie).unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        match tokio_tungstenite::connect_async_with_config(request, None, true).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                pending: Vec::new(),
            }),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((status.as_u16(), body))
            }
            Err(e) => panic!("WebSocket connect failed: {e}"),
        }
    }
}

/// The token of `alice`, the one user of [`Server::with_alice_token`].
pub const ALICE_TOKEN: &str = "alice-secret-token-123456";

impl Server {
    /// A local server in token mode whose one user is `alice` ([`ALICE_TOKEN`]). The server reads
    /// its token file at start only, so the file is gone once it listens.
    pub fn with_alice_token(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("termpool-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, format!("alice:{ALICE_TOKEN}\n")).unwrap();
        let server = Server::local(&[
            "--identity-mode",
            "token",
            "--token-file",
            file.to_str().unwrap(),
        ]);
        std::fs::remove_dir_all(&dir).unwrap();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of response header `name` (any case) among `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A plain HTTP/1.1 GET over a fresh connection: status, headers, body.
pub async fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_request(addr, "GET", path, headers, b"").await
}

/// One HTTP/1.1 request over a fresh connection: status, headers, body. `Host` is the address
/// unless `headers` name another.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// One frame as the client sees it.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
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
    /// The next frame, or `None` after `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let msg = tokio::time::timeout(timeout, self.ws.next()).await.ok()?;
        Some(match msg {
            None => Frame::Closed(None),
            Some(Err(_)) => Frame::Closed(None),
            Some(Ok(Message::Text(t))) => {
                Frame::Json(serde_json::from_str(&t).expect("text frames are JSON"))
            }
            Some(Ok(Message::Binary(b))) => Frame::Bytes(b.to_vec()),
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => Frame::Ping,
            Some(Ok(Message::Close(c))) => Frame::Closed(c.map(|c| u16::from(c.code))),
            Some(Ok(Message::Frame(_))) => Frame::Ping,
        })
    }

    /// The first frame, which must be `ready`.
    pub async fn ready(&mut self) -> Value {
        match self.next_frame(WAIT).await {
            Some(Frame::Json(v)) if v["type"] == "ready" => v,
            other => panic!("expected ready first, got {other:?}"),
        }
    }

    /// The next JSON frame, collecting any output before it into `pending`.
    pub async fn next_json(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Json(v)) => return v,
                Some(Frame::Bytes(b)) => self.pending.extend_from_slice(&b),
                Some(Frame::Ping) => {}
                other => panic!("expected a JSON frame, got {other:?}"),
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
        self.send_json(serde_json::json!({"type": "resize", "cols": cols, "rows": rows}))
            .await;
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

/// The last few hundred bytes of `bytes`, for failure messages.
pub fn tail(bytes: &[u8]) -> String {
    format!("{:?}", &bytes[bytes.len().saturating_sub(400)..]).replace(", ", " ")
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Processes that are still alive (not zombies) among `pids`.
pub fn alive(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Pids whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            *pid != me &&
            // Arguments are NUL-separated in /proc: compare them as a space-separated line.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.iter().map(|&b| if b == 0 { b' ' } else { b }).collect::<Vec<u8>>())
                .map(|c| contains(&c, needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Direct children of `pid` that are alive.
pub fn children_of(pid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit(')').next()?.to_owned();
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let ppid: u32 = f.next()?.parse().ok()?;
                    Some(ppid == pid && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// CPU time and run-queue wait (ns) of every thread of `pid` so far, from /proc/PID/task/*/schedstat
/// (a thread that ended in between is missed; the processes measured here keep theirs).
pub fn schedstat(pid: u32) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut f = line
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        total.0 += f.next().unwrap_or(0);
        total.1 += f.next().unwrap_or(0);
    }
    Some(total)
}

/// CPU time all threads of process `pid` have used so far.
pub fn server_cpu(pid: u32) -> Duration {
    let (cpu, _) = schedstat(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    Duration::from_nanos(cpu)
}

/// Polls `cond` until true or `timeout`; returns its last value.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container pool of its own for one test: unique container names, volume and data dir, all
/// removed when dropped (even when the test fails).
pub struct TestPool {
    /// UIDs of this pool start here: per-user process limits count per UID on the whole host,
    /// so pools of tests running at the same time must not share UIDs.
    pub uid_base: u32,
    pub prefix: String,
    pub volume: String,
    pub data_dir: std::path::PathBuf,
}

impl TestPool {
    /// Panics (the test fails) when no Docker engine answers: container tests never pass without one.
    pub fn new(tag: &str) -> TestPool {
        require_docker();
        let id = &uuid_simple()[..8];
        let prefix = format!("tpt-{tag}-{id}");
        let data_dir = std::env::temp_dir().join(format!("{prefix}-data"));
        let uid_base = 300_000 + (u32::from_str_radix(id, 16).unwrap_or(0) % 100_000) * 1000;
        TestPool {
            uid_base,
            volume: format!("{prefix}-ws"),
            prefix,
            data_dir,
        }
    }

    /// Starts a container-mode server on this pool (network `none`).
    pub fn server(&self, containers: usize, users_each: usize, extra: &[&str]) -> Server {
        self.server_with(containers, users_each, extra, &[], Stdio::inherit())
    }

    fn server_with(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let (c, u) = (containers.to_string(), users_each.to_string());
        let data = self.data_dir.to_string_lossy().into_owned();
        let uid_base = self.uid_base.to_string();
        let mut args = vec![
            "--uid-base",
            &uid_base,
            "--use-containers",
            "true",
            "--max-containers",
            &c,
            "--users-per-container",
            &u,
            "--container-network",
            "none",
            "--container-prefix",
            &self.prefix,
            "--workspace-volume",
            &self.volume,
            "--data-dir",
            &data,
        ];
        args.extend_from_slice(extra);
        Server::start_with_stderr(&args, env, stderr)
    }

    /// Runs `docker ARGS` and returns stdout; panics on failure.
    pub fn docker(args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Processes of the account with `uid` in `container`, as the host sees them (`docker top`
    /// runs ps on the host, which knows the container's accounts only by number).
    pub fn processes_of(container: &str, uid: u32) -> Vec<String> {
        Self::docker(&["top", container, "-eo", "uid,pid,args"])
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().next() == Some(uid.to_string().as_str()))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name=^{}-", self.prefix)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
        // A pool on `bridge` makes a network of its own; the engine may still be detaching a
        // just-removed container from it.
        let network = format!("{}-net", self.prefix);
        for _ in 0..10 {
            let out = Command::new("docker")
                .args(["network", "rm", &network])
                .output();
            let gone = out.is_ok_and(|o| {
                o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found")
            });
            if gone {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests need a running Docker engine and the user image: run scripts/install-test-deps.sh"
    );
}

fn uuid_simple() -> String {
    let mut bytes = [0u8; 16];
    let f = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    bytes.iter_mut().zip(f.iter()).for_each(|(b, s)| *b = *s);
    String::from_utf8_lossy(&f).trim().replace('-', "")
}

impl TestPool {
    /// Like [`TestPool::server`], with the server's log (stderr) going to the file `log`, so a
    /// test can check what an operator is told.
    pub fn server_logged(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("create the server's log file");
        self.server_with(
            containers,
            users_each,
            extra,
            &[("RUST_LOG", "info")],
            file.into(),
        )
    }
}

/// Opens `/ws` on `server` with the request headers `headers` (e.g. an auth proxy's identity
/// header); the client, or the HTTP status and body of the refusal.
pub async fn connect_with_headers(
    server: &Server,
    headers: &[(&str, &str)],
) -> Result<Client, (u16, String)> {
    let mut request = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(v).unwrap());
    }
    match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok((ws, _)) => Ok(Client {
            ws,
            pending: Vec::new(),
        }),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

impl TestPool {
    /// Like [`TestPool::server_logged`], with environment variables of its own (e.g. DOCKER_HOST).
    pub fn server_logged_env(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("create the server's log file");
        let mut all = vec![("RUST_LOG", "info")];
        all.extend_from_slice(env);
        self.server_with(containers, users_each, extra, &all, file.into())
    }
}

/// The reference a refusal gives the client (`reference` and 8 hex digits), which the server's
/// log shows beside the details.
pub fn refusal_reference(body: &str) -> Option<String> {
    let rest = &body[body.find("reference ")? + "reference ".len()..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (hex.len() == 8).then_some(hex)
}

/// The lines of the log file `log` that hold `needle`.
pub fn log_lines_with(log: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A unix-socket proxy to the real engine that can be cut and restored, to play a Docker outage
/// without stopping the machine's daemon. Its tasks run on the test's runtime: a test whose server
/// is another process needs a multi-thread runtime, so that they run while the test blocks.
pub struct DockerProxy {
    pub path: std::path::PathBuf,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DockerProxy {
    pub fn new(path: std::path::PathBuf) -> DockerProxy {
        DockerProxy {
            path,
            tasks: std::sync::Arc::default(),
        }
    }

    /// `DOCKER_HOST` for a client of the proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn up(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind proxy socket");
        let tasks = std::sync::Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    let upstream = tokio::net::UnixStream::connect("/var/run/docker.sock").await;
                    if let Ok(mut upstream) = upstream {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tasks.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
    }

    pub fn down(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.down();
    }
}
