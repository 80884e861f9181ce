//! Faults of the container engine itself: the Docker daemon stopped under live sessions and
//! started again. This stops the machine's daemon, so it lives in a test binary of its own and
//! runs its cases one after another (cargo runs test binaries one at a time).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Frame, TestPool, WAIT};

fn dockerd_pids() -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-x", "dockerd"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn stop_dockerd() {
    for pid in dockerd_pids() {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dockerd_pids().is_empty() {
        assert!(Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_dockerd() {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg(format!("{root}/scripts/install-docker.sh"))
        .status()
        .expect("run install-docker.sh");
    assert!(status.success(), "dockerd did not come back");
}

/// Restarts the daemon even when an assertion fails, so later tests find an engine.
struct DaemonGuard;

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if dockerd_pids().is_empty() {
            start_dockerd();
        }
    }
}

#[tokio::test]
async fn the_daemon_stopped_mid_session_then_restarted() {
    let pool = TestPool::new("daemon");
    let server = pool.server(1, 4, &["--reattach-grace-secs", "0"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    c.run("echo survived > fault.txt; echo W$((1))W").await;
    c.expect_output("W1W").await;

    let guard = DaemonGuard;
    stop_dockerd();
    // The live session learns that its backend is gone, and the socket closes.
    let mut told = false;
    loop {
        match c.next_frame(Duration::from_secs(60)).await {
            Some(Frame::Json(v)) if v["type"] == "error" => {
                assert_eq!(v["code"], "backend_unavailable", "{v}");
                told = true;
            }
            Some(Frame::Json(v)) if v["type"] == "exit" => {}
            Some(Frame::Closed(_)) | None => break,
            _ => {}
        }
    }
    assert!(told, "an error frame said the backend is unavailable");
    // While the daemon is down: refused before the upgrade with 503, and the server stays up.
    let refused = server.refusal(&cookie, "", None).await;
    assert_eq!(refused.0, 503, "{}", refused.1);
    let (status, _, _) = common::http_get(&server.addr, "/healthz", &[]).await;
    assert_eq!(status, 503);

    start_dockerd();
    drop(guard);
    // The server recovers by itself: same user, same container slot, same files.
    let mut c = server
        .connect_within(&cookie, Duration::from_secs(90))
        .await;
    let again = c.ready().await;
    assert_eq!(again["user"], ready["user"]);
    assert_eq!(again["container"], ready["container"]);
    c.run("cat fault.txt; ps -eo user= | sort -u | tr '\\n' ' '; echo; echo D$((1))D")
        .await;
    let out = c.expect_output("D1D").await;
    assert!(out.contains("survived"), "files kept: {out}");
    let users = out.lines().rev().nth(1).unwrap_or("").to_owned();
    assert!(
        !users.contains("root"),
        "hidepid is back after the restart (a user sees no root process): {users:?}"
    );
    let _ = WAIT;
}
