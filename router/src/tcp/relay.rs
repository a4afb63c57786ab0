//! The TCP relay's driver: host sockets, their readiness, the connection table and the
//! published listeners. All on the gateway task: the state machine ([`super::conn`]) decides,
//! this module does the I/O.
//!
//! Readiness of every host socket (connections and listeners) comes from one epoll instance of
//! our own, registered edge-triggered; the epoll fd itself is what the gateway task waits on
//! (through tokio), so one task serves any number of connections with no channel and no lock
//! per segment. Edge-triggered means a socket reports readiness once: the `readable` flag
//! remembers data we have not read yet (because the ring towards the endpoint was full), and
//! the socket is read again when the endpoint's ACKs make room.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::uplink::Uplink;
use netyard_switch::MacAddr;
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use tokio::io::unix::AsyncFd;

use crate::epoll::{async_epoll, EpollFd};
use crate::limits::{HostSocketPermit, HostSockets};

use super::conn::{Conn, HostIo, Next, ReadEnd, SegOut, State};
use super::seg::{self, Addressing, Seg, SegHdr, ACK, RST, SYN};
use crate::conntrack::{CapHit, FlowId, FlowKey, Verdict};
use crate::counters::Shared;
use crate::drops::EgressDrop;
use crate::packet::{self, LocalSubnets, Subnet};
use crate::packet6::{self, Side6};
use crate::publish::{HostSocket, PublishId, PublishRule};
use crate::sink::{FrameSink, VnetSink};

/// Each direction's buffer per connection.
const RING: usize = 1 << 20;
/// Epoll events taken per wait.
const EVENTS: usize = 64;
/// Connections accepted per listener wake-up.
const ACCEPT_BURST: usize = 64;
/// Token bit of listener sockets.
const LISTENER: u64 = 1 << 63;
/// How often timers are checked and flow stats published.
const TICK: Duration = Duration::from_millis(25);
const STATS_EVERY: Duration = Duration::from_secs(1);
/// A destination that neither accepts nor refuses within this is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports shown as the source of published connections from loopback clients, or IPv6 ones
/// of an endpoint without IPv6 (the gateway's address stands in for them).
const MASQ_PORTS: std::ops::RangeInclusive<u16> = 61_000..=65_000;

/// What the relay knows of its gateway.
#[derive(Debug, Clone)]
pub(crate) struct RelayConfig {
    pub subnet: Subnet,
    pub gw_mac: [u8; 6],
    pub mtu: usize,
    /// Destination maps, `--host-loopback` included ([`packet::effective_maps`]).
    pub maps: Vec<packet::AddrMap>,
    /// The gateway's own addresses (its address and the extra ones): TCP to one of them is
    /// the relay's only when mapped (and not DNS) or a published connection's.
    pub own: Vec<Ipv4Addr>,
    /// The budget every connection's host socket is counted in (the process's, but in tests).
    pub host_sockets: &'static HostSockets,
    /// Every netyard network's subnet: connections there are refused locally.
    pub local_subnets: LocalSubnets,
    /// The gateway's IPv6 side, on a dual-stack network.
    pub v6: Option<Side6>,
}

struct Entry {
    conn: Conn,
    sock: TcpStream,
    /// The socket's place under the host socket cap (after `sock`: given back once it closed).
    _permit: HostSocketPermit,
    addr: Addressing,
    flow: FlowId,
    created: Instant,
    readable: bool,
    /// The endpoint's SYN (IPv4 header + 8 bytes), quoted in an ICMP error if connecting fails.
    quote: Vec<u8>,
}

struct Listener {
    sock: HostSocket,
    container: SocketAddrV4,
    /// The endpoint's IPv6 address and the container port, when it has one: IPv6 clients
    /// go there.
    container6: Option<SocketAddrV6>,
    mac: [u8; 6],
}

/// A published UDP flow: datagrams from `client` on a published socket go to the endpoint as
/// coming from `shown`; the endpoint's replies to `shown` go back out of that socket.
struct UdpPub {
    listener: u64,
    client: SocketAddr,
    last: Instant,
}

/// [`SegOut`] to the switch: builds each segment in one reused buffer.
struct Wire<'a> {
    peer: &'a Uplink,
    buf: &'a mut Vec<u8>,
    addr: &'a Addressing,
    ip_id: &'a mut u16,
}

impl SegOut for Wire<'_> {
    fn send(&mut self, h: &SegHdr, payload: (&[u8], &[u8]), mss: u16) -> bool {
        seg::build(self.buf, self.addr, h, payload, mss, *self.ip_id);
        let segs = (payload.0.len() + payload.1.len()).div_ceil(usize::from(mss.max(1)));
        *self.ip_id = self.ip_id.wrapping_add(segs.max(1) as u16);
        self.peer.send(self.buf)
    }
}

/// [`HostIo`] on a host socket.
struct Host<'a>(&'a TcpStream);

impl HostIo for Host<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.0;
        s.write(data)
    }
    fn shutdown_write(&mut self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

pub(crate) struct Relay {
    cfg: RelayConfig,
    shared: Arc<Shared>,
    epoll: Arc<AsyncFd<EpollFd>>,
    conns: HashMap<u64, Entry>,
    by_key: HashMap<(SocketAddr, SocketAddr), u64>,
    listeners: HashMap<u64, Listener>,
    rules: HashMap<PublishId, Vec<u64>>,
    udp: HashMap<(SocketAddr, SocketAddr), UdpPub>,
    /// The same flows by (listener, client): the key `udp` has them under.
    udp_clients: HashMap<(u64, SocketAddr), (SocketAddr, SocketAddr)>,
    next_token: u64,
    frame: Vec<u8>,
    ip_id: u16,
    owed: Vec<u64>,
    /// RFC 6528's secret: the keyed hash of a connection's addresses in its ISS.
    isn: RandomState,
    /// RFC 6528's clock origin.
    epoch: Instant,
    masq_next: u16,
    next_tick: Option<Instant>,
    next_stats: Instant,
    /// Some connection could not send (full switch queue): retry soon.
    blocked: bool,
    udp_buf: Vec<u8>,
}

fn linger_zero(fd: &impl AsFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(fd, sockopt::Linger, &l);
}

/// Starts a non-blocking connect to `dest`.
fn connect(dest: SocketAddr) -> io::Result<TcpStream> {
    let family = match dest {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // The endpoint's stack already decided its segment boundaries: pass them on.
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(dest)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

impl Relay {
    pub(crate) fn new(
        cfg: RelayConfig,
        shared: Arc<Shared>,
    ) -> io::Result<(Relay, Arc<AsyncFd<EpollFd>>)> {
        let epoll = async_epoll()?;
        let relay = Relay {
            cfg,
            shared,
            epoll: epoll.clone(),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            listeners: HashMap::new(),
            rules: HashMap::new(),
            udp: HashMap::new(),
            udp_clients: HashMap::new(),
            next_token: 1,
            frame: Vec::with_capacity(seg::MAX_FRAME + 64),
            ip_id: 1,
            owed: Vec::new(),
            isn: RandomState::new(),
            epoch: Instant::now(),
            masq_next: *MASQ_PORTS.start(),
            next_tick: None,
            next_stats: Instant::now() + STATS_EVERY,
            blocked: false,
            udp_buf: vec![0u8; 65_536],
        };
        Ok((relay, epoll))
    }

    fn count(&self, r: EgressDrop) {
        self.shared.counters.drop(r);
    }

    /// Our MSS: the MTU less the IP and TCP headers of the connection's family.
    fn mss(&self, v6: bool) -> u16 {
        let headers = if v6 { 60 } else { 40 };
        u16::try_from(self.cfg.mtu.saturating_sub(headers))
            .unwrap_or(u16::MAX)
            .max(536)
    }

    /// The initial sequence number of our side of a connection between `ours` and `theirs`
    /// (RFC 6528: a 4 µs clock plus a keyed hash of the addresses). A random ISS would break
    /// address reuse: when a client reconnects from the same port while the container still
    /// holds the previous connection in TIME_WAIT, Linux takes the new SYN only if its sequence
    /// number is above the old connection's (we send no timestamps), and answers anything else
    /// with a bare ACK, which costs the new connection an RST and a SYN retransmission.
    fn iss(&self, ours: SocketAddr, theirs: SocketAddr) -> u32 {
        let ticks = (self.epoch.elapsed().as_micros() / 4) as u32;
        ticks.wrapping_add(self.isn.hash_one((ours, theirs)) as u32)
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn register(&self, fd: &impl AsFd, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        self.epoll
            .get_ref()
            .0
            .add(fd, EpollEvent::new(flags, token))?;
        Ok(())
    }

    /// Whether a TCP frame to one of the gateway's own addresses is the relay's: a published
    /// connection shown as coming from the gateway, or (a mapped address, as the gateway's
    /// under `--host-loopback`) anything but DNS.
    pub(crate) fn owns_gateway_tcp(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        self.by_key.contains_key(&(src, dst))
            || (self.shared.enabled && dst.port() != 53 && self.mapped(dst.ip()).is_some())
    }

    /// Where a destination map sends `dst`, in its family.
    fn mapped(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(d) => packet::mapped(d, &self.cfg.maps).map(IpAddr::V4),
            IpAddr::V6(d) => {
                let maps = self.cfg.v6.as_ref().map_or(&[][..], |v6| &v6.maps[..]);
                packet6::mapped(d, maps).map(IpAddr::V6)
            }
        }
    }

    /// Whether a UDP datagram from an endpoint answers a published UDP flow.
    pub(crate) fn owns_udp(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        self.udp.contains_key(&(src, dst))
    }

    /// When the gateway task should next call [`Relay::tick`].
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        if self.blocked {
            return Some(Instant::now() + Duration::from_millis(1));
        }
        self.next_tick
    }

    /// Answers a segment that belongs to no connection with RST (RFC 9293 3.10.7.1).
    fn refuse(&mut self, s: &Seg<'_>, peer: &Uplink) {
        if s.has(RST) {
            return;
        }
        self.count(EgressDrop::TcpNoConnection);
        let addr = Addressing {
            gw_mac: self.cfg.gw_mac,
            endpoint_mac: s.src_mac,
            from: s.dst,
            to: s.src,
        };
        let h = if s.has(ACK) {
            SegHdr {
                seq: s.ack,
                ack: 0,
                flags: RST,
                window: 0,
                syn: None,
            }
        } else {
            SegHdr {
                seq: 0,
                ack: s.seq.wrapping_add(s.seq_len()),
                flags: RST | ACK,
                window: 0,
                syn: None,
            }
        };
        self.send_rst(&addr, h, peer);
    }

    /// Sends a bare RST (or RST-ACK) segment to an endpoint.
    fn send_rst(&mut self, addr: &Addressing, h: SegHdr, peer: &Uplink) {
        let mut w = Wire {
            peer,
            buf: &mut self.frame,
            addr,
            ip_id: &mut self.ip_id,
        };
        w.send(&h, (&[], &[]), 1460);
    }

    /// Handles one TCP frame (Ethernet, no virtio-net header) an endpoint sent to the relay.
    pub(crate) fn segment(
        &mut self,
        frame: &[u8],
        csum_trusted: bool,
        now: Instant,
        peer: &Uplink,
    ) {
        let s = match seg::parse(frame, csum_trusted) {
            Ok(s) => s,
            Err(r) => {
                self.count(r);
                return;
            }
        };
        if let Some(&t) = self.by_key.get(&(s.src, s.dst)) {
            self.on_segment(t, &s, now, peer);
            return;
        }
        if !s.has(SYN) || s.has(ACK) {
            self.refuse(&s, peer);
            return;
        }
        self.open_egress(&s, now, peer);
    }

    fn on_segment(&mut self, t: u64, s: &Seg<'_>, now: Instant, peer: &Uplink) {
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        e.addr.endpoint_mac = s.src_mac;
        let mut w = Wire {
            peer,
            buf: &mut self.frame,
            addr: &e.addr,
            ip_id: &mut self.ip_id,
        };
        let next = e.conn.segment(s, now, &mut Host(&e.sock), &mut w);
        if next == Next::Abort && !s.has(RST) {
            e.conn.reset(&mut w);
        }
        if e.conn.ack_owed {
            self.owed.push(t);
        }
        match next {
            Next::Continue => self.service(t, now, peer),
            n => self.close(t, n),
        }
    }

    fn open_egress(&mut self, s: &Seg<'_>, now: Instant, peer: &Uplink) {
        if !self.shared.enabled {
            self.count(EgressDrop::Disabled);
            return;
        }
        let target = match self.egress_target(s) {
            Target::Connect(t) => t,
            Target::Refuse => {
                // The gateway's own address, unmapped: nothing listens there.
                self.refuse(s, peer);
                return;
            }
            Target::Prohibited(r) => {
                // Another netyard network or the host's loopback: the endpoint's connect
                // fails at once (EHOSTUNREACH, or EACCES over IPv6), and no host socket is
                // opened.
                self.count(r.reason());
                let addr = Addressing {
                    gw_mac: self.cfg.gw_mac,
                    endpoint_mac: s.src_mac,
                    from: s.dst,
                    to: s.src,
                };
                self.send_unreachable(&addr, s.quote, Unreach::Prohibited, peer);
                return;
            }
            Target::Drop(r) => {
                self.count(r);
                return;
            }
        };
        if s.ttl <= 1 {
            self.count(EgressDrop::TtlExpired);
            return;
        }
        let key = FlowKey::tcp(s.src, s.dst);
        // Counted against the MAC that sent the SYN, not the address it wrote.
        let flow = match self.admit(key, MacAddr(s.src_mac), now) {
            Some(f) => f,
            None => return,
        };
        // Under the host socket cap, or dropped as a SYN meeting a full flow table is (the
        // endpoint retries).
        let Some(permit) = self.cfg.host_sockets.try_acquire() else {
            self.shared.table().remove(flow);
            self.count(EgressDrop::HostSocketCap);
            return;
        };
        let addr = Addressing {
            gw_mac: self.cfg.gw_mac,
            endpoint_mac: s.src_mac,
            from: s.dst,
            to: s.src,
        };
        let sock = match connect(target) {
            Ok(sock) => sock,
            Err(e) => {
                self.shared.table().remove(flow);
                self.connect_failed(s.seq.wrapping_add(1), &addr, s.quote, e, peer);
                return;
            }
        };
        let t = self.token();
        if let Err(e) = self.register(&sock, t) {
            tracing::debug!(error = %e, "cannot watch a host socket");
            self.shared.table().remove(flow);
            self.count(EgressDrop::HostSocketError);
            return;
        }
        let iss = self.iss(s.dst, s.src);
        let conn = Conn::from_syn(s, iss, self.mss(s.src.is_ipv6()), RING);
        self.by_key.insert((s.src, s.dst), t);
        self.conns.insert(
            t,
            Entry {
                conn,
                sock,
                _permit: permit,
                addr,
                flow,
                created: now,
                readable: false,
                quote: s.quote.to_vec(),
            },
        );
        self.shared.counters.flows_created.fetch_add(1, Relaxed);
        self.next_tick.get_or_insert(now + TICK);
    }

    /// Where an endpoint's SYN goes: the host address to connect to, or why not. The source
    /// is checked first: nothing is answered to an address the sender made up.
    fn egress_target(&self, s: &Seg<'_>) -> Target {
        match (s.src.ip(), s.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst_ip)) => {
                if !self.cfg.subnet.valid_source(src) {
                    return Target::Drop(EgressDrop::BadAddress);
                }
                if let Some(host) = packet::mapped(dst_ip, &self.cfg.maps) {
                    return Target::Connect(SocketAddrV4::new(host, s.dst.port()).into());
                }
                if dst_ip == self.cfg.subnet.gateway || self.cfg.own.contains(&dst_ip) {
                    return Target::Refuse;
                }
                if let Err(r) = packet::egress_target(
                    dst_ip,
                    &self.cfg.subnet,
                    &self.cfg.maps,
                    &self.cfg.local_subnets.load(),
                ) {
                    return Target::Prohibited(r);
                }
                if packet::unroutable_destination(dst_ip) {
                    return Target::Drop(EgressDrop::BadAddress);
                }
                Target::Connect(s.dst)
            }
            (IpAddr::V6(src), IpAddr::V6(dst_ip)) => {
                let Some(v6) = &self.cfg.v6 else {
                    return Target::Drop(EgressDrop::Unsupported);
                };
                if !v6.subnet.valid_source(src) {
                    return Target::Drop(EgressDrop::BadAddress);
                }
                if let Some(host) = packet6::mapped(dst_ip, &v6.maps) {
                    return Target::Connect(SocketAddrV6::new(host, s.dst.port(), 0, 0).into());
                }
                if dst_ip == v6.subnet.gateway {
                    return Target::Refuse;
                }
                if packet6::unroutable_destination(dst_ip) {
                    return Target::Drop(EgressDrop::BadAddress);
                }
                match packet6::egress_target(dst_ip, &v6.subnet, &v6.maps, &v6.local_subnets.load())
                {
                    Ok(_) => Target::Connect(s.dst),
                    Err(r) => Target::Prohibited(r),
                }
            }
            _ => Target::Drop(EgressDrop::Malformed),
        }
    }

    /// Admits a new connection of endpoint `owner` in the shared flow table, or counts the cap
    /// it hit.
    fn admit(&mut self, key: FlowKey, owner: MacAddr, now: Instant) -> Option<FlowId> {
        match self.shared.table().outbound(key, owner, 0, now) {
            Verdict::New(id) | Verdict::Existing(id) => Some(id),
            Verdict::Drop(CapHit::Endpoint) => {
                self.count(EgressDrop::EndpointFlowCap);
                None
            }
            Verdict::Drop(CapHit::Total) => {
                self.count(EgressDrop::FlowTableFull);
                None
            }
        }
    }

    /// The destination refused or cannot be reached: RST for a refusal (the endpoint's
    /// connect fails with ECONNREFUSED at once), ICMP unreachable otherwise.
    /// `syn_ack` acknowledges the endpoint's SYN (its ISN + 1).
    fn connect_failed(
        &mut self,
        syn_ack: u32,
        addr: &Addressing,
        quote: &[u8],
        e: io::Error,
        peer: &Uplink,
    ) {
        let errno = e.raw_os_error().map(Errno::from_raw);
        let code = match errno {
            Some(Errno::ECONNREFUSED) | None => None,
            // EADDRNOTAVAIL: an IPv6 destination on a host without an IPv6 address.
            Some(Errno::ENETUNREACH | Errno::EADDRNOTAVAIL) => Some(Unreach::Net),
            Some(Errno::EHOSTUNREACH | Errno::ETIMEDOUT) => Some(Unreach::Host),
            Some(Errno::EACCES | Errno::EPERM) => Some(Unreach::Prohibited),
            Some(_) => None,
        };
        match code {
            Some(code) => {
                self.count(EgressDrop::Unreachable);
                self.send_unreachable(addr, quote, code, peer);
            }
            None => {
                let h = SegHdr {
                    seq: 0,
                    ack: syn_ack,
                    flags: RST | ACK,
                    window: 0,
                    syn: None,
                };
                self.send_rst(addr, h, peer);
            }
        }
    }

    /// Sends the endpoint of `addr` an ICMP (or ICMPv6) destination unreachable from the
    /// gateway, quoting its SYN.
    fn send_unreachable(&mut self, addr: &Addressing, quote: &[u8], why: Unreach, peer: &Uplink) {
        self.ip_id = self.ip_id.wrapping_add(1);
        let f = match addr.to.ip() {
            IpAddr::V4(to) => packet::unreachable_frame(
                self.cfg.subnet.gateway,
                to,
                why.code_v4(),
                quote,
                self.ip_id,
                self.cfg.gw_mac,
            ),
            IpAddr::V6(to) => {
                let Some(v6) = &self.cfg.v6 else {
                    return;
                };
                packet6::icmp_error_frame(
                    v6.subnet.gateway,
                    to,
                    packet6::ICMP6_DEST_UNREACH,
                    why.code_v6(),
                    0,
                    quote,
                    self.cfg.gw_mac,
                )
            }
        };
        let Some(mut f) = f else {
            return;
        };
        packet::set_eth_dst(&mut f, addr.endpoint_mac);
        if VnetSink(peer).send_frame(&f) {
            self.shared.counters.icmp_errors_sent.fetch_add(1, Relaxed);
        }
    }

    /// Reads and writes what a connection's host socket allows, and sends what that makes
    /// possible.
    fn service(&mut self, t: u64, now: Instant, peer: &Uplink) {
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        if e.conn.state != State::Established {
            return;
        }
        let mut w = Wire {
            peer,
            buf: &mut self.frame,
            addr: &e.addr,
            ip_id: &mut self.ip_id,
        };
        if !e.conn.to_host.is_empty() && e.conn.flush(&mut Host(&e.sock)).is_err() {
            e.conn.reset(&mut w);
            self.close(t, Next::Abort);
            return;
        }
        if e.readable && e.conn.wants_read() {
            let mut sock = &e.sock;
            match e.conn.fill(|b| sock.read(b)) {
                Ok(ReadEnd::Eof) => e.readable = false,
                Ok(ReadEnd::Paused) => e.readable = !e.conn.wants_read(),
                Err(_) => {
                    // The destination reset: so does the endpoint's connection.
                    e.conn.reset(&mut w);
                    self.close(t, Next::Abort);
                    return;
                }
            }
            // `readable` stays set while the ring is full (data may be waiting).
            if !e.conn.wants_read() && !e.conn.host_eof() {
                e.readable = true;
            }
        }
        e.conn.push(now, &mut w);
        if e.conn.blocked {
            self.blocked = true;
        }
        if e.conn.finish(&mut w) {
            self.close(t, Next::Done);
            return;
        }
        if e.conn.ack_owed {
            self.owed.push(t);
        }
    }

    /// Sends the ACKs owed after a burst of segments (one per connection, however many
    /// segments it took).
    pub(crate) fn flush_acks(&mut self, peer: &Uplink) {
        while let Some(t) = self.owed.pop() {
            let Some(e) = self.conns.get_mut(&t) else {
                continue;
            };
            if e.conn.ack_owed {
                let mut w = Wire {
                    peer,
                    buf: &mut self.frame,
                    addr: &e.addr,
                    ip_id: &mut self.ip_id,
                };
                e.conn.send_ack(&mut w);
                if e.conn.ack_owed {
                    // The switch queue is full: retry with the blocked connections.
                    e.conn.blocked = true;
                    self.blocked = true;
                }
            }
        }
    }

    /// Handles whatever the host sockets reported.
    pub(crate) fn poll_host(&mut self, now: Instant, peer: &Uplink) -> bool {
        let mut events = [EpollEvent::empty(); EVENTS];
        let n = match self.epoll.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(_) => return false,
        };
        for ev in &events[..n] {
            let t = ev.data();
            let f = ev.events();
            if t & LISTENER != 0 {
                self.on_listener(t, now, peer);
                continue;
            }
            let Some(e) = self.conns.get_mut(&t) else {
                continue;
            };
            if e.conn.state == State::Connecting {
                if !f.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                {
                    continue;
                }
                match e.sock.take_error() {
                    Ok(None) if !f.contains(EpollFlags::EPOLLHUP) => {
                        let mut w = Wire {
                            peer,
                            buf: &mut self.frame,
                            addr: &e.addr,
                            ip_id: &mut self.ip_id,
                        };
                        e.conn.host_connected(now, &mut w);
                        e.readable = f.contains(EpollFlags::EPOLLIN);
                    }
                    Ok(err) => {
                        let err =
                            err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ECONNREFUSED));
                        let Some(e) = self.remove(t) else {
                            continue;
                        };
                        self.connect_failed(e.conn.rcv_nxt(), &e.addr, &e.quote, err, peer);
                    }
                    Err(err) => {
                        let Some(e) = self.remove(t) else {
                            continue;
                        };
                        self.connect_failed(e.conn.rcv_nxt(), &e.addr, &e.quote, err, peer);
                    }
                }
                continue;
            }
            if f.intersects(
                EpollFlags::EPOLLIN
                    | EpollFlags::EPOLLRDHUP
                    | EpollFlags::EPOLLHUP
                    | EpollFlags::EPOLLERR,
            ) {
                e.readable = true;
            }
            self.service(t, now, peer);
        }
        self.flush_acks(peer);
        n == EVENTS
    }

    fn remove(&mut self, t: u64) -> Option<Entry> {
        let e = self.conns.remove(&t)?;
        self.by_key.remove(&(e.addr.to, e.addr.from));
        let _ = self.epoll.get_ref().0.delete(&e.sock);
        self.shared.table().remove(e.flow);
        Some(e)
    }

    fn close(&mut self, t: u64, how: Next) {
        if let Some(e) = self.remove(t) {
            if how == Next::Abort {
                // The destination sees RST, as the endpoint did.
                linger_zero(&e.sock);
            }
        }
    }

    /// Timers, flow stats, retries after a full switch queue.
    pub(crate) fn tick(&mut self, now: Instant, peer: &Uplink) {
        if self.blocked {
            self.blocked = false;
            let ts: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, e)| e.conn.blocked)
                .map(|(t, _)| *t)
                .collect();
            for t in ts {
                self.service(t, now, peer);
            }
            self.flush_acks(peer);
        }
        if self.next_tick.is_some_and(|d| now >= d) {
            let mut dead = Vec::new();
            let mut timed_out = Vec::new();
            for (t, e) in self.conns.iter_mut() {
                if e.conn.state == State::Connecting {
                    if now.duration_since(e.created) > CONNECT_TIMEOUT {
                        timed_out.push(*t);
                    }
                    continue;
                }
                let mut w = Wire {
                    peer,
                    buf: &mut self.frame,
                    addr: &e.addr,
                    ip_id: &mut self.ip_id,
                };
                if e.conn.tick(now, &mut w) != Next::Continue {
                    dead.push(*t);
                }
            }
            for t in dead {
                self.close(t, Next::Abort);
            }
            for t in timed_out {
                if let Some(e) = self.remove(t) {
                    let err = io::Error::from_raw_os_error(libc::ETIMEDOUT);
                    self.connect_failed(e.conn.rcv_nxt(), &e.addr, &e.quote, err, peer);
                }
            }
            self.expire_udp(now);
            self.next_tick = (!self.conns.is_empty() || !self.udp.is_empty()).then_some(now + TICK);
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            let mut table = self.shared.table();
            for e in self.conns.values() {
                let state = e.conn.flow_state();
                let (o, b) = e.conn.byte_totals();
                table.tcp_update(e.flow, state, o, b, now);
            }
        }
    }

    // ---- published ports ----

    /// Starts serving a published port's sockets.
    pub(crate) fn publish(&mut self, id: PublishId, rule: PublishRule) {
        let mut tokens = Vec::new();
        for sock in rule.sockets {
            let t = LISTENER | self.token();
            let ok = match &sock {
                HostSocket::Tcp(l) => l.set_nonblocking(true).and_then(|_| self.register(l, t)),
                HostSocket::Udp(u) => u.set_nonblocking(true).and_then(|_| self.register(u, t)),
            };
            if let Err(e) = ok {
                tracing::warn!(error = %e, "cannot watch a published socket");
                continue;
            }
            tokens.push(t);
            self.listeners.insert(
                t,
                Listener {
                    sock,
                    container: rule.container,
                    container6: rule.container6,
                    mac: rule.container_mac,
                },
            );
        }
        self.rules.insert(id, tokens);
    }

    /// Stops a published port (its listening sockets close; connections carry on).
    pub(crate) fn unpublish(&mut self, id: PublishId) {
        for t in self.rules.remove(&id).unwrap_or_default() {
            if let Some(l) = self.listeners.remove(&t) {
                let _ = match &l.sock {
                    HostSocket::Tcp(s) => self.epoll.get_ref().0.delete(s),
                    HostSocket::Udp(s) => self.epoll.get_ref().0.delete(s),
                };
            }
        }
        self.udp
            .retain(|_, u| self.listeners.contains_key(&u.listener));
        self.forget_gone_udp_clients();
    }

    /// Drops the client index entries whose flow is gone.
    fn forget_gone_udp_clients(&mut self) {
        let udp = &self.udp;
        self.udp_clients.retain(|_, key| udp.contains_key(key));
    }

    /// Where a published connection (or UDP flow) from `client` goes, and what the endpoint
    /// sees as its source: `(target, shown)`. An IPv6 client (not IPv4-mapped) reaches the
    /// endpoint's IPv6 address when it has one (and the network IPv6); every other client
    /// reaches its IPv4 address. The client itself is shown when the endpoint can answer it
    /// (not loopback, unspecified, link-local or inside the network, and no connection of
    /// that pair yet); else the gateway's address of the target's family stands in, with a
    /// port of its own. An IPv6 client of an endpoint without IPv6 is shown as the IPv4
    /// gateway, as before IPv6 existed.
    fn route_client(
        &mut self,
        client: SocketAddr,
        container: SocketAddrV4,
        container6: Option<SocketAddrV6>,
        tcp: bool,
    ) -> (SocketAddr, SocketAddr) {
        let v4 = match client {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map(|ip| SocketAddrV4::new(ip, a.port())),
        };
        let (target, candidate): (SocketAddr, Option<SocketAddr>) = match (v4, client) {
            (Some(a), _) => {
                let ip = *a.ip();
                let ok = !ip.is_loopback() && !ip.is_unspecified() && !self.cfg.subnet.contains(ip);
                (container.into(), ok.then_some(a.into()))
            }
            (None, SocketAddr::V6(a)) => match (container6, &self.cfg.v6) {
                (Some(c6), Some(v6)) => {
                    let ip = *a.ip();
                    let ok = !ip.is_loopback()
                        && !ip.is_unspecified()
                        && !packet6::unroutable_destination(ip)
                        && !v6.subnet.contains(ip);
                    // Flow label and scope dropped: the key must match what segments parse to.
                    let shown = SocketAddrV6::new(ip, a.port(), 0, 0);
                    (c6.into(), ok.then_some(shown.into()))
                }
                _ => (container.into(), None),
            },
            (None, SocketAddr::V4(_)) => (container.into(), None),
        };
        if let Some(c) = candidate {
            let clash = tcp && self.by_key.contains_key(&(target, c));
            if !clash {
                return (target, c);
            }
        }
        let gw: IpAddr = match (target, &self.cfg.v6) {
            (SocketAddr::V6(_), Some(v6)) => v6.subnet.gateway.into(),
            _ => self.cfg.subnet.gateway.into(),
        };
        // The gateway stands in, with a fresh port.
        for _ in 0..=(MASQ_PORTS.end() - MASQ_PORTS.start()) {
            let p = self.masq_next;
            self.masq_next = if p >= *MASQ_PORTS.end() {
                *MASQ_PORTS.start()
            } else {
                p + 1
            };
            let a = SocketAddr::new(gw, p);
            let used = if tcp {
                self.by_key.contains_key(&(target, a))
            } else {
                self.udp.contains_key(&(target, a))
            };
            if !used {
                return (target, a);
            }
        }
        (target, SocketAddr::new(gw, *MASQ_PORTS.start()))
    }

    fn on_listener(&mut self, t: u64, now: Instant, peer: &Uplink) {
        let Some(l) = self.listeners.get(&t) else {
            return;
        };
        let (container, container6, mac) = (l.container, l.container6, l.mac);
        match &l.sock {
            HostSocket::Tcp(ls) => {
                let mut accepted = Vec::new();
                for _ in 0..ACCEPT_BURST {
                    match ls.accept() {
                        Ok(c) => accepted.push(c),
                        Err(_) => break,
                    }
                }
                if accepted.len() == ACCEPT_BURST {
                    // More may wait: edge-triggered, so look again soon.
                    self.blocked = true;
                }
                for (stream, client) in accepted {
                    let (target, shown) = self.route_client(client, container, container6, true);
                    self.inbound(stream, target, shown, mac, now, peer);
                }
            }
            HostSocket::Udp(_) => self.on_udp_listener(t, container, container6, mac, now, peer),
        }
    }

    /// A client accepted on a published port: a connection to the endpoint's `target`,
    /// shown as coming from `shown`.
    fn inbound(
        &mut self,
        stream: TcpStream,
        target: SocketAddr,
        shown: SocketAddr,
        mac: [u8; 6],
        now: Instant,
        peer: &Uplink,
    ) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let key = FlowKey::tcp(target, shown);
        let Some(flow) = self.admit(key, MacAddr(mac), now) else {
            linger_zero(&stream);
            return;
        };
        // The accepted socket exists already: at the cap it is reset at once (the client sees
        // what a full flow table gives it).
        let Some(permit) = self.cfg.host_sockets.try_acquire() else {
            self.shared.table().remove(flow);
            self.count(EgressDrop::HostSocketCap);
            linger_zero(&stream);
            return;
        };
        let t = self.token();
        if self.register(&stream, t).is_err() {
            self.shared.table().remove(flow);
            self.count(EgressDrop::HostSocketError);
            return;
        }
        let addr = Addressing {
            gw_mac: self.cfg.gw_mac,
            endpoint_mac: mac,
            from: shown,
            to: target,
        };
        let iss = self.iss(shown, target);
        let mss = self.mss(target.is_ipv6());
        let mut w = Wire {
            peer,
            buf: &mut self.frame,
            addr: &addr,
            ip_id: &mut self.ip_id,
        };
        let conn = Conn::open(iss, mss, RING, now, &mut w);
        self.by_key.insert((target, shown), t);
        self.conns.insert(
            t,
            Entry {
                conn,
                sock: stream,
                _permit: permit,
                addr,
                flow,
                created: now,
                readable: false,
                quote: Vec::new(),
            },
        );
        self.shared.counters.flows_created.fetch_add(1, Relaxed);
        self.shared.counters.published_tcp.fetch_add(1, Relaxed);
        self.next_tick.get_or_insert(now + TICK);
    }

    fn on_udp_listener(
        &mut self,
        t: u64,
        container: SocketAddrV4,
        container6: Option<SocketAddrV6>,
        mac: [u8; 6],
        now: Instant,
        peer: &Uplink,
    ) {
        // Received behind the larger (IPv6) headroom; an IPv4 frame starts further in.
        const H6: usize = packet6::UDP_HEADROOM;
        const H4: usize = packet::UDP_HEADROOM;
        for _ in 0..ACCEPT_BURST {
            let Some(HostSocket::Udp(sock)) = self.listeners.get(&t).map(|l| &l.sock) else {
                return;
            };
            let mut buf = std::mem::take(&mut self.udp_buf);
            let r = sock.recv_from(&mut buf[H6..]);
            let (n, client) = match r {
                Ok(x) => x,
                Err(_) => {
                    self.udp_buf = buf;
                    return;
                }
            };
            // Reuse the mapping of a known client.
            let (target, shown) = match self.udp_clients.get(&(t, client)) {
                Some(k) => *k,
                None => {
                    let k = self.route_client(client, container, container6, false);
                    self.udp_clients.insert((t, client), k);
                    self.shared.counters.published_udp.fetch_add(1, Relaxed);
                    k
                }
            };
            self.udp.insert(
                (target, shown),
                UdpPub {
                    listener: t,
                    client,
                    last: now,
                },
            );
            self.next_tick.get_or_insert(now + TICK);
            self.ip_id = self.ip_id.wrapping_add(1);
            let mut full = false;
            let link = packet::Link {
                gw_mac: self.cfg.gw_mac,
                mtu: self.cfg.mtu,
                ident: self.ip_id,
            };
            let mut emit = |f: &mut [u8]| {
                packet::set_eth_dst(f, mac);
                full |= !VnetSink(peer).send_frame(f);
            };
            match (shown, target) {
                (SocketAddr::V4(from), SocketAddr::V4(to)) => {
                    packet::udp_frames_in(&mut buf[H6 - H4..H6 + n], from, to, link, &mut emit);
                }
                (SocketAddr::V6(from), SocketAddr::V6(to)) => {
                    packet6::udp_frames_in(&mut buf[..H6 + n], from, to, link, &mut emit);
                }
                _ => {}
            }
            self.udp_buf = buf;
            if full {
                self.count(EgressDrop::ReplyQueueFull);
            }
        }
        self.blocked = true;
    }

    /// An endpoint's UDP reply to a published flow's client: out of the published socket.
    pub(crate) fn udp_reply(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(u) = self.udp.get_mut(&(src, dst)) else {
            return;
        };
        u.last = now;
        let Some(Listener {
            sock: HostSocket::Udp(s),
            ..
        }) = self.listeners.get(&u.listener)
        else {
            return;
        };
        if s.send_to(payload, u.client).is_err() {
            self.count(EgressDrop::HostSendError);
        }
    }

    fn expire_udp(&mut self, now: Instant) {
        // Linux conntrack's timeout for an assured UDP flow.
        self.udp
            .retain(|_, u| now.duration_since(u.last) < Duration::from_secs(180));
        self.forget_gone_udp_clients();
    }
}

/// Where an endpoint's SYN goes ([`Relay::egress_target`]).
enum Target {
    /// Connect a host socket there.
    Connect(SocketAddr),
    /// The gateway's own address, unmapped: answered with RST.
    Refuse,
    /// Refused by policy: answered with ICMP "administratively prohibited".
    Prohibited(packet::Refusal),
    /// Dropped, counted as this.
    Drop(EgressDrop),
}

/// Why a destination cannot be reached, as the endpoint is told in its family's ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unreach {
    Net,
    Host,
    Prohibited,
}

impl Unreach {
    fn code_v4(self) -> u8 {
        match self {
            Unreach::Net => packet::UNREACH_NET,
            Unreach::Host => packet::UNREACH_HOST,
            Unreach::Prohibited => packet::UNREACH_ADMIN_PROHIBITED,
        }
    }

    /// ICMPv6's codes: any of them fails a connecting Linux socket at once.
    fn code_v6(self) -> u8 {
        match self {
            Unreach::Net => packet6::UNREACH_NOROUTE,
            Unreach::Host => packet6::UNREACH_ADDR,
            Unreach::Prohibited => packet6::UNREACH_ADMIN_PROHIBITED,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The gateway stops: connections end with RST on both sides' host sockets.
        for e in self.conns.values() {
            linger_zero(&e.sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arc_swap::ArcSwap;
    use etherparse::{Icmpv4Slice, Ipv4Slice, PacketBuilder};
    use netyard_switch::sys::MemPort;
    use netyard_switch::{Port, PortCaps};

    use crate::conntrack::FlowLimits;
    use crate::egress::{Egress, EgressConfig, EgressHandle};

    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
    const EP_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A relay for 10.0.0.0/24 next to the network 10.89.1.0/24, the switch's end of its
    /// uplink, and the egress handle with the counters.
    fn relay(host_sockets: &'static HostSockets) -> (Relay, Uplink, MemPort, EgressHandle) {
        let subnet = Subnet {
            gateway: GW,
            prefix_len: 24,
        };
        let local_subnets: LocalSubnets = Arc::new(ArcSwap::from_pointee(vec![
            "10.0.0.0/24".parse().expect("net"),
            "10.89.1.0/24".parse().expect("net"),
        ]));
        let (egress, handle) = Egress::new(EgressConfig {
            enabled: true,
            subnet,
            gw_mac: GW_MAC,
            mtu: 1500,
            limits: FlowLimits::default(),
            maps: Vec::new(),
            host_sockets,
            local_subnets: local_subnets.clone(),
            v6: Some(side6()),
        })
        .expect("egress");
        let cfg = RelayConfig {
            subnet,
            gw_mac: GW_MAC,
            mtu: 1500,
            maps: Vec::new(),
            own: vec![GW],
            host_sockets,
            local_subnets,
            v6: Some(side6()),
        };
        let (relay, _epoll) = Relay::new(cfg, egress.shared()).expect("relay");
        let caps = PortCaps {
            vnet_hdr: true,
            gso_tcp: true,
            gso_udp: false,
        };
        let (port, peer) = MemPort::pair(caps).expect("socketpair");
        let uplink = Uplink::new(crate::uplink::SwitchLink::Socket(peer)).expect("peer");
        (relay, uplink, port, handle)
    }

    const GW6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
    const EP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

    /// fd00:1::/64 next to the network fd00:2::/64, the gateway's address mapped to ::1.
    fn side6() -> Side6 {
        Side6 {
            subnet: packet6::Subnet6 {
                gateway: GW6,
                prefix_len: 64,
            },
            maps: packet6::effective_maps(GW6, true, &[]),
            local_subnets: Arc::new(ArcSwap::from_pointee(vec!["fd00:2::/64"
                .parse()
                .expect("net")])),
        }
    }

    fn syn6_to(dst: std::net::Ipv6Addr, port: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv6(EP6.octets(), dst.octets(), 64)
            .tcp(40000, port, 1000, 64240)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, b"").expect("syn");
        v
    }

    #[tokio::test]
    async fn an_ipv6_syn_connects_a_host_socket_and_is_answered_with_an_ipv6_syn_ack() {
        let sockets: &'static HostSockets = Box::leak(Box::new(HostSockets::with_cap(16)));
        let (mut relay, uplink, port, handle) = relay(sockets);
        let listener = std::net::TcpListener::bind("[::1]:0").expect("bind ::1");
        let lport = listener.local_addr().expect("addr").port();
        relay.segment(&syn6_to(GW6, lport), false, Instant::now(), &uplink);
        let mut frames = Vec::new();
        for _ in 0..200 {
            relay.poll_host(Instant::now(), &uplink);
            frames.extend(sent(&port));
            if !frames.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            frames.len(),
            1,
            "the SYN-ACK, once the host socket connected"
        );
        let p = etherparse::SlicedPacket::from_ethernet(&frames[0]).expect("parses");
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("IPv6")
        };
        assert_eq!(
            (ip.header().source_addr(), ip.header().destination_addr()),
            (GW6, EP6)
        );
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("TCP")
        };
        assert!(tcp.syn() && tcp.ack());
        assert_eq!((tcp.source_port(), tcp.destination_port()), (lport, 40000));
        assert_eq!(tcp.acknowledgment_number(), 1001);
        assert_eq!(
            tcp.options_iterator().find_map(|o| match o {
                Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                _ => None,
            }),
            Some(1440),
            "MSS: the MTU less 60 bytes of IPv6 and TCP headers"
        );
        let (_conn, peer) = listener.accept().expect("the host side connected");
        assert!(peer.is_ipv6());
        let flows = handle.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(
            flows[0].destination.to_string(),
            format!("[fd00:1::1]:{lport}")
        );
    }

    #[tokio::test]
    async fn an_ipv6_syn_to_another_network_is_refused_with_icmpv6() {
        let sockets: &'static HostSockets = Box::leak(Box::new(HostSockets::with_cap(16)));
        let (mut relay, uplink, port, handle) = relay(sockets);
        let syn = syn6_to("fd00:2::9".parse().expect("v6"), 80);
        relay.segment(&syn, false, Instant::now(), &uplink);
        let frames = sent(&port);
        assert_eq!(frames.len(), 1);
        let p = etherparse::SlicedPacket::from_ethernet(&frames[0]).expect("parses");
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("ICMPv6")
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Prohibited
            )
        );
        assert_eq!(icmp.payload(), &syn[packet::ETH_HDR..packet::ETH_HDR + 48]);
        assert_eq!(drops(&handle), vec![("refused_local_network", 1)]);
        assert_eq!(sockets.open(), 0);
    }

    fn syn_to(dst: Ipv4Addr) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv4(EP.octets(), dst.octets(), 64)
            .tcp(40000, 80, 1000, 64240)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, b"").expect("syn");
        v
    }

    /// Every frame the relay sent to the switch (virtio-net header stripped).
    fn sent(port: &MemPort) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = port.recv(&mut buf) {
            out.push(buf[VNET_HDR..n].to_vec());
        }
        out
    }

    const VNET_HDR: usize = netyard_switch::port::VNET_HDR_LEN;

    fn drops(h: &EgressHandle) -> Vec<(&'static str, u64)> {
        h.stats()
            .drops
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    #[tokio::test]
    async fn a_syn_to_another_network_or_loopback_is_refused_with_icmp_and_no_host_socket() {
        let sockets: &'static HostSockets = Box::leak(Box::new(HostSockets::with_cap(16)));
        let (mut relay, uplink, port, handle) = relay(sockets);
        let now = Instant::now();
        let to_net = syn_to(Ipv4Addr::new(10, 89, 1, 7));
        relay.segment(&to_net, false, now, &uplink);
        relay.segment(&syn_to(Ipv4Addr::new(127, 0, 0, 1)), false, now, &uplink);
        let frames = sent(&port);
        assert_eq!(frames.len(), 2, "one ICMP error each");
        for f in &frames {
            assert_eq!(&f[..6], &EP_MAC);
            let ip = Ipv4Slice::from_slice(&f[packet::ETH_HDR..]).expect("ipv4");
            let icmp = Icmpv4Slice::from_slice(ip.payload().payload).expect("icmp");
            assert_eq!(
                (icmp.type_u8(), icmp.code_u8()),
                (3, 13),
                "administratively prohibited"
            );
            assert_eq!(
                (ip.header().source_addr(), ip.header().destination_addr()),
                (GW, EP)
            );
        }
        let ip = Ipv4Slice::from_slice(&frames[0][packet::ETH_HDR..]).expect("ipv4");
        let icmp = Icmpv4Slice::from_slice(ip.payload().payload).expect("icmp");
        assert_eq!(
            icmp.payload(),
            &to_net[packet::ETH_HDR..packet::ETH_HDR + 28],
            "quotes the SYN"
        );
        assert_eq!(
            drops(&handle),
            vec![("refused_local_network", 1), ("refused_loopback", 1)]
        );
        assert_eq!(handle.stats().icmp_errors_sent, 2);
        assert!(handle.flows().is_empty());
        assert_eq!(sockets.open(), 0);
    }

    #[tokio::test]
    async fn at_the_host_socket_cap_a_syn_is_dropped_as_with_a_full_flow_table() {
        let sockets: &'static HostSockets = Box::leak(Box::new(HostSockets::with_cap(0)));
        let (mut relay, uplink, port, handle) = relay(sockets);
        relay.segment(
            &syn_to(Ipv4Addr::new(198, 18, 0, 2)),
            false,
            Instant::now(),
            &uplink,
        );
        assert!(
            sent(&port).is_empty(),
            "nothing answered: the endpoint retries"
        );
        assert_eq!(drops(&handle), vec![("host_socket_cap", 1)]);
        assert!(handle.flows().is_empty(), "the flow left the table");
    }
}
