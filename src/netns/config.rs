//! Configuring interfaces over netlink (rtnetlink), in the daemon's namespace or, through a
//! [`NetlinkFd`] made by [`open_in_ns`](super::open_in_ns), in a container's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::nl_errno;
use super::open::validate_ifname;
use super::{sys, NetlinkFd, NetnsError, NsTarget};

fn require_runtime() -> Result<(), NetnsError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|source| NetnsError::NoRuntime { source })
}

/// A netlink handle for the daemon's own network namespace (the one its tokio workers are
/// in). The connection runs as a task on the current runtime and ends when every clone of
/// the handle is dropped.
pub fn host_handle() -> Result<Handle, NetnsError> {
    require_runtime()?;
    let (connection, handle, _unsolicited) =
        rtnetlink::new_connection().map_err(|source| NetnsError::HostNetlink { source })?;
    tokio::spawn(connection);
    Ok(handle)
}

impl NetlinkFd {
    /// A netlink handle that configures the namespace this socket was created in, used from
    /// the current runtime. The connection runs as a task on the current runtime (which must
    /// have IO enabled) and ends, closing the socket, when every clone of the handle is
    /// dropped.
    pub fn into_handle(self) -> Result<Handle, NetnsError> {
        require_runtime()?;
        let (fd, _netns) = self.into_parts();
        let (connection, handle, _unsolicited) =
            rtnetlink::from_socket(sys::tokio_netlink_socket(fd));
        tokio::spawn(connection);
        Ok(handle)
    }
}

/// The link named `name`, or `None` when there is none.
async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetnsError> {
    validate_ifname(name)?;
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(source) => Err(NetnsError::GetLink {
            ifname: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

async fn require_link(handle: &Handle, name: &str) -> Result<LinkMessage, NetnsError> {
    get_link(handle, name)
        .await?
        .ok_or_else(|| NetnsError::LinkNotFound {
            ifname: name.to_owned(),
        })
}

/// The interface index of `name`, or `None` when there is no such link.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetnsError> {
    Ok(get_link(handle, name).await?.map(|l| l.header.index))
}

/// Whether a link named `name` exists.
pub async fn link_exists(handle: &Handle, name: &str) -> Result<bool, NetnsError> {
    Ok(get_link(handle, name).await?.is_some())
}

/// Whether `name` is administratively up and its MTU, or `None` when there is no such link
/// (a macvlan network's parent, checked before planning).
pub async fn link_state(handle: &Handle, name: &str) -> Result<Option<(bool, u32)>, NetnsError> {
    Ok(get_link(handle, name).await?.map(|l| {
        let mtu = l
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .unwrap_or(1500);
        (is_up(&l), mtu)
    }))
}

fn is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

async fn set_up(handle: &Handle, name: &str, link: &LinkMessage) -> Result<(), NetnsError> {
    if is_up(link) {
        return Ok(());
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(link.header.index).up().build())
        .execute()
        .await
        .map_err(|source| NetnsError::LinkUp {
            ifname: name.to_owned(),
            source: Box::new(source),
        })
}

/// Whether the link already carries `addr/prefix_len`.
async fn has_address(
    handle: &Handle,
    index: u32,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<bool, NetnsError> {
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|source| NetnsError::ListAddresses {
            source: Box::new(source),
        })?
    {
        if msg.header.index == index
            && msg.header.prefix_len == prefix_len
            && address_of(&msg) == Some(addr)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The interface's own address of an address message (IFA_LOCAL, else IFA_ADDRESS).
fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// Sets an interface's MAC address (unchanged if it already has it).
pub async fn set_mac(handle: &Handle, ifname: &str, mac: [u8; 6]) -> Result<(), NetnsError> {
    let link = require_link(handle, ifname).await?;
    if link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Address(m) if m.as_slice() == mac))
    {
        return Ok(());
    }
    let msg = LinkUnspec::new_with_index(link.header.index).address(mac.to_vec());
    handle
        .link()
        .set(msg.build())
        .execute()
        .await
        .map_err(|source| NetnsError::SetLinkAttrs {
            ifname: ifname.to_owned(),
            source: Box::new(source),
        })
}

/// Configures an endpoint interface: sets its MAC address and MTU, brings it and `lo` up,
/// adds `addr/prefix_len` and a default route via `gateway`.
///
/// Idempotent: MAC, MTU, up state and the address are only changed when they differ, and
/// an existing default route of the namespace is kept (the first network attached owns it).
pub async fn configure_endpoint(
    handle: &Handle,
    ifname: &str,
    mac: [u8; 6],
    mtu: u32,
    addr: IpAddr,
    prefix_len: u8,
    gateway: Option<IpAddr>,
) -> Result<(), NetnsError> {
    if IpNet::new(addr, prefix_len).is_err() {
        return Err(NetnsError::InvalidAddress {
            ifname: ifname.to_owned(),
            addr,
            prefix_len,
        });
    }
    if let Some(gw) = gateway {
        if gw.is_ipv4() != addr.is_ipv4() {
            return Err(NetnsError::GatewayFamily {
                ifname: ifname.to_owned(),
                addr,
                gateway: gw,
            });
        }
    }

    let link = require_link(handle, ifname).await?;
    let index = link.header.index;
    let has_mac = link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Address(m) if m.as_slice() == mac));
    let has_mtu = link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Mtu(m) if *m == mtu));
    if !has_mac || !has_mtu {
        let mut msg = LinkUnspec::new_with_index(index);
        if !has_mac {
            msg = msg.address(mac.to_vec());
        }
        if !has_mtu {
            msg = msg.mtu(mtu);
        }
        handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .map_err(|source| NetnsError::SetLinkAttrs {
                ifname: ifname.to_owned(),
                source: Box::new(source),
            })?;
    }
    set_up(handle, ifname, &link).await?;
    let lo = require_link(handle, "lo").await?;
    set_up(handle, "lo", &lo).await?;

    if !has_address(handle, index, addr, prefix_len).await? {
        match handle
            .address()
            .add(index, addr, prefix_len)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if nl_errno(&e) == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(NetnsError::AddAddress {
                    ifname: ifname.to_owned(),
                    addr,
                    prefix_len,
                    source: Box::new(source),
                })
            }
        }
    }

    match gateway {
        Some(gateway) => add_default_route(handle, ifname, index, gateway).await,
        None => Ok(()),
    }
}

/// Adds a default route via `gateway` on the interface `index`. Added, not replaced: a
/// namespace attached to a second network (`--ifname eth1`) keeps the default route of its
/// first one, as `docker network connect` does; one that exists already is not an error.
async fn add_default_route(
    handle: &Handle,
    ifname: &str,
    index: u32,
    gateway: IpAddr,
) -> Result<(), NetnsError> {
    let route = match gateway {
        IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
        IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
    };
    match handle.route().add(route).execute().await {
        Ok(()) => Ok(()),
        Err(e) if nl_errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(source) => Err(NetnsError::AddRoute {
            ifname: ifname.to_owned(),
            gateway,
            source: Box::new(source),
        }),
    }
}

/// Adds (`add`) or deletes routes to `prefixes` via `gateway` on `ifname`: the routes of an
/// endpoint to the networks behind a router on its network. Adding a route that exists and
/// deleting one that does not are not errors (a route of another router to the same prefix
/// is left as it is).
pub async fn set_routes(
    handle: &Handle,
    ifname: &str,
    gateway: Ipv4Addr,
    prefixes: &[ipnet::Ipv4Net],
    add: bool,
) -> Result<(), NetnsError> {
    let Some(index) = link_index(handle, ifname).await? else {
        return Err(NetnsError::LinkNotFound {
            ifname: ifname.to_owned(),
        });
    };
    for p in prefixes {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(p.network(), p.prefix_len())
            .gateway(gateway)
            .output_interface(index)
            .build();
        let r = if add {
            handle.route().add(msg).execute().await
        } else {
            handle.route().del(msg).execute().await
        };
        match r {
            Ok(()) => {}
            Err(e) if add && nl_errno(&e) == Some(libc::EEXIST) => {}
            Err(e) if !add && matches!(nl_errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => {}
            Err(source) => {
                return Err(NetnsError::AddRoute {
                    ifname: ifname.to_owned(),
                    gateway: IpAddr::V4(gateway),
                    source: Box::new(source),
                })
            }
        }
    }
    Ok(())
}

/// Moves the namespace's IPv4 default route on `ifname` from `old` to `new` (a network's
/// gateway router set or unset). Only a default route through `old` on this interface is
/// touched: a namespace whose default route is another network's keeps it, as at attach.
/// Returns whether it was moved. A failure to add the new one puts the old one back.
pub async fn swap_default_route(
    handle: &Handle,
    ifname: &str,
    old: Ipv4Addr,
    new: Ipv4Addr,
) -> Result<bool, NetnsError> {
    let Some(index) = link_index(handle, ifname).await? else {
        return Err(NetnsError::LinkNotFound {
            ifname: ifname.to_owned(),
        });
    };
    let route = |gw: Ipv4Addr| {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build()
    };
    // The kernel deletes only a route with this gateway and interface (fib_nh_match).
    match handle.route().del(route(old)).execute().await {
        Ok(()) => {}
        Err(e) if matches!(nl_errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => {
            return Ok(false)
        }
        Err(source) => {
            return Err(NetnsError::AddRoute {
                ifname: ifname.to_owned(),
                gateway: IpAddr::V4(old),
                source: Box::new(source),
            })
        }
    }
    match handle.route().add(route(new)).execute().await {
        Ok(()) => Ok(true),
        Err(e) if nl_errno(&e) == Some(libc::EEXIST) => Ok(true),
        Err(source) => {
            let _ = handle.route().add(route(old)).execute().await;
            Err(NetnsError::AddRoute {
                ifname: ifname.to_owned(),
                gateway: IpAddr::V4(new),
                source: Box::new(source),
            })
        }
    }
}

/// Adds an endpoint's IPv6 address `addr/prefix_len` to `ifname` with `IFA_F_NODAD`, as
/// Docker and netavark do: IPAM guarantees nobody else on the network holds it, and without
/// duplicate address detection the address is usable at once instead of after a second of
/// probing (a process started right after the attach could not bind it yet). The prefix route
/// comes with it (on-link); the default route is added via `gateway` when given (a macvlan
/// network's: the LAN's router), else it comes from the gateway's Router Advertisements.
/// Idempotent as [`configure_endpoint`].
pub async fn add_address6(
    handle: &Handle,
    ifname: &str,
    addr: Ipv6Addr,
    prefix_len: u8,
    gateway: Option<Ipv6Addr>,
) -> Result<(), NetnsError> {
    let ip = IpAddr::V6(addr);
    if IpNet::new(ip, prefix_len).is_err() {
        return Err(NetnsError::InvalidAddress {
            ifname: ifname.to_owned(),
            addr: ip,
            prefix_len,
        });
    }
    let link = require_link(handle, ifname).await?;
    let index = link.header.index;
    if !has_address(handle, index, ip, prefix_len).await? {
        let mut req = handle.address().add(index, ip, prefix_len);
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match req.execute().await {
            Ok(()) => {}
            Err(e) if nl_errno(&e) == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(NetnsError::AddAddress {
                    ifname: ifname.to_owned(),
                    addr: ip,
                    prefix_len,
                    source: Box::new(source),
                })
            }
        }
    }
    match gateway {
        // The gateway is on-link (inside the prefix just added), so the route is accepted.
        Some(gw) => add_default_route(handle, ifname, index, IpAddr::V6(gw)).await,
        None => Ok(()),
    }
}

/// Creates a veth pair: `host_name` in the namespace of `host` (the daemon's), and its peer
/// directly inside `target`'s network namespace as `ifname_in_ns`, both with `mtu`. IPv6 is
/// disabled on the host end (so that end itself emits nothing: no router solicitation, no
/// MLD), which is then brought up. The peer is left down: configure it with
/// [`configure_endpoint`] over the namespace's handle.
///
/// The peer is created in the target namespace by the same RTM_NEWLINK (as `ip link add H
/// type veth peer name P netns NS` does) rather than under a temporary name and then moved:
/// one request, so a taken name (EEXIST) leaves nothing behind, and no temporary name can
/// collide in the daemon's namespace.
///
/// `host` must be the handle of the calling thread's namespace ([`host_handle`]): the
/// `disable_ipv6` switch is written through this thread's `/proc/sys/net`. Needs
/// CAP_NET_ADMIN in the daemon's namespace, so a rootless daemon gets
/// [`NetnsError::VethNeedsPrivilege`].
pub async fn create_veth(
    host: &Handle,
    host_name: &str,
    target: &NsTarget,
    ifname_in_ns: &str,
    mtu: u32,
) -> Result<(), NetnsError> {
    validate_ifname(host_name)?;
    validate_ifname(ifname_in_ns)?;
    let netns_fd = target.open_netns()?;
    let peer = LinkUnspec::new_with_name(ifname_in_ns)
        .mtu(mtu)
        .setns_by_fd(netns_fd.as_raw_fd())
        .build();
    let added = add_veth(host, host_name, peer, ifname_in_ns, target.netns(), mtu).await;
    // The fd is only needed until the kernel has the request.
    drop(netns_fd);
    added
}

/// Adds a veth pair whose host end is `host_name` and whose peer is `peer` (named
/// `peer_name`, in `peer_netns`: only for the error), then brings the host end up with IPv6
/// off. The one RTM_NEWLINK path of both kinds of veth endpoint; nothing is left behind on
/// failure (deleting one end deletes both).
async fn add_veth(
    host: &Handle,
    host_name: &str,
    peer: LinkMessage,
    peer_name: &str,
    peer_netns: &Path,
    mtu: u32,
) -> Result<(), NetnsError> {
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    if let Err(source) = host.link().add(msg).execute().await {
        return Err(match nl_errno(&source) {
            Some(libc::EPERM) | Some(libc::EACCES) => NetnsError::VethNeedsPrivilege {
                host: host_name.to_owned(),
                peer: peer_name.to_owned(),
                source: Box::new(source),
            },
            _ => NetnsError::CreateVeth {
                host: host_name.to_owned(),
                peer: peer_name.to_owned(),
                netns: peer_netns.to_owned(),
                source: Box::new(source),
            },
        });
    }
    let finish = async {
        disable_ipv6(host_name)?;
        let link = require_link(host, host_name).await?;
        set_up(host, host_name, &link).await
    };
    if let Err(e) = finish.await {
        let _ = delete_link(host, host_name).await;
        return Err(e);
    }
    Ok(())
}

/// Creates a veth pair with both ends in the daemon's namespace: `host_name` (up, served by
/// netyard) and `peer_name` (down, with `peer_mac` and `mtu`), which a runtime then moves into
/// its container and configures itself (Docker's remote network drivers: the interface Join
/// names). Nothing is left behind on failure.
pub async fn create_veth_for_runtime(
    host: &Handle,
    host_name: &str,
    peer_name: &str,
    peer_mac: [u8; 6],
    mtu: u32,
) -> Result<(), NetnsError> {
    validate_ifname(host_name)?;
    validate_ifname(peer_name)?;
    let peer = LinkUnspec::new_with_name(peer_name)
        .mtu(mtu)
        .address(peer_mac.to_vec())
        .build();
    add_veth(
        host,
        host_name,
        peer,
        peer_name,
        Path::new("/proc/self/ns/net"),
        mtu,
    )
    .await
}

/// Whether the kernel has IPv6 at all (it has no `/proc/sys/net/ipv6` when booted with
/// `ipv6.disable=1`, in every namespace): only then is there an interface's `disable_ipv6`
/// to open ([`NsOpen::Ipv6Switch`](super::NsOpen::Ipv6Switch)).
pub fn kernel_has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// Turns an IPv6 setting of an endpoint's interface on or off through its file, opened
/// inside the container's namespace ([`NsOpen::Ipv6Switch`](super::NsOpen::Ipv6Switch)).
/// Call it while the interface is still down. `disable_ipv6`: an interface that gets IPv6 off
/// never sends anything (no duplicate address detection, MLD report or router solicitation),
/// as Docker does on an IPv4-only network; on also overrides a namespace whose default has
/// IPv6 off, so the endpoint of an IPv6 network always gets it. `autoconf` off: a Router
/// Advertisement of a real LAN's router adds no second, SLAAC address beside netyard's (as
/// netavark does on macvlan).
pub fn set_ipv6(
    file: std::os::fd::OwnedFd,
    ifname: &str,
    knob: super::Ipv6Knob,
    enable: bool,
) -> Result<(), NetnsError> {
    use std::io::Write;
    let mut f = std::fs::File::from(file);
    let on = match knob {
        super::Ipv6Knob::Disable => !enable,
        super::Ipv6Knob::Autoconf => enable,
    };
    let value: &[u8] = if on { b"1" } else { b"0" };
    f.write_all(value).map_err(|source| NetnsError::SetIpv6 {
        ifname: ifname.to_owned(),
        file: knob.file(),
        enable,
        source,
    })
}

/// Writes 1 to `/proc/sys/net/ipv6/conf/<ifname>/disable_ipv6` if that file exists (it does
/// not when IPv6 is off). A write to procfs that completes at once, so it runs inline: it must
/// run on a thread of the namespace being configured, and tokio's blocking pool might not be.
fn disable_ipv6(ifname: &str) -> Result<(), NetnsError> {
    let path = Path::new("/proc/sys/net/ipv6/conf")
        .join(ifname)
        .join("disable_ipv6");
    if !path.exists() {
        return Ok(());
    }
    std::fs::write(&path, b"1").map_err(|source| NetnsError::DisableIpv6 {
        ifname: ifname.to_owned(),
        source,
    })
}

/// Deletes the link `name` (for a veth, both ends). `Ok(false)` when there was none, so
/// teardown can call it unconditionally.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<bool, NetnsError> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(source) => Err(NetnsError::DeleteLink {
            ifname: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// Every route of `handle`'s namespace, IPv4 then IPv6, of every table.
async fn routes_of_both_families(handle: &Handle) -> Result<Vec<RouteMessage>, NetnsError> {
    let mut all = Vec::new();
    for request in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(request).execute();
        while let Some(route) =
            routes
                .try_next()
                .await
                .map_err(|source| NetnsError::ListRoutes {
                    source: Box::new(source),
                })?
        {
            all.push(route);
        }
    }
    Ok(all)
}

/// A route's address attribute (destination, gateway) as an address of either family.
fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The IPv4 and IPv6 networks in use in `handle`'s namespace, for picking a free subnet: the
/// destination of every route of every table (default routes excluded, since they overlap
/// everything; the local table's `local`/`broadcast` entries excluded, the addresses cover
/// them) and the subnet of every address. Sorted, without duplicates.
pub async fn host_routes(handle: &Handle) -> Result<Vec<IpNet>, NetnsError> {
    let mut nets = Vec::new();

    // Both families: IPv6 routes and addresses keep an automatic ULA prefix (`--ipv6`
    // without `--subnet6`) off the host's own; an IPv4 candidate never overlaps an IPv6 one.
    for route in routes_of_both_families(handle).await? {
        let header = &route.header;
        if !matches!(
            header.address_family,
            AddressFamily::Inet | AddressFamily::Inet6
        ) || header.destination_prefix_length == 0
            || matches!(
                header.kind,
                RouteType::Local | RouteType::Broadcast | RouteType::Multicast
            )
        {
            continue;
        }
        let dst = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(d) => route_ip(d),
            _ => None,
        });
        if let Some(net) = dst.and_then(|ip| IpNet::new(ip, header.destination_prefix_length).ok())
        {
            // Link-local and multicast routes are on every IPv6 interface and never
            // overlap a ULA prefix; they are left out so the list stays what it says.
            if let IpNet::V6(v6) = net {
                let first = v6.network().segments()[0];
                if first & 0xffc0 == 0xfe80 || first & 0xff00 == 0xff00 {
                    continue;
                }
            }
            nets.push(net.trunc());
        }
    }

    let mut addrs = handle.address().get().execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|source| NetnsError::ListAddresses {
            source: Box::new(source),
        })?
    {
        if !matches!(
            msg.header.family,
            AddressFamily::Inet | AddressFamily::Inet6
        ) {
            continue;
        }
        if let Some(net) =
            address_of(&msg).and_then(|ip| IpNet::new(ip, msg.header.prefix_len).ok())
        {
            if let IpNet::V6(v6) = net {
                if v6.network().segments()[0] & 0xffc0 == 0xfe80 || v6.network().is_loopback() {
                    continue;
                }
            }
            nets.push(net.trunc());
        }
    }

    nets.sort();
    nets.dedup();
    Ok(nets)
}

/// The host's IPv4 uplink as pasta finds it: the interface of the first IPv4 default route
/// (its name and first IPv4 address), and the first IPv4 address that is not loopback on any
/// interface (for a host without a default route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostUplink {
    pub default_if: Option<(String, Option<Ipv4Addr>)>,
    pub any_addr: Option<Ipv4Addr>,
}

pub async fn host_uplink(handle: &Handle) -> Result<HostUplink, NetnsError> {
    let mut default_index = None;
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(route) = routes
        .try_next()
        .await
        .map_err(|source| NetnsError::ListRoutes {
            source: Box::new(source),
        })?
    {
        if route.header.address_family != AddressFamily::Inet
            || route.header.destination_prefix_length != 0
            || route.header.kind != RouteType::Unicast
        {
            continue;
        }
        default_index = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if default_index.is_some() {
            break;
        }
    }
    let mut out = HostUplink::default();
    let mut default_addr = None;
    let mut addrs = handle.address().get().execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|source| NetnsError::ListAddresses {
            source: Box::new(source),
        })?
    {
        let Some(IpAddr::V4(ip)) = address_of(&msg) else {
            continue;
        };
        if ip.is_loopback() {
            continue;
        }
        out.any_addr.get_or_insert(ip);
        if Some(msg.header.index) == default_index && default_addr.is_none() {
            default_addr = Some(ip);
        }
    }
    if let Some(index) = default_index {
        let mut links = handle.link().get().match_index(index).execute();
        if let Ok(Some(link)) = links.try_next().await {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            out.default_if = name.map(|n| (n, default_addr));
        }
    }
    Ok(out)
}

/// The MTU of the underlay a VXLAN tunnel runs over: that of the interface holding `local`
/// (when given and not 0.0.0.0), else that of the interface of the route to `peer`. `None`
/// when neither can be found (no such address, no route, no peer): the caller picks a
/// default. Lookup failures are logged, not returned: a missing MTU only changes a default.
pub async fn underlay_mtu(
    handle: &Handle,
    local: Option<Ipv4Addr>,
    peer: Option<Ipv4Addr>,
) -> Option<u32> {
    let index = match (local.filter(|l| !l.is_unspecified()), peer) {
        (Some(local), _) => index_of_address(handle, local).await,
        (None, Some(peer)) => route_oif(handle, peer).await,
        (None, None) => None,
    }?;
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(Some(link)) => link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(index, error = %e, "underlay MTU: link lookup failed");
            None
        }
    }
}

/// The index of the interface that carries `addr`.
async fn index_of_address(handle: &Handle, addr: Ipv4Addr) -> Option<u32> {
    let mut addrs = handle.address().get().execute();
    loop {
        match addrs.try_next().await {
            Ok(Some(msg)) => {
                if address_of(&msg) == Some(IpAddr::V4(addr)) {
                    return Some(msg.header.index);
                }
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "underlay MTU: address lookup failed");
                return None;
            }
        }
    }
}

/// The output interface of the route to `dst` (`ip route get DST`).
async fn route_oif(handle: &Handle, dst: Ipv4Addr) -> Option<u32> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, 32)
        .build();
    let mut routes = handle.route().get(msg).execute();
    match routes.try_next().await {
        Ok(Some(route)) => route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%dst, error = %e, "underlay MTU: no route");
            None
        }
    }
}

/// An interface as a namespace holds it: what CNI's CHECK compares with ADD's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkView {
    pub up: bool,
    pub mac: Vec<u8>,
    /// IPv4 and IPv6 addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// IPv4 and IPv6 unicast routes out of the interface: destination and gateway.
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// The interface `ifname` of `handle`'s namespace, or `None` when there is none.
pub async fn view_link(handle: &Handle, ifname: &str) -> Result<Option<LinkView>, NetnsError> {
    let Some(link) = get_link(handle, ifname).await? else {
        return Ok(None);
    };
    let index = link.header.index;
    let mut view = LinkView {
        up: is_up(&link),
        mac: link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        ..LinkView::default()
    };
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|source| NetnsError::ListAddresses {
            source: Box::new(source),
        })?
    {
        if let (true, Some(a)) = (msg.header.index == index, address_of(&msg)) {
            view.addrs.push((a, msg.header.prefix_len));
        }
    }
    for route in routes_of_both_families(handle).await? {
        if route.header.kind != RouteType::Unicast {
            continue;
        }
        let oif = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if oif != Some(index) {
            continue;
        }
        // No destination attribute: the default route of the message's family.
        let any = if route.header.address_family == AddressFamily::Inet6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let dst = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(d) => route_ip(d),
                _ => None,
            })
            .unwrap_or(any);
        let gw = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => route_ip(g),
            _ => None,
        });
        if let Ok(net) = IpNet::new(dst, route.header.destination_prefix_length) {
            view.routes.push((net, gw));
        }
    }
    Ok(Some(view))
}
