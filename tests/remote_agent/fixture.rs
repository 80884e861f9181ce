//! A user container started as a Swarm task would start it, on the local engine: the agent in
//! Swarm mode with its lockdown, the caps the design lists, a key file at the secret's path, and
//! the agent port published on 127.0.0.1 only. Removed when dropped.

use std::borrow::Cow;
use std::process::Command;
use std::time::Duration;

use termpool::protocol::TermSize;
use termpool::tty::remote::{AgentError, RemoteAgent};
use termpool::tty::Spawned;
use termpool_agent_proto::{slot_psk, AccountRequest, ShellRequest};

pub const SLOT: &str = "termpool-slot-swarm-agent-test";
const WAIT: Duration = Duration::from_secs(30);
/// A Swarm task's capabilities: the pool's, plus the three the lockdown drops.
pub const TASK_CAPS: [&str; 9] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
    "SYS_ADMIN",
    "SETPCAP",
    "NET_ADMIN",
];
/// A Swarm task's other settings: its limits, the agent's port on 127.0.0.1 only, and the
/// Swarm-mode environment.
const FLAGS: &str = "--init --cap-drop ALL \
    --pids-limit 1024 --ulimit nproc=256:256 --memory 512m -p 127.0.0.1::7100 \
    -e TERMPOOL_AGENT_LISTEN=0.0.0.0:7100 -e TERMPOOL_AGENT_LOCKDOWN=1";

pub struct AgentContainer {
    pub name: String,
    dir: std::path::PathBuf,
    pub addr: String,
    pub psk: [u8; 32],
    /// UIDs of this container's accounts start here (per-UID limits count on the whole host).
    pub uid_base: u32,
}

pub fn image() -> String {
    std::env::var("CONTAINER_IMAGE").unwrap_or_else(|_| "terminal-multi-user:latest".into())
}

pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    b
}

impl AgentContainer {
    /// Starts the container; `env` adds `-e` settings.
    pub fn start(tag: &str, env: &[&str]) -> AgentContainer {
        Self::start_with_caps(tag, env, &TASK_CAPS)
    }

    /// Starts the container with these capabilities only.
    pub fn start_with_caps(tag: &str, env: &[&str], caps: &[&str]) -> AgentContainer {
        Self::start_with_mounts(tag, env, caps, &[])
    }

    /// Starts the container with these capabilities and extra `-v` mounts.
    pub fn start_with_mounts(
        tag: &str,
        env: &[&str],
        caps: &[&str],
        mounts: &[String],
    ) -> AgentContainer {
        let (ok, info) = docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(ok, "these tests need a running Docker engine: {info}");
        let id = hex::encode(random_bytes::<4>());
        let name = format!("tpt-swarm-agent-{tag}-{id}");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let psk = slot_psk(&random_bytes::<32>(), SLOT, 0);
        let key = dir.join("agent-key");
        std::fs::write(&key, psk).unwrap();
        let mount = format!("{}:/run/secrets/agent-key:ro", key.display());
        // For a unix-socket agent beside the network one (the measurement).
        let socket_dir = dir.join("run");
        std::fs::create_dir_all(&socket_dir).unwrap();
        let socket_mount = format!("{}:/run/termpool", socket_dir.display());
        let mut args: Vec<String> = ["run", "-d", "--name", &name].map(String::from).to_vec();
        args.extend(FLAGS.split_whitespace().map(String::from));
        for cap in caps {
            args.extend(["--cap-add".to_string(), cap.to_string()]);
        }
        args.extend(["-v".into(), mount, "-v".into(), socket_mount]);
        for m in mounts {
            args.extend(["-v".to_string(), m.clone()]);
        }
        args.extend(["-e".into(), format!("TERMPOOL_AGENT_SLOT={SLOT}")]);
        for e in env {
            args.extend(["-e".to_string(), e.to_string()]);
        }
        args.push(image());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = docker(&args);
        let uid_base = 400_000 + (u32::from_str_radix(&id, 16).unwrap() % 100_000) * 100;
        let mut c = AgentContainer {
            name,
            dir,
            addr: String::new(),
            psk,
            uid_base,
        };
        assert!(ok, "docker run: {out}");
        let (ok, port) = docker(&["port", &c.name, "7100/tcp"]);
        assert!(ok, "docker port: {port}");
        c.addr = port.lines().next().unwrap().trim().to_owned();
        c
    }

    pub fn agent(&self) -> RemoteAgent {
        RemoteAgent::new(self.addr.clone(), SLOT, self.psk)
    }

    /// Waits until the agent answers STATUS.
    pub async fn ready(&self) -> termpool_agent_proto::StatusReport {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.agent().status().await {
                Ok(report) => return report,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("the agent never answered: {e}\n{}", self.logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Where a unix-socket agent started in the container (`/run/termpool/agent.sock`) is seen
    /// from here.
    pub fn socket_path(&self) -> std::path::PathBuf {
        self.dir.join("run/agent.sock")
    }

    pub fn logs(&self) -> String {
        docker(&["logs", &self.name]).1
    }

    /// Creates account `u<n>` (uid `uid_base + n`); its name and uid.
    pub async fn account(&self, n: u32) -> (String, u32) {
        let name = format!("u{n}x{}", &self.name[self.name.len() - 8..]);
        let uid = self.uid_base + n;
        let req = AccountRequest {
            name: name.clone(),
            uid,
            home: format!("/workspace/{name}"),
        };
        self.agent().account(&req).await.expect("ACCOUNT");
        (name, uid)
    }

    /// Processes of `uid` in the container, as the host sees them.
    pub fn processes_of(&self, uid: u32) -> Vec<String> {
        let (_, out) = docker(&["top", &self.name, "-eo", "uid,pid,args"]);
        out.lines()
            .skip(1)
            .filter(|l| l.split_whitespace().next() == Some(uid.to_string().as_str()))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for AgentContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn open(agent: &RemoteAgent, user: &str) -> Result<Spawned, AgentError> {
    let env = vec!["TERM=xterm".to_string(), "LANG=C.UTF-8".to_string()];
    let req = ShellRequest {
        user: user.into(),
        home: format!("/workspace/{user}").into(),
        cols: 80,
        rows: 24,
        env: Cow::Owned(env),
    };
    agent.open_session(&req, WAIT).await
}

/// Reads output until `done(all read so far)`; all that was read.
pub async fn read_until(s: &mut Spawned, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, s.output.read()).await {
            Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => panic!("the session ended early: {seen}"),
            Err(_) => panic!("not what was awaited within {WAIT:?}: {seen}"),
        }
    }
    seen
}

/// Runs `cmd` in the session's shell; what it printed between two markers the typed line does
/// not show (`B""EGIN` is typed, `BEGIN` printed).
pub async fn sh(s: &mut Spawned, cmd: &str) -> String {
    let line = format!("echo B\"\"EGIN; {cmd}; echo E\"\"ND\r");
    s.tty.write(line.as_bytes()).await.expect("write");
    let between = |seen: &str| {
        let (_, after) = seen.split_once("BEGIN")?;
        after.split_once("END").map(|(body, _)| body.to_owned())
    };
    let seen = read_until(s, |seen| between(seen).is_some()).await;
    between(&seen).unwrap().replace('\r', "").trim().to_owned()
}

/// Ctrl-C, then waits for the shell's prompt (input typed before it may be flushed away).
pub async fn interrupt(s: &mut Spawned) {
    s.tty.write(b"\x03").await.expect("write");
    read_until(s, |seen| seen.trim_end_matches(' ').ends_with('$')).await;
}

pub async fn resize(s: &Spawned, cols: u16, rows: u16) {
    s.tty.resize(TermSize { cols, rows }).await.expect("resize");
}

/// Waits for the end of the session's output: whether it ended within the wait.
pub async fn ended(s: &mut Spawned) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.output.read()).await {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
