//! `network update --gateway-router` (issue 18): a router's address on a network becomes its
//! endpoints' default gateway, at attach (the spec's `default_gateway`) and, when it changes,
//! in every endpoint's namespace already there.

use std::net::Ipv4Addr;

use netyard_api::model::{NetworkInfo, NetworkUpdate};

use super::{ns_target, Daemon, Network};
use crate::error::DaemonError;
use crate::netns;
use crate::plan::gateway_router::plan_gateway_router;
use crate::spec::EndpointSpec;

impl Daemon {
    /// `PATCH /v1/networks/NAME`.
    pub async fn update_network(
        &self,
        name: &str,
        req: NetworkUpdate,
    ) -> Result<NetworkInfo, DaemonError> {
        let mut st = self.state.lock().await;
        let Some(wanted) = req.gateway_router else {
            return st
                .get(name)
                .map(Network::info)
                .ok_or_else(|| DaemonError::NoNetwork(name.to_string()));
        };
        let routers = self.router_specs();
        let net = st
            .get_mut(name)
            .ok_or_else(|| DaemonError::NoNetwork(name.to_string()))?;
        let planned = plan_gateway_router(&net.spec, wanted.as_deref(), &routers)?;
        if planned == net.spec.gateway_router {
            return Ok(net.info());
        }
        let old_gw = net.spec.default_gateway();
        let previous = std::mem::replace(&mut net.spec.gateway_router, planned);
        let new_gw = net.spec.default_gateway();
        if let Err(e) = self.persist(&st) {
            if let Some(net) = st.get_mut(name) {
                net.spec.gateway_router = previous;
            }
            return Err(e);
        }
        let Some(net) = st.get(name) else {
            return Err(DaemonError::NoNetwork(name.to_string()));
        };
        let eps: Vec<EndpointSpec> = net.endpoints.values().map(|e| e.spec.clone()).collect();
        for ep in &eps {
            self.move_default_route(ep, old_gw, new_gw).await;
        }
        tracing::info!(network = %name, gateway = %new_gw,
            router = ?net.spec.gateway_router.as_ref().map(|g| &g.router),
            endpoints = eps.len(), "default gateway changed");
        Ok(net.info())
    }

    /// Moves an endpoint's default route from `old` to `new` when it goes through this
    /// network; a failure is logged (the endpoint keeps the route it had, `ip route` shows
    /// it), as a router's routes are.
    pub(super) async fn move_default_route(&self, ep: &EndpointSpec, old: Ipv4Addr, new: Ipv4Addr) {
        if old == new || ep.handed_over() || !self.endpoints.configure {
            return;
        }
        let r = async {
            let target = ns_target(ep).map_err(|e| e.to_string())?;
            let fds = netns::open_in_ns(&target, netns::NsOpenRequest::netlink_only())
                .await
                .map_err(|e| e.to_string())?;
            let handle = fds.netlink.into_handle().map_err(|e| e.to_string())?;
            netns::swap_default_route(&handle, &ep.ifname, old, new)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match r {
            Ok(moved) => {
                tracing::debug!(endpoint = %ep.name, %old, %new, moved, "default route")
            }
            Err(e) => {
                tracing::warn!(endpoint = %ep.name, error = %e, %new, "moving the default route")
            }
        }
    }
}
