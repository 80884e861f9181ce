//! The Swarm's nodes as the pool sees them: which node holds each slot (its pin, or its running
//! task's node) and whether that node is ready; node events, for the pool to look again.

use std::collections::HashMap;

use bollard::models::{NodeState, Service, Task};
use bollard::query_parameters::{EventsOptions, ListNodesOptions, ListTasksOptions};
use bollard::Docker;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::spec::pinned_node;
use crate::pool::engine::docker_err;
use crate::pool::orchestrator::{SlotEvent, SlotNode};
use crate::pool::spec::LABEL_SLOT;
use crate::pool::PoolError;

/// Every node of the Swarm by id: its hostname and whether it is ready.
pub async fn list_nodes(docker: &Docker) -> Result<HashMap<String, SlotNode>, PoolError> {
    let nodes = docker
        .list_nodes(None::<ListNodesOptions>)
        .await
        .map_err(docker_err("listing the Swarm's nodes"))?;
    Ok(nodes
        .into_iter()
        .filter_map(|n| {
            let id = n.id?;
            let name = n
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_else(|| id.clone());
            let ready = n.status.and_then(|s| s.state) == Some(NodeState::READY);
            let node = SlotNode {
                id: id.clone(),
                name,
                ready,
                relay: None,
            };
            Some((id, node))
        })
        .collect())
}

/// Every task of the Swarm that is meant to run.
pub async fn wanted_tasks(docker: &Docker) -> Result<Vec<Task>, PoolError> {
    let filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
    let opts = ListTasksOptions {
        filters: Some(filters),
    };
    docker
        .list_tasks(Some(opts))
        .await
        .map_err(docker_err("listing the Swarm's tasks"))
}

/// The node id holding the slot of `service`: its pin, else the node of its task.
pub fn node_of(service: &Service, tasks: &[Task]) -> Option<String> {
    if let Some(pin) = service.spec.as_ref().and_then(pinned_node) {
        return Some(pin);
    }
    let id = service.id.as_deref()?;
    tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id))
        .find_map(|t| t.node_id.clone())
}

/// The slot index a service of the pool stands for, from its label.
pub fn slot_of(service: &Service) -> Option<usize> {
    let labels = service.spec.as_ref()?.labels.as_ref()?;
    labels.get(LABEL_SLOT)?.parse().ok()
}

/// Node events of the Swarm, each telling the pool to look at the nodes again. Ends at the first
/// error (the pool then re-checks every slot).
pub fn node_events(docker: &Docker) -> BoxStream<'static, SlotEvent> {
    let filters = HashMap::from([("type".to_string(), vec!["node".to_string()])]);
    let opts = EventsOptions {
        filters: Some(filters),
        ..Default::default()
    };
    docker
        .events(Some(opts))
        .take_while(|e| std::future::ready(e.is_ok()))
        .map(|_| SlotEvent::Nodes)
        .boxed()
}
