//! Ending every process of one account in a container (eviction, idle reaping), through the
//! session agent's binary run once as root.

use bollard::Docker;

use super::engine::short;
use super::exec::exec_root;
use super::PoolError;

/// The session agent's binary in the user image (Dockerfile.user), there whether or not the pool
/// runs agents.
pub(super) const AGENT_BINARY: &str = "/usr/local/sbin/termpool-agent";

/// Ends every process of account `username` (UID `uid`) in container `id`, and waits until none
/// is left (zombies linger until init reaps them). The agent's binary, run once as root, keeps
/// uid 0 and CAP_KILL and walks /proc (agent/src/end.rs): the account cannot see, stop or kill
/// it, and it executes nothing as the account, which a user holding the nproc limit full would
/// make fail. By number, so that it works whether or not the account exists in this container.
/// Exit 1: some process survived five seconds of SIGKILL; 2: refused.
pub async fn end_processes(
    docker: &Docker,
    id: &str,
    username: &str,
    uid: u32,
) -> Result<(), PoolError> {
    let uid = uid.to_string();
    let out = exec_root(docker, id, &[AGENT_BINARY, "--end-processes", &uid]).await?;
    if out.code == Some(0) {
        return Ok(());
    }
    Err(PoolError::Provision(format!(
        "ending the processes of {username} in container {} failed ({:?}): {}",
        short(id),
        out.code,
        out.stderr.trim()
    )))
}
