//! The pool's side of a slot's agent on Swarm: its address and key, and the account, reaping and
//! lockdown checks that go to it over the network (never `docker exec` on another node's engine).

use termpool_agent_proto::{
    slot_psk, AccountRequest, FailureKind, LockdownReport, StatusReport, AGENT_PORT,
};

use super::{SwarmConfig, SwarmServices};
use crate::pool::{accounts, home_of, PoolError};
use crate::tty::remote::{AgentError, RemoteAgent};

impl SwarmServices {
    /// The agent of slot `idx` (its service name on the agents' network: with dnsrr, its task's
    /// own address), with the key of its current generation.
    pub(super) fn remote(&self, idx: usize) -> RemoteAgent {
        let slot = self.cfg.container_name(idx);
        let generation = self.generation(idx).unwrap_or_default();
        let psk = slot_key(&self.swarm, &slot, generation);
        RemoteAgent::new(format!("{slot}:{AGENT_PORT}"), slot, psk)
            .with_connect_timeout(self.swarm.connect_timeout)
    }
}

/// The key of `slot`'s agent for `generation`, derived from the master key.
pub fn slot_key(swarm: &SwarmConfig, slot: &str, generation: u32) -> [u8; 32] {
    slot_psk(swarm.master_key.bytes(), slot, generation)
}

/// Asks the agent whether its container locked down: nobody is admitted to a slot otherwise.
/// Returns the agent's report (its volume's homes and marker).
pub async fn check_lockdown(agent: &RemoteAgent) -> Result<StatusReport, PoolError> {
    let report = agent.status().await.map_err(agent_error)?;
    match lockdown_missing(&report.lockdown) {
        None => Ok(report),
        Some(what) => Err(PoolError::Provision(format!(
            "the container of slot {} did not lock down ({what}): it takes no users",
            agent.slot()
        ))),
    }
}

/// The capabilities the agent keeps after its lockdown: those of a user container's root
/// (CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID: accounts, shells, reaping). Users, never
/// root, hold none of them.
const AGENT_CAPS: u64 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7);

/// What is missing of the lockdown (hidepid, no capability beyond a user container's root's, so
/// none of SYS_ADMIN, NET_ADMIN, SETPCAP; no_new_privs; a seccomp filter).
pub fn lockdown_missing(l: &LockdownReport) -> Option<String> {
    if let Some(e) = &l.error {
        return Some(e.clone());
    }
    let caps = u64::from_str_radix(l.cap_eff.trim(), 16);
    let caps_ok = caps.is_ok_and(|c| c & !AGENT_CAPS == 0);
    let missing: Vec<&str> = [
        (!l.proc_hidepid, "/proc without hidepid"),
        (
            !caps_ok,
            "capabilities beyond the user containers' (SYS_ADMIN, NET_ADMIN, SETPCAP?)",
        ),
        (!l.no_new_privs, "no_new_privs unset"),
        (l.seccomp_filters == 0, "no seccomp filter"),
    ]
    .into_iter()
    .filter_map(|(bad, what)| bad.then_some(what))
    .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Creates the account and its home through the agent (the account script's refusals name
/// what the operator can do, as with `docker exec`).
pub async fn create_account(
    agent: &RemoteAgent,
    username: &str,
    uid: u32,
) -> Result<(), PoolError> {
    let req = AccountRequest {
        name: username.to_string(),
        uid,
        home: home_of(username),
    };
    match agent.account(&req).await {
        Ok(()) => Ok(()),
        Err(AgentError::Refused { kind, message, .. }) => {
            let code = match kind {
                FailureKind::AccountUidMismatch => Some(3),
                FailureKind::HomeNotOwned => Some(4),
                FailureKind::UidOwnsOtherHome => Some(5),
                _ => None,
            };
            let hint = accounts::refusal_hint(code, uid).unwrap_or_default();
            log::error!(
                "pool: refusing account {username} (uid {uid}) in slot {} ({kind:?}): {message}. {hint}",
                agent.slot()
            );
            Err(PoolError::Provision(format!(
                "the account {username} (uid {uid}) was refused in slot {}",
                agent.slot()
            )))
        }
        Err(e) => Err(agent_error(e)),
    }
}

/// Ends every process of an account through the agent.
pub async fn end_processes(agent: &RemoteAgent, username: &str, uid: u32) -> Result<(), PoolError> {
    agent.end_processes(uid).await.map_err(|e| match e {
        AgentError::Refused { message, .. } => PoolError::Provision(format!(
            "ending the processes of {username} in slot {} failed: {message}",
            agent.slot()
        )),
        other => agent_error(other),
    })
}

/// An agent that does not answer (or not as the slot's agent) is a node down for its users; one
/// that answers and refuses is a slot that could not be prepared.
pub fn agent_error(e: AgentError) -> PoolError {
    match e {
        AgentError::Refused { .. } => PoolError::Provision(e.to_string()),
        _ => PoolError::NodeDown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> LockdownReport {
        LockdownReport {
            proc_hidepid: true,
            // CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID.
            cap_eff: "00000000000000eb".into(),
            no_new_privs: true,
            seccomp_filters: 1,
            error: None,
        }
    }

    #[test]
    fn a_full_lockdown_admits() {
        assert_eq!(lockdown_missing(&locked()), None);
    }

    #[test]
    fn any_missing_part_refuses() {
        let cases: [fn(&mut LockdownReport); 7] = [
            |l| l.proc_hidepid = false,
            |l| l.cap_eff = "00000000002000eb".into(),
            |l| l.cap_eff = "00000000000010eb".into(),
            |l| l.cap_eff = "00000000000001eb".into(),
            |l| l.cap_eff = "garbage".into(),
            |l| l.no_new_privs = false,
            |l| l.seccomp_filters = 0,
        ];
        for spoil in cases {
            let mut l = locked();
            spoil(&mut l);
            assert!(lockdown_missing(&l).is_some(), "{l:?} must be refused");
        }
        let mut l = locked();
        l.error = Some("remount failed".into());
        assert_eq!(lockdown_missing(&l).as_deref(), Some("remount failed"));
    }
}
