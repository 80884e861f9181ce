//! Faults of the container engine and of what the pool finds on the host (daemon stopped, socket
//! gone, agent directory deleted or replaced, homes of other UIDs). One case stops the machine's
//! daemon: a test binary of its own, whose cases take [`SERIAL`] to run one after another.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    connect_with_headers, log_lines_with, refusal_reference, DockerProxy, Frame, Server, TestPool,
    WAIT,
};
use termpool::pool::linux_username;
use termpool::protocol::{ErrorCode, ServerFrame};

/// One case at a time: the daemon test stops the engine the others use.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const IMAGE: &str = "terminal-multi-user:latest";

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
    let _serial = SERIAL.lock().await;
    let pool = TestPool::new("daemon");
    let server = pool.server(1, 4, &["--reattach-grace-secs", "0"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    c.run("echo survived > fault.txt; echo W$((1))W").await;
    c.expect_output("W1W").await;
    let id = container_id(ready.container.as_deref().expect("container"));

    let guard = DaemonGuard;
    stop_dockerd();
    // The live session learns that its backend is gone, and the socket closes.
    let mut told = false;
    loop {
        match c.next_frame(Duration::from_secs(60)).await {
            Some(Frame::Text(ServerFrame::Error(e))) => {
                assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
                told = true;
            }
            Some(Frame::Text(ServerFrame::Exit(_))) => {}
            Some(Frame::Closed(_)) | None => break,
            _ => {}
        }
    }
    assert!(told, "an error frame said the backend is unavailable");
    // While the daemon is down: refused before the upgrade with 503, and the server stays up.
    let refused = server.refusal(&cookie, "", None).await;
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_tells_no_internals(&refused.1, &pool, &id);
    let (status, _, health) = common::http_get(&server.addr, "/healthz", &[]).await;
    assert_eq!(status, 503);
    assert_tells_no_internals(&String::from_utf8_lossy(&health), &pool, &id);

    start_dockerd();
    drop(guard);
    // The server recovers by itself: same user, same container slot, same files.
    let mut c = server
        .connect_within(&cookie, Duration::from_secs(90))
        .await;
    let again = c.ready().await;
    assert_eq!(again.user, ready.user);
    assert_eq!(again.container, ready.container);
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

fn container_id(name: &str) -> String {
    TestPool::docker(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_owned()
}

/// A refusal tells a stranger its category and a reference, and nothing of the pool's containers
/// (names, ids), the engine (its name, its errors) or the host (paths).
fn assert_tells_no_internals(body: &str, pool: &TestPool, container_id: &str) {
    let lower = body.to_lowercase();
    let short_id = &container_id[..12];
    for secret in [
        pool.prefix.as_str(),
        short_id,
        "docker",
        "error",
        "no such",
        "inspect",
        "sock",
        "/",
    ] {
        assert!(
            !lower.contains(secret),
            "the refusal tells {secret:?}: {body}"
        );
    }
    assert!(refusal_reference(body).is_some(), "no reference in: {body}");
}

/// Asks for a session until one is refused; the refusal's status and body.
async fn refused_within(server: &Server, cookie: &str, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        match server.try_connect(cookie, "", None).await {
            Err(refused) => return refused,
            Ok(c) => c.close().await,
        }
        assert!(Instant::now() < deadline, "still admitted after {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The engine's socket disappears under a running server (here a proxy of it, cut): the refusal
/// tells the category and a reference, and the server's log line with that reference tells which
/// container and what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_tells_a_category_and_a_reference_never_the_internals() {
    let _serial = SERIAL.lock().await;
    let pool = TestPool::new("secret");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let proxy = DockerProxy::new(pool.data_dir.join("docker.sock"));
    proxy.up();
    let log = pool.data_dir.join("server.log");
    let host = proxy.docker_host();
    let server = pool.server_logged_env(1, 4, &[], &[("DOCKER_HOST", &host)], &log);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let container = c.ready().await.container.expect("container").into_owned();
    c.close().await;
    let id = container_id(&container);

    proxy.down();
    let (status, body) = refused_within(&server, &cookie, Duration::from_secs(15)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("the container engine is unavailable, try again later"),
        "{body}"
    );
    assert_tells_no_internals(&body, &pool, &id);
    let reference = refusal_reference(&body).unwrap_or_default();
    let lines = log_lines_with(&log, &reference);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&container) && l.contains("container engine unavailable: ")),
        "the log tells the details under {reference}: {lines:?}"
    );

    proxy.up();
    let mut c = server
        .connect_within(&cookie, Duration::from_secs(60))
        .await;
    assert_eq!(
        c.ready().await.container.as_deref(),
        Some(container.as_str())
    );
}

/// Runs `script` as root in a throwaway container with `volume` at /workspace; its stdout.
fn on_volume(volume: &str, script: &str) -> String {
    let mount = format!("{volume}:/workspace");
    TestPool::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0",
        "-v",
        &mount,
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        script,
    ])
}

/// Owner, mode and contents of everything in the homes `names` on the volume.
fn homes_state(volume: &str, names: &[&str]) -> String {
    let dirs: Vec<String> = names.iter().map(|n| format!("/workspace/{n}")).collect();
    let dirs = dirs.join(" ");
    on_volume(
        volume,
        &format!("find {dirs} -exec stat -c '%n %u:%g %a' {{}} + ; cat $(find {dirs} -type f)"),
    )
}

#[tokio::test]
async fn homes_of_other_uids_are_never_handed_out() {
    let _serial = SERIAL.lock().await;
    let pool = TestPool::new("homes");
    // As after `down -v` deleted the store but kept the volume: the store hands out its first
    // UIDs again, and the volume still has homes of the old ones. bob gets the first UID, which
    // owns an old user's home; alice gets the second, and her own home is her old UID's.
    let (bob, alice) = (linux_username("header:bob"), linux_username("header:alice"));
    let old_user = "u0123456789ab";
    let (first, alice_old_uid) = (pool.uid_base, pool.uid_base + 77);
    on_volume(
        &pool.volume,
        &format!(
            "set -e; for h in {old_user}:{first} {alice}:{alice_old_uid}; do \
               d=/workspace/${{h%:*}}; mkdir $d; echo secret of $h > $d/secret.txt; \
               chown -R ${{h#*:}}:${{h#*:}} $d; chmod 700 $d; chmod 600 $d/secret.txt; done"
        ),
    );
    let before = homes_state(&pool.volume, &[old_user, &alice]);
    // In the data directory, which the pool removes also when the test fails.
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let server = pool.server_logged(
        1,
        4,
        &[
            "--identity-mode",
            "header",
            "--trusted-proxies",
            "127.0.0.1",
        ],
        &log,
    );

    for user in ["bob", "alice"] {
        let refused = connect_with_headers(&server, &[("X-Forwarded-User", user)]).await;
        let (status, body) = refused
            .err()
            .unwrap_or_else(|| panic!("{user} was admitted"));
        assert_eq!(status, 503, "{user}: {body}");
        // The client learns nothing of the container, the UIDs or the commands.
        for secret in [
            &pool.prefix,
            "uid",
            "useradd",
            "/workspace",
            &first.to_string(),
        ] {
            assert!(
                !body.contains(secret),
                "{user}'s 503 tells {secret:?}: {body}"
            );
        }
    }
    assert_eq!(
        homes_state(&pool.volume, &[old_user, &alice]),
        before,
        "homes untouched"
    );
    let listing = on_volume(&pool.volume, "ls /workspace");
    assert!(!listing.contains(&bob), "no home made for bob: {listing}");

    // Someone whose UID owns nothing yet is admitted as before.
    let mut carol = connect_with_headers(&server, &[("X-Forwarded-User", "carol")])
        .await
        .unwrap_or_else(|(status, body)| panic!("carol refused: {status} {body}"));
    carol.ready().await;
    assert_eq!(carol.uid().await, first + 2);

    // The operator is told which account, which home, and what to do.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for (name, what) in [(&bob, old_user), (&alice, alice.as_str())] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("refusing account {name}")))
            .unwrap_or_else(|| panic!("no log line refuses {name}:\n{text}"));
        assert!(line.contains(what) && line.contains("DATA_DIR"), "{line}");
    }
}

#[tokio::test]
async fn an_adopted_container_whose_agent_directory_was_replaced_is_recreated() {
    let _serial = SERIAL.lock().await;
    let pool = TestPool::new("agentdir");
    let server = pool.server(1, 4, &[]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    c.run("echo kept > kept.txt; echo K$((1))K").await;
    c.expect_output("K1K").await;
    c.close().await;
    drop(server); // the container keeps running
    let container = ready.container.clone().expect("container").into_owned();
    let id = |name: &str| TestPool::docker(&["inspect", "-f", "{{.Id}}", name]);
    let before = id(&container);

    // The host's directory is deleted and made again: inside the container, /run/termpool is
    // still the deleted one, where the agent listens and the server cannot reach it.
    let dir = pool.data_dir.join("agents").join(&container);
    std::fs::remove_dir_all(&dir).expect("remove the agent directory");
    std::fs::create_dir(&dir).expect("make the agent directory again");

    let started = Instant::now();
    let server = pool.server(1, 4, &[]);
    let mut c = server
        .connect_within(&cookie, Duration::from_secs(60))
        .await;
    let again = c.ready().await;
    assert_eq!(again.user, ready.user);
    c.run("cat kept.txt; echo D$((1))D").await;
    let out = c.expect_output("D1D").await;
    assert!(out.contains("kept"), "files kept: {out}");
    assert_ne!(id(&container), before, "the container was replaced");
    eprintln!("a session again {:?} after the restart", started.elapsed());
}

/// The agent directory of a container is deleted while the server runs: the next session finds
/// no agent, the container is replaced, and the user has a shell again within seconds (not after
/// a timeout on every session until the server restarts).
#[tokio::test]
async fn an_agent_directory_deleted_at_runtime_gets_its_container_replaced() {
    let _serial = SERIAL.lock().await;
    let pool = TestPool::new("agentgone");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let server = pool.server_logged(1, 4, &[], &log);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    c.run("echo kept > kept.txt; echo K$((1))K").await;
    c.expect_output("K1K").await;
    let container = ready.container.clone().expect("container").into_owned();
    let before = container_id(&container);

    let dir = pool.data_dir.join("agents").join(&container);
    std::fs::remove_dir_all(&dir).expect("remove the agent directory");
    let started = Instant::now();
    let mut again = server
        .connect_within(&cookie, Duration::from_secs(15))
        .await;
    assert_eq!(again.ready().await.user, ready.user);
    eprintln!("a session again {:?} after the deletion", started.elapsed());
    again.run("cat kept.txt; echo D$((1))D").await;
    let out = again.expect_output("D1D").await;
    assert!(out.contains("kept"), "files kept: {out}");
    assert_ne!(
        container_id(&container),
        before,
        "the container was replaced"
    );
    let lines = log_lines_with(&log, "session agent");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&container) && l.contains("cannot be reached")),
        "the log tells which agent could not be reached: {lines:?}"
    );
}
