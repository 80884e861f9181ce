//! Following the nodes under the pool's slots (on an orchestrator with several): slots on a node
//! that is not ready take nobody; when the node is back, its slots are prepared again.

use std::sync::Arc;

use super::Pool;

impl Pool {
    /// The node of each container whose node is known, and whether it is ready.
    pub fn container_nodes(&self) -> Vec<(String, String, bool)> {
        let st = self.lock_state();
        let known = st.slots.iter().filter_map(|s| {
            let node = s.node.as_ref()?;
            Some((s.name.clone(), node.name.clone(), node.ready))
        });
        known.collect()
    }

    /// Asks the orchestrator for every slot's node and records it; a slot whose node came back
    /// is prepared again (a new task: its accounts are created again from the store).
    pub(super) async fn refresh_nodes(self: &Arc<Self>) {
        let nodes = match self.orch.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                log::warn!("pool: listing the slots' nodes: {e}");
                return;
            }
        };
        let mut back = Vec::new();
        {
            let mut st = self.lock_state();
            for (idx, node) in nodes {
                let Some(slot) = st.slots.get(idx) else {
                    continue;
                };
                let was_down = slot.node.as_ref().is_some_and(|n| !n.ready);
                if was_down == node.ready {
                    log::warn!(
                        "pool: node {} of {} is {}",
                        node.name,
                        slot.name,
                        if node.ready { "ready again" } else { "down" }
                    );
                }
                if was_down && node.ready {
                    back.push(idx);
                }
                st.set_node(idx, Some(node));
            }
        }
        for idx in back {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = pool.ensure_slot(idx).await {
                    log::warn!("pool: slot {idx} after its node came back: {e}");
                }
            });
        }
    }
}
