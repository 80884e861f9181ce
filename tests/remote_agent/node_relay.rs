//! The node's relay (`termpool-agent --relay`) beside a Swarm-mode agent, on the local engine as
//! a Swarm node runs them: the agent hands each session to the relay, which relays it outside
//! the user's container; the shell's exit, a hang-up and the relay's death all end sessions
//! cleanly; without a relay the agent relays itself; users cannot reach the relay's socket.

use std::time::Duration;

use super::fixture::{docker, ended, image, open, resize, sh, AgentContainer, TASK_CAPS};

/// Where the relay's socket is, in both containers (the pool's `RELAY_MOUNT`).
const RELAY_DIR: &str = "/run/termpool-relay";

/// A relay container as the pool's global service starts it: no capabilities, no network, a
/// read-only root; its socket directory is a directory of the host, removed when dropped.
struct Relay {
    name: String,
    dir: std::path::PathBuf,
}

impl Relay {
    fn start(tag: &str) -> Relay {
        let (ok, info) = docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(ok, "these tests need a running Docker engine: {info}");
        let name = format!("tpt-relay-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mount = format!("{}:{RELAY_DIR}", dir.display());
        let (ok, out) = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--init",
            "--cap-drop",
            "ALL",
            "--network",
            "none",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "-v",
            &mount,
            "--entrypoint",
            "/usr/local/sbin/termpool-agent",
            &image(),
            "--relay",
        ]);
        assert!(ok, "docker run (relay): {out}");
        let relay = Relay { name, dir };
        let socket = relay.dir.join("relay.sock");
        assert!(
            wait_until_sync(|| socket.exists()),
            "the relay never listened:\n{}",
            relay.logs()
        );
        relay
    }

    /// The agent container, with the relay's directory mounted read-only and named to it.
    fn agent(&self, tag: &str) -> AgentContainer {
        let env = format!("TERMPOOL_RELAY_SOCKET={RELAY_DIR}/relay.sock");
        let mount = format!("{}:{RELAY_DIR}:ro", self.dir.display());
        AgentContainer::start_with_mounts(tag, &[&env], &TASK_CAPS, &[mount])
    }

    /// The relay's processes: the listener, and one per session relayed.
    fn processes(&self) -> usize {
        let (_, out) = docker(&["top", &self.name, "-eo", "pid,args"]);
        out.lines()
            .filter(|l| l.contains("--relay") && !l.contains("init"))
            .count()
    }

    fn logs(&self) -> String {
        docker(&["logs", &self.name]).1
    }

    fn kill(&self) {
        let (ok, out) = docker(&["kill", &self.name]);
        assert!(ok, "docker kill: {out}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until_sync(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..150 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..150 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn sessions_are_relayed_by_the_nodes_relay_and_end_cleanly() {
    let relay = Relay::start("sess");
    let c = relay.agent("relayed");
    c.ready().await;
    let (ann, ann_uid) = c.account(1).await;
    let agent = c.agent();
    assert_eq!(relay.processes(), 1, "the listener alone");

    let mut s = open(&agent, &ann).await.expect("a session");
    assert_eq!(sh(&mut s, "id -u").await, ann_uid.to_string());
    // A process of the relay carries the session.
    assert!(
        wait_until(|| relay.processes() == 2).await,
        "no relay process for the session: {}\n{}\n{}",
        relay.processes(),
        relay.logs(),
        c.logs()
    );
    resize(&s, 101, 33).await;
    assert_eq!(sh(&mut s, "stty size").await, "33 101");
    // Bursts larger than a frame, both ways of the relay's buffers.
    assert_eq!(
        sh(&mut s, "head -c 3000000 /dev/zero | tr '\\0' x | wc -c").await,
        "3000000"
    );
    let big = sh(&mut s, "head -c 500000 /dev/zero | tr '\\0' y").await;
    assert_eq!(big.matches('y').count(), 500000);
    // The shell's exit: what it printed last, then EXIT with its code, and the relay's process
    // ends.
    s.tty.write(b"echo bye; exit 7\r").await.unwrap();
    assert!(ended(&mut s).await);
    assert_eq!(s.output.exit_code().await.unwrap(), Some(7));
    assert!(wait_until(|| relay.processes() == 1).await);

    // A hang-up from the server ends the shell and what it started.
    let mut s = open(&agent, &ann).await.unwrap();
    sh(&mut s, "sleep 4242 & echo started").await;
    assert_eq!(relay.processes(), 2);
    s.tty.hangup().await;
    assert!(ended(&mut s).await);
    assert_eq!(s.output.exit_code().await.unwrap(), None);
    assert!(
        wait_until(|| c.processes_of(ann_uid).is_empty()).await,
        "{:?}",
        c.processes_of(ann_uid)
    );
    assert!(wait_until(|| relay.processes() == 1).await);

    // The relay dies with a session on it: the session ends, its shell is hung up, and the
    // next session is relayed by the agent itself.
    let mut s = open(&agent, &ann).await.unwrap();
    sh(&mut s, "sleep 4343 & echo started").await;
    relay.kill();
    assert!(ended(&mut s).await, "the session outlived its relay");
    assert!(
        wait_until(|| c.processes_of(ann_uid).is_empty()).await,
        "{:?}",
        c.processes_of(ann_uid)
    );
    let mut s = open(&agent, &ann).await.expect("a session without a relay");
    assert_eq!(sh(&mut s, "echo $((6 * 7))").await, "42");
    assert!(c.logs().contains("relaying here"), "{}", c.logs());
}

/// A user who could talk to the relay could have it relay descriptors of their own, outside
/// their CPU quota: the socket is root's, on a read-only mount, and the relay takes root only.
#[tokio::test]
async fn users_cannot_reach_the_relay() {
    let relay = Relay::start("users");
    let c = relay.agent("attacked");
    c.ready().await;
    let (bob, _) = c.account(2).await;
    let mut s = open(&c.agent(), &bob).await.unwrap();
    let connect = format!(
        "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); \
         s.connect('{RELAY_DIR}/relay.sock')\" 2>&1 | tail -1"
    );
    let out = sh(&mut s, &connect).await;
    assert!(out.contains("PermissionError"), "{out}");
    let out = sh(
        &mut s,
        &format!("touch {RELAY_DIR}/x 2>&1; ls -A {RELAY_DIR}"),
    )
    .await;
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!out.contains("\nx"), "{out}");
    // The relay still serves the agent (this session is one of its).
    assert_eq!(relay.processes(), 2, "{}", relay.logs());

    // The relay fences itself: no new socket, no exec (Docker's filter and its own), and no
    // capability.
    let script = "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = termpool-agent ] && \
                  grep -E '^(CapEff|Seccomp_filters)' $p/status; done; true";
    let (ok, status) = docker(&["exec", &relay.name, "sh", "-c", script]);
    assert!(ok, "{status}");
    let filters: Vec<u32> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(filters.len(), 2, "the listener and the session's: {status}");
    assert!(filters.iter().all(|&n| n >= 2), "{status}");
    assert!(
        status
            .lines()
            .filter(|l| l.starts_with("CapEff"))
            .all(|l| l.ends_with("0000000000000000")),
        "{status}"
    );
}
