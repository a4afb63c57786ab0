//! Fresh network namespaces for `netyard run`, and running a command inside one.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use nix::sched::{setns, unshare, CloneFlags};

/// Creates a new network namespace and returns an fd that keeps it alive.
///
/// `unshare(CLONE_NEWNET)` changes the namespace of the calling thread only, so it runs on a
/// short-lived thread of its own; the namespace outlives the thread through the fd.
pub fn new_netns() -> io::Result<OwnedFd> {
    std::thread::spawn(|| -> io::Result<OwnedFd> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "creating a network namespace (unshare CLONE_NEWNET) needs CAP_SYS_ADMIN: {e}"
                ),
            )
        })?;
        let f = std::fs::File::open("/proc/thread-self/ns/net")?;
        Ok(OwnedFd::from(f))
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// A path other processes (the daemon) can open to reach the namespace behind `fd`.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// Makes `cmd` enter the network namespace `ns` just before exec.
pub fn enter_before_exec(cmd: &mut std::process::Command, ns: &OwnedFd) -> io::Result<()> {
    let dup = ns.try_clone()?;
    // SAFETY: the closure runs in the forked child before exec and only calls setns(2), which
    // is async-signal-safe; `dup` is a valid fd owned by the closure for its whole life.
    unsafe {
        cmd.pre_exec(move || setns(dup.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
    }
    Ok(())
}
