//! Batched datagram I/O (recvmmsg/sendmmsg) for the UDP serving loop: under load a client
//! keeps many queries in flight, and one system call per batch instead of one per query is
//! what lets the resolver keep up with dnsmasq's tight C loop. All `unsafe` of the crate is
//! here.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Buffers for one batch of datagrams, reused across calls (no allocation per query). The
/// kernel headers point into the buffers; the pointers are refreshed before every call, so
/// moving the struct is harmless.
///
/// There is one batch per listening namespace, and most namespaces ask a query now and then:
/// the batch starts with one buffer and doubles (up to [`BATCH`]) whenever a call fills every
/// buffer it has, so only a busy listener holds 32 of them (128 KiB; 500 idle containers held
/// 64 MiB with all 32 allocated up front).
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    buf_len: usize,
    lens: [usize; BATCH],
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    count: usize,
}

// SAFETY: the raw pointers inside the headers only ever point into buffers owned by the same
// Batch, and they are rewritten before every use; nothing is shared with another thread.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(buf_len: usize) -> Batch {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid (empty) value.
        let (addrs, iovs, hdrs) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Batch {
            bufs: vec![vec![0u8; buf_len]],
            buf_len,
            lens: [0; BATCH],
            addrs: Box::new(addrs),
            iovs: Box::new(iovs),
            hdrs: Box::new(hdrs),
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking (`WouldBlock` when none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.bufs.len().min(BATCH);
        for i in 0..slots {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: the first `slots` (at most BATCH) headers are valid, their name and iovec
        // pointers point into buffers owned by `self` that outlive the call; the kernel writes
        // at most the lengths given. The return value is checked.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).unwrap_or(0).min(slots);
        for i in 0..n {
            self.lens[i] = (self.hdrs[i].msg_len as usize).min(self.bufs[i].len());
        }
        self.count = n;
        if n == slots && slots < BATCH {
            // Every buffer was used: more may be waiting; read them in one call next time.
            let more = slots.min(BATCH - slots);
            self.bufs.extend((0..more).map(|_| vec![0u8; self.buf_len]));
        }
        Ok(n)
    }

    /// The `i`th received datagram and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let addr = to_socket_addr(&self.addrs[i])?;
        Some((&self.bufs[i][..self.lens[i]], addr))
    }

    /// The `i`th sender's address as the kernel gave it (for [`Replies::push`]).
    pub fn raw_peer(&self, i: usize) -> Option<(&libc::sockaddr_storage, libc::socklen_t)> {
        (i < self.count).then(|| (&self.addrs[i], self.hdrs[i].msg_hdr.msg_namelen))
    }
}

/// The answers to one batch of queries, sent with one `sendmmsg` (one system call per batch
/// instead of one per answer). Buffers are kept from batch to batch (no allocation per answer)
/// and grow on demand as [`Batch`]'s do.
pub struct Replies {
    bufs: Vec<Vec<u8>>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    namelens: [libc::socklen_t; BATCH],
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    /// Answers queued.
    count: usize,
    /// Of which already sent (or given up on).
    sent: usize,
}

// SAFETY: as for Batch: the headers only point into buffers of the same Replies, rewritten
// before every call.
unsafe impl Send for Replies {}

impl Default for Replies {
    fn default() -> Self {
        // SAFETY: plain C structs for which all-zero bytes are a valid (empty) value.
        let (addrs, iovs, hdrs) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Replies {
            bufs: Vec::new(),
            addrs: Box::new(addrs),
            namelens: [0; BATCH],
            iovs: Box::new(iovs),
            hdrs: Box::new(hdrs),
            count: 0,
            sent: 0,
        }
    }
}

impl Replies {
    /// True when [`BATCH`] answers are queued: send them before queueing more.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// True when every queued answer was sent (or skipped).
    pub fn is_done(&self) -> bool {
        self.sent == self.count
    }

    /// Queues an answer to `peer`: `fill` writes it into an empty buffer and says whether there
    /// is one (false: nothing is queued). Nothing is queued when full.
    pub fn push(
        &mut self,
        peer: (&libc::sockaddr_storage, libc::socklen_t),
        fill: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        if self.is_full() {
            return;
        }
        if self.bufs.len() == self.count {
            self.bufs.push(Vec::with_capacity(512));
        }
        let buf = &mut self.bufs[self.count];
        buf.clear();
        if !fill(buf) {
            return;
        }
        self.addrs[self.count] = *peer.0;
        self.namelens[self.count] = peer.1;
        self.count += 1;
    }

    /// Sends the queued answers not sent yet without blocking. `WouldBlock` (the socket's
    /// buffer is full) keeps the rest for the next call; any other error is the first unsent
    /// answer's, which is then skipped ([`Replies::is_done`] tells whether any are left).
    pub fn send(&mut self, fd: RawFd) -> io::Result<()> {
        while self.sent < self.count {
            let first = self.sent;
            for i in first..self.count {
                self.iovs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: self.bufs[i].len(),
                };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = self.namelens[i];
                h.msg_hdr.msg_iov = &mut self.iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: headers first..count are valid and point into buffers and addresses
            // owned by `self`, which outlive the call; the kernel only reads them (and writes
            // msg_len). The return value is checked.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[first..].as_mut_ptr(),
                    (self.count - first) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.sent += 1;
                }
                return Err(e);
            }
            self.sent += usize::try_from(n)
                .unwrap_or(0)
                .max(1)
                .min(self.count - first);
        }
        Ok(())
    }

    /// Forgets every queued answer (keeping the buffers).
    pub fn clear(&mut self) {
        self.count = 0;
        self.sent = 0;
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_with_senders() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = Batch::new(512);
        assert_eq!(
            b.recv(rx.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..5u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        // One buffer at first, doubling each time a call fills them all: 1 + 2 + 2 of 5.
        let mut got = Vec::new();
        for want in [1, 2, 2] {
            let n = b.recv(rx.as_raw_fd()).unwrap();
            assert_eq!(n, want);
            for i in 0..n {
                let (d, from) = b.get(i).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                got.push(d[0]);
                assert_eq!(d, &[d[0]; 10]);
            }
            assert!(b.get(n).is_none());
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(b.bufs.len(), 4);
        for _ in 0..BATCH {
            tx.send_to(&[9; 10], rx.local_addr().unwrap()).unwrap();
        }
        while b.recv(rx.as_raw_fd()).is_ok() {}
        assert_eq!(b.bufs.len(), BATCH, "grows to the batch size, no further");
    }

    #[test]
    fn answers_a_batch_with_one_call_each_to_its_sender() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut b = Batch::new(512);
        let mut replies = Replies::default();
        for round in 0..2u8 {
            for (i, c) in clients.iter().enumerate() {
                c.send_to(&[i as u8; 4], rx.local_addr().unwrap()).unwrap();
            }
            let mut got = 0;
            while got < clients.len() {
                let n = b.recv(rx.as_raw_fd()).unwrap();
                for i in 0..n {
                    let (d, _) = b.get(i).unwrap();
                    let d = d.to_vec();
                    replies.push(b.raw_peer(i).unwrap(), |buf| {
                        buf.extend_from_slice(&[d[0], round, 0xee]);
                        true
                    });
                    // A fill that declines queues nothing.
                    replies.push(b.raw_peer(i).unwrap(), |_| false);
                }
                got += n;
            }
            assert!(!replies.is_done());
            replies.send(rx.as_raw_fd()).unwrap();
            assert!(replies.is_done());
            replies.clear();
            for (i, c) in clients.iter().enumerate() {
                let mut buf = [0u8; 16];
                let (n, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(from, rx.local_addr().unwrap());
                assert_eq!(&buf[..n], &[i as u8, round, 0xee]);
            }
        }
    }
}
