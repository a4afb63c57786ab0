//! Entering container namespaces and configuring their interfaces.
//!
//! The daemon never moves one of its tokio workers into another namespace. Instead,
//! [`open_in_ns`] creates file descriptors *inside* the target namespace on a throw-away
//! thread (or, when a user namespace must be joined, in a forked child) and hands them back:
//!
//! - a NETLINK_ROUTE socket ([`NetlinkFd`]). A netlink socket stays bound to the namespace it
//!   was created in and carries the credentials of its creator, so the daemon configures the
//!   container's namespace from its own runtime through it ([`NetlinkFd::into_handle`], then
//!   [`configure_endpoint`]). In the rootless case the kernel checks both the socket's
//!   credentials (made inside the container's user namespace, so privileged there) and the
//!   sender's (the daemon's user owns that user namespace, so it is privileged there too).
//! - optionally a TAP device ([`NsOpen::Tap`]), which lives as long as its descriptor, or,
//!   made [`TapMode::Persistent`], until it is deleted or its namespace dies, so that a
//!   restarted daemon can [`TapMode::Reopen`] it by name; and sockets bound inside the
//!   namespace ([`NsOpen::UdpBind`], [`NsOpen::TcpListen`], for the DNS resolver).
//!
//! veth pairs ([`create_veth`]) are made from the daemon's namespace, with the peer created
//! directly in the target; they need CAP_NET_ADMIN there, so a rootless daemon uses TAPs.
//!
//! Across a daemon restart, [`identify`] (at attach) and [`check`] (at recovery) tell whether
//! a recorded netns path still leads to the same namespace, so a recycled pid or a reused name
//! is never taken for the old container.
//!
//! Every `unsafe` block of this module is in `sys`.
//!
//! Not supported: namespaces given by a pidfd (pass `/proc/PID/ns/*` or a bind mount).

mod config;
mod error;
mod identity;
mod linkstats;
mod open;
mod sys;

#[cfg(test)]
mod tests;

pub use config::{
    add_address6, configure_endpoint, create_veth, create_veth_for_runtime, delete_link,
    host_handle, host_routes, host_uplink, kernel_has_ipv6, link_exists, link_index, link_state,
    set_ipv6, set_mac, set_routes, swap_default_route, underlay_mtu, view_link, HostUplink,
    LinkView,
};
pub use error::NetnsError;
pub use identity::{check, exit_watch, identify, start_time, wait_exit, NsIdentity, NsStatus};
pub use linkstats::LinkDropReader;
/// How a TAP is opened ([`NsOpen::Tap`]); the switch crate's type, so the fd goes straight to
/// `netyard_switch::sys::TapPort::from_fd`.
pub use netyard_switch::sys::tap::TapMode;
pub use open::{open_in_ns, Ipv6Knob, NetlinkFd, NsFds, NsOpen, NsOpenRequest, NsTarget};
