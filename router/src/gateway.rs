//! A network's gateway: a smoltcp interface behind a switch port.
//!
//! The switch sees an ordinary port (in the daemon an in-process hand-off port taking TCP
//! super-frames, [`crate::uplink`]; a socketpair port in tests). This task owns the other end:
//! it feeds received
//! frames to smoltcp, which answers ARP and ICMP echo for the gateway address by itself, and
//! it serves DNS on the gateway's port 53 (UDP, and TCP with the 2-byte length framing) by
//! handing each query to the [`DnsService`] on a task of its own, so a slow upstream never
//! stalls the interface. Time is smoltcp's argument; the loop sleeps until the next frame, the
//! next answer or smoltcp's `poll_delay`.
//!
//! Before smoltcp, each frame is classified ([`crate::packet::is_egress`]): IPv4 sent to the
//! gateway's MAC for an address outside the network goes to the egress engine
//! ([`crate::egress`]: UDP and ICMP echo through host sockets, with a connection tracker;
//! destinations in any netyard network's subnet, [`GatewayConfig::local_subnets`], or in
//! 127/8 are refused there with ICMP, as the relay refuses such TCP);
//! everything else goes to smoltcp as before. The engine's flow sockets are in its own epoll,
//! which this task also selects on (and serves in place), and expired flows are swept once a
//! second while there are any. TCP goes to the relay ([`crate::tcp`]), whose epoll this task
//! selects on too.
//!
//! On a dual-stack network ([`GatewayConfig::ipv6`]) IPv6 frames are decided by
//! [`crate::ndp::decide`] first: Neighbor Solicitations for the gateway's addresses, Router
//! Solicitations and echo requests to it are answered there, DNS to its IPv6 addresses and
//! Neighbor Advertisements go to smoltcp (which has the IPv6 addresses too), and unicast
//! beyond the network goes to [`Engines::ipv6_egress`], the seam of the IPv6 egress engine.
//! Router Advertisements also leave unsolicited every [`crate::ndp::RA_INTERVAL_SECS`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use std::net::{SocketAddr, SocketAddrV4};

use netyard_switch::gso;
use netyard_switch::sys::pagebuf::PageBuf;
use netyard_switch::sys::MemPeer;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use netyard_switch::wire::ip::Lengths;
use netyard_switch::wire::ipv4::Ipv4Packet;
use netyard_switch::wire::ipv6::Ipv6Packet;
use netyard_switch::wire::vnet::{GsoType, VnetHdrRepr, VNET_HDR_LEN};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::conntrack::FlowLimits;
use crate::egress::{Egress, EgressConfig, EgressHandle};
use crate::epoll::EpollFd;
use crate::ndp::{self, Ndp6, V6Verdict};
use crate::packet::{self, Subnet};
use crate::packet6;
use crate::publish::{PublishCmd, Publisher};
use crate::sink::{FrameSink, VnetSink};
use crate::tcp::relay::{Relay, RelayConfig};
use crate::uplink::{SwitchLink, Uplink};

/// Listening TCP sockets kept ready on port 53 (each serves one connection at a time).
const TCP_POOL: usize = 8;
/// Largest DNS message over TCP.
const TCP_MSG_MAX: usize = 65_535;
/// Queued inbound frames before the task polls smoltcp.
const RX_BURST: usize = 64;

/// Answers DNS queries that reach the gateway's port 53.
pub trait DnsService: Send + Sync + 'static {
    /// The answer to one query message, or `None` to drop it.
    fn answer(
        &self,
        query: Vec<u8>,
        tcp: bool,
    ) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;
}

pub use crate::packet::LocalSubnets;

/// The gateway's addresses and what it routes.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    /// The network's MTU (IP packet size).
    pub mtu: usize,
    /// Whether endpoints reach addresses outside the network through host sockets (false on
    /// `--internal` networks: such packets are dropped and counted).
    pub egress: bool,
    /// Caps and idle timeouts of the egress flow table.
    pub flow_limits: FlowLimits,
    /// Connections and datagrams to the gateway address (other than DNS on port 53) go to
    /// the host's 127.0.0.1 (`--host-loopback`), as slirp4netns maps 10.0.2.2: a shorthand
    /// for a map of the gateway's address to 127.0.0.1 (a map in `maps` naming the gateway
    /// wins).
    pub host_loopback: bool,
    /// More addresses the gateway answers on besides `ip` (ARP, ICMP echo, DNS on port 53):
    /// slirp4netns's DNS address 10.0.2.3, pasta's `--dns-forward` address. One outside the
    /// subnet is reached through the endpoint's default route.
    pub extra_ips: Vec<Ipv4Addr>,
    /// Destination maps: TCP, UDP and ICMP echo to `guest` leave through a host socket to
    /// `host`, replies come back from `guest`. A mapped address of the gateway's own keeps
    /// DNS on port 53 for itself.
    pub maps: Vec<packet::AddrMap>,
    /// Every netyard network's subnet (this one's included or not): UDP, ICMP echo and TCP
    /// for a destination inside one is refused locally with ICMP "administratively
    /// prohibited" and counted (`refused_local_network`), never sent to a host socket.
    /// `Default::default()` is an empty list (only the own subnet and 127/8 are refused).
    pub local_subnets: LocalSubnets,
    /// A dual-stack network's IPv6 side: the gateway's address and the prefix.
    pub ipv6: Option<GatewayV6>,
    /// IPv6 destination maps, as `maps` (`host_loopback` adds the gateway's IPv6 address to
    /// the host's `::1` unless one names it).
    pub maps6: Vec<packet6::AddrMap6>,
    /// Every netyard network's IPv6 prefix: IPv6 egress there is refused as for IPv4.
    pub local_subnets6: packet6::LocalSubnets6,
}

/// The gateway's IPv6 address in the network's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayV6 {
    pub addr: std::net::Ipv6Addr,
    pub prefix: ipnet::Ipv6Net,
    /// More IPv6 addresses the gateway answers on (NDP, ICMPv6 echo, DNS on port 53), as
    /// `extra_ips` for IPv4: slirp4netns's DNS address fd00::3. The running gateway reads
    /// them from its [`Ndp6`] only.
    pub extra: Vec<std::net::Ipv6Addr>,
}

impl GatewayConfig {
    /// A gateway with egress on and the default flow limits.
    pub fn new(ip: Ipv4Addr, prefix_len: u8, mac: [u8; 6], mtu: usize) -> GatewayConfig {
        GatewayConfig {
            ip,
            prefix_len,
            mac,
            mtu,
            egress: true,
            flow_limits: FlowLimits::default(),
            host_loopback: false,
            extra_ips: Vec::new(),
            maps: Vec::new(),
            local_subnets: LocalSubnets::default(),
            ipv6: None,
            maps6: Vec::new(),
            local_subnets6: packet6::LocalSubnets6::default(),
        }
    }

    /// The IPv6 side as the egress engines see it (maps with `host_loopback` folded in).
    fn side6(&self) -> Option<packet6::Side6> {
        self.ipv6.as_ref().map(|v6| packet6::Side6 {
            subnet: packet6::Subnet6 {
                gateway: v6.addr,
                prefix_len: v6.prefix.prefix_len(),
            },
            maps: packet6::effective_maps(v6.addr, self.host_loopback, &self.maps6),
            local_subnets: self.local_subnets6.clone(),
        })
    }

    /// The IPv6 side as [`crate::ndp`] needs it.
    fn ndp6(&self) -> Option<Ndp6> {
        self.ipv6.as_ref().map(|v6| Ndp6 {
            mac: netyard_switch::MacAddr(self.mac),
            addr: v6.addr,
            extra: v6.extra.clone(),
            prefix: v6.prefix,
            mtu: u32::try_from(self.mtu).unwrap_or(u32::MAX),
            default_router: self.egress,
        })
    }

    /// The maps egress applies, `host_loopback` folded in.
    fn effective_maps(&self) -> Vec<packet::AddrMap> {
        packet::effective_maps(self.ip, self.host_loopback, &self.maps)
    }

    /// Whether `ip` is one of the gateway's own addresses.
    pub fn is_own(&self, ip: Ipv4Addr) -> bool {
        ip == self.ip || self.extra_ips.contains(&ip)
    }
}

/// A running gateway: its task (abort it to stop the gateway; the flows' host sockets close
/// with it) and the handle on its egress flows and counters.
#[derive(Debug)]
pub struct GatewayHandle {
    pub task: JoinHandle<()>,
    pub egress: EgressHandle,
    /// Adds and removes published ports.
    pub publisher: Publisher,
    /// Greets endpoints that join with a Router Advertisement.
    pub advertiser: Advertiser,
}

/// Tells a running gateway that an endpoint joined its network, so that it sends it a Router
/// Advertisement at once ([`ndp::join_advert`]; nothing on an IPv4-only network). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Advertiser {
    tx: mpsc::UnboundedSender<(MacAddr, oneshot::Sender<()>)>,
}

impl Advertiser {
    /// The endpoint at `mac` joined (its port is on the switch, its interface up). Returns
    /// once the gateway has written the advertisement (or is gone), so that whoever attached
    /// the endpoint answers after its default route is in: a TAP's write hands the frame to
    /// the container's kernel before it returns.
    pub async fn joined(&self, mac: MacAddr) {
        let (done, wait) = oneshot::channel();
        if self.tx.send((mac, done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Frames between the task and smoltcp.
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _: SInstant) -> Option<(RxTok, TxTok<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _: SInstant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        // smoltcp counts the Ethernet header in an Ethernet device's MTU.
        c.max_transmission_unit = self.mtu + 14;
        c.max_burst_size = Some(RX_BURST);
        c
    }
}

/// An answer on its way back to a client.
enum Reply {
    Udp {
        to: udp::UdpMetadata,
        msg: Vec<u8>,
    },
    Tcp {
        sock: SocketHandle,
        gen: u64,
        msg: Vec<u8>,
    },
}

/// Per TCP socket: bytes received so far, and a generation so answers meant for an earlier
/// connection on the same socket are discarded.
struct TcpConn {
    handle: SocketHandle,
    buf: Vec<u8>,
    gen: u64,
    was_active: bool,
}

/// Starts the gateway task on `link` (the switch holds the matching port; see
/// [`crate::uplink`]); returns the task and the egress handle. Must be called from within the
/// daemon's runtime, in the namespace whose sockets egress should use.
pub fn start(
    cfg: GatewayConfig,
    link: SwitchLink,
    dns: Option<Arc<dyn DnsService>>,
) -> io::Result<GatewayHandle> {
    let peer = Uplink::new(link)?;
    let (egress, handle) = Egress::new(EgressConfig {
        enabled: cfg.egress,
        subnet: Subnet {
            gateway: cfg.ip,
            prefix_len: cfg.prefix_len,
        },
        gw_mac: cfg.mac,
        mtu: cfg.mtu,
        limits: cfg.flow_limits,
        maps: cfg.effective_maps(),
        host_sockets: crate::limits::host_sockets(),
        local_subnets: cfg.local_subnets.clone(),
        v6: cfg.side6(),
    })?;
    let (relay, epoll) = Relay::new(
        RelayConfig {
            subnet: Subnet {
                gateway: cfg.ip,
                prefix_len: cfg.prefix_len,
            },
            gw_mac: cfg.mac,
            mtu: cfg.mtu,
            maps: cfg.effective_maps(),
            own: std::iter::once(cfg.ip)
                .chain(cfg.extra_ips.iter().copied())
                .collect(),
            host_sockets: crate::limits::host_sockets(),
            local_subnets: cfg.local_subnets.clone(),
            v6: cfg.side6(),
        },
        egress.shared(),
    )?;
    let (publisher, publish_rx) = Publisher::new();
    let (join_tx, join_rx) = mpsc::unbounded_channel();
    let engines = Engines {
        ndp6: cfg.ndp6(),
        cfg: cfg.clone(),
        subnet: Subnet {
            gateway: cfg.ip,
            prefix_len: cfg.prefix_len,
        },
        egress,
        relay,
        scratch: Vec::new(),
        maps: cfg.effective_maps(),
        v6: cfg.side6(),
    };
    // As long as the switch's receive buffers: in process, the two trade places.
    let rx_buf = PageBuf::new(netyard_switch::driver::RX_BUF_LEN)?;
    let ctl = Control {
        publish: publish_rx,
        joins: join_rx,
    };
    let task = tokio::spawn(run(cfg, peer, dns, engines, ctl, epoll, rx_buf));
    Ok(GatewayHandle {
        task,
        egress: handle,
        publisher,
        advertiser: Advertiser { tx: join_tx },
    })
}

/// [`start`], keeping only the task. Abort the handle to stop it.
pub fn spawn(
    cfg: GatewayConfig,
    peer: MemPeer,
    dns: Option<Arc<dyn DnsService>>,
) -> io::Result<JoinHandle<()>> {
    Ok(start(cfg, SwitchLink::Socket(peer), dns)?.task)
}

fn now(start: std::time::Instant) -> SInstant {
    SInstant::from_micros(i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX))
}

/// The protocol, source and destination (address and TCP/UDP port) of an untagged IPv4
/// packet in `frame` (Ethernet). Only classifies: the lengths are read as a GSO super-frame's
/// (a TAP's may say 0) and nothing else is checked; the engine the frame goes to checks it.
pub(crate) fn l4_ports(frame: &[u8]) -> Option<(u8, SocketAddrV4, SocketAddrV4)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.outer_ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked_with(frame.get(eth.header_len()..)?, Lengths::Gso).ok()?;
    let l4 = ip.payload().get(..4)?;
    let (sp, dp) = (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    Some((
        u8::from(ip.protocol()),
        SocketAddrV4::new(ip.src_addr(), sp),
        SocketAddrV4::new(ip.dst_addr(), dp),
    ))
}

/// [`l4_ports`] for an untagged IPv6 packet, past its extension headers.
pub(crate) fn l4_ports6(frame: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.outer_ethertype() != EtherType::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked_with(frame.get(eth.header_len()..)?, Lengths::Gso).ok()?;
    let (proto, l4) = ip.upper_layer()?;
    let l4 = l4.get(..4)?;
    let (sp, dp) = (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    Some((
        u8::from(proto),
        SocketAddr::new(ip.src_addr().into(), sp),
        SocketAddr::new(ip.dst_addr().into(), dp),
    ))
}

/// Everything the gateway task owns besides smoltcp.
struct Engines {
    cfg: GatewayConfig,
    /// The IPv6 side of a dual-stack network: the gateway's IPv6 addresses (the one list
    /// every IPv6 decision of the task reads).
    ndp6: Option<Ndp6>,
    subnet: Subnet,
    egress: Egress,
    relay: Relay,
    /// Reused for software segmentation of GSO frames that go to smoltcp or UDP egress.
    scratch: Vec<u8>,
    /// `cfg`'s maps with `host_loopback` folded in.
    maps: Vec<packet::AddrMap>,
    /// The IPv6 side of a dual-stack network, as the engines see it.
    v6: Option<packet6::Side6>,
}

impl Engines {
    /// Where a received switch frame (virtio-net header, then Ethernet) goes: the TCP relay
    /// (whole, GSO super-frames included), the egress engine or smoltcp's queue.
    fn ingest(&mut self, buf: &mut [u8], dev: &mut QueueDevice, peer: &Uplink) {
        if buf.len() <= VNET_HDR_LEN {
            return;
        }
        let (h, frame) = buf.split_at_mut(VNET_HDR_LEN);
        let Ok(hdr) = VnetHdrRepr::from_bytes(h) else {
            return;
        };
        let now = Instant::now();
        let to_gw_mac = frame.get(0..6) == Some(&self.cfg.mac[..]);
        if to_gw_mac && self.takes_ipv6(frame) {
            // Whole, GSO super-frames included: the relay takes them so, egress cuts them.
            self.ipv6_egress(&hdr, frame, now, peer);
            return;
        }
        if to_gw_mac {
            if let Some((proto, src, dst)) = l4_ports(frame) {
                let own = self.cfg.is_own(*dst.ip());
                let outside = !own && !self.subnet.contains(*dst.ip());
                let owned = own && self.relay.owns_gateway_tcp(src.into(), dst.into());
                if proto == 6 && (outside || owned) {
                    let trusted = hdr.needs_csum || hdr.data_valid;
                    self.relay.segment(frame, trusted, now, peer);
                    return;
                }
            }
        }
        if hdr.gso_type != GsoType::None {
            // Each segment is handled as it is cut, in the reused scratch buffer.
            let mut scratch = std::mem::take(&mut self.scratch);
            let _ = gso::segment(&hdr, frame, None, &mut scratch, &mut |seg: &[u8]| {
                self.plain(seg, now, dev, peer);
                Ok(())
            });
            self.scratch = scratch;
            return;
        }
        if hdr.needs_csum
            && gso::complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into()).is_err()
        {
            return;
        }
        self.plain(frame, now, dev, peer);
    }

    /// Whether an IPv6 frame sent to the gateway's MAC is the IPv6 egress engines': unicast
    /// beyond the network (not on-link, not link-local, not multicast), or to the gateway's
    /// IPv6 address when that is mapped to the host (`--host-loopback`; DNS on port 53
    /// stays with the resolver) or the relay's (a published connection shown as the
    /// gateway). Everything else IPv6 is the gateway's own (NDP, echo, DNS).
    fn takes_ipv6(&self, frame: &[u8]) -> bool {
        let Some(v6) = &self.v6 else {
            return false;
        };
        let Some(dst) = packet6::ipv6_dst(frame) else {
            return false;
        };
        if self.ndp6.as_ref().is_some_and(|n| n.extra.contains(&dst)) {
            // The gateway's own (DNS, echo, NDP), even outside the prefix.
            return false;
        }
        if dst == v6.subnet.gateway {
            let Some((proto, src, dst)) = l4_ports6(frame) else {
                return false;
            };
            let mapped = packet6::mapped(v6.subnet.gateway, &v6.maps).is_some();
            return (proto == 6 && self.relay.owns_gateway_tcp(src, dst))
                || (proto == 17
                    && (self.relay.owns_udp(src, dst) || (mapped && dst.port() != 53)));
        }
        !(dst.is_multicast()
            || dst.is_unspecified()
            || netyard_switch::wire::ipv6::is_link_local(&dst)
            || v6.subnet.contains(dst))
    }

    /// An IPv6 frame for the egress engines ([`Engines::takes_ipv6`]), as the switch handed
    /// it over: `hdr` is its virtio-net header (a TCP super-frame keeps its GSO type;
    /// checksums may be partial). TCP goes to the relay whole; UDP and ICMPv6 are cut (a UDP
    /// GSO frame) or completed, then go to a published UDP flow's reply path or egress.
    fn ipv6_egress(&mut self, hdr: &VnetHdrRepr, frame: &mut [u8], now: Instant, peer: &Uplink) {
        if matches!(l4_ports6(frame), Some((6, _, _))) {
            let trusted = hdr.needs_csum || hdr.data_valid;
            self.relay.segment(frame, trusted, now, peer);
            return;
        }
        if hdr.gso_type != GsoType::None {
            let mut scratch = std::mem::take(&mut self.scratch);
            let _ = gso::segment(hdr, frame, None, &mut scratch, &mut |seg: &[u8]| {
                self.plain6(seg, now, peer);
                Ok(())
            });
            self.scratch = scratch;
            return;
        }
        if hdr.needs_csum
            && gso::complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into()).is_err()
        {
            return;
        }
        self.plain6(frame, now, peer);
    }

    /// A complete IPv6 frame for egress: a reply to a published UDP flow, or egress.
    fn plain6(&mut self, frame: &[u8], now: Instant, peer: &Uplink) {
        if let Some((17, src, dst)) = l4_ports6(frame) {
            if self.relay.owns_udp(src, dst) {
                if let Some(v6) = &self.v6 {
                    if let Ok(p) = packet6::parse_outbound(frame, &v6.subnet, &v6.maps) {
                        self.relay.udp_reply(src, dst, p.payload, now);
                    }
                }
                return;
            }
        }
        self.egress.outbound(frame, now, &VnetSink(peer));
    }

    /// A complete frame (final checksums): UDP egress or replies, or smoltcp.
    fn plain(&mut self, frame: &[u8], now: Instant, dev: &mut QueueDevice, peer: &Uplink) {
        if frame.get(12..14) == Some(&[0x86, 0xdd][..]) {
            // IPv6: the gateway's own on a dual-stack network, nobody's on an IPv4-only one
            // (smoltcp has no IPv6 address there and would drop it anyway).
            let Some(cfg6) = self.ndp6.as_ref() else {
                return;
            };
            match ndp::decide(cfg6, frame) {
                V6Verdict::Reply(f) => {
                    // A full queue drops the answer, as a lost frame; the host asks again.
                    let _ = VnetSink(peer).send_frame(&f);
                }
                V6Verdict::Local => dev.rx.push_back(frame.to_vec()),
                V6Verdict::Egress => {
                    let mut f = frame.to_vec();
                    self.ipv6_egress(&VnetHdrRepr::default(), &mut f, now, peer);
                }
                V6Verdict::Ignore => {}
            }
            return;
        }
        let mut mapped_own = false;
        let mut own = false;
        if frame.get(0..6) == Some(&self.cfg.mac[..]) {
            own = packet::ipv4_dst(frame).is_some_and(|d| self.cfg.is_own(d));
            if let Some((17, src, dst)) = l4_ports(frame) {
                if self.relay.owns_udp(src.into(), dst.into()) {
                    if let Ok(p) = packet::parse_outbound(frame, &self.subnet) {
                        self.relay.udp_reply(src.into(), dst.into(), p.payload, now);
                    }
                    return;
                }
                // UDP to a mapped address of the gateway's own leaves, but DNS stays here.
                mapped_own =
                    own && dst.port() != 53 && packet::mapped(*dst.ip(), &self.maps).is_some();
            }
        }
        if mapped_own || (!own && packet::is_egress(frame, self.cfg.mac, &self.subnet)) {
            self.egress.outbound(frame, now, &VnetSink(peer));
        } else {
            dev.rx.push_back(frame.to_vec());
        }
    }
}

/// What the daemon tells a running gateway.
struct Control {
    publish: mpsc::UnboundedReceiver<PublishCmd>,
    /// Endpoints that joined ([`Advertiser`]).
    joins: mpsc::UnboundedReceiver<(MacAddr, oneshot::Sender<()>)>,
}

async fn run(
    cfg: GatewayConfig,
    peer: Uplink,
    dns: Option<Arc<dyn DnsService>>,
    mut eng: Engines,
    mut ctl: Control,
    epoll: Arc<AsyncFd<EpollFd>>,
    mut rx_buf: PageBuf,
) {
    let start = std::time::Instant::now();
    let mut dev = QueueDevice {
        rx: VecDeque::new(),
        tx: Vec::new(),
        mtu: cfg.mtu,
    };
    let mut iface = Interface::new(
        Config::new(EthernetAddress(cfg.mac).into()),
        &mut dev,
        now(start),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix_len));
        // smoltcp answers ARP and ICMP echo for each; one outside the subnet is a host route.
        for &x in &cfg.extra_ips {
            let inside = packet::Subnet {
                gateway: cfg.ip,
                prefix_len: cfg.prefix_len,
            }
            .contains(x);
            let len = if inside { cfg.prefix_len } else { 32 };
            if a.push(IpCidr::new(IpAddress::Ipv4(x), len)).is_err() {
                tracing::warn!(address = %x, "gateway: too many addresses; {x} not served");
            }
        }
        // DNS on the IPv6 addresses (smoltcp's sockets take every address of the interface);
        // NDP and echo for them are crate::ndp's.
        if let Some(v6) = &eng.ndp6 {
            let own = [(v6.addr, v6.prefix.prefix_len()), (v6.link_local(), 64)];
            let extra = v6.extra.iter().map(|&x| {
                let len = if v6.prefix.contains(&x) {
                    v6.prefix.prefix_len()
                } else {
                    128
                };
                (x, len)
            });
            for (addr, len) in own.into_iter().chain(extra) {
                if a.push(IpCidr::new(IpAddress::Ipv6(addr), len)).is_err() {
                    tracing::warn!(address = %addr, "gateway: too many addresses; {addr} not served");
                }
            }
        }
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut udp_handle = None;
    let mut tcp_conns: Vec<TcpConn> = Vec::new();
    if dns.is_some() {
        let mut u = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0u8; 64 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0u8; 64 * 1024]),
        );
        // Port 53 of every address of the gateway's; answers leave from the address asked.
        if u.bind(53).is_ok() {
            udp_handle = Some(sockets.add(u));
        }
        for _ in 0..TCP_POOL {
            let mut t = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; 8 * 1024]),
                tcp::SocketBuffer::new(vec![0u8; 16 * 1024]),
            );
            t.set_timeout(Some(smoltcp::time::Duration::from_secs(10)));
            let _ = t.listen(53);
            tcp_conns.push(TcpConn {
                handle: sockets.add(t),
                buf: Vec::new(),
                gen: 0,
                was_active: false,
            });
        }
    }
    let egress_epoll = eng.egress.epoll();
    let (reply_tx, mut reply_rx) = mpsc::channel::<Reply>(1024);

    let mut pending: Vec<Reply> = Vec::new();
    // The first unsolicited RA at once: hosts up before the gateway (a restart) learn it
    // without soliciting.
    let mut next_ra = Instant::now();

    loop {
        if let Some(v6) = &eng.ndp6 {
            if Instant::now() >= next_ra {
                let all = netyard_switch::wire::ipv6::ALL_NODES;
                let f = ndp::router_advert(v6, all, netyard_switch::wire::ipv6::multicast_mac(all));
                let _ = VnetSink(&peer).send_frame(&f);
                next_ra = Instant::now() + std::time::Duration::from_secs(ndp::RA_INTERVAL_SECS);
            }
        }
        let ts = now(start);
        iface.poll(ts, &mut dev, &mut sockets);

        // DNS over UDP.
        if let (Some(h), Some(svc)) = (udp_handle, dns.as_ref()) {
            let s = sockets.get_mut::<udp::Socket>(h);
            let mut q = [0u8; 4096];
            while let Ok((n, meta)) = s.recv_slice(&mut q) {
                let query = q[..n].to_vec();
                let svc = svc.clone();
                let tx = reply_tx.clone();
                let to = meta;
                tokio::spawn(async move {
                    if let Some(msg) = svc.answer(query, false).await {
                        let _ = tx.send(Reply::Udp { to, msg }).await;
                    }
                });
            }
        }
        // DNS over TCP: collect length-prefixed messages per connection.
        if let Some(svc) = dns.as_ref() {
            for c in tcp_conns.iter_mut() {
                let s = sockets.get_mut::<tcp::Socket>(c.handle);
                if s.is_active() && !c.was_active {
                    c.gen += 1;
                    c.buf.clear();
                }
                c.was_active = s.is_active();
                while s.can_recv() {
                    let mut chunk = [0u8; 4096];
                    match s.recv_slice(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    }
                    if c.buf.len() > 2 * TCP_MSG_MAX {
                        s.abort();
                        c.buf.clear();
                        break;
                    }
                }
                while c.buf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([c.buf[0], c.buf[1]]));
                    if c.buf.len() < 2 + len {
                        break;
                    }
                    let query: Vec<u8> = c.buf.drain(..2 + len).skip(2).collect();
                    let svc = svc.clone();
                    let tx = reply_tx.clone();
                    let (sock, gen) = (c.handle, c.gen);
                    tokio::spawn(async move {
                        if let Some(msg) = svc.answer(query, true).await {
                            let _ = tx.send(Reply::Tcp { sock, gen, msg }).await;
                        }
                    });
                }
                // The client closed its side: finish ours so the socket can listen again.
                if s.state() == tcp::State::CloseWait && s.send_queue() == 0 {
                    s.close();
                }
                if !s.is_open() {
                    let _ = s.listen(53);
                }
            }
        }
        // Answers that came back.
        while let Ok(r) = reply_rx.try_recv() {
            pending.push(r);
        }
        pending.retain(|r| !deliver(r, &mut sockets, udp_handle, &tcp_conns));
        iface.poll(now(start), &mut dev, &mut sockets);
        for f in dev.tx.drain(..) {
            // A full queue drops the frame, as a full NIC ring would; protocols recover.
            let _ = VnetSink(&peer).send_frame(&f);
        }

        let mut delay = iface
            .poll_delay(now(start), &sockets)
            .map(|d| std::time::Duration::from_micros(d.total_micros()))
            .unwrap_or(std::time::Duration::from_secs(1));
        if let Some(t) = eng.egress.sweep_at() {
            delay = delay.min(t.saturating_duration_since(Instant::now()));
        }
        if let Some(t) = eng.relay.wake_at() {
            delay = delay.min(t.saturating_duration_since(Instant::now()));
        }
        if eng.ndp6.is_some() {
            delay = delay.min(next_ra.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            r = peer.recv(&mut rx_buf) => match r {
                Ok(n) => {
                    eng.ingest(&mut rx_buf[..n], &mut dev, &peer);
                    // Take what else is queued, within a burst.
                    for _ in 1..RX_BURST {
                        match peer.try_recv(&mut rx_buf) {
                            Ok(n) => eng.ingest(&mut rx_buf[..n], &mut dev, &peer),
                            Err(_) => break,
                        }
                    }
                    // One ACK per connection for the whole burst; the burst's datagrams.
                    eng.relay.flush_acks(&peer);
                    eng.egress.flush(&VnetSink(&peer));
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {} // oversized frame: dropped
                Err(e) => {
                    tracing::warn!(error = %e, "gateway port failed; gateway stopped");
                    return;
                }
            },
            Some(r) = reply_rx.recv() => pending.push(r),
            Some(cmd) = ctl.publish.recv() => match cmd {
                PublishCmd::Add(id, rule) => eng.relay.publish(id, rule),
                PublishCmd::Remove(id) => eng.relay.unpublish(id),
            },
            Some((mac, done)) = ctl.joins.recv() => {
                if let Some(v6) = &eng.ndp6 {
                    // A full queue drops it, as a lost frame: the host still solicits.
                    let _ = VnetSink(&peer).send_frame(&ndp::join_advert(v6, mac));
                }
                let _ = done.send(());
            }
            g = egress_epoll.readable() => {
                if let Ok(mut g) = g {
                    if !eng.egress.poll_host(Instant::now(), &VnetSink(&peer)) {
                        g.clear_ready();
                    }
                }
            }
            g = epoll.readable() => {
                if let Ok(mut g) = g {
                    if !eng.relay.poll_host(Instant::now(), &peer) {
                        g.clear_ready();
                    }
                }
            }
            _ = tokio::time::sleep(delay) => {}
        }
        if eng.egress.sweep_at().is_some() {
            eng.egress.sweep(Instant::now());
        }
        eng.relay.tick(Instant::now(), &peer);
    }
}

/// Hands an answer to its socket; false if the socket has no room yet (retry later).
fn deliver(
    r: &Reply,
    sockets: &mut SocketSet<'_>,
    udp_handle: Option<SocketHandle>,
    conns: &[TcpConn],
) -> bool {
    match r {
        Reply::Udp { to, msg } => {
            let Some(h) = udp_handle else { return true };
            let s = sockets.get_mut::<udp::Socket>(h);
            match s.send_slice(msg, *to) {
                Ok(()) => true,
                Err(udp::SendError::BufferFull) => false,
                Err(_) => true,
            }
        }
        Reply::Tcp { sock, gen, msg } => {
            let Some(c) = conns.iter().find(|c| c.handle == *sock) else {
                return true;
            };
            if c.gen != *gen {
                return true; // that connection is gone
            }
            let s = sockets.get_mut::<tcp::Socket>(*sock);
            if !s.may_send() {
                return true;
            }
            let Ok(len) = u16::try_from(msg.len()) else {
                return true;
            };
            if s.send_capacity() - s.send_queue() < msg.len() + 2 {
                return false;
            }
            let _ = s.send_slice(&len.to_be_bytes());
            let _ = s.send_slice(msg);
            true
        }
    }
}
