//! Who is asking. Every mode yields an opaque identity string (`cookie:<id>`, `header:<name>`,
//! `token:<name>`) that the placement layer turns into a Linux account; the client never names its
//! user, container or account itself.
//!
//! - `cookie` (default): each browser gets an anonymous id in an HttpOnly, SameSite=Strict cookie.
//! - `header`: a trusted auth proxy names the user in a header; honoured only from the configured
//!   proxy addresses, ignored (and logged) from anyone else.
//! - `token`: static bearer tokens from a file, exchanged once (login form or `?token=` on the
//!   page) for a cookie naming the token's user; compared in constant time, never logged.
//!
//! Cookies are signed with a server key (HMAC-SHA-256), so a client can keep an identity it was
//! given but cannot make one up: a forged or altered cookie is no identity at all (401).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const COOKIE_NAME: &str = "termpool_id";
const KEY_FILE: &str = "cookie.key";
const KEY_LEN: usize = 32;
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

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac
    }

    /// A cookie value carrying `identity`, signed.
    pub fn sign(&self, identity: &str) -> String {
        let payload = hex(identity.as_bytes());
        let tag = hex(&self.mac(&payload).finalize().into_bytes());
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
        self.mac(payload).verify_slice(&unhex(tag)?).ok()?;
        String::from_utf8(unhex(payload)?).ok()
    }
}

/// How identities are established; chosen by `IDENTITY_MODE`.
pub enum Mode {
    Cookie,
    Header {
        /// Lower-case header name.
        header: String,
        trusted: Vec<IpNet>,
    },
    Token(TokenTable),
}

/// The facts of a request that identity looks at.
pub struct Asking<'a> {
    pub cookie: Option<&'a str>,
    pub peer: Option<IpAddr>,
    /// The configured identity header's value, in header mode.
    pub header: Option<&'a str>,
}

/// Decides who is asking, in the configured mode.
pub struct Identifier {
    pub mode: Mode,
    pub signer: CookieSigner,
}

impl Identifier {
    /// The identity of a request, or `None` (401).
    pub fn identify(&self, asking: &Asking) -> Option<String> {
        match &self.mode {
            Mode::Cookie => self.signed(asking.cookie, "cookie:"),
            Mode::Token(tokens) => {
                let identity = self.signed(asking.cookie, "token:")?;
                // A token removed from the file ends the sessions it opened at the next connect.
                tokens
                    .has_user(&identity["token:".len()..])
                    .then_some(identity)
            }
            Mode::Header { trusted, .. } => {
                let value = asking.header?;
                let peer = asking.peer.map(|p| p.to_canonical());
                if !peer.is_some_and(|p| trusted.iter().any(|net| net.contains(p))) {
                    log::warn!("identity header from untrusted peer {peer:?} ignored");
                    return None;
                }
                valid_user_name(value).then(|| format!("header:{value}"))
            }
        }
    }

    fn signed(&self, cookie: Option<&str>, kind: &str) -> Option<String> {
        self.signer
            .verify(cookie?)
            .filter(|id| id.starts_with(kind))
    }

    /// In token mode: the cookie value for a presented token, if it is one of the file's.
    pub fn login(&self, token: &str) -> Option<String> {
        let Mode::Token(tokens) = &self.mode else {
            return None;
        };
        let user = tokens.user_of(token)?;
        Some(self.signer.sign(&format!("token:{user}")))
    }
}

/// A name a proxy or token file may give a user: short, printable, no separators to abuse.
fn valid_user_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

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

    fn has_user(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An address or a CIDR block of trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            "" => max,
            p => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
        };
        Ok(IpNet {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        // IPv4 addresses sit in the top 32 bits, so one mask formula serves both families.
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        bits(ip) & mask == bits(self.addr) & mask
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
        let (identity, value) = signer.issue();
        assert!(identity.starts_with("cookie:"));
        assert_eq!(signer.verify(&value), Some(identity.clone()));

        let other = CookieSigner::ephemeral();
        assert_eq!(other.verify(&value), None, "another server's key");
        let (payload, tag) = value.split_once('.').unwrap();
        let token_alice = hex(b"token:alice");
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

    fn identifier(mode: Mode) -> Identifier {
        Identifier {
            mode,
            signer: CookieSigner::ephemeral(),
        }
    }

    #[test]
    fn header_mode_trusts_only_configured_proxies() {
        let id = identifier(Mode::Header {
            header: "x-forwarded-user".into(),
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
        });
        let ask = |peer: &str, header: Option<&'static str>| Asking {
            cookie: None,
            peer: Some(peer.parse().unwrap()),
            header,
        };
        assert_eq!(
            id.identify(&ask("10.1.2.3", Some("alice"))).as_deref(),
            Some("header:alice")
        );
        assert_eq!(
            id.identify(&ask("::ffff:10.9.9.9", Some("bob"))).as_deref(),
            Some("header:bob")
        );
        assert_eq!(
            id.identify(&ask("::1", Some("carol"))).as_deref(),
            Some("header:carol")
        );
        assert_eq!(
            id.identify(&ask("11.0.0.1", Some("alice"))),
            None,
            "untrusted peer"
        );
        assert_eq!(id.identify(&ask("10.1.2.3", None)), None, "no header");
        for bad in ["", "a b", "a:b", "../x", "é"] {
            let bad: &'static str = Box::leak(bad.to_string().into_boxed_str());
            assert_eq!(id.identify(&ask("10.1.2.3", Some(bad))), None, "{bad:?}");
        }
    }

    #[test]
    fn token_mode_exchanges_a_token_for_a_cookie() {
        let tokens = TokenTable::parse(
            "# users\nalice:correct-horse-battery\nbob:another-long-token-value\n",
        )
        .unwrap();
        let id = identifier(Mode::Token(tokens));
        assert_eq!(id.login("wrong-token-wrong-token"), None);
        let cookie = id.login("correct-horse-battery").unwrap();
        assert!(
            !cookie.contains("correct"),
            "the token is not in the cookie"
        );
        let ask = Asking {
            cookie: Some(&cookie),
            peer: None,
            header: None,
        };
        assert_eq!(id.identify(&ask).as_deref(), Some("token:alice"));
        // An anonymous browser cookie of the same server is not a token identity.
        let (_, anonymous) = id.signer.issue();
        let ask = Asking {
            cookie: Some(&anonymous),
            peer: None,
            header: None,
        };
        assert_eq!(id.identify(&ask), None);
    }

    #[test]
    fn token_files_are_checked() {
        assert!(TokenTable::parse("").is_err());
        assert!(TokenTable::parse("alice:short").is_err());
        assert!(TokenTable::parse("no separator here at all").is_err());
        assert!(TokenTable::parse("bad name:long-enough-token-123").is_err());
    }

    #[test]
    fn cidr_blocks() {
        let net: IpNet = "192.168.1.0/24".parse().unwrap();
        assert!(net.contains("192.168.1.200".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }

    #[test]
    fn cookie_header_is_http_only_and_strict() {
        let h = set_cookie_header("abc", false);
        assert!(h.contains("HttpOnly") && h.contains("SameSite=Strict") && !h.contains("Secure"));
        assert!(set_cookie_header("abc", true).ends_with("; Secure"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

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

            #[test]
            fn header_values_and_proxy_lists_never_panic(value in ".{0,200}", net in ".{0,50}") {
                let _ = net.parse::<IpNet>();
                let id = identifier(Mode::Header {
                    header: "x-forwarded-user".into(),
                    trusted: vec!["127.0.0.1".parse().unwrap()],
                });
                let asking = Asking { cookie: None, peer: Some("127.0.0.1".parse().unwrap()), header: Some(&value) };
                if let Some(identity) = id.identify(&asking) {
                    prop_assert!(valid_user_name(&identity["header:".len()..]));
                }
            }

            #[test]
            fn token_files_never_panic(text in ".{0,300}") {
                let _ = TokenTable::parse(&text);
            }
        }
    }
}
