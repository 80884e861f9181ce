//! A user's workspace beyond the terminal itself: access keys that carry a cookie account to
//! another browser, files uploaded into a session's directory, and the `download` command.
//! The HTTP face of these is `web::api`; nothing here knows HTTP.

pub mod files;
pub mod keys;
pub mod tools;
pub mod uploads;

pub use keys::{AccessKeys, KeyError, KeyStore, MemoryKeys, RedeemLimiter};
pub use uploads::Uploads;

/// The workspace's state shared by the request handlers.
pub struct Workspace {
    pub keys: AccessKeys,
    pub redeems: RedeemLimiter,
    pub uploads: std::sync::Arc<Uploads>,
}

impl Workspace {
    /// Access keys kept in the server's store when there is one, else for the process's lifetime;
    /// key redeems counted per client address key (IPv6: per block of `ipv6_prefix_len` bits);
    /// at most `max_uploads` uploads at once per user.
    pub fn open(
        store: Option<crate::blocks::SharedStore>,
        ipv6_prefix_len: u8,
        max_uploads: usize,
    ) -> Self {
        Workspace {
            keys: AccessKeys::open(store),
            redeems: RedeemLimiter::new(ipv6_prefix_len),
            uploads: Uploads::new(max_uploads),
        }
    }
}
