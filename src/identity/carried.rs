//! What a request carries for identity, read without guessing: the identity cookie under either of
//! its names and the proxy's identity header, refused when either comes twice.

/// The identity cookie's name over plain http.
pub const COOKIE_NAME: &str = "termpool_id";
/// Its name over https: a `__Host-` cookie is `Secure`, has `Path=/` and no `Domain`, so neither a
/// sibling subdomain nor a plain-http page of the same host can set one.
pub const HOST_COOKIE_NAME: &str = "__Host-termpool_id";

/// Why a request has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unidentified {
    #[error("no valid identity: load the terminal page first (or log in)")]
    Missing,
    /// Another site or a sibling subdomain may have planted one: which is the user's own cannot
    /// be told, so neither is used.
    #[error(
        "two {0} cookies were sent, so which is yours cannot be told: clear this site's \
         cookies and load the page again"
    )]
    TwoCookies(&'static str),
    #[error("two {0} headers were sent: the proxy in front must send exactly one")]
    TwoHeaders(String),
}

impl Unidentified {
    /// Whether the request was refused for what it carried (400) rather than for lacking an
    /// identity (401).
    pub fn is_ambiguous(&self) -> bool {
        !matches!(self, Unidentified::Missing)
    }
}

/// The identity cookie's value among the request's `Cookie` headers: the `__Host-` one when
/// present (no other site can have planted it), else the plain one. Either name sent twice is
/// refused, whatever the order.
pub fn identity_cookie<'a>(
    headers: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'a str>, Unidentified> {
    let mut host = None;
    let mut plain = None;
    for pair in headers.into_iter().flat_map(|h| h.split(';')) {
        let Some((name, value)) = pair.trim().split_once('=') else {
            continue;
        };
        let (slot, which) = match name.trim() {
            HOST_COOKIE_NAME => (&mut host, HOST_COOKIE_NAME),
            COOKIE_NAME => (&mut plain, COOKIE_NAME),
            _ => continue,
        };
        if slot.replace(value.trim()).is_some() {
            return Err(Unidentified::TwoCookies(which));
        }
    }
    Ok(host.or(plain))
}

/// The one value of the identity header `name`; two are refused (a client's own header beside
/// the proxy's would otherwise be resolved by order).
pub fn single_header<'a>(
    name: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'a str>, Unidentified> {
    let mut values = values.into_iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(Unidentified::TwoHeaders(name.to_owned())),
        None => Ok(first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_cookie_per_name_and_the_host_one_first() {
        let of = |headers: &[&'static str]| identity_cookie(headers.iter().copied());
        assert_eq!(of(&[]), Ok(None));
        assert_eq!(of(&["a=1; termpool_id=x.y"]), Ok(Some("x.y")));
        assert_eq!(
            of(&["termpool_id=plain", "__Host-termpool_id=host"]),
            Ok(Some("host"))
        );
        assert_eq!(
            of(&["termpool_id=planted; termpool_id=mine"]),
            Err(Unidentified::TwoCookies(COOKIE_NAME))
        );
        assert_eq!(
            of(&["__Host-termpool_id=a", "__Host-termpool_id=a"]),
            Err(Unidentified::TwoCookies(HOST_COOKIE_NAME))
        );
        assert_eq!(of(&["termpool_idx=1; xtermpool_id=2; junk"]), Ok(None));
    }

    #[test]
    fn two_identity_headers_are_refused() {
        assert_eq!(single_header("x-user", []), Ok(None));
        assert_eq!(single_header("x-user", ["alice"]), Ok(Some("alice")));
        let two = single_header("x-user", ["mallory", "alice"]);
        assert_eq!(two, Err(Unidentified::TwoHeaders("x-user".into())));
        assert!(two.unwrap_err().is_ambiguous());
        assert!(!Unidentified::Missing.is_ambiguous());
    }

    proptest! {
        #[test]
        fn any_cookie_header_is_read_or_refused(header in ".{0,200}") {
            let _ = identity_cookie([header.as_str()]);
        }
    }
}
