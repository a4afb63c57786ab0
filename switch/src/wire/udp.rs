//! UDP headers (RFC 768).
//!
//! ```text
//!  0               16              31
//!  |  source port  |   dest port   |
//!  |    length     |   checksum    |
//! ```
//!
//! [`UdpPacket`] reads and writes fields in place; [`UdpRepr`] is the parsed header. A zero
//! checksum means "none" over IPv4; a computed zero is sent as 0xffff.

use super::checksum;
use super::ip::Lengths;
use super::{be16, set_be16, WireError};

/// Length of the UDP header.
pub const UDP_HDR_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Offset of the checksum field in the header (what a virtio-net `csum_offset` says).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A read/write view of a UDP datagram at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
    lengths: Lengths,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket {
            buffer,
            lengths: Lengths::Strict,
        }
    }

    /// Wraps `buffer` after [`Self::check_len`] with a strict length: no accessor panics
    /// afterwards. Bytes past the length field are not part of the datagram.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        Self::new_checked_with(buffer, Lengths::Strict)
    }

    /// [`Self::new_checked`] with the length field taken as `lengths` says: a USO
    /// super-datagram's ([`Lengths::Gso`]) is the whole buffer whatever the field says (the
    /// segmenter writes each segment's).
    pub fn new_checked_with(buffer: T, lengths: Lengths) -> Result<UdpPacket<T>, WireError> {
        let p = UdpPacket { buffer, lengths };
        p.check_len()?;
        Ok(p)
    }

    /// Checks the header fits and, with strict lengths, that the length field covers the
    /// header and fits the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < UDP_HDR_LEN {
            return Err(WireError::Truncated {
                what: "UDP header",
                need: UDP_HDR_LEN,
                have,
            });
        }
        if self.lengths == Lengths::Gso {
            return Ok(());
        }
        let len = usize::from(self.len());
        if len < UDP_HDR_LEN {
            return Err(WireError::Malformed {
                what: "UDP header",
                reason: "length shorter than the header",
            });
        }
        if len > have {
            return Err(WireError::Truncated {
                what: "UDP datagram (per its length)",
                need: len,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field as written.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The datagram is only its header.
    pub fn is_empty(&self) -> bool {
        self.datagram_len() == UDP_HDR_LEN
    }

    /// Where the datagram ends: the length field, or the buffer's end for a super-datagram.
    pub fn datagram_len(&self) -> usize {
        match self.lengths {
            Lengths::Strict => usize::from(self.len()),
            Lengths::Gso => self.buffer.as_ref().len(),
        }
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    fn datagram_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.datagram_len()]
    }

    /// The checksum is absent (0) or verifies against the IP layer's pseudo-header sum
    /// `pseudo` (taken for [`Self::datagram_len`]).
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        self.checksum() == 0
            || checksum::fold(checksum::add(pseudo, self.datagram_bytes())) == 0xffff
    }

    /// The checksum field holds the folded pseudo-header sum `pseudo` (a partial checksum;
    /// see [`super::tcp::TcpPacket::checksum_is_partial`]).
    pub fn checksum_is_partial(&self, pseudo: u64) -> bool {
        self.checksum() == checksum::fold(pseudo)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The datagram (header and payload, up to [`Self::datagram_len`]).
    pub fn datagram(&self) -> &'a [u8] {
        &self.buffer.as_ref()[..self.datagram_len()]
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[UDP_HDR_LEN..self.datagram_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and writes the checksum from the pseudo-header sum `pseudo`; a computed 0 is
    /// written as 0xffff (0 means "no checksum").
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let c = !checksum::fold(checksum::add(pseudo, self.datagram_bytes()));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.datagram_len();
        &mut self.buffer.as_mut()[UDP_HDR_LEN..end]
    }
}

/// The parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a checked datagram's header (the checksum is not verified: see
    /// [`UdpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr, WireError> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Bytes [`Self::emit`] writes: 8.
    pub const fn buffer_len(&self) -> usize {
        UDP_HDR_LEN
    }

    /// Writes the header for `payload_len` bytes of payload (the length capped at 65535),
    /// checksum 0 for the caller to fill ([`UdpPacket::fill_checksum`]) once the payload is in
    /// place. Panics if the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        payload_len: usize,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(UDP_HDR_LEN + payload_len).unwrap_or(u16::MAX));
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DGRAM: [u8; 12] = [
        0x13, 0x88, 0x00, 0x35, 0x00, 0x0b, 0x00, 0x00, 1, 2, 3, 0xee,
    ];

    #[test]
    fn parses_and_ignores_padding() {
        let p = UdpPacket::new_checked(&DGRAM[..]).expect("valid");
        assert_eq!((p.src_port(), p.dst_port()), (5000, 53));
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(
            UdpRepr::parse(&p),
            Ok(UdpRepr {
                src_port: 5000,
                dst_port: 53
            })
        );
        assert!(p.verify_checksum(0), "no checksum");
    }

    #[test]
    fn emits_into_junk_and_checksums() {
        let mut buf = [0xa5u8; 11];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        UdpRepr {
            src_port: 5000,
            dst_port: 53,
        }
        .emit(&mut p, 3);
        p.payload_mut().copy_from_slice(&[1, 2, 3]);
        assert_eq!(buf, DGRAM[..11]);
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 11);
        let mut p = UdpPacket::new_checked(&mut buf[..]).expect("valid");
        p.fill_checksum(pseudo);
        assert!(p.verify_checksum(pseudo));
        assert!(!p.checksum_is_partial(pseudo));
    }

    #[test]
    fn refuses_bad_lengths_unless_a_super_datagram() {
        for len in 0..8 {
            assert!(UdpPacket::new_checked(&DGRAM[..len]).is_err());
        }
        let mut b = DGRAM;
        b[5] = 13;
        assert!(matches!(
            UdpPacket::new_checked(&b[..]),
            Err(WireError::Truncated { .. })
        ));
        b[5] = 7;
        assert!(matches!(
            UdpPacket::new_checked(&b[..]),
            Err(WireError::Malformed { .. })
        ));
        let p = UdpPacket::new_checked_with(&b[..], Lengths::Gso).expect("super-datagram");
        assert_eq!(p.payload().len(), 4);
    }
}
