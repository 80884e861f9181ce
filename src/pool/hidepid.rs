//! `/proc` remounted `hidepid=invisible` in a user container by a short-lived helper container
//! that joins its PID namespace with SYS_ADMIN, so that the user container itself never has it.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, WaitContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use super::engine::{docker_err, remove, short};
use super::exec::{exec_root, STEP_TIMEOUT};
use super::{PoolConfig, PoolError};

/// Label marking a hidepid helper container of a pool.
pub const LABEL_HELPER: &str = "termpool.hidepid-helper";

/// Capabilities of the hidepid helper: enter the mount namespace and remount /proc.
const HELPER_CAPS: [&str; 3] = ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"];
/// The helper's command.
const HIDEPID_CMD: [&str; 8] = [
    "--target",
    "1",
    "--mount",
    "--",
    "mount",
    "-o",
    "remount,hidepid=invisible",
    "/proc",
];

/// The create request of the hidepid helper for container `target_id`.
pub fn helper_body(cfg: &PoolConfig, target_id: &str) -> ContainerCreateBody {
    let host_config = HostConfig {
        pid_mode: Some(format!("container:{target_id}")),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(HELPER_CAPS.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["apparmor=unconfined".into()]),
        network_mode: Some("none".into()),
        privileged: Some(false),
        auto_remove: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(cfg.image.clone()),
        user: Some("0".into()),
        entrypoint: Some(vec!["nsenter".into()]),
        cmd: Some(HIDEPID_CMD.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(
            LABEL_HELPER.to_string(),
            cfg.pool_label.clone(),
        )])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Makes sure the container's /proc is mounted with hidepid: checks first unless `fresh`, runs
/// the helper if needed, and verifies the result. Users are admitted only after this succeeded.
pub async fn ensure_hidepid(
    docker: &Docker,
    cfg: &PoolConfig,
    id: &str,
    fresh: bool,
) -> Result<(), PoolError> {
    if !fresh && proc_has_hidepid(docker, id).await? {
        return Ok(());
    }
    run_helper(docker, cfg, id).await?;
    if proc_has_hidepid(docker, id).await? {
        Ok(())
    } else {
        Err(PoolError::Provision(format!(
            "container {}: /proc still lacks hidepid after the remount",
            short(id)
        )))
    }
}

/// Whether the container's /proc mount carries hidepid (checked by a root exec).
pub async fn proc_has_hidepid(docker: &Docker, id: &str) -> Result<bool, PoolError> {
    let out = exec_root(docker, id, &["cat", "/proc/mounts"]).await?;
    if out.code != Some(0) {
        return Err(PoolError::Provision(format!(
            "container {}: reading /proc/mounts failed ({:?}): {}",
            short(id),
            out.code,
            out.stderr.trim()
        )));
    }
    Ok(mounts_have_hidepid(&out.stdout))
}

/// Whether the topmost `proc` mount on /proc in a /proc/mounts text has hidepid set.
pub fn mounts_have_hidepid(mounts: &str) -> bool {
    mounts
        .lines()
        .rev()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[1] == "/proc" && f[2] == "proc")
        .is_some_and(|f| {
            f[3].split(',')
                .any(|o| o == "hidepid=invisible" || o == "hidepid=2")
        })
}

/// Runs the hidepid helper for container `id` to completion and removes it.
async fn run_helper(docker: &Docker, cfg: &PoolConfig, id: &str) -> Result<(), PoolError> {
    let created = docker
        .create_container(None::<CreateContainerOptions>, helper_body(cfg, id))
        .await
        .map_err(docker_err(format!(
            "creating the hidepid helper for {}",
            short(id)
        )))?;
    let result = start_and_wait(docker, &created.id).await;
    let failure_logs = match &result {
        Ok(0) => String::new(),
        _ => logs(docker, &created.id).await,
    };
    remove(docker, &created.id).await?;
    match result? {
        0 => Ok(()),
        code => Err(PoolError::Provision(format!(
            "hidepid helper for {} exited with {code}: {}",
            short(id),
            failure_logs.trim()
        ))),
    }
}

/// Starts a container and waits for it to exit; returns its exit code.
async fn start_and_wait(docker: &Docker, id: &str) -> Result<i64, PoolError> {
    docker
        .start_container(id, None)
        .await
        .map_err(docker_err("starting the hidepid helper"))?;
    let opts = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(opts));
    match tokio::time::timeout(STEP_TIMEOUT, wait.next()).await {
        Err(_) => Err(PoolError::Provision(
            "the hidepid helper did not finish".into(),
        )),
        Ok(None) => Err(PoolError::Provision(
            "waiting for the hidepid helper: no answer".into(),
        )),
        Ok(Some(Ok(r))) => Ok(r.status_code),
        Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => Ok(code),
        Ok(Some(Err(e))) => Err(docker_err("waiting for the hidepid helper")(e)),
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
    fn hidepid_is_read_from_the_topmost_proc_mount() {
        let plain =
            "overlay / overlay rw 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n";
        assert!(!mounts_have_hidepid(plain));
        let hidden = format!("{plain}proc /proc proc rw,relatime,hidepid=invisible 0 0\n");
        assert!(mounts_have_hidepid(&hidden));
        assert!(mounts_have_hidepid("proc /proc proc rw,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("proc /proc/sys proc ro,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("tmpfs /proc tmpfs rw,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("proc /proc proc rw,hidepid=1 0 0"));
        assert!(!mounts_have_hidepid(""));
    }

    #[test]
    fn helper_joins_the_pid_namespace_without_network() {
        let cfg = PoolConfig::default();
        let hc = helper_body(&cfg, "abc").host_config.expect("host config");
        assert_eq!(hc.pid_mode.as_deref(), Some("container:abc"));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    }
}
