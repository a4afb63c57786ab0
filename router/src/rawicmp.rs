//! ICMP echo through a raw socket, for a privileged daemon that may not open ICMP datagram
//! sockets.
//!
//! Unprivileged ICMP datagram ("ping") sockets are the first choice: the kernel keeps one
//! echo identifier per socket and hands each socket its own replies. They need the daemon's
//! group in `net.ipv4.ping_group_range`, which is "1 0" (nobody) in every new network
//! namespace. A daemon with `CAP_NET_RAW` (root) then falls back to one raw ICMP socket per
//! egress engine: each flow gets an echo identifier of its own (the endpoint's is rewritten on
//! the way out and restored on the way back, so two endpoints using the same identifier do
//! not mix), and replies and ICMP errors are matched by that identifier and the destination.
//!
//! A raw socket receives a copy of every ICMP message the host receives, IPv4 header included:
//! [`parse`] keeps the echo replies and the errors quoting one of our echo requests, and
//! ignores the rest.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};

use crate::packet;

/// Echo identifiers of raw flows, process-wide: every engine's raw socket sees every reply,
/// so identifiers must not repeat across networks either.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(1);

/// A raw ICMP socket (non-blocking).
pub(crate) struct RawIcmp {
    fd: OwnedFd,
}

impl AsFd for RawIcmp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl RawIcmp {
    /// Opens the socket; EPERM without `CAP_NET_RAW`.
    pub(crate) fn open() -> io::Result<RawIcmp> {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Icmp,
        )?;
        Ok(RawIcmp { fd })
    }

    /// A fresh echo identifier (`taken` says which this engine still uses).
    pub(crate) fn next_ident(taken: impl Fn(u16) -> bool) -> u16 {
        loop {
            let i = NEXT_IDENT.fetch_add(1, Relaxed);
            if !taken(i) {
                return i;
            }
        }
    }

    /// Sends the endpoint's echo request `msg` to `dest` under identifier `ident`, rewritten
    /// in `scratch` (reused).
    pub(crate) fn send(
        &self,
        msg: &[u8],
        dest: Ipv4Addr,
        ident: u16,
        scratch: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        scratch.clear();
        scratch.extend_from_slice(msg);
        packet::set_echo_ident(scratch, ident);
        let to = SockaddrIn::from(SocketAddrV4::new(dest, 0));
        socket::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            scratch,
            &to,
            MsgFlags::MSG_DONTWAIT,
        )
        .map(|_| ())
    }

    /// Receives one datagram (IPv4 header, then ICMP) into `buf`.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            buf,
            MsgFlags::MSG_DONTWAIT,
        )
    }
}

/// What a raw socket received, as far as egress cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawRx {
    /// An echo reply from `src` to identifier `ident`; the ICMP message is `buf[msg]`.
    EchoReply {
        src: Ipv4Addr,
        ident: u16,
        msg: Range<usize>,
    },
    /// An ICMP error about our echo request with identifier `ident` to `dest`.
    Error {
        dest: Ipv4Addr,
        ident: u16,
        icmp_type: u8,
        code: u8,
    },
    /// Anything else (echo requests, errors about other traffic, short or odd datagrams).
    Other,
}

/// The IPv4 header length of `ip`, if it is a plausible IPv4 header.
fn ihl(ip: &[u8]) -> Option<usize> {
    let first = *ip.first()?;
    let len = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && len >= 20 && ip.len() >= len).then_some(len)
}

fn addr(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// Classifies one datagram a raw ICMP socket received (IPv4 header, then the ICMP message).
pub(crate) fn parse(buf: &[u8]) -> RawRx {
    parse_opt(buf).unwrap_or(RawRx::Other)
}

fn parse_opt(buf: &[u8]) -> Option<RawRx> {
    let h = ihl(buf)?;
    let src = addr(buf.get(12..)?)?;
    let icmp = buf.get(h..)?;
    let (t, code) = (*icmp.first()?, *icmp.get(1)?);
    if t == packet::ICMP_ECHO_REPLY && code == 0 && icmp.len() >= 8 {
        let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
        return Some(RawRx::EchoReply {
            src,
            ident,
            msg: h..buf.len(),
        });
    }
    if t != packet::ICMP_DEST_UNREACH && t != packet::ICMP_TIME_EXCEEDED {
        return Some(RawRx::Other);
    }
    // The quoted packet: our echo request's IPv4 header and its first 8 bytes.
    let quoted = icmp.get(8..)?;
    let qh = ihl(quoted)?;
    if quoted.get(9) != Some(&1) {
        return Some(RawRx::Other);
    }
    let dest = addr(quoted.get(16..)?)?;
    let q = quoted.get(qh..qh + 8)?;
    if q[0] != packet::ICMP_ECHO_REQUEST {
        return Some(RawRx::Other);
    }
    Some(RawRx::Error {
        dest,
        ident: u16::from_be_bytes([q[4], q[5]]),
        icmp_type: t,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn echo_replies_and_errors_about_our_requests_are_recognised() {
        let reply = ipv4(
            [198, 18, 0, 2],
            [10, 0, 0, 1],
            &[0, 0, 0xab, 0xcd, 0x12, 0x34, 0, 7, 9],
        );
        assert_eq!(
            parse(&reply),
            RawRx::EchoReply {
                src: Ipv4Addr::new(198, 18, 0, 2),
                ident: 0x1234,
                msg: 20..reply.len(),
            }
        );
        let request = ipv4(
            [10, 0, 0, 1],
            [198, 18, 9, 9],
            &[8, 0, 0, 0, 0x56, 0x78, 0, 1],
        );
        let mut err = vec![3, 1, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&request);
        let err = ipv4([198, 18, 0, 1], [10, 0, 0, 1], &err);
        assert_eq!(
            parse(&err),
            RawRx::Error {
                dest: Ipv4Addr::new(198, 18, 9, 9),
                ident: 0x5678,
                icmp_type: 3,
                code: 1,
            }
        );
    }

    #[test]
    fn other_traffic_and_garbage_are_ignored() {
        // Someone pinging the host; an error about UDP; truncated and non-IPv4 datagrams.
        let request = ipv4([198, 18, 0, 2], [10, 0, 0, 1], &[8, 0, 0, 0, 1, 2, 0, 1]);
        assert_eq!(parse(&request), RawRx::Other);
        let mut udp = ipv4([10, 0, 0, 1], [198, 18, 9, 9], &[0; 8]);
        udp[9] = 17;
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&udp);
        assert_eq!(
            parse(&ipv4([1, 1, 1, 1], [10, 0, 0, 1], &err)),
            RawRx::Other
        );
        for bad in [
            &[][..],
            &[0x45, 0, 0],
            &[0x65; 40],
            &ipv4([1; 4], [2; 4], &[0]),
        ] {
            assert_eq!(parse(bad), RawRx::Other, "{bad:?}");
        }
    }
}
