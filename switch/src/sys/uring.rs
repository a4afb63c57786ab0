//! Batched writes through io_uring: one `io_uring_enter` writes a burst's frames to a device
//! that takes one frame per `write` (a TAP: no `writev` of several frames, no `sendmmsg`).
//!
//! Why: on a machine with few CPUs the receiver of a frame the daemon writes is woken by that
//! write and, at the syscall's return, often takes the CPU from the daemon, which then pays a
//! context switch for every frame. Writing a burst in one syscall pays that once per burst
//! (the kernel is built without full preemption here: the switch happens at the syscall's
//! exit), and saves the per-syscall entry cost of the others.
//!
//! One ring per thread (a network's lane or a tokio worker), made on first use, so no lock is
//! taken per batch and an idle daemon has none. Whether io_uring can be used is decided once, with a log line, by
//! making a ring: one that cannot be made (an old kernel, a seccomp filter, the
//! `kernel.io_uring_disabled` sysctl) or `NETYARD_IO_URING=0` turns batching off for the whole
//! process, and TAP ports then write frame by frame, as before.
//!
//! The fds are non-blocking, so io_uring never parks a write waiting for room: a device with
//! no room completes it with `EAGAIN` at once, and every write of a batch has completed when
//! the submission returns.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};

/// Most writes one [`write_batch`] submits (and the ring's size).
pub const BATCH: usize = 64;

/// Cleared once a ring could not be made: from then on nobody tries again.
static AVAILABLE: AtomicBool = AtomicBool::new(true);

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Whether batching is on: decided once, at the first question (the first TAP port's first
/// burst), by making a ring and logging the outcome; `NETYARD_IO_URING=0` turns it off.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        if std::env::var("NETYARD_IO_URING").is_ok_and(|v| v.trim() == "0") {
            tracing::info!("io_uring turned off (NETYARD_IO_URING=0): TAP frames are written one per syscall");
            return false;
        }
        match IoUring::new(BATCH as u32) {
            Ok(_) => {
                tracing::info!("TAP frames are written in batches through io_uring");
                true
            }
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable: TAP frames are written one per syscall");
                false
            }
        }
    })
}

/// Whether batches go through io_uring: not turned off, and no ring failed to be made yet.
pub fn available() -> bool {
    AVAILABLE.load(Ordering::Relaxed) && enabled()
}

/// Writes `frames` (at most [`BATCH`]) to `fd` in order, with one submission, and stores each
/// write's result in `results` (bytes written, or a negative errno). Returns how many were
/// submitted, or `None` when io_uring is not available (write them one by one instead).
pub fn write_batch(fd: RawFd, frames: &[&[u8]], results: &mut [i32; BATCH]) -> Option<usize> {
    if !available() {
        return None;
    }
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match IoUring::new(BATCH as u32) {
                Ok(r) => *slot = Some(r),
                Err(e) => {
                    if AVAILABLE.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "io_uring ring refused; TAP frames are written one per syscall from now on");
                    }
                    return None;
                }
            }
        }
        let ring = slot.as_mut()?;
        let (n, healthy) = submit(ring, fd, frames, results);
        if !healthy {
            // It never fails for these writes (they complete inline); if it did, this thread
            // drops it and no thread makes another. Writes not completed are reported failed
            // (ECANCELED); the kernel only ever reads their buffers.
            *slot = None;
        }
        Some(n)
    })
}

/// Submits and reaps one batch: how many were submitted, and whether the ring still works.
fn submit(
    ring: &mut IoUring,
    fd: RawFd,
    frames: &[&[u8]],
    results: &mut [i32; BATCH],
) -> (usize, bool) {
    let mut n = frames.len().min(BATCH);
    let mut queued = 0;
    {
        let mut sq = ring.submission();
        for (i, f) in frames.iter().take(n).enumerate() {
            let Ok(len) = u32::try_from(f.len()) else {
                results[i] = -libc::EINVAL;
                continue;
            };
            let entry = opcode::Write::new(types::Fd(fd), f.as_ptr(), len)
                .build()
                .user_data(i as u64);
            results[i] = -libc::ECANCELED;
            // SAFETY: the entry points at `f`, which the caller borrows for this whole call,
            // and this function waits below for every submitted write to complete before it
            // returns, so the kernel never reads the buffer after the borrow ends.
            if unsafe { sq.push(&entry) }.is_err() {
                // Never (the queue is as long as a batch and empty here): the rest is left
                // for the caller's next call.
                n = i;
                break;
            }
            queued += 1;
        }
    }
    let mut done = 0;
    while done < queued {
        // Non-blocking fds: every write completes within the submission; the wait returns at
        // once, and only an interrupted enter goes round again.
        match ring.submit_and_wait(queued - done) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring submission failed; batching turned off");
                AVAILABLE.store(false, Ordering::Relaxed);
                break;
            }
        }
        for cqe in ring.completion() {
            if let Some(r) = usize::try_from(cqe.user_data())
                .ok()
                .and_then(|i| results.get_mut(i))
            {
                *r = cqe.result();
            }
            done += 1;
        }
    }
    (n, done >= queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    #[test]
    fn writes_a_batch_in_order_and_reports_each_result() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors; the return value is checked.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just made and are owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let frames: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut results = [0i32; BATCH];
        let Some(n) = write_batch(a.as_raw_fd(), &refs, &mut results) else {
            panic!("io_uring unavailable on this machine: the test needs it");
        };
        assert_eq!(n, 5);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(results[i], f.len() as i32, "frame {i}");
            let mut buf = [0u8; 64];
            // SAFETY: `buf` is a live local of the given length; the return value is checked.
            let got = unsafe { libc::recv(b.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert_eq!(got, f.len() as isize);
            assert_eq!(&buf[..f.len()], &f[..]);
        }
        // A failed write is reported in its slot (the read end of a pipe cannot be written).
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let n = write_batch(r.as_raw_fd(), &refs[..2], &mut results).expect("ring");
        assert_eq!(n, 2);
        assert_eq!(results[..2], [-libc::EBADF, -libc::EBADF]);
    }
}
