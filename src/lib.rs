//! termpool: a multi-user web terminal server. Each browser tab gets a login shell on a real TTY,
//! streamed over one WebSocket (`docs/protocol.md`); shells run on a local PTY or as Linux
//! accounts in a pool of Docker containers on one host or a Swarm (`docs/design.md` says why it
//! is built this way, `docs/scaling.md` how it spans hosts).
//!
//! Layout, in the order a request meets it:
//!
//! - [`config`]: command-line and environment settings, turned once into typed options.
//! - [`web`]: the HTTP face: routes, the page, `/healthz`, `/metrics`, the WebSocket upgrade.
//! - [`identity`]: who is asking (signed cookie, trusted header, token), never the client's say.
//! - [`protocol`]: the JSON frames of the protocol, both directions.
//! - [`relay`]: one WebSocket attached to one session.
//! - [`wsdeflate`]: permessage-deflate on the WebSocket's byte streams, which actix-ws lacks.
//! - [`session`]: live sessions that outlive their sockets; admission, the pump, idle reaping.
//! - [`screen`]: the emulated screen a session keeps for re-attach.
//! - [`spin`]: bounded busy polling after a keystroke.
//! - [`metrics`]: counters for `/metrics`.
//! - [`audit`]: the operator's trail of sessions and refusals (log target `audit`).
//! - [`blocks`]: the operator's blocks of identities and addresses.
//! - [`tty`]: the seam between sessions and where shells run: local PTYs, container agents, execs.
//! - [`pool`]: which container and Linux account each user gets, kept in a store; one Docker
//!   engine or a Swarm behind its orchestrator seam.
//! - [`workspace`]: beyond the terminal: access keys for an account, uploads, the `download` command.
//!
//! The session agent that runs inside each user container is the `agent/` crate; the messages it
//! exchanges with the server are `agent/proto/`.

pub mod audit;
pub mod blocks;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod relay;
pub mod screen;
pub mod session;
pub mod spin;
pub mod tty;
pub mod web;
pub mod workspace;
pub mod wsdeflate;
