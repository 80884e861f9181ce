//! The placement rules (sticky, least loaded, evict the least recently seen idle user, a home
//! pinned to its volume) as one pure function, so they can be tested exhaustively without Docker.

/// One container of the pool as the assigner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerSlot {
    /// The container's slot index in the pool.
    pub index: usize,
    /// Whether the container can take users (running, or replaceable right now).
    pub alive: bool,
    /// Users it holds at most.
    pub capacity: usize,
    /// The volume holding the homes of its users: containers with the same value share it (the
    /// containers of one node, with homes pinned to nodes).
    pub volume: usize,
}

/// A user's current assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment<'a> {
    pub user: &'a str,
    /// Slot index of the container the user is assigned to.
    pub container: usize,
    /// Unix seconds of the user's last placement.
    pub last_seen: i64,
}

/// Where the requesting user goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Back to the container it is assigned to.
    Sticky { idx: usize },
    /// To a free slot of this container.
    New { idx: usize },
    /// To this container, in the slot taken from `evicted_user` (whose assignment must be
    /// dropped).
    Evict { idx: usize, evicted_user: String },
}

impl Decision {
    /// The slot index of the container the user goes to.
    pub fn idx(&self) -> usize {
        match self {
            Decision::Sticky { idx } | Decision::New { idx } | Decision::Evict { idx, .. } => *idx,
        }
    }
}

/// Why nobody can be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("pool full: every slot is held by a user with a live session")]
    PoolFull,
    #[error("no container of the pool is alive")]
    NoContainer,
    /// The user's home is on this node, which is down: placing the user elsewhere would give it
    /// an empty home.
    #[error("the node {0} holding the user's slot is down")]
    NodeDown(String),
    /// The user's slot met a volume that is not its own (the message says which): placing the
    /// user elsewhere would give it an empty home.
    #[error("{0}")]
    WrongVolume(String),
    /// No container on the volume holding the user's home can take users now: placing the user
    /// elsewhere would give it an empty home.
    #[error("no container on the volume holding the user's home is alive")]
    HomeUnavailable,
    /// [`AssignError::HomeUnavailable`] with the reason the pool knows (the home slot's last
    /// provisioning error).
    #[error("the slot holding the user's home is failing: {0}")]
    HomeFailing(String),
}

/// Decides where `user` goes. Pure: the caller persists the decision (and the eviction).
/// `has_live_session` tells whose slot must not be taken; the pool also counts users whose
/// placement is under way or was just answered, whose sessions are not bound yet. `home`, if
/// given, is the volume holding the user's home: the user goes only to a container on it (a
/// newcomer, with no home yet, goes anywhere).
pub fn assign(
    containers: &[ContainerSlot],
    assignments: &[Assignment<'_>],
    has_live_session: &dyn Fn(&str) -> bool,
    user: &str,
    home: Option<usize>,
) -> Result<Decision, AssignError> {
    let alive = |idx: usize| containers.iter().any(|c| c.index == idx && c.alive);
    if !containers.iter().any(|c| c.alive) {
        return Err(AssignError::NoContainer);
    }
    // The containers the user may go to.
    let open: Vec<ContainerSlot> = containers
        .iter()
        .filter(|c| c.alive && home.is_none_or(|v| c.volume == v))
        .copied()
        .collect();
    if open.is_empty() {
        return Err(AssignError::HomeUnavailable);
    }
    let takes = |idx: usize| open.iter().any(|c| c.index == idx);
    if let Some(own) = assignments.iter().find(|a| a.user == user) {
        if takes(own.container) {
            return Ok(Decision::Sticky { idx: own.container });
        }
    }
    // Slot holders other than the requester, on alive containers.
    let holders: Vec<&Assignment> = assignments
        .iter()
        .filter(|a| a.user != user && alive(a.container))
        .collect();
    if let Some(idx) = least_loaded_free(&open, &holders) {
        return Ok(Decision::New { idx });
    }
    holders
        .iter()
        .filter(|a| takes(a.container) && !has_live_session(a.user))
        .min_by_key(|a| (a.last_seen, a.user))
        .map(|a| Decision::Evict {
            idx: a.container,
            evicted_user: a.user.to_string(),
        })
        .ok_or(AssignError::PoolFull)
}

/// The alive container with a free slot and the fewest holders (ties: lowest index).
fn least_loaded_free(containers: &[ContainerSlot], holders: &[&Assignment]) -> Option<usize> {
    containers
        .iter()
        .filter(|c| c.alive)
        .map(|c| {
            let load = holders.iter().filter(|a| a.container == c.index).count();
            (load, c.index, c.capacity)
        })
        .filter(|(load, _, cap)| load < cap)
        .min_by_key(|(load, idx, _)| (*load, *idx))
        .map(|(_, idx, _)| idx)
}

#[cfg(test)]
mod home_tests;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;
