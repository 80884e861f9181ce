//! Token mode's table: static bearer tokens from a `user:token` file, kept only as SHA-256 digests
//! and compared in constant time.

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::valid_user_name;

/// Static bearer tokens: `user:token` lines from a file. Only SHA-256 digests are kept.
pub struct TokenTable {
    entries: Vec<(String, [u8; 32])>,
}

/// Tokens shorter than this are refused at start: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

impl TokenTable {
    pub fn load(path: &Path) -> io::Result<TokenTable> {
        let text = fs::read_to_string(path)?;
        TokenTable::parse(&text).map_err(io::Error::other)
    }

    pub fn parse(text: &str) -> Result<TokenTable, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, token) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:token", n + 1))?;
            if !valid_user_name(user) {
                return Err(format!("line {}: bad user name", n + 1));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {}: tokens need {MIN_TOKEN_LEN}+ characters",
                    n + 1
                ));
            }
            entries.push((user.to_owned(), digest(token)));
        }
        if entries.is_empty() {
            return Err("no tokens".into());
        }
        Ok(TokenTable { entries })
    }

    /// The user a token belongs to. Every entry is compared, in constant time, whatever matches.
    pub fn user_of(&self, token: &str) -> Option<&str> {
        let candidate = digest(token);
        let mut found = None;
        for (user, expected) in &self.entries {
            if bool::from(expected.ct_eq(&candidate)) {
                found = Some(user.as_str());
            }
        }
        found
    }

    pub(super) fn has_user(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_files_are_checked() {
        assert!(TokenTable::parse("").is_err());
        assert!(TokenTable::parse("alice:short").is_err());
        assert!(TokenTable::parse("no separator here at all").is_err());
        assert!(TokenTable::parse("bad name:long-enough-token-123").is_err());
    }

    proptest! {
        #[test]
        fn token_files_never_panic(text in ".{0,300}") {
            let _ = TokenTable::parse(&text);
        }
    }
}
