//! The network fence, in the agent's own network namespace: from the agents' network, accept
//! new connections only to the agent's port, start none, let established traffic through. The
//! rules go to `nft -f -` (nftables in the user image).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The networks to fence: `TERMPOOL_AGENT_FENCE` (comma-separated CIDRs) when set, else every
/// network directly connected on an interface other than `lo` and the default route's (Docker's
/// gateway bridge, for internet egress; Docker fences it already).
pub fn networks() -> Result<Vec<String>, String> {
    if let Ok(list) = std::env::var("TERMPOOL_AGENT_FENCE") {
        let nets: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        return match nets.iter().find(|n| !is_cidr(n)) {
            Some(bad) => Err(format!("TERMPOOL_AGENT_FENCE: {bad:?} is not an IPv4 CIDR")),
            None => Ok(nets),
        };
    }
    let routes = std::fs::read_to_string("/proc/net/route").map_err(|e| e.to_string())?;
    Ok(connected_networks(&routes))
}

/// The connected networks of a /proc/net/route text, except the default route's interface.
fn connected_networks(routes: &str) -> Vec<String> {
    let rows: Vec<Vec<&str>> = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.len() >= 8)
        .collect();
    let default_iface = rows.iter().find(|f| f[1] == "00000000").map(|f| f[0]);
    let mut nets: Vec<String> = rows
        .iter()
        .filter(|f| f[0] != "lo" && Some(f[0]) != default_iface && f[1] != "00000000")
        // Connected routes have no gateway.
        .filter(|f| f[2] == "00000000")
        .filter_map(|f| {
            let dest = Ipv4Addr::from(u32::from_str_radix(f[1], 16).ok()?.swap_bytes());
            let mask = u32::from_str_radix(f[7], 16).ok()?.swap_bytes();
            Some(format!("{dest}/{}", mask.count_ones()))
        })
        .collect();
    nets.sort();
    nets.dedup();
    nets
}

fn is_cidr(net: &str) -> bool {
    match net.split_once('/') {
        Some((ip, len)) => {
            ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
        }
        None => false,
    }
}

/// The nftables rules for `nets` and the agent's `port`.
fn rules(nets: &[String], port: u16) -> String {
    let set = nets.join(", ");
    format!(
        "table inet termpool_fence {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {{ {set} }} ct state established,related accept
        ip saddr {{ {set} }} tcp dport {port} accept
        ip saddr {{ {set} }} drop
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr {{ {set} }} ct state established,related accept
        ip daddr {{ {set} }} drop
    }}
}}
"
    )
}

/// Applies the fence; the networks fenced (none: nothing to fence).
pub fn apply(port: u16) -> Result<Vec<String>, String> {
    let nets = networks()?;
    if nets.is_empty() {
        return Ok(nets);
    }
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    let text = rules(&nets, port);
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_is_fenced_not_the_gateway_bridge() {
        let routes =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000013C6\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            eth1\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            connected_networks(routes),
            vec!["198.19.0.0/16".to_string()]
        );
        assert!(is_cidr("10.0.0.0/8"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0; drop"));
        let r = rules(&["10.0.0.0/24".into()], 7100);
        assert!(r.contains("tcp dport 7100 accept"), "{r}");
    }
}
