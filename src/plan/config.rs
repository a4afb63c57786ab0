//! `--config` entries against the saved state: which fields the config gives that the saved
//! spec does not have. The state wins (containers depend on what it holds); the caller logs
//! the fields named here.

use std::net::Ipv4Addr;

use netyard_api::model::{EndpointCreate, NetworkCreate};
use netyard_switch::MacAddr;

use crate::spec::{EndpointSpec, NetworkSpec};

/// The fields `req` sets to something other than what `saved` holds (fields the request
/// leaves to their defaults are not compared: the saved value is what the default became).
pub fn network_differs(req: &NetworkCreate, saved: &NetworkSpec) -> Vec<&'static str> {
    let mut d = Vec::new();
    let subnet_same = req.subnet.as_deref().is_none_or(|s| {
        s.parse::<ipnet::Ipv4Net>()
            .is_ok_and(|n| n.trunc() == saved.subnet)
    });
    if !subnet_same {
        d.push("subnet");
    }
    if !req
        .gateway
        .as_deref()
        .is_none_or(|g| g.parse::<Ipv4Addr>() == Ok(saved.gateway))
    {
        d.push("gateway");
    }
    if req.mtu.is_some_and(|m| m != saved.mtu) {
        d.push("mtu");
    }
    if req.internal != saved.internal {
        d.push("internal");
    }
    if req.host_loopback != saved.host_loopback {
        d.push("host_loopback");
    }
    let extra: Vec<Option<Ipv4Addr>> = req.gateway_extra.iter().map(|s| s.parse().ok()).collect();
    if extra
        != saved
            .gateway_extra
            .iter()
            .map(|ip| Some(*ip))
            .collect::<Vec<_>>()
    {
        d.push("gateway_extra");
    }
    let maps: Vec<Option<(Ipv4Addr, Ipv4Addr)>> = req
        .maps
        .iter()
        .map(|m| Some((m.guest.parse().ok()?, m.host.parse().ok()?)))
        .collect();
    if maps
        != saved
            .maps
            .iter()
            .map(|m| Some((m.guest, m.host)))
            .collect::<Vec<_>>()
    {
        d.push("maps");
    }
    if req
        .container_resolver
        .is_some_and(|r| r != saved.container_resolver)
    {
        d.push("container_resolver");
    }
    if req.port_security.is_some_and(|p| p != saved.port_security) {
        d.push("port_security");
    }
    if req.aging.is_some_and(|a| a != saved.aging) {
        d.push("aging");
    }
    if req
        .max_macs_per_port
        .is_some_and(|m| m != saved.max_macs_per_port)
    {
        d.push("max_macs_per_port");
    }
    if req.max_flows.is_some_and(|m| m != saved.max_flows) {
        d.push("max_flows");
    }
    if req
        .max_flows_per_endpoint
        .is_some_and(|m| m != saved.max_flows_per_endpoint)
    {
        d.push("max_flows_per_endpoint");
    }
    if req.vxlan != saved.vxlan.as_ref().map(|v| v.vni) {
        d.push("vxlan");
    }
    d
}

/// Like [`network_differs`], for an endpoint.
pub fn endpoint_differs(req: &EndpointCreate, saved: &EndpointSpec) -> Vec<&'static str> {
    let mut d = Vec::new();
    if !req
        .ip
        .as_deref()
        .is_none_or(|s| s.parse::<Ipv4Addr>() == Ok(saved.ip))
    {
        d.push("ip");
    }
    if !req
        .mac
        .as_deref()
        .is_none_or(|s| s.parse::<MacAddr>() == Ok(saved.mac))
    {
        d.push("mac");
    }
    let default_kind = if req.peer.is_some() { "veth" } else { "tap" };
    if req.kind.as_deref().unwrap_or(default_kind) != saved.kind.as_str() {
        d.push("kind");
    }
    if req.ifname.as_deref().unwrap_or("eth0") != saved.ifname {
        d.push("ifname");
    }
    if req.trusted != saved.trusted {
        d.push("trusted");
    }
    if req.peer.is_some() && req.peer != saved.peer {
        d.push("peer");
    }
    let ns_same = match (&req.netns, req.pid) {
        (Some(p), _) => *p == saved.netns,
        (None, Some(pid)) => saved.pid.is_some_and(|s| i64::from(s) == i64::from(pid)),
        (None, None) => true,
    };
    if !ns_same {
        d.push(if req.pid.is_some() { "pid" } else { "netns" });
    }
    let mut aliases: Vec<&String> = req.aliases.iter().filter(|a| **a != req.name).collect();
    aliases.sort();
    aliases.dedup();
    let mut saved_aliases: Vec<&String> = saved.aliases.iter().collect();
    saved_aliases.sort();
    if aliases != saved_aliases {
        d.push("aliases");
    }
    d
}
