//! The one error type of `netns`: one variant per failing operation, each holding its source
//! error and the interface and namespace it was about.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::TapMode;

/// Why entering a namespace or configuring an interface failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// A namespace file could not be opened or examined.
    #[error("opening namespace file {}: {source}", .path.display())]
    OpenNamespace {
        /// The namespace file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// The path exists but is not a namespace file (not an nsfs file, a bind mount of one, or a
    /// `/proc/PID/ns/*` link).
    #[error("{} is not a namespace file (expected a {expected} namespace): {source}", .path.display())]
    NotANamespace {
        /// The file given.
        path: PathBuf,
        /// The namespace type that was expected.
        expected: &'static str,
        /// The error of the `NS_GET_NSTYPE` ioctl.
        source: io::Error,
    },

    /// The path is a namespace file of another type.
    #[error("{} is a {found} namespace, expected a {expected} namespace", .path.display())]
    WrongNamespaceType {
        /// The file given.
        path: PathBuf,
        /// The namespace type that was expected.
        expected: &'static str,
        /// The namespace type the file is.
        found: &'static str,
    },

    /// An interface name the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfname {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// An address and prefix length that do not form a network.
    #[error("invalid address {addr}/{prefix_len} for {ifname}")]
    InvalidAddress {
        /// The interface it was meant for.
        ifname: String,
        /// The address given.
        addr: IpAddr,
        /// The prefix length given.
        prefix_len: u8,
    },

    /// A gateway of another address family than the interface's address.
    #[error("gateway {gateway} of {ifname} is not of the same family as its address {addr}")]
    GatewayFamily {
        /// The interface.
        ifname: String,
        /// The interface's address.
        addr: IpAddr,
        /// The gateway given.
        gateway: IpAddr,
    },

    /// The helper thread that enters the namespace could not be started.
    #[error("starting the namespace helper thread for {}: {source}", .netns.display())]
    SpawnHelper {
        /// The target network namespace.
        netns: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// The helper thread ended without an answer (it panicked).
    #[error("the namespace helper for {} ended without answering", .netns.display())]
    HelperLost {
        /// The target network namespace.
        netns: PathBuf,
    },

    /// Creating the socketpair to the forked child failed.
    #[error("creating the socketpair for the namespace child of {}: {source}", .netns.display())]
    Socketpair {
        /// The target network namespace.
        netns: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// `fork()` failed.
    #[error("forking the namespace child for {}: {source}", .netns.display())]
    Fork {
        /// The target network namespace.
        netns: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// Receiving the file descriptors from the forked child failed, or its answer was malformed.
    #[error("receiving file descriptors from the namespace child of {}: {source}", .netns.display())]
    ReceiveFds {
        /// The target network namespace.
        netns: PathBuf,
        /// What went wrong.
        source: io::Error,
    },

    /// The forked child ended without reporting (it was killed).
    #[error("the namespace child for {} ended without answering ({status})", .netns.display())]
    ChildDied {
        /// The target network namespace.
        netns: PathBuf,
        /// How it ended, as `waitpid` said.
        status: String,
    },

    /// `setns` into the user namespace failed.
    #[error("joining user namespace {}: {source}", .userns.display())]
    JoinUserns {
        /// The user namespace file.
        userns: PathBuf,
        /// What the kernel said (EPERM: the daemon's user does not own that user namespace).
        source: io::Error,
    },

    /// `setns` into the network namespace failed.
    #[error("entering network namespace {}: {source}{}", .netns.display(), join_netns_hint(.userns.is_some(), .source))]
    JoinNetns {
        /// The network namespace file.
        netns: PathBuf,
        /// The user namespace joined first, if any.
        userns: Option<PathBuf>,
        /// What the kernel said.
        source: io::Error,
    },

    /// Creating the NETLINK_ROUTE socket inside the namespace failed.
    #[error("creating a netlink socket in {}: {source}", .netns.display())]
    NetlinkSocket {
        /// The network namespace.
        netns: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// The TUN/TAP clone device cannot be opened by the daemon's user.
    #[error(
        "creating TAP device {ifname} in {}: cannot open {device}: {source}; the daemon's user \
         needs read and write access to it (as root: chmod 0666 /dev/net/tun)",
        .netns.display()
    )]
    TunNotAccessible {
        /// The TAP's name.
        ifname: String,
        /// The network namespace.
        netns: PathBuf,
        /// The device with its mode and owner.
        device: String,
        /// What the kernel said.
        source: io::Error,
    },

    /// Creating, or reopening, the TAP device inside the namespace failed.
    #[error("{} TAP device {ifname} in {}: {source}", tap_action(*.mode), .netns.display())]
    CreateTap {
        /// The TAP's name.
        ifname: String,
        /// The network namespace.
        netns: PathBuf,
        /// How it was to be opened.
        mode: TapMode,
        /// What the kernel said (EPERM on /dev/net/tun: its mode is not 0666; EBUSY: a TAP of
        /// that name is already open; EINVAL: an interface of that name is no TAP).
        source: io::Error,
    },

    /// Reopening a persistent TAP failed because there is none of that name (the container,
    /// or someone in it, deleted it; a new one was not made in its place).
    #[error(
        "TAP {ifname} does not exist in {} (reopening a persistent TAP)",
        .netns.display()
    )]
    TapNotFound {
        /// The TAP's name.
        ifname: String,
        /// The network namespace.
        netns: PathBuf,
    },

    /// Creating a persistent TAP failed because an interface of that name exists (it is never
    /// taken over: it may be another endpoint's persistent TAP).
    #[error(
        "TAP {ifname} not created in {}: an interface of that name exists (creating a \
         persistent TAP)",
        .netns.display()
    )]
    TapExists {
        /// The TAP's name.
        ifname: String,
        /// The network namespace.
        netns: PathBuf,
    },

    /// Reading a process's start time (`/proc/PID/stat`) failed: the process is gone, or the
    /// file is unreadable.
    #[error("reading the start time of process {pid} (/proc/{pid}/stat): {source}")]
    ProcStat {
        /// The process.
        pid: u32,
        /// What went wrong.
        source: io::Error,
    },

    /// The process exited, or its pid was reused, while its namespace was being identified.
    #[error("process {pid} exited or was replaced while its network namespace was identified")]
    ProcessChanged {
        /// The process.
        pid: u32,
    },

    /// Creating or binding a socket inside the namespace failed.
    #[error("binding a {kind} socket to {addr} in {}: {source}", .netns.display())]
    BindSocket {
        /// "UDP" or "TCP".
        kind: &'static str,
        /// The address to bind.
        addr: SocketAddr,
        /// The network namespace.
        netns: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// A netlink connection needs a running tokio runtime.
    #[error("a netlink connection needs a tokio runtime: {source}")]
    NoRuntime {
        /// Tokio's explanation.
        source: tokio::runtime::TryCurrentError,
    },

    /// Opening a netlink connection in the daemon's own namespace failed.
    #[error("opening a netlink connection in the daemon's namespace: {source}")]
    HostNetlink {
        /// What the kernel said.
        source: io::Error,
    },

    /// Registering a netlink socket with the tokio runtime failed.
    #[error("registering the netlink socket of {} with tokio: {source}", .netns.display())]
    RegisterNetlink {
        /// The namespace the socket belongs to.
        netns: PathBuf,
        /// What went wrong.
        source: io::Error,
    },

    /// Looking up a link failed.
    #[error("looking up interface {ifname}: {source}")]
    GetLink {
        /// The interface.
        ifname: String,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// The link does not exist.
    #[error("interface {ifname} does not exist")]
    LinkNotFound {
        /// The interface.
        ifname: String,
    },

    /// Setting the MAC address or MTU of a link failed.
    #[error("setting MAC address and MTU of {ifname}: {source}")]
    SetLinkAttrs {
        /// The interface.
        ifname: String,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Bringing a link up failed.
    #[error("bringing {ifname} up: {source}")]
    LinkUp {
        /// The interface.
        ifname: String,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Listing the addresses of a namespace failed.
    #[error("listing addresses: {source}")]
    ListAddresses {
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Adding an address to a link failed.
    #[error("adding address {addr}/{prefix_len} to {ifname}: {source}")]
    AddAddress {
        /// The interface.
        ifname: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Adding the default route failed.
    #[error("adding default route via {gateway} dev {ifname}: {source}")]
    AddRoute {
        /// The interface.
        ifname: String,
        /// The gateway.
        gateway: IpAddr,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Listing the routes of a namespace failed.
    #[error("listing routes: {source}")]
    ListRoutes {
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// The daemon lacks the privilege to create a veth pair in its own namespace.
    #[error(
        "creating a veth needs CAP_NET_ADMIN in the daemon's namespace; use --kind tap \
         (creating {host} with peer {peer}: {source})"
    )]
    VethNeedsPrivilege {
        /// The host end's name.
        host: String,
        /// The peer's name in the target namespace.
        peer: String,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Creating a veth pair failed for another reason (EEXIST: one of the names is taken).
    #[error("creating veth {host} with peer {peer} in {}: {source}", .netns.display())]
    CreateVeth {
        /// The host end's name.
        host: String,
        /// The peer's name in the target namespace.
        peer: String,
        /// The target network namespace.
        netns: PathBuf,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },

    /// Opening an interface's `disable_ipv6` (or `autoconf`) inside its namespace failed.
    #[error("opening /proc/sys/net/ipv6/conf/{ifname}/{file} in {netns}: {source}")]
    Ipv6Switch {
        /// The interface.
        ifname: String,
        /// The setting's file.
        file: &'static str,
        /// The network namespace file.
        netns: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// Writing an endpoint interface's `disable_ipv6` (or `autoconf`) failed.
    #[error("turning {} {} on {ifname}: {source}",
        if *file == "autoconf" { "IPv6 address autoconfiguration" } else { "IPv6" },
        if *enable { "on" } else { "off" })]
    SetIpv6 {
        /// The interface.
        ifname: String,
        /// The setting's file.
        file: &'static str,
        /// On or off.
        enable: bool,
        /// What the kernel said.
        source: io::Error,
    },

    /// Writing `disable_ipv6` of the host end failed.
    #[error("disabling IPv6 on {ifname}: {source}")]
    DisableIpv6 {
        /// The interface.
        ifname: String,
        /// What the kernel said.
        source: io::Error,
    },

    /// Deleting a link failed.
    #[error("deleting interface {ifname}: {source}")]
    DeleteLink {
        /// The interface.
        ifname: String,
        /// The netlink error.
        source: Box<rtnetlink::Error>,
    },
}

/// The errno of a netlink error, if it is one.
pub(super) fn nl_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// Extra advice for the most common failure: an unprivileged daemon entering a namespace
/// without its user namespace.
fn join_netns_hint(joined_userns: bool, source: &io::Error) -> &'static str {
    if !joined_userns && source.raw_os_error() == Some(libc::EPERM) {
        " (an unprivileged daemon must join the container's user namespace first: \
         pass --userns PATH or --pid PID)"
    } else {
        ""
    }
}

/// What opening a TAP in `mode` does, for [`NetnsError::CreateTap`].
fn tap_action(mode: TapMode) -> &'static str {
    match mode {
        TapMode::Ephemeral => "creating",
        TapMode::Persistent => "creating persistent",
        TapMode::Reopen => "reopening persistent",
    }
}
