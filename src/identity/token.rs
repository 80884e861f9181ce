//! Token mode's table: static bearer tokens from a `user:token` file, kept only as SHA-256 digests
//! and compared in constant time; the file is read again when it changes or on SIGHUP.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::SystemTime;

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
        let table = TokenTable::parse_any(text)?;
        if table.entries.is_empty() {
            return Err("no tokens".into());
        }
        Ok(table)
    }

    /// Like `parse`, but a file without tokens is a table that admits nobody.
    fn parse_any(text: &str) -> Result<TokenTable, String> {
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

    /// The user of a token and the binding of that token (see `binding`).
    pub fn login(&self, token: &str) -> Option<(&str, String)> {
        let user = self.user_of(token)?;
        Some((user, binding(&digest(token))))
    }

    /// Whether `user` still has the token whose binding is `tag`: false once it was rotated or
    /// removed from the file.
    pub fn holds(&self, user: &str, tag: &str) -> bool {
        self.entries
            .iter()
            .any(|(u, d)| u == user && bool::from(binding(d).as_bytes().ct_eq(tag.as_bytes())))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a cookie records of the token it was issued for: a digest of the token's digest, so the
/// cookie (which the user can read) tells nothing the token table does not keep secret.
fn binding(token_digest: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"termpool token cookie\0");
    h.update(token_digest);
    hex::encode(&h.finalize()[..16])
}

/// When and what the file was when last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok()?,
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

/// The token file and the table last read from it. A file that has changed is read again at the
/// next look-up; one that cannot be read or parsed leaves the last good table in force.
pub struct TokenFile {
    path: PathBuf,
    loaded: RwLock<(TokenTable, Option<Stamp>)>,
}

impl TokenFile {
    /// Reads the file; at start a missing, bad or empty file is an error.
    pub fn open(path: &Path) -> io::Result<TokenFile> {
        let stamp = Stamp::of(path);
        let table = TokenTable::load(path)?;
        Ok(TokenFile {
            path: path.to_owned(),
            loaded: RwLock::new((table, stamp)),
        })
    }

    /// A table that no file backs (tests).
    #[cfg(test)]
    pub fn fixed(table: TokenTable) -> TokenFile {
        TokenFile {
            path: PathBuf::new(),
            loaded: RwLock::new((table, None)),
        }
    }

    /// The user of a token and its binding, in the current table.
    pub fn login(&self, token: &str) -> Option<(String, String)> {
        let loaded = self.table();
        let (user, tag) = loaded.0.login(token)?;
        Some((user.to_owned(), tag))
    }

    /// Whether `user` still has the token of binding `tag`, in the current table.
    pub fn holds(&self, user: &str, tag: &str) -> bool {
        self.table().0.holds(user, tag)
    }

    /// The current table, read again first if the file changed since.
    fn table(&self) -> RwLockReadGuard<'_, (TokenTable, Option<Stamp>)> {
        let stamp = Stamp::of(&self.path);
        let changed = {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            stamp.is_some() && loaded.1 != stamp
        };
        if changed {
            self.reload();
        }
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the file again (SIGHUP, or it changed).
    pub fn reload(&self) {
        let stamp = Stamp::of(&self.path);
        let read = fs::read_to_string(&self.path).map_err(|e| e.to_string());
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        // Whatever the outcome, this version of the file has been looked at.
        loaded.1 = stamp;
        match read.and_then(|text| TokenTable::parse_any(&text)) {
            Ok(table) => {
                log::info!(
                    "token file {} read again: {} tokens",
                    self.path.display(),
                    table.entries.len()
                );
                loaded.0 = table;
            }
            Err(e) => log::error!(
                "token file {} not read again, the previous tokens stay: {e}",
                self.path.display()
            ),
        }
    }
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

    #[test]
    fn a_binding_holds_only_while_its_token_is_in_the_table() {
        let old = TokenTable::parse("alice:first-token-of-alice-123").unwrap();
        let (user, tag) = old.login("first-token-of-alice-123").unwrap();
        assert_eq!(user, "alice");
        assert!(!tag.contains("first"));
        assert!(old.holds("alice", &tag));
        assert!(!old.holds("bob", &tag));
        let rotated = TokenTable::parse("alice:second-token-of-alice-4").unwrap();
        assert!(!rotated.holds("alice", &tag));
    }

    #[test]
    fn the_file_is_read_again_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("termpool-tokfile-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        fs::write(&path, "alice:first-token-of-alice-123\n").unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert!(file.table().0.user_of("first-token-of-alice-123").is_some());
        fs::write(&path, "# nobody now\nbob:token-of-bob-1234567890\n").unwrap();
        assert!(file.table().0.user_of("first-token-of-alice-123").is_none());
        fs::write(&path, "broken").unwrap();
        assert!(file.table().0.user_of("token-of-bob-1234567890").is_some());
        fs::remove_dir_all(&dir).unwrap();
        assert!(file.table().0.user_of("token-of-bob-1234567890").is_some());
    }

    proptest! {
        #[test]
        fn token_files_never_panic(text in ".{0,300}") {
            let _ = TokenTable::parse(&text);
        }
    }
}
