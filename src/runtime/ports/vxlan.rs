//! Network port kind `vxlan`: the tunnel of a network that spans hosts (RFC 7348), a UDP
//! socket of the daemon's namespace on `local:port` added to the switch as port "vxlan" with
//! its own driver. It is made again after a restart, with the static remote entries of the
//! spec (`fdb add`); entries learned from the underlay are learned again.

use std::sync::Arc;

use netyard_switch::overlay::RemoteTable;
use netyard_switch::sys::vxlan::{VxlanConfig, VxlanError, VxlanPort};
use netyard_switch::{driver, Switch, SwitchPort};
use tokio::task::JoinHandle;

use super::{release, Description, NetCx, PortKind};
use crate::error::DaemonError;
use crate::spec::NetworkSpec;

pub struct Vxlan;

/// A running tunnel: its switch port, the port's driver, and the remote table shared with
/// the port (for `fdb` and static entries).
pub struct VxlanLive {
    switch: Arc<Switch>,
    pub flow_source_ports: bool,
    pub table: Arc<RemoteTable>,
    pub port: Arc<SwitchPort>,
    task: JoinHandle<()>,
}

impl PortKind for Vxlan {
    type Cx<'a> = NetCx<'a>;
    type Spec = NetworkSpec;
    type Built = VxlanLive;
    type Remains = VxlanLive;
    const NAME: &'static str = "vxlan";

    async fn setup<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<VxlanLive, DaemonError> {
        let switch = cx.switch;
        let v = p.vxlan.as_ref().ok_or_else(|| {
            DaemonError::invalid("vxlan", format!("network {:?} has no VXLAN tunnel", p.name))
        })?;
        let table = Arc::new(RemoteTable::new(
            p.aging.saturating_mul(1000),
            p.max_macs_per_port as usize,
            v.peers.clone(),
        ));
        let cfg = VxlanConfig {
            vni: v.vni,
            local: v.local,
            port: v.port,
            mtu: u16::try_from(p.mtu).unwrap_or(u16::MAX),
            epoch: switch.epoch(),
        };
        let port = VxlanPort::open(cfg, table.clone()).map_err(|e| match &e {
            VxlanError::Bind { source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE) => {
                DaemonError::conflict(
                    Some("vxlan_port"),
                    format!("{e}: the address and port are in use"),
                )
            }
            VxlanError::Bind { source, .. }
                if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
            {
                DaemonError::invalid(
                    "vxlan_local",
                    format!("{} is not an address of this host", v.local),
                )
            }
            VxlanError::VniTaken { .. } => DaemonError::conflict(Some("vxlan"), &e),
            _ => DaemonError::Io {
                context: format!("opening the VXLAN tunnel of {:?}", p.name),
                source: std::io::Error::new(
                    e.io()
                        .map_or(std::io::ErrorKind::Other, std::io::Error::kind),
                    e.to_string(),
                ),
            },
        })?;
        let flow_source_ports = port.flow_ports();
        if !flow_source_ports {
            tracing::warn!(
                network = %p.name,
                "no source port of 49152-65535 could be bound: VXLAN datagrams leave from port {} \
                 instead of a per-flow source port",
                v.port
            );
        }
        let sp = switch.add_port(Self::NAME, Box::new(port));
        // icc=false holds across hosts too: the tunnel is isolated like an endpoint, so local
        // endpoints reach no remote one and remote ones reach only this host's gateway.
        switch.isolate(&sp, !p.icc);
        // On the network's lane, beside its endpoints: a frame between the tunnel and a local
        // endpoint is then a local schedule, not a wake-up of another thread each way. The
        // tunnels of several VNIs sharing one socket sit on different lanes (different
        // epolls): a datagram one reads for another is queued for it and wakes it directly
        // (`Port::poll_queued`), not through the socket's readiness.
        let task = match cx
            .lane
            .enter(|| driver::spawn_port(switch.clone(), sp.clone()))
        {
            Ok(t) => t,
            Err(e) => {
                switch.remove_port(sp.id);
                return Err(DaemonError::Io {
                    context: "starting the VXLAN port".to_string(),
                    source: e,
                });
            }
        };
        tracing::info!(network = %p.name, vni = v.vni, local = %v.local, port = v.port,
            peers = ?v.peers, mtu = p.mtu, "VXLAN tunnel up");
        for (mac, vtep) in &p.static_fdb {
            table.add_static(*mac, *vtep);
            switch.fdb.add_static(*mac, sp.id);
        }
        Ok(VxlanLive {
            switch: switch.clone(),
            flow_source_ports,
            table,
            port: sp,
            task,
        })
    }

    async fn adopt<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<VxlanLive, DaemonError> {
        Self::setup(cx, p).await
    }

    /// Removes the port from the switch, stops the driver and waits until the port (and so
    /// its sockets) is gone, so the UDP port is free again when this returns.
    async fn teardown(_spec: &NetworkSpec, vx: VxlanLive) {
        vx.switch.remove_port(vx.port.id);
        vx.task.abort();
        let _ = vx.task.await;
        release(vx.port).await;
    }

    fn describe(_spec: &NetworkSpec) -> Description {
        Description {
            kind: Self::NAME,
            host_ifname: None,
        }
    }
}
