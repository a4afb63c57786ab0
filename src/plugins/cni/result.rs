//! Building ADD's result in the shape of each spec version, merged after a `prevResult`, and
//! CHECK's comparison of a `prevResult` with what the namespace holds. Pure: unit-tested
//! without a daemon or a namespace.
//!
//! Shapes: 0.3.x and 0.4.0 give every IP a `version` ("4" or "6"); 1.0.0 dropped it; 1.1.0 adds the
//! interface's `mtu`. Every interface has its `mac` and every IP its `interface` index in all
//! of them (Podman 4.3 parses results as 0.4.0 and needs both).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};

use super::config::Version;

/// What one attachment is, as the result reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_IFNAME`.
    pub ifname: String,
    pub mac: String,
    /// `CNI_NETNS`.
    pub sandbox: String,
    pub mtu: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The default route via the gateway is the attachment's (the daemon adds it; a namespace
    /// attached to another network first keeps that one's).
    pub default_route: bool,
    /// On a dual-stack network: the IPv6 address and its prefix length, the IPv6 gateway.
    pub ip6: Option<(Ipv6Addr, u8)>,
    pub gateway6: Option<Ipv6Addr>,
    /// `::/0` via `gateway6` is the attachment's.
    pub default_route6: bool,
    /// The embedded resolver, from the daemon's `resolv_conf`.
    pub dns: Dns,
}

/// The result's `dns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    /// From resolv.conf text (the daemon's `resolv_conf`: `nameserver 127.0.0.11`,
    /// `options ndots:0`).
    pub fn from_resolv_conf(text: &str) -> Dns {
        let mut d = Dns::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => d.nameservers.extend(words.map(str::to_string)),
                Some("search") | Some("domain") => d.search.extend(words.map(str::to_string)),
                Some("options") => d.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        d
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// ADD's result in `version`'s shape. With a `prevResult` (a plugin before netyard in the
/// chain), its interfaces, IPs and routes come first and netyard's are appended (the IP's
/// interface index counts the earlier interfaces); netyard's nameservers come first.
pub fn build(version: Version, a: &Attachment, prev: Option<&Value>) -> Value {
    let list = |key: &str| -> Vec<Value> {
        prev.and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut routes = list("routes");
    let index = interfaces.len();

    let mut iface = json!({"name": a.ifname, "mac": a.mac, "sandbox": a.sandbox});
    if version >= Version::V110 {
        iface["mtu"] = json!(a.mtu);
    }
    interfaces.push(iface);
    let families = [(
        IpAddr::V4(a.ip),
        a.prefix_len,
        Some(IpAddr::V4(a.gateway)),
        a.default_route,
    )]
    .into_iter()
    .chain(a.ip6.map(|(ip, len)| {
        let gw = a.gateway6.map(IpAddr::V6);
        (IpAddr::V6(ip), len, gw, a.default_route6 && gw.is_some())
    }));
    for (addr, len, gateway, default_route) in families {
        let mut ip = json!({"address": format!("{addr}/{len}"), "interface": index});
        if let Some(gw) = gateway {
            ip["gateway"] = json!(gw.to_string());
        }
        if version < Version::V100 {
            ip["version"] = json!(if addr.is_ipv6() { "6" } else { "4" });
        }
        ips.push(ip);
        if let (true, Some(gw)) = (default_route, gateway) {
            let dst = if addr.is_ipv6() { "::/0" } else { "0.0.0.0/0" };
            routes.push(json!({"dst": dst, "gw": gw.to_string()}));
        }
    }

    let prev_dns = prev.and_then(|p| p.get("dns"));
    let merged = |key: &str, ours: &[String]| -> Vec<String> {
        let mut out = ours.to_vec();
        if let Some(theirs) = prev_dns.and_then(|d| d.get(key)).and_then(Value::as_array) {
            for s in theirs.iter().filter_map(Value::as_str) {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
        }
        out
    };
    let mut dns = json!({});
    for (key, ours) in [
        ("nameservers", &a.dns.nameservers),
        ("search", &a.dns.search),
        ("options", &a.dns.options),
    ] {
        let m = merged(key, ours);
        if !m.is_empty() {
            dns[key] = strings(&m);
        }
    }
    if let Some(domain) = prev_dns.and_then(|d| d.get("domain")) {
        dns["domain"] = domain.clone();
    }
    json!({
        "cniVersion": version.as_str(),
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

/// What the namespace holds for the interface (read over netlink by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The interface exists.
    pub present: bool,
    pub up: bool,
    pub mac: String,
    /// IPv4 and IPv6 addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// IPv4 and IPv6 routes through the interface: (destination CIDR, gateway).
    pub routes: Vec<(String, Option<IpAddr>)>,
}

/// CHECK: what `prev` (ADD's result) says of the attachment of `ifname` in `netns` that the
/// namespace (`seen`) or the daemon's endpoint (`ep_ips`, its addresses of both families,
/// `ep_mac`) contradicts. Empty when all is as ADD left it. Routes of `prev` through
/// netyard's gateways (either family's) must be there; other routes are a later plugin's
/// business. On a bridge network the IPv6 default route comes from the gateway's Router
/// Advertisements, through its link-local address: `::/0` via a link-local next hop counts
/// as the route via `gateway6` ([`has_route`]).
pub fn check(
    prev: &Value,
    ifname: &str,
    netns: &str,
    ep_ips: &[&str],
    ep_mac: &str,
    seen: &Observed,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ifaces = prev.get("interfaces").and_then(Value::as_array);
    let found = ifaces.and_then(|l| {
        l.iter().enumerate().find(|(_, i)| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == netns)
        })
    });
    let Some((index, iface)) = found else {
        problems.push(format!("prevResult lists no interface {ifname} in {netns}"));
        return problems;
    };
    if !seen.present {
        problems.push(format!("{ifname} is missing from {netns}"));
        return problems;
    }
    if !seen.up {
        problems.push(format!("{ifname} is down"));
    }
    let want_mac = iface.get("mac").and_then(Value::as_str).unwrap_or_default();
    if !want_mac.eq_ignore_ascii_case(&seen.mac) {
        problems.push(format!(
            "{ifname} has MAC {}, prevResult says {want_mac}",
            seen.mac
        ));
    }
    if !want_mac.eq_ignore_ascii_case(ep_mac) {
        problems.push(format!(
            "the daemon's endpoint has MAC {ep_mac}, prevResult says {want_mac}"
        ));
    }
    let mut gateways = Vec::new();
    for ip in prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if ip.get("interface").and_then(Value::as_u64) != Some(index as u64) {
            continue;
        }
        let addr = ip
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parsed = addr
            .split_once('/')
            .and_then(|(a, p)| Some((a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?)));
        let Some((a, p)) = parsed else {
            problems.push(format!(
                "prevResult has an address netyard cannot read: {addr:?}"
            ));
            continue;
        };
        if !seen.addrs.contains(&(a, p)) {
            problems.push(format!("{ifname} lacks {a}/{p}"));
        }
        if !ep_ips.contains(&a.to_string().as_str()) {
            problems.push(format!(
                "the daemon's endpoint has {}, prevResult says {a}",
                ep_ips.join(", ")
            ));
        }
        if let Some(gw) = ip
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<IpAddr>().ok())
        {
            gateways.push(gw);
        }
    }
    for r in prev
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let gw: Option<IpAddr> = r
            .get("gw")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        let Some(gw) = gw.filter(|g| gateways.contains(g)) else {
            continue;
        };
        let dst = r.get("dst").and_then(Value::as_str).unwrap_or_default();
        if !has_route(&seen.routes, dst, gw) {
            problems.push(format!("the route to {dst} via {gw} is missing"));
        }
    }
    problems
}

/// Whether `routes` (through the attachment's interface) hold `dst` via `gw`. An IPv6
/// default route via a link-local next hop stands for the one via `gw`: netyard's gateway
/// advertises itself from its link-local address (RFC 4861 section 4.2), and it is the only
/// router on the interface's link.
fn has_route(routes: &[(String, Option<IpAddr>)], dst: &str, gw: IpAddr) -> bool {
    routes.iter().any(|(d, g)| {
        d == dst
            && match (*g, gw) {
                (Some(g), _) if g == gw => true,
                (Some(IpAddr::V6(g)), IpAddr::V6(_)) => dst == "::/0" && g.is_unicast_link_local(),
                _ => false,
            }
    })
}
