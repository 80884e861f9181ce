//! The Swarm calls the store makes (configs and the manager check), each bounded by a timeout and
//! run to completion from the store's synchronous methods.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use bollard::errors::Error as DockerError;
use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::{ListConfigsOptions, UpdateConfigOptions};
use bollard::Docker;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use super::super::StoreError;

/// Longest wait for one Swarm call: the manager answers in milliseconds, or it has lost quorum.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a write that Swarm may refuse because of another writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Write {
    Done,
    /// A create met an object of that name, or an update met a newer version (or none at all).
    Conflict,
}

/// A Docker client on a Swarm manager, with the runtime its calls run on.
pub(super) struct Api {
    docker: Docker,
    handle: Handle,
    /// A runtime of the store's own, when the caller's cannot serve blocking calls.
    own: Option<Runtime>,
}

impl Api {
    /// Captures the current runtime if it is multi-threaded. A current-thread runtime (actix's)
    /// drives its I/O only on its one thread, which may be the very thread waiting for the call,
    /// so the store then runs its calls on a one-thread runtime of its own.
    pub(super) fn new(docker: Docker) -> Result<Api, StoreError> {
        let (handle, own) = match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => (h, None),
            _ => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("termpool-swarm-store")
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        failed(
                            "opening the store in the Swarm",
                            format!("no runtime for the Docker calls: {e}"),
                        )
                    })?;
                (rt.handle().clone(), Some(rt))
            }
        };
        Ok(Api {
            docker,
            handle,
            own,
        })
    }

    /// Runs `fut` on the captured runtime and waits for it, at most [`CALL_TIMEOUT`].
    ///
    /// The store's methods are synchronous and normally run on `spawn_blocking` threads, where
    /// `Handle::block_on` is allowed; but it panics on a thread driving async tasks (a store
    /// opened from `async` code), so the call is made from a scoped thread of its own, which is
    /// never such a thread. A thread per call costs microseconds against a Raft write's
    /// milliseconds.
    fn run<T: Send>(
        &self,
        context: &str,
        fut: impl Future<Output = Result<T, DockerError>> + Send,
    ) -> Result<Result<T, DockerError>, StoreError> {
        let handle = &self.handle;
        let outcome = std::thread::scope(|s| {
            s.spawn(move || {
                handle.block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
            })
            .join()
        });
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_elapsed)) => Err(failed(
                context,
                format!("the Swarm manager gave no answer within {CALL_TIMEOUT:?}"),
            )),
            Err(_panic) => Err(failed(context, "the Docker call panicked".into())),
        }
    }

    /// Fails unless the engine answers as a manager of an active Swarm.
    pub(super) fn check_manager(&self) -> Result<(), StoreError> {
        let context = "opening the store in the Swarm";
        match self.run(context, self.docker.inspect_swarm())? {
            Ok(_) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 503,
                message,
            }) => Err(failed(
                context,
                format!("this Docker engine is not a Swarm manager: {message}"),
            )),
            Err(e) => Err(docker_failed(context, e)),
        }
    }

    /// Every config carrying all of `labels` (`key=value`).
    pub(super) fn list(&self, labels: Vec<String>) -> Result<Vec<Config>, StoreError> {
        let context = "listing the store's records";
        let options = ListConfigsOptions {
            filters: Some(HashMap::from([("label".to_string(), labels)])),
        };
        self.run(context, self.docker.list_configs(Some(options)))?
            .map_err(|e| docker_failed(context, e))
    }

    /// Creates config `name`; [`Write::Conflict`] if one of that name exists.
    pub(super) fn create(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        data: &[u8],
    ) -> Result<Write, StoreError> {
        let context = format!("creating record {name}");
        let spec = ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            templating: None,
        };
        match self.run(&context, self.docker.create_config(spec))? {
            Ok(_) => Ok(Write::Done),
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(Write::Conflict),
            Err(e) => Err(docker_failed(&context, e)),
        }
    }

    /// Replaces the labels of `config` (the only part of a config Swarm lets change), if it is
    /// still at the version read; [`Write::Conflict`] if another write came first.
    pub(super) fn update_labels(
        &self,
        config: &Config,
        labels: HashMap<String, String>,
    ) -> Result<Write, StoreError> {
        let id = config.id.as_deref().unwrap_or_default();
        let context = format!("updating record {id}");
        let version = config.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let mut spec = config.spec.clone().unwrap_or_default();
        spec.labels = Some(labels);
        let options = UpdateConfigOptions {
            version: i64::try_from(version).unwrap_or(i64::MAX),
        };
        match self.run(&context, self.docker.update_config(id, spec, options))? {
            Ok(()) => Ok(Write::Done),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Write::Conflict),
            Err(DockerError::DockerResponseServerError { message, .. })
                if message.contains("out of sequence") =>
            {
                Ok(Write::Conflict)
            }
            Err(e) => Err(docker_failed(&context, e)),
        }
    }

    /// Removes a config (gone already is fine).
    pub(super) fn delete(&self, id: &str) -> Result<(), StoreError> {
        let context = format!("removing record {id}");
        match self.run(&context, self.docker.delete_config(id))? {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(docker_failed(&context, e)),
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which panics on an async thread.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

pub(super) fn failed(context: &str, reason: String) -> StoreError {
    StoreError::Swarm {
        context: context.to_string(),
        reason,
    }
}

/// An error of the Docker API, with the unreachable case said plainly.
fn docker_failed(context: &str, e: DockerError) -> StoreError {
    let reason = match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => format!("the Swarm manager refused ({status_code}): {message}"),
        other => format!("the Swarm manager's API is unreachable: {other}"),
    };
    failed(context, reason)
}
