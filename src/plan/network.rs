//! Planning a network: `network create` request -> [`NetworkSpec`].

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netyard_api::model::NetworkCreate;
use netyard_router::conntrack::FlowLimits;
use netyard_switch::wire::vxlan::{VNI_MAX, VXLAN_IPV4_OVERHEAD, VXLAN_PORT};

use super::{quoted, valid_name, DEFAULT_AGING_SECS, DEFAULT_MAX_MACS, DEFAULT_MTU, MAX_FLOWS};
use crate::error::DaemonError;
use crate::ipam::{pick_free_subnet, pick_ula};
use crate::spec::{AddrMapSpec, Driver, Ipv6Spec, NetworkSpec, VxlanSpec};

/// Validates a `network create` request against the networks that exist, resolving every
/// default: the subnet (the first free /24 of the default pools that overlaps no host route
/// and no network), the gateway, the MTU (from the VXLAN underlay's, if any), the caps.
pub fn plan_network<'a>(
    req: &NetworkCreate,
    existing: impl Iterator<Item = &'a NetworkSpec> + Clone,
    host_routes: &[IpNet],
    underlay_mtu: Option<u32>,
) -> Result<NetworkSpec, DaemonError> {
    plan_network_on(req, existing, host_routes, underlay_mtu, None)
}

/// A macvlan network's parent interface as the daemon found it in its namespace (read before
/// planning, so planning stays pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentLink {
    Missing,
    Found {
        /// Administratively up (IFF_UP).
        up: bool,
        mtu: u32,
    },
}

/// [`plan_network`], with what the daemon found of the request's `parent` (None: not looked
/// up, so not checked).
pub fn plan_network_on<'a>(
    req: &NetworkCreate,
    existing: impl Iterator<Item = &'a NetworkSpec> + Clone,
    host_routes: &[IpNet],
    underlay_mtu: Option<u32>,
    parent_link: Option<ParentLink>,
) -> Result<NetworkSpec, DaemonError> {
    valid_name("name", &req.name)?;
    if existing.clone().any(|n| n.name == req.name) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!("a network named {:?} already exists", req.name),
        ));
    }
    let driver = plan_driver(req, existing.clone(), parent_link)?;
    let subnet = match &req.subnet {
        Some(s) => {
            let net: IpNet = s.parse().map_err(|_| {
                DaemonError::invalid(
                    "subnet",
                    format!("{} is not a CIDR such as 10.1.0.0/24", quoted(s)),
                )
            })?;
            let IpNet::V4(v4) = net else {
                return Err(DaemonError::invalid(
                    "subnet",
                    "IPv6 subnets are not supported yet",
                ));
            };
            if v4.prefix_len() > 30 || v4.prefix_len() < 8 {
                return Err(DaemonError::invalid(
                    "subnet",
                    format!("prefix /{} out of range (8 to 30)", v4.prefix_len()),
                ));
            }
            let v4 = v4.trunc();
            unusable_subnet(v4)?;
            if let Some(other) = existing.clone().find(|n| overlaps(n.subnet, v4)) {
                return Err(DaemonError::conflict(
                    Some("subnet"),
                    format!("{v4} overlaps network {:?} ({})", other.name, other.subnet),
                ));
            }
            v4
        }
        None => {
            let mut taken: Vec<IpNet> = host_routes.to_vec();
            taken.extend(existing.clone().map(|n| IpNet::V4(n.subnet)));
            pick_free_subnet(&taken).ok_or_else(|| {
                DaemonError::conflict(Some("subnet"), "no free /24 left in the default pools")
            })?
        }
    };
    let gateway = match &req.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g.parse().map_err(|_| {
                DaemonError::invalid("gateway", format!("{} is not an IPv4 address", quoted(g)))
            })?;
            if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(DaemonError::invalid(
                    "gateway",
                    format!("{ip} is not a host address of {subnet}"),
                ));
            }
            ip
        }
        None => first_host(subnet),
    };
    let ipv6 = plan_ipv6(req, existing.clone(), host_routes, driver)?;
    let vxlan = plan_vxlan(req, existing)?;
    // Over VXLAN the inner frame, its Ethernet header and 36 bytes of outer headers must fit
    // the underlay's MTU: 50 bytes of overhead, never fragmented.
    let overhead = VXLAN_IPV4_OVERHEAD as u32;
    let underlay_mtu = underlay_mtu.filter(|_| vxlan.is_some());
    let parent_mtu = match parent_link {
        Some(ParentLink::Found { mtu, .. }) if driver == Driver::Macvlan => Some(mtu),
        _ => None,
    };
    let mtu = match (req.mtu, &vxlan) {
        (Some(m), _) => m,
        (None, Some(_)) => underlay_mtu.unwrap_or(DEFAULT_MTU).saturating_sub(overhead),
        // A macvlan network's frames cross its parent as they are.
        (None, None) => parent_mtu.unwrap_or(DEFAULT_MTU),
    };
    // 65521 is slirp4netns's ceiling (Podman and RootlessKit ask for 65520): an IPv4 packet
    // that size, its Ethernet and virtio-net headers still fit every 64 KiB frame buffer.
    if !(576..=MTU_MAX).contains(&mtu) {
        return Err(DaemonError::invalid(
            "mtu",
            format!("{mtu} out of range (576 to {MTU_MAX})"),
        ));
    }
    if let (Some(p), Some(parent)) = (parent_mtu, &req.parent) {
        if mtu > p {
            return Err(DaemonError::invalid(
                "mtu",
                format!("{mtu} is above the MTU of the parent interface {parent:?} ({p})"),
            ));
        }
    }
    let ip_range = plan_ip_range(req, subnet, gateway)?;
    if let Some(u) = underlay_mtu {
        if mtu + overhead > u {
            return Err(DaemonError::invalid(
                "mtu",
                format!(
                    "{mtu} does not fit the VXLAN underlay (MTU {u} minus {overhead} bytes of \
                     encapsulation: at most {})",
                    u.saturating_sub(overhead)
                ),
            ));
        }
    }
    let aging = req.aging.unwrap_or(DEFAULT_AGING_SECS);
    if aging == 0 || aging > 1_000_000 {
        return Err(DaemonError::invalid(
            "aging",
            format!("{aging} out of range (1 to 1000000 seconds)"),
        ));
    }
    let max_macs = req.max_macs_per_port.unwrap_or(DEFAULT_MAX_MACS);
    if max_macs == 0 || max_macs > 1_000_000 {
        return Err(DaemonError::invalid(
            "max_macs_per_port",
            format!("{max_macs} out of range (1 to 1000000)"),
        ));
    }
    if req.host_loopback && req.internal {
        return Err(DaemonError::invalid(
            "host_loopback",
            "an internal network has no egress, so no host loopback either",
        ));
    }
    let GatewayAddresses {
        extra: gateway_extra,
        extra6: gateway_extra6,
        maps,
    } = plan_gateway_addresses(req, subnet, gateway, ipv6)?;
    let defaults = FlowLimits::default();
    let mut max_flows_per_endpoint = defaults.max_per_endpoint;
    let mut max_flows = defaults.max_total;
    for (field, value, slot) in [
        (
            "max_flows_per_endpoint",
            req.max_flows_per_endpoint,
            &mut max_flows_per_endpoint,
        ),
        ("max_flows", req.max_flows, &mut max_flows),
    ] {
        if let Some(v) = value {
            if v == 0 || v > MAX_FLOWS {
                return Err(DaemonError::invalid(
                    field,
                    format!("{v} out of range (1 to {MAX_FLOWS})"),
                ));
            }
            *slot = v;
        }
    }
    Ok(NetworkSpec {
        name: req.name.clone(),
        subnet,
        gateway,
        ipv6,
        mtu,
        internal: req.internal,
        host_loopback: req.host_loopback,
        gateway_extra,
        gateway_extra6,
        maps,
        container_resolver: req.container_resolver.unwrap_or(true),
        port_security: req.port_security.unwrap_or(true),
        icc: req.icc.unwrap_or(true),
        max_flows_per_endpoint,
        max_flows,
        aging,
        max_macs_per_port: max_macs,
        vxlan: vxlan.map(|v| VxlanSpec { underlay_mtu, ..v }),
        static_fdb: Default::default(),
        released: Vec::new(),
        links: Default::default(),
        driver,
        parent: req.parent.clone().filter(|_| driver == Driver::Macvlan),
        ip_range,
        gateway_router: None,
    })
}

/// The driver of a request, and the rules of a macvlan network: its parent interface exists,
/// is up and is no other network's parent; it has the LAN's subnet; it has no netyard gateway,
/// so nothing that needs one (internal, host loopback, extra gateway addresses, maps, DNS at
/// the gateway) and no tunnel.
fn plan_driver<'a>(
    req: &NetworkCreate,
    mut existing: impl Iterator<Item = &'a NetworkSpec>,
    parent_link: Option<ParentLink>,
) -> Result<Driver, DaemonError> {
    let driver = match req.driver.as_deref() {
        None | Some("bridge") => Driver::Bridge,
        Some("macvlan") => Driver::Macvlan,
        Some(other) => {
            return Err(DaemonError::invalid(
                "driver",
                format!("{} is not a driver (bridge or macvlan)", quoted(other)),
            ))
        }
    };
    if driver == Driver::Bridge {
        if req.parent.is_some() {
            return Err(DaemonError::invalid(
                "parent",
                "only a macvlan network has a parent interface (give driver macvlan)",
            ));
        }
        return Ok(driver);
    }
    let Some(parent) = &req.parent else {
        return Err(DaemonError::invalid(
            "parent",
            "missing: a macvlan network needs the host interface of its LAN (--parent IFACE              or -o parent=IFACE)",
        ));
    };
    super::valid_ifname("parent", parent)?;
    if req.subnet.is_none() {
        return Err(DaemonError::invalid(
            "subnet",
            "missing: a macvlan network's containers take addresses of the LAN on its parent:              give the LAN's --subnet (and its router as --gateway)",
        ));
    }
    let no_gateway = "a macvlan network has no netyard gateway: its containers reach the LAN                       directly and the world through the LAN's router";
    for (field, set) in [
        ("host_loopback", req.host_loopback),
        ("gateway_extra", !req.gateway_extra.is_empty()),
        ("maps", !req.maps.is_empty()),
    ] {
        if set {
            return Err(DaemonError::invalid(field, no_gateway));
        }
    }
    // Docker turns an internal macvlan network into one on a dummy parent; here a macvlan
    // network *is* its uplink, and a bridge network with --internal already gives
    // containers that reach only each other.
    if req.internal {
        return Err(DaemonError::invalid(
            "internal",
            "a macvlan network is its uplink to the LAN on its parent, so it cannot be              internal: for containers that reach only each other create a bridge network              with --internal",
        ));
    }
    if req.vxlan.is_some() {
        return Err(DaemonError::invalid(
            "vxlan",
            "a macvlan network's uplink is its parent interface, not a VXLAN tunnel",
        ));
    }
    // Isolation keeps endpoints talking only to netyard's gateway, which a macvlan network
    // lacks: its containers would reach nothing but the LAN's hosts, not even each other
    // (Docker's enable_icc is a bridge option too).
    if req.icc == Some(false) {
        return Err(DaemonError::invalid(
            "icc",
            "a macvlan network has no netyard gateway to isolate its endpoints behind: \
             --icc=false is a bridge network's option",
        ));
    }
    if req.container_resolver == Some(false) {
        return Err(DaemonError::invalid(
            "container_resolver",
            "a macvlan network's containers reach the embedded DNS only at 127.0.0.11 (it              has no netyard gateway to serve DNS at)",
        ));
    }
    // Docker refuses a second macvlan network on one parent too: frames of one LAN cannot be
    // told apart by network; 802.1Q sub-interfaces (eth0.10) are separate parents.
    if let Some(other) = existing.find(|n| n.parent.as_deref() == Some(parent.as_str())) {
        return Err(DaemonError::conflict(
            Some("parent"),
            format!(
                "network {:?} already uses {parent:?} as its parent: one macvlan network per                  parent interface (give each network its own 802.1Q sub-interface, e.g.                  {parent}.10, created beforehand)",
                other.name
            ),
        ));
    }
    match parent_link {
        None => {}
        Some(ParentLink::Missing) => {
            return Err(DaemonError::invalid(
                "parent",
                format!("no interface {parent:?} in the daemon's network namespace"),
            ))
        }
        Some(ParentLink::Found { up: false, .. }) => {
            return Err(DaemonError::invalid(
                "parent",
                format!("{parent:?} is down: bring it up first (ip link set {parent} up)"),
            ))
        }
        Some(ParentLink::Found { .. }) => {}
    }
    Ok(driver)
}

/// IPv6 blocks no container network can use, as [`UNUSABLE`] is for IPv4.
const UNUSABLE6: [(&str, &str); 4] = [
    (
        "::/96",
        "the unspecified, loopback and IPv4-compatible addresses (::/96)",
    ),
    (
        "::ffff:0:0/96",
        "IPv4-mapped addresses (::ffff:0:0/96), which stand for IPv4 peers",
    ),
    (
        "fe80::/10",
        "link-local (fe80::/10), which every interface has by itself",
    ),
    (
        "ff00::/8",
        "multicast (ff00::/8), which no host may use as its address",
    ),
];

/// The shortest and longest IPv6 prefixes of a network.
pub const PREFIX6_MIN: u8 = 48;
pub const PREFIX6_MAX: u8 = 124;

/// The IPv6 side of a dual-stack network (`ipv6`, `subnet6`, `gateway6`): a prefix that
/// overlaps no other network's, no host route and no special block; without `subnet6` a
/// random ULA /64 ([`pick_ula`]) on a bridge network, while a macvlan network must be given
/// its LAN's; the gateway inside it, by default its first address (::1): netyard's gateway on
/// a bridge network, the LAN's router on a macvlan one.
fn plan_ipv6<'a>(
    req: &NetworkCreate,
    mut existing: impl Iterator<Item = &'a NetworkSpec>,
    host_routes: &[IpNet],
    driver: Driver,
) -> Result<Option<Ipv6Spec>, DaemonError> {
    if !req.ipv6 {
        for (field, set) in [
            ("subnet6", req.subnet6.is_some()),
            ("gateway6", req.gateway6.is_some()),
        ] {
            if set {
                return Err(DaemonError::invalid(
                    field,
                    "needs ipv6 (--ipv6): the network is IPv4-only without it",
                ));
            }
        }
        return Ok(None);
    }
    // A macvlan network's prefix is the LAN's: a ULA picked at random would be routed by
    // nobody there.
    if driver == Driver::Macvlan && req.subnet6.is_none() {
        return Err(DaemonError::invalid(
            "subnet6",
            "missing: a macvlan network's containers take IPv6 addresses of the LAN on its \
             parent: give the LAN's prefix (--subnet6) and its router (--gateway6)",
        ));
    }
    let subnet = match &req.subnet6 {
        Some(s) => {
            let v6: Ipv6Net = s.parse().map_err(|_| {
                DaemonError::invalid(
                    "subnet6",
                    format!("{} is not an IPv6 CIDR such as fd00:1:2:3::/64", quoted(s)),
                )
            })?;
            if !(PREFIX6_MIN..=PREFIX6_MAX).contains(&v6.prefix_len()) {
                return Err(DaemonError::invalid(
                    "subnet6",
                    format!(
                        "prefix /{} out of range ({PREFIX6_MIN} to {PREFIX6_MAX})",
                        v6.prefix_len()
                    ),
                ));
            }
            let v6 = v6.trunc();
            for (block, what) in UNUSABLE6 {
                let b: Ipv6Net = block.parse().expect("constant CIDR");
                if overlaps6(b, v6) {
                    return Err(DaemonError::invalid(
                        "subnet6",
                        format!("{v6} is not usable for a network: it overlaps {what}"),
                    ));
                }
            }
            if let Some(other) = existing.find(|n| n.ipv6.is_some_and(|o| overlaps6(o.subnet, v6)))
            {
                let theirs = other.ipv6.map(|o| o.subnet.to_string()).unwrap_or_default();
                return Err(DaemonError::conflict(
                    Some("subnet6"),
                    format!("{v6} overlaps network {:?} ({theirs})", other.name),
                ));
            }
            v6
        }
        None => {
            let mut taken: Vec<Ipv6Net> = host_routes
                .iter()
                .filter_map(|n| match n {
                    IpNet::V6(v6) => Some(*v6),
                    IpNet::V4(_) => None,
                })
                .collect();
            taken.extend(existing.filter_map(|n| n.ipv6.map(|v| v.subnet)));
            // RFC 4193's global ID is pseudo-random: the only draw of planning, so two hosts
            // (or two daemons) rarely pick the same prefix.
            pick_ula(&taken, rand::random::<u64>).ok_or_else(|| {
                DaemonError::conflict(
                    Some("subnet6"),
                    "no free /64 found in fd00::/8 (a host route covers it?): give --subnet6",
                )
            })?
        }
    };
    let gateway = match &req.gateway6 {
        Some(g) => {
            let ip: Ipv6Addr = g.parse().map_err(|_| {
                DaemonError::invalid("gateway6", format!("{} is not an IPv6 address", quoted(g)))
            })?;
            if !subnet.contains(&ip) || ip == subnet.network() {
                return Err(DaemonError::invalid(
                    "gateway6",
                    format!(
                        "{ip} is not a host address of {subnet} (inside it, not its all-zeros \
                         anycast address)"
                    ),
                ));
            }
            ip
        }
        None => Ipv6Addr::from(u128::from(subnet.network()) + 1),
    };
    Ok(Some(Ipv6Spec { subnet, gateway }))
}

fn overlaps6(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `ip_range`: a CIDR inside the subnet holding at least one address IPAM may hand out.
fn plan_ip_range(
    req: &NetworkCreate,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<Option<Ipv4Net>, DaemonError> {
    let Some(s) = &req.ip_range else {
        return Ok(None);
    };
    let net: IpNet = s.parse().map_err(|_| {
        DaemonError::invalid(
            "ip_range",
            format!("{} is not a CIDR such as 10.1.0.128/25", quoted(s)),
        )
    })?;
    let IpNet::V4(range) = net else {
        return Err(DaemonError::invalid(
            "ip_range",
            "IPv6 ranges are not supported yet",
        ));
    };
    let range = range.trunc();
    if !subnet.contains(&range) {
        return Err(DaemonError::invalid(
            "ip_range",
            format!("{range} is not inside the subnet {subnet}"),
        ));
    }
    let usable = range
        .hosts()
        .chain([range.network(), range.broadcast()])
        .any(|ip| ip != gateway && ip != subnet.network() && ip != subnet.broadcast());
    if !usable {
        return Err(DaemonError::invalid(
            "ip_range",
            format!("{range} holds no address to hand out (only the gateway or reserved ones)"),
        ));
    }
    Ok(Some(range))
}

/// Most extra gateway addresses (the gateway's interface holds at most 8 in all: the
/// gateway's IPv4 address and these; on a dual-stack network also its IPv6 address and
/// link-local one, so two fewer there).
pub const GATEWAY_EXTRA_MAX: usize = 7;

/// The largest network MTU.
pub const MTU_MAX: u32 = 65_521;

/// A unicast IPv4 address for `field`.
fn parse_unicast(field: &str, s: &str) -> Result<Ipv4Addr, DaemonError> {
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        DaemonError::invalid(field, format!("{} is not an IPv4 address", quoted(s)))
    })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is not a unicast address"),
        ));
    }
    Ok(ip)
}

/// An extra IPv6 gateway address for `field`: the network is dual-stack, and the address is
/// a global or unique-local unicast one other than the gateway's (link-local, loopback,
/// IPv4-mapped, multicast and unspecified addresses mean something else on the link).
fn plan_extra6(
    field: &str,
    ip: Ipv6Addr,
    ipv6: Option<Ipv6Spec>,
    extra6: &[Ipv6Addr],
) -> Result<Ipv6Addr, DaemonError> {
    let Some(v6) = ipv6 else {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is an IPv6 address: needs ipv6 (--ipv6)"),
        ));
    };
    if ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || netyard_switch::wire::ipv6::is_link_local(&ip)
        || ip.to_ipv4_mapped().is_some()
    {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is not a global or unique-local unicast address"),
        ));
    }
    if ip == v6.gateway {
        return Err(DaemonError::invalid(field, format!("{ip} is the gateway")));
    }
    if ip == v6.subnet.network() {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is the subnet-router anycast address of {}", v6.subnet),
        ));
    }
    if extra6.contains(&ip) {
        return Err(DaemonError::invalid(field, format!("{ip} is listed twice")));
    }
    Ok(ip)
}

/// The gateway's addresses besides its own, and the destination maps, as planned.
struct GatewayAddresses {
    extra: Vec<Ipv4Addr>,
    extra6: Vec<Ipv6Addr>,
    maps: Vec<AddrMapSpec>,
}

/// Validates `gateway_extra` and `maps`: extra addresses are unicast, not the gateway, not
/// the subnet's network or broadcast address, no duplicates (an IPv6 one needs a dual-stack
/// network); a map's guest address inside the subnet must be one of the gateway's (nobody
/// else would answer ARP for it), each guest address is mapped once, and an internal network
/// (no egress) has no maps.
fn plan_gateway_addresses(
    req: &NetworkCreate,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    ipv6: Option<Ipv6Spec>,
) -> Result<GatewayAddresses, DaemonError> {
    let max = if ipv6.is_some() {
        GATEWAY_EXTRA_MAX - 2
    } else {
        GATEWAY_EXTRA_MAX
    };
    if req.gateway_extra.len() > max {
        return Err(DaemonError::invalid(
            "gateway_extra",
            format!("{} addresses, at most {max}", req.gateway_extra.len()),
        ));
    }
    let mut extra = Vec::new();
    let mut extra6 = Vec::new();
    for (i, s) in req.gateway_extra.iter().enumerate() {
        let field = format!("gateway_extra[{i}]");
        if let Ok(ip6) = s.parse::<Ipv6Addr>() {
            extra6.push(plan_extra6(&field, ip6, ipv6, &extra6)?);
            continue;
        }
        let ip = parse_unicast(&field, s)?;
        if ip == gateway {
            return Err(DaemonError::invalid(field, format!("{ip} is the gateway")));
        }
        if ip.is_loopback() {
            return Err(DaemonError::invalid(field, format!("{ip} is loopback")));
        }
        if subnet.contains(&ip) && (ip == subnet.network() || ip == subnet.broadcast()) {
            return Err(DaemonError::invalid(
                field,
                format!("{ip} is not a host address of {subnet}"),
            ));
        }
        if extra.contains(&ip) {
            return Err(DaemonError::invalid(field, format!("{ip} is listed twice")));
        }
        extra.push(ip);
    }
    if req.internal && !req.maps.is_empty() {
        return Err(DaemonError::invalid(
            "maps",
            "an internal network has no egress, so no maps either",
        ));
    }
    let mut maps: Vec<AddrMapSpec> = Vec::new();
    for (i, m) in req.maps.iter().enumerate() {
        let guest = parse_unicast(&format!("maps[{i}].guest"), &m.guest)?;
        let host = parse_unicast(&format!("maps[{i}].host"), &m.host)?;
        if subnet.contains(&guest) && guest != gateway && !extra.contains(&guest) {
            return Err(DaemonError::invalid(
                format!("maps[{i}].guest"),
                format!(
                    "{guest} is inside {subnet} but not one of the gateway's addresses \
                     (the gateway or gateway_extra)"
                ),
            ));
        }
        if maps.iter().any(|o| o.guest == guest) {
            return Err(DaemonError::invalid(
                format!("maps[{i}].guest"),
                format!("{guest} is mapped twice"),
            ));
        }
        maps.push(AddrMapSpec { guest, host });
    }
    Ok(GatewayAddresses {
        extra,
        extra6,
        maps,
    })
}

/// Address blocks no container network can use: hosts there are unreachable, mean something
/// else to every stack, or are never forwarded (RFC 6890).
const UNUSABLE: [(&str, &str); 4] = [
    (
        "0.0.0.0/8",
        "\"this network\" (0.0.0.0/8), which no host may use as its address",
    ),
    (
        "127.0.0.0/8",
        "loopback (127.0.0.0/8), which never leaves a host",
    ),
    (
        "224.0.0.0/4",
        "multicast (224.0.0.0/4), which no host may use as its address",
    ),
    (
        "240.0.0.0/4",
        "reserved (240.0.0.0/4, with the broadcast address), which stacks refuse",
    ),
];

/// Refuses a subnet overlapping any [`UNUSABLE`] block, naming the subnet and the block.
fn unusable_subnet(v4: Ipv4Net) -> Result<(), DaemonError> {
    for (block, what) in UNUSABLE {
        let b: Ipv4Net = block.parse().expect("constant CIDR");
        if overlaps(b, v4) {
            return Err(DaemonError::invalid(
                "subnet",
                format!("{v4} is not usable for a network: it overlaps {what}"),
            ));
        }
    }
    Ok(())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn first_host(n: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.network()).saturating_add(1))
}

/// A VTEP address: IPv4 unicast.
pub fn parse_vtep(field: &str, s: &str) -> Result<Ipv4Addr, DaemonError> {
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        DaemonError::invalid(field, format!("{} is not an IPv4 address", quoted(s)))
    })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is not a unicast address"),
        ));
    }
    Ok(ip)
}

/// Validates the `vxlan*` fields of a network request.
fn plan_vxlan<'a>(
    req: &NetworkCreate,
    existing: impl Iterator<Item = &'a NetworkSpec>,
) -> Result<Option<VxlanSpec>, DaemonError> {
    let Some(vni) = req.vxlan else {
        for (field, set) in [
            ("vxlan_local", req.vxlan_local.is_some()),
            ("vxlan_port", req.vxlan_port.is_some()),
            ("vxlan_peers", !req.vxlan_peers.is_empty()),
        ] {
            if set {
                return Err(DaemonError::invalid(field, "needs vxlan (the VNI)"));
            }
        }
        return Ok(None);
    };
    if vni > VNI_MAX {
        return Err(DaemonError::invalid(
            "vxlan",
            format!("VNI {vni} out of range (0 to {VNI_MAX})"),
        ));
    }
    let local = match &req.vxlan_local {
        Some(s) => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                DaemonError::invalid(
                    "vxlan_local",
                    format!("{} is not an IPv4 address", quoted(s)),
                )
            })?;
            if ip.is_multicast() || ip.is_broadcast() {
                return Err(DaemonError::invalid(
                    "vxlan_local",
                    format!("{ip} is not a unicast address"),
                ));
            }
            ip
        }
        None => Ipv4Addr::UNSPECIFIED,
    };
    let port = match req.vxlan_port {
        None => VXLAN_PORT,
        Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            DaemonError::invalid("vxlan_port", format!("{p} out of range (1 to 65535)"))
        })?,
    };
    let mut peers = Vec::new();
    for (i, s) in req.vxlan_peers.iter().enumerate() {
        let ip = parse_vtep(&format!("vxlan_peers[{i}]"), s)?;
        if ip == local {
            return Err(DaemonError::invalid(
                format!("vxlan_peers[{i}]"),
                format!("{ip} is the local address itself"),
            ));
        }
        if !peers.contains(&ip) {
            peers.push(ip);
        }
    }
    for other in existing {
        let Some(vx) = &other.vxlan else { continue };
        if vx.vni == vni {
            return Err(DaemonError::conflict(
                Some("vxlan"),
                format!("network {:?} already uses VNI {vni}", other.name),
            ));
        }
        // Tunnels on one port share its socket when they bind the same address; 0.0.0.0
        // and a specific address cannot both be bound on one port.
        let overlapping =
            vx.local != local && (vx.local.is_unspecified() || local.is_unspecified());
        if vx.port == port && overlapping {
            return Err(DaemonError::conflict(
                Some("vxlan_port"),
                format!(
                    "network {:?} has its VXLAN socket on {}:{port}: a tunnel on that port must \
                     bind the same address (give --vxlan-local {}) or use another --vxlan-port",
                    other.name, vx.local, vx.local
                ),
            ));
        }
    }
    Ok(Some(VxlanSpec {
        vni,
        local,
        port,
        peers,
        underlay_mtu: None,
    }))
}
