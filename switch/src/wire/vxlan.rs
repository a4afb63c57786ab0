//! The VXLAN header (RFC 7348, section 5): 8 bytes in front of the inner Ethernet frame, inside
//! a UDP datagram (destination port 4789 by default).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be 1 for the VNI to be valid. Reserved bits are written as zero and ignored
//! on receive (so extensions such as GBP or GPE flags in reserved bits do not make a packet
//! unreadable). [`VxlanPacket`] reads and writes fields in place; [`VxlanRepr`] is the checked
//! summary: parsing it fails when the I flag is clear.

use super::WireError;

/// Length of the VXLAN header.
pub const VXLAN_HDR_LEN: usize = 8;
/// The IANA-assigned UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// The I flag in the first byte: the VNI is valid.
pub const VXLAN_FLAG_I: u8 = 0x08;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes VXLAN adds over IPv4 in front of the inner Ethernet frame's payload: outer IPv4 (20),
/// UDP (8), VXLAN (8) and the inner Ethernet header (14). An underlay MTU of 1500 leaves 1450.
pub const VXLAN_IPV4_OVERHEAD: usize = 20 + 8 + VXLAN_HDR_LEN + 14;

mod field {
    use std::ops::Range;

    pub const FLAGS: usize = 0;
    /// Reserved bytes after the flags.
    pub const RESERVED1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
}

/// A read/write view of a VXLAN header at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking its length; accessors panic if it is shorter than
    /// [`VXLAN_HDR_LEN`]. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header; no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer is at least [`VXLAN_HDR_LEN`] bytes long.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < VXLAN_HDR_LEN {
            return Err(WireError::Truncated {
                what: "VXLAN header",
                need: VXLAN_HDR_LEN,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw flags byte (reserved bits included).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag: the VNI field is valid.
    pub fn i_flag(&self) -> bool {
        self.flags() & VXLAN_FLAG_I != 0
    }

    /// The 24-bit VNI, whatever the I flag says.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VXLAN_HDR_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Sets the raw flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI (its low 24 bits).
    pub fn set_vni(&mut self, vni: u32) {
        let b = vni.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Zeroes every reserved bit (the flags byte's other bits are left alone).
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED1].fill(0);
        b[field::RESERVED2] = 0;
    }

    /// The inner Ethernet frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[VXLAN_HDR_LEN..]
    }
}

/// Why a VXLAN header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// Shorter than the 8-byte header.
    #[error(transparent)]
    Truncated(#[from] WireError),
    /// The I flag is clear: the VNI field means nothing.
    #[error("VXLAN I flag clear")]
    NoIFlag,
}

/// The parsed VXLAN header: only the VNI carries meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// The 24-bit VXLAN network identifier.
    pub vni: u32,
}

impl VxlanRepr {
    /// Parses a header: the I flag must be set; reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<VxlanRepr, VxlanError> {
        p.check_len()?;
        if !p.i_flag() {
            return Err(VxlanError::NoIFlag);
        }
        Ok(VxlanRepr { vni: p.vni() })
    }

    /// Bytes [`Self::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        VXLAN_HDR_LEN
    }

    /// Writes the header: the I flag, the VNI, every reserved bit zero. Panics if the buffer is
    /// shorter than [`VXLAN_HDR_LEN`]. A VNI above [`VNI_MAX`] is cut to its low 24 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut VxlanPacket<T>) {
        p.set_flags(VXLAN_FLAG_I);
        p.clear_reserved();
        p.set_vni(self.vni);
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; VXLAN_HDR_LEN] {
        let mut b = [0u8; VXLAN_HDR_LEN];
        self.emit(&mut VxlanPacket::new_unchecked(&mut b[..]));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET: [u8; 12] = [
        0x08, 0, 0, 0, // I flag, reserved
        0x00, 0x10, 0x92, 0, // VNI 4242, reserved
        0xaa, 0xbb, 0xcc, 0xdd, // inner frame
    ];

    #[test]
    fn parse() {
        let p = VxlanPacket::new_checked(&PACKET[..]).expect("long enough");
        assert!(p.i_flag());
        assert_eq!(p.flags(), 0x08);
        assert_eq!(p.vni(), 4242);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni: 4242 }));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receive() {
        let mut b = PACKET;
        b[0] = 0xff; // every flag bit, I included
        b[1..4].copy_from_slice(&[0xff; 3]);
        b[7] = 0xff;
        let p = VxlanPacket::new_checked(&b[..]).expect("long enough");
        assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni: 4242 }));
    }

    #[test]
    fn i_flag_clear_is_refused() {
        let mut b = PACKET;
        b[0] = 0xf7; // every bit but I
        let p = VxlanPacket::new_checked(&b[..]).expect("long enough");
        assert!(!p.i_flag());
        assert_eq!(VxlanRepr::parse(&p), Err(VxlanError::NoIFlag));
    }

    #[test]
    fn truncated() {
        for len in 0..VXLAN_HDR_LEN {
            let err = VxlanPacket::new_checked(&PACKET[..len]).expect_err("too short");
            assert_eq!(
                err,
                WireError::Truncated {
                    what: "VXLAN header",
                    need: 8,
                    have: len
                }
            );
            let p = VxlanPacket::new_unchecked(&PACKET[..len]);
            assert_eq!(VxlanRepr::parse(&p), Err(VxlanError::Truncated(err)));
        }
        let p = VxlanPacket::new_checked(&PACKET[..8]).expect("header only");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn emit_into_junk() {
        let repr = VxlanRepr { vni: 4242 };
        let mut buf = [0xa5u8; 12];
        assert_eq!(repr.buffer_len(), 8);
        let mut p = VxlanPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, PACKET);
        assert_eq!(repr.to_bytes()[..], PACKET[..8]);
    }

    #[test]
    fn vni_limits() {
        for vni in [0, 1, 0x0012_3456, VNI_MAX] {
            let b = VxlanRepr { vni }.to_bytes();
            let p = VxlanPacket::new_checked(&b[..]).expect("header");
            assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni }));
            assert_eq!(b[7], 0, "the reserved byte after the VNI stays zero");
        }
        // Only 24 bits go on the wire; nothing spills into the reserved bytes.
        let b = VxlanRepr { vni: 0xab12_3456 }.to_bytes();
        assert_eq!(b, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }
}
