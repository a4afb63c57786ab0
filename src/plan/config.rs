//! `--config` against the running state, at start and on every SIGHUP: which entries are new
//! (created), which ports a running endpoint does not publish yet (published), and which fields
//! the file gives that the running spec does not have. Those cannot change live (containers
//! depend on an address, a subnet, an MTU): the running spec wins and the caller logs the
//! fields named here.

use std::net::{IpAddr, Ipv4Addr};

use netyard_api::model::{EndpointCreate, NetworkCreate};
use netyard_api::portspec::{self, PortSpec};
use netyard_switch::MacAddr;

use crate::config::Config;
use crate::error::DaemonError;
use crate::ports::Mapping;
use crate::spec::{EndpointSpec, NetworkSpec, StateSpec};

/// What a config asks of the running state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPlan {
    /// Networks to create, with their index in the file (errors name `network[i].`).
    pub networks: Vec<(usize, NetworkCreate)>,
    /// Endpoints to attach, with their index in the file (`endpoint[i].`).
    pub endpoints: Vec<(usize, EndpointCreate)>,
    /// Ports running endpoints are to publish.
    pub publish: Vec<NewPorts>,
    /// Entries that differ from what runs in fields that cannot change live.
    pub kept: Vec<Kept>,
    /// Entries already as the file says.
    pub unchanged: usize,
}

/// SPECs of a running endpoint's config entry that it does not publish yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPorts {
    /// The entry's index in the file.
    pub index: usize,
    pub network: String,
    pub endpoint: String,
    /// Each SPEC with its index in the entry's `publish` (errors name `publish[j]`).
    pub specs: Vec<(usize, String)>,
}

/// A config entry that differs from the running one; the running one is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub network: String,
    /// None for the network itself.
    pub endpoint: Option<String>,
    pub fields: Vec<&'static str>,
}

/// Plans `cfg` against `state` (what runs now). A SPEC that does not parse is an error naming
/// `endpoint[i].publish[j]`; every other check is the API's, when the plan is carried out.
pub fn plan_config(cfg: &Config, state: &StateSpec) -> Result<ConfigPlan, DaemonError> {
    let mut plan = ConfigPlan::default();
    for (i, n) in cfg.network.iter().enumerate() {
        match state.networks.get(&n.name) {
            None => plan.networks.push((i, n.clone())),
            Some(saved) => {
                let fields = network_differs(n, &saved.network);
                if fields.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.kept.push(Kept {
                        network: n.name.clone(),
                        endpoint: None,
                        fields,
                    });
                }
            }
        }
    }
    for (i, e) in cfg.endpoint.iter().enumerate() {
        let net = e.network.clone().unwrap_or_default();
        let Some(saved) = state
            .networks
            .get(&net)
            .and_then(|n| n.endpoints.get(&e.name))
        else {
            plan.endpoints.push((i, e.clone()));
            continue;
        };
        let fields = endpoint_differs(e, saved);
        let mut specs = Vec::new();
        for (j, s) in e.publish.iter().enumerate() {
            let spec = portspec::parse(s)
                .map_err(|err| DaemonError::invalid(format!("endpoint[{i}].publish[{j}]"), err))?;
            if !published_already(&spec, &saved.published) {
                specs.push((j, s.clone()));
            }
        }
        if fields.is_empty() && specs.is_empty() {
            plan.unchanged += 1;
        }
        if !fields.is_empty() {
            plan.kept.push(Kept {
                network: net.clone(),
                endpoint: Some(e.name.clone()),
                fields,
            });
        }
        if !specs.is_empty() {
            plan.publish.push(NewPorts {
                index: i,
                network: net,
                endpoint: e.name.clone(),
                specs,
            });
        }
    }
    Ok(plan)
}

/// Does the endpoint publish every container port of `spec` as `spec` asks (an ephemeral
/// host port matches whichever port was bound)?
fn published_already(spec: &PortSpec, published: &[Mapping]) -> bool {
    (spec.container_ports.start..=spec.container_ports.end).all(|cport| {
        published.iter().any(|m| {
            m.container_port == cport
                && spec.matches(m.host_ip, m.host_port, m.container_port, m.proto)
        })
    })
}

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
    // A set: the spec keeps IPv4 and IPv6 addresses in two lists, so a request that lists an
    // IPv6 address before an IPv4 one is saved in another order, and means the same.
    let mut extra: Vec<Option<IpAddr>> = req.gateway_extra.iter().map(|s| s.parse().ok()).collect();
    let mut saved_extra: Vec<Option<IpAddr>> = saved.gateway_extra_all().map(Some).collect();
    extra.sort_unstable();
    saved_extra.sort_unstable();
    if extra != saved_extra {
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
    if req.icc.is_some_and(|i| i != saved.icc) {
        d.push("icc");
    }
    if req.driver.as_deref().unwrap_or("bridge") != saved.driver.as_str() {
        d.push("driver");
    }
    if req.parent != saved.parent {
        d.push("parent");
    }
    if !req
        .ip_range
        .as_deref()
        .map_or(saved.ip_range.is_none(), |r| {
            r.parse::<ipnet::Ipv4Net>()
                .is_ok_and(|n| Some(n.trunc()) == saved.ip_range)
        })
    {
        d.push("ip_range");
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
