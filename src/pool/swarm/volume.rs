//! A slot's volume checked against its marker before anyone is admitted: a node's local volume
//! may be a fresh one where the slot's homes are merely elsewhere, and nobody must get an empty
//! home (or a home on another pool's volume) for that.

use termpool_agent_proto::{parse_marker, StatusReport, VolumeMark, VOLUME_MARKER, WORKSPACE};

use super::{agent, SwarmServices};
use crate::pool::orchestrator::{SlotHistory, SlotNode};
use crate::pool::PoolError;
use crate::tty::remote::RemoteAgent;

/// What a slot may do with the volume it meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The marker names the slot: its homes are here.
    Own,
    /// No homes are expected of the slot, and the volume is no other pool's: mark it the
    /// slot's.
    Mark,
    /// Not the slot's volume, for this reason: nobody of the slot is admitted, nothing is made.
    Wrong(String),
}

/// Judges the volume whose marker reads `marker` (`None`: no marker) for the slot `expected`.
pub fn judge(expected: &VolumeMark, marker: Option<&str>, history: SlotHistory) -> Verdict {
    let marks = match marker.map(parse_marker).transpose() {
        Ok(marks) => marks.unwrap_or_default(),
        Err(line) => return Verdict::Wrong(format!("its marker holds a foreign line {line:?}")),
    };
    if let Some(other) = marks.iter().find(|m| m.pool != expected.pool) {
        return Verdict::Wrong(format!("it is pool {}'s", other.pool));
    }
    if marks.contains(expected) {
        return Verdict::Own;
    }
    if history.homes_expected() {
        let why = match marks.is_empty() {
            true => "it has no marker".to_string(),
            false => "its marker names other slots only".to_string(),
        };
        return Verdict::Wrong(format!(
            "{why}, although the store places {} account(s) in the slot",
            history.accounts
        ));
    }
    Verdict::Mark
}

impl SwarmServices {
    /// Checks that the volume slot `idx`'s agent reports is the slot's own, and marks it the
    /// slot's when nothing is expected of it yet. A wrong one is logged for the operator with
    /// what to do, and refused: no account is created on it.
    pub(super) async fn check_volume(
        &self,
        agent: &RemoteAgent,
        idx: usize,
        report: &StatusReport,
        history: SlotHistory,
        node: &Option<SlotNode>,
    ) -> Result<(), PoolError> {
        let expected = VolumeMark {
            pool: self.cfg.pool_label.clone(),
            slot: u32::try_from(idx).unwrap_or(u32::MAX),
        };
        let name = agent.slot();
        let node = node.as_ref().map_or("(unknown)", |n| n.name.as_str());
        match judge(&expected, report.volume_marker.as_deref(), history) {
            Verdict::Own => Ok(()),
            Verdict::Mark => {
                agent
                    .mark_volume(&expected)
                    .await
                    .map_err(agent::agent_error)?;
                log::info!("pool: slot {name} marked its volume on node {node}");
                Ok(())
            }
            Verdict::Wrong(why) => {
                log::error!(
                    "pool: slot {name} on node {node} is refused: the volume it meets is not the \
                     one holding its users' homes ({why}). Expected the line {:?} in \
                     {WORKSPACE}/{VOLUME_MARKER}; found {:?}. Its users are told their files \
                     are unreachable, and nothing is created on this volume. Bring the slot's \
                     volume back on that node; if its files are lost for good, add that line to \
                     the marker there.",
                    expected.line(),
                    report.volume_marker.as_deref().unwrap_or("no marker"),
                );
                Err(PoolError::WrongVolume(format!(
                    "slot {name} on node {node}: {why}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(pool: &str, slot: u32) -> VolumeMark {
        VolumeMark::new(pool, slot)
    }

    const FRESH: SlotHistory = SlotHistory {
        prepared: false,
        accounts: 0,
    };
    const WITH_HOMES: SlotHistory = SlotHistory {
        prepared: true,
        accounts: 2,
    };

    fn is_wrong(v: &Verdict) -> bool {
        matches!(v, Verdict::Wrong(_))
    }

    #[test]
    fn the_slots_own_marker_admits() {
        let me = mark("pool", 1);
        let content = format!("{}\n{}", mark("pool", 0).line(), me.line());
        for history in [FRESH, WITH_HOMES] {
            assert_eq!(judge(&me, Some(&content), history), Verdict::Own);
        }
    }

    #[test]
    fn a_volume_without_the_slots_line_is_marked_only_when_no_homes_are_expected() {
        let me = mark("pool", 1);
        let others = mark("pool", 0).line();
        for marker in [None, Some(""), Some(others.as_str())] {
            assert_eq!(judge(&me, marker, FRESH), Verdict::Mark, "{marker:?}");
            let v = judge(&me, marker, WITH_HOMES);
            assert!(is_wrong(&v), "{marker:?}: {v:?}");
        }
        // Accounts placed in a slot never made ready (a newcomer waiting for its first start)
        // have no home anywhere yet; a slot made ready that holds nobody has none to lose.
        let newcomer = SlotHistory {
            prepared: false,
            accounts: 1,
        };
        let emptied = SlotHistory {
            prepared: true,
            accounts: 0,
        };
        assert_eq!(judge(&me, None, newcomer), Verdict::Mark);
        assert_eq!(judge(&me, None, emptied), Verdict::Mark);
    }

    #[test]
    fn another_pools_volume_or_a_foreign_marker_is_refused_even_when_fresh() {
        let me = mark("pool", 1);
        let theirs = format!("{}\n{}", me.line(), mark("other", 1).line());
        let v = judge(&me, Some(&theirs), FRESH);
        assert_eq!(v, Verdict::Wrong("it is pool other's".into()));
        let v = judge(&me, Some("written by hand"), FRESH);
        assert!(is_wrong(&v), "{v:?}");
    }
}
