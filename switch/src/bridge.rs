//! One learning switch: its ports, its MAC table and the forwarding decision.
//!
//! [`Switch::decide`] is the whole policy: a function of (ingress port, the port's security
//! policy, frame bytes, now) over the MAC table, returning a [`Verdict`]. It does no I/O; the
//! driver acts on the verdict.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::capture::CaptureSlot;
use crate::counters::{DropReason, KernelAccumulator, PortCounters};
use crate::fdb::{Fdb, LearnOutcome, Pinned};
use crate::mld::{self, Delivery, Snooping};
use crate::port::{Port, PortId, VNET_HDR_LEN};
use crate::security::{self, PortSecurity};
use crate::wire::ethernet::MacAddr;

/// Ethernet header without a VLAN tag.
const ETH_HLEN: usize = 14;
/// Room for one 802.1Q tag on top of the MTU, as the kernel bridge allows.
const VLAN_HLEN: usize = 4;

/// The longest untagged Ethernet frame (vnet header not counted) the switch takes as a plain
/// frame on a network of this MTU: anything longer is `over_mtu`. Ports that must tell a
/// plain frame from a super-packet by its length ask here, so they cannot drift from
/// [`Switch::decide`].
pub const fn max_untagged_frame(mtu: u16) -> usize {
    ETH_HLEN + mtu as usize
}

/// [`max_untagged_frame`] with room for one 802.1Q tag: the longest plain frame of any kind.
pub const fn max_tagged_frame(mtu: u16) -> usize {
    max_untagged_frame(mtu) + VLAN_HLEN
}
/// Smallest L3+L4 header a GSO segment can carry (IPv4 + UDP). A segment size above
/// `mtu - MIN_L3L4` cannot fit the MTU whatever the protocol.
const MIN_L3L4: usize = 28;

// virtio-net header layout (legacy, native endian): see wire::vnet.
const VNET_F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

/// [`SwitchPort::security_guard`]: the policy as it was when the guard was taken.
pub(crate) type SecurityGuard = arc_swap::Guard<Option<Arc<PortSecurity>>>;

/// Per-network switch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Largest L3 packet a non-GSO frame may carry.
    pub mtu: u16,
    /// Idle time after which a learned MAC is forgotten.
    pub aging_ms: u64,
    /// Most MACs one port may own in the table.
    pub max_macs_per_port: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            mtu: 1500,
            aging_ms: 300_000,
            max_macs_per_port: 1024,
        }
    }
}

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send to exactly this port.
    Forward(PortId),
    /// Send to every port of the switch except the ingress one.
    Flood,
    /// Send to every port that is not isolated (a broadcast from an endpoint of a network
    /// without inter-container communication: it reaches the gateway only).
    FloodOpen,
    /// Drop, counting the reason on the ingress port.
    Drop(DropReason),
    /// An MLD report or done, already learned ([`crate::mld`]): to the multicast router ports
    /// (and the ports that get all IPv6 multicast).
    MldReport,
    /// IPv6 multicast to this group: to its listeners and the router ports, or flooded when
    /// nobody reported it ([`crate::mld::Groups::delivery`], asked when the frame is sent).
    Ipv6Group(std::net::Ipv6Addr),
}

/// A port attached to a switch, with its counters.
pub struct SwitchPort {
    pub id: PortId,
    pub name: String,
    pub port: Box<dyn Port>,
    /// The port has a device (an fd), not an in-process consumer (the gateway's hand-off):
    /// read once as the port joins, so the forwarding path asks no `dyn Port` per frame.
    pub(crate) has_device: bool,
    pub counters: PortCounters,
    /// Packet capture tap (off unless someone is capturing).
    pub capture: CaptureSlot,
    /// The link's carrier and impairment ([`crate::impair`]): one relaxed load per frame
    /// when nothing is set.
    pub link: crate::impair::link::LinkSlot,
    /// Port security: `None` (the gateway, VXLAN, trusted endpoints) forwards whatever the
    /// port sends. Swapped whole, read with one atomic load per frame, so the policy can change
    /// while the port forwards.
    security: ArcSwapOption<PortSecurity>,
    /// An isolated port exchanges frames only with ports that are not (the gateway), as the
    /// kernel bridge's `isolated` port flag: how `icc=false` keeps endpoints apart. Set with
    /// [`Switch::isolate`].
    isolated: AtomicBool,
    /// A multicast router port gets every MLD report and all IPv6 multicast (the gateway, a
    /// tunnel, a router: the default); an endpoint port only the groups it reported
    /// ([`Switch::set_mld_router`], [`crate::mld`]).
    mld_router: AtomicBool,
    /// The last kernel totals seen (see [`SwitchPort::sync_kernel_drops`]); the mutex orders
    /// concurrent readers, off the fast path.
    kernel: Mutex<KernelAccumulator>,
}

impl SwitchPort {
    /// Reads the kernel's drop counters of the port's socket or device
    /// ([`Port::kernel_drops`]) and adds what they grew by to [`SwitchPort::counters`], each
    /// under its own reason. Costs a syscall or two (a netlink round trip for a TAP): call it
    /// before showing counters and now and then (the ager does, so a 32-bit kernel counter
    /// cannot wrap twice unseen), never per frame.
    pub fn sync_kernel_drops(&self) -> std::io::Result<()> {
        let mut acc = self.kernel.lock().unwrap_or_else(PoisonError::into_inner);
        let mut readings = Vec::new();
        self.port.kernel_drops(&mut readings)?;
        for r in readings {
            self.counters.drop_n(r.reason, acc.advance(r));
        }
        Ok(())
    }

    /// Sets (or with `None` lifts) the port's security policy. Takes effect from the next
    /// burst the port's driver reads (a burst holds the policy it started with); set it
    /// before [`crate::driver::spawn_port`] to check the very first frame.
    pub fn set_security(&self, policy: Option<PortSecurity>) {
        self.security.store(policy.map(Arc::new));
    }

    /// The port's current policy (for inspection).
    pub fn security(&self) -> Option<Arc<PortSecurity>> {
        self.security.load_full()
    }

    /// Is the port isolated (see [`Switch::isolate`])?
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Relaxed)
    }

    /// Is the port a multicast router port (see [`Switch::set_mld_router`])?
    pub fn is_mld_router(&self) -> bool {
        self.mld_router.load(Relaxed)
    }

    /// The policy as the forwarding path reads it: an atomic load, no lock, no allocation.
    pub(crate) fn security_guard(&self) -> SecurityGuard {
        self.security.load()
    }
}

impl std::fmt::Debug for SwitchPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchPort")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.port.kind())
            .finish()
    }
}

/// One network's L2 switch.
pub struct Switch {
    pub name: String,
    config: SwitchConfig,
    pub fdb: Fdb,
    /// Sorted by id. Replaced whole on attach/detach so the data path reads it without a lock.
    ports: ArcSwap<Vec<Arc<SwitchPort>>>,
    /// Serialises port-set changes.
    ports_writer: Mutex<()>,
    next_id: AtomicU32,
    epoch: Instant,
    /// Has any port ever been isolated? Switches without isolation (the common case) then pay
    /// one relaxed load per frame for it, not a port lookup.
    isolating: AtomicBool,
    /// MLD snooping's memberships ([`crate::mld`]): read for IPv6 multicast only.
    groups: Snooping,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

impl Switch {
    pub fn new(name: impl Into<String>, config: SwitchConfig) -> Arc<Switch> {
        Arc::new(Switch {
            name: name.into(),
            fdb: Fdb::new(config.aging_ms, config.max_macs_per_port),
            config,
            ports: ArcSwap::from_pointee(Vec::new()),
            ports_writer: Mutex::new(()),
            next_id: AtomicU32::new(1),
            epoch: Instant::now(),
            isolating: AtomicBool::new(false),
            groups: Snooping::default(),
        })
    }

    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    /// When the switch was created: the origin of [`Switch::now_ms`], for ports that keep
    /// tables of their own on the same clock (a VXLAN port's remote MACs).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Milliseconds since the switch was created: the clock the MAC table runs on.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds a port; the driver must then be started for it.
    pub fn add_port(&self, name: impl Into<String>, port: Box<dyn Port>) -> Arc<SwitchPort> {
        let _w = self
            .ports_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sp = Arc::new(SwitchPort {
            id: self.next_id.fetch_add(1, Relaxed),
            name: name.into(),
            has_device: port.raw_fd() >= 0,
            port,
            counters: PortCounters::default(),
            capture: CaptureSlot::default(),
            link: Default::default(),
            security: ArcSwapOption::empty(),
            isolated: AtomicBool::new(false),
            mld_router: AtomicBool::new(true),
            kernel: Mutex::new(KernelAccumulator::default()),
        });
        // The kernel's totals as the port joins are its baseline: what a persistent TAP
        // dropped before this daemon is not counted, as none of its other counters is.
        if let Err(e) = sp.sync_kernel_drops() {
            tracing::debug!(port = %sp.name, error = %e, "reading kernel drop counters failed");
        }
        let mut next: Vec<Arc<SwitchPort>> = (**self.ports.load()).clone();
        next.push(sp.clone());
        self.ports.store(Arc::new(next));
        sp
    }

    /// Isolates `port` (or lifts it): frames between two isolated ports are dropped as
    /// [`DropReason::IccBlocked`] and an isolated port's floods reach only the ports that are
    /// not isolated. Set it before the port's driver starts to cover the first frame.
    pub fn isolate(&self, port: &SwitchPort, on: bool) {
        if on {
            self.isolating.store(true, Relaxed);
        }
        port.isolated.store(on, Relaxed);
    }

    /// Makes `port` a multicast router port (`true`, every port's default) or an endpoint port
    /// that gets only the IPv6 multicast groups it reported (`false`): see [`crate::mld`].
    /// Set it before the port's driver starts, so its first reports are learned.
    pub fn set_mld_router(&self, port: &SwitchPort, on: bool) {
        port.mld_router.store(on, Relaxed);
    }

    /// Where IPv6 multicast to `group` goes now (see [`crate::mld::Groups::delivery`]).
    pub fn mld_delivery(&self, group: std::net::Ipv6Addr) -> Delivery {
        self.groups.delivery(group)
    }

    /// Where an MLD report goes now.
    pub fn mld_report_delivery(&self) -> Delivery {
        self.groups.report_delivery()
    }

    /// The IPv6 multicast groups `port` listens to, as snooping learned them.
    pub fn mld_groups_of(&self, port: PortId) -> Vec<std::net::Ipv6Addr> {
        self.groups.groups_of(port)
    }

    /// Is the port with this id isolated? (A port that left the switch is not.)
    fn isolated_id(&self, id: PortId) -> bool {
        self.ports
            .load()
            .iter()
            .find(|p| p.id == id)
            .is_some_and(|p| p.is_isolated())
    }

    /// Removes a port and forgets its MACs. Returns it so the caller can stop its driver.
    pub fn remove_port(&self, id: PortId) -> Option<Arc<SwitchPort>> {
        let _w = self
            .ports_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cur = self.ports.load_full();
        let found = cur.iter().find(|p| p.id == id).cloned()?;
        let next: Vec<Arc<SwitchPort>> = cur.iter().filter(|p| p.id != id).cloned().collect();
        self.ports.store(Arc::new(next));
        self.fdb.flush_port(id);
        self.groups.remove_port(id);
        Some(found)
    }

    /// The current port set (a lock-free snapshot).
    pub fn ports(&self) -> Arc<Vec<Arc<SwitchPort>>> {
        self.ports.load_full()
    }

    /// Looks a port up in a snapshot (ports are few; a scan beats hashing).
    pub fn port_in(ports: &[Arc<SwitchPort>], id: PortId) -> Option<&Arc<SwitchPort>> {
        ports.iter().find(|p| p.id == id)
    }

    /// Decides what happens to `frame` (vnet header + Ethernet frame) received on `ingress`
    /// at `now` (switch clock, ms), under the ingress port's `security` policy (`None`: not
    /// checked). Learns the source MAC as a side effect on the table, only once the frame has
    /// passed every check: a dropped frame never moves a MAC.
    pub fn decide(
        &self,
        ingress: PortId,
        security: Option<&PortSecurity>,
        frame: &[u8],
        now: u64,
    ) -> (Verdict, Option<LearnOutcome>) {
        self.decide_in(&self.fdb.pinned(), ingress, security, frame, now)
    }

    /// [`Switch::decide`] with the MAC table pinned by the caller: a port task pins it once
    /// for a burst of frames.
    pub(crate) fn decide_in(
        &self,
        fdb: &Pinned<'_>,
        ingress: PortId,
        security: Option<&PortSecurity>,
        frame: &[u8],
        now: u64,
    ) -> (Verdict, Option<LearnOutcome>) {
        if let Err(reason) = self.check(frame) {
            return (Verdict::Drop(reason), None);
        }
        // check() guarantees the Ethernet header is present.
        let eth = &frame[VNET_HDR_LEN..];
        let (Some(dst), Some(src)) = (
            MacAddr::from_bytes(eth),
            eth.get(6..).and_then(MacAddr::from_bytes),
        ) else {
            return (Verdict::Drop(DropReason::Runt), None);
        };
        if src.is_multicast() {
            return (Verdict::Drop(DropReason::MulticastSource), None);
        }
        if src.is_zero() {
            return (Verdict::Drop(DropReason::ZeroSource), None);
        }
        if let Some(policy) = security {
            if let Err(reason) = security::check(policy, eth) {
                return (Verdict::Drop(reason), None);
            }
        }
        let learned = fdb.learn(src, ingress, now);
        // Learning still happens for an isolated port: the MAC does live there, and the
        // gateway's replies must find it.
        let isolated = self.isolating.load(Relaxed) && self.isolated_id(ingress);
        let flood = if isolated {
            Verdict::FloodOpen
        } else {
            Verdict::Flood
        };
        if dst.is_multicast() {
            // IPv6 multicast MACs are 33:33:xx:xx:xx:xx (RFC 2464): only those are snooped.
            if dst.0[0] == 0x33 && dst.0[1] == 0x33 {
                match mld::classify(eth) {
                    mld::Class::Report(changes) => {
                        if !changes.is_empty() {
                            self.groups.learn(ingress, &changes);
                        }
                        return (Verdict::MldReport, Some(learned));
                    }
                    mld::Class::Data(group) => return (Verdict::Ipv6Group(group), Some(learned)),
                    mld::Class::Flood => {}
                }
            }
            return (flood, Some(learned));
        }
        let v = match fdb.lookup(&dst, now) {
            Some(p) if p == ingress => Verdict::Drop(DropReason::SamePort),
            Some(p) if isolated && self.isolated_id(p) => Verdict::Drop(DropReason::IccBlocked),
            Some(p) => Verdict::Forward(p),
            None => flood,
        };
        (v, Some(learned))
    }

    /// Validates length, the vnet header and the MTU.
    fn check(&self, frame: &[u8]) -> Result<(), DropReason> {
        if frame.len() < VNET_HDR_LEN + ETH_HLEN {
            return Err(DropReason::Runt);
        }
        let eth_len = frame.len() - VNET_HDR_LEN;
        let flags = frame[0];
        let gso_type = frame[1] & !GSO_ECN;
        let rd = |at: usize| u16::from_ne_bytes([frame[at], frame[at + 1]]) as usize;
        let gso_size = rd(4);
        let csum_start = rd(6);
        let csum_offset = rd(8);
        if flags & VNET_F_NEEDS_CSUM != 0 && csum_start + csum_offset + 2 > eth_len {
            return Err(DropReason::BadVnetHdr);
        }
        let mtu = usize::from(self.config.mtu);
        match gso_type {
            GSO_NONE => {
                if eth_len > max_tagged_frame(self.config.mtu)
                    || (eth_len > max_untagged_frame(self.config.mtu) && !is_vlan_tagged(frame))
                {
                    return Err(DropReason::OverMtu);
                }
            }
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4 => {
                if gso_size == 0 || flags & VNET_F_NEEDS_CSUM == 0 {
                    return Err(DropReason::BadVnetHdr);
                }
                if gso_size + MIN_L3L4 > mtu {
                    return Err(DropReason::OverMtu);
                }
            }
            _ => return Err(DropReason::BadVnetHdr),
        }
        Ok(())
    }
}

fn is_vlan_tagged(frame: &[u8]) -> bool {
    let et = VNET_HDR_LEN + 12;
    frame.get(et..et + 2) == Some(&[0x81, 0x00][..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::PortCaps;
    use std::io;
    use std::os::fd::RawFd;

    struct NullPort;
    impl Port for NullPort {
        fn recv(&self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn send(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn caps(&self) -> PortCaps {
            PortCaps::PLAIN
        }
        fn raw_fd(&self) -> RawFd {
            -1
        }
        fn kind(&self) -> &'static str {
            "null"
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(f.len() + payload, 0x55);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    fn sw() -> (Arc<Switch>, PortId, PortId) {
        let s = Switch::new(
            "t",
            SwitchConfig {
                aging_ms: 1000,
                ..Default::default()
            },
        );
        let p1 = s.add_port("p1", Box::new(NullPort)).id;
        let p2 = s.add_port("p2", Box::new(NullPort)).id;
        (s, p1, p2)
    }

    #[test]
    fn unknown_unicast_floods_then_learned_unicast_forwards() {
        let (s, p1, p2) = sw();
        assert_eq!(s.decide(p1, None, &frame(B, A, 46), 0).0, Verdict::Flood);
        assert_eq!(
            s.decide(p2, None, &frame(A, B, 46), 1).0,
            Verdict::Forward(p1)
        );
        assert_eq!(
            s.decide(p1, None, &frame(B, A, 46), 2).0,
            Verdict::Forward(p2)
        );
    }

    #[test]
    fn broadcast_floods_and_never_returns_to_ingress() {
        let (s, p1, _) = sw();
        assert_eq!(
            s.decide(p1, None, &frame(BCAST, A, 28), 0).0,
            Verdict::Flood
        );
        // A frame to a MAC that lives on the ingress port is dropped, not reflected.
        assert_eq!(
            s.decide(p1, None, &frame(A, B, 28), 1).0,
            Verdict::Drop(DropReason::SamePort)
        );
    }

    #[test]
    fn aged_out_destination_floods_again() {
        let (s, p1, p2) = sw();
        s.decide(p1, None, &frame(B, A, 46), 0);
        assert_eq!(
            s.decide(p2, None, &frame(A, B, 46), 500).0,
            Verdict::Forward(p1)
        );
        assert_eq!(s.decide(p2, None, &frame(A, B, 46), 1501).0, Verdict::Flood);
    }

    #[test]
    fn malformed_frames_are_dropped_with_their_reason() {
        let (s, p1, _) = sw();
        let drop = |f: &[u8]| s.decide(p1, None, f, 0).0;
        assert_eq!(drop(&[0u8; 3]), Verdict::Drop(DropReason::Runt));
        assert_eq!(
            drop(&frame(B, A, 0)[..VNET_HDR_LEN + 13]),
            Verdict::Drop(DropReason::Runt)
        );
        assert_eq!(
            drop(&frame(B, [3, 0, 0, 0, 0, 1], 46)),
            Verdict::Drop(DropReason::MulticastSource)
        );
        assert_eq!(
            drop(&frame(B, [0; 6], 46)),
            Verdict::Drop(DropReason::ZeroSource)
        );
        assert_eq!(drop(&frame(B, A, 1501)), Verdict::Drop(DropReason::OverMtu));
        assert_eq!(s.decide(p1, None, &frame(B, A, 1500), 0).0, Verdict::Flood);
        let mut bad = frame(B, A, 100);
        bad[1] = 3; // UFO: not accepted
        assert_eq!(drop(&bad), Verdict::Drop(DropReason::BadVnetHdr));
        let mut bad = frame(B, A, 100);
        bad[0] = VNET_F_NEEDS_CSUM;
        bad[6..8].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(drop(&bad), Verdict::Drop(DropReason::BadVnetHdr));
        let mut gso = frame(B, A, 60000);
        gso[0] = VNET_F_NEEDS_CSUM;
        gso[1] = GSO_TCPV4;
        gso[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        gso[6..8].copy_from_slice(&34u16.to_ne_bytes());
        gso[8..10].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(
            drop(&gso),
            Verdict::Flood,
            "a GSO super-frame is not over the MTU"
        );
        gso[4..6].copy_from_slice(&9000u16.to_ne_bytes());
        assert_eq!(drop(&gso), Verdict::Drop(DropReason::OverMtu));
        // Nothing was learned from dropped frames.
        assert!(s.fdb.entries(0).iter().all(|e| e.mac == MacAddr(A)));
    }

    /// An IPv4/UDP frame from `src` (MAC and address) to B.
    fn ipv4_frame(src: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
        let mut f = frame(B, src, 0);
        let mut l3 = [0u8; 28];
        l3[0] = 0x45;
        l3[9] = 17;
        l3[12..16].copy_from_slice(&ip);
        l3[16..20].copy_from_slice(&[10, 0, 0, 11]);
        f.extend_from_slice(&l3);
        f
    }

    const A_IP: [u8; 4] = [10, 0, 0, 10];

    fn a_policy() -> PortSecurity {
        PortSecurity {
            mac: MacAddr(A),
            ipv4: vec![A_IP.into()],
            ipv6: Vec::new(),
        }
    }

    /// Runs `frame` through the driver's path from `ingress`, as read from its device.
    fn forward(s: &Switch, ingress: PortId, frame: &[u8], now: u64) {
        let ports = s.ports();
        let port = Switch::port_in(&ports, ingress).expect("port");
        crate::driver::forward(
            s,
            &ports,
            port,
            frame,
            now,
            crate::driver::Entry::Port,
            &mut Vec::new(),
        );
    }

    fn stats(s: &Switch, id: PortId) -> crate::counters::PortStats {
        let ports = s.ports();
        Switch::port_in(&ports, id)
            .expect("port")
            .counters
            .snapshot()
    }

    /// The counters of a port that received `frames` of `bytes` each and dropped them all
    /// for `reason`.
    fn dropped(frames: u64, bytes: usize, reason: &'static str) -> crate::counters::PortStats {
        let mut want = PortCounters::default().snapshot();
        want.rx_packets = frames;
        want.rx_bytes = frames * (bytes - VNET_HDR_LEN) as u64;
        want.drops_total = frames;
        want.drops.insert(reason, frames);
        want
    }

    fn secured() -> (Arc<Switch>, PortId, PortId) {
        let (s, p1, p2) = sw();
        s.ports()[0].set_security(Some(a_policy()));
        // B lives on p2.
        s.fdb.learn(MacAddr(B), p2, 0);
        (s, p1, p2)
    }

    #[test]
    fn a_frame_from_another_mac_is_dropped_as_spoofed_mac_and_not_learned() {
        let (s, p1, p2) = secured();
        let forged = ipv4_frame(B, A_IP);
        assert_eq!(
            s.decide(p1, Some(&a_policy()), &forged, 1).0,
            Verdict::Drop(DropReason::SpoofedMac)
        );
        forward(&s, p1, &forged, 1);
        assert_eq!(stats(&s, p1), dropped(1, forged.len(), "spoofed_mac"));
        assert_eq!(s.fdb.lookup(&MacAddr(B), 1), Some(p2), "B stays on p2");
        assert_eq!(stats(&s, p2).tx_packets, 0, "nothing reached B's port");
    }

    #[test]
    fn a_forged_ipv4_source_is_dropped_as_spoofed_ipv4_and_its_mac_is_not_learned() {
        let (s, p1, _) = secured();
        let forged = ipv4_frame(A, [10, 0, 0, 11]);
        forward(&s, p1, &forged, 1);
        assert_eq!(stats(&s, p1), dropped(1, forged.len(), "spoofed_ipv4"));
        assert_eq!(s.fdb.lookup(&MacAddr(A), 1), None);
    }

    #[test]
    fn the_endpoints_own_frames_are_forwarded_and_learned() {
        let (s, p1, p2) = secured();
        let own = ipv4_frame(A, A_IP);
        forward(&s, p1, &own, 1);
        assert_eq!(s.fdb.lookup(&MacAddr(A), 1), Some(p1));
        assert_eq!(stats(&s, p1).drops_total, 0);
        assert_eq!(stats(&s, p2).tx_packets, 1, "unicast to B");
    }

    #[test]
    fn lifting_the_policy_lets_the_same_forged_frame_through_at_the_next_frame() {
        let (s, p1, p2) = secured();
        let forged = ipv4_frame(A, [10, 0, 0, 11]);
        forward(&s, p1, &forged, 1);
        let port = s.ports()[0].clone();
        assert_eq!(port.security(), Some(Arc::new(a_policy())));
        port.set_security(None);
        forward(&s, p1, &forged, 2);
        assert_eq!(stats(&s, p1), {
            let mut want = dropped(1, forged.len(), "spoofed_ipv4");
            want.rx_packets = 2;
            want.rx_bytes *= 2;
            want.learned = 1;
            want
        });
        assert_eq!(stats(&s, p2).tx_packets, 1);
        assert_eq!(s.fdb.lookup(&MacAddr(A), 2), Some(p1));
    }

    #[test]
    fn structural_checks_come_before_port_security() {
        let (s, p1, _) = secured();
        let drop = |f: &[u8]| s.decide(p1, Some(&a_policy()), f, 0).0;
        assert_eq!(drop(&[0u8; 3]), Verdict::Drop(DropReason::Runt));
        assert_eq!(
            drop(&frame(B, [3, 0, 0, 0, 0, 1], 46)),
            Verdict::Drop(DropReason::MulticastSource)
        );
        assert_eq!(drop(&frame(B, A, 1501)), Verdict::Drop(DropReason::OverMtu));
    }

    const GW: [u8; 6] = [2, 0x42, 10, 0, 0, 1];

    /// A switch of an `icc=false` network: the gateway port and two isolated endpoint ports.
    fn isolated() -> (Arc<Switch>, PortId, PortId, PortId) {
        let s = Switch::new("t", SwitchConfig::default());
        let gw = s.add_port("gateway", Box::new(NullPort)).id;
        for name in ["a", "b"] {
            let p = s.add_port(name, Box::new(NullPort));
            s.isolate(&p, true);
        }
        let ports = s.ports();
        (s.clone(), gw, ports[1].id, ports[2].id)
    }

    #[test]
    fn an_isolated_endpoints_frame_for_another_endpoint_is_dropped_as_icc_blocked() {
        let (s, _, a, b) = isolated();
        s.fdb.learn(MacAddr(B), b, 0);
        let f = frame(B, A, 46);
        forward(&s, a, &f, 1);
        let mut want = dropped(1, f.len(), "icc_blocked");
        want.learned = 1;
        assert_eq!(stats(&s, a), want);
        assert_eq!(stats(&s, b).tx_packets, 0, "nothing reached B");
        // A was still learned on its port: the gateway's replies find it.
        assert_eq!(s.fdb.lookup(&MacAddr(A), 1), Some(a));
        assert_eq!(
            s.decide(a, None, &f, 2).0,
            Verdict::Drop(DropReason::IccBlocked)
        );
    }

    #[test]
    fn isolated_endpoints_and_the_gateway_reach_each_other() {
        let (s, gw, a, _) = isolated();
        assert_eq!(s.decide(gw, None, &frame(A, GW, 46), 0).0, Verdict::Flood);
        assert_eq!(
            s.decide(a, None, &frame(GW, A, 46), 1).0,
            Verdict::Forward(gw)
        );
        assert_eq!(
            s.decide(gw, None, &frame(A, GW, 46), 2).0,
            Verdict::Forward(a)
        );
    }

    #[test]
    fn an_isolated_endpoints_broadcast_and_unknown_unicast_reach_the_gateway_only() {
        let (s, gw, a, b) = isolated();
        let arp = frame(BCAST, A, 28);
        assert_eq!(s.decide(a, None, &arp, 0).0, Verdict::FloodOpen);
        forward(&s, a, &arp, 0);
        assert_eq!(stats(&s, gw).tx_packets, 1);
        assert_eq!(stats(&s, b).tx_packets, 0);
        assert_eq!(
            stats(&s, a).drops_total,
            0,
            "a flood that reached the gateway is no drop"
        );
        let unknown = frame([2, 0, 0, 0, 0, 0x77], A, 46);
        assert_eq!(s.decide(a, None, &unknown, 1).0, Verdict::FloodOpen);
        // The gateway's own broadcast still reaches every endpoint.
        forward(&s, gw, &frame(BCAST, GW, 28), 2);
        assert_eq!(stats(&s, a).tx_packets, 1);
        assert_eq!(stats(&s, b).tx_packets, 1);
    }

    #[test]
    fn lifting_isolation_lets_endpoints_talk_again() {
        let (s, _, a, b) = isolated();
        s.fdb.learn(MacAddr(B), b, 0);
        let ports = s.ports();
        for p in ports.iter() {
            s.isolate(p, false);
        }
        assert_eq!(
            s.decide(a, None, &frame(B, A, 46), 1).0,
            Verdict::Forward(b)
        );
        assert_eq!(s.decide(a, None, &frame(BCAST, A, 46), 1).0, Verdict::Flood);
    }

    #[test]
    fn removing_a_port_flushes_its_macs() {
        let (s, p1, p2) = sw();
        s.decide(p1, None, &frame(B, A, 46), 0);
        assert!(s.remove_port(p1).is_some());
        assert_eq!(s.decide(p2, None, &frame(A, B, 46), 1).0, Verdict::Flood);
        assert_eq!(s.ports().len(), 1);
    }
}
