//! The daemon's state: networks, their switches and endpoints; every control operation.
//!
//! Control operations hold the state mutex only to validate, reserve and commit; the slow part
//! of an attach (entering the namespace, creating and configuring the device) runs without it,
//! on a reservation (the endpoint name and address are taken), so a slow or failing attach
//! neither blocks nor disturbs the others. A failed attach releases its reservation and
//! removes whatever it created.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use netyard_api::model::{
    Counters, EndpointCreate, EndpointInfo, FdbAdd, FdbRow, NetworkCreate, NetworkInfo,
    PortStatsRow, VxlanInfo,
};
use netyard_switch::capture::{Capture, CapturedFrame};
use netyard_switch::overlay::RemoteTable;
use netyard_switch::sys::packet::PacketPort;
use netyard_switch::sys::tap::TapPort;
use netyard_switch::sys::vxlan::{VxlanConfig, VxlanError, VxlanPort};
use netyard_switch::wire::vxlan::{VNI_MAX, VXLAN_IPV4_OVERHEAD, VXLAN_PORT};
use netyard_switch::{driver, MacAddr, Port, PortStats, Switch, SwitchConfig, SwitchPort};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::dnsd::{self, Dns, DnsOptions, NsKey};
use crate::error::DaemonError;
use crate::ipam::{pick_free_subnet, Ipam};
use crate::netns::{self, NsOpenRequest, NsTarget};
use crate::ports;
use netyard_router::conntrack::FlowLimits;

const DEFAULT_MTU: u32 = 1500;
const DEFAULT_AGING_SECS: u64 = 300;
const DEFAULT_MAX_MACS: u32 = 1024;
/// Upper bound of `max_flows` and `max_flows_per_endpoint` (each flow may hold a socket).
const MAX_FLOWS: u32 = 1_048_576;

/// How an endpoint is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tap,
    Veth,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tap => "tap",
            Kind::Veth => "veth",
        }
    }
}

struct Network {
    name: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
    internal: bool,
    host_loopback: bool,
    flow_limits: FlowLimits,
    aging: u64,
    max_macs: u32,
    switch: Arc<Switch>,
    ager: JoinHandle<()>,
    /// The gateway's switch port, its driver and the gateway task itself.
    gw: Gateway,
    /// The VXLAN tunnel port, on a network that spans hosts.
    vxlan: Option<Vxlan>,
    ipam: Ipam,
    endpoints: BTreeMap<String, Endpoint>,
    /// Names of endpoints being attached right now.
    reserved: BTreeSet<String>,
    /// Endpoints other hosts registered in etcd on this (distributed) network, answered by
    /// this host's resolver as Docker's overlay networks do.
    remote_names: Vec<netyard_dns::Entry>,
}

struct Gateway {
    mac: MacAddr,
    port: Arc<SwitchPort>,
    tasks: Vec<JoinHandle<()>>,
    /// The gateway's egress engine: its flow table and counters.
    egress: netyard_router::egress::EgressHandle,
    /// Adds and removes the network's published ports.
    publisher: netyard_router::publish::Publisher,
}

impl Gateway {
    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A network's VXLAN tunnel: its switch port ("vxlan"), the port's driver, and the remote
/// table shared with the port (for `fdb` and static entries).
struct Vxlan {
    plan: VxlanPlan,
    underlay_mtu: Option<u32>,
    flow_source_ports: bool,
    table: Arc<RemoteTable>,
    port: Arc<SwitchPort>,
    task: JoinHandle<()>,
}

/// A validated `--vxlan` request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VxlanPlan {
    vni: u32,
    local: Ipv4Addr,
    port: u16,
    peers: Vec<Ipv4Addr>,
}

struct Endpoint {
    name: String,
    kind: Kind,
    ip: Ipv4Addr,
    mac: MacAddr,
    ifname: String,
    netns: String,
    host_ifname: Option<String>,
    offload: bool,
    aliases: Vec<String>,
    ns_key: NsKey,
    port: Arc<SwitchPort>,
    task: JoinHandle<()>,
    /// Published ports, each a rule of the network's gateway.
    published: Vec<ports::Published>,
}

/// A validated network request.
#[derive(Debug, Clone)]
struct NetworkPlan {
    name: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
    internal: bool,
    host_loopback: bool,
    flow_limits: FlowLimits,
    aging: u64,
    max_macs: u32,
    vxlan: Option<VxlanPlan>,
    underlay_mtu: Option<u32>,
}

/// A validated endpoint request with its reserved address.
struct EndpointPlan {
    network: String,
    name: String,
    target: NsTarget,
    netns_label: String,
    ip: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    mtu: u32,
    mac: MacAddr,
    ifname: String,
    kind: Kind,
    offload: bool,
    aliases: Vec<String>,
    ns_key: NsKey,
    internal: bool,
}

/// The daemon: all networks of this process.
pub struct Daemon {
    state: Mutex<BTreeMap<String, Network>>,
    dns: Dns,
    /// The etcd registry (`--etcd`), set once at start-up; see `src/cluster.rs`.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Daemon {
    pub fn new(dns: DnsOptions) -> Daemon {
        Daemon {
            state: Mutex::new(BTreeMap::new()),
            dns: Dns::new(dns),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The embedded resolver (for its counters).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// Publishes every endpoint's names to the resolver. Called with the state locked after
    /// each change, so the records always match the state.
    fn refresh_dns(&self, st: &BTreeMap<String, Network>) {
        let entries = st
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .map(move |e| netyard_dns::Entry {
                        network: n.name.clone(),
                        name: e.name.clone(),
                        aliases: e.aliases.clone(),
                        ipv4: Some(e.ip),
                        ipv6: None,
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

    // ---- networks ----

    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkInfo, DaemonError> {
        match self.cluster.get() {
            Some(c) if req.vxlan.is_some() => c.clone().create_network(self, req).await,
            _ => self.create_network_local(req).await,
        }
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
        let mut st = self.state.lock().await;
        let plan = plan_network(&req, &st, &routes, underlay_mtu)?;
        let net = build_network(plan, &self.dns)?;
        let info = net.info();
        st.insert(info.name.clone(), net);
        tracing::info!(network = %info.name, subnet = %info.subnet, "network created");
        Ok(info)
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
        match self.cluster.get() {
            Some(c) => c.clone().remove_network(self, name).await,
            None => self.remove_network_local(name).await,
        }
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
        let removed = st.remove(name);
        drop(st);
        if let Some(mut net) = removed {
            net.ager.abort();
            net.withdraw_ports();
            net.gw.stop();
            if let Some(vx) = net.vxlan.take() {
                stop_vxlan(&net.switch, vx).await;
            }
        }
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    // ---- endpoints ----

    pub async fn attach(
        &self,
        network: &str,
        req: EndpointCreate,
    ) -> Result<EndpointInfo, DaemonError> {
        match self.cluster.get() {
            Some(c) => c.clone().attach(self, network, req).await,
            None => self.attach_local(network, req).await,
        }
    }

    /// Attaches without claiming the address in etcd (the cluster claims it first).
    pub(crate) async fn attach_local(
        &self,
        network: &str,
        req: EndpointCreate,
    ) -> Result<EndpointInfo, DaemonError> {
        let specs = ports::parse_specs(&req.publish)?;
        let (plan, bound) = {
            let mut st = self.state.lock().await;
            let taken = published_ports(&st);
            let net = st
                .get_mut(network)
                .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
            let plan = plan_endpoint(net, &req)?;
            if !specs.is_empty() && net.internal {
                return Err(no_publish_on_internal(network));
            }
            // Host ports are bound before anything is created: a busy one fails the attach
            // with nothing to undo. They are closed if the attach fails later.
            let bound = ports::bind_all(&specs, &taken)?;
            net.ipam
                .take(plan.ip)
                .map_err(|e| DaemonError::conflict(Some("ip"), e))?;
            net.reserved.insert(plan.name.clone());
            (plan, bound)
        };
        let mut built = build_port(&plan).await;
        if let Ok((_, host_ifname)) = &built {
            // The resolver listens before attach returns, as the interface is configured.
            if let Err(e) = self
                .dns
                .join(plan.ns_key, &plan.target, network, plan.internal)
                .await
            {
                if let Some(h) = host_ifname {
                    remove_host_link(h).await;
                }
                built = Err(e);
            }
        }
        let mut st = self.state.lock().await;
        let Some(net) = st.get_mut(network) else {
            // Networks with reservations cannot be removed; this is unreachable in practice.
            return Err(DaemonError::NoNetwork(network.to_string()));
        };
        net.reserved.remove(&plan.name);
        let (port, host_ifname) = match built {
            Ok(b) => b,
            Err(e) => {
                net.ipam.release(plan.ip);
                drop(st);
                tracing::warn!(network, endpoint = %plan.name, error = %e, "attach failed");
                return Err(e);
            }
        };
        let sp = net.switch.add_port(plan.name.clone(), port);
        let task = match driver::spawn_port(net.switch.clone(), sp.clone()) {
            Ok(t) => t,
            Err(e) => {
                net.switch.remove_port(sp.id);
                net.ipam.release(plan.ip);
                drop(st);
                self.dns.leave(plan.ns_key, network).await;
                if let Some(h) = host_ifname {
                    remove_host_link(&h).await;
                }
                return Err(DaemonError::Io {
                    context: format!("starting the driver of {:?}", plan.name),
                    source: e,
                });
            }
        };
        let ep = Endpoint {
            name: plan.name.clone(),
            kind: plan.kind,
            ip: plan.ip,
            mac: plan.mac,
            ifname: plan.ifname.clone(),
            netns: plan.netns_label.clone(),
            host_ifname,
            offload: plan.offload,
            aliases: plan.aliases.clone(),
            ns_key: plan.ns_key,
            port: sp,
            task,
            published: ports::hand_over(&net.gw.publisher, bound, plan.ip, plan.mac.0),
        };
        let info = ep.info(net);
        net.endpoints.insert(plan.name.clone(), ep);
        self.refresh_dns(&st);
        tracing::info!(network, endpoint = %info.name, ip = %info.ip, kind = %info.kind, "attached");
        Ok(info)
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
        if let Some(c) = self.cluster.get() {
            c.renamed(network, &info).await;
        }
        Ok(info)
    }

    async fn rename_local(
        &self,
        network: &str,
        name: &str,
        new_name: &str,
    ) -> Result<EndpointInfo, DaemonError> {
        valid_name("name", new_name)?;
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
        ep.name = new_name.to_string();
        ep.aliases.retain(|a| a != new_name);
        let info = ep.info(net);
        net.endpoints.insert(new_name.to_string(), ep);
        self.refresh_dns(&st);
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
        if net.internal {
            return Err(no_publish_on_internal(network));
        }
        let no_endpoint = || DaemonError::NoEndpoint {
            network: network.to_string(),
            name: name.to_string(),
        };
        let ep = net.endpoints.get_mut(name).ok_or_else(no_endpoint)?;
        let bound = ports::bind_all(&specs, &taken)?;
        let new = ports::hand_over(&net.gw.publisher, bound, ep.ip, ep.mac.0);
        let added: Vec<_> = new.iter().map(|p| p.mapping.info()).collect();
        ep.published.extend(new);
        let info = net
            .endpoints
            .get(name)
            .map(|e| e.info(net))
            .ok_or_else(no_endpoint)?;
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
        ports::withdraw(&net.gw.publisher, &gone);
        let info = net
            .endpoints
            .get(name)
            .map(|e| e.info(net))
            .ok_or_else(no_endpoint)?;
        let removed: Vec<_> = gone.iter().map(|p| p.mapping.info()).collect();
        tracing::info!(network, endpoint = name, ports = ?removed, "unpublished");
        Ok(info)
    }

    pub async fn detach(&self, network: &str, name: &str) -> Result<(), DaemonError> {
        match self.cluster.get() {
            Some(c) => c.clone().detach(self, network, name).await,
            None => self.detach_local(network, name).await,
        }
    }

    pub(crate) async fn detach_local(&self, network: &str, name: &str) -> Result<(), DaemonError> {
        let ep = {
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
            net.switch.remove_port(ep.port.id);
            net.ipam.release(ep.ip);
            ports::withdraw(&net.gw.publisher, &ep.published);
            self.refresh_dns(&st);
            ep
        };
        self.dns.leave(ep.ns_key, network).await;
        teardown_endpoint(ep).await;
        tracing::info!(network, endpoint = name, "detached");
        Ok(())
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
        let ports: Vec<Arc<SwitchPort>> = match endpoint {
            Some(name) => vec![net
                .endpoints
                .get(name)
                .ok_or_else(|| DaemonError::NoEndpoint {
                    network: network.to_string(),
                    name: name.to_string(),
                })?
                .port
                .clone()],
            None => net.switch.ports().iter().cloned().collect(),
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
                .map(|n| {
                    serde_json::json!({
                        "network": n.name,
                        "stats": n.gw.egress.stats(),
                        "flows": n.gw.egress.flows(),
                    })
                })
                .collect(),
        )
    }

    /// Detaches endpoints whose device vanished (their namespace was destroyed, so the kernel
    /// removed the TAP or veth and the port's driver stopped). Returns their names.
    pub async fn reap(&self) -> Vec<String> {
        let dead: Vec<(String, String)> = {
            let st = self.state.lock().await;
            st.values()
                .flat_map(|n| {
                    n.endpoints
                        .values()
                        .filter(|e| e.task.is_finished())
                        .map(|e| (n.name.clone(), e.name.clone()))
                })
                .collect()
        };
        let mut gone = Vec::new();
        for (network, name) in dead {
            if self.detach(&network, &name).await.is_ok() {
                tracing::info!(network, endpoint = %name, "device vanished; endpoint detached");
                gone.push(name);
            }
        }
        gone
    }

    pub async fn endpoints(&self) -> Vec<EndpointInfo> {
        let st = self.state.lock().await;
        st.values()
            .flat_map(|n| n.endpoints.values().map(move |e| e.info(n)))
            .collect()
    }

    pub async fn fdb(&self, network: &str) -> Result<Vec<FdbRow>, DaemonError> {
        let st = self.state.lock().await;
        let net = st
            .get(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        let now = net.switch.now_ms();
        let ports = net.switch.ports();
        let mut remotes: BTreeMap<MacAddr, netyard_switch::overlay::RemoteView> = net
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
        let vx_port = net.vxlan.as_ref().map(|vx| vx.port.id);
        let mut rows: Vec<FdbRow> = net
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
        let st = self.state.lock().await;
        let (net, vx) = tunnel_of(&st, network)?;
        if net.endpoints.values().any(|e| e.mac == mac) || net.gw.mac == mac {
            return Err(DaemonError::conflict(
                Some("mac"),
                format!("{mac} belongs to this host's network {network:?}"),
            ));
        }
        vx.table.add_static(mac, remote);
        net.switch.fdb.add_static(mac, vx.port.id);
        tracing::info!(network, %mac, %remote, "static remote entry added");
        Ok(FdbRow {
            mac: mac.to_string(),
            port: vx.port.name.clone(),
            port_id: vx.port.id,
            age: 0.0,
            is_static: true,
            remote: Some(remote.to_string()),
        })
    }

    /// Removes a static remote entry (and the switch's static entry for it).
    pub async fn fdb_del(&self, network: &str, mac: &str) -> Result<(), DaemonError> {
        let mac: MacAddr = mac.parse().map_err(|e| DaemonError::invalid("mac", e))?;
        let st = self.state.lock().await;
        let (net, vx) = tunnel_of(&st, network)?;
        let is_static = vx
            .table
            .entries(net.switch.now_ms())
            .iter()
            .any(|e| e.mac == mac && e.is_static);
        if !is_static {
            return Err(DaemonError::conflict(
                Some("mac"),
                format!("{mac} has no static remote entry on network {network:?}"),
            ));
        }
        vx.table.remove(&mac);
        net.switch.fdb.remove_static(&mac, vx.port.id);
        tracing::info!(network, %mac, "static remote entry removed");
        Ok(())
    }

    pub async fn stats(&self) -> Vec<PortStatsRow> {
        let st = self.state.lock().await;
        st.values()
            .flat_map(|n| {
                // The gateway's row is named "(gateway)": not a valid endpoint name, so it
                // never clashes with one.
                let gw = PortStatsRow {
                    network: n.name.clone(),
                    endpoint: "(gateway)".to_string(),
                    kind: "gateway".to_string(),
                    counters: counters(&n.gw.port.counters.snapshot()),
                };
                // Likewise "(vxlan)" for the tunnel port.
                let vx = n.vxlan.as_ref().map(|vx| PortStatsRow {
                    network: n.name.clone(),
                    endpoint: "(vxlan)".to_string(),
                    kind: "vxlan".to_string(),
                    counters: counters(&vx.port.counters.snapshot()),
                });
                n.endpoints
                    .values()
                    .map(move |e| PortStatsRow {
                        network: n.name.clone(),
                        endpoint: e.name.clone(),
                        kind: e.kind.as_str().to_string(),
                        counters: counters(&e.port.counters.snapshot()),
                    })
                    .chain(std::iter::once(gw))
                    .chain(vx)
            })
            .collect()
    }

    /// Removes every endpoint (and so every device netyard created) and every network.
    pub async fn shutdown(&self) {
        if let Some(c) = self.cluster.get() {
            // Revokes the lease: this node's keys vanish from etcd at once.
            c.stop().await;
        }
        let nets: Vec<Network> = {
            let mut st = self.state.lock().await;
            std::mem::take(&mut *st).into_values().collect()
        };
        self.dns.set_records(Vec::new());
        self.dns.shutdown().await;
        for mut net in nets {
            net.ager.abort();
            net.withdraw_ports();
            net.gw.stop();
            if let Some(vx) = net.vxlan.take() {
                stop_vxlan(&net.switch, vx).await;
            }
            for (_, ep) in std::mem::take(&mut net.endpoints) {
                net.switch.remove_port(ep.port.id);
                teardown_endpoint(ep).await;
            }
        }
    }
}

impl Network {
    /// Stops every published port of the network's endpoints (the gateway closes their
    /// sockets).
    fn withdraw_ports(&self) {
        for ep in self.endpoints.values() {
            ports::withdraw(&self.gw.publisher, &ep.published);
        }
    }

    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            name: self.name.clone(),
            subnet: self.subnet.to_string(),
            gateway: self.gateway.to_string(),
            mtu: self.mtu,
            internal: self.internal,
            host_loopback: self.host_loopback,
            max_flows_per_endpoint: self.flow_limits.max_per_endpoint,
            max_flows: self.flow_limits.max_total,
            aging: self.aging,
            max_macs_per_port: self.max_macs,
            endpoints: self.endpoints.keys().cloned().collect(),
            vxlan: self.vxlan.as_ref().map(|vx| VxlanInfo {
                vni: vx.plan.vni,
                local: vx.plan.local.to_string(),
                port: vx.plan.port,
                peers: vx.plan.peers.iter().map(ToString::to_string).collect(),
                underlay_mtu: vx.underlay_mtu,
                flow_source_ports: vx.flow_source_ports,
            }),
        }
    }
}

impl Endpoint {
    fn info(&self, net: &Network) -> EndpointInfo {
        EndpointInfo {
            name: self.name.clone(),
            network: net.name.clone(),
            kind: self.kind.as_str().to_string(),
            ip: self.ip.to_string(),
            prefix_len: net.subnet.prefix_len(),
            gateway: net.gateway.to_string(),
            mac: self.mac.to_string(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
            host_ifname: self.host_ifname.clone(),
            offload: self.offload,
            port: self.port.id,
            counters: counters(&self.port.counters.snapshot()),
            aliases: self.aliases.clone(),
            resolv_conf: dnsd::resolv_conf(),
            ports: self.published.iter().map(|p| p.mapping.info()).collect(),
        }
    }
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

/// Stops an endpoint's driver and removes its device. The TAP device disappears when its fd
/// closes; a veth pair is deleted through its host end.
async fn teardown_endpoint(ep: Endpoint) {
    ep.task.abort();
    let _ = ep.task.await;
    // Another port's task may still hold a port snapshot for the rest of its burst; wait for
    // it so the device is gone when detach returns.
    let port = ep.port;
    for _ in 0..400 {
        if Arc::strong_count(&port) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(port);
    if let Some(h) = ep.host_ifname {
        remove_host_link(&h).await;
    }
}

/// Stops a tunnel: removes its port from the switch, stops the driver and waits until the
/// port (and so its sockets) is gone, so the UDP port is free again when this returns.
async fn stop_vxlan(switch: &Switch, vx: Vxlan) {
    switch.remove_port(vx.port.id);
    vx.task.abort();
    let _ = vx.task.await;
    let port = vx.port;
    for _ in 0..400 {
        if Arc::strong_count(&port) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The underlay MTU for a `--vxlan` request, from the interface holding `vxlan_local` or the
/// route to the first peer. Unparsable fields are left to `plan_network` to report.
async fn find_underlay_mtu(req: &NetworkCreate) -> Option<u32> {
    let local = req.vxlan_local.as_deref().and_then(|s| s.parse().ok());
    let peer = req.vxlan_peers.first().and_then(|s| s.parse().ok());
    let h = netns::host_handle().ok()?;
    netns::underlay_mtu(&h, local, peer).await
}

/// A VTEP address: IPv4 unicast.
fn parse_vtep(field: &str, s: &str) -> Result<Ipv4Addr, DaemonError> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| DaemonError::invalid(field, format!("{s:?} is not an IPv4 address")))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(DaemonError::invalid(
            field,
            format!("{ip} is not a unicast address"),
        ));
    }
    Ok(ip)
}

/// Validates the `vxlan*` fields of a network request.
fn plan_vxlan(
    req: &NetworkCreate,
    existing: &BTreeMap<String, Network>,
) -> Result<Option<VxlanPlan>, DaemonError> {
    let Some(vni) = req.vxlan else {
        for (field, set) in [
            ("vxlan_local", req.vxlan_local.is_some()),
            ("vxlan_port", req.vxlan_port.is_some()),
            ("vxlan_peers", !req.vxlan_peers.is_empty()),
        ] {
            if set {
                return Err(DaemonError::invalid(field, "needs vxlan (the VNI)"));
            }
        }
        return Ok(None);
    };
    if vni > VNI_MAX {
        return Err(DaemonError::invalid(
            "vxlan",
            format!("VNI {vni} out of range (0 to {VNI_MAX})"),
        ));
    }
    let local = match &req.vxlan_local {
        Some(s) => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                DaemonError::invalid("vxlan_local", format!("{s:?} is not an IPv4 address"))
            })?;
            if ip.is_multicast() || ip.is_broadcast() {
                return Err(DaemonError::invalid(
                    "vxlan_local",
                    format!("{ip} is not a unicast address"),
                ));
            }
            ip
        }
        None => Ipv4Addr::UNSPECIFIED,
    };
    let port = match req.vxlan_port {
        None => VXLAN_PORT,
        Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            DaemonError::invalid("vxlan_port", format!("{p} out of range (1 to 65535)"))
        })?,
    };
    let mut peers = Vec::new();
    for (i, s) in req.vxlan_peers.iter().enumerate() {
        let ip = parse_vtep(&format!("vxlan_peers[{i}]"), s)?;
        if ip == local {
            return Err(DaemonError::invalid(
                format!("vxlan_peers[{i}]"),
                format!("{ip} is the local address itself"),
            ));
        }
        if !peers.contains(&ip) {
            peers.push(ip);
        }
    }
    for other in existing.values() {
        let Some(vx) = &other.vxlan else { continue };
        if vx.plan.vni == vni {
            return Err(DaemonError::conflict(
                Some("vxlan"),
                format!("network {:?} already uses VNI {vni}", other.name),
            ));
        }
        // Tunnels on one port share its socket when they bind the same address; 0.0.0.0
        // and a specific address cannot both be bound on one port.
        let overlapping =
            vx.plan.local != local && (vx.plan.local.is_unspecified() || local.is_unspecified());
        if vx.plan.port == port && overlapping {
            return Err(DaemonError::conflict(
                Some("vxlan_port"),
                format!(
                    "network {:?} has its VXLAN socket on {}:{port}: a tunnel on that port must \
                     bind the same address (give --vxlan-local {}) or use another --vxlan-port",
                    other.name, vx.plan.local, vx.plan.local
                ),
            ));
        }
    }
    Ok(Some(VxlanPlan {
        vni,
        local,
        port,
        peers,
    }))
}

/// Every port published on this daemon, with its network and endpoint.
fn published_ports(st: &BTreeMap<String, Network>) -> Vec<ports::Taken> {
    st.values()
        .flat_map(|n| {
            n.endpoints.values().flat_map(move |e| {
                e.published.iter().map(move |p| ports::Taken {
                    network: n.name.clone(),
                    endpoint: e.name.clone(),
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

async fn remove_host_link(name: &str) {
    match netns::host_handle() {
        Ok(h) => {
            if let Err(e) = netns::delete_link(&h, name).await {
                tracing::warn!(link = name, error = %e, "could not delete veth host end");
            }
        }
        Err(e) => tracing::warn!(link = name, error = %e, "no netlink handle to delete veth"),
    }
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

fn valid_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if s.is_empty() || s.len() > 64 || !ok_first || !ok_rest {
        return Err(DaemonError::invalid(
            field,
            format!("{s:?} is not a valid name (1-64 characters: letters, digits, '_', '.', '-'; starting with a letter or digit)"),
        ));
    }
    Ok(())
}

/// A DNS name as an alias: dot-separated labels of letters, digits, '-' and '_'.
fn valid_dns_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !ok {
        return Err(DaemonError::invalid(
            field,
            format!("{s:?} is not a valid DNS name (labels of letters, digits, '-', '_')"),
        ));
    }
    Ok(())
}

fn plan_network(
    req: &NetworkCreate,
    existing: &BTreeMap<String, Network>,
    host_routes: &[IpNet],
    underlay_mtu: Option<u32>,
) -> Result<NetworkPlan, DaemonError> {
    valid_name("name", &req.name)?;
    if existing.contains_key(&req.name) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!("a network named {:?} already exists", req.name),
        ));
    }
    let subnet = match &req.subnet {
        Some(s) => {
            let net: IpNet = s.parse().map_err(|_| {
                DaemonError::invalid("subnet", format!("{s:?} is not a CIDR such as 10.1.0.0/24"))
            })?;
            let IpNet::V4(v4) = net else {
                return Err(DaemonError::invalid(
                    "subnet",
                    "IPv6 subnets are not supported yet",
                ));
            };
            if v4.prefix_len() > 30 || v4.prefix_len() < 8 {
                return Err(DaemonError::invalid(
                    "subnet",
                    format!("prefix /{} out of range (8 to 30)", v4.prefix_len()),
                ));
            }
            let v4 = v4.trunc();
            if let Some(other) = existing.values().find(|n| overlaps(n.subnet, v4)) {
                return Err(DaemonError::conflict(
                    Some("subnet"),
                    format!("{v4} overlaps network {:?} ({})", other.name, other.subnet),
                ));
            }
            v4
        }
        None => {
            let mut taken: Vec<IpNet> = host_routes.to_vec();
            taken.extend(existing.values().map(|n| IpNet::V4(n.subnet)));
            pick_free_subnet(&taken).ok_or_else(|| {
                DaemonError::conflict(Some("subnet"), "no free /24 left in the default pools")
            })?
        }
    };
    let gateway = match &req.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g.parse().map_err(|_| {
                DaemonError::invalid("gateway", format!("{g:?} is not an IPv4 address"))
            })?;
            if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(DaemonError::invalid(
                    "gateway",
                    format!("{ip} is not a host address of {subnet}"),
                ));
            }
            ip
        }
        None => first_host(subnet),
    };
    let vxlan = plan_vxlan(req, existing)?;
    // Over VXLAN the inner frame, its Ethernet header and 36 bytes of outer headers must fit
    // the underlay's MTU: 50 bytes of overhead, never fragmented.
    let overhead = VXLAN_IPV4_OVERHEAD as u32;
    let underlay_mtu = underlay_mtu.filter(|_| vxlan.is_some());
    let mtu = match (req.mtu, &vxlan) {
        (Some(m), _) => m,
        (None, Some(_)) => underlay_mtu.unwrap_or(DEFAULT_MTU).saturating_sub(overhead),
        (None, None) => DEFAULT_MTU,
    };
    if !(576..=65_000).contains(&mtu) {
        return Err(DaemonError::invalid(
            "mtu",
            format!("{mtu} out of range (576 to 65000)"),
        ));
    }
    if let Some(u) = underlay_mtu {
        if mtu + overhead > u {
            return Err(DaemonError::invalid(
                "mtu",
                format!(
                    "{mtu} does not fit the VXLAN underlay (MTU {u} minus {overhead} bytes of \
                     encapsulation: at most {})",
                    u.saturating_sub(overhead)
                ),
            ));
        }
    }
    let aging = req.aging.unwrap_or(DEFAULT_AGING_SECS);
    if aging == 0 || aging > 1_000_000 {
        return Err(DaemonError::invalid(
            "aging",
            format!("{aging} out of range (1 to 1000000 seconds)"),
        ));
    }
    let max_macs = req.max_macs_per_port.unwrap_or(DEFAULT_MAX_MACS);
    if max_macs == 0 || max_macs > 1_000_000 {
        return Err(DaemonError::invalid(
            "max_macs_per_port",
            format!("{max_macs} out of range (1 to 1000000)"),
        ));
    }
    if req.host_loopback && req.internal {
        return Err(DaemonError::invalid(
            "host_loopback",
            "an internal network has no egress, so no host loopback either",
        ));
    }
    let mut flow_limits = FlowLimits::default();
    for (field, value, slot) in [
        (
            "max_flows_per_endpoint",
            req.max_flows_per_endpoint,
            &mut flow_limits.max_per_endpoint,
        ),
        ("max_flows", req.max_flows, &mut flow_limits.max_total),
    ] {
        if let Some(v) = value {
            if v == 0 || v > MAX_FLOWS {
                return Err(DaemonError::invalid(
                    field,
                    format!("{v} out of range (1 to {MAX_FLOWS})"),
                ));
            }
            *slot = v;
        }
    }
    Ok(NetworkPlan {
        name: req.name.clone(),
        subnet,
        gateway,
        mtu,
        internal: req.internal,
        host_loopback: req.host_loopback,
        flow_limits,
        aging,
        max_macs,
        vxlan,
        underlay_mtu,
    })
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn first_host(n: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.network()).saturating_add(1))
}

fn build_network(p: NetworkPlan, dns: &Dns) -> Result<Network, DaemonError> {
    let switch = Switch::new(
        p.name.clone(),
        SwitchConfig {
            mtu: u16::try_from(p.mtu).unwrap_or(u16::MAX),
            aging_ms: p.aging.saturating_mul(1000),
            max_macs_per_port: p.max_macs as usize,
        },
    );
    let ager = driver::spawn_ager(switch.clone());
    let gateway = match start_gateway(&p, &switch, dns) {
        Ok(g) => g,
        Err(e) => {
            ager.abort();
            return Err(e);
        }
    };
    let vxlan = match p
        .vxlan
        .as_ref()
        .map(|v| start_vxlan(&p, v, &switch, &gateway))
    {
        Some(Err(e)) => {
            ager.abort();
            gateway.stop();
            return Err(e);
        }
        Some(Ok(vx)) => Some(vx),
        None => None,
    };
    Ok(Network {
        gw: gateway,
        vxlan,
        ipam: Ipam::new(p.subnet, p.gateway),
        name: p.name,
        subnet: p.subnet,
        gateway: p.gateway,
        mtu: p.mtu,
        internal: p.internal,
        host_loopback: p.host_loopback,
        flow_limits: p.flow_limits,
        aging: p.aging,
        max_macs: p.max_macs,
        switch,
        ager,
        endpoints: BTreeMap::new(),
        reserved: BTreeSet::new(),
        remote_names: Vec::new(),
    })
}

/// The gateway: a port on the switch served by the router's userspace interface (ARP, ICMP
/// echo and DNS on port 53 for the gateway address). Its MAC follows the endpoints' scheme
/// (02:42 and the address), so it is unique on the network.
fn start_gateway(p: &NetworkPlan, switch: &Arc<Switch>, dns: &Dns) -> Result<Gateway, DaemonError> {
    let io = |context: &'static str| {
        move |source| DaemonError::Io {
            context: context.to_string(),
            source,
        }
    };
    let o = p.gateway.octets();
    let mac = MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]]);
    // The gateway takes TCP super-frames whole (the TCP relay handles them as single
    // segments); UDP GSO frames are cut by the switch.
    let caps = netyard_switch::PortCaps {
        vnet_hdr: true,
        gso_tcp: true,
        gso_udp: false,
    };
    let (port, peer) =
        netyard_switch::sys::MemPort::pair(caps).map_err(io("creating the gateway port"))?;
    let sp = switch.add_port("gateway", Box::new(port));
    let driver_task = match driver::spawn_port(switch.clone(), sp.clone()) {
        Ok(t) => t,
        Err(e) => {
            switch.remove_port(sp.id);
            return Err(io("starting the gateway port")(e));
        }
    };
    let svc: Arc<dyn netyard_router::gateway::DnsService> =
        Arc::new(dnsd::GatewayDns::new(dns, &p.name, p.internal));
    let cfg = netyard_router::gateway::GatewayConfig {
        ip: p.gateway,
        prefix_len: p.subnet.prefix_len(),
        mac: mac.0,
        mtu: p.mtu as usize,
        egress: !p.internal,
        flow_limits: p.flow_limits,
        host_loopback: p.host_loopback,
    };
    let direct = netyard_router::uplink::Direct {
        switch: switch.clone(),
        port: sp.clone(),
    };
    let gw = match netyard_router::gateway::start(cfg, peer, Some(svc), Some(direct)) {
        Ok(t) => t,
        Err(e) => {
            driver_task.abort();
            switch.remove_port(sp.id);
            return Err(io("starting the gateway")(e));
        }
    };
    Ok(Gateway {
        mac,
        port: sp,
        tasks: vec![driver_task, gw.task],
        egress: gw.egress,
        publisher: gw.publisher,
    })
}

/// A network and its VXLAN tunnel, for the `fdb add/del` requests that need both.
fn tunnel_of<'a>(
    st: &'a BTreeMap<String, Network>,
    network: &str,
) -> Result<(&'a Network, &'a Vxlan), DaemonError> {
    let net = st
        .get(network)
        .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
    let vx = net.vxlan.as_ref().ok_or_else(|| {
        DaemonError::invalid(
            "network",
            format!("network {network:?} has no VXLAN tunnel (create it with --vxlan)"),
        )
    })?;
    Ok((net, vx))
}

/// The VXLAN tunnel port: a UDP socket of the daemon's namespace on `local:port`, added to the
/// switch as port "vxlan" with its own driver. On a network that spans hosts every host has a
/// gateway with the same address and MAC, so that MAC is pinned (static) to the local gateway
/// port: a remote gateway's frames never move it into the tunnel.
fn start_vxlan(
    p: &NetworkPlan,
    v: &VxlanPlan,
    switch: &Arc<Switch>,
    gw: &Gateway,
) -> Result<Vxlan, DaemonError> {
    let table = Arc::new(RemoteTable::new(
        p.aging.saturating_mul(1000),
        p.max_macs as usize,
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
        VxlanError::Bind { source, .. } if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
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
    let sp = switch.add_port("vxlan", Box::new(port));
    let task = match driver::spawn_port(switch.clone(), sp.clone()) {
        Ok(t) => t,
        Err(e) => {
            switch.remove_port(sp.id);
            return Err(DaemonError::Io {
                context: "starting the VXLAN port".to_string(),
                source: e,
            });
        }
    };
    switch.fdb.add_static(gw.mac, gw.port.id);
    tracing::info!(network = %p.name, vni = v.vni, local = %v.local, port = v.port,
        peers = ?v.peers, mtu = p.mtu, "VXLAN tunnel up");
    Ok(Vxlan {
        plan: v.clone(),
        underlay_mtu: p.underlay_mtu,
        flow_source_ports,
        table,
        port: sp,
        task,
    })
}

fn plan_endpoint(net: &mut Network, req: &EndpointCreate) -> Result<EndpointPlan, DaemonError> {
    valid_name("name", &req.name)?;
    if net.endpoints.contains_key(&req.name) || net.reserved.contains(&req.name) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!(
                "an endpoint named {:?} is already attached to network {:?}",
                req.name, net.name
            ),
        ));
    }
    let (target, netns_label) = match (&req.netns, req.pid) {
        (Some(_), Some(_)) => {
            return Err(DaemonError::invalid(
                "netns",
                "give either netns or pid, not both",
            ))
        }
        (None, None) => {
            return Err(DaemonError::invalid(
                "netns",
                "missing: give the namespace path (netns) or a process id (pid)",
            ))
        }
        (Some(path), None) => {
            if path.is_empty() {
                return Err(DaemonError::invalid("netns", "empty path"));
            }
            let t =
                NsTarget::from_paths(PathBuf::from(path), req.userns.as_ref().map(PathBuf::from))
                    .map_err(|e| DaemonError::invalid("netns", e))?;
            (t, path.clone())
        }
        (None, Some(pid)) => {
            if pid <= 0 {
                return Err(DaemonError::invalid(
                    "pid",
                    format!("{pid} is not a process id"),
                ));
            }
            let t = NsTarget::from_pid(pid.unsigned_abs())
                .map_err(|e| DaemonError::invalid("pid", e))?;
            (t, format!("/proc/{pid}/ns/net"))
        }
    };
    let ifname = req.ifname.clone().unwrap_or_else(|| "eth0".to_string());
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        || ifname == "."
        || ifname == ".."
    {
        return Err(DaemonError::invalid(
            "ifname",
            format!(
                "{ifname:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
            ),
        ));
    }
    let kind = match req.kind.as_deref().unwrap_or("tap") {
        "tap" => Kind::Tap,
        "veth" => Kind::Veth,
        other => {
            return Err(DaemonError::invalid(
                "kind",
                format!("{other:?} is not a port kind (tap or veth)"),
            ))
        }
    };
    let ip = match &req.ip {
        Some(s) => {
            let ip: Ipv4Addr = s
                .parse()
                .map_err(|_| DaemonError::invalid("ip", format!("{s:?} is not an IPv4 address")))?;
            net.ipam.check(ip).map_err(|e| match e {
                crate::ipam::IpamError::InUse(_) => DaemonError::conflict(Some("ip"), e),
                _ => DaemonError::invalid("ip", e),
            })?;
            ip
        }
        None => {
            // Peek at the next free address without consuming the cursor twice: take it now
            // and give it back to the caller, which takes it again under the same lock.
            let ip = net
                .ipam
                .next_free()
                .map_err(|e| DaemonError::conflict(Some("ip"), e))?;
            net.ipam.release(ip);
            ip
        }
    };
    let mac = match &req.mac {
        Some(s) => {
            let m: MacAddr = s.parse().map_err(|e| DaemonError::invalid("mac", e))?;
            if m.is_multicast() || m.is_zero() {
                return Err(DaemonError::invalid(
                    "mac",
                    format!("{m} is not a unicast address"),
                ));
            }
            m
        }
        // Docker's scheme: 02:42 followed by the IPv4 address, unique on the network.
        None => {
            let o = ip.octets();
            MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
        }
    };
    if net.endpoints.values().any(|e| e.mac == mac) || net.gw.mac == mac {
        return Err(DaemonError::conflict(
            Some("mac"),
            format!("{mac} is already used on network {:?}", net.name),
        ));
    }
    if let Some(vx) = &net.vxlan {
        let remote = vx
            .table
            .entries(0)
            .into_iter()
            .find(|e| e.mac == mac && e.is_static);
        if let Some(r) = remote {
            return Err(DaemonError::conflict(
                Some("mac"),
                format!(
                    "{mac} has a static remote entry (behind {}) on network {:?}: remove it \
                     with `fdb del` first",
                    r.vtep, net.name
                ),
            ));
        }
    }
    let mut aliases = Vec::new();
    for (i, a) in req.aliases.iter().enumerate() {
        valid_dns_name(&format!("aliases[{i}]"), a)?;
        if !aliases.contains(a) && a != &req.name {
            aliases.push(a.clone());
        }
    }
    let ns_key = dnsd::ns_key(&target).map_err(|e| DaemonError::invalid("netns", e))?;
    Ok(EndpointPlan {
        aliases,
        ns_key,
        internal: net.internal,
        network: net.name.clone(),
        name: req.name.clone(),
        target,
        netns_label,
        ip,
        prefix_len: net.subnet.prefix_len(),
        gateway: net.gateway,
        mtu: net.mtu,
        mac,
        ifname,
        kind,
        offload: req.offload.unwrap_or(true),
    })
}

/// Creates and configures the endpoint's device; returns the port and the host-side
/// interface to remove at detach (veth only). Cleans up after itself on failure.
async fn build_port(p: &EndpointPlan) -> Result<(Box<dyn Port>, Option<String>), DaemonError> {
    let ns_err = |source| DaemonError::Namespace {
        name: p.name.clone(),
        source,
    };
    let port_err = |source| DaemonError::Port {
        name: p.name.clone(),
        source,
    };
    match p.kind {
        Kind::Tap => {
            let req = NsOpenRequest::tap(p.ifname.clone(), p.offload);
            let fds = netns::open_in_ns(&p.target, req).await.map_err(ns_err)?;
            let tap_fd = fds.fds.into_iter().next().ok_or_else(|| DaemonError::Io {
                context: format!("attaching {:?}", p.name),
                source: std::io::Error::other("namespace helper returned no TAP descriptor"),
            })?;
            let port = TapPort::from_fd(tap_fd, p.ifname.clone(), p.offload).map_err(port_err)?;
            configure(p, fds.netlink).await.map_err(ns_err)?;
            Ok((Box::new(port), None))
        }
        Kind::Veth => {
            let host = netns::host_handle().map_err(ns_err)?;
            let fds = netns::open_in_ns(&p.target, NsOpenRequest::netlink_only())
                .await
                .map_err(ns_err)?;
            let host_name = format!("ny{:08x}", rand::random::<u32>());
            netns::create_veth(&host, &host_name, &p.target, &p.ifname, p.mtu)
                .await
                .map_err(ns_err)?;
            let result: Result<Box<dyn Port>, DaemonError> = async {
                configure(p, fds.netlink).await.map_err(ns_err)?;
                let port = PacketPort::open(&host_name, p.offload).map_err(port_err)?;
                Ok(Box::new(port) as Box<dyn Port>)
            }
            .await;
            match result {
                Ok(port) => Ok((port, Some(host_name))),
                Err(e) => {
                    let _ = netns::delete_link(&host, &host_name).await;
                    Err(e)
                }
            }
        }
    }
}

/// Configures the endpoint's interface inside its namespace, through the namespace's own
/// netlink socket: MAC, MTU, address, up, `lo` up, default route via the gateway.
async fn configure(p: &EndpointPlan, nl: netns::NetlinkFd) -> Result<(), crate::netns::NetnsError> {
    let handle = nl.into_handle()?;
    netns::configure_endpoint(
        &handle,
        &p.ifname,
        p.mac.0,
        p.mtu,
        IpAddr::V4(p.ip),
        p.prefix_len,
        Some(IpAddr::V4(p.gateway)),
    )
    .await
}

impl std::fmt::Debug for EndpointPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPlan")
            .field("network", &self.network)
            .field("name", &self.name)
            .field("ip", &self.ip)
            .finish()
    }
}

// ---- Hooks of the etcd registry (src/cluster.rs): each takes the state lock briefly. ----

impl Daemon {
    /// Installs the etcd registry; the wrappers above go through it from now on.
    pub(crate) fn set_cluster(&self, c: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(c);
    }

    /// The next address the network's IPAM would hand out that is not in `skip` (not taken:
    /// the caller claims it in etcd, then attaches with it).
    pub(crate) async fn cluster_next_free(
        &self,
        network: &str,
        skip: &BTreeSet<Ipv4Addr>,
    ) -> Result<Ipv4Addr, DaemonError> {
        let mut st = self.state.lock().await;
        let net = st
            .get_mut(network)
            .ok_or_else(|| DaemonError::NoNetwork(network.to_string()))?;
        let size = 1u64 << (32 - u32::from(net.subnet.prefix_len()));
        for _ in 0..size {
            let ip = net
                .ipam
                .next_free()
                .map_err(|e| DaemonError::conflict(Some("ip"), e))?;
            net.ipam.release(ip);
            if !skip.contains(&ip) {
                return Ok(ip);
            }
        }
        Err(DaemonError::conflict(
            Some("ip"),
            format!("no free address left in {}", net.subnet),
        ))
    }

    /// Marks an address another node claimed as in use here. False if the network is unknown.
    pub(crate) async fn ipam_hold_remote(&self, network: &str, ip: Ipv4Addr) -> bool {
        let mut st = self.state.lock().await;
        match st.get_mut(network) {
            Some(net) => {
                // Already in use (a local reservation that will lose the claim): nothing to do.
                let _ = net.ipam.take(ip);
                true
            }
            None => false,
        }
    }

    /// Frees an address another node released, unless a local endpoint holds it.
    pub(crate) async fn ipam_release_remote(&self, network: &str, ip: Ipv4Addr) {
        let mut st = self.state.lock().await;
        if let Some(net) = st.get_mut(network) {
            if !net.endpoints.values().any(|e| e.ip == ip) {
                net.ipam.release(ip);
            }
        }
    }

    /// A static remote entry put there by the registry: `mac` lives behind `vtep`. Refused
    /// (false) when the network has no tunnel or the MAC is local.
    pub(crate) async fn set_remote_static(
        &self,
        network: &str,
        mac: MacAddr,
        vtep: Ipv4Addr,
    ) -> bool {
        let st = self.state.lock().await;
        let Some(net) = st.get(network) else {
            return false;
        };
        let Some(vx) = &net.vxlan else {
            return false;
        };
        if net.endpoints.values().any(|e| e.mac == mac) || net.gw.mac == mac {
            return false;
        }
        vx.table.add_static(mac, vtep);
        net.switch.fdb.add_static(mac, vx.port.id);
        true
    }

    /// Removes a static remote entry the registry put there.
    pub(crate) async fn clear_remote_static(&self, network: &str, mac: MacAddr) {
        let st = self.state.lock().await;
        if let Some(net) = st.get(network) {
            if let Some(vx) = &net.vxlan {
                vx.table.remove(&mac);
                net.switch.fdb.remove_static(&mac, vx.port.id);
            }
        }
    }

    /// Sets the tunnel's flood list to its `--vxlan-peer`s plus `extra` (the other nodes'
    /// VTEPs). False if the network has no tunnel.
    pub(crate) async fn set_cluster_peers(&self, network: &str, extra: &[Ipv4Addr]) -> bool {
        let st = self.state.lock().await;
        let Some(vx) = st.get(network).and_then(|n| n.vxlan.as_ref()) else {
            return false;
        };
        let mut peers = vx.plan.peers.clone();
        for p in extra {
            if !peers.contains(p) && *p != vx.plan.local {
                peers.push(*p);
            }
        }
        vx.table.set_peers(peers);
        true
    }

    /// An endpoint's address and MAC.
    pub(crate) async fn endpoint_addr(
        &self,
        network: &str,
        name: &str,
    ) -> Option<(Ipv4Addr, MacAddr)> {
        let st = self.state.lock().await;
        let ep = st.get(network)?.endpoints.get(name)?;
        Some((ep.ip, ep.mac))
    }

    /// Does this daemon have endpoints (or attaches in progress) on `network`?
    pub(crate) async fn has_endpoints(&self, network: &str) -> bool {
        let st = self.state.lock().await;
        st.get(network)
            .is_some_and(|n| !n.endpoints.is_empty() || !n.reserved.is_empty())
    }
}
