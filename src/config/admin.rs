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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn admin(args: &[&str]) -> Result<Option<AdminOptions>, String> {
        let args = std::iter::once("termpool").chain(args.iter().copied());
        let args = Args::try_parse_from(args).map_err(|e| e.to_string())?;
        args.admin().map_err(|e| e.to_string())
    }

    #[test]
    fn off_without_a_token_file_and_loopback_only_by_default() {
        assert!(admin(&[]).unwrap().is_none());
        let file = std::env::temp_dir().join(format!("termpool-admin-{}", std::process::id()));
        std::fs::write(&file, "  0123456789abcdef\n").unwrap();
        let path = file.to_str().unwrap();
        let on = admin(&["--admin-token-file", path]).unwrap().unwrap();
        assert_eq!(on.token, "0123456789abcdef");
        assert!(on.allowed.contains("127.0.0.1".parse().unwrap()));
        assert!(on.allowed.contains("::1".parse().unwrap()));
        assert!(!on.allowed.contains("10.0.0.1".parse().unwrap()));
        assert!(
            !format!("{on:?}").contains("0123456789abcdef"),
            "never printed"
        );
        for (args, var) in [
            (
                vec!["--admin-allowed-addresses", "10.0.0.0/40"],
                "ADMIN_ALLOWED_ADDRESSES",
            ),
            (
                vec!["--admin-token-file", "/nonexistent/token"],
                "ADMIN_TOKEN_FILE",
            ),
        ] {
            let err = admin(&args).err().unwrap();
            assert!(err.contains(var), "{err}");
        }
        std::fs::write(&file, "two words here\n").unwrap();
        let err = admin(&["--admin-token-file", path]).err().unwrap();
        assert!(err.contains("ADMIN_TOKEN_FILE"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
