//! Planning an attach: `attach` request + the network's spec and what its endpoints hold ->
//! [`EndpointPlan`] (the name, address, MAC, interface and kind, all checked).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use netyard_api::model::EndpointCreate;
use netyard_switch::MacAddr;

use super::{valid_dns_name, valid_ifname, valid_name};
use crate::error::DaemonError;
use crate::ipam::{Ipam, Ipam6Error, IpamError};
use crate::spec::{NetworkSpec, PortKindName};

/// What the network's endpoints already hold, for the uniqueness rules.
#[derive(Debug, Default, Clone)]
pub struct Taken {
    /// Names of attached endpoints and of attaches in progress.
    pub names: BTreeSet<String>,
    /// MACs of attached endpoints and of the gateway.
    pub macs: BTreeSet<MacAddr>,
    /// MACs with a static remote entry (behind a VTEP), with that VTEP.
    pub remote_static: Vec<(MacAddr, Ipv4Addr)>,
}

/// Where the container's network namespace is, as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsRequest {
    /// A path (`/run/netns/NAME`, a bind mount), with the user namespace to join first.
    Path {
        netns: String,
        userns: Option<String>,
    },
    /// A process's namespaces (`--pid`); finds its user namespace too.
    Pid(u32),
    /// None: the container end of a veth stays in the daemon's namespace under this name, for
    /// the runtime to move (Docker's remote network drivers).
    HandOver { peer: String },
}

impl NsRequest {
    /// The namespace file, as `ps` and `inspect` show it.
    pub fn label(&self) -> String {
        match self {
            NsRequest::Path { netns, .. } => netns.clone(),
            NsRequest::Pid(pid) => format!("/proc/{pid}/ns/net"),
            NsRequest::HandOver { .. } => String::new(),
        }
    }
}

/// A checked attach request. The address is not taken yet: the caller takes it from the
/// same IPAM under the same lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPlan {
    pub name: String,
    pub ns: NsRequest,
    pub ip: Ipv4Addr,
    /// The IPv6 address on a dual-stack network.
    pub ip6: Option<Ipv6Addr>,
    pub mac: MacAddr,
    pub ifname: String,
    pub kind: PortKindName,
    pub offload: bool,
    pub trusted: bool,
    pub aliases: Vec<String>,
    pub owner: Option<String>,
}

/// Checks an attach request against its network. The next free address is chosen without
/// being consumed (IPAM's cursor does not move), so a refused or failed attach leaves the
/// next one the same address.
pub fn plan_endpoint(
    req: &EndpointCreate,
    net: &NetworkSpec,
    ipam: &Ipam,
    taken: &Taken,
) -> Result<EndpointPlan, DaemonError> {
    valid_name("name", &req.name)?;
    if taken.names.contains(&req.name) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!(
                "an endpoint named {:?} is already attached to network {:?}",
                req.name, net.name
            ),
        ));
    }
    if !req.publish.is_empty() {
        no_publish_on_macvlan(net)?;
    }
    let ns = match (&req.netns, req.pid) {
        (None, None) if req.peer.is_some() => {
            let peer = req.peer.clone().unwrap_or_default();
            valid_ifname("peer", &peer)?;
            if req.userns.is_some() {
                return Err(DaemonError::invalid(
                    "userns",
                    "not with peer: netyard does not enter the container",
                ));
            }
            NsRequest::HandOver { peer }
        }
        (Some(_), _) | (_, Some(_)) if req.peer.is_some() => {
            return Err(DaemonError::invalid(
                "peer",
                "not with netns or pid: the runtime moves the peer into its container",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(DaemonError::invalid(
                "netns",
                "give either netns or pid, not both",
            ))
        }
        (None, None) => {
            return Err(DaemonError::invalid(
                "netns",
                "missing: give the namespace path (netns) or a process id (pid)",
            ))
        }
        (Some(path), None) => {
            if path.is_empty() {
                return Err(DaemonError::invalid("netns", "empty path"));
            }
            if req.userns.as_deref() == Some("") {
                return Err(DaemonError::invalid("userns", "empty path"));
            }
            NsRequest::Path {
                netns: path.clone(),
                userns: req.userns.clone(),
            }
        }
        (None, Some(pid)) => {
            let pid = u32::try_from(pid)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| DaemonError::invalid("pid", format!("{pid} is not a process id")))?;
            if req.userns.is_some() {
                return Err(DaemonError::invalid(
                    "userns",
                    "not with pid: the process's own user namespace is used",
                ));
            }
            NsRequest::Pid(pid)
        }
    };
    let ifname = req.ifname.clone().unwrap_or_else(|| "eth0".to_string());
    valid_ifname("ifname", &ifname)?;
    let handed_over = matches!(ns, NsRequest::HandOver { .. });
    let kind = match req
        .kind
        .as_deref()
        .unwrap_or(if handed_over { "veth" } else { "tap" })
    {
        "tap" if handed_over => {
            return Err(DaemonError::invalid(
                "kind",
                "a peer left for the runtime to move is a veth's end: kind must be veth",
            ))
        }
        "tap" => PortKindName::Tap,
        "veth" => PortKindName::Veth,
        other => {
            return Err(DaemonError::invalid(
                "kind",
                format!("{other:?} is not a port kind (tap or veth)"),
            ))
        }
    };
    let ip = match &req.ip {
        Some(s) => {
            let ip: Ipv4Addr = s
                .parse()
                .map_err(|_| DaemonError::invalid("ip", format!("{s:?} is not an IPv4 address")))?;
            ipam.check(ip).map_err(|e| match e {
                IpamError::InUse(_) => DaemonError::conflict(Some("ip"), e),
                _ => DaemonError::invalid("ip", e),
            })?;
            ip
        }
        // The address the name had before it was detached, while it is free (a restarted
        // container keeps its IP), else the next free one.
        None => match net
            .released_address(&req.name)
            .filter(|ip| ipam.check(*ip).is_ok())
        {
            Some(ip) => ip,
            None => ipam
                .peek_free()
                .map_err(|e| DaemonError::conflict(Some("ip"), e))?,
        },
    };
    let ip6 = match (&req.ip6, ipam.v6()) {
        (Some(_), None) => {
            return Err(DaemonError::invalid(
                "ip6",
                format!(
                    "network {:?} is IPv4-only (create it with --ipv6 for IPv6 addresses)",
                    net.name
                ),
            ))
        }
        (Some(s), Some(v6)) => {
            let ip: Ipv6Addr = s.parse().map_err(|_| {
                DaemonError::invalid("ip6", format!("{s:?} is not an IPv6 address"))
            })?;
            v6.check(ip).map_err(|e| match e {
                Ipam6Error::InUse(_) => DaemonError::conflict(Some("ip6"), e),
                _ => DaemonError::invalid("ip6", e),
            })?;
            Some(ip)
        }
        (None, Some(v6)) => Some(
            v6.peek_free()
                .map_err(|e| DaemonError::conflict(Some("ip6"), e))?,
        ),
        (None, None) => None,
    };
    let mac = match &req.mac {
        Some(s) => {
            let m: MacAddr = s.parse().map_err(|e| DaemonError::invalid("mac", e))?;
            if m.is_multicast() || m.is_zero() {
                return Err(DaemonError::invalid(
                    "mac",
                    format!("{m} is not a unicast address"),
                ));
            }
            m
        }
        None => docker_mac(ip),
    };
    if taken.macs.contains(&mac) {
        return Err(DaemonError::conflict(
            Some("mac"),
            format!("{mac} is already used on network {:?}", net.name),
        ));
    }
    if let Some((_, vtep)) = taken.remote_static.iter().find(|(m, _)| *m == mac) {
        return Err(DaemonError::conflict(
            Some("mac"),
            format!(
                "{mac} has a static remote entry (behind {vtep}) on network {:?}: remove it \
                 with `fdb del` first",
                net.name
            ),
        ));
    }
    let mut aliases = Vec::new();
    for (i, a) in req.aliases.iter().enumerate() {
        valid_dns_name(&format!("aliases[{i}]"), a)?;
        if !aliases.contains(a) && a != &req.name {
            aliases.push(a.clone());
        }
    }
    if let Some(o) = &req.owner {
        if o.is_empty() || o.chars().count() > 256 || o.chars().any(char::is_control) {
            return Err(DaemonError::invalid(
                "owner",
                "1-256 characters, no control characters",
            ));
        }
    }
    Ok(EndpointPlan {
        owner: req.owner.clone(),
        name: req.name.clone(),
        ns,
        ip,
        ip6,
        mac,
        ifname,
        kind,
        offload: req.offload.unwrap_or(true),
        trusted: req.trusted,
        aliases,
    })
}

/// Docker's scheme: 02:42 followed by the IPv4 address, unique on the network (the gateway's
/// MAC follows it too).
pub fn docker_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
}

/// A macvlan network publishes nothing: its containers have addresses of the LAN, reached
/// directly, and netyard has no gateway there to relay through.
pub fn no_publish_on_macvlan(net: &NetworkSpec) -> Result<(), DaemonError> {
    if net.driver != crate::spec::Driver::Macvlan {
        return Ok(());
    }
    Err(DaemonError::invalid(
        "publish",
        format!(
            "network {:?} is a macvlan network: its containers are on the LAN of {} with \
             addresses of their own, reached there directly; there is no port to publish",
            net.name,
            net.parent.as_deref().unwrap_or("its parent")
        ),
    ))
}
