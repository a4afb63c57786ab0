//! An epoll instance of our own that the gateway task awaits through tokio.
//!
//! The relay and the egress engine each watch many host sockets. Registering every one with
//! tokio would give each its own waker and task wake-up; instead each engine keeps one epoll
//! fd, tokio watches only that fd, and the gateway task, once woken, takes every ready socket
//! in one `epoll_wait` and serves it in place.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags};
use tokio::io::unix::AsyncFd;

/// The epoll instance, shared with the gateway task that waits on it.
pub(crate) struct EpollFd(pub(crate) Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// A new epoll instance registered with the current tokio runtime (readable when any of its
/// sockets is ready).
pub(crate) fn async_epoll() -> io::Result<Arc<AsyncFd<EpollFd>>> {
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // SAFETY: the AsyncFd owns the EpollFd, which owns the epoll fd (an OwnedFd never
    // replaced), so the fd stays open and the same for the AsyncFd's whole life.
    let epoll =
        unsafe { AsyncFd::register_with_interest(EpollFd(ep), tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
    Ok(Arc::new(epoll))
}
