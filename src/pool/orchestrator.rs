//! The seam between the pool's placement logic and what runs its slots: a container per slot on
//! one engine ([`docker::DockerEngine`]) or a Swarm service per slot (`super::swarm`). Everything
//! above it (assigner, state, store, naming) is shared.

pub mod docker;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::Docker;
use futures_util::stream::BoxStream;

use super::PoolError;

/// What the pool is told about its slots between health rounds. A stream that ends means it
/// broke: nothing is known any more until it is followed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotEvent {
    /// What ran with this id stopped, or is going away.
    Dead { id: String },
    /// Some node changed state: the slots' nodes are to be looked at again.
    Nodes,
}

/// The node holding a slot, on an orchestrator with several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotNode {
    /// The node's id: slots of one node share its volume (and homes, when pinned).
    pub id: String,
    /// The node's name (its hostname), for the operator.
    pub name: String,
    /// Whether the node is up: slots on other nodes take nobody.
    pub ready: bool,
    /// Whether the node's relay runs (`None`: the orchestrator has none). Without it the node's
    /// agents relay their sessions inside the users' containers.
    pub relay: Option<bool>,
}

/// A slot made ready: the id of what runs in it (a container, a Swarm task), and its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadySlot {
    pub id: String,
    pub node: Option<SlotNode>,
}

/// What the store says of a slot, for an orchestrator that checks that the volume a slot meets
/// is its own (a Swarm node's local volume may be a fresh one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotHistory {
    /// The slot was made ready before (the store records its container).
    pub prepared: bool,
    /// Accounts the store places in the slot.
    pub accounts: usize,
}

impl SlotHistory {
    /// Whether homes must be on the slot's volume already: it was prepared, and holds accounts.
    pub fn homes_expected(&self) -> bool {
        self.prepared && self.accounts > 0
    }
}

/// How the server reaches the shells of a slot.
#[derive(Debug, Clone)]
pub enum Terminal {
    /// The slot's session agent at this unix socket, handing over PTY masters.
    Socket(PathBuf),
    /// No agent: each session is a `docker exec`.
    Exec,
    /// The slot's session agent over the network, authenticated by the slot's key.
    Remote(crate::tty::remote::RemoteAgent),
}

/// What differs between running slots as containers of one engine and as Swarm services.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// The engine the server talks to (the manager's, on Swarm).
    fn docker(&self) -> &Docker;

    /// Whether users' homes stay on the node of their slot, so that a user must wait for that
    /// node rather than be placed elsewhere.
    fn homes_pinned(&self) -> bool {
        false
    }

    /// At start: creates what the slots share and removes what is no slot's.
    async fn prepare(&self) -> Result<(), PoolError>;

    /// Makes slot `idx` ready for users (running, hardened, its agent answering), adopting what
    /// runs there when it can; `unusable`, if any, is removed first. `history` is what the store
    /// says of the slot.
    async fn ensure_slot(
        &self,
        idx: usize,
        unusable: Option<&str>,
        history: SlotHistory,
    ) -> Result<ReadySlot, PoolError>;

    /// The id of what runs in each slot now, by slot name.
    async fn running(&self) -> Result<HashMap<String, String>, PoolError>;

    /// The node of each slot, by slot index, where one is known (nothing on a single engine).
    async fn nodes(&self) -> Result<HashMap<usize, SlotNode>, PoolError> {
        Ok(HashMap::new())
    }

    /// Creates account `username` with `uid` and its home in slot `idx` (running as `id`).
    async fn create_account(
        &self,
        idx: usize,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError>;

    /// Ends every process of account `uid` in `id`, of slot `idx` unless no slot runs it any
    /// more; returns once none is left.
    async fn end_processes(
        &self,
        idx: Option<usize>,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError>;

    /// Follows what happens to the slots (see [`SlotEvent`]).
    fn events(&self) -> BoxStream<'static, SlotEvent>;

    /// How shells of slot `idx` are started.
    fn terminal(&self, idx: usize) -> Terminal;
}
