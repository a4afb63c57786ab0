//! The namespace's addresses, chosen from the options and what the host has: pure.
//!
//! pasta's `--config-net` copies the host's address, prefix and routes into the namespace and
//! answers for every address of that subnet itself. netyard's gateway is a router for one
//! subnet: traffic to an address inside its subnet stays on the network's switch (and is
//! refused at the gateway as local), so with the host's own subnet copied in, a container
//! could not reach the host's neighbours. The front therefore gives the namespace a private
//! subnet, chosen as the daemon chooses one for a new network (the first /24 of 10.89.0.0/16,
//! then 172.29.0.0/16, that overlaps no route of the host), so every destination the host
//! reaches stays reachable; the gateway is its first address, the container the next one.
//! `-a`/`-n`/`-g` set them as with pasta. What Podman relies on is kept: DNS through the
//! `--dns-forward` address, the host through the `--map-guest-addr` address, and published
//! ports reaching the container with the client's address.
//!
//! IPv6 ([`plan6`]) follows the same reasoning: when the host has IPv6 (a route of a global
//! or unique-local prefix) and `-4` is not given, the namespace gets a unique-local /64
//! chosen as the daemon chooses one for `--ipv6` (RFC 4193's random global ID, clear of the
//! host's routes), the gateway its ::1 and the container its ::2, instead of the host's
//! address and prefix: every IPv6 destination the host reaches stays reachable through the
//! gateway, whose Router Advertisement gives the default route.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::options::Options;

/// pasta's default MTU (the largest 802.3 payload, rounded down to 32-bit words).
pub const PASTA_MTU: u32 = 65520;

/// What the host has that the layout depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// Every route of the host's main table except default routes.
    pub routes: Vec<IpNet>,
    /// The interface of the host's first IPv4 default route and its first IPv4 address.
    pub default_if: Option<(String, Option<Ipv4Addr>)>,
    /// The host's first IPv4 address that is not loopback (when it has no default route).
    pub any_addr: Option<Ipv4Addr>,
}

/// Where an address the container connects to really goes on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestMap {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
}

/// The namespace's network, every choice made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub guest: Ipv4Addr,
    /// The network's MTU; None (`-m 0`, pasta: "disables assignment"): the TAP's own, 1500.
    pub mtu: Option<u32>,
    pub ifname: String,
    /// Addresses besides the gateway's that answer ARP, ping and DNS (`--dns-forward`).
    pub dns_forward: Vec<Ipv4Addr>,
    /// The gateway's own address leads to the host's loopback (pasta without --no-map-gw).
    pub gateway_to_host_loopback: bool,
    /// `--map-host-loopback` (to 127.0.0.1) and `--map-guest-addr` (to the host's address).
    pub maps: Vec<DestMap>,
}

/// The namespace's IPv6 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub guest: Ipv6Addr,
    /// `--dns-forward` with an IPv6 address: answers NDP, ping and DNS.
    pub dns_forward: Option<Ipv6Addr>,
}

/// Why the options and the host give no layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no free /24 left in 10.89.0.0/16 and 172.29.0.0/16 (give --address and --netmask)")]
    NoSubnet,
    #[error("no free /64 left in fd00::/8 for IPv6 (give -4 for IPv4 only)")]
    NoSubnet6,
    #[error("--address {addr}/{bits} leaves no room for a gateway")]
    TooSmall { addr: Ipv4Addr, bits: u8 },
    #[error("--gateway {gw} is not a host address of {subnet} (or is the namespace's own)")]
    BadGateway { gw: Ipv4Addr, subnet: Ipv4Net },
    #[error("--address {0} is the subnet's network or broadcast address")]
    BadAddress(Ipv4Addr),
}

pub fn plan(o: &Options, host: &HostView) -> Result<Layout, LayoutError> {
    let (subnet, guest_given) = match o.address {
        Some(a) => {
            let bits = o.netmask.unwrap_or(24);
            let net = Ipv4Net::new(a, bits)
                .map_err(|_| LayoutError::TooSmall { addr: a, bits })?
                .trunc();
            if net.prefix_len() > 30 {
                return Err(LayoutError::TooSmall { addr: a, bits });
            }
            if a == net.network() || a == net.broadcast() {
                return Err(LayoutError::BadAddress(a));
            }
            (net, Some(a))
        }
        None => {
            let free = crate::ipam::pick_free_subnet(&host.routes).ok_or(LayoutError::NoSubnet)?;
            match o.netmask {
                // A narrower mask inside the picked /24 stays free; a wider one may not.
                Some(bits) if (24..=30).contains(&bits) => (
                    Ipv4Net::new(free.network(), bits).map_err(|_| LayoutError::NoSubnet)?,
                    None,
                ),
                _ => (free, None),
            }
        }
    };
    let hosts = |skip: &[Ipv4Addr]| {
        subnet
            .hosts()
            .find(|h| !skip.contains(h))
            .ok_or(LayoutError::TooSmall {
                addr: subnet.network(),
                bits: subnet.prefix_len(),
            })
    };
    let gateway = match o.gateway {
        Some(g) => {
            let host_addr = subnet.contains(&g) && g != subnet.network() && g != subnet.broadcast();
            if !host_addr || Some(g) == guest_given {
                return Err(LayoutError::BadGateway { gw: g, subnet });
            }
            g
        }
        None => hosts(&guest_given.into_iter().collect::<Vec<_>>())?,
    };
    let guest = match guest_given {
        Some(a) => a,
        None => hosts(&[gateway])?,
    };
    let mtu = match o.mtu {
        Some(0) => None,
        Some(m) => Some(m),
        None => Some(PASTA_MTU),
    };
    let ifname = o.ns_ifname.clone().unwrap_or_else(|| {
        host.default_if
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "eth0".to_string())
    });
    // pasta's --map-guest-addr leads to "the guest's address", which under pasta is the
    // host's own: here, the address of the host's default-route interface.
    let host_addr = host
        .default_if
        .as_ref()
        .and_then(|(_, a)| *a)
        .or(host.any_addr)
        .unwrap_or(Ipv4Addr::LOCALHOST);
    let mut maps: Vec<DestMap> = o
        .map_host_loopback
        .iter()
        .map(|&from| DestMap {
            from,
            to: Ipv4Addr::LOCALHOST,
        })
        .collect();
    maps.extend(o.map_guest_addr.iter().map(|&from| DestMap {
        from,
        to: host_addr,
    }));
    Ok(Layout {
        subnet,
        gateway,
        guest,
        mtu,
        ifname,
        dns_forward: o.dns_forward.clone(),
        // pasta maps the gateway to the host's loopback unless --no-map-gw, or an explicit
        // --map-host-loopback takes its place.
        gateway_to_host_loopback: !o.no_map_gw && o.map_host_loopback.is_empty(),
        maps,
    })
}

/// The namespace's IPv6 network, or None: `-4`, or a host without IPv6 (no route but
/// link-local and multicast ones, so nothing to relay to). `random` draws the ULA's global
/// ID (RFC 4193), the only input that is not the options' or the host's.
pub fn plan6(
    o: &Options,
    host: &HostView,
    random: impl FnMut() -> u64,
) -> Result<Option<Layout6>, LayoutError> {
    let routes6: Vec<Ipv6Net> = host
        .routes
        .iter()
        .filter_map(|n| match n {
            IpNet::V6(v6) => Some(*v6),
            IpNet::V4(_) => None,
        })
        .collect();
    let has_ipv6 = routes6.iter().any(|n| {
        let a = n.network();
        !a.is_multicast() && !netyard_switch::wire::ipv6::is_link_local(&a) && !a.is_loopback()
    });
    if o.ipv4_only || !has_ipv6 {
        return Ok(None);
    }
    let subnet = crate::ipam::pick_ula(&routes6, random).ok_or(LayoutError::NoSubnet6)?;
    let at = |n: u128| Ipv6Addr::from(u128::from(subnet.network()) + n);
    Ok(Some(Layout6 {
        subnet,
        gateway: at(1),
        guest: at(2),
        dns_forward: o.dns_forward6.first().copied(),
    }))
}

#[cfg(test)]
mod tests;
