//! Endpoint port kind `tap`: a TAP device created inside the container's namespace, its fd
//! served by the daemon. Unless the daemon is `--ephemeral`, the TAP is persistent
//! (TUNSETPERSIST, owned by the creating user so a rootless daemon may reopen it): it outlives
//! the daemon with its addresses and routes, and `adopt` reopens it by name inside the
//! namespace with the offloads set again. Detach makes it non-persistent before closing it, so
//! it vanishes then.

use std::os::fd::AsFd;

use netyard_switch::sys::tap::{set_persist, TapPort};

use super::{Description, EndpointCx, EndpointDevice, EndpointRemains, PortKind};
use crate::error::DaemonError;
use crate::netns::{self, LinkDropReader, NsOpen, NsOpenRequest, TapMode};
use crate::spec::EndpointSpec;

pub struct Tap;

impl PortKind for Tap {
    type Cx<'a> = EndpointCx<'a>;
    type Spec = EndpointSpec;
    type Built = EndpointDevice;
    type Remains = EndpointRemains;
    const NAME: &'static str = "tap";

    async fn setup<'a>(
        cx: &'a EndpointCx<'a>,
        spec: &'a EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        let mode = if cx.persist {
            TapMode::Persistent
        } else {
            TapMode::Ephemeral
        };
        open(cx, spec, mode).await
    }

    async fn adopt<'a>(
        cx: &'a EndpointCx<'a>,
        spec: &'a EndpointSpec,
    ) -> Result<EndpointDevice, DaemonError> {
        open(cx, spec, TapMode::Reopen).await
    }

    async fn teardown(spec: &EndpointSpec, remains: EndpointRemains) {
        // The port (and so its fd) is gone; the control descriptor is the last one. Once the
        // device is no longer persistent (already so after a detach: `unpersist`), closing it
        // removes the device.
        if let Some(ctl) = remains.ctl {
            unpersist(spec, &ctl);
            super::close_blocking(ctl).await;
        }
    }

    fn describe(_spec: &EndpointSpec) -> Description {
        Description {
            kind: Self::NAME,
            host_ifname: None,
        }
    }
}

/// Makes a persistent TAP non-persistent through its control descriptor: it vanishes when its
/// last descriptor closes.
pub fn unpersist(spec: &EndpointSpec, ctl: &std::os::fd::OwnedFd) {
    if let Err(e) = set_persist(ctl.as_fd(), false) {
        tracing::warn!(endpoint = %spec.name, error = %e, "could not make the TAP non-persistent");
    }
}

async fn open(
    cx: &EndpointCx<'_>,
    spec: &EndpointSpec,
    mode: TapMode,
) -> Result<EndpointDevice, DaemonError> {
    let ns_err = |source| DaemonError::Namespace {
        name: spec.name.clone(),
        source,
    };
    let mut req =
        NsOpenRequest::tap_mode(spec.ifname.clone(), spec.offload, mode).with(NsOpen::Netlink);
    // The interface's IPv6 switches, opened after the TAP exists (items run in order). Only
    // when netyard configures the interface: otherwise the runtime decides.
    if cx.configure {
        req.items.extend(super::ipv6_switches(cx.net, spec));
    }
    let fds = netns::open_in_ns(cx.target_of(spec)?, req)
        .await
        .map_err(ns_err)?;
    let mut opened = fds.fds.into_iter();
    let (Some(tap_fd), Some(stats_fd)) = (opened.next(), opened.next()) else {
        return Err(DaemonError::Io {
            context: format!("attaching {:?}", spec.name),
            source: std::io::Error::other("namespace helper returned too few descriptors"),
        });
    };
    let ipv6_fds: Vec<_> = opened.collect();
    let ctl = match mode {
        TapMode::Ephemeral => None,
        _ => Some(tap_fd.try_clone().map_err(|e| DaemonError::Io {
            context: format!("duplicating the TAP descriptor of {:?}", spec.name),
            source: e,
        })?),
    };
    let port = TapPort::from_fd(tap_fd, spec.ifname.clone(), spec.offload).map_err(|source| {
        DaemonError::Port {
            name: spec.name.clone(),
            source,
        }
    })?;
    let result = async {
        let handle = fds.netlink.into_handle()?;
        if !cx.configure {
            // The runtime configures the interface; only the MAC is netyard's, because the
            // gateway addresses the endpoint's frames (published connections) to it before
            // the endpoint has sent anything.
            return netns::set_mac(&handle, &spec.ifname, spec.mac.0).await;
        }
        super::configure_interface(&handle, cx.net, spec, ipv6_fds).await
    }
    .await;
    if let Err(e) = result {
        // A persistent TAP that could not be configured must not stay behind.
        if let (Some(c), TapMode::Persistent) = (&ctl, mode) {
            let _ = set_persist(c.as_fd(), false);
        }
        return Err(ns_err(e));
    }
    // The device's own drop counters, read through a netlink socket of its namespace. Not
    // having them loses a statistic, not the endpoint: a warning, and the port goes without.
    let port = match LinkDropReader::new(stats_fd, &spec.ifname) {
        Ok(reader) => port.with_device_drops(Box::new(reader)),
        Err(e) => {
            tracing::warn!(endpoint = %spec.name, error = %e, "cannot read the TAP's drop counters");
            port
        }
    };
    Ok(EndpointDevice {
        port: Box::new(port),
        ctl,
    })
}
