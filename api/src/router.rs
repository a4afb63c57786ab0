//! The routers' API (`/v1/routers`): L3 routers between networks (issue 18). Addresses and
//! prefixes travel as strings so the daemon can name the field of one that does not parse.

use serde::{Deserialize, Serialize};

/// `POST /v1/routers`: `router create NAME --network A[=IP] ... [--nat B] [--route P via IP]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterCreate {
    pub name: String,
    /// One interface per network (at least one; a network at most once).
    pub interfaces: Vec<RouterInterfaceReq>,
    /// Networks whose interface masquerades what leaves through it (source NAT to the
    /// router's address there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<String>,
    /// Static routes, each with its next hop on one of the router's networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteReq>,
}

/// One interface of a router to create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterInterfaceReq {
    pub network: String,
    /// The router's IPv4 address on the network; IPAM picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// `POST /v1/routers/{name}/routes` (`router route add`); also a route of [`RouterCreate`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteReq {
    /// An IPv4 CIDR (`0.0.0.0/0` is a default route).
    pub prefix: String,
    /// The next hop: an address on one of the router's networks.
    pub via: String,
}

/// A router as `router ls`/`inspect` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouterInfo {
    pub name: String,
    pub interfaces: Vec<RouterInterfaceInfo>,
    /// Static routes (the connected subnets are implied by the interfaces).
    pub routes: Vec<RouteInfo>,
    /// Live NAT mappings (all interfaces).
    pub nat_entries: u64,
}

/// One interface of a router.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouterInterfaceInfo {
    pub network: String,
    pub ip: String,
    /// The network's subnet (the connected route).
    pub subnet: String,
    pub mac: String,
    pub mtu: u32,
    /// Masquerades what leaves through this interface.
    pub nat: bool,
    pub counters: RouterCounters,
}

/// A static route.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouteInfo {
    pub prefix: String,
    pub via: String,
    /// The network the next hop is on.
    pub network: String,
}

/// An interface's counters since the router was built (a restart starts them again).
/// Ingress counts are on the interface a packet arrived on; `forwarded` and `nat_*` on the
/// interface it left through.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouterCounters {
    /// Packets sent on through this interface (a GSO super-frame counts once).
    pub forwarded: u64,
    /// ARP requests for this interface's address answered.
    pub arp_replies: u64,
    /// ICMP echo requests to one of the router's addresses answered.
    pub echo_replies: u64,
    /// Packets with TTL 1 or 0: ICMP time exceeded sent back.
    pub ttl_exceeded: u64,
    /// No route to the destination: ICMP net unreachable sent back.
    pub no_route: u64,
    /// Too big for the next network's MTU with DF set: ICMP fragmentation needed sent back.
    pub frag_needed: u64,
    /// Too big for the next network's MTU without DF: dropped (the router does not fragment).
    pub too_big: u64,
    /// Next hop's MAC unknown after ARP: ICMP host unreachable, or dropped when held too long.
    pub unresolved: u64,
    /// Frames that are neither IPv4 nor ARP, or malformed: dropped.
    pub malformed: u64,
    /// Other frames not for the router (IPv6, multicast, a bad checksum): dropped.
    pub ignored: u64,
    /// Packets whose source was masqueraded on leaving.
    pub nat_out: u64,
    /// Replies translated back to an inside address.
    pub nat_in: u64,
    /// NAT mappings created.
    pub nat_new: u64,
    /// No free NAT port (or the table full): dropped.
    pub nat_full: u64,
    /// Packets to the NAT address matching no mapping: dropped.
    pub nat_no_mapping: u64,
    /// ICMP errors sent from this interface's address: time exceeded, net unreachable, port
    /// unreachable (a UDP probe to the router itself) and fragmentation needed.
    pub sent_time_exceeded: u64,
    pub sent_net_unreachable: u64,
    pub sent_port_unreachable: u64,
    pub sent_frag_needed: u64,
}
