//! What a user may see of and do to their own sessions from outside a WebSocket: list them
//! (when opened, size, attached, what runs) and end one.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::{LiveSession, Registry};
use crate::protocol::TermSize;

/// One live session as its owner sees it in the session list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    pub id: String,
    /// Unix seconds.
    pub opened_at: u64,
    pub cols: u16,
    pub rows: u16,
    pub attached: bool,
    /// The terminal's foreground program, when known.
    pub command: Option<String>,
}

impl Registry {
    /// The live sessions of `identity` (attached or waiting for a re-attach), oldest first.
    pub fn sessions_of(&self, identity: &str) -> Vec<Arc<LiveSession>> {
        let mut sessions: Vec<_> = self
            .lock()
            .sessions
            .values()
            .filter(|s| s.identity == identity)
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.opened_at);
        sessions
    }

    /// How many live sessions one user may hold.
    pub fn max_sessions_per_user(&self) -> usize {
        self.limits.max_live
    }
}

impl LiveSession {
    /// What the session list shows of this session.
    pub fn summary(&self) -> SessionSummary {
        let TermSize { cols, rows } = *self.size.lock().unwrap_or_else(|e| e.into_inner());
        SessionSummary {
            id: self.id.clone(),
            opened_at: self
                .opened_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            cols,
            rows,
            attached: self.shared().attachment.is_some(),
            command: self.tty.foreground_pid().and_then(program_name),
        }
    }

    /// The shell's pid as this server sees pids, when known.
    pub fn shell_pid(&self) -> Option<i32> {
        self.tty.shell_pid()
    }

    /// Ends the session as its grace period ending would: a hang-up. The pump then sees the
    /// shell end and gives the session's place back.
    pub async fn end_now(&self) {
        self.tty.hangup().await;
    }
}

/// The name of process `pid` (`/proc/PID/comm`), if it still exists.
fn program_name(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = comm.trim_end_matches('\n');
    (!name.is_empty()).then(|| name.to_owned())
}
