//! IPv6 headers (RFC 8200).
//!
//! ```text
//!  0       4               12      16              24              31
//!  |version| traffic class |              flow label                   |
//!  |        payload length         |  next header  |   hop limit   |
//!  |                      source address (16 bytes)                    |
//!  |                   destination address (16 bytes)                  |
//! ```
//!
//! [`Ipv6Packet`] reads and writes fields in place; [`Ipv6Repr`] is the parsed summary.
//! Extension headers are payload here: [`Ipv6Packet::upper_layer`] walks the common ones
//! (hop-by-hop, routing, destination options) when a caller needs the transport behind them.
//! IPv6 has no header checksum; TCP, UDP and ICMPv6 checksums start from
//! [`Ipv6Packet::pseudo_header`].
//!
//! Also here, because every IPv6 user on an Ethernet segment needs them: the EUI-64
//! link-local address of a MAC ([`link_local_from_mac`]), the solicited-node multicast group of
//! an address ([`solicited_node`]) and the multicast MAC of a group ([`multicast_mac`]).

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::MacAddr;
use super::ip::{IpProtocol, Lengths};
use super::{be16, set_be16, WireError};

/// Length of the fixed IPv6 header.
pub const IPV6_HDR_LEN: usize = 40;

mod field {
    use std::ops::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Next-header values of the extension headers [`Ipv6Packet::upper_layer`] walks.
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
}

/// Extension headers walked before giving up: a legitimate packet has a handful at most.
const MAX_EXT_HEADERS: usize = 8;

/// A read/write view of an IPv6 packet at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
    lengths: Lengths,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than the header
    /// or the payload length says. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet {
            buffer,
            lengths: Lengths::Strict,
        }
    }

    /// Wraps `buffer` after [`Self::check_len`] with strict lengths: no accessor panics
    /// afterwards. Bytes past the payload length (Ethernet padding) are not part of the packet.
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        Self::new_checked_with(buffer, Lengths::Strict)
    }

    /// [`Self::new_checked`] for a packet whose length field is taken as `lengths` says: a
    /// GSO super-frame's ([`Lengths::Gso`]) may say 0 (BIG TCP's jumbograms do), and then the
    /// packet is the whole buffer.
    pub fn new_checked_with(buffer: T, lengths: Lengths) -> Result<Ipv6Packet<T>, WireError> {
        let p = Ipv6Packet { buffer, lengths };
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version is 6, the header fits the buffer and the payload length fits the
    /// buffer (0 under [`Lengths::Gso`] means the rest of the buffer).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        let have = b.len();
        if have < IPV6_HDR_LEN {
            return Err(WireError::Truncated {
                what: "IPv6 header",
                need: IPV6_HDR_LEN,
                have,
            });
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed {
                what: "IPv6 header",
                reason: "version is not 6",
            });
        }
        let need = IPV6_HDR_LEN + usize::from(self.payload_len());
        if need > have {
            return Err(WireError::Truncated {
                what: "IPv6 packet (per its payload length)",
                need,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        ((self.word0() >> 20) & 0xff) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// The payload-length field as written.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Where the packet ends in the buffer: header plus payload length, or the buffer's end
    /// for a GSO super-frame whose payload length is 0.
    pub fn packet_len(&self) -> usize {
        match (self.payload_len(), self.lengths) {
            (0, Lengths::Gso) => self.buffer.as_ref().len(),
            (l, _) => IPV6_HDR_LEN + usize::from(l),
        }
    }

    /// The next header (the transport, or the first extension header).
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address's bytes.
    pub fn src_octets(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        a
    }

    /// The destination address's bytes.
    pub fn dst_octets(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        a
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_octets())
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_octets())
    }

    /// The partial sum of the pseudo-header (RFC 8200 section 8.1) an upper-layer checksum
    /// over `l4_len` bytes of protocol `next_header` starts from. The protocol is the
    /// transport's (after any extension headers), so it is an argument: see
    /// [`Self::upper_layer`].
    pub fn pseudo_header_for(&self, next_header: IpProtocol, l4_len: u32) -> u64 {
        checksum::pseudo_header_v6(
            &self.src_octets(),
            &self.dst_octets(),
            u8::from(next_header),
            l4_len,
        )
    }

    /// The pseudo-header sum for the packet's own next header (no extension headers), as
    /// [`super::ipv4::Ipv4Packet::pseudo_header`].
    pub fn pseudo_header(&self, l4_len: u32) -> u64 {
        self.pseudo_header_for(self.next_header(), l4_len)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The bytes after the fixed header, up to [`Self::packet_len`] (extension headers
    /// included).
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[IPV6_HDR_LEN..self.packet_len()]
    }

    /// The packet (header and payload, without trailing padding).
    pub fn packet(&self) -> &'a [u8] {
        &self.buffer.as_ref()[..self.packet_len()]
    }

    /// The transport protocol and its bytes, past the hop-by-hop, routing and destination
    /// options headers. `None` if one of them is truncated, there are more than a handful,
    /// or a fragment header comes first (a non-first fragment has no transport header).
    pub fn upper_layer(&self) -> Option<(IpProtocol, &'a [u8])> {
        let mut next = u8::from(self.next_header());
        let mut rest = self.payload();
        for _ in 0..MAX_EXT_HEADERS {
            match next {
                ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                    let hdr = rest.get(..2)?;
                    let len = (usize::from(hdr[1]) + 1) * 8;
                    next = hdr[0];
                    rest = rest.get(len..)?;
                }
                ext::FRAGMENT => return None,
                p => return Some((IpProtocol::from(p), rest)),
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version to 6, the traffic class and the flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = u8::from(p);
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// The bytes after the fixed header, up to [`Ipv6Packet::packet_len`], writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.packet_len();
        &mut self.buffer.as_mut()[IPV6_HDR_LEN..end]
    }
}

/// The parsed fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    /// Bytes after the fixed header (extension headers included).
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parses a checked packet. Traffic class and flow label are not kept (netyard writes 0).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.packet_len() - IPV6_HDR_LEN,
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes [`Self::emit`] writes: 40.
    pub const fn buffer_len(&self) -> usize {
        IPV6_HDR_LEN
    }

    /// Writes the 40-byte header (traffic class and flow label 0). A payload longer than the
    /// field's 65535 is written as 0, a super-frame's mark (its real extent is its buffer).
    /// Panics if the buffer is shorter than 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version_tc_flow(0, 0);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(0));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; IPV6_HDR_LEN] {
        let mut out = [0u8; IPV6_HDR_LEN];
        self.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        out
    }

    /// The pseudo-header sum for an upper-layer message of `l4_len` bytes under this header.
    pub fn pseudo_header(&self, l4_len: u32) -> u64 {
        checksum::pseudo_header_v6(
            &self.src_addr.octets(),
            &self.dst_addr.octets(),
            u8::from(self.next_header),
            l4_len,
        )
    }
}

/// fe80::/10.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A): fe80:: with the
/// MAC split by ff:fe and its universal/local bit flipped. What the kernel gives an interface
/// with `addr_gen_mode eui64`, so a gateway's is known from its MAC alone.
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The solicited-node multicast group of `addr` (ff02::1:ffXX:XXXX, RFC 4291 section
/// 2.7.1): where a Neighbor Solicitation for it is sent.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet group address of IPv6 multicast `group` (33:33 and its last 32 bits, RFC
/// 2464 section 7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

    /// fd00::2 -> fd00::1, UDP, hop limit 64, traffic class 0xb8, flow 0x12345, 4 bytes.
    fn packet() -> Vec<u8> {
        let mut p = vec![0x6b, 0x81, 0x23, 0x45, 0, 4, 17, 64];
        p.extend_from_slice(&SRC.octets());
        p.extend_from_slice(&DST.octets());
        p.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        p
    }

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: SRC,
            dst_addr: DST,
            next_header: IpProtocol::Udp,
            payload_len: 4,
            hop_limit: 64,
        }
    }

    #[test]
    fn parses_fields() {
        let b = packet();
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(Ipv6Repr::parse(&p), Ok(repr()));
        assert_eq!(
            p.upper_layer(),
            Some((IpProtocol::Udp, &[0xaa, 0xbb, 0xcc, 0xdd][..]))
        );
    }

    #[test]
    fn emits_into_junk() {
        let mut buf = [0xa5u8; 44];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let mut want = packet();
        want[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        assert_eq!(&buf[..], &want[..]);
        assert_eq!(&repr().to_bytes()[..], &want[..40]);
    }

    #[test]
    fn lengths_are_checked() {
        let b = packet();
        for len in 0..b.len() {
            assert!(Ipv6Packet::new_checked(&b[..len]).is_err(), "len {len}");
        }
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert!(matches!(
            Ipv6Packet::new_checked(&v4[..]),
            Err(WireError::Malformed { .. })
        ));
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 10]);
        let p = Ipv6Packet::new_checked(&padded[..]).expect("padded");
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn gso_zero_length_is_the_buffer() {
        let mut b = packet();
        b[4] = 0;
        b[5] = 0;
        b.extend_from_slice(&[1; 100]);
        let strict = Ipv6Packet::new_checked(&b[..]).expect("0 is a valid length");
        assert_eq!(strict.payload().len(), 0);
        let gso = Ipv6Packet::new_checked_with(&b[..], Lengths::Gso).expect("gso");
        assert_eq!(gso.payload().len(), 104);
    }

    #[test]
    fn upper_layer_skips_extension_headers() {
        // Hop-by-hop (8 bytes, a router alert), then ICMPv6 (an MLD report's first bytes).
        let mut b = packet();
        b[6] = ext::HOP_BY_HOP;
        b.truncate(40);
        b.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
        b.extend_from_slice(&[143, 0, 0, 0]);
        b[5] = 12;
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(
            p.upper_layer(),
            Some((IpProtocol::Icmpv6, &[143, 0, 0, 0][..]))
        );
        // Truncated extension header, and a fragment header.
        b[41] = 5;
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(p.upper_layer(), None);
        b[6] = ext::FRAGMENT;
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(p.upper_layer(), None);
    }

    #[test]
    fn pseudo_header_checks_a_udp_datagram() {
        // A UDP datagram 1234 -> 53 with 2 bytes of payload, checksummed by hand below.
        let mut b = packet();
        b.truncate(40);
        b[5] = 10;
        b.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0x00, 0x0a, 0, 0, b'h', b'i']);
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        let sum = checksum::add(p.pseudo_header(10), p.payload());
        let c = !checksum::fold(sum);
        b[46..48].copy_from_slice(&c.to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(
            checksum::fold(checksum::add(p.pseudo_header(10), p.payload())),
            0xffff
        );
        assert_eq!(
            Ipv6Repr::parse(&p).expect("valid").pseudo_header(10),
            p.pseudo_header(10)
        );
    }

    #[test]
    fn addresses_of_a_link() {
        let mac = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(
            link_local_from_mac(mac),
            "fe80::42:acff:fe11:2".parse::<Ipv6Addr>().expect("addr")
        );
        assert!(is_link_local(&link_local_from_mac(mac)));
        assert!(!is_link_local(&SRC));
        let a: Ipv6Addr = "fd12:3456::1:2:3:4567".parse().expect("addr");
        assert_eq!(
            solicited_node(a),
            "ff02::1:ff03:4567".parse::<Ipv6Addr>().expect("addr")
        );
        assert_eq!(
            multicast_mac(solicited_node(a)),
            MacAddr([0x33, 0x33, 0xff, 0x03, 0x45, 0x67])
        );
    }
}
