//! Attacks on what users of the pool share with each other and with the reaper, each performed
//! through the real server, the real Docker engine and the user image (issue #15): the default
//! one, or `CONTAINER_IMAGE` (which the servers inherit) for an image built from this tree.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Client, TestPool, WAIT};
use termpool::protocol::Ready;

fn container(ready: &Ready) -> String {
    ready.container.as_deref().unwrap_or_default().to_owned()
}

/// Runs `cmd` in the shell and returns what it printed between two markers the typed line
/// does not show (`B""EGIN` is typed, `BEGIN` printed).
async fn sh(c: &mut Client, cmd: &str) -> String {
    c.run(&format!("echo B\"\"EGIN; {cmd}; echo E\"\"ND")).await;
    c.expect_output("BEGIN").await;
    let out = c.expect_output("END").await;
    out.trim_end_matches("END")
        .replace('\r', "")
        .trim()
        .to_owned()
}

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
        let leaked = sh(&mut c, "env | grep -c '^TERMPOOL_'").await;
        assert_eq!(
            leaked, "0",
            "agent mode {transport}: TERMPOOL_* reached the shell"
        );
        names.push(sh(&mut c, ENV_NAMES).await);
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
    assert_eq!(container(&ready_a), container(&ready_b));
    let b_pid = b.shell_pid().await;
    a.sync().await;
    let listed = sh(
        &mut a,
        "find /sys/fs/cgroup \\( -name tasks -o -name cgroup.procs -o -name cgroup.threads \\) \
         -exec cat {} + 2>/dev/null | sort -u | tr '\\n' ' '",
    )
    .await;
    let pids: Vec<&str> = listed.split_whitespace().collect();
    assert!(
        !pids.contains(&b_pid.to_string().as_str()),
        "A sees B's shell {b_pid} in the cgroup files: {listed}"
    );
    let mount = sh(&mut a, "grep -c ' /sys/fs/cgroup tmpfs ro,' /proc/mounts").await;
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
    let container = container(&c.ready().await);
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

/// A loop-mounted ext4 image with user quotas on, made the pool's workspace volume (a bind
/// volume of the pool's name, so that the pool uses it instead of creating its own).
struct QuotaFs {
    image: std::path::PathBuf,
    mount: std::path::PathBuf,
}

impl QuotaFs {
    /// `None` when this kernel cannot mount ext4 with user quotas (no CONFIG_QFMT_V2).
    fn new(volume: &str, mb: u32) -> Option<QuotaFs> {
        let base = std::env::temp_dir().join(format!("{volume}-fs"));
        let (image, mount) = (base.with_extension("img"), base.with_extension("mnt"));
        std::fs::create_dir_all(&mount).expect("make the mount point");
        let fs = QuotaFs { image, mount };
        let (img, mnt) = (fs.image.to_string_lossy(), fs.mount.to_string_lossy());
        run("truncate", &["-s", &format!("{mb}M"), &img]);
        let quota = ["-q", "-O", "quota", "-E", "quotatype=usrquota", &img];
        run("mkfs.ext4", &quota);
        let mounted = Command::new("mount")
            .args(["-o", "loop,usrquota", &img, &mnt])
            .output()
            .expect("run mount");
        if !mounted.status.success() {
            return None;
        }
        run("chmod", &["0711", &mnt]);
        let device = format!("device={mnt}");
        let create = [
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=none",
        ];
        let opts = ["--opt", "o=bind", "--opt", &device, volume];
        TestPool::docker(&create.into_iter().chain(opts).collect::<Vec<_>>());
        Some(fs)
    }
}

impl Drop for QuotaFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `USER_DISK_QUOTA_MB=4`, user A `dd`s 20 MB into the home: the filesystem stops A with
/// `Disk quota exceeded` near 4 MiB, and B, sharing the volume, still writes 3 MB.
///
/// Ignored (reported as such, never as passed): the kernel of this project's machines is built
/// without quota support (docs/isolation.md); run it with `--ignored` on a host that has it.
#[tokio::test]
#[ignore = "needs a kernel with CONFIG_QUOTA and CONFIG_QFMT_V2; this project's machines lack them"]
async fn a_user_filling_the_workspace_is_stopped_by_the_quota_and_others_write_on() {
    let pool = TestPool::new("quota");
    let Some(_fs) = QuotaFs::new(&pool.volume, 64) else {
        panic!("this kernel cannot mount ext4 with user quotas (CONFIG_QUOTA, CONFIG_QFMT_V2)");
    };
    let server = pool.server(1, 2, &["--user-disk-quota-mb", "4"]);
    let mut a = server.connect("").await;
    a.ready().await;
    a.sync().await;
    let out = sh(
        &mut a,
        "dd if=/dev/zero of=~/big bs=1M count=20 2>&1 | grep -o 'Disk quota exceeded' | head -1; \
         echo SIZE=$(stat -c %s ~/big)",
    )
    .await;
    assert!(out.contains("Disk quota exceeded"), "{out}");
    let size: u64 = out
        .rsplit("SIZE=")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(size <= 4 << 20, "A wrote {size} bytes past a 4 MiB quota");
    let mut b = server.connect("").await;
    b.ready().await;
    b.sync().await;
    let out = sh(
        &mut b,
        "dd if=/dev/zero of=~/ok bs=1M count=3 2>/dev/null; echo SIZE=$(stat -c %s ~/ok)",
    )
    .await;
    assert!(out.contains("SIZE=3145728"), "B could not write: {out}");
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
    let own = sh(
        &mut a,
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

/// `USER_DISK_QUOTA_MB` on a workspace without user quotas (Docker's ordinary volume): the quota
/// cannot be set, so the account is not made and the user gets an error, never an unlimited home.
#[tokio::test]
async fn a_quota_that_cannot_be_set_refuses_the_account_instead_of_leaving_it_unlimited() {
    let pool = TestPool::new("noquota");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let server = pool.server_logged(1, 2, &["--user-disk-quota-mb", "4"], &log);
    let cookie = server.new_identity().await;
    match server.try_connect(&cookie, "", None).await {
        // Placement fails before the upgrade (503) or right after it (an error frame).
        Err((status, body)) => assert_eq!(status, 503, "{body}"),
        Ok(mut c) => {
            let error = c.next_error().await;
            assert!(
                !error.message.is_empty(),
                "a shell without its quota: {error:?}"
            );
        }
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("quota helper for uid") && text.contains("cannot set the quota"),
        "the operator is told: {text}"
    );
}

/// A `UID_BASE` whose range holds the server's own uid is refused at start, naming the setting.
#[test]
fn a_uid_range_holding_the_servers_own_uid_is_refused() {
    // The server as uid 350000, accounts from 300000: its own uid would be given to a user.
    let out = Command::new("setpriv")
        .args(["--reuid=350000", "--regid=350000", "--clear-groups", "--"])
        .arg(copy_of_binary())
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

/// The server's binary where any uid may run it (the target directory may not be).
fn copy_of_binary() -> std::path::PathBuf {
    let to = std::env::temp_dir().join(format!("termpool-uidcheck-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_termpool"), &to).expect("copy the server's binary");
    to
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
