//! What IPv4 and IPv6 share: the protocol numbers and the version dispatch.
//!
//! The views of the version-specific headers ([`super::ipv4`], [`super::ipv6`]) have the same
//! shape: `new_checked`, accessors, a `Repr` with `parse`/`emit`, and
//! the pseudo-header sum that TCP and UDP checksums start from. Code that takes either
//! version asks [`IpVersion::of`] first and opens the matching view.

use std::fmt;
use std::net::IpAddr;

use super::ipv4::Ipv4Packet;
use super::ipv6::Ipv6Packet;
use super::WireError;

/// An IP protocol number (IPv4's protocol, IPv6's next header). Unknown values pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 58.
    Icmpv6,
    /// Anything else.
    Unknown(u8),
}

impl IpProtocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

impl From<u8> for IpProtocol {
    fn from(raw: u8) -> Self {
        match raw {
            IpProtocol::ICMP => IpProtocol::Icmp,
            IpProtocol::TCP => IpProtocol::Tcp,
            IpProtocol::UDP => IpProtocol::Udp,
            IpProtocol::ICMPV6 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => IpProtocol::ICMP,
            IpProtocol::Tcp => IpProtocol::TCP,
            IpProtocol::Udp => IpProtocol::UDP,
            IpProtocol::Icmpv6 => IpProtocol::ICMPV6,
            IpProtocol::Unknown(raw) => raw,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            IpProtocol::Unknown(raw) => write!(f, "{raw}"),
        }
    }
}

/// The IP version of a packet, from its first nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    Ipv4,
    Ipv6,
}

impl IpVersion {
    /// The version of the packet starting at `packet[0]`; `None` for an empty buffer or a
    /// version that is neither 4 nor 6.
    pub fn of(packet: &[u8]) -> Option<IpVersion> {
        match packet.first()? >> 4 {
            4 => Some(IpVersion::Ipv4),
            6 => Some(IpVersion::Ipv6),
            _ => None,
        }
    }
}

/// A checked packet of either version, for code that treats both alike (addresses, the
/// transport and its bytes, the pseudo-header sum).
#[derive(Debug, Clone)]
pub enum IpPacket<T: AsRef<[u8]>> {
    V4(Ipv4Packet<T>),
    V6(Ipv6Packet<T>),
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Opens the view [`IpVersion::of`] names, checked with `lengths`.
    pub fn new_checked_with(buffer: T, lengths: Lengths) -> Result<IpPacket<T>, WireError> {
        match IpVersion::of(buffer.as_ref()) {
            Some(IpVersion::Ipv4) => {
                Ok(IpPacket::V4(Ipv4Packet::new_checked_with(buffer, lengths)?))
            }
            Some(IpVersion::Ipv6) => {
                Ok(IpPacket::V6(Ipv6Packet::new_checked_with(buffer, lengths)?))
            }
            None => Err(WireError::Malformed {
                what: "IP header",
                reason: "version is neither 4 nor 6",
            }),
        }
    }

    /// The version.
    pub fn version(&self) -> IpVersion {
        match self {
            IpPacket::V4(_) => IpVersion::Ipv4,
            IpPacket::V6(_) => IpVersion::Ipv6,
        }
    }

    /// The source address.
    pub fn src_addr(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.src_addr().into(),
            IpPacket::V6(p) => p.src_addr().into(),
        }
    }

    /// The destination address.
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.dst_addr().into(),
            IpPacket::V6(p) => p.dst_addr().into(),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IpPacket<&'a T> {
    /// The transport protocol and its bytes: IPv4's protocol and payload, IPv6's past its
    /// extension headers (`None` where [`Ipv6Packet::upper_layer`] finds none).
    pub fn transport(&self) -> Option<(IpProtocol, &'a [u8])> {
        match self {
            IpPacket::V4(p) => Some((p.protocol(), p.payload())),
            IpPacket::V6(p) => p.upper_layer(),
        }
    }

    /// The pseudo-header sum a checksum over the transport's `l4_len` bytes starts from.
    pub fn pseudo_header(&self, protocol: IpProtocol, l4_len: u32) -> u64 {
        match self {
            IpPacket::V4(p) => p.pseudo_header(l4_len),
            IpPacket::V6(p) => p.pseudo_header_for(protocol, l4_len),
        }
    }
}

/// How a length field is taken: strictly, or as a GSO super-frame's.
///
/// A super-frame a TAP or AF_PACKET socket hands over under a GSO virtio-net header is one
/// packet of up to 64 KiB that the receiver (or [`crate::gso`]) cuts into segments; the
/// segmenter writes every segment's lengths afresh from the frame, as Linux's does, and never
/// reads the super-frame's. A sender may therefore leave the IPv4 total length 0 (Linux's BIG
/// TCP does, past 64 KiB) and a UDP super-datagram's length need not describe it. smoltcp's
/// `new_checked` rejects such packets; [`Lengths::Gso`] takes them, with the frame as the
/// packet's extent. Only a caller that saw the GSO header may ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lengths {
    /// The length fields must describe the packet (trailing bytes are Ethernet padding).
    Strict,
    /// A GSO super-frame: a zero length field means "up to the end of the buffer".
    Gso,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_numbers_round_trip_and_unknown_passes_through() {
        for raw in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(raw)), raw);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
        assert_eq!(IpProtocol::Unknown(132).to_string(), "132");
    }

    #[test]
    fn either_version_opens_its_view() {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 4, 17, 64];
        v6.extend_from_slice(&[0xfd; 16]);
        v6.extend_from_slice(&[0xfe; 16]);
        v6.extend_from_slice(&[1, 2, 3, 4]);
        let p = IpPacket::new_checked_with(&v6[..], Lengths::Strict).expect("v6");
        assert_eq!(p.version(), IpVersion::Ipv6);
        assert_eq!(p.src_addr(), IpAddr::from([0xfd; 16]));
        assert_eq!(p.transport(), Some((IpProtocol::Udp, &[1, 2, 3, 4][..])));
        let v4 = [
            0x45, 0, 0, 24, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 2, 3, 4,
        ];
        let p = IpPacket::new_checked_with(&v4[..], Lengths::Strict).expect("v4");
        assert_eq!(p.dst_addr(), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(p.transport(), Some((IpProtocol::Udp, &[1, 2, 3, 4][..])));
        assert!(IpPacket::new_checked_with(&[0x50u8; 40][..], Lengths::Strict).is_err());
    }

    #[test]
    fn version_from_the_first_nibble() {
        assert_eq!(IpVersion::of(&[0x45]), Some(IpVersion::Ipv4));
        assert_eq!(IpVersion::of(&[0x60, 0]), Some(IpVersion::Ipv6));
        assert_eq!(IpVersion::of(&[0x55]), None);
        assert_eq!(IpVersion::of(&[]), None);
    }
}
