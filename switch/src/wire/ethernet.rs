//! Ethernet II frames, optionally with one 802.1Q tag.
//!
//! ```text
//!  0     6     12          14 (untagged)
//!  | dst | src | ethertype | payload ...
//!  | dst | src | 0x8100 | TCI | ethertype | payload ...
//!  0     6     12       14    16          18 (tagged)
//! ```
//!
//! [`EthernetFrame`] reads and writes fields in place; [`EthernetRepr`] is the parsed summary.
//! A second tag (QinQ) is not interpreted: the inner EtherType of a tagged frame is reported as
//! is, and the payload starts after the first tag. The frame check sequence is not part of the
//! buffer.

use std::fmt;
use std::str::FromStr;

use super::WireError;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Reads a MAC from the first six bytes of `b`; `None` if `b` is shorter.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        let a: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(MacAddr(a))
    }
    /// Group bit set: broadcast or multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
    /// A random locally administered unicast address.
    pub fn random_local(mut bytes: [u8; 6]) -> MacAddr {
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        MacAddr(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes separated by ':'")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(|| ParseMacError(s.to_string()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(ParseMacError(s.to_string()));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| ParseMacError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Length of an untagged Ethernet II header.
pub const ETH_HDR_LEN: usize = 14;
/// Length of one 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const ETH_VLAN_HDR_LEN: usize = ETH_HDR_LEN + VLAN_TAG_LEN;

mod field {
    use std::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    /// The outer EtherType, or the TPID of an 802.1Q tag.
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
    /// Tag control information (PCP, DEI, VID) of a tagged frame.
    pub const VLAN_TCI: Range<usize> = 14..16;
    /// The EtherType after the tag of a tagged frame.
    pub const VLAN_ETHERTYPE: Range<usize> = 16..18;
    pub const VLAN_PAYLOAD: RangeFrom<usize> = 18..;
}

/// An EtherType. Unknown values pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x86dd.
    Ipv6,
    /// 0x0806.
    Arp,
    /// 0x8100, an 802.1Q tag.
    Vlan,
    /// Anything else.
    Unknown(u16),
}

impl EtherType {
    /// IPv4 EtherType value.
    pub const IPV4: u16 = 0x0800;
    /// IPv6 EtherType value.
    pub const IPV6: u16 = 0x86dd;
    /// ARP EtherType value.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q TPID.
    pub const VLAN: u16 = 0x8100;
}

impl From<u16> for EtherType {
    fn from(raw: u16) -> Self {
        match raw {
            EtherType::IPV4 => EtherType::Ipv4,
            EtherType::IPV6 => EtherType::Ipv6,
            EtherType::ARP => EtherType::Arp,
            EtherType::VLAN => EtherType::Vlan,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => EtherType::IPV4,
            EtherType::Ipv6 => EtherType::IPV6,
            EtherType::Arp => EtherType::ARP,
            EtherType::Vlan => EtherType::VLAN,
            EtherType::Unknown(raw) => raw,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::Unknown(raw) => write!(f, "0x{raw:04x}"),
        }
    }
}

/// A read/write view of an Ethernet II frame (without FCS), with at most one 802.1Q tag.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length; accessors panic if it is shorter than the
    /// header. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking it holds the whole header (18 bytes when tagged); no
    /// accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks the buffer holds the untagged header and, if the outer EtherType is 802.1Q, the
    /// tag too.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        let have = b.len();
        if have < ETH_HDR_LEN {
            return Err(WireError::Truncated {
                what: "Ethernet header",
                need: ETH_HDR_LEN,
                have,
            });
        }
        if self.is_vlan_tagged() && have < ETH_VLAN_HDR_LEN {
            return Err(WireError::Truncated {
                what: "802.1Q-tagged Ethernet header",
                need: ETH_VLAN_HDR_LEN,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The destination address.
    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        MacAddr(a)
    }

    /// The source address.
    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        MacAddr(a)
    }

    /// The EtherType at offset 12: [`EtherType::Vlan`] for a tagged frame.
    pub fn outer_ethertype(&self) -> EtherType {
        EtherType::from(self.read_u16(field::ETHERTYPE))
    }

    /// The frame carries an 802.1Q tag.
    pub fn is_vlan_tagged(&self) -> bool {
        self.read_u16(field::ETHERTYPE) == EtherType::VLAN
    }

    /// 14, or 18 for a tagged frame.
    pub fn header_len(&self) -> usize {
        if self.is_vlan_tagged() {
            ETH_VLAN_HDR_LEN
        } else {
            ETH_HDR_LEN
        }
    }

    /// The tag control information of a tagged frame.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_vlan_tagged()
            .then(|| self.read_u16(field::VLAN_TCI))
    }

    /// The VLAN id (low 12 bits of the TCI) of a tagged frame.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload: after the tag for a tagged frame.
    pub fn ethertype(&self) -> EtherType {
        if self.is_vlan_tagged() {
            EtherType::from(self.read_u16(field::VLAN_ETHERTYPE))
        } else {
            EtherType::from(self.read_u16(field::ETHERTYPE))
        }
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        if self.is_vlan_tagged() {
            &self.buffer.as_ref()[field::VLAN_PAYLOAD]
        } else {
            &self.buffer.as_ref()[field::PAYLOAD]
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType at offset 12 (the TPID of a tagged frame).
    pub fn set_outer_ethertype(&mut self, t: EtherType) {
        self.write_u16(field::ETHERTYPE, u16::from(t));
    }

    /// Sets the TCI of a tagged frame; the outer EtherType must already be 802.1Q.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.write_u16(field::VLAN_TCI, tci);
    }

    /// Sets the EtherType of the payload (after the tag for a tagged frame).
    pub fn set_ethertype(&mut self, t: EtherType) {
        if self.is_vlan_tagged() {
            self.write_u16(field::VLAN_ETHERTYPE, u16::from(t));
        } else {
            self.write_u16(field::ETHERTYPE, u16::from(t));
        }
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        if self.is_vlan_tagged() {
            &mut self.buffer.as_mut()[field::VLAN_PAYLOAD]
        } else {
            &mut self.buffer.as_mut()[field::PAYLOAD]
        }
    }
}

/// The parsed Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// The 802.1Q TCI, if tagged.
    pub vlan_tci: Option<u16>,
    /// The payload's EtherType (after the tag).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Parses the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_tci: frame.vlan_tci(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`Self::emit`] writes: 14, or 18 with a tag.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            ETH_VLAN_HDR_LEN
        } else {
            ETH_HDR_LEN
        }
    }

    /// Writes the header. Panics if the buffer is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan_tci {
            Some(tci) => {
                frame.set_outer_ethertype(EtherType::Vlan);
                frame.set_vlan_tci(tci);
                frame.set_ethertype(self.ethertype);
            }
            None => frame.set_outer_ethertype(self.ethertype),
        }
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    const DST: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    static UNTAGGED: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x01, // dst
        0x02, 0, 0, 0, 0, 0x02, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];

    static TAGGED: [u8; 20] = [
        0x02, 0, 0, 0, 0, 0x01, // dst
        0x02, 0, 0, 0, 0, 0x02, // src
        0x81, 0x00, // 802.1Q
        0x20, 0x64, // PCP 1, VID 100
        0x86, 0xdd, // IPv6
        0xaa, 0xbb, // payload
    ];

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).expect("long enough");
        assert_eq!(f.dst_addr(), DST);
        assert_eq!(f.src_addr(), SRC);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.outer_ethertype(), EtherType::Ipv4);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(
            EthernetRepr::parse(&f),
            Ok(EthernetRepr {
                src_addr: SRC,
                dst_addr: DST,
                vlan_tci: None,
                ethertype: EtherType::Ipv4,
            })
        );
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).expect("long enough");
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.outer_ethertype(), EtherType::Vlan);
        assert_eq!(f.ethertype(), EtherType::Ipv6);
        assert_eq!(f.vlan_tci(), Some(0x2064));
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn truncated() {
        for len in 0..14 {
            assert!(EthernetFrame::new_checked(&UNTAGGED[..len]).is_err());
        }
        assert!(EthernetFrame::new_checked(&UNTAGGED[..14]).is_ok());
        for len in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&TAGGED[..len]).err(),
                Some(WireError::Truncated {
                    what: "802.1Q-tagged Ethernet header",
                    need: 18,
                    have: len
                })
            );
        }
        let f = EthernetFrame::new_checked(&TAGGED[..18]).expect("header only");
        assert!(f.payload().is_empty());
    }

    #[test]
    fn emit_untagged_into_junk() {
        let repr = EthernetRepr {
            src_addr: SRC,
            dst_addr: DST,
            vlan_tci: None,
            ethertype: EtherType::Ipv4,
        };
        let mut buf = [0xa5u8; 18];
        assert_eq!(repr.buffer_len(), 14);
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, UNTAGGED);
    }

    #[test]
    fn emit_tagged_into_junk() {
        let repr = EthernetRepr {
            src_addr: SRC,
            dst_addr: DST,
            vlan_tci: Some(0x2064),
            ethertype: EtherType::Ipv6,
        };
        let mut buf = [0xa5u8; 20];
        assert_eq!(repr.buffer_len(), 18);
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, TAGGED);
        let f = EthernetFrame::new_checked(&buf[..]).expect("long enough");
        assert_eq!(EthernetRepr::parse(&f), Ok(repr));
    }

    #[test]
    fn ethertype_round_trip() {
        for raw in [0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x1234] {
            assert_eq!(u16::from(EtherType::from(raw)), raw);
        }
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(EtherType::Unknown(0x88cc).to_string(), "0x88cc");
    }

    #[test]
    fn setters() {
        let mut buf = TAGGED;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).expect("long enough");
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(DST);
        f.set_ethertype(EtherType::Arp);
        f.set_vlan_tci(7);
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), DST);
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.vlan_id(), Some(7));
        assert_eq!(f.outer_ethertype(), EtherType::Vlan);
    }
}
