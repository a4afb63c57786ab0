//! ICMPv4 messages (RFC 792): an 8-byte header (type, code, checksum, 4 bytes that depend on
//! the type) and a body.
//!
//! ```text
//!  0       8       16              31
//!  | type  | code  |   checksum    |
//!  |  identifier   |  sequence no  |   (echo request / reply)
//!  |  body ...
//! ```
//!
//! [`Icmpv4Packet`] reads and writes fields in place; [`Icmpv4Repr`] is the parsed header of
//! the messages netyard handles. The checksum covers the whole message.

use super::checksum;
use super::{be16, set_be16, WireError};

/// Length of the ICMP header.
pub const ICMPV4_HDR_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const REST: std::ops::Range<usize> = 4..8;
}

/// Message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// A read/write view of an ICMPv4 message at the start of `buffer` (the whole buffer is the
/// message).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the header; no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer holds the 8-byte header.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < ICMPV4_HDR_LEN {
            return Err(WireError::Truncated {
                what: "ICMP header",
                need: ICMPV4_HDR_LEN,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// An echo message's identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// An echo message's sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// The checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add(0, self.buffer.as_ref())) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The bytes after the header.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[ICMPV4_HDR_LEN..]
    }

    /// The whole message.
    pub fn message(&self) -> &'a [u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_echo_ident(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets the four type-dependent bytes after the checksum.
    pub fn set_rest(&mut self, v: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v);
    }

    /// Computes and writes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// The bytes after the header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[ICMPV4_HDR_LEN..]
    }
}

/// The parsed header of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    EchoRequest {
        ident: u16,
        seq_no: u16,
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
    },
    /// Destination unreachable; the body quotes the offending packet.
    DstUnreachable {
        code: u8,
    },
    /// Time exceeded; the body quotes the offending packet.
    TimeExceeded {
        code: u8,
    },
    /// Any other message, its four type-dependent bytes kept.
    Other {
        msg_type: u8,
        code: u8,
        rest: [u8; 4],
    },
}

impl Icmpv4Repr {
    /// Parses a checked message's header (the checksum is not verified: see
    /// [`Icmpv4Packet::verify_checksum`]). An echo with a code other than 0 is `Other`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv4Packet<T>) -> Result<Icmpv4Repr, WireError> {
        packet.check_len()?;
        let (t, code) = (packet.msg_type(), packet.msg_code());
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        Ok(match (t, code) {
            (msg_type::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest { ident, seq_no },
            (msg_type::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply { ident, seq_no },
            (msg_type::DST_UNREACHABLE, code) => Icmpv4Repr::DstUnreachable { code },
            (msg_type::TIME_EXCEEDED, code) => Icmpv4Repr::TimeExceeded { code },
            (msg_type, code) => {
                let mut rest = [0u8; 4];
                rest.copy_from_slice(&packet.buffer.as_ref()[field::REST]);
                Icmpv4Repr::Other {
                    msg_type,
                    code,
                    rest,
                }
            }
        })
    }

    /// Bytes [`Self::emit`] writes: the 8-byte header.
    pub const fn buffer_len(&self) -> usize {
        ICMPV4_HDR_LEN
    }

    /// Writes the header and the checksum over the whole buffer, so the body must be in
    /// place first (an error's quote, an echo's data). Panics if the buffer is shorter than
    /// 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let (t, code, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no } => {
                (msg_type::ECHO_REQUEST, 0, echo_rest(ident, seq_no))
            }
            Icmpv4Repr::EchoReply { ident, seq_no } => {
                (msg_type::ECHO_REPLY, 0, echo_rest(ident, seq_no))
            }
            Icmpv4Repr::DstUnreachable { code } => (msg_type::DST_UNREACHABLE, code, [0; 4]),
            Icmpv4Repr::TimeExceeded { code } => (msg_type::TIME_EXCEEDED, code, [0; 4]),
            Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
            } => (msg_type, code, rest),
        };
        packet.set_msg_type(t);
        packet.set_msg_code(code);
        packet.set_rest(rest);
        packet.fill_checksum();
    }
}

fn echo_rest(ident: u16, seq_no: u16) -> [u8; 4] {
    let (i, s) = (ident.to_be_bytes(), seq_no.to_be_bytes());
    [i[0], i[1], s[0], s[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo request, id 0x1234, seq 7, data "hi".
    static ECHO: [u8; 10] = [8, 0, 0x7d, 0x5b, 0x12, 0x34, 0x00, 0x07, b'h', b'i'];

    #[test]
    fn parses_an_echo_request() {
        let p = Icmpv4Packet::new_checked(&ECHO[..]).expect("valid");
        assert!(p.verify_checksum());
        assert_eq!(p.data(), b"hi");
        assert_eq!(
            Icmpv4Repr::parse(&p),
            Ok(Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 7
            })
        );
        for len in 0..8 {
            assert!(Icmpv4Packet::new_checked(&ECHO[..len]).is_err());
        }
    }

    #[test]
    fn emits_into_junk() {
        let mut buf = [0xa5u8; 10];
        buf[8..].copy_from_slice(b"hi");
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
        }
        .emit(&mut p);
        assert_eq!(buf, ECHO);
        let mut err = [0xa5u8; 8];
        Icmpv4Repr::DstUnreachable { code: 13 }
            .emit(&mut Icmpv4Packet::new_unchecked(&mut err[..]));
        assert_eq!(&err[..2], &[3, 13]);
        assert_eq!(&err[4..], &[0; 4]);
        assert!(Icmpv4Packet::new_checked(&err[..])
            .expect("valid")
            .verify_checksum());
    }

    #[test]
    fn other_messages_keep_their_bytes() {
        let mut b = ECHO;
        b[1] = 1; // an echo with code 1 is not an echo
        let p = Icmpv4Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(
            Icmpv4Repr::parse(&p),
            Ok(Icmpv4Repr::Other {
                msg_type: 8,
                code: 1,
                rest: [0x12, 0x34, 0, 7]
            })
        );
    }
}
