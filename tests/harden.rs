//! Attacks on what users of the pool share with each other and with the reaper, each performed
//! through the real server, the real Docker engine and the user image (issue #15): the default
//! one, or `CONTAINER_IMAGE` (which the servers inherit) for an image built from this tree.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{container_of, eventually, TestPool, WAIT};

/// The names of the shell's environment variables, sorted, one line.
const ENV_NAMES: &str = "env | cut -d= -f1 | sort | tr '\\n' ' '";

/// With `SESSION_AGENT=false` a session is a `docker exec`, which inherits the container's
/// environment (`TERMPOOL_AGENT_*`, `TERMPOOL_CONTAINER_NAME`, the image's variables); the
/// shell must get the agent's allowlist all the same.
#[tokio::test]
async fn both_session_modes_give_the_shell_the_same_environment() {
    let mut names = Vec::new();
    for (tag, transport) in [("envag", "true"), ("envex", "false")] {
        let pool = TestPool::new(tag);
        let server = pool.server(1, 2, &["--session-agent", transport]);
        let mut c = server.connect("").await;
        c.ready().await;
        c.sync().await;
        let leaked = c.output_of("env | grep -c '^TERMPOOL_'").await;
        assert_eq!(
            leaked, "0",
            "agent mode {transport}: TERMPOOL_* reached the shell"
        );
        names.push(c.output_of(ENV_NAMES).await);
    }
    assert_eq!(names[0], names[1], "agent mode vs docker exec mode");
    assert!(
        names[0].contains("HOME") && names[0].contains("PATH"),
        "{}",
        names[0]
    );
}

/// User A of a container reads every cgroup file that lists tasks: none shows B's shell (on
/// cgroup v1 `/sys/fs/cgroup/*/tasks` lists every pid of the container, hidepid or not).
#[tokio::test]
async fn cgroup_files_do_not_list_other_users_processes() {
    let pool = TestPool::new("cgmask");
    let server = pool.server(1, 2, &[]);
    let mut a = server.connect("").await;
    let ready_a = a.ready().await;
    let mut b = server.connect("").await;
    let ready_b = b.ready().await;
    assert_eq!(container_of(&ready_a), container_of(&ready_b));
    let b_pid = b.shell_pid().await;
    a.sync().await;
    let listed = a.output_of("find /sys/fs/cgroup \\( -name tasks -o -name cgroup.procs -o -name cgroup.threads \\) \
         -exec cat {} + 2>/dev/null | sort -u | tr '\\n' ' '",
    )
    .await;
    let pids: Vec<&str> = listed.split_whitespace().collect();
    assert!(
        !pids.contains(&b_pid.to_string().as_str()),
        "A sees B's shell {b_pid} in the cgroup files: {listed}"
    );
    let mount = a
        .output_of("grep -c ' /sys/fs/cgroup tmpfs ro,' /proc/mounts")
        .await;
    assert_eq!(
        mount, "1",
        "the cgroup files are masked by an empty read-only tmpfs"
    );
}

/// The account being reaped runs a watcher that sends SIGSTOP to everything it can reach
/// (`kill(-1)`), forks, and SIGKILLs every pid it can see. The reaper stays root, so it is
/// neither stopped nor killed: every process of the account ends and no reap fails.
#[tokio::test]
async fn the_account_being_reaped_cannot_stop_or_kill_the_reaper() {
    let pool = TestPool::new("reapwatch");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let args = ["--reattach-grace-secs", "0", "--idle-reap-secs", "2"];
    let server = pool.server_logged(1, 2, &args, &log);
    let mut c = server.connect("").await;
    let container = container_of(&c.ready().await);
    let uid = c.uid().await;
    // A watcher that, once the session is closed, stops and kills whatever of the account it
    // can reach (kill(-1) reaches every process whose real or saved uid is the account's).
    let watcher = "import os, signal, time\n\
        time.sleep(1.5)\n\
        while True:\n\
        \x20   os.kill(-1, signal.SIGSTOP)\n\
        \x20   os.kill(-1, signal.SIGKILL)\n";
    c.run(&format!(
        "printf '%s' '{}' | base64 -d > ~/w.py && setsid -f python3 ~/w.py </dev/null \
         >/dev/null 2>&1; echo W\"\"STARTED",
        base64(watcher.as_bytes())
    ))
    .await;
    c.expect_output("WSTARTED").await;
    let watching = || {
        TestPool::processes_of(&container, uid)
            .iter()
            .any(|p| p.contains("w.py"))
    };
    assert!(eventually(WAIT, watching).await, "the watcher runs");
    let count = || TestPool::processes_of(&container, uid).len();
    c.close().await;
    let gone = eventually(Duration::from_secs(20), || count() == 0).await;
    assert!(
        gone,
        "left behind: {:?}",
        TestPool::processes_of(&container, uid)
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("reaping processes of"), "reaped: {text}");
    assert!(!text.contains("could not reap"), "a reap failed: {text}");
}

/// A process left holding a closed session's terminal (fds 0-2 of a `setsid -f` job) keeps
/// trying to type into it (`TIOCSTI`) and write to it; the user's next session sees none of it.
/// `TIOCSTI` is refused by the agent's seccomp filter even on the own terminal, whatever the
/// host's `dev.tty.legacy_tiocsti`.
#[tokio::test]
async fn a_process_left_on_a_closed_terminal_cannot_reach_the_next_session() {
    let pool = TestPool::new("tiocsti");
    let server = pool.server(1, 2, &["--reattach-grace-secs", "0"]);
    let cookie = server.new_identity().await;
    let mut a = server.connect_as(&cookie, "").await;
    a.ready().await;
    a.sync().await;
    let own = a
        .output_of(
            "python3 -c 'import fcntl, termios\ntry: fcntl.ioctl(0, termios.TIOCSTI, b\"x\"); \
         print(\"TYPED\")\nexcept OSError as e: print(\"REFUSED\", e.strerror)'",
        )
        .await;
    assert!(
        own.contains("REFUSED Operation not permitted"),
        "TIOCSTI on the own tty: {own}"
    );
    let lurker = "import fcntl, termios, time\n\
        time.sleep(1)\n\
        while True:\n\
        \x20   for ch in b'LURKER\\n':\n\
        \x20       try: fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))\n\
        \x20       except OSError: pass\n\
        \x20   try: open('/proc/self/fd/1', 'w').write('LURKER\\n')\n\
        \x20   except OSError: pass\n\
        \x20   try: __import__('os').write(1, b'LURKER\\n')\n\
        \x20   except OSError: pass\n\
        \x20   time.sleep(0.05)\n";
    a.run(&format!(
        "printf '%s' '{}' | base64 -d > ~/l.py && setsid -f python3 ~/l.py; echo L\"\"EFT",
        base64(lurker.as_bytes())
    ))
    .await;
    a.expect_output("LEFT").await;
    a.close().await;
    let mut next = server.connect_as(&cookie, "").await;
    next.ready().await;
    next.sync().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    next.run("echo CHECK$((40+2))").await;
    let seen = next.expect_output("CHECK42").await;
    assert!(
        !seen.contains("LURKER"),
        "the lurker reached the next session: {seen}"
    );
}

/// A `UID_BASE` whose range holds the server's own uid is refused at start, naming the setting.
#[test]
fn a_uid_range_holding_the_servers_own_uid_is_refused() {
    // The server as uid 350000, accounts from 300000: its own uid would be given to a user.
    let binary = BinaryCopy::new();
    let out = Command::new("setpriv")
        .args(["--reuid=350000", "--regid=350000", "--clear-groups", "--"])
        .arg(&binary.0)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--use-containers",
            "true",
        ])
        .args(["--uid-base", "300000", "--data-dir", "/tmp"])
        .stdin(Stdio::null())
        .output()
        .expect("run the server under setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server started: {stderr}");
    assert!(
        stderr.contains("UID_BASE") && stderr.contains("350000"),
        "{stderr}"
    );
}

/// A copy of the server's binary where any uid may run it (the target directory may not be),
/// removed when dropped.
struct BinaryCopy(std::path::PathBuf);

impl BinaryCopy {
    fn new() -> Self {
        let to = std::env::temp_dir().join(format!("termpool-uidcheck-{}", std::process::id()));
        std::fs::copy(env!("CARGO_BIN_EXE_termpool"), &to).expect("copy the server's binary");
        BinaryCopy(to)
    }
}

impl Drop for BinaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
