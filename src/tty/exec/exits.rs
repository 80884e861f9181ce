//! Exit codes of session execs, from Docker's event stream (`exec_die`) filtered to the pool's
//! containers: the exec terminal's own subscription, so the pool knows nothing of sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait between reconnection attempts of the event stream.
const EVENTS_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Who waits for the exit of which exec (by exec id): its container's id, and where to send the
/// exit code.
type Waiters = HashMap<String, (String, oneshot::Sender<Option<i64>>)>;

/// The waiters for exec exits, fed by a task that follows Docker's events while this lives.
pub(crate) struct ExecExits {
    waiters: Mutex<Waiters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ExecExits {
    /// Starts following the exec and container events of containers labelled `label_filter`
    /// (`key=value`).
    pub(crate) fn watch(docker: Docker, label_filter: String) -> Arc<ExecExits> {
        let exits = Arc::new(ExecExits {
            waiters: Mutex::default(),
            task: Mutex::default(),
        });
        let task = tokio::spawn(follow(Arc::downgrade(&exits), docker, label_filter));
        *exits.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        exits
    }

    /// Resolves with the exit code Docker reports for exec `exec_id` of container `container_id`;
    /// ask before starting the exec. Fails, rather than waits on, when the event may have been
    /// missed: the stream broke or the container died.
    pub(crate) fn exit_of(
        &self,
        exec_id: &str,
        container_id: &str,
    ) -> oneshot::Receiver<Option<i64>> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.lock();
        // Waiters whose session went away first (a failed start) are dropped here.
        waiters.retain(|_, (_, tx)| !tx.is_closed());
        waiters.insert(exec_id.to_owned(), (container_id.to_owned(), tx));
        rx
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_event(&self, action: &str, id: &str, attributes: &HashMap<String, String>) {
        match action {
            "exec_die" => {
                let Some(exec_id) = attributes.get("execID") else {
                    return;
                };
                if let Some((_, tx)) = self.lock().remove(exec_id) {
                    let code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                    let _ = tx.send(code);
                }
            }
            // Its execs may never report their exit.
            "die" | "destroy" | "pause" => self.lock().retain(|_, (container, _)| container != id),
            _ => {}
        }
    }
}

impl Drop for ExecExits {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// Follows the events, reconnecting with backoff.
async fn follow(exits: Weak<ExecExits>, docker: Docker, label_filter: String) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![label_filter.clone()]),
            (
                "event".to_string(),
                ["exec_die", "die", "destroy", "pause"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let mut events = docker.events(Some(opts));
        while let Some(event) = events.next().await {
            let Ok(msg) = event else { break };
            backoff = Duration::from_millis(250);
            let Some(exits) = exits.upgrade() else { return };
            let actor = msg.actor.unwrap_or_default();
            exits.on_event(
                msg.action.as_deref().unwrap_or(""),
                actor.id.as_deref().unwrap_or(""),
                &actor.attributes.unwrap_or_default(),
            );
        }
        let Some(e) = exits.upgrade() else { return };
        // Exits during the gap would be missed: their waiters ask Docker instead.
        e.lock().clear();
        drop(e);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(EVENTS_MAX_BACKOFF);
    }
}
