//! termpool: a multi-user web terminal server. See README.md for what it does and DESIGN.md (in
//! the project's shared folder) for why it is built this way.

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
pub mod wsdeflate;
