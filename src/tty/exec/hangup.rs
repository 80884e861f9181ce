//! Hanging up `docker exec` terminals: SIGHUP from an exec as the session's own user (root in the
//! container holds no CAP_KILL), one exec per batch of that user's sessions ending together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;
use bollard::Docker;

use crate::tty::container::PATH;

/// How long a hang-up waits for others to share its exec.
const HANGUP_WINDOW: Duration = Duration::from_millis(500);

/// Terminal sessions to hang up, per (container, user). Each hang-up is an exec as the user, and
/// an exec costs the engine a runc start (see docs/design.md), so a hang-up waits
/// `HANGUP_WINDOW` for others of the same (container, user) to join it, and the ones that come
/// while an exec is on its way wait for the next one.
#[derive(Default)]
pub(super) struct HangupBatch {
    /// Present while an exec for the key is being sent: the session ids for the next one.
    waiting: std::sync::Mutex<HashMap<(String, String), Vec<u32>>>,
}

impl HangupBatch {
    /// SIGHUP to every process of the sessions led by `sid`, SIGCONT so stopped jobs see it; the
    /// leader is killed if it is still there 3 s later (a shell may ignore SIGHUP). Jobs started
    /// with nohup or in their own session (tmux) live on, as on a real terminal.
    ///
    /// The caller that starts a batch waits until it and the ones that joined meanwhile are sent:
    /// a server that stops awaits all hang-ups together. The sending is a task of its own, so a
    /// caller that gives up waiting does not strand the sessions that joined.
    pub(super) async fn hang_up(
        self: &Arc<Self>,
        docker: &Docker,
        container: &str,
        user: &str,
        sid: u32,
    ) {
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
