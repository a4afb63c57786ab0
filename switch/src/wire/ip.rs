//! What IPv4 and IPv6 share: the protocol numbers and the version dispatch.
//!
//! The views of the version-specific headers ([`super::ipv4`], and IPv6's next to it when it
//! comes) have the same shape: `new_checked`, accessors, a `Repr` with `parse`/`emit`, and
//! the pseudo-header sum that TCP and UDP checksums start from. Code that takes either
//! version asks [`IpVersion::of`] first and opens the matching view.

use std::fmt;

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
    fn version_from_the_first_nibble() {
        assert_eq!(IpVersion::of(&[0x45]), Some(IpVersion::Ipv4));
        assert_eq!(IpVersion::of(&[0x60, 0]), Some(IpVersion::Ipv6));
        assert_eq!(IpVersion::of(&[0x55]), None);
        assert_eq!(IpVersion::of(&[]), None);
    }
}
