//! ICMPv6 messages (RFC 4443) and Neighbor Discovery (RFC 4861).
//!
//! ```text
//!  0               8               16                              31
//!  |     type      |     code      |           checksum            |
//!  |         message body: echo ident/seq, an error's MTU or         |
//!  |         pointer, an NDP message's fields and options ...        |
//! ```
//!
//! [`Icmpv6Packet`] reads and writes fields in place; [`Icmpv6Repr`] is the parsed header of
//! the messages netyard handles (echo, the errors, and NDP's RS, RA, NS and NA with their
//! fixed fields). NDP options follow the fixed part: [`NdpOptions`] iterates them as
//! [`NdpOption`]s, which also emit. The checksum covers the IPv6 pseudo-header and the whole
//! message, so verifying and filling take the addresses.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::MacAddr;
use super::ip::IpProtocol;
use super::{be16, be32, set_be16, WireError};

/// Length of the ICMPv6 header (type, code, checksum and four type-dependent bytes).
pub const ICMPV6_HDR_LEN: usize = 8;
/// Fixed part of a Router Advertisement.
pub const RA_LEN: usize = 16;
/// Fixed part of a Neighbor Solicitation or Advertisement (header and target).
pub const NS_NA_LEN: usize = 24;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const REST: std::ops::Range<usize> = 4..8;
    pub const RA_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const RA_LIFETIME: usize = 6;
    pub const RA_REACHABLE: usize = 8;
    pub const RA_RETRANS: usize = 12;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: std::ops::Range<usize> = 8..24;
}

/// Message types.
pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Flags of a Router Advertisement.
pub mod ra_flags {
    /// Managed address configuration (DHCPv6 for addresses).
    pub const MANAGED: u8 = 0x80;
    /// Other configuration (DHCPv6 for other information).
    pub const OTHER: u8 = 0x40;
}

/// Flags of a Neighbor Advertisement (the high bits of its first word).
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// Flags of a Prefix Information option.
pub mod prefix_flags {
    /// On-link: the prefix is reached directly, without the router.
    pub const ON_LINK: u8 = 0x80;
    /// Autonomous: hosts form an address in it by themselves (SLAAC).
    pub const AUTONOMOUS: u8 = 0x40;
}

/// A read/write view of an ICMPv6 message at the start of `buffer` (the whole buffer is the
/// message).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checking it. For emitting into a buffer the caller sized.
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`]; no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer holds the 8-byte header, and an RA or NS/NA its fixed part.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < ICMPV6_HDR_LEN {
            return Err(WireError::Truncated {
                what: "ICMPv6 header",
                need: ICMPV6_HDR_LEN,
                have,
            });
        }
        let need = self.fixed_len();
        if have < need {
            return Err(WireError::Truncated {
                what: "NDP message",
                need,
                have,
            });
        }
        Ok(())
    }

    /// Bytes before an NDP message's options (or an error's quote, an echo's data): 16 for an
    /// RA, 24 for an NS or NA, 8 otherwise.
    pub fn fixed_len(&self) -> usize {
        match self.msg_type() {
            msg_type::ROUTER_ADVERT => RA_LEN,
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => NS_NA_LEN,
            _ => ICMPV6_HDR_LEN,
        }
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

    /// The four type-dependent bytes after the checksum (an error's MTU or pointer).
    pub fn rest_u32(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST.start)
    }

    /// An NS's or NA's target (zeros for other messages of at least 24 bytes).
    fn target(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::TARGET]);
        Ipv6Addr::from(a)
    }

    /// The checksum over the pseudo-header of `src` -> `dst` and the whole message verifies.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header_v6(
            &src.octets(),
            &dst.octets(),
            u8::from(IpProtocol::Icmpv6),
            len,
        );
        checksum::fold(checksum::add(pseudo, b)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv6Packet<&'a T> {
    // Slices borrow the underlying buffer, not the view, so they outlive it (as smoltcp's).

    /// The bytes after the fixed part: an echo's data, an error's quote, NDP options.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.fixed_len()..]
    }

    /// An NDP message's options.
    pub fn options(&self) -> NdpOptions<'a> {
        NdpOptions { rest: self.data() }
    }

    /// The whole message.
    pub fn message(&self) -> &'a [u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the four type-dependent bytes after the checksum.
    pub fn set_rest(&mut self, v: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v);
    }

    /// Computes and writes the checksum over the pseudo-header of `src` -> `dst` and the whole
    /// message.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header_v6(
            &src.octets(),
            &dst.octets(),
            u8::from(IpProtocol::Icmpv6),
            len,
        );
        let c = !checksum::fold(checksum::add(pseudo, b));
        self.set_checksum(c);
    }

    /// The bytes after the fixed part, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let start = self.fixed_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// The parsed fixed part of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr {
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
    /// Packet too big, with the next hop's MTU; the body quotes the offending packet.
    PacketTooBig {
        mtu: u32,
    },
    /// Time exceeded; the body quotes the offending packet.
    TimeExceeded {
        code: u8,
    },
    /// Parameter problem at byte `pointer` of the quoted packet.
    ParamProblem {
        code: u8,
        pointer: u32,
    },
    /// A host asks routers to advertise now.
    RouterSolicit,
    /// A router's advertisement (its options follow).
    RouterAdvert {
        /// Hop limit hosts should use (0: unspecified).
        hop_limit: u8,
        /// [`ra_flags`].
        flags: u8,
        /// Seconds the router is a default router (0: not a default router).
        router_lifetime: u16,
        /// Milliseconds (0: unspecified).
        reachable_time: u32,
        /// Milliseconds (0: unspecified).
        retrans_time: u32,
    },
    /// Who has `target`? (`::` as the IPv6 source: a duplicate address probe.)
    NeighborSolicit {
        target: Ipv6Addr,
    },
    /// `target` is here; [`na_flags`].
    NeighborAdvert {
        flags: u8,
        target: Ipv6Addr,
    },
    /// Any other message, its four type-dependent bytes kept.
    Other {
        msg_type: u8,
        code: u8,
        rest: [u8; 4],
    },
}

impl Icmpv6Repr {
    /// Parses a checked message's fixed part (the checksum is not verified: see
    /// [`Icmpv6Packet::verify_checksum`]). An echo or NDP message with a code other than 0 is
    /// `Other` (RFC 4861 has hosts discard such NDP messages).
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv6Packet<T>) -> Result<Icmpv6Repr, WireError> {
        packet.check_len()?;
        let b = packet.buffer.as_ref();
        let (t, code) = (packet.msg_type(), packet.msg_code());
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        Ok(match (t, code) {
            (msg_type::ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest { ident, seq_no },
            (msg_type::ECHO_REPLY, 0) => Icmpv6Repr::EchoReply { ident, seq_no },
            (msg_type::DST_UNREACHABLE, code) => Icmpv6Repr::DstUnreachable { code },
            (msg_type::PACKET_TOO_BIG, 0) => Icmpv6Repr::PacketTooBig {
                mtu: packet.rest_u32(),
            },
            (msg_type::TIME_EXCEEDED, code) => Icmpv6Repr::TimeExceeded { code },
            (msg_type::PARAM_PROBLEM, code) => Icmpv6Repr::ParamProblem {
                code,
                pointer: packet.rest_u32(),
            },
            (msg_type::ROUTER_SOLICIT, 0) => Icmpv6Repr::RouterSolicit,
            (msg_type::ROUTER_ADVERT, 0) => Icmpv6Repr::RouterAdvert {
                hop_limit: b[field::RA_HOP_LIMIT],
                flags: b[field::RA_FLAGS],
                router_lifetime: be16(b, field::RA_LIFETIME),
                reachable_time: be32(b, field::RA_REACHABLE),
                retrans_time: be32(b, field::RA_RETRANS),
            },
            (msg_type::NEIGHBOR_SOLICIT, 0) => Icmpv6Repr::NeighborSolicit {
                target: packet.target(),
            },
            (msg_type::NEIGHBOR_ADVERT, 0) => Icmpv6Repr::NeighborAdvert {
                flags: b[field::NA_FLAGS],
                target: packet.target(),
            },
            (msg_type, code) => {
                let mut rest = [0u8; 4];
                rest.copy_from_slice(&b[field::REST]);
                Icmpv6Repr::Other {
                    msg_type,
                    code,
                    rest,
                }
            }
        })
    }

    /// Bytes [`Self::emit`] writes: 16 for an RA, 24 for an NS or NA, 8 otherwise.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::RouterAdvert { .. } => RA_LEN,
            Icmpv6Repr::NeighborSolicit { .. } | Icmpv6Repr::NeighborAdvert { .. } => NS_NA_LEN,
            _ => ICMPV6_HDR_LEN,
        }
    }

    /// Writes the fixed part and the checksum over the pseudo-header of `src` -> `dst` and the
    /// whole buffer, so the body (options, quote, data) must be in place first. Panics if the
    /// buffer is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &mut Icmpv6Packet<T>,
    ) {
        let (t, code, rest) = match *self {
            Icmpv6Repr::EchoRequest { ident, seq_no } => {
                (msg_type::ECHO_REQUEST, 0, echo_rest(ident, seq_no))
            }
            Icmpv6Repr::EchoReply { ident, seq_no } => {
                (msg_type::ECHO_REPLY, 0, echo_rest(ident, seq_no))
            }
            Icmpv6Repr::DstUnreachable { code } => (msg_type::DST_UNREACHABLE, code, [0; 4]),
            Icmpv6Repr::PacketTooBig { mtu } => (msg_type::PACKET_TOO_BIG, 0, mtu.to_be_bytes()),
            Icmpv6Repr::TimeExceeded { code } => (msg_type::TIME_EXCEEDED, code, [0; 4]),
            Icmpv6Repr::ParamProblem { code, pointer } => {
                (msg_type::PARAM_PROBLEM, code, pointer.to_be_bytes())
            }
            Icmpv6Repr::RouterSolicit => (msg_type::ROUTER_SOLICIT, 0, [0; 4]),
            Icmpv6Repr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                ..
            } => {
                let l = router_lifetime.to_be_bytes();
                (msg_type::ROUTER_ADVERT, 0, [hop_limit, flags, l[0], l[1]])
            }
            Icmpv6Repr::NeighborSolicit { .. } => (msg_type::NEIGHBOR_SOLICIT, 0, [0; 4]),
            Icmpv6Repr::NeighborAdvert { flags, .. } => {
                (msg_type::NEIGHBOR_ADVERT, 0, [flags, 0, 0, 0])
            }
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
            } => (msg_type, code, rest),
        };
        packet.set_msg_type(t);
        packet.set_msg_code(code);
        packet.set_rest(rest);
        let b = packet.buffer.as_mut();
        match *self {
            Icmpv6Repr::RouterAdvert {
                reachable_time,
                retrans_time,
                ..
            } => {
                b[field::RA_REACHABLE..field::RA_REACHABLE + 4]
                    .copy_from_slice(&reachable_time.to_be_bytes());
                b[field::RA_RETRANS..field::RA_RETRANS + 4]
                    .copy_from_slice(&retrans_time.to_be_bytes());
            }
            Icmpv6Repr::NeighborSolicit { target } | Icmpv6Repr::NeighborAdvert { target, .. } => {
                b[field::TARGET].copy_from_slice(&target.octets());
            }
            _ => {}
        }
        packet.fill_checksum(src, dst);
    }
}

fn echo_rest(ident: u16, seq_no: u16) -> [u8; 4] {
    let (i, s) = (ident.to_be_bytes(), seq_no.to_be_bytes());
    [i[0], i[1], s[0], s[1]]
}

/// Option types.
pub mod opt_type {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
}

/// Length of a Prefix Information option.
pub const PREFIX_INFO_LEN: usize = 32;

/// One NDP option (RFC 4861 section 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpOption<'a> {
    /// The sender's link-layer address (RS, RA, NS).
    SourceLinkLayer(MacAddr),
    /// The target's link-layer address (NA).
    TargetLinkLayer(MacAddr),
    /// A prefix on the link (RA).
    PrefixInfo {
        prefix_len: u8,
        /// [`prefix_flags`].
        flags: u8,
        /// Seconds (u32::MAX: forever).
        valid_lifetime: u32,
        /// Seconds (u32::MAX: forever).
        preferred_lifetime: u32,
        prefix: Ipv6Addr,
    },
    /// The link's MTU (RA).
    Mtu(u32),
    /// Any other option (or a known one of an unexpected length): its type and the bytes
    /// after the type and length octets.
    Other { kind: u8, data: &'a [u8] },
}

impl NdpOption<'_> {
    /// Bytes [`Self::emit`] writes (a multiple of 8).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkLayer(_) | NdpOption::TargetLinkLayer(_) | NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo { .. } => PREFIX_INFO_LEN,
            NdpOption::Other { data, .. } => (data.len() + 2).div_ceil(8) * 8,
        }
    }

    /// Writes the option at the start of `buf` (zero padding an `Other` to its length);
    /// panics if `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let b = &mut buf[..len];
        b.fill(0);
        b[1] = u8::try_from(len / 8).unwrap_or(u8::MAX);
        match *self {
            NdpOption::SourceLinkLayer(mac) | NdpOption::TargetLinkLayer(mac) => {
                b[0] = if matches!(self, NdpOption::SourceLinkLayer(_)) {
                    opt_type::SOURCE_LLADDR
                } else {
                    opt_type::TARGET_LLADDR
                };
                b[2..8].copy_from_slice(&mac.0);
            }
            NdpOption::Mtu(mtu) => {
                b[0] = opt_type::MTU;
                b[4..8].copy_from_slice(&mtu.to_be_bytes());
            }
            NdpOption::PrefixInfo {
                prefix_len,
                flags,
                valid_lifetime,
                preferred_lifetime,
                prefix,
            } => {
                b[0] = opt_type::PREFIX_INFO;
                b[2] = prefix_len;
                b[3] = flags;
                b[4..8].copy_from_slice(&valid_lifetime.to_be_bytes());
                b[8..12].copy_from_slice(&preferred_lifetime.to_be_bytes());
                b[16..32].copy_from_slice(&prefix.octets());
            }
            NdpOption::Other { kind, data } => {
                b[0] = kind;
                b[2..2 + data.len()].copy_from_slice(data);
            }
        }
    }
}

/// The options of an NDP message, in order. Yields an error (once, then stops) for an option
/// of length 0 or one running past the message, which RFC 4861 has the receiver discard the
/// whole message for.
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// The options in `bytes` (what follows an NDP message's fixed part).
    pub fn new(bytes: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: bytes }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let bad = |reason| {
            Some(Err(WireError::Malformed {
                what: "NDP option",
                reason,
            }))
        };
        let Some(&[kind, units]) = self.rest.get(..2) else {
            self.rest = &[];
            return bad("shorter than its type and length");
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            self.rest = &[];
            return bad("length 0");
        }
        let Some(b) = self.rest.get(..len) else {
            self.rest = &[];
            return bad("runs past the message");
        };
        self.rest = &self.rest[len..];
        let mac = || MacAddr::from_bytes(&b[2..]).unwrap_or_default();
        Some(Ok(match (kind, len) {
            (opt_type::SOURCE_LLADDR, 8) => NdpOption::SourceLinkLayer(mac()),
            (opt_type::TARGET_LLADDR, 8) => NdpOption::TargetLinkLayer(mac()),
            (opt_type::MTU, 8) => NdpOption::Mtu(be32(b, 4)),
            (opt_type::PREFIX_INFO, PREFIX_INFO_LEN) => {
                let mut p = [0u8; 16];
                p.copy_from_slice(&b[16..32]);
                NdpOption::PrefixInfo {
                    prefix_len: b[2],
                    flags: b[3],
                    valid_lifetime: be32(b, 4),
                    preferred_lifetime: be32(b, 8),
                    prefix: Ipv6Addr::from(p),
                }
            }
            (kind, _) => NdpOption::Other {
                kind,
                data: &b[2..],
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x42, 0xacff, 0xfe11, 2);
    const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    const MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0, 2]);

    #[test]
    fn echo_round_trips_with_a_checksum() {
        let mut buf = [0xa5u8; 10];
        buf[8..].copy_from_slice(b"hi");
        let r = Icmpv6Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
        };
        r.emit(&SRC, &DST, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum(&SRC, &DST));
        // The pseudo-header is covered: another destination does not verify.
        assert!(!p.verify_checksum(&SRC, &Ipv6Addr::LOCALHOST));
        assert_eq!(p.data(), b"hi");
        assert_eq!(Icmpv6Repr::parse(&p), Ok(r));
        for len in 0..8 {
            assert!(Icmpv6Packet::new_checked(&buf[..len]).is_err());
        }
    }

    #[test]
    fn checksum_matches_a_kernel_neighbor_solicitation() {
        // A DAD probe as Linux sends it: :: -> ff02::1:ff00:2 for fd00::2, no options.
        let src = Ipv6Addr::UNSPECIFIED;
        let dst: Ipv6Addr = "ff02::1:ff00:2".parse().expect("addr");
        let target: Ipv6Addr = "fd00::2".parse().expect("addr");
        let mut buf = [0u8; 24];
        Icmpv6Repr::NeighborSolicit { target }.emit(
            &src,
            &dst,
            &mut Icmpv6Packet::new_unchecked(&mut buf[..]),
        );
        // Checksum computed independently: sum of pseudo-header and message by hand.
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for w in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
        };
        add(&src.octets());
        add(&dst.octets());
        add(&[0, 0, 0, 24, 0, 0, 0, 58]);
        add(&buf);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(
            Icmpv6Repr::parse(&p),
            Ok(Icmpv6Repr::NeighborSolicit { target })
        );
        assert!(
            Icmpv6Packet::new_checked(&buf[..23]).is_err(),
            "NS fixed part"
        );
    }

    #[test]
    fn router_advert_with_options_round_trips() {
        let ra = Icmpv6Repr::RouterAdvert {
            hop_limit: 64,
            flags: 0,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_time: 0,
        };
        let prefix = NdpOption::PrefixInfo {
            prefix_len: 64,
            flags: prefix_flags::ON_LINK,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: "fd12:3456:789a:1::".parse().expect("addr"),
        };
        let opts = [
            NdpOption::SourceLinkLayer(MAC),
            NdpOption::Mtu(1500),
            prefix,
        ];
        let len = ra.buffer_len() + opts.iter().map(NdpOption::buffer_len).sum::<usize>();
        assert_eq!(len, 16 + 8 + 8 + 32);
        let mut buf = vec![0xa5u8; len];
        let mut at = ra.buffer_len();
        for o in &opts {
            o.emit(&mut buf[at..]);
            at += o.buffer_len();
        }
        ra.emit(&SRC, &DST, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum(&SRC, &DST));
        assert_eq!(Icmpv6Repr::parse(&p), Ok(ra));
        let back: Vec<_> = p.options().collect::<Result<_, _>>().expect("options");
        assert_eq!(back, opts);
        assert_eq!(&buf[16..18], &[1, 1]);
        assert_eq!(&buf[24..26], &[5, 1]);
        assert_eq!(&buf[32..36], &[3, 4, 64, 0x80]);
    }

    #[test]
    fn neighbor_advert_round_trips() {
        let na = Icmpv6Repr::NeighborAdvert {
            flags: na_flags::ROUTER | na_flags::SOLICITED | na_flags::OVERRIDE,
            target: SRC,
        };
        let mut buf = [0xa5u8; 32];
        NdpOption::TargetLinkLayer(MAC).emit(&mut buf[24..]);
        na.emit(&SRC, &DST, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[4..8], &[0xe0, 0, 0, 0]);
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum(&SRC, &DST));
        assert_eq!(Icmpv6Repr::parse(&p), Ok(na));
        assert_eq!(
            p.options().collect::<Vec<_>>(),
            vec![Ok(NdpOption::TargetLinkLayer(MAC))]
        );
    }

    #[test]
    fn bad_options_stop_the_walk() {
        assert_eq!(NdpOptions::new(&[]).count(), 0);
        let zero = [1u8, 0, 0, 0, 0, 0, 0, 0];
        let v: Vec<_> = NdpOptions::new(&zero).collect();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_err());
        let long = [1u8, 2, 0, 0, 0, 0, 0, 0];
        let v: Vec<_> = NdpOptions::new(&long).collect();
        assert!(v.len() == 1 && v[0].is_err());
        let odd = [1u8];
        assert!(NdpOptions::new(&odd).all(|o| o.is_err()));
        // An unknown option passes through with its bytes; a known one of a wrong length too.
        let other = [
            25u8, 1, 1, 2, 3, 4, 5, 6, 1, 2, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let v: Vec<_> = NdpOptions::new(&other).collect();
        assert_eq!(
            v,
            vec![
                Ok(NdpOption::Other {
                    kind: 25,
                    data: &[1, 2, 3, 4, 5, 6]
                }),
                Ok(NdpOption::Other {
                    kind: 1,
                    data: &other[10..]
                })
            ]
        );
    }

    #[test]
    fn errors_and_others_keep_their_fields() {
        let mut buf = [0xa5u8; 8];
        let ptb = Icmpv6Repr::PacketTooBig { mtu: 1280 };
        ptb.emit(&SRC, &DST, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[4..8], &[0, 0, 5, 0]);
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(Icmpv6Repr::parse(&p), Ok(ptb));
        buf[1] = 1; // an echo or an RS with a code other than 0 is not one
        buf[0] = msg_type::ROUTER_SOLICIT;
        let p = Icmpv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(
            Icmpv6Repr::parse(&p),
            Ok(Icmpv6Repr::Other {
                msg_type: 133,
                code: 1,
                rest: [0, 0, 5, 0]
            })
        );
    }
}
