//! TCP headers (RFC 9293).
//!
//! ```text
//!  0               8               16                              31
//!  |          source port          |       destination port        |
//!  |                        sequence number                        |
//!  |                     acknowledgment number                     |
//!  | offset| rsvd  |     flags     |            window             |
//!  |           checksum            |        urgent pointer         |
//!  |                    options (offset > 5) ...                   |
//! ```
//!
//! [`TcpPacket`] reads and writes fields in place over the TCP segment (header and payload;
//! the IP layer says where it ends). [`TcpRepr`] is the parsed header with the two options
//! netyard reads and writes (MSS and window scale, on SYNs); other options are skipped on
//! parse and copied as bytes by whoever forwards them. The checksum covers a pseudo-header
//! of the IP layer: the caller passes its partial sum ([`super::ipv4::Ipv4Packet::pseudo_header`]).

use super::checksum;
use super::{be16, be32, set_be16, WireError};

/// Length of a TCP header without options.
pub const TCP_HDR_LEN: usize = 20;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Offset of the checksum field in the header (what a virtio-net `csum_offset` says).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// The flag bits (the low byte of the flags word; NS is not interpreted).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Option kinds.
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
}

/// The largest window scale RFC 7323 allows.
pub const MAX_WINDOW_SCALE: u8 = 14;

/// A read/write view of a TCP segment at the start of `buffer`.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`]; no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed header fits, the data offset is at least 5 words and the header
    /// with its options fits.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < TCP_HDR_LEN {
            return Err(WireError::Truncated {
                what: "TCP header",
                need: TCP_HDR_LEN,
                have,
            });
        }
        let hl = self.header_len();
        if hl < TCP_HDR_LEN {
            return Err(WireError::Malformed {
                what: "TCP header",
                reason: "data offset below 5 words",
            });
        }
        if hl > have {
            return Err(WireError::Truncated {
                what: "TCP header with options",
                need: hl,
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

    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes, options included (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flag byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether every bit of `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags() & flag == flag
    }

    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The checksum verifies against the IP layer's pseudo-header sum `pseudo` (taken for
    /// this segment's length).
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::fold(checksum::add(pseudo, self.buffer.as_ref())) == 0xffff
    }

    /// The checksum field holds the folded pseudo-header sum `pseudo`: a *partial* checksum
    /// (CHECKSUM_PARTIAL) that a sender left for hardware to finish. A complete checksum
    /// equals it by a 1 in 65536 chance; finishing it again then gives the same value.
    pub fn checksum_is_partial(&self, pseudo: u64) -> bool {
        self.checksum() == checksum::fold(pseudo)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The options' bytes.
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[TCP_HDR_LEN..self.header_len()]
    }

    /// The header, options included.
    pub fn header(&self) -> &'a [u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The segment (header and payload).
    pub fn segment(&self) -> &'a [u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ_NUM..field::SEQ_NUM + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK_NUM..field::ACK_NUM + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4, 20 to 60); the
    /// reserved bits are cleared.
    pub fn set_header_len(&mut self, len: usize) {
        let words = u8::try_from(len / 4).unwrap_or(15).min(15);
        self.buffer.as_mut()[field::DATA_OFFSET] = words << 4;
    }

    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    pub fn set_window_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Computes and writes the full checksum from the pseudo-header sum `pseudo`.
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let c = !checksum::fold(checksum::add(pseudo, self.buffer.as_ref()));
        self.set_checksum(c);
    }

    /// Writes the folded pseudo-header sum: a partial checksum for a receiver told
    /// NEEDS_CSUM (checksumming starts at the TCP header, the field at
    /// [`CHECKSUM_OFFSET`]).
    pub fn fill_partial_checksum(&mut self, pseudo: u64) {
        self.set_checksum(checksum::fold(pseudo));
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// The parsed TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    /// The flag byte (see [`flags`]).
    pub flags: u8,
    pub window_len: u16,
    /// The MSS option (read on SYNs only, as RFC 9293 allows it only there).
    pub max_seg_size: Option<u16>,
    /// The window scale option, capped at 14 (SYNs only).
    pub window_scale: Option<u8>,
}

impl TcpRepr {
    /// Parses a checked segment's header (the checksum is not verified: see
    /// [`TcpPacket::verify_checksum`]). Malformed options end the option list without an
    /// error, as Linux reads them.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr, WireError> {
        packet.check_len()?;
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            max_seg_size: None,
            window_scale: None,
        };
        if packet.flags() & flags::SYN != 0 {
            let mut o = &packet.buffer.as_ref()[TCP_HDR_LEN..packet.header_len()];
            while let Some(&kind) = o.first() {
                match kind {
                    option::END => break,
                    option::NOP => o = &o[1..],
                    _ => {
                        let Some(&len) = o.get(1) else { break };
                        let len = usize::from(len);
                        if len < 2 || len > o.len() {
                            break;
                        }
                        match (kind, len) {
                            (option::MSS, 4) => repr.max_seg_size = Some(be16(o, 2)),
                            (option::WINDOW_SCALE, 3) => {
                                repr.window_scale = Some(o[2].min(MAX_WINDOW_SCALE));
                            }
                            _ => {}
                        }
                        o = &o[len..];
                    }
                }
            }
        }
        Ok(repr)
    }

    /// Bytes of the options [`Self::emit`] writes: 4 for an MSS, 4 for a window scale (a NOP
    /// in front keeps the header a multiple of 4).
    pub fn options_len(&self) -> usize {
        4 * usize::from(self.max_seg_size.is_some()) + 4 * usize::from(self.window_scale.is_some())
    }

    /// Bytes [`Self::emit`] writes: the header with its options.
    pub fn header_len(&self) -> usize {
        TCP_HDR_LEN + self.options_len()
    }

    /// Bytes [`Self::emit`] writes (the header; the payload is the caller's).
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes the header and options; the checksum field is left 0 for the caller to fill
    /// ([`TcpPacket::fill_checksum`] or [`TcpPacket::fill_partial_checksum`]) once the payload
    /// is in place. Panics if the buffer is shorter than [`Self::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
        let opts = &mut packet.buffer.as_mut()[TCP_HDR_LEN..self.header_len()];
        let mut at = 0;
        if let Some(mss) = self.max_seg_size {
            let m = mss.to_be_bytes();
            opts[at..at + 4].copy_from_slice(&[option::MSS, 4, m[0], m[1]]);
            at += 4;
        }
        if let Some(ws) = self.window_scale {
            opts[at..at + 4].copy_from_slice(&[option::NOP, option::WINDOW_SCALE, 3, ws]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from port 40000 to 80 with MSS 1460 and window scale 7, and 2 bytes of payload.
    static SYN: [u8; 30] = [
        0x9c, 0x40, 0x00, 0x50, // ports
        0x00, 0x00, 0x00, 0x07, // seq
        0x00, 0x00, 0x00, 0x09, // ack
        0x70, 0x12, 0x03, 0xe8, // offset 7, SYN|ACK, window 1000
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
        0xde, 0xad,
    ];

    fn repr() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 7,
            ack_number: 9,
            flags: flags::SYN | flags::ACK,
            window_len: 1000,
            max_seg_size: Some(1460),
            window_scale: Some(7),
        }
    }

    #[test]
    fn parses_options_on_a_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).expect("valid");
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.payload(), &[0xde, 0xad]);
        assert!(p.has(flags::SYN) && !p.has(flags::FIN));
        assert_eq!(TcpRepr::parse(&p), Ok(repr()));
    }

    #[test]
    fn emits_into_junk() {
        let mut buf = [0xa5u8; 30];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xde, 0xad]);
        assert_eq!(buf, SYN);
    }

    #[test]
    fn checksums_full_and_partial() {
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 30);
        let mut buf = SYN;
        let mut p = TcpPacket::new_checked(&mut buf[..]).expect("valid");
        p.fill_checksum(pseudo);
        assert!(p.verify_checksum(pseudo));
        assert!(!p.checksum_is_partial(pseudo));
        p.fill_partial_checksum(pseudo);
        assert!(p.checksum_is_partial(pseudo));
        assert!(!p.verify_checksum(pseudo));
    }

    #[test]
    fn refuses_bad_offsets_and_survives_bad_options() {
        for len in 0..20 {
            assert!(TcpPacket::new_checked(&SYN[..len]).is_err());
        }
        let mut b = SYN;
        b[12] = 0x40;
        assert!(matches!(
            TcpPacket::new_checked(&b[..]),
            Err(WireError::Malformed { .. })
        ));
        b[12] = 0xf0;
        assert!(matches!(
            TcpPacket::new_checked(&b[..]),
            Err(WireError::Truncated { need: 60, .. })
        ));
        // An option longer than the list, a zero length: the list ends, no error.
        let mut b = SYN;
        b[21] = 40;
        let r = TcpRepr::parse(&TcpPacket::new_checked(&b[..]).expect("valid")).expect("parses");
        assert_eq!((r.max_seg_size, r.window_scale), (None, None));
        b[21] = 0;
        assert!(TcpRepr::parse(&TcpPacket::new_checked(&b[..]).expect("valid")).is_ok());
        // Options are ignored without SYN; a huge scale is capped.
        let mut b = SYN;
        b[27] = 30;
        let r = TcpRepr::parse(&TcpPacket::new_checked(&b[..]).expect("valid")).expect("parses");
        assert_eq!(r.window_scale, Some(14));
        b[13] = flags::ACK;
        let r = TcpRepr::parse(&TcpPacket::new_checked(&b[..]).expect("valid")).expect("parses");
        assert_eq!(r.max_seg_size, None);
    }
}
