//! Root commands in a user container (`docker exec`, never privileged), run to completion with
//! their output: what checking hidepid, creating accounts and ending processes are made of.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use super::engine::{docker_err, short};
use super::PoolError;

/// Upper bound on one root exec or one helper run.
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Output of a finished root exec.
#[derive(Debug, Default)]
pub struct ExecResult {
    pub code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` as root in container `id` (never privileged), drains its output and returns it
/// with the exit code (which Docker only knows once the output is drained).
pub async fn exec_root(docker: &Docker, id: &str, cmd: &[&str]) -> Result<ExecResult, PoolError> {
    let context = format!("exec {:?} in container {}", cmd.first(), short(id));
    match tokio::time::timeout(STEP_TIMEOUT, exec_root_inner(docker, id, cmd, &context)).await {
        Ok(result) => result,
        Err(_) => Err(PoolError::Provision(format!("{context}: timed out"))),
    }
}

async fn exec_root_inner(
    docker: &Docker,
    id: &str,
    cmd: &[&str],
    context: &str,
) -> Result<ExecResult, PoolError> {
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some("root"),
        privileged: Some(false),
        env: Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]),
        cmd: Some(cmd.to_vec()),
        ..Default::default()
    };
    let exec = docker
        .create_exec(id, opts)
        .await
        .map_err(docker_err(context))?;
    let mut out = ExecResult::default();
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(docker_err(context))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(PoolError::Provision(format!(
            "{context}: exec started detached"
        )));
    };
    while let Some(chunk) = output.next().await {
        match chunk.map_err(docker_err(context))? {
            LogOutput::StdOut { message } => {
                out.stdout.push_str(&String::from_utf8_lossy(&message))
            }
            LogOutput::StdErr { message } => {
                out.stderr.push_str(&String::from_utf8_lossy(&message))
            }
            _ => {}
        }
    }
    let info = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(docker_err(context))?;
    out.code = info.exit_code;
    Ok(out)
}
