//! Datagrams gathered during one burst and sent with one `sendmmsg` per socket.
//!
//! The gateway task handles up to a burst of frames per wake-up. Sending each egress datagram
//! with its own `send` costs a syscall per packet, and on a host whose receiver runs on the
//! same CPU, each send's wake-up of that receiver can preempt the gateway mid-burst. Queued
//! here instead, consecutive datagrams of one socket leave in one `sendmmsg` at the end of the
//! burst (order within a flow is kept). The payloads are copied into one arena allocated
//! once; nothing allocates per datagram. A run of same-sized datagrams of one socket (a flood
//! of one flow) leaves as one UDP GSO send instead (`UDP_SEGMENT`): the kernel builds one
//! packet and cuts it into the same datagrams, rather than passing each down the stack.

use std::ops::Range;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// Datagrams per `sendmmsg`.
const MAX_PER_CALL: usize = 64;

/// What was queued, with a tag the caller gets back with each datagram's outcome.
pub(crate) struct DatagramBatch<T: Copy> {
    arena: Vec<u8>,
    items: Vec<(T, RawFd, Range<usize>)>,
}

impl<T: Copy> DatagramBatch<T> {
    /// A batch holding up to `bytes` of payload and `count` datagrams before it must be
    /// flushed.
    pub(crate) fn new(bytes: usize, count: usize) -> DatagramBatch<T> {
        DatagramBatch {
            arena: Vec::with_capacity(bytes),
            items: Vec::with_capacity(count),
        }
    }

    /// Whether `len` more bytes fit without a flush (an empty batch takes anything: the
    /// arena grows once for an oversized datagram rather than refusing it).
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.items.is_empty()
            || (self.items.len() < self.items.capacity()
                && self.arena.len() + len <= self.arena.capacity())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues `payload` for the connected datagram socket `fd`. Call [`DatagramBatch::fits`]
    /// first (and flush when it says no).
    pub(crate) fn push(&mut self, tag: T, fd: RawFd, payload: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.items.push((tag, fd, start..self.arena.len()));
    }

    /// Drops the queued datagrams tagged `tag` (their socket is closing).
    pub(crate) fn forget(&mut self, tag: T)
    where
        T: PartialEq,
    {
        self.items.retain(|it| it.0 != tag);
    }

    /// Sends everything queued, runs of one socket in one `sendmmsg` each, and reports each
    /// datagram's outcome (its tag, fd and length) in order. Empties the batch.
    pub(crate) fn flush(&mut self, mut outcome: impl FnMut(T, RawFd, usize, Result<(), Errno>)) {
        let mut i = 0;
        while i < self.items.len() {
            let fd = self.items[i].1;
            let run = self.items[i..]
                .iter()
                .take(MAX_PER_CALL)
                .take_while(|it| it.1 == fd)
                .count();
            let same = gso_run(&self.items[i..i + run]);
            if same >= 2 {
                let first = &self.items[i].2;
                let last = &self.items[i + same - 1].2;
                let seg = u16::try_from(first.len()).unwrap_or(u16::MAX);
                if let Some(data) = self.arena.get(first.start..last.end) {
                    if send_gso(fd, data, seg).is_ok() {
                        for (tag, fd, r) in &self.items[i..i + same] {
                            outcome(*tag, *fd, r.len(), Ok(()));
                        }
                        i += same;
                        continue;
                    }
                }
                // Refused (a full socket buffer, a route whose MTU is below the segment):
                // the run goes as separate datagrams, which report their own outcomes.
            }
            match send_run(fd, &self.arena, &self.items[i..i + run]) {
                Ok(sent) => {
                    // sendmmsg reports an error only when the first datagram fails: a
                    // shorter count means the next one failed; the next call reports why.
                    let sent = sent.clamp(1, run);
                    for (tag, fd, r) in &self.items[i..i + sent] {
                        outcome(*tag, *fd, r.len(), Ok(()));
                    }
                    i += sent;
                }
                Err(e) => {
                    let (tag, fd, r) = &self.items[i];
                    outcome(*tag, *fd, r.len(), Err(e));
                    i += 1;
                }
            }
        }
        self.items.clear();
        self.arena.clear();
    }
}

/// Largest datagram sent as a UDP GSO segment: within any IPv6 path's minimum MTU (1280
/// less 48 bytes of headers), so the kernel never refuses the segment size for the route.
const GSO_SEG_MAX: usize = 1232;
/// Most payload in one GSO send (an IP packet's 64 KiB less headers).
const GSO_BYTES_MAX: usize = 65_000;

/// How many of `items` (one socket's run) can leave as one UDP GSO send: datagrams of one
/// size (the last may be shorter), contiguous in the arena (a `forget` leaves gaps), at most
/// [`GSO_SEG_MAX`] each and [`GSO_BYTES_MAX`] in all. The kernel cuts the send back into the
/// same datagrams, after one pass down the stack instead of one per datagram. Pure.
fn gso_run<T>(items: &[(T, RawFd, Range<usize>)]) -> usize {
    let Some((_, _, first)) = items.first() else {
        return 0;
    };
    let seg = first.len();
    if seg == 0 || seg > GSO_SEG_MAX {
        return 0;
    }
    let mut n = 1;
    let mut end = first.end;
    for (_, _, r) in &items[1..] {
        if r.start != end || r.len() > seg || r.end - first.start > GSO_BYTES_MAX {
            break;
        }
        n += 1;
        end = r.end;
        if r.len() < seg {
            break;
        }
    }
    n
}

/// One send of `data` that the kernel segments into datagrams of `seg` bytes (UDP_SEGMENT).
fn send_gso(fd: RawFd, data: &[u8], seg: u16) -> Result<(), Errno> {
    use nix::sys::socket::MsgFlags;
    let iov = [std::io::IoSlice::new(data)];
    netyard_switch::sys::send_udp_gso(
        fd,
        &iov,
        seg,
        None,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )
    .map(|_| ())
}

/// One `sendmmsg` of `items` (all on `fd`), non-blocking.
fn send_run<T>(
    fd: RawFd,
    arena: &[u8],
    items: &[(T, RawFd, Range<usize>)],
) -> Result<usize, Errno> {
    let count = items.len().min(MAX_PER_CALL);
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_PER_CALL];
    for ((_, _, r), iov) in items.iter().zip(&mut iovs) {
        let part = arena.get(r.clone()).unwrap_or_default();
        // The kernel only reads through this pointer (sendmmsg).
        iov.iov_base = part.as_ptr().cast_mut().cast();
        iov.iov_len = part.len();
    }
    // SAFETY: `mmsghdr` is plain old data (integers and raw pointers); all-zero is valid.
    let mut hdrs: [libc::mmsghdr; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
    for (hdr, iov) in hdrs.iter_mut().zip(&mut iovs).take(count) {
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    let vlen = libc::c_uint::try_from(count).unwrap_or(0);
    // SAFETY: the first `count` headers each point to one iovec covering a live part of
    // `arena`, which sendmmsg only reads; no names (the socket is connected) or control
    // buffers are given. An invalid fd is an error return, not undefined behaviour. The
    // return value is checked.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn runs_per_socket_keep_their_order_and_every_datagram_is_reported() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(rx.local_addr().unwrap()).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.connect(rx2.local_addr().unwrap()).unwrap();
        let mut batch = DatagramBatch::new(1024, 8);
        for (i, s) in [&a, &a, &b, &a].iter().enumerate() {
            assert!(batch.fits(3));
            batch.push(i, s.as_raw_fd(), format!("d{i}").as_bytes());
        }
        let mut seen = Vec::new();
        batch.flush(|tag, _, len, r| seen.push((tag, len, r.is_ok())));
        assert_eq!(
            seen,
            [(0, 2, true), (1, 2, true), (2, 2, true), (3, 2, true)]
        );
        assert!(batch.is_empty());
        let mut buf = [0u8; 16];
        for want in ["d0", "d1", "d3"] {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want.as_bytes());
        }
        let n = rx2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"d2");
    }

    /// A receiving socket on loopback and a sender connected to it.
    fn connected_pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    #[test]
    fn a_failing_socket_reports_its_error_and_the_rest_still_go() {
        let (rx, good) = connected_pair();
        let mut batch = DatagramBatch::new(64, 4);
        batch.push('x', -1, b"lost");
        batch.push('y', good.as_raw_fd(), b"kept");
        let mut seen = Vec::new();
        batch.flush(|tag, _, _, r| seen.push((tag, r)));
        assert_eq!(seen, [('x', Err(Errno::EBADF)), ('y', Ok(()))]);
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"kept");
    }

    fn item(r: Range<usize>) -> ((), RawFd, Range<usize>) {
        ((), 3, r)
    }

    #[test]
    fn gso_takes_equal_contiguous_datagrams_and_a_shorter_last() {
        assert_eq!(gso_run::<()>(&[]), 0);
        let run = [item(0..64), item(64..128), item(128..192), item(192..200)];
        assert_eq!(gso_run(&run), 4);
        let longer = [item(0..64), item(64..128), item(128..300)];
        assert_eq!(gso_run(&longer), 2, "a longer datagram ends the run");
        let after_short = [item(0..64), item(64..70), item(70..134)];
        assert_eq!(gso_run(&after_short), 2, "a shorter one is the last");
        let gap = [item(0..64), item(100..164)];
        assert_eq!(gso_run(&gap), 1, "forgotten datagrams leave a gap");
        assert_eq!(
            gso_run(&[item(0..1300), item(1300..2600)]),
            0,
            "over the segment cap"
        );
        let many: Vec<_> = (0..100).map(|i| item(i * 1000..(i + 1) * 1000)).collect();
        assert_eq!(gso_run(&many), 65, "at most 65,000 bytes");
    }

    #[test]
    fn a_gso_run_arrives_as_the_same_datagrams() {
        let (rx, tx) = connected_pair();
        let mut batch = DatagramBatch::new(1024, 8);
        let sent: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; if i == 4 { 10 } else { 64 }])
            .collect();
        for (i, d) in sent.iter().enumerate() {
            batch.push(i, tx.as_raw_fd(), d);
        }
        let mut seen = Vec::new();
        batch.flush(|tag, _, len, r| seen.push((tag, len, r.is_ok())));
        assert_eq!(
            seen,
            [
                (0, 64, true),
                (1, 64, true),
                (2, 64, true),
                (3, 64, true),
                (4, 10, true)
            ]
        );
        let mut buf = [0u8; 256];
        for want in &sent {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &want[..]);
        }
    }

    #[test]
    fn fits_until_full_and_an_empty_batch_takes_an_oversized_datagram() {
        let mut batch: DatagramBatch<u8> = DatagramBatch::new(8, 2);
        assert!(batch.fits(100), "empty: anything goes");
        batch.push(0, -1, b"12345");
        assert!(batch.fits(3));
        assert!(!batch.fits(4), "bytes");
        batch.push(1, -1, b"1");
        assert!(!batch.fits(1), "count");
        batch.forget(0);
        let mut seen = Vec::new();
        batch.flush(|tag, _, _, _| seen.push(tag));
        assert_eq!(seen, [1], "a forgotten datagram is never sent");
    }
}
