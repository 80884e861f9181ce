//! The reverse proxies whose forwarding and identity headers are believed (`TRUSTED_PROXIES`),
//! parsed once at start into `ipnet` blocks.

use std::net::IpAddr;

use ipnet::IpNet;

/// Addresses and CIDR blocks of trusted proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a list of addresses or blocks; blank entries are skipped.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        list.iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .map(parse_net)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An address (a block of one) or a CIDR block; an IPv4-mapped address is taken as IPv4.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an address"))?;
    let addr = addr.to_canonical();
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        "" => max,
        p => p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
    };
    IpNet::new(addr, prefix).map_err(|_| format!("{s:?} has a bad prefix length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Result<TrustedProxies, String> {
        TrustedProxies::parse(&[s])
    }

    #[test]
    fn cidr_blocks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net24 = net("192.168.1.0/24").unwrap();
        assert!(net24.contains(ip("192.168.1.200")));
        assert!(!net24.contains(ip("192.168.2.1")));
        assert!(!net24.contains(ip("::1")));
        assert!(net("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(net("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(net("10.0.0.0/8").unwrap().contains(ip("::ffff:10.9.9.9")));
        assert!(net("::1").unwrap().contains(ip("::1")));
        assert!(net("10.0.0.0/33").is_err());
        assert!(net("nonsense").is_err());
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.0/8", " ", "::1"])
                .unwrap()
                .len(),
            2
        );
    }

    proptest! {
        #[test]
        fn proxy_lists_never_panic(text in ".{0,50}") {
            let _ = net(&text);
        }
    }
}
