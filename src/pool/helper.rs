//! One-shot helper containers: the agent's own binary run as root with the few capabilities a
//! single root task needs (mounts in a user container, a quota), so that no user container ever
//! holds them. Run to completion and removed; their output names a failure.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, WaitContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use super::engine::{docker_err, remove};
use super::exec::STEP_TIMEOUT;
use super::processes::AGENT_BINARY;
use super::{PoolConfig, PoolError};

/// Label marking a helper container of a pool (its value is the pool's label).
pub const LABEL_HELPER: &str = "termpool.hidepid-helper";

/// What a helper is: the agent's arguments and what its task needs beyond nothing.
pub struct Helper<'a> {
    /// The agent's arguments (`--prepare-mounts ...`, `--set-quota ...`).
    pub args: Vec<String>,
    /// Capabilities added to an empty set.
    pub caps: &'a [&'a str],
    /// Security options besides `no-new-privileges`, which every helper has.
    pub security: &'a [&'a str],
    /// Environment of the agent.
    pub env: Vec<String>,
    /// The rest of the host configuration (the PID namespace joined, the mounts).
    pub host: HostConfig,
}

impl Helper<'_> {
    /// The create request: root, no network, not privileged, labelled for the pool's clean-up.
    pub fn body(self, cfg: &PoolConfig) -> ContainerCreateBody {
        let security = ["no-new-privileges"].iter().chain(self.security);
        let host_config = HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(self.caps.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(security.map(|s| s.to_string()).collect()),
            network_mode: Some("none".into()),
            privileged: Some(false),
            auto_remove: Some(false),
            ..self.host
        };
        ContainerCreateBody {
            image: Some(cfg.image.clone()),
            user: Some("0".into()),
            entrypoint: Some(vec![AGENT_BINARY.into()]),
            cmd: Some(self.args),
            env: (!self.env.is_empty()).then_some(self.env),
            labels: Some(HashMap::from([(
                LABEL_HELPER.to_string(),
                cfg.pool_label.clone(),
            )])),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Creates a helper container from `body`, runs it to completion and removes it; an error unless
/// it exited 0. `what` names it in errors.
pub async fn run_to_completion(
    docker: &Docker,
    body: ContainerCreateBody,
    what: &str,
) -> Result<(), PoolError> {
    let created = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(docker_err(format!("creating the {what}")))?;
    let result = start_and_wait(docker, &created.id, what).await;
    let failure_logs = match &result {
        Ok(0) => String::new(),
        _ => logs(docker, &created.id).await,
    };
    remove(docker, &created.id).await?;
    match result? {
        0 => Ok(()),
        code => Err(PoolError::Provision(format!(
            "{what} exited with {code}: {}",
            failure_logs.trim()
        ))),
    }
}

/// Starts a container and waits for it to exit; returns its exit code.
async fn start_and_wait(docker: &Docker, id: &str, what: &str) -> Result<i64, PoolError> {
    docker
        .start_container(id, None)
        .await
        .map_err(docker_err(format!("starting the {what}")))?;
    let opts = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(opts));
    match tokio::time::timeout(STEP_TIMEOUT, wait.next()).await {
        Err(_) => Err(PoolError::Provision(format!(
            "the {what} did not finish within {STEP_TIMEOUT:?}"
        ))),
        Ok(None) => Err(PoolError::Provision(format!(
            "waiting for the {what}: no answer"
        ))),
        Ok(Some(Ok(r))) => Ok(r.status_code),
        Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => Ok(code),
        Ok(Some(Err(e))) => Err(docker_err(format!("waiting for the {what}"))(e)),
    }
}

/// A finished container's output, best effort (for error messages).
async fn logs(docker: &Docker, id: &str) -> String {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "20".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(opts));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_is_root_without_network_privilege_or_other_capabilities() {
        let cfg = PoolConfig::default();
        let body = Helper {
            args: vec!["--x".into()],
            caps: &["CHOWN"],
            security: &["seccomp=unconfined"],
            env: Vec::new(),
            host: HostConfig {
                // A helper's own settings never undo the common ones.
                privileged: Some(true),
                network_mode: Some("host".into()),
                ..Default::default()
            },
        }
        .body(&cfg);
        let hc = body.host_config.expect("host config");
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.cap_add, Some(vec!["CHOWN".to_string()]));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        let security = hc.security_opt.expect("security options");
        assert_eq!(security, ["no-new-privileges", "seccomp=unconfined"]);
        assert_eq!(body.user.as_deref(), Some("0"));
        assert_eq!(body.env, None);
        let labels = body.labels.expect("labels");
        assert_eq!(labels.get(LABEL_HELPER), Some(&cfg.pool_label));
    }
}
