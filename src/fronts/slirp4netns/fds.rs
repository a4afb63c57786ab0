//! The descriptors the runtime hands over by number: `-r FD` (ready) and `-e FD` (exit).
//! Podman 4.3 passes `-e 3 -r 4`, 4.6 and later `-r 3 -e 4`, RootlessKit `-r 3`: whatever
//! numbers are given are used.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Takes ownership of descriptor `fd`, which the parent left open for this process; an fd
/// that is not open is `EBADF`. Marked close-on-exec (nothing this process runs needs it).
pub fn take(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on any integer is harmless (EBADF if it names nothing).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open, and it was handed to this process for this purpose by its
    // parent: nothing else in the process owns or closes it (taken once, at start-up).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Ok(owned)
}

/// Reports ready: "1", then the descriptor is closed (the runtime may read until EOF).
pub fn ready(fd: OwnedFd) -> io::Result<()> {
    let mut f = std::fs::File::from(fd);
    f.write_all(b"1")
}

/// Resolves when the exit descriptor reports an event: data, or the other end closed (the
/// runtime's process holding it exited).
pub async fn exit_event(fd: OwnedFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    // SAFETY: the AsyncFd owns the descriptor, so it stays open for as long as it is
    // registered and is deregistered before it closes.
    let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
    let _ = afd.readable().await?;
    Ok(())
}
