//! What the daemon's state *is*, as plain serde data: the networks and endpoints it holds,
//! with every choice already made (addresses, MACs, host ports, device names). This is what
//! the state file holds (`src/store.rs`), what planning produces (`src/plan/`) and what the
//! runtime builds from (`src/runtime/`); it holds no handle, task or file descriptor.
//!
//! Compatibility: fields added later get `#[serde(default)]`, so an older file still parses;
//! a change that an older daemon could misread bumps `store::SCHEMA`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netyard_switch::impair::LinkSpec;
use netyard_switch::MacAddr;
use serde::{Deserialize, Serialize};

use crate::netns::NsIdentity;
use crate::ports::Mapping;

/// Everything the daemon keeps across a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Networks by name, each with its endpoints.
    #[serde(default)]
    pub networks: BTreeMap<String, SavedNetwork>,
    /// Routers between networks (issue 18), by name. Written only when there is one, so a
    /// state file without routers stays readable by a daemon that predates them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routers: BTreeMap<String, RouterSpec>,
}

/// A router between networks: one interface on each, static routes, masquerading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub name: String,
    pub interfaces: Vec<RouterIfaceSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
}

/// A router's interface on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterIfaceSpec {
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Masquerade what leaves through this interface.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat: bool,
    /// Impairment and carrier of the interface (`link set NETWORK ROUTER`).
    #[serde(default, skip_serializing_if = "LinkSpec::is_clear")]
    pub link: LinkSpec,
}

/// A static route: `prefix` via the next hop `via` (on one of the router's networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
}

/// A network and the endpoints this daemon attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedNetwork {
    pub network: NetworkSpec,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSpec>,
}

/// A network, as created: every default resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Dual stack: the IPv6 prefix and the gateway's address in it (absent on an IPv4-only
    /// network, and in state files older than IPv6 support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Spec>,
    pub mtu: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub host_loopback: bool,
    /// More addresses the gateway answers on (ARP, ICMP echo, DNS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_extra: Vec<Ipv4Addr>,
    /// More IPv6 addresses the gateway answers on (NDP, ICMPv6 echo, DNS), on a dual-stack
    /// network only (slirp4netns's fd00::3). Kept apart from `gateway_extra`, which every
    /// daemon up to the one that added this field reads as IPv4 addresses only: one mixed
    /// list would make such a daemon refuse any state file with an IPv6 extra address, and
    /// reading the two keys into one list on load is more than serde's derive does
    /// (`deny_unknown_fields` excludes `flatten`). Its readers want it per family anyway
    /// (IPAM's IPv6 pool, the gateway's IPv6 side); the API shows the two as one list
    /// ([`Self::gateway_extra_all`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_extra6: Vec<Ipv6Addr>,
    /// Destination maps of egress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<AddrMapSpec>,
    /// The daemon serves DNS on 127.0.0.11 in the network's containers (false when the
    /// runtime serves that address itself: Docker).
    #[serde(default = "yes")]
    pub container_resolver: bool,
    /// Endpoint ports accept only their own MAC and addresses (trusted endpoints aside).
    #[serde(default = "yes")]
    pub port_security: bool,
    /// Inter-container communication (Docker's `enable_icc`): false isolates the endpoint
    /// ports and the VXLAN tunnel from each other, so endpoints reach only the gateway.
    /// Written only when false, so a state file without isolation stays readable by a daemon
    /// that predates the field.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub icc: bool,
    pub max_flows_per_endpoint: u32,
    pub max_flows: u32,
    /// MAC ageing, seconds.
    pub aging: u64,
    pub max_macs_per_port: u32,
    /// The tunnel of a network that spans hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanSpec>,
    /// Static remote entries (`fdb add`): MAC -> VTEP.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub static_fdb: BTreeMap<MacAddr, Ipv4Addr>,
    /// The addresses of endpoints detached lately, oldest first: a container attached again
    /// under the same name gets its address back while it is free (a restarted container
    /// keeps its IP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<(String, Ipv4Addr)>,
    /// Impairment and carrier of the network's own ports, by port name (`vxlan`; a router's
    /// interface later): `link set NETWORK vxlan ...`. An endpoint's are in its own spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, LinkSpec>,
    /// How the network reaches beyond its switch: netyard's gateway (bridge) or an uplink on
    /// a host interface (macvlan).
    #[serde(default, skip_serializing_if = "Driver::is_bridge")]
    pub driver: Driver,
    /// The host interface of a macvlan network's uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Where automatic addresses come from (inside `subnet`; the whole subnet when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// A router on the network whose address there is the endpoints' default gateway
    /// (`network update --gateway-router`); absent: netyard's gateway. Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_router: Option<GatewayRouterSpec>,
}

/// A network's gateway router: its name and its address on the network (a router's addresses
/// never change, so the address is kept here for the attach, which runs without the routers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRouterSpec {
    pub router: String,
    pub ip: Ipv4Addr,
}

/// A network's driver, Docker's word for how its containers reach the world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// netyard's gateway: egress, NAT-free relaying, published ports, DNS at the gateway.
    #[default]
    Bridge,
    /// An uplink port on a host interface (`parent`): endpoints sit on that interface's LAN
    /// with their own MACs and the LAN's router as their gateway; netyard has no gateway on
    /// the network.
    Macvlan,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Macvlan => "macvlan",
        }
    }

    pub fn is_bridge(&self) -> bool {
        *self == Driver::Bridge
    }
}

/// A dual-stack network's IPv6 side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv6Spec {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
}

/// A destination map: egress to `guest` leaves to `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrMapSpec {
    pub guest: Ipv4Addr,
    pub host: Ipv4Addr,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// How many detached endpoints' addresses a network remembers.
pub const RELEASED_MAX: usize = 1024;

impl NetworkSpec {
    /// The gateway's extra addresses as the API lists them: IPv4 ones, then IPv6 ones.
    pub fn gateway_extra_all(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        let v4 = self.gateway_extra.iter().map(|&ip| ip.into());
        v4.chain(self.gateway_extra6.iter().map(|&ip| ip.into()))
    }

    /// The endpoints' default gateway: the gateway router's address, else netyard's gateway.
    pub fn default_gateway(&self) -> Ipv4Addr {
        self.gateway_router
            .as_ref()
            .map(|g| g.ip)
            .unwrap_or(self.gateway)
    }

    /// The endpoints' IPv6 default route, when netyard installs one: the LAN's router on a
    /// macvlan network. A bridge network's endpoints learn theirs from the gateway's Router
    /// Advertisements (None), so that an `--internal` network's lifetime 0 can withhold it.
    pub fn default_gateway6(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .filter(|_| self.driver == Driver::Macvlan)
            .map(|v| v.gateway)
    }

    /// Remembers the address a detached endpoint had.
    pub fn remember_address(&mut self, name: &str, ip: Ipv4Addr) {
        self.forget_address(name);
        self.released.push((name.to_string(), ip));
        if self.released.len() > RELEASED_MAX {
            let extra = self.released.len() - RELEASED_MAX;
            self.released.drain(..extra);
        }
    }

    /// Forgets it (the name is attached again).
    pub fn forget_address(&mut self, name: &str) {
        self.released.retain(|(n, _)| n != name);
    }

    /// The address an endpoint of that name had, if it was detached lately.
    pub fn released_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.released
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| *ip)
    }
}

/// A network's VXLAN tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanSpec {
    pub vni: u32,
    /// Local address of the tunnel's socket (0.0.0.0: every address).
    pub local: Ipv4Addr,
    pub port: u16,
    /// Flood peers (`--vxlan-peer`).
    #[serde(default)]
    pub peers: Vec<Ipv4Addr>,
    /// The underlay's MTU found at creation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_mtu: Option<u32>,
}

/// How an endpoint is wired: the name of its port kind (`src/runtime/ports/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKindName {
    Tap,
    Veth,
}

impl PortKindName {
    pub fn as_str(self) -> &'static str {
        match self {
            PortKindName::Tap => "tap",
            PortKindName::Veth => "veth",
        }
    }
}

/// An attached endpoint: its namespace (and that namespace's identity, so a recycled pid or
/// path is never taken for it), its interface and addresses, and its published ports as bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    pub kind: PortKindName,
    pub ip: Ipv4Addr,
    /// The IPv6 address on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: MacAddr,
    /// The interface inside the container.
    pub ifname: String,
    /// The namespace as given: a path, or `/proc/PID/ns/net` for `--pid`.
    pub netns: String,
    /// The user namespace to join first (rootless), when given by path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// The process the endpoint was attached by (`--pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The namespace's identity at attach time.
    pub identity: NsIdentity,
    /// The veth's host end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    /// A veth whose container end was left in the daemon's namespace under this name for the
    /// runtime to move into its container (Docker's remote network drivers). netyard never
    /// enters that container: `netns` is empty and `identity` zero, nothing is configured
    /// inside it, the reaper does not check a namespace for it, and a restarted daemon adopts
    /// it by its host end alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub offload: bool,
    /// No port security on this endpoint's port (a router or a bridge).
    #[serde(default)]
    pub trusted: bool,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub published: Vec<Mapping>,
    /// Who attached it (a runtime plugin's key), as the request gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The link's impairment and carrier (`link set`, `link down`).
    #[serde(default, skip_serializing_if = "LinkSpec::is_clear")]
    pub link: LinkSpec,
}

impl EndpointSpec {
    /// What the endpoint's port accepts, on a network with or without port security: None
    /// when it is not checked.
    pub fn port_security(&self, net: &NetworkSpec) -> Option<netyard_switch::PortSecurity> {
        (net.port_security && !self.trusted).then(|| netyard_switch::PortSecurity {
            mac: self.mac,
            ipv4: vec![self.ip],
            ipv6: self.ip6.into_iter().collect(),
        })
    }

    /// Was the container end handed to a runtime (see `peer`)?
    pub fn handed_over(&self) -> bool {
        self.peer.is_some()
    }

    /// The DNS records' key of the endpoint's namespace.
    pub fn ns_key(&self) -> (u64, u64) {
        (self.identity.dev, self.identity.ino)
    }
}
