//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0       4       8               16      19              31
//!  |version|  IHL  |   DSCP/ECN    |         total length          |
//!  |        identification         |flags|    fragment offset      |
//!  |     TTL       |   protocol    |        header checksum        |
//!  |                        source address                         |
//!  |                      destination address                      |
//!  |                    options (IHL > 5) ...                      |
//! ```
//!
//! [`Ipv4Packet`] reads and writes fields in place; [`Ipv4Repr`] is the parsed summary (no
//! options: netyard never writes any, and copies those it receives as bytes). The header
//! checksum is not checked by `new_checked` or `parse` (callers count a bad one under their
//! own reason): [`Ipv4Packet::verify_checksum`].

use std::net::Ipv4Addr;

use super::checksum;
use super::ip::{IpProtocol, Lengths};
use super::{be16, set_be16, WireError};

/// Length of an IPv4 header without options.
pub const IPV4_HDR_LEN: usize = 20;
/// Longest IPv4 header (IHL 15).
pub const IPV4_MAX_HDR_LEN: usize = 60;

mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    /// Don't-fragment bit in the flags/offset word.
    pub const DF: u16 = 0x4000;
    /// More-fragments bit.
    pub const MF: u16 = 0x2000;
    /// The fragment offset, in 8-byte units.
    pub const OFFSET: u16 = 0x1fff;
}

/// A read/write view of an IPv4 packet at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
    lengths: Lengths,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than the header
    /// or the total length. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet {
            buffer,
            lengths: Lengths::Strict,
        }
    }

    /// Wraps `buffer` after [`Self::check_len`] with strict lengths: no accessor panics
    /// afterwards. Bytes past the total length (Ethernet padding) are not part of the packet.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        Self::new_checked_with(buffer, Lengths::Strict)
    }

    /// [`Self::new_checked`] for a packet whose length field is taken as `lengths` says: a
    /// GSO super-frame's ([`Lengths::Gso`]) may say 0, and then the packet is the whole
    /// buffer.
    pub fn new_checked_with(buffer: T, lengths: Lengths) -> Result<Ipv4Packet<T>, WireError> {
        let p = Ipv4Packet { buffer, lengths };
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version is 4, the header (with options) fits the buffer and the total
    /// length covers the header and fits the buffer (0 passes under [`Lengths::Gso`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        let have = b.len();
        if have < IPV4_HDR_LEN {
            return Err(WireError::Truncated {
                what: "IPv4 header",
                need: IPV4_HDR_LEN,
                have,
            });
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed {
                what: "IPv4 header",
                reason: "version is not 4",
            });
        }
        let hl = self.header_len();
        if hl < IPV4_HDR_LEN {
            return Err(WireError::Malformed {
                what: "IPv4 header",
                reason: "header length below 20 bytes",
            });
        }
        if hl > have {
            return Err(WireError::Truncated {
                what: "IPv4 header with options",
                need: hl,
                have,
            });
        }
        let total = usize::from(self.total_len());
        if total == 0 && self.lengths == Lengths::Gso {
            return Ok(());
        }
        if total < hl {
            return Err(WireError::Malformed {
                what: "IPv4 header",
                reason: "total length shorter than the header",
            });
        }
        if total > have {
            return Err(WireError::Truncated {
                what: "IPv4 packet (per its total length)",
                need: total,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN (former TOS) byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total-length field as written.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Where the packet ends in the buffer: the total length, or the buffer's end for a GSO
    /// super-frame whose total length is 0.
    pub fn packet_len(&self) -> usize {
        match (self.total_len(), self.lengths) {
            (0, Lengths::Gso) => self.buffer.as_ref().len(),
            (t, _) => usize::from(t),
        }
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    fn flg_off(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & field::DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flg_off() & field::MF != 0
    }

    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & field::OFFSET) << 3
    }

    /// The packet is a fragment (more fragments follow, or it is not the first).
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & (field::MF | field::OFFSET) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address's bytes.
    pub fn src_octets(&self) -> [u8; 4] {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        a
    }

    /// The destination address's bytes.
    pub fn dst_octets(&self) -> [u8; 4] {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        a
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_octets())
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_octets())
    }

    fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add(0, self.header_bytes())) == 0xffff
    }

    /// The partial sum of the pseudo-header a TCP or UDP checksum over this packet's payload
    /// starts from, for an L4 length of `l4_len`.
    pub fn pseudo_header(&self, l4_len: u32) -> u64 {
        let b = self.buffer.as_ref();
        checksum::pseudo_header_v4(
            &self.src_octets(),
            &self.dst_octets(),
            b[field::PROTOCOL],
            l4_len,
        )
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The header, options included.
    pub fn header(&self) -> &'a [u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The bytes after the header, up to [`Self::packet_len`].
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..self.packet_len()]
    }

    /// The packet (header and payload, without trailing padding).
    pub fn packet(&self) -> &'a [u8] {
        &self.buffer.as_ref()[..self.packet_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version to 4 and the header length (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = u8::try_from(len / 4).unwrap_or(15).min(15);
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets the flags and the fragment offset (in bytes, a multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & field::OFFSET;
        if dont_frag {
            v |= field::DF;
        }
        if more_frags {
            v |= field::MF;
        }
        set_be16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets the TTL.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = u8::from(p);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header_bytes());
        self.set_checksum(c);
    }

    /// The bytes after the header, up to [`Ipv4Packet::packet_len`], writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.packet_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The parsed IPv4 header (options are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header.
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses a checked packet (the checksum is not verified: see
    /// [`Ipv4Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.packet_len() - packet.header_len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Bytes [`Self::emit`] writes: 20.
    pub const fn buffer_len(&self) -> usize {
        IPV4_HDR_LEN
    }

    /// Writes a 20-byte header with its checksum; the total length is 20 + `payload_len`
    /// (capped at 65535, the field's largest value: a super-frame's real extent is its
    /// buffer). Panics if the buffer is shorter than 20 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_header_len(IPV4_HDR_LEN);
        packet.set_dscp_ecn(0);
        let total = u16::try_from(IPV4_HDR_LEN + self.payload_len).unwrap_or(u16::MAX);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_frag(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; IPV4_HDR_LEN] {
        let mut out = [0u8; IPV4_HDR_LEN];
        self.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1 -> 10.0.0.2, UDP, TTL 64, id 0x1234, DF, 4 bytes of payload.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, // version, IHL, DSCP, total length 24
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x14, 0x9f, // TTL, UDP, checksum
        10, 0, 0, 1, // source
        10, 0, 0, 2, // destination
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Udp,
            payload_len: 4,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn parses_and_verifies() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).expect("valid");
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(!p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn emits_into_junk() {
        let mut buf = [0xa5u8; 24];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, PACKET);
        assert_eq!(&repr().to_bytes()[..], &PACKET[..20]);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut buf = PACKET.to_vec();
        buf.extend_from_slice(&[0; 20]);
        let p = Ipv4Packet::new_checked(&buf[..]).expect("padded");
        assert_eq!(p.payload().len(), 4);
        assert_eq!(p.packet_len(), 24);
    }

    #[test]
    fn refuses_what_does_not_fit_with_a_reason() {
        for len in 0..20 {
            assert!(matches!(
                Ipv4Packet::new_checked(&PACKET[..len]),
                Err(WireError::Truncated { need: 20, .. })
            ));
        }
        let err = |f: &dyn Fn(&mut [u8])| {
            let mut b = PACKET;
            f(&mut b);
            Ipv4Packet::new_checked(&b[..]).err()
        };
        assert!(matches!(
            err(&|b| b[0] = 0x65),
            Some(WireError::Malformed { .. })
        ));
        assert!(matches!(
            err(&|b| b[0] = 0x44),
            Some(WireError::Malformed { .. })
        ));
        assert_eq!(
            err(&|b| b[0] = 0x46),
            None,
            "IHL 6: the header fills the packet"
        );
        assert!(matches!(
            err(&|b| b[0] = 0x47),
            Some(WireError::Truncated { need: 28, .. })
        ));
        assert!(matches!(
            err(&|b| b[3] = 25),
            Some(WireError::Truncated { need: 25, .. })
        ));
        assert!(matches!(
            err(&|b| b[3] = 19),
            Some(WireError::Malformed { .. })
        ));
        assert!(matches!(
            err(&|b| b[3] = 0),
            Some(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn a_gso_super_frame_may_say_length_zero() {
        let mut b = PACKET;
        b[2..4].fill(0);
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        let p = Ipv4Packet::new_checked_with(&b[..], Lengths::Gso).expect("GSO");
        assert_eq!(p.packet_len(), 24);
        assert_eq!(p.payload().len(), 4);
        // A non-zero length is still checked.
        b[3] = 30;
        assert!(Ipv4Packet::new_checked_with(&b[..], Lengths::Gso).is_err());
    }

    #[test]
    fn fragments_and_pseudo_header() {
        let mut buf = PACKET;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_frag(false, true, 1480);
        p.fill_checksum();
        assert!(p.verify_checksum() && p.is_fragment() && p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        let sum = p.pseudo_header(8);
        assert_eq!(
            sum,
            checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 8)
        );
    }
}
