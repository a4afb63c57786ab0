//! Egress through host sockets: UDP and ICMP echo from endpoints leave through ordinary
//! sockets of the daemon's own network namespace (source NAT by construction, no privilege),
//! as slirp4netns and pasta do.
//!
//! The gateway task hands this engine every IPv4 frame sent to the gateway's MAC for an
//! address outside the network ([`crate::packet::is_egress`]). The decision path is pure:
//! [`crate::packet::parse_outbound`] checks the packet (one [`EgressDrop`] reason per way it
//! can be wrong), [`crate::packet::refusal`] refuses a destination inside any netyard network
//! (the shared [`crate::packet::LocalSubnets`]) or in 127/8, answered with ICMP
//! "administratively prohibited" before any socket, [`crate::conntrack::FlowTable::outbound`]
//! names its flow or refuses it at a cap (counted per endpoint MAC). A new flow's socket then
//! needs a permit under the process-wide host socket cap ([`crate::limits`]). The I/O is here,
//! at the edge:
//!
//! - UDP: one host socket per flow, bound to 0.0.0.0:0 and connected to the destination, so
//!   the kernel only delivers that destination's replies to it. ICMP echo: one unprivileged
//!   ICMP datagram socket per flow (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, allowed when
//!   `net.ipv4.ping_group_range` covers the daemon's group); the kernel replaces the echo
//!   identifier with the socket's, and replies get the endpoint's back. When the range
//!   excludes the daemon (the default of a new namespace) and it has `CAP_NET_RAW`, one raw
//!   ICMP socket per engine serves every ICMP flow instead ([`crate::rawicmp`]). Without
//!   either, the packet is dropped as [`EgressDrop::IcmpNotPermitted`] (a warning logged
//!   once).
//! - Sends happen on the gateway task, non-blocking, batched: a burst's datagrams leave in one
//!   `sendmmsg` per socket when the burst ends ([`crate::batch`]); a full socket buffer drops
//!   the packet.
//! - Replies: every flow's socket is in the engine's own epoll (level-triggered), which the
//!   gateway task awaits through tokio. Woken, it reads each ready socket (up to 32
//!   datagrams per turn) into one reused buffer with room in front, builds the frames there in
//!   place (IPv4 id per flow, TTL 64, full checksums, fragments past the MTU written over the
//!   data already sent), accounts them in the flow table, writes the endpoint's MAC and sends
//!   them to the switch: no task, channel hop or allocation per datagram.
//! - ICMP errors: host sockets have `IP_RECVERR`, so every ICMP error the host receives for a
//!   flow (port, host, net unreachable, time exceeded) lands in the socket's error queue
//!   (epoll reports EPOLLERR). The gateway drains it and sends the endpoint the same type and
//!   code, quoting the endpoint's own last packet, so its socket fails fast (ECONNREFUSED)
//!   instead of timing out. A send that fails synchronously with
//!   ENETUNREACH/EHOSTUNREACH/ECONNREFUSED is answered the same way.
//! - Expired flows ([`FlowTable::expire`], swept every second) close their socket (which
//!   leaves the epoll); so does a socket failing more than 64 times in a row.
//!
//! TCP never reaches this engine: the gateway hands it to the relay ([`crate::tcp`]), which
//! shares this engine's flow table and counters.
//!
//! The flow table and the counters are shared with the daemon through [`EgressHandle`]; the
//! table's lock is only taken for short synchronous updates, never across an await.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrStorage,
};
use tokio::io::unix::AsyncFd;

use netyard_switch::MacAddr;

use crate::batch::DatagramBatch;
use crate::conntrack::{CapHit, FlowId, FlowKey, FlowLimits, Proto, Verdict};
use crate::counters::Shared;
use crate::epoll::{async_epoll, EpollFd};
use crate::limits::{HostSocketPermit, HostSockets};
use crate::packet::{self, LocalSubnets, Subnet, QUOTE_MAX};
use crate::packet6::{self, Side6};
use crate::rawicmp::{self, RawIcmp, RawRx};
use crate::sink::FrameSink;

// The daemon and the tests name these through `egress`, where they lived first.
pub use crate::counters::{EgressCounters, EgressHandle, EgressStats};
pub use crate::drops::EgressDrop;

/// How often expired flows are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Ready sockets taken per `epoll_wait`.
const EVENTS: usize = 64;
/// Datagrams read from one socket per wake-up before the next socket's turn.
const READER_BURST: usize = 32;
/// Largest IPv4 packet.
const MAX_IP: usize = 65_535;
/// Payload bytes and datagrams queued per burst before an early flush (a burst is at most the
/// gateway's 64 frames; fragments are dropped, so a datagram is at most one MTU).
const BATCH_BYTES: usize = 128 * 1024;
const BATCH_COUNT: usize = 64;
/// Receive errors in a row after which a flow's socket is given up.
const MAX_ERRORS_IN_A_ROW: u32 = 64;

/// What a reader hands the gateway task.
/// The per-flow I/O state, owned by the gateway task.
struct FlowIo {
    id: FlowId,
    key: FlowKey,
    sock: FlowSock,
    /// The endpoint's MAC, from its latest frame.
    mac: [u8; 6],
    /// The endpoint's latest packet's IPv4 header and 8 bytes, quoted in ICMP errors.
    quote: [u8; QUOTE_MAX],
    quote_len: usize,
    /// IPv4 identification of the flow's replies.
    ident: u16,
    /// Receive errors in a row: a datagram socket reports a pending error once, so a long
    /// run means the socket itself is broken.
    errors_in_a_row: u32,
    /// The socket's kernel drop count at the last reading (a new socket starts at 0).
    drops_seen: u32,
    /// Read since the last sweep: only such a socket can have dropped anything since (a
    /// receive buffer fills only while datagrams arrive, and their arrival wakes the read), so
    /// the sweep asks the kernel about these alone.
    read_since_sweep: bool,
}

impl FlowIo {
    /// Datagrams the kernel dropped at this flow's full receive buffer since the last reading
    /// (`SO_MEMINFO`'s `sk_drops`, 32 bits, wrapping). 0 for a flow on the raw ICMP socket
    /// (shared, counted by the engine's own reader) and for a failed reading.
    fn kernel_drops(&mut self) -> u64 {
        let Some(sock) = self.sock.own() else {
            return 0;
        };
        match netyard_switch::sys::socket_drops(sock.as_fd()) {
            Ok(total) => {
                let added = total.wrapping_sub(self.drops_seen);
                self.drops_seen = total;
                u64::from(added)
            }
            Err(_) => 0,
        }
    }
}

/// A flow's way out.
enum FlowSock {
    /// Its own connected, non-blocking socket (UDP, or ICMP datagram), watched by the
    /// engine's epoll (token: the flow id), and its place under the host socket cap (given
    /// back after the socket closes).
    Own {
        sock: std::net::UdpSocket,
        _permit: HostSocketPermit,
    },
    /// The engine's raw ICMP socket, under this echo identifier ([`crate::rawicmp`]).
    Raw(u16),
    /// ICMPv6 echo when ICMPv6 datagram sockets are refused: a raw ICMPv6 socket of its own,
    /// connected to the destination (the kernel then hands it only that address's ICMPv6,
    /// and computes the checksum of what it sends), under an echo identifier of its own from
    /// the raw sockets' process-wide sequence (replies to other flows' identifiers, which
    /// the socket sees too, are skipped). Watched by the epoll like an own socket.
    Raw6 {
        sock: std::net::UdpSocket,
        ident: u16,
        _permit: HostSocketPermit,
    },
}

impl FlowSock {
    /// The socket this flow reads and writes itself, if it has one.
    fn own(&self) -> Option<&std::net::UdpSocket> {
        match self {
            FlowSock::Own { sock, .. } | FlowSock::Raw6 { sock, .. } => Some(sock),
            FlowSock::Raw(_) => None,
        }
    }
}

/// Whether the engine has a raw ICMP socket (opened the first time ICMP datagram sockets are
/// refused).
enum RawState {
    Untried,
    Open(RawIcmp),
    Denied,
}

/// Why a new flow got no host socket.
enum OpenError {
    /// The process-wide host socket cap is reached.
    Cap,
    /// The socket could not be created or connected.
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// The epoll token of the raw ICMP socket (flow ids count up from 0 and never get there).
const RAW_TOKEN: u64 = u64::MAX;

impl FlowIo {
    /// Turns the reply in `buf` (`headroom` free bytes, then the datagram or ICMP message)
    /// into frames in place and sends them to the endpoint, accounted in the flow table.
    fn deliver(
        &mut self,
        shared: &Shared,
        cfg: &EgressConfig,
        buf: &mut [u8],
        headroom: usize,
        now: Instant,
        out: &impl FrameSink,
    ) {
        let len = buf.len().saturating_sub(headroom);
        if !shared.table().inbound(self.id, len, now) {
            shared.counters.drop(EgressDrop::StaleReply);
            return;
        }
        self.ident = self.ident.wrapping_add(1);
        let (mac, key) = (self.mac, self.key);
        let link = packet::Link {
            gw_mac: cfg.gw_mac,
            mtu: cfg.mtu,
            ident: self.ident,
        };
        let mut sent = true;
        let mut emit = |f: &mut [u8]| {
            packet::set_eth_dst(f, mac);
            sent &= out.send_frame(f);
        };
        let frames = match (key.proto, key.dest, key.endpoint) {
            (Proto::Udp, SocketAddr::V4(d), SocketAddr::V4(e)) => {
                packet::udp_frames_in(buf, d, e, link, &mut emit)
            }
            (Proto::Udp, SocketAddr::V6(d), SocketAddr::V6(e)) => {
                packet6::udp_frames_in(buf, d, e, link, &mut emit)
            }
            (Proto::Icmp, SocketAddr::V4(d), SocketAddr::V4(e)) => {
                packet::icmp_echo_reply_frames_in(buf, *d.ip(), *e.ip(), e.port(), link, &mut emit)
            }
            (Proto::Icmp, SocketAddr::V6(d), SocketAddr::V6(e)) => {
                packet6::echo_reply_frames_in(buf, *d.ip(), *e.ip(), e.port(), link, &mut emit)
            }
            _ => 0,
        };
        let c = &shared.counters;
        if frames == 0 {
            return;
        }
        if sent {
            c.packets_in.fetch_add(1, Relaxed);
            c.bytes_in.fetch_add(len as u64, Relaxed);
        } else {
            c.drop(EgressDrop::ReplyQueueFull);
        }
    }

    fn remember(&mut self, mac: [u8; 6], quote: &[u8]) {
        self.mac = mac;
        let n = quote.len().min(QUOTE_MAX);
        self.quote[..n].copy_from_slice(&quote[..n]);
        self.quote_len = n;
    }
}

/// What the engine knows of its gateway.
#[derive(Debug, Clone)]
pub(crate) struct EgressConfig {
    pub enabled: bool,
    pub subnet: Subnet,
    pub gw_mac: [u8; 6],
    /// The network's MTU (IP packet size).
    pub mtu: usize,
    pub limits: FlowLimits,
    /// Destination maps (`--host-loopback` included, see [`packet::effective_maps`]): a
    /// mapped destination's socket connects to the host address, replies come from the
    /// destination.
    pub maps: Vec<packet::AddrMap>,
    /// The budget every flow's host socket is counted in (the process's, but in tests).
    pub host_sockets: &'static HostSockets,
    /// Every netyard network's subnet: destinations there are refused locally.
    pub local_subnets: LocalSubnets,
    /// The gateway's IPv6 side, on a dual-stack network.
    pub v6: Option<Side6>,
}

/// The egress engine of one gateway task.
pub(crate) struct Egress {
    cfg: EgressConfig,
    shared: Arc<Shared>,
    flows: HashMap<FlowId, FlowIo>,
    /// Watches every flow's socket; the gateway task awaits it.
    epoll: Arc<AsyncFd<EpollFd>>,
    /// Receive buffer of every reply: headroom for the headers, then the largest datagram.
    rx: Vec<u8>,
    /// The raw ICMP socket, when ICMP datagram sockets are refused, and its flows.
    raw: RawState,
    raw_flows: HashMap<u16, FlowId>,
    /// An echo request rewritten for the raw socket.
    raw_scratch: Vec<u8>,
    /// IPv4 identification of the ICMP errors the gateway originates.
    ident: u16,
    next_sweep: Option<Instant>,
    /// Datagrams of the current burst, sent by [`Egress::flush`].
    batch: DatagramBatch<FlowId>,
}

/// Only logs the first ICMP permission failure of the process.
static ICMP_DENIED_LOGGED: AtomicBool = AtomicBool::new(false);

impl Egress {
    /// The engine and the daemon's handle. Must be called inside a tokio runtime (the
    /// engine's epoll registers with it).
    pub(crate) fn new(cfg: EgressConfig) -> io::Result<(Egress, EgressHandle)> {
        let shared = Arc::new(Shared::new(cfg.enabled, cfg.limits));
        Ok((
            Egress {
                cfg,
                shared: shared.clone(),
                flows: HashMap::new(),
                epoll: async_epoll()?,
                rx: vec![0u8; packet6::UDP_HEADROOM + MAX_IP],
                raw: RawState::Untried,
                raw_flows: HashMap::new(),
                raw_scratch: Vec::new(),
                ident: 0,
                next_sweep: None,
                batch: DatagramBatch::new(BATCH_BYTES, BATCH_COUNT),
            },
            EgressHandle { shared },
        ))
    }

    /// The epoll the gateway task awaits (then calls [`Egress::poll_host`]).
    pub(crate) fn epoll(&self) -> Arc<AsyncFd<EpollFd>> {
        self.epoll.clone()
    }

    /// Where a flow's host socket connects: the destination, or its map's host address.
    fn host_target(&self, dest: SocketAddr) -> SocketAddr {
        match dest {
            SocketAddr::V4(d) => match packet::mapped(*d.ip(), &self.cfg.maps) {
                Some(host) => SocketAddrV4::new(host, d.port()).into(),
                None => dest,
            },
            SocketAddr::V6(d) => {
                let maps = self.cfg.v6.as_ref().map_or(&[][..], |v6| &v6.maps[..]);
                match packet6::mapped(*d.ip(), maps) {
                    Some(host) => SocketAddrV6::new(host, d.port(), 0, 0).into(),
                    None => dest,
                }
            }
        }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn count(&self, reason: EgressDrop) {
        self.shared.counters.drop(reason);
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// When the gateway task should next call [`Egress::sweep`] (None: no flows).
    pub(crate) fn sweep_at(&self) -> Option<Instant> {
        if self.flows.is_empty() {
            None
        } else {
            self.next_sweep
        }
    }

    /// Removes expired flows if a sweep is due.
    pub(crate) fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        // Kernel drops of the sockets read since the last sweep: off the read path, one
        // getsockopt per active flow a second.
        let mut dropped = 0;
        for io in self.flows.values_mut().filter(|io| io.read_since_sweep) {
            io.read_since_sweep = false;
            dropped += io.kernel_drops();
        }
        if dropped > 0 {
            self.shared
                .counters
                .drop_n(EgressDrop::UdpRcvbufFull, dropped);
        }
        let gone = self.shared.table().expire(now);
        self.shared
            .counters
            .flows_expired
            .fetch_add(gone.len() as u64, Relaxed);
        for id in gone {
            self.forget(id);
        }
    }

    /// Sends the endpoint of flow `key` an ICMP error quoting its packet `quote`: ICMPv4
    /// or ICMPv6 by the flow's family (`err`'s type and code are that family's; `info` is
    /// ICMPv6's packet-too-big MTU).
    fn send_icmp_error(
        &mut self,
        key: FlowKey,
        mac: [u8; 6],
        quote: &[u8],
        err: IcmpErr,
        out: &impl FrameSink,
    ) {
        let IcmpErr {
            icmp_type,
            code,
            info,
        } = err;
        let f = match (key.dest.ip(), key.endpoint.ip()) {
            (IpAddr::V4(dest), IpAddr::V4(ep)) => {
                // Port and protocol unreachable come from the destination itself; anything
                // else from a router on the way, which for the endpoint is its gateway.
                let from = if icmp_type == packet::ICMP_DEST_UNREACH
                    && (code == packet::UNREACH_PROTO || code == packet::UNREACH_PORT)
                {
                    dest
                } else {
                    self.cfg.subnet.gateway
                };
                let ident = self.next_ident();
                packet::icmp_error_frame(from, ep, icmp_type, code, quote, ident, self.cfg.gw_mac)
            }
            (IpAddr::V6(dest), IpAddr::V6(ep)) => {
                let Some(v6) = &self.cfg.v6 else {
                    return;
                };
                let from =
                    if icmp_type == packet6::ICMP6_DEST_UNREACH && code == packet6::UNREACH_PORT {
                        dest
                    } else {
                        v6.subnet.gateway
                    };
                packet6::icmp_error_frame(from, ep, icmp_type, code, info, quote, self.cfg.gw_mac)
            }
            _ => None,
        };
        let Some(mut f) = f else {
            return;
        };
        packet::set_eth_dst(&mut f, mac);
        if out.send_frame(&f) {
            self.shared.counters.icmp_errors_sent.fetch_add(1, Relaxed);
        } else {
            self.count(EgressDrop::ReplyQueueFull);
        }
    }

    /// Handles one frame an endpoint sent for egress.
    pub(crate) fn outbound(&mut self, frame: &[u8], now: Instant, out: &impl FrameSink) {
        if !self.cfg.enabled {
            self.count(EgressDrop::Disabled);
            return;
        }
        let v6 = packet6::ipv6_dst(frame).is_some();
        let parsed = match (&self.cfg.v6, v6) {
            (Some(side), true) => packet6::parse_outbound(frame, &side.subnet, &side.maps),
            // IPv6 on a network without it never gets here (the gateway keeps it).
            (None, true) => Err(EgressDrop::Unsupported),
            (_, false) => packet::parse_outbound_mapped(frame, &self.cfg.subnet, &self.cfg.maps),
        };
        let pkt = match parsed {
            Ok(p) => p,
            Err(reason) => {
                self.count(reason);
                return;
            }
        };
        if pkt.ttl <= 1 {
            self.count(EgressDrop::TtlExpired);
            let err = if v6 {
                IcmpErr::new(packet6::ICMP6_TIME_EXCEEDED, 0)
            } else {
                IcmpErr::new(packet::ICMP_TIME_EXCEEDED, 0)
            };
            self.send_icmp_error(pkt.key, pkt.src_mac, pkt.quote, err, out);
            return;
        }
        // Checked on every packet, not only a flow's first: a network created while a flow
        // lives is refused from then on. One atomic load, no lock.
        let refused = match (pkt.key.dest.ip(), &self.cfg.v6) {
            (IpAddr::V4(d), _) => packet::egress_target(
                d,
                &self.cfg.subnet,
                &self.cfg.maps,
                &self.cfg.local_subnets.load(),
            )
            .err(),
            (IpAddr::V6(d), Some(side)) => {
                packet6::egress_target(d, &side.subnet, &side.maps, &side.local_subnets.load())
                    .err()
            }
            (IpAddr::V6(_), None) => Some(packet::Refusal::LocalNetwork),
        };
        if let Some(r) = refused {
            self.count(r.reason());
            let err = if v6 {
                IcmpErr::new(
                    packet6::ICMP6_DEST_UNREACH,
                    packet6::UNREACH_ADMIN_PROHIBITED,
                )
            } else {
                IcmpErr::new(packet::ICMP_DEST_UNREACH, packet::UNREACH_ADMIN_PROHIBITED)
            };
            self.send_icmp_error(pkt.key, pkt.src_mac, pkt.quote, err, out);
            return;
        }
        let verdict =
            self.shared
                .table()
                .outbound(pkt.key, MacAddr(pkt.src_mac), pkt.payload.len(), now);
        let id = match verdict {
            Verdict::Drop(CapHit::Endpoint) => {
                self.count(EgressDrop::EndpointFlowCap);
                return;
            }
            Verdict::Drop(CapHit::Total) => {
                self.count(EgressDrop::FlowTableFull);
                return;
            }
            Verdict::Existing(id) if self.flows.contains_key(&id) => id,
            Verdict::Existing(id) | Verdict::New(id) => match self.open(id, pkt.key) {
                Ok(()) => id,
                Err(OpenError::Cap) => {
                    // As for a full flow table: dropped, counted, nothing opened.
                    self.shared.table().remove(id);
                    self.count(EgressDrop::HostSocketCap);
                    return;
                }
                Err(OpenError::Io(e)) => {
                    self.shared.table().remove(id);
                    self.open_failed(&e, pkt.key, pkt.src_mac, pkt.quote, out);
                    return;
                }
            },
        };
        let Some(io) = self.flows.get_mut(&id) else {
            return;
        };
        io.remember(pkt.src_mac, pkt.quote);
        match io.sock {
            FlowSock::Own { sock: ref s, .. } => {
                let fd = s.as_raw_fd();
                if !self.batch.fits(pkt.payload.len()) {
                    self.flush(out);
                }
                self.batch.push(id, fd, pkt.payload);
            }
            FlowSock::Raw6 {
                sock: ref s, ident, ..
            } => {
                let fd = s.as_raw_fd();
                // Under the flow's own identifier; the kernel fills in the checksum.
                self.raw_scratch.clear();
                self.raw_scratch.extend_from_slice(pkt.payload);
                if let Some(i) = self.raw_scratch.get_mut(4..6) {
                    i.copy_from_slice(&ident.to_be_bytes());
                }
                if !self.batch.fits(pkt.payload.len()) {
                    self.flush(out);
                }
                self.batch.push(id, fd, &self.raw_scratch);
            }
            FlowSock::Raw(ident) => {
                let IpAddr::V4(dest) = io.key.dest.ip() else {
                    return;
                };
                let dest = packet::mapped(dest, &self.cfg.maps).unwrap_or(dest);
                self.send_raw(id, pkt.payload, dest, ident, out);
            }
        }
    }

    /// Sends an echo request through the raw socket, at once (pings are few).
    fn send_raw(
        &mut self,
        id: FlowId,
        msg: &[u8],
        dest: Ipv4Addr,
        ident: u16,
        out: &impl FrameSink,
    ) {
        let RawState::Open(raw) = &self.raw else {
            self.count(EgressDrop::HostSocketError);
            return;
        };
        let fd = raw.as_fd().as_raw_fd();
        match raw.send(msg, dest, ident, &mut self.raw_scratch) {
            Ok(()) => {
                let c = &self.shared.counters;
                c.packets_out.fetch_add(1, Relaxed);
                c.bytes_out.fetch_add(msg.len() as u64, Relaxed);
            }
            Err(e) => self.send_failed(id, fd, e, out),
        }
    }

    /// Counts a failed send and answers an unreachable one.
    fn send_failed(&mut self, id: FlowId, fd: RawFd, e: Errno, out: &impl FrameSink) {
        match e {
            Errno::EAGAIN | Errno::ENOBUFS => self.count(EgressDrop::HostSendBusy),
            Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH => {
                self.count(EgressDrop::Unreachable);
                self.answer_send_error(id, fd, e, out);
            }
            _ => self.count(EgressDrop::HostSendError),
        }
    }

    /// Drops a flow's I/O (its socket closes), and its datagrams not sent yet, whose fd is
    /// about to be closed and maybe reused.
    fn forget(&mut self, id: FlowId) {
        self.batch.forget(id);
        let mut io = self.flows.remove(&id);
        // Its last drops, before the socket closes.
        let dropped = io.as_mut().map_or(0, FlowIo::kernel_drops);
        if dropped > 0 {
            self.shared
                .counters
                .drop_n(EgressDrop::UdpRcvbufFull, dropped);
        }
        match io.map(|io| io.sock) {
            Some(FlowSock::Own { sock: s, .. } | FlowSock::Raw6 { sock: s, .. }) => {
                let _ = self.epoll.get_ref().0.delete(&s);
            }
            Some(FlowSock::Raw(ident)) => {
                self.raw_flows.remove(&ident);
            }
            None => {}
        }
    }

    /// Sends the datagrams [`Egress::outbound`] queued during this burst. The gateway calls it
    /// at the end of every burst.
    pub(crate) fn flush(&mut self, out: &impl FrameSink) {
        if self.batch.is_empty() {
            return;
        }
        // Taken out so the outcomes can update the engine; an empty batch does not allocate.
        let mut batch = std::mem::replace(&mut self.batch, DatagramBatch::new(0, 0));
        batch.flush(|id, fd, len, r| match r {
            Ok(()) => {
                let c = &self.shared.counters;
                c.packets_out.fetch_add(1, Relaxed);
                c.bytes_out.fetch_add(len as u64, Relaxed);
            }
            Err(e) => self.send_failed(id, fd, e, out),
        });
        self.batch = batch;
    }

    /// A send failed with an unreachable error: relays what the socket's error queue holds
    /// (the ICMP errors behind it) or, if it is empty (a local routing failure), the error's
    /// own meaning.
    fn answer_send_error(&mut self, id: FlowId, fd: RawFd, e: Errno, out: &impl FrameSink) {
        let (_, mut errs) = drain_errqueue(fd);
        let Some(io) = self.flows.get(&id) else {
            return;
        };
        if errs.is_empty() {
            errs.push(unreach_err(e, io.key.dest.is_ipv6()));
        }
        let (key, mac, quote, n) = (io.key, io.mac, io.quote, io.quote_len);
        for err in errs {
            self.send_icmp_error(key, mac, &quote[..n], err, out);
        }
    }

    fn open_failed(
        &mut self,
        e: &io::Error,
        key: FlowKey,
        mac: [u8; 6],
        quote: &[u8],
        out: &impl FrameSink,
    ) {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(e @ (Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EADDRNOTAVAIL)) => {
                // EADDRNOTAVAIL: an IPv6 destination on a host without an IPv6 source
                // address; for the endpoint that is "no route".
                self.count(EgressDrop::Unreachable);
                let err = unreach_err(e, key.dest.is_ipv6());
                self.send_icmp_error(key, mac, quote, err, out);
            }
            Some(Errno::EACCES | Errno::EPERM) if key.proto == Proto::Icmp => {
                self.count(EgressDrop::IcmpNotPermitted);
                if !ICMP_DENIED_LOGGED.swap(true, Relaxed) {
                    tracing::warn!(
                        "ICMP echo from containers is dropped: the daemon may open neither ICMP \
                         datagram sockets nor raw ones (no CAP_NET_RAW); allow its group in \
                         net.ipv4.ping_group_range \
                         (e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\")"
                    );
                }
            }
            _ => {
                self.count(EgressDrop::HostSocketError);
                tracing::debug!(error = %e, flow = ?key, "cannot open a host socket for a flow");
            }
        }
    }

    /// An echo identifier on the raw ICMP socket, opening it the first time; `denied` (why
    /// the ICMP datagram socket was refused) if there is no raw socket either.
    fn raw_ident(&mut self, denied: io::Error) -> io::Result<u16> {
        if let RawState::Untried = self.raw {
            self.raw = match RawIcmp::open().and_then(|r| {
                let ev = EpollEvent::new(EpollFlags::EPOLLIN, RAW_TOKEN);
                self.epoll.get_ref().0.add(&r, ev)?;
                Ok(r)
            }) {
                Ok(r) => {
                    tracing::info!(
                        "ICMP echo from containers goes through a raw socket \
                         (net.ipv4.ping_group_range excludes the daemon's group)"
                    );
                    RawState::Open(r)
                }
                Err(_) => RawState::Denied,
            };
        }
        match self.raw {
            RawState::Open(_) => Ok(RawIcmp::next_ident(|i| self.raw_flows.contains_key(&i))),
            _ => Err(denied),
        }
    }

    /// Opens the host socket of a new flow (under the host socket cap) and watches it.
    fn open(&mut self, id: FlowId, key: FlowKey) -> Result<(), OpenError> {
        // Taken before the socket exists, so the cap bounds what is open at any instant.
        let permit = match key.proto {
            Proto::Udp | Proto::Icmp => {
                self.cfg.host_sockets.try_acquire().ok_or(OpenError::Cap)?
            }
            // TCP flows belong to the relay, never to this engine.
            Proto::Tcp => return Err(io::Error::from(io::ErrorKind::Unsupported).into()),
        };
        let target = self.host_target(key.dest);
        let sock = match (key.proto, target.ip()) {
            (Proto::Icmp, IpAddr::V4(dest)) => match icmp_socket(dest) {
                Ok(sock) => FlowSock::Own {
                    sock,
                    _permit: permit,
                },
                // The shared raw socket needs no socket of the flow's own: the permit goes.
                Err(e) if is_permission(&e) => FlowSock::Raw(self.raw_ident(e)?),
                Err(e) => return Err(e.into()),
            },
            (Proto::Icmp, IpAddr::V6(dest)) => match icmp6_socket(dest, false) {
                Ok(sock) => FlowSock::Own {
                    sock,
                    _permit: permit,
                },
                Err(e) if is_permission(&e) => match icmp6_socket(dest, true) {
                    Ok(sock) => FlowSock::Raw6 {
                        sock,
                        ident: RawIcmp::next_ident(|i| self.raw_flows.contains_key(&i)),
                        _permit: permit,
                    },
                    // No raw socket either: reported as the datagram socket's refusal.
                    Err(raw) if is_permission(&raw) => return Err(e.into()),
                    // The raw socket's connect failed (no route: answered unreachable).
                    Err(raw) => return Err(raw.into()),
                },
                Err(e) => return Err(e.into()),
            },
            _ => FlowSock::Own {
                sock: udp_socket(target)?,
                _permit: permit,
            },
        };
        match &sock {
            // Level-triggered: a socket left with data after its burst is reported again.
            FlowSock::Own { sock: s, .. } | FlowSock::Raw6 { sock: s, .. } => self
                .epoll
                .get_ref()
                .0
                .add(s, EpollEvent::new(EpollFlags::EPOLLIN, id.0))
                .map_err(io::Error::from)?,
            FlowSock::Raw(ident) => {
                self.raw_flows.insert(*ident, id);
            }
        }
        self.flows.insert(
            id,
            FlowIo {
                id,
                key,
                sock,
                mac: [0; 6],
                quote: [0; QUOTE_MAX],
                quote_len: 0,
                // Spread the flows' IPv4 identification sequences.
                ident: (id.0 as u16).wrapping_mul(0x9e37),
                errors_in_a_row: 0,
                drops_seen: 0,
                read_since_sweep: false,
            },
        );
        self.shared.counters.flows_created.fetch_add(1, Relaxed);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(Instant::now() + SWEEP_EVERY);
        }
        Ok(())
    }

    /// Serves the flows' host sockets that are ready: replies become frames for their
    /// endpoints, ICMP errors the host received are relayed. Returns true if more may be
    /// waiting (the caller keeps the readiness and comes back).
    pub(crate) fn poll_host(&mut self, now: Instant, out: &impl FrameSink) -> bool {
        let mut events = [EpollEvent::empty(); EVENTS];
        let n = match self.epoll.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let mut more = n == EVENTS;
        for ev in &events[..n] {
            if ev.data() == RAW_TOKEN {
                more |= self.read_raw(now, out);
                continue;
            }
            let id = FlowId(ev.data());
            more |= self.read_flow(id, ev.events().contains(EpollFlags::EPOLLERR), now, out);
        }
        more
    }

    /// Reads up to [`READER_BURST`] datagrams of one flow's socket, each into the engine's one
    /// receive buffer and turned into frames in place: nothing allocated per datagram. True
    /// if the socket may hold more.
    fn read_flow(&mut self, id: FlowId, error: bool, now: Instant, out: &impl FrameSink) -> bool {
        let mut check_errors = error;
        let mut more = false;
        let mut failed = false;
        let Some(io) = self.flows.get_mut(&id) else {
            return false;
        };
        let Some(sock) = io.sock.own() else {
            return false;
        };
        let fd = sock.as_raw_fd();
        // Echo replies on a raw ICMPv6 socket must carry the flow's identifier.
        let raw6 = match io.sock {
            FlowSock::Raw6 { ident, .. } => Some(ident),
            _ => None,
        };
        io.read_since_sweep = true;
        let headroom = match (io.key.proto, io.key.dest.is_ipv6()) {
            (Proto::Icmp, false) => packet::ICMP_HEADROOM,
            (Proto::Udp | Proto::Tcp, false) => packet::UDP_HEADROOM,
            (Proto::Icmp, true) => packet6::ICMP_HEADROOM,
            (Proto::Udp | Proto::Tcp, true) => packet6::UDP_HEADROOM,
        };
        for i in 0..=READER_BURST {
            if i == READER_BURST {
                more = true;
                break;
            }
            let len = match socket::recv(fd, &mut self.rx[headroom..], MsgFlags::MSG_DONTWAIT) {
                Ok(len) => len,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    io.errors_in_a_row += 1;
                    if io.errors_in_a_row > MAX_ERRORS_IN_A_ROW {
                        tracing::debug!(error = %e, flow = ?io.key, "host socket failed");
                        failed = true;
                    }
                    // A pending socket error (ECONNREFUSED and the like): its ICMP error is in
                    // the error queue.
                    check_errors = true;
                    break;
                }
            };
            io.errors_in_a_row = 0;
            let buf = &mut self.rx[..headroom + len];
            if let Some(ident) = raw6 {
                let msg = &buf[headroom..];
                let ours = msg.len() >= 8
                    && msg[0] == packet6::ICMP6_ECHO_REPLY
                    && msg[4..6] == ident.to_be_bytes();
                if !ours {
                    continue;
                }
            }
            io.deliver(&self.shared, &self.cfg, buf, headroom, now, out);
        }
        if check_errors {
            let (seen, errs) = drain_errqueue(fd);
            if seen > 0 {
                // The receive errors came from the error queue: the socket is fine.
                io.errors_in_a_row = 0;
                failed = false;
            }
            let (key, mac, quote, n) = (io.key, io.mac, io.quote, io.quote_len);
            for err in errs {
                self.send_icmp_error(key, mac, &quote[..n], err, out);
            }
        }
        if failed {
            self.forget(id);
            self.shared.table().remove(id);
            return false;
        }
        more
    }

    /// Reads up to [`READER_BURST`] datagrams of the raw ICMP socket: echo replies and errors
    /// for its flows go to their endpoints, the rest (it sees every ICMP message the host
    /// gets) is ignored. True if it may hold more.
    fn read_raw(&mut self, now: Instant, out: &impl FrameSink) -> bool {
        for _ in 0..READER_BURST {
            let RawState::Open(raw) = &self.raw else {
                return false;
            };
            // At most one IPv4 packet, so the message still fits once moved behind the headroom.
            let n = match raw.recv(&mut self.rx[..MAX_IP]) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
            };
            let Some(got) = self.rx.get(..n) else {
                continue;
            };
            match rawicmp::parse(got) {
                RawRx::EchoReply { src, ident, msg } => {
                    let Some(io) = self
                        .raw_flow(ident, src)
                        .and_then(|id| self.flows.get_mut(&id))
                    else {
                        continue;
                    };
                    // The ICMP message moves behind the headroom its frame needs.
                    let len = msg.len();
                    self.rx.copy_within(msg, packet::ICMP_HEADROOM);
                    let buf = &mut self.rx[..packet::ICMP_HEADROOM + len];
                    io.deliver(
                        &self.shared,
                        &self.cfg,
                        buf,
                        packet::ICMP_HEADROOM,
                        now,
                        out,
                    );
                }
                RawRx::Error {
                    dest,
                    ident,
                    icmp_type,
                    code,
                } if relayed_icmp_error(icmp_type, code) => {
                    let Some(io) = self
                        .raw_flow(ident, dest)
                        .and_then(|id| self.flows.get(&id))
                    else {
                        continue;
                    };
                    let (key, mac, quote, n) = (io.key, io.mac, io.quote, io.quote_len);
                    let err = IcmpErr::new(icmp_type, code);
                    self.send_icmp_error(key, mac, &quote[..n], err, out);
                }
                _ => {}
            }
        }
        true
    }

    /// The raw-socket flow with echo identifier `ident` whose (host) destination is `peer`.
    fn raw_flow(&self, ident: u16, peer: Ipv4Addr) -> Option<FlowId> {
        let id = *self.raw_flows.get(&ident)?;
        self.flows
            .get(&id)
            .is_some_and(|io| self.host_target(io.key.dest).ip() == IpAddr::V4(peer))
            .then_some(id)
    }
}

/// A refusal for lack of permission (ping_group_range, a missing capability).
fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// An ICMP error to send an endpoint: type and code of its family, and ICMPv6's 32-bit
/// field after them (the MTU of a packet too big; 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IcmpErr {
    icmp_type: u8,
    code: u8,
    info: u32,
}

impl IcmpErr {
    fn new(icmp_type: u8, code: u8) -> IcmpErr {
        IcmpErr {
            icmp_type,
            code,
            info: 0,
        }
    }
}

/// The destination unreachable a failed send or connect stands for, in the flow's family.
fn unreach_err(e: Errno, v6: bool) -> IcmpErr {
    if v6 {
        let code = match e {
            Errno::ENETUNREACH | Errno::EADDRNOTAVAIL => packet6::UNREACH_NOROUTE,
            Errno::EHOSTUNREACH => packet6::UNREACH_ADDR,
            _ => packet6::UNREACH_PORT,
        };
        return IcmpErr::new(packet6::ICMP6_DEST_UNREACH, code);
    }
    let code = match e {
        Errno::ENETUNREACH | Errno::EADDRNOTAVAIL => packet::UNREACH_NET,
        Errno::EHOSTUNREACH => packet::UNREACH_HOST,
        _ => packet::UNREACH_PORT,
    };
    IcmpErr::new(packet::ICMP_DEST_UNREACH, code)
}

/// A UDP socket of the daemon's namespace, connected to `dest`, with `IP_RECVERR` (or
/// `IPV6_RECVERR`).
fn udp_socket(dest: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let any: SocketAddr = match dest {
        SocketAddr::V4(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.set_nonblocking(true)?;
    match dest {
        SocketAddr::V4(_) => setsockopt(&s, sockopt::Ipv4RecvErr, &true)?,
        SocketAddr::V6(_) => setsockopt(&s, sockopt::Ipv6RecvErr, &true)?,
    }
    s.connect(dest)?;
    Ok(s)
}

/// An ICMPv6 socket connected to `dest` with `IPV6_RECVERR`: an unprivileged datagram
/// ("ping") socket, or with `raw` a raw one (`CAP_NET_RAW`). The datagram socket is refused
/// with EACCES when `net.ipv4.ping_group_range` (which governs ICMPv6 too) excludes the
/// process's group.
fn icmp6_socket(dest: Ipv6Addr, raw: bool) -> io::Result<std::net::UdpSocket> {
    let fd = socket::socket(
        AddressFamily::Inet6,
        if raw {
            SockType::Raw
        } else {
            SockType::Datagram
        },
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )?;
    let s = std::net::UdpSocket::from(fd);
    setsockopt(&s, sockopt::Ipv6RecvErr, &true)?;
    s.connect(SocketAddrV6::new(dest, 0, 0, 0))?;
    Ok(s)
}

/// An unprivileged ICMP datagram ("ping") socket connected to `dest`, with `IP_RECVERR`.
/// Fails with EACCES when `net.ipv4.ping_group_range` does not cover the process's group.
fn icmp_socket(dest: Ipv4Addr) -> io::Result<std::net::UdpSocket> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    let s = std::net::UdpSocket::from(fd);
    setsockopt(&s, sockopt::Ipv4RecvErr, &true)?;
    s.connect(SocketAddrV4::new(dest, 0))?;
    Ok(s)
}

/// Takes every error queued on a socket with `IP_RECVERR`; returns how many there were and
/// the (type, code) of those to relay to the endpoint ([`relayed_icmp_error`]). Errors of
/// local origin (e.g. a path MTU notice) are not relayed.
fn drain_errqueue(fd: RawFd) -> (usize, Vec<IcmpErr>) {
    let mut seen = 0;
    let mut out = Vec::new();
    // Bounded: the queue is bounded by the socket's receive buffer, this loop too.
    for _ in 0..64 {
        let mut data = [0u8; 64];
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let msg = match socket::recvmsg::<SockaddrStorage>(
            fd,
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(_) => break,
        };
        seen += 1;
        let Ok(cmsgs) = msg.cmsgs() else {
            continue;
        };
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4RecvErr(ee, _)
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                        && relayed_icmp_error(ee.ee_type, ee.ee_code) =>
                {
                    out.push(IcmpErr::new(ee.ee_type, ee.ee_code));
                }
                ControlMessageOwned::Ipv6RecvErr(ee, _)
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6
                        && relayed_icmp6_error(ee.ee_type) =>
                {
                    // ee_info: a packet too big's MTU.
                    out.push(IcmpErr {
                        icmp_type: ee.ee_type,
                        code: ee.ee_code,
                        info: ee.ee_info,
                    });
                }
                _ => {}
            }
        }
    }
    (seen, out)
}

/// The ICMPv6 errors relayed to endpoints: destination unreachable, time exceeded and packet
/// too big (with the host path's MTU: harmless to the endpoint, whose own link's MTU is the
/// network's, and what RFC 4443 asks a router to say).
fn relayed_icmp6_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        packet6::ICMP6_DEST_UNREACH | packet6::ICMP6_PACKET_TOO_BIG | packet6::ICMP6_TIME_EXCEEDED
    )
}

/// The ICMP errors relayed to endpoints: destination unreachable (but "fragmentation needed",
/// whose MTU concerns the host's path, not the endpoint's) and time exceeded.
fn relayed_icmp_error(icmp_type: u8, code: u8) -> bool {
    (icmp_type == packet::ICMP_DEST_UNREACH && code != packet::UNREACH_FRAG_NEEDED)
        || icmp_type == packet::ICMP_TIME_EXCEEDED
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::RefCell;

    use arc_swap::ArcSwap;
    use etherparse::{Icmpv4Slice, Ipv4Slice, PacketBuilder};
    use ipnet::Ipv4Net;

    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
    const EP_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    /// A TEST-NET-2 address: outside every netyard network.
    const OUT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    /// An address of another netyard network.
    const OTHER_NET: Ipv4Addr = Ipv4Addr::new(10, 89, 1, 5);

    /// Collects what the engine sends to the switch.
    #[derive(Default)]
    struct Frames(RefCell<Vec<Vec<u8>>>);

    impl FrameSink for Frames {
        fn send_frame(&self, frame: &[u8]) -> bool {
            self.0.borrow_mut().push(frame.to_vec());
            true
        }
    }

    fn budget(cap: usize) -> &'static HostSockets {
        Box::leak(Box::new(HostSockets::with_cap(cap)))
    }

    fn local_subnets(nets: &[&str]) -> LocalSubnets {
        let nets: Vec<Ipv4Net> = nets.iter().map(|n| n.parse().expect("net")).collect();
        Arc::new(ArcSwap::from_pointee(nets))
    }

    /// An engine for 10.0.0.0/24 next to the network 10.89.1.0/24.
    fn engine(host_sockets: &'static HostSockets, local: LocalSubnets) -> (Egress, EgressHandle) {
        Egress::new(EgressConfig {
            enabled: true,
            subnet: Subnet {
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
            },
            gw_mac: GW_MAC,
            mtu: 1500,
            limits: FlowLimits::default(),
            maps: Vec::new(),
            host_sockets,
            local_subnets: local,
            v6: Some(Side6 {
                subnet: packet6::Subnet6 {
                    gateway: GW6,
                    prefix_len: 64,
                },
                // --host-loopback: the gateway's IPv6 address is the host's ::1.
                maps: packet6::effective_maps(GW6, true, &[]),
                local_subnets: Arc::new(ArcSwap::from_pointee(vec!["fd00:2::/64"
                    .parse()
                    .expect("net")])),
            }),
        })
        .expect("engine")
    }

    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
    const EP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

    fn udp6_to(dst: Ipv6Addr, port: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv6(EP6.octets(), dst.octets(), 64)
            .udp(5000, port);
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("udp");
        v
    }

    /// Polls the engine's host sockets until `n` frames came back (bounded).
    fn poll_frames(e: &mut Egress, out: &Frames, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..200 {
            e.poll_host(Instant::now(), out);
            got.extend(out.0.take());
            if got.len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    }

    #[tokio::test]
    async fn ipv6_udp_goes_out_through_a_host_socket_and_its_reply_comes_back_as_ipv6() {
        // A server on the host's ::1, reached as the gateway's IPv6 address (--host-loopback).
        let server = std::net::UdpSocket::bind("[::1]:0").expect("bind ::1");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let (mut e, handle) = engine(budget(16), local_subnets(&[]));
        let out = Frames::default();
        e.outbound(&udp6_to(GW6, port, b"question"), Instant::now(), &out);
        e.flush(&out);
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], b"question");
        server.send_to(b"answer", from).expect("reply");
        let frames = poll_frames(&mut e, &out, 1);
        assert_eq!(frames.len(), 1);
        let mut want = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, EP_MAC)
            .ipv6(GW6.octets(), EP6.octets(), 64)
            .udp(port, 5000)
            .write(&mut want, b"answer")
            .expect("udp");
        assert_eq!(
            frames[0], want,
            "from the gateway's IPv6 address, to the endpoint"
        );
        let flows = handle.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].endpoint.to_string(), "[fd00:1::2]:5000");
    }

    #[tokio::test]
    async fn ipv6_udp_to_another_network_or_loopback_is_refused_with_icmpv6_and_no_socket() {
        let sockets = budget(16);
        let (mut e, handle) = engine(sockets, local_subnets(&[]));
        let out = Frames::default();
        let sent = udp6_to("fd00:2::7".parse().expect("v6"), 53, b"x");
        e.outbound(&sent, Instant::now(), &out);
        e.outbound(
            &udp6_to(Ipv6Addr::LOCALHOST, 53, b"x"),
            Instant::now(),
            &out,
        );
        let frames = out.0.take();
        assert_eq!(frames.len(), 2);
        for f in &frames {
            assert_eq!(&f[..6], &EP_MAC);
            let p = etherparse::SlicedPacket::from_ethernet(f).expect("parses");
            let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
                panic!("ICMPv6")
            };
            assert_eq!(
                icmp.icmp_type(),
                etherparse::Icmpv6Type::DestinationUnreachable(
                    etherparse::icmpv6::DestUnreachableCode::Prohibited
                )
            );
        }
        let p = etherparse::SlicedPacket::from_ethernet(&frames[0]).expect("parses");
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("ICMPv6")
        };
        assert_eq!(
            icmp.payload(),
            &sent[packet::ETH_HDR..],
            "quotes the datagram"
        );
        assert_eq!(
            handle.stats(),
            stats_with(&[("refused_local_network", 1), ("refused_loopback", 1)], 2)
        );
        assert_eq!(sockets.stats().open, 0);
    }

    #[tokio::test]
    async fn ipv6_ping_through_a_host_socket_gets_its_reply_with_the_endpoints_identifier() {
        let (mut e, _handle) = engine(budget(16), local_subnets(&[]));
        let out = Frames::default();
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv6(EP6.octets(), GW6.octets(), 64)
            .icmpv6_echo_request(0x4242, 1);
        let mut ping = Vec::new();
        b.write(&mut ping, b"ping6").expect("echo");
        e.outbound(&ping, Instant::now(), &out);
        e.flush(&out);
        let frames = poll_frames(&mut e, &out, 1);
        assert_eq!(frames.len(), 1, "the host's ::1 answers");
        let mut want = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, EP_MAC)
            .ipv6(GW6.octets(), EP6.octets(), 64)
            .icmpv6_echo_reply(0x4242, 1)
            .write(&mut want, b"ping6")
            .expect("reply");
        assert_eq!(frames[0], want);
    }

    fn udp_to(dst: Ipv4Addr) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv4(EP.octets(), dst.octets(), 64)
            .udp(5000, 7);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").expect("udp");
        v
    }

    fn ping_to(dst: Ipv4Addr) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv4(EP.octets(), dst.octets(), 64)
            .icmpv4_echo_request(0x1234, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").expect("echo");
        v
    }

    /// The stats of an engine that saw nothing but `drops` and sent `icmp_errors` errors.
    fn stats_with(drops: &[(&'static str, u64)], icmp_errors: u64) -> EgressStats {
        let mut want = EgressStats {
            enabled: true,
            max_flows: FlowLimits::DEFAULT_MAX_TOTAL,
            max_flows_per_endpoint: FlowLimits::DEFAULT_MAX_PER_ENDPOINT,
            icmp_errors_sent: icmp_errors,
            drops: EgressDrop::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            ..EgressStats::default()
        };
        for (name, n) in drops {
            want.drops.insert(name, *n);
            want.drops_total += n;
        }
        want
    }

    /// The (type, code, source, destination, quoted bytes) of an ICMP error frame.
    fn icmp_error(f: &[u8]) -> (u8, u8, Ipv4Addr, Ipv4Addr, Vec<u8>) {
        assert_eq!(&f[..6], &EP_MAC, "to the endpoint's MAC");
        let ip = Ipv4Slice::from_slice(&f[packet::ETH_HDR..]).expect("ipv4");
        let icmp = Icmpv4Slice::from_slice(ip.payload().payload).expect("icmp");
        let h = ip.header();
        (
            icmp.type_u8(),
            icmp.code_u8(),
            h.source_addr(),
            h.destination_addr(),
            icmp.payload().to_vec(),
        )
    }

    #[tokio::test]
    async fn udp_to_another_networks_subnet_is_refused_administratively_and_opens_no_socket() {
        let sockets = budget(16);
        let (mut e, handle) = engine(sockets, local_subnets(&["10.0.0.0/24", "10.89.1.0/24"]));
        let out = Frames::default();
        let sent = udp_to(OTHER_NET);
        e.outbound(&sent, Instant::now(), &out);
        e.flush(&out);
        let frames = out.0.take();
        assert_eq!(frames.len(), 1, "one ICMP error");
        let quote = sent[packet::ETH_HDR..packet::ETH_HDR + 28].to_vec();
        assert_eq!(
            icmp_error(&frames[0]),
            (3, 13, Ipv4Addr::new(10, 0, 0, 1), EP, quote),
            "administratively prohibited, from the gateway, quoting the datagram"
        );
        assert_eq!(
            handle.stats(),
            stats_with(&[("refused_local_network", 1)], 1)
        );
        assert!(handle.flows().is_empty());
        assert_eq!(sockets.stats().open, 0, "no host socket");
    }

    #[tokio::test]
    async fn ping_to_the_hosts_loopback_is_refused_as_refused_loopback() {
        let sockets = budget(16);
        let (mut e, handle) = engine(sockets, local_subnets(&[]));
        let out = Frames::default();
        e.outbound(&ping_to(Ipv4Addr::new(127, 0, 0, 1)), Instant::now(), &out);
        let frames = out.0.take();
        assert_eq!(frames.len(), 1);
        let (t, c, from, to, _) = icmp_error(&frames[0]);
        assert_eq!((t, c, from, to), (3, 13, Ipv4Addr::new(10, 0, 0, 1), EP));
        assert_eq!(handle.stats(), stats_with(&[("refused_loopback", 1)], 1));
        assert_eq!(sockets.stats().open, 0);
    }

    #[tokio::test]
    async fn a_network_added_to_the_shared_list_is_refused_from_its_next_packet() {
        let local = local_subnets(&["10.0.0.0/24"]);
        let (mut e, handle) = engine(budget(0), local.clone());
        let out = Frames::default();
        // Not local yet: it goes on to the flow table and meets the (zero) socket cap.
        e.outbound(&udp_to(OTHER_NET), Instant::now(), &out);
        assert!(out.0.take().is_empty());
        local.store(Arc::new(vec![
            "10.0.0.0/24".parse().expect("net"),
            "10.89.0.0/16".parse().expect("net"),
        ]));
        e.outbound(&udp_to(OTHER_NET), Instant::now(), &out);
        assert_eq!(out.0.take().len(), 1);
        assert_eq!(
            handle.stats(),
            stats_with(&[("host_socket_cap", 1), ("refused_local_network", 1)], 1)
        );
    }

    #[tokio::test]
    async fn at_the_host_socket_cap_a_new_flow_is_dropped_as_host_socket_cap_like_a_full_table() {
        let sockets = budget(0);
        let (mut e, handle) = engine(sockets, local_subnets(&[]));
        let out = Frames::default();
        e.outbound(&udp_to(OUT), Instant::now(), &out);
        e.outbound(&ping_to(OUT), Instant::now(), &out);
        e.flush(&out);
        assert!(out.0.take().is_empty(), "no answer, as for a full table");
        assert_eq!(handle.stats(), stats_with(&[("host_socket_cap", 2)], 0));
        assert!(
            handle.flows().is_empty(),
            "the refused flows left the table"
        );
        assert_eq!(sockets.stats().refused, 2);
    }

    #[test]
    fn every_reason_has_its_own_counter_and_name() {
        let c = EgressCounters::default();
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in EgressDrop::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL must list reasons in declaration order");
            assert!(names.insert(r.as_str()), "{} named twice", r.as_str());
            c.drop(*r);
        }
        assert!(EgressDrop::ALL.iter().all(|r| c.drops(*r) == 1));
    }

    #[test]
    fn relays_unreachable_and_time_exceeded_only() {
        assert!(relayed_icmp_error(3, 3));
        assert!(relayed_icmp_error(3, 1));
        assert!(relayed_icmp_error(11, 0));
        assert!(!relayed_icmp_error(3, 4));
        assert!(!relayed_icmp_error(0, 0));
        assert!(!relayed_icmp_error(5, 1));
    }
}
