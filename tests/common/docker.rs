//! Container tests' fixtures: a pool of their own per test, `docker` commands, and a proxy to the
//! engine that can be cut to play an outage.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::server::Server;

/// A container pool of its own for one test: unique container names, volume and data dir, all
/// removed when dropped (even when the test fails).
pub struct TestPool {
    /// UIDs of this pool start here: per-user process limits count per UID on the whole host,
    /// so pools of tests running at the same time must not share UIDs.
    pub uid_base: u32,
    pub prefix: String,
    pub volume: String,
    pub data_dir: std::path::PathBuf,
}

impl TestPool {
    /// Panics (the test fails) when no Docker engine answers: container tests never pass without one.
    pub fn new(tag: &str) -> TestPool {
        require_docker();
        let id = &uuid_simple()[..8];
        let prefix = format!("tpt-{tag}-{id}");
        let data_dir = std::env::temp_dir().join(format!("{prefix}-data"));
        let uid_base = 300_000 + (u32::from_str_radix(id, 16).unwrap_or(0) % 100_000) * 1000;
        TestPool {
            uid_base,
            volume: format!("{prefix}-ws"),
            prefix,
            data_dir,
        }
    }

    /// Starts a container-mode server on this pool (network `none`).
    pub fn server(&self, containers: usize, users_each: usize, extra: &[&str]) -> Server {
        self.server_with(containers, users_each, extra, &[], Stdio::inherit())
    }

    fn server_with(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let (c, u) = (containers.to_string(), users_each.to_string());
        let data = self.data_dir.to_string_lossy().into_owned();
        let uid_base = self.uid_base.to_string();
        let mut args = vec![
            "--uid-base",
            &uid_base,
            "--use-containers",
            "true",
            "--max-containers",
            &c,
            "--users-per-container",
            &u,
            "--container-network",
            "none",
            "--container-prefix",
            &self.prefix,
            "--workspace-volume",
            &self.volume,
            "--data-dir",
            &data,
        ];
        args.extend_from_slice(extra);
        Server::start_with_stderr(&args, env, stderr)
    }

    /// Runs `docker ARGS` and returns stdout; panics on failure.
    pub fn docker(args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Processes of the account with `uid` in `container`, as the host sees them (`docker top`
    /// runs ps on the host, which knows the container's accounts only by number).
    pub fn processes_of(container: &str, uid: u32) -> Vec<String> {
        Self::docker(&["top", container, "-eo", "uid,pid,args"])
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().next() == Some(uid.to_string().as_str()))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name=^{}-", self.prefix)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
        // A pool on `bridge` makes a network of its own; the engine may still be detaching a
        // just-removed container from it.
        let network = format!("{}-net", self.prefix);
        for _ in 0..10 {
            let out = Command::new("docker")
                .args(["network", "rm", &network])
                .output();
            let gone = out.is_ok_and(|o| {
                o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found")
            });
            if gone {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests need a running Docker engine and the user image: run scripts/install-test-deps.sh"
    );
}

fn uuid_simple() -> String {
    let mut bytes = [0u8; 16];
    let f = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    bytes.iter_mut().zip(f.iter()).for_each(|(b, s)| *b = *s);
    String::from_utf8_lossy(&f).trim().replace('-', "")
}

impl TestPool {
    /// Like [`TestPool::server`], with the server's log (stderr) going to the file `log`, so a
    /// test can check what an operator is told.
    pub fn server_logged(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("create the server's log file");
        self.server_with(
            containers,
            users_each,
            extra,
            &[("RUST_LOG", "info")],
            file.into(),
        )
    }
}

impl TestPool {
    /// Like [`TestPool::server_logged`], with environment variables of its own (e.g. DOCKER_HOST).
    pub fn server_logged_env(
        &self,
        containers: usize,
        users_each: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("create the server's log file");
        let mut all = vec![("RUST_LOG", "info")];
        all.extend_from_slice(env);
        self.server_with(containers, users_each, extra, &all, file.into())
    }
}

/// A unix-socket proxy to the real engine that can be cut and restored, to play a Docker outage
/// without stopping the machine's daemon. Its tasks run on the test's runtime: a test whose server
/// is another process needs a multi-thread runtime, so that they run while the test blocks.
pub struct DockerProxy {
    pub path: std::path::PathBuf,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DockerProxy {
    pub fn new(path: std::path::PathBuf) -> DockerProxy {
        DockerProxy {
            path,
            tasks: std::sync::Arc::default(),
        }
    }

    /// `DOCKER_HOST` for a client of the proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn up(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind proxy socket");
        let tasks = std::sync::Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    let upstream = tokio::net::UnixStream::connect("/var/run/docker.sock").await;
                    if let Ok(mut upstream) = upstream {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tasks.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
    }

    pub fn down(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.down();
    }
}
