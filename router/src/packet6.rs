//! IPv6 egress packets: what an endpoint sends, parsed and checked; what goes back, built.
//!
//! The IPv6 half of [`crate::packet`], with the same contract: pure functions over byte
//! slices, parsing through the switch's checked wire views, one [`EgressDrop`] reason per way
//! a packet can be wrong. What differs from IPv4:
//!
//! - No header checksum; the UDP checksum is mandatory (a zero one is refused) and ICMPv6's
//!   covers the pseudo-header.
//! - Extension headers (hop-by-hop, routing, destination options) are skipped to the
//!   transport; a fragment header is [`EgressDrop::Fragment`], as IPv4 fragments are.
//! - Routers never fragment IPv6, but the gateway is the *source* of the replies it builds
//!   (a host socket can receive a 64 KiB datagram), so a reply past the MTU is cut with a
//!   fragment header (RFC 8200 4.5), in place, as [`crate::packet`] cuts IPv4.
//! - Errors are ICMPv6 (RFC 4443): destination unreachable (no route, administratively
//!   prohibited, address, port), packet too big (with the MTU) and time exceeded.
//! - Policy: the destinations refused with an answer are `::1` and every netyard network's
//!   IPv6 prefix ([`egress_target`]); never routed and never answered: unspecified,
//!   multicast, link-local and IPv4-mapped addresses ([`unroutable_destination`]; an
//!   IPv4-mapped destination would reach the host's IPv4 loopback past the IPv4 policy).

use std::net::{Ipv6Addr, SocketAddrV6};

use ipnet::Ipv6Net;
use netyard_switch::wire::checksum;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use netyard_switch::wire::icmpv6::Icmpv6Packet;
use netyard_switch::wire::ip::{IpProtocol, Lengths};
use netyard_switch::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use netyard_switch::wire::udp::{UdpPacket, UdpRepr};

use crate::conntrack::FlowKey;
use crate::drops::EgressDrop;
use crate::packet::{Outbound, Refusal, ETH_HDR, ICMP_HDR, QUOTE_MAX, TTL, UDP_HDR};

pub const IPV6_HDR: usize = 40;
/// The fragment extension header.
pub const FRAG_HDR: usize = 8;
/// Room in front of an ICMPv6 message for the headers of any of its frames: Ethernet, IPv6
/// and a fragment header (used only when the message is cut).
pub const ICMP_HEADROOM: usize = ETH_HDR + IPV6_HDR + FRAG_HDR;
/// Room in front of a UDP payload: [`ICMP_HEADROOM`] and the UDP header.
pub const UDP_HEADROOM: usize = ICMP_HEADROOM + UDP_HDR;
/// Largest IPv6 payload without a jumbogram.
const MAX_PAYLOAD: usize = 65_535;
/// The IPv6 minimum MTU: every link carries it, so an error this size needs no fragment.
pub const MIN_MTU: usize = 1280;

/// Every netyard network's IPv6 prefix, shared by all gateways as
/// [`crate::packet::LocalSubnets`] is for IPv4 (one atomic load per packet).
pub type LocalSubnets6 = std::sync::Arc<arc_swap::ArcSwap<Vec<Ipv6Net>>>;

/// A gateway's IPv6 side as its engines see it: the prefix and the gateway's address in it,
/// the destination maps (`--host-loopback` folded in, [`effective_maps`]) and every netyard
/// network's prefix.
#[derive(Debug, Clone)]
pub struct Side6 {
    pub subnet: Subnet6,
    pub maps: Vec<AddrMap6>,
    pub local_subnets: LocalSubnets6,
}

// The message types are the wire view's (one list of ICMPv6 numbers in the project), under
// the names this module's callers use.
pub use netyard_switch::wire::icmpv6::msg_type::{
    DST_UNREACHABLE as ICMP6_DEST_UNREACH, ECHO_REPLY as ICMP6_ECHO_REPLY,
    ECHO_REQUEST as ICMP6_ECHO_REQUEST, PACKET_TOO_BIG as ICMP6_PACKET_TOO_BIG,
    TIME_EXCEEDED as ICMP6_TIME_EXCEEDED,
};

/// ICMPv6 destination unreachable codes (RFC 4443 3.1).
pub const UNREACH_NOROUTE: u8 = 0;
/// Linux takes it as a hard error (EACCES): a connect or a connected UDP socket fails at
/// once. What the gateway answers for a destination it refuses by policy.
pub const UNREACH_ADMIN_PROHIBITED: u8 = 1;
pub const UNREACH_ADDR: u8 = 3;
pub const UNREACH_PORT: u8 = 4;

/// A network's IPv6 prefix and its gateway's address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    pub gateway: Ipv6Addr,
    pub prefix_len: u8,
}

impl Subnet6 {
    fn mask(&self) -> u128 {
        match self.prefix_len {
            0 => 0,
            p if p >= 128 => u128::MAX,
            p => u128::MAX << (128 - u32::from(p)),
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let m = self.mask();
        u128::from(ip) & m == u128::from(self.gateway) & m
    }

    /// An address an endpoint may send egress from: in the prefix, not the gateway's, not
    /// the subnet-router anycast address (the prefix itself).
    pub fn valid_source(&self, ip: Ipv6Addr) -> bool {
        self.contains(ip)
            && ip != self.gateway
            && (self.prefix_len >= 127 || u128::from(ip) & !self.mask() != 0)
    }
}

/// A destination never sent to and never answered: unspecified, multicast, link-local
/// (fe80::/10: the host's link, not the endpoint's) and IPv4-mapped.
pub fn unroutable_destination(ip: Ipv6Addr) -> bool {
    ip.is_unspecified()
        || ip.is_multicast()
        || ip.segments()[0] & 0xffc0 == 0xfe80
        || ip.to_ipv4_mapped().is_some()
}

/// A destination map (IPv6): what an endpoint sends to `guest` leaves to `host`, as
/// [`crate::packet::AddrMap`] for IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMap6 {
    pub guest: Ipv6Addr,
    pub host: Ipv6Addr,
}

/// `maps`, and the gateway's IPv6 address to the host's `::1` under `--host-loopback`.
pub fn effective_maps(gateway: Ipv6Addr, host_loopback: bool, maps: &[AddrMap6]) -> Vec<AddrMap6> {
    let mut out = maps.to_vec();
    if host_loopback && !maps.iter().any(|m| m.guest == gateway) {
        out.push(AddrMap6 {
            guest: gateway,
            host: Ipv6Addr::LOCALHOST,
        });
    }
    out
}

/// Where a destination's host map sends it, if one does.
pub fn mapped(dst: Ipv6Addr, maps: &[AddrMap6]) -> Option<Ipv6Addr> {
    maps.iter().find(|m| m.guest == dst).map(|m| m.host)
}

/// The address a host socket for `dst` connects to: a map's host address, else `dst`
/// unless it is `::1` or inside a netyard network's prefix (`local`, the own one always).
/// Pure; called for every packet, as [`crate::packet::egress_target`].
pub fn egress_target(
    dst: Ipv6Addr,
    subnet: &Subnet6,
    maps: &[AddrMap6],
    local: &[Ipv6Net],
) -> Result<Ipv6Addr, Refusal> {
    if let Some(host) = mapped(dst, maps) {
        return Ok(host);
    }
    if dst.is_loopback() {
        return Err(Refusal::Loopback);
    }
    if subnet.contains(dst) || local.iter().any(|n| n.contains(&dst)) {
        return Err(Refusal::LocalNetwork);
    }
    Ok(dst)
}

fn pseudo(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, len: usize) -> u64 {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    checksum::pseudo_header_v6(&src.octets(), &dst.octets(), u8::from(proto), len)
}

/// The IPv6 destination of an untagged Ethernet frame with the IPv6 EtherType, for
/// classification only (the fixed header need only be there).
pub fn ipv6_dst(frame: &[u8]) -> Option<Ipv6Addr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.outer_ethertype() != EtherType::Ipv6 {
        return None;
    }
    let l3 = frame.get(eth.header_len()..)?;
    // Gso lengths: only the fixed header is read here.
    Ipv6Packet::new_checked_with(l3, Lengths::Gso)
        .ok()
        .map(|p| p.dst_addr())
}

/// Parses and checks an IPv6 packet an endpoint of `subnet` sends for egress: Ethernet +
/// IPv6 (lengths, extension headers skipped, no fragment) + UDP (length, checksum, which
/// IPv6 makes mandatory) or ICMPv6 echo request (checksum). A mapped destination is taken
/// whatever its address.
pub fn parse_outbound<'a>(
    frame: &'a [u8],
    subnet: &Subnet6,
    maps: &[AddrMap6],
) -> Result<Outbound<'a>, EgressDrop> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| EgressDrop::Malformed)?;
    let mac = eth.src_addr().0;
    let ip_bytes = frame.get(eth.header_len()..).unwrap_or_default();
    let ip = Ipv6Packet::new_checked(ip_bytes).map_err(|_| EgressDrop::Malformed)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let is_mapped = mapped(dst, maps).is_some();
    let inside = subnet.contains(dst) && dst != subnet.gateway;
    if !subnet.valid_source(src) || (!is_mapped && (unroutable_destination(dst) || inside)) {
        return Err(EgressDrop::BadAddress);
    }
    let Some((proto, l4)) = ip.upper_layer() else {
        return Err(if has_fragment_header(&ip) {
            EgressDrop::Fragment
        } else {
            EgressDrop::Malformed
        });
    };
    if u8::from(proto) == 44 {
        return Err(EgressDrop::Fragment);
    }
    // The header and what follows, up to QUOTE_MAX bytes: enough for the transport's ports.
    let packet = ip.packet();
    let quote = &packet[..packet.len().min(QUOTE_MAX)];
    let hop_limit = ip.hop_limit();
    match proto {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(l4).map_err(|_| EgressDrop::Malformed)?;
            let len = udp.datagram().len();
            if udp.checksum() == 0 || !udp.verify_checksum(pseudo(src, dst, IpProtocol::Udp, len)) {
                return Err(EgressDrop::BadChecksum);
            }
            let repr = UdpRepr::parse(&udp).map_err(|_| EgressDrop::Malformed)?;
            if repr.dst_port == 0 || repr.src_port == 0 {
                return Err(EgressDrop::BadAddress);
            }
            Ok(Outbound {
                src_mac: mac,
                key: FlowKey::udp(
                    SocketAddrV6::new(src, repr.src_port, 0, 0),
                    SocketAddrV6::new(dst, repr.dst_port, 0, 0),
                ),
                payload: udp.payload(),
                quote,
                ttl: hop_limit,
            })
        }
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(l4).map_err(|_| EgressDrop::Malformed)?;
            if !icmp.verify_checksum(&src, &dst) {
                return Err(EgressDrop::BadChecksum);
            }
            if icmp.msg_type() != ICMP6_ECHO_REQUEST || icmp.msg_code() != 0 {
                return Err(EgressDrop::Unsupported);
            }
            Ok(Outbound {
                src_mac: mac,
                key: FlowKey::icmp_echo(src, icmp.echo_ident(), dst),
                payload: l4,
                quote,
                ttl: hop_limit,
            })
        }
        _ => Err(EgressDrop::Unsupported),
    }
}

/// Whether the extension header chain holds a fragment header (what makes
/// `upper_layer` give up besides a malformed chain).
fn has_fragment_header(ip: &Ipv6Packet<&[u8]>) -> bool {
    let mut next = u8::from(ip.next_header());
    let mut rest = ip.payload();
    for _ in 0..8 {
        match next {
            44 => return true,
            0 | 43 | 60 => {
                let Some(h) = rest.get(..2) else {
                    return false;
                };
                next = h[0];
                let Some(r) = rest.get((usize::from(h[1]) + 1) * 8..) else {
                    return false;
                };
                rest = r;
            }
            _ => return false,
        }
    }
    false
}

fn ethernet_header(src_mac: [u8; 6]) -> [u8; ETH_HDR] {
    let mut h = [0u8; ETH_HDR];
    EthernetRepr {
        src_addr: MacAddr(src_mac),
        dst_addr: MacAddr([0; 6]),
        vlan_tci: None,
        ethertype: EtherType::Ipv6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut h[..]));
    h
}

fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, len: usize) -> [u8; IPV6_HDR] {
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        payload_len: len,
        hop_limit: TTL,
    }
    .to_bytes()
}

/// Puts Ethernet and IPv6 headers in front of the upper-layer message in `buf` (after
/// [`ICMP_HEADROOM`] bytes) and hands each frame to `emit`: one frame (starting
/// [`FRAG_HDR`] bytes in, where no fragment header is needed), or fragments of at most `mtu`
/// bytes, each with a fragment header carrying `ident`. In place, as
/// [`crate::packet`]'s IPv4 fragmentation: a fragment's headers are written over the tail of
/// the previous fragment's data, which `emit` has consumed. Returns the frames emitted (0:
/// too big for IPv6).
fn finish_ipv6(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: IpProtocol,
    link: crate::packet::Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    let crate::packet::Link { gw_mac, mtu, ident } = link;
    let Some(l4_len) = buf.len().checked_sub(ICMP_HEADROOM) else {
        return 0;
    };
    if l4_len > MAX_PAYLOAD {
        return 0;
    }
    let eth = ethernet_header(gw_mac);
    if IPV6_HDR + l4_len <= mtu.max(MIN_MTU) {
        let frame = &mut buf[FRAG_HDR..];
        frame[..ETH_HDR].copy_from_slice(&eth);
        frame[ETH_HDR..ETH_HDR + IPV6_HDR].copy_from_slice(&ipv6_header(src, dst, proto, l4_len));
        emit(frame);
        return 1;
    }
    // Each fragment but the last carries a multiple of 8 bytes.
    let per = (mtu.max(MIN_MTU) - IPV6_HDR - FRAG_HDR) / 8 * 8;
    let mut offset = 0;
    let mut n = 0;
    while offset < l4_len {
        let len = per.min(l4_len - offset);
        let more = offset + len < l4_len;
        let frame = &mut buf[offset..ICMP_HEADROOM + offset + len];
        frame[..ETH_HDR].copy_from_slice(&eth);
        let ip = ipv6_header(src, dst, IpProtocol::Unknown(44), FRAG_HDR + len);
        frame[ETH_HDR..ETH_HDR + IPV6_HDR].copy_from_slice(&ip);
        // Offset in 8-byte units (13 bits, below 65536 / 8: checked above), M flag, ident.
        let off_field = (offset as u16) | u16::from(more);
        let frag = &mut frame[ETH_HDR + IPV6_HDR..ICMP_HEADROOM];
        frag[0] = u8::from(proto);
        frag[1] = 0;
        frag[2..4].copy_from_slice(&off_field.to_be_bytes());
        frag[4..8].copy_from_slice(&u32::from(ident).to_be_bytes());
        emit(frame);
        n += 1;
        offset += len;
    }
    n
}

/// Builds the frames of a UDP datagram from `from` to `to` in place (`buf`: [`UDP_HEADROOM`]
/// bytes, then the payload) and hands each to `emit`. Returns 0 if the payload cannot be one
/// UDP datagram.
pub fn udp_frames_in(
    buf: &mut [u8],
    from: SocketAddrV6,
    to: SocketAddrV6,
    link: crate::packet::Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    let Some(payload_len) = buf.len().checked_sub(UDP_HEADROOM) else {
        return 0;
    };
    let udp_len = UDP_HDR + payload_len;
    if udp_len > MAX_PAYLOAD {
        return 0;
    }
    let mut udp = UdpPacket::new_unchecked(&mut buf[ICMP_HEADROOM..]);
    UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    }
    .emit(&mut udp, payload_len);
    udp.fill_checksum(pseudo(*from.ip(), *to.ip(), IpProtocol::Udp, udp_len));
    finish_ipv6(buf, *from.ip(), *to.ip(), IpProtocol::Udp, link, emit)
}

/// Sets the identifier of an ICMPv6 echo message (at least 8 bytes) between `src` and
/// `dst` and recomputes its checksum.
pub fn set_echo_ident(msg: &mut [u8], ident: u16, src: Ipv6Addr, dst: Ipv6Addr) {
    if msg.len() < ICMP_HDR {
        return;
    }
    msg[4..6].copy_from_slice(&ident.to_be_bytes());
    Icmpv6Packet::new_unchecked(msg).fill_checksum(&src, &dst);
}

/// Builds the frames of an ICMPv6 echo reply from `from` to `to` in place (`buf`:
/// [`ICMP_HEADROOM`] bytes, then the message a socket received), with the endpoint's echo
/// identifier put back. Returns 0 if the message is not an echo reply.
pub fn echo_reply_frames_in(
    buf: &mut [u8],
    from: Ipv6Addr,
    to: Ipv6Addr,
    echo_ident: u16,
    link: crate::packet::Link,
    emit: &mut dyn FnMut(&mut [u8]),
) -> usize {
    if buf.len() < ICMP_HEADROOM + ICMP_HDR {
        return 0;
    }
    let msg = &mut buf[ICMP_HEADROOM..];
    if msg[0] != ICMP6_ECHO_REPLY || msg[1] != 0 {
        return 0;
    }
    set_echo_ident(msg, echo_ident, from, to);
    finish_ipv6(buf, from, to, IpProtocol::Icmpv6, link, emit)
}

/// An ICMPv6 error frame (`icmp_type`, `code`, and `rest`: the MTU of a packet too big,
/// else 0) from `from` to `to`, quoting `quote` (the offending packet's start).
pub fn icmp_error_frame(
    from: Ipv6Addr,
    to: Ipv6Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    quote: &[u8],
    gw_mac: [u8; 6],
) -> Option<Vec<u8>> {
    let quote = quote.get(..quote.len().min(QUOTE_MAX))?;
    let l4_len = ICMP_HDR + quote.len();
    let mut f = Vec::with_capacity(ETH_HDR + IPV6_HDR + l4_len);
    f.extend_from_slice(&ethernet_header(gw_mac));
    f.extend_from_slice(&ipv6_header(from, to, IpProtocol::Icmpv6, l4_len));
    f.extend_from_slice(&[icmp_type, code, 0, 0]);
    f.extend_from_slice(&rest.to_be_bytes());
    f.extend_from_slice(quote);
    Icmpv6Packet::new_unchecked(&mut f[ETH_HDR + IPV6_HDR..]).fill_checksum(&from, &to);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Link;
    use etherparse::{Icmpv6Type, PacketBuilder, SlicedPacket};

    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
    const EP_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];

    fn gw() -> Ipv6Addr {
        "fd00:1::1".parse().expect("v6")
    }
    fn ep() -> Ipv6Addr {
        "fd00:1::2".parse().expect("v6")
    }
    fn out() -> Ipv6Addr {
        "2001:db8::2".parse().expect("v6")
    }
    fn subnet() -> Subnet6 {
        Subnet6 {
            gateway: gw(),
            prefix_len: 64,
        }
    }

    fn udp_frame(src: Ipv6Addr, dst: Ipv6Addr, sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(sp, dp);
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("udp");
        v
    }

    fn echo_frame(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
            .ipv6(ep().octets(), out().octets(), 64)
            .icmpv6_echo_request(ident, seq);
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("echo");
        v
    }

    #[test]
    fn parses_udp_and_echo_with_their_flow_keys() {
        let f = udp_frame(ep(), out(), 5000, 53, b"query");
        let o = parse_outbound(&f, &subnet(), &[]).expect("udp");
        assert_eq!(o.src_mac, EP_MAC);
        assert_eq!(
            o.key,
            FlowKey::udp(
                SocketAddrV6::new(ep(), 5000, 0, 0),
                SocketAddrV6::new(out(), 53, 0, 0)
            )
        );
        assert_eq!(o.payload, b"query");
        assert_eq!(o.quote, &f[ETH_HDR..ETH_HDR + IPV6_HDR + 13]);
        assert_eq!(o.ttl, 64);

        let e = echo_frame(0x1234, 1, b"ping");
        let o = parse_outbound(&e, &subnet(), &[]).expect("echo");
        assert_eq!(o.key, FlowKey::icmp_echo(ep(), 0x1234, out()));
        assert_eq!(o.payload, &e[ETH_HDR + IPV6_HDR..]);
    }

    #[test]
    fn refuses_bad_packets_with_one_reason_each() {
        let good = udp_frame(ep(), out(), 5000, 53, b"query");
        let mut zero_sum = good.clone();
        zero_sum[ETH_HDR + IPV6_HDR + 6..ETH_HDR + IPV6_HDR + 8].fill(0);
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().expect("byte") ^= 1;
        let mut fragment = good.clone();
        fragment[ETH_HDR + 6] = 44;
        let mut long = good.clone();
        long[ETH_HDR + 4..ETH_HDR + 6].copy_from_slice(&900u16.to_be_bytes());
        let mut echo_sum = echo_frame(1, 1, b"x");
        *echo_sum.last_mut().expect("byte") ^= 1;
        let reply = {
            let b = PacketBuilder::ethernet2(EP_MAC, GW_MAC)
                .ipv6(ep().octets(), out().octets(), 64)
                .icmpv6_echo_reply(1, 1);
            let mut v = Vec::new();
            b.write(&mut v, b"").expect("reply");
            v
        };
        let cases: Vec<(&str, Vec<u8>, EgressDrop)> = vec![
            ("runt", good[..20].to_vec(), EgressDrop::Malformed),
            ("payload length past the frame", long, EgressDrop::Malformed),
            ("udp checksum 0", zero_sum, EgressDrop::BadChecksum),
            ("udp checksum", bad_sum, EgressDrop::BadChecksum),
            ("fragment", fragment, EgressDrop::Fragment),
            ("icmpv6 checksum", echo_sum, EgressDrop::BadChecksum),
            ("echo reply", reply, EgressDrop::Unsupported),
            (
                "spoofed source",
                udp_frame("2001:db8:1::9".parse().expect("v6"), out(), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "from the gateway",
                udp_frame(gw(), out(), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "link-local source",
                udp_frame("fe80::2".parse().expect("v6"), out(), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "to link-local",
                udp_frame(ep(), "fe80::9".parse().expect("v6"), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "to multicast",
                udp_frame(ep(), "ff02::1".parse().expect("v6"), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "to an IPv4-mapped address",
                udp_frame(ep(), "::ffff:127.0.0.1".parse().expect("v6"), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "to a neighbour",
                udp_frame(ep(), "fd00:1::3".parse().expect("v6"), 1, 2, b""),
                EgressDrop::BadAddress,
            ),
            (
                "to port 0",
                udp_frame(ep(), out(), 1, 0, b""),
                EgressDrop::BadAddress,
            ),
        ];
        for (what, frame, want) in cases {
            assert_eq!(
                parse_outbound(&frame, &subnet(), &[]).map(|o| o.key),
                Err(want),
                "{what}"
            );
        }
    }

    #[test]
    fn extension_headers_are_skipped_to_the_transport() {
        // A hop-by-hop header (8 bytes of padding options) before UDP.
        let f = udp_frame(ep(), out(), 5000, 53, b"q");
        let mut g = f[..ETH_HDR + IPV6_HDR].to_vec();
        g[ETH_HDR + 6] = 0;
        let plen = u16::from_be_bytes([g[ETH_HDR + 4], g[ETH_HDR + 5]]) + 8;
        g[ETH_HDR + 4..ETH_HDR + 6].copy_from_slice(&plen.to_be_bytes());
        g.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[ETH_HDR + IPV6_HDR..]);
        let o = parse_outbound(&g, &subnet(), &[]).expect("past hop-by-hop");
        assert_eq!(o.payload, b"q");
    }

    #[test]
    fn never_panics_on_any_prefix_or_bit_flip() {
        for f in [
            udp_frame(ep(), out(), 1, 2, b"hello"),
            echo_frame(3, 4, b"abc"),
        ] {
            for n in 0..=f.len() {
                let _ = parse_outbound(&f[..n], &subnet(), &[]);
                let _ = ipv6_dst(&f[..n]);
            }
            for i in 0..f.len() {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[i] ^= 1 << bit;
                    let _ = parse_outbound(&g, &subnet(), &[]);
                }
            }
        }
    }

    #[test]
    fn policy_refuses_loopback_and_netyard_prefixes_and_honours_maps() {
        let local: Vec<Ipv6Net> = vec!["fd00:2::/64".parse().expect("net")];
        let t = |d: &str, maps: &[AddrMap6]| {
            egress_target(d.parse().expect("v6"), &subnet(), maps, &local)
        };
        assert_eq!(t("2001:db8::2", &[]), Ok(out()));
        assert_eq!(t("::1", &[]), Err(Refusal::Loopback));
        assert_eq!(t("fd00:2::5", &[]), Err(Refusal::LocalNetwork));
        assert_eq!(t("fd00:1::1", &[]), Err(Refusal::LocalNetwork));
        let maps = effective_maps(gw(), true, &[]);
        assert_eq!(t("fd00:1::1", &maps), Ok(Ipv6Addr::LOCALHOST));
        assert!(unroutable_destination("::".parse().expect("v6")));
        assert!(!unroutable_destination(out()));
        assert!(subnet().valid_source(ep()));
        assert!(!subnet().valid_source("fd00:1::".parse().expect("v6")));
    }

    fn collect(
        mut buf: Vec<u8>,
        build: impl FnOnce(&mut [u8], &mut dyn FnMut(&mut [u8])) -> usize,
    ) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        build(&mut buf, &mut |f| v.push(f.to_vec()));
        v
    }

    #[test]
    fn builds_a_udp_reply_that_parses_back() {
        let mut buf = vec![0xa5u8; UDP_HEADROOM];
        buf.extend_from_slice(b"answer");
        let from = SocketAddrV6::new(out(), 53, 0, 0);
        let to = SocketAddrV6::new(ep(), 5000, 0, 0);
        let link = Link {
            gw_mac: GW_MAC,
            mtu: 1500,
            ident: 1,
        };
        let frames = collect(buf, |b, e| udp_frames_in(b, from, to, link, e));
        assert_eq!(frames.len(), 1);
        let mut want = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, [0; 6])
            .ipv6(out().octets(), ep().octets(), 64)
            .udp(53, 5000)
            .write(&mut want, b"answer")
            .expect("udp");
        assert_eq!(frames[0], want);
    }

    #[test]
    fn fragments_a_reply_past_the_mtu() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; UDP_HEADROOM];
        buf.extend_from_slice(&payload);
        let from = SocketAddrV6::new(out(), 53, 0, 0);
        let to = SocketAddrV6::new(ep(), 5000, 0, 0);
        let link = Link {
            gw_mac: GW_MAC,
            mtu: 1500,
            ident: 77,
        };
        let frames = collect(buf, |b, e| udp_frames_in(b, from, to, link, e));
        assert_eq!(frames.len(), 3);
        let mut l4 = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() - ETH_HDR <= 1500);
            let ip = &f[ETH_HDR..];
            assert_eq!(ip[6], 44, "a fragment header");
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(plen, f.len() - ETH_HDR - IPV6_HDR);
            let frag = &ip[IPV6_HDR..IPV6_HDR + FRAG_HDR];
            assert_eq!(frag[0], 17);
            let off = u16::from_be_bytes([frag[2], frag[3]]);
            assert_eq!(usize::from(off & !7), l4.len());
            assert_eq!(off & 1 == 1, i < 2);
            assert_eq!(&frag[4..8], &77u32.to_be_bytes());
            l4.extend_from_slice(&ip[IPV6_HDR + FRAG_HDR..]);
        }
        assert_eq!(&l4[8..], &payload[..]);
        let sum = checksum::add(pseudo(out(), ep(), IpProtocol::Udp, l4.len()), &l4);
        assert_eq!(
            checksum::fold(sum),
            0xffff,
            "UDP checksum over the whole datagram"
        );
    }

    #[test]
    fn builds_an_echo_reply_with_the_endpoints_identifier() {
        // As a ping socket hands it back: the socket's identifier 0x9999.
        let mut msg = vec![ICMP6_ECHO_REPLY, 0, 0, 0, 0x99, 0x99, 0, 5];
        msg.extend_from_slice(b"payload!");
        let mut buf = vec![0u8; ICMP_HEADROOM];
        buf.extend_from_slice(&msg);
        let link = Link {
            gw_mac: GW_MAC,
            mtu: 1500,
            ident: 1,
        };
        let frames = collect(buf, |b, e| {
            echo_reply_frames_in(b, out(), ep(), 0x1234, link, e)
        });
        assert_eq!(frames.len(), 1);
        let mut want = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, [0; 6])
            .ipv6(out().octets(), ep().octets(), 64)
            .icmpv6_echo_reply(0x1234, 5)
            .write(&mut want, b"payload!")
            .expect("reply");
        assert_eq!(frames[0], want);
    }

    #[test]
    fn builds_errors_quoting_the_packet() {
        let sent = udp_frame(ep(), out(), 5000, 9, b"knock");
        let o = parse_outbound(&sent, &subnet(), &[]).expect("udp");
        let f = icmp_error_frame(gw(), ep(), ICMP6_PACKET_TOO_BIG, 0, 1400, o.quote, GW_MAC)
            .expect("frame");
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("icmpv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
        assert_eq!(icmp.payload(), &sent[ETH_HDR..]);
        let sum = checksum::add(
            pseudo(gw(), ep(), IpProtocol::Icmpv6, f.len() - ETH_HDR - IPV6_HDR),
            &f[ETH_HDR + IPV6_HDR..],
        );
        assert_eq!(checksum::fold(sum), 0xffff);
    }
}
