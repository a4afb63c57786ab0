//! Pure translations between netavark's JSON and netyard's API: a network's configuration to a
//! `NetworkCreate`, a container's options to an `EndpointCreate`, an endpoint to the status
//! block. No I/O, so every field error is unit-tested (`tests.rs`).
//!
//! Field names in errors are JSON paths into what netavark or Podman sent
//! (`network.options.mtu`, `port_mappings[1].protocol`), so a user finds the flag at fault.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netyard_api::model::{EndpointCreate, EndpointInfo, NetworkCreate, NetworkInfo};

use super::types::{
    NetAddress, NetInterface, Network, PluginExec, PortMapping, StatusBlock, Subnet,
};
use super::PluginError;

/// The network options (`podman network create -o KEY=VALUE`) netyard understands.
pub const OPTIONS: &[&str] = &[
    "api",
    "kind",
    "mtu",
    "host_loopback",
    "port_security",
    "aging",
    "max_macs_per_port",
    "max_flows",
    "max_flows_per_endpoint",
];

/// What a network's configuration asks of netyard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// The network as the daemon creates it when it does not have it yet.
    pub create: NetworkCreate,
    /// The daemon's socket (`-o api=PATH`); else NETYARD_API, else the default.
    pub api: Option<String>,
    /// The endpoints' port kind (`-o kind=veth|tap`; veth by default).
    pub kind: String,
}

fn field_err(at: &str, field: impl std::fmt::Display, reason: impl Into<String>) -> PluginError {
    PluginError::Field {
        field: format!("{at}{field}"),
        reason: reason.into(),
    }
}

fn parse_bool(at: &str, key: &str, v: &str) -> Result<bool, PluginError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(field_err(
            at,
            format_args!("options.{key}"),
            format!("{v:?} is not true or false"),
        )),
    }
}

fn parse_num<T: std::str::FromStr>(at: &str, key: &str, v: &str) -> Result<T, PluginError> {
    v.trim().parse().map_err(|_| {
        field_err(
            at,
            format_args!("options.{key}"),
            format!("{v:?} is not a number"),
        )
    })
}

/// Checks a network's configuration and maps it to netyard's request. `at` prefixes field
/// names: "" for `create`'s input (the network itself), "network." for `setup`'s.
pub fn network_plan(net: &Network, at: &str) -> Result<NetworkPlan, PluginError> {
    if net.name.is_empty() {
        return Err(field_err(at, "name", "missing"));
    }
    crate::plan::valid_name("name", &net.name).map_err(|e| {
        field_err(
            at,
            "name",
            e.to_string().trim_start_matches("name: ").to_string(),
        )
    })?;
    if net.routes.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(field_err(
            at,
            "routes",
            "static routes are not supported by netyard networks",
        ));
    }
    if net
        .network_dns_servers
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(field_err(
            at,
            "network_dns_servers",
            "netyard's resolver forwards to the daemon's upstreams (netyard daemon \
             --dns-upstream); per-network servers are not supported",
        ));
    }
    if let Some(d) = net.ipam_options.as_ref().and_then(|o| o.get("driver")) {
        if !matches!(d.as_str(), "" | "host-local") {
            return Err(field_err(
                at,
                "ipam_options.driver",
                format!("{d:?} is not supported (host-local: Podman's or netyard's addresses)"),
            ));
        }
    }
    let mut create = NetworkCreate {
        name: net.name.clone(),
        internal: net.internal,
        // Dual stack: podman network create --ipv6 (with or without an IPv6 subnet).
        ipv6: net.ipv6_enabled,
        ..NetworkCreate::default()
    };
    for (i, s) in net.subnets.iter().flatten().enumerate() {
        let n = match s.subnet {
            IpNet::V4(n) => n,
            IpNet::V6(n6) => {
                if !net.ipv6_enabled {
                    return Err(field_err(
                        at,
                        format_args!("subnets[{i}].subnet"),
                        format!("{n6} is IPv6 but ipv6_enabled is false"),
                    ));
                }
                if create.subnet6.is_some() {
                    return Err(field_err(
                        at,
                        format_args!("subnets[{i}]"),
                        "a netyard network has one IPv6 prefix",
                    ));
                }
                match s.gateway {
                    None | Some(IpAddr::V6(_)) => {}
                    Some(g) => {
                        return Err(field_err(
                            at,
                            format_args!("subnets[{i}].gateway"),
                            format!("{g} is not an IPv6 address"),
                        ))
                    }
                }
                create.subnet6 = Some(n6.trunc().to_string());
                create.gateway6 = s.gateway.map(|g| g.to_string());
                continue;
            }
        };
        if create.subnet.is_some() {
            return Err(field_err(
                at,
                format_args!("subnets[{i}]"),
                "a netyard network has one IPv4 subnet",
            ));
        }
        match s.gateway {
            None | Some(IpAddr::V4(_)) => {}
            Some(g) => {
                return Err(field_err(
                    at,
                    format_args!("subnets[{i}].gateway"),
                    format!("{g} is not an IPv4 address"),
                ))
            }
        }
        create.subnet = Some(n.trunc().to_string());
        create.gateway = s.gateway.map(|g| g.to_string());
    }
    let mut api = None;
    let mut kind = "veth".to_string();
    for (k, v) in net.options.iter().flatten() {
        match k.as_str() {
            "api" => api = Some(v.clone()).filter(|v| !v.is_empty()),
            "kind" => match v.as_str() {
                "veth" | "tap" => kind = v.clone(),
                _ => {
                    return Err(field_err(
                        at,
                        "options.kind",
                        format!("{v:?} is not a port kind (veth or tap)"),
                    ))
                }
            },
            "mtu" => create.mtu = Some(parse_num(at, k, v)?),
            "host_loopback" => create.host_loopback = parse_bool(at, k, v)?,
            "port_security" => create.port_security = Some(parse_bool(at, k, v)?),
            "aging" => create.aging = Some(parse_num(at, k, v)?),
            "max_macs_per_port" => create.max_macs_per_port = Some(parse_num(at, k, v)?),
            "max_flows" => create.max_flows = Some(parse_num(at, k, v)?),
            "max_flows_per_endpoint" => create.max_flows_per_endpoint = Some(parse_num(at, k, v)?),
            _ => {
                return Err(field_err(
                    at,
                    format_args!("options.{k}"),
                    format!("not a netyard option (known: {})", OPTIONS.join(", ")),
                ))
            }
        }
    }
    Ok(NetworkPlan { create, api, kind })
}

/// An existing netyard network must be the one the configuration describes: the addresses in
/// the status block (and Podman's IPAM) come from the configuration's subnet.
pub fn check_existing(
    plan: &NetworkCreate,
    info: &NetworkInfo,
    at: &str,
) -> Result<(), PluginError> {
    let theirs: Option<Ipv4Net> = info.subnet.parse().ok();
    if let Some(want) = plan.subnet.as_deref() {
        let want: Option<Ipv4Net> = want.parse().ok();
        if want.map(|w| w.trunc()) != theirs.map(|t| t.trunc()) {
            return Err(field_err(
                at,
                "subnets[0].subnet",
                format!(
                    "netyard already has a network {:?} with subnet {}; remove it (netyard \
                     network rm {}) or use its subnet",
                    info.name, info.subnet, info.name
                ),
            ));
        }
    }
    if let Some(want) = plan.gateway.as_deref() {
        if want.parse::<Ipv4Addr>().ok() != info.gateway.parse::<Ipv4Addr>().ok() {
            return Err(field_err(
                at,
                "subnets[0].gateway",
                format!(
                    "netyard's network {:?} has gateway {}, not {want}",
                    info.name, info.gateway
                ),
            ));
        }
    }
    if plan.ipv6 && info.subnet6.is_none() {
        return Err(field_err(
            at,
            "ipv6_enabled",
            format!(
                "netyard already has a network {:?} without IPv6; remove it (netyard network \
                 rm {}) or create the Podman network without --ipv6",
                info.name, info.name
            ),
        ));
    }
    if let (Some(want), Some(theirs)) = (plan.subnet6.as_deref(), info.subnet6.as_deref()) {
        let (w, t): (Option<Ipv6Net>, Option<Ipv6Net>) = (want.parse().ok(), theirs.parse().ok());
        if w.map(|w| w.trunc()) != t.map(|t| t.trunc()) {
            return Err(field_err(
                at,
                "subnets[1].subnet",
                format!(
                    "netyard already has a network {:?} with IPv6 prefix {theirs}; remove it \
                     (netyard network rm {}) or use its prefix",
                    info.name, info.name
                ),
            ));
        }
    }
    Ok(())
}

/// `create`'s answer: the configuration Podman sent with the daemon's choices filled in (the
/// subnet and gateway, the MTU as an option, host-local IPAM so Podman hands out addresses
/// from that subnet). Name, ID and driver are unchanged, as Podman requires.
pub fn completed(mut net: Network, info: &NetworkInfo) -> Result<Network, PluginError> {
    let subnet: Ipv4Net = info.subnet.parse().map_err(|_| {
        PluginError::Daemon(format!(
            "the daemon answered network {:?} with subnet {:?}, not an IPv4 CIDR",
            info.name, info.subnet
        ))
    })?;
    let gateway: Ipv4Addr = info.gateway.parse().map_err(|_| {
        PluginError::Daemon(format!(
            "the daemon answered network {:?} with gateway {:?}, not an IPv4 address",
            info.name, info.gateway
        ))
    })?;
    let lease_range = net
        .subnets
        .as_ref()
        .and_then(|s| s.first())
        .and_then(|s| s.lease_range.clone());
    let mut subnets = vec![Subnet {
        subnet: IpNet::V4(subnet),
        gateway: Some(IpAddr::V4(gateway)),
        lease_range,
    }];
    // A dual-stack network's prefix and gateway, as Podman lists them for --ipv6.
    let v6 = info
        .subnet6
        .as_deref()
        .and_then(|s| s.parse::<Ipv6Net>().ok());
    if let Some(n6) = v6 {
        subnets.push(Subnet {
            subnet: IpNet::V6(n6),
            gateway: info
                .gateway6
                .as_deref()
                .and_then(|g| g.parse().ok())
                .map(IpAddr::V6),
            lease_range: None,
        });
    }
    net.ipv6_enabled = v6.is_some();
    net.subnets = Some(subnets);
    net.internal = info.internal;
    let opts = net.options.get_or_insert_with(BTreeMap::new);
    opts.insert("mtu".into(), info.mtu.to_string());
    let ipam = net.ipam_options.get_or_insert_with(BTreeMap::new);
    if ipam.get("driver").is_none_or(|d| d.is_empty()) {
        ipam.insert("driver".into(), "host-local".into());
    }
    Ok(net)
}

/// The endpoint's name: the container's name (its DNS name on the network), or, when that is
/// not a valid netyard name, the first 12 characters of its ID as Podman shows it.
pub fn endpoint_name(exec: &PluginExec) -> Result<String, PluginError> {
    if crate::plan::valid_name("container_name", &exec.container_name).is_ok() {
        return Ok(exec.container_name.clone());
    }
    let short: String = exec.container_id.chars().take(12).collect();
    crate::plan::valid_name("container_id", &short).map_err(|_| {
        field_err(
            "",
            "container_name",
            format!(
                "{:?} is not a valid endpoint name, and neither is the container_id {:?} \
                 (letters, digits, '_', '.', '-')",
                exec.container_name, exec.container_id
            ),
        )
    })?;
    Ok(short)
}

/// The endpoint's owner key: the container and network, netavark's key for an attachment
/// (the name may change with `podman rename`, the namespace path with a restart).
pub fn owner(exec: &PluginExec) -> String {
    format!("netavark:{}:{}", exec.container_id, exec.network.name)
}

/// The attach request for `setup NETNS`.
pub fn endpoint_request(
    exec: &PluginExec,
    netns: &str,
    kind: &str,
) -> Result<EndpointCreate, PluginError> {
    let o = &exec.network_options;
    if o.interface_name.is_empty() {
        return Err(field_err("network_options.", "interface_name", "missing"));
    }
    if let Some((k, _)) = o.options.iter().flatten().next() {
        return Err(field_err(
            "network_options.",
            format_args!("options.{k}"),
            "netyard takes no per-container network options",
        ));
    }
    let (mut ip, mut ip6) = (None, None);
    for (i, a) in o.static_ips.iter().flatten().enumerate() {
        match a {
            IpAddr::V4(v4) if ip.is_none() => ip = Some(v4.to_string()),
            IpAddr::V6(v6) if ip6.is_none() => ip6 = Some(v6.to_string()),
            _ => {
                return Err(field_err(
                    "network_options.",
                    format_args!("static_ips[{i}]"),
                    "one IPv4 and one IPv6 address per netyard network",
                ))
            }
        }
    }
    let name = endpoint_name(exec)?;
    let aliases = o
        .aliases
        .iter()
        .flatten()
        .filter(|a| **a != name)
        .cloned()
        .collect();
    Ok(EndpointCreate {
        name,
        netns: Some(netns.to_string()),
        ip,
        ip6,
        mac: o.static_mac.clone().filter(|m| !m.is_empty()),
        ifname: Some(o.interface_name.clone()),
        kind: Some(kind.to_string()),
        aliases,
        publish: publish_specs(exec.port_mappings.as_deref().unwrap_or_default())?,
        owner: Some(owner(exec)),
        ..EndpointCreate::default()
    })
}

/// Podman's port mappings as Docker SPECs (`[HOSTIP:][HOSTPORT[-END]:]CPORT[-END]/PROTO`), one
/// per protocol of a mapping.
pub fn publish_specs(maps: &[PortMapping]) -> Result<Vec<String>, PluginError> {
    let mut out = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let at = format!("port_mappings[{i}].");
        let n = m.range.max(1);
        let last = |start: u16, what: &str| -> Result<u16, PluginError> {
            start.checked_add(n - 1).ok_or_else(|| {
                field_err(
                    &at,
                    "range",
                    format!("{what} {start} + {n} ports passes 65535"),
                )
            })
        };
        if m.container_port == 0 {
            return Err(field_err(&at, "container_port", "0 is not a port"));
        }
        let cend = last(m.container_port, "container_port")?;
        let cports = if n == 1 {
            m.container_port.to_string()
        } else {
            format!("{}-{cend}", m.container_port)
        };
        let hports = match m.host_port {
            0 => String::new(),
            h if n == 1 => format!("{h}:"),
            h => format!("{h}-{}:", last(h, "host_port")?),
        };
        let host_ip = match m.host_ip.trim() {
            "" => String::new(),
            s => match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => format!("{a}:"),
                Ok(IpAddr::V6(a)) => format!("[{a}]:"),
                Err(_) => {
                    return Err(field_err(
                        &at,
                        "host_ip",
                        format!("{s:?} is not an IP address"),
                    ))
                }
            },
        };
        // Docker's SPEC needs a host port field when a host IP is given ("IP::80").
        let hports = if !host_ip.is_empty() && hports.is_empty() {
            ":".to_string()
        } else {
            hports
        };
        let protos: Vec<&str> = if m.protocol.trim().is_empty() {
            vec!["tcp"]
        } else {
            m.protocol.split(',').map(str::trim).collect()
        };
        for p in protos {
            let p = p.to_ascii_lowercase();
            if p != "tcp" && p != "udp" {
                return Err(field_err(
                    &at,
                    "protocol",
                    format!("{p:?} is not supported (netyard publishes tcp and udp)"),
                ));
            }
            out.push(format!("{host_ip}{hports}{cports}/{p}"));
        }
    }
    Ok(out)
}

/// `setup`'s answer for an attached endpoint. With DNS on (Podman's default) the gateway's
/// address is the network's DNS server: the gateway answers on port 53 with the same records
/// as 127.0.0.11, and Podman writes what it gets here into the container's resolv.conf.
pub fn status_block(ep: &EndpointInfo, dns: bool) -> Result<StatusBlock, PluginError> {
    let ip: Ipv4Addr = ep.ip.parse().map_err(|_| {
        PluginError::Daemon(format!("the daemon answered address {:?}, not IPv4", ep.ip))
    })?;
    let net = Ipv4Net::new(ip, ep.prefix_len).map_err(|_| {
        PluginError::Daemon(format!(
            "the daemon answered prefix length {}",
            ep.prefix_len
        ))
    })?;
    let gateway: Option<Ipv4Addr> = ep.gateway.parse().ok();
    let mut subnets = vec![NetAddress {
        ipnet: IpNet::V4(net),
        gateway: gateway.map(IpAddr::V4),
    }];
    // The IPv6 address of a dual-stack network, its gateway as Podman shows it (the
    // container's route goes through the gateway's link-local address, from its RA).
    if let (Some(a6), Some(len)) = (ep.ip6.as_deref(), ep.prefix_len6) {
        let a6: Ipv6Addr = a6.parse().map_err(|_| {
            PluginError::Daemon(format!("the daemon answered address {a6:?}, not IPv6"))
        })?;
        let n6 = Ipv6Net::new(a6, len).map_err(|_| {
            PluginError::Daemon(format!("the daemon answered IPv6 prefix length {len}"))
        })?;
        subnets.push(NetAddress {
            ipnet: IpNet::V6(n6),
            gateway: ep
                .gateway6
                .as_deref()
                .and_then(|g| g.parse().ok())
                .map(IpAddr::V6),
        });
    }
    let iface = NetInterface {
        mac_address: ep.mac.clone(),
        subnets: Some(subnets),
    };
    Ok(StatusBlock {
        dns_search_domains: Some(Vec::new()),
        dns_server_ips: Some(if dns {
            gateway.map(IpAddr::V4).into_iter().collect()
        } else {
            Vec::new()
        }),
        interfaces: Some(BTreeMap::from([(ep.ifname.clone(), iface)])),
    })
}
