//! One seam for every kind of port a network holds: the [`PortKind`] trait.
//!
//! A kind knows how to build its port from its spec (`setup`), how to take it back after the
//! daemon restarted (`adopt`: the device outlived the daemon, or, for in-process ports such as
//! the gateway, is simply made again), how to remove it (`teardown`) and how to name itself in
//! `ps`, `stats` and `inspect` (`describe`). The daemon's state code only calls these; a new
//! kind (a runtime front such as a slirp4netns-compatible TAP) is one more file here and one
//! arm in [`endpoint`] (or a field of `NetworkLive`, for a network's own port).
//!
//! | file | kind | spec | survives a restart as |
//! |---|---|---|---|
//! | `tap.rs` | endpoint TAP in the container's namespace | `EndpointSpec` | a persistent TAP, reopened by name |
//! | `veth.rs` | endpoint veth, host end served with AF_PACKET (or its peer left for the runtime to move: Docker) | `EndpointSpec` | the host end, reopened |
//! | `gateway.rs` | the network's gateway (router task) | `NetworkSpec` | made again (in-process) |
//! | `vxlan.rs` | the network's VXLAN tunnel | `NetworkSpec` | made again (a UDP socket) |
//! | `macvlan.rs` | a macvlan network's uplink on its parent interface (AF_PACKET, filtered to the endpoints' MACs) | `NetworkSpec` | made again (the socket reopened) |

pub mod gateway;
pub mod macvlan;
pub mod router;
pub mod tap;
pub mod veth;
pub mod vxlan;

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use netyard_switch::{Port, Switch, SwitchPort};

use crate::dnsd::Dns;
use crate::error::DaemonError;
use crate::netns::{Ipv6Knob, NsOpen, NsTarget};
use crate::spec::{EndpointSpec, NetworkSpec, PortKindName};

/// What the network-wide kinds (gateway, tunnel) are given.
pub struct NetCx<'a> {
    pub net: &'a NetworkSpec,
    pub switch: &'a Arc<Switch>,
    /// The network's forwarding thread: its ports' tasks and its gateway are started there.
    pub lane: &'a super::lanes::Lane,
    pub dns: &'a Dns,
    /// Every netyard network's subnet and IPv6 prefix (egress to them is refused), shared by
    /// the gateways.
    pub local_subnets: &'a super::LocalPrefixes,
}

/// What the endpoint kinds are given: the network's context, the namespace (none for a veth
/// whose container end the runtime moves: `EndpointSpec::peer`), and whether the device
/// should outlive the daemon (false with `--ephemeral`).
pub struct EndpointCx<'a> {
    pub net: &'a NetworkSpec,
    pub target: Option<&'a NsTarget>,
    pub persist: bool,
    /// Configure the interface (MAC, MTU, address, up, `lo` up, default route); false leaves
    /// that to the container's runtime (RootlessKit configures its own `tap0`).
    pub configure: bool,
}

/// How a port names itself to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The kind, as `ps` and `stats` show it.
    pub kind: &'static str,
    /// The device on the host side, if there is one.
    pub host_ifname: Option<String>,
}

/// One kind of port. `Spec` is the plain data it is built from (persisted), `Built` the live
/// handles setup and adopt hand back, `Remains` what is left to remove once the port is off
/// the switch.
pub trait PortKind {
    type Cx<'a>;
    type Spec;
    type Built: Send;
    type Remains: Send;
    /// The kind's name (`ps`, `stats`, the state file).
    const NAME: &'static str;

    /// Creates the port from scratch.
    fn setup<'a>(
        cx: &'a Self::Cx<'a>,
        spec: &'a Self::Spec,
    ) -> impl Future<Output = Result<Self::Built, DaemonError>> + Send + 'a;

    /// Takes the port back after a restart: what outlived the daemon is reopened, what did
    /// not is made again. Never creates a device that should have been there.
    fn adopt<'a>(
        cx: &'a Self::Cx<'a>,
        spec: &'a Self::Spec,
    ) -> impl Future<Output = Result<Self::Built, DaemonError>> + Send + 'a;

    /// Removes what setup made.
    fn teardown<'a>(
        spec: &'a Self::Spec,
        remains: Self::Remains,
    ) -> impl Future<Output = ()> + Send + 'a;

    fn describe(spec: &Self::Spec) -> Description;
}

/// The IPv6 settings netyard writes on an endpoint's interface before bringing it up:
/// `disable_ipv6` (IPv6 follows the network), and on a dual-stack macvlan network `autoconf`
/// off, so that the LAN router's Router Advertisements add no SLAAC address beside the one
/// netyard gave (port security would drop what the container sent from it). Their `NsOpen`
/// items, in this order, follow the device's in the namespace request; none without IPv6 in
/// the kernel.
pub fn ipv6_switches(net: &NetworkSpec, spec: &EndpointSpec) -> Vec<NsOpen> {
    if !crate::netns::kernel_has_ipv6() {
        return Vec::new();
    }
    let mut knobs = vec![Ipv6Knob::Disable];
    if net.ipv6.is_some() && net.driver == crate::spec::Driver::Macvlan {
        knobs.push(Ipv6Knob::Autoconf);
    }
    knobs
        .into_iter()
        .map(|knob| NsOpen::Ipv6Switch {
            ifname: spec.ifname.clone(),
            knob,
        })
        .collect()
}

/// Configures an endpoint's interface as netyard does for both endpoint kinds: the IPv6
/// settings through `switches` (the descriptors [`ipv6_switches`] asked for, while the
/// interface is still down), MAC, MTU, up, its IPv4 address and default route, then its IPv6
/// address (and, on a macvlan network, the IPv6 default route via the LAN's router: nothing
/// else would give it one).
pub async fn configure_interface(
    handle: &rtnetlink::Handle,
    net: &NetworkSpec,
    spec: &EndpointSpec,
    switches: impl IntoIterator<Item = OwnedFd>,
) -> Result<(), crate::netns::NetnsError> {
    for (item, fd) in ipv6_switches(net, spec).into_iter().zip(switches) {
        if let NsOpen::Ipv6Switch { knob, .. } = item {
            let enable = knob == Ipv6Knob::Disable && net.ipv6.is_some();
            crate::netns::set_ipv6(fd, &spec.ifname, knob, enable)?;
        }
    }
    crate::netns::configure_endpoint(
        handle,
        &spec.ifname,
        spec.mac.0,
        net.mtu,
        std::net::IpAddr::V4(spec.ip),
        net.subnet.prefix_len(),
        Some(std::net::IpAddr::V4(net.default_gateway())),
    )
    .await?;
    if let (Some(ip6), Some(v6)) = (spec.ip6, net.ipv6) {
        crate::netns::add_address6(
            handle,
            &spec.ifname,
            ip6,
            v6.subnet.prefix_len(),
            net.default_gateway6(),
        )
        .await?;
    }
    Ok(())
}

/// An endpoint's device as its kind built it, before it joins the switch.
pub struct EndpointDevice {
    pub port: Box<dyn Port>,
    /// A second descriptor of a persistent TAP, kept to make it non-persistent at detach.
    pub ctl: Option<OwnedFd>,
}

/// What is left of an endpoint's device once its port is off the switch.
pub struct EndpointRemains {
    pub ctl: Option<OwnedFd>,
}

/// The endpoint kinds by name: the one place that maps a spec's kind to its code.
pub mod endpoint {
    use super::*;

    pub async fn setup(
        cx: &EndpointCx<'_>,
        spec: &EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        match spec.kind {
            PortKindName::Tap => tap::Tap::setup(cx, spec).await,
            PortKindName::Veth => veth::Veth::setup(cx, spec).await,
        }
    }

    pub async fn adopt(
        cx: &EndpointCx<'_>,
        spec: &EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        match spec.kind {
            PortKindName::Tap => tap::Tap::adopt(cx, spec).await,
            PortKindName::Veth => veth::Veth::adopt(cx, spec).await,
        }
    }

    /// What must happen before a detach answers: a persistent TAP stops being persistent
    /// (`ctl`), so that it vanishes with the daemon's descriptors should the daemon die before
    /// the teardown. Nothing for a veth: deleting the pair is the slow part.
    pub fn unpersist(spec: &EndpointSpec, ctl: Option<&OwnedFd>) {
        if let (PortKindName::Tap, Some(ctl)) = (spec.kind, ctl) {
            tap::unpersist(spec, ctl);
        }
    }

    pub async fn teardown(spec: &EndpointSpec, remains: EndpointRemains) {
        match spec.kind {
            PortKindName::Tap => tap::Tap::teardown(spec, remains).await,
            PortKindName::Veth => veth::Veth::teardown(spec, remains).await,
        }
    }

    pub fn describe(spec: &EndpointSpec) -> Description {
        match spec.kind {
            PortKindName::Tap => tap::Tap::describe(spec),
            PortKindName::Veth => veth::Veth::describe(spec),
        }
    }
}

impl EndpointCx<'_> {
    /// The container's namespace, which every kind but a handed-over veth enters.
    pub fn target_of(&self, spec: &EndpointSpec) -> Result<&NsTarget, DaemonError> {
        self.target.ok_or_else(|| {
            DaemonError::invalid(
                "netns",
                format!(
                    "endpoint {:?} has no namespace netyard may enter",
                    spec.name
                ),
            )
        })
    }
}

/// Waits (up to 2 s) until only this handle holds the port: another port's task may still
/// hold a snapshot of the port set for the rest of its burst, and the device (or socket)
/// must be gone when the caller returns. The last close runs on the blocking pool: closing a
/// TAP unregisters its device and closing an AF_PACKET socket waits for an RCU grace period
/// (10-20 ms), which must not stall a runtime worker.
pub async fn release(port: Arc<SwitchPort>) {
    for _ in 0..400 {
        if Arc::strong_count(&port) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    close_blocking(port).await;
}

/// Drops `what` (the last holder of a descriptor whose close may sleep in the kernel) on the
/// blocking pool, and waits for it.
pub async fn close_blocking<T: Send + 'static>(what: T) {
    let _ = tokio::task::spawn_blocking(move || drop(what)).await;
}
