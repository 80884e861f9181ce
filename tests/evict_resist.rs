//! No placement waits on another user's reaping (issue #15): the real server and Docker engine;
//! an evicted user's processes resist and the reaps of their slot hang, while newcomers are
//! placed; the hung reap is retried until the evicted user's processes are gone.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, log_lines_with, pids_with_cmdline, Client, TestPool, WAIT};

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

fn container_of(ready: &termpool::protocol::Ready) -> String {
    ready.container.as_deref().unwrap_or_default().to_owned()
}

/// Runs `cmd` in the shell; what it printed between two markers the typed line does not show.
async fn sh(c: &mut Client, cmd: &str) -> String {
    c.run(&format!("echo B\"\"EGIN; {cmd}; echo E\"\"ND")).await;
    c.expect_output("BEGIN").await;
    let out = c.expect_output("END").await;
    out.trim_end_matches("END")
        .replace('\r', "")
        .trim()
        .to_owned()
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

/// Two containers of one user each. V leaves a loop that ignores SIGHUP/SIGTERM and respawns
/// its child, and a zombie no reap can end; U leaves nothing. Both close their tabs, and every
/// reap of their processes hangs (stopped). Newcomer A takes V's slot and newcomer B takes U's:
/// both get a working shell within a bounded time though V's reap never finished, and A sees
/// nothing of V's meanwhile. Once the hung reap is killed (a failed reap), it is retried and
/// every process of V ends.
#[tokio::test]
async fn newcomers_are_placed_while_the_evicted_users_reaps_hang() {
    let pool = TestPool::new("reapevict");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let args = ["--reattach-grace-secs", "0", "--idle-reap-secs", "3600"];
    let server = pool.server_logged(2, 1, &args, &log);

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
    // `docker top` lists a container's cgroup, which zombies have left: ask the host's ps.
    let zombie = || {
        pids_with_cmdline(&holder).iter().any(|pid| {
            let out = std::process::Command::new("ps")
                .args(["-o", "stat=", "--ppid", &pid.to_string()])
                .output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains('Z'))
        })
    };
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
    assert_ne!(u_container, v_container);
    u.close().await;

    let mut freezer = Freezer::start(&[v_uid, u_uid]);
    let bound = Duration::from_secs(30);
    let placed = async {
        let mut a = server.connect("").await;
        let a_container = container_of(&a.ready().await);
        let mut b = server.connect("").await;
        let b_container = container_of(&b.ready().await);
        assert_eq!(sh(&mut a, "echo A-works").await, "A-works");
        assert_eq!(sh(&mut b, "echo B-works").await, "B-works");
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
    assert_eq!(sh(&mut a, &seen).await, "0", "A sees V's processes");

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
