//! The container backend: places users through the pool and runs each session as a login shell of
//! the user's account in their container, started by the container's session agent (`agent.rs`)
//! or else as a `docker exec` terminal (`exec.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::exec::ExecTerminals;
use super::remote::{AgentError, RemoteAgent, WriteRequest};
use super::{
    agent, AccountInfo, Backend, ContainerNode, IsLive, Placement, Spawned, TtyError,
    Unavailability,
};
use crate::pool::orchestrator::Terminal;
use crate::pool::{Pool, PoolError};
use crate::protocol::TermSize;

/// How long a new exec may take to report its PID, or an agent to start a shell, before the
/// session is given up.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a container's agent may not listen before the container is taken for unusable. The
/// pool admits users only once the agent listens, so a socket that is gone or refuses now stays
/// so (its directory was deleted on the host, or the agent died): waiting longer only makes the
/// user wait.
const AGENT_GRACE: Duration = Duration::from_secs(1);
/// The `PATH` of sessions and of the execs run as their users.
pub(super) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sessions in the container pool.
pub struct DockerBackend {
    pool: Arc<Pool>,
    execs: ExecTerminals,
}

impl DockerBackend {
    /// Must be called inside a Tokio runtime: it starts following the pool's Docker events.
    pub fn new(pool: Arc<Pool>) -> Result<Self, TtyError> {
        let execs = ExecTerminals::new(pool.docker().clone(), pool.label_filter())?;
        Ok(DockerBackend { pool, execs })
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
        let request = shell_request(p, &env, size);
        agent::spawn(conn, &request, START_TIMEOUT).await
    }

    /// A session started by the container's agent over the network (Swarm). An agent that does
    /// not answer is its node down for this user, at once: the slot is checked again before
    /// anyone else is admitted to it.
    async fn spawn_remote(
        &self,
        p: &Placement,
        agent: &RemoteAgent,
        size: TermSize,
    ) -> Result<Spawned, TtyError> {
        let env = session_env(p);
        let request = shell_request(p, &env, size);
        match agent.open_session(&request, START_TIMEOUT).await {
            Ok(spawned) => Ok(spawned),
            Err(e @ (AgentError::Unreachable { .. } | AgentError::Handshake { .. })) => {
                self.pool.container_failed(agent.slot());
                Err(TtyError::unavailable(Unavailability::NodeDown, e))
            }
            Err(e) => Err(TtyError::unavailable(Unavailability::NotPrepared, e)),
        }
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
    async fn spawn_exec(&self, p: &Placement, size: TermSize) -> Result<Spawned, TtyError> {
        let container = p.container_id.as_deref().ok_or(TtyError::Closed)?;
        let exec_id = self
            .execs
            .create(container, p, size, session_env(p))
            .await
            .map_err(|e| self.exec_failed(p, e))?;
        self.execs.start(exec_id, p).await
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
        PoolError::HomeFull => Unavailability::HomeFull,
        PoolError::DockerUnavailable(_) => Unavailability::EngineDown,
        PoolError::Store(_) | PoolError::Provision(_) => Unavailability::NotPrepared,
        PoolError::NodeDown(_) => Unavailability::NodeDown,
        PoolError::WrongVolume(_) => Unavailability::FilesUnreachable,
        PoolError::HomeUnavailable(_) => Unavailability::HomeUnavailable,
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
        match self.pool.terminal(name).ok_or(TtyError::Closed)? {
            Terminal::Socket(socket) => self.spawn_by_agent(placement, &socket, size).await,
            Terminal::Exec => self.spawn_exec(placement, size).await,
            Terminal::Remote(agent) => self.spawn_remote(placement, &agent, size).await,
        }
    }

    async fn write_file(
        &self,
        p: &Placement,
        shell_pid: Option<i32>,
        name: &str,
        length: u64,
        body: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> Result<String, crate::workspace::files::UploadError> {
        // On another node there is no `docker exec`: the slot's agent writes the file.
        let slot = p.container.as_deref().unwrap_or_default();
        if let Some(Terminal::Remote(agent)) = self.pool.terminal(slot) {
            let req = WriteRequest {
                user: p.user.clone(),
                home: p.home.clone(),
                shell_pid: shell_pid.and_then(|pid| u32::try_from(pid).ok()),
                file: name.to_owned(),
                length,
            };
            return agent.write_file(&req, body).await;
        }
        let container = p.container_id.as_deref().unwrap_or_default();
        let written = self
            .execs
            .write_file(container, p, shell_pid, name, length, body);
        written.await
    }

    async fn reap(&self, placement: &Placement) -> Result<(), TtyError> {
        let container = placement.container_id.as_deref().ok_or(TtyError::Closed)?;
        self.pool
            .end_processes(container, &placement.user)
            .await
            .map_err(unavailable)
    }

    fn note_activity(&self, account: &str) {
        self.pool.note_activity(account);
    }

    async fn idle_accounts(&self, before: i64) -> Result<Vec<Placement>, TtyError> {
        let idle = self.pool.idle_placed_accounts(before).await;
        let placements = idle
            .map_err(unavailable)?
            .into_iter()
            .map(|(u, id)| Placement {
                home: crate::pool::home_of(&u.username),
                user: u.username,
                container: u.container,
                container_id: id,
            });
        Ok(placements.collect())
    }

    async fn shutdown(&self) {
        if let Err(e) = self.pool.flush().await {
            log::error!("could not flush the placement store: {e}");
        }
    }

    async fn accounts(&self) -> Result<Vec<AccountInfo>, TtyError> {
        let accounts = self.pool.accounts().await.map_err(unavailable)?;
        let info = accounts.into_iter().map(|(u, container_id)| AccountInfo {
            user: u.username,
            identity_hash: u.identity_hash,
            uid: u.uid,
            container: u.container,
            container_id,
            last_activity: u.last_activity,
        });
        Ok(info.collect())
    }

    fn users_per_container(&self) -> Vec<(String, usize)> {
        self.pool.users_per_container()
    }

    fn container_nodes(&self) -> Vec<ContainerNode> {
        let nodes = self.pool.container_nodes().into_iter();
        nodes
            .map(|(container, node)| ContainerNode {
                container,
                node: node.name,
                ready: node.ready,
                relay: node.relay,
            })
            .collect()
    }

    async fn health(&self) -> Result<serde_json::Value, String> {
        let stats = self.pool.stats();
        self.pool
            .docker()
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

/// What the agent is asked to start for placement `p`: its login shell, with `env`.
fn shell_request<'a>(
    p: &'a Placement,
    env: &'a [String],
    size: TermSize,
) -> agent::ShellRequest<'a> {
    agent::ShellRequest {
        user: p.user.as_str().into(),
        home: p.home.as_str().into(),
        cols: size.cols,
        rows: size.rows,
        env: env.into(),
    }
}
