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

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

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

/// Why the options and the host give no layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no free /24 left in 10.89.0.0/16 and 172.29.0.0/16 (give --address and --netmask)")]
    NoSubnet,
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

#[cfg(test)]
mod tests;
