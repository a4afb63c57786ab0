//! From a lab file to what `lab up` will ask of the daemon, in order, or every error found,
//! each naming its path in the file. Pure: no daemon, no kernel.
//!
//! Checked here (the daemon checks each request again, and names the field; these checks
//! exist so that a bad file creates nothing): names, references (a node's or router's
//! network, a link's network and node or router, a route's next hop on one of the node's or
//! router's networks, a router's NAT network among its networks, a network's gateway router
//! on that network), addresses (IPv4, inside the network's subnet when it is given, not the
//! gateway, not taken twice, nodes and routers alike), subnets and prefixes, sysctls (`net.*`
//! only), restart policies, link values (durations, percentages, rates, direction, as `link
//! set` reads them), published port SPECs.
//!
//! A router interface without an address gets one here (the lowest of the subnet that is not
//! the gateway and that nothing in the file names), so that IPAM, which hands out the next
//! free address, can never give the router an address a node names explicitly further on.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::file::{Issue, LabFile};
use crate::model::{EndpointCreate, LinkSettings, NetworkCreate};
use netyard_api::lab::{NodeCreate, NodeRoute};
use netyard_api::router::{RouteReq, RouterCreate, RouterInterfaceReq};

/// One interface of a node: attached by the node's pid at apply time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    pub network: String,
    pub endpoint: EndpointCreate,
}

/// One impairment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub network: String,
    pub endpoint: String,
    pub settings: LinkSettings,
}

/// What `up` does, in this order: networks, routers, gateway routers, nodes, attachments,
/// routes, links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub networks: Vec<NetworkCreate>,
    pub routers: Vec<RouterCreate>,
    /// (network, router): `network update NETWORK --gateway-router ROUTER`.
    pub gateway_routers: Vec<(String, String)>,
    pub nodes: Vec<NodeCreate>,
    pub attaches: Vec<Attach>,
    pub routes: Vec<(String, NodeRoute)>,
    pub links: Vec<Link>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const NAME_RULE: &str =
    "is not a name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)";

/// The lab's name when the file gives none: the file's name without its extension.
pub fn default_name(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("lab")
        .to_string()
}

/// Validates `lab` (read from `file`) into a plan, or returns every issue found.
pub fn plan(lab: &LabFile, file: &str) -> Result<Plan, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut bad = |path: String, reason: String| issues.push(Issue { path, reason });
    let name = lab.name.clone().unwrap_or_else(|| default_name(file));
    if !valid_name(&name) {
        bad(
            if lab.name.is_some() {
                "name".into()
            } else {
                String::new()
            },
            format!("the lab's name {name:?} {NAME_RULE}"),
        );
    }
    // Networks.
    let mut subnets: BTreeMap<&str, (Option<Ipv4Net>, Option<Ipv4Addr>)> = BTreeMap::new();
    let mut networks = Vec::new();
    for (n, d) in &lab.networks {
        let p = format!("networks.{n}");
        if !valid_name(n) {
            bad(p.clone(), format!("{n:?} {NAME_RULE}"));
        }
        let subnet = match &d.subnet {
            None => None,
            Some(s) => match s.parse::<Ipv4Net>() {
                Ok(net) if net.prefix_len() <= 30 => Some(net.trunc()),
                Ok(_) => {
                    bad(
                        format!("{p}.subnet"),
                        format!("{s:?} is smaller than a /30"),
                    );
                    None
                }
                Err(_) => {
                    bad(
                        format!("{p}.subnet"),
                        format!("{s:?} is not an IPv4 CIDR such as 10.1.0.0/24"),
                    );
                    None
                }
            },
        };
        for (other, (os, _)) in &subnets {
            if let (Some(a), Some(b)) = (subnet, os) {
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    bad(
                        format!("{p}.subnet"),
                        format!("{a} overlaps networks.{other}.subnet {b}"),
                    );
                }
            }
        }
        let gateway = match (&d.gateway, subnet) {
            (None, s) => s.and_then(|s| s.hosts().next()),
            (Some(g), s) => match g.parse::<Ipv4Addr>() {
                Ok(ip) if s.is_none_or(|s| s.contains(&ip)) => Some(ip),
                Ok(ip) => {
                    bad(
                        format!("{p}.gateway"),
                        format!("{ip} is outside the subnet"),
                    );
                    None
                }
                Err(_) => {
                    bad(
                        format!("{p}.gateway"),
                        format!("{g:?} is not an IPv4 address"),
                    );
                    None
                }
            },
        };
        if let Some(m) = d.mtu {
            if !(576..=65520).contains(&m) {
                bad(
                    format!("{p}.mtu"),
                    format!("{m} out of range (576 to 65520)"),
                );
            }
        }
        if let Some(v) = &d.vxlan {
            if v.vni > 16_777_215 {
                bad(
                    format!("{p}.vxlan.vni"),
                    format!("{} out of range (0 to 16777215)", v.vni),
                );
            }
            if let Some(port) = v.port {
                if !(1..=65535).contains(&port) {
                    bad(
                        format!("{p}.vxlan.port"),
                        format!("{port} out of range (1 to 65535)"),
                    );
                }
            }
            for (i, peer) in v.peers.iter().enumerate() {
                if peer.parse::<Ipv4Addr>().is_err() {
                    bad(
                        format!("{p}.vxlan.peers[{i}]"),
                        format!("{peer:?} is not an IPv4 address"),
                    );
                }
            }
            if let Some(l) = &v.local {
                if l.parse::<Ipv4Addr>().is_err() {
                    bad(
                        format!("{p}.vxlan.local"),
                        format!("{l:?} is not an IPv4 address"),
                    );
                }
            }
        }
        subnets.insert(n, (subnet, gateway));
        networks.push(NetworkCreate {
            name: n.clone(),
            subnet: d.subnet.clone(),
            gateway: d.gateway.clone(),
            mtu: d.mtu,
            internal: d.internal,
            host_loopback: d.host_loopback,
            port_security: d.port_security,
            icc: d.icc,
            vxlan: d.vxlan.as_ref().map(|v| v.vni),
            vxlan_local: d.vxlan.as_ref().and_then(|v| v.local.clone()),
            vxlan_port: d.vxlan.as_ref().and_then(|v| v.port),
            vxlan_peers: d
                .vxlan
                .as_ref()
                .map(|v| v.peers.clone())
                .unwrap_or_default(),
            ..Default::default()
        });
    }
    let mut taken: BTreeMap<(String, Ipv4Addr), String> = BTreeMap::new();
    // Routers (before the nodes: `up` creates them first).
    let routers = plan_routers(lab, &subnets, &mut taken, &mut bad);
    let mut gateway_routers = Vec::new();
    for (n, d) in &lab.networks {
        let Some(r) = &d.gateway_router else { continue };
        let p = format!("networks.{n}.gateway_router");
        match lab.routers.get(r) {
            None => bad(p, format!("no router {r:?} in routers")),
            Some(rd) if !rd.networks.iter().any(|i| i.network == *n) => bad(
                p,
                format!("router {r:?} has no interface on {n:?} (add it to routers.{r}.networks)"),
            ),
            Some(_) => gateway_routers.push((n.clone(), r.clone())),
        }
    }
    // Nodes and their interfaces.
    let mut nodes = Vec::new();
    let mut attaches = Vec::new();
    let mut routes = Vec::new();
    for (n, d) in &lab.nodes {
        let p = format!("nodes.{n}");
        if !valid_name(n) {
            bad(p.clone(), format!("{n:?} {NAME_RULE}"));
        }
        if lab.routers.contains_key(n) {
            bad(
                p.clone(),
                format!(
                    "routers.{n} has that name too: a router's interface is a port of its name"
                ),
            );
        }
        match d.restart.as_deref() {
            None | Some("always") | Some("never") => {}
            Some(r) => bad(
                format!("{p}.restart"),
                format!("{r:?} is not one of always, never"),
            ),
        }
        let mut sysctls = BTreeMap::new();
        for (k, v) in &d.sysctls {
            if !sysctl_ok(k) {
                bad(
                    format!("{p}.sysctls.{k}"),
                    format!("{k:?} is not a network sysctl such as net.ipv4.ip_forward"),
                );
            }
            sysctls.insert(k.clone(), v.text());
        }
        let command = match &d.command {
            None => Vec::new(),
            Some(super::file::CommandDecl::Shell(s)) => {
                vec!["/bin/sh".into(), "-c".into(), s.clone()]
            }
            Some(super::file::CommandDecl::Argv(v)) => {
                if v.first().is_none_or(|c| c.is_empty()) {
                    bad(format!("{p}.command"), "the program is empty".into());
                }
                v.clone()
            }
        };
        nodes.push(NodeCreate {
            name: n.clone(),
            lab: Some(name.clone()),
            command,
            sysctls,
            restart: d.restart.clone(),
        });
        let mut on: Vec<(String, Option<Ipv4Net>)> = Vec::new();
        for (i, a) in d.networks.iter().enumerate() {
            let ap = format!("{p}.networks[{i}]");
            let Some((subnet, gateway)) = subnets.get(a.network.as_str()).copied() else {
                bad(
                    format!("{ap}.network"),
                    format!("no network {:?} in networks", a.network),
                );
                continue;
            };
            if on.iter().any(|(x, _)| *x == a.network) {
                bad(
                    format!("{ap}.network"),
                    format!("{p} is on {:?} already", a.network),
                );
            }
            on.push((a.network.clone(), subnet));
            if let Some(ip) = &a.ip {
                match ip.parse::<Ipv4Addr>() {
                    Err(_) => bad(format!("{ap}.ip"), format!("{ip:?} is not an IPv4 address")),
                    Ok(addr) => {
                        host_address(addr, &ap, &a.network, subnet, gateway, &mut taken, &mut bad)
                    }
                }
            }
            if let Some(k) = &a.kind {
                if k != "tap" && k != "veth" {
                    bad(
                        format!("{ap}.kind"),
                        format!("{k:?} is not one of tap, veth"),
                    );
                }
            }
            for (j, spec) in a.publish.iter().enumerate() {
                if let Err(e) = netyard_api::portspec::parse(spec) {
                    bad(format!("{ap}.publish[{j}]"), e.to_string());
                }
            }
            attaches.push(Attach {
                network: a.network.clone(),
                endpoint: EndpointCreate {
                    name: n.clone(),
                    ip: a.ip.clone(),
                    mac: a.mac.clone(),
                    ifname: Some(format!("eth{i}")),
                    kind: Some(a.kind.clone().unwrap_or_else(|| "tap".into())),
                    trusted: a.trusted,
                    aliases: a.aliases.clone(),
                    publish: a.publish.clone(),
                    owner: Some(format!("lab:{name}")),
                    ..Default::default()
                },
            });
        }
        for (i, r) in d.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{i}]");
            if r.to.parse::<Ipv4Net>().is_err() {
                bad(
                    format!("{rp}.to"),
                    format!("{:?} is not an IPv4 prefix such as 10.1.2.0/24", r.to),
                );
            }
            match r.via.parse::<Ipv4Addr>() {
                Err(_) => bad(
                    format!("{rp}.via"),
                    format!("{:?} is not an IPv4 address", r.via),
                ),
                Ok(via) => {
                    let known: Vec<Ipv4Net> = on.iter().filter_map(|(_, s)| *s).collect();
                    // Only when every network of the node has a known subnet can we tell.
                    if known.len() == on.len() && !known.iter().any(|s| s.contains(&via)) {
                        bad(
                            format!("{rp}.via"),
                            format!("{via} is on none of {p}'s networks"),
                        );
                    }
                }
            }
            routes.push((
                n.clone(),
                NodeRoute {
                    to: r.to.clone(),
                    via: r.via.clone(),
                },
            ));
        }
    }
    // Links.
    let mut links = Vec::new();
    for (i, l) in lab.links.iter().enumerate() {
        let lp = format!("links[{i}]");
        if !lab.networks.contains_key(&l.network) {
            bad(
                format!("{lp}.network"),
                format!("no network {:?} in networks", l.network),
            );
        } else if l.node == "vxlan" {
            if lab
                .networks
                .get(&l.network)
                .is_some_and(|n| n.vxlan.is_none())
            {
                bad(
                    format!("{lp}.node"),
                    format!("network {:?} has no vxlan tunnel", l.network),
                );
            }
        } else if let Some(r) = lab.routers.get(&l.node) {
            if !r.networks.iter().any(|i| i.network == l.network) {
                bad(
                    format!("{lp}.node"),
                    format!("router {:?} is not on network {:?}", l.node, l.network),
                );
            }
        } else if !lab.nodes.contains_key(&l.node) {
            bad(
                format!("{lp}.node"),
                format!("no node or router {:?} in nodes or routers", l.node),
            );
        } else if !lab.nodes[&l.node]
            .networks
            .iter()
            .any(|a| a.network == l.network)
        {
            bad(
                format!("{lp}.node"),
                format!("node {:?} is not on network {:?}", l.node, l.network),
            );
        }
        let settings = LinkSettings {
            direction: l.direction.clone(),
            delay: l.delay.clone(),
            jitter: l.jitter.clone(),
            distribution: l.distribution.clone(),
            loss: l.loss.clone(),
            loss_burst: l.loss_burst.clone(),
            duplicate: l.duplicate.clone(),
            corrupt: l.corrupt.clone(),
            reorder: l.reorder.clone(),
            rate: l.rate.clone(),
            limit: l.limit,
            seed: l.seed,
        };
        for (field, reason) in link_issues(&settings) {
            bad(format!("{lp}.{field}"), reason);
        }
        links.push(Link {
            network: l.network.clone(),
            endpoint: l.node.clone(),
            settings,
        });
    }
    if issues.is_empty() {
        Ok(Plan {
            name,
            networks,
            routers,
            gateway_routers,
            nodes,
            attaches,
            routes,
            links,
        })
    } else {
        Err(issues)
    }
}

/// Every address the file names explicitly on each network (nodes' and routers'), so that an
/// address picked for a router avoids them.
fn named_addresses(lab: &LabFile) -> BTreeMap<&str, Vec<Ipv4Addr>> {
    let mut m: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    let nodes = lab
        .nodes
        .values()
        .flat_map(|n| n.networks.iter().map(|a| (a.network.as_str(), &a.ip)));
    let routers = lab
        .routers
        .values()
        .flat_map(|r| r.networks.iter().map(|a| (a.network.as_str(), &a.ip)));
    for (net, ip) in nodes.chain(routers) {
        if let Some(ip) = ip.as_deref().and_then(|s| s.parse().ok()) {
            m.entry(net).or_default().push(ip);
        }
    }
    m
}

/// Checks an address a node or a router asks for on `network`: a host address of the subnet,
/// not the gateway, not named twice in the file (`taken` remembers who named it first).
fn host_address(
    addr: Ipv4Addr,
    ap: &str,
    network: &str,
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    taken: &mut BTreeMap<(String, Ipv4Addr), String>,
    bad: &mut impl FnMut(String, String),
) {
    if let Some(s) = subnet {
        if !s.contains(&addr) || addr == s.network() || addr == s.broadcast() {
            bad(
                format!("{ap}.ip"),
                format!("{addr} is not a host address of {s}"),
            );
        }
    }
    if Some(addr) == gateway {
        bad(
            format!("{ap}.ip"),
            format!("{addr} is the gateway of {network:?}"),
        );
    }
    match taken.get(&(network.to_string(), addr)) {
        Some(other) => bad(
            format!("{ap}.ip"),
            format!("{addr} is also {other} on {network:?}"),
        ),
        None => {
            taken.insert((network.to_string(), addr), format!("{ap}.ip"));
        }
    }
}

/// Checks the `routers` table into `router create` requests.
fn plan_routers(
    lab: &LabFile,
    subnets: &BTreeMap<&str, (Option<Ipv4Net>, Option<Ipv4Addr>)>,
    taken: &mut BTreeMap<(String, Ipv4Addr), String>,
    bad: &mut impl FnMut(String, String),
) -> Vec<RouterCreate> {
    let named = named_addresses(lab);
    let mut picked: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut out = Vec::new();
    for (r, d) in &lab.routers {
        let p = format!("routers.{r}");
        if !valid_name(r) {
            bad(p.clone(), format!("{r:?} {NAME_RULE}"));
        }
        if d.networks.is_empty() {
            bad(
                format!("{p}.networks"),
                "a router needs at least one network".into(),
            );
        }
        let mut interfaces = Vec::new();
        // The router's networks with their subnets (None: not known before `up`).
        let mut on: Vec<(String, Option<Ipv4Net>, Option<Ipv4Addr>)> = Vec::new();
        for (i, a) in d.networks.iter().enumerate() {
            let ap = format!("{p}.networks[{i}]");
            let Some((subnet, gateway)) = subnets.get(a.network.as_str()).copied() else {
                bad(
                    format!("{ap}.network"),
                    format!("no network {:?} in networks", a.network),
                );
                continue;
            };
            if on.iter().any(|(x, _, _)| *x == a.network) {
                bad(
                    format!("{ap}.network"),
                    format!(
                        "{p} is on {:?} already: one interface per network",
                        a.network
                    ),
                );
                continue;
            }
            let ip = match &a.ip {
                Some(ip) => match ip.parse::<Ipv4Addr>() {
                    Err(_) => {
                        bad(format!("{ap}.ip"), format!("{ip:?} is not an IPv4 address"));
                        None
                    }
                    Ok(addr) => {
                        host_address(addr, &ap, &a.network, subnet, gateway, taken, bad);
                        Some(addr)
                    }
                },
                None => subnet.and_then(|s| {
                    let avoid = named.get(a.network.as_str());
                    let pick = s.hosts().find(|h| {
                        Some(*h) != gateway
                            && !avoid.is_some_and(|v| v.contains(h))
                            && !picked.contains(&(a.network.clone(), *h))
                    });
                    if pick.is_none() {
                        bad(
                            format!("{ap}.ip"),
                            format!("no address of {s} is left for the router"),
                        );
                    }
                    if let Some(h) = pick {
                        picked.push((a.network.clone(), h));
                        taken.insert((a.network.clone(), h), format!("{ap} (picked)"));
                    }
                    pick
                }),
            };
            on.push((a.network.clone(), subnet, ip));
            interfaces.push(RouterInterfaceReq {
                network: a.network.clone(),
                ip: ip.map(|i| i.to_string()).or_else(|| a.ip.clone()),
            });
        }
        let mut nat = Vec::new();
        if let Some(n) = &d.nat {
            if on.iter().any(|(x, _, _)| x == n) {
                nat.push(n.clone());
            } else {
                bad(
                    format!("{p}.nat"),
                    format!("{n:?} is not one of the router's networks"),
                );
            }
        }
        let mut routes = Vec::new();
        for (i, rt) in d.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{i}]");
            match rt.prefix.parse::<Ipv4Net>() {
                Err(_) => bad(
                    format!("{rp}.prefix"),
                    format!("{:?} is not an IPv4 prefix such as 10.1.2.0/24", rt.prefix),
                ),
                Ok(pfx) => {
                    if routes.iter().any(|x: &RouteReq| {
                        x.prefix
                            .parse::<Ipv4Net>()
                            .is_ok_and(|y| y.trunc() == pfx.trunc())
                    }) {
                        bad(
                            format!("{rp}.prefix"),
                            format!("{} is routed twice", pfx.trunc()),
                        );
                    }
                }
            }
            match rt.via.parse::<Ipv4Addr>() {
                Err(_) => bad(
                    format!("{rp}.via"),
                    format!("{:?} is not an IPv4 address", rt.via),
                ),
                Ok(via) => {
                    let known: Vec<Ipv4Net> = on.iter().filter_map(|(_, s, _)| *s).collect();
                    if on.iter().any(|(_, _, ip)| *ip == Some(via)) {
                        bad(format!("{rp}.via"), format!("{via} is {p}'s own address"));
                    } else if known.len() == on.len() && !known.iter().any(|s| s.contains(&via)) {
                        bad(
                            format!("{rp}.via"),
                            format!("{via} is on none of {p}'s networks"),
                        );
                    }
                }
            }
            routes.push(RouteReq {
                prefix: rt.prefix.clone(),
                via: rt.via.clone(),
            });
        }
        out.push(RouterCreate {
            name: r.clone(),
            interfaces,
            nat,
            routes,
        });
    }
    out
}

fn sysctl_ok(key: &str) -> bool {
    key.starts_with("net.")
        && key.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// The link's values read as `link set` reads them (the switch crate's parsers: the same
/// functions the daemon runs, so the file is refused exactly when the daemon would refuse it).
fn link_issues(s: &LinkSettings) -> Vec<(&'static str, String)> {
    use netyard_switch::impair::config::{
        parse_duration_us, parse_loss_burst, parse_percent, parse_rate_bps,
    };
    let mut v = Vec::new();
    let mut check =
        |name: &'static str, val: &Option<String>, f: &dyn Fn(&str) -> Result<(), String>| {
            if let Some(x) = val {
                if let Err(e) = f(x) {
                    v.push((name, e));
                }
            }
        };
    check("direction", &s.direction, &|d| match d {
        "out" | "in" | "both" => Ok(()),
        _ => Err(format!("{d:?} is not one of out, in, both")),
    });
    check("delay", &s.delay, &|x| parse_duration_us(x).map(drop));
    check("jitter", &s.jitter, &|x| parse_duration_us(x).map(drop));
    check("distribution", &s.distribution, &|d| match d {
        "normal" | "uniform" => Ok(()),
        _ => Err(format!("{d:?} is not one of normal, uniform")),
    });
    check("loss", &s.loss, &|x| parse_percent(x).map(drop));
    check("loss_burst", &s.loss_burst, &|x| {
        parse_loss_burst(x).map(drop)
    });
    check("duplicate", &s.duplicate, &|x| parse_percent(x).map(drop));
    check("corrupt", &s.corrupt, &|x| parse_percent(x).map(drop));
    check("reorder", &s.reorder, &|x| parse_percent(x).map(drop));
    check("rate", &s.rate, &|x| parse_rate_bps(x).map(drop));
    v
}
