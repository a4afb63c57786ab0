//! Egress packets: what an endpoint sends, parsed and checked; what goes back, built.
//!
//! Pure functions over byte slices, no I/O. Parsing goes through the switch's checked wire
//! views (`netyard_switch::wire`), so no packet bytes can make it panic: every way a packet
//! can be wrong is an [`EgressDrop`] reason. Builders write plain Ethernet frames (no virtio-net header) with full IPv4 and
//! UDP/ICMP checksums; the Ethernet destination of a reply is left to the caller (the
//! endpoint's MAC may change while a flow lives, and the gateway task knows the latest one).
//!
//! Replies longer than the network's MTU are fragmented here (a host socket can receive a
//! 64 KiB datagram); fragments that endpoints send are not reassembled yet and are dropped as
//! [`EgressDrop::Fragment`].

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use netyard_switch::wire::checksum;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use netyard_switch::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use netyard_switch::wire::ip::IpProtocol;
use netyard_switch::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use netyard_switch::wire::udp::{UdpPacket, UdpRepr};

use crate::conntrack::FlowKey;
use crate::drops::EgressDrop;

/// Every netyard network's subnet, shared by all gateways and swapped whole by the daemon
/// when a network comes or goes (`local_subnets.store(Arc::new(list))`): egress reads it with
/// one atomic load per packet, no lock.
pub type LocalSubnets = std::sync::Arc<arc_swap::ArcSwap<Vec<Ipv4Net>>>;

pub const ETH_HDR: usize = 14;
pub const IPV4_HDR: usize = 20;
pub const UDP_HDR: usize = 8;
pub const ICMP_HDR: usize = 8;
/// Room in front of a UDP payload for its Ethernet, IPv4 and UDP headers.
pub const UDP_HEADROOM: usize = ETH_HDR + IPV4_HDR + UDP_HDR;
/// Room in front of an ICMP message for its Ethernet and IPv4 headers.
pub const ICMP_HEADROOM: usize = ETH_HDR + IPV4_HDR;
/// TTL of every packet the gateway originates.
pub const TTL: u8 = 64;
/// What an ICMP error quotes of the offending packet: its IPv4 header (with options) and the
/// first 8 bytes of its payload.
pub const QUOTE_MAX: usize = 60 + 8;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// ICMP destination unreachable codes.
pub const UNREACH_NET: u8 = 0;
pub const UNREACH_HOST: u8 = 1;
pub const UNREACH_PROTO: u8 = 2;
pub const UNREACH_PORT: u8 = 3;
pub const UNREACH_FRAG_NEEDED: u8 = 4;
/// "Communication administratively prohibited" (RFC 1812): what the gateway answers for a
/// destination it refuses by policy. Linux takes it as a hard error (EHOSTUNREACH), so a TCP
/// connect and a connected UDP socket fail at once, where "net unreachable" is a soft error
/// a connected UDP socket ignores; and it says what happened: the network exists, the
/// gateway will not route there.
pub const UNREACH_ADMIN_PROHIBITED: u8 = 13;

/// The network a gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

impl Subnet {
    fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            p if p >= 32 => u32::MAX,
            p => u32::MAX << (32 - u32::from(p)),
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = self.mask();
        u32::from(ip) & m == u32::from(self.gateway) & m
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & self.mask())
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) | !self.mask())
    }

    /// An address an endpoint may send from: inside the subnet, not the gateway's, not the
    /// network or broadcast address (for prefixes that have them).
    pub fn valid_source(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip)
            && ip != self.gateway
            && (self.prefix_len >= 31 || (ip != self.network() && ip != self.broadcast()))
    }
}

/// An address egress never sends to and answers nothing for: "this network", link-local,
/// multicast, the reserved class E and limited broadcast. (Loopback is refused with an answer:
/// see [`refusal`].)
pub fn unroutable_destination(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0 || ip.is_link_local() || ip.is_multicast() || o[0] >= 240
}

/// Why the gateway refuses a destination itself, answering ICMP destination unreachable
/// ([`UNREACH_ADMIN_PROHIBITED`]) instead of opening a host socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Inside a netyard network's subnet: another network's endpoints are not reached through
    /// the host's routes (which would send the packet towards the LAN, or into whatever the
    /// host has there), and the own subnet is on-link.
    LocalNetwork,
    /// 127.0.0.0/8: the host's loopback.
    Loopback,
}

impl Refusal {
    /// The counter it is counted under.
    pub fn reason(self) -> EgressDrop {
        match self {
            Refusal::LocalNetwork => EgressDrop::RefusedLocalNetwork,
            Refusal::Loopback => EgressDrop::RefusedLoopback,
        }
    }
}

/// Whether the gateway of `subnet` refuses to send to `dst` through a host socket, given
/// every netyard network's subnet (`local_subnets`, its own included or not: its own is
/// refused anyway). The one exception is the gateway's own address under `--host-loopback`
/// (`host_loopback`), which is the sanctioned way to the host's 127.0.0.1; a literal 127/8
/// destination is refused whatever the setting. Pure; called for every packet egress would
/// send, so a network created meanwhile is refused from its first packet on.
pub fn refusal(
    dst: Ipv4Addr,
    subnet: &Subnet,
    host_loopback: bool,
    local_subnets: &[Ipv4Net],
) -> Option<Refusal> {
    if host_loopback && dst == subnet.gateway {
        return None;
    }
    if dst.is_loopback() {
        return Some(Refusal::Loopback);
    }
    if subnet.contains(dst) || local_subnets.iter().any(|n| n.contains(&dst)) {
        return Some(Refusal::LocalNetwork);
    }
    None
}

/// A destination map: what an endpoint sends to `guest` leaves through a host socket to
/// `host`, and the replies come back from `guest` (slirp4netns's 10.0.2.2 -> 127.0.0.1,
/// pasta's `--map-guest-addr` and `--map-host-loopback`). The mapped address is exempt from
/// the loopback and local-network refusals (the map is the sanction), nothing else is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMap {
    pub guest: Ipv4Addr,
    pub host: Ipv4Addr,
}

/// The maps a gateway applies: `maps`, and the gateway's own address to the host's
/// 127.0.0.1 under `--host-loopback` unless `maps` already says where it goes.
pub fn effective_maps(gateway: Ipv4Addr, host_loopback: bool, maps: &[AddrMap]) -> Vec<AddrMap> {
    let mut out = maps.to_vec();
    if host_loopback && !maps.iter().any(|m| m.guest == gateway) {
        out.push(AddrMap {
            guest: gateway,
            host: Ipv4Addr::LOCALHOST,
        });
    }
    out
}

/// Where a destination's host map sends it, if one does.
pub fn mapped(dst: Ipv4Addr, maps: &[AddrMap]) -> Option<Ipv4Addr> {
    maps.iter().find(|m| m.guest == dst).map(|m| m.host)
}

/// The address a host socket for `dst` connects to: the map's host address for a mapped
/// destination (whatever it is: the map sanctions it), else `dst` itself unless [`refusal`]
/// refuses it. Pure, called for every packet as [`refusal`] is.
pub fn egress_target(
    dst: Ipv4Addr,
    subnet: &Subnet,
    maps: &[AddrMap],
    local_subnets: &[Ipv4Net],
) -> Result<Ipv4Addr, Refusal> {
    if let Some(host) = mapped(dst, maps) {
        return Ok(host);
    }
    match refusal(dst, subnet, false, local_subnets) {
        Some(r) => Err(r),
        None => Ok(dst),
    }
}

/// The IPv4 destination of an untagged Ethernet frame with an IPv4 EtherType, for
/// classification only: the fixed header need only be there. Version, header and total
/// length are not checked, so a malformed packet still goes where its address says and is
/// counted there ([`parse_outbound`] checks everything); None: not IPv4 or too short.
pub fn ipv4_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.outer_ethertype() != EtherType::Ipv4 {
        return None;
    }
    let l3 = frame.get(eth.header_len()..)?;
    // new_unchecked: the accessor below reads only the fixed header, checked to fit here.
    (l3.len() >= IPV4_HDR).then(|| Ipv4Packet::new_unchecked(l3).dst_addr())
}

/// Whether a frame goes to the egress path rather than to the gateway's own stack: an IPv4
/// frame sent to the gateway's MAC whose destination address is outside the subnet. A frame
/// too short or malformed to tell stays with the stack (which drops it).
pub fn is_egress(frame: &[u8], gw_mac: [u8; 6], subnet: &Subnet) -> bool {
    let to_gw = EthernetFrame::new_checked(frame).is_ok_and(|e| e.dst_addr() == MacAddr(gw_mac));
    to_gw && ipv4_dst(frame).is_some_and(|dst| !subnet.contains(dst))
}

/// A checked outbound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound<'a> {
    /// The endpoint's MAC (the Ethernet source).
    pub src_mac: [u8; 6],
    pub key: FlowKey,
    /// UDP: the datagram's payload. ICMP echo: the whole ICMP message (header included), as a
    /// ping socket takes it.
    pub payload: &'a [u8],
    /// The IPv4 header and the first 8 bytes of its payload, for ICMP errors about it.
    pub quote: &'a [u8],
    pub ttl: u8,
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: u16) -> u64 {
    checksum::pseudo_header_v4(
        &src.octets(),
        &dst.octets(),
        u8::from(proto),
        u32::from(len),
    )
}

/// Parses and checks what an endpoint of `subnet` sends for egress: Ethernet + IPv4 (header
/// checksum, lengths, no fragment) + UDP (length, checksum unless 0) or ICMP echo request
/// (checksum).
pub fn parse_outbound<'a>(frame: &'a [u8], subnet: &Subnet) -> Result<Outbound<'a>, EgressDrop> {
    parse_outbound_mapped(frame, subnet, &[])
}

/// [`parse_outbound`] for a gateway with destination maps: a mapped destination is taken
/// whatever its address (a link-local `--map-guest-addr`, the gateway's own address).
pub fn parse_outbound_mapped<'a>(
    frame: &'a [u8],
    subnet: &Subnet,
    maps: &[AddrMap],
) -> Result<Outbound<'a>, EgressDrop> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| EgressDrop::Malformed)?;
    let mac = eth.src_addr().0;
    let ip_bytes = frame.get(eth.header_len()..).unwrap_or_default();
    let ip = Ipv4Packet::new_checked(ip_bytes).map_err(|_| EgressDrop::Malformed)?;
    if !ip.verify_checksum() {
        return Err(EgressDrop::BadChecksum);
    }
    if ip.is_fragment() {
        return Err(EgressDrop::Fragment);
    }
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    // The gateway's own address only arrives here under `--host-loopback` (the gateway task
    // decides); other addresses of the network never leave it.
    let inside = subnet.contains(dst) && dst != subnet.gateway;
    let is_mapped = mapped(dst, maps).is_some();
    if !subnet.valid_source(src) || (!is_mapped && (unroutable_destination(dst) || inside)) {
        return Err(EgressDrop::BadAddress);
    }
    // The IPv4 header's own length bounds the payload (Ethernet may pad short frames).
    let l4 = ip.payload();
    let quote = ip_bytes
        .get(..ip.header_len() + l4.len().min(8))
        .ok_or(EgressDrop::Malformed)?;
    let ttl = ip.ttl();
    match ip.protocol() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(l4).map_err(|_| EgressDrop::Malformed)?;
            let len = u16::try_from(udp.datagram().len()).map_err(|_| EgressDrop::Malformed)?;
            if !udp.verify_checksum(pseudo_header(src, dst, IpProtocol::Udp, len)) {
                return Err(EgressDrop::BadChecksum);
            }
            let repr = UdpRepr::parse(&udp).map_err(|_| EgressDrop::Malformed)?;
            if repr.dst_port == 0 || repr.src_port == 0 {
                return Err(EgressDrop::BadAddress);
            }
            Ok(Outbound {
                src_mac: mac,
                key: FlowKey::udp(
                    SocketAddrV4::new(src, repr.src_port),
                    SocketAddrV4::new(dst, repr.dst_port),
                ),
                payload: udp.payload(),
                quote,
                ttl,
            })
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(l4).map_err(|_| EgressDrop::Malformed)?;
            if !icmp.verify_checksum() {
                return Err(EgressDrop::BadChecksum);
            }
            let Ok(Icmpv4Repr::EchoRequest { ident, .. }) = Icmpv4Repr::parse(&icmp) else {
                return Err(EgressDrop::Unsupported);
            };
            Ok(Outbound {
                src_mac: mac,
                key: FlowKey::icmp_echo(src, ident, dst),
                payload: l4,
                quote,
                ttl,
            })
        }
        // TCP is the TCP relay's: until it exists, it is counted as unsupported here.
        _ => Err(EgressDrop::Unsupported),
    }
}

/// An IPv4 header with its checksum; `None` if the payload does not fit a packet or the
/// offset is not a multiple of 8 below 65536.
fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    ident: u16,
    payload_len: usize,
    frag_units: u16,
    more_fragments: bool,
) -> Option<[u8; IPV4_HDR]> {
    if IPV4_HDR + payload_len > usize::from(u16::MAX) || frag_units >= 8192 {
        return None;
    }
    Some(
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: proto,
            payload_len,
            ttl: TTL,
            ident,
            dont_frag: false,
            more_frags: more_fragments,
            frag_offset: frag_units * 8,
        }
        .to_bytes(),
    )
}

fn ethernet_header(src_mac: [u8; 6]) -> [u8; ETH_HDR] {
    let mut h = [0u8; ETH_HDR];
    EthernetRepr {
        src_addr: MacAddr(src_mac),
        dst_addr: MacAddr([0; 6]),
        vlan_tci: None,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut h[..]));
    h
}

/// Writes the Ethernet destination of a frame built here.
pub fn set_eth_dst(frame: &mut [u8], mac: [u8; 6]) {
    if let Some(d) = frame.get_mut(0..6) {
        d.copy_from_slice(&mac);
    }
}

/// What the frames the gateway builds carry from it: its MAC (the source), the network's
/// MTU (IP packet size: larger packets are fragmented) and the IPv4 identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub gw_mac: [u8; 6],
    pub mtu: usize,
    pub ident: u16,
}

/// Puts Ethernet and IPv4 headers in front of the L4 message in `buf` (after
/// [`ICMP_HEADROOM`] free bytes) and hands each resulting frame to `emit`: one frame, or IPv4
/// fragments past `mtu`. Works in place: a fragment's headers are written over the tail of
/// the previous fragment's data, which `emit` has already consumed, so nothing is copied or
/// allocated. Returns how many frames were emitted (0: too big for IPv4).
fn finish_ipv4(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    link: Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    let Link { gw_mac, mtu, ident } = link;
    let Some(l4_len) = buf.len().checked_sub(ICMP_HEADROOM) else {
        return 0;
    };
    if IPV4_HDR + l4_len <= mtu {
        let Some(ip) = ipv4_header(src, dst, proto, ident, l4_len, 0, false) else {
            return 0;
        };
        buf[..ETH_HDR].copy_from_slice(&ethernet_header(gw_mac));
        buf[ETH_HDR..ICMP_HEADROOM].copy_from_slice(&ip);
        emit(buf);
        return 1;
    }
    // Fragments carry a multiple of 8 bytes each, but the last.
    let per = (mtu.saturating_sub(IPV4_HDR) / 8) * 8;
    if per == 0 || u16::try_from(l4_len / 8).is_err() {
        return 0;
    }
    let mut offset = 0;
    let mut n = 0;
    while offset < l4_len {
        let len = per.min(l4_len - offset);
        let more = offset + len < l4_len;
        let units = (offset / 8) as u16; // < 8192: checked above
        let Some(ip) = ipv4_header(src, dst, proto, ident, len, units, more) else {
            return n;
        };
        // The fragment's data sits at ICMP_HEADROOM + offset: its headers go just before.
        let frame = &mut buf[offset..ICMP_HEADROOM + offset + len];
        frame[..ETH_HDR].copy_from_slice(&ethernet_header(gw_mac));
        frame[ETH_HDR..ICMP_HEADROOM].copy_from_slice(&ip);
        emit(frame);
        n += 1;
        offset += len;
    }
    n
}

/// Builds the frames of a UDP datagram from `from` to `to` in place and hands each to `emit`
/// (see [`finish_ipv4`]). `buf` holds [`UDP_HEADROOM`] free bytes, then the payload (as a host
/// socket received it). Returns 0 if the payload cannot be an IPv4 UDP datagram (over 65,507
/// bytes).
pub fn udp_frames_in(
    buf: &mut [u8],
    from: SocketAddrV4,
    to: SocketAddrV4,
    link: Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    let Some(payload_len) = buf.len().checked_sub(UDP_HEADROOM) else {
        return 0;
    };
    let Ok(udp_len) = u16::try_from(UDP_HDR + payload_len) else {
        return 0;
    };
    if usize::from(udp_len) + IPV4_HDR > usize::from(u16::MAX) {
        return 0;
    }
    let mut udp = UdpPacket::new_unchecked(&mut buf[ICMP_HEADROOM..]);
    UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    }
    .emit(&mut udp, payload_len);
    // 0 means "no checksum" in UDP: fill_checksum sends a computed 0 as 0xffff.
    udp.fill_checksum(pseudo_header(
        *from.ip(),
        *to.ip(),
        IpProtocol::Udp,
        udp_len,
    ));
    finish_ipv4(buf, *from.ip(), *to.ip(), IpProtocol::Udp, link, emit)
}

/// Builds the frames of an ICMP echo reply from `from` to `to` in place and hands each to
/// `emit`. `buf` holds [`ICMP_HEADROOM`] free bytes, then the ICMP message a ping socket
/// received; the echo identifier becomes `echo_ident` (the endpoint's, which the kernel
/// replaced by the socket's) and the checksum is recomputed. Returns 0 if the message is not
/// an echo reply.
pub fn icmp_echo_reply_frames_in(
    buf: &mut [u8],
    from: Ipv4Addr,
    to: Ipv4Addr,
    echo_ident: u16,
    link: Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    if buf.len() < ICMP_HEADROOM + ICMP_HDR
        || buf.len() - ICMP_HEADROOM + IPV4_HDR > usize::from(u16::MAX)
    {
        return 0;
    }
    let msg = &mut buf[ICMP_HEADROOM..];
    if msg[0] != ICMP_ECHO_REPLY || msg[1] != 0 {
        return 0;
    }
    set_echo_ident(msg, echo_ident);
    finish_ipv4(buf, from, to, IpProtocol::Icmp, link, emit)
}

/// Sets the identifier of an ICMP echo message (request or reply, at least 8 bytes) and
/// recomputes its checksum.
pub fn set_echo_ident(msg: &mut [u8], ident: u16) {
    if msg.len() < ICMP_HDR {
        return;
    }
    let mut icmp = Icmpv4Packet::new_unchecked(msg);
    icmp.set_echo_ident(ident);
    icmp.fill_checksum();
}

/// An ICMP error frame (`icmp_type`/`code`, e.g. destination unreachable) from `from` to
/// `to`, quoting `quote` (the offending packet's IPv4 header and 8 bytes).
pub fn icmp_error_frame(
    from: Ipv4Addr,
    to: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    quote: &[u8],
    ident: u16,
    gw_mac: [u8; 6],
) -> Option<Vec<u8>> {
    let quote = quote.get(..quote.len().min(QUOTE_MAX))?;
    let mut buf = Vec::with_capacity(ICMP_HEADROOM + ICMP_HDR + quote.len());
    buf.resize(ICMP_HEADROOM, 0);
    buf.extend_from_slice(&[0; ICMP_HDR]);
    buf.extend_from_slice(quote);
    Icmpv4Repr::Other {
        msg_type: icmp_type,
        code,
        rest: [0; 4],
    }
    .emit(&mut Icmpv4Packet::new_unchecked(&mut buf[ICMP_HEADROOM..]));
    // Small enough for any MTU an IPv4 network has (576 at least): always one frame.
    let link = Link {
        gw_mac,
        mtu: 576,
        ident,
    };
    let n = finish_ipv4(&mut buf, from, to, IpProtocol::Icmp, link, &mut |_| {});
    (n == 1).then_some(buf)
}

/// An ICMP destination unreachable frame.
pub fn unreachable_frame(
    from: Ipv4Addr,
    to: Ipv4Addr,
    code: u8,
    quote: &[u8],
    ident: u16,
    gw_mac: [u8; 6],
) -> Option<Vec<u8>> {
    icmp_error_frame(from, to, ICMP_DEST_UNREACH, code, quote, ident, gw_mac)
}

/// An ICMP time exceeded (TTL expired in transit) frame.
pub fn time_exceeded_frame(
    from: Ipv4Addr,
    to: Ipv4Addr,
    quote: &[u8],
    ident: u16,
    gw_mac: [u8; 6],
) -> Option<Vec<u8>> {
    icmp_error_frame(from, to, ICMP_TIME_EXCEEDED, 0, quote, ident, gw_mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a partial sum over bytes that include their checksum field verifies.
    fn sum_is_valid(sum: u64) -> bool {
        checksum::fold(sum) == 0xffff
    }

    /// The bytes of a checksum field for a partial sum taken with the field zero.
    fn checksum_bytes(sum: u64) -> [u8; 2] {
        (!checksum::fold(sum)).to_be_bytes()
    }

    /// The frames a builder emits from `buf`, collected.
    fn collect(
        mut buf: Vec<u8>,
        build: impl FnOnce(&mut [u8], &mut dyn FnMut(&mut [u8])) -> usize,
    ) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        build(&mut buf, &mut |f| v.push(f.to_vec()));
        v
    }

    fn udp_frames(
        buf: Vec<u8>,
        from: SocketAddrV4,
        to: SocketAddrV4,
        ident: u16,
        gw_mac: [u8; 6],
        mtu: usize,
    ) -> Vec<Vec<u8>> {
        let link = Link { gw_mac, mtu, ident };
        collect(buf, |b, e| udp_frames_in(b, from, to, link, e))
    }

    fn icmp_echo_reply_frames(
        buf: Vec<u8>,
        from: Ipv4Addr,
        to: Ipv4Addr,
        echo_ident: u16,
        ident: u16,
        gw_mac: [u8; 6],
        mtu: usize,
    ) -> Vec<Vec<u8>> {
        let link = Link { gw_mac, mtu, ident };
        collect(buf, |b, e| {
            icmp_echo_reply_frames_in(b, from, to, echo_ident, link, e)
        })
    }
    use etherparse::{Icmpv4Slice, IpNumber, Ipv4Header, Ipv4Slice, PacketBuilder};

    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
    const EP_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const SUBNET: Subnet = Subnet {
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        prefix_len: 24,
    };
    const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const OUT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv4(src.octets(), dst.octets(), 64)
            .udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    fn echo_frame(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv4(EP.octets(), OUT.octets(), 64)
            .icmpv4_echo_request(ident, seq);
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    #[test]
    fn subnet_rules() {
        assert!(SUBNET.contains(Ipv4Addr::new(10, 0, 0, 200)));
        assert!(!SUBNET.contains(Ipv4Addr::new(10, 0, 1, 2)));
        assert!(SUBNET.valid_source(EP));
        for bad in [[10, 0, 0, 1], [10, 0, 0, 0], [10, 0, 0, 255], [10, 0, 1, 2]] {
            assert!(!SUBNET.valid_source(Ipv4Addr::from(bad)), "{bad:?}");
        }
        for bad in [
            [0, 1, 2, 3],
            [169, 254, 1, 1],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
            [240, 0, 0, 1],
        ] {
            assert!(unroutable_destination(Ipv4Addr::from(bad)), "{bad:?}");
        }
        assert!(!unroutable_destination(OUT));
        let whole = Subnet {
            gateway: Ipv4Addr::new(1, 2, 3, 4),
            prefix_len: 0,
        };
        assert!(whole.contains(OUT));
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn another_networks_subnet_is_refused_as_local_network() {
        let local = [
            net("10.0.0.0/24"),
            net("10.89.1.0/24"),
            net("172.29.0.0/16"),
        ];
        for dst in [[10, 89, 1, 5], [10, 89, 1, 1], [172, 29, 200, 9]] {
            assert_eq!(
                refusal(Ipv4Addr::from(dst), &SUBNET, false, &local),
                Some(Refusal::LocalNetwork),
                "{dst:?}"
            );
        }
        assert_eq!(refusal(OUT, &SUBNET, false, &local), None);
        assert_eq!(
            refusal(Ipv4Addr::new(10, 89, 2, 5), &SUBNET, false, &local),
            None
        );
        assert_eq!(
            Refusal::LocalNetwork.reason().as_str(),
            "refused_local_network"
        );
    }

    #[test]
    fn a_mapped_destination_goes_to_its_host_address_and_only_it_bypasses_the_refusals() {
        let local = [net("10.0.0.0/24"), net("10.89.1.0/24")];
        let lo = Ipv4Addr::LOCALHOST;
        let guest = Ipv4Addr::new(169, 254, 1, 2);
        let host = Ipv4Addr::new(192, 0, 2, 7);
        let other_net = Ipv4Addr::new(10, 89, 1, 9);
        let maps = [
            AddrMap { guest, host },
            AddrMap {
                guest: SUBNET.gateway,
                host: lo,
            },
            AddrMap {
                guest: Ipv4Addr::new(198, 18, 0, 9),
                host: other_net,
            },
        ];
        assert_eq!(egress_target(guest, &SUBNET, &maps, &local), Ok(host));
        assert_eq!(
            egress_target(SUBNET.gateway, &SUBNET, &maps, &local),
            Ok(lo)
        );
        // The target of a map is taken as is, even inside another network.
        assert_eq!(
            egress_target(Ipv4Addr::new(198, 18, 0, 9), &SUBNET, &maps, &local),
            Ok(other_net)
        );
        // Unmapped destinations keep every refusal; a literal loopback address included.
        assert_eq!(egress_target(OUT, &SUBNET, &maps, &local), Ok(OUT));
        assert_eq!(
            egress_target(lo, &SUBNET, &maps, &local),
            Err(Refusal::Loopback)
        );
        assert_eq!(
            egress_target(other_net, &SUBNET, &maps, &local),
            Err(Refusal::LocalNetwork)
        );
        assert_eq!(
            egress_target(Ipv4Addr::new(10, 0, 0, 7), &SUBNET, &maps, &local),
            Err(Refusal::LocalNetwork)
        );
        assert_eq!(
            egress_target(SUBNET.gateway, &SUBNET, &[], &local),
            Err(Refusal::LocalNetwork)
        );
        // A link-local mapped destination parses; unmapped it is a bad address.
        let f = udp_frame(EP, guest, 5000, 7, b"x");
        assert!(parse_outbound_mapped(&f, &SUBNET, &maps).is_ok());
        assert_eq!(
            parse_outbound(&f, &SUBNET).err(),
            Some(EgressDrop::BadAddress)
        );
        assert_eq!(ipv4_dst(&f), Some(guest));
    }

    #[test]
    fn host_loopback_is_the_gateway_mapped_to_127_0_0_1_unless_a_map_names_the_gateway() {
        let lo = Ipv4Addr::LOCALHOST;
        let gw = SUBNET.gateway;
        assert_eq!(effective_maps(gw, false, &[]), vec![]);
        assert_eq!(
            effective_maps(gw, true, &[]),
            vec![AddrMap {
                guest: gw,
                host: lo
            }]
        );
        let own = AddrMap {
            guest: gw,
            host: Ipv4Addr::new(192, 0, 2, 1),
        };
        assert_eq!(effective_maps(gw, true, &[own]), vec![own]);
        for host_loopback in [false, true] {
            let maps = effective_maps(gw, host_loopback, &[]);
            assert_eq!(
                egress_target(gw, &SUBNET, &maps, &[]).ok(),
                host_loopback.then_some(lo)
            );
        }
    }

    #[test]
    fn the_own_subnet_is_refused_even_when_the_list_misses_it() {
        assert_eq!(
            refusal(Ipv4Addr::new(10, 0, 0, 7), &SUBNET, false, &[]),
            Some(Refusal::LocalNetwork)
        );
        assert_eq!(
            refusal(SUBNET.gateway, &SUBNET, false, &[]),
            Some(Refusal::LocalNetwork),
            "the gateway's address without --host-loopback"
        );
    }

    #[test]
    fn loopback_is_refused_and_only_the_gateway_address_maps_to_it_under_host_loopback() {
        let local = [net("10.0.0.0/24")];
        for host_loopback in [false, true] {
            for dst in [[127, 0, 0, 1], [127, 1, 2, 3], [127, 255, 255, 255]] {
                assert_eq!(
                    refusal(Ipv4Addr::from(dst), &SUBNET, host_loopback, &local),
                    Some(Refusal::Loopback),
                    "{dst:?}, host_loopback {host_loopback}"
                );
            }
        }
        assert_eq!(refusal(SUBNET.gateway, &SUBNET, true, &local), None);
        assert_eq!(Refusal::Loopback.reason().as_str(), "refused_loopback");
        // Loopback parses (it is refused with an answer, not dropped as a bad address).
        let f = udp_frame(EP, Ipv4Addr::new(127, 0, 0, 1), 5000, 7, b"x");
        assert!(parse_outbound(&f, &SUBNET).is_ok());
    }

    #[test]
    fn classifies_by_mac_ethertype_and_destination() {
        let out = udp_frame(EP, OUT, 5000, 7, b"hi");
        assert!(is_egress(&out, GW_MAC, &SUBNET));
        let local = udp_frame(EP, Ipv4Addr::new(10, 0, 0, 1), 5000, 53, b"hi");
        assert!(!is_egress(&local, GW_MAC, &SUBNET));
        let mut other_mac = out.clone();
        other_mac[5] = 9;
        assert!(!is_egress(&other_mac, GW_MAC, &SUBNET));
        let mut arp = out.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_egress(&arp, GW_MAC, &SUBNET));
        assert!(!is_egress(&out[..30], GW_MAC, &SUBNET));
    }

    #[test]
    fn parses_udp() {
        let f = udp_frame(EP, OUT, 5000, 7, b"hello");
        let o = parse_outbound(&f, &SUBNET).unwrap();
        assert_eq!(o.src_mac, EP_MAC);
        assert_eq!(
            o.key,
            FlowKey::udp(SocketAddrV4::new(EP, 5000), SocketAddrV4::new(OUT, 7))
        );
        assert_eq!(o.payload, b"hello");
        assert_eq!(o.quote, &f[ETH_HDR..ETH_HDR + 28]);
        assert_eq!(o.ttl, 64);

        // Ethernet padding after the IP packet is ignored.
        let mut padded = udp_frame(EP, OUT, 5000, 7, b"");
        padded.resize(60, 0xa5);
        assert_eq!(parse_outbound(&padded, &SUBNET).unwrap().payload, b"");

        // A zero UDP checksum means none.
        let mut nock = f.clone();
        nock[ETH_HDR + 26..ETH_HDR + 28].copy_from_slice(&[0, 0]);
        assert!(parse_outbound(&nock, &SUBNET).is_ok());
    }

    #[test]
    fn parses_icmp_echo() {
        let f = echo_frame(0x1234, 7, b"ping data");
        let o = parse_outbound(&f, &SUBNET).unwrap();
        assert_eq!(o.key, FlowKey::icmp_echo(EP, 0x1234, OUT));
        assert_eq!(o.payload, &f[ETH_HDR + IPV4_HDR..]);
        assert_eq!(o.quote, &f[ETH_HDR..ETH_HDR + 28]);
    }

    /// Rewrites the IPv4 header checksum after a test changed a field.
    fn fix_ip_checksum(f: &mut [u8]) {
        let ihl = usize::from(f[ETH_HDR] & 0xf) * 4;
        f[ETH_HDR + 10..ETH_HDR + 12].copy_from_slice(&[0, 0]);
        let c = checksum_bytes(checksum::add(0, &f[ETH_HDR..ETH_HDR + ihl]));
        f[ETH_HDR + 10..ETH_HDR + 12].copy_from_slice(&c);
    }

    #[test]
    fn rejects_bad_packets_with_one_reason_each() {
        let good = udp_frame(EP, OUT, 5000, 7, b"hello");
        let cases: Vec<(&str, Vec<u8>, EgressDrop)> = vec![
            ("runt", good[..10].to_vec(), EgressDrop::Malformed),
            (
                "ip header cut",
                good[..ETH_HDR + 12].to_vec(),
                EgressDrop::Malformed,
            ),
            (
                "ip version 6",
                {
                    let mut f = good.clone();
                    f[ETH_HDR] = 0x65;
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "ihl 3",
                {
                    let mut f = good.clone();
                    f[ETH_HDR] = 0x43;
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "total length beyond the frame",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 2..ETH_HDR + 4].copy_from_slice(&1400u16.to_be_bytes());
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "total length shorter than the header",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 2..ETH_HDR + 4].copy_from_slice(&10u16.to_be_bytes());
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "ip checksum",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 10] ^= 0xff;
                    f
                },
                EgressDrop::BadChecksum,
            ),
            (
                "more fragments",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 6] = 0x20;
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Fragment,
            ),
            (
                "fragment offset",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 7] = 1;
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Fragment,
            ),
            (
                "udp header cut",
                {
                    let mut f = good[..ETH_HDR + IPV4_HDR + 4].to_vec();
                    f[ETH_HDR + 2..ETH_HDR + 4].copy_from_slice(&24u16.to_be_bytes());
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "udp length past the packet",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 24..ETH_HDR + 26].copy_from_slice(&500u16.to_be_bytes());
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "udp length under 8",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 24..ETH_HDR + 26].copy_from_slice(&3u16.to_be_bytes());
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "udp length 0",
                {
                    let mut f = good.clone();
                    f[ETH_HDR + 24..ETH_HDR + 26].copy_from_slice(&0u16.to_be_bytes());
                    f
                },
                EgressDrop::Malformed,
            ),
            (
                "udp checksum",
                {
                    let mut f = good.clone();
                    *f.last_mut().unwrap() ^= 1;
                    f
                },
                EgressDrop::BadChecksum,
            ),
            (
                "udp to port 0",
                udp_frame(EP, OUT, 5000, 0, b"x"),
                EgressDrop::BadAddress,
            ),
            (
                "spoofed source",
                udp_frame(Ipv4Addr::new(192, 0, 2, 9), OUT, 5000, 7, b"x"),
                EgressDrop::BadAddress,
            ),
            (
                "from the gateway's address",
                udp_frame(SUBNET.gateway, OUT, 5000, 7, b"x"),
                EgressDrop::BadAddress,
            ),
            (
                "to multicast",
                udp_frame(EP, Ipv4Addr::new(239, 1, 1, 1), 5000, 7, b"x"),
                EgressDrop::BadAddress,
            ),
            (
                "tcp",
                {
                    let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
                        .ipv4(EP.octets(), OUT.octets(), 64)
                        .tcp(5000, 80, 1, 1000);
                    let mut v = Vec::new();
                    b.write(&mut v, b"").unwrap();
                    v
                },
                EgressDrop::Unsupported,
            ),
            (
                "icmp echo reply",
                {
                    let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
                        .ipv4(EP.octets(), OUT.octets(), 64)
                        .icmpv4_echo_reply(1, 1);
                    let mut v = Vec::new();
                    b.write(&mut v, b"").unwrap();
                    v
                },
                EgressDrop::Unsupported,
            ),
            (
                "icmp checksum",
                {
                    let mut f = echo_frame(1, 1, b"abc");
                    *f.last_mut().unwrap() ^= 1;
                    f
                },
                EgressDrop::BadChecksum,
            ),
            (
                "icmp header cut",
                {
                    let mut f = echo_frame(1, 1, b"")[..ETH_HDR + IPV4_HDR + 4].to_vec();
                    f[ETH_HDR + 2..ETH_HDR + 4].copy_from_slice(&24u16.to_be_bytes());
                    fix_ip_checksum(&mut f);
                    f
                },
                EgressDrop::Malformed,
            ),
        ];
        for (what, frame, want) in cases {
            assert_eq!(parse_outbound(&frame, &SUBNET), Err(want), "{what}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_bit_flip() {
        let frames = [
            udp_frame(EP, OUT, 5000, 7, b"hello world"),
            echo_frame(3, 4, b"abcdefgh"),
        ];
        for f in &frames {
            for n in 0..=f.len() {
                let _ = parse_outbound(&f[..n], &SUBNET);
                let _ = is_egress(&f[..n], GW_MAC, &SUBNET);
            }
            for i in 0..f.len() {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[i] ^= 1 << bit;
                    let _ = parse_outbound(&g, &SUBNET);
                }
            }
        }
    }

    /// A UDP payload placed after the headroom, as the reader receives it.
    fn with_headroom(headroom: usize, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xa5u8; headroom];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn builds_udp_reply() {
        let from = SocketAddrV4::new(OUT, 7);
        let to = SocketAddrV4::new(EP, 5000);
        let frames = udp_frames(
            with_headroom(UDP_HEADROOM, b"hello"),
            from,
            to,
            0x0102,
            GW_MAC,
            1500,
        );
        assert_eq!(frames.len(), 1);
        let mut f = frames.into_iter().next().unwrap();
        set_eth_dst(&mut f, EP_MAC);
        // Compare with etherparse's own builder (identification and DF set the same way).
        let mut ip = Ipv4Header::new(13, 64, IpNumber::UDP, OUT.octets(), EP.octets()).unwrap();
        ip.identification = 0x0102;
        ip.dont_fragment = false;
        let b = PacketBuilder::ethernet2(GW_MAC, EP_MAC)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(7, 5000);
        let mut want = Vec::new();
        b.write(&mut want, b"hello").unwrap();
        assert_eq!(f, want);
        // And it parses back, checksums included (as if the endpoint had sent it).
        let sub = Subnet {
            gateway: Ipv4Addr::new(198, 18, 0, 1),
            prefix_len: 24,
        };
        let mut back = f.clone();
        back[..6].copy_from_slice(&GW_MAC);
        let o = parse_outbound(&back, &sub).unwrap();
        assert_eq!(o.payload, b"hello");
    }

    #[test]
    fn fragments_big_replies() {
        let from = SocketAddrV4::new(OUT, 7);
        let to = SocketAddrV4::new(EP, 5000);
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let frames = udp_frames(
            with_headroom(UDP_HEADROOM, &payload),
            from,
            to,
            77,
            GW_MAC,
            1500,
        );
        assert_eq!(frames.len(), 3);
        let mut l4 = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() - ETH_HDR <= 1500);
            let ip = Ipv4Slice::from_slice(&f[ETH_HDR..]).unwrap();
            let h = ip.header();
            assert!(sum_is_valid(checksum::add(0, h.slice())));
            assert_eq!(h.identification(), 77);
            assert_eq!(usize::from(h.fragments_offset().byte_offset()), l4.len());
            assert_eq!(h.more_fragments(), i < 2);
            l4.extend_from_slice(ip.payload().payload);
        }
        assert_eq!(l4.len(), 8 + 3000);
        assert_eq!(&l4[8..], &payload[..]);
        let sum = checksum::add(pseudo_header(OUT, EP, IpProtocol::Udp, 3008), &l4);
        assert!(
            sum_is_valid(sum),
            "UDP checksum over the reassembled datagram"
        );

        // Too big for IPv4: nothing.
        let huge = with_headroom(UDP_HEADROOM, &vec![0u8; 65_508]);
        assert!(udp_frames(huge, from, to, 1, GW_MAC, 1500).is_empty());
    }

    #[test]
    fn builds_echo_reply_with_the_endpoints_identifier() {
        // What a ping socket hands back: an echo reply with the socket's identifier (0x9999).
        let mut msg = vec![0u8, 0, 0, 0, 0x99, 0x99, 0, 5];
        msg.extend_from_slice(b"payload!");
        let frames = icmp_echo_reply_frames(
            with_headroom(ICMP_HEADROOM, &msg),
            OUT,
            EP,
            0x1234,
            9,
            GW_MAC,
            1500,
        );
        assert_eq!(frames.len(), 1);
        let mut f = frames.into_iter().next().unwrap();
        set_eth_dst(&mut f, EP_MAC);
        let mut ip = Ipv4Header::new(16, 64, IpNumber::ICMP, OUT.octets(), EP.octets()).unwrap();
        ip.identification = 9;
        ip.dont_fragment = false;
        let b = PacketBuilder::ethernet2(GW_MAC, EP_MAC)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .icmpv4_echo_reply(0x1234, 5);
        let mut want = Vec::new();
        b.write(&mut want, b"payload!").unwrap();
        assert_eq!(f, want);

        // Not an echo reply, or too short: nothing.
        let mut req = msg.clone();
        req[0] = 8;
        assert!(icmp_echo_reply_frames(
            with_headroom(ICMP_HEADROOM, &req),
            OUT,
            EP,
            1,
            1,
            GW_MAC,
            1500
        )
        .is_empty());
        assert!(icmp_echo_reply_frames(
            with_headroom(ICMP_HEADROOM, &msg[..5]),
            OUT,
            EP,
            1,
            1,
            GW_MAC,
            1500
        )
        .is_empty());
    }

    #[test]
    fn builds_port_unreachable_quoting_the_datagram() {
        let sent = udp_frame(EP, OUT, 5000, 9, b"knock knock");
        let o = parse_outbound(&sent, &SUBNET).unwrap();
        let mut f = unreachable_frame(OUT, EP, UNREACH_PORT, o.quote, 3, GW_MAC).unwrap();
        set_eth_dst(&mut f, EP_MAC);
        let mut ip = Ipv4Header::new(36, 64, IpNumber::ICMP, OUT.octets(), EP.octets()).unwrap();
        ip.identification = 3;
        ip.dont_fragment = false;
        let b = PacketBuilder::ethernet2(GW_MAC, EP_MAC)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ));
        let mut want = Vec::new();
        b.write(&mut want, &sent[ETH_HDR..ETH_HDR + 28]).unwrap();
        assert_eq!(f, want);

        let te = time_exceeded_frame(SUBNET.gateway, EP, o.quote, 4, GW_MAC).unwrap();
        let ip = Ipv4Slice::from_slice(&te[ETH_HDR..]).unwrap();
        let icmp = Icmpv4Slice::from_slice(ip.payload().payload).unwrap();
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (11, 0));
        assert!(sum_is_valid(checksum::add(0, icmp.slice())));
    }
}
