//! Keeping one slot's service ready: adopting it, or creating it (a key secret of a new
//! generation, the service, its pin to the node of its first task), then waiting until its task
//! runs and its agent reports the lockdown.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::Service;

use super::spec::{self, SlotService, LABEL_KEY_GENERATION};
use super::{agent, nodes, services, SwarmServices};
use crate::pool::orchestrator::{ReadySlot, SlotHistory};
use crate::pool::spec::{LABEL_CONFIG, LABEL_POOL};
use crate::pool::PoolError;

/// How long a slot's task may take to run and its agent to lock down (the image is on the node;
/// a Swarm schedules within seconds).
const SLOT_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long after the server first saw a task running its agent may still be starting.
const AGENT_START_GRACE: Duration = Duration::from_secs(20);
/// How often a starting slot is looked at again.
const POLL: Duration = Duration::from_millis(250);

impl SwarmServices {
    /// Adopts the slot's service when it was created with the current settings, replaces it
    /// otherwise (on the same node: the homes are there), then waits until it is ready.
    pub(super) async fn bring_up(
        &self,
        idx: usize,
        history: SlotHistory,
    ) -> Result<ReadySlot, PoolError> {
        let name = self.cfg.container_name(idx);
        let service = match services::inspect_service(&self.docker, &name).await? {
            Some(svc) if self.adoptable(&svc)? => svc,
            Some(svc) => {
                log::info!("pool: replacing service {name} (created with other settings)");
                let pin = svc.spec.as_ref().and_then(spec::pinned_node);
                services::remove_service(&self.docker, &name).await?;
                let created = self.create(idx, pin.as_deref()).await?;
                for old in services::secrets_of(&svc) {
                    services::remove_secret(&self.docker, &old).await;
                }
                created
            }
            None => self.create(idx, None).await?,
        };
        self.wait_ready(idx, service, history).await
    }

    /// Whether a service of this name is this pool's and made with the current settings.
    fn adoptable(&self, svc: &Service) -> Result<bool, PoolError> {
        let spec = svc.spec.as_ref();
        let labels = spec.and_then(|s| s.labels.clone()).unwrap_or_default();
        let name = spec.and_then(|s| s.name.clone()).unwrap_or_default();
        if labels.get(LABEL_POOL) != Some(&self.cfg.pool_label) {
            return Err(PoolError::Provision(format!(
                "a service named {name} exists but is not part of pool {}: remove or rename it",
                self.cfg.pool_label
            )));
        }
        let generation = labels
            .get(LABEL_KEY_GENERATION)
            .and_then(|g| g.parse::<u32>().ok());
        if labels.get(LABEL_CONFIG) != Some(&self.digest) || generation.is_none() {
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates the slot's key secret and service, pinned to `pin` if given; returns the service.
    async fn create(&self, idx: usize, pin: Option<&str>) -> Result<Service, PoolError> {
        // One creation at a time with a cap per node: the next one must see this one's node.
        let _serial = match self.swarm.slots_per_node {
            0 => None,
            _ => Some(self.creating.lock().await),
        };
        let name = self.cfg.container_name(idx);
        let generation = new_generation();
        let secret_name = spec::secret_name(&self.cfg, idx, generation);
        let key = agent::slot_key(&self.swarm, &name, generation);
        let full_nodes = match pin {
            Some(_) => Vec::new(),
            None => self.full_nodes().await?,
        };
        let secret_id =
            services::create_secret(&self.docker, &self.cfg, idx, &secret_name, &key).await?;
        let slot = SlotService {
            cfg: &self.cfg,
            swarm: &self.swarm,
            image_id: &self.image_id,
            idx,
            generation,
            secret_id: &secret_id,
            pinned_to: pin,
            full_nodes: &full_nodes,
        };
        let created =
            services::create_service(&self.docker, spec::service_spec(&slot, &self.digest)).await;
        if let Err(e) = created {
            services::remove_secret(&self.docker, &secret_id).await;
            return Err(e);
        }
        log::info!("pool: service {name} created (key generation {generation})");
        if self.swarm.slots_per_node > 0 {
            self.wait_for_node(&name).await?;
        }
        services::inspect_service(&self.docker, &name)
            .await?
            .ok_or_else(|| PoolError::Provision(format!("service {name} vanished at once")))
    }

    /// Waits (a few seconds at most) until Swarm has given service `name`'s task a node.
    async fn wait_for_node(&self, name: &str) -> Result<(), PoolError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let tasks = services::wanted_tasks(&self.docker, name).await?;
            if tasks.iter().any(|t| t.node_id.is_some()) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Waits until the service's task runs (pinning the service to its node the first time), its
    /// agent reports the lockdown and its volume is the slot's own (see `volume`). A pinned slot
    /// whose node is down fails at once.
    async fn wait_ready(
        &self,
        idx: usize,
        mut service: Service,
        history: SlotHistory,
    ) -> Result<ReadySlot, PoolError> {
        let name = self.cfg.container_name(idx);
        let labels = service.spec.as_ref().and_then(|s| s.labels.clone());
        let generation = labels
            .and_then(|l| l.get(LABEL_KEY_GENERATION).and_then(|g| g.parse().ok()))
            .unwrap_or_default();
        self.set_generation(idx, generation);
        let deadline = tokio::time::Instant::now() + SLOT_START_TIMEOUT;
        loop {
            let tasks = services::wanted_tasks(&self.docker, &name).await?;
            let all_nodes = nodes::list_nodes(&self.docker).await?;
            let node_id = nodes::node_of(&service, &tasks);
            let node = node_id.as_ref().and_then(|id| all_nodes.get(id)).cloned();
            if let Some(n) = node.as_ref().filter(|n| !n.ready) {
                return Err(PoolError::NodeDown(format!(
                    "slot {name} is on node {}, which is down",
                    n.name
                )));
            }
            if let Some(task) = services::running_task(&tasks) {
                let task_id = task.id.clone().unwrap_or_default();
                if let (Some(node_id), true) = (&task.node_id, self.homes_pinned_now(&service)) {
                    service = self.pin(&service, node_id).await?;
                }
                let starting = self.task_starting(&task_id);
                let agent = self.remote(idx);
                match agent::check_lockdown(&agent).await {
                    Ok(report) => {
                        let volume = self.check_volume(&agent, idx, &report, history, &node);
                        volume.await?;
                        return Ok(ReadySlot { id: task_id, node });
                    }
                    Err(e @ PoolError::Provision(_)) => return Err(e),
                    // A task running for a while whose agent does not answer: its node is cut
                    // off (Swarm notices only after missed heartbeats). Its users learn it now.
                    Err(e) if !starting || tokio::time::Instant::now() >= deadline => {
                        return Err(e)
                    }
                    Err(_) => {}
                }
            } else if services::unschedulable(&tasks) {
                return Err(PoolError::Provision(format!(
                    "service {name} cannot be placed on any node ({}): every node holds \
                     SLOTS_PER_NODE slots, or none has the image",
                    services::task_trouble(&tasks)
                )));
            } else if tokio::time::Instant::now() >= deadline {
                return Err(PoolError::Provision(format!(
                    "service {name} did not start within {}s: {}",
                    SLOT_START_TIMEOUT.as_secs(),
                    services::task_trouble(&tasks)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The nodes that hold `SLOTS_PER_NODE` of the pool's slots already.
    async fn full_nodes(&self) -> Result<Vec<String>, PoolError> {
        if self.swarm.slots_per_node == 0 {
            return Ok(Vec::new());
        }
        let tasks = nodes::wanted_tasks(&self.docker).await?;
        let services = services::list_services(&self.docker, &self.cfg).await?;
        let of_slots: Vec<String> = services
            .iter()
            .filter_map(|svc| nodes::node_of(svc, &tasks))
            .collect();
        Ok(spec::full_nodes(&of_slots, self.swarm.slots_per_node))
    }

    /// Whether task `id` was first seen running less than [`AGENT_START_GRACE`] ago.
    fn task_starting(&self, id: &str) -> bool {
        let mut seen = self.tasks_seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Only the slots' current tasks matter: forget the rest now and then.
        if seen.len() > 4 * self.cfg.max_containers {
            seen.retain(|_, at| now.duration_since(*at) < AGENT_START_GRACE);
        }
        let first = *seen.entry(id.to_string()).or_insert(now);
        now.duration_since(first) < AGENT_START_GRACE
    }

    /// Whether `service` is still to be pinned to the node of its task.
    fn homes_pinned_now(&self, service: &Service) -> bool {
        spec::pins_slots(&self.swarm) && service.spec.as_ref().and_then(spec::pinned_node).is_none()
    }

    /// Pins the service to `node_id`. Swarm does not restart a task whose node still meets the
    /// new constraints. Returns the service as updated.
    async fn pin(&self, service: &Service, node_id: &str) -> Result<Service, PoolError> {
        let mut spec = service.spec.clone().unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let task = spec.task_template.get_or_insert_with(Default::default);
        let placement = task.placement.get_or_insert_with(Default::default);
        let constraints = placement.constraints.get_or_insert_with(Vec::new);
        constraints.push(spec::pin_constraint(node_id));
        services::update_service(&self.docker, service, spec).await?;
        log::info!("pool: service {name} pinned to node {node_id}");
        services::inspect_service(&self.docker, &name)
            .await?
            .ok_or_else(|| PoolError::Provision(format!("service {name} vanished")))
    }

    /// Removes the pool's services that are no slot's, and key secrets no service uses.
    pub(super) async fn remove_strays(&self) -> Result<(), PoolError> {
        let wanted: Vec<String> = (0..self.cfg.max_containers)
            .map(|i| self.cfg.container_name(i))
            .collect();
        for svc in services::list_services(&self.docker, &self.cfg).await? {
            let name = svc.spec.and_then(|s| s.name).unwrap_or_default();
            if !wanted.contains(&name) {
                log::info!("pool: removing stray service {name}");
                services::remove_service(&self.docker, &name).await?;
            }
        }
        let services = services::list_services(&self.docker, &self.cfg).await?;
        let in_use: Vec<String> = services.iter().flat_map(services::secrets_of).collect();
        services::remove_unused_secrets(&self.docker, &self.cfg, &in_use).await
    }
}

/// A key generation never used before for the slot: the clock's seconds (slots are brought up
/// one at a time each, and never twice in a second).
fn new_generation() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH);
    secs.map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}
