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

/// Makes `cmd` enter the network namespace `ns` just before exec, and, with `resolv_conf`,
/// see that file at /etc/resolv.conf (bind-mounted in a private mount namespace of its own, so
/// nothing changes for anyone else).
pub fn enter_before_exec(
    cmd: &mut std::process::Command,
    ns: &OwnedFd,
    resolv_conf: Option<&std::path::Path>,
) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dup = ns.try_clone()?;
    // Every string the child needs is built here, before fork: after fork the child only makes
    // system calls.
    let bind = match resolv_conf {
        Some(p) => Some((
            CString::new(p.as_os_str().as_bytes())?,
            CString::new("/etc/resolv.conf")?,
            CString::new("/")?,
        )),
        None => None,
    };
    // SAFETY: the closure runs in the forked child before exec and only calls setns(2),
    // unshare(2) and mount(2), which are async-signal-safe; `dup` is a valid fd and the
    // CStrings are valid NUL-terminated strings owned by the closure for its whole life.
    unsafe {
        cmd.pre_exec(move || {
            setns(dup.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            if let Some((src, dst, root)) = &bind {
                unshare(CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
                // Stop our mounts propagating back to the host's mount namespace.
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}
