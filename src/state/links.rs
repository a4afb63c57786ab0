//! `link set/show/reset/down/up`: a port's impairment and carrier, changed while it forwards
//! and kept in the spec (the endpoint's, or the network's `links` for its tunnel) so a
//! restart applies them again.

use std::sync::Arc;

use netyard_api::model::{LinkCounters, LinkInfo, LinkSettings, LinkWayCounters};
use netyard_switch::impair::{self, LinkSpec, WayStats};
use netyard_switch::SwitchPort;

use super::{Daemon, Network};
use crate::error::DaemonError;
use crate::plan;
use crate::runtime::ports::endpoint as endpoint_kind;

/// The name of a network's tunnel port among its links.
pub const VXLAN: &str = "vxlan";

/// A port of a network, by name: an endpoint, or the network's own (the tunnel). A router's
/// interface is found by the router's name before these (`Daemon::router_port`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Endpoint(String),
    Own(&'static str),
}

/// Finds the port `name` names on `net`. `vxlan` is the tunnel unless an endpoint has that
/// name (then `(vxlan)` names the tunnel).
fn resolve(net: &Network, name: &str) -> Result<Target, DaemonError> {
    let tunnel = net.live.vxlan.is_some();
    let no_tunnel = || {
        DaemonError::invalid(
            "endpoint",
            format!(
                "network {:?} has no VXLAN tunnel (create it with --vxlan)",
                net.spec.name
            ),
        )
    };
    match name {
        "(vxlan)" => tunnel.then_some(Target::Own(VXLAN)).ok_or_else(no_tunnel),
        _ if net.endpoints.contains_key(name) => {
            if name == VXLAN && tunnel {
                return Err(DaemonError::conflict(
                    Some("endpoint"),
                    "\"vxlan\" is both an endpoint and the network's tunnel: say (vxlan) for the tunnel",
                ));
            }
            Ok(Target::Endpoint(name.to_string()))
        }
        VXLAN => tunnel.then_some(Target::Own(VXLAN)).ok_or_else(no_tunnel),
        _ => Err(DaemonError::NoEndpoint {
            network: net.spec.name.clone(),
            name: name.to_string(),
        }),
    }
}

impl Network {
    fn link_port(&self, t: &Target) -> Option<&Arc<SwitchPort>> {
        match t {
            Target::Endpoint(n) => self.endpoints.get(n).map(|e| &e.live.port),
            Target::Own(_) => self.live.vxlan.as_ref().map(|vx| &vx.port),
        }
    }

    fn link_spec(&self, t: &Target) -> LinkSpec {
        match t {
            Target::Endpoint(n) => self
                .endpoints
                .get(n)
                .map(|e| e.spec.link.clone())
                .unwrap_or_default(),
            Target::Own(n) => self.spec.links.get(*n).cloned().unwrap_or_default(),
        }
    }

    fn store_link(&mut self, t: &Target, spec: LinkSpec) {
        match t {
            Target::Endpoint(n) => {
                if let Some(e) = self.endpoints.get_mut(n) {
                    e.spec.link = spec;
                }
            }
            Target::Own(n) => {
                if spec.is_clear() {
                    self.spec.links.remove(*n);
                } else {
                    self.spec.links.insert((*n).to_string(), spec);
                }
            }
        }
    }

    fn link_info(&self, t: &Target) -> Option<LinkInfo> {
        let port = self.link_port(t)?;
        let state = port.link.state();
        let (name, kind) = match t {
            Target::Endpoint(n) => (
                n.clone(),
                self.endpoints
                    .get(n)
                    .map(|e| endpoint_kind::describe(&e.spec).kind.to_string())
                    .unwrap_or_default(),
            ),
            Target::Own(n) => ((*n).to_string(), (*n).to_string()),
        };
        let shown = |i: &Option<impair::Impairment>| i.as_ref().map(plan::link::settings);
        Some(LinkInfo {
            network: self.spec.name.clone(),
            port: name,
            kind,
            down: state.spec.down,
            out: shown(&state.spec.out),
            inbound: shown(&state.spec.inbound),
            counters: LinkCounters {
                out: way(state.out),
                inbound: way(state.inbound),
            },
        })
    }

    /// Every link of the network: its endpoints, then its tunnel.
    fn links(&self) -> Vec<LinkInfo> {
        self.endpoints
            .keys()
            .map(|n| Target::Endpoint(n.clone()))
            .chain(self.live.vxlan.is_some().then_some(Target::Own(VXLAN)))
            .filter_map(|t| self.link_info(&t))
            .collect()
    }
}

fn way(s: WayStats) -> LinkWayCounters {
    LinkWayCounters {
        delayed: s.delayed,
        loss: s.loss,
        limit: s.limit,
        down: s.down,
        flushed: s.flushed,
        duplicated: s.duplicated,
        corrupted: s.corrupted,
        reordered: s.reordered,
        segmented: s.segmented,
        held: s.held,
    }
}

/// A port's link as `link show` shows it (a router's interface).
fn port_link_info(network: &str, name: &str, kind: &str, port: &SwitchPort) -> LinkInfo {
    let state = port.link.state();
    let shown = |i: &Option<impair::Impairment>| i.as_ref().map(plan::link::settings);
    LinkInfo {
        network: network.to_string(),
        port: name.to_string(),
        kind: kind.to_string(),
        down: state.spec.down,
        out: shown(&state.spec.out),
        inbound: shown(&state.spec.inbound),
        counters: LinkCounters {
            out: way(state.out),
            inbound: way(state.inbound),
        },
    }
}

impl Daemon {
    /// Changes a link's spec with `change`, applies it to the running port at once and saves
    /// it. Nothing changes when `change` refuses.
    async fn change_link(
        &self,
        network: &str,
        port: &str,
        change: impl FnOnce(&LinkSpec) -> Result<LinkSpec, DaemonError>,
    ) -> Result<LinkInfo, DaemonError> {
        let mut st = self.state.lock().await;
        let net = st
            .get_mut(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        // A router's interface on the network: its port bears the router's name (which no
        // endpoint of the network may have), its spec is the router's.
        if let Some((_, sp)) = self.router_port(network, port) {
            let next = change(&self.router_link(network, port))?;
            impair::apply(&net.live.switch, &sp, &next).map_err(|e| match e {
                impair::LinkError::Invalid(f) => DaemonError::invalid(f.field, f.reason),
                other => DaemonError::Io {
                    context: format!("impairing {port:?}"),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
            self.store_router_link(network, port, next);
            self.persist(&st)?;
            tracing::info!(network, port, "router link changed");
            return Ok(port_link_info(network, port, "router", &sp));
        }
        let target = resolve(net, port)?;
        let next = change(&net.link_spec(&target))?;
        let sp = net
            .link_port(&target)
            .cloned()
            .ok_or_else(|| DaemonError::NoEndpoint {
                network: network.to_string(),
                name: port.to_string(),
            })?;
        impair::apply(&net.live.switch, &sp, &next).map_err(|e| match e {
            impair::LinkError::Invalid(f) => DaemonError::invalid(f.field, f.reason),
            other => DaemonError::Io {
                context: format!("impairing {port:?}"),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        net.store_link(&target, next);
        let info = net.link_info(&target);
        self.persist(&st)?;
        tracing::info!(network, port, "link changed");
        info.ok_or_else(|| DaemonError::NoEndpoint {
            network: network.to_string(),
            name: port.to_string(),
        })
    }

    /// `link set`: replaces the impairment of the direction(s) the request names.
    pub async fn link_set(
        &self,
        network: &str,
        port: &str,
        req: &LinkSettings,
    ) -> Result<LinkInfo, DaemonError> {
        self.change_link(network, port, |cur| plan::link::plan_link(req, cur))
            .await
    }

    /// `link reset`: no impairment either way, carrier on.
    pub async fn link_reset(&self, network: &str, port: &str) -> Result<LinkInfo, DaemonError> {
        self.change_link(network, port, |_| Ok(LinkSpec::default()))
            .await
    }

    /// `link down` / `link up`: carrier off or on; the impairments stay.
    pub async fn link_carrier(
        &self,
        network: &str,
        port: &str,
        up: bool,
    ) -> Result<LinkInfo, DaemonError> {
        self.change_link(network, port, |cur| {
            Ok(LinkSpec {
                down: !up,
                ..cur.clone()
            })
        })
        .await
    }

    /// `link show`: every link, a network's, or one.
    pub async fn links(
        &self,
        network: Option<&str>,
        port: Option<&str>,
    ) -> Result<Vec<LinkInfo>, DaemonError> {
        let st = self.state.lock().await;
        // A network's links: its endpoints, its tunnel, then the routers' interfaces on it.
        let routers = self.router_ports();
        let with_routers = |net: &Network| {
            let mut rows = net.links();
            rows.extend(
                routers
                    .iter()
                    .filter(|(n, _, _)| *n == net.spec.name)
                    .map(|(n, r, sp)| port_link_info(n, r, "router", sp)),
            );
            rows
        };
        let Some(network) = network else {
            return Ok(st.values().flat_map(with_routers).collect());
        };
        let net = st
            .get(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        match port {
            None => Ok(with_routers(net)),
            Some(p) if !net.endpoints.contains_key(p) && self.router_port(network, p).is_some() => {
                Ok(self
                    .router_port(network, p)
                    .map(|(_, sp)| port_link_info(network, p, "router", &sp))
                    .into_iter()
                    .collect())
            }
            Some(p) => {
                let t = resolve(net, p)?;
                Ok(net.link_info(&t).into_iter().collect())
            }
        }
    }
}

/// Applies a saved link spec to a port being built again (a restart); a spec that no longer
/// validates is logged and left off rather than failing the whole start.
pub fn restore_link(
    switch: &Arc<netyard_switch::Switch>,
    port: &Arc<SwitchPort>,
    spec: &LinkSpec,
    what: &str,
) {
    if spec.is_clear() {
        return;
    }
    if let Err(e) = impair::apply(switch, port, spec) {
        tracing::warn!(port = what, error = %e, "saved link impairment not applied");
    }
}
