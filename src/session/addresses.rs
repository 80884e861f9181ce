//! What each client address holds at once (live sessions, and the identities they belong to),
//! with IPv6 clients counted per address block: one host usually holds a whole /64 or more.

use std::collections::HashMap;
use std::net::IpAddr;

/// The key a client address is counted under: an IPv4 address itself, an IPv6 address its block
/// of `ipv6_prefix_len` bits (an IPv4-mapped address counts as IPv4).
pub fn address_key(address: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
}

/// Live sessions of one address key, per identity.
#[derive(Default)]
struct Held {
    sessions: usize,
    identities: HashMap<String, usize>,
}

/// The live sessions of every address key.
#[derive(Default)]
pub(super) struct Addresses(HashMap<IpAddr, Held>);

impl Addresses {
    /// Live sessions from `key`, and whether `identity` has one of them.
    pub(super) fn held(&self, key: IpAddr, identity: &str) -> (usize, usize, bool) {
        self.0.get(&key).map_or((0, 0, false), |held| {
            let has = held.identities.contains_key(identity);
            (held.sessions, held.identities.len(), has)
        })
    }

    pub(super) fn add(&mut self, key: IpAddr, identity: &str) {
        let held = self.0.entry(key).or_default();
        held.sessions += 1;
        *held.identities.entry(identity.to_owned()).or_default() += 1;
    }

    pub(super) fn remove(&mut self, key: IpAddr, identity: &str) {
        let Some(held) = self.0.get_mut(&key) else {
            return;
        };
        held.sessions -= 1;
        if let Some(n) = held.identities.get_mut(identity) {
            *n -= 1;
            if *n == 0 {
                held.identities.remove(identity);
            }
        }
        if held.sessions == 0 {
            self.0.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_grouped_by_their_prefix() {
        let key = |a: &str, len| address_key(a.parse().unwrap(), len).to_string();
        assert_eq!(key("2001:db8:1:2ff::1", 56), "2001:db8:1:200::");
        assert_eq!(key("2001:db8:1:2ff::1", 64), "2001:db8:1:2ff::");
        assert_eq!(key("2001:db8:1:2ff::1", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 0), "::");
        assert_eq!(key("::ffff:192.0.2.1", 56), "192.0.2.1");
        assert_eq!(key("192.0.2.1", 56), "192.0.2.1");
    }

    #[test]
    fn sessions_and_identities_are_counted_until_released() {
        let mut books = Addresses::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        books.add(a, "x");
        books.add(a, "x");
        books.add(a, "y");
        assert_eq!(books.held(a, "x"), (3, 2, true));
        assert_eq!(books.held(a, "z"), (3, 2, false));
        books.remove(a, "y");
        assert_eq!(books.held(a, "y"), (2, 1, false));
        books.remove(a, "x");
        books.remove(a, "x");
        assert!(books.0.is_empty());
    }
}
