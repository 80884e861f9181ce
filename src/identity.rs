//! Who is asking: every mode (cookie, header, token) yields an opaque identity string that the
//! placement layer turns into a Linux account; the client never names its user or account itself.

mod carried;
mod cookie;
mod proxies;
mod token;

use std::net::IpAddr;

pub use carried::{identity_cookie, single_header, Unidentified, COOKIE_NAME, HOST_COOKIE_NAME};
pub use cookie::{cookie_identity, set_cookie_header, CookieSigner};
pub use proxies::TrustedProxies;
pub use token::{TokenFile, TokenTable};

/// How identities are established; chosen by `IDENTITY_MODE`.
pub enum Mode {
    Cookie,
    Header {
        /// Lower-case header name.
        header: String,
        trusted: TrustedProxies,
    },
    Token(TokenFile),
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
                let signed = self.signed(asking.cookie, "token:")?;
                // The cookie names the token it was issued for: once that token is rotated or
                // removed from the file, the cookie is no identity (nor are pre-binding cookies).
                let (user, tag) = signed["token:".len()..].split_once('#')?;
                tokens.holds(user, tag).then(|| format!("token:{user}"))
            }
            Mode::Header { trusted, .. } => {
                let value = asking.header?;
                let peer = asking.peer.map(|p| p.to_canonical());
                if !peer.is_some_and(|p| trusted.contains(p)) {
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
        let (user, tag) = tokens.login(token)?;
        Some(self.signer.sign(&format!("token:{user}#{tag}")))
    }

    /// Reads the token file again (SIGHUP); nothing to do in the other modes.
    pub fn reload(&self) {
        if let Mode::Token(tokens) = &self.mode {
            tokens.reload();
        }
    }
}

/// A name a proxy or token file may give a user: short, printable, no separators to abuse.
fn valid_user_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            trusted: TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap(),
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
        let id = identifier(Mode::Token(TokenFile::fixed(tokens)));
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
        // A cookie that names no token (as issued before tokens were bound) is no identity.
        let unbound = id.signer.sign("token:alice");
        let ask = Asking {
            cookie: Some(&unbound),
            peer: None,
            header: None,
        };
        assert_eq!(id.identify(&ask), None);
        // An anonymous browser cookie of the same server is not a token identity.
        let (_, anonymous) = id.signer.issue();
        let ask = Asking {
            cookie: Some(&anonymous),
            peer: None,
            header: None,
        };
        assert_eq!(id.identify(&ask), None);
    }

    proptest! {
        #[test]
        fn header_values_never_panic(value in ".{0,200}") {
            let id = identifier(Mode::Header {
                header: "x-forwarded-user".into(),
                trusted: TrustedProxies::parse(&["127.0.0.1"]).unwrap(),
            });
            let asking = Asking { cookie: None, peer: Some("127.0.0.1".parse().unwrap()), header: Some(&value) };
            if let Some(identity) = id.identify(&asking) {
                prop_assert!(valid_user_name(&identity["header:".len()..]));
            }
        }
    }
}
