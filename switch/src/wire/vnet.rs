//! The legacy virtio-net header (`struct virtio_net_hdr`, 10 bytes) that TAP (IFF_VNET_HDR)
//! and AF_PACKET (PACKET_VNET_HDR) exchange with each frame. Fields are in native byte order.
//!
//! ```text
//!  0        1          2       4        6          8           10
//!  | flags  | gso_type | hdr_len | gso_size | csum_start | csum_offset |
//! ```
//!
//! [`VnetHdr`] reads and writes the fields in place; [`VnetHdrRepr`] is the parsed summary.
//! Parsing never fails on field *values*: an unknown GSO type comes back as
//! [`GsoType::Unknown`] and unknown flag bits are ignored, so the consumer (see
//! [`crate::gso`]) decides what it supports. `csum_start` counts from the start of the
//! Ethernet frame, i.e. from the byte after this header.

use super::WireError;

/// Length of the legacy virtio-net header.
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the L4 checksum is partial; sum from `csum_start` and store at
/// `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has already been validated.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;

/// `gso_type`: not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 (TSO).
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO), deprecated.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 (TSO6).
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO), IPv4 or IPv6.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP stream uses ECN (CWR must be kept on the first segment only).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

mod field {
    use std::ops::Range;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// The GSO type without the ECN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoType {
    /// Not a GSO frame.
    None,
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP segmentation (USO) over IPv4 or IPv6.
    UdpL4,
    /// Anything else, including UFO (3). The raw value, ECN bit cleared.
    Unknown(u8),
}

impl From<u8> for GsoType {
    /// Converts a raw `gso_type`, ignoring the ECN bit.
    fn from(raw: u8) -> Self {
        match raw & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_NONE => GsoType::None,
            VIRTIO_NET_HDR_GSO_TCPV4 => GsoType::TcpV4,
            VIRTIO_NET_HDR_GSO_TCPV6 => GsoType::TcpV6,
            VIRTIO_NET_HDR_GSO_UDP_L4 => GsoType::UdpL4,
            other => GsoType::Unknown(other),
        }
    }
}

impl From<GsoType> for u8 {
    /// The raw value without the ECN bit.
    fn from(t: GsoType) -> u8 {
        match t {
            GsoType::None => VIRTIO_NET_HDR_GSO_NONE,
            GsoType::TcpV4 => VIRTIO_NET_HDR_GSO_TCPV4,
            GsoType::TcpV6 => VIRTIO_NET_HDR_GSO_TCPV6,
            GsoType::UdpL4 => VIRTIO_NET_HDR_GSO_UDP_L4,
            GsoType::Unknown(raw) => raw & !VIRTIO_NET_HDR_GSO_ECN,
        }
    }
}

/// A read/write view of a virtio-net header at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct VnetHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VnetHdr<T> {
    /// Wraps `buffer` without checking its length; accessors panic if it is shorter than
    /// [`VNET_HDR_LEN`]. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> VnetHdr<T> {
        VnetHdr { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header; no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<VnetHdr<T>, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// Checks the buffer is at least [`VNET_HDR_LEN`] bytes long.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < VNET_HDR_LEN {
            return Err(WireError::Truncated {
                what: "virtio-net header",
                need: VNET_HDR_LEN,
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
        u16::from_ne_bytes([b[0], b[1]])
    }

    /// The raw `flags` byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// `flags` has [`VIRTIO_NET_HDR_F_NEEDS_CSUM`].
    pub fn needs_csum(&self) -> bool {
        self.flags() & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// `flags` has [`VIRTIO_NET_HDR_F_DATA_VALID`].
    pub fn data_valid(&self) -> bool {
        self.flags() & VIRTIO_NET_HDR_F_DATA_VALID != 0
    }

    /// The raw `gso_type` byte, ECN bit included.
    pub fn gso_type_raw(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// The GSO type, ECN bit stripped (see [`Self::gso_ecn`]).
    pub fn gso_type(&self) -> GsoType {
        GsoType::from(self.gso_type_raw())
    }

    /// `gso_type` has the ECN bit.
    pub fn gso_ecn(&self) -> bool {
        self.gso_type_raw() & VIRTIO_NET_HDR_GSO_ECN != 0
    }

    /// Length of the headers to replicate per segment; a hint from the sender.
    pub fn hdr_len(&self) -> u16 {
        self.read_u16(field::HDR_LEN)
    }

    /// Maximum L4 payload per segment.
    pub fn gso_size(&self) -> u16 {
        self.read_u16(field::GSO_SIZE)
    }

    /// Where checksumming starts, counted from the start of the Ethernet frame.
    pub fn csum_start(&self) -> u16 {
        self.read_u16(field::CSUM_START)
    }

    /// Where the checksum goes, counted from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.read_u16(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHdr<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the raw `flags` byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the raw `gso_type` byte, ECN bit included.
    pub fn set_gso_type_raw(&mut self, raw: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = raw;
    }

    /// Sets the GSO type and the ECN bit.
    pub fn set_gso_type(&mut self, gso_type: GsoType, ecn: bool) {
        let ecn = if ecn { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
        self.set_gso_type_raw(u8::from(gso_type) | ecn);
    }

    /// Sets `hdr_len`.
    pub fn set_hdr_len(&mut self, v: u16) {
        self.write_u16(field::HDR_LEN, v);
    }

    /// Sets `gso_size`.
    pub fn set_gso_size(&mut self, v: u16) {
        self.write_u16(field::GSO_SIZE, v);
    }

    /// Sets `csum_start`.
    pub fn set_csum_start(&mut self, v: u16) {
        self.write_u16(field::CSUM_START, v);
    }

    /// Sets `csum_offset`.
    pub fn set_csum_offset(&mut self, v: u16) {
        self.write_u16(field::CSUM_OFFSET, v);
    }
}

/// The parsed virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VnetHdrRepr {
    /// [`VIRTIO_NET_HDR_F_NEEDS_CSUM`].
    pub needs_csum: bool,
    /// [`VIRTIO_NET_HDR_F_DATA_VALID`].
    pub data_valid: bool,
    /// The GSO type, ECN bit stripped.
    pub gso_type: GsoType,
    /// [`VIRTIO_NET_HDR_GSO_ECN`].
    pub ecn: bool,
    /// Header length hint.
    pub hdr_len: u16,
    /// Maximum L4 payload per segment.
    pub gso_size: u16,
    /// Checksum start, from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Checksum field offset, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdrRepr {
    /// The all-zero header: no offload, checksum complete.
    pub const NONE: VnetHdrRepr = VnetHdrRepr {
        needs_csum: false,
        data_valid: false,
        gso_type: GsoType::None,
        ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Parses a header. Fails only if the buffer is too short; unknown flag bits are dropped.
    pub fn parse<T: AsRef<[u8]>>(hdr: &VnetHdr<T>) -> Result<VnetHdrRepr, WireError> {
        hdr.check_len()?;
        Ok(VnetHdrRepr {
            needs_csum: hdr.needs_csum(),
            data_valid: hdr.data_valid(),
            gso_type: hdr.gso_type(),
            ecn: hdr.gso_ecn(),
            hdr_len: hdr.hdr_len(),
            gso_size: hdr.gso_size(),
            csum_start: hdr.csum_start(),
            csum_offset: hdr.csum_offset(),
        })
    }

    /// Parses the header at the start of `bytes` (a whole switch frame).
    pub fn from_bytes(bytes: &[u8]) -> Result<VnetHdrRepr, WireError> {
        Self::parse(&VnetHdr::new_checked(bytes)?)
    }

    /// Bytes [`Self::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        VNET_HDR_LEN
    }

    /// The header is neither GSO nor partial-checksum: the frame can go to any port as is.
    pub fn is_plain(&self) -> bool {
        !self.needs_csum && self.gso_type == GsoType::None
    }

    /// Writes every field of the header. Panics if `hdr`'s buffer is shorter than
    /// [`VNET_HDR_LEN`] (the caller sizes emit buffers).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, hdr: &mut VnetHdr<T>) {
        let mut flags = 0;
        if self.needs_csum {
            flags |= VIRTIO_NET_HDR_F_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= VIRTIO_NET_HDR_F_DATA_VALID;
        }
        hdr.set_flags(flags);
        hdr.set_gso_type(self.gso_type, self.ecn);
        hdr.set_hdr_len(self.hdr_len);
        hdr.set_gso_size(self.gso_size);
        hdr.set_csum_start(self.csum_start);
        hdr.set_csum_offset(self.csum_offset);
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut out = [0u8; VNET_HDR_LEN];
        self.emit(&mut VnetHdr::new_unchecked(&mut out[..]));
        out
    }
}

impl Default for VnetHdrRepr {
    fn default() -> Self {
        Self::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    fn tso_bytes() -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        b[1] = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
        b[2..4].copy_from_slice(&ne(66));
        b[4..6].copy_from_slice(&ne(1448));
        b[6..8].copy_from_slice(&ne(34));
        b[8..10].copy_from_slice(&ne(16));
        b
    }

    fn tso_repr() -> VnetHdrRepr {
        VnetHdrRepr {
            needs_csum: true,
            data_valid: false,
            gso_type: GsoType::TcpV4,
            ecn: true,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    #[test]
    fn parse_tso() {
        let bytes = tso_bytes();
        let hdr = VnetHdr::new_checked(&bytes[..]).expect("long enough");
        assert!(hdr.needs_csum());
        assert!(!hdr.data_valid());
        assert_eq!(hdr.gso_type(), GsoType::TcpV4);
        assert!(hdr.gso_ecn());
        assert_eq!(hdr.hdr_len(), 66);
        assert_eq!(hdr.gso_size(), 1448);
        assert_eq!(hdr.csum_start(), 34);
        assert_eq!(hdr.csum_offset(), 16);
        assert_eq!(VnetHdrRepr::parse(&hdr), Ok(tso_repr()));
        assert_eq!(VnetHdrRepr::from_bytes(&bytes), Ok(tso_repr()));
    }

    #[test]
    fn emit_into_junk() {
        let mut buf = [0xa5u8; 12];
        tso_repr().emit(&mut VnetHdr::new_unchecked(&mut buf[..]));
        let mut expected = [0xa5u8; 12];
        expected[..10].copy_from_slice(&tso_bytes());
        assert_eq!(buf, expected);
        assert_eq!(tso_repr().to_bytes(), tso_bytes());
    }

    #[test]
    fn emit_none_clears_everything() {
        let mut buf = [0xa5u8; 10];
        VnetHdrRepr::NONE.emit(&mut VnetHdr::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0u8; 10]);
        assert!(VnetHdrRepr::NONE.is_plain());
        assert_eq!(VnetHdrRepr::default(), VnetHdrRepr::NONE);
    }

    #[test]
    fn emit_data_valid_udp_l4() {
        let repr = VnetHdrRepr {
            needs_csum: false,
            data_valid: true,
            gso_type: GsoType::UdpL4,
            ecn: false,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
        };
        let mut buf = [0xa5u8; 10];
        repr.emit(&mut VnetHdr::new_unchecked(&mut buf[..]));
        let mut expected = [0u8; 10];
        expected[0] = 2;
        expected[1] = 5;
        expected[2..4].copy_from_slice(&ne(0x0102));
        expected[4..6].copy_from_slice(&ne(0x0304));
        expected[6..8].copy_from_slice(&ne(0x0506));
        expected[8..10].copy_from_slice(&ne(0x0708));
        assert_eq!(buf, expected);
        assert_eq!(VnetHdrRepr::from_bytes(&buf), Ok(repr));
    }

    #[test]
    fn gso_types_round_trip() {
        for raw in 0..=255u8 {
            let t = GsoType::from(raw);
            assert_eq!(u8::from(t), raw & 0x7f);
        }
        assert_eq!(GsoType::from(3), GsoType::Unknown(3));
        assert_eq!(GsoType::from(0x84), GsoType::TcpV6);
        assert_eq!(GsoType::from(5), GsoType::UdpL4);
    }

    #[test]
    fn unknown_gso_type_passes_through() {
        let mut buf = [0u8; 10];
        buf[1] = 0x80 | 0x13;
        let repr = VnetHdrRepr::from_bytes(&buf).expect("long enough");
        assert_eq!(repr.gso_type, GsoType::Unknown(0x13));
        assert!(repr.ecn);
        assert_eq!(repr.to_bytes(), buf);
    }

    #[test]
    fn short_buffer_is_an_error() {
        for len in 0..VNET_HDR_LEN {
            let buf = vec![0u8; len];
            assert_eq!(
                VnetHdr::new_checked(&buf[..]).err(),
                Some(WireError::Truncated {
                    what: "virtio-net header",
                    need: VNET_HDR_LEN,
                    have: len
                })
            );
            assert!(VnetHdrRepr::from_bytes(&buf).is_err());
        }
    }
}
