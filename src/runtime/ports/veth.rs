//! Endpoint port kind `veth`: a veth pair whose peer is the container's interface and whose
//! host end, in the daemon's namespace, is served with AF_PACKET. The pair outlives the daemon
//! by itself (the host end is an ordinary link); `adopt` opens the host end again.
//!
//! Handed over (`EndpointSpec::peer`): both ends are made in the daemon's namespace and the
//! peer is left there, down, with the endpoint's MAC and the network's MTU, for the runtime to
//! move into its container and configure (Docker's remote network drivers name it in Join's
//! answer; Docker moves it back under that name at Leave). netyard never enters the container,
//! so `adopt` only opens the host end again.

use netyard_switch::sys::packet::PacketPort;

use super::{Description, EndpointCx, EndpointDevice, EndpointRemains, PortKind};
use crate::error::DaemonError;
use crate::netns::{self, NsOpenRequest};
use crate::spec::EndpointSpec;

pub struct Veth;

impl Veth {
    /// A fresh host-end name: `ny` and 8 hex digits.
    pub fn host_name() -> String {
        format!("ny{:08x}", rand::random::<u32>())
    }
}

impl PortKind for Veth {
    type Cx<'a> = EndpointCx<'a>;
    type Spec = EndpointSpec;
    type Built = EndpointDevice;
    type Remains = EndpointRemains;
    const NAME: &'static str = "veth";

    /// `spec.host_ifname` names the host end to create (the planner picks it).
    async fn setup<'a>(
        cx: &'a EndpointCx<'a>,
        spec: &'a EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        let ns_err = ns_error(spec);
        let (host_name, host) = host_end(spec)?;
        if let Some(peer) = &spec.peer {
            netns::create_veth_for_runtime(&host, &host_name, peer, spec.mac.0, cx.net.mtu)
                .await
                .map_err(ns_err)?;
            let opened = open_host_end(spec, &host_name);
            if opened.is_err() {
                let _ = netns::delete_link(&host, &host_name).await;
            }
            return opened;
        }
        let target = cx.target_of(spec)?;
        netns::create_veth(&host, &host_name, target, &spec.ifname, cx.net.mtu)
            .await
            .map_err(ns_err)?;
        let result: Result<EndpointDevice, DaemonError> = async {
            // The host end's socket first: it holds what the peer sends as it comes up (its
            // MLD reports, which the switch's snooping must see).
            let dev = open_host_end(spec, &host_name)?;
            // Opened after the peer exists: its IPv6 switch is one of the descriptors.
            let fds = netns::open_in_ns(target, request(cx, spec))
                .await
                .map_err(ns_err)?;
            configure(cx, spec, fds).await.map_err(ns_err)?;
            Ok(dev)
        }
        .await;
        if result.is_err() {
            let _ = netns::delete_link(&host, &host_name).await;
        }
        result
    }

    async fn adopt<'a>(
        cx: &'a EndpointCx<'a>,
        spec: &'a EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        let ns_err = ns_error(spec);
        let (host_name, host) = host_end(spec)?;
        if !netns::link_exists(&host, &host_name)
            .await
            .map_err(ns_err)?
        {
            return Err(DaemonError::Io {
                context: format!("adopting {:?}", spec.name),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the veth host end {host_name} is gone"),
                ),
            });
        }
        if spec.handed_over() {
            return open_host_end(spec, &host_name);
        }
        let fds = netns::open_in_ns(cx.target_of(spec)?, request(cx, spec))
            .await
            .map_err(ns_err)?;
        configure(cx, spec, fds).await.map_err(ns_err)?;
        open_host_end(spec, &host_name)
    }

    async fn teardown(spec: &EndpointSpec, _remains: EndpointRemains) {
        if let Some(h) = &spec.host_ifname {
            remove_host_link(h).await;
        }
    }

    fn describe(spec: &EndpointSpec) -> Description {
        Description {
            kind: Self::NAME,
            host_ifname: spec.host_ifname.clone(),
        }
    }
}

/// Maps a namespace error to the endpoint's.
fn ns_error(spec: &EndpointSpec) -> impl Fn(netns::NetnsError) -> DaemonError + Copy + '_ {
    move |source| DaemonError::Namespace {
        name: spec.name.clone(),
        source,
    }
}

/// The host end's name (picked by the planner, recorded in the spec) and a netlink handle of
/// the daemon's namespace, where it lives.
fn host_end(spec: &EndpointSpec) -> Result<(String, rtnetlink::Handle), DaemonError> {
    let name = spec.host_ifname.clone().ok_or_else(|| {
        DaemonError::invalid("host_ifname", "a veth endpoint needs a host interface name")
    })?;
    let host = netns::host_handle().map_err(ns_error(spec))?;
    Ok((name, host))
}

fn open_host_end(spec: &EndpointSpec, host_name: &str) -> Result<EndpointDevice, DaemonError> {
    let port = PacketPort::open(host_name, spec.offload).map_err(|source| DaemonError::Port {
        name: spec.name.clone(),
        source,
    })?;
    Ok(EndpointDevice {
        port: Box::new(port),
        ctl: None,
    })
}

/// What the container's namespace must give to configure the peer: its netlink socket and
/// the peer's IPv6 switches.
fn request(cx: &EndpointCx<'_>, spec: &EndpointSpec) -> NsOpenRequest {
    let mut req = NsOpenRequest::netlink_only();
    req.items = super::ipv6_switches(cx.net, spec);
    req
}

async fn configure(
    cx: &EndpointCx<'_>,
    spec: &EndpointSpec,
    fds: netns::NsFds,
) -> Result<(), netns::NetnsError> {
    let handle = fds.netlink.into_handle()?;
    super::configure_interface(&handle, cx.net, spec, fds.fds).await
}

/// Deletes a veth pair through its host end (both ends go).
///
/// RTM_DELLINK is answered only once the kernel has unregistered both ends (RCU waits, about
/// 25 ms), and the request runs in the sending thread: on a runtime worker it stalls the
/// runtime, and with two workers the teardowns of a stop went two at a time. It is sent from
/// the blocking pool instead, on a netlink socket of its own (measured with `ip link del`: 200
/// pairs took 5.5 s one after another, 0.9 s 32 at a time). The pool's threads are in the
/// daemon's namespace, where host ends live.
pub async fn remove_host_link(name: &str) {
    let link = name.to_string();
    let deleted = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("no runtime for the netlink request: {e}"))?;
        rt.block_on(async {
            let h = netns::host_handle().map_err(|e| e.to_string())?;
            netns::delete_link(&h, &link)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = deleted {
        tracing::warn!(link = name, error = %e, "could not delete veth host end");
    }
}
