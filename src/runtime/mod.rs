//! The live side of the state: what runs a network or an endpoint, built from its spec
//! (`src/spec.rs`) through the port kinds (`ports/`). Nothing here decides anything; the
//! state code (`src/state.rs`) plans, then builds or removes through these.

pub mod lanes;
pub mod ports;
pub mod teardown;

use std::sync::Arc;

use netyard_switch::{driver, Switch, SwitchConfig, SwitchPort};
use tokio::task::JoinHandle;

use crate::dnsd::Dns;
use crate::error::DaemonError;
use crate::spec::{Driver, NetworkSpec};
use lanes::Lane;
use netyard_router::gateway::LocalSubnets;
use netyard_router::packet6::LocalSubnets6;
use ports::gateway::{Gateway, GatewayLive};
use ports::macvlan::{Macvlan, MacvlanLive};
use ports::vxlan::{Vxlan, VxlanLive};
use ports::{NetCx, PortKind};

/// Every netyard network's subnet and IPv6 prefix, shared with every gateway: egress to
/// another netyard network is refused locally (IPv4 and IPv6 alike), never sent to the host's
/// routes, where it could leave the machine or loop back in through a published port.
#[derive(Default, Clone)]
pub struct LocalPrefixes {
    pub v4: LocalSubnets,
    pub v6: LocalSubnets6,
}

/// The longest an endpoint may take to answer the gateway's MLD query after a restart.
const MLD_QUERY_RESPONSE_MS: u16 = 2000;

/// A running network: its switch, the MAC ager, the gateway (none on a macvlan network),
/// the tunnel and the uplink (a macvlan network's).
pub struct NetworkLive {
    pub switch: Arc<Switch>,
    /// The thread its port tasks and gateway run on ([`lanes`]).
    pub lane: Lane,
    ager: JoinHandle<()>,
    pub gw: Option<GatewayLive>,
    pub vxlan: Option<VxlanLive>,
    pub uplink: Option<MacvlanLive>,
}

impl NetworkLive {
    /// Builds a network from its spec (`adopt`: after a restart; the in-process ports are made
    /// again either way). On failure nothing is left running.
    pub async fn build(
        spec: &NetworkSpec,
        dns: &Dns,
        local_subnets: &LocalPrefixes,
        adopt: bool,
    ) -> Result<NetworkLive, DaemonError> {
        let switch = Switch::new(
            spec.name.clone(),
            SwitchConfig {
                mtu: u16::try_from(spec.mtu).unwrap_or(u16::MAX),
                aging_ms: spec.aging.saturating_mul(1000),
                max_macs_per_port: spec.max_macs_per_port as usize,
            },
        );
        let lane = Lane::assign().map_err(|source| DaemonError::Io {
            context: "starting a forwarding thread".to_string(),
            source,
        })?;
        let ager = driver::spawn_ager(switch.clone());
        let cx = NetCx {
            net: spec,
            switch: &switch,
            lane: &lane,
            dns,
            local_subnets,
        };
        if spec.driver == Driver::Macvlan {
            // No gateway: the LAN's router is the endpoints' gateway, the uplink their way out.
            let built = if adopt {
                Macvlan::adopt(&cx, spec).await
            } else {
                Macvlan::setup(&cx, spec).await
            };
            return match built {
                Ok(up) => Ok(NetworkLive {
                    switch,
                    lane,
                    ager,
                    gw: None,
                    vxlan: None,
                    uplink: Some(up),
                }),
                Err(e) => {
                    ager.abort();
                    Err(e)
                }
            };
        }
        let gw = match if adopt {
            Gateway::adopt(&cx, spec).await
        } else {
            Gateway::setup(&cx, spec).await
        } {
            Ok(g) => g,
            Err(e) => {
                ager.abort();
                return Err(e);
            }
        };
        let vxlan = match &spec.vxlan {
            None => None,
            Some(_) => {
                let built = if adopt {
                    Vxlan::adopt(&cx, spec).await
                } else {
                    Vxlan::setup(&cx, spec).await
                };
                match built {
                    Ok(vx) => {
                        // Every host of a VXLAN network has a gateway with the same address
                        // and MAC: pinning it to the local gateway port keeps the remote
                        // gateways' frames from moving it into the tunnel.
                        switch.fdb.add_static(gw.mac, gw.port.id);
                        if let Some(link) = spec.links.get(crate::state::VXLAN_LINK) {
                            crate::state::restore_link(&switch, &vx.port, link, "vxlan");
                        }
                        Some(vx)
                    }
                    Err(e) => {
                        ager.abort();
                        Gateway::teardown(spec, gw).await;
                        return Err(e);
                    }
                }
            }
        };
        Ok(NetworkLive {
            switch,
            lane,
            ager,
            gw: Some(gw),
            vxlan,
            uplink: None,
        })
    }

    /// After a restart, on a network with IPv6: the gateway sends an MLD general query, so the
    /// re-adopted endpoints (`ports`) report their multicast groups to this daemon (their
    /// earlier reports went to the previous one), and once they had time to answer they get
    /// only the groups they reported, as a newly attached endpoint does. Until then they stay
    /// multicast router ports and get all IPv6 multicast: nothing they listen to is lost.
    pub fn relearn_mld(&self, ports: Vec<Arc<SwitchPort>>) {
        let Some(gw) = &self.gw else { return };
        if ports.is_empty() {
            return;
        }
        let mut frame = vec![0u8; netyard_switch::wire::vnet::VNET_HDR_LEN];
        frame.extend_from_slice(&netyard_switch::mld::general_query(
            gw.mac,
            MLD_QUERY_RESPONSE_MS,
        ));
        let all = self.switch.ports();
        driver::forward(
            &self.switch,
            &all,
            &gw.port,
            &frame,
            self.switch.now_ms(),
            driver::Entry::Port,
            &mut Vec::new(),
        );
        let switch = self.switch.clone();
        tokio::spawn(async move {
            // Hosts answer at a random time within the response delay; the margin covers a
            // loaded machine's scheduling. A report after the switch-over is learned all the
            // same (every port's reports are).
            tokio::time::sleep(std::time::Duration::from_millis(
                u64::from(MLD_QUERY_RESPONSE_MS) + 3000,
            ))
            .await;
            for p in ports {
                switch.set_mld_router(&p, false);
            }
        });
    }

    /// Stops the network's tasks and ports (its endpoints must be gone already).
    pub async fn stop(self, spec: &NetworkSpec) {
        self.ager.abort();
        if let Some(gw) = self.gw {
            Gateway::teardown(spec, gw).await;
        }
        if let Some(vx) = self.vxlan {
            Vxlan::teardown(spec, vx).await;
        }
        if let Some(up) = self.uplink {
            Macvlan::teardown(spec, up).await;
        }
    }

    /// Starts the driver task of `port`, one of this network's, on the network's lane.
    pub fn spawn_port(&self, port: &Arc<SwitchPort>) -> std::io::Result<JoinHandle<()>> {
        self.lane
            .enter(|| driver::spawn_port(self.switch.clone(), port.clone()))
    }

    /// The gateway's publisher (None on a macvlan network, which publishes nothing).
    pub fn publisher(&self) -> Option<&netyard_router::publish::Publisher> {
        self.gw.as_ref().map(|g| &g.publisher)
    }

    /// An endpoint joined (its port on the switch, its interface up): on a dual-stack
    /// network the gateway sends it a Router Advertisement, so it has its IPv6 default route
    /// when this returns instead of after its own solicitation. Nothing without a gateway.
    pub async fn greet(&self, mac: netyard_switch::MacAddr) {
        if let Some(gw) = &self.gw {
            gw.advertiser.joined(mac).await;
        }
    }

    /// The gateway's MAC, if the network has a gateway.
    pub fn gateway_mac(&self) -> Option<netyard_switch::MacAddr> {
        self.gw.as_ref().map(|g| g.mac)
    }

    /// Tells the uplink (if any) which MACs its endpoints own now.
    pub fn set_endpoint_macs(&self, macs: impl IntoIterator<Item = netyard_switch::MacAddr>) {
        if let Some(up) = &self.uplink {
            up.set_macs(macs);
        }
    }
}

/// A running endpoint: its switch port and the port's driver.
pub struct EndpointLive {
    pub port: Arc<SwitchPort>,
    pub task: JoinHandle<()>,
    /// See [`ports::EndpointDevice::ctl`].
    pub ctl: Option<std::os::fd::OwnedFd>,
}
