//! The agent's network wire (Swarm mode): the port, the per-slot key, and the JSON bodies of the
//! frames of `docs/scaling.md`'s table; framing and encryption are in `net_frame` and `net_noise`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The TCP port agents listen on, on the agents' overlay network.
pub const AGENT_PORT: u16 = 7100;
/// The Noise protocol of every handshake: a pre-shared key per slot, ephemeral keys both ways.
/// The transport cipher is agreed in the handshake (`net_noise`): AESGCM or this ChaChaPoly.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// The protocol's name and version, first in the Noise prologue.
pub const PROTOCOL_NAME: &str = "termpool-agent/1";

/// The Noise prologue of a connection to `slot`: both ends know it, nothing of it is sent, and
/// a mismatch (another slot, another protocol version) fails the handshake.
pub fn prologue(slot: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROTOCOL_NAME.len() + 1 + slot.len());
    p.extend_from_slice(PROTOCOL_NAME.as_bytes());
    p.push(0);
    p.extend_from_slice(slot.as_bytes());
    p
}

/// The pre-shared key of `slot` at key `generation`:
/// HMAC-SHA256(master key, "termpool agent psk v1" || slot || generation as big-endian u32).
/// The generation has a fixed width at the end, so no two (slot, generation) pairs collide.
pub fn slot_psk(master_key: &[u8], slot: &str, generation: u32) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(master_key).expect("HMAC takes any key length");
    mac.update(b"termpool agent psk v1");
    mac.update(slot.as_bytes());
    mac.update(&generation.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// ACCOUNT: create the account `name` with `uid` and its home (the account script's work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRequest {
    pub name: String,
    pub uid: u32,
    pub home: String,
}

/// END: end every process of `uid` in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRequest {
    pub uid: u32,
}

/// WRITE: a new file `file` in the shell's working directory (`shell_pid`'s, in the container;
/// else the home), written as the account `user`. `length` bytes follow as INPUT frames; RESULT
/// comes after the last of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub user: String,
    pub home: String,
    pub shell_pid: Option<u32>,
    pub file: String,
    pub length: u64,
}

/// RESULT: the answer to ACCOUNT, END, STATUS, MARK or WRITE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentResult {
    /// ACCOUNT, END or MARK did its work.
    Ok,
    /// STATUS's answer.
    Status(StatusReport),
    /// WRITE's answer: the file's absolute path in the container.
    Written { path: String },
    /// The request was refused or failed.
    Failed { kind: FailureKind, message: String },
}

/// Why a request failed; the account script's refusals keep their own kinds (its exit codes
/// 3, 4 and 5), since each asks the operator for a different repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Exit 3: the account exists in this container with another UID.
    AccountUidMismatch,
    /// Exit 4: the home exists and is not this UID's (or is a link).
    HomeNotOwned,
    /// Exit 5: the UID already owns another home on the volume.
    UidOwnsOtherHome,
    /// The request itself is invalid (bad name, UID, home).
    BadRequest,
    /// The agent did not lock down: it serves nothing but STATUS.
    NotLockedDown,
    /// Anything else (the script failed otherwise, processes survived).
    Failed,
    /// WRITE: the file exists (never overwritten, never written through a link).
    FileExists,
    /// WRITE: the disk or the user's quota is full; nothing of the file is left.
    NoSpace,
    /// WRITE: the user may not write in the directory.
    Denied,
}

/// STATUS's report: what the agent reads back of its lockdown, the homes on the volume and its
/// marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub lockdown: LockdownReport,
    /// By name; cut by [`StatusReport::fit`] where the whole list would not fit one frame.
    pub homes: Vec<HomeOwner>,
    /// `/workspace/.termpool-volume`'s content, if the file exists (see [`crate::VolumeMark`]).
    pub volume_marker: Option<String>,
    /// How many homes, after the last of `homes`, the report leaves out (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub homes_left_out: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StatusReport {
    /// Cuts `homes` so that the report's JSON takes at most `max` bytes, and counts what it left
    /// out. A volume gathers a home for every account it ever had (evicted users keep theirs),
    /// and a report that outgrew its frame would fail STATUS, which admits users to the slot.
    pub fn fit(&mut self, max: usize) {
        let mut homes = std::mem::take(&mut self.homes);
        // The rest of the report, with the largest count it can hold and room for `[]`.
        self.homes_left_out = homes.len() as u64;
        let mut used = json_len(self);
        let fits = homes
            .iter()
            .take_while(|h| {
                used += json_len(h) + 1;
                used <= max
            })
            .count();
        homes.truncate(fits);
        self.homes_left_out -= fits as u64;
        self.homes = homes;
    }
}

/// The length of a value's JSON, for [`StatusReport::fit`].
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX / 2, |v| v.len())
}

/// The lockdown as `/proc/mounts` and `/proc/self/status` show it, not as the agent believes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockdownReport {
    /// `/proc` is mounted with `hidepid=invisible` (or 2).
    pub proc_hidepid: bool,
    /// `CapEff` of the agent, hex as in `/proc/self/status`.
    pub cap_eff: String,
    pub no_new_privs: bool,
    pub seccomp_filters: u32,
    /// Why the lockdown failed, when it did (the agent then serves no session).
    pub error: Option<String>,
}

/// A home directory on the volume and the UID that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeOwner {
    pub name: String,
    pub uid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_of_thousands_of_homes_is_cut_to_fit_its_frame() {
        let homes = |n: u32| -> Vec<HomeOwner> {
            (0..n)
                .map(|i| HomeOwner {
                    name: format!("u_{i:012x}"),
                    uid: 200_000 + i,
                })
                .collect()
        };
        let mut report = StatusReport {
            volume_marker: Some("m".repeat(40_000)),
            homes: homes(5000),
            ..StatusReport::default()
        };
        report.fit(crate::MAX_BODY);
        let json = serde_json::to_vec(&report).unwrap();
        assert!(json.len() <= crate::MAX_BODY, "{} bytes", json.len());
        let kept = report.homes.len() as u64;
        assert!(kept > 500, "only {kept} homes kept");
        assert_eq!(kept + report.homes_left_out, 5000);
        assert_eq!(report.homes, homes(kept as u32), "the first by name");
        let back: StatusReport = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, report);

        // A report that fits is left whole, and says nothing of homes left out.
        let mut small = StatusReport {
            homes: homes(10),
            ..StatusReport::default()
        };
        small.fit(crate::MAX_BODY);
        assert_eq!((small.homes.len(), small.homes_left_out), (10, 0));
        let json = serde_json::to_string(&small).unwrap();
        assert!(!json.contains("homes_left_out"), "{json}");
    }

    #[test]
    fn psks_differ_by_slot_generation_and_master() {
        let a = slot_psk(b"master", "slot-1", 0);
        assert_eq!(a, slot_psk(b"master", "slot-1", 0));
        assert_ne!(a, slot_psk(b"master", "slot-1", 1));
        assert_ne!(a, slot_psk(b"master", "slot-2", 0));
        assert_ne!(a, slot_psk(b"other", "slot-1", 0));
    }

    #[test]
    fn results_round_trip() {
        let results = [
            AgentResult::Ok,
            AgentResult::Failed {
                kind: FailureKind::HomeNotOwned,
                message: "no".into(),
            },
            AgentResult::Status(StatusReport {
                homes: vec![HomeOwner {
                    name: "u1".into(),
                    uid: 200000,
                }],
                ..StatusReport::default()
            }),
        ];
        for r in results {
            let text = serde_json::to_vec(&r).unwrap();
            assert_eq!(serde_json::from_slice::<AgentResult>(&text).unwrap(), r);
        }
    }
}
