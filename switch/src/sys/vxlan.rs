//! A VXLAN tunnel as a switch port (RFC 7348 over IPv4): the network's frames leave in UDP
//! datagrams to remote VTEPs and come back out of them.
//!
//! # Sockets
//!
//! - Receive: one non-blocking UDP socket bound to `local:port` (4789 unless configured; the
//!   local address may be 0.0.0.0) in the daemon's namespace, with `UDP_GRO`: a burst of
//!   datagrams of one flow that the kernel kept together (a peer's UDP GSO send crossing a veth
//!   whole, or the kernel's GRO) comes up in one read, with the datagram size alongside. A
//!   duplicate of it is the port's [`raw_fd`](Port::raw_fd) (one per port: see "Several VNIs"
//!   below). The kernel checks the UDP checksum when there is one and accepts zero (RFC 7348:
//!   any accepted).
//! - Send: a pool of [`TX_SOCKETS`] UDP sockets bound to `local` and source ports in
//!   49152-65535; a frame leaves through the socket picked by the hash of its inner flow
//!   ([`flow_source_port`]), so one flow keeps one source port and flows spread over the
//!   underlay's ECMP paths (RFC 7348 section 5; Linux picks from its whole local port range).
//!   UDP sockets rather than a raw socket: they need no privilege and can send with
//!   `UDP_SEGMENT` (UDP GSO). The UDP checksum is computed (by offload where the device has
//!   it), which RFC 7348 allows; the kernel refuses GSO without it. If no source port of the
//!   range can be bound, frames leave from the receive socket (source port = `port`).
//! - Nothing is fragmented: `IP_PMTUDISC_DO` sets DF, so a datagram above the route's MTU
//!   fails with `EMSGSIZE`, which the driver counts as `over_mtu`. Frames above the network's
//!   MTU are refused before that ([`PortDrop`] `over_mtu`).
//!
//! # Offloads
//!
//! The port takes GSO super-frames (its caps have the vnet header, TCP and UDP GSO): it cuts
//! them itself ([`gso::segment_into`], full inner checksums) straight into a buffer of
//! `[VXLAN header][segment]` datagrams, all but the last of one size, and hands the kernel up to
//! 64 KiB of them in one `sendmsg` with `UDP_SEGMENT`. On receive, consecutive TCP/IPv4
//! segments of one read are merged back into one super-frame ([`gro_tcp4`]), so a TAP port
//! takes one write for up to 64 KiB. While the reads come one datagram each (a kernel VTEP's
//! TSO super-packets), they go straight into the caller's buffer, the inner frame where a
//! received frame belongs ([`VxlanPort::recv_direct`]): a 64 KiB super-packet is not copied
//! out of the port's read buffer.
//!
//! # Receive checks
//!
//! Each datagram: shorter than the VXLAN header -> `vxlan_truncated`; I flag clear ->
//! `vxlan_i_flag_clear`; another VNI -> `vxlan_wrong_vni` (each a [`PortDrop`] the driver
//! counts). Reserved bits are ignored. Otherwise the inner source MAC is learned against the
//! outer source address ([`RemoteTable::learn`]) and the inner frame is returned behind a vnet
//! header (zero, or describing a merged super-frame). An inner TCP/UDP-over-IPv4 checksum left
//! partial by the sender (a kernel VTEP over a veth underlay leaves CHECKSUM_PARTIAL packets
//! unfinished: the field holds the pseudo-header sum) comes out as NEEDS_CSUM
//! ([`rx_vnet_hdr`]), for the egress port's kernel or the switch to complete; any other bad
//! checksum is left for the receiver to drop. The switch then applies its own checks (runt,
//! over-MTU, ...).
//!
//! # Several VNIs on one socket
//!
//! Tunnels of different VNIs on the same (namespace, local address, port) share one receive
//! socket and send pool (a process-wide registry finds it), as Linux's vxlan devices do. Each
//! port registers its own duplicate of the socket for readiness (each on its network's lane,
//! so in different epolls), so any port may read any datagram. Whichever reads datagrams of
//! another registered VNI hands them to that VNI's queue ([`BufQueue`], as the gateway's
//! in-process port does): a run of one VNI's consecutive datagrams goes as one buffer (the
//! read's buffer itself when the whole read is that VNI's, else a copy into one of the
//! owner's preallocated buffers), the owner's task is woken through its waker
//! ([`Port::poll_queued`]), not through the socket (which may no longer be readable by then:
//! the lost wake-up epoll alone had), and reads it as if it had read it itself (merged,
//! super-packets, hellos). No allocation per datagram and no lock on the queues. A VNI
//! nobody registered is counted as `vxlan_wrong_vni` on the port that read it; a full queue
//! as `vxlan_handoff_full`.
//!
//! Locks: a port's current read is its own (`VxlanPort::rx`, only its driver task takes it,
//! so never contended: a compare-and-swap and a release, no wait). While one VNI has the
//! socket, reads take nothing else. While several share it, reading the socket and handing
//! out what was read happen under the socket's `read` lock, and a port looks at its queue
//! under it before it reads: so one VNI's datagrams keep their order whichever port read
//! them (without it, a port could read and deliver a newer datagram of its own while
//! another still held an older one it had read; TCP inside would take that for loss).
//! Sending takes no lock: the hello bookkeeping every checksummed frame consults is a
//! snapshot and atomics ([`PeerHellos`]; only a peer's first frame takes its writer lock).
//!
//! # Limits
//!
//! IPv4 underlay only. Two tunnels on one port must bind the same local address (0.0.0.0 and
//! a specific address of one port cannot both be bound).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn,
};

use arc_swap::ArcSwap;

use super::packet::{set_buf, set_int_opt};
use super::pagebuf::PageBuf;
use super::{send_udp_gso, CmsgBuf, FrameTruncated, PortDrop, HDR};
use crate::bridge;
use crate::counters::{DropReason, KernelAccumulator, KernelCount, KernelReading};
use crate::gso::{self, GsoError};
use crate::handoff::BufQueue;
use crate::overlay::{
    flow_source_port, gro_tcp4, hello_frame, is_hello, rx_super_packet, rx_vnet_hdr, Destinations,
    InnerCsum, PeerHellos, RemoteTable, SuperPacket, GRO_MAX_SEGS, SOURCE_PORT_MIN,
};
use crate::port::{Port, PortCaps};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::vnet::{VnetHdr, VnetHdrRepr};
use crate::wire::vxlan::{VxlanPacket, VxlanRepr, VXLAN_HDR_LEN};

/// Send sockets, each on its own source port.
pub const TX_SOCKETS: usize = 8;
/// Largest UDP payload of one IPv4 send, GSO or not (65535 - 20 - 8).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS).
const MAX_GSO_SEGS: usize = 64;
/// Receive buffer of one (GRO) read: the largest UDP payload and slack.
const RX_BATCH_LEN: usize = 65_536 + 256;

/// What a tunnel port needs to know.
#[derive(Debug, Clone)]
pub struct VxlanConfig {
    /// The network's VNI (24 bits).
    pub vni: u32,
    /// Address to bind and send from; 0.0.0.0 for any (the route picks the source).
    pub local: Ipv4Addr,
    /// UDP port, local and remote (4789 by IANA; Linux defaults to 8472 without `dstport`).
    pub port: u16,
    /// The network's MTU: the largest inner L3 packet.
    pub mtu: u16,
    /// The clock's origin: remote entries are timed in ms since then (the switch's epoch, so
    /// they share the MAC table's clock).
    pub epoch: Instant,
}

/// Why a tunnel port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    /// Creating the UDP socket failed.
    #[error("create the VXLAN UDP socket")]
    Socket(#[source] io::Error),
    /// Setting a socket option failed.
    #[error("set {option} on the VXLAN socket")]
    SetOption {
        option: &'static str,
        #[source]
        source: io::Error,
    },
    /// Binding `local:port` failed (in use, or not a local address).
    #[error("bind the VXLAN socket to {addr}")]
    Bind {
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
    /// Another port of this process already tunnels this VNI on this socket.
    #[error("VNI {vni} already has a tunnel on {addr}")]
    VniTaken { vni: u32, addr: SocketAddrV4 },
    /// Mapping the port's receive buffer failed.
    #[error("map the VXLAN receive buffer")]
    Buffer(#[source] io::Error),
}

impl VxlanError {
    /// The underlying OS error.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            VxlanError::Socket(e) | VxlanError::Buffer(e) => Some(e),
            VxlanError::SetOption { source, .. } | VxlanError::Bind { source, .. } => Some(source),
            VxlanError::VniTaken { .. } => None,
        }
    }
}

/// One send socket and its source port.
#[derive(Debug)]
struct TxSocket {
    fd: OwnedFd,
    port: u16,
}

/// What one UDP GRO read (or a run another port handed over) left to hand out, datagram by
/// datagram.
#[derive(Debug)]
struct RxBatch {
    buf: PageBuf,
    /// Bytes of the read.
    len: usize,
    /// Where the next datagram starts.
    pos: usize,
    /// Datagram size (all but the last of a GRO read have it).
    seg: usize,
    /// Outer source address.
    from: Option<Ipv4Addr>,
    /// Datagrams (by index, `pos / seg`) already handed to another VNI's port.
    handed: u64,
    /// The last read was one datagram: the next is read straight into the caller's buffer
    /// ([`VxlanPort::recv_direct`]).
    lone: bool,
}

/// Where [`VxlanPort::recv_direct`] reads a datagram in the caller's buffer: its inner frame
/// then lies where a received frame belongs, behind the vnet header.
const DIRECT_AT: usize = HDR - VXLAN_HDR_LEN;

/// A run of one VNI's datagrams another port read and queued for this one: `len` bytes of
/// datagrams of `seg` bytes (the last may be shorter) from `from`.
#[derive(Debug, Clone, Copy)]
struct Run {
    len: usize,
    seg: usize,
    from: Option<Ipv4Addr>,
}

thread_local! {
    /// Per-thread datagram batch of the send path, which segments are cut straight into
    /// (several driver tasks may send through one port at once).
    static TX_BATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Identifies a receive socket: the network namespace (device and inode of its nsfs file) and
/// the bound address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SockKey {
    ns: (u64, u64),
    addr: SocketAddrV4,
}

fn current_netns() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// The receive socket of one (namespace, address, port) and its send pool, shared by the
/// tunnels of every VNI there, as the kernel's vxlan devices share one socket.
#[derive(Debug)]
struct Shared {
    udp: OwnedFd,
    tx: Vec<TxSocket>,
    /// Taken while several VNIs share the socket: a read and the hand-off of what it held,
    /// and a port's look at its queue before it reads (the module docs say why).
    read: Mutex<()>,
    /// The hand-off queue of each VNI on this socket (read lock-free; changed only when a
    /// tunnel opens or closes, under `REGISTRY`'s lock).
    vnis: ArcSwap<HashMap<u32, Arc<BufQueue<Run>>>>,
    /// How many VNIs the socket has (`vnis.len()`, read without loading the map).
    sharers: AtomicUsize,
    /// Cleared if the kernel refuses UDP_SEGMENT: datagrams then go one by one.
    udp_gso: AtomicBool,
    /// The receive socket's last drop total: one baseline per socket, so a drop on a socket
    /// several VNIs share is counted once, on the port that reads the counter first (which
    /// VNI a datagram the kernel dropped was for cannot be known).
    rx_drops: Mutex<KernelAccumulator>,
    /// Hellos sent to and heard from each peer (see [`crate::overlay::hello_frame`]): a
    /// property of the host behind an address, whatever the VNI, so one table per socket.
    /// Read on every checksummed send without a lock ([`PeerHellos`] says how).
    peers: PeerHellos,
    /// The clock of `peers`.
    epoch: Instant,
}

/// Live shared sockets of this process.
static REGISTRY: Mutex<Vec<(SockKey, Weak<Shared>)>> = Mutex::new(Vec::new());

/// A VXLAN tunnel port (see the module docs).
#[derive(Debug)]
pub struct VxlanPort {
    shared: Arc<Shared>,
    /// This VNI's hand-off queue (also in `shared.vnis`).
    me: Arc<BufQueue<Run>>,
    /// The current read (see the module docs' "Locks").
    rx: Mutex<RxBatch>,
    /// A duplicate of the shared receive socket: the port's own registration for readiness.
    fd: OwnedFd,
    cfg: VxlanConfig,
    /// The VXLAN header every datagram carries.
    vxlan_hdr: [u8; VXLAN_HDR_LEN],
    /// Largest inner Ethernet frame sent or accepted (non-GSO).
    max_frame: usize,
    table: Arc<RemoteTable>,
}

impl Drop for VxlanPort {
    fn drop(&mut self) {
        let _reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let vnis = self.shared.vnis.load();
        if vnis
            .get(&self.cfg.vni)
            .is_some_and(|h| Arc::ptr_eq(h, &self.me))
        {
            let mut next = HashMap::clone(&vnis);
            next.remove(&self.cfg.vni);
            self.shared.sharers.store(next.len(), Release);
            self.shared.vnis.store(Arc::new(next));
        }
    }
}

fn udp_socket() -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )?;
    set_int_opt(
        fd.as_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )?;
    set_buf(fd.as_fd(), sockopt::SndBufForce, sockopt::SndBuf)?;
    Ok(fd)
}

/// Binds up to `n` send sockets to `local` and free ports of 49152-65535, starting at a port
/// derived from the receive port (so two tunnels of one host start apart).
fn tx_pool(local: Ipv4Addr, seed: u16, n: usize) -> Vec<TxSocket> {
    let span = u32::from(u16::MAX - SOURCE_PORT_MIN) + 1;
    let mut pool = Vec::with_capacity(n);
    let mut offset = u32::from(seed).wrapping_mul(2_654_435_761) % span;
    for _ in 0..n * 16 {
        if pool.len() == n {
            break;
        }
        offset = (offset + 977) % span;
        let Ok(port) = u16::try_from(u32::from(SOURCE_PORT_MIN) + offset) else {
            continue;
        };
        let Ok(fd) = udp_socket() else { break };
        let addr = SockaddrIn::from(SocketAddrV4::new(local, port));
        if socket::bind(fd.as_raw_fd(), &addr).is_ok() {
            pool.push(TxSocket { fd, port });
        }
    }
    pool
}

impl Shared {
    fn open(addr: SocketAddrV4) -> Result<Shared, VxlanError> {
        let opt = |option: &'static str| move |source| VxlanError::SetOption { option, source };
        let udp = udp_socket().map_err(VxlanError::Socket)?;
        set_buf(udp.as_fd(), sockopt::RcvBufForce, sockopt::RcvBuf).map_err(opt("SO_RCVBUF"))?;
        // Best effort: without GRO every datagram is one read.
        let _ = socket::setsockopt(&udp, sockopt::UdpGroSegment, &true);
        socket::bind(udp.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|e| VxlanError::Bind {
            addr,
            source: e.into(),
        })?;
        Ok(Shared {
            udp,
            tx: tx_pool(*addr.ip(), addr.port(), TX_SOCKETS),
            read: Mutex::new(()),
            vnis: ArcSwap::default(),
            sharers: AtomicUsize::new(0),
            udp_gso: AtomicBool::new(true),
            rx_drops: Mutex::new(KernelAccumulator::default()),
            peers: PeerHellos::default(),
            epoch: Instant::now(),
        })
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a hello heard from `from`.
    fn heard(&self, from: Option<Ipv4Addr>) {
        if let Some(from) = from {
            self.peers.heard(from, self.now_ms());
        }
    }

    /// Before checksummed frames go to `vteps`: the peers a hello is due to (marked sent), and
    /// whether every one of them takes partial inner checksums. Atomics only, but for a
    /// peer's first frame.
    fn before_send(&self, vteps: &[Ipv4Addr], due: &mut Vec<Ipv4Addr>) -> bool {
        self.peers.before_send(vteps, self.now_ms(), due)
    }
}

impl VxlanPort {
    /// Opens the tunnel in the calling thread's network namespace: binds `local:port`, or joins
    /// the socket another VNI's port of this process already bound there. `table` holds the
    /// peers (flood list) and the remote MACs, shared with whoever manages static entries.
    pub fn open(cfg: VxlanConfig, table: Arc<RemoteTable>) -> Result<VxlanPort, VxlanError> {
        let addr = SocketAddrV4::new(cfg.local, cfg.port);
        let key = SockKey {
            ns: current_netns().map_err(VxlanError::Socket)?,
            addr,
        };
        let buf = PageBuf::new(RX_BATCH_LEN).map_err(VxlanError::Buffer)?;
        let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        reg.retain(|(_, w)| w.strong_count() > 0);
        let shared = match reg
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            Some(s) => s,
            None => {
                let s = Arc::new(Shared::open(addr)?);
                reg.push((key, Arc::downgrade(&s)));
                s
            }
        };
        let fd = shared.udp.try_clone().map_err(VxlanError::Socket)?;
        let me = Arc::new(BufQueue::new(RX_BATCH_LEN));
        let vnis = shared.vnis.load();
        if vnis.contains_key(&cfg.vni) {
            return Err(VxlanError::VniTaken { vni: cfg.vni, addr });
        }
        let mut next = HashMap::clone(&vnis);
        next.insert(cfg.vni, me.clone());
        shared.sharers.store(next.len(), Release);
        shared.vnis.store(Arc::new(next));
        drop(reg);
        Ok(VxlanPort {
            shared,
            me,
            rx: Mutex::new(RxBatch {
                buf,
                len: 0,
                pos: 0,
                seg: 1,
                from: None,
                handed: 0,
                lone: false,
            }),
            fd,
            vxlan_hdr: VxlanRepr { vni: cfg.vni }.to_bytes(),
            max_frame: bridge::max_tagged_frame(cfg.mtu),
            cfg,
            table,
        })
    }

    /// The configuration the port was opened with.
    pub fn config(&self) -> &VxlanConfig {
        &self.cfg
    }

    /// The address the receive socket is bound to (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        let a: SockaddrIn = socket::getsockname(self.shared.udp.as_raw_fd())?;
        Ok(SocketAddrV4::from(a))
    }

    /// Whether datagrams leave from per-flow source ports (the send pool could be bound) or
    /// all from the receive port.
    pub fn flow_ports(&self) -> bool {
        !self.shared.tx.is_empty()
    }

    /// The source ports of the send pool.
    pub fn source_ports(&self) -> Vec<u16> {
        self.shared.tx.iter().map(|t| t.port).collect()
    }

    /// The remote table the port learns into.
    pub fn table(&self) -> &Arc<RemoteTable> {
        &self.table
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.cfg.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The socket a flow leaves through.
    fn tx_fd(&self, inner: &[u8]) -> RawFd {
        let tx = &self.shared.tx;
        match tx.len() {
            0 => self.shared.udp.as_raw_fd(),
            n => tx[usize::from(flow_source_port(inner)) % n].fd.as_raw_fd(),
        }
    }

    /// Sends `batch` (datagrams `[VXLAN header][frame]` back to back, each `seg` bytes but the
    /// last) from `fd` to every VTEP of `dests`: one `sendmsg` with UDP_SEGMENT per VTEP, or
    /// one per datagram without it. Returns the last error.
    fn send_datagrams(
        &self,
        fd: RawFd,
        dests: &Destinations,
        batch: &[u8],
        seg: usize,
    ) -> io::Result<()> {
        let vteps: &[Ipv4Addr] = match dests {
            Destinations::One(v) => std::slice::from_ref(v),
            Destinations::Flood(peers) => peers,
        };
        let mut result = Ok(());
        for vtep in vteps {
            let to = SockaddrIn::from(SocketAddrV4::new(*vtep, self.cfg.port));
            if let Err(e) = self.send_to(fd, &to, batch, seg) {
                result = Err(e);
            }
        }
        result
    }

    fn send_to(&self, fd: RawFd, to: &SockaddrIn, batch: &[u8], seg: usize) -> io::Result<()> {
        if batch.len() > seg && self.shared.udp_gso.load(Relaxed) {
            let gso =
                u16::try_from(seg).map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
            let iov = [IoSlice::new(batch)];
            match send_udp_gso(fd, &iov, gso, Some(to), MsgFlags::MSG_DONTWAIT) {
                Ok(n) => return super::check_sent(n, batch.len()),
                Err(nix::errno::Errno::EIO | nix::errno::Errno::ENOPROTOOPT) => {
                    // No UDP GSO here (or not for this route): one datagram at a time from now.
                    self.shared.udp_gso.store(false, Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        for d in batch.chunks(seg.max(1)) {
            let iov = [IoSlice::new(d)];
            let n = socket::sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(to))?;
            super::check_sent(n, d.len())?;
        }
        Ok(())
    }

    /// Sends `vtep` a hello on this port's VNI.
    fn send_hello(&self, fd: RawFd, vtep: Ipv4Addr) -> io::Result<()> {
        let hello = hello_frame();
        let iov = [IoSlice::new(&self.vxlan_hdr), IoSlice::new(&hello)];
        let to = SockaddrIn::from(SocketAddrV4::new(vtep, self.cfg.port));
        socket::sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(&to))?;
        Ok(())
    }

    /// Reads the next (GRO) batch of datagrams into `b`.
    fn refill(&self, b: &mut RxBatch) -> io::Result<()> {
        let (n, from, seg) = self.read_into(&mut b.buf)?;
        b.len = n;
        b.pos = 0;
        b.seg = seg;
        b.from = from;
        b.handed = 0;
        b.lone = seg >= n || inner_ip_spans(&b.buf[..n]);
        Ok(())
    }

    /// One (GRO) read of the socket into `dst`: its length, the outer source address and the
    /// datagram size (the read's length when it is one datagram).
    fn read_into(&self, dst: &mut [u8]) -> io::Result<(usize, Option<Ipv4Addr>, usize)> {
        let mut cmsg = CmsgBuf([0; 64]);
        let (n, from, gro) = {
            let mut iov = [IoSliceMut::new(dst)];
            let msg = socket::recvmsg::<SockaddrIn>(
                self.shared.udp.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg.0),
                MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
            )?;
            let mut gro = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::UdpGroSegments(s) = c {
                        gro = usize::try_from(s).ok().filter(|s| *s > 0);
                    }
                }
            }
            (msg.bytes, msg.address, gro)
        };
        if n > dst.len() {
            return Err(FrameTruncated {
                len: n,
                cap: dst.len(),
            }
            .into_io());
        }
        let seg = gro.unwrap_or(n).min(n).max(1);
        Ok((n, from.map(|a| *SocketAddrV4::from(a).ip()), seg))
    }

    /// Reads the next datagram straight into `buf` at [`DIRECT_AT`], so that a datagram of
    /// this VNI read alone is handed out in place: a kernel VTEP's TSO super-packet (64 KiB
    /// a read, issue 16) is then copied once less, out of the port's read buffer. Taken while
    /// the reads come one datagram each (`RxBatch::lone`). Returns `None` when the read is
    /// something else (a UDP GRO batch, another VNI's datagram, a bad header): it is moved
    /// into `b` (the copy the read into `b` would have saved) for the batch path to hand out.
    fn recv_direct(&self, b: &mut RxBatch, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let (n, from, seg) = self.read_into(&mut buf[DIRECT_AT..])?;
        let dgram = &buf[DIRECT_AT..DIRECT_AT + n];
        // One datagram: the read's size, or a kernel VTEP's UDP GSO super-packet (see `recv`).
        let lone = seg >= n || inner_ip_spans(dgram);
        if !lone || vni_of(dgram) != Ok(self.cfg.vni) {
            let Some(dst) = b.buf.get_mut(..n) else {
                return Err(FrameTruncated { len: n, cap: 0 }.into_io());
            };
            dst.copy_from_slice(dgram);
            (b.len, b.pos, b.seg, b.from, b.handed, b.lone) = (n, 0, seg, from, 0, lone);
            return Ok(None);
        }
        let len = n - VXLAN_HDR_LEN;
        // The VXLAN header, checked, is overwritten by the vnet header from here on.
        let (hdr, rest) = buf.split_at_mut(HDR);
        let frame = &mut rest[..len];
        if is_hello(frame) {
            self.shared.heard(from);
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.over_mtu(len) {
            let udp_gso = (seg < n).then_some(seg);
            match rx_super_packet(hdr, frame, usize::from(self.cfg.mtu), udp_gso) {
                SuperPacket::No => {}
                SuperPacket::Yes => return Ok(Some(HDR + len)),
                SuperPacket::Bad => {
                    return Err(PortDrop(DropReason::VxlanBadInnerChecksum).into_io())
                }
            }
        }
        if rx_vnet_hdr(hdr, frame) == InnerCsum::Bad {
            return Err(PortDrop(DropReason::VxlanBadInnerChecksum).into_io());
        }
        self.learn(frame, from);
        Ok(Some(HDR + len))
    }

    /// Makes `b` the next run to hand out: one another port queued for this VNI, else a read
    /// of the socket; while several VNIs share the socket, what the read holds for them is
    /// handed to them at once (under the `read` lock: the module docs' "Locks"). While one
    /// VNI has the socket and reads come one datagram each, the read goes straight into
    /// `direct` ([`Self::recv_direct`]): `Some(len)` when it left a frame there.
    fn next_batch(&self, b: &mut RxBatch, direct: &mut [u8]) -> io::Result<Option<usize>> {
        let shared = self.shared.sharers.load(Acquire) > 1;
        let _order = shared.then(|| {
            self.shared
                .read
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        });
        if let Some((buf, run)) = self.me.pop() {
            self.me.recycle(std::mem::replace(&mut b.buf, buf));
            b.len = run.len;
            b.pos = 0;
            b.seg = run.seg;
            b.from = run.from;
            b.handed = 0;
            return Ok(None);
        }
        // Only into a buffer that takes any read whole, as the port's own does.
        if !shared && b.lone && direct.len() >= DIRECT_AT + RX_BATCH_LEN {
            return self.recv_direct(b, direct);
        }
        self.refill(b)?;
        if shared {
            self.hand_out(b);
        }
        Ok(None)
    }

    /// Hands each run of another registered VNI's datagrams in `b` to that VNI's port and
    /// marks them handed (nothing for a read of more datagrams than the mark holds, which
    /// UDP GRO never makes: its datagrams go one by one as this port meets them).
    fn hand_out(&self, b: &mut RxBatch) {
        let vnis = self.shared.vnis.load();
        // One datagram spanning the read (a kernel VTEP's UDP GSO send, see `recv`).
        let seg = if inner_ip_spans(&b.buf[..b.len]) {
            b.len
        } else {
            b.seg
        };
        if b.len.div_ceil(seg) > 64 {
            return;
        }
        let mut at = 0;
        while at < b.len {
            let vni = vni_of(&b.buf[at..(at + seg).min(b.len)]);
            let end = run_end(&b.buf[..b.len], at, seg, vni);
            if let Ok(v) = vni {
                if let Some(q) = vnis.get(&v).filter(|_| v != self.cfg.vni) {
                    let whole = at == 0 && end == b.len;
                    if hand(b, q, at, end, seg).is_ok() {
                        if whole {
                            b.len = 0;
                            return;
                        }
                        b.handed |= handed_bits(at / seg, end.div_ceil(seg));
                    }
                }
            }
            at = end;
        }
    }

    /// Checks one datagram; returns its inner frame.
    fn check<'a>(&self, dgram: &'a [u8]) -> Result<&'a [u8], DropReason> {
        decap(dgram, self.cfg.vni)
    }

    /// Whether an inner frame of `len` bytes holds more than the MTU: maybe a kernel VTEP's
    /// super-packet. Not `max_frame`, whose room for a VLAN tag would let through a
    /// super-packet of two segments up to 4 bytes over the MTU as a plain frame, which the
    /// switch then drops as `over_mtu` (tests/ipv6_vxlan.rs under load: a kernel sender's
    /// full segment and a 2-byte tail in one TSO packet, dropped at each retransmission).
    fn over_mtu(&self, len: usize) -> bool {
        len > bridge::max_untagged_frame(self.cfg.mtu)
    }

    fn learn(&self, frame: &[u8], from: Option<Ipv4Addr>) {
        if frame.len() > self.max_frame {
            return;
        }
        if let (Some(src), Some(from)) = (frame.get(6..).and_then(MacAddr::from_bytes), from) {
            let now = self.now_ms();
            self.table.learn(src, from, now);
            self.table.maybe_expire(now);
        }
    }
}

/// Whether `read` is one VXLAN datagram whose inner untagged IPv4 or IPv6 packet ends exactly
/// where the read does (its length fields say so): a super-packet, not a batch of datagrams.
/// An IPv6 payload length of 0 (a jumbogram) never spans more than the fixed header.
fn inner_ip_spans(read: &[u8]) -> bool {
    let Some(Ok(eth)) = read.get(VXLAN_HDR_LEN..).map(EthernetFrame::new_checked) else {
        return false;
    };
    let ip = eth.payload();
    match eth.outer_ethertype() {
        EtherType::Ipv4 => Ipv4Packet::new_checked(ip).is_ok_and(|p| p.packet_len() == ip.len()),
        EtherType::Ipv6 => Ipv6Packet::new_checked(ip).is_ok_and(|p| p.packet_len() == ip.len()),
        _ => false,
    }
}

/// Where the run of datagrams of `vni` (as [`vni_of`] judged the one at `at`) that starts at
/// `at` in `read` ends.
fn run_end(read: &[u8], at: usize, seg: usize, vni: Result<u32, DropReason>) -> usize {
    let mut end = (at + seg).min(read.len());
    while end < read.len() {
        let next = (end + seg).min(read.len());
        if vni_of(&read[end..next]) != vni {
            break;
        }
        end = next;
    }
    end
}

/// The mark of datagrams `from..to` (indices below 64) in [`RxBatch::handed`].
fn handed_bits(from: usize, to: usize) -> u64 {
    (from..to.min(64)).fold(0, |m, i| m | 1 << i)
}

/// Queues datagrams `b.buf[start..end]` (one VNI's, `seg` bytes each) for `to`'s port: the
/// read's buffer itself when they are the whole read (`b` then takes a spare of `to`'s pool),
/// else a copy into a spare. `Err` when `to` has no spare or its queue is full (it is not
/// reading): the datagrams are lost.
fn hand(
    b: &mut RxBatch,
    to: &BufQueue<Run>,
    start: usize,
    end: usize,
    seg: usize,
) -> Result<(), ()> {
    let mut spare = to.spare().ok_or(())?;
    let run = Run {
        len: end - start,
        seg,
        from: b.from,
    };
    if start == 0 && end == b.len && b.buf.len() == to.buf_len() {
        let read = std::mem::replace(&mut b.buf, spare);
        return to.queue(read, run).map_err(|(read, _)| {
            to.recycle(std::mem::replace(&mut b.buf, read));
        });
    }
    let Some(dst) = spare.get_mut(..run.len) else {
        to.recycle(spare);
        return Err(());
    };
    dst.copy_from_slice(&b.buf[start..end]);
    to.queue(spare, run).map_err(|(spare, _)| to.recycle(spare))
}

/// Checks a datagram's VXLAN header (long enough, I flag, `vni`); returns its inner frame.
pub fn decap(dgram: &[u8], vni: u32) -> Result<&[u8], DropReason> {
    if vni_of(dgram)? != vni {
        return Err(DropReason::VxlanWrongVni);
    }
    Ok(&dgram[VXLAN_HDR_LEN..])
}

/// The VNI of a datagram with a valid header.
fn vni_of(dgram: &[u8]) -> Result<u32, DropReason> {
    let vx = VxlanPacket::new_checked(dgram).map_err(|_| DropReason::VxlanTruncated)?;
    let repr = VxlanRepr::parse(&vx).map_err(|_| DropReason::VxlanNoIFlag)?;
    Ok(repr.vni)
}

impl Port for VxlanPort {
    /// Hands out the next datagram's inner frame (or a super-frame merged from several) behind
    /// a vnet header from the current read; when it is used up, from a run another port of
    /// the shared socket queued for this VNI, else from a new read of the socket. Datagrams
    /// of another VNI go to that VNI's queue; a read that held none of this VNI's returns
    /// `Interrupted` (nothing for the switch, call again).
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut b = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fresh = false;
        loop {
            if b.pos >= b.len {
                if fresh {
                    // A whole read for other VNIs: let the driver count a burst.
                    return Err(io::ErrorKind::Interrupted.into());
                }
                if let Some(n) = self.next_batch(&mut b, buf)? {
                    return Ok(n);
                }
                fresh = true;
                continue;
            }
            let (len, seg, pos) = (b.len, b.seg, b.pos);
            let first_end = (pos + seg).min(len);
            if pos / seg < 64 && b.handed & (1 << (pos / seg)) != 0 {
                b.pos = first_end;
                continue;
            }
            match vni_of(&b.buf[pos..first_end]) {
                Ok(v) if v == self.cfg.vni => break,
                Err(reason) => {
                    b.pos = first_end;
                    return Err(PortDrop(reason).into_io());
                }
                Ok(v) => {
                    // Not handed when read (one VNI had the socket then, or the read was
                    // too long to mark): hand it now.
                    let end = if pos == 0 && inner_ip_spans(&b.buf[..len]) {
                        len
                    } else {
                        first_end
                    };
                    b.pos = end;
                    let Some(q) = self.shared.vnis.load().get(&v).cloned() else {
                        return Err(PortDrop(DropReason::VxlanWrongVni).into_io());
                    };
                    hand(&mut b, &q, pos, end, seg)
                        .map_err(|()| PortDrop(DropReason::VxlanHandoffFull).into_io())?;
                }
            }
        }
        let b = &mut *b;
        let (len, seg, pos) = (b.len, b.seg, b.pos);
        let data = &b.buf[..len];
        let mut first_end = (pos + seg).min(len);
        // A kernel VTEP's inner UDP GSO send is one datagram that UDP_GRO hands over whole,
        // with the inner datagrams' size as the segment size: the read is one datagram.
        let udp_super = pos == 0 && first_end < len && inner_ip_spans(data);
        if udp_super {
            first_end = len;
        }
        if first_end == len && self.over_mtu((len - pos).saturating_sub(VXLAN_HDR_LEN)) {
            // One datagram over the MTU: maybe a kernel VTEP's tunnelled TSO or UDP GSO
            // super-packet (see `overlay::rx_super_packet`), else dropped as over_mtu by the
            // switch.
            let whole = &data[pos + VXLAN_HDR_LEN..len];
            if let Some(out) = buf.get_mut(..HDR + whole.len()) {
                out[HDR..].copy_from_slice(whole);
                let (hdr, rest) = out.split_at_mut(HDR);
                let udp_gso = udp_super.then_some(seg);
                match rx_super_packet(hdr, rest, usize::from(self.cfg.mtu), udp_gso) {
                    SuperPacket::No => {}
                    SuperPacket::Yes => {
                        b.pos = len;
                        return Ok(HDR + whole.len());
                    }
                    SuperPacket::Bad => {
                        b.pos = len;
                        return Err(PortDrop(DropReason::VxlanBadInnerChecksum).into_io());
                    }
                }
            }
        }
        let frame = &data[pos + VXLAN_HDR_LEN..first_end];
        // Consecutive valid datagrams of this read, for merging.
        let mut frames: [&[u8]; GRO_MAX_SEGS] = [&[]; GRO_MAX_SEGS];
        frames[0] = frame;
        let mut count = 1;
        let mut at = first_end;
        while count < GRO_MAX_SEGS && at < len {
            let end = (at + seg).min(len);
            match self.check(&data[at..end]) {
                Ok(f) => frames[count] = f,
                Err(_) => break,
            }
            count += 1;
            at = end;
        }
        if count > 1 {
            if let Some((merged, n)) = gro_tcp4(&frames[..count], buf) {
                b.pos = (pos + merged * seg).min(len);
                self.learn(frame, b.from);
                return Ok(n);
            }
        }
        b.pos = first_end;
        if is_hello(frame) {
            // Nothing for the switch: the peer is a netyard VTEP.
            self.shared.heard(b.from);
            return Err(io::ErrorKind::Interrupted.into());
        }
        let out = buf.get_mut(HDR..HDR + frame.len()).ok_or_else(|| {
            FrameTruncated {
                len: HDR + frame.len(),
                cap: 0,
            }
            .into_io()
        })?;
        out.copy_from_slice(frame);
        let (hdr, rest) = buf.split_at_mut(HDR);
        if rx_vnet_hdr(hdr, &mut rest[..frame.len()]) == InnerCsum::Bad {
            return Err(PortDrop(DropReason::VxlanBadInnerChecksum).into_io());
        }
        self.learn(frame, b.from);
        Ok(HDR + frame.len())
    }

    /// Encapsulates the frame (segmenting a GSO super-frame, completing a partial checksum)
    /// and sends it to the VTEP of its destination MAC, or to every peer for broadcast,
    /// multicast and unknown unicast. A flood returns the last error of its copies.
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let view = VnetHdr::new_checked(frame).map_err(|_| PortDrop(DropReason::Runt).into_io())?;
        let hdr = VnetHdrRepr::parse(&view).map_err(|_| PortDrop(DropReason::BadGso).into_io())?;
        let inner = &frame[HDR..];
        let Some(dst) = MacAddr::from_bytes(inner) else {
            return Err(PortDrop(DropReason::Runt).into_io());
        };
        let dests = self.table.destinations(&dst, self.now_ms());
        let fd = self.tx_fd(inner);
        let plain = hdr.gso_type == crate::wire::vnet::GsoType::None;
        if plain && !hdr.needs_csum {
            if inner.len() > self.max_frame {
                return Err(PortDrop(DropReason::OverMtu).into_io());
            }
            // The common small frame: two iovecs, no copy.
            let iov = [IoSlice::new(&self.vxlan_hdr), IoSlice::new(inner)];
            let want = VXLAN_HDR_LEN + inner.len();
            let list: &[Ipv4Addr] = match &dests {
                Destinations::One(v) => std::slice::from_ref(v),
                Destinations::Flood(p) => p,
            };
            let mut result = Ok(());
            for vtep in list {
                let to = SockaddrIn::from(SocketAddrV4::new(*vtep, self.cfg.port));
                match socket::sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(&to)) {
                    Ok(n) => {
                        if let Err(e) = super::check_sent(n, want) {
                            result = Err(e);
                        }
                    }
                    Err(e) => result = Err(e.into()),
                }
            }
            return result;
        }
        let vteps: &[Ipv4Addr] = match &dests {
            Destinations::One(v) => std::slice::from_ref(v),
            Destinations::Flood(p) => p,
        };
        let mut due = Vec::new();
        let partial = self.shared.before_send(vteps, &mut due);
        for vtep in due {
            // Best effort: a lost hello is sent again HELLO_EVERY_MS later.
            let _ = self.send_hello(fd, vtep);
        }
        TX_BATCH.with(|batch| {
            let mut batch = batch.borrow_mut();
            let batch = &mut *batch;
            batch.clear();
            let mut seg = 0usize;
            let mut count = 0usize;
            let mut result: io::Result<()> = Ok(());
            let max_frame = self.max_frame;
            // Each datagram is segmented straight into the batch, at `start`.
            let mut emit = |out: &mut Vec<u8>, start: usize| -> io::Result<()> {
                let len = out.len() - start;
                if len > VXLAN_HDR_LEN + max_frame {
                    out.truncate(start);
                    return Err(PortDrop(DropReason::OverMtu).into_io());
                }
                // A datagram of another size than the batch's, or a full batch: send what was
                // there first, then move this one to the front (one datagram's copy, once a
                // batch).
                if count > 0
                    && (len > seg
                        || start % seg != 0
                        || out.len() > MAX_UDP_PAYLOAD
                        || count == MAX_GSO_SEGS)
                {
                    if let Err(e) = self.send_datagrams(fd, &dests, &out[..start], seg) {
                        result = Err(e);
                    }
                    out.drain(..start);
                    count = 0;
                }
                if count == 0 {
                    seg = len;
                }
                count += 1;
                Ok(())
            };
            match gso::segment_into(
                &hdr,
                inner,
                None,
                &self.vxlan_hdr,
                partial,
                batch,
                &mut emit,
            ) {
                Ok(_) => {}
                Err(GsoError::Emit(e)) => return Err(e),
                Err(_) => return Err(PortDrop(DropReason::BadGso).into_io()),
            }
            if count > 0 {
                if let Err(e) = self.send_datagrams(fd, &dests, batch, seg) {
                    result = Err(e);
                }
            }
            result
        })
    }

    fn caps(&self) -> PortCaps {
        PortCaps {
            vnet_hdr: true,
            gso_tcp: true,
            gso_udp: true,
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Ready when another VNI's port queued datagrams for this one (see the module docs).
    fn poll_queued(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.me.poll_ready(cx, || false)
    }

    fn kind(&self) -> &'static str {
        "vxlan"
    }

    fn is_tunnel(&self) -> bool {
        true
    }

    /// The shared receive socket's drop count (a full receive buffer), as increments.
    fn kernel_drops(&self, out: &mut Vec<KernelReading>) -> io::Result<()> {
        let mut acc = self
            .shared
            .rx_drops
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let total = super::socket_drops(self.shared.udp.as_fd())?;
        let added = acc.advance(KernelReading {
            reason: DropReason::UdpRcvbufFull,
            count: KernelCount::Total {
                value: u64::from(total),
                bits: 32,
            },
        });
        out.push(KernelReading {
            reason: DropReason::UdpRcvbufFull,
            count: KernelCount::Since(added),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::sys::testutil::{eth_frame, in_new_netns, wait_readable};

    const VNI: u32 = 4242;
    /// The two "hosts" of the loopback tests: two addresses of 127/8 sharing port 4789.
    const A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

    /// Brings loopback up (in a fresh namespace) and opens a tunnel port for `vni` on `local`.
    fn open_on_lo(
        vni: u32,
        local: Ipv4Addr,
        table: Arc<RemoteTable>,
    ) -> Result<VxlanPort, VxlanError> {
        crate::sys::set_link_up("lo").expect("lo up");
        let cfg = VxlanConfig {
            vni,
            local,
            port: 4789,
            mtu: 1450,
            epoch: Instant::now(),
        };
        VxlanPort::open(cfg, table)
    }

    /// One VXLAN datagram around `inner` (an Ethernet frame).
    fn datagram(inner: &[u8]) -> Vec<u8> {
        let mut d = VxlanRepr { vni: VNI }.to_bytes().to_vec();
        d.extend_from_slice(inner);
        d
    }

    #[test]
    fn inner_ip_spans_reads_the_ip_views_lengths() {
        // IPv4: total length 20 + 100.
        let mut v4 = vec![0x45, 0, 0, 120, 0, 0, 0x40, 0, 64, 17, 0, 0];
        v4.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        v4.resize(120, 0xab);
        let d4 = datagram(&eth_frame(MAC_B, MAC_A, 0x0800, &v4));
        assert!(inner_ip_spans(&d4), "IPv4 ending where the read does");
        assert!(!inner_ip_spans(&d4[..d4.len() - 1]), "IPv4 cut short");
        let mut padded = d4.clone();
        padded.push(0);
        assert!(!inner_ip_spans(&padded), "IPv4 followed by more bytes");
        let mut v6_version = d4.clone();
        v6_version[VXLAN_HDR_LEN + 14] = 0x65;
        assert!(
            !inner_ip_spans(&v6_version),
            "IPv4 EtherType, not an IPv4 header"
        );
        // IPv6: payload length 100 after the fixed 40 bytes.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 100, 17, 64];
        v6.extend_from_slice(&[0xfd; 32]);
        v6.resize(140, 0xcd);
        let d6 = datagram(&eth_frame(MAC_B, MAC_A, 0x86dd, &v6));
        assert!(inner_ip_spans(&d6), "IPv6 ending where the read does");
        assert!(!inner_ip_spans(&d6[..d6.len() - 1]), "IPv6 cut short");
        let mut longer = d6.clone();
        longer.extend_from_slice(&d6);
        assert!(!inner_ip_spans(&longer), "two IPv6 datagrams in one read");
        // Neither IP nor untagged: never a super-packet.
        assert!(!inner_ip_spans(&datagram(&eth_frame(
            MAC_B, MAC_A, 0x0806, &v4
        ))));
        let mut tagged = eth_frame(MAC_B, MAC_A, 0x8100, &[0, 5, 0x08, 0x00]);
        tagged.extend_from_slice(&v4);
        assert!(!inner_ip_spans(&datagram(&tagged)), "a tagged frame");
        assert!(
            !inner_ip_spans(&d4[..VXLAN_HDR_LEN + 13]),
            "no whole Ethernet header"
        );
    }
    const MAC_A: [u8; 6] = [0x02, 0x4e, 0x59, 0, 2, 1];
    const MAC_B: [u8; 6] = [0x02, 0x4e, 0x59, 0, 2, 2];
    const WAIT: Duration = Duration::from_secs(2);

    fn with_zero_hdr(frame: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HDR];
        v.extend_from_slice(frame);
        v
    }

    fn recv_one(port: &VxlanPort) -> io::Result<Vec<u8>> {
        recv_in(port, &mut vec![0xeeu8; 4096])
    }

    /// [`recv_one`] into `buf`.
    fn recv_in(port: &VxlanPort, buf: &mut [u8]) -> io::Result<Vec<u8>> {
        loop {
            match port.recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(wait_readable(port.raw_fd(), WAIT), "nothing arrived");
                }
                // A hello (or another VNI's datagram handed off): nothing for the switch.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
                Ok(n) => return Ok(buf[..n].to_vec()),
            }
        }
    }

    /// Two tunnel ports on loopback (two local addresses of 127/8, one port) exchange frames;
    /// the receive checks drop what they must with the right reason; learning and the flood
    /// list decide where frames go.
    #[test]
    fn tunnel_round_trip_on_loopback() {
        in_new_netns(|| {
            let (a_ip, b_ip) = (A_IP, B_IP);
            let ta = Arc::new(RemoteTable::new(300_000, 64, vec![b_ip]));
            let tb = Arc::new(RemoteTable::new(300_000, 64, vec![a_ip]));
            let a = open_on_lo(VNI, a_ip, ta.clone()).expect("open a");
            let b = open_on_lo(VNI, b_ip, tb.clone()).expect("open b");
            assert!(a.flow_ports(), "the send pool is bound");
            let ports = a.source_ports();
            assert_eq!(ports.len(), TX_SOCKETS);
            assert!(ports.iter().all(|p| *p >= SOURCE_PORT_MIN), "{ports:?}");
            assert_eq!(a.kind(), "vxlan");
            assert!(a.caps().gso_tcp && a.caps().vnet_hdr);
            assert_eq!(a.local_addr().expect("addr"), SocketAddrV4::new(a_ip, 4789));

            // A broadcast from a floods to b (its one peer), which learns MAC_A behind a_ip.
            let f1 = eth_frame([0xff; 6], MAC_A, 0x88b5, b"hello over vxlan");
            a.send(&with_zero_hdr(&f1)).expect("send");
            assert_eq!(recv_one(&b).expect("frame"), with_zero_hdr(&f1));
            assert_eq!(tb.lookup(&MacAddr(MAC_A), 0), Some(a_ip));

            // Unicast back to the learned MAC.
            let f2 = eth_frame(MAC_A, MAC_B, 0x88b5, &[7; 1000]);
            b.send(&with_zero_hdr(&f2)).expect("send");
            assert_eq!(recv_one(&a).expect("frame"), with_zero_hdr(&f2));
            assert_eq!(ta.lookup(&MacAddr(MAC_B), 0), Some(b_ip));

            // Over the MTU: refused before sending.
            let big = eth_frame(MAC_A, MAC_B, 0x0800, &[0; 1470]);
            let err = b.send(&with_zero_hdr(&big)).expect_err("over MTU");
            assert_eq!(PortDrop::reason(&err), Some(DropReason::OverMtu));

            // Bad datagrams, from a plain UDP socket.
            let probe = UdpSocket::bind("127.0.0.3:0").expect("bind probe");
            let to = SocketAddrV4::new(a_ip, 4789);
            let mut wrong_vni = VxlanRepr { vni: VNI + 1 }.to_bytes().to_vec();
            wrong_vni.extend_from_slice(&f1);
            let mut no_i = VxlanRepr { vni: VNI }.to_bytes().to_vec();
            no_i[0] = 0;
            no_i.extend_from_slice(&f1);
            let mut reserved = VxlanRepr { vni: VNI }.to_bytes().to_vec();
            reserved[0] |= 0xf7;
            reserved[1..4].fill(0xff);
            reserved[7] = 0xff;
            reserved.extend_from_slice(&f1);
            for (bytes, want) in [
                (&[0x08, 0, 0][..], Some(DropReason::VxlanTruncated)),
                (&wrong_vni[..], Some(DropReason::VxlanWrongVni)),
                (&no_i[..], Some(DropReason::VxlanNoIFlag)),
                (&reserved[..], None),
            ] {
                probe.send_to(bytes, to).expect("probe send");
                match (recv_one(&a), want) {
                    (Err(e), Some(reason)) => assert_eq!(PortDrop::reason(&e), Some(reason)),
                    (Ok(f), None) => assert_eq!(f, with_zero_hdr(&f1), "reserved bits ignored"),
                    (got, want) => panic!("{bytes:02x?}: got {got:?}, want {want:?}"),
                }
            }
            // The probe's address was learned for MAC_A only by the accepted datagram.
            assert_eq!(
                ta.lookup(&MacAddr(MAC_A), 0),
                Some(Ipv4Addr::new(127, 0, 0, 3))
            );

            // A static entry wins over learning and sends unicast.
            ta.add_static(MacAddr(MAC_A), b_ip);
            probe.send_to(&reserved, to).expect("probe send");
            recv_one(&a).expect("accepted");
            assert_eq!(ta.lookup(&MacAddr(MAC_A), 0), Some(b_ip));
        });
    }

    /// GSO super-frames leave as one UDP GSO send of segments and, for TCP, come out of the
    /// other end merged again; UDP (USO) segments come out one by one.
    #[test]
    fn gso_frames_cross_segmented_and_tcp_is_merged_again() {
        use crate::sys::testutil::{ipv4_gso, GSO_TCPV4, GSO_UDP_L4};
        use crate::wire::checksum;
        in_new_netns(|| {
            let (a_ip, b_ip) = (A_IP, B_IP);
            let a = open_on_lo(VNI, a_ip, Arc::new(RemoteTable::new(1000, 8, vec![b_ip])))
                .expect("open a");
            let b = open_on_lo(VNI, b_ip, Arc::new(RemoteTable::new(1000, 8, vec![a_ip])))
                .expect("open b");

            let (mut tcp, _) = ipv4_gso(MAC_B, MAC_A, GSO_TCPV4, 3000, 1000);
            // The partial checksum a sender puts in: the pseudo-header sum.
            let l4_len = u32::try_from(tcp.len() - HDR - 34).unwrap();
            let pseudo = checksum::fold(checksum::pseudo_header_v4(
                &[192, 0, 2, 1],
                &[192, 0, 2, 2],
                6,
                l4_len,
            ));
            tcp[HDR + 50..HDR + 52].copy_from_slice(&pseudo.to_be_bytes());
            a.send(&tcp).expect("send TCP GSO");
            let got = recv_one(&b).expect("merged frame");
            assert_eq!(got.len(), tcp.len(), "one super-frame again");
            assert_eq!((got[0], got[1]), (1, GSO_TCPV4), "NEEDS_CSUM, TCPv4");
            assert_eq!(u16::from_ne_bytes([got[4], got[5]]), 1000, "gso_size");
            assert_eq!(got[HDR + 54..], tcp[HDR + 54..], "payload");
            assert_eq!(
                got[HDR..HDR + 34],
                {
                    let mut ip = tcp[HDR..HDR + 34].to_vec();
                    let sum = checksum::checksum(&ip[14..34]);
                    ip[24..26].copy_from_slice(&sum.to_be_bytes());
                    ip
                }[..],
                "Ethernet and IP headers, IP checksum filled in"
            );

            let (udp, _) = ipv4_gso(MAC_B, MAC_A, GSO_UDP_L4, 2500, 1000);
            a.send(&udp).expect("send UDP GSO");
            let sizes: Vec<usize> = (0..3)
                .map(|_| recv_one(&b).expect("UDP segment").len())
                .collect();
            assert_eq!(sizes, [HDR + 42 + 1000, HDR + 42 + 1000, HDR + 42 + 500]);
        });
    }

    /// Datagrams that come one a read (a kernel VTEP's TSO super-packets, single frames) are
    /// read straight into a buffer as large as the port's own once a read was one datagram,
    /// and come out exactly as through the port's read buffer; a UDP GRO batch meeting such a
    /// read goes back to the batch path and is merged as before (issue 16).
    #[test]
    fn lone_datagrams_are_read_in_place_and_batches_still_merge() {
        use crate::sys::testutil::{ipv4_gso, GSO_TCPV4};
        use crate::wire::checksum;
        in_new_netns(|| {
            let a = open_on_lo(VNI, A_IP, Arc::new(RemoteTable::new(1000, 8, vec![B_IP])))
                .expect("open a");
            let b = open_on_lo(VNI, B_IP, Arc::new(RemoteTable::new(1000, 8, vec![A_IP])))
                .expect("open b");
            let lone = || b.rx.lock().expect("rx").lone;
            let partial = |f: &mut [u8]| {
                let l4_len = u32::try_from(f.len() - 34).expect("length");
                let pseudo =
                    checksum::pseudo_header_v4(&[192, 0, 2, 1], &[192, 0, 2, 2], 6, l4_len);
                f[50..52].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
            };
            let datagram = |inner: &[u8]| {
                let mut d = VxlanRepr { vni: VNI }.to_bytes().to_vec();
                d.extend_from_slice(inner);
                d
            };
            // A kernel VTEP's TSO super-packet: one datagram, its inner TCP packet over the
            // MTU with the partial checksum the kernel leaves.
            let mut inner = ipv4_gso(MAC_B, MAC_A, GSO_TCPV4, 20_000, 1000).0[HDR..].to_vec();
            partial(&mut inner);
            let kernel = UdpSocket::bind("127.0.0.3:0").expect("bind");
            let to = SocketAddrV4::new(B_IP, 4789);
            let mut buf = vec![0xeeu8; DIRECT_AT + RX_BATCH_LEN];
            let mut outs = Vec::new();
            for _ in 0..3 {
                kernel.send_to(&datagram(&inner), to).expect("send");
                outs.push(recv_in(&b, &mut buf).expect("super-frame"));
                assert!(lone(), "a read of one datagram");
            }
            assert_eq!(outs[1], outs[0], "in place as through the read buffer");
            assert_eq!(outs[2], outs[0]);
            let got = &outs[0];
            assert_eq!((got[0], got[1]), (1, GSO_TCPV4), "NEEDS_CSUM, TCPv4");
            assert_eq!(
                u16::from_ne_bytes([got[4], got[5]]),
                1450 - 40,
                "fills the MTU"
            );
            assert_eq!(got[HDR..], inner[..], "the frame as sent");

            // A single frame in place: no vnet header to speak of.
            let small = eth_frame(MAC_B, MAC_A, 0x88b5, &[9; 100]);
            kernel.send_to(&datagram(&small), to).expect("send");
            assert_eq!(recv_in(&b, &mut buf).expect("frame"), with_zero_hdr(&small));

            // A netyard peer's UDP GSO send (after its hello, a lone datagram too): read in
            // place, then moved to the batch path and merged into one super-frame.
            let (mut tcp, _) = ipv4_gso(MAC_B, MAC_A, GSO_TCPV4, 3000, 1000);
            partial(&mut tcp[HDR..]);
            a.send(&tcp).expect("send TCP GSO");
            let got = recv_in(&b, &mut buf).expect("merged frame");
            assert_eq!(got.len(), tcp.len(), "one super-frame again");
            assert_eq!(got[HDR + 54..], tcp[HDR + 54..], "payload");
            assert!(!lone(), "a batch: the next read goes to the read buffer");

            // Then a lone datagram through the read buffer, and the next one in place again.
            for _ in 0..2 {
                kernel.send_to(&datagram(&small), to).expect("send");
                assert_eq!(recv_in(&b, &mut buf).expect("frame"), with_zero_hdr(&small));
                assert!(lone());
            }
        });
    }

    /// A kernel VTEP's super-packet of two segments a few bytes over the MTU (a TCP sender's
    /// MSS and a 2-byte tail: an inner frame shorter than the MTU plus a VLAN tag's room)
    /// goes on as a GSO super-frame, through the read buffer and in place alike, not as a
    /// plain frame the switch drops as `over_mtu`; a frame of exactly the MTU stays plain.
    #[test]
    fn a_super_packet_just_over_the_mtu_goes_on_as_gso() {
        use crate::sys::testutil::{ipv4_gso, GSO_TCPV4};
        use crate::wire::checksum;
        in_new_netns(|| {
            let b = open_on_lo(VNI, B_IP, Arc::new(RemoteTable::new(1000, 8, vec![A_IP])))
                .expect("open b");
            let kernel = UdpSocket::bind("127.0.0.3:0").expect("bind");
            let to = SocketAddrV4::new(B_IP, 4789);
            // Inner TCP/IPv4 of `ip_len` bytes with the partial checksum a kernel leaves.
            let datagram = |ip_len: usize| {
                let payload = ip_len - 40;
                let mut inner = ipv4_gso(MAC_B, MAC_A, GSO_TCPV4, payload, 1000).0[HDR..].to_vec();
                let l4 = u32::try_from(payload + 20).expect("length");
                let pseudo = checksum::pseudo_header_v4(&[192, 0, 2, 1], &[192, 0, 2, 2], 6, l4);
                inner[50..52].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
                let mut d = VxlanRepr { vni: VNI }.to_bytes().to_vec();
                d.extend_from_slice(&inner);
                (d, inner)
            };
            let mut big = vec![0xeeu8; DIRECT_AT + RX_BATCH_LEN];
            let cases = [(1452, true), (1450, false), (1454, true), (1452, true)];
            for (i, (ip_len, gso)) in cases.into_iter().enumerate() {
                let (d, inner) = datagram(ip_len);
                kernel.send_to(&d, to).expect("send");
                // The first through the read buffer, the rest in place (the reads are lone).
                let got = if i == 0 {
                    recv_one(&b)
                } else {
                    recv_in(&b, &mut big)
                }
                .expect("frame");
                assert_eq!(got[HDR..], inner[..], "the frame as sent ({ip_len})");
                assert_eq!(got[0], 1, "NEEDS_CSUM ({ip_len})");
                if gso {
                    assert_eq!(got[1], GSO_TCPV4, "a TCPv4 super-frame ({ip_len})");
                    assert_eq!(u16::from_ne_bytes([got[4], got[5]]), 1450 - 40, "gso_size");
                } else {
                    assert_eq!(got[1], 0, "a plain frame at the MTU");
                }
            }
        });
    }

    /// A kernel VTEP's inner UDP GSO send over IPv6 (a QUIC sender's, say) comes as one read
    /// with the inner datagrams' size as its segment size, as over IPv4: it is told from a
    /// burst by the IPv6 payload length and goes on whole as UDP_L4 GSO of that size, not cut
    /// into pieces at the segment size.
    #[test]
    fn an_inner_udp6_super_packet_goes_on_whole() {
        use crate::sys::testutil::GSO_UDP_L4;
        use crate::wire::checksum;
        let (src, dst) = ([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], {
            let mut d = [0u8; 16];
            d[0] = 0xfd;
            d[15] = 2;
            d
        });
        let payload = 3000;
        let l4 = u16::try_from(8 + payload).expect("length");
        let mut inner = eth_frame(MAC_B, MAC_A, 0x86dd, &[]);
        inner.extend_from_slice(&[0x60, 0, 0, 0]);
        inner.extend_from_slice(&l4.to_be_bytes());
        inner.extend_from_slice(&[17, 64]);
        inner.extend_from_slice(&src);
        inner.extend_from_slice(&dst);
        inner.extend_from_slice(&40000u16.to_be_bytes());
        inner.extend_from_slice(&443u16.to_be_bytes());
        inner.extend_from_slice(&l4.to_be_bytes());
        // The partial checksum the kernel leaves.
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 17, u32::from(l4));
        inner.extend_from_slice(&checksum::fold(pseudo).to_be_bytes());
        inner.extend((0..payload).map(|i| u8::try_from(i % 251).expect("byte")));
        let mut d = VxlanRepr { vni: VNI }.to_bytes().to_vec();
        d.extend_from_slice(&inner);
        assert!(inner_ip_spans(&d), "one datagram");
        assert!(
            !inner_ip_spans(&d[..d.len() - 1]),
            "a read that ends elsewhere"
        );
        in_new_netns(move || {
            let b = open_on_lo(VNI, B_IP, Arc::new(RemoteTable::new(1000, 8, vec![A_IP])))
                .expect("open b");
            // Sent with UDP_SEGMENT of the inner datagrams' size, which the receiving socket
            // reports as the read's segment size, as the kernel VTEP's send does.
            let kernel = UdpSocket::bind("127.0.0.3:0").expect("bind");
            socket::setsockopt(&kernel, sockopt::UdpGsoSegment, &1000).expect("UDP_SEGMENT");
            let to = SocketAddrV4::new(B_IP, 4789);
            let mut big = vec![0xeeu8; DIRECT_AT + RX_BATCH_LEN];
            for i in 0..2 {
                kernel.send_to(&d, to).expect("send");
                // Through the read buffer, then in place.
                let got = if i == 0 {
                    recv_in(&b, &mut vec![0xeeu8; 8192])
                } else {
                    recv_in(&b, &mut big)
                }
                .expect("frame");
                assert_eq!(got[HDR..], inner[..], "whole ({i})");
                assert_eq!(
                    (got[0], got[1]),
                    (1, GSO_UDP_L4),
                    "NEEDS_CSUM, UDP_L4 ({i})"
                );
                assert_eq!(u16::from_ne_bytes([got[4], got[5]]), 1000, "gso_size ({i})");
            }
        });
    }

    /// A peer's hello: until one is heard, checksummed frames leave with full inner
    /// checksums (after a hello of this VTEP's own); once heard, partial ones (the
    /// pseudo-header sum), which the receiving netyard hands on as NEEDS_CSUM.
    #[test]
    fn partial_inner_checksums_only_to_a_peer_that_said_hello() {
        use crate::overlay::{inner_partial_csum, is_hello, HELLO_LEN};
        use crate::sys::testutil::{ipv4_gso, GSO_TCPV4};
        in_new_netns(|| {
            let a = open_on_lo(VNI, A_IP, Arc::new(RemoteTable::new(1000, 8, vec![B_IP])))
                .expect("open a");
            // The peer: a plain socket on B's address, reading what a sends.
            let peer = UdpSocket::bind(SocketAddrV4::new(B_IP, 4789)).expect("bind peer");
            peer.set_read_timeout(Some(WAIT)).expect("timeout");
            let read = |n: usize| -> Vec<Vec<u8>> {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65_536];
                while got.len() < n {
                    let len = peer.recv(&mut buf).expect("datagram from a");
                    got.push(buf[VXLAN_HDR_LEN..len].to_vec());
                }
                got
            };
            let (tcp, _) = ipv4_gso(MAC_B, MAC_A, GSO_TCPV4, 3000, 1000);
            a.send(&tcp).expect("send");
            let got = read(4);
            assert!(is_hello(&got[0]), "a hello first: {:02x?}", &got[0]);
            assert!(got[1..]
                .iter()
                .all(|f| inner_partial_csum(f) == InnerCsum::Valid));
            // The peer says hello; a reads it (nothing for the switch) and leaves checksums
            // partial from then on.
            let mut hello = VxlanRepr { vni: VNI }.to_bytes().to_vec();
            hello.extend_from_slice(&hello_frame());
            assert_eq!(hello.len(), VXLAN_HDR_LEN + HELLO_LEN);
            peer.send_to(&hello, SocketAddrV4::new(A_IP, 4789))
                .expect("hello");
            assert!(wait_readable(a.raw_fd(), WAIT), "the hello arrived");
            let err = a.recv(&mut vec![0u8; 4096]).expect_err("consumed");
            assert_eq!(err.kind(), io::ErrorKind::Interrupted);
            a.send(&tcp).expect("send");
            let got = read(3);
            for f in &got {
                assert!(
                    matches!(inner_partial_csum(f), InnerCsum::Partial { .. }),
                    "partial after the peer's hello"
                );
            }
            // A plain frame without NEEDS_CSUM is unchanged (a ping, an ARP).
            let f = eth_frame(MAC_B, MAC_A, 0x88b5, b"plain");
            a.send(&with_zero_hdr(&f)).expect("send");
            assert_eq!(read(1)[0], f);
        });
    }

    /// Two VNIs on one address and port share the socket: each port gets its own frames,
    /// whichever port read them; an unknown VNI is counted by the reader; the same VNI twice is
    /// refused; the socket closes with its last port.
    #[test]
    fn vnis_share_one_socket() {
        in_new_netns(|| {
            let (a_ip, b_ip) = (A_IP, B_IP);
            let table = |peer| Arc::new(RemoteTable::new(1000, 8, vec![peer]));
            let s1 = open_on_lo(1, a_ip, table(b_ip)).expect("sender vni 1");
            let s2 = open_on_lo(2, a_ip, table(b_ip)).expect("sender vni 2");
            let r1 = open_on_lo(1, b_ip, table(a_ip)).expect("receiver vni 1");
            let r2 = open_on_lo(2, b_ip, table(a_ip)).expect("receiver vni 2");
            assert_eq!(s1.local_addr().unwrap(), s2.local_addr().unwrap());
            assert_ne!(s1.raw_fd(), s2.raw_fd(), "each port has its own fd");
            let err = open_on_lo(2, b_ip, table(a_ip)).expect_err("VNI 2 twice");
            assert!(matches!(err, VxlanError::VniTaken { vni: 2, .. }), "{err}");

            let f1 = eth_frame([0xff; 6], MAC_A, 0x88b5, b"for vni 1");
            let f2 = eth_frame([0xff; 6], MAC_B, 0x88b5, b"for vni 2");
            // Both arrive before either receiver reads: r1 reads both, hands f2 to r2.
            s2.send(&with_zero_hdr(&f2)).expect("send 2");
            s1.send(&with_zero_hdr(&f1)).expect("send 1");
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = vec![0u8; 4096];
            let n = loop {
                match r1.recv(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other.expect("r1 gets its frame"),
                }
            };
            assert_eq!(&buf[..n], &with_zero_hdr(&f1)[..]);
            assert_eq!(
                recv_one(&r2).expect("r2 gets its frame"),
                with_zero_hdr(&f2)
            );
            assert_eq!(
                r2.table().lookup(&MacAddr(MAC_B), 0),
                Some(a_ip),
                "learned by the owner from the queued datagram"
            );
            // A VNI nobody has: counted by whoever reads it.
            let probe = UdpSocket::bind("127.0.0.3:0").expect("bind probe");
            let mut other = VxlanRepr { vni: 3 }.to_bytes().to_vec();
            other.extend_from_slice(&f1);
            probe
                .send_to(&other, SocketAddrV4::new(b_ip, 4789))
                .expect("probe");
            let err = recv_one(&r2).expect_err("dropped");
            assert_eq!(PortDrop::reason(&err), Some(DropReason::VxlanWrongVni));
            // The last port closes the socket: the address can be bound again.
            drop((r1, r2));
            UdpSocket::bind("127.0.0.2:4789").expect("socket closed with its last port");
        });
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// The lost wake-up of the shared socket: a port reads another VNI's datagrams, after
    /// which the socket is no longer readable, so the other port's own registration of the
    /// socket will never report them. The hand-off wakes that port itself, and the handed
    /// datagrams come out of it whole (a GSO burst merged again, as if it had read them).
    #[test]
    fn a_datagram_handed_to_another_vni_wakes_its_port_though_the_socket_is_drained() {
        use crate::sys::testutil::{ipv4_gso, GSO_TCPV4};
        in_new_netns(|| {
            let table = |peer| Arc::new(RemoteTable::new(1000, 8, vec![peer]));
            let s2 = open_on_lo(2, A_IP, table(B_IP)).expect("sender vni 2");
            let r1 = open_on_lo(1, B_IP, table(A_IP)).expect("receiver vni 1");
            let r2 = open_on_lo(2, B_IP, table(A_IP)).expect("receiver vni 2");
            let waker = Arc::new(CountingWaker::default());
            let w = std::task::Waker::from(waker.clone());
            let mut cx = std::task::Context::from_waker(&w);
            assert!(r2.poll_queued(&mut cx).is_pending(), "nothing queued yet");

            let f = eth_frame(MAC_A, MAC_B, 0x88b5, b"for vni 2");
            s2.send(&with_zero_hdr(&f)).expect("send");
            let (tcp, _) = ipv4_gso(MAC_A, MAC_B, GSO_TCPV4, 3000, 1000);
            s2.send(&tcp).expect("send a GSO burst");
            assert!(wait_readable(r1.raw_fd(), WAIT), "the datagrams arrived");
            std::thread::sleep(Duration::from_millis(50));
            // r1 reads everything on the socket: all of it for VNI 2, so nothing for r1.
            let mut buf = vec![0u8; 65_536];
            loop {
                match r1.recv(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    other => panic!("r1 got {other:?}"),
                }
            }
            assert!(
                !wait_readable(r2.raw_fd(), Duration::ZERO),
                "the socket is drained: r2's own registration would never fire"
            );
            assert!(waker.0.load(Relaxed) > 0, "the hand-off woke r2");
            assert!(r2.poll_queued(&mut cx).is_ready());
            let mut got = Vec::new();
            loop {
                match r2.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    // The hello s2 sent ahead of its first checksummed frames.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("r2: {e}"),
                }
            }
            assert_eq!(got.len(), 2, "the plain frame and one merged super-frame");
            assert_eq!(got[0], with_zero_hdr(&f));
            assert_eq!(got[1].len(), tcp.len(), "the burst merged again");
            assert_eq!(got[1][HDR + 54..], tcp[HDR + 54..], "payload");
            assert_eq!(
                r2.table().lookup(&MacAddr(MAC_B), 0),
                Some(A_IP),
                "learned by the owner"
            );
            assert!(r2.poll_queued(&mut cx).is_pending(), "all taken");
            assert!(r1.table().lookup(&MacAddr(MAC_B), 0).is_none());
        });
    }
}
