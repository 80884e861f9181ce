//! Slots as containers of the one engine the server talks to: today's single-host pool (hidepid
//! helper, agent socket bind-mounted from this host, accounts and reaping by `docker exec`).

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::{Orchestrator, ReadySlot, SlotEvent, SlotHistory, Terminal};
use crate::pool::engine::{self, list_labelled, remove, short};
use crate::pool::spec::LABEL_POOL;
use crate::pool::{accounts, container, processes, quota, PoolConfig, PoolError};

/// The pool's containers on one Docker engine.
pub struct DockerEngine {
    cfg: PoolConfig,
    docker: Docker,
    image_id: String,
}

impl DockerEngine {
    /// Connects to the engine and finds the pool's image.
    pub async fn connect(cfg: &PoolConfig) -> Result<DockerEngine, PoolError> {
        let docker = engine::connect().await?;
        let image_id = engine::image_id(&docker, cfg).await?;
        Ok(DockerEngine {
            cfg: cfg.clone(),
            docker,
            image_id,
        })
    }
}

#[async_trait]
impl Orchestrator for DockerEngine {
    fn docker(&self) -> &Docker {
        &self.docker
    }

    async fn prepare(&self) -> Result<(), PoolError> {
        container::ensure_volume(&self.docker, &self.cfg).await?;
        container::ensure_network(&self.docker, &self.cfg).await?;
        container::remove_strays(&self.docker, &self.cfg).await
    }

    /// One volume for every slot, on this engine: there is no other volume to meet, and the
    /// slot's history does not matter.
    async fn ensure_slot(
        &self,
        idx: usize,
        unusable: Option<&str>,
        _history: SlotHistory,
    ) -> Result<ReadySlot, PoolError> {
        if let Some(id) = unusable {
            log::warn!(
                "pool: replacing container {} ({}): its session agent cannot be reached",
                self.cfg.container_name(idx),
                short(id)
            );
            remove(&self.docker, id).await?;
        }
        let id = container::ensure_running(&self.docker, &self.cfg, &self.image_id, idx).await?;
        Ok(ReadySlot { id, node: None })
    }

    async fn running(&self) -> Result<HashMap<String, String>, PoolError> {
        let listed = list_labelled(&self.docker, LABEL_POOL, &self.cfg.pool_label).await?;
        Ok(listed
            .into_iter()
            .filter(|c| c.2)
            .map(|(id, name, _)| (name, id))
            .collect())
    }

    async fn create_account(
        &self,
        _idx: usize,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        // The quota first: on btrfs its helper makes the home (a limited subvolume), which the
        // account script then finds; a quota that cannot be set leaves no account behind.
        if self.cfg.user_disk_quota_mb > 0 {
            quota::set_quota(&self.docker, &self.cfg, username, uid).await?;
        }
        accounts::ensure_account(&self.docker, id, username, uid).await
    }

    async fn end_processes(
        &self,
        _idx: Option<usize>,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        processes::end_processes(&self.docker, id, username, uid).await
    }

    fn events(&self) -> BoxStream<'static, SlotEvent> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_POOL}={}", self.cfg.pool_label)],
            ),
        ]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let events = self.docker.events(Some(opts));
        // The stream ends at its first error: the pool then re-checks every slot.
        let events = events.take_while(|e| std::future::ready(e.is_ok()));
        events
            .filter_map(|e| {
                let msg = e.ok();
                std::future::ready(msg.and_then(container_event))
            })
            .boxed()
    }

    fn terminal(&self, idx: usize) -> Terminal {
        match self.cfg.agent_socket(&self.cfg.container_name(idx)) {
            Some(socket) => Terminal::Socket(socket),
            None => Terminal::Exec,
        }
    }
}

/// A container event that matters: it died or was paused. An "oom" event means one process was
/// killed inside; the container itself lives on.
fn container_event(msg: bollard::models::EventMessage) -> Option<SlotEvent> {
    let action = msg.action.as_deref().unwrap_or("");
    if !matches!(action, "die" | "destroy" | "pause") {
        return None;
    }
    let id = msg.actor?.id?;
    Some(SlotEvent::Dead { id })
}
