//! Typed views over frame bytes, in smoltcp's style: each header has a *view*
//! (`Xxx<T: AsRef<[u8]>>`, setters when `T: AsMut<[u8]>`) reading and writing fields in place,
//! and a *Repr*, the small checked summary with `parse`, `buffer_len` and `emit`.
//!
//! Contract: after `new_checked` succeeds no accessor panics. `new_unchecked` is for emitting
//! into a buffer the caller sized. Every parser of the switch, the gateway, the TCP relay and
//! the VXLAN port reads L2-L4 headers through these views, and every checksum goes through
//! [`checksum`].
//!
//! L3 is IPv4 ([`ipv4`]) and IPv6 ([`ipv6`], with [`icmpv6`] for ICMPv6 and Neighbor
//! Discovery); [`ip`] holds what the versions share ([`ip::IpProtocol`], [`ip::IpVersion`] to
//! pick a view, [`ip::Lengths`] for GSO super-frames).

pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vnet;
pub mod vxlan;

/// Why a buffer could not be viewed as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header it should hold.
    #[error("buffer too short for {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which header was being read.
        what: &'static str,
        /// Bytes the header needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// A field contradicts the header or the buffer (a version, a header or total length).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which header was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Reads a big-endian u16 at `off`; the caller checked `off + 2 <= b.len()`.
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Reads a big-endian u32 at `off`; the caller checked `off + 4 <= b.len()`.
#[inline]
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Writes a big-endian u16 at `off`; the caller checked `off + 2 <= b.len()`.
#[inline]
pub(crate) fn set_be16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}
