//! The session agent's wire, defined once for the server (`src/tty/agent.rs`, `src/pool/`) and the
//! agent (`agent/`): the JSON messages of a session's connection, the unix socket they travel on
//! in single-host mode, the Noise-encrypted TCP wire of Swarm mode (`net*`, and its hand-off to a node's relay), and the rules of an
//! upload that both ends write files by (`upload`).

mod account_script;
mod net;
mod net_cipher;
mod net_frame;
mod net_handoff;
mod net_noise;
mod socket;
mod upload;
mod volume;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use account_script::{ACCOUNT_SCRIPT, WORKSPACE};
pub use net::{
    prologue, slot_psk, AccountRequest, AgentResult, EndRequest, FailureKind, HomeOwner,
    LockdownReport, StatusReport, WriteRequest, AGENT_PORT, NOISE_PARAMS, PROTOCOL_NAME,
};
pub use net_cipher::{aes_is_fast, Cipher};
pub use net_frame::{
    message_len, parse_resize, resize_body, split_message, Frame, FrameType, WireError,
    BODY_OFFSET, FRAME_OVERHEAD, MAX_BODY, MAX_MESSAGE, MAX_PLAINTEXT, TAG_LEN,
};
pub use net_handoff::{decode_handoff, encode_handoff, HANDOFF_LEN};
pub use net_noise::{Handshake, Receiver, Sender, HANDSHAKE_LEN, MAX_OFFER};
pub use socket::{
    check_is_socket, connect_seqpacket, is_busy, is_not_listening, open_socket_nofollow, peer_uid,
    recv_with_fds,
};
pub use upload::check_file_name;
pub use volume::{parse_marker, VolumeMark, MAX_MARK_POOL, VOLUME_MARKER};

/// Server -> agent, the first message of a connection: start a login shell for `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellRequest<'a> {
    pub user: Cow<'a, str>,
    pub home: Cow<'a, str>,
    pub cols: u16,
    pub rows: u16,
    pub env: Cow<'a, [String]>,
}

/// Agent -> server: `{"pid"}` with the PTY master passed alongside, `{"error"}` for a refused
/// start, then `{"exit"}` once the shell has ended (`null`: the code is unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Present (maybe null) once the shell has exited.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub exit: Option<Option<i32>>,
}

impl Reply {
    /// The shell started with this pid (its PTY master goes with the message).
    pub fn started(pid: u32) -> Reply {
        Reply {
            pid: Some(pid),
            ..Reply::default()
        }
    }

    /// The shell could not be started.
    pub fn refused(error: String) -> Reply {
        Reply {
            error: Some(error),
            ..Reply::default()
        }
    }

    /// The shell ended with this code, if it is known.
    pub fn exited(code: Option<i32>) -> Reply {
        Reply {
            exit: Some(code),
            ..Reply::default()
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    Option::<i32>::deserialize(d).map(Some)
}

/// Server -> agent, later in a connection: `{"hangup": true}` ends the session (as does closing
/// the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hangup {
    pub hangup: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_null_is_told_from_no_exit() {
        let r: Reply = serde_json::from_str(r#"{"exit":null}"#).unwrap();
        assert_eq!(r.exit, Some(None));
        let r: Reply = serde_json::from_str(r#"{"exit":3}"#).unwrap();
        assert_eq!(r.exit, Some(Some(3)));
        let r: Reply = serde_json::from_str(r#"{"pid":12}"#).unwrap();
        assert_eq!(r.exit, None);
        assert_eq!(r.pid, Some(12));
    }

    #[test]
    fn replies_are_written_as_the_agent_always_wrote_them() {
        let text = |r: &Reply| serde_json::to_string(r).unwrap();
        assert_eq!(text(&Reply::started(7)), r#"{"pid":7}"#);
        assert_eq!(text(&Reply::refused("no".into())), r#"{"error":"no"}"#);
        assert_eq!(text(&Reply::exited(None)), r#"{"exit":null}"#);
        assert_eq!(text(&Reply::exited(Some(2))), r#"{"exit":2}"#);
    }

    #[test]
    fn a_request_round_trips() {
        let env = ["TERM=xterm".to_string()];
        let request = ShellRequest {
            user: "u1".into(),
            home: "/workspace/u1".into(),
            cols: 80,
            rows: 24,
            env: env.as_slice().into(),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"user":"u1","home":"/workspace/u1","cols":80,"rows":24,"env":["TERM=xterm"]}"#
        );
        assert_eq!(
            serde_json::from_str::<ShellRequest>(&text).unwrap(),
            request
        );
    }

    #[test]
    fn hangups_are_recognised() {
        let hangup = |t: &str| serde_json::from_str::<Hangup>(t).is_ok_and(|h| h.hangup);
        assert!(hangup(r#"{"hangup":true}"#));
        assert!(!hangup(r#"{"hangup":false}"#));
        assert!(!hangup("{}"));
        assert!(!hangup("garbage"));
    }
}
