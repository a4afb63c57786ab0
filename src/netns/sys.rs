//! The raw system calls of namespace entry. Every `unsafe` block of `netns` lives here.
//!
//! [`run_in_ns`] is written so that it may run in the child of a `fork()` of a multi-threaded
//! process. Between `fork` and `_exit` such a child may only call async-signal-safe functions:
//! another thread may have held the allocator's lock at the moment of the fork, so one `malloc`
//! can deadlock the child. Hence everything it needs is prepared before the fork
//! ([`PreparedOp`], the output array, the control-message buffer), and the code reachable from
//! [`spawn_child`] only makes system calls, writes into those buffers, and never allocates,
//! locks or panics (no indexing, no `unwrap`, no formatting). The TAP itself is opened by
//! `netyard_switch::sys::tap::open_tap_raw`, which its crate documents as allocation-free for
//! exactly this use.

use std::io::{self, IoSliceMut};
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr;

use libc::c_int;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrLike,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::TapMode;

/// Room for an interface name and its terminating NUL, as the kernel's `IFNAMSIZ`.
pub(super) const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// Backlog of listening TCP sockets.
const LISTEN_BACKLOG: c_int = 128;

/// One file descriptor to create inside the namespace, in a form usable without allocating.
#[derive(Clone)]
pub(super) enum PreparedOp {
    /// A TAP device: its name (already validated, so opening it cannot fail on the name and
    /// build an allocated error), whether it carries the virtio-net header, and how to open
    /// it.
    Tap {
        name: String,
        vnet_hdr: bool,
        mode: TapMode,
    },
    /// A UDP socket bound to the address.
    Udp(RawAddr),
    /// A TCP socket bound to the address, listening.
    Tcp(RawAddr),
    /// A NETLINK_ROUTE socket.
    Netlink,
    /// A file opened for writing (a sysctl of the namespace: procfs binds `/proc/sys/net` to
    /// the opener's namespace, and the descriptor keeps it). The path is a `CString` made
    /// before any fork, so opening it allocates nothing.
    WriteFile(std::ffi::CString),
}

/// A socket address ready to be passed to `bind(2)`.
#[derive(Clone, Copy)]
pub(super) enum RawAddr {
    V4(SockaddrIn),
    V6(SockaddrIn6),
}

impl From<std::net::SocketAddr> for RawAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        match addr {
            std::net::SocketAddr::V4(a) => RawAddr::V4(SockaddrIn::from(a)),
            std::net::SocketAddr::V6(a) => RawAddr::V6(SockaddrIn6::from(a)),
        }
    }
}

/// Which step of [`run_in_ns`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    JoinUserns,
    JoinNetns,
    Netlink,
    /// The request item with this index.
    Item(usize),
}

impl Step {
    fn code(self) -> u32 {
        match self {
            Step::JoinUserns => 0,
            Step::JoinNetns => 1,
            Step::Netlink => 2,
            Step::Item(i) => u32::try_from(i).map_or(u32::MAX, |i| i.saturating_add(3)),
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Step::JoinUserns),
            1 => Some(Step::JoinNetns),
            2 => Some(Step::Netlink),
            n => usize::try_from(n - 3).ok().map(Step::Item),
        }
    }
}

/// A failed step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failure {
    pub step: Step,
    pub errno: i32,
}

impl Failure {
    pub(super) fn io_error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

/// Joins `userns` (if any) and `netns`, then creates a NETLINK_ROUTE socket into `out[0]` and
/// the file descriptor of `ops[i]` into `out[i + 1]`.
///
/// Async-signal-safe (see the module documentation). On failure the descriptors already
/// created are closed. The calling thread stays in the namespaces: call it only on a thread
/// (or in a process) that exits afterwards.
pub(super) fn run_in_ns(
    userns: Option<BorrowedFd<'_>>,
    netns: BorrowedFd<'_>,
    ops: &[PreparedOp],
    out: &mut [RawFd],
) -> Result<(), Failure> {
    let fail = |step| Failure {
        step,
        errno: Errno::last_raw(),
    };
    if out.len() != ops.len() + 1 {
        return Err(Failure {
            step: Step::Netlink,
            errno: libc::EINVAL,
        });
    }
    if let Some(userns) = userns {
        // SAFETY: setns takes a file descriptor, valid for the call since it is borrowed, and
        // a flag; no memory is passed. The caller is single-threaded (a forked child), which
        // the kernel requires for joining a user namespace.
        if unsafe { libc::setns(userns.as_raw_fd(), libc::CLONE_NEWUSER) } < 0 {
            return Err(fail(Step::JoinUserns));
        }
    }
    // SAFETY: as above; only this thread changes namespace, and it exits afterwards.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(fail(Step::JoinNetns));
    }

    let mut opened = 0usize;
    let mut result = Ok(());
    let steps = std::iter::once(None).chain(ops.iter().map(Some));
    for (i, (slot, op)) in out.iter_mut().zip(steps).enumerate() {
        let fd = match op {
            None => open_netlink().map_err(|errno| Failure {
                step: Step::Netlink,
                errno,
            }),
            Some(op) => open_op(op).map_err(|errno| Failure {
                step: Step::Item(i.saturating_sub(1)),
                errno,
            }),
        };
        match fd {
            Ok(fd) => {
                *slot = fd;
                opened += 1;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_err() {
        for fd in out.iter_mut().take(opened) {
            close(*fd);
            *fd = -1;
        }
    }
    result
}

/// The errno of the last failed call, for the `map_err`-free style of the functions below.
fn errno() -> i32 {
    Errno::last_raw()
}

fn close(fd: RawFd) {
    // SAFETY: fd was created by this module and not handed out yet; closing it once is sound.
    unsafe { libc::close(fd) };
}

/// A NETLINK_ROUTE socket in the current network namespace.
fn open_netlink() -> Result<RawFd, i32> {
    // SAFETY: socket takes only integers.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

fn open_op(op: &PreparedOp) -> Result<RawFd, i32> {
    match op {
        PreparedOp::Tap {
            name,
            vnet_hdr,
            mode,
        } => open_tap(name, *vnet_hdr, *mode),
        PreparedOp::Udp(addr) => open_socket(addr, false),
        PreparedOp::Tcp(addr) => open_socket(addr, true),
        PreparedOp::Netlink => open_netlink(),
        PreparedOp::WriteFile(path) => open_write(path),
    }
}

/// `path` opened write-only in the current namespace.
fn open_write(path: &std::ffi::CStr) -> Result<RawFd, i32> {
    // SAFETY: path is a NUL-terminated string owned by the caller's PreparedOp, valid for the
    // call; open takes no other memory.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// open(/dev/net/tun) + TUNSETIFF (+ TUNSETOWNER and TUNSETPERSIST for a persistent TAP), by
/// the switch crate's allocation-free `open_tap_raw` (documented fit for a forked child):
/// creates, creates persistent, or reopens the TAP named `name` in the current network
/// namespace. In the forked child, the owner it sets is the daemon's uid as mapped in the
/// container's user namespace, which is what lets a later child reopen it.
fn open_tap(name: &str, vnet_hdr: bool, mode: TapMode) -> Result<RawFd, i32> {
    match netyard_switch::sys::tap::open_tap_raw(name, vnet_hdr, mode) {
        Ok((fd, _name)) => Ok(fd.into_raw_fd()),
        // Kernel errors are plain errnos (no allocation); the name was validated before.
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

fn set_int_opt(fd: RawFd, level: c_int, name: c_int, value: c_int) -> Result<(), i32> {
    // SAFETY: the option value is an int on this stack frame and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::addr_of!(value).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A UDP socket, or a listening TCP socket, bound to `addr` in the current namespace.
fn open_socket(addr: &RawAddr, tcp: bool) -> Result<RawFd, i32> {
    let (family, sa, len) = match addr {
        RawAddr::V4(a) => (libc::AF_INET, a.as_ptr(), a.len()),
        RawAddr::V6(a) => (libc::AF_INET6, a.as_ptr(), a.len()),
    };
    let ty = if tcp {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: socket takes only integers.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(errno());
    }
    let setup = || -> Result<(), i32> {
        if family == libc::AF_INET6 {
            set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        if tcp {
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        // SAFETY: sa points to a sockaddr of len bytes owned by the caller's PreparedOp.
        if unsafe { libc::bind(fd, sa, len) } < 0 {
            return Err(errno());
        }
        // SAFETY: listen takes only integers.
        if tcp && unsafe { libc::listen(fd, LISTEN_BACKLOG) } < 0 {
            return Err(errno());
        }
        Ok(())
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Takes ownership of descriptors [`run_in_ns`] created on this thread.
pub(super) fn adopt(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        .filter(|fd| **fd >= 0)
        // SAFETY: each fd was just created by run_in_ns in this process and nothing else owns
        // or closes it; it is adopted exactly once.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) })
        .collect()
}

/// A control-message buffer, aligned for `cmsghdr`, with room for `n` descriptors.
pub(super) struct CmsgBuf {
    words: Vec<u64>,
    len: usize,
}

impl CmsgBuf {
    pub(super) fn new(n: usize) -> Self {
        let payload = u32::try_from(n * size_of::<RawFd>()).unwrap_or(u32::MAX);
        // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
        let len = unsafe { libc::CMSG_SPACE(payload) } as usize;
        CmsgBuf {
            words: vec![0; len.div_ceil(size_of::<u64>())],
            len,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the pointer and length stay within `words` (len <= words.len() * 8), u8 has
        // no alignment or validity requirement, and the borrow of self keeps words alive and
        // unaliased for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// Length of the child's report: status, step, errno.
const REPORT_LEN: usize = 12;

/// Forks a child that runs [`run_in_ns`] and sends the result over `chan` (descriptors as
/// SCM_RIGHTS), then `_exit`s. Returns the child's pid.
///
/// All arguments are prepared by the caller before the fork; the child touches nothing else.
pub(super) fn spawn_child(
    userns: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
    ops: &[PreparedOp],
    out: &mut [RawFd],
    chan: BorrowedFd<'_>,
    cmsg: &mut CmsgBuf,
) -> io::Result<Pid> {
    // SAFETY: in the child, only child_main runs, and it calls only async-signal-safe
    // functions on memory prepared before the fork (see the module documentation), then
    // _exit()s without returning into the caller's code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child_main(userns, netns, ops, out, chan, cmsg);
    }
    Ok(Pid::from_raw(pid))
}

/// The forked child: joins the namespaces, creates the descriptors, reports, exits.
fn child_main(
    userns: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
    ops: &[PreparedOp],
    out: &mut [RawFd],
    chan: BorrowedFd<'_>,
    cmsg: &mut CmsgBuf,
) -> ! {
    let result = run_in_ns(Some(userns), netns, ops, out);
    let (status, step, err) = match result {
        Ok(()) => (0u32, 0u32, 0i32),
        Err(f) => (1, f.step.code(), f.errno),
    };
    let mut data = [0u8; REPORT_LEN];
    for (dst, src) in data.iter_mut().zip(
        status
            .to_ne_bytes()
            .into_iter()
            .chain(step.to_ne_bytes())
            .chain(err.to_ne_bytes()),
    ) {
        *dst = src;
    }
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: REPORT_LEN,
    };
    // SAFETY: msghdr is plain old data; all-zero is "no address, no iovec, no control".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = ptr::addr_of_mut!(iov);
    msg.msg_iovlen = 1;
    if result.is_ok() {
        let fds_len = std::mem::size_of_val(out);
        let control = cmsg.bytes_mut();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: msg_control points to `control`, CMSG_SPACE(fds_len) bytes long and aligned
        // for cmsghdr (CmsgBuf), so CMSG_FIRSTHDR is non-null (checked anyway) and the header
        // plus fds_len bytes of data after CMSG_DATA lie inside it. `out` holds fds_len bytes.
        let ok = unsafe {
            let hdr = libc::CMSG_FIRSTHDR(ptr::addr_of!(msg));
            if hdr.is_null() {
                false
            } else {
                (*hdr).cmsg_level = libc::SOL_SOCKET;
                (*hdr).cmsg_type = libc::SCM_RIGHTS;
                (*hdr).cmsg_len = libc::CMSG_LEN(fds_len as u32) as _;
                ptr::copy_nonoverlapping(out.as_ptr().cast::<u8>(), libc::CMSG_DATA(hdr), fds_len);
                true
            }
        };
        if !ok {
            // SAFETY: _exit ends the child at once, running no destructor or atexit handler.
            unsafe { libc::_exit(3) };
        }
    }
    // SAFETY: msg points to iov, data and the control buffer, all alive on this frame.
    let sent = unsafe { libc::sendmsg(chan.as_raw_fd(), ptr::addr_of!(msg), libc::MSG_NOSIGNAL) };
    // SAFETY: _exit ends the child at once, running no destructor or atexit handler (those
    // belong to the parent's copy of the state).
    unsafe { libc::_exit(if sent < 0 { 2 } else { 0 }) }
}

/// What the child reported: descriptors, or the step that failed.
pub(super) enum Report {
    Opened(Vec<OwnedFd>),
    Failed(Failure),
    /// The child closed the channel without a word (it died).
    Nothing,
}

/// Receives the child's report (blocking).
pub(super) fn receive_report(
    chan: BorrowedFd<'_>,
    expected: usize,
    cmsg: &mut CmsgBuf,
) -> io::Result<Report> {
    let mut data = [0u8; REPORT_LEN];
    let (bytes, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut data)];
        match recvmsg::<()>(
            chan.as_raw_fd(),
            &mut iov,
            Some(cmsg.bytes_mut()),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: the kernel just installed these descriptors in this process
                        // for this message; nothing else knows them, each is adopted once.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if bytes == 0 {
        return Ok(Report::Nothing);
    }
    if bytes != REPORT_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("report of {bytes} bytes, expected {REPORT_LEN}"),
        ));
    }
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&data[i * 4..i * 4 + 4]);
        b
    };
    let status = u32::from_ne_bytes(word(0));
    let step = u32::from_ne_bytes(word(1));
    let err = i32::from_ne_bytes(word(2));
    if status != 0 {
        let step = Step::from_code(step).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("unknown step {step}"))
        })?;
        return Ok(Report::Failed(Failure { step, errno: err }));
    }
    if fds.len() != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received {} descriptors, expected {expected}", fds.len()),
        ));
    }
    Ok(Report::Opened(fds))
}

/// Waits for the child (blocking). `None` when it was already reaped elsewhere (SIGCHLD
/// ignored makes the kernel reap it: ECHILD).
pub(super) fn reap(pid: Pid) -> io::Result<Option<WaitStatus>> {
    loop {
        match waitpid(pid, None) {
            Ok(status) => return Ok(Some(status)),
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The type of the namespace behind `fd` (`CLONE_NEWNET`, `CLONE_NEWUSER`, ...).
pub(super) fn ns_type(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns an int; fd is valid (borrowed).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps a NETLINK_ROUTE socket for netlink-proto.
///
/// Must run inside a tokio runtime with IO enabled: `TokioSocket::from_raw_fd` panics
/// otherwise (the caller checks that a runtime is there; every runtime of netyard enables IO).
pub(super) fn tokio_netlink_socket(fd: OwnedFd) -> rtnetlink::sys::TokioSocket {
    // SAFETY: fd is an owned NETLINK_ROUTE socket (NetlinkFd only wraps those, created
    // non-blocking by open_netlink); ownership passes to the TokioSocket, which closes it on
    // drop.
    unsafe { <rtnetlink::sys::TokioSocket as FromRawFd>::from_raw_fd(fd.into_raw_fd()) }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when process `pid` exits (Linux 5.3).
/// nix has no wrapper for it yet.
pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours; the
    // return value is checked before it is used as a descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "descriptor out of range"))?;
    // SAFETY: `fd` was just returned by a successful pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers an owned descriptor with tokio's reactor for readability.
pub(super) fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd` for its whole life, so the descriptor stays open and names
    // the same file description until the AsyncFd is dropped; OwnedFd::as_raw_fd always
    // returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
