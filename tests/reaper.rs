//! The reaper cannot be beaten (issue #15), against the real server and Docker engine: no
//! placement waits on an evicted user's reaping, and the reaper stays root with CAP_KILL for its
//! whole run, whatever the account it reaps does; a failed reap is retried.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{container_of, eventually, log_lines_with, pids_with_cmdline, TestPool, WAIT};

/// The reaper's command line for account `uid` (agent/src/end.rs).
fn reaper_of(uid: u32) -> String {
    format!("--end-processes {uid}")
}

/// Stops (SIGSTOP) every run of the reaper for one of `uids` as soon as it appears, as the old
/// helper could be stopped by the account it reaped: a reap that hangs. Only this test's UIDs,
/// so no other test's reaper is touched. Ends by killing what it stopped (a failed reap).
struct Freezer {
    on: Arc<AtomicBool>,
    stopped: Arc<Mutex<Vec<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Freezer {
    fn start(uids: &[u32]) -> Freezer {
        let needles: Vec<String> = uids
            .iter()
            .map(|u| format!("--end-processes {u}"))
            .collect();
        let on = Arc::new(AtomicBool::new(true));
        let stopped = Arc::new(Mutex::new(Vec::new()));
        let (on2, stopped2) = (on.clone(), stopped.clone());
        let thread = std::thread::spawn(move || {
            while on2.load(Ordering::SeqCst) {
                for pid in needles.iter().flat_map(|n| pids_with_cmdline(n)) {
                    // SAFETY: kill has no memory effects.
                    unsafe { libc::kill(pid, libc::SIGSTOP) };
                    let mut stopped = stopped2.lock().unwrap();
                    if !stopped.contains(&pid) {
                        stopped.push(pid);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Freezer {
            on,
            stopped,
            thread: Some(thread),
        }
    }

    fn stopped(&self) -> usize {
        self.stopped.lock().unwrap().len()
    }

    /// Stops freezing and kills the reaper runs it stopped.
    fn release(&mut self) {
        self.on.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for pid in self.stopped.lock().unwrap().drain(..) {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.release();
    }
}

/// Leaves a zombie of account `uid` in `container` that no reap can end until the test kills its
/// parent (a root process that never waits): the reaper runs until its deadline meanwhile, long
/// enough for the [`Freezer`] to catch it. Returns the marker of the parent's command line.
fn hold_a_zombie(container: &str, uid: u32) -> String {
    let marker = format!("zombie-holder-{uid}");
    let script = format!(
        "import os, time\n\
         if os.fork() == 0:\n\
         \x20   os.setgid({uid}); os.setuid({uid}); os._exit(0)\n\
         time.sleep(100000)\n"
    );
    TestPool::docker(&[
        "exec", "-d", "-u", "0", container, "python3", "-c", &script, &marker,
    ]);
    marker
}

/// Whether the parent marked `holder` still holds a zombie. `docker top` lists a container's
/// cgroup, which zombies have left: the host's ps is asked.
fn zombie_held(holder: &str) -> bool {
    pids_with_cmdline(holder).iter().any(|pid| {
        let out = std::process::Command::new("ps")
            .args(["-o", "stat=", "--ppid", &pid.to_string()])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains('Z'))
    })
}

/// One container of two users: V leaves a loop that ignores SIGHUP/SIGTERM and respawns its
/// child, and a zombie no reap can end; U leaves nothing. Both close their tabs, and every reap
/// of their processes hangs (stopped). Newcomers A and B take V's and U's slots: both get a
/// working shell within a bounded time though V's reap never finished, and A sees nothing of
/// V's meanwhile. Once the hung reap is killed (a failed reap), it is retried and every process
/// of V ends. (In containers of one user, where no other UID is met, a newcomer does wait for
/// the previous holder's reap: `tests/pool_docker.rs`.)
#[tokio::test]
async fn newcomers_are_placed_while_the_evicted_users_reaps_hang() {
    let pool = TestPool::new("reapevict");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let args = ["--reattach-grace-secs", "0", "--idle-reap-secs", "3600"];
    let server = pool.server_logged(1, 2, &args, &log);

    let mut v = server.connect("").await;
    let v_container = container_of(&v.ready().await);
    let v_uid = v.uid().await;
    v.run(
        "setsid -f sh -c 'trap \"\" HUP TERM INT; while :; do sleep 4711 & wait; done' \
         </dev/null >/dev/null 2>&1; echo R\"\"ESISTS",
    )
    .await;
    v.expect_output("RESISTS").await;
    let v_processes = || TestPool::processes_of(&v_container, v_uid);
    let resisting = || v_processes().iter().any(|p| p.contains("sleep 4711"));
    assert!(eventually(WAIT, resisting).await, "V's loop runs");
    let holder = hold_a_zombie(&v_container, v_uid);
    let zombie = || zombie_held(&holder);
    assert!(
        eventually(WAIT, zombie).await,
        "V's zombie lingers: {:?}",
        v_processes()
    );
    v.close().await;
    // Last-seen times have a resolution of one second: V is the least recently seen.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut u = server.connect("").await;
    let u_container = container_of(&u.ready().await);
    let u_uid = u.uid().await;
    assert_eq!(u_container, v_container);
    u.close().await;

    let mut freezer = Freezer::start(&[v_uid, u_uid]);
    let bound = Duration::from_secs(30);
    let placed = async {
        let mut a = server.connect("").await;
        let a_container = container_of(&a.ready().await);
        let mut b = server.connect("").await;
        let b_container = container_of(&b.ready().await);
        assert_eq!(a.output_of("echo A-works").await, "A-works");
        assert_eq!(b.output_of("echo B-works").await, "B-works");
        (a, a_container, b, b_container)
    };
    let (mut a, a_container, _b, b_container) = tokio::time::timeout(bound, placed)
        .await
        .expect("newcomers placed while the evicted users' reaps hang");
    assert_eq!(a_container, v_container, "A took V's slot");
    assert_eq!(b_container, u_container, "B took U's slot");
    let hung = || freezer.stopped() >= 1;
    assert!(eventually(WAIT, hung).await, "V's reap runs, and hangs");
    assert!(zombie(), "V's reap did not finish");
    // A shares the container with what V left but, another UID under hidepid, sees none of it.
    let seen = format!("grep -l '^Uid:[[:space:]]*{v_uid}[[:space:]]' /proc/[0-9]*/status | wc -l");
    assert_eq!(a.output_of(&seen).await, "0", "A sees V's processes");

    freezer.release();
    for pid in pids_with_cmdline(&holder) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let ended = eventually(Duration::from_secs(60), || {
        v_processes().is_empty() && !zombie()
    })
    .await;
    assert!(
        ended,
        "V's processes end once the reap is retried: {:?}",
        v_processes()
    );
    let retried = log_lines_with(&log, "retried in");
    assert!(
        !retried.is_empty(),
        "the failed reap was logged and retried"
    );
}

/// What the host saw of one run of the reaper: its uids, effective capabilities and state.
#[derive(Debug, Clone)]
struct Sample {
    uids: String,
    cap_eff: u64,
    state: String,
}

/// Samples, every few milliseconds, `/proc/PID/status` of every run of the reaper for `uid`.
fn sample_reapers(uid: u32, on: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    let needle = reaper_of(uid);
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while on.load(Ordering::SeqCst) {
            for pid in pids_with_cmdline(&needle) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                let Ok(status) = status else { continue };
                let field = |name: &str| {
                    let line = status.lines().find(|l| l.starts_with(name));
                    line.map(|l| l[name.len()..].trim().to_owned())
                };
                let (Some(uids), Some(cap), Some(state)) =
                    (field("Uid:"), field("CapEff:"), field("State:"))
                else {
                    continue;
                };
                let cap_eff = u64::from_str_radix(&cap, 16).unwrap_or(0);
                samples.push(Sample {
                    uids,
                    cap_eff,
                    state,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        samples
    })
}

/// The account being reaped fights the reaper: a watcher sends SIGSTOP then SIGKILL to every
/// process it can reach (`kill(-1)`), all the time; and a zombie of the account that no reap can
/// end keeps every run of the reaper going until its deadline. The host samples the reaper
/// throughout: it never runs as the account (the old helper took the account's uids before its
/// `kill(-1)`, and its runs would show them here), keeps CAP_KILL, and is never stopped; the
/// watcher ends while the reaper still runs; the reap that failed on the zombie is logged and
/// retried, and once the zombie's parent is gone no process of the account is left.
#[tokio::test]
async fn the_reaper_stays_root_while_the_account_fights_it() {
    const CAP_KILL: u64 = 1 << 5;
    let pool = TestPool::new("reaproot");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let args = ["--reattach-grace-secs", "0", "--idle-reap-secs", "2"];
    let server = pool.server_logged(1, 2, &args, &log);
    let mut c = server.connect("").await;
    let container = container_of(&c.ready().await);
    let uid = c.uid().await;
    let watcher = "import os, signal, time\n\
        time.sleep(1.5)\n\
        while True:\n\
        \x20   os.kill(-1, signal.SIGSTOP)\n\
        \x20   os.kill(-1, signal.SIGKILL)\n";
    let encoded = base64_encode(watcher.as_bytes());
    c.run(&format!(
        "printf '%s' '{encoded}' | base64 -d > ~/w.py && setsid -f python3 ~/w.py </dev/null \
         >/dev/null 2>&1; echo W\"\"STARTED"
    ))
    .await;
    c.expect_output("WSTARTED").await;
    let processes = || TestPool::processes_of(&container, uid);
    let watching = || processes().iter().any(|p| p.contains("w.py"));
    assert!(eventually(WAIT, watching).await, "the watcher runs");
    let holder = hold_a_zombie(&container, uid);

    let on = Arc::new(AtomicBool::new(true));
    let sampler = sample_reapers(uid, on.clone());
    c.close().await;
    let watcher_ended = eventually(Duration::from_secs(30), || !watching()).await;
    assert!(watcher_ended, "the watcher was ended: {:?}", processes());
    let failed = || !log_lines_with(&log, "retried in").is_empty();
    assert!(
        eventually(Duration::from_secs(30), failed).await,
        "the reap that met the zombie failed, and is retried"
    );
    for pid in pids_with_cmdline(&holder) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let clean = || processes().is_empty() && pids_with_cmdline(&reaper_of(uid)).is_empty();
    let ended = eventually(Duration::from_secs(60), clean).await;
    on.store(false, Ordering::SeqCst);
    let samples = sampler.join().expect("the sampler");
    assert!(
        ended,
        "every process of the account ended: {:?}",
        processes()
    );
    assert!(
        samples.len() >= 3,
        "the reaper was seen running: {samples:?}"
    );
    for s in &samples {
        let uids: Vec<&str> = s.uids.split_whitespace().collect();
        assert_eq!(uids, ["0"; 4], "the reaper runs as root only: {s:?}");
        assert!(
            s.cap_eff & CAP_KILL != 0,
            "the reaper holds CAP_KILL: {s:?}"
        );
        assert!(!s.state.starts_with('T'), "the reaper was stopped: {s:?}");
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// In a container of one user the newcomer never meets the previous holder's processes: while
/// V's reap hangs (a zombie no reap can end, the reaper stopped), newcomer A is refused after a
/// bounded wait rather than started beside them; once the reap is retried and succeeds, A gets
/// the slot and nothing of V is left in it.
#[tokio::test]
async fn in_a_container_of_one_user_the_newcomer_waits_for_the_previous_holders_reap() {
    let pool = TestPool::new("reapone");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let args = ["--reattach-grace-secs", "0", "--idle-reap-secs", "3600"];
    let server = pool.server_logged(1, 1, &args, &log);
    let mut v = server.connect("").await;
    let container = container_of(&v.ready().await);
    let v_uid = v.uid().await;
    let holder = hold_a_zombie(&container, v_uid);
    assert!(
        eventually(WAIT, || zombie_held(&holder)).await,
        "V's zombie lingers"
    );
    v.close().await;
    // A must find V idle, not a session whose close the server is still carrying out.
    server.until_no_session_open().await;

    let mut freezer = Freezer::start(&[v_uid]);
    let cookie = server.new_identity().await;
    let asked = Instant::now();
    match server.try_connect(&cookie, "", None).await {
        Ok(mut a) => {
            let error = a.next_error().await;
            eprintln!("refused in a frame: {error:?}");
        }
        Err((status, body)) => assert_eq!(status, 503, "{body}"),
    }
    eprintln!("refused after {:?}", asked.elapsed());
    assert!(freezer.stopped() >= 1, "V's reap ran, and hung");
    assert!(zombie_held(&holder), "V's reap did not finish");

    freezer.release();
    for pid in pids_with_cmdline(&holder) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut a = server
        .connect_within(&cookie, Duration::from_secs(90))
        .await;
    assert_eq!(container_of(&a.ready().await), container);
    let left = TestPool::processes_of(&container, v_uid);
    assert!(left.is_empty(), "V's processes beside A: {left:?}");
    assert!(
        !log_lines_with(&log, "retried in").is_empty(),
        "the failed reap was retried"
    );
}
