//! The admin API's settings: its token, read from `ADMIN_TOKEN_FILE` once at start, and the
//! addresses it answers (`ADMIN_ALLOWED_ADDRESSES`).

use std::fmt;

use super::{invalid, Args, ConfigError};
use crate::identity::TrustedProxies;

/// Shortest admin token accepted.
const MIN_TOKEN_CHARS: usize = 16;

/// The admin API is on: who may use it.
#[derive(Clone)]
pub struct AdminOptions {
    /// The bearer token, without surrounding whitespace.
    pub token: String,
    /// The client addresses it answers (an address list like the proxies').
    pub allowed: TrustedProxies,
}

impl fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("token", &"<redacted>")
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl Args {
    /// The admin API's settings when `ADMIN_TOKEN_FILE` is set; refused when the token is short.
    pub(super) fn admin(&self) -> Result<Option<AdminOptions>, ConfigError> {
        let allowed = TrustedProxies::parse(&self.admin_allowed_addresses)
            .map_err(|e| invalid("ADMIN_ALLOWED_ADDRESSES", e))?;
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("ADMIN_TOKEN_FILE", format!("{}: {e}", path.display())))?;
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_CHARS || token.contains(char::is_whitespace) {
            return Err(invalid(
                "ADMIN_TOKEN_FILE",
                format!("the token must be one word of {MIN_TOKEN_CHARS} or more characters"),
            ));
        }
        Ok(Some(AdminOptions {
            token: token.to_owned(),
            allowed,
        }))
    }
}
