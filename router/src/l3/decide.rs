//! The router's forwarding decision, pure: a frame from interface `ingress` (virtio-net
//! header, then Ethernet) in, a [`Verdict`] out. A forwarded frame is rewritten in place
//! (MACs, TTL, masquerading) with incremental checksums; a reply (ARP, ICMP echo, an ICMP
//! error) is built into `out`, which the caller owns. Nothing is allocated per frame (a NAT
//! mapping or a neighbour learned may grow a table), nothing is read from a clock.
//!
//! ICMP errors come from the address of the interface the packet arrived on and go back to
//! the frame's Ethernet source on that interface (the previous hop), so traceroute and
//! tracepath show the arriving side of each router. None is sent about an ICMP error, a
//! fragment past the first, or a packet from an address that is not a host's.
//!
//! A GSO super-frame is forwarded whole, its TTL decremented once (the segments the egress
//! port cuts all carry it), when each segment fits the next network's MTU; else it is
//! treated as one packet too big. The router does not fragment: a packet too big without DF
//! is dropped (`too_big`).

use std::net::Ipv4Addr;

use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, ETH_HDR_LEN};
use netyard_switch::wire::icmpv4::{msg_type, Icmpv4Packet, Icmpv4Repr, ICMPV4_HDR_LEN};
use netyard_switch::wire::ip::{IpProtocol, Lengths};
use netyard_switch::wire::ipv4::{Ipv4Packet, Ipv4Repr, IPV4_HDR_LEN};
use netyard_switch::wire::vnet::{GsoType, VnetHdr, VnetHdrRepr};
use netyard_switch::MacAddr;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};

use super::nat::{self, ErrorWay, Nat, NatError, Proto};
use super::neigh::{Lookup, Neighbours};
use super::{Config, Counter, Counters, Iface};
use netyard_switch::wire::checksum as csum;

/// Where the IP header starts in a frame (no VLAN tags: the router's ports are untagged).
const IP_OFF: usize = VNET_HDR_LEN + ETH_HDR_LEN;
/// An ICMP error quotes the packet up to a 576-byte datagram, as Linux does.
const QUOTE_MAX: usize = 576 - IPV4_HDR_LEN - ICMPV4_HDR_LEN;
/// TTL of what the router itself sends.
const OWN_TTL: u8 = 64;

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The frame, rewritten, leaves through `iface`. `ask`: the next hop's entry is stale,
    /// send an ARP request for it too.
    Forward { iface: usize, ask: Option<Ipv4Addr> },
    /// Rewritten but for the destination MAC, which the next hop `hop` on `iface` has not
    /// told yet: hold the frame and ask.
    Resolve { iface: usize, hop: Ipv4Addr },
    /// A frame built in `out[..len]` leaves through `iface`.
    Reply { iface: usize, len: usize },
    /// An ARP message taught the cache `ip` on `iface`: frames held for it may go; `reply`
    /// is the length of an ARP reply built in `out`, to send through `iface`.
    Learned {
        iface: usize,
        ip: Ipv4Addr,
        reply: Option<usize>,
    },
    /// Nothing to send (counted under this counter of the ingress interface).
    Drop(Counter),
}

/// What a decision reads and updates besides the frame: the router's configuration, its
/// ARP cache and NAT table, its counters (one set per interface), the time, and the buffer
/// replies are built in. References only: built per frame at no cost.
pub struct Cx<'a> {
    pub cfg: &'a Config,
    pub neigh: &'a mut Neighbours,
    pub nat: &'a mut Nat,
    pub counters: &'a [Counters],
    pub now: u64,
    pub out: &'a mut [u8],
}

/// Decides one frame arriving on interface `ingress` (see the module's doc). Counters go to
/// `cx.counters[interface]`.
pub fn decide(cx: Cx<'_>, ingress: usize, frame: &mut [u8]) -> Verdict {
    let counters = cx.counters;
    let v = decide_inner(cx, ingress, frame);
    let count = |i: usize, c: Counter| {
        if let Some(k) = counters.get(i) {
            k.add(c);
        }
    };
    match v {
        Verdict::Drop(c) => count(ingress, c),
        Verdict::Forward { iface, .. } | Verdict::Resolve { iface, .. } => {
            count(iface, Counter::Forwarded)
        }
        _ => {}
    }
    v
}

fn decide_inner(cx: Cx<'_>, ingress: usize, frame: &mut [u8]) -> Verdict {
    let Cx {
        cfg,
        neigh,
        nat,
        counters,
        now,
        out,
    } = cx;
    let Some(inf) = cfg.ifaces.get(ingress) else {
        return Verdict::Drop(Counter::Ignored);
    };
    let Ok(hdr) = VnetHdr::new_checked(&frame[..]).and_then(|v| VnetHdrRepr::parse(&v)) else {
        return Verdict::Drop(Counter::Malformed);
    };
    let Some(eth) = frame
        .get(VNET_HDR_LEN..)
        .and_then(|b| EthernetFrame::new_checked(b).ok())
    else {
        return Verdict::Drop(Counter::Malformed);
    };
    let (dst_mac, src_mac) = (eth.dst_addr(), eth.src_addr());
    if dst_mac != inf.mac && dst_mac != MacAddr::BROADCAST {
        // Flooded to every port: another host's unknown unicast or a multicast.
        return Verdict::Drop(Counter::Ignored);
    }
    match eth.outer_ethertype() {
        EtherType::Arp => arp(inf, ingress, frame, neigh, now, out),
        EtherType::Ipv4 if dst_mac == inf.mac => ipv4(
            cfg, ingress, hdr, src_mac, frame, neigh, nat, counters, now, out,
        ),
        _ => Verdict::Drop(Counter::Ignored),
    }
}

fn arp(
    inf: &Iface,
    ingress: usize,
    frame: &[u8],
    neigh: &mut Neighbours,
    now: u64,
    out: &mut [u8],
) -> Verdict {
    let Some(p) = frame
        .get(IP_OFF..)
        .and_then(|b| ArpPacket::new_checked(b).ok())
    else {
        return Verdict::Drop(Counter::Malformed);
    };
    let Ok(ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_protocol_addr: tpa,
        ..
    }) = ArpRepr::parse(&p)
    else {
        return Verdict::Drop(Counter::Malformed);
    };
    let from_host = inf.net.contains(&spa) && spa != inf.ip && !sha.is_multicast();
    let mac = MacAddr(sha.0);
    let for_us = tpa == inf.ip;
    let known = !matches!(neigh.lookup(ingress, spa, now), Lookup::Missing);
    if !from_host || !(for_us || known) {
        return Verdict::Drop(Counter::Ignored);
    }
    neigh.learn(ingress, spa, mac, now);
    let reply = (for_us && operation == ArpOperation::Request)
        .then(|| arp_frame(inf, ArpOperation::Reply, mac, spa, out))
        .flatten();
    Verdict::Learned {
        iface: ingress,
        ip: spa,
        reply,
    }
}

/// Builds an ARP message from `inf` to `mac` (broadcast for a request) about `ip` into
/// `out`; its length, None if `out` is too short.
pub fn arp_frame(
    inf: &Iface,
    op: ArpOperation,
    mac: MacAddr,
    ip: Ipv4Addr,
    out: &mut [u8],
) -> Option<usize> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(inf.mac.0),
        source_protocol_addr: inf.ip,
        target_hardware_addr: EthernetAddress(if op == ArpOperation::Request {
            [0; 6]
        } else {
            mac.0
        }),
        target_protocol_addr: ip,
    };
    let len = IP_OFF + repr.buffer_len();
    let buf = out.get_mut(..len)?;
    buf[..VNET_HDR_LEN].fill(0);
    let dst = if op == ArpOperation::Request {
        MacAddr::BROADCAST
    } else {
        mac
    };
    eth_header(&mut buf[VNET_HDR_LEN..], dst, inf.mac, EtherType::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[IP_OFF..]));
    Some(len)
}

fn eth_header(b: &mut [u8], dst: MacAddr, src: MacAddr, t: EtherType) {
    let mut e = EthernetFrame::new_unchecked(b);
    e.set_dst_addr(dst);
    e.set_src_addr(src);
    e.set_outer_ethertype(t);
}

/// What the IPv4 path needs of the header, read once.
struct Head {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    proto: IpProtocol,
    hl: usize,
    /// Bytes of the packet in the frame (a super-frame's whole extent).
    len: usize,
    df: bool,
    first_frag: bool,
    /// The header's checksum holds for a plain frame (a super-frame's is rewritten by
    /// whoever segments it).
    csum_ok: bool,
}

#[allow(clippy::too_many_arguments)]
fn ipv4(
    cfg: &Config,
    ingress: usize,
    hdr: VnetHdrRepr,
    src_mac: MacAddr,
    frame: &mut [u8],
    neigh: &mut Neighbours,
    nat: &mut Nat,
    counters: &[Counters],
    now: u64,
    out: &mut [u8],
) -> Verdict {
    let inf = &cfg.ifaces[ingress];
    let gso = hdr.gso_type != GsoType::None;
    let lengths = if gso { Lengths::Gso } else { Lengths::Strict };
    let h = {
        let Some(p) = frame
            .get(IP_OFF..)
            .and_then(|b| Ipv4Packet::new_checked_with(b, lengths).ok())
        else {
            return Verdict::Drop(Counter::Malformed);
        };
        let Ok(r) = Ipv4Repr::parse(&p) else {
            return Verdict::Drop(Counter::Malformed);
        };
        Head {
            src: r.src_addr,
            dst: r.dst_addr,
            ttl: r.ttl,
            proto: r.protocol,
            hl: p.header_len(),
            len: p.packet_len(),
            df: r.dont_frag,
            first_frag: r.frag_offset == 0,
            csum_ok: gso || p.verify_checksum(),
        }
    };
    if !h.csum_ok {
        return Verdict::Drop(Counter::Malformed);
    }
    if h.dst.is_broadcast() || h.dst.is_multicast() || h.dst == inf.net.broadcast() {
        return Verdict::Drop(Counter::Ignored);
    }
    let mut h = h;
    if let Some(k) = cfg.own(h.dst) {
        // Masqueraded replies: a packet on a NAT interface for its address, matching a
        // mapping, goes on to the inside host.
        let translated = match (cfg.ifaces[k].nat && k == ingress && h.first_frag)
            .then(|| nat_in(frame, &h, hdr.needs_csum, ingress, nat, now))
            .flatten()
        {
            Some(Ok(to)) => {
                if let Some(c) = counters.get(ingress) {
                    c.add(Counter::NatIn);
                }
                Some(to)
            }
            Some(Err(NatError::NoMapping)) | Some(Err(NatError::Full)) => None,
            None => None,
        };
        match translated {
            Some(to) => h.dst = to,
            None => return local(cfg, ingress, counters.get(ingress), src_mac, &h, frame, out),
        }
    }
    if h.ttl <= 1 {
        return icmp_error(
            (ingress, inf),
            src_mac,
            &h,
            frame,
            (msg_type::TIME_EXCEEDED, 0, [0; 4]),
            Counter::TtlExceeded,
            counters.get(ingress),
            out,
        );
    }
    let Some((oi, hop)) = cfg.lookup(h.dst) else {
        return icmp_error(
            (ingress, inf),
            src_mac,
            &h,
            frame,
            (msg_type::DST_UNREACHABLE, 0, [0; 4]),
            Counter::NoRoute,
            counters.get(ingress),
            out,
        );
    };
    let o = &cfg.ifaces[oi];
    let wire = if gso {
        segment_len(frame, &h, hdr.gso_size)
    } else {
        h.len
    };
    if wire > o.mtu as usize {
        if !h.df {
            return Verdict::Drop(Counter::TooBig);
        }
        let mtu = u16::try_from(o.mtu).unwrap_or(u16::MAX).to_be_bytes();
        return icmp_error(
            (ingress, inf),
            src_mac,
            &h,
            frame,
            (msg_type::DST_UNREACHABLE, 4, [0, 0, mtu[0], mtu[1]]),
            Counter::FragNeeded,
            counters.get(ingress),
            out,
        );
    }
    if o.nat && h.src != o.ip && !o.net.contains(&h.src) {
        match nat_out(frame, &h, hdr.needs_csum, oi, o.ip, nat, now) {
            Ok(fresh) => {
                if let Some(c) = counters.get(oi) {
                    c.add(Counter::NatOut);
                    if fresh {
                        c.add(Counter::NatNew);
                    }
                }
            }
            Err(NatError::Full) => return Verdict::Drop(Counter::NatFull),
            Err(NatError::NoMapping) => return Verdict::Drop(Counter::NatNoMapping),
        }
    }
    // TTL: the word it shares with the protocol changes; fix the header checksum from it.
    {
        let mut p = Ipv4Packet::new_unchecked(&mut frame[IP_OFF..]);
        let old = [h.ttl, u8::from(h.proto)];
        let new = [h.ttl - 1, u8::from(h.proto)];
        p.set_ttl(h.ttl - 1);
        let c = csum::replace(p.checksum(), &old, &new);
        p.set_checksum(c);
    }
    let (dst_mac, ask, resolved) = match neigh.lookup(oi, hop, now) {
        Lookup::Fresh(m) => (m, None, true),
        Lookup::Stale(m) => (m, Some(hop), true),
        Lookup::Missing => (MacAddr::BROADCAST, None, false),
    };
    eth_header(&mut frame[VNET_HDR_LEN..], dst_mac, o.mac, EtherType::Ipv4);
    if resolved {
        Verdict::Forward { iface: oi, ask }
    } else {
        Verdict::Resolve { iface: oi, hop }
    }
}

/// The IP length of each segment a GSO super-frame will be cut into: its headers (IP, then
/// TCP's data offset or UDP's 8 bytes) and `gso_size` bytes of payload.
fn segment_len(frame: &[u8], h: &Head, gso_size: u16) -> usize {
    let l4 = IP_OFF + h.hl;
    let l4_hdr = match h.proto {
        IpProtocol::Tcp => frame
            .get(l4 + 12)
            .map(|b| usize::from(b >> 4) * 4)
            .unwrap_or(20),
        _ => 8,
    };
    (h.hl + l4_hdr + usize::from(gso_size)).min(h.len)
}

/// A packet for one of the router's addresses: ICMP echo is answered, UDP gets port
/// unreachable (traceroute's probe to the router itself ends there), the rest is dropped.
fn local(
    cfg: &Config,
    ingress: usize,
    counter: Option<&Counters>,
    src_mac: MacAddr,
    h: &Head,
    frame: &[u8],
    out: &mut [u8],
) -> Verdict {
    let inf = &cfg.ifaces[ingress];
    let l4 = IP_OFF + h.hl;
    match h.proto {
        IpProtocol::Icmp if h.first_frag => {
            let Some(icmp) = frame
                .get(l4..IP_OFF + h.len)
                .and_then(|b| Icmpv4Packet::new_checked(b).ok())
            else {
                return Verdict::Drop(Counter::Malformed);
            };
            let Ok(Icmpv4Repr::EchoRequest { ident, seq_no }) = Icmpv4Repr::parse(&icmp) else {
                return Verdict::Drop(Counter::Ignored);
            };
            if !icmp.verify_checksum() {
                return Verdict::Drop(Counter::Malformed);
            }
            let data = icmp.data();
            let ip_len = IPV4_HDR_LEN + ICMPV4_HDR_LEN + data.len();
            let Some(buf) = out.get_mut(..IP_OFF + ip_len) else {
                return Verdict::Drop(Counter::TooBig);
            };
            buf[..VNET_HDR_LEN].fill(0);
            eth_header(&mut buf[VNET_HDR_LEN..], src_mac, inf.mac, EtherType::Ipv4);
            Ipv4Repr {
                src_addr: h.dst,
                dst_addr: h.src,
                protocol: IpProtocol::Icmp,
                payload_len: ICMPV4_HDR_LEN + data.len(),
                ttl: OWN_TTL,
                ident: 0,
                dont_frag: false,
                more_frags: false,
                frag_offset: 0,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut buf[IP_OFF..]));
            let body = &mut buf[IP_OFF + IPV4_HDR_LEN..];
            body[ICMPV4_HDR_LEN..].copy_from_slice(data);
            Icmpv4Repr::EchoReply { ident, seq_no }.emit(&mut Icmpv4Packet::new_unchecked(body));
            if let Some(c) = counter {
                c.add(Counter::EchoReplies);
            }
            Verdict::Reply {
                iface: ingress,
                len: IP_OFF + ip_len,
            }
        }
        IpProtocol::Udp if h.first_frag => icmp_error(
            (ingress, inf),
            src_mac,
            h,
            frame,
            (msg_type::DST_UNREACHABLE, 3, [0; 4]),
            Counter::Ignored,
            counter,
            out,
        ),
        _ => Verdict::Drop(Counter::Ignored),
    }
}

/// Builds an ICMP error about the packet in `frame` from `inf`'s address back to the
/// frame's sender, counting `why` (on `counter`, the ingress interface's counters). When
/// the rules forbid an error (about an error, a later fragment, a source that is no host),
/// the packet is dropped under `why`.
#[allow(clippy::too_many_arguments)]
fn icmp_error(
    (ingress, inf): (usize, &Iface),
    to_mac: MacAddr,
    h: &Head,
    frame: &[u8],
    (t, code, rest): (u8, u8, [u8; 4]),
    why: Counter,
    counter: Option<&Counters>,
    out: &mut [u8],
) -> Verdict {
    let l4 = IP_OFF + h.hl;
    let about_error = h.proto == IpProtocol::Icmp
        && frame
            .get(l4)
            .is_some_and(|t| !matches!(*t, msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY));
    let no_host = h.src.is_unspecified()
        || h.src.is_broadcast()
        || h.src.is_multicast()
        || h.src.is_loopback();
    if about_error || !h.first_frag || no_host {
        return Verdict::Drop(why);
    }
    let quote = h.len.min(QUOTE_MAX);
    let ip_len = IPV4_HDR_LEN + ICMPV4_HDR_LEN + quote;
    let (Some(buf), Some(quoted)) = (
        out.get_mut(..IP_OFF + ip_len),
        frame.get(IP_OFF..IP_OFF + quote),
    ) else {
        return Verdict::Drop(why);
    };
    buf[..VNET_HDR_LEN].fill(0);
    eth_header(&mut buf[VNET_HDR_LEN..], to_mac, inf.mac, EtherType::Ipv4);
    Ipv4Repr {
        src_addr: inf.ip,
        dst_addr: h.src,
        protocol: IpProtocol::Icmp,
        payload_len: ICMPV4_HDR_LEN + quote,
        ttl: OWN_TTL,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut buf[IP_OFF..]));
    let body = &mut buf[IP_OFF + IPV4_HDR_LEN..];
    body[ICMPV4_HDR_LEN..].copy_from_slice(quoted);
    Icmpv4Repr::Other {
        msg_type: t,
        code,
        rest,
    }
    .emit(&mut Icmpv4Packet::new_unchecked(body));
    if let Some(c) = counter {
        // A datagram to the router's own port was answered, not dropped: only the
        // error it caused counts.
        if why != Counter::Ignored {
            c.add(why);
        }
        let sent = match (t, code) {
            (msg_type::TIME_EXCEEDED, _) => Some(Counter::SentTimeExceeded),
            (msg_type::DST_UNREACHABLE, 0) => Some(Counter::SentNetUnreachable),
            (msg_type::DST_UNREACHABLE, 3) => Some(Counter::SentPortUnreachable),
            (msg_type::DST_UNREACHABLE, 4) => Some(Counter::SentFragNeeded),
            _ => None,
        };
        if let Some(sent) = sent {
            c.add(sent);
        }
    }
    Verdict::Reply {
        iface: ingress,
        len: IP_OFF + ip_len,
    }
}

/// Where the translated port (or echo id) and the L4 checksum of a packet are, for NAT.
struct L4Fields {
    proto: Proto,
    /// Offset of the port or id to rewrite.
    port_at: usize,
    /// Offset of the checksum, and whether it covers the pseudo-header (not ICMP's).
    csum_at: usize,
    pseudo: bool,
    /// UDP: a zero checksum means none.
    udp: bool,
}

/// The NAT fields of a packet: `source` picks the source port (outbound) or the
/// destination port (inbound); ICMP translates echo requests out and echo replies in.
fn l4_fields(frame: &[u8], h: &Head, source: bool) -> Option<L4Fields> {
    let l4 = IP_OFF + h.hl;
    let (proto, port_at, csum_at, need) = match h.proto {
        IpProtocol::Tcp => (Proto::Tcp, if source { l4 } else { l4 + 2 }, l4 + 16, 20),
        IpProtocol::Udp => (Proto::Udp, if source { l4 } else { l4 + 2 }, l4 + 6, 8),
        IpProtocol::Icmp => {
            let want = if source {
                msg_type::ECHO_REQUEST
            } else {
                msg_type::ECHO_REPLY
            };
            if frame.get(l4) != Some(&want) {
                return None;
            }
            (Proto::Icmp, l4 + 4, l4 + 2, 8)
        }
        _ => return None,
    };
    (frame.len() >= l4 + need).then_some(L4Fields {
        proto,
        port_at,
        csum_at,
        pseudo: proto != Proto::Icmp,
        udp: proto == Proto::Udp,
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Rewrites an address (at `addr_at`) and a port, fixing the IP header's checksum and the
/// L4 one: a complete L4 checksum changes with both, a partial one (`needs_csum`: the
/// pseudo-header's sum, which the device completes over the rest) with the address only.
fn rewrite(
    frame: &mut [u8],
    addr_at: usize,
    new_addr: Ipv4Addr,
    f: &L4Fields,
    new_port: u16,
    needs_csum: bool,
) {
    let old_addr: [u8; 4] = [
        frame[addr_at],
        frame[addr_at + 1],
        frame[addr_at + 2],
        frame[addr_at + 3],
    ];
    let new_a = new_addr.octets();
    let old_port = be16(frame, f.port_at).to_be_bytes();
    let new_p = new_port.to_be_bytes();
    let ip_csum_at = IP_OFF + 10;
    let c = csum::replace(be16(frame, ip_csum_at), &old_addr, &new_a);
    frame[ip_csum_at..ip_csum_at + 2].copy_from_slice(&c.to_be_bytes());
    frame[addr_at..addr_at + 4].copy_from_slice(&new_a);
    let old_l4 = be16(frame, f.csum_at);
    let l4 = if needs_csum && f.pseudo {
        csum::replace_sum(old_l4, &old_addr, &new_a)
    } else if f.udp && old_l4 == 0 {
        0
    } else {
        let mut c = old_l4;
        if f.pseudo {
            c = csum::replace(c, &old_addr, &new_a);
        }
        c = csum::replace(c, &old_port, &new_p);
        if f.udp && c == 0 {
            0xffff
        } else {
            c
        }
    };
    frame[f.csum_at..f.csum_at + 2].copy_from_slice(&l4.to_be_bytes());
    frame[f.port_at..f.port_at + 2].copy_from_slice(&new_p);
}

/// Masquerades a packet leaving through `oi`: true when the mapping is new. A protocol
/// without ports (or an ICMP message other than an echo request) keeps its ports and gets
/// the new source address only.
fn nat_out(
    frame: &mut [u8],
    h: &Head,
    needs_csum: bool,
    oi: usize,
    oip: Ipv4Addr,
    nat: &mut Nat,
    now: u64,
) -> Result<bool, NatError> {
    let src_at = IP_OFF + 12;
    match l4_fields(frame, h, true).filter(|_| h.first_frag) {
        Some(f) => {
            let port = be16(frame, f.port_at);
            let (outside, fresh) = nat.outbound(oi, f.proto, h.src, port, now)?;
            rewrite(frame, src_at, oip, &f, outside, needs_csum);
            Ok(fresh)
        }
        None => {
            // An inside host's ICMP error about a packet that came in translated quotes it
            // with the inside address and port: those become the outside ones, so nothing
            // of the inside leaks. An error about anything else keeps its quote.
            if let Some(msg) = icmp_error_msg(frame, h) {
                let way = ErrorWay::Out {
                    inside: h.src,
                    outside: oip,
                };
                let _ = nat::translate_icmp_error(nat, oi, way, msg, now);
            }
            set_addr(frame, src_at, oip);
            Ok(false)
        }
    }
}

/// The ICMP message of an error (destination unreachable, time exceeded, parameter problem)
/// in a first fragment: what [`nat::translate_icmp_error`] takes.
fn icmp_error_msg<'a>(frame: &'a mut [u8], h: &Head) -> Option<&'a mut [u8]> {
    let l4 = IP_OFF + h.hl;
    if h.proto != IpProtocol::Icmp || !h.first_frag {
        return None;
    }
    frame
        .get_mut(l4..IP_OFF + h.len)
        .filter(|m| m.first().is_some_and(|t| nat::is_error(*t)))
}

/// Rewrites the IPv4 address at `at` (source or destination) and the header's checksum only:
/// for a packet whose L4 checksum has no pseudo-header (ICMP) or that has no ports.
fn set_addr(frame: &mut [u8], at: usize, ip: Ipv4Addr) {
    let old = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
    let new = ip.octets();
    let c = csum::replace(be16(frame, IP_OFF + 10), &old, &new);
    frame[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&c.to_be_bytes());
    frame[at..at + 4].copy_from_slice(&new);
}

/// Translates a reply arriving on NAT interface `k` back to its inside host: the new
/// destination, or None when the packet is not one NAT translates (it is for the router).
fn nat_in(
    frame: &mut [u8],
    h: &Head,
    needs_csum: bool,
    k: usize,
    nat: &mut Nat,
    now: u64,
) -> Option<Result<Ipv4Addr, NatError>> {
    if let Some(msg) = icmp_error_msg(frame, h) {
        // An error about a masqueraded packet: its quote is translated back too, then the
        // outer destination (no pseudo-header in ICMP's checksum: the IP header's only).
        let outside = h.dst;
        return Some(
            nat::translate_icmp_error(nat, k, ErrorWay::In { outside }, msg, now)
                .inspect(|&ip| set_addr(frame, IP_OFF + 16, ip)),
        );
    }
    let f = l4_fields(frame, h, false)?;
    let port = be16(frame, f.port_at);
    Some(nat.inbound(k, f.proto, port, now).map(|(ip, inside)| {
        rewrite(frame, IP_OFF + 16, ip, &f, inside, needs_csum);
        ip
    }))
}
