//! Test harness shared by the integration tests and the benchmark: starts the real `termpool`
//! binary on 127.0.0.1 port 0 and drives it like a client, over a real WebSocket.
#![allow(dead_code, unused_imports)]

mod client;
mod connect;
mod docker;
mod http;
mod process;
mod server;
pub mod swarm;

pub use client::{Client, Frame, WAIT};
pub use connect::{connect_with_headers, try_connect_at};
pub use docker::{require_docker, DockerProxy, TestPool};
pub use http::{header, http_get, http_request, refusal_reference};
pub use process::{
    alive, children_of, contains, eventually, pids_with_cmdline, schedstat, server_cpu, tail,
};
pub use server::{log_lines_with, new_identity_at, Server, ALICE_TOKEN, MANY_SESSIONS, TEST_SHELL};

/// The container name a `ready` frame names (empty in local mode).
pub fn container_of(ready: &termpool::protocol::Ready) -> String {
    ready.container.as_deref().unwrap_or_default().to_owned()
}
