//! The daemon's state: networks, their switches and endpoints; every control operation.
//!
//! Each operation takes the state mutex, plans (`src/plan/`: pure, request + specs -> new
//! spec or a field error), builds through the port kinds (`src/runtime/`), commits, and
//! persists the new spec (`src/store.rs`) before it answers. The slow part of an attach
//! (entering the namespace, creating and configuring the device) runs without the lock, on a
//! reservation (the endpoint name and address are taken), so a slow or failing attach neither
//! blocks nor disturbs the others. A failed attach releases its reservation, leaves IPAM as it
//! was and removes whatever it created.
//!
//! A daemon with a state directory leaves every endpoint in place when it stops (devices,
//! addresses, routes): a restart is not a teardown; [`Daemon::restore`] takes them back. An
//! `--ephemeral` daemon keeps no state and removes everything when it stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use netyard_api::model::{
    Counters, EndpointCreate, EndpointInfo, FdbAdd, FdbRow, NetworkCreate, NetworkInfo,
    PortStatsRow, ResetReport, VxlanInfo,
};
use netyard_switch::capture::{Capture, CapturedFrame};
use netyard_switch::{MacAddr, PortStats, Switch, SwitchPort};
use tokio::sync::Mutex;

use crate::dnsd::{self, Dns, DnsOptions};
use crate::error::DaemonError;
use crate::ipam::Ipam;
use crate::netns::{self, NsStatus, NsTarget};
use crate::plan::{self, parse_vtep, EndpointPlan, NsRequest};
use crate::ports;
use crate::runtime::ports::veth::Veth;
use crate::runtime::ports::{endpoint as endpoint_kind, EndpointCx, EndpointRemains};
use crate::runtime::teardown::Teardowns;
use crate::runtime::{EndpointLive, NetworkLive};
use crate::spec::{EndpointSpec, NetworkSpec, PortKindName, SavedNetwork, StateSpec};
use crate::store::Store;

mod gateway_router;
mod links;
mod routers;

pub use links::{restore_link, VXLAN as VXLAN_LINK};

struct Network {
    spec: NetworkSpec,
    live: NetworkLive,
    ipam: Ipam,
    endpoints: BTreeMap<String, Endpoint>,
    /// Names of endpoints being attached right now.
    reserved: BTreeSet<String>,
    /// Endpoints other hosts registered in etcd on this (distributed) network, answered by
    /// this host's resolver as Docker's overlay networks do.
    remote_names: Vec<netyard_dns::Entry>,
    /// Endpoints detached because their container went away (process exited, namespace
    /// deleted, device vanished).
    reaped: u64,
}

struct Endpoint {
    spec: EndpointSpec,
    live: EndpointLive,
    /// Waits for the process of a `--pid` endpoint to exit (its pidfd).
    watch: Option<tokio::task::JoinHandle<()>>,
    /// Published ports, each a rule of the network's gateway.
    published: Vec<ports::Published>,
}

type Networks = BTreeMap<String, Network>;

/// The daemon: all networks of this process.
pub struct Daemon {
    state: Mutex<Networks>,
    dns: Dns,
    /// The state directory; None for an `--ephemeral` daemon.
    store: Option<Store>,
    /// The cluster registry (`--etcd`: `src/cluster.rs`), set once at start-up; unset, the
    /// daemon is on its own ([`Local`]). See `src/registry.rs`.
    registry: std::sync::OnceLock<Arc<dyn Registry>>,
    /// Exits of the processes `--pid` endpoints were attached by, from their watchers to the
    /// reaper (`daemon.rs`), which detaches them.
    exits: tokio::sync::mpsc::UnboundedSender<Exited>,
    exits_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Exited>>>,
    /// Every network's subnet and IPv6 prefix, shared with every gateway: egress to another
    /// netyard network is refused locally, never sent to the host's routes.
    subnets: crate::runtime::LocalPrefixes,
    /// How endpoints are made (the runtime fronts change it).
    endpoints: EndpointOptions,
    /// Endpoint devices being removed after their detach answered.
    teardowns: Teardowns,
    /// `run --network container:NAME` runs, listed by `ps` while they run.
    joins: crate::joins::Joins,
    /// Routers between networks (`src/state/routers.rs`), after the state lock when both.
    routers: std::sync::Mutex<routers::Routers>,
    /// Nodes (daemon-owned namespaces) and lab records (`crate::lab`).
    labs: crate::lab::Labs,
}

/// How a daemon makes its endpoints. The daemon's own are configured and get the resolver's
/// 127.0.0.11 listeners; a runtime front (`src/fronts/`) may leave the interface to the
/// container's runtime and serve DNS only at the gateway's addresses, as slirp4netns does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointOptions {
    /// Configure the interface inside the namespace (address, routes, `lo` up).
    pub configure: bool,
    /// Listen on 127.0.0.11:53 inside the namespace.
    pub dns_in_namespace: bool,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            configure: true,
            dns_in_namespace: true,
        }
    }
}

/// The process an endpoint was attached by exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub network: String,
    pub endpoint: String,
    identity: netns::NsIdentity,
}

/// What a restore found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub networks: usize,
    pub endpoints: usize,
    /// Endpoints dropped, with the reason.
    pub dropped: Vec<(String, String, String)>,
}

impl Daemon {
    /// A daemon keeping its state in `store` (None: ephemeral).
    pub fn new(dns: DnsOptions, store: Option<Store>) -> Daemon {
        let (exits, exits_rx) = tokio::sync::mpsc::unbounded_channel();
        Daemon {
            state: Mutex::new(BTreeMap::new()),
            dns: Dns::new(dns),
            registry: std::sync::OnceLock::new(),
            exits,
            exits_rx: std::sync::Mutex::new(Some(exits_rx)),
            subnets: Default::default(),
            endpoints: EndpointOptions::default(),
            teardowns: Teardowns::default(),
            joins: Default::default(),
            routers: Default::default(),
            labs: crate::lab::Labs::new(store.as_ref().map(|s| s.dir().join("labs.json"))),
            store,
        }
    }

    /// Changes how endpoints are made (before the first attach).
    pub fn with_endpoint_options(mut self, o: EndpointOptions) -> Daemon {
        self.endpoints = o;
        self
    }

    /// Publishes the networks' subnets to the gateways. Called with the state locked after
    /// a network is created, removed or restored.
    fn refresh_subnets(&self, st: &Networks) {
        // A macvlan network's subnet is a real LAN the host routes to: egress of the other
        // networks may go there like anywhere else.
        let bridges = || st.values().filter(|n| n.spec.driver.is_bridge());
        let v4: Vec<ipnet::Ipv4Net> = bridges().map(|n| n.spec.subnet).collect();
        let v6: Vec<ipnet::Ipv6Net> = bridges()
            .filter_map(|n| n.spec.ipv6.map(|v| v.subnet))
            .collect();
        self.subnets.v4.store(Arc::new(v4));
        self.subnets.v6.store(Arc::new(v6));
    }

    /// The exits of `--pid` endpoints' processes, for the reaper (taken once).
    pub fn take_exits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Exited>> {
        self.exits_rx.lock().ok()?.take()
    }

    /// Watches the process of a `--pid` endpoint: when it exits, the reaper hears of it.
    fn watch_exit(
        &self,
        network: &str,
        spec: &EndpointSpec,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let exited = Exited {
            network: network.to_string(),
            endpoint: spec.name.clone(),
            identity: spec.identity.clone(),
        };
        let tx = self.exits.clone();
        match netns::exit_watch(&spec.identity) {
            Ok(None) => None,
            Ok(Some(fd)) => Some(tokio::spawn(async move {
                if let Err(e) = netns::wait_exit(fd).await {
                    // Cannot wait on it: the namespace check of the reaper's tick remains.
                    tracing::warn!(endpoint = %exited.endpoint, error = %e,
                        "cannot watch the endpoint's process; its namespace is polled instead");
                    return;
                }
                let _ = tx.send(exited);
            })),
            // Already gone (or the pid is another process's now).
            Err(_) => {
                let _ = tx.send(exited);
                None
            }
        }
    }

    /// The embedded resolver (for its counters).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// Nodes and lab records.
    pub fn labs(&self) -> &crate::lab::Labs {
        &self.labs
    }

    /// Does this daemon keep state (devices outlive it)?
    pub fn persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Writes the state file (nothing for an ephemeral daemon). Called with the state locked
    /// after every change and before the API answers, so what was acknowledged is on disk.
    fn persist(&self, st: &Networks) -> Result<(), DaemonError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut state = snapshot(st);
        state.routers = self.router_specs();
        let save = || store.save(&state);
        // Two fsyncs: let the runtime move this worker's other tasks elsewhere meanwhile
        // (block_in_place exists only on the multi-threaded runtime the daemon runs on).
        let saved = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(save),
            _ => save(),
        };
        saved.map_err(|e| DaemonError::Io {
            context: "saving the state".to_string(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Publishes every endpoint's names to the resolver. Called with the state locked after
    /// each change, so the records always match the state.
    fn refresh_dns(&self, st: &Networks) {
        let entries = st
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .map(move |e| netyard_dns::Entry {
                        network: n.spec.name.clone(),
                        name: e.spec.name.clone(),
                        aliases: e.spec.aliases.clone(),
                        ipv4: Some(e.spec.ip),
                        ipv6: e.spec.ip6,
                    })
                    .chain(n.remote_names.iter().cloned())
            })
            .collect();
        self.dns.set_records(entries);
    }

    /// Sets the names of the endpoints other hosts hold on distributed `network` (each
    /// entry's `network` is overwritten with it). False if there is no such network here.
    pub(crate) async fn set_remote_names(
        &self,
        network: &str,
        mut entries: Vec<netyard_dns::Entry>,
    ) -> bool {
        let mut st = self.state.lock().await;
        let Some(net) = st.get_mut(network) else {
            return false;
        };
        for e in &mut entries {
            e.network = network.to_string();
        }
        net.remote_names = entries;
        self.refresh_dns(&st);
        true
    }

    // ---- restart ----

    /// Takes back what a previous daemon left: every network is built again (switch, gateway,
    /// tunnel, static entries, DNS records), every endpoint whose namespace is still the one
    /// recorded is re-adopted (its device reopened, its resolver listening again, its
    /// published ports bound again); an endpoint whose namespace is gone or was replaced is
    /// removed and its address released, with a log line. A network that cannot be built
    /// fails the start (the state file is left as it was).
    pub async fn restore(&self, saved: StateSpec) -> Result<Restored, DaemonError> {
        let mut report = Restored::default();
        let mut st = self.state.lock().await;
        for (name, saved_net) in saved.networks {
            let spec = saved_net.network;
            let live = match NetworkLive::build(&spec, &self.dns, &self.subnets, true).await {
                Ok(l) => l,
                Err(e) => {
                    drop(st);
                    self.shutdown_in_process().await;
                    return Err(DaemonError::Io {
                        context: format!("restoring network {name:?}"),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            };
            let mut net = Network::new(spec, live);
            let adopted = futures::future::join_all(
                saved_net
                    .endpoints
                    .into_values()
                    .map(|ep| self.adopt_endpoint(&net.spec, &net.live, ep)),
            )
            .await;
            for r in adopted {
                match r {
                    Ok((spec, live)) => {
                        let _ = net.ipam.take(spec.ip);
                        net.ipam.advance(spec.ip);
                        if let (Some(ip6), Some(v6)) = (spec.ip6, net.ipam.v6_mut()) {
                            let _ = v6.take(ip6);
                            v6.advance(ip6);
                        }
                        let published = rebind(&net, &spec);
                        let watch = self.watch_exit(&name, &spec);
                        net.endpoints.insert(
                            spec.name.clone(),
                            Endpoint {
                                spec,
                                live,
                                watch,
                                published,
                            },
                        );
                        report.endpoints += 1;
                    }
                    Err((ep, why)) => {
                        tracing::warn!(network = %name, endpoint = %ep, reason = %why,
                            "endpoint not restored: removed, its address released");
                        report.dropped.push((name.clone(), ep, why));
                    }
                }
            }
            net.sync_uplink();
            if net.spec.ipv6.is_some() {
                net.live.relearn_mld(
                    net.endpoints
                        .values()
                        .map(|e| e.live.port.clone())
                        .collect(),
                );
            }
            tracing::info!(network = %name, endpoints = net.endpoints.len(), "network restored");
            st.insert(name, net);
            report.networks += 1;
        }
        self.restore_routers(&mut st, saved.routers);
        self.refresh_dns(&st);
        self.refresh_subnets(&st);
        self.persist(&st)?;
        Ok(report)
    }

    /// Re-adopts one endpoint, or says why not (its name and the reason).
    async fn adopt_endpoint(
        &self,
        net: &NetworkSpec,
        live: &NetworkLive,
        spec: EndpointSpec,
    ) -> Result<(EndpointSpec, EndpointLive), (String, String)> {
        let fail = |why: String| (spec.name.clone(), why);
        // A handed-over veth has no namespace of netyard's: its host end alone tells whether
        // the container still has it (the kind's adopt fails when it is gone).
        match netns::check(Path::new(&spec.netns), &spec.identity) {
            _ if spec.handed_over() => {}
            NsStatus::Same => {}
            status => {
                // The container is gone: what is left of it on our side goes too (a veth's
                // host end; a TAP went with its namespace).
                if spec.kind == PortKindName::Veth {
                    endpoint_kind::teardown(&spec, EndpointRemains { ctl: None }).await;
                }
                return Err(fail(match status {
                    NsStatus::Gone => format!("its namespace {} is gone", spec.netns),
                    _ => format!("{} is now another namespace", spec.netns),
                }));
            }
        }
        let target = match spec.handed_over() {
            true => None,
            false => match ns_target(&spec) {
                Ok(t) => Some(t),
                Err(e) => return Err(fail(e.to_string())),
            },
        };
        let cx = EndpointCx {
            net,
            target: target.as_ref(),
            persist: true,
            configure: self.endpoints.configure,
        };
        let dev = match endpoint_kind::adopt(&cx, &spec).await {
            Ok(d) => d,
            Err(e) if spec.handed_over() => {
                return Err(fail(format!("its container took its interface away: {e}")))
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        if let Some(target) = target
            .as_ref()
            .filter(|_| net.container_resolver && self.endpoints.dns_in_namespace)
        {
            if let Err(e) = self
                .dns
                .join(spec.ns_key(), target, &net.name, net.internal)
                .await
            {
                return Err(fail(e.to_string()));
            }
        }
        let sp = live.switch.add_port(spec.name.clone(), dev.port);
        sp.set_security(spec.port_security(net));
        live.switch.isolate(&sp, !net.icc);
        // A re-adopted endpoint stays a multicast router port (it gets all IPv6 multicast)
        // until it answered the gateway's MLD query (`NetworkLive::relearn_mld`, once the
        // network's endpoints are back): its interface reported its groups to the previous
        // daemon.
        links::restore_link(&live.switch, &sp, &spec.link, &spec.name);
        let task = match live.spawn_port(&sp) {
            Ok(t) => t,
            Err(e) => {
                live.switch.remove_port(sp.id);
                self.dns.leave(spec.ns_key(), &net.name).await;
                return Err(fail(format!("starting its driver: {e}")));
            }
        };
        tracing::info!(network = %net.name, endpoint = %spec.name, ip = %spec.ip,
            kind = spec.kind.as_str(), "endpoint re-adopted");
        Ok((
            spec,
            EndpointLive {
                port: sp,
                task,
                ctl: dev.ctl,
            },
        ))
    }

    /// Re-registers the restored endpoints of distributed networks in etcd (after the
    /// registry started).
    pub async fn reregister(&self) {
        let Some(r) = self.registry.get() else { return };
        let infos: Vec<EndpointInfo> = self.endpoints().await;
        for info in infos {
            r.readopt(&info).await;
        }
    }

    // ---- networks ----

    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkInfo, DaemonError> {
        self.registry().create_network(self, req).await
    }

    /// Creates a network in this daemon only (with etcd: not published).
    pub(crate) async fn create_network_local(
        &self,
        req: NetworkCreate,
    ) -> Result<NetworkInfo, DaemonError> {
        // Host routes are read before taking the lock: netlink I/O stays outside it.
        let routes = if req.subnet.is_none() {
            host_routes().await
        } else {
            Vec::new()
        };
        let underlay_mtu = match req.vxlan {
            Some(_) => find_underlay_mtu(&req).await,
            None => None,
        };
        let parent = match (&req.driver, &req.parent) {
            (Some(d), Some(p)) if d == "macvlan" => parent_link(p).await?,
            _ => None,
        };
        let mut st = self.state.lock().await;
        let spec = plan::plan_network_on(
            &req,
            st.values().map(|n| &n.spec),
            &routes,
            underlay_mtu,
            parent,
        )?;
        let live = NetworkLive::build(&spec, &self.dns, &self.subnets, false).await?;
        let net = Network::new(spec, live);
        let info = net.info();
        st.insert(info.name.clone(), net);
        self.refresh_subnets(&st);
        if let Err(e) = self.persist(&st) {
            if let Some(net) = st.remove(&info.name) {
                net.live.stop(&net.spec).await;
            }
            return Err(e);
        }
        tracing::info!(network = %info.name, subnet = %info.subnet, "network created");
        Ok(info)
    }

    /// The subnet a network created now without one would get, avoiding `exclude` too (a
    /// runtime's IPAM picks its pool before it creates the network).
    pub async fn free_subnet(&self, exclude: &[IpNet]) -> Result<ipnet::Ipv4Net, DaemonError> {
        let mut taken = host_routes().await;
        taken.extend_from_slice(exclude);
        let st = self.state.lock().await;
        taken.extend(st.values().map(|n| IpNet::V4(n.spec.subnet)));
        crate::ipam::pick_free_subnet(&taken).ok_or_else(|| {
            DaemonError::conflict(Some("subnet"), "no free /24 left in the default pools")
        })
    }

    /// The IPv6 prefix `network create --ipv6` would pick now without `--subnet6`, avoiding
    /// host routes, other networks' prefixes and `exclude`.
    pub async fn free_subnet6(&self, exclude: &[IpNet]) -> Result<ipnet::Ipv6Net, DaemonError> {
        let mut taken: Vec<ipnet::Ipv6Net> = host_routes()
            .await
            .into_iter()
            .chain(exclude.iter().copied())
            .filter_map(|n| match n {
                IpNet::V6(v6) => Some(v6),
                IpNet::V4(_) => None,
            })
            .collect();
        let st = self.state.lock().await;
        taken.extend(st.values().filter_map(|n| n.spec.ipv6.map(|v| v.subnet)));
        crate::ipam::pick_ula(&taken, rand::random::<u64>).ok_or_else(|| {
            DaemonError::conflict(
                Some("subnet6"),
                "no free /64 found in fd00::/8 (a host route covers it?)",
            )
        })
    }

    pub async fn networks(&self) -> Vec<NetworkInfo> {
        self.state
            .lock()
            .await
            .values()
            .map(Network::info)
            .collect()
    }

    pub async fn network(&self, name: &str) -> Result<NetworkInfo, DaemonError> {
        let st = self.state.lock().await;
        st.get(name)
            .map(Network::info)
            .ok_or_else(|| DaemonError::NoNetwork(name.to_string()))
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), DaemonError> {
        self.registry().remove_network(self, name).await
    }

    /// Removes this daemon's instance of a network (with etcd: the key stays).
    pub(crate) async fn remove_network_local(&self, name: &str) -> Result<(), DaemonError> {
        let mut st = self.state.lock().await;
        let net = st
            .get(name)
            .ok_or_else(|| DaemonError::NoNetwork(name.to_string()))?;
        if !net.endpoints.is_empty() || !net.reserved.is_empty() {
            let names: Vec<&str> = net
                .endpoints
                .keys()
                .chain(net.reserved.iter())
                .map(String::as_str)
                .collect();
            return Err(DaemonError::conflict(
                None,
                format!(
                    "network {name:?} has {} endpoint(s) attached ({}): detach them first",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let routers = self.routers_on(name);
        if !routers.is_empty() {
            return Err(DaemonError::conflict(
                None,
                format!(
                    "network {name:?} has router(s) on it ({}): remove them first",
                    routers.join(", ")
                ),
            ));
        }
        let removed = st.remove(name);
        self.refresh_subnets(&st);
        let saved = self.persist(&st);
        drop(st);
        if let Some(net) = removed {
            net.withdraw_ports();
            net.live.stop(&net.spec).await;
        }
        saved?;
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    // ---- endpoints ----

    pub async fn attach(
        &self,
        network: &str,
        req: EndpointCreate,
    ) -> Result<EndpointInfo, DaemonError> {
        self.registry().attach(self, network, req).await
    }

    /// Attaches without claiming the address in etcd (the cluster claims it first).
    pub(crate) async fn attach_local(
        &self,
        network: &str,
        req: EndpointCreate,
    ) -> Result<EndpointInfo, DaemonError> {
        let specs = ports::parse_specs(&req.publish)?;
        let (plan, bound, net_spec) = {
            let mut st = self.state.lock().await;
            if self.routers_on(network).contains(&req.name) {
                return Err(DaemonError::conflict(
                    Some("name"),
                    format!(
                        "router {:?} has an interface on network {network:?}: its port bears that name",
                        req.name
                    ),
                ));
            }
            let taken = published_ports(&st);
            let net = st
                .get_mut(network)
                .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
            let plan = plan::plan_endpoint(&req, &net.spec, &net.ipam, &net.taken())?;
            if !specs.is_empty() && net.spec.internal {
                return Err(no_publish_on_internal(network));
            }
            // Host ports are bound before anything is created: a busy one fails the attach
            // with nothing to undo. They are closed if the attach fails later.
            let bound = ports::bind_all(&specs, &taken)?;
            net.ipam
                .take(plan.ip)
                .map_err(|e| DaemonError::conflict(Some("ip"), e))?;
            if let (Some(ip6), Some(v6)) = (plan.ip6, net.ipam.v6_mut()) {
                if let Err(e) = v6.take(ip6) {
                    net.ipam.release(plan.ip);
                    return Err(DaemonError::conflict(Some("ip6"), e));
                }
            }
            net.reserved.insert(plan.name.clone());
            (plan, bound, net.spec.clone())
        };
        let built = self.build_endpoint(&net_spec, &plan).await;
        let mut st = self.state.lock().await;
        let Some(net) = st.get_mut(network) else {
            // Networks with reservations cannot be removed; this is unreachable in practice.
            return Err(DaemonError::NoNetwork(network.to_string()));
        };
        net.reserved.remove(&plan.name);
        let (spec, target, dev) = match built {
            Ok(b) => b,
            Err(e) => {
                net.release_addresses(plan.ip, plan.ip6);
                drop(st);
                tracing::warn!(network, endpoint = %plan.name, error = %e, "attach failed");
                return Err(e);
            }
        };
        let sp = net.live.switch.add_port(spec.name.clone(), dev.port);
        // Checked from the very first frame: set before the driver starts.
        sp.set_security(spec.port_security(&net.spec));
        net.live.switch.isolate(&sp, !net.spec.icc);
        // An endpoint gets the IPv6 multicast groups it reports, not all of them (MLD
        // snooping). Its interface came up after the port existed (a TAP queues its first
        // frames; a veth's socket is open before the peer comes up), so no report is missed.
        net.live.switch.set_mld_router(&sp, false);
        // Its MAC is known from the start (netyard gave it, port security holds it to it):
        // the gateway's Router Advertisement below and the first frames for it go to its
        // port alone instead of being flooded until it sends. Counted as the driver counts
        // a MAC it learns, so `netyard_fdb_learned_total` still covers every endpoint.
        let outcome = net
            .live
            .switch
            .fdb
            .learn(spec.mac, sp.id, net.live.switch.now_ms());
        sp.counters.learn(outcome);
        let task = match net.live.spawn_port(&sp) {
            Ok(t) => t,
            Err(e) => {
                net.live.switch.remove_port(sp.id);
                net.release_addresses(plan.ip, plan.ip6);
                drop(st);
                self.dns.leave(spec.ns_key(), network).await;
                drop(sp);
                endpoint_kind::teardown(&spec, EndpointRemains { ctl: dev.ctl }).await;
                return Err(DaemonError::Io {
                    context: format!("starting the driver of {:?}", plan.name),
                    source: e,
                });
            }
        };
        drop(target);
        net.ipam.advance(spec.ip);
        if let (Some(ip6), Some(v6)) = (spec.ip6, net.ipam.v6_mut()) {
            v6.advance(ip6);
        }
        let published =
            ports::hand_over(net.live.publisher(), bound, spec.ip, spec.ip6, spec.mac.0);
        let mut spec = spec;
        spec.published = published.iter().map(|p| p.mapping.clone()).collect();
        net.spec.forget_address(&spec.name);
        let watch = self.watch_exit(network, &spec);
        let ep = Endpoint {
            spec,
            live: EndpointLive {
                port: sp,
                task,
                ctl: dev.ctl,
            },
            watch,
            published,
        };
        let info = ep.info(net);
        net.endpoints.insert(plan.name.clone(), ep);
        net.sync_uplink();
        self.refresh_dns(&st);
        if let Err(e) = self.persist(&st) {
            drop(st);
            let _ = self.detach_local(network, &plan.name).await;
            return Err(e);
        }
        // Routes to the networks behind the routers on this network, through them.
        if let Some(net) = st.get(network) {
            if let Some(ep) = net.endpoints.get(&plan.name) {
                let ep = ep.spec.clone();
                // Its IPv6 default route before the attach answers (a runtime may check
                // it at once); a hand-over veth is not in its container yet.
                if ep.ip6.is_some() && ep.peer.is_none() {
                    net.live.greet(ep.mac).await;
                }
                // The gateway router changed while the device was built without the lock.
                let now = net.spec.default_gateway();
                self.move_default_route(&ep, net_spec.default_gateway(), now)
                    .await;
                self.attach_router_routes(&st, network, &ep).await;
            }
        }
        tracing::info!(network, endpoint = %info.name, ip = %info.ip, kind = %info.kind, "attached");
        Ok(info)
    }

    /// The slow part of an attach, without the lock: resolves the namespace, records its
    /// identity, creates and configures the device and starts the namespace's resolver.
    /// Cleans up after itself on failure.
    async fn build_endpoint(
        &self,
        net: &NetworkSpec,
        plan: &EndpointPlan,
    ) -> Result<
        (
            EndpointSpec,
            Option<NsTarget>,
            crate::runtime::ports::EndpointDevice,
        ),
        DaemonError,
    > {
        let (target, pid) = match &plan.ns {
            NsRequest::Path { netns, userns } => (
                Some(
                    NsTarget::from_paths(PathBuf::from(netns), userns.as_ref().map(PathBuf::from))
                        .map_err(|e| DaemonError::invalid("netns", e))?,
                ),
                None,
            ),
            NsRequest::Pid(pid) => (
                Some(NsTarget::from_pid(*pid).map_err(|e| DaemonError::invalid("pid", e))?),
                Some(*pid),
            ),
            NsRequest::HandOver { .. } => (None, None),
        };
        let field = if pid.is_some() { "pid" } else { "netns" };
        let identity = match &target {
            Some(t) => netns::identify(t, pid).map_err(|e| DaemonError::invalid(field, e))?,
            // No namespace: the runtime moves the interface (see `EndpointSpec::peer`).
            None => netns::NsIdentity {
                dev: 0,
                ino: 0,
                pid: None,
                pid_start: None,
            },
        };
        let spec = EndpointSpec {
            name: plan.name.clone(),
            kind: plan.kind,
            ip: plan.ip,
            ip6: plan.ip6,
            mac: plan.mac,
            ifname: plan.ifname.clone(),
            netns: plan.ns.label(),
            userns: match &plan.ns {
                NsRequest::Path { userns, .. } => userns.clone(),
                NsRequest::Pid(_) | NsRequest::HandOver { .. } => None,
            },
            pid,
            identity,
            host_ifname: (plan.kind == PortKindName::Veth).then(Veth::host_name),
            peer: match &plan.ns {
                NsRequest::HandOver { peer } => Some(peer.clone()),
                _ => None,
            },
            offload: plan.offload,
            trusted: plan.trusted,
            aliases: plan.aliases.clone(),
            published: Vec::new(),
            owner: plan.owner.clone(),
            link: Default::default(),
        };
        let cx = EndpointCx {
            net,
            target: target.as_ref(),
            persist: self.persistent(),
            configure: self.endpoints.configure,
        };
        // A device of this namespace still being removed may hold the interface name.
        self.teardowns
            .settled_in((spec.identity.dev, spec.identity.ino))
            .await;
        let dev = endpoint_kind::setup(&cx, &spec).await?;
        // The resolver listens before attach returns, as the interface is configured (unless
        // the runtime serves 127.0.0.11 itself, or netyard never enters the container).
        if let Some(target) = target
            .as_ref()
            .filter(|_| net.container_resolver && self.endpoints.dns_in_namespace)
        {
            if let Err(e) = self
                .dns
                .join(spec.ns_key(), target, &net.name, net.internal)
                .await
            {
                let remains = EndpointRemains { ctl: dev.ctl };
                drop(dev.port);
                endpoint_kind::teardown(&spec, remains).await;
                return Err(e);
            }
        }
        Ok((spec, target, dev))
    }

    /// Renames an endpoint on a network; DNS answers the new name at once and the old one no
    /// more (with etcd, on the other hosts too once they see the new record).
    pub async fn rename(
        &self,
        network: &str,
        name: &str,
        new_name: &str,
    ) -> Result<EndpointInfo, DaemonError> {
        let info = self.rename_local(network, name, new_name).await?;
        self.registry().renamed(network, &info).await;
        Ok(info)
    }

    async fn rename_local(
        &self,
        network: &str,
        name: &str,
        new_name: &str,
    ) -> Result<EndpointInfo, DaemonError> {
        plan::valid_name("name", new_name)?;
        let mut st = self.state.lock().await;
        let net = st
            .get_mut(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        if !net.endpoints.contains_key(name) {
            return Err(DaemonError::NoEndpoint {
                network: network.to_string(),
                name: name.to_string(),
            });
        }
        if new_name != name
            && (net.endpoints.contains_key(new_name) || net.reserved.contains(new_name))
        {
            return Err(DaemonError::conflict(
                Some("name"),
                format!(
                    "an endpoint named {new_name:?} is already attached to network {network:?}"
                ),
            ));
        }
        let Some(mut ep) = net.endpoints.remove(name) else {
            return Err(DaemonError::NoEndpoint {
                network: network.to_string(),
                name: name.to_string(),
            });
        };
        ep.spec.name = new_name.to_string();
        ep.spec.aliases.retain(|a| a != new_name);
        let info = ep.info(net);
        net.endpoints.insert(new_name.to_string(), ep);
        self.refresh_dns(&st);
        self.persist(&st)?;
        tracing::info!(network, endpoint = name, new_name, "renamed");
        Ok(info)
    }

    /// Publishes more ports of an attached endpoint, all or nothing: if one host port is
    /// busy, every socket bound for the request is closed and the endpoint is left as it was.
    pub async fn publish(
        &self,
        network: &str,
        name: &str,
        specs: &[String],
    ) -> Result<EndpointInfo, DaemonError> {
        if specs.is_empty() {
            return Err(DaemonError::invalid("publish", "give at least one SPEC"));
        }
        let specs = ports::parse_specs(specs)?;
        let mut st = self.state.lock().await;
        let taken = published_ports(&st);
        let net = st
            .get_mut(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        if net.spec.internal {
            return Err(no_publish_on_internal(network));
        }
        plan::no_publish_on_macvlan(&net.spec)?;
        let no_endpoint = || DaemonError::NoEndpoint {
            network: network.to_string(),
            name: name.to_string(),
        };
        let ep = net.endpoints.get_mut(name).ok_or_else(no_endpoint)?;
        let bound = ports::bind_all(&specs, &taken)?;
        let new = ports::hand_over(
            net.live.publisher(),
            bound,
            ep.spec.ip,
            ep.spec.ip6,
            ep.spec.mac.0,
        );
        let added: Vec<_> = new.iter().map(|p| p.mapping.info()).collect();
        ep.published.extend(new);
        ep.spec.published = ep.published.iter().map(|p| p.mapping.clone()).collect();
        let info = net
            .endpoints
            .get(name)
            .map(|e| e.info(net))
            .ok_or_else(no_endpoint)?;
        self.persist(&st)?;
        tracing::info!(network, endpoint = name, ports = ?added, "published");
        Ok(info)
    }

    /// Stops publishing the endpoint's ports that `spec` names (see
    /// `netyard_api::portspec::PortSpec::matches`); refused if it names none.
    pub async fn unpublish(
        &self,
        network: &str,
        name: &str,
        spec: &str,
    ) -> Result<EndpointInfo, DaemonError> {
        let spec =
            netyard_api::portspec::parse(spec).map_err(|e| DaemonError::invalid("spec", e))?;
        let mut st = self.state.lock().await;
        let net = st
            .get_mut(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        let no_endpoint = || DaemonError::NoEndpoint {
            network: network.to_string(),
            name: name.to_string(),
        };
        let ep = net.endpoints.get_mut(name).ok_or_else(no_endpoint)?;
        let named = |p: &ports::Published| {
            let m = &p.mapping;
            spec.matches(m.host_ip, m.host_port, m.container_port, m.proto)
        };
        if !ep.published.iter().any(named) {
            return Err(DaemonError::conflict(
                Some("spec"),
                format!(
                    "endpoint {name:?} on network {network:?} publishes no port that {spec} names"
                ),
            ));
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut ep.published)
            .into_iter()
            .partition(named);
        ep.published = kept;
        ep.spec.published = ep.published.iter().map(|p| p.mapping.clone()).collect();
        ports::withdraw(net.live.publisher(), &gone);
        let info = net
            .endpoints
            .get(name)
            .map(|e| e.info(net))
            .ok_or_else(no_endpoint)?;
        let removed: Vec<_> = gone.iter().map(|p| p.mapping.info()).collect();
        self.persist(&st)?;
        tracing::info!(network, endpoint = name, ports = ?removed, "unpublished");
        Ok(info)
    }

    pub async fn detach(&self, network: &str, name: &str) -> Result<(), DaemonError> {
        self.registry().detach(self, network, name).await
    }

    pub(crate) async fn detach_local(&self, network: &str, name: &str) -> Result<(), DaemonError> {
        let (ep, saved) = {
            let mut st = self.state.lock().await;
            let net = st
                .get_mut(network)
                .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
            let ep = net
                .endpoints
                .remove(name)
                .ok_or_else(|| DaemonError::NoEndpoint {
                    network: network.to_string(),
                    name: name.to_string(),
                })?;
            net.live.switch.remove_port(ep.live.port.id);
            net.sync_uplink();
            net.release_addresses(ep.spec.ip, ep.spec.ip6);
            net.spec.remember_address(&ep.spec.name, ep.spec.ip);
            ports::withdraw(net.live.publisher(), &ep.published);
            self.refresh_dns(&st);
            (ep, self.persist(&st))
        };
        self.dns.leave(ep.spec.ns_key(), network).await;
        // The change is on disk; the device goes right after the answer (runtime/teardown.rs).
        self.teardown_later(ep);
        saved?;
        tracing::info!(network, endpoint = name, "detached");
        Ok(())
    }

    /// Stops an endpoint at once (its driver and watcher; a persistent TAP stops being
    /// persistent, so a daemon killed now leaves no device behind) and removes its device in
    /// the background.
    fn teardown_later(&self, ep: Endpoint) {
        if let Some(w) = &ep.watch {
            w.abort();
        }
        ep.live.task.abort();
        endpoint_kind::unpersist(&ep.spec, ep.live.ctl.as_ref());
        let ns = (ep.spec.identity.dev, ep.spec.identity.ino);
        self.teardowns.start(ns, teardown_endpoint(ep));
    }

    /// Starts a packet capture on a network (every port's received frames) or on one endpoint
    /// (its received and transmitted frames). The capture runs until the returned guard drops.
    pub async fn capture(
        &self,
        network: &str,
        endpoint: Option<&str>,
    ) -> Result<(CaptureGuard, tokio::sync::mpsc::Receiver<CapturedFrame>), DaemonError> {
        let st = self.state.lock().await;
        let net = st
            .get(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        let router = endpoint
            .filter(|n| !net.endpoints.contains_key(*n))
            .and_then(|n| self.router_port(network, n));
        let ports: Vec<Arc<SwitchPort>> = match endpoint {
            // A router's interface on the network, by the router's name.
            Some(_) if router.is_some() => router.map(|(_, sp)| sp).into_iter().collect(),
            Some(name) => vec![net
                .endpoints
                .get(name)
                .ok_or_else(|| DaemonError::NoEndpoint {
                    network: network.to_string(),
                    name: name.to_string(),
                })?
                .live
                .port
                .clone()],
            None => net.live.switch.ports().iter().cloned().collect(),
        };
        let (cap, rx) = Capture::new(endpoint.is_some(), 4096);
        let mut guard = CaptureGuard {
            ports: Vec::new(),
            cap: cap.clone(),
        };
        for p in ports {
            if !p.capture.start(cap.clone()) {
                return Err(DaemonError::conflict(
                    Some("endpoint"),
                    format!("a capture is already running on {:?}", p.name),
                ));
            }
            guard.ports.push(p);
        }
        Ok((guard, rx))
    }

    /// Every network's egress flows and counters (`netyard flows`).
    pub async fn flows(&self) -> serde_json::Value {
        let st = self.state.lock().await;
        serde_json::Value::Array(
            st.values()
                .filter_map(|n| {
                    // A macvlan network has no gateway, so no egress flows.
                    let gw = n.live.gw.as_ref()?;
                    Some(serde_json::json!({
                        "network": n.spec.name,
                        "stats": gw.egress.stats(),
                        "flows": gw.egress.flows(),
                    }))
                })
                .collect(),
        )
    }

    /// Detaches the endpoints whose container went away: the device vanished (the kernel
    /// removed the TAP or veth with its namespace, so the port's driver stopped), or the
    /// namespace given by path was deleted (`ip netns del`: the daemon's own descriptors keep
    /// it alive, so only the path tells), or it was replaced by another one. Run every
    /// second by the reaper. Returns their names.
    pub async fn reap(&self) -> Vec<String> {
        let suspects: Vec<(String, String, EndpointSpec, bool)> = {
            let st = self.state.lock().await;
            st.values()
                .flat_map(|n| {
                    n.endpoints.values().map(|e| {
                        (
                            n.spec.name.clone(),
                            e.spec.name.clone(),
                            e.spec.clone(),
                            e.live.task.is_finished(),
                        )
                    })
                })
                .collect()
        };
        let mut gone = Vec::new();
        for (network, name, spec, finished) in suspects {
            let why = if finished {
                Some("its device vanished".to_string())
            } else if spec.handed_over() {
                // No namespace to check: the runtime detaches it (Docker's Leave and
                // DeleteEndpoint), or its device vanishes with the container.
                None
            } else {
                match netns::check(Path::new(&spec.netns), &spec.identity) {
                    NsStatus::Same => None,
                    NsStatus::Gone if spec.pid.is_some() => {
                        Some(format!("its process {} exited", spec.netns))
                    }
                    NsStatus::Gone => Some(format!("its namespace {} was deleted", spec.netns)),
                    NsStatus::Replaced => Some(format!("{} is another namespace now", spec.netns)),
                }
            };
            if let Some(why) = why {
                if self
                    .detach_gone(&network, &name, &spec.identity, &why)
                    .await
                {
                    gone.push(name);
                }
            }
        }
        gone
    }

    /// The reaper heard that a `--pid` endpoint's process exited.
    pub async fn process_exited(&self, e: Exited) {
        let why = format!("its process {} exited", e.identity.pid.unwrap_or_default());
        self.detach_gone(&e.network, &e.endpoint, &e.identity, &why)
            .await;
    }

    /// Detaches an endpoint whose container went away, if the endpoint of that name is still
    /// the one of that namespace (a new container may have taken the name meanwhile).
    async fn detach_gone(
        &self,
        network: &str,
        name: &str,
        identity: &netns::NsIdentity,
        why: &str,
    ) -> bool {
        {
            let st = self.state.lock().await;
            let same = st
                .get(network)
                .and_then(|n| n.endpoints.get(name))
                .is_some_and(|e| e.spec.identity == *identity);
            if !same {
                return false;
            }
        }
        match self.detach(network, name).await {
            Ok(()) => {
                let mut st = self.state.lock().await;
                if let Some(n) = st.get_mut(network) {
                    n.reaped += 1;
                }
                tracing::info!(network, endpoint = %name, reason = why,
                    "container gone; endpoint detached");
                true
            }
            Err(e) => {
                tracing::warn!(network, endpoint = %name, error = %e, "detaching a gone container failed");
                false
            }
        }
    }

    pub async fn endpoints(&self) -> Vec<EndpointInfo> {
        let st = self.state.lock().await;
        let mut out: Vec<EndpointInfo> = st
            .values()
            .flat_map(|n| n.endpoints.values().map(move |e| e.info(n)))
            .collect();
        // Runs that joined an endpoint's namespace: one row per network of the target, with
        // its addresses and counters (they share its interfaces).
        for j in self.joins.list() {
            for n in st.values() {
                if let Some(e) = n
                    .endpoints
                    .get(&j.target)
                    .filter(|e| e.spec.ns_key() == j.ns_key)
                {
                    let mut info = e.info(n);
                    info.name = j.name.clone();
                    info.kind = "container".into();
                    info.target = Some(j.target.clone());
                    info.ports.clear();
                    info.owner = None;
                    out.push(info);
                }
            }
        }
        out
    }

    /// Registers a `run --network container:TARGET` (see `crate::joins`) until
    /// [`Daemon::unjoin`] or until process `peer` (the API client) exits.
    pub async fn join(
        &self,
        req: netyard_api::model::JoinCreate,
        peer: Option<u32>,
    ) -> Result<netyard_api::model::JoinInfo, DaemonError> {
        crate::plan::valid_name("name", &req.name)?;
        crate::plan::valid_name("target", &req.target)?;
        // Without the client's pid the registration could outlive a killed client.
        let pid = peer.filter(|p| *p != 0).ok_or_else(|| {
            DaemonError::invalid(
                "name",
                "the client's process is not visible from the daemon's PID namespace, so its \
                 end could not be noticed",
            )
        })?;
        let st = self.state.lock().await;
        let candidates: Vec<(&str, &EndpointSpec)> = st
            .values()
            .filter_map(|n| {
                n.endpoints
                    .get(&req.target)
                    .map(|e| (n.spec.name.as_str(), &e.spec))
            })
            .collect();
        let target = crate::joins::pick_target(&req.target, &candidates)?;
        if let Some((net, _)) = st
            .values()
            .find(|n| n.endpoints.contains_key(&req.name))
            .map(|n| (n.spec.name.clone(), ()))
        {
            return Err(DaemonError::conflict(
                Some("name"),
                format!("an endpoint named {:?} is on network {net:?}", req.name),
            ));
        }
        let first = st
            .values()
            .find(|n| n.endpoints.contains_key(&req.target))
            .map(|n| &n.spec);
        let resolv_conf = match first {
            Some(n) if !n.container_resolver => {
                format!("nameserver {}\noptions ndots:0\n", n.gateway)
            }
            _ => dnsd::resolv_conf(),
        };
        let watch = crate::netns::NsIdentity {
            dev: 0,
            ino: 0,
            pid: Some(pid),
            pid_start: crate::netns::start_time(pid).ok(),
        };
        let pidfd = crate::netns::exit_watch(&watch).map_err(|e| DaemonError::Io {
            context: format!("watching the client process {pid}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let info = netyard_api::model::JoinInfo {
            name: req.name.clone(),
            target: req.target.clone(),
            netns: target.netns.clone(),
            netns_dev: target.identity.dev,
            netns_ino: target.identity.ino,
            resolv_conf,
        };
        let joined = self.joins.add(&req.name, &req.target, target.ns_key())?;
        drop(st);
        if let Some(fd) = pidfd {
            let joins = self.joins.clone();
            let (id, name) = (joined.id, joined.name.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::netns::wait_exit(fd).await {
                    tracing::warn!(name, error = %e, "watching a joined run failed");
                }
                joins.remove_id(id);
                tracing::info!(name, "joined run ended");
            });
        }
        tracing::info!(name = %req.name, target = %req.target, pid, "run joined a container");
        Ok(info)
    }

    /// Forgets a `container:` run registered under `name`.
    pub fn unjoin(&self, name: &str) -> Result<(), DaemonError> {
        if self.joins.remove(name) {
            Ok(())
        } else {
            Err(DaemonError::invalid(
                "name",
                format!("no run named {name:?} joins a container"),
            ))
        }
    }

    pub async fn fdb(&self, network: &str) -> Result<Vec<FdbRow>, DaemonError> {
        let st = self.state.lock().await;
        let net = st
            .get(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        let now = net.live.switch.now_ms();
        let ports = net.live.switch.ports();
        let mut remotes: BTreeMap<MacAddr, netyard_switch::overlay::RemoteView> = net
            .live
            .vxlan
            .as_ref()
            .map(|vx| {
                vx.table
                    .entries(now)
                    .into_iter()
                    .map(|r| (r.mac, r))
                    .collect()
            })
            .unwrap_or_default();
        let vx_port = net.live.vxlan.as_ref().map(|vx| vx.port.id);
        let mut rows: Vec<FdbRow> = net
            .live
            .switch
            .fdb
            .entries(now)
            .into_iter()
            .map(|e| FdbRow {
                mac: e.mac.to_string(),
                port: Switch::port_in(&ports, e.port)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| format!("#{}", e.port)),
                port_id: e.port,
                age: e.age_ms as f64 / 1000.0,
                is_static: e.is_static,
                remote: if Some(e.port) == vx_port {
                    remotes.remove(&e.mac).map(|r| r.vtep.to_string())
                } else {
                    None
                },
            })
            .collect();
        // Remote MACs the switch's table does not hold (aged there, or not seen yet).
        if let Some(id) = vx_port {
            rows.extend(remotes.into_values().map(|r| FdbRow {
                mac: r.mac.to_string(),
                port: "vxlan".to_string(),
                port_id: id,
                age: r.age_ms as f64 / 1000.0,
                is_static: r.is_static,
                remote: Some(r.vtep.to_string()),
            }));
            rows.sort_by(|a, b| a.mac.cmp(&b.mac));
        }
        Ok(rows)
    }

    /// Adds a static remote entry on a VXLAN network: the MAC lives behind `remote`. It goes
    /// into the tunnel's remote table and, as a static entry on the tunnel port, into the
    /// switch's table, so frames to it are neither flooded nor moved by learning.
    pub async fn fdb_add(&self, network: &str, req: FdbAdd) -> Result<FdbRow, DaemonError> {
        let mac: MacAddr = req
            .mac
            .parse()
            .map_err(|e| DaemonError::invalid("mac", e))?;
        if mac.is_multicast() || mac.is_zero() {
            return Err(DaemonError::invalid(
                "mac",
                format!("{mac} is not a unicast address"),
            ));
        }
        let remote = parse_vtep("remote", &req.remote)?;
        let mut st = self.state.lock().await;
        let (net, vx) = tunnel_of(&st, network)?;
        if net.endpoints.values().any(|e| e.spec.mac == mac) || net.live.gateway_mac() == Some(mac)
        {
            return Err(DaemonError::conflict(
                Some("mac"),
                format!("{mac} belongs to this host's network {network:?}"),
            ));
        }
        vx.table.add_static(mac, remote);
        net.live.switch.fdb.add_static(mac, vx.port.id);
        let row = FdbRow {
            mac: mac.to_string(),
            port: vx.port.name.clone(),
            port_id: vx.port.id,
            age: 0.0,
            is_static: true,
            remote: Some(remote.to_string()),
        };
        if let Some(net) = st.get_mut(network) {
            net.spec.static_fdb.insert(mac, remote);
        }
        self.persist(&st)?;
        tracing::info!(network, %mac, %remote, "static remote entry added");
        Ok(row)
    }

    /// Removes a static remote entry (and the switch's static entry for it).
    pub async fn fdb_del(&self, network: &str, mac: &str) -> Result<(), DaemonError> {
        let mac: MacAddr = mac.parse().map_err(|e| DaemonError::invalid("mac", e))?;
        let mut st = self.state.lock().await;
        let (net, vx) = tunnel_of(&st, network)?;
        let is_static = vx
            .table
            .entries(net.live.switch.now_ms())
            .iter()
            .any(|e| e.mac == mac && e.is_static);
        if !is_static {
            return Err(DaemonError::conflict(
                Some("mac"),
                format!("{mac} has no static remote entry on network {network:?}"),
            ));
        }
        vx.table.remove(&mac);
        net.live.switch.fdb.remove_static(&mac, vx.port.id);
        if let Some(net) = st.get_mut(network) {
            net.spec.static_fdb.remove(&mac);
        }
        self.persist(&st)?;
        tracing::info!(network, %mac, "static remote entry removed");
        Ok(())
    }

    pub async fn stats(&self) -> Vec<PortStatsRow> {
        let st = self.state.lock().await;
        let routers = self.router_ports();
        let routers = &routers;
        st.values()
            .flat_map(|n| {
                // The gateway's row is named "(gateway)": not a valid endpoint name, so it
                // never clashes with one.
                let gw = n.live.gw.as_ref().map(|gw| PortStatsRow {
                    network: n.spec.name.clone(),
                    endpoint: "(gateway)".to_string(),
                    kind: "gateway".to_string(),
                    counters: counters(&synced(&gw.port)),
                });
                // And "(uplink)" for a macvlan network's port on its parent.
                let up = n.live.uplink.as_ref().map(|up| PortStatsRow {
                    network: n.spec.name.clone(),
                    endpoint: "(uplink)".to_string(),
                    kind: "macvlan".to_string(),
                    counters: counters(&synced(&up.port)),
                });
                // Likewise "(vxlan)" for the tunnel port.
                let vx = n.live.vxlan.as_ref().map(|vx| PortStatsRow {
                    network: n.spec.name.clone(),
                    endpoint: "(vxlan)".to_string(),
                    kind: "vxlan".to_string(),
                    counters: counters(&synced(&vx.port)),
                });
                let rt: Vec<PortStatsRow> = routers
                    .iter()
                    .filter(|(net, _, _)| *net == n.spec.name)
                    .map(|(net, r, sp)| PortStatsRow {
                        network: net.clone(),
                        endpoint: r.clone(),
                        kind: "router".to_string(),
                        counters: counters(&synced(sp)),
                    })
                    .collect();
                n.endpoints
                    .values()
                    .map(move |e| PortStatsRow {
                        network: n.spec.name.clone(),
                        endpoint: e.spec.name.clone(),
                        kind: endpoint_kind::describe(&e.spec).kind.to_string(),
                        counters: counters(&synced(&e.live.port)),
                    })
                    .chain(gw)
                    .chain(vx)
                    .chain(up)
                    .chain(rt)
            })
            .collect()
    }

    /// Stops the daemon. A persistent daemon stops its tasks and closes its descriptors but
    /// leaves every endpoint's device, address and route in place (persistent TAPs, veth
    /// pairs) for the next start to re-adopt; an ephemeral one removes everything it made.
    pub async fn shutdown(&self) {
        // With etcd: revokes the lease, this node's keys vanish from etcd at once (a restart
        // registers them again).
        self.registry().stop().await;
        // Detaches answered before the stop finish removing their devices.
        self.teardowns.settled().await;
        if self.persistent() {
            self.shutdown_in_process().await;
        } else {
            self.remove_everything().await;
        }
    }

    /// Stops every task and closes every descriptor, leaving the devices.
    async fn shutdown_in_process(&self) {
        let nets: Vec<Network> = {
            let mut st = self.state.lock().await;
            self.stop_routers();
            std::mem::take(&mut *st).into_values().collect()
        };
        self.dns.set_records(Vec::new());
        self.dns.shutdown().await;
        for mut net in nets {
            net.withdraw_ports();
            // Closing an AF_PACKET socket waits for an RCU grace period in the kernel (~14 ms
            // each, measured): closed one after another, 100 veth endpoints kept the old
            // daemon alive 1.4 s. Closed concurrently, on the blocking pool, the waits overlap.
            let closing = std::mem::take(&mut net.endpoints).into_values().map(|ep| {
                net.live.switch.remove_port(ep.live.port.id);
                if let Some(w) = &ep.watch {
                    w.abort();
                }
                ep.live.task.abort();
                async move {
                    let _ = ep.live.task.await;
                    let port = ep.live.port;
                    for _ in 0..400 {
                        if Arc::strong_count(&port) == 1 {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    let _ = tokio::task::spawn_blocking(move || drop(port)).await;
                }
            });
            futures::future::join_all(closing.collect::<Vec<_>>()).await;
            net.live.stop(&net.spec).await;
        }
    }

    /// Removes every endpoint (and so every device netyard created) and every network, the
    /// endpoints' devices concurrently (runtime/teardown.rs). Returns how many of each.
    async fn remove_everything(&self) -> ResetReport {
        let nets: Vec<Network> = {
            let mut st = self.state.lock().await;
            self.stop_routers();
            let nets = std::mem::take(&mut *st).into_values().collect();
            self.refresh_subnets(&st);
            nets
        };
        self.dns.set_records(Vec::new());
        self.dns.shutdown().await;
        self.remove_networks(nets).await
    }

    /// Takes networks already out of the state apart: every endpoint's device is removed
    /// concurrently (this waits for all of them), then the networks stop.
    async fn remove_networks(&self, mut nets: Vec<Network>) -> ResetReport {
        let mut report = ResetReport {
            networks_removed: nets.len(),
            endpoints_removed: 0,
        };
        for net in nets.iter_mut() {
            net.withdraw_ports();
            for (_, ep) in std::mem::take(&mut net.endpoints) {
                net.live.switch.remove_port(ep.live.port.id);
                self.dns.leave(ep.spec.ns_key(), &net.spec.name).await;
                self.teardown_later(ep);
                report.endpoints_removed += 1;
            }
        }
        self.teardowns.settled().await;
        futures::future::join_all(nets.into_iter().map(|n| async move {
            n.live.stop(&n.spec).await;
        }))
        .await;
        report
    }

    /// `netyard system reset`: detaches every endpoint (devices removed), removes every
    /// network and clears the state; the daemon keeps running, empty.
    pub async fn reset(&self) -> Result<ResetReport, DaemonError> {
        if self.registry.get().is_none() {
            return self.reset_local().await;
        }
        // With a cluster registry every detach and removal is also registered (etcd keys):
        // one at a time through it.
        let mut removed = ResetReport::default();
        self.stop_routers();
        let names: Vec<(String, Vec<String>)> = {
            let st = self.state.lock().await;
            st.values()
                .map(|n| (n.spec.name.clone(), n.endpoints.keys().cloned().collect()))
                .collect()
        };
        for (network, eps) in &names {
            for ep in eps {
                match self.detach(network, ep).await {
                    Ok(()) | Err(DaemonError::NoEndpoint { .. }) => removed.endpoints_removed += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        for (network, _) in &names {
            match self.remove_network(network).await {
                Ok(()) | Err(DaemonError::NoNetwork(_)) => removed.networks_removed += 1,
                Err(e) => return Err(e),
            }
        }
        let st = self.state.lock().await;
        self.persist(&st)?;
        tracing::info!(
            networks = removed.networks_removed,
            endpoints = removed.endpoints_removed,
            "system reset"
        );
        Ok(removed)
    }

    /// `system reset` on a daemon of its own: one state change and one write for everything,
    /// then every device removed concurrently (with 500 endpoints, one detach after another
    /// took 13.7 s). All or nothing: an attach in progress, or a failed write, changes nothing.
    async fn reset_local(&self) -> Result<ResetReport, DaemonError> {
        let nets: Vec<Network> = {
            let mut st = self.state.lock().await;
            if let Some((name, n)) = st.iter().find(|(_, n)| !n.reserved.is_empty()) {
                return Err(DaemonError::conflict(
                    None,
                    format!(
                        "network {name:?} has endpoint(s) being attached ({}): try again",
                        n.reserved.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            self.stop_routers();
            let taken = std::mem::take(&mut *st);
            if let Err(e) = self.persist(&st) {
                *st = taken;
                return Err(e);
            }
            self.refresh_dns(&st);
            self.refresh_subnets(&st);
            taken.into_values().collect()
        };
        let removed = self.remove_networks(nets).await;
        tracing::info!(
            networks = removed.networks_removed,
            endpoints = removed.endpoints_removed,
            "system reset"
        );
        Ok(removed)
    }

    /// Every network and endpoint spec as they run now, for planning a `--config` against.
    pub(crate) async fn specs(&self) -> StateSpec {
        snapshot(&*self.state.lock().await)
    }
}

/// The persisted form of the state.
fn snapshot(st: &Networks) -> StateSpec {
    StateSpec {
        // The routers are added by `persist` (they are not under this lock).
        routers: BTreeMap::new(),
        networks: st
            .iter()
            .map(|(name, n)| {
                (
                    name.clone(),
                    SavedNetwork {
                        network: n.spec.clone(),
                        endpoints: n
                            .endpoints
                            .iter()
                            .map(|(k, e)| (k.clone(), e.spec.clone()))
                            .collect(),
                    },
                )
            })
            .collect(),
    }
}

/// The namespace of a recorded endpoint, for re-adopting it.
fn ns_target(spec: &EndpointSpec) -> Result<NsTarget, DaemonError> {
    match spec.pid {
        Some(pid) => NsTarget::from_pid(pid).map_err(|e| DaemonError::invalid("pid", e)),
        None => NsTarget::from_paths(
            PathBuf::from(&spec.netns),
            spec.userns.as_ref().map(PathBuf::from),
        )
        .map_err(|e| DaemonError::invalid("netns", e)),
    }
}

/// Binds a restored endpoint's published ports again, exactly as they were; a port that
/// something else took meanwhile is logged and left out.
fn rebind(net: &Network, spec: &EndpointSpec) -> Vec<ports::Published> {
    let mut bound = Vec::new();
    for m in &spec.published {
        match ports::bind_exact(m) {
            Ok(b) => bound.push(b),
            Err(e) => tracing::warn!(network = %net.spec.name, endpoint = %spec.name,
                port = ?m.info(), error = %e, "published port not restored"),
        }
    }
    ports::hand_over(net.live.publisher(), bound, spec.ip, spec.ip6, spec.mac.0)
}

impl Network {
    /// A network with no endpoint yet.
    fn new(spec: NetworkSpec, live: NetworkLive) -> Network {
        let mut ipam = Ipam::new(spec.subnet, spec.gateway)
            .with_range(spec.ip_range)
            .with_ipv6(spec.ipv6.map(|v| (v.subnet, v.gateway)));
        // The gateway's extra addresses inside the subnet are never handed out.
        for &ip in &spec.gateway_extra {
            let _ = ipam.take(ip);
        }
        if let Some(v6) = ipam.v6_mut() {
            for &ip in &spec.gateway_extra6 {
                let _ = v6.take(ip);
            }
        }
        Network {
            ipam,
            spec,
            live,
            endpoints: BTreeMap::new(),
            reserved: BTreeSet::new(),
            remote_names: Vec::new(),
            reaped: 0,
        }
    }

    /// Gives an endpoint's addresses back to IPAM.
    fn release_addresses(&mut self, ip: Ipv4Addr, ip6: Option<std::net::Ipv6Addr>) {
        self.ipam.release(ip);
        if let (Some(ip6), Some(v6)) = (ip6, self.ipam.v6_mut()) {
            v6.release(ip6);
        }
    }

    /// Stops every published port of the network's endpoints (the gateway closes their
    /// sockets).
    fn withdraw_ports(&self) {
        for ep in self.endpoints.values() {
            ports::withdraw(self.live.publisher(), &ep.published);
        }
    }

    /// Tells a macvlan network's uplink which MACs to let in from the LAN: its endpoints'.
    fn sync_uplink(&self) {
        self.live
            .set_endpoint_macs(self.endpoints.values().map(|e| e.spec.mac));
    }

    /// What the network's endpoints hold, for planning an attach.
    fn taken(&self) -> plan::Taken {
        let mut macs: BTreeSet<MacAddr> = self.endpoints.values().map(|e| e.spec.mac).collect();
        macs.extend(self.live.gateway_mac());
        plan::Taken {
            names: self
                .endpoints
                .keys()
                .chain(self.reserved.iter())
                .cloned()
                .collect(),
            macs,
            remote_static: self
                .live
                .vxlan
                .as_ref()
                .map(|vx| {
                    vx.table
                        .entries(0)
                        .into_iter()
                        .filter(|e| e.is_static)
                        .map(|e| (e.mac, e.vtep))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn info(&self) -> NetworkInfo {
        let s = &self.spec;
        NetworkInfo {
            name: s.name.clone(),
            subnet: s.subnet.to_string(),
            gateway: s.gateway.to_string(),
            subnet6: s.ipv6.map(|v| v.subnet.to_string()),
            gateway6: s.ipv6.map(|v| v.gateway.to_string()),
            gateway6_link_local: s
                .ipv6
                .and(self.live.gateway_mac())
                .map(|m| netyard_switch::wire::ipv6::link_local_from_mac(m).to_string()),
            mtu: s.mtu,
            internal: s.internal,
            host_loopback: s.host_loopback,
            gateway_extra: s.gateway_extra_all().map(|ip| ip.to_string()).collect(),
            maps: s
                .maps
                .iter()
                .map(|m| netyard_api::model::AddrMapReq {
                    guest: m.guest.to_string(),
                    host: m.host.to_string(),
                })
                .collect(),
            container_resolver: s.container_resolver,
            port_security: s.port_security,
            icc: s.icc,
            max_flows_per_endpoint: s.max_flows_per_endpoint,
            max_flows: s.max_flows,
            aging: s.aging,
            max_macs_per_port: s.max_macs_per_port,
            gateway_router: s.gateway_router.as_ref().map(|g| g.router.clone()),
            gateway_router_ip: s.gateway_router.as_ref().map(|g| g.ip.to_string()),
            endpoints: self.endpoints.keys().cloned().collect(),
            endpoints_reaped: self.reaped,
            vxlan: s.vxlan.as_ref().map(|v| VxlanInfo {
                vni: v.vni,
                local: v.local.to_string(),
                port: v.port,
                peers: v.peers.iter().map(ToString::to_string).collect(),
                underlay_mtu: v.underlay_mtu,
                flow_source_ports: self
                    .live
                    .vxlan
                    .as_ref()
                    .is_some_and(|vx| vx.flow_source_ports),
            }),
            driver: s.driver.as_str().to_string(),
            parent: s.parent.clone(),
            ip_range: s.ip_range.map(|r| r.to_string()),
            note: macvlan_note(s),
        }
    }
}

/// What `network inspect` tells of a macvlan network's behaviour.
fn macvlan_note(s: &NetworkSpec) -> Option<String> {
    let parent = s.parent.as_deref()?;
    let routers = match s.ipv6 {
        Some(v6) => format!("{} and {}", s.gateway, v6.gateway),
        None => s.gateway.to_string(),
    };
    Some(format!(
        "macvlan: the containers are hosts of the LAN on {parent} with MACs of their own, \
         {routers} their gateway; the host itself cannot reach them through {parent} (as with \
         Docker's macvlan: what it sends there leaves on the wire), only other hosts of that \
         LAN can; no netyard gateway, no published ports, names resolve at 127.0.0.11 inside \
         the containers"
    ))
}

impl Endpoint {
    fn info(&self, net: &Network) -> EndpointInfo {
        let s = &self.spec;
        let d = endpoint_kind::describe(s);
        EndpointInfo {
            name: s.name.clone(),
            network: net.spec.name.clone(),
            kind: d.kind.to_string(),
            ip: s.ip.to_string(),
            prefix_len: net.spec.subnet.prefix_len(),
            gateway: net.spec.gateway.to_string(),
            ip6: s.ip6.map(|a| a.to_string()),
            gateway6: net.spec.ipv6.map(|v| v.gateway.to_string()),
            prefix_len6: s.ip6.and(net.spec.ipv6).map(|v| v.subnet.prefix_len()),
            mac: s.mac.to_string(),
            ifname: s.ifname.clone(),
            netns: s.netns.clone(),
            host_ifname: d.host_ifname,
            offload: s.offload,
            port_security: self.live.port.security().is_some(),
            port: self.live.port.id,
            counters: counters(&self.live.port.counters.snapshot()),
            aliases: s.aliases.clone(),
            resolv_conf: if net.spec.container_resolver {
                dnsd::resolv_conf()
            } else {
                format!("nameserver {}\noptions ndots:0\n", net.spec.gateway)
            },
            ports: self.published.iter().map(|p| p.mapping.info()).collect(),
            owner: s.owner.clone(),
            target: None,
        }
    }
}

impl Daemon {
    /// What a Prometheus scrape shows (`crate::metrics`): every port's counters (kernel drops
    /// read first, as for `stats`), each network's tables and egress counters, the resolver's.
    pub async fn metrics_sample(&self) -> crate::metrics::Sample {
        use crate::metrics::{NetworkSample, PortSample};
        let st = self.state.lock().await;
        let mut sample = crate::metrics::Sample::default();
        for n in st.values() {
            let row = |endpoint: &str, kind: &str, port: &SwitchPort| PortSample {
                network: n.spec.name.clone(),
                endpoint: endpoint.to_string(),
                kind: kind.to_string(),
                stats: synced(port),
            };
            for e in n.endpoints.values() {
                let kind = endpoint_kind::describe(&e.spec).kind;
                sample.ports.push(row(&e.spec.name, kind, &e.live.port));
            }
            if let Some(gw) = &n.live.gw {
                sample.ports.push(row("(gateway)", "gateway", &gw.port));
            }
            if let Some(vx) = &n.live.vxlan {
                sample.ports.push(row("(vxlan)", "vxlan", &vx.port));
            }
            if let Some(up) = &n.live.uplink {
                sample.ports.push(row("(uplink)", "macvlan", &up.port));
            }
            let mut flows: std::collections::BTreeMap<&'static str, u64> =
                ["tcp", "udp", "icmp"].into_iter().map(|p| (p, 0)).collect();
            let gw_flows = n.live.gw.as_ref().map(|gw| gw.egress.flows());
            for f in gw_flows.iter().flatten() {
                *flows.entry(f.protocol.as_str()).or_default() += 1;
            }
            sample.networks.push(NetworkSample {
                name: n.spec.name.clone(),
                fdb_entries: n.live.switch.fdb.len(),
                vxlan_peers: n.live.vxlan.as_ref().map(|vx| vx.table.peers().len()),
                egress: n
                    .live
                    .gw
                    .as_ref()
                    .map(|gw| gw.egress.stats())
                    .unwrap_or_default(),
                flows,
            });
        }
        // Routers: their interfaces' switch ports (as `stats` shows them) and counters.
        for (network, name, port) in self.router_ports() {
            sample.ports.push(PortSample {
                network,
                endpoint: name,
                kind: "router".to_string(),
                stats: synced(&port),
            });
        }
        sample.routers = self.router_samples();
        drop(st);
        self.dns.sync_kernel_drops().await;
        let resolver = self.dns.resolver();
        sample.dns = resolver.counters().snapshot();
        sample.dns_latency = resolver.latency().snapshot();
        sample.etcd_errors = crate::cluster::etcd_errors();
        sample
    }
}

/// The port's counters, with what the kernel dropped for it read first (a syscall or a
/// netlink round trip: a stats request's cost, off the fast path).
pub(crate) fn synced(port: &SwitchPort) -> PortStats {
    if let Err(e) = port.sync_kernel_drops() {
        tracing::debug!(port = %port.name, error = %e, "reading kernel drop counters failed");
    }
    port.counters.snapshot()
}

fn counters(s: &PortStats) -> Counters {
    Counters {
        rx_packets: s.rx_packets,
        rx_bytes: s.rx_bytes,
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        rx_gso: s.rx_gso,
        tx_segmented: s.tx_segmented,
        learn_cap_hits: s.learn_cap_hits,
        drops_total: s.drops_total,
        drops: s.drops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// Stops a capture on every port it was started on when dropped.
pub struct CaptureGuard {
    ports: Vec<Arc<SwitchPort>>,
    cap: Arc<Capture>,
}

impl CaptureGuard {
    /// Frames lost because the reader did not keep up.
    pub fn dropped(&self) -> u64 {
        self.cap.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        for p in &self.ports {
            p.capture.stop(&self.cap);
        }
    }
}

/// Stops an endpoint's driver and removes its device: a persistent TAP is made
/// non-persistent and closed, an ephemeral one vanishes with its fd, a veth pair is deleted
/// through its host end.
async fn teardown_endpoint(ep: Endpoint) {
    // Aborted by `teardown_later`; its end releases the driver's hold on the port.
    let _ = ep.live.task.await;
    crate::runtime::ports::release(ep.live.port).await;
    endpoint_kind::teardown(&ep.spec, EndpointRemains { ctl: ep.live.ctl }).await;
}

/// A macvlan request's parent as the daemon's namespace holds it (planning refuses a missing
/// or down one, naming it).
async fn parent_link(name: &str) -> Result<Option<plan::ParentLink>, DaemonError> {
    // A name the kernel could not hold is left to planning to refuse.
    if plan::valid_ifname("parent", name).is_err() {
        return Ok(None);
    }
    let h = netns::host_handle().map_err(|e| DaemonError::Io {
        context: "reading the parent interface".to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let state = netns::link_state(&h, name)
        .await
        .map_err(|e| DaemonError::Io {
            context: format!("reading the parent interface {name:?}"),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(Some(match state {
        None => plan::ParentLink::Missing,
        Some((up, mtu)) => plan::ParentLink::Found { up, mtu },
    }))
}

/// The underlay MTU for a `--vxlan` request, from the interface holding `vxlan_local` or the
/// route to the first peer. Unparsable fields are left to planning to report.
async fn find_underlay_mtu(req: &NetworkCreate) -> Option<u32> {
    let local = req.vxlan_local.as_deref().and_then(|s| s.parse().ok());
    let peer = req.vxlan_peers.first().and_then(|s| s.parse().ok());
    let h = netns::host_handle().ok()?;
    netns::underlay_mtu(&h, local, peer).await
}

/// A network and its VXLAN tunnel, for the `fdb add/del` requests that need both.
fn tunnel_of<'a>(
    st: &'a Networks,
    network: &str,
) -> Result<(&'a Network, &'a crate::runtime::ports::vxlan::VxlanLive), DaemonError> {
    let net = st
        .get(network)
        .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
    let vx = net.live.vxlan.as_ref().ok_or_else(|| {
        DaemonError::invalid(
            "network",
            format!("network {network:?} has no VXLAN tunnel (create it with --vxlan)"),
        )
    })?;
    Ok((net, vx))
}

/// Every port published on this daemon, with its network and endpoint.
fn published_ports(st: &Networks) -> Vec<ports::Taken> {
    st.values()
        .flat_map(|n| {
            n.endpoints.values().flat_map(move |e| {
                e.published.iter().map(move |p| ports::Taken {
                    network: n.spec.name.clone(),
                    endpoint: e.spec.name.clone(),
                    mapping: p.mapping.clone(),
                })
            })
        })
        .collect()
}

fn no_publish_on_internal(network: &str) -> DaemonError {
    DaemonError::invalid(
        "publish",
        format!("network {network:?} is internal: it has no published ports"),
    )
}

/// Every IPv4 route and address subnet of the daemon's namespace except default routes.
async fn host_routes() -> Vec<IpNet> {
    let Ok(h) = netns::host_handle() else {
        return Vec::new();
    };
    netns::host_routes(&h)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.prefix_len() > 0)
        .collect()
}

// ---- The cluster registry (src/registry.rs): the daemon is its host. ----

use crate::registry::{Local, Registry, RegistryHost};
use futures::future::BoxFuture;

impl Daemon {
    /// Installs the cluster registry (once, at start-up); the operations above go through it
    /// from now on.
    pub(crate) fn set_registry(&self, r: Arc<dyn Registry>) {
        let _ = self.registry.set(r);
    }

    /// The registry: the one installed, else [`Local`].
    fn registry(&self) -> &dyn Registry {
        match self.registry.get() {
            Some(r) => r.as_ref(),
            None => &Local,
        }
    }
}

/// What a registry asks of the daemon; each call takes the state lock briefly.
impl RegistryHost for Daemon {
    fn create_network_local(
        &self,
        req: NetworkCreate,
    ) -> BoxFuture<'_, Result<NetworkInfo, DaemonError>> {
        Box::pin(Daemon::create_network_local(self, req))
    }

    fn remove_network_local<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DaemonError>> {
        Box::pin(Daemon::remove_network_local(self, name))
    }

    fn attach_local<'a>(
        &'a self,
        network: &'a str,
        req: EndpointCreate,
    ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>> {
        Box::pin(Daemon::attach_local(self, network, req))
    }

    fn detach_local<'a>(
        &'a self,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>> {
        Box::pin(Daemon::detach_local(self, network, name))
    }

    fn network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>> {
        Box::pin(Daemon::network(self, name))
    }

    fn has_endpoints<'a>(&'a self, network: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let st = self.state.lock().await;
            st.get(network)
                .is_some_and(|n| !n.endpoints.is_empty() || !n.reserved.is_empty())
        })
    }

    fn endpoint_addr<'a>(
        &'a self,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Option<(Ipv4Addr, MacAddr)>> {
        Box::pin(async move {
            let st = self.state.lock().await;
            let ep = st.get(network)?.endpoints.get(name)?;
            Some((ep.spec.ip, ep.spec.mac))
        })
    }

    fn next_free<'a>(
        &'a self,
        network: &'a str,
        skip: &'a BTreeSet<Ipv4Addr>,
    ) -> BoxFuture<'a, Result<Ipv4Addr, DaemonError>> {
        Box::pin(async move {
            let st = self.state.lock().await;
            let net = st
                .get(network)
                .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
            net.ipam
                .peek_free_except(skip)
                .map_err(|e| DaemonError::conflict(Some("ip"), e))
        })
    }

    fn ipam_hold_remote<'a>(&'a self, network: &'a str, ip: Ipv4Addr) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let mut st = self.state.lock().await;
            match st.get_mut(network) {
                Some(net) => {
                    // Already in use (a local reservation that will lose the claim): nothing
                    // to do.
                    let _ = net.ipam.take(ip);
                    true
                }
                None => false,
            }
        })
    }

    fn ipam_release_remote<'a>(&'a self, network: &'a str, ip: Ipv4Addr) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut st = self.state.lock().await;
            if let Some(net) = st.get_mut(network) {
                if !net.endpoints.values().any(|e| e.spec.ip == ip) {
                    net.ipam.release(ip);
                }
            }
        })
    }

    fn set_remote_static<'a>(
        &'a self,
        network: &'a str,
        mac: MacAddr,
        vtep: Ipv4Addr,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let st = self.state.lock().await;
            let Some(net) = st.get(network) else {
                return false;
            };
            let Some(vx) = &net.live.vxlan else {
                return false;
            };
            if net.endpoints.values().any(|e| e.spec.mac == mac)
                || net.live.gateway_mac() == Some(mac)
            {
                return false;
            }
            vx.table.add_static(mac, vtep);
            net.live.switch.fdb.add_static(mac, vx.port.id);
            true
        })
    }

    fn clear_remote_static<'a>(&'a self, network: &'a str, mac: MacAddr) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let st = self.state.lock().await;
            if let Some(net) = st.get(network) {
                if let Some(vx) = &net.live.vxlan {
                    vx.table.remove(&mac);
                    net.live.switch.fdb.remove_static(&mac, vx.port.id);
                }
            }
        })
    }

    fn set_flood_peers<'a>(
        &'a self,
        network: &'a str,
        extra: &'a [Ipv4Addr],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let st = self.state.lock().await;
            let Some(net) = st.get(network) else {
                return false;
            };
            let (Some(vx), Some(vs)) = (&net.live.vxlan, &net.spec.vxlan) else {
                return false;
            };
            let mut peers = vs.peers.clone();
            for p in extra {
                if !peers.contains(p) && *p != vs.local {
                    peers.push(*p);
                }
            }
            vx.table.set_peers(peers);
            true
        })
    }

    fn set_remote_names<'a>(
        &'a self,
        network: &'a str,
        entries: Vec<netyard_dns::Entry>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(Daemon::set_remote_names(self, network, entries))
    }
}
