//! An in-memory port for tests: one end of a `SOCK_SEQPACKET` socketpair is the port
//! ([`MemPort`]), the other is the test's hand on the wire ([`MemPeer`]).
//!
//! The port has a real fd with real readiness, so the driver runs unchanged and no privileges
//! are needed. Message boundaries are kept: one `send_raw` is one frame. The peer exchanges
//! exactly what the switch would put on a device with the same [`PortCaps`]: `[vnet hdr][frame]`
//! when `caps.vnet_hdr`, else the bare frame. It can send any non-empty bytes, including runts
//! shorter than an Ethernet (or vnet) header, so tests can inject malformed frames.
//!
//! Empty messages are refused by [`MemPeer::send_raw`] so that a zero-length read on the port
//! means the peer is gone: [`MemPort::recv`](Port::recv) then fails with
//! [`io::ErrorKind::UnexpectedEof`] instead of spinning on an always-readable fd. (A peer that
//! closed with frames still unread shows up first as `ConnectionReset`.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};

use super::{check_sent, finish_recv, payload, payload_mut, FrameTruncated};
use crate::port::{Port, PortCaps};

/// Socket buffer each end asks for: room for dozens of 64 KB frames in flight.
const SOCK_BUF_BYTES: usize = 4 << 20;

/// How long [`MemPeer`] waits by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sizes the send buffer (a unix socket's queue to its peer is charged to the sender), with
/// SO_SNDBUFFORCE when privileged.
fn set_sndbuf(fd: BorrowedFd<'_>) -> io::Result<()> {
    match setsockopt(&fd, sockopt::SndBufForce, &SOCK_BUF_BYTES) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => Ok(setsockopt(&fd, sockopt::SndBuf, &SOCK_BUF_BYTES)?),
        Err(e) => Err(e.into()),
    }
}

/// Receives one message with its full length (MSG_TRUNC); 0 means the other end closed.
fn recv_msg(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = socket::recv(
        fd.as_raw_fd(),
        buf,
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
    )?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "socketpair peer closed",
        ));
    }
    Ok(n)
}

/// Sends one message; a closed peer is `EPIPE`, never SIGPIPE.
fn send_msg(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    let n = socket::send(
        fd.as_raw_fd(),
        bytes,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    )?;
    check_sent(n, bytes.len())
}

/// Makes closing one end visible to the other at once. `close` alone only drops this
/// process's reference: while any other thread is between `fork` and `exec` (a test spawning
/// `ip`, say), the child holds a copy of every fd, CLOEXEC or not, and the socket stays open
/// until that child execs, so the other end reads `WouldBlock` instead of end-of-file.
/// `shutdown` acts on the socket itself, whoever else holds the fd.
fn shut(fd: &OwnedFd) {
    // An error (ENOTCONN: the other end is already gone) leaves nothing to announce.
    let _ = socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Both);
}

/// Waits until `fd` has `events` or `deadline` passes (then `TimedOut`).
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "MemPeer timed out"))?;
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The switch's side of an in-memory link.
#[derive(Debug)]
pub struct MemPort {
    fd: OwnedFd,
    caps: PortCaps,
}

/// The test's side of an in-memory link: sends what a device would deliver to the switch and
/// receives what the switch put on the device.
#[derive(Debug)]
pub struct MemPeer {
    fd: OwnedFd,
    caps: PortCaps,
    timeout: Duration,
}

impl MemPort {
    /// A connected port and peer. `caps` are what the port declares, and decide whether the
    /// peer's bytes carry a vnet header.
    pub fn pair(caps: PortCaps) -> io::Result<(MemPort, MemPeer)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        set_sndbuf(a.as_fd())?;
        set_sndbuf(b.as_fd())?;
        Ok((
            MemPort { fd: a, caps },
            MemPeer {
                fd: b,
                caps,
                timeout: DEFAULT_TIMEOUT,
            },
        ))
    }
}

impl Drop for MemPort {
    fn drop(&mut self) {
        shut(&self.fd);
    }
}

impl Drop for MemPeer {
    fn drop(&mut self) {
        shut(&self.fd);
    }
}

impl Port for MemPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let with_hdr = self.caps.vnet_hdr;
        let dst = if with_hdr {
            &mut *buf
        } else {
            payload_mut(buf)?
        };
        let n = recv_msg(&self.fd, dst)?;
        finish_recv(buf, n, with_hdr)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let src = if self.caps.vnet_hdr {
            frame
        } else {
            payload(frame)?
        };
        send_msg(&self.fd, src)
    }

    fn caps(&self) -> PortCaps {
        self.caps
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn kind(&self) -> &'static str {
        "mem"
    }
}

impl MemPeer {
    /// The caps of the port at the other end (so whether to expect a vnet header).
    pub fn caps(&self) -> PortCaps {
        self.caps
    }

    /// How long `send_raw` and `recv_raw` wait (2 s unless changed).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes how long `send_raw` and `recv_raw` wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Delivers `bytes` to the port as one frame, waiting up to the timeout for room.
    /// Refuses empty messages (`InvalidInput`; see the module docs).
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "MemPeer cannot send an empty frame",
            ));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match send_msg(&self.fd, bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(self.fd.as_fd(), PollFlags::POLLOUT, deadline)?;
                }
                other => return other,
            }
        }
    }

    /// Receives the next frame the switch sent on the port, waiting up to the timeout
    /// (`TimedOut`). Returns its length; a frame longer than `buf` is lost and reported as
    /// [`FrameTruncated`].
    pub fn recv_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.try_recv_raw(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(self.fd.as_fd(), PollFlags::POLLIN, deadline)?;
                }
                other => return other,
            }
        }
    }

    /// [`MemPeer::recv_raw`] without waiting: `WouldBlock` if the switch sent nothing.
    pub fn try_recv_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = recv_msg(&self.fd, buf)?;
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                FrameTruncated {
                    len: n,
                    cap: buf.len(),
                },
            ));
        }
        Ok(n)
    }
}

impl AsFd for MemPeer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for MemPeer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A [`MemPeer`] driven by tokio: for in-process ports served by a task (the router's gateway)
/// rather than by a test thread.
pub struct AsyncMemPeer {
    inner: tokio::io::unix::AsyncFd<MemPeer>,
}

impl AsyncMemPeer {
    /// Registers the peer with the current tokio runtime.
    pub fn new(peer: MemPeer) -> io::Result<AsyncMemPeer> {
        // SAFETY: the AsyncFd owns the MemPeer, which owns its fd (an OwnedFd that is never
        // replaced), so the fd stays open and the same for the AsyncFd's whole life.
        let inner = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                peer,
                tokio::io::Interest::READABLE | tokio::io::Interest::ERROR,
            )
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(AsyncMemPeer { inner })
    }

    /// Waits for and receives one frame (the bytes the switch sent on the port).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self
                .inner
                .ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR)
                .await?;
            match guard.try_io(|p| p.get_ref().try_recv_raw(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one frame if one is waiting (`WouldBlock` otherwise).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.get_ref().try_recv_raw(buf)
    }

    /// Sends one frame made of `parts` (e.g. a virtio-net header, then the frame) in one
    /// message, without waiting; `WouldBlock` when the queue is full.
    pub fn try_send_parts(&self, parts: &[&[u8]]) -> io::Result<()> {
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let n = parts.len().min(slices.len());
        let mut want = 0;
        for (s, p) in slices.iter_mut().zip(parts.iter()) {
            *s = std::io::IoSlice::new(p);
            want += p.len();
        }
        if want == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let sent = socket::sendmsg::<()>(
            self.inner.get_ref().fd.as_raw_fd(),
            &slices[..n],
            &[],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        check_sent(sent, want)
    }

    /// Sends one frame to the switch without waiting; `WouldBlock` when the queue is full
    /// (the caller drops the frame, as a NIC with a full ring would).
    pub fn try_send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.is_empty() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        send_msg(&self.inner.get_ref().fd, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::HDR;

    const FRAME: &[u8] = &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5, b'h', b'i',
    ];

    fn hdr_then(frame: &[u8], hdr: [u8; HDR]) -> Vec<u8> {
        let mut v = hdr.to_vec();
        v.extend_from_slice(frame);
        v
    }

    #[test]
    fn plain_round_trip() {
        let (port, peer) = MemPort::pair(PortCaps::PLAIN).unwrap();
        assert_eq!(port.caps(), PortCaps::PLAIN);
        assert_eq!(peer.caps(), PortCaps::PLAIN);
        assert_eq!(port.kind(), "mem");
        let mut buf = [0xeeu8; 256];

        // Nothing yet.
        let err = port.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        // Peer -> switch: a zero header is put in front.
        peer.send_raw(FRAME).unwrap();
        let n = port.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &hdr_then(FRAME, [0; HDR])[..]);

        // Switch -> peer: the header is stripped.
        port.send(&hdr_then(FRAME, [0x77; HDR])).unwrap();
        let n = peer.recv_raw(&mut buf).unwrap();
        assert_eq!(&buf[..n], FRAME);
        assert_eq!(
            port.send(&[0; 3]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn vnet_round_trip() {
        let caps = PortCaps {
            vnet_hdr: true,
            gso_tcp: true,
            gso_udp: false,
        };
        let (port, peer) = MemPort::pair(caps).unwrap();
        assert_eq!(port.caps(), caps);
        let hdr = [1, 1, 54, 0, 0xe8, 3, 34, 0, 16, 0];
        let mut buf = [0u8; 256];
        peer.send_raw(&hdr_then(FRAME, hdr)).unwrap();
        let n = port.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &hdr_then(FRAME, hdr)[..]);
        port.send(&buf[..n]).unwrap();
        let mut got = [0u8; 256];
        let n = peer.recv_raw(&mut got).unwrap();
        assert_eq!(&got[..n], &hdr_then(FRAME, hdr)[..]);
    }

    #[test]
    fn runts_are_delivered() {
        let (port, peer) = MemPort::pair(PortCaps::PLAIN).unwrap();
        let mut buf = [0xeeu8; 64];
        peer.send_raw(&[1, 2, 3]).unwrap();
        let n = port.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);

        let vnet = PortCaps {
            vnet_hdr: true,
            gso_tcp: false,
            gso_udp: false,
        };
        let (port, peer) = MemPort::pair(vnet).unwrap();
        peer.send_raw(&[1, 2, 3]).unwrap();
        assert_eq!(
            port.recv(&mut buf).unwrap(),
            3,
            "shorter than a vnet header"
        );
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(
            peer.send_raw(&[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn truncation_timeouts_and_close() {
        let (port, mut peer) = MemPort::pair(PortCaps::PLAIN).unwrap();
        peer.send_raw(&[7; 100]).unwrap();
        let mut small = [0u8; 50];
        let err = port.recv(&mut small).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(FrameTruncated::is(&err));
        assert_eq!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<FrameTruncated>()),
            Some(&FrameTruncated { len: 110, cap: 50 })
        );
        // The truncated frame is gone; the next one is whole.
        peer.send_raw(&[8; 20]).unwrap();
        assert_eq!(port.recv(&mut small).unwrap(), 30);
        // A header-less port needs room for the header it writes.
        assert_eq!(
            port.recv(&mut [0u8; 4]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );

        peer.set_timeout(Duration::from_millis(20));
        assert_eq!(peer.timeout(), Duration::from_millis(20));
        assert_eq!(
            peer.recv_raw(&mut small).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        port.send(&[0; 100]).unwrap();
        assert!(FrameTruncated::is(
            &peer.recv_raw(&mut [0u8; 10]).unwrap_err()
        ));

        // Big frames fit the socket buffer; closing one end is visible to the other.
        let big = vec![0xabu8; 65_536 + HDR];
        for _ in 0..16 {
            port.send(&big).unwrap();
        }
        let mut got = vec![0u8; big.len()];
        for _ in 0..16 {
            assert_eq!(peer.recv_raw(&mut got).unwrap(), 65_536);
            assert_eq!(got[..65_536], big[HDR..]);
        }
        // Another copy of the fd (what a child forked by another test thread holds until it
        // execs) must not hide the close: this was the test's flake.
        let held = peer.as_fd().try_clone_to_owned().unwrap();
        drop(peer);
        assert_eq!(
            port.recv(&mut small).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        drop(held);
        assert_eq!(
            port.send(&big).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
