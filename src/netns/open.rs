//! Creating file descriptors inside a target network namespace: [`open_in_ns`].

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sys::{self, Failure, PreparedOp, Report, Step};
use super::{NetnsError, TapMode};

/// The namespaces of a container: its network namespace, and the user namespace that owns
/// it when that is not the daemon's own (rootless containers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsTarget {
    netns: PathBuf,
    userns: Option<PathBuf>,
}

/// The kinds of namespace files [`NsTarget`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NsKind {
    Net,
    User,
}

impl NsKind {
    fn flag(self) -> libc::c_int {
        match self {
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::User => libc::CLONE_NEWUSER,
        }
    }

    fn name(self) -> &'static str {
        match self {
            NsKind::Net => "network",
            NsKind::User => "user",
        }
    }
}

fn ns_type_name(flag: libc::c_int) -> &'static str {
    match flag {
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

/// Opens a namespace file and checks that it is a namespace of the expected kind.
pub(super) fn open_ns_file(path: &Path, kind: NsKind) -> Result<OwnedFd, NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::OpenNamespace {
        path: path.to_owned(),
        source,
    })?;
    let found = sys::ns_type(file.as_fd()).map_err(|source| NetnsError::NotANamespace {
        path: path.to_owned(),
        expected: kind.name(),
        source,
    })?;
    if found != kind.flag() {
        return Err(NetnsError::WrongNamespaceType {
            path: path.to_owned(),
            expected: kind.name(),
            found: ns_type_name(found),
        });
    }
    Ok(file.into())
}

/// (device, inode) of a namespace file: equal for two files of the same namespace.
fn ns_id(path: &Path) -> Result<(u64, u64), NetnsError> {
    let meta = std::fs::metadata(path).map_err(|source| NetnsError::OpenNamespace {
        path: path.to_owned(),
        source,
    })?;
    Ok((meta.dev(), meta.ino()))
}

const SELF_USERNS: &str = "/proc/self/ns/user";

impl NsTarget {
    /// The namespaces of process `pid`: `/proc/PID/ns/net`, plus `/proc/PID/ns/user` when
    /// that is not the daemon's own user namespace.
    ///
    /// The paths name the process, not the namespaces: if it exits (and its pid is reused)
    /// before [`open_in_ns`] runs, that call fails (or reaches the new process). Callers that
    /// need stability open the namespaces early or use bind-mounted paths.
    pub fn from_pid(pid: u32) -> Result<Self, NetnsError> {
        let base = PathBuf::from(format!("/proc/{pid}/ns"));
        let netns = base.join("net");
        let userns = base.join("user");
        open_ns_file(&netns, NsKind::Net)?;
        let userns = if ns_id(&userns)? == ns_id(Path::new(SELF_USERNS))? {
            None
        } else {
            open_ns_file(&userns, NsKind::User)?;
            Some(userns)
        };
        Ok(NsTarget { netns, userns })
    }

    /// A network namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount of one)
    /// and optionally the user namespace that owns it.
    ///
    /// A `userns` that is the daemon's own user namespace is dropped: joining it is a no-op
    /// (and the kernel refuses it with EINVAL).
    pub fn from_paths(
        netns: impl Into<PathBuf>,
        userns: Option<PathBuf>,
    ) -> Result<Self, NetnsError> {
        let netns = netns.into();
        open_ns_file(&netns, NsKind::Net)?;
        let userns = match userns {
            Some(path) => {
                open_ns_file(&path, NsKind::User)?;
                if ns_id(&path)? == ns_id(Path::new(SELF_USERNS))? {
                    None
                } else {
                    Some(path)
                }
            }
            None => None,
        };
        Ok(NsTarget { netns, userns })
    }

    /// The network namespace file.
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// The user namespace file, if the target needs one joined.
    pub fn userns(&self) -> Option<&Path> {
        self.userns.as_deref()
    }

    /// Opens the network namespace file (for `IFLA_NET_NS_FD`, e.g. moving a link there).
    pub fn open_netns(&self) -> Result<OwnedFd, NetnsError> {
        open_ns_file(&self.netns, NsKind::Net)
    }
}

/// One file descriptor to create inside the namespace, besides the netlink socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NsOpen {
    /// A TAP device named `ifname`, opened `O_NONBLOCK`, without the packet-information
    /// prefix, with the virtio-net header when `vnet_hdr` is set (offloads: the caller sets
    /// the header size and TUNSETOFFLOAD on the fd, e.g. with
    /// `netyard_switch::sys::TapPort::from_fd`). `mode` decides the device's lifetime:
    ///
    /// - [`TapMode::Ephemeral`]: created, or attached to if a TAP of that name exists and is
    ///   not open; it lives as long as the descriptor.
    /// - [`TapMode::Persistent`]: created exclusively (an existing interface of that name is
    ///   [`NetnsError::TapExists`]), owned by the daemon's user as seen inside the namespace's
    ///   user namespace, and persistent: it outlives the descriptor, so a restarted daemon
    ///   can reopen it.
    /// - [`TapMode::Reopen`]: attached to an existing persistent TAP; a missing one is
    ///   [`NetnsError::TapNotFound`], never created.
    Tap {
        /// The interface name inside the namespace.
        ifname: String,
        /// Open with `IFF_VNET_HDR`.
        vnet_hdr: bool,
        /// Create, create persistent, or reopen.
        mode: TapMode,
    },
    /// A non-blocking UDP socket bound to the address (e.g. `127.0.0.11:53` for the DNS
    /// resolver; the address must exist, so bring `lo` up first).
    UdpBind(SocketAddr),
    /// A non-blocking TCP socket bound to the address (with `SO_REUSEADDR`) and listening.
    TcpListen(SocketAddr),
    /// Another NETLINK_ROUTE socket, kept apart from the configuring one (whose rtnetlink
    /// connection owns everything it reads): a TAP's device drop counters are read through
    /// it ([`LinkDropReader`](super::LinkDropReader)).
    Netlink,
    /// `/proc/sys/net/ipv6/conf/IFNAME/KNOB` of the namespace, opened for writing (the
    /// interface must exist: put this item after the TAP, or open it after the veth). The
    /// descriptor stays bound to the namespace's interface, so the daemon writes it later
    /// ([`set_ipv6`](super::set_ipv6)), from its own thread.
    Ipv6Switch {
        /// The interface name inside the namespace.
        ifname: String,
        /// Which of its settings.
        knob: Ipv6Knob,
    },
}

/// A per-interface IPv6 setting an [`NsOpen::Ipv6Switch`] descriptor writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Knob {
    /// `disable_ipv6`: IPv6 on the interface at all.
    Disable,
    /// `autoconf`: whether a Router Advertisement's prefix adds a SLAAC address.
    Autoconf,
}

impl Ipv6Knob {
    /// The file's name under `/proc/sys/net/ipv6/conf/IFNAME/`.
    pub fn file(self) -> &'static str {
        match self {
            Ipv6Knob::Disable => "disable_ipv6",
            Ipv6Knob::Autoconf => "autoconf",
        }
    }
}

/// What [`open_in_ns`] should create: the netlink socket always, then `items` in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsOpenRequest {
    /// The descriptors to create; [`NsFds::fds`] answers them in the same order.
    pub items: Vec<NsOpen>,
}

impl NsOpenRequest {
    /// Only the netlink socket.
    pub fn netlink_only() -> Self {
        NsOpenRequest::default()
    }

    /// The netlink socket and an ephemeral TAP device (it dies with its descriptor).
    pub fn tap(ifname: impl Into<String>, vnet_hdr: bool) -> Self {
        NsOpenRequest::tap_mode(ifname, vnet_hdr, TapMode::Ephemeral)
    }

    /// The netlink socket and a TAP device opened as `mode` says (see [`NsOpen::Tap`]).
    pub fn tap_mode(ifname: impl Into<String>, vnet_hdr: bool, mode: TapMode) -> Self {
        NsOpenRequest {
            items: vec![NsOpen::Tap {
                ifname: ifname.into(),
                vnet_hdr,
                mode,
            }],
        }
    }

    /// Adds an item.
    #[must_use]
    pub fn with(mut self, item: NsOpen) -> Self {
        self.items.push(item);
        self
    }
}

/// A NETLINK_ROUTE socket created inside a namespace. It stays bound to that namespace and
/// to the credentials it was created with, wherever it is used from: turn it into an
/// rtnetlink [`Handle`](rtnetlink::Handle) with [`NetlinkFd::into_handle`] to configure the
/// namespace from the daemon's own runtime.
#[derive(Debug)]
pub struct NetlinkFd {
    fd: OwnedFd,
    netns: PathBuf,
}

impl NetlinkFd {
    /// The namespace file it was created in (for error messages).
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    pub(super) fn into_parts(self) -> (OwnedFd, PathBuf) {
        (self.fd, self.netns)
    }
}

impl AsFd for NetlinkFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The descriptors [`open_in_ns`] created.
#[derive(Debug)]
pub struct NsFds {
    /// The NETLINK_ROUTE socket of the namespace.
    pub netlink: NetlinkFd,
    /// One descriptor per [`NsOpenRequest::items`] entry, in the same order.
    pub fds: Vec<OwnedFd>,
}

/// Checks what the kernel's `dev_valid_name` checks, so a bad name fails with a clear
/// message instead of EINVAL.
pub(super) fn validate_ifname(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() >= sys::IFNAMSIZ {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("contains '/', ':', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetnsError::InvalidIfname {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn prepare(req: &NsOpenRequest) -> Result<Vec<PreparedOp>, NetnsError> {
    req.items
        .iter()
        .map(|item| match item {
            NsOpen::Tap {
                ifname,
                vnet_hdr,
                mode,
            } => {
                validate_ifname(ifname)?;
                Ok(PreparedOp::Tap {
                    name: ifname.clone(),
                    vnet_hdr: *vnet_hdr,
                    mode: *mode,
                })
            }
            NsOpen::UdpBind(addr) => Ok(PreparedOp::Udp((*addr).into())),
            NsOpen::TcpListen(addr) => Ok(PreparedOp::Tcp((*addr).into())),
            NsOpen::Netlink => Ok(PreparedOp::Netlink),
            NsOpen::Ipv6Switch { ifname, knob } => {
                validate_ifname(ifname)?;
                // validate_ifname refuses NUL, so the path has none.
                let path = format!("/proc/sys/net/ipv6/conf/{ifname}/{}", knob.file());
                std::ffi::CString::new(path)
                    .map(PreparedOp::WriteFile)
                    .map_err(|_| NetnsError::InvalidIfname {
                        name: ifname.clone(),
                        reason: "contains '/', ':', NUL or whitespace",
                    })
            }
        })
        .collect()
}

/// Creates file descriptors inside `target`'s network namespace: always a NETLINK_ROUTE
/// socket, then one per item of `req`.
///
/// Without a user namespace, a dedicated thread (never a tokio worker, never the blocking
/// pool) enters the network namespace, creates the descriptors and exits.
///
/// With a user namespace (rootless), the kernel refuses `setns(CLONE_NEWUSER)` to a
/// multi-threaded process, so that thread forks a child which joins the user namespace,
/// then the network namespace, creates the descriptors, passes them back with SCM_RIGHTS
/// and exits; the thread reaps it. This is how slirp4netns does it. Everything the child
/// needs is prepared before the fork (see `sys`).
///
/// The descriptors keep the namespace they were created in: a TAP fd is the TAP, the netlink
/// socket configures that namespace. All are close-on-exec and non-blocking.
pub async fn open_in_ns(target: &NsTarget, req: NsOpenRequest) -> Result<NsFds, NetnsError> {
    let ops = prepare(&req)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let helper_target = target.clone();
    std::thread::Builder::new()
        .name("netyard-netns".into())
        .spawn(move || {
            let result = open_on_this_thread(&helper_target, &req, &ops);
            // The receiver may be gone (the caller was cancelled): the fds then close here.
            let _ = tx.send(result);
        })
        .map_err(|source| NetnsError::SpawnHelper {
            netns: target.netns.clone(),
            source,
        })?;
    rx.await.map_err(|_| NetnsError::HelperLost {
        netns: target.netns.clone(),
    })?
}

/// Runs on the helper thread, which exits afterwards (it may have changed namespace).
fn open_on_this_thread(
    target: &NsTarget,
    req: &NsOpenRequest,
    ops: &[PreparedOp],
) -> Result<NsFds, NetnsError> {
    let netns = open_ns_file(&target.netns, NsKind::Net)?;
    let fds = match &target.userns {
        None => {
            let mut out: Vec<RawFd> = vec![-1; ops.len() + 1];
            sys::run_in_ns(None, netns.as_fd(), ops, &mut out)
                .map_err(|f| failure_error(target, req, f))?;
            sys::adopt(&out)
        }
        Some(userns_path) => {
            let userns = open_ns_file(userns_path, NsKind::User)?;
            open_via_child(target, req, ops, userns.as_fd(), netns.as_fd())?
        }
    };
    let mut fds = fds.into_iter();
    let netlink = fds.next().ok_or_else(|| NetnsError::ReceiveFds {
        netns: target.netns.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no netlink socket"),
    })?;
    Ok(NsFds {
        netlink: NetlinkFd {
            fd: netlink,
            netns: target.netns.clone(),
        },
        fds: fds.collect(),
    })
}

/// The fork path: see [`open_in_ns`].
fn open_via_child(
    target: &NsTarget,
    req: &NsOpenRequest,
    ops: &[PreparedOp],
    userns: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
) -> Result<Vec<OwnedFd>, NetnsError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    let n = ops.len() + 1;
    let (parent_end, child_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| NetnsError::Socketpair {
        netns: target.netns.clone(),
        source: e.into(),
    })?;
    let mut out: Vec<RawFd> = vec![-1; n];
    let mut cmsg = sys::CmsgBuf::new(n);
    let pid = sys::spawn_child(userns, netns, ops, &mut out, child_end.as_fd(), &mut cmsg)
        .map_err(|source| NetnsError::Fork {
            netns: target.netns.clone(),
            source,
        })?;
    // Only the child holds the other end now: its exit ends the parent's recvmsg.
    drop(child_end);
    let report = sys::receive_report(parent_end.as_fd(), n, &mut cmsg);
    let status = sys::reap(pid);
    let report = report.map_err(|source| NetnsError::ReceiveFds {
        netns: target.netns.clone(),
        source,
    })?;
    match report {
        Report::Opened(fds) => Ok(fds),
        Report::Failed(f) => Err(failure_error(target, req, f)),
        Report::Nothing => Err(NetnsError::ChildDied {
            netns: target.netns.clone(),
            status: match status {
                Ok(Some(s)) => format!("{s:?}"),
                Ok(None) => "already reaped".to_owned(),
                Err(e) => format!("waitpid: {e}"),
            },
        }),
    }
}

/// The error for a failed step, with its context.
fn failure_error(target: &NsTarget, req: &NsOpenRequest, f: Failure) -> NetnsError {
    let netns = target.netns.clone();
    let source = f.io_error();
    match f.step {
        Step::JoinUserns => NetnsError::JoinUserns {
            userns: target.userns.clone().unwrap_or_default(),
            source,
        },
        Step::JoinNetns => NetnsError::JoinNetns {
            netns,
            userns: target.userns.clone(),
            source,
        },
        Step::Netlink => NetnsError::NetlinkSocket { netns, source },
        Step::Item(i) => match req.items.get(i) {
            Some(NsOpen::Tap { ifname, mode, .. }) => tap_error(ifname, *mode, netns, source),
            Some(NsOpen::UdpBind(addr)) => NetnsError::BindSocket {
                kind: "UDP",
                addr: *addr,
                netns,
                source,
            },
            Some(NsOpen::TcpListen(addr)) => NetnsError::BindSocket {
                kind: "TCP",
                addr: *addr,
                netns,
                source,
            },
            Some(NsOpen::Netlink) => NetnsError::NetlinkSocket { netns, source },
            Some(NsOpen::Ipv6Switch { ifname, knob }) => NetnsError::Ipv6Switch {
                ifname: ifname.clone(),
                file: knob.file(),
                netns,
                source,
            },
            None => NetnsError::ReceiveFds {
                netns,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("failure reported for unknown item {i}"),
                ),
            },
        },
    }
}

/// `/dev/net/tun` with its mode and owner, as a refusal to open it should say.
fn tun_device_mode() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/dev/net/tun") {
        Ok(m) => format!(
            "/dev/net/tun (mode {:04o}, owner uid {} gid {})",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Err(e) => format!("/dev/net/tun ({e})"),
    }
}

/// The error for a TAP that could not be opened: the two expected refusals get their own
/// variants, anything else says which mode failed.
fn tap_error(ifname: &str, mode: TapMode, netns: PathBuf, source: std::io::Error) -> NetnsError {
    let ifname = ifname.to_owned();
    match (mode, source.raw_os_error()) {
        // open_tap_raw's own answer for a name with no persistent TAP behind it.
        (TapMode::Reopen, Some(libc::ENODEV)) => NetnsError::TapNotFound { ifname, netns },
        // IFF_TUN_EXCL: the only EBUSY of creating a device.
        (TapMode::Persistent, Some(libc::EBUSY)) => NetnsError::TapExists { ifname, netns },
        // Opening the clone device itself was refused: say which device and why.
        (_, Some(libc::EACCES)) => NetnsError::TunNotAccessible {
            ifname,
            netns,
            device: tun_device_mode(),
            source,
        },
        _ => NetnsError::CreateTap {
            ifname,
            netns,
            mode,
            source,
        },
    }
}
