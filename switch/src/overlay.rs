//! The VXLAN overlay's forwarding state, without I/O: which remote VTEP (tunnel endpoint, an
//! underlay IPv4 address) owns which inner MAC, the peers that get flooded frames, and the
//! UDP source port of a flow. [`crate::sys::vxlan::VxlanPort`] does the sockets.
//!
//! Like [`crate::fdb`], the table is a concurrent map whose reads take no lock: the send path's
//! lookup is a probe, refreshing a known MAC is an atomic store, and only key-set changes (a
//! new MAC, a move, an expiry) take the writer mutex, which keeps the count of learned entries
//! that the cap bounds; each changes one entry, whatever the table's size. Time is an argument
//! (ms on the switch clock).
//!
//! Semantics follow the Linux vxlan driver: learned entries map the inner source MAC to the
//! outer source address and age out; a MAC that shows up behind another VTEP moves there;
//! static entries (`netyard fdb add ... --remote`) never age and never move. Broadcast,
//! multicast and unknown unicast go to every peer (head-end replication, the kernel's
//! all-zero FDB entries).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::fdb::{mac_map, MacMap};

use crate::wire::checksum;
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr, ETH_HDR_LEN};
use crate::wire::ip::{IpProtocol, Lengths};
use crate::wire::ipv4::{Ipv4Packet, IPV4_HDR_LEN};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::tcp::{self, TcpPacket, TCP_HDR_LEN};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::{GsoType, VnetHdrRepr, VNET_HDR_LEN as HDR_LEN};

/// One remote MAC.
#[derive(Debug)]
pub struct RemoteEntry {
    /// The VTEP behind which the MAC lives.
    pub vtep: Ipv4Addr,
    last_seen: AtomicU64,
    /// Added by hand: never ages, never moves by learning.
    pub is_static: bool,
}

/// What learning one (MAC, VTEP) pair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteLearn {
    /// Known behind this VTEP; timestamp refreshed.
    Refreshed,
    /// New entry.
    Learned,
    /// The MAC moved here from another VTEP.
    Moved { from: Ipv4Addr },
    /// Not learned: the table is full.
    CapReached,
    /// A static entry owns this MAC.
    Static,
    /// A group or all-zero MAC: never learned.
    Ignored,
}

/// Where the tunnel sends one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destinations {
    /// A known unicast MAC: its VTEP only.
    One(Ipv4Addr),
    /// Broadcast, multicast or unknown unicast: every peer.
    Flood(Arc<Vec<Ipv4Addr>>),
}

/// An entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteView {
    pub mac: MacAddr,
    pub vtep: Ipv4Addr,
    /// Milliseconds since the MAC was last seen (0 for static entries).
    pub age_ms: u64,
    pub is_static: bool,
}

/// The remote MAC table and flood list of one VXLAN network.
#[derive(Debug)]
pub struct RemoteTable {
    table: MacMap<RemoteEntry>,
    peers: ArcSwap<Vec<Ipv4Addr>>,
    /// Serialises writers; holds how many learned (not static) entries the table has.
    writer: Mutex<usize>,
    aging_ms: u64,
    max_entries: usize,
    /// When the last sweep ran (switch clock, ms), so [`RemoteTable::maybe_expire`] is cheap.
    last_sweep: AtomicU64,
}

impl RemoteTable {
    /// An empty table whose learned entries age out after `aging_ms` idle, holding at most
    /// `max_entries` learned MACs, flooding to `peers`.
    pub fn new(aging_ms: u64, max_entries: usize, peers: Vec<Ipv4Addr>) -> RemoteTable {
        RemoteTable {
            table: mac_map(),
            peers: ArcSwap::from_pointee(peers),
            writer: Mutex::new(0),
            aging_ms,
            max_entries,
            last_sweep: AtomicU64::new(0),
        }
    }

    fn expired(&self, e: &RemoteEntry, now: u64) -> bool {
        !e.is_static && now.saturating_sub(e.last_seen.load(Relaxed)) > self.aging_ms
    }

    /// The flood list.
    pub fn peers(&self) -> Arc<Vec<Ipv4Addr>> {
        self.peers.load_full()
    }

    /// Replaces the flood list (peers learned from a registry such as etcd come and go).
    pub fn set_peers(&self, peers: Vec<Ipv4Addr>) {
        self.peers.store(Arc::new(peers));
    }

    /// The VTEP of `mac`, if known and not aged out.
    pub fn lookup(&self, mac: &MacAddr, now: u64) -> Option<Ipv4Addr> {
        match self.table.pin().get(mac) {
            Some(e) if !self.expired(e, now) => Some(e.vtep),
            _ => None,
        }
    }

    /// Where a frame to `dst` goes.
    pub fn destinations(&self, dst: &MacAddr, now: u64) -> Destinations {
        if !dst.is_multicast() {
            if let Some(vtep) = self.lookup(dst, now) {
                return Destinations::One(vtep);
            }
        }
        Destinations::Flood(self.peers())
    }

    /// Records that a frame from `mac` came out of the tunnel from `vtep` at `now`. Group and
    /// all-zero MACs are never learned.
    pub fn learn(&self, mac: MacAddr, vtep: Ipv4Addr, now: u64) -> RemoteLearn {
        if let Some(e) = self.table.pin().get(&mac) {
            if e.is_static {
                return RemoteLearn::Static;
            }
            if e.vtep == vtep {
                e.last_seen.store(now, Relaxed);
                return RemoteLearn::Refreshed;
            }
        }
        if mac.is_multicast() || mac.is_zero() {
            return RemoteLearn::Ignored;
        }
        let mut learned = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let t = self.table.pin();
        let previous = t.get(&mac);
        if let Some(e) = previous {
            if e.is_static {
                return RemoteLearn::Static;
            }
            if e.vtep == vtep {
                e.last_seen.store(now, Relaxed);
                return RemoteLearn::Refreshed;
            }
        }
        let from = previous.map(|e| e.vtep);
        if from.is_none() && *learned >= self.max_entries {
            // Make room from aged-out entries before refusing.
            *learned = learned.saturating_sub(self.sweep(now));
            if *learned >= self.max_entries {
                return RemoteLearn::CapReached;
            }
        }
        t.insert(
            mac,
            RemoteEntry {
                vtep,
                last_seen: AtomicU64::new(now),
                is_static: false,
            },
        );
        match from {
            Some(old) => RemoteLearn::Moved { from: old },
            None => {
                *learned += 1;
                RemoteLearn::Learned
            }
        }
    }

    /// Removes the expired entries (the writer lock held); how many.
    fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        self.table.pin().retain(|_, e| {
            let keep = !self.expired(e, now);
            removed += usize::from(!keep);
            keep
        });
        removed
    }

    /// Adds or replaces a static entry.
    pub fn add_static(&self, mac: MacAddr, vtep: Ipv4Addr) {
        let mut learned = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let t = self.table.pin();
        let old = t.insert(
            mac,
            RemoteEntry {
                vtep,
                last_seen: AtomicU64::new(0),
                is_static: true,
            },
        );
        if old.is_some_and(|o| !o.is_static) {
            *learned = learned.saturating_sub(1);
        }
    }

    /// Removes `mac`, static or learned. Returns whether it was there.
    pub fn remove(&self, mac: &MacAddr) -> bool {
        let mut learned = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match self.table.pin().remove(mac) {
            Some(old) => {
                if !old.is_static {
                    *learned = learned.saturating_sub(1);
                }
                true
            }
            None => false,
        }
    }

    /// Removes learned entries idle longer than the ageing time. Returns how many.
    pub fn expire(&self, now: u64) -> usize {
        self.last_sweep.store(now, Relaxed);
        if !self.table.pin().values().any(|e| self.expired(e, now)) {
            return 0;
        }
        let mut learned = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = self.sweep(now);
        *learned = learned.saturating_sub(removed);
        removed
    }

    /// [`RemoteTable::expire`], at most once per quarter of the ageing time: cheap enough to
    /// call from the receive path.
    pub fn maybe_expire(&self, now: u64) {
        let every = (self.aging_ms / 4).max(100);
        if now.saturating_sub(self.last_sweep.load(Relaxed)) >= every {
            self.expire(now);
        }
    }

    /// Every live entry, sorted by MAC.
    pub fn entries(&self, now: u64) -> Vec<RemoteView> {
        let t = self.table.pin();
        let mut v: Vec<RemoteView> = t
            .iter()
            .filter(|(_, e)| !self.expired(e, now))
            .map(|(mac, e)| RemoteView {
                mac: *mac,
                vtep: e.vtep,
                age_ms: if e.is_static {
                    0
                } else {
                    now.saturating_sub(e.last_seen.load(Relaxed))
                },
                is_static: e.is_static,
            })
            .collect();
        v.sort_by_key(|e| e.mac);
        v
    }
}

/// Lowest UDP source port of tunnelled flows (RFC 7348 suggests the dynamic range).
pub const SOURCE_PORT_MIN: u16 = 49152;

/// The UDP source port for an inner Ethernet frame: a hash of its flow (MACs and EtherType; for
/// IPv4 also the addresses, the protocol and, in the first fragment, the TCP/UDP/SCTP ports),
/// mapped into 49152-65535. Frames of one flow always get the same port, so the underlay's
/// ECMP keeps them in order; different flows spread.
pub fn flow_source_port(inner: &[u8]) -> u16 {
    let mut h = Fnv::default();
    h.write(inner.get(..ETH_HDR_LEN).unwrap_or(inner));
    if let Ok(eth) = EthernetFrame::new_checked(inner) {
        match eth.ethertype() {
            EtherType::Ipv4 => {
                // Gso lengths: a super-frame's total length may be 0; the hash reads headers.
                if let Ok(ip) = Ipv4Packet::new_checked_with(eth.payload(), Lengths::Gso) {
                    h.write(&ip.src_octets());
                    h.write(&ip.dst_octets());
                    let proto = u8::from(ip.protocol());
                    h.write(&[proto]);
                    let first_fragment = ip.frag_offset() == 0;
                    if first_fragment && matches!(proto, 6 | 17 | 132) {
                        if let Some(ports) = ip.payload().get(..4) {
                            h.write(ports);
                        }
                    }
                }
            }
            EtherType::Ipv6 => {
                // By offsets until the IPv6 view comes (issue 15).
                if let Some(ip) = eth.payload().get(..40) {
                    h.write(&ip[8..40]); // addresses
                    h.write(&ip[6..7]); // next header
                    if matches!(ip[6], 6 | 17 | 132) {
                        if let Some(ports) = eth.payload().get(40..44) {
                            h.write(ports);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let span = u64::from(u16::MAX - SOURCE_PORT_MIN) + 1;
    // The remainder is below 16384, so it fits.
    SOURCE_PORT_MIN + u16::try_from(h.finish() % span).unwrap_or(0)
}

/// FNV-1a, 64-bit, with a final avalanche so nearby inputs land far apart.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

/// How often a netyard VTEP tells a peer it sends checksummed frames to that it is netyard
/// (while it keeps sending such frames there).
pub const HELLO_EVERY_MS: u64 = 5_000;
/// How long a peer's hello counts: after that, frames to it carry full inner checksums again
/// (a peer that became a kernel VTEP at the same address gets them within this).
pub const HELLO_TTL_MS: u64 = 3 * HELLO_EVERY_MS;

/// The hello's destination: 802.1D's link-local group 01:80:C2:00:00:0E (LLDP's "nearest
/// bridge"), which a Linux bridge never forwards (it goes to the receiving device's own stack,
/// which drops an unknown EtherType), so a kernel VTEP with a bridge behind it consumes it
/// harmlessly; and netyard's vxlan port takes it before its switch sees it.
const HELLO_DST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
/// Its source: a locally administered unicast MAC ("NYVX"); a kernel VTEP learns it like any
/// source (one FDB entry, never a destination).
const HELLO_SRC: [u8; 6] = [0x02, 0x4e, 0x59, 0x56, 0x58, 0x00];
/// IEEE 802 local experimental EtherType 1.
const HELLO_ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// What the hello says, so another user of the experimental EtherType is never taken for one.
const HELLO_MAGIC: &[u8] = b"netyard vxlan: inner checksums may be partial, v1";
/// The hello's length (no padding: a tunnel carries frames as they are).
pub const HELLO_LEN: usize = 14 + HELLO_MAGIC.len();

/// The inner Ethernet frame of a hello: "this VTEP is netyard, and completes (or hands on as
/// NEEDS_CSUM) partial inner checksums".
///
/// Why: over a veth underlay the kernel's own vxlan never computes inner checksums (they stay
/// CHECKSUM_PARTIAL in the skb, end to end), while netyard's sender computed every inner
/// checksum and its receiver verified every one: two passes over every byte the kernel pair
/// never makes. Between two netyard VTEPs the inner checksum may stay partial: the datagram
/// carries a UDP checksum (netyard always sends one; the kernel refuses UDP GSO without it)
/// that the receiving kernel verified before netyard read it, so the bytes on the wire are
/// covered as the inner checksum would cover them, and the receiving netyard hands the frame
/// on as NEEDS_CSUM for its kernel (or its switch) to complete. A kernel VTEP drops such a
/// frame (`TcpInCsumErrors`: the checksum state does not cross a UDP socket), so a sender
/// leaves checksums partial only to a peer whose hello it has heard within [`HELLO_TTL_MS`];
/// the VXLAN header cannot say it (Linux drops datagrams with reserved bits set).
pub fn hello_frame() -> [u8; HELLO_LEN] {
    let mut f = [0u8; HELLO_LEN];
    f[..6].copy_from_slice(&HELLO_DST);
    f[6..12].copy_from_slice(&HELLO_SRC);
    f[12..14].copy_from_slice(&HELLO_ETHERTYPE);
    f[14..].copy_from_slice(HELLO_MAGIC);
    f
}

/// Whether an inner frame is a netyard hello ([`hello_frame`]).
pub fn is_hello(frame: &[u8]) -> bool {
    frame.len() == HELLO_LEN
        && frame[..6] == HELLO_DST
        && frame[12..14] == HELLO_ETHERTYPE
        && &frame[14..] == HELLO_MAGIC
}

/// What a VTEP knows of one peer's checksum handling (ms on the socket's clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCsum {
    /// When this VTEP last sent the peer a hello.
    pub sent: Option<u64>,
    /// When it last heard one from the peer.
    pub heard: Option<u64>,
}

impl PeerCsum {
    /// Whether a hello is due before a checksummed frame goes to the peer.
    pub fn hello_due(&self, now: u64) -> bool {
        self.sent
            .is_none_or(|t| now.saturating_sub(t) >= HELLO_EVERY_MS)
    }

    /// Whether frames to the peer may carry partial inner checksums.
    pub fn takes_partial(&self, now: u64) -> bool {
        self.heard
            .is_some_and(|t| now.saturating_sub(t) < HELLO_TTL_MS)
    }

    /// Whether the record says nothing a missing one would not: a hello is due and none heard
    /// counts. Such a peer may be forgotten.
    pub fn idle(&self, now: u64) -> bool {
        self.hello_due(now) && !self.takes_partial(now)
    }
}

/// Most peers [`PeerHellos`] keeps (the active ones: idle ones are forgotten first).
pub const MAX_HELLO_PEERS: usize = 4096;

/// A [`PeerClock`] field's value for "never".
const NEVER: u64 = u64::MAX;

/// One peer's hello times as atomics (ms on the socket's clock, [`NEVER`] for none), shared by
/// every snapshot of [`PeerHellos`]' table that holds the peer, so an update made through an
/// old snapshot is not lost.
#[derive(Debug)]
struct PeerClock {
    sent: AtomicU64,
    heard: AtomicU64,
}

impl PeerClock {
    fn new() -> PeerClock {
        PeerClock {
            sent: AtomicU64::new(NEVER),
            heard: AtomicU64::new(NEVER),
        }
    }

    fn csum(&self) -> PeerCsum {
        let at = |t: u64| (t != NEVER).then_some(t);
        PeerCsum {
            sent: at(self.sent.load(Relaxed)),
            heard: at(self.heard.load(Relaxed)),
        }
    }
}

/// Hellos sent to and heard from each peer of one tunnel socket (see [`hello_frame`]): a
/// property of the host behind an address, whatever the VNI, so one table per socket.
///
/// The send path reads it on every checksummed frame, so it takes no lock there: the table is
/// a snapshot sorted by address (an [`ArcSwap`], binary-searched) replaced only when a peer is
/// added, and a peer's times are atomics. A hello that is due is claimed by a compare-and-swap
/// of the peer's `sent`, so of several senders at once only one sends it. Adding a peer (its
/// first checksummed frame, or its first hello heard) takes the writer lock and copies the
/// table, forgetting idle peers ([`PeerCsum::idle`]) on the way, so the table holds the peers
/// of the last [`HELLO_TTL_MS`] or so. An update racing with that copy through a snapshot
/// that still held a now-forgotten peer is lost, which costs one early hello or full
/// checksums until the next hello, never a partial checksum to a peer that did not say hello.
///
/// At most `cap` peers: beyond them a new peer gets no hello and full checksums, and a hello
/// from one is not recorded (correct, only slower), so hellos from many forged addresses
/// cannot grow the table without bound.
#[derive(Debug)]
pub struct PeerHellos {
    table: ArcSwap<Vec<(Ipv4Addr, Arc<PeerClock>)>>,
    /// Serialises adding peers.
    writer: Mutex<()>,
    cap: usize,
}

impl Default for PeerHellos {
    fn default() -> PeerHellos {
        PeerHellos::new(MAX_HELLO_PEERS)
    }
}

impl PeerHellos {
    /// An empty table of at most `cap` peers.
    pub fn new(cap: usize) -> PeerHellos {
        PeerHellos {
            table: ArcSwap::default(),
            writer: Mutex::new(()),
            cap,
        }
    }

    /// Records a hello heard from `from` at `now`.
    pub fn heard(&self, from: Ipv4Addr, now: u64) {
        let table = self.table.load();
        match find(&table, from) {
            Some(c) => c.heard.store(now, Relaxed),
            None => {
                if let Some(c) = self.add(from, now) {
                    c.heard.store(now, Relaxed);
                }
            }
        }
    }

    /// Before checksummed frames go to `vteps` at `now`: pushes onto `due` the peers a hello
    /// is due to (marked sent), and says whether every one of them takes partial inner
    /// checksums.
    pub fn before_send(&self, vteps: &[Ipv4Addr], now: u64, due: &mut Vec<Ipv4Addr>) -> bool {
        let table = self.table.load();
        let mut partial = !vteps.is_empty();
        for &v in vteps {
            let added;
            let clock = match find(&table, v) {
                Some(c) => c,
                None => match self.add(v, now) {
                    Some(c) => {
                        added = c;
                        &added
                    }
                    None => {
                        partial = false;
                        continue;
                    }
                },
            };
            let p = clock.csum();
            if p.hello_due(now)
                && clock
                    .sent
                    .compare_exchange(p.sent.unwrap_or(NEVER), now, Relaxed, Relaxed)
                    .is_ok()
            {
                due.push(v);
            }
            partial &= p.takes_partial(now);
        }
        partial
    }

    /// What the table knows of `peer`.
    pub fn get(&self, peer: Ipv4Addr) -> Option<PeerCsum> {
        find(&self.table.load(), peer).map(|c| c.csum())
    }

    /// How many peers the table holds.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether the table holds no peer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `peer` (unless another thread just did), forgetting idle peers; `None` when the
    /// table is full of active ones.
    fn add(&self, peer: Ipv4Addr, now: u64) -> Option<Arc<PeerClock>> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let table = self.table.load();
        if let Some(c) = find(&table, peer) {
            return Some(c.clone());
        }
        let mut next: Vec<(Ipv4Addr, Arc<PeerClock>)> = table
            .iter()
            .filter(|(_, c)| !c.csum().idle(now))
            .cloned()
            .collect();
        if next.len() >= self.cap {
            return None;
        }
        let clock = Arc::new(PeerClock::new());
        let at = next.partition_point(|(a, _)| *a < peer);
        next.insert(at, (peer, clock.clone()));
        self.table.store(Arc::new(next));
        Some(clock)
    }
}

/// `peer`'s clock in a table sorted by address.
fn find(table: &[(Ipv4Addr, Arc<PeerClock>)], peer: Ipv4Addr) -> Option<&Arc<PeerClock>> {
    table
        .binary_search_by_key(&peer, |(a, _)| *a)
        .ok()
        .map(|i| &table[i].1)
}

/// What [`inner_partial_csum`] found in a frame that came out of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerCsum {
    /// Nothing to check: not an unfragmented TCP/UDP-over-IPv4 packet the views accept (the
    /// receiver's stack judges it), or UDP without a checksum. Handed on as is.
    Other,
    /// A complete L4 checksum that verifies. Handed on as is.
    Valid,
    /// The L4 checksum is partial (the field holds the folded pseudo-header sum, which is what
    /// a kernel sender with CHECKSUM_PARTIAL leaves when nothing completes it): it is finished
    /// by summing the frame from `csum_start` and storing at `csum_start + csum_offset`.
    Partial { csum_start: u16, csum_offset: u16 },
    /// Wrong and not partial: the frame is dropped (`vxlan_bad_inner_checksum`).
    Bad,
}

/// Judges the inner L4 checksum of an untagged or 802.1Q-tagged Ethernet frame holding an
/// unfragmented TCP or UDP packet over IPv4 or IPv6 (past IPv6's hop-by-hop, routing and
/// destination options headers): partial when the field equals the folded pseudo-header sum
/// of the packet (a complete checksum equals it only by a 1 in 65536 chance, and then
/// completing it again gives the same value), else valid or bad by a pass over the segment
/// (what the kernel's receive path would do with it).
pub fn inner_partial_csum(f: &[u8]) -> InnerCsum {
    partial_csum_at(f).map_or(InnerCsum::Other, |(p, _)| p)
}

/// Where an inner frame's transport lies, whichever the IP version: what the checksum and
/// GSO judgements need, read once through the IPv4 or IPv6 view.
#[derive(Debug, Clone, Copy)]
struct InnerL3 {
    /// Offset of the transport header in the frame.
    l4: usize,
    /// Where the IP packet ends in the frame (Ethernet padding may follow).
    end: usize,
    /// The transport protocol (after IPv6 extension headers).
    proto: IpProtocol,
    /// The pseudo-header sum of the transport over `end - l4` bytes.
    pseudo: u64,
    v6: bool,
}

impl InnerL3 {
    /// Reads the IP header after the Ethernet header of `f` (`lengths`: a super-packet's may
    /// be 0). `None` for anything but an unfragmented IPv4 or IPv6 packet the views accept.
    fn parse(f: &[u8], lengths: Lengths) -> Option<InnerL3> {
        let eth = EthernetFrame::new_checked(f).ok()?;
        let l3 = eth.header_len();
        // Both lengths come from 16-bit fields or a 64 KiB buffer, so the L4 length fits.
        let (l4, end, proto, pseudo, v6) = match eth.ethertype() {
            EtherType::Ipv4 => {
                let ip = Ipv4Packet::new_checked_with(f.get(l3..)?, lengths).ok()?;
                if ip.is_fragment() {
                    return None;
                }
                let l4_len = u32::try_from(ip.packet_len() - ip.header_len()).ok()?;
                (
                    l3 + ip.header_len(),
                    l3 + ip.packet_len(),
                    ip.protocol(),
                    ip.pseudo_header(l4_len),
                    false,
                )
            }
            EtherType::Ipv6 => {
                let ip = Ipv6Packet::new_checked_with(f.get(l3..)?, lengths).ok()?;
                // None for a fragment: its transport header is not whole.
                let (proto, rest) = ip.upper_layer()?;
                let end = l3 + ip.packet_len();
                let l4_len = u32::try_from(rest.len()).ok()?;
                let pseudo = ip.pseudo_header_for(proto, l4_len);
                (end - rest.len(), end, proto, pseudo, true)
            }
            _ => return None,
        };
        Some(InnerL3 {
            l4,
            end,
            proto,
            pseudo,
            v6,
        })
    }
}

/// [`inner_partial_csum`]'s finding and where the IP packet ends in `f`.
fn partial_csum_at(f: &[u8]) -> Option<(InnerCsum, usize)> {
    let l3 = InnerL3::parse(f, Lengths::Strict)?;
    Some((l4_csum(f, &l3)?, l3.end))
}

/// The L4 checksum verdict of the packet in frame `f` (`l3` read from it): `None` when there
/// is nothing to check.
fn l4_csum(f: &[u8], l3: &InnerL3) -> Option<InnerCsum> {
    let seg = f.get(l3.l4..l3.end)?;
    let pseudo = l3.pseudo;
    let (partial, valid, csum_offset) = match l3.proto {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(seg).ok()?;
            let partial = tcp.checksum_is_partial(pseudo);
            (
                partial,
                partial || tcp.verify_checksum(pseudo),
                tcp::CHECKSUM_OFFSET,
            )
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(seg).ok()?;
            // Zero: no checksum (IPv4 only; IPv6 forbids it, and the receiver drops it).
            if udp.checksum() == 0 {
                return None;
            }
            let partial = udp.checksum_is_partial(pseudo);
            (
                partial,
                partial || udp.verify_checksum(pseudo),
                udp::CHECKSUM_OFFSET,
            )
        }
        _ => return None,
    };
    Some(match (partial, valid) {
        (true, _) => InnerCsum::Partial {
            csum_start: u16::try_from(l3.l4).ok()?,
            csum_offset: u16::try_from(csum_offset).ok()?,
        },
        (false, true) => InnerCsum::Valid,
        (false, false) => InnerCsum::Bad,
    })
}

/// Sets the vnet header `hdr` (zeroed first) of the received Ethernet frame `frame`: when its
/// inner L4 checksum is partial ([`inner_partial_csum`]), NEEDS_CSUM with `csum_start` and
/// `csum_offset`, so a TAP or AF_PACKET port hands it to a kernel that completes it (or
/// trusts it, as it trusts its own partial packets) and the switch completes it for a port
/// without a vnet header. A frame with bytes past the IP packet (Ethernet padding, which a
/// completion from `csum_start` to the end would sum) is completed here instead. Returns what
/// was found: the caller drops [`InnerCsum::Bad`].
pub fn rx_vnet_hdr(hdr: &mut [u8], frame: &mut [u8]) -> InnerCsum {
    hdr.fill(0);
    let Some((found, end)) = partial_csum_at(frame) else {
        return InnerCsum::Other;
    };
    if let InnerCsum::Partial {
        csum_start,
        csum_offset,
    } = found
    {
        let start = usize::from(csum_start);
        if end < frame.len() {
            // Cannot fail: partial_csum_at checked the field lies within frame[..end].
            let _ =
                crate::gso::complete_checksum(&mut frame[..end], start, usize::from(csum_offset));
        } else {
            let mut v = crate::wire::vnet::VnetHdr::new_unchecked(hdr);
            v.set_flags(crate::wire::vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM);
            v.set_csum_start(csum_start);
            v.set_csum_offset(csum_offset);
        }
    }
    found
}

/// What [`rx_super_packet`] made of a read that is one tunnelled GSO super-packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuperPacket {
    /// Not one: an ordinary burst of datagrams (or one datagram).
    No,
    /// One, its vnet header written: hand the frame on whole.
    Yes,
    /// One whose inner checksum is wrong and not partial: drop it
    /// (`vxlan_bad_inner_checksum`).
    Bad,
}

/// Recognises a read that is one VXLAN datagram carrying a TCP GSO super-packet, and writes
/// the vnet header that hands it on whole.
///
/// A kernel VTEP whose underlay device has TSO/GSO (a veth's default) sends a TCP super-packet
/// through vxlan as one GSO skb (`SKB_GSO_TCPV4 | SKB_GSO_UDP_TUNNEL`); over a veth it reaches
/// this namespace unsegmented and the receive socket takes it whole: one datagram of up to
/// 64 KiB, with no `UDP_GRO` control message (the kernel gives one only for `SKB_GSO_UDP_L4`),
/// so nothing says the sender's MSS. Handed on as a plain frame it is over the MTU. It is told
/// from a genuinely oversized frame by its inner packet: unfragmented TCP over IPv4 or IPv6
/// whose IP packet ends exactly where the frame does.
///
/// `frame` is the inner Ethernet frame (the datagram after the VXLAN header), `mtu` the
/// network's. When it is one, `hdr` gets TCPv4 (or TCPv6) GSO with NEEDS_CSUM and a `gso_size` that
/// fills the MTU (`mtu` minus its IP and TCP headers: a byte stream may be cut anywhere, and
/// the sender's MSS is no larger, since its interface has the network's MTU), and the
/// checksum field gets the pseudo-header sum over the whole packet (the kernel leaves it so; a
/// complete one that verifies is turned into it, whoever segments sums afresh).
///
/// A UDP super-packet (a sender's `UDP_SEGMENT` send, `SKB_GSO_UDP_L4 | SKB_GSO_UDP_TUNNEL`)
/// does come with a `UDP_GRO` control message, whose size is the inner datagrams' payload size
/// (the sender's `gso_size`): given as `udp_gso`, it becomes the UDP_L4 vnet header's
/// `gso_size`, so each datagram comes out with the sender's boundaries, by the receiving
/// kernel or by the switch's segmentation for a port without UDP GSO. Without it a UDP
/// super-packet is not taken (its boundaries are unknown), nor when a datagram of that size
/// would not fit the MTU.
pub fn rx_super_packet(
    hdr: &mut [u8],
    frame: &mut [u8],
    mtu: usize,
    udp_gso: Option<usize>,
) -> SuperPacket {
    let Some((repr, csum_field)) = super_packet(frame, mtu, udp_gso) else {
        return SuperPacket::No;
    };
    let Some(repr) = repr else {
        return SuperPacket::Bad;
    };
    let Some(out) = hdr.get_mut(..HDR_LEN) else {
        return SuperPacket::No;
    };
    out.copy_from_slice(&repr.to_bytes());
    let (field, pseudo) = csum_field;
    if let Some(f) = frame.get_mut(field..field + 2) {
        f.copy_from_slice(&pseudo.to_be_bytes());
    }
    SuperPacket::Yes
}

/// [`rx_super_packet`]'s judgement: `None` when `frame` is not a super-packet; else the vnet
/// header (`None` for a bad checksum) and the checksum field's offset and partial value.
#[allow(clippy::type_complexity)]
fn super_packet(
    frame: &[u8],
    mtu: usize,
    udp_gso: Option<usize>,
) -> Option<(Option<VnetHdrRepr>, (usize, u16))> {
    let l3 = InnerL3::parse(frame, Lengths::Gso)?;
    let eth_len = EthernetFrame::new_checked(frame).ok()?.header_len();
    // The IP packet's length, and its headers' (IPv6: with extension headers).
    let ip_len = l3.end - eth_len;
    let ip_hdrs = l3.l4 - eth_len;
    if l3.end != frame.len() || ip_len <= mtu {
        return None;
    }
    let l4_len = l3.end - l3.l4;
    let seg = frame.get(l3.l4..l3.end)?;
    let (gso_type, l4_hdr, gso_size, csum_offset) = match l3.proto {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(seg).ok()?;
            let headers = ip_hdrs + tcp.header_len();
            let gso_size = mtu.checked_sub(headers).filter(|g| *g > 0)?;
            let gso_type = if l3.v6 {
                GsoType::TcpV6
            } else {
                GsoType::TcpV4
            };
            (gso_type, tcp.header_len(), gso_size, tcp::CHECKSUM_OFFSET)
        }
        IpProtocol::Udp => {
            let gso_size = udp_gso.filter(|g| *g > 0)?;
            let udp = UdpPacket::new_checked(seg).ok()?;
            // The kernel writes the whole super-packet's length (the views take it as is, not
            // the 64 KiB-capped field of a segment); a datagram of gso_size must fit the MTU.
            if usize::from(udp.len()) != l4_len || ip_hdrs + udp::UDP_HDR_LEN + gso_size > mtu {
                return None;
            }
            (
                GsoType::UdpL4,
                udp::UDP_HDR_LEN,
                gso_size,
                udp::CHECKSUM_OFFSET,
            )
        }
        _ => return None,
    };
    let partial = checksum::fold(l3.pseudo);
    let verdict = match l4_csum(frame, &l3) {
        Some(InnerCsum::Bad) => None,
        _ => Some(VnetHdrRepr {
            needs_csum: true,
            data_valid: false,
            gso_type,
            ecn: false,
            hdr_len: u16::try_from(l3.l4 + l4_hdr).ok()?,
            gso_size: u16::try_from(gso_size).ok()?,
            csum_start: u16::try_from(l3.l4).ok()?,
            csum_offset: u16::try_from(csum_offset).ok()?,
        }),
    };
    Some((verdict, (l3.l4 + csum_offset, partial)))
}

/// Largest IPv4 packet a merged super-frame may carry (the total-length field).
const GRO_MAX_IP: usize = 65_535;
/// Most frames one merged super-frame takes.
pub const GRO_MAX_SEGS: usize = 64;

/// One TCP/IPv4 segment as [`gro_tcp4`] sees it.
#[derive(Debug, Clone, Copy)]
struct Tcp4Seg {
    /// Ethernet + IPv4 + TCP header length.
    hdr_len: usize,
    seq: u32,
    payload: usize,
    flags: u8,
}

/// Ethernet + IPv4 header of a segment [`tcp4_seg`] takes (untagged, no IP options).
const GRO_L4_OFF: usize = ETH_HDR_LEN + IPV4_HDR_LEN;

/// Parses an untagged Ethernet frame holding a plain TCP/IPv4 segment that may be merged: no IP
/// options, not a fragment, no padding, only ACK (and PSH) set, some payload, and a correct
/// or partial TCP checksum (a segment with a bad one is left alone for the receiver to drop).
/// A partial one (the folded pseudo-header sum, see [`inner_partial_csum`]) is as good: the
/// merged frame's checksum is partial anyway, rewritten for the merged length, and whoever
/// completes it sums the payload afresh.
fn tcp4_seg(f: &[u8]) -> Option<Tcp4Seg> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.is_vlan_tagged() || eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.header_len() != IPV4_HDR_LEN
        || ip.protocol() != IpProtocol::Tcp
        || ip.packet_len() + ETH_HDR_LEN != f.len()
        || ip.is_fragment()
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags = tcp.flags();
    if tcp.payload().is_empty()
        || flags & !(tcp::flags::ACK | tcp::flags::PSH) != 0
        || flags & tcp::flags::ACK == 0
    {
        return None;
    }
    let pseudo = ip.pseudo_header(u32::try_from(ip.payload().len()).ok()?);
    if !tcp.checksum_is_partial(pseudo) && !tcp.verify_checksum(pseudo) {
        return None;
    }
    Some(Tcp4Seg {
        hdr_len: GRO_L4_OFF + tcp.header_len(),
        seq: tcp.seq_number(),
        payload: tcp.payload().len(),
        flags,
    })
}

/// Whether `b` may follow `a` in one super-frame, header-wise: same MACs, same IPv4 DSCP/ECN,
/// DF, TTL and addresses, same TCP ports, ack, data offset, window and options. Both passed
/// [`tcp4_seg`] with the same header length `hdr_len`.
fn same_flow(a: &[u8], b: &[u8], hdr_len: usize) -> bool {
    let (ia, ib) = (
        Ipv4Packet::new_unchecked(&a[ETH_HDR_LEN..]),
        Ipv4Packet::new_unchecked(&b[ETH_HDR_LEN..]),
    );
    let (ta, tb) = (
        TcpPacket::new_unchecked(&a[GRO_L4_OFF..]),
        TcpPacket::new_unchecked(&b[GRO_L4_OFF..]),
    );
    a[..ETH_HDR_LEN] == b[..ETH_HDR_LEN]
        && ia.dscp_ecn() == ib.dscp_ecn()
        && ia.dont_frag() == ib.dont_frag()
        && ia.ttl() == ib.ttl()
        && ia.src_octets() == ib.src_octets()
        && ia.dst_octets() == ib.dst_octets()
        && ta.src_port() == tb.src_port()
        && ta.dst_port() == tb.dst_port()
        && ta.ack_number() == tb.ack_number()
        && ta.window_len() == tb.window_len()
        && a[GRO_L4_OFF + TCP_HDR_LEN..hdr_len] == b[GRO_L4_OFF + TCP_HDR_LEN..hdr_len]
}

/// Userspace GRO for frames that came out of the tunnel: merges the longest run of `frames`,
/// from the first, that forms one TCP/IPv4 stream of consecutive segments (same flow, each
/// starting where the previous ended, every payload but the last of the first one's size, PSH
/// only on the last) into one GSO super-frame, written to `out` as
/// `[virtio-net header][Ethernet frame]`: TCPv4 GSO with `gso_size` the segments' payload size
/// and a partial checksum (NEEDS_CSUM; the field holds the pseudo-header sum), the IP header's
/// length and checksum rewritten. A port with offloads (a TAP) then takes one write instead of
/// one per segment, the way the kernel's GRO hands its stack one large packet.
///
/// Returns `Some((merged, len))` when two or more frames were merged, `None` when the first
/// frame cannot start a merge or the second cannot follow it (nothing is written then).
pub fn gro_tcp4(frames: &[&[u8]], out: &mut [u8]) -> Option<(usize, usize)> {
    let first = frames.first()?;
    let s0 = tcp4_seg(first)?;
    if s0.flags & tcp::flags::PSH != 0 {
        return None;
    }
    let mss = s0.payload;
    let mut total = s0.payload;
    let mut next_seq = s0.seq.wrapping_add(u32::try_from(mss).ok()?);
    let mut n = 1;
    let mut flags = s0.flags;
    for f in frames.iter().take(GRO_MAX_SEGS).skip(1) {
        let Some(s) = tcp4_seg(f) else { break };
        if s.hdr_len != s0.hdr_len
            || s.seq != next_seq
            || s.payload > mss
            || !same_flow(first, f, s0.hdr_len)
            || s0.hdr_len - ETH_HDR_LEN + total + s.payload > GRO_MAX_IP
            || HDR_LEN + s0.hdr_len + total + s.payload > out.len()
        {
            break;
        }
        n += 1;
        total += s.payload;
        flags |= s.flags;
        next_seq = next_seq.wrapping_add(u32::try_from(s.payload).ok()?);
        if s.payload < mss || s.flags & tcp::flags::PSH != 0 {
            break;
        }
    }
    if n < 2 {
        return None;
    }
    let hdr_len = s0.hdr_len;
    let ip_len16 = u16::try_from(hdr_len - ETH_HDR_LEN + total).ok()?;
    let vnet = VnetHdrRepr {
        needs_csum: true,
        data_valid: false,
        gso_type: GsoType::TcpV4,
        ecn: false,
        hdr_len: u16::try_from(hdr_len).ok()?,
        gso_size: u16::try_from(mss).ok()?,
        csum_start: u16::try_from(GRO_L4_OFF).ok()?,
        csum_offset: u16::try_from(tcp::CHECKSUM_OFFSET).ok()?,
    };
    out[..HDR_LEN].copy_from_slice(&vnet.to_bytes());
    let frame = &mut out[HDR_LEN..];
    frame[..hdr_len].copy_from_slice(&first[..hdr_len]);
    let mut at = hdr_len;
    for f in &frames[..n] {
        let p = &f[hdr_len..];
        frame[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HDR_LEN..GRO_L4_OFF]);
    ip.set_total_len(ip_len16);
    ip.fill_checksum();
    let pseudo = ip.pseudo_header(u32::from(ip_len16) - 20);
    let mut tcp = TcpPacket::new_unchecked(&mut frame[GRO_L4_OFF..hdr_len]);
    tcp.set_flags(flags & !tcp::flags::FIN);
    tcp.fill_partial_checksum(pseudo);
    Some((n, HDR_LEN + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }
    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

    #[test]
    fn learns_moves_and_ages_out() {
        let t = RemoteTable::new(1000, 16, vec![A, B]);
        assert_eq!(t.learn(mac(1), A, 0), RemoteLearn::Learned);
        assert_eq!(t.destinations(&mac(1), 10), Destinations::One(A));
        assert_eq!(t.learn(mac(1), A, 900), RemoteLearn::Refreshed);
        assert_eq!(t.lookup(&mac(1), 1800), Some(A), "refresh extends life");
        assert_eq!(t.learn(mac(1), B, 1800), RemoteLearn::Moved { from: A });
        assert_eq!(t.lookup(&mac(1), 1801), Some(B));
        assert_eq!(t.lookup(&mac(1), 2801), None, "aged out");
        assert_eq!(
            t.destinations(&mac(1), 2801),
            Destinations::Flood(Arc::new(vec![A, B])),
            "an aged-out MAC floods again"
        );
        assert!(t.entries(2801).is_empty());
        assert_eq!(t.expire(2801), 1);
    }

    #[test]
    fn group_addresses_flood_and_are_never_learned() {
        let t = RemoteTable::new(1000, 16, vec![A]);
        assert_eq!(
            t.destinations(&MacAddr::BROADCAST, 0),
            Destinations::Flood(Arc::new(vec![A]))
        );
        assert_eq!(t.learn(MacAddr::BROADCAST, B, 0), RemoteLearn::Ignored);
        assert_eq!(t.learn(MacAddr([0; 6]), B, 0), RemoteLearn::Ignored);
        assert!(t.entries(0).is_empty());
        // No peers: a flood goes nowhere.
        let lonely = RemoteTable::new(1000, 16, vec![]);
        assert_eq!(
            lonely.destinations(&mac(7), 0),
            Destinations::Flood(Arc::new(vec![]))
        );
    }

    #[test]
    fn static_entries_neither_age_nor_move() {
        let t = RemoteTable::new(10, 16, vec![]);
        t.add_static(mac(9), A);
        assert_eq!(t.learn(mac(9), B, 5), RemoteLearn::Static);
        assert_eq!(t.lookup(&mac(9), 1_000_000), Some(A));
        assert_eq!(t.expire(1_000_000), 0);
        assert_eq!(
            t.entries(1_000_000),
            vec![RemoteView {
                mac: mac(9),
                vtep: A,
                age_ms: 0,
                is_static: true
            }]
        );
        // A static entry replaces a learned one.
        t.learn(mac(3), B, 0);
        t.add_static(mac(3), A);
        assert_eq!(t.learn(mac(3), B, 1), RemoteLearn::Static);
        assert!(t.remove(&mac(3)));
        assert!(!t.remove(&mac(3)));
        assert_eq!(t.lookup(&mac(3), 1), None);
    }

    #[test]
    fn the_cap_bounds_learned_entries_and_aged_ones_make_room() {
        let t = RemoteTable::new(100, 2, vec![]);
        t.add_static(mac(10), A); // statics do not count
        assert_eq!(t.learn(mac(1), A, 0), RemoteLearn::Learned);
        assert_eq!(t.learn(mac(2), A, 0), RemoteLearn::Learned);
        assert_eq!(t.learn(mac(3), A, 50), RemoteLearn::CapReached);
        assert_eq!(
            t.learn(mac(1), A, 50),
            RemoteLearn::Refreshed,
            "known MACs refresh"
        );
        // mac(2) is idle past the ageing time at 120: it gives its place.
        assert_eq!(t.learn(mac(3), A, 120), RemoteLearn::Learned);
        assert_eq!(t.lookup(&mac(2), 120), None);
        assert_eq!(t.lookup(&mac(1), 120), Some(A));
    }

    /// The learned count the cap checks follows removals, statics replacing learned entries,
    /// moves and expiry (it is kept beside the table, not counted by a scan).
    #[test]
    fn the_learned_count_follows_every_change() {
        let t = RemoteTable::new(100, 2, vec![]);
        t.learn(mac(1), A, 0);
        t.learn(mac(2), A, 0);
        assert_eq!(t.learn(mac(3), A, 0), RemoteLearn::CapReached);
        assert!(t.remove(&mac(1)));
        assert_eq!(t.learn(mac(3), A, 0), RemoteLearn::Learned);
        t.add_static(mac(2), B);
        assert_eq!(
            t.learn(mac(4), A, 0),
            RemoteLearn::Learned,
            "mac(2) is static now"
        );
        assert_eq!(t.learn(mac(4), B, 1), RemoteLearn::Moved { from: A });
        assert_eq!(
            t.learn(mac(5), A, 1),
            RemoteLearn::CapReached,
            "a move adds none"
        );
        assert_eq!(t.expire(200), 2);
        assert_eq!(t.learn(mac(5), A, 200), RemoteLearn::Learned);
        assert_eq!(t.learn(mac(6), A, 200), RemoteLearn::Learned);
        assert_eq!(t.learn(mac(7), A, 200), RemoteLearn::CapReached);
    }

    #[test]
    fn maybe_expire_sweeps_at_most_every_quarter_ageing() {
        let t = RemoteTable::new(1000, 16, vec![]);
        t.learn(mac(1), A, 0);
        t.maybe_expire(200); // too early: not a sweep
        t.maybe_expire(1500);
        assert!(t.table.is_empty(), "swept");
    }

    fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn source_port_is_a_stable_hash_of_the_flow_in_range() {
        let f1 = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        let p1 = flow_source_port(&f1);
        assert!(p1 >= SOURCE_PORT_MIN);
        assert_eq!(flow_source_port(&f1), p1, "stable");
        let ports: std::collections::HashSet<u16> = (0..64u16)
            .map(|i| flow_source_port(&ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i, 53)))
            .collect();
        assert!(ports.len() > 32, "flows spread: {} distinct", ports.len());
        // The payload is not part of the flow.
        let mut f2 = f1.clone();
        f2.extend_from_slice(b"more payload");
        assert_eq!(flow_source_port(&f2), p1);
        // Anything at all, even a runt, gets a port in range.
        for junk in [&[][..], &[1, 2, 3][..], &[0xff; 13][..]] {
            assert!(flow_source_port(junk) >= SOURCE_PORT_MIN);
        }
    }

    /// A TCP/IPv4 frame with valid checksums: IP id `id`, `payload` bytes of a pattern.
    fn tcp4(seq: u32, id: u16, payload: usize, flags: u8, sport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = u16::try_from(20 + 32 + payload).unwrap();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let ip_sum = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&5201u16.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes()); // ack
        f.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]); // doff 8, window, csum, urg
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]); // NOP NOP timestamps
        f.extend((0..payload).map(|i| u8::try_from((seq as usize + i) % 251).unwrap()));
        let l4 = u32::try_from(f.len() - 34).unwrap();
        let sum = checksum::add(
            checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, l4),
            &f[34..],
        );
        f[50..52].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        f
    }

    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;

    #[test]
    fn gro_merges_a_run_that_segments_back_to_the_same_frames() {
        let frames = [
            tcp4(1000, 7, 100, ACK, 40000),
            tcp4(1100, 8, 100, ACK, 40000),
            tcp4(1200, 9, 100, ACK, 40000),
            tcp4(1300, 10, 60, PSH_ACK, 40000),
            tcp4(1360, 11, 100, ACK, 40000), // after PSH: not merged
        ];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut out = vec![0xa5u8; 4096];
        let (n, len) = gro_tcp4(&refs, &mut out).expect("merged");
        assert_eq!(n, 4);
        let merged = &out[..len];
        assert_eq!(len, HDR_LEN + 66 + 360);
        let hdr = crate::wire::vnet::VnetHdr::new_checked(merged).unwrap();
        let repr = crate::wire::vnet::VnetHdrRepr::parse(&hdr).unwrap();
        assert!(repr.needs_csum);
        assert_eq!(repr.gso_type, crate::wire::vnet::GsoType::TcpV4);
        assert_eq!(
            (repr.gso_size, repr.csum_start, repr.csum_offset),
            (100, 34, 16)
        );
        assert_eq!(usize::from(repr.hdr_len), 66);
        let eth = &merged[HDR_LEN..];
        assert_eq!(checksum::checksum(&eth[14..34]), 0, "IP header checksum");
        assert_eq!(u16::from_be_bytes([eth[16], eth[17]]), 20 + 32 + 360);
        // Cut it again: the very same four frames come out.
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        crate::gso::segment(&repr, eth, None, &mut scratch, &mut |s: &[u8]| {
            got.push(s.to_vec());
            Ok(())
        })
        .expect("segment");
        assert_eq!(got.len(), 4);
        for (i, (g, want)) in got.iter().zip(&frames).enumerate() {
            assert_eq!(g, want, "segment {i}");
        }
    }

    #[test]
    fn gro_leaves_what_does_not_belong_together() {
        let mut out = vec![0u8; 4096];
        let run = |frames: &[Vec<u8>], out: &mut [u8]| {
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            gro_tcp4(&refs, out).map(|(n, _)| n)
        };
        let a = tcp4(1000, 1, 100, ACK, 40000);
        // Nothing to merge with.
        assert_eq!(run(std::slice::from_ref(&a), &mut out), None);
        // A gap in the sequence, another flow, a bigger second payload, PSH on the first.
        assert_eq!(
            run(&[a.clone(), tcp4(1101, 2, 100, ACK, 40000)], &mut out),
            None
        );
        assert_eq!(
            run(&[a.clone(), tcp4(1100, 2, 100, ACK, 40001)], &mut out),
            None
        );
        assert_eq!(
            run(&[a.clone(), tcp4(1100, 2, 101, ACK, 40000)], &mut out),
            None
        );
        assert_eq!(
            run(
                &[
                    tcp4(1000, 1, 100, PSH_ACK, 40000),
                    tcp4(1100, 2, 100, ACK, 40000)
                ],
                &mut out
            ),
            None
        );
        // SYN, FIN and friends are never merged.
        assert_eq!(
            run(
                &[
                    tcp4(1000, 1, 100, 0x11, 40000),
                    tcp4(1100, 2, 100, ACK, 40000)
                ],
                &mut out
            ),
            None
        );
        // A bad checksum stops the run there.
        let mut bad = tcp4(1200, 3, 100, ACK, 40000);
        bad[60] ^= 0xff;
        let frames = [
            a.clone(),
            tcp4(1100, 2, 100, ACK, 40000),
            bad,
            tcp4(1300, 4, 100, ACK, 40000),
        ];
        assert_eq!(run(&frames, &mut out), Some(2));
        // Not IPv4/TCP, padded frames and runts pass through.
        let mut padded = a.clone();
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(
            run(&[padded, tcp4(1100, 2, 100, ACK, 40000)], &mut out),
            None
        );
        assert_eq!(run(&[vec![0; 20], vec![0; 20]], &mut out), None);
        // A smaller segment ends the run; the output buffer bounds it too.
        let frames = [
            a.clone(),
            tcp4(1100, 2, 50, ACK, 40000),
            tcp4(1150, 3, 50, ACK, 40000),
        ];
        assert_eq!(run(&frames, &mut out), Some(2));
        let frames = [
            a.clone(),
            tcp4(1100, 2, 100, ACK, 40000),
            tcp4(1200, 3, 100, ACK, 40000),
        ];
        assert_eq!(run(&frames, &mut out[..HDR_LEN + 66 + 250]), Some(2));
    }
    /// `f` (a valid TCP/IPv4 frame from [`tcp4`], untagged) with its checksum left partial, as
    /// a kernel sender with CHECKSUM_PARTIAL leaves it.
    fn partial(f: &[u8]) -> Vec<u8> {
        let mut p = f.to_vec();
        let l4 = u32::try_from(p.len() - 34).unwrap();
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, l4);
        p[50..52].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        p
    }

    fn hdr_of(h: &[u8]) -> crate::wire::vnet::VnetHdrRepr {
        let v = crate::wire::vnet::VnetHdr::new_checked(h).unwrap();
        crate::wire::vnet::VnetHdrRepr::parse(&v).unwrap()
    }

    #[test]
    fn a_partial_tcp_checksum_becomes_needs_csum_and_completes_to_the_right_value() {
        let good = tcp4(1000, 1, 100, ACK, 40000);
        let mut f = partial(&good);
        assert_ne!(f, good);
        assert_eq!(
            inner_partial_csum(&f),
            InnerCsum::Partial {
                csum_start: 34,
                csum_offset: 16
            }
        );
        let mut hdr = [0xa5u8; HDR_LEN];
        let found = rx_vnet_hdr(&mut hdr, &mut f);
        assert!(matches!(found, InnerCsum::Partial { .. }));
        let repr = hdr_of(&hdr);
        assert!(repr.needs_csum);
        assert_eq!(repr.gso_type, crate::wire::vnet::GsoType::None);
        assert_eq!((repr.csum_start, repr.csum_offset), (34, 16));
        // Whoever completes it (the kernel behind a TAP, or the switch) gets the sender's
        // checksum.
        crate::gso::complete_checksum(&mut f, 34, 16).unwrap();
        assert_eq!(f, good);
    }

    #[test]
    fn hellos_are_recognised_and_say_when_checksums_may_stay_partial() {
        let h = hello_frame();
        assert!(is_hello(&h));
        assert!(h[0] & 1 == 1, "a group destination");
        for cut in [&h[..HELLO_LEN - 1], &[][..]] {
            assert!(!is_hello(cut));
        }
        let mut other = h;
        other[HELLO_LEN - 1] ^= 1;
        assert!(
            !is_hello(&other),
            "another payload of the experimental EtherType"
        );
        let mut other = h;
        other[5] = 0x0f;
        assert!(!is_hello(&other));

        let mut p = PeerCsum::default();
        assert!(
            p.hello_due(0) && !p.takes_partial(0),
            "a new peer: hello, full checksums"
        );
        p.sent = Some(1000);
        assert!(!p.hello_due(1000 + HELLO_EVERY_MS - 1));
        assert!(p.hello_due(1000 + HELLO_EVERY_MS));
        assert!(!p.takes_partial(2000), "sending hellos is not hearing them");
        p.heard = Some(2000);
        assert!(p.takes_partial(2000));
        assert!(p.takes_partial(2000 + HELLO_TTL_MS - 1));
        assert!(
            !p.takes_partial(2000 + HELLO_TTL_MS),
            "silent too long: full again"
        );
        assert!(p.takes_partial(0), "a clock before the hello (saturating)");
    }

    #[test]
    fn peer_hellos_say_hello_once_per_period_and_partial_only_to_peers_heard() {
        let h = PeerHellos::default();
        let mut due = Vec::new();
        assert!(!h.before_send(&[], 0, &mut due), "nobody: nothing partial");
        assert!(!h.before_send(&[A], 1000, &mut due), "A not heard: full");
        assert_eq!(due, [A], "a hello to a new peer");
        due.clear();
        assert!(!h.before_send(&[A], 1000 + HELLO_EVERY_MS - 1, &mut due));
        assert!(due.is_empty(), "not again within the period");
        h.heard(A, 2000);
        assert!(h.before_send(&[A], 2000, &mut due), "A said hello: partial");
        assert!(
            !h.before_send(&[A, B], 2000, &mut due),
            "a flood: every peer must take it"
        );
        assert_eq!(due, [B]);
        due.clear();
        assert!(h.before_send(&[A], 1000 + HELLO_EVERY_MS, &mut due));
        assert_eq!(due, [A], "again after the period");
        assert!(
            !h.before_send(&[A], 2000 + HELLO_TTL_MS, &mut due),
            "A silent too long"
        );
        assert_eq!(
            h.get(A),
            Some(PeerCsum {
                sent: Some(2000 + HELLO_TTL_MS),
                heard: Some(2000)
            })
        );
        // Heard before anything was sent there: partial from the first frame (after a hello).
        due.clear();
        h.heard(C, 20_000);
        assert!(h.before_send(&[C], 20_000, &mut due));
        assert_eq!(due, [C]);
    }

    #[test]
    fn peer_hellos_forget_idle_peers_and_stop_growing_at_the_cap() {
        let h = PeerHellos::new(2);
        let mut due = Vec::new();
        h.before_send(&[A], 0, &mut due);
        h.heard(B, 0);
        assert_eq!(h.len(), 2);
        // Full of active peers: C gets no hello and full checksums, its hello is not kept.
        due.clear();
        assert!(!h.before_send(&[C], 10, &mut due));
        h.heard(C, 10);
        assert!(due.is_empty() && h.get(C).is_none() && h.len() == 2);
        // A idle (hello due, none heard) once the period is over: forgotten when C comes;
        // B's hello still counts.
        h.heard(C, HELLO_EVERY_MS);
        assert_eq!(h.get(A), None, "A forgotten");
        assert!(h.get(B).is_some() && h.get(C).is_some());
        assert!(h.before_send(&[B, C], HELLO_EVERY_MS, &mut due));
        // A forgotten peer is a new one again: a hello, full checksums.
        due.clear();
        h.heard(B, HELLO_EVERY_MS);
        assert!(!h.before_send(&[A], HELLO_TTL_MS, &mut due), "full again");
        assert!(due.is_empty(), "no room: B and C still active");
        assert!(!h.before_send(&[A], HELLO_EVERY_MS + HELLO_TTL_MS, &mut due));
        assert_eq!(due, [A], "B and C idle now: room for A");
    }

    #[test]
    fn peer_hellos_send_one_hello_whoever_sends_at_once() {
        let h = Arc::new(PeerHellos::default());
        let sent: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let h = h.clone();
                    s.spawn(move || {
                        let mut due = Vec::new();
                        for _ in 0..1000 {
                            h.before_send(&[A, B], 7, &mut due);
                        }
                        due.len()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        assert_eq!(sent, 2, "one hello to each peer, from one sender");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn a_bad_or_complete_checksum_is_not_taken_for_a_partial_one() {
        let good = tcp4(1000, 1, 100, ACK, 40000);
        assert_eq!(inner_partial_csum(&good), InnerCsum::Valid);
        // A wrong checksum field, and a right one over corrupted data: bad, for the port to
        // drop and count.
        let mut bad = good.clone();
        bad[50] ^= 0x01;
        let mut corrupt = good.clone();
        corrupt[80] ^= 0xff;
        for (f, want) in [
            (good, InnerCsum::Valid),
            (bad, InnerCsum::Bad),
            (corrupt, InnerCsum::Bad),
        ] {
            let mut g = f.clone();
            let mut hdr = [0xa5u8; HDR_LEN];
            assert_eq!(rx_vnet_hdr(&mut hdr, &mut g), want);
            assert_eq!(hdr, [0; HDR_LEN], "a zero header");
            assert_eq!(g, f, "the frame untouched");
        }
        // A fragment, ICMP and a runt are never partial, whatever they hold.
        let mut frag = partial(&tcp4(1000, 1, 100, ACK, 40000));
        frag[20] |= 0x20; // MF
        assert_eq!(inner_partial_csum(&frag), InnerCsum::Other);
        let mut icmp = partial(&tcp4(1000, 1, 100, ACK, 40000));
        icmp[23] = 1;
        assert_eq!(inner_partial_csum(&icmp), InnerCsum::Other);
        assert_eq!(inner_partial_csum(&icmp[..40]), InnerCsum::Other);
        assert_eq!(inner_partial_csum(&[]), InnerCsum::Other);
    }

    #[test]
    fn partial_udp_behind_a_vlan_tag_and_udp_without_checksum() {
        let mut f = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        f.extend_from_slice(b"data");
        f[20..22].copy_from_slice(&32u16.to_be_bytes()); // IP total length
        f[42..44].copy_from_slice(&12u16.to_be_bytes()); // UDP length
                                                         // No checksum (zero): not partial.
        assert_eq!(inner_partial_csum(&f), InnerCsum::Other);
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 12);
        f[44..46].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        assert_eq!(
            inner_partial_csum(&f),
            InnerCsum::Partial {
                csum_start: 38,
                csum_offset: 6
            }
        );
        let mut hdr = [0u8; HDR_LEN];
        rx_vnet_hdr(&mut hdr, &mut f);
        assert!(hdr_of(&hdr).needs_csum);
        crate::gso::complete_checksum(&mut f, 38, 6).unwrap();
        let sum = checksum::add(pseudo, &f[38..]);
        assert_eq!(checksum::fold(sum), 0xffff, "a valid UDP checksum");
    }

    /// A kernel VTEP's TSO super-packet, read whole as one datagram: one frame with a GSO
    /// header that fills the MTU, not a frame over the MTU.
    #[test]
    fn a_tunnelled_super_packet_goes_on_whole_as_gso() {
        let payload = 1000 * 20;
        // IP and TCP headers are 20 + 32 bytes: an MTU of 1052 fits 1000 bytes a segment.
        let mtu = 1052;
        let good = tcp4(1000, 1, payload, ACK, 40000);
        for f in [partial(&good), good.clone()] {
            let mut g = f.clone();
            let mut hdr = [0xa5u8; HDR_LEN];
            assert_eq!(
                rx_super_packet(&mut hdr, &mut g, mtu, None),
                SuperPacket::Yes
            );
            let h = hdr_of(&hdr);
            assert_eq!(h.gso_type, crate::wire::vnet::GsoType::TcpV4);
            assert_eq!(
                (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
                (1000, 66, 34, 16)
            );
            assert!(h.needs_csum);
            assert_eq!(
                g,
                partial(&good),
                "the checksum field holds the pseudo-header sum"
            );
            let mut segs = Vec::new();
            crate::gso::segment(&h, &g, None, &mut Vec::new(), &mut |s| {
                segs.push(s.to_vec());
                Ok(())
            })
            .expect("segments");
            assert_eq!(segs.len(), 20);
            assert!(segs
                .iter()
                .all(|s| inner_partial_csum(s) == InnerCsum::Valid));
        }
        // A bad checksum is judged, not passed; a packet within the MTU, two packets in one
        // read (the first ends before the read does) and UDP are not super-packets.
        let mut bad = good.clone();
        bad[60] ^= 1;
        let mut hdr = [0u8; HDR_LEN];
        assert_eq!(
            rx_super_packet(&mut hdr, &mut bad, mtu, None),
            SuperPacket::Bad
        );
        let mut g = good.clone();
        assert_eq!(
            rx_super_packet(&mut hdr, &mut g, 52 + payload, None),
            SuperPacket::No
        );
        let mut two = tcp4(1000, 1, 2000, ACK, 40000);
        two.extend_from_slice(&tcp4(3000, 2, 2000, ACK, 40000));
        assert_eq!(
            rx_super_packet(&mut hdr, &mut two, mtu, None),
            SuperPacket::No
        );
        let mut udp = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        assert_eq!(
            rx_super_packet(&mut hdr, &mut udp, 10, None),
            SuperPacket::No
        );
        assert_eq!(
            rx_super_packet(&mut hdr, &mut [], mtu, None),
            SuperPacket::No
        );
    }

    const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A TCP/IPv6 frame with a valid checksum (`payload` bytes of a pattern), with a
    /// destination options header of 8 bytes before TCP when `dest_opts`.
    fn tcp6(seq: u32, payload: usize, dest_opts: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        let ext = if dest_opts { 8 } else { 0 };
        let plen = u16::try_from(ext + 32 + payload).unwrap();
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[if dest_opts { 60 } else { 6 }, 64]);
        f.extend_from_slice(&SRC6);
        f.extend_from_slice(&DST6);
        if dest_opts {
            f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, PadN
        }
        let l4 = f.len();
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&5201u16.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&[0x80, ACK, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        f.extend((0..payload).map(|i| u8::try_from((seq as usize + i) % 251).unwrap()));
        let len = u32::try_from(f.len() - l4).unwrap();
        let sum = checksum::add(checksum::pseudo_header_v6(&SRC6, &DST6, 6, len), &f[l4..]);
        f[l4 + 16..l4 + 18].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        f
    }

    /// `f` (from [`tcp6`], TCP at `l4`) with the checksum field left partial, as a kernel
    /// sender with CHECKSUM_PARTIAL leaves it.
    fn partial6(f: &[u8], l4: usize) -> Vec<u8> {
        let mut p = f.to_vec();
        let len = u32::try_from(p.len() - l4).unwrap();
        let pseudo = checksum::pseudo_header_v6(&SRC6, &DST6, 6, len);
        p[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        p
    }

    /// IPv6 inner frames (issue 15): a kernel VTEP's partial TCPv6 checksum becomes
    /// NEEDS_CSUM (past a destination options header too), a bad one is judged bad, and its
    /// TSO6 super-packet goes on whole as TCPv6 GSO that segments into valid frames.
    #[test]
    fn ipv6_inner_frames_partial_checksums_and_super_packets() {
        for (dest_opts, l4) in [(false, 54u16), (true, 62)] {
            let good = tcp6(1000, 100, dest_opts);
            assert_eq!(inner_partial_csum(&good), InnerCsum::Valid);
            let mut f = partial6(&good, usize::from(l4));
            assert_eq!(
                inner_partial_csum(&f),
                InnerCsum::Partial {
                    csum_start: l4,
                    csum_offset: 16
                }
            );
            let mut hdr = [0xa5u8; HDR_LEN];
            rx_vnet_hdr(&mut hdr, &mut f);
            let repr = hdr_of(&hdr);
            assert!(repr.needs_csum);
            assert_eq!((repr.csum_start, repr.csum_offset), (l4, 16));
            crate::gso::complete_checksum(&mut f, usize::from(l4), 16).unwrap();
            assert_eq!(f, good);
            let mut bad = good.clone();
            bad[90] ^= 0xff;
            assert_eq!(inner_partial_csum(&bad), InnerCsum::Bad);
        }
        // A fragment header first: nothing to judge.
        let mut frag = tcp6(1000, 100, true);
        frag[20] = 44;
        assert_eq!(inner_partial_csum(&frag), InnerCsum::Other);

        // The TSO6 super-packet: IPv6 and TCP headers are 40 + 32 bytes, so an MTU of 1072
        // fits 1000 bytes a segment.
        let mtu = 1072;
        let good = tcp6(1000, 20 * 1000, false);
        let mut g = partial6(&good, 54);
        let mut hdr = [0xa5u8; HDR_LEN];
        assert_eq!(
            rx_super_packet(&mut hdr, &mut g, mtu, None),
            SuperPacket::Yes
        );
        let h = hdr_of(&hdr);
        assert_eq!(h.gso_type, crate::wire::vnet::GsoType::TcpV6);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (1000, 86, 54, 16)
        );
        let mut segs = Vec::new();
        crate::gso::segment(&h, &g, None, &mut Vec::new(), &mut |s| {
            segs.push(s.to_vec());
            Ok(())
        })
        .expect("segments");
        assert_eq!(segs.len(), 20);
        assert!(segs
            .iter()
            .all(|s| inner_partial_csum(s) == InnerCsum::Valid));
        let mut bad = good.clone();
        bad[500] ^= 1;
        assert_eq!(
            rx_super_packet(&mut hdr, &mut bad, mtu, None),
            SuperPacket::Bad
        );
    }

    /// A UDP/IPv4 super-packet of `n` datagrams of `size` payload bytes each as a kernel UDP
    /// GSO sender leaves it: lengths of the whole, the checksum field partial.
    fn udp4_super(n: usize, size: usize) -> Vec<u8> {
        let payload = n * size;
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = u16::try_from(20 + 8 + payload).unwrap();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let ip_sum = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let l4 = u16::try_from(8 + payload).unwrap();
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
        f.extend_from_slice(&l4.to_be_bytes());
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, l4.into());
        f.extend_from_slice(&checksum::fold(pseudo).to_be_bytes());
        f.extend((0..payload).map(|i| u8::try_from(i % 251).unwrap()));
        f
    }

    /// A kernel VTEP's UDP GSO super-packet, read whole with the sender's datagram size from
    /// UDP_GRO: one UDP_L4 GSO frame that segments back into the sender's datagrams.
    #[test]
    fn a_tunnelled_udp_super_packet_goes_on_as_udp_gso_with_the_senders_size() {
        let (n, size) = (20, 1000);
        let mtu = 20 + 8 + 1200;
        let f = udp4_super(n, size);
        let mut g = f.clone();
        let mut hdr = [0xa5u8; HDR_LEN];
        assert_eq!(
            rx_super_packet(&mut hdr, &mut g, mtu, Some(size)),
            SuperPacket::Yes
        );
        let h = hdr_of(&hdr);
        assert_eq!(h.gso_type, crate::wire::vnet::GsoType::UdpL4);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (1000, 42, 34, 6)
        );
        assert!(h.needs_csum);
        assert_eq!(g, f, "the partial checksum stays");
        let mut segs = Vec::new();
        crate::gso::segment(&h, &g, None, &mut Vec::new(), &mut |s| {
            segs.push(s.to_vec());
            Ok(())
        })
        .expect("segments");
        assert_eq!(segs.len(), n);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.len(), 42 + size, "datagram {i} has the sender's size");
            assert_eq!(inner_partial_csum(s), InnerCsum::Valid, "datagram {i}");
            assert_eq!(&s[42..], &f[42 + i * size..42 + (i + 1) * size]);
        }
        // Without the sender's size, or with one over the MTU, it is not taken; a bad
        // checksum is judged.
        let mut hdr = [0u8; HDR_LEN];
        assert_eq!(
            rx_super_packet(&mut hdr, &mut g, mtu, None),
            SuperPacket::No
        );
        assert_eq!(
            rx_super_packet(&mut hdr, &mut g, mtu, Some(1201)),
            SuperPacket::No
        );
        let mut bad = f.clone();
        bad[40] ^= 1;
        assert_eq!(
            rx_super_packet(&mut hdr, &mut bad, mtu, Some(size)),
            SuperPacket::Bad
        );
    }

    #[test]
    fn a_padded_partial_frame_is_completed_in_place() {
        let good = tcp4(1000, 1, 2, ACK, 40000);
        let mut f = partial(&good);
        f.extend_from_slice(&[0xee; 6]); // padding a completion to the end would sum
        let mut hdr = [0u8; HDR_LEN];
        assert!(matches!(
            rx_vnet_hdr(&mut hdr, &mut f),
            InnerCsum::Partial { .. }
        ));
        assert_eq!(hdr, [0; HDR_LEN], "complete: no NEEDS_CSUM");
        assert_eq!(&f[..good.len()], &good[..]);
    }

    #[test]
    fn gro_merges_partial_segments_into_a_correct_super_frame() {
        let frames = [
            tcp4(1000, 7, 100, ACK, 40000),
            tcp4(1100, 8, 100, ACK, 40000),
            tcp4(1200, 9, 100, ACK, 40000),
            tcp4(1300, 10, 60, PSH_ACK, 40000),
        ];
        // All partial, and one partial among complete ones.
        let all: Vec<Vec<u8>> = frames.iter().map(|f| partial(f)).collect();
        let mut mixed = frames.to_vec();
        mixed[1] = partial(&mixed[1]);
        for input in [all, mixed] {
            let refs: Vec<&[u8]> = input.iter().map(Vec::as_slice).collect();
            let mut out = vec![0u8; 4096];
            let (n, len) = gro_tcp4(&refs, &mut out).expect("merged");
            assert_eq!(n, 4);
            let repr = hdr_of(&out[..HDR_LEN]);
            let mut got = Vec::new();
            crate::gso::segment(&repr, &out[HDR_LEN..len], None, &mut Vec::new(), &mut |s| {
                got.push(s.to_vec());
                Ok(())
            })
            .expect("segment");
            assert_eq!(
                got,
                frames.to_vec(),
                "the senders' segments, checksums complete"
            );
        }
    }
}
