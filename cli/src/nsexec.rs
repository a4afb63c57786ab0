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

/// A fresh network namespace with `lo` up and nothing else (`run --network none`): the
/// namespace's netlink socket is made on the same short-lived thread, then used from the
/// runtime.
pub async fn new_netns_lo_up() -> io::Result<OwnedFd> {
    let rt = tokio::runtime::Handle::current();
    let (ns, conn, handle) = std::thread::spawn(move || {
        // rtnetlink registers its socket with the runtime: enter it on this thread.
        let _rt = rt.enter();
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "creating a network namespace (unshare CLONE_NEWNET) needs CAP_SYS_ADMIN: {e}"
                ),
            )
        })?;
        let f = std::fs::File::open("/proc/thread-self/ns/net")?;
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok::<_, io::Error>((OwnedFd::from(f), conn, handle))
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))??;
    let task = tokio::spawn(conn);
    let up = handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_name("lo").up().build())
        .execute()
        .await;
    task.abort();
    up.map_err(|e| io::Error::other(format!("setting lo up: {e}")))?;
    Ok(ns)
}

/// The daemon's process id as seen from here: the API socket's peer credentials
/// (SO_PEERCRED), which the kernel gives in the caller's PID namespace, so it is right even
/// when the daemon was started in another network or mount namespace. (An API field would be
/// the daemon's own view of its pid, wrong from another PID namespace.)
pub async fn daemon_pid(api: &std::path::Path) -> io::Result<u32> {
    let s = tokio::net::UnixStream::connect(api)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("connecting to {}: {e}", api.display())))?;
    let pid = s.peer_cred()?.pid().unwrap_or(0);
    u32::try_from(pid).ok().filter(|p| *p != 0).ok_or_else(|| {
        io::Error::other(format!(
            "the daemon behind {} is not visible from this PID namespace",
            api.display()
        ))
    })
}

/// The daemon's network namespace (`run --network host`).
pub fn daemon_netns(daemon_pid: u32) -> io::Result<OwnedFd> {
    let p = format!("/proc/{daemon_pid}/ns/net");
    std::fs::File::open(&p)
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {p}: {e}")))
}

/// Opens the namespace file `path` as the daemon sees it (through its root directory, so a
/// bind mount or `/proc` path of the daemon's mount namespace resolves as it does there) and
/// checks it is the namespace `(dev, ino)` the daemon recorded.
pub fn open_daemon_path(daemon_pid: u32, path: &str, dev: u64, ino: u64) -> io::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let through_root = format!("/proc/{daemon_pid}/root{path}");
    let f = std::fs::File::open(&through_root)
        .or_else(|_| std::fs::File::open(path))
        .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
    let m = f.metadata()?;
    if (m.dev(), m.ino()) != (dev, ino) {
        return Err(io::Error::other(format!(
            "{path} is no longer the namespace the daemon recorded"
        )));
    }
    Ok(OwnedFd::from(f))
}
