//! `router create/ls/inspect/rm` and `router route add/del` (issue 18): routers between
//! networks, each a port on every one of its networks' switches (`runtime/ports/router.rs`),
//! kept in the state file's `routers` and made again on restore.
//!
//! Locking: the state lock first (networks, IPAM), then the routers' mutex, a std mutex held
//! only for moments and never across an await, so `persist` (which reads the routers'
//! specs) can run under the state lock.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netyard_api::router::{
    RouteInfo, RouteReq, RouterCounters, RouterCreate, RouterInfo, RouterInterfaceInfo,
    RouterInterfaceReq,
};
use netyard_router::l3::Counter;

use super::{Daemon, Networks};
use crate::error::DaemonError;
use crate::netns;
use crate::plan::router::{self as plan_router, RouterNet};
use crate::runtime::ports::router::{self as kind, RouterLive};
use crate::spec::{EndpointSpec, NetworkSpec, RouterSpec};

/// A router the daemon runs.
pub struct RouterEntry {
    pub spec: RouterSpec,
    pub live: RouterLive,
}

pub type Routers = BTreeMap<String, RouterEntry>;

impl Daemon {
    fn routers_lock(&self) -> std::sync::MutexGuard<'_, Routers> {
        // A panic while holding it cannot leave a router half-changed (each change is one
        // insert or remove): carry on with the data.
        self.routers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every router's spec, for the state file.
    pub(super) fn router_specs(&self) -> BTreeMap<String, RouterSpec> {
        self.routers_lock()
            .iter()
            .map(|(k, r)| (k.clone(), r.spec.clone()))
            .collect()
    }

    /// The routers with an interface on `network`.
    pub(super) fn routers_on(&self, network: &str) -> Vec<String> {
        self.routers_lock()
            .values()
            .filter(|r| r.spec.interfaces.iter().any(|f| f.network == network))
            .map(|r| r.spec.name.clone())
            .collect()
    }

    /// Router `name`'s spec, or the error that names it.
    fn router_spec(&self, name: &str) -> Result<RouterSpec, DaemonError> {
        self.routers_lock()
            .get(name)
            .map(|r| r.spec.clone())
            .ok_or_else(|| DaemonError::NoRouter(name.to_string()))
    }

    /// Stops every router (shutdown, reset): their ports leave the switches.
    pub(super) fn stop_routers(&self) {
        let all = std::mem::take(&mut *self.routers_lock());
        for (_, r) in all {
            kind::teardown(r.live);
        }
    }

    pub async fn create_router(&self, req: RouterCreate) -> Result<RouterInfo, DaemonError> {
        let mut st = self.state.lock().await;
        let spec = {
            let nets = router_nets(&st);
            let routers = self.router_specs();
            plan_router::plan_router(&req, &nets, &routers)?
        };
        let live = build(&st, &spec)?;
        for f in &spec.interfaces {
            if let Some(n) = st.get_mut(&f.network) {
                let _ = n.ipam.take(f.ip);
            }
        }
        let info = info(&st, &spec, &live);
        self.routers_lock().insert(
            spec.name.clone(),
            RouterEntry {
                spec: spec.clone(),
                live,
            },
        );
        if let Err(e) = self.persist(&st) {
            self.unmake(&mut st, &spec.name);
            return Err(e);
        }
        tracing::info!(router = %spec.name, interfaces = spec.interfaces.len(), "router created");
        self.router_routes_changed(&st, &spec.name, &[]).await;
        Ok(info)
    }

    /// `router connect R NETWORK[=IP]`: R gains an interface on NETWORK. The router is made
    /// again with its new spec (same name, same addresses and MACs on its other networks, so
    /// neighbours' ARP entries stay right); its ARP cache and NAT table start empty.
    pub async fn connect_router(
        &self,
        name: &str,
        req: RouterInterfaceReq,
    ) -> Result<RouterInfo, DaemonError> {
        let mut st = self.state.lock().await;
        let old = self.router_spec(name)?;
        let new = plan_router::plan_connect(&old, &req, &router_nets(&st))?;
        let info = self.swap_router(&mut st, &old, new)?;
        self.router_routes_changed(&st, name, &[]).await;
        tracing::info!(router = %name, network = %req.network, "router connected");
        Ok(info)
    }

    /// `router disconnect R NETWORK`: R leaves NETWORK (refused while it is NETWORK's gateway
    /// router, for its only network, and while a static route goes through NETWORK).
    pub async fn disconnect_router(
        &self,
        name: &str,
        network: &str,
    ) -> Result<RouterInfo, DaemonError> {
        let mut st = self.state.lock().await;
        let old = self.router_spec(name)?;
        let new = plan_router::plan_disconnect(&old, network, &subnets(&st))?;
        let gated = crate::plan::gateway_router::networks_gated_by(
            st.values().map(|n| &n.spec).filter(|n| n.name == network),
            name,
        );
        if !gated.is_empty() {
            return Err(DaemonError::conflict(
                Some("network"),
                format!(
                    "router {name:?} is network {network:?}'s gateway router: `netyard network update {network} --no-gateway-router` first"
                ),
            ));
        }
        // Routes through the old interfaces go first (those via NETWORK and to it), then
        // the new router's are given again.
        self.router_removed(&st, &old).await;
        let info = self.swap_router(&mut st, &old, new)?;
        self.router_routes_changed(&st, name, &[]).await;
        tracing::info!(router = %name, network = %network, "router disconnected");
        Ok(info)
    }

    /// Replaces router `old.name`'s running router with one made from `new`, moving the
    /// addresses in IPAM and saving the state; on any failure the old router runs again.
    fn swap_router(
        &self,
        st: &mut Networks,
        old: &RouterSpec,
        new: RouterSpec,
    ) -> Result<RouterInfo, DaemonError> {
        let _ = self.unmake(st, &old.name);
        let remake = |st: &mut Networks, spec: &RouterSpec| -> Result<RouterInfo, DaemonError> {
            let live = build(st, spec)?;
            for f in &spec.interfaces {
                if let Some(n) = st.get_mut(&f.network) {
                    let _ = n.ipam.take(f.ip);
                }
            }
            let info = info(st, spec, &live);
            self.routers_lock().insert(
                spec.name.clone(),
                RouterEntry {
                    spec: spec.clone(),
                    live,
                },
            );
            Ok(info)
        };
        let made = remake(st, &new).and_then(|info| self.persist(st).map(|()| info));
        match made {
            Ok(info) => Ok(info),
            Err(e) => {
                let _ = self.unmake(st, &new.name);
                if let Err(again) = remake(st, old) {
                    tracing::error!(router = %old.name, error = %again, "router could not be made again after a failed change");
                }
                Err(e)
            }
        }
    }

    /// Takes a router out (its ports, its task, its addresses).
    fn unmake(&self, st: &mut Networks, name: &str) -> Option<RouterSpec> {
        let r = self.routers_lock().remove(name)?;
        for f in &r.spec.interfaces {
            if let Some(n) = st.get_mut(&f.network) {
                n.ipam.release(f.ip);
            }
        }
        kind::teardown(r.live);
        Some(r.spec)
    }

    pub async fn routers(&self) -> Vec<RouterInfo> {
        let st = self.state.lock().await;
        self.routers_lock()
            .values()
            .map(|r| info(&st, &r.spec, &r.live))
            .collect()
    }

    pub async fn router(&self, name: &str) -> Result<RouterInfo, DaemonError> {
        let st = self.state.lock().await;
        self.routers_lock()
            .get(name)
            .map(|r| info(&st, &r.spec, &r.live))
            .ok_or_else(|| DaemonError::NoRouter(name.to_string()))
    }

    pub async fn remove_router(&self, name: &str) -> Result<(), DaemonError> {
        let mut st = self.state.lock().await;
        let gated =
            crate::plan::gateway_router::networks_gated_by(st.values().map(|n| &n.spec), name);
        if !gated.is_empty() {
            return Err(DaemonError::conflict(
                None,
                format!(
                    "router {name:?} is the gateway router of network(s) {}: `netyard network update NETWORK --no-gateway-router` first",
                    gated.join(", ")
                ),
            ));
        }
        let spec = self
            .unmake(&mut st, name)
            .ok_or_else(|| DaemonError::NoRouter(name.to_string()))?;
        self.persist(&st)?;
        self.router_removed(&st, &spec).await;
        tracing::info!(router = %name, "router removed");
        Ok(())
    }

    pub async fn route_add(&self, name: &str, req: RouteReq) -> Result<RouterInfo, DaemonError> {
        let st = self.state.lock().await;
        let subnets = subnets(&st);
        let info = {
            let mut rs = self.routers_lock();
            let r = rs
                .get_mut(name)
                .ok_or_else(|| DaemonError::NoRouter(name.to_string()))?;
            let route = plan_router::plan_route(&req, &r.spec, &subnets)?;
            r.spec.routes.push(route);
            reconfigure(&st, r);
            info(&st, &r.spec, &r.live)
        };
        if let Err(e) = self.persist(&st) {
            if let Some(r) = self.routers_lock().get_mut(name) {
                r.spec.routes.pop();
                reconfigure(&st, r);
            }
            return Err(e);
        }
        self.router_routes_changed(&st, name, &[]).await;
        Ok(info)
    }

    pub async fn route_del(&self, name: &str, prefix: &str) -> Result<RouterInfo, DaemonError> {
        let st = self.state.lock().await;
        let p: Ipv4Net = prefix.parse().map_err(|_| {
            DaemonError::invalid(
                "prefix",
                format!("{prefix:?} is not an IPv4 CIDR such as 10.1.0.0/24"),
            )
        })?;
        let p = p.trunc();
        let (info, old) = {
            let mut rs = self.routers_lock();
            let r = rs
                .get_mut(name)
                .ok_or_else(|| DaemonError::NoRouter(name.to_string()))?;
            let Some(at) = r.spec.routes.iter().position(|x| x.prefix == p) else {
                return Err(DaemonError::invalid(
                    "prefix",
                    format!("router {name:?} has no static route to {p}"),
                ));
            };
            let old = r.spec.routes.remove(at);
            reconfigure(&st, r);
            ((info(&st, &r.spec, &r.live)), (at, old))
        };
        if let Err(e) = self.persist(&st) {
            if let Some(r) = self.routers_lock().get_mut(name) {
                r.spec.routes.insert(old.0, old.1);
                reconfigure(&st, r);
            }
            return Err(e);
        }
        self.router_routes_changed(&st, name, &[old.1.prefix]).await;
        Ok(info)
    }

    /// Makes the saved routers again after the networks were restored; one whose network is
    /// gone or whose address is taken is dropped with a log line.
    pub(super) fn restore_routers(&self, st: &mut Networks, saved: BTreeMap<String, RouterSpec>) {
        for (name, spec) in saved {
            let missing = spec.interfaces.iter().find(|f| {
                st.get(&f.network)
                    .is_none_or(|n| n.ipam.check(f.ip).is_err())
            });
            if let Some(f) = missing {
                tracing::warn!(router = %name, network = %f.network, ip = %f.ip,
                    "router not restored: its network is gone or its address is taken");
                continue;
            }
            match build(st, &spec) {
                Ok(live) => {
                    for f in &spec.interfaces {
                        if let Some(n) = st.get_mut(&f.network) {
                            let _ = n.ipam.take(f.ip);
                        }
                    }
                    tracing::info!(router = %name, "router restored");
                    self.routers_lock().insert(name, RouterEntry { spec, live });
                }
                Err(e) => {
                    tracing::warn!(router = %name, error = %e, "router not restored");
                }
            }
        }
    }

    /// The router's row in `stats`, per network: its port's switch counters.
    pub(super) fn router_ports(
        &self,
    ) -> Vec<(String, String, std::sync::Arc<netyard_switch::SwitchPort>)> {
        self.routers_lock()
            .values()
            .flat_map(|r| {
                r.spec
                    .interfaces
                    .iter()
                    .zip(&r.live.ports)
                    .map(|(f, (_, sp))| (f.network.clone(), r.spec.name.clone(), sp.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every router's counters and tables, for /metrics.
    pub(super) fn router_samples(&self) -> Vec<crate::metrics::RouterSample> {
        use std::sync::atomic::Ordering::Relaxed;
        self.routers_lock()
            .values()
            .map(|r| crate::metrics::RouterSample {
                name: r.spec.name.clone(),
                interfaces: r
                    .spec
                    .interfaces
                    .iter()
                    .zip(&r.live.shared.counters)
                    .map(|(f, c)| crate::metrics::RouterIfaceSample {
                        network: f.network.clone(),
                        counters: Counter::ALL.iter().map(|k| (*k, c.get(*k))).collect(),
                    })
                    .collect(),
                nat_entries: r.live.shared.nat_entries.load(Relaxed),
                held: r.live.shared.held.load(Relaxed),
            })
            .collect()
    }

    /// The switch port of router `name` on `network`, for `link` and `capture`.
    pub(super) fn router_port(
        &self,
        network: &str,
        name: &str,
    ) -> Option<(usize, std::sync::Arc<netyard_switch::SwitchPort>)> {
        let rs = self.routers_lock();
        let r = rs.get(name)?;
        let i = r
            .spec
            .interfaces
            .iter()
            .position(|f| f.network == network)?;
        r.live.ports.get(i).map(|(_, sp)| (i, sp.clone()))
    }

    /// Keeps a router interface's impairment in its spec.
    pub(super) fn store_router_link(
        &self,
        network: &str,
        name: &str,
        link: netyard_switch::impair::LinkSpec,
    ) {
        if let Some(r) = self.routers_lock().get_mut(name) {
            if let Some(f) = r.spec.interfaces.iter_mut().find(|f| f.network == network) {
                f.link = link;
            }
        }
    }

    pub(super) fn router_link(
        &self,
        network: &str,
        name: &str,
    ) -> netyard_switch::impair::LinkSpec {
        self.routers_lock()
            .get(name)
            .and_then(|r| r.spec.interfaces.iter().find(|f| f.network == network))
            .map(|f| f.link.clone())
            .unwrap_or_default()
    }

    /// Gives the endpoints on router `name`'s networks their routes through it (after a
    /// create or a route change); `removed` prefixes are taken away.
    async fn router_routes_changed(&self, st: &Networks, name: &str, removed: &[Ipv4Net]) {
        let Some(spec) = self.routers_lock().get(name).map(|r| r.spec.clone()) else {
            return;
        };
        let subnets = subnets(st);
        for (f, prefixes) in behind(&spec, &subnets) {
            let Some(net) = st.get(&f.0) else { continue };
            for ep in net.endpoints.values() {
                self.endpoint_routes(&ep.spec, f.1, &prefixes, true).await;
                if !removed.is_empty() {
                    self.endpoint_routes(&ep.spec, f.1, removed, false).await;
                }
            }
        }
    }

    /// Takes a removed router's routes out of the endpoints on its networks.
    async fn router_removed(&self, st: &Networks, spec: &RouterSpec) {
        let subnets = subnets(st);
        for (f, prefixes) in behind(spec, &subnets) {
            let Some(net) = st.get(&f.0) else { continue };
            for ep in net.endpoints.values() {
                self.endpoint_routes(&ep.spec, f.1, &prefixes, false).await;
            }
        }
    }

    /// Gives a newly attached endpoint on `network` the routes of the routers there.
    pub(super) async fn attach_router_routes(
        &self,
        st: &Networks,
        network: &str,
        ep: &EndpointSpec,
    ) {
        let specs: Vec<RouterSpec> = self
            .routers_lock()
            .values()
            .map(|r| r.spec.clone())
            .collect();
        let subnets = subnets(st);
        for spec in &specs {
            for (f, prefixes) in behind(spec, &subnets) {
                if f.0 == network {
                    self.endpoint_routes(ep, f.1, &prefixes, true).await;
                }
            }
        }
    }

    /// Adds or deletes `prefixes` via `gw` in an endpoint's namespace; a failure is logged
    /// (the router works; the endpoint lacks a route, which `ip route` shows).
    async fn endpoint_routes(
        &self,
        ep: &EndpointSpec,
        gw: Ipv4Addr,
        prefixes: &[Ipv4Net],
        add: bool,
    ) {
        if prefixes.is_empty() || ep.handed_over() || !self.endpoints.configure {
            return;
        }
        let r = async {
            let target = super::ns_target(ep).map_err(|e| e.to_string())?;
            let fds = netns::open_in_ns(&target, netns::NsOpenRequest::netlink_only())
                .await
                .map_err(|e| e.to_string())?;
            let handle = fds.netlink.into_handle().map_err(|e| e.to_string())?;
            netns::set_routes(&handle, &ep.ifname, gw, prefixes, add)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(endpoint = %ep.name, error = %e, add, "endpoint routes through a router");
        }
    }
}

/// For each interface of a router (its network and address), the prefixes reached through
/// it: the router's other networks and its static routes (a default route excepted: the
/// network's gateway keeps the endpoints' default), minus the interface's own subnet. A NAT
/// interface gets none: what is behind it is hidden from its network.
fn behind(
    spec: &RouterSpec,
    subnets: &BTreeMap<String, Ipv4Net>,
) -> Vec<((String, Ipv4Addr), Vec<Ipv4Net>)> {
    spec.interfaces
        .iter()
        .filter(|f| !f.nat)
        .filter_map(|f| {
            let own = *subnets.get(&f.network)?;
            let mut p: Vec<Ipv4Net> = spec
                .interfaces
                .iter()
                .filter_map(|g| subnets.get(&g.network).copied())
                .chain(spec.routes.iter().map(|r| r.prefix))
                .filter(|p| *p != own && p.prefix_len() > 0)
                .collect();
            p.sort();
            p.dedup();
            Some(((f.network.clone(), f.ip), p))
        })
        .collect()
}

/// What planning needs of every network.
fn router_nets(st: &Networks) -> BTreeMap<String, RouterNet<'_>> {
    st.iter()
        .map(|(k, n)| {
            (
                k.clone(),
                RouterNet {
                    spec: &n.spec,
                    ipam: &n.ipam,
                    endpoints: n
                        .endpoints
                        .keys()
                        .chain(n.reserved.iter())
                        .map(String::as_str)
                        .collect(),
                },
            )
        })
        .collect()
}

fn subnets(st: &Networks) -> BTreeMap<String, Ipv4Net> {
    st.iter().map(|(k, n)| (k.clone(), n.spec.subnet)).collect()
}

/// The networks of a router's interfaces, in order.
fn nets_of<'a>(
    st: &'a Networks,
    spec: &RouterSpec,
) -> Result<Vec<&'a super::Network>, DaemonError> {
    spec.interfaces
        .iter()
        .map(|f| {
            st.get(&f.network)
                .ok_or_else(|| DaemonError::NoNetwork(f.network.clone()))
        })
        .collect()
}

fn build(st: &Networks, spec: &RouterSpec) -> Result<RouterLive, DaemonError> {
    let nets = nets_of(st, spec)?;
    let specs: Vec<&NetworkSpec> = nets.iter().map(|n| &n.spec).collect();
    let switches: Vec<_> = nets.iter().map(|n| n.live.switch.clone()).collect();
    kind::setup(spec, &specs, &switches)
}

/// Swaps the running router's configuration for its spec's.
fn reconfigure(st: &Networks, r: &RouterEntry) {
    if let Ok(nets) = nets_of(st, &r.spec) {
        let specs: Vec<&NetworkSpec> = nets.iter().map(|n| &n.spec).collect();
        r.live
            .shared
            .config
            .store(std::sync::Arc::new(kind::config(&r.spec, &specs)));
    }
}

fn info(st: &Networks, spec: &RouterSpec, live: &RouterLive) -> RouterInfo {
    let subnets = subnets(st);
    RouterInfo {
        name: spec.name.clone(),
        interfaces: spec
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let net = st.get(&f.network);
                RouterInterfaceInfo {
                    network: f.network.clone(),
                    ip: f.ip.to_string(),
                    subnet: net.map(|n| n.spec.subnet.to_string()).unwrap_or_default(),
                    mac: f.mac.to_string(),
                    mtu: net.map(|n| n.spec.mtu).unwrap_or_default(),
                    nat: f.nat,
                    counters: live
                        .shared
                        .counters
                        .get(i)
                        .map(counters)
                        .unwrap_or_default(),
                }
            })
            .collect(),
        routes: spec
            .routes
            .iter()
            .map(|r| RouteInfo {
                prefix: r.prefix.to_string(),
                via: r.via.to_string(),
                network: plan_router::iface_for(spec, &subnets, r.via)
                    .and_then(|i| spec.interfaces.get(i))
                    .map(|f| f.network.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        nat_entries: live
            .shared
            .nat_entries
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn counters(c: &netyard_router::l3::Counters) -> RouterCounters {
    RouterCounters {
        forwarded: c.get(Counter::Forwarded),
        arp_replies: c.get(Counter::ArpReplies),
        echo_replies: c.get(Counter::EchoReplies),
        ttl_exceeded: c.get(Counter::TtlExceeded),
        no_route: c.get(Counter::NoRoute),
        frag_needed: c.get(Counter::FragNeeded),
        too_big: c.get(Counter::TooBig),
        unresolved: c.get(Counter::Unresolved),
        malformed: c.get(Counter::Malformed),
        ignored: c.get(Counter::Ignored),
        nat_out: c.get(Counter::NatOut),
        nat_in: c.get(Counter::NatIn),
        nat_new: c.get(Counter::NatNew),
        nat_full: c.get(Counter::NatFull),
        nat_no_mapping: c.get(Counter::NatNoMapping),
        sent_time_exceeded: c.get(Counter::SentTimeExceeded),
        sent_net_unreachable: c.get(Counter::SentNetUnreachable),
        sent_port_unreachable: c.get(Counter::SentPortUnreachable),
        sent_frag_needed: c.get(Counter::SentFragNeeded),
    }
}
