//! An in-process port: the switch hands each frame for it to a consumer in this process (the
//! router's gateway task) as a buffer, with no syscall, no copy and no allocation per frame.
//!
//! Why not a socketpair (what [`crate::sys::MemPort`] is): a 64 KiB super-frame through a
//! `SOCK_SEQPACKET` pair costs a copy into kernel buffers on send, a copy out on receive, the
//! socket buffer's allocation and a wake-up through epoll, which was about a third of the
//! daemon's CPU on the container-to-outside TCP path.
//!
//! How: two bounded lock-free queues ([`crossbeam_queue::ArrayQueue`]) of receive-sized
//! buffers (each its own mapping, [`PageBuf`], as the port tasks' receive buffers are), one of frames waiting for the consumer and one of free buffers.
//! The switch's port task reads a frame into its own buffer, and [`HandoffPort::hand_off`]
//! swaps that buffer for a free one and queues the full one: the frame never moves. The
//! consumer ([`HandoffRx::try_recv`]) swaps the frame's buffer with the one it finished and
//! gives that back to the free queue. Buffers are made on demand, up to [`SLOTS`] more than
//! the consumer's and the producers' own (only while the queue first fills: a steady stream
//! reuses them), so an idle network holds none.
//!
//! Wake-ups: the consumer registers its waker ([`atomic_waker::AtomicWaker`]) only when it
//! found the queue empty, so a producer's `wake` is one atomic swap while the consumer is
//! busy or already woken. From a tokio worker the woken task lands in that worker's LIFO
//! slot and runs when the port task yields at the end of its burst: in effect one wake-up
//! per burst, on the same thread, cache-hot.
//!
//! Several ports may forward to this one at once (the queues are multi-producer); frames of
//! one producer stay in order. A full queue refuses the frame (`WouldBlock`: the driver
//! counts `tx_queue_full`, as for a device), so a stalled consumer cannot grow memory.

use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::port::{Port, PortCaps};
use crate::sys::pagebuf::PageBuf;

/// Frames that may wait for the consumer (and buffers made beyond the ones the producers
/// and the consumer hold): a burst of the switch's driver is 64 frames.
pub const SLOTS: usize = 256;

/// Buffers of one length passed from any number of producers to one consumer with no lock and
/// no allocation once the pool has filled (see the module docs): `full` holds buffers waiting
/// for the consumer with what it needs to know of each (`M`), `free` the buffers ready to be
/// swapped in. Also the VXLAN tunnel's hand-off of another VNI's datagrams
/// ([`crate::sys::vxlan`]).
pub(crate) struct BufQueue<M> {
    full: ArrayQueue<(PageBuf, M)>,
    free: ArrayQueue<PageBuf>,
    /// Buffers made for this queue so far (at most [`SLOTS`]).
    made: AtomicUsize,
    buf_len: usize,
    waker: AtomicWaker,
}

impl<M> std::fmt::Debug for BufQueue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufQueue")
            .field("queued", &self.full.len())
            .field("made", &self.made.load(Ordering::Relaxed))
            .finish()
    }
}

impl<M> BufQueue<M> {
    pub(crate) fn new(buf_len: usize) -> BufQueue<M> {
        BufQueue {
            full: ArrayQueue::new(SLOTS),
            free: ArrayQueue::new(SLOTS),
            made: AtomicUsize::new(0),
            buf_len,
            waker: AtomicWaker::new(),
        }
    }

    /// A free buffer, made if none is free and fewer than [`SLOTS`] exist.
    pub(crate) fn spare(&self) -> Option<PageBuf> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        let made = self.made.fetch_add(1, Ordering::Relaxed);
        let b = (made < SLOTS)
            .then(|| PageBuf::new(self.buf_len).ok())
            .flatten();
        if b.is_none() {
            self.made.fetch_sub(1, Ordering::Relaxed);
        }
        b
    }

    /// Gives a buffer back; dropped when it is not `buf_len` long (the consumer's first
    /// one, if it brought another size) or the free queue is full.
    pub(crate) fn recycle(&self, b: PageBuf) {
        if b.len() != self.buf_len || self.free.push(b).is_err() {
            self.made.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Queues a full buffer for the consumer and wakes it; hands both back when the queue is
    /// full.
    pub(crate) fn queue(&self, frame: PageBuf, meta: M) -> Result<(), (PageBuf, M)> {
        self.full.push((frame, meta))?;
        self.waker.wake();
        Ok(())
    }

    /// The oldest queued buffer.
    pub(crate) fn pop(&self) -> Option<(PageBuf, M)> {
        self.full.pop()
    }

    /// The length of every buffer of the pool.
    pub(crate) fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Buffers waiting for the consumer.
    pub(crate) fn queued(&self) -> usize {
        self.full.len()
    }

    /// Ready when a buffer waits or `also()` holds; otherwise registers `cx`'s waker (before
    /// looking again, so a buffer queued in between is not missed).
    pub(crate) fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
        also: impl Fn() -> bool,
    ) -> Poll<()> {
        let ready = || !self.full.is_empty() || also();
        if ready() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct Shared {
    /// Frames for the consumer, each with its length.
    q: BufQueue<usize>,
    /// One side is gone.
    closed: AtomicBool,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the port's consumer is gone")
}

fn full() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// The switch's side: a [`Port`] whose frames go to the [`HandoffRx`].
pub struct HandoffPort {
    shared: Arc<Shared>,
    caps: PortCaps,
}

/// The consumer's side.
pub struct HandoffRx {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HandoffRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffRx")
            .field("queued", &self.shared.q.queued())
            .finish()
    }
}

impl HandoffPort {
    /// A port declaring `caps` and its consumer; frames are up to `buf_len` bytes (vnet header
    /// included): the switch driver's [`crate::driver::RX_BUF_LEN`].
    pub fn pair(caps: PortCaps, buf_len: usize) -> (HandoffPort, HandoffRx) {
        let shared = Arc::new(Shared {
            q: BufQueue::new(buf_len),
            closed: AtomicBool::new(false),
        });
        (
            HandoffPort {
                shared: shared.clone(),
                caps,
            },
            HandoffRx { shared },
        )
    }
}

impl Drop for HandoffPort {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.q.waker.wake();
    }
}

impl Drop for HandoffRx {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl Port for HandoffPort {
    /// Nothing is ever read from this port: the consumer sends through the switch itself.
    fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(full())
    }

    /// Copies `frame` into a free buffer (the path for frames the driver does not own: a
    /// flood, software segments).
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let s = &s.q;
        if frame.len() > s.buf_len {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let mut b = s.spare().ok_or_else(full)?;
        b[..frame.len()].copy_from_slice(frame);
        s.queue(b, frame.len()).map_err(|(b, _)| {
            s.recycle(b);
            full()
        })
    }

    fn hand_off(&self, buf: &mut PageBuf, len: usize) -> io::Result<bool> {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let s = &s.q;
        if buf.len() != s.buf_len || len > buf.len() {
            // Not a pool-sized buffer: the producer could not read into the one it would get
            // back (or a pool buffer could not hold its next frame). The caller copies.
            return Ok(false);
        }
        let spare = s.spare().ok_or_else(full)?;
        let frame = std::mem::replace(buf, spare);
        if let Err((frame, _)) = s.queue(frame, len) {
            // Undo: the producer keeps its frame's buffer, the spare goes back.
            let spare = std::mem::replace(buf, frame);
            s.recycle(spare);
            return Err(full());
        }
        Ok(true)
    }

    fn caps(&self) -> PortCaps {
        self.caps
    }

    /// No fd: the driver starts no task for this port ([`crate::driver::spawn_port`] fails
    /// with `EBADF`).
    fn raw_fd(&self) -> RawFd {
        -1
    }

    fn kind(&self) -> &'static str {
        "handoff"
    }
}

impl HandoffRx {
    /// The next frame without waiting: `buf` is swapped with the frame's buffer (its old one
    /// goes back to the pool) and the frame's length returned. `WouldBlock` when none waits,
    /// `UnexpectedEof` once the port is gone and drained.
    pub fn try_recv(&self, buf: &mut PageBuf) -> io::Result<usize> {
        let s = &self.shared;
        match s.q.pop() {
            Some((frame, len)) => {
                let done = std::mem::replace(buf, frame);
                s.q.recycle(done);
                Ok(len)
            }
            None if s.closed.load(Ordering::Acquire) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the switch port is gone",
            )),
            None => Err(full()),
        }
    }

    /// Waits for the next frame ([`HandoffRx::try_recv`]).
    pub async fn recv(&self, buf: &mut PageBuf) -> io::Result<usize> {
        poll_fn(|cx| {
            match self.try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            // Registered before looking again, so a frame queued in between is not missed.
            self.shared.q.waker.register(cx.waker());
            match self.try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                r => Poll::Ready(r),
            }
        })
        .await
    }

    /// Ready when a frame waits or the port is gone (then [`HandoffRx::try_recv`] says
    /// which); otherwise registers `cx`'s waker. A consumer of several ports (a router, one
    /// per network) waits on all of them with this.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let s = &self.shared;
        s.q.poll_ready(cx, || s.closed.load(Ordering::Acquire))
    }

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.shared.q.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: PortCaps = PortCaps {
        vnet_hdr: true,
        gso_tcp: true,
        gso_udp: false,
    };

    #[test]
    fn a_handed_off_buffer_reaches_the_consumer_unmoved_and_comes_back_to_the_pool() {
        let (port, rx) = HandoffPort::pair(CAPS, 64);
        let mut prod = PageBuf::new(64).expect("map");
        prod[..3].copy_from_slice(b"abc");
        let ptr = prod.as_ptr();
        assert!(port.hand_off(&mut prod, 3).expect("taken"));
        assert_eq!(prod.len(), 64, "the producer got a full-size buffer back");
        assert_ne!(prod.as_ptr(), ptr);
        let mut cons = PageBuf::new(64).expect("map");
        assert_eq!(rx.try_recv(&mut cons).expect("frame"), 3);
        assert_eq!(cons.as_ptr(), ptr, "no copy: the producer's buffer itself");
        assert_eq!(&cons[..3], b"abc");
        assert_eq!(
            rx.try_recv(&mut cons).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        // The consumer's old buffer is the next producer's spare: no new buffer is made.
        assert!(port.hand_off(&mut prod, 1).expect("taken"));
        assert_eq!(port.shared.q.made.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn frames_keep_their_order_and_send_copies() {
        let (port, rx) = HandoffPort::pair(CAPS, 16);
        port.send(b"one").expect("one");
        let mut b = PageBuf::new(16).expect("map");
        b[..3].copy_from_slice(b"two");
        port.hand_off(&mut b, 3).expect("two");
        port.send(b"three").expect("three");
        let mut c = PageBuf::new(16).expect("map");
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv(&mut c) {
            got.push(c[..n].to_vec());
        }
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(
            port.send(&[0u8; 17]).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EMSGSIZE))
        );
    }

    #[test]
    fn a_full_queue_refuses_and_the_producer_keeps_its_frame() {
        let (port, rx) = HandoffPort::pair(CAPS, 8);
        for _ in 0..SLOTS {
            port.send(b"x").expect("room");
        }
        let mut b = PageBuf::new(8).expect("map");
        b.fill(7);
        let ptr = b.as_ptr();
        assert_eq!(
            port.hand_off(&mut b, 8).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        assert_eq!(b.as_ptr(), ptr, "the frame's buffer stays the producer's");
        assert_eq!(&b[..], &[7u8; 8]);
        assert_eq!(
            port.send(b"y").map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        assert_eq!(rx.queued(), SLOTS);
        assert!(port.shared.q.made.load(Ordering::Relaxed) <= SLOTS);
    }

    #[test]
    fn either_side_gone_is_seen_by_the_other() {
        let (port, rx) = HandoffPort::pair(CAPS, 8);
        port.send(b"last").expect("queued");
        drop(port);
        let mut b = PageBuf::new(8).expect("map");
        assert_eq!(rx.try_recv(&mut b).expect("drained first"), 4);
        assert_eq!(
            rx.try_recv(&mut b).map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
        let (port, rx) = HandoffPort::pair(CAPS, 8);
        drop(rx);
        assert_eq!(
            port.send(b"x").map_err(|e| e.kind()),
            Err(io::ErrorKind::BrokenPipe)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recv_wakes_for_a_frame_from_another_thread() {
        let (port, rx) = HandoffPort::pair(CAPS, 8);
        let t = std::thread::spawn(move || {
            for i in 0..1000u16 {
                let mut b = PageBuf::new(8).expect("map");
                b[..2].copy_from_slice(&i.to_be_bytes());
                while port.hand_off(&mut b, 2).is_err() {
                    std::thread::yield_now();
                }
            }
            port
        });
        let mut buf = PageBuf::new(8).expect("map");
        for i in 0..1000u16 {
            let n = rx.recv(&mut buf).await.expect("frame");
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        drop(t.join().expect("producer"));
        assert_eq!(
            rx.recv(&mut buf).await.map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
    }
}
