//! The pool's slots as Docker Swarm services, one task each, spread over the Swarm's nodes: the
//! Swarm side of the orchestrator seam. Its agents are reached over the network, never by exec.

use std::fmt;
use std::time::Duration;

/// Shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_BYTES: usize = 32;

/// The key every slot's agent key is derived from (`MASTER_KEY_FILE`). Never printed.
#[derive(Clone)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    pub fn new(bytes: Vec<u8>) -> MasterKey {
        MasterKey(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The Swarm settings of a pool.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The overlay network the server and the user services share.
    pub network: String,
    pub master_key: MasterKey,
    /// Slots one node runs at most (0: the scheduler spreads them).
    pub slots_per_node: u64,
    /// Homes are on a volume driver every node shares: slots are not pinned to a node.
    pub shared_volume: bool,
    /// How long connecting to an agent may take before its node is taken for down.
    pub connect_timeout: Duration,
}

mod agent;
mod nodes;
pub mod relay;
mod services;
mod slot;
pub mod spec;
mod volume;

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::Docker;
use futures_util::stream::BoxStream;

use super::engine;
use super::orchestrator::{Orchestrator, ReadySlot, SlotEvent, SlotHistory, SlotNode, Terminal};
use super::{PoolConfig, PoolError};

/// The pool's slots as services of the Swarm whose manager the server talks to.
pub struct SwarmServices {
    cfg: PoolConfig,
    swarm: SwarmConfig,
    docker: Docker,
    image_id: String,
    digest: String,
    /// The key generation of each slot's service, once known.
    generations: Mutex<Vec<Option<u32>>>,
    /// When each task was first seen running: its agent may still be starting for a while.
    tasks_seen: Mutex<HashMap<String, std::time::Instant>>,
    /// Serialises the creation of services while a node holds at most `slots_per_node`.
    creating: tokio::sync::Mutex<()>,
}

impl SwarmServices {
    /// Connects to the engine, refuses one that is not a Swarm manager, finds the image.
    pub async fn connect(
        cfg: &PoolConfig,
        swarm: &SwarmConfig,
    ) -> Result<SwarmServices, PoolError> {
        let docker = engine::connect().await?;
        services::check_manager(&docker).await?;
        let image_id = engine::image_id(&docker, cfg).await?;
        Ok(SwarmServices {
            digest: spec::settings_digest(cfg, swarm, &image_id),
            generations: Mutex::new(vec![None; cfg.max_containers]),
            tasks_seen: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            cfg: cfg.clone(),
            swarm: swarm.clone(),
            docker,
            image_id,
        })
    }

    fn generation(&self, idx: usize) -> Option<u32> {
        let gens = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        gens.get(idx).copied().flatten()
    }

    fn set_generation(&self, idx: usize, generation: u32) {
        let mut gens = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = gens.get_mut(idx) {
            *g = Some(generation);
        }
    }
}

#[async_trait]
impl Orchestrator for SwarmServices {
    fn docker(&self) -> &Docker {
        &self.docker
    }

    fn homes_pinned(&self) -> bool {
        spec::pins_slots(&self.swarm)
    }

    async fn prepare(&self) -> Result<(), PoolError> {
        services::check_network(&self.docker, &self.swarm.network).await?;
        // Without the relay sessions still work (each agent relays its own): a failure here is
        // the operator's to see, not the users'.
        if let Err(e) = relay::ensure(&self.docker, &self.cfg, &self.image_id).await {
            log::warn!("pool: the node relay: {e}; the agents relay their sessions themselves");
        }
        self.remove_strays().await
    }

    async fn ensure_slot(
        &self,
        idx: usize,
        _unusable: Option<&str>,
        history: SlotHistory,
    ) -> Result<ReadySlot, PoolError> {
        // A task whose agent did not answer is not replaced: on a pinned slot that would only
        // move nothing, and Swarm restarts a task whose agent died. It is checked again.
        self.bring_up(idx, history).await
    }

    async fn running(&self) -> Result<HashMap<String, String>, PoolError> {
        let tasks = nodes::wanted_tasks(&self.docker).await?;
        let services = services::list_services(&self.docker, &self.cfg).await?;
        let mut running = HashMap::new();
        for svc in services {
            let (Some(id), Some(name)) = (svc.id.as_deref(), svc.spec.and_then(|s| s.name)) else {
                continue;
            };
            let of_service = tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(id))
                .cloned()
                .collect::<Vec<_>>();
            if let Some(task_id) = services::running_task(&of_service).and_then(|t| t.id.clone()) {
                running.insert(name, task_id);
            }
        }
        Ok(running)
    }

    async fn nodes(&self) -> Result<HashMap<usize, SlotNode>, PoolError> {
        let all = nodes::list_nodes(&self.docker).await?;
        let tasks = nodes::wanted_tasks(&self.docker).await?;
        let services = services::list_services(&self.docker, &self.cfg).await?;
        let relays = relay::running_on(&self.docker, &self.cfg, &tasks).await?;
        Ok(services
            .iter()
            .filter_map(|svc| {
                let idx = nodes::slot_of(svc)?;
                let node = all.get(&nodes::node_of(svc, &tasks)?)?;
                let relay = Some(relays.contains(&node.id));
                Some((
                    idx,
                    SlotNode {
                        relay,
                        ..node.clone()
                    },
                ))
            })
            .collect())
    }

    async fn create_account(
        &self,
        idx: usize,
        _id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        agent::create_account(&self.remote(idx), username, uid).await
    }

    async fn end_processes(
        &self,
        idx: Option<usize>,
        _id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        // No slot runs that task any more: its processes ended with it.
        let Some(idx) = idx else { return Ok(()) };
        agent::end_processes(&self.remote(idx), username, uid).await
    }

    fn events(&self) -> BoxStream<'static, SlotEvent> {
        nodes::node_events(&self.docker)
    }

    fn terminal(&self, idx: usize) -> Terminal {
        Terminal::Remote(self.remote(idx))
    }
}
