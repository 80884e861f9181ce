//! The container pool against the real Docker engine and user image, with network `none`. Each
//! test has its own prefix, label, volume and store, removed even on failure; tests run one at a
//! time (a process-wide lock). Docker being unreachable is a loud failure, never a skip.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use common::DockerProxy;
use futures_util::StreamExt;
use termpool::pool::{
    account_names, identity_hash, linux_username, Account, Pool, PoolConfig, PoolError, SqliteStore,
};

/// The user image: `CONTAINER_IMAGE` (an image built from this tree), or the default one.
fn user_image() -> String {
    std::env::var("CONTAINER_IMAGE").unwrap_or_else(|_| "terminal-multi-user:latest".into())
}

/// One test at a time: they all create containers on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A test's private pool resources, removed on drop (also on panic).
struct Fixture {
    prefix: String,
    volume: String,
    db: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        require_docker();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("tpt{}-{n}-{tag}", std::process::id());
        let db = std::env::temp_dir().join(format!("{prefix}.db"));
        Fixture {
            volume: format!("{prefix}-ws"),
            prefix,
            db,
            _serial: serial,
        }
    }

    fn config(&self, containers: usize, per_container: usize) -> PoolConfig {
        PoolConfig {
            max_containers: containers,
            users_per_container: per_container,
            image: user_image(),
            volume: self.volume.clone(),
            network_mode: "none".into(),
            name_prefix: self.prefix.clone(),
            pool_label: self.prefix.clone(),
            health_interval: Duration::from_secs(2),
            ..PoolConfig::default()
        }
    }

    async fn start(&self, containers: usize, per_container: usize) -> Arc<Pool> {
        let store = SqliteStore::open(&self.db).expect("open the store");
        let cfg = self.config(containers, per_container);
        let started = Instant::now();
        let pool = Pool::start(cfg, Box::new(store))
            .await
            .expect("start the pool");
        eprintln!(
            "[{}] Pool::start with {containers} containers: {:?}",
            self.prefix,
            started.elapsed()
        );
        pool
    }

    fn remove_docker_objects(&self) {
        for label in ["termpool.pool", "termpool.hidepid-helper"] {
            let filter = format!("label={label}={}", self.prefix);
            let ids = docker_cli(&["ps", "-aq", "--filter", &filter]);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker_cli(&args);
            }
        }
        docker_cli(&["volume", "rm", "-f", &self.volume]);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.remove_docker_objects();
        // A request in flight when the test ended may still create something: sweep again.
        std::thread::sleep(Duration::from_millis(300));
        self.remove_docker_objects();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the docker CLI (cleanup and fault injection); output is stdout, failures are ignored.
fn docker_cli(args: &[&str]) -> String {
    match Command::new("docker").args(args).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => {
            eprintln!("docker {args:?}: {e}");
            String::new()
        }
    }
}

/// Fails the test loudly unless the engine answers and the user image exists.
fn require_docker() {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match info {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "Docker is not reachable, so the container pool cannot be tested: {}\n\
             Start it with: bash scripts/install-docker.sh",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "the docker CLI cannot be run ({e}): install Docker with bash scripts/install-docker.sh"
        ),
    }
    let image = Command::new("docker")
        .args(["image", "inspect", &user_image()])
        .output();
    assert!(
        image.map(|o| o.status.success()).unwrap_or(false),
        "image {} is missing: build it with bash scripts/build-user-image.sh",
        user_image()
    );
}

async fn client() -> Docker {
    let docker = Docker::connect_with_defaults().expect("docker client");
    docker.negotiate_version().await.expect("docker version")
}

/// Runs `cmd` in a container as `user`; returns (exit code, stdout + stderr).
async fn exec_as(docker: &Docker, container: &str, user: &str, cmd: &[&str]) -> (i64, String) {
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some(user),
        privileged: Some(false),
        cmd: Some(cmd.to_vec()),
        ..Default::default()
    };
    let exec = docker
        .create_exec(container, opts)
        .await
        .expect("create exec");
    let started = docker.start_exec(&exec.id, None).await.expect("start exec");
    let StartExecResults::Attached { mut output, .. } = started else {
        panic!("exec detached")
    };
    let mut text = String::new();
    while let Some(chunk) = output.next().await {
        match chunk.expect("exec output") {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } => {
                text.push_str(&String::from_utf8_lossy(&message))
            }
            _ => {}
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspect exec")
        .exit_code
        .expect("exit code");
    (code, text)
}

/// Container ids of a pool, by name.
async fn pool_containers(docker: &Docker, prefix: &str) -> HashMap<String, String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("termpool.pool={prefix}")])]);
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    docker
        .list_containers(Some(opts))
        .await
        .expect("list containers")
        .into_iter()
        .map(|c| {
            let name = c.names.unwrap_or_default().concat();
            (
                name.trim_start_matches('/').to_string(),
                c.id.unwrap_or_default(),
            )
        })
        .collect()
}

fn nobody_live(_: &str) -> bool {
    false
}

fn everyone_live(_: &str) -> bool {
    true
}

#[tokio::test]
async fn spread_stickiness_and_homes() {
    let fx = Fixture::new("spread");
    let pool = fx.start(3, 4).await;
    let docker = client().await;

    // How long a new user takes is a benchmark's figure (`cargo bench --bench relay`: "a new
    // user's first session", placement included), not held here: load makes `docker exec` slow.
    let mut placed: Vec<(String, Account)> = Vec::new();
    for i in 0..12 {
        let identity = format!("spread-user-{i}");
        let p = pool.place(&identity, &nobody_live).await.expect("place");
        assert_eq!(p.username, linux_username(&identity));
        assert_eq!(p.home, format!("/workspace/{}", p.username));
        assert!(p.uid >= 200_000, "uid {} from the store's range", p.uid);
        placed.push((identity, p));
    }

    let mut per_container: HashMap<&str, usize> = HashMap::new();
    for (_, p) in &placed {
        *per_container.entry(p.container_name.as_str()).or_default() += 1;
    }
    let mut loads: Vec<usize> = per_container.values().copied().collect();
    loads.sort();
    assert_eq!(
        loads,
        vec![4, 4, 4],
        "12 users over 3 containers of 4: {per_container:?}"
    );
    let uids: HashSet<u32> = placed.iter().map(|(_, p)| p.uid).collect();
    assert_eq!(uids.len(), 12, "UIDs are unique");
    let stats = pool.stats();
    assert_eq!((stats.containers_ready, stats.users_assigned), (3, 12));

    // Sticky: the same container and account every time.
    for _ in 0..5 {
        for (identity, p) in &placed {
            let again = pool
                .place(identity, &nobody_live)
                .await
                .expect("warm place");
            assert_eq!(&again, p, "sticky");
        }
    }

    // Accounts: the stored UID, home mode 700 owned by the user, bash.
    for (_, p) in placed.iter().take(3) {
        let (code, out) = exec_as(
            &docker,
            &p.container_id,
            "root",
            &[
                "sh",
                "-c",
                &format!(
                    "id -u {0}; stat -c '%a %u %g' {1}; getent passwd {0} | cut -d: -f7",
                    p.username, p.home
                ),
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}");
        let want = format!("{0}\n700 {0} {0}\n/bin/bash\n", p.uid);
        assert_eq!(out, want, "account of {}", p.username);
        let (code, out) = exec_as(&docker, &p.container_id, &p.username, &["container-info"]).await;
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&p.container_name) && out.contains(&p.username),
            "{out}"
        );
    }

    // Every slot held by a live user: refused.
    let full = pool.place("spread-newcomer", &everyone_live).await;
    assert!(matches!(full, Err(PoolError::PoolFull)), "{full:?}");
    let message = full.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("pool full"), "{message}");
}

#[tokio::test]
async fn full_pool_evicts_least_recent_idle_user_then_refuses() {
    let fx = Fixture::new("evict");
    let pool = fx.start(2, 1).await;
    let docker = client().await;

    let a = pool.place("evict-a", &nobody_live).await.expect("a");
    tokio::time::sleep(Duration::from_millis(1100)).await; // last_seen has 1 s resolution
    let b = pool.place("evict-b", &nobody_live).await.expect("b");
    assert_ne!(a.container_name, b.container_name);

    // a is the least recently seen and idle: its slot goes to c.
    let live_b = |u: &str| u == b.username;
    let c = pool.place("evict-c", &live_b).await.expect("c");
    assert_eq!(c.container_name, a.container_name, "c takes a's slot");
    assert_eq!(pool.stats().users_assigned, 2);
    // a keeps its account and home.
    let (code, out) = exec_as(&docker, &a.container_id, "root", &["id", "-u", &a.username]).await;
    assert_eq!((code, out.trim()), (0, a.uid.to_string().as_str()));

    // Every slot live: refused.
    let d = pool.place("evict-d", &everyone_live).await;
    assert!(matches!(d, Err(PoolError::PoolFull)), "{d:?}");

    // a comes back while c is idle and b live: a gets c's slot, with its old UID.
    let a2 = pool.place("evict-a", &live_b).await.expect("a again");
    assert_eq!(a2.container_name, c.container_name);
    assert_eq!(a2.uid, a.uid, "UID never changes");
}

#[tokio::test]
async fn restart_adopts_containers_and_keeps_assignments() {
    let fx = Fixture::new("restart");
    let docker = client().await;
    let first: Vec<Account>;
    let before;
    {
        let pool = fx.start(2, 2).await;
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                pool.place(&format!("restart-{i}"), &nobody_live)
                    .await
                    .expect("place"),
            );
        }
        first = v;
        before = pool_containers(&docker, &fx.prefix).await;
        pool.flush().await.expect("flush");
    }
    assert_eq!(before.len(), 2);

    let pool = fx.start(2, 2).await;
    let after = pool_containers(&docker, &fx.prefix).await;
    assert_eq!(after, before, "the same containers are adopted, none added");
    assert_eq!(pool.stats().users_known, 3);
    for (i, p) in first.iter().enumerate() {
        let again = pool
            .place(&format!("restart-{i}"), &nobody_live)
            .await
            .expect("place");
        assert_eq!(&again, p, "same container, account and UID after a restart");
    }
    let newcomer = pool.place("restart-new", &nobody_live).await.expect("new");
    let taken: HashSet<u32> = first.iter().map(|p| p.uid).collect();
    assert!(!taken.contains(&newcomer.uid), "UIDs are never reused");
}

#[tokio::test]
async fn replaced_container_keeps_uid_and_files() {
    let fx = Fixture::new("replace");
    let pool = fx.start(2, 4).await;
    let docker = client().await;

    let p = pool.place("replace-me", &nobody_live).await.expect("place");
    let note = format!("{}/note.txt", p.home);
    let (code, out) = exec_as(
        &docker,
        &p.container_id,
        &p.username,
        &["sh", "-c", &format!("echo kept > {note}")],
    )
    .await;
    assert_eq!(code, 0, "{out}");

    docker_cli(&["rm", "-f", &p.container_name]);
    // The pool notices (Docker events) and replaces the container; place() then re-provisions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        match pool.place("replace-me", &nobody_live).await {
            Ok(q) if q.container_id != p.container_id => break q,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("container was not replaced in time: {other:?}"),
        }
    };
    assert_eq!(again.container_name, p.container_name, "sticky to its slot");
    assert_eq!((again.uid, &again.username), (p.uid, &p.username));
    let (code, out) = exec_as(
        &docker,
        &again.container_id,
        &again.username,
        &[
            "sh",
            "-c",
            &format!("cat {note}; stat -c '%u %a' {note} {}", again.home),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("kept\n{0} 644\n{0} 700\n", p.uid));
    let mounts = exec_as(
        &docker,
        &again.container_id,
        "root",
        &["cat", "/proc/mounts"],
    )
    .await;
    assert!(
        mounts.1.contains("hidepid="),
        "replacement got hidepid: {}",
        mounts.1
    );
    assert_eq!(pool.stats().containers_ready, 2);
}

#[tokio::test]
async fn hidepid_hides_other_users_processes() {
    let fx = Fixture::new("hidepid");
    let pool = fx.start(1, 4).await;
    let docker = client().await;

    let a = pool.place("hidepid-a", &nobody_live).await.expect("a");
    let b = pool.place("hidepid-b", &nobody_live).await.expect("b");
    assert_eq!(a.container_id, b.container_id);

    let (_, mounts) = exec_as(&docker, &a.container_id, "root", &["cat", "/proc/mounts"]).await;
    let proc_line = mounts
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some("/proc"))
        .unwrap_or_default();
    assert!(
        proc_line.contains("hidepid=invisible") || proc_line.contains("hidepid=2"),
        "/proc mount: {proc_line}"
    );

    // a runs a long sleep; b cannot see it, a can.
    let spawn = CreateExecOptions {
        user: Some(a.username.as_str()),
        cmd: Some(vec!["sleep", "3571"]),
        ..Default::default()
    };
    let exec = docker
        .create_exec(&a.container_id, spawn)
        .await
        .expect("create");
    docker
        .start_exec(
            &exec.id,
            Some(bollard::exec::StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, seen_by_a) = exec_as(
        &docker,
        &a.container_id,
        &a.username,
        &["ps", "-eo", "args"],
    )
    .await;
    let (_, seen_by_b) = exec_as(
        &docker,
        &b.container_id,
        &b.username,
        &["ps", "-eo", "args"],
    )
    .await;
    assert!(
        seen_by_a.contains("sleep 3571"),
        "a sees its own process: {seen_by_a}"
    );
    assert!(
        !seen_by_b.contains("sleep 3571"),
        "b must not see a's process: {seen_by_b}"
    );

    // The user container has no SYS_ADMIN: no user namespaces for users.
    let (code, out) = exec_as(
        &docker,
        &b.container_id,
        &b.username,
        &["unshare", "-Ur", "id"],
    )
    .await;
    assert_ne!(code, 0, "unshare must be denied: {out}");
}

#[tokio::test]
async fn unreachable_docker_is_an_error_not_a_panic() {
    let fx = Fixture::new("nodocker");
    let store = SqliteStore::open(&fx.db).expect("store");
    let old = std::env::var_os("DOCKER_HOST");
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/termpool-test.sock");
    let result = Pool::start(fx.config(1, 1), Box::new(store)).await;
    match old {
        Some(v) => std::env::set_var("DOCKER_HOST", v),
        None => std::env::remove_var("DOCKER_HOST"),
    }
    match result {
        Err(PoolError::DockerUnavailable(msg)) => eprintln!("as expected: {msg}"),
        Err(other) => panic!("expected DockerUnavailable, got {other}"),
        Ok(_) => panic!("a pool started without Docker"),
    }
}

#[tokio::test]
async fn concurrent_newcomers_never_overfill() {
    let fx = Fixture::new("concurrent");
    let pool = fx.start(2, 3).await;
    let ids: Vec<String> = (0..8).map(|i| format!("concurrent-{i}")).collect();
    // Two tabs of the same brand-new user at once, plus seven others, all with live sessions.
    let mut calls: Vec<&str> = ids.iter().map(String::as_str).collect();
    calls.push("concurrent-0");
    let results =
        futures_util::future::join_all(calls.iter().map(|id| pool.place(id, &everyone_live))).await;
    let (twin_a, twin_b) = (&results[0], &results[8]);
    match (twin_a, twin_b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "two tabs, one placement"),
        (Err(PoolError::PoolFull), Err(PoolError::PoolFull)) => {}
        other => panic!("two tabs of one user disagree: {other:?}"),
    }
    let placed: HashSet<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|p| p.username.as_str())
        .collect();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(PoolError::PoolFull)))
        .count();
    assert_eq!(
        placed.len(),
        6,
        "exactly the 6 slots are taken: {results:?}"
    );
    assert_eq!(
        placed.len() + full,
        9 - usize::from(twin_a.is_ok()),
        "{results:?}"
    );
    assert_eq!(pool.stats().users_assigned, 6);
}

#[tokio::test]
async fn docker_outage_gives_errors_then_recovers() {
    let fx = Fixture::new("outage");
    let proxy = DockerProxy::new(std::env::temp_dir().join(format!("{}.sock", fx.prefix)));
    proxy.up();
    let old = std::env::var_os("DOCKER_HOST");
    std::env::set_var("DOCKER_HOST", format!("unix://{}", proxy.path.display()));
    let store = SqliteStore::open(&fx.db).expect("store");
    let started = Pool::start(fx.config(1, 4), Box::new(store)).await;
    match old {
        Some(v) => std::env::set_var("DOCKER_HOST", v),
        None => std::env::remove_var("DOCKER_HOST"),
    }
    let pool = started.expect("start through the proxy");
    let a = pool.place("outage-a", &nobody_live).await.expect("a");

    proxy.down();
    // The event stream breaks: the pool stops trusting what it knew.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().containers_ready > 0 {
        assert!(
            Instant::now() < deadline,
            "the pool did not notice the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in ["outage-a", "outage-b"] {
        let r = pool.place(id, &nobody_live).await;
        assert!(
            matches!(r, Err(PoolError::DockerUnavailable(_))),
            "{id}: {r:?}"
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("container engine unavailable"), "{msg}");
    }

    proxy.up();
    let a2 = pool
        .place("outage-a", &nobody_live)
        .await
        .expect("a after the outage");
    assert_eq!(a2, a, "same container and account after the outage");
    let b = pool
        .place("outage-b", &nobody_live)
        .await
        .expect("b after the outage");
    assert_eq!(b.container_id, a.container_id);
}

/// Where the mute agent's image keeps the real agent, for the one-shot modes.
const MUTE_REAL: &str = "/usr/local/sbin/termpool-agent.real";

#[tokio::test]
async fn an_image_without_a_working_agent_is_a_clear_error() {
    let fx = Fixture::new("noagent");
    // The user image with an "agent" that never listens: the container runs, but no session
    // could ever start in it. Its one-shot modes (the mounts helper) still work.
    let image = "termpool-test-mute-agent:latest";
    let built = Command::new("docker")
        .args(["build", "-q", "-t", image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let dockerfile = format!(
                "FROM {}\nRUN cd /usr/local/sbin && mv termpool-agent termpool-agent.real && \
                 printf '#!/bin/sh\\n[ $# -eq 0 ] || exec {MUTE_REAL} \"$@\"\\nexec sleep infinity\\n' \
                 > termpool-agent && chmod 755 termpool-agent\n",
                user_image()
            );
            child.stdin.take().unwrap().write_all(dockerfile.as_bytes())?;
            child.wait()
        })
        .expect("run docker build");
    assert!(built.success(), "building {image} failed");
    let agents = std::env::temp_dir().join(format!("{}-agents", fx.prefix));
    let store = SqliteStore::open(&fx.db).expect("store");
    let cfg = PoolConfig {
        image: image.into(),
        agent_dir: Some(agents.clone()),
        agent_start_timeout: Duration::from_secs(3),
        ..fx.config(1, 1)
    };
    let started = Pool::start(cfg, Box::new(store)).await;
    let _ = std::fs::remove_dir_all(&agents);
    drop(fx); // removes the pool's containers, so that the image can go
    docker_cli(&["rmi", "-f", image]);
    match started {
        Err(PoolError::Provision(msg)) => {
            assert!(msg.contains("no session agent"), "{msg}");
            assert!(msg.contains("build-user-image.sh"), "{msg}");
            assert!(msg.contains("SESSION_AGENT=false"), "{msg}");
        }
        Err(other) => panic!("expected a provisioning error, got {other}"),
        Ok(_) => panic!("a pool started whose agents never listen"),
    }
}

#[tokio::test]
async fn missing_image_is_a_clear_error() {
    let fx = Fixture::new("noimage");
    let store = SqliteStore::open(&fx.db).expect("store");
    let cfg = PoolConfig {
        image: "termpool-no-such-image:never".into(),
        ..fx.config(1, 1)
    };
    match Pool::start(cfg, Box::new(store)).await {
        Err(PoolError::Provision(msg)) => {
            assert!(msg.contains("build-user-image.sh"), "{msg}");
        }
        Err(other) => panic!("expected a provisioning error, got {other}"),
        Ok(_) => panic!("a pool started without its image"),
    }
}

/// Three brand-new users open a terminal at the same moment on a pool of one slot, through the
/// real server: one gets a shell, the others 503, and the one who got it keeps its slot (a second
/// tab works). Before, all three got a shell: each newcomer evicted the one still being placed.
#[tokio::test]
async fn simultaneous_newcomers_get_one_shell_and_503s() {
    // Only for its place in the one-at-a-time order: the server makes a pool of its own.
    let _fx = Fixture::new("race-web");
    let pool = common::TestPool::new("race");
    let server = pool.server(1, 1, &["--reattach-grace-secs", "0"]);
    let mut cookies = Vec::new();
    for _ in 0..3 {
        cookies.push(server.new_identity().await);
    }
    let attempts = cookies.iter().map(|c| server.try_connect(c, "", None));
    let results = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for (cookie, result) in cookies.iter().zip(results) {
        match result {
            Ok(client) => winners.push((cookie, client)),
            Err((status, body)) => {
                assert_eq!(status, 503, "{body}");
                assert!(body.contains("pool full"), "{body}");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of three gets the one slot");
    let (cookie, mut first) = winners.pop().expect("a winner");
    let ready = first.ready().await;
    let user = ready.user.to_string();
    // The winner was not evicted: its second tab is placed in its slot, as the same account.
    let mut second = server.connect_as(cookie, "").await;
    assert_eq!(second.ready().await.user, ready.user);
    for tab in [&mut first, &mut second] {
        tab.run("echo W=$(whoami)=E").await;
        tab.expect_output(&format!("W={user}=E")).await;
    }
    // And the others are still refused while it is live.
    for other in cookies.iter().filter(|c| *c != cookie) {
        let (status, body) = server.refusal(other, "", None).await;
        assert_eq!(status, 503, "{body}");
    }
}

/// The same race against the pool alone: the caller binds each session (marks it live) as soon
/// as `place` returns, as the web layer does.
#[tokio::test]
async fn simultaneous_placements_never_evict_each_other() {
    let fx = Fixture::new("race");
    let pool = fx.start(1, 1).await;
    let bound: Mutex<HashSet<String>> = Mutex::default();
    let live = |u: &str| bound.lock().unwrap_or_else(|e| e.into_inner()).contains(u);
    let place_and_bind = |id: String| {
        let (pool, bound, live) = (&pool, &bound, &live);
        async move {
            let placed = pool.place(&id, live).await;
            if let Ok(p) = &placed {
                bound
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.username.clone());
            }
            placed
        }
    };
    let ids = (0..3).map(|i| format!("race-{i}"));
    let results = futures_util::future::join_all(ids.map(place_and_bind)).await;
    let placed: Vec<&Account> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(PoolError::PoolFull)))
        .count();
    assert_eq!((placed.len(), full), (1, 2), "{results:?}");
    assert_eq!(pool.stats().users_assigned, 1);
    // The one placed still holds the slot: placed again, sticky, at once.
    let winner = placed[0];
    let identity = format!(
        "race-{}",
        results.iter().position(|r| r.is_ok()).unwrap_or(0)
    );
    assert_eq!(&pool.place(&identity, &live).await.expect("again"), winner);
}

/// Two identities whose usual account names collide (the first 12 hex digits of their SHA-256
/// agree: found by brute force, ~2^24 tries) get two accounts: the second never gets the first
/// one's account, files or processes, and keeps its own across a restart.
#[tokio::test]
async fn a_taken_account_name_is_never_shared() {
    let fx = Fixture::new("collide");
    let docker = client().await;
    let (earlier, later) = ("header:mallory-9994325", "header:mallory-30520447");
    assert_eq!(
        linux_username(earlier),
        linux_username(later),
        "a real collision"
    );
    let later_names: Vec<String> = account_names(&identity_hash(later)).collect();
    let mut first = None;
    for round in 0..2 {
        let pool = fx.start(1, 4).await;
        // After the restart the later identity comes first: the store's record decides, not the
        // order of arrival.
        let l0 = match round {
            1 => Some(pool.place(later, &nobody_live).await.expect("later")),
            _ => None,
        };
        let e = pool.place(earlier, &nobody_live).await.expect("earlier");
        let l = match l0 {
            Some(l) => l,
            None => pool.place(later, &nobody_live).await.expect("later"),
        };
        assert_eq!(
            e.username, later_names[0],
            "the earlier identity keeps its name"
        );
        assert_eq!(l.username, later_names[1], "the next longer name");
        assert_ne!((l.uid, &l.home), (e.uid, &e.home));
        if round == 0 {
            let secret = format!("{}/secret", e.home);
            let write = format!("echo s3cret > {secret}");
            let (code, out) =
                exec_as(&docker, &e.container_id, &e.username, &["sh", "-c", &write]).await;
            assert_eq!(code, 0, "{out}");
            let (code, out) =
                exec_as(&docker, &l.container_id, &l.username, &["cat", &secret]).await;
            assert_ne!(
                code, 0,
                "the later identity reads the earlier one's file: {out}"
            );
            pool.flush().await.expect("flush");
            first = Some(l);
        } else {
            // After a restart the store's mapping gives the same accounts again.
            assert_eq!(Some(l), first.take());
        }
    }
}

/// When a newcomer takes an idle user's slot, every process that user left in the container ends
/// first: with one user per container, the newcomer must not reach them (here a web server on
/// 127.0.0.1:8000).
#[tokio::test]
async fn an_evicted_users_processes_end_before_the_newcomer_gets_the_slot() {
    let fx = Fixture::new("reap");
    let pool = fx.start(1, 1).await;
    let docker = client().await;
    let a = pool.place("reap-a", &nobody_live).await.expect("a");
    let leftovers = "setsid python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & \
                     setsid sleep 4321 >/dev/null 2>&1 &";
    let (code, out) = exec_as(
        &docker,
        &a.container_id,
        &a.username,
        &["sh", "-c", leftovers],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let fetch = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "2",
        "http://127.0.0.1:8000/",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while exec_as(&docker, &a.container_id, &a.username, &fetch)
        .await
        .0
        != 0
    {
        assert!(Instant::now() < deadline, "a's server never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let processes_of = |uid: u32| {
        docker_cli(&["top", &a.container_id, "-eo", "uid,pid,args"])
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(uid.to_string().as_str()))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(processes_of(a.uid).len(), 2, "{:?}", processes_of(a.uid));

    let b = pool
        .place("reap-b", &nobody_live)
        .await
        .expect("b takes a's slot");
    assert_eq!(b.container_id, a.container_id, "the same container");
    assert!(
        processes_of(a.uid).is_empty(),
        "a's processes live on: {:?}",
        processes_of(a.uid)
    );
    let (code, _) = exec_as(&docker, &b.container_id, &b.username, &fetch).await;
    assert_ne!(code, 0, "the newcomer reached the evicted user's server");
    // a's account and files stay; only its processes and its slot are gone.
    let (code, out) = exec_as(&docker, &a.container_id, "root", &["id", "-u", &a.username]).await;
    assert_eq!((code, out.trim()), (0, a.uid.to_string().as_str()));
}
