//! Who is asking. Every mode yields an opaque identity string that the placement layer turns into
//! a Linux account; the client never names its user, container or account itself.
//!
//! Cookie mode (the default) gives each browser an anonymous id in an HttpOnly, SameSite=Strict
//! cookie. The id is signed with a server key (HMAC-SHA-256), so a client can keep the id it was
//! given but cannot make one up: a forged or altered cookie is no identity at all (401).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const COOKIE_NAME: &str = "termpool_id";
const KEY_FILE: &str = "cookie.key";
const KEY_LEN: usize = 32;
const ID_HEX_LEN: usize = 32;

/// Issues and checks signed anonymous browser ids.
pub struct CookieSigner {
    key: [u8; KEY_LEN],
}

impl CookieSigner {
    /// A signer whose key lives only in memory: cookies end with the process.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        CookieSigner { key }
    }

    /// The signer whose key is kept in `dir` (created mode 600 on first use), so that browsers keep
    /// their identity across server restarts.
    pub fn persistent(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let key = bytes.try_into().map_err(|_| {
                    io::Error::other(format!("{} is not a {KEY_LEN}-byte key", path.display()))
                })?;
                Ok(CookieSigner { key })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let signer = CookieSigner::ephemeral();
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(&signer.key)?;
                file.sync_all()?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
                Ok(signer)
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac
    }

    /// A new anonymous id and the cookie value that carries it.
    pub fn issue(&self) -> (String, String) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tag = hex(&self.mac(&id).finalize().into_bytes());
        let value = format!("{id}.{tag}");
        (id, value)
    }

    /// The id in a cookie value, if the server issued it (checked in constant time).
    pub fn verify(&self, value: &str) -> Option<String> {
        let (id, tag) = value.split_once('.')?;
        if id.len() != ID_HEX_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tag = unhex(tag)?;
        self.mac(id).verify_slice(&tag).ok()?;
        Some(id.to_owned())
    }
}

/// The identity string of a cookie id, namespaced so that other modes can never collide with it.
pub fn cookie_identity(id: &str) -> String {
    format!("cookie:{id}")
}

/// The `Set-Cookie` value for a freshly issued id. Ten years: the id is the user's account.
pub fn set_cookie_header(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={value}; Path=/; Max-Age=315360000; HttpOnly; SameSite=Strict{secure}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_cookies_verify_and_forgeries_do_not() {
        let signer = CookieSigner::ephemeral();
        let (id, value) = signer.issue();
        assert_eq!(signer.verify(&value), Some(id.clone()));

        let other = CookieSigner::ephemeral();
        assert_eq!(other.verify(&value), None, "another server's key");
        let (tag_start, _) = value.split_once('.').unwrap();
        for forged in [
            String::new(),
            "x".into(),
            id.clone(),
            format!("{id}."),
            format!("{tag_start}.00"),
            format!("{}.{}", "0".repeat(32), &value[33..]),
            format!("{value}0"),
            value.replace('.', ""),
            format!("é{}", &value[2..]),
        ] {
            assert_eq!(signer.verify(&forged), None, "{forged:?}");
        }
    }

    #[test]
    fn persistent_key_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("termpool-key-{}", uuid::Uuid::new_v4()));
        let (_, value) = CookieSigner::persistent(&dir).unwrap().issue();
        assert!(CookieSigner::persistent(&dir)
            .unwrap()
            .verify(&value)
            .is_some());
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cookie_header_is_http_only_and_strict() {
        let h = set_cookie_header("abc", false);
        assert!(h.contains("HttpOnly") && h.contains("SameSite=Strict") && !h.contains("Secure"));
        assert!(set_cookie_header("abc", true).ends_with("; Secure"));
    }
}
