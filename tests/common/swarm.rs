//! Tests on a real Docker Swarm (`scripts/swarm/up.sh`, several engines on this machine): this
//! tree's images, a stack deployed with `scripts/swarm-deploy.sh`, reached at node 1's port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::client::Client;
use super::connect::try_connect_at;
use super::server::new_identity_at;

mod images;
mod nodes;
use images::load_into_manager;
pub use images::{server_image, user_image};
pub use nodes::{manager_reachability, node_state, LinkCut, Promoted};

/// The nodes the tests need (the node-failure test cuts one and keeps two).
pub const NODES: usize = 3;
/// Where the tests reach node `i`'s published ports, and the server's (node 1, the manager).
pub fn node_addr(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}
pub fn node_sock(i: usize) -> String {
    format!("/run/termpool-swarm/tpswarm-n{i}.sock")
}
pub fn node_name(i: usize) -> String {
    format!("tpswarm-n{i}")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `docker ARGS` against node `i`: its stdout, trimmed; panics with stderr on failure.
pub fn dk(i: usize, args: &[&str]) -> String {
    let out = dk_try(i, args);
    out.unwrap_or_else(|e| panic!("docker -H node{i} {args:?} failed: {e}"))
}

/// `docker ARGS` against node `i`: stdout, or stderr when it failed.
pub fn dk_try(i: usize, args: &[&str]) -> Result<String, String> {
    let sock = format!("unix://{}", node_sock(i));
    let out = run(Command::new("docker").args(["-H", &sock]).args(args));
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// The test Swarm, brought up (or reused: up.sh is idempotent) once per test binary; panics
/// when it cannot be: Swarm tests never pass without one.
pub fn require_swarm() {
    static UP: std::sync::Once = std::sync::Once::new();
    UP.call_once(|| {
        let up = repo().join("scripts/swarm/up.sh");
        let out = run(Command::new(up)
            .arg(NODES.to_string())
            .env("SWARM_IMAGES", ""));
        assert!(
            out.status.success(),
            "scripts/swarm/up.sh {NODES} failed (root and the host engine are needed):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A termpool stack on the test Swarm; every object it and its server create names `tag`, and
/// all of it is removed when dropped (`scripts/swarm/stack-rm.sh`), also when the test fails.
pub struct Stack {
    pub tag: String,
    /// `198.18.0.11:PORT`: the server's published port on node 1.
    pub addr: String,
    env: Vec<(String, String)>,
}

impl Stack {
    /// Deploys the stack with `settings` (server variables) on top of the test's own names.
    pub fn deploy(name: &str, settings: &[(&str, &str)]) -> Stack {
        require_swarm();
        let prefix = std::env::var("TERMPOOL_SWARM_TEST_PREFIX").unwrap_or("swarmtest".into());
        let id = format!("{:06x}", rand_u32() & 0xff_ffff);
        let tag = format!("{prefix}-{name}-{id}");
        let port = 20_000 + rand_u32() % 20_000;
        let stack = Stack {
            addr: format!("{}:{port}", node_addr(1)),
            env: Stack::env_of(&tag, port, settings),
            tag,
        };
        stack.remove();
        let (server, user) = (server_image(), user_image());
        load_into_manager(&server);
        load_into_manager(&user);
        stack.swarm_deploy();
        stack.wait_healthy(Duration::from_secs(240));
        stack
    }

    fn env_of(tag: &str, port: u32, settings: &[(&str, &str)]) -> Vec<(String, String)> {
        let others: Vec<String> = (2..=NODES)
            .map(|i| format!("unix://{}", node_sock(i)))
            .collect();
        let uid_base = 400_000 + (rand_u32() % 100) * 1000;
        let mut env: Vec<(String, String)> = vec![
            ("DOCKER_HOST".into(), format!("unix://{}", node_sock(1))),
            ("NODES".into(), others.join(" ")),
            ("SERVER_IMAGE".into(), server_image()),
            ("CONTAINER_IMAGE".into(), user_image()),
            ("PUBLISH_PORT".into(), port.to_string()),
            ("CONTAINER_PREFIX".into(), tag.into()),
            ("WORKSPACE_VOLUME".into(), format!("{tag}-ws")),
            ("AGENT_NETWORK".into(), format!("{tag}-agents")),
            ("MASTER_KEY_SECRET".into(), format!("{tag}-master-key")),
            ("UID_BASE".into(), uid_base.to_string()),
            ("RUST_LOG".into(), "info".into()),
        ];
        // Local additions merged over docker-stack.yml, e.g. to try the harness on a server
        // without the Swarm orchestrator.
        if let Ok(files) = std::env::var("TERMPOOL_SWARM_STACK_FILES") {
            env.push(("STACK_FILES".into(), files));
        }
        for (k, v) in settings {
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    fn swarm_deploy(&self) {
        let mut cmd = Command::new(repo().join("scripts/swarm-deploy.sh"));
        cmd.arg(&self.tag).env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "swarm-deploy.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The name of the server's service.
    pub fn server_service(&self) -> String {
        format!("{}_server", self.tag)
    }

    /// Waits until /healthz answers 200 on the published port.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if healthz(&self.addr) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "the stack's server did not turn healthy in {within:?}; its log:\n{}",
            self.server_log()
        );
    }

    /// The server's log (last lines, every task).
    pub fn server_log(&self) -> String {
        let svc = self.server_service();
        // The server logs to stderr, which `service logs` passes on as its own stderr.
        let sock = format!("unix://{}", node_sock(1));
        let logs = [
            "-H", &sock, "service", "logs", "--raw", "--tail", "80", &svc,
        ];
        let out = run(Command::new("docker").args(logs));
        let ps = dk_try(1, &["service", "ps", "--no-trunc", &svc]);
        format!(
            "{}\n{}{}",
            ps.unwrap_or_else(|e| e),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Restarts the server's task (`docker service update --force`) and waits until it answers.
    pub fn restart_server(&self) {
        self.update_server(&["--force"]);
    }

    /// Restarts the server with setting `key` changed to `value`, as an operator would
    /// (`docker service update --env-add`), and waits until it answers.
    pub fn restart_server_with(&self, key: &str, value: &str) {
        self.update_server(&["--env-add", &format!("{key}={value}")]);
    }

    /// `docker service update ARGS` of the server's service; waits until the old task stopped
    /// answering and the new one answers.
    fn update_server(&self, args: &[&str]) {
        let svc = self.server_service();
        let mut update = vec!["service", "update", "--detach", "-q"];
        update.extend_from_slice(args);
        update.push(&svc);
        dk(1, &update);
        // The old task answers until it is stopped: wait for it to go first.
        let deadline = Instant::now() + Duration::from_secs(60);
        while healthz(&self.addr) == Some(200) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.wait_healthy(Duration::from_secs(180));
    }

    /// Moves the server's task to manager node `i`, as an operator would with a placement
    /// constraint; the task gets that node's own Docker socket (a real node has its engine's at
    /// the same path; the test nodes' sockets differ). Waits until the old task stopped and the
    /// new one answers at node `i`'s address, where the server is reached from then on.
    pub fn move_server(&mut self, i: usize) {
        let svc = self.server_service();
        let constraint = format!("node.hostname=={}", node_name(i));
        let socket = format!(
            "type=bind,source={},target=/var/run/docker.sock",
            node_sock(i)
        );
        let update = [
            "service",
            "update",
            "--detach",
            "-q",
            "--constraint-add",
            &constraint,
            // Replaces the mount of that target (a `--mount-rm` of it would remove both).
            "--mount-add",
            &socket,
            &svc,
        ];
        dk(1, &update);
        let old = self.addr.clone();
        let gone = wait_until(Duration::from_secs(60), || healthz(&old) != Some(200));
        assert!(
            gone,
            "the server still answers at {old}:
{}",
            self.server_log()
        );
        let port = old.rsplit(':').next().unwrap_or_default().to_owned();
        self.addr = format!("{}:{port}", node_addr(i));
        self.wait_healthy(Duration::from_secs(180));
    }

    /// The node whose engine runs the server's task now.
    pub fn server_node(&self) -> Option<usize> {
        let name = self.server_service();
        (1..=NODES).find(|&i| {
            let names = dk_try(i, &["ps", "--format", "{{.Names}}"]).unwrap_or_default();
            names.lines().any(|n| n.starts_with(&format!("{name}.")))
        })
    }

    pub async fn new_identity(&self) -> String {
        new_identity_at(&self.addr).await
    }

    pub async fn try_connect(&self, cookie: &str) -> Result<Client, (u16, String)> {
        try_connect_at(&self.addr, "/ws", cookie, "", None).await
    }

    pub async fn connect_as(&self, cookie: &str) -> Client {
        self.try_connect(cookie)
            .await
            .unwrap_or_else(|(status, body)| {
                panic!("upgrade refused: {status} {body}\n{}", self.server_log())
            })
    }

    /// Connects as `cookie`, retrying while the server refuses, for at most `within`.
    pub async fn connect_within(&self, cookie: &str, within: Duration) -> Client {
        let deadline = Instant::now() + within;
        loop {
            match self.try_connect(cookie).await {
                Ok(c) => return c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err((status, body)) => panic!("still refused after {within:?}: {status} {body}"),
            }
        }
    }

    fn remove(&self) {
        let script = repo().join("scripts/swarm/stack-rm.sh");
        let _ = run(Command::new(script).args([&self.tag, &self.tag]));
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} (the test failed) ----\n{}",
                self.tag,
                self.server_log()
            );
        }
        self.remove();
    }
}

/// The status of GET /healthz at `addr`, or `None` when nothing answers.
pub fn healthz(addr: &str) -> Option<u16> {
    get(addr, "/healthz").map(|(status, _)| status)
}

/// The server's `/metrics` at `addr`, or `None` when nothing answers.
pub fn metrics(addr: &str) -> Option<String> {
    get(addr, "/metrics").and_then(|(status, body)| (status == 200).then_some(body))
}

/// GET `path` at `addr` (HTTP/1.0: the server closes at the end): the status and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let sock = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// The node (1..=NODES) whose engine runs the container of slot `slot`: a Swarm service's task
/// (`slot.1.<id>`) or a plain container named so.
pub fn node_of(slot: &str) -> Option<usize> {
    (1..=NODES).find(|&i| container_of(i, slot).is_some())
}

/// The id of the running container of slot `slot` on node `i`.
pub fn container_of(i: usize, slot: &str) -> Option<String> {
    let names = dk_try(i, &["ps", "--format", "{{.ID}} {{.Names}}"]).ok()?;
    names.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        let ours = name == slot || name.strip_prefix(slot)?.starts_with('.');
        ours.then(|| id.to_owned())
    })
}

/// The sessions the node relay of slot `slot`'s pool relays on node `i` (its processes beside
/// the listener); `None` when no relay runs there.
pub fn relayed_on(i: usize, slot: &str) -> Option<usize> {
    let relay = format!("{}-relay", slot.rsplit_once('-')?.0);
    let id = container_of(i, &relay)?;
    let top = dk_try(i, &["top", &id, "-eo", "pid,args"]).ok()?;
    let relays = top.lines().filter(|l| l.contains("termpool-agent --relay"));
    Some(
        relays
            .filter(|l| !l.contains("init"))
            .count()
            .saturating_sub(1),
    )
}

/// Removes the running container of slot `slot` (as a crash would) and waits until Swarm runs a
/// new one in its place; returns the new container's node and id.
pub fn replace_container(slot: &str) -> (usize, String) {
    let i = node_of(slot).unwrap_or_else(|| panic!("no running container for {slot}"));
    let old = container_of(i, slot).unwrap();
    dk(i, &["rm", "-f", &old]);
    let mut new = None;
    let started = wait_until(Duration::from_secs(120), || {
        new = node_of(slot).and_then(|n| Some((n, container_of(n, slot)?)));
        new.as_ref().is_some_and(|(_, id)| *id != old)
    });
    assert!(started, "no new container for {slot} after removing {old}");
    new.unwrap()
}

/// `sh -c SCRIPT` as root in slot `slot`'s container (an inspection by the test, outside the
/// users' lockdown).
pub fn exec_in(slot: &str, script: &str) -> String {
    let i = node_of(slot).unwrap_or_else(|| panic!("no running container for {slot}"));
    let id = container_of(i, slot).unwrap();
    dk(i, &["exec", &id, "sh", "-c", script])
}

/// Waits until `check` holds, for at most `within`; false if it never did.
pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    f.expect("/dev/urandom");
    u32::from_le_bytes(b)
}

/// A path under the repository (scripts the tests run).
pub fn repo_path(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// Runs `cmd` in the session's shell and returns its output, between two markers that only the
/// shell's expansion writes (the echoed command line shows `$((n+1))`).
pub async fn shell(c: &mut Client, cmd: &str) -> String {
    let n = rand_u32() % 1_000_000;
    let (a, b) = (format!("@@A{}@@", n + 1), format!("@@B{}@@", n + 1));
    c.run(&format!(
        "echo @@A$(({n}+1))@@; {cmd}; echo @@B$(({n}+1))@@"
    ))
    .await;
    c.expect_output(&a).await;
    let out = c.expect_output(&b).await;
    out[..out.len() - b.len()]
        .replace('\r', "")
        .trim()
        .to_owned()
}
