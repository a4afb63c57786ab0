//! Network port kind `macvlan`: a macvlan network's uplink, an AF_PACKET socket on the host
//! interface `parent` (promiscuous, with the veth kind's virtio-net header and offloads) added
//! to the switch as port "uplink". Every endpoint's frames leave through it with the
//! endpoint's own MAC, so the endpoints appear on the parent's LAN as hosts of their own, as
//! Docker's macvlan children do; the LAN's router is their gateway and netyard has no gateway
//! port on the network at all.
//!
//! What comes in: a promiscuous uplink reads every frame the parent receives, the host's own
//! traffic included. A learning switch would flood every unicast frame for a MAC it has not
//! learned into every container, so the port filters first ([`admit`], pure): only frames for
//! an endpoint's MAC, broadcast and multicast pass, as a kernel macvlan device delivers them
//! (IPv6's neighbour discovery and MLD are multicast to 33:33:xx, so a dual-stack network
//! needs nothing more here; the switch's MLD snooping hands each group to its listeners);
//! a frame from the LAN carrying an endpoint's MAC as its source is refused too (a loop, or a
//! forged MAC that would otherwise move the endpoint's entry onto the uplink). The set of
//! endpoint MACs is swapped whole by the state code when an endpoint comes or goes (one atomic
//! load per frame here). Refused frames are counted on the port (`uplink_not_ours`,
//! `uplink_own_source`), handed to the switch's counters through `kernel_drops` like the
//! socket's own drop counts (a count since the previous reading), so the fast path allocates
//! nothing for them (a `PortDrop` error would allocate per frame, and on a busy LAN refusals
//! are the common case). Filtering in the kernel (a BPF program rebuilt per change) would
//! spare the copies to userspace; not done yet.
//!
//! What the host cannot do: frames the host itself sends on the parent go to the wire, and
//! the socket ignores outgoing frames (`PACKET_IGNORE_OUTGOING`), so the host reaches the
//! containers only through another path, exactly as with Docker's macvlan.
//!
//! Privilege: opening the socket needs CAP_NET_RAW in the parent's namespace; without it
//! creating the network fails naming the capability and the interface. After a restart the
//! socket is opened again ([`PortKind::adopt`] is setup: nothing of it outlived the daemon).

use std::collections::HashSet;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use netyard_switch::counters::{DropReason, KernelCount, KernelReading};
use netyard_switch::port::{Port, PortCaps, VNET_HDR_LEN};
use netyard_switch::sys::packet::PacketPort;
use netyard_switch::sys::SysError;
use netyard_switch::{driver, MacAddr, Switch, SwitchPort};
use tokio::task::JoinHandle;

use super::{release, Description, NetCx, PortKind};
use crate::error::DaemonError;
use crate::spec::NetworkSpec;

pub struct Macvlan;

/// The MACs of a network's endpoints, as the uplink admits them.
pub type EndpointMacs = Arc<ArcSwap<HashSet<MacAddr>>>;

/// A running uplink.
pub struct MacvlanLive {
    switch: Arc<Switch>,
    pub port: Arc<SwitchPort>,
    macs: EndpointMacs,
    task: JoinHandle<()>,
}

impl MacvlanLive {
    /// Admits frames for exactly these MACs from now on.
    pub fn set_macs(&self, macs: impl IntoIterator<Item = MacAddr>) {
        self.macs.store(Arc::new(macs.into_iter().collect()));
    }
}

/// Whether the uplink passes `eth` (an Ethernet frame read from the LAN) to the switch, for
/// a network whose endpoints own `ours`: broadcast and multicast always, unicast only to one
/// of `ours`; never a frame whose source is one of `ours`. A frame too short to hold the
/// addresses passes (the switch drops it as a runt and counts it there).
pub fn admit(eth: &[u8], ours: &HashSet<MacAddr>) -> Result<(), DropReason> {
    let (Some(dst), Some(src)) = (
        MacAddr::from_bytes(eth),
        eth.get(6..).and_then(MacAddr::from_bytes),
    ) else {
        return Ok(());
    };
    if ours.contains(&src) {
        return Err(DropReason::UplinkOwnSource);
    }
    if dst.is_multicast() || ours.contains(&dst) {
        Ok(())
    } else {
        Err(DropReason::UplinkNotOurs)
    }
}

/// The parent's AF_PACKET socket behind the [`admit`] filter.
struct UplinkPort {
    inner: PacketPort,
    macs: EndpointMacs,
    not_ours: AtomicU64,
    own_source: AtomicU64,
}

/// Caps of the uplink: the veth kind's, except UDP GSO. The socket bypasses the qdisc, which
/// never segments, so a GSO frame is only accepted if the device offloads it: TCP
/// segmentation nearly every NIC (and veth, virtio-net) does, UDP segmentation few physical
/// NICs do, so the switch cuts UDP super-frames before they reach the parent.
const UPLINK_CAPS: PortCaps = PortCaps {
    vnet_hdr: true,
    gso_tcp: true,
    gso_udp: false,
};

impl Port for UplinkPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.recv(buf)?;
        let eth = buf.get(VNET_HDR_LEN..n.min(buf.len())).unwrap_or_default();
        match admit(eth, &self.macs.load()) {
            Ok(()) => Ok(n),
            Err(reason) => {
                let c = match reason {
                    DropReason::UplinkOwnSource => &self.own_source,
                    _ => &self.not_ours,
                };
                c.fetch_add(1, Relaxed);
                // Work that yielded no frame: the driver reads on (within its burst budget).
                Err(io::ErrorKind::Interrupted.into())
            }
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.inner.send(frame)
    }

    fn caps(&self) -> PortCaps {
        UPLINK_CAPS
    }

    fn raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }

    fn kind(&self) -> &'static str {
        "macvlan"
    }

    /// The socket's own drops, then the frames the filter refused since the last reading.
    fn kernel_drops(&self, out: &mut Vec<KernelReading>) -> io::Result<()> {
        let read = self.inner.kernel_drops(out);
        for (reason, c) in [
            (DropReason::UplinkNotOurs, &self.not_ours),
            (DropReason::UplinkOwnSource, &self.own_source),
        ] {
            out.push(KernelReading {
                reason,
                count: KernelCount::Since(c.swap(0, Relaxed)),
            });
        }
        read
    }
}

/// The error for a parent the uplink could not be opened on, naming the field and what to do.
fn open_error(network: &str, parent: &str, e: &SysError) -> DaemonError {
    let errno = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    match (e, errno) {
        (SysError::PacketSocket { .. }, Some(libc::EPERM | libc::EACCES)) => DaemonError::invalid(
            "parent",
            format!(
                "the uplink on {parent:?} is an AF_PACKET socket, which needs CAP_NET_RAW: the \
                 daemon does not have it (run it as root or grant it CAP_NET_RAW)"
            ),
        ),
        (SysError::IfIndex { .. }, _) | (_, Some(libc::ENODEV)) => DaemonError::invalid(
            "parent",
            format!("no interface {parent:?} in the daemon's network namespace"),
        ),
        (_, Some(libc::ENETDOWN)) => DaemonError::invalid(
            "parent",
            format!("{parent:?} is down: bring it up first (ip link set {parent} up)"),
        ),
        _ => DaemonError::Io {
            context: format!("opening the uplink of {network:?} on {parent:?}"),
            source: io::Error::other(e.to_string()),
        },
    }
}

impl PortKind for Macvlan {
    type Cx<'a> = NetCx<'a>;
    type Spec = NetworkSpec;
    type Built = MacvlanLive;
    type Remains = MacvlanLive;
    const NAME: &'static str = "uplink";

    async fn setup<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<MacvlanLive, DaemonError> {
        let parent = p.parent.as_deref().ok_or_else(|| {
            DaemonError::invalid(
                "parent",
                format!("network {:?} has no parent interface", p.name),
            )
        })?;
        let inner = PacketPort::open(parent, true).map_err(|e| open_error(&p.name, parent, &e))?;
        inner.set_promiscuous().map_err(|source| DaemonError::Io {
            context: format!("putting {parent:?} in promiscuous mode"),
            source,
        })?;
        let macs: EndpointMacs = Arc::default();
        let port = UplinkPort {
            inner,
            macs: macs.clone(),
            not_ours: AtomicU64::new(0),
            own_source: AtomicU64::new(0),
        };
        let switch = cx.switch;
        let sp = switch.add_port(Self::NAME, Box::new(port));
        let task = match cx
            .lane
            .enter(|| driver::spawn_port(switch.clone(), sp.clone()))
        {
            Ok(t) => t,
            Err(source) => {
                switch.remove_port(sp.id);
                return Err(DaemonError::Io {
                    context: format!("starting the uplink of {:?}", p.name),
                    source,
                });
            }
        };
        tracing::info!(network = %p.name, parent, "macvlan uplink up");
        Ok(MacvlanLive {
            switch: switch.clone(),
            port: sp,
            macs,
            task,
        })
    }

    async fn adopt<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<MacvlanLive, DaemonError> {
        Self::setup(cx, p).await
    }

    /// Takes the port off the switch and waits until its socket is closed (the parent leaves
    /// promiscuous mode with it).
    async fn teardown(_spec: &NetworkSpec, live: MacvlanLive) {
        live.switch.remove_port(live.port.id);
        live.task.abort();
        let _ = live.task.await;
        release(live.port).await;
    }

    fn describe(spec: &NetworkSpec) -> Description {
        Description {
            kind: "macvlan",
            host_ifname: spec.parent.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([0x02, 0x42, 192, 168, 7, 2]);
    const B: MacAddr = MacAddr([0x02, 0x42, 192, 168, 7, 3]);
    const LAN: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    const HOST: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 2]);

    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn ours() -> HashSet<MacAddr> {
        [A, B].into_iter().collect()
    }

    #[test]
    fn unicast_to_an_endpoint_passes() {
        assert_eq!(admit(&frame(A, LAN), &ours()), Ok(()));
        assert_eq!(admit(&frame(B, LAN), &ours()), Ok(()));
    }

    #[test]
    fn broadcast_and_multicast_pass() {
        let bcast = MacAddr([0xff; 6]);
        let mcast = MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
        assert_eq!(admit(&frame(bcast, LAN), &ours()), Ok(()));
        assert_eq!(admit(&frame(mcast, LAN), &ours()), Ok(()));
        // Even with no endpoint yet: ARP requests must reach the first container.
        assert_eq!(admit(&frame(bcast, LAN), &HashSet::new()), Ok(()));
    }

    #[test]
    fn unicast_to_any_other_mac_is_refused_not_flooded() {
        // The host's own traffic on the parent, and other LAN hosts' conversations a
        // promiscuous socket sees.
        assert_eq!(
            admit(&frame(HOST, LAN), &ours()),
            Err(DropReason::UplinkNotOurs)
        );
        assert_eq!(
            admit(&frame(A, LAN), &HashSet::new()),
            Err(DropReason::UplinkNotOurs)
        );
    }

    #[test]
    fn a_lan_frame_claiming_an_endpoints_mac_is_refused() {
        assert_eq!(
            admit(&frame(MacAddr([0xff; 6]), A), &ours()),
            Err(DropReason::UplinkOwnSource)
        );
        assert_eq!(
            admit(&frame(B, A), &ours()),
            Err(DropReason::UplinkOwnSource)
        );
    }

    /// An IPv6 frame: `frame` with the IPv6 EtherType.
    fn frame6(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = frame(dst, src);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f
    }

    #[test]
    fn ipv6_neighbour_discovery_and_mld_from_the_lan_pass() {
        // A's solicited-node group (ff02::1:ffXX:XXXX): the LAN resolving A's address; the
        // kernel macvlan delivers multicast to every child too, and the switch's MLD snooping
        // then hands it only to the endpoints that joined the group.
        let solicited = MacAddr([0x33, 0x33, 0xff, 168, 7, 2]);
        let all_nodes = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        let mldv2 = MacAddr([0x33, 0x33, 0, 0, 0, 0x16]);
        for dst in [solicited, all_nodes, mldv2] {
            assert_eq!(admit(&frame6(dst, LAN), &ours()), Ok(()), "{dst:?}");
        }
        // The router's neighbour advertisement, echo replies, TCP: unicast to A's MAC.
        assert_eq!(admit(&frame6(A, LAN), &ours()), Ok(()));
    }

    #[test]
    fn ipv6_unicast_to_another_host_or_from_an_endpoints_mac_is_refused() {
        assert_eq!(
            admit(&frame6(HOST, LAN), &ours()),
            Err(DropReason::UplinkNotOurs)
        );
        // An endpoint's own duplicate address probe or report seen again on the LAN (a loop)
        // must not move its MAC onto the uplink.
        let solicited = MacAddr([0x33, 0x33, 0xff, 168, 7, 2]);
        assert_eq!(
            admit(&frame6(solicited, A), &ours()),
            Err(DropReason::UplinkOwnSource)
        );
    }

    #[test]
    fn a_runt_passes_for_the_switch_to_count() {
        assert_eq!(admit(&[0xff; 8], &ours()), Ok(()));
        assert_eq!(admit(&[], &ours()), Ok(()));
    }
}
