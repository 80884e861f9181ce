//! WebSocket permessage-deflate (RFC 7692) for actix-ws, which cannot negotiate it: filters that
//! sit on the upgraded byte streams, inflating client frames before actix-ws parses them and
//! deflating the frames it sends. Negotiated without context takeover, so messages share codecs.

mod codec;
mod inbound;
mod outbound;

pub use inbound::InflatingStream;
pub use outbound::DeflatingBody;

/// The extension's token in `Sec-WebSocket-Extensions`.
const TOKEN: &str = "permessage-deflate";
/// Messages shorter than this go uncompressed: a keystroke's echo pays nothing.
pub const MIN_COMPRESSED: usize = 256;

/// Picks the first acceptable permessage-deflate offer of the request's
/// `Sec-WebSocket-Extensions` values; the response's value when there is one.
///
/// Acceptable: parameters all known and valid, and no `server_max_window_bits` below 15 (our
/// deflater's window). Any `client_max_window_bits` is fine: the inflater takes any window.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .find_map(accept)
}

fn accept(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(TOKEN) {
        return None;
    }
    let mut response = format!("{TOKEN}; server_no_context_takeover; client_no_context_takeover");
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) if window_bits(v).is_some() => {}
            ("server_max_window_bits", Some(v)) if window_bits(v) == Some(15) => {
                response.push_str("; server_max_window_bits=15");
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(response)
}

fn window_bits(value: &str) -> Option<u8> {
    value
        .parse::<u8>()
        .ok()
        .filter(|b| (8..=15).contains(b) && !value.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn browsers_offers_are_accepted_without_context_takeover() {
        // Chromium's and Firefox's offers.
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
        ] {
            assert_eq!(negotiate([offer]).as_deref(), Some(ANSWER), "{offer}");
        }
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=15"]),
            Some(format!("{ANSWER}; server_max_window_bits=15"))
        );
    }

    #[test]
    fn offers_we_cannot_honour_are_declined_and_the_next_taken() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(negotiate([offer]), None, "{offer}");
        }
        let two = "permessage-deflate; server_max_window_bits=9, permessage-deflate";
        assert_eq!(negotiate([two]).as_deref(), Some(ANSWER));
        assert_eq!(
            negotiate(["foo", "permessage-deflate"]).as_deref(),
            Some(ANSWER)
        );
    }
}
