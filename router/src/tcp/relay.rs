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
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::uplink::Uplink;
use netyard_switch::MacAddr;
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{self, setsockopt, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use tokio::io::unix::AsyncFd;

use crate::epoll::{async_epoll, EpollFd};
use crate::limits::{HostSocketPermit, HostSockets};

use super::conn::{Conn, HostIo, Next, ReadEnd, SegOut, State};
use super::seg::{self, Addressing, Seg, SegHdr, ACK, RST, SYN};
use crate::conntrack::{CapHit, FlowId, FlowKey, Verdict};
use crate::counters::Shared;
use crate::drops::EgressDrop;
use crate::packet::{self, LocalSubnets, Subnet};
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
/// Ports shown as the source of published connections from loopback or IPv6 clients (the
/// gateway's address stands in for them).
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
    by_key: HashMap<(SocketAddrV4, SocketAddrV4), u64>,
    listeners: HashMap<u64, Listener>,
    rules: HashMap<PublishId, Vec<u64>>,
    udp: HashMap<(SocketAddrV4, SocketAddrV4), UdpPub>,
    /// The same flows by (listener, client): the key `udp` has them under.
    udp_clients: HashMap<(u64, SocketAddr), (SocketAddrV4, SocketAddrV4)>,
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
fn connect(dest: SocketAddrV4) -> io::Result<TcpStream> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // The endpoint's stack already decided its segment boundaries: pass them on.
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(dest)) {
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

    fn mss(&self) -> u16 {
        u16::try_from(self.cfg.mtu.saturating_sub(40))
            .unwrap_or(u16::MAX)
            .max(536)
    }

    /// The initial sequence number of our side of a connection between `ours` and `theirs`
    /// (RFC 6528: a 4 µs clock plus a keyed hash of the addresses). A random ISS would break
    /// address reuse: when a client reconnects from the same port while the container still
    /// holds the previous connection in TIME_WAIT, Linux takes the new SYN only if its sequence
    /// number is above the old connection's (we send no timestamps), and answers anything else
    /// with a bare ACK, which costs the new connection an RST and a SYN retransmission.
    fn iss(&self, ours: SocketAddrV4, theirs: SocketAddrV4) -> u32 {
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
    pub(crate) fn owns_gateway_tcp(&self, src: SocketAddrV4, dst: SocketAddrV4) -> bool {
        self.by_key.contains_key(&(src, dst))
            || (self.shared.enabled
                && dst.port() != 53
                && packet::mapped(*dst.ip(), &self.cfg.maps).is_some())
    }

    /// Whether a UDP datagram from an endpoint answers a published UDP flow.
    pub(crate) fn owns_udp(&self, src: SocketAddrV4, dst: SocketAddrV4) -> bool {
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
        // The source first: nothing is answered to an address the sender made up.
        if !self.cfg.subnet.valid_source(*s.src.ip()) {
            self.count(EgressDrop::BadAddress);
            return;
        }
        let dst_ip = *s.dst.ip();
        let target = if let Some(host) = packet::mapped(dst_ip, &self.cfg.maps) {
            SocketAddrV4::new(host, s.dst.port())
        } else if dst_ip == self.cfg.subnet.gateway || self.cfg.own.contains(&dst_ip) {
            // The gateway's own address, unmapped: nothing listens there.
            self.refuse(s, peer);
            return;
        } else if let Err(r) = packet::egress_target(
            dst_ip,
            &self.cfg.subnet,
            &self.cfg.maps,
            &self.cfg.local_subnets.load(),
        ) {
            // Another netyard network or the host's loopback: the endpoint's connect fails at
            // once (EHOSTUNREACH), and no host socket is opened.
            self.count(r.reason());
            let addr = Addressing {
                gw_mac: self.cfg.gw_mac,
                endpoint_mac: s.src_mac,
                from: s.dst,
                to: s.src,
            };
            self.send_unreachable(&addr, s.quote, packet::UNREACH_ADMIN_PROHIBITED, peer);
            return;
        } else if packet::unroutable_destination(dst_ip) {
            self.count(EgressDrop::BadAddress);
            return;
        } else {
            s.dst
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
        let conn = Conn::from_syn(s, iss, self.mss(), RING);
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
            Some(Errno::ENETUNREACH) => Some(packet::UNREACH_NET),
            Some(Errno::EHOSTUNREACH | Errno::ETIMEDOUT) => Some(packet::UNREACH_HOST),
            Some(Errno::EACCES | Errno::EPERM) => Some(packet::UNREACH_ADMIN_PROHIBITED),
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

    /// Sends the endpoint of `addr` an ICMP destination unreachable (`code`) from the gateway,
    /// quoting its SYN.
    fn send_unreachable(&mut self, addr: &Addressing, quote: &[u8], code: u8, peer: &Uplink) {
        self.ip_id = self.ip_id.wrapping_add(1);
        let Some(mut f) = packet::unreachable_frame(
            self.cfg.subnet.gateway,
            *addr.to.ip(),
            code,
            quote,
            self.ip_id,
            self.cfg.gw_mac,
        ) else {
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
        if e.conn.ack_owed {
            self.owed.push(t);
        }
        if e.conn.finished() {
            self.close(t, Next::Done);
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

    /// What the endpoint sees as the client's address: the client itself when it is an IPv4
    /// address the endpoint can answer, else the gateway with a port of its own.
    fn shown_source(
        &mut self,
        client: SocketAddr,
        container: SocketAddrV4,
        tcp: bool,
    ) -> SocketAddrV4 {
        let v4 = match client {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map(|ip| SocketAddrV4::new(ip, a.port())),
        };
        if let Some(a) = v4 {
            let ip = *a.ip();
            let clash = if tcp {
                self.by_key.contains_key(&(container, a))
            } else {
                false
            };
            if !ip.is_loopback() && !ip.is_unspecified() && !self.cfg.subnet.contains(ip) && !clash
            {
                return a;
            }
        }
        // Loopback, IPv6 or clashing clients: the gateway stands in, with a fresh port.
        for _ in 0..=(MASQ_PORTS.end() - MASQ_PORTS.start()) {
            let p = self.masq_next;
            self.masq_next = if p >= *MASQ_PORTS.end() {
                *MASQ_PORTS.start()
            } else {
                p + 1
            };
            let a = SocketAddrV4::new(self.cfg.subnet.gateway, p);
            let used = if tcp {
                self.by_key.contains_key(&(container, a))
            } else {
                self.udp.contains_key(&(container, a))
            };
            if !used {
                return a;
            }
        }
        SocketAddrV4::new(self.cfg.subnet.gateway, *MASQ_PORTS.start())
    }

    fn on_listener(&mut self, t: u64, now: Instant, peer: &Uplink) {
        let Some(l) = self.listeners.get(&t) else {
            return;
        };
        let (container, mac) = (l.container, l.mac);
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
                    self.inbound(stream, client, container, mac, now, peer);
                }
            }
            HostSocket::Udp(_) => self.on_udp_listener(t, container, mac, now, peer),
        }
    }

    fn inbound(
        &mut self,
        stream: TcpStream,
        client: SocketAddr,
        container: SocketAddrV4,
        mac: [u8; 6],
        now: Instant,
        peer: &Uplink,
    ) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let shown = self.shown_source(client, container, true);
        let key = FlowKey::tcp(container, shown);
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
            to: container,
        };
        let iss = self.iss(shown, container);
        let mss = self.mss();
        let mut w = Wire {
            peer,
            buf: &mut self.frame,
            addr: &addr,
            ip_id: &mut self.ip_id,
        };
        let conn = Conn::open(iss, mss, RING, now, &mut w);
        self.by_key.insert((container, shown), t);
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
        mac: [u8; 6],
        now: Instant,
        peer: &Uplink,
    ) {
        for _ in 0..ACCEPT_BURST {
            let Some(HostSocket::Udp(sock)) = self.listeners.get(&t).map(|l| &l.sock) else {
                return;
            };
            let mut buf = std::mem::take(&mut self.udp_buf);
            let r = sock.recv_from(&mut buf[packet::UDP_HEADROOM..]);
            let (n, client) = match r {
                Ok(x) => x,
                Err(_) => {
                    self.udp_buf = buf;
                    return;
                }
            };
            // Reuse the mapping of a known client.
            let shown = match self.udp_clients.get(&(t, client)) {
                Some((_, s)) => *s,
                None => {
                    let s = self.shown_source(client, container, false);
                    self.udp_clients.insert((t, client), (container, s));
                    self.shared.counters.published_udp.fetch_add(1, Relaxed);
                    s
                }
            };
            self.udp.insert(
                (container, shown),
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
            packet::udp_frames_in(
                &mut buf[..packet::UDP_HEADROOM + n],
                shown,
                container,
                link,
                &mut |f| {
                    packet::set_eth_dst(f, mac);
                    full |= !VnetSink(peer).send_frame(f);
                },
            );
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
        src: SocketAddrV4,
        dst: SocketAddrV4,
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
