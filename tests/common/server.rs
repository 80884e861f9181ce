//! The real `termpool` binary started on 127.0.0.1 port 0 for one test, and stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::http_get;

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
        cmd.args(["--port", "0"]);
        // Loopback unless the test binds elsewhere itself (it still connects to 127.0.0.1).
        if !args.contains(&"--bind") {
            cmd.args(["--bind", "127.0.0.1"]);
        }
        cmd.args(args)
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
                        break rest.trim().replace("0.0.0.0:", "127.0.0.1:");
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

    /// Sessions the server counts open (`/healthz`): 0 once every ended session's account is idle.
    pub async fn sessions_open(&self) -> i64 {
        let (_, _, body) = http_get(&self.addr, "/healthz", &[]).await;
        let health: serde_json::Value = serde_json::from_slice(&body).expect("/healthz is JSON");
        health["sessions_open"].as_i64().expect("sessions_open")
    }

    /// Waits until the server counts no session open; panics after 30 s.
    pub async fn until_no_session_open(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sessions_open().await != 0 {
            assert!(
                Instant::now() < deadline,
                "the server still counts a session open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Loads the page like a browser and returns the identity cookie (`name=value`) it set.
    pub async fn new_identity(&self) -> String {
        new_identity_at(&self.addr).await
    }
}

/// Loads the page of the server at `addr` like a browser; the identity cookie it set.
pub async fn new_identity_at(addr: &str) -> String {
    let (status, headers, _) = http_get(addr, "/", &[]).await;
    assert_eq!(status, 200);
    let set_cookie = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .expect("the page sets an identity cookie");
    set_cookie.split(';').next().unwrap().trim().to_owned()
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

/// The lines of the log file `log` that hold `needle`.
pub fn log_lines_with(log: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}
