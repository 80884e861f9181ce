//! Following the nodes under the pool's slots (on an orchestrator with several): slots on a node
//! that is not ready take nobody; when the node is back, its slots are prepared again. A node
//! whose relay does not run is told to the operator.

use std::collections::HashSet;
use std::sync::Arc;

use super::Pool;
use crate::pool::orchestrator::SlotNode;

impl Pool {
    /// The node of each container whose node is known.
    pub fn container_nodes(&self) -> Vec<(String, SlotNode)> {
        let st = self.lock_state();
        let known = st
            .slots
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.node.clone()?)));
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
        let mut told = HashSet::new();
        {
            let mut st = self.lock_state();
            for (idx, node) in nodes {
                let Some(slot) = st.slots.get(idx) else {
                    continue;
                };
                // (A node that is down has no relay running either: that is said below.)
                let relay_was = slot.node.as_ref().and_then(|n| n.relay);
                if let Some(news) = relay_news(relay_was, node.relay) {
                    if node.ready && told.insert(node.id.clone()) {
                        news.log(&node.name);
                    }
                }
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

/// What the operator hears of a node's relay: only a change, and a relay missing from the start.
#[derive(Debug, PartialEq, Eq)]
enum RelayNews {
    Runs,
    NotYet,
    Gone,
}

fn relay_news(was: Option<bool>, now: Option<bool>) -> Option<RelayNews> {
    match (was, now) {
        (Some(false), Some(true)) => Some(RelayNews::Runs),
        (None, Some(false)) => Some(RelayNews::NotYet),
        (Some(true), Some(false)) => Some(RelayNews::Gone),
        _ => None,
    }
}

impl RelayNews {
    fn log(&self, name: &str) {
        match self {
            RelayNews::Runs => log::info!("pool: the node relay runs on node {name}"),
            RelayNews::NotYet => log::info!(
                "pool: no node relay runs on node {name} yet: its sessions are relayed inside \
                 the users' containers until it does"
            ),
            RelayNews::Gone => log::warn!(
                "pool: no node relay runs on node {name} any more: its sessions are relayed \
                 inside the users' containers, in their CPU quota (see the relay service's tasks)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{relay_news, RelayNews};

    #[test]
    fn the_operator_hears_of_a_missing_relay_once_and_of_its_return() {
        // Missing: when first seen so, and when it stops; then its return.
        assert_eq!(relay_news(None, Some(false)), Some(RelayNews::NotYet));
        assert_eq!(relay_news(Some(true), Some(false)), Some(RelayNews::Gone));
        assert_eq!(relay_news(Some(false), Some(true)), Some(RelayNews::Runs));
        // Not again while it stays missing, nor for a relay that runs from the start, nor
        // where the pool has no relay.
        assert_eq!(relay_news(Some(false), Some(false)), None);
        assert_eq!(relay_news(None, Some(true)), None);
        assert_eq!(relay_news(Some(true), Some(true)), None);
        assert_eq!(relay_news(None, None), None);
    }
}
