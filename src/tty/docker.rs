//! The container backend: each session is a login shell as the user's own account, in the
//! container the pool placed the user on. It is started by the container's session agent
//! (agent.rs) when the pool runs agents, or else is a `docker exec` with a TTY, as below.
//!
//! bollard creates, resizes and inspects the exec, but the attach itself is done here, on a raw
//! HTTP upgrade of the Engine API: bollard's attach decoder guesses the stream framing from the
//! first byte of each read, so output starting with bytes 0x00-0x02 would be taken for a
//! multiplexing header and mangled. A TTY exec's stream is raw bytes, so none of that is needed.
//!
//! Docker has no call to signal an exec, and closing the attach does not hang the shell up. So the
//! exec starts through a tiny `sh` wrapper that sets the TTY size (the Engine API of Debian's
//! docker.io 20.10 can't create an exec at a size), reports its own PID (in the container's PID
//! namespace) in an OSC sequence that is stripped here before any output is relayed, and `exec`s
//! the login shell. The session's processes get SIGHUP from a short exec *as the same user*: root in
//! the container holds no CAP_KILL, and the user can only ever signal their own processes.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;
use bollard::query_parameters::{InspectContainerOptions, ResizeExecOptionsBuilder};
use bollard::Docker;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Mutex};

use super::{agent, Backend, IsLive, Placement, Spawned, Tty, TtyError, TtyOutput, Unavailability};
use crate::pool::{Pool, PoolError};
use crate::protocol::TermSize;

/// Starts the login shell at the requested size and reports its PID first. `$1`/`$2` are the
/// size, passed as arguments so that nothing is ever interpolated into the script.
/// umask 077: what a user writes outside their home (e.g. /tmp, shared by the container) is
/// theirs alone unless they choose otherwise.
const SESSION_WRAPPER: &str = "umask 077; stty cols \"$1\" rows \"$2\" 2>/dev/null; \
     printf '\\033]5379;termpool-pid=%s\\007' \"$$\"; exec /bin/bash -l";
const PID_MARK_START: &[u8] = b"\x1b]5379;termpool-pid=";
const PID_MARK_END: u8 = 0x07;
/// How long a new exec may take to report its PID, or an agent to start a shell, before the
/// session is given up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a container's agent may not listen before the container is taken for unusable. The
/// pool admits users only once the agent listens, so a socket that is gone or refuses now stays
/// so (its directory was deleted on the host, or the agent died): waiting longer only makes the
/// user wait.
const AGENT_GRACE: Duration = Duration::from_secs(1);
/// How long a hang-up waits for others to share its exec.
const HANGUP_WINDOW: Duration = Duration::from_millis(500);
/// How long an ended session waits for Docker's report of its exit before asking for it.
const EXIT_EVENT_WAIT: Duration = Duration::from_secs(30);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const READ_CHUNK: usize = 64 * 1024;
/// Docker scans exec input for "detach keys" and ends the attach when it sees them; the default,
/// Ctrl-P Ctrl-Q, is an ordinary emacs/readline chord. Docker cannot switch this off, so the
/// sequence is made six bytes that no keyboard or text paste produces in a row.
const DETACH_KEYS: &str = "ctrl-^,ctrl-_,ctrl-@,ctrl-^,ctrl-_,ctrl-@";

/// Sessions in the container pool.
pub struct DockerBackend {
    pool: Arc<Pool>,
    endpoint: Endpoint,
    hangups: Arc<Hangups>,
}

impl DockerBackend {
    pub fn new(pool: Arc<Pool>) -> Result<Self, TtyError> {
        Ok(DockerBackend {
            pool,
            endpoint: Endpoint::from_env()?,
            hangups: Arc::default(),
        })
    }

    fn docker(&self) -> &Docker {
        self.pool.docker()
    }

    async fn create_exec(&self, p: &Placement, size: TermSize) -> Result<String, TtyError> {
        let container = p.container_id.as_deref().ok_or(TtyError::Closed)?;
        let cmd = [
            "/bin/sh",
            "-c",
            SESSION_WRAPPER,
            "termpool-session",
            &size.cols.to_string(),
            &size.rows.to_string(),
        ];
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            detach_keys: Some(DETACH_KEYS.into()),
            // Never privileged: a privileged exec gets every capability.
            privileged: Some(false),
            user: Some(p.user.clone()),
            working_dir: Some(p.home.clone()),
            env: Some(session_env(p)),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let created = self
            .docker()
            .create_exec(container, config)
            .await
            .map_err(|e| self.exec_failed(p, e))?;
        Ok(created.id)
    }

    /// A session started by the container's agent (see agent.rs).
    async fn spawn_by_agent(
        &self,
        p: &Placement,
        socket: &Path,
        size: TermSize,
    ) -> Result<Spawned, TtyError> {
        let conn = self.connect_agent(p, socket).await?;
        let env = session_env(p);
        let request = agent::ShellRequest {
            user: p.user.as_str().into(),
            home: p.home.as_str().into(),
            cols: size.cols,
            rows: size.rows,
            env: env.as_slice().into(),
        };
        agent::spawn(conn, &request, START_TIMEOUT).await
    }

    /// Connects to the agent of the placement's container. A container whose agent cannot be
    /// reached would take no session ever again: the pool is told to replace it.
    async fn connect_agent(&self, p: &Placement, socket: &Path) -> Result<agent::Conn, TtyError> {
        let name = p.container.as_deref().unwrap_or_default();
        let connecting = agent::connect(socket, AGENT_GRACE);
        let detail = match tokio::time::timeout(START_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => {
                if let Some(id) = &p.container_id {
                    self.pool.replace_container(name, id);
                }
                format!(
                    "the session agent of container {name} cannot be reached at {}: {e}; the \
                     container is replaced",
                    socket.display()
                )
            }
            // Busy, not gone: its other users' sessions are left alone.
            Err(_) => format!("the session agent of container {name} accepted no connection"),
        };
        Err(TtyError::unavailable(Unavailability::NotPrepared, detail))
    }

    /// A session that is a `docker exec` of its own.
    async fn spawn_exec(&self, placement: &Placement, size: TermSize) -> Result<Spawned, TtyError> {
        let exec_id = self.create_exec(placement, size).await?;
        let container = placement.container_id.clone().unwrap_or_default();
        let exit_event = self.pool.exec_exit(&exec_id, &container);
        let (mut reader, writer) = self.endpoint.start_exec(&exec_id).await?;
        let started = tokio::time::timeout(START_TIMEOUT, read_pid_mark(&mut reader)).await;
        let (pid, early_output) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(self.start_failed(&exec_id, e).await),
            Err(_) => {
                return Err(TtyError::unavailable(
                    Unavailability::NotPrepared,
                    format!("exec {exec_id} in {container} did not start the shell in time"),
                ))
            }
        };
        let session = Arc::new(ExecSession {
            docker: self.docker().clone(),
            exec_id,
            container,
            user: placement.user.clone(),
            pid,
            writer: Mutex::new(Some(writer)),
            hung_up: AtomicBool::new(false),
            hangups: self.hangups.clone(),
        });
        let output = Box::new(ExecOutput {
            session: session.clone(),
            reader,
            early_output,
            failed: None,
            exit_event: Some(exit_event),
        });
        Ok(Spawned {
            tty: session,
            output,
        })
    }

    /// Explains a shell that ended before it started, with the exec's exit code.
    async fn start_failed(&self, exec_id: &str, e: TtyError) -> TtyError {
        let code = self
            .docker()
            .inspect_exec(exec_id)
            .await
            .ok()
            .and_then(|i| i.exit_code);
        log::warn!("exec {exec_id} ended before the shell started (exit code {code:?}): {e}");
        e
    }

    /// Maps an Engine error; a container that vanished is reported to the pool for replacement.
    fn exec_failed(&self, p: &Placement, e: bollard::errors::Error) -> TtyError {
        let name = p.container.as_deref().unwrap_or_default();
        self.pool.container_failed(name);
        unavailable(PoolError::engine(
            format!("creating a session exec in container {name}"),
            e,
        ))
    }
}

/// What a client is told of a pool error: its kind. The details go to the log.
fn unavailable(e: PoolError) -> TtyError {
    let kind = match e {
        PoolError::PoolFull => Unavailability::PoolFull,
        PoolError::DockerUnavailable(_) => Unavailability::EngineDown,
        PoolError::Store(_) | PoolError::Provision(_) => Unavailability::NotPrepared,
    };
    TtyError::unavailable(kind, e)
}

#[async_trait]
impl Backend for DockerBackend {
    fn mode(&self) -> &'static str {
        "container"
    }

    async fn place(
        &self,
        identity: &str,
        has_live_session: &IsLive,
    ) -> Result<Placement, TtyError> {
        let p = self
            .pool
            .place(identity, has_live_session)
            .await
            .map_err(unavailable)?;
        Ok(Placement {
            user: p.username,
            container: Some(p.container_name),
            container_id: Some(p.container_id),
            home: p.home,
        })
    }

    async fn spawn(&self, placement: &Placement, size: TermSize) -> Result<Spawned, TtyError> {
        let name = placement.container.as_deref().ok_or(TtyError::Closed)?;
        match self.pool.config().agent_socket(name) {
            Some(socket) => self.spawn_by_agent(placement, &socket, size).await,
            None => self.spawn_exec(placement, size).await,
        }
    }

    async fn reap(&self, placement: &Placement) -> Result<(), TtyError> {
        let container = placement.container_id.as_deref().ok_or(TtyError::Closed)?;
        self.pool
            .end_processes(container, &placement.user)
            .await
            .map_err(unavailable)
    }

    async fn shutdown(&self) {
        if let Err(e) = self.pool.flush().await {
            log::error!("could not flush the placement store: {e}");
        }
    }

    async fn health(&self) -> Result<serde_json::Value, String> {
        let stats = self.pool.stats();
        self.docker()
            .ping()
            .await
            // /healthz is public: the engine's error goes to the log, under the reference.
            .map_err(|e| TtyError::unavailable(Unavailability::EngineDown, e).to_string())?;
        Ok(serde_json::to_value(stats).unwrap_or_default())
    }
}

/// The environment of a session: nothing of the server's, nothing from the client.
fn session_env(p: &Placement) -> Vec<String> {
    vec![
        "TERM=xterm-256color".to_owned(),
        "COLORTERM=truecolor".to_owned(),
        "LANG=C.UTF-8".to_owned(),
        format!("HOME={}", p.home),
        format!("USER={}", p.user),
        format!("LOGNAME={}", p.user),
        "SHELL=/bin/bash".to_owned(),
        format!("PATH={PATH}"),
    ]
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Reads up to the wrapper's PID report; returns the PID and any output that followed it.
async fn read_pid_mark(reader: &mut BoxRead) -> Result<(u32, Bytes), TtyError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(end) = buf.iter().position(|&b| b == PID_MARK_END) {
            let mark = buf.split_to(end + 1);
            let pid = mark
                .strip_prefix(PID_MARK_START)
                .and_then(|rest| std::str::from_utf8(&rest[..rest.len() - 1]).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    TtyError::unavailable(
                        Unavailability::NotPrepared,
                        format!(
                            "a malformed PID report: {:?}",
                            String::from_utf8_lossy(&mark)
                        ),
                    )
                })?;
            return Ok((pid, buf.freeze()));
        }
        if buf.len() > 4096 || reader.read_buf(&mut buf).await? == 0 {
            return Err(TtyError::unavailable(
                Unavailability::NotPrepared,
                format!(
                    "the shell ended at once: {}",
                    String::from_utf8_lossy(&buf).trim()
                ),
            ));
        }
    }
}

/// Runs `script` (with `$1`... = `args`) in `container` as `user`, without waiting for it.
async fn exec_detached_as(
    docker: &Docker,
    container: &str,
    user: &str,
    script: &str,
    args: &[String],
) -> Result<(), bollard::errors::Error> {
    let mut cmd = vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "termpool".into(),
    ];
    cmd.extend_from_slice(args);
    let config = ExecConfig {
        user: Some(user.to_owned()),
        privileged: Some(false),
        env: Some(vec![format!("PATH={PATH}")]),
        cmd: Some(cmd),
        ..Default::default()
    };
    let exec = docker.create_exec(container, config).await?;
    let detached = StartExecOptions {
        detach: true,
        ..Default::default()
    };
    docker.start_exec(&exec.id, Some(detached)).await?;
    Ok(())
}

struct ExecSession {
    docker: Docker,
    exec_id: String,
    container: String,
    user: String,
    /// The shell's PID inside the container: the session id of everything it starts.
    pid: u32,
    writer: Mutex<Option<BoxWrite>>,
    hung_up: AtomicBool,
    hangups: Arc<Hangups>,
}

/// Terminal sessions to hang up, per (container, user). Each hang-up is an exec as the user (root
/// in the container may not signal other users' processes), and an exec costs the engine a runc
/// start: tens of ms of CPU, and it slows the engine's handling of other execs' exits. With one
/// exec per session, 100 sessions ending together made the engine report their exits at 14 per
/// second. So a hang-up waits `HANGUP_WINDOW` for others of the same (container, user) to join
/// it, and the ones that come while an exec is on its way wait for the next one.
#[derive(Default)]
struct Hangups {
    /// Present while an exec for the key is being sent: the session ids for the next one.
    waiting: std::sync::Mutex<HashMap<(String, String), Vec<u32>>>,
}

impl Hangups {
    /// SIGHUP to every process of the sessions led by `sid`, SIGCONT so stopped jobs see it; the
    /// leader is killed if it is still there 3 s later (a shell may ignore SIGHUP). Jobs started
    /// with nohup or in their own session (tmux) live on, as on a real terminal.
    ///
    /// The caller that starts a batch waits until it and the ones that joined meanwhile are sent:
    /// a server that stops awaits all hang-ups together. The sending is a task of its own, so a
    /// caller that gives up waiting does not strand the sessions that joined.
    async fn hang_up(self: &Arc<Self>, docker: &Docker, container: &str, user: &str, sid: u32) {
        let key = (container.to_owned(), user.to_owned());
        let first = {
            let mut waiting = self.lock();
            match waiting.get_mut(&key) {
                Some(sids) => {
                    sids.push(sid);
                    false
                }
                None => waiting.insert(key.clone(), vec![sid]).is_none(),
            }
        };
        if first {
            let (this, docker) = (self.clone(), docker.clone());
            let _ = tokio::spawn(async move { this.send_all(&docker, key).await }).await;
        }
    }

    async fn send_all(&self, docker: &Docker, key: (String, String)) {
        const SCRIPT: &str =
            "for s in \"$@\"; do pkill -HUP -s \"$s\"; pkill -CONT -s \"$s\"; done; \
            sleep 3; for s in \"$@\"; do kill -KILL \"$s\" 2>/dev/null; done; true";
        loop {
            tokio::time::sleep(HANGUP_WINDOW).await;
            let sids: Vec<String> = {
                let mut waiting = self.lock();
                let Some(sids) = waiting.get_mut(&key).filter(|s| !s.is_empty()) else {
                    waiting.remove(&key);
                    return;
                };
                sids.drain(..).map(|s| s.to_string()).collect()
            };
            let (container, user) = &key;
            if let Err(e) = exec_detached_as(docker, container, user, SCRIPT, &sids).await {
                log::warn!("could not hang up sessions {sids:?} of {user}: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<u32>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Tty for ExecSession {
    async fn write(&self, data: &[u8]) -> Result<(), TtyError> {
        let mut writer = self.writer.lock().await;
        let writer = writer.as_mut().ok_or(TtyError::Closed)?;
        match writer.write_all(data).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(TtyError::Closed),
            Err(e) => Err(TtyError::unavailable(
                Unavailability::SessionLost,
                format!("exec {}: the engine's connection: {e}", self.exec_id),
            )),
        }
    }

    async fn resize(&self, size: TermSize) -> Result<(), TtyError> {
        let options = ResizeExecOptionsBuilder::new()
            .w(i32::from(size.cols))
            .h(i32::from(size.rows))
            .build();
        self.docker
            .resize_exec(&self.exec_id, options)
            .await
            .map_err(|e| {
                TtyError::unavailable(
                    Unavailability::ResizeFailed,
                    format!("resizing exec {}: {e}", self.exec_id),
                )
            })
    }

    async fn hangup(&self) {
        if self.hung_up.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(mut writer) = self.writer.lock().await.take() {
            let _ = writer.shutdown().await;
        }
        self.hangups
            .hang_up(&self.docker, &self.container, &self.user, self.pid)
            .await;
    }
}

struct ExecOutput {
    session: Arc<ExecSession>,
    reader: BoxRead,
    early_output: Bytes,
    failed: Option<String>,
    /// The exit code, from Docker's event stream.
    exit_event: Option<oneshot::Receiver<Option<i64>>>,
}

impl ExecSession {
    /// A shell killed because its container stopped or vanished did not exit: the backend lost it.
    /// A shell killed by SIGKILL (exit code 137) usually means exactly that, but the engine can
    /// report its container as running for a moment longer, so that case is looked at twice.
    async fn check_container_lives(&self, exit_code: Option<i64>) -> Result<(), TtyError> {
        let mut lives = self.container_running().await;
        if lives && exit_code == Some(137) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            lives = self.container_running().await;
        }
        if lives {
            Ok(())
        } else {
            Err(TtyError::unavailable(
                Unavailability::SessionLost,
                format!(
                    "container {} of exec {} stopped",
                    self.container, self.exec_id
                ),
            ))
        }
    }

    /// Whether the container runs and is not being removed.
    async fn container_running(&self) -> bool {
        let state = self
            .docker
            .inspect_container(&self.container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state);
        state.is_some_and(|s| {
            s.running == Some(true)
                && s.status == Some(bollard::models::ContainerStateStatusEnum::RUNNING)
        })
    }
}

#[async_trait]
impl TtyOutput for ExecOutput {
    async fn read(&mut self) -> Option<Bytes> {
        if !self.early_output.is_empty() {
            return Some(std::mem::take(&mut self.early_output));
        }
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match self.reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some(buf.freeze()),
            Err(e) => {
                let exec = &self.session.exec_id;
                self.failed = Some(format!("exec {exec}: the engine's connection: {e}"));
                None
            }
        }
    }

    async fn exit_code(&mut self) -> Result<Option<i32>, TtyError> {
        if let Some(reason) = self.failed.take() {
            return Err(TtyError::unavailable(Unavailability::SessionLost, reason));
        }
        // Docker tells of the exit on its event stream. Asking it in a loop instead made 100
        // sessions ending together send thousands of requests and stalled the engine for a minute.
        if let Some(event) = self.exit_event.take() {
            if let Ok(Ok(code)) = tokio::time::timeout(EXIT_EVENT_WAIT, event).await {
                self.session.check_container_lives(code).await?;
                return Ok(code.and_then(|c| i32::try_from(c).ok()));
            }
        }
        // The event was missed (the event stream broke, the container died): ask, gently. The
        // stream can end a moment before the Engine records the exit code.
        let mut pause = Duration::from_millis(20);
        for _ in 0..12 {
            let info = self
                .session
                .docker
                .inspect_exec(&self.session.exec_id)
                .await
                .map_err(|e| {
                    TtyError::unavailable(
                        Unavailability::SessionLost,
                        format!("inspecting exec {}: {e}", self.session.exec_id),
                    )
                })?;
            if info.running != Some(true) {
                self.session.check_container_lives(info.exit_code).await?;
                return Ok(info.exit_code.and_then(|c| i32::try_from(c).ok()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        // Still "running" seconds after its stream ended: the container may be going away.
        self.session.check_container_lives(None).await?;
        Ok(None)
    }
}

/// Where the Engine API listens, as the Docker CLI reads `DOCKER_HOST`.
#[derive(Debug, Clone)]
enum Endpoint {
    Unix(String),
    Tcp(String),
}

impl Endpoint {
    fn from_env() -> Result<Self, TtyError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        if host.is_empty() {
            return Ok(Endpoint::Unix("/var/run/docker.sock".into()));
        }
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://").or(host.strip_prefix("http://")) {
            if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
                return Err(TtyError::unavailable(
                    Unavailability::EngineDown,
                    "DOCKER_TLS_VERIFY is set, but TLS to the Engine API is not supported: use a unix socket or an SSH tunnel",
                ));
            }
            return Ok(Endpoint::Tcp(addr.trim_end_matches('/').into()));
        }
        Err(TtyError::unavailable(
            Unavailability::EngineDown,
            format!("DOCKER_HOST={host:?} is not supported: use unix:// or tcp://"),
        ))
    }

    /// `POST /exec/{id}/start` upgraded to a raw stream: the exec's TTY, both ways.
    async fn start_exec(&self, exec_id: &str) -> Result<(BoxRead, BoxWrite), TtyError> {
        let unavailable = |e: io::Error| {
            TtyError::unavailable(
                Unavailability::EngineDown,
                format!("starting exec {exec_id} through the engine's API: {e}"),
            )
        };
        let (mut read, mut write): (BoxRead, BoxWrite) = match self {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unavailable)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(unavailable)?;
                s.set_nodelay(true).map_err(unavailable)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let body = r#"{"Detach":false,"Tty":true}"#;
        let request = format!(
            "POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n\
             Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        write
            .write_all(request.as_bytes())
            .await
            .map_err(unavailable)?;
        let head = read_response_head(&mut read).await.map_err(unavailable)?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "101" && status != "200" {
            return Err(TtyError::unavailable(
                Unavailability::NotPrepared,
                format!(
                    "the engine refused to start exec {exec_id}: {}",
                    head.lines().next().unwrap_or("")
                ),
            ));
        }
        Ok((read, write))
    }
}

/// Reads an HTTP response head byte by byte, so that no byte of the raw stream after it is taken.
async fn read_response_head(read: &mut BoxRead) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
        let byte = read.read_u8().await?;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pid_mark_is_stripped_and_following_bytes_kept() {
        let stream: &[u8] = b"\x1b]5379;termpool-pid=42\x07\x00\x01\x02rest";
        let mut reader: BoxRead = Box::new(stream);
        let (pid, early) = read_pid_mark(&mut reader).await.unwrap();
        assert_eq!(pid, 42);
        assert_eq!(&early[..], b"\x00\x01\x02rest");
    }

    #[tokio::test]
    async fn a_shell_that_dies_at_once_is_an_error() {
        let mut reader: BoxRead = Box::new(&b"unable to find user"[..]);
        let Err(TtyError::Unavailable(err)) = read_pid_mark(&mut reader).await else {
            panic!("the shell's death is an Unavailable");
        };
        assert_eq!(err.kind, Unavailability::NotPrepared);
        assert!(err.detail().contains("unable to find user"), "{err:?}");
        assert!(
            !err.to_string().contains("unable"),
            "the client is not told: {err}"
        );
    }
}
