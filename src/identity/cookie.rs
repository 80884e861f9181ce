//! Identities carried in a cookie signed with the server's key (HMAC-SHA-256): a client can keep
//! one it was given but never make one up; a forged or altered cookie is no identity at all.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::carried::{COOKIE_NAME, HOST_COOKIE_NAME};

const KEY_FILE: &str = "cookie.key";
const KEY_LEN: usize = 32;
/// What the cookie key of a Swarm deployment is derived under from its master key: a label of
/// its own, so that it is never the key of anything else derived from the master key.
const DERIVATION_LABEL: &[u8] = b"termpool cookie key v1";
/// Identities longer than this are not accepted in a cookie (hex digits: 256 bytes).
const MAX_PAYLOAD_HEX: usize = 512;

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

    /// The signer of a Swarm deployment: its key is HMAC-SHA256(master key, "termpool cookie key
    /// v1"), the same on every manager, so that a cookie outlives the server's move to another
    /// one. Nothing of it is written anywhere.
    pub fn derived(master_key: &[u8]) -> Self {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(master_key).expect("HMAC takes any key length");
        mac.update(DERIVATION_LABEL);
        CookieSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac
    }

    /// A cookie value carrying `identity`, signed.
    pub fn sign(&self, identity: &str) -> String {
        let payload = hex::encode(identity.as_bytes());
        let tag = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// A new anonymous browser identity and the cookie value that carries it.
    pub fn issue(&self) -> (String, String) {
        let identity = cookie_identity(&uuid::Uuid::new_v4().simple().to_string());
        let value = self.sign(&identity);
        (identity, value)
    }

    /// The identity in a cookie value, if this server signed it (checked in constant time).
    pub fn verify(&self, value: &str) -> Option<String> {
        let (payload, tag) = value.split_once('.')?;
        if payload.len() > MAX_PAYLOAD_HEX {
            return None;
        }
        self.mac(payload)
            .verify_slice(&hex::decode(tag).ok()?)
            .ok()?;
        String::from_utf8(hex::decode(payload).ok()?).ok()
    }
}

/// The identity string of a cookie id, namespaced so that other modes can never collide with it.
pub fn cookie_identity(id: &str) -> String {
    format!("cookie:{id}")
}

/// The `Set-Cookie` value for a freshly issued id. Ten years: the id is the user's account. Over
/// https it is the `__Host-` cookie, which only this host over https can set.
pub fn set_cookie_header(value: &str, secure: bool) -> String {
    let (name, secure) = match secure {
        true => (HOST_COOKIE_NAME, "; Secure"),
        false => (COOKIE_NAME, ""),
    };
    format!("{name}={value}; Path=/; Max-Age=315360000; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn issued_cookies_verify_and_forgeries_do_not() {
        let signer = CookieSigner::ephemeral();
        let (identity, value) = signer.issue();
        assert!(identity.starts_with("cookie:"));
        assert_eq!(signer.verify(&value), Some(identity.clone()));

        let other = CookieSigner::ephemeral();
        assert_eq!(other.verify(&value), None, "another server's key");
        let (payload, tag) = value.split_once('.').unwrap();
        let token_alice = hex::encode(b"token:alice");
        for forged in [
            String::new(),
            "x".into(),
            payload.to_owned(),
            format!("{payload}."),
            format!("{payload}.00"),
            format!("{token_alice}.{tag}"),
            format!("{value}0"),
            value.replace('.', ""),
            format!("é{}", &value[2..]),
            format!("{}.{tag}", "a".repeat(100_000)),
        ] {
            assert_eq!(signer.verify(&forged), None, "{forged:?}");
        }
        let signed = signer.sign("token:alice");
        assert_eq!(signer.verify(&signed).as_deref(), Some("token:alice"));
    }

    #[test]
    fn persistent_key_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("termpool-key-{}", uuid::Uuid::new_v4()));
        let (_, value) = CookieSigner::persistent(&dir).unwrap().issue();
        assert!(CookieSigner::ephemeral().verify(&value).is_none());
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
    fn derived_keys_are_the_same_for_one_master_key_and_differ_from_its_agent_keys() {
        let master = [7u8; 32];
        let (_, value) = CookieSigner::derived(&master).issue();
        assert!(CookieSigner::derived(&master).verify(&value).is_some());
        assert!(CookieSigner::derived(&[8u8; 32]).verify(&value).is_none());
        assert!(CookieSigner::ephemeral().verify(&value).is_none());
        let key = CookieSigner::derived(&master).key;
        assert_ne!(key, [0u8; KEY_LEN]);
        for generation in [0, 1] {
            let agent = termpool_agent_proto::slot_psk(&master, "termpool-0", generation);
            assert_ne!(key, agent, "the cookie key is no agent's key");
        }
    }

    #[test]
    fn cookie_header_is_http_only_and_strict() {
        let h = set_cookie_header("abc", false);
        assert!(h.contains("HttpOnly") && h.contains("SameSite=Strict") && !h.contains("Secure"));
        let https = set_cookie_header("abc", true);
        assert!(
            https.starts_with("__Host-termpool_id=abc; Path=/;") && https.ends_with("; Secure")
        );
        assert!(!https.contains("Domain"));
    }

    proptest! {
        /// No cookie value but a signed one is an identity; none makes the check panic.
        #[test]
        fn arbitrary_cookies_are_refused(value in ".{0,300}") {
            let signer = CookieSigner::ephemeral();
            prop_assert_eq!(signer.verify(&value), None);
        }

        /// Identities up to 256 bytes round-trip (ours are under 140); longer ones are refused.
        #[test]
        fn signed_identities_round_trip(identity in ".{0,200}") {
            let signer = CookieSigner::ephemeral();
            let expected = (identity.len() <= MAX_PAYLOAD_HEX / 2).then(|| identity.clone());
            prop_assert_eq!(signer.verify(&signer.sign(&identity)), expected);
        }
    }
}
