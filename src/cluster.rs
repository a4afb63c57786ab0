//! VXLAN networks across hosts through etcd (`netyard daemon --etcd URL[,URL...] --node NAME
//! --underlay-ip IP`), as flannel and Docker's classic overlay do: every daemon registers its
//! VTEP, its VXLAN networks, its endpoints and the addresses it hands out in etcd, watches the
//! prefix and programs its tunnels from what the others registered. No gossip of our own.
//!
//! Key layout under the prefix (default `/netyard/v1/`), values JSON:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `nodes/NODE` | `{"underlay_ip"}`: the node's VTEP | the node's |
//! | `networks/NAME` | `{"vni","subnet","gateway","port","mtu","internal","aging","max_macs_per_port","host_loopback","max_flows","max_flows_per_endpoint","created_by"}` | none: networks persist |
//! | `endpoints/NETWORK/MAC` | `{"ip","node","vtep","name","aliases"}` | the node's |
//! | `ipam/NETWORK/IP` | `{"node","endpoint"}` | the node's |
//!
//! - One lease per daemon (`--etcd-lease-ttl`, 10 s by default), kept alive at a third of its
//!   TTL. A daemon that dies stops refreshing it; etcd then deletes every leased key of that
//!   node at once, the others see the deletions and remove its entries. A clean shutdown revokes
//!   the lease, which does the same without the wait.
//! - The watcher keeps a copy of the prefix (`View`) and reconciles the data plane with it after
//!   every batch of events: a network key present in etcd and absent here is created here (its
//!   tunnel's local address is `--underlay-ip`); an endpoint of another node becomes a static
//!   remote entry (MAC behind that node's VTEP, in the tunnel's remote table and on the tunnel
//!   port of the MAC table), so a known endpoint is reached without flooding; every other node's
//!   VTEP is a flood peer (ARP and other broadcasts still need head-end replication); an address
//!   another node claimed is marked in use in the local IPAM; another node's endpoint's name
//!   and aliases are answered by this host's resolver on that network (as on a Docker overlay
//!   network, containers resolve each other across hosts; a rename re-registers the record).
//!   What disappears from etcd is removed here.
//! - Cross-host IPAM: before an attach gets an address, the daemon claims `ipam/NETWORK/IP` in a
//!   transaction that succeeds only if the key does not exist (create_revision == 0); on
//!   conflict it tries the next free address (a requested `--ip` fails instead, naming the node
//!   that holds it). The claim is leased and deleted at detach, so an address is never handed
//!   out twice across hosts while its holder lives.
//! - `network rm` of a distributed network removes it everywhere (deletes its key; every
//!   daemon then removes its instance), as `docker network rm` does for an overlay network, and
//!   is refused while any node has endpoints on it.
//! - etcd unreachable at start-up: the daemon exits with an error. Later: it logs, keeps the
//!   data plane as it is and retries (the watch resumes with a full resync; a lease that expired
//!   meanwhile is granted anew and this node's keys are written again). Operations that need
//!   etcd (creating or removing a distributed network, attaching to one) fail while it is down.
//!
//! This is the daemon's [`Registry`] when `--etcd` is given; it reaches the daemon only through
//! [`RegistryHost`] (`src/registry.rs`), and does not know `src/state.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, WatchOptions,
};
use futures::future::BoxFuture;
use netyard_api::model::{EndpointCreate, EndpointInfo, NetworkCreate, NetworkInfo};
use netyard_switch::MacAddr;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::error::DaemonError;
use crate::registry::{Registry, RegistryHost};

/// Key prefix when `--etcd-prefix` is not given.
pub const DEFAULT_PREFIX: &str = "/netyard/v1/";
/// Lease TTL in seconds when `--etcd-lease-ttl` is not given.
pub const DEFAULT_LEASE_TTL: u32 = 10;
/// How long one etcd request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while etcd is unreachable.
const RETRY: Duration = Duration::from_secs(1);

/// The `--etcd*`, `--node` and `--underlay-ip` flags, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    pub endpoints: Vec<String>,
    pub node: String,
    pub underlay_ip: Ipv4Addr,
    pub prefix: String,
    pub lease_ttl: u32,
}

impl ClusterOptions {
    /// Validates the daemon's flags: none without `--etcd`; with it, `--node` and
    /// `--underlay-ip` are required. Errors name the flag.
    pub fn from_flags(
        etcd: Vec<String>,
        node: Option<String>,
        underlay_ip: Option<String>,
        lease_ttl: Option<u32>,
        prefix: Option<String>,
    ) -> Result<Option<ClusterOptions>, DaemonError> {
        let endpoints: Vec<String> = etcd
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            for (flag, set) in [
                ("node", node.is_some()),
                ("underlay-ip", underlay_ip.is_some()),
                ("etcd-lease-ttl", lease_ttl.is_some()),
                ("etcd-prefix", prefix.is_some()),
            ] {
                if set {
                    return Err(DaemonError::invalid(flag, "needs --etcd"));
                }
            }
            return Ok(None);
        }
        for (i, e) in endpoints.iter().enumerate() {
            if !e.starts_with("http://") {
                return Err(DaemonError::invalid(
                    format!("etcd[{i}]"),
                    format!("{e:?} is not an http:// URL (such as http://10.0.0.1:2379)"),
                ));
            }
        }
        let node = node.ok_or_else(|| {
            DaemonError::invalid("node", "required with --etcd: this daemon's name in etcd")
        })?;
        let node_ok = !node.is_empty()
            && node.len() <= 64
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !node_ok {
            return Err(DaemonError::invalid(
                "node",
                format!("{node:?} is not a valid node name (1-64 letters, digits, '_', '.', '-')"),
            ));
        }
        let underlay = underlay_ip.ok_or_else(|| {
            DaemonError::invalid(
                "underlay-ip",
                "required with --etcd: this host's VTEP address on the underlay",
            )
        })?;
        let underlay_ip: Ipv4Addr = underlay.parse().map_err(|_| {
            DaemonError::invalid(
                "underlay-ip",
                format!("{underlay:?} is not an IPv4 address"),
            )
        })?;
        if underlay_ip.is_unspecified()
            || underlay_ip.is_multicast()
            || underlay_ip.is_broadcast()
            || underlay_ip.is_loopback()
        {
            return Err(DaemonError::invalid(
                "underlay-ip",
                format!("{underlay_ip} is not a unicast address other hosts can reach"),
            ));
        }
        let lease_ttl = lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if !(2..=3600).contains(&lease_ttl) {
            return Err(DaemonError::invalid(
                "etcd-lease-ttl",
                format!("{lease_ttl} out of range (2 to 3600 seconds)"),
            ));
        }
        let mut prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if prefix.is_empty() {
            return Err(DaemonError::invalid("etcd-prefix", "empty"));
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Some(ClusterOptions {
            endpoints,
            node,
            underlay_ip,
            prefix,
            lease_ttl,
        }))
    }
}

/// What failed talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A request failed.
    #[error("etcd {op}: {source}")]
    Request {
        op: String,
        source: etcd_client::Error,
    },
    /// A request got no answer in time (etcd unreachable).
    #[error("etcd {op}: no answer within {} s (is etcd reachable?)", REQUEST_TIMEOUT.as_secs())]
    Timeout { op: String },
}

impl ClusterError {
    fn into_daemon(self, context: &str) -> DaemonError {
        DaemonError::Io {
            context: context.to_string(),
            source: std::io::Error::other(self.to_string()),
        }
    }
}

/// etcd requests that failed (`netyard_etcd_errors_total{kind="request"}`), process-wide: one
/// registry per daemon process.
static REQUEST_ERRORS: AtomicU64 = AtomicU64::new(0);
/// etcd requests that timed out (`{kind="timeout"}`).
static REQUEST_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// etcd requests of this process that failed and that timed out, for the metrics.
pub fn etcd_errors() -> (u64, u64) {
    (
        REQUEST_ERRORS.load(Ordering::Relaxed),
        REQUEST_TIMEOUTS.load(Ordering::Relaxed),
    )
}

/// Runs one etcd request with the request timeout.
async fn call<T>(
    op: impl Into<String>,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => {
            REQUEST_ERRORS.fetch_add(1, Ordering::Relaxed);
            Err(ClusterError::Request {
                op: op.into(),
                source,
            })
        }
        Err(_) => {
            REQUEST_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            Err(ClusterError::Timeout { op: op.into() })
        }
    }
}

// ---- records ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NodeRec {
    underlay_ip: Ipv4Addr,
}

/// A distributed network: what every daemon needs to create its instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkRec {
    vni: u32,
    subnet: String,
    gateway: String,
    port: u16,
    mtu: u32,
    #[serde(default)]
    internal: bool,
    aging: u64,
    max_macs_per_port: u32,
    /// The router's options, the same on every host (absent in older records: defaults).
    #[serde(default)]
    host_loopback: bool,
    #[serde(default)]
    max_flows: Option<u32>,
    #[serde(default)]
    max_flows_per_endpoint: Option<u32>,
    #[serde(default)]
    created_by: String,
}

impl NetworkRec {
    fn from_info(info: &NetworkInfo, node: &str) -> Option<NetworkRec> {
        let vx = info.vxlan.as_ref()?;
        Some(NetworkRec {
            vni: vx.vni,
            subnet: info.subnet.clone(),
            gateway: info.gateway.clone(),
            port: vx.port,
            mtu: info.mtu,
            internal: info.internal,
            aging: info.aging,
            max_macs_per_port: info.max_macs_per_port,
            host_loopback: info.host_loopback,
            max_flows: Some(info.max_flows),
            max_flows_per_endpoint: Some(info.max_flows_per_endpoint),
            created_by: node.to_string(),
        })
    }

    /// Does the local network `info` carry this definition (name aside)?
    fn matches(&self, info: &NetworkInfo) -> bool {
        info.vxlan
            .as_ref()
            .is_some_and(|vx| vx.vni == self.vni && vx.port == self.port)
            && info.subnet == self.subnet
            && info.gateway == self.gateway
    }

    fn request(&self, name: &str, local: Ipv4Addr) -> NetworkCreate {
        NetworkCreate {
            name: name.to_string(),
            subnet: Some(self.subnet.clone()),
            gateway: Some(self.gateway.clone()),
            mtu: Some(self.mtu),
            internal: self.internal,
            host_loopback: self.host_loopback,
            max_flows: self.max_flows,
            max_flows_per_endpoint: self.max_flows_per_endpoint,
            aging: Some(self.aging),
            max_macs_per_port: Some(self.max_macs_per_port),
            vxlan: Some(self.vni),
            vxlan_local: Some(local.to_string()),
            vxlan_port: Some(u32::from(self.port)),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EndpointRec {
    ip: Ipv4Addr,
    node: String,
    vtep: Ipv4Addr,
    /// The endpoint's name and aliases, for the other hosts' resolvers (absent in records
    /// of older daemons: such an endpoint is reachable but not named).
    #[serde(default)]
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClaimRec {
    node: String,
    #[serde(default)]
    endpoint: String,
}

/// A key under the prefix, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Node(String),
    Network(String),
    Endpoint { network: String, mac: MacAddr },
    Claim { network: String, ip: Ipv4Addr },
}

impl Key {
    fn parse(rest: &str) -> Option<Key> {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["nodes", n] if !n.is_empty() => Some(Key::Node((*n).to_string())),
            ["networks", n] if !n.is_empty() => Some(Key::Network((*n).to_string())),
            ["endpoints", n, mac] if !n.is_empty() => Some(Key::Endpoint {
                network: (*n).to_string(),
                mac: mac.parse().ok()?,
            }),
            ["ipam", n, ip] if !n.is_empty() => Some(Key::Claim {
                network: (*n).to_string(),
                ip: ip.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// The prefix as last seen in etcd.
#[derive(Debug, Default)]
struct View {
    nodes: BTreeMap<String, Ipv4Addr>,
    networks: BTreeMap<String, NetworkRec>,
    endpoints: BTreeMap<(String, MacAddr), EndpointRec>,
    claims: BTreeMap<(String, Ipv4Addr), ClaimRec>,
}

impl View {
    /// Applies one key's new value (`None`: deleted). Values that do not parse are ignored
    /// (logged): another version's or a hand-made key never stops the watcher.
    fn apply(&mut self, key: &Key, value: Option<&[u8]>) {
        fn parse<T: for<'de> Deserialize<'de>>(key: &Key, v: &[u8]) -> Option<T> {
            match serde_json::from_slice(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(?key, error = %e, "ignoring an etcd value that does not parse");
                    None
                }
            }
        }
        match key {
            Key::Node(n) => match value.and_then(|v| parse::<NodeRec>(key, v)) {
                Some(r) => {
                    self.nodes.insert(n.clone(), r.underlay_ip);
                }
                None => {
                    self.nodes.remove(n);
                }
            },
            Key::Network(n) => match value.and_then(|v| parse::<NetworkRec>(key, v)) {
                Some(r) => {
                    self.networks.insert(n.clone(), r);
                }
                None => {
                    self.networks.remove(n);
                }
            },
            Key::Endpoint { network, mac } => {
                let k = (network.clone(), *mac);
                match value.and_then(|v| parse::<EndpointRec>(key, v)) {
                    Some(r) => {
                        self.endpoints.insert(k, r);
                    }
                    None => {
                        self.endpoints.remove(&k);
                    }
                }
            }
            Key::Claim { network, ip } => {
                let k = (network.clone(), *ip);
                match value.and_then(|v| parse::<ClaimRec>(key, v)) {
                    Some(r) => {
                        self.claims.insert(k, r);
                    }
                    None => {
                        self.claims.remove(&k);
                    }
                }
            }
        }
    }
}

/// What this daemon has programmed from the view, so reconciling removes exactly that.
#[derive(Debug, Default)]
struct Programmed {
    /// Local instances of distributed networks.
    networks: BTreeSet<String>,
    /// Networks that could not be created here (logged once).
    failed: BTreeSet<String>,
    statics: BTreeMap<(String, MacAddr), Ipv4Addr>,
    holds: BTreeSet<(String, Ipv4Addr)>,
    peers: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Other nodes' endpoints' names per network, as handed to the resolver.
    names: BTreeMap<String, Vec<netyard_dns::Entry>>,
}

struct Sync {
    view: View,
    done: Programmed,
}

/// The etcd registry of one daemon.
pub struct Cluster {
    opts: ClusterOptions,
    client: Client,
    lease: AtomicI64,
    /// This node's leased keys and values (full keys), written again after a lease is lost.
    own: std::sync::Mutex<BTreeMap<String, String>>,
    /// Set when writing or deleting one of `own`'s keys failed: the keeper converges.
    dirty: AtomicBool,
    sync: tokio::sync::Mutex<Sync>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("opts", &self.opts)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Connects, registers this node, mirrors what etcd holds (creating its networks on `host`)
/// and starts the lease keeper and the watcher (which holds `host` weakly). Returns the
/// registry for the daemon to install. Fails if etcd does not answer.
pub async fn start(
    host: &Arc<dyn RegistryHost>,
    opts: ClusterOptions,
) -> Result<Arc<dyn Registry>, DaemonError> {
    let urls = opts.endpoints.join(",");
    let context = format!("connecting to etcd at {urls}");
    let connect = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    let client = call(
        "connect",
        Client::connect(opts.endpoints.clone(), Some(connect)),
    )
    .await
    .map_err(|e| e.into_daemon(&context))?;
    let c = Arc::new(Cluster {
        client,
        lease: AtomicI64::new(0),
        own: std::sync::Mutex::new(BTreeMap::new()),
        dirty: AtomicBool::new(false),
        sync: tokio::sync::Mutex::new(Sync {
            view: View::default(),
            done: Programmed::default(),
        }),
        tasks: std::sync::Mutex::new(Vec::new()),
        opts,
    });
    // The first request tells whether etcd is there at all.
    c.grant().await.map_err(|e| e.into_daemon(&context))?;
    let node_key = c.key(&format!("nodes/{}", c.opts.node));
    let node_val = json(&NodeRec {
        underlay_ip: c.opts.underlay_ip,
    });
    c.own_set(&node_key, Some(node_val));
    c.publish_own().await.map_err(|e| e.into_daemon(&context))?;
    let rev = match c.resync(host.as_ref()).await {
        Ok(rev) => rev,
        Err(e) => {
            // Registered but not installed: the daemon will not revoke the lease, so do it.
            c.stop().await;
            return Err(e.into_daemon(&context));
        }
    };
    let weak = Arc::downgrade(host);
    let keeper = tokio::spawn(c.clone().keep_lease());
    let watcher = tokio::spawn(c.clone().watch(weak, rev));
    if let Ok(mut t) = c.tasks.lock() {
        t.push(keeper);
        t.push(watcher);
    }
    tracing::info!(etcd = %urls, node = %c.opts.node, underlay_ip = %c.opts.underlay_ip,
        lease_ttl = c.opts.lease_ttl, prefix = %c.opts.prefix, "registered in etcd");
    Ok(c)
}

fn json<T: Serialize>(v: &T) -> String {
    // Plain structs of strings, numbers and addresses: serialising cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

impl Cluster {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.opts.prefix)
    }

    fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    fn put_opts(&self) -> Option<PutOptions> {
        Some(PutOptions::new().with_lease(self.lease_id()))
    }

    fn own_set(&self, key: &str, value: Option<String>) {
        if let Ok(mut own) = self.own.lock() {
            match value {
                Some(v) => {
                    own.insert(key.to_string(), v);
                }
                None => {
                    own.remove(key);
                }
            }
        }
    }

    fn own_snapshot(&self) -> BTreeMap<String, String> {
        self.own.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn grant(&self) -> Result<(), ClusterError> {
        let mut c = self.client.clone();
        let r = call(
            "lease grant",
            c.lease_grant(i64::from(self.opts.lease_ttl), None),
        )
        .await?;
        self.lease.store(r.id(), Ordering::Relaxed);
        Ok(())
    }

    /// Makes etcd hold exactly this node's keys: writes every key of `own` under the current
    /// lease (claims only where nobody else holds the address), and deletes endpoint and
    /// address keys naming this node that `own` no longer has (left by a previous run of this
    /// node, or whose delete failed).
    async fn publish_own(&self) -> Result<(), ClusterError> {
        let own = self.own_snapshot();
        let mut c = self.client.clone();
        for (k, v) in &own {
            let rest = k.strip_prefix(&self.opts.prefix).unwrap_or_default();
            if let Some(Key::Claim { network, ip }) = Key::parse(rest) {
                let txn = Txn::new()
                    .when([Compare::create_revision(k.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(k.as_str(), v.as_str(), self.put_opts())]);
                if !call("claim", c.txn(txn)).await?.succeeded() {
                    match self.holder(k).await? {
                        Some(h) if h.node == self.opts.node => {
                            // Ours from before: move it under the current lease.
                            call("put", c.put(k.as_str(), v.as_str(), self.put_opts())).await?;
                        }
                        other => tracing::error!(network, %ip, holder = ?other,
                            "an address of an endpoint here was claimed by another node while \
                             this node's lease was gone: detach and attach again"),
                    }
                }
            } else {
                call("put", c.put(k.as_str(), v.as_str(), self.put_opts())).await?;
            }
        }
        for sub in ["endpoints/", "ipam/"] {
            let resp = call(
                "get",
                c.get(self.key(sub), Some(GetOptions::new().with_prefix())),
            )
            .await?;
            for kv in resp.kvs() {
                let Ok(k) = kv.key_str() else { continue };
                if own.contains_key(k) {
                    continue;
                }
                let node = match sub {
                    "endpoints/" => serde_json::from_slice::<EndpointRec>(kv.value())
                        .ok()
                        .map(|r| r.node),
                    _ => serde_json::from_slice::<ClaimRec>(kv.value())
                        .ok()
                        .map(|r| r.node),
                };
                if node.as_deref() == Some(self.opts.node.as_str()) {
                    tracing::info!(key = k, "removing a stale key of this node");
                    call("delete", c.delete(k, None)).await?;
                }
            }
        }
        Ok(())
    }

    async fn holder(&self, key: &str) -> Result<Option<ClaimRec>, ClusterError> {
        let mut c = self.client.clone();
        let r = call("get", c.get(key, None)).await?;
        Ok(r.kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<ClaimRec>(kv.value()).ok()))
    }

    /// Keeps the lease alive at a third of its TTL. Unreachable etcd: logs and retries. A lease
    /// that expired meanwhile: a new one, and this node's keys written again.
    async fn keep_lease(self: Arc<Self>) {
        let every = Duration::from_millis(u64::from(self.opts.lease_ttl) * 1000 / 3);
        let mut healthy = true;
        loop {
            let id = self.lease_id();
            let mut c = self.client.clone();
            let lost = match call("lease keep-alive", c.lease_keep_alive(id)).await {
                Ok((mut keeper, mut stream)) => loop {
                    let tick = async {
                        keeper.keep_alive().await?;
                        stream.message().await
                    };
                    match call("lease keep-alive", tick).await {
                        Ok(Some(r)) if r.ttl() > 0 => {
                            if !healthy {
                                tracing::info!("etcd reachable again");
                                healthy = true;
                            }
                            if self.dirty.swap(false, Ordering::Relaxed) {
                                if let Err(e) = self.publish_own().await {
                                    tracing::warn!(error = %e, "re-publishing this node's keys");
                                    self.dirty.store(true, Ordering::Relaxed);
                                }
                            }
                            tokio::time::sleep(every).await;
                        }
                        Ok(Some(_)) => break true,
                        Ok(None) => break false,
                        Err(e) => {
                            if healthy {
                                tracing::warn!(error = %e, "etcd unreachable; the data plane \
                                    keeps running, retrying");
                                healthy = false;
                            }
                            break false;
                        }
                    }
                },
                // The lease is gone (it expired while etcd was away): register again.
                Err(ClusterError::Request {
                    source: etcd_client::Error::LeaseKeepAliveError(_),
                    ..
                }) => true,
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "etcd unreachable; the data plane keeps \
                            running, retrying");
                        healthy = false;
                    }
                    false
                }
            };
            if lost {
                tracing::warn!(lease = id, "the etcd lease expired: registering again");
                match self.grant().await {
                    Ok(()) => {
                        if let Err(e) = self.publish_own().await {
                            tracing::warn!(error = %e, "re-publishing this node's keys");
                            self.dirty.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "granting a new lease"),
                }
                continue;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Reads the whole prefix, replaces the view with it and reconciles. Returns the revision
    /// to watch from.
    async fn resync(&self, host: &dyn RegistryHost) -> Result<i64, ClusterError> {
        // Locked before reading, so a network registered by the API meanwhile is either in
        // the snapshot or added to the view after it.
        let mut s = self.sync.lock().await;
        let mut c = self.client.clone();
        let resp = call(
            "get",
            c.get(
                self.opts.prefix.as_str(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let mut view = View::default();
        for kv in resp.kvs() {
            if let Some(k) = self.parse_key(kv) {
                view.apply(&k, Some(kv.value()));
            }
        }
        s.view = view;
        let Sync { view, done } = &mut *s;
        self.reconcile(host, view, done).await;
        Ok(rev + 1)
    }

    fn parse_key(&self, kv: &KeyValue) -> Option<Key> {
        let k = kv.key_str().ok()?;
        Key::parse(k.strip_prefix(&self.opts.prefix)?)
    }

    /// Follows the prefix from `rev`; on any failure resyncs and follows again.
    async fn watch(self: Arc<Self>, host: Weak<dyn RegistryHost>, mut rev: i64) {
        let mut healthy = true;
        loop {
            let mut c = self.client.clone();
            let opts = WatchOptions::new().with_prefix().with_start_revision(rev);
            match call("watch", c.watch(self.opts.prefix.as_str(), Some(opts))).await {
                Ok(mut stream) => loop {
                    let resp = match stream.message().await {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            tracing::warn!("etcd watch ended; resyncing");
                            break;
                        }
                        Err(e) => {
                            if healthy {
                                tracing::warn!(error = %e, "etcd watch failed; retrying");
                                healthy = false;
                            }
                            break;
                        }
                    };
                    if resp.canceled() {
                        tracing::warn!(
                            reason = resp.cancel_reason(),
                            "etcd watch cancelled; resyncing"
                        );
                        break;
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    let Some(d) = host.upgrade() else { return };
                    let mut s = self.sync.lock().await;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        rev = rev.max(kv.mod_revision() + 1);
                        let Some(k) = self.parse_key(kv) else {
                            continue;
                        };
                        match ev.event_type() {
                            EventType::Put => s.view.apply(&k, Some(kv.value())),
                            EventType::Delete => s.view.apply(&k, None),
                        }
                    }
                    let Sync { view, done } = &mut *s;
                    self.reconcile(d.as_ref(), view, done).await;
                },
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "etcd watch failed; retrying");
                        healthy = false;
                    }
                }
            }
            loop {
                tokio::time::sleep(RETRY).await;
                let Some(d) = host.upgrade() else { return };
                match self.resync(d.as_ref()).await {
                    Ok(r) => {
                        rev = r;
                        if !healthy {
                            tracing::info!("etcd watch resumed");
                            healthy = true;
                        }
                        break;
                    }
                    Err(e) => {
                        if healthy {
                            tracing::warn!(error = %e, "etcd resync failed; retrying");
                            healthy = false;
                        }
                    }
                }
            }
        }
    }

    /// Brings the data plane in line with the view: networks, flood peers, static remote
    /// entries and remote address claims.
    async fn reconcile(&self, d: &dyn RegistryHost, view: &View, done: &mut Programmed) {
        let me = self.opts.node.as_str();
        // Networks: create what etcd has and this daemon lacks.
        for (name, rec) in &view.networks {
            if done.networks.contains(name) {
                continue;
            }
            match d.network(name).await {
                Ok(info) if rec.matches(&info) => {
                    done.networks.insert(name.clone());
                }
                Ok(info) => {
                    if done.failed.insert(name.clone()) {
                        tracing::warn!(network = %name, etcd = ?rec, local = ?info.vxlan,
                            subnet = %info.subnet, "a local network has the name of a \
                            distributed one with another definition: not joining it");
                    }
                }
                Err(_) => match d
                    .create_network_local(rec.request(name, self.opts.underlay_ip))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(network = %name, vni = rec.vni, subnet = %rec.subnet,
                            from = %rec.created_by, "network created from etcd");
                        done.failed.remove(name);
                        done.networks.insert(name.clone());
                    }
                    Err(e) => {
                        if done.failed.insert(name.clone()) {
                            tracing::error!(network = %name, error = %e,
                                "cannot create a network registered in etcd");
                        }
                    }
                },
            }
        }
        done.failed.retain(|n| view.networks.contains_key(n));
        // ... and remove the instances of networks removed from etcd.
        let gone: Vec<String> = done
            .networks
            .iter()
            .filter(|n| !view.networks.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if d.has_endpoints(&name).await {
                tracing::warn!(network = %name, "removed from etcd but endpoints are attached \
                    here: keeping this host's instance until they are detached");
                continue;
            }
            match d.remove_network_local(&name).await {
                Ok(()) | Err(DaemonError::NoNetwork(_)) => {
                    tracing::info!(network = %name, "network removed (removed from etcd)");
                    done.networks.remove(&name);
                    done.peers.remove(&name);
                    done.statics.retain(|(n, _), _| n != &name);
                    done.holds.retain(|(n, _)| n != &name);
                    done.names.remove(&name);
                }
                Err(e) => tracing::warn!(network = %name, error = %e, "removing a network"),
            }
        }
        // Flood peers: every other node's VTEP.
        let mut peers: Vec<Ipv4Addr> = view
            .nodes
            .iter()
            .filter(|(n, ip)| n.as_str() != me && **ip != self.opts.underlay_ip)
            .map(|(_, ip)| *ip)
            .collect();
        peers.sort();
        peers.dedup();
        for name in &done.networks {
            if done.peers.get(name) != Some(&peers) && d.set_flood_peers(name, &peers).await {
                tracing::info!(network = %name, ?peers, "flood peers from etcd");
                done.peers.insert(name.clone(), peers.clone());
            }
        }
        // Static remote entries: other nodes' endpoints behind their VTEPs.
        let want: BTreeMap<(String, MacAddr), Ipv4Addr> = view
            .endpoints
            .iter()
            .filter(|((n, _), r)| r.node != me && done.networks.contains(n))
            .map(|(k, r)| (k.clone(), r.vtep))
            .collect();
        let stale: Vec<(String, MacAddr)> = done
            .statics
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            d.clear_remote_static(&k.0, k.1).await;
            tracing::info!(network = %k.0, mac = %k.1, "remote entry removed (gone from etcd)");
            done.statics.remove(&k);
        }
        for (k, vtep) in want {
            if done.statics.contains_key(&k) {
                continue;
            }
            if d.set_remote_static(&k.0, k.1, vtep).await {
                tracing::info!(network = %k.0, mac = %k.1, %vtep, "remote entry from etcd");
                done.statics.insert(k, vtep);
            }
        }
        // Names of other nodes' endpoints, per network (a network whose last remote endpoint
        // left gets an empty list once, then is forgotten).
        let mut want: BTreeMap<String, Vec<netyard_dns::Entry>> = BTreeMap::new();
        for ((n, _), r) in &view.endpoints {
            if r.node == me || !done.networks.contains(n) || r.name.is_empty() {
                continue;
            }
            want.entry(n.clone()).or_default().push(netyard_dns::Entry {
                network: n.clone(),
                name: r.name.clone(),
                aliases: r.aliases.clone(),
                ipv4: Some(r.ip),
                ipv6: None,
            });
        }
        let emptied: Vec<String> = done
            .names
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        for n in emptied {
            want.insert(n, Vec::new());
        }
        for (n, entries) in want {
            if done.names.get(&n) == Some(&entries) {
                continue;
            }
            if d.set_remote_names(&n, entries.clone()).await {
                tracing::info!(network = %n, names = entries.len(), "remote names from etcd");
            }
            if entries.is_empty() {
                done.names.remove(&n);
            } else {
                done.names.insert(n, entries);
            }
        }
        // Addresses other nodes hold.
        let want: BTreeSet<(String, Ipv4Addr)> = view
            .claims
            .iter()
            .filter(|((n, _), r)| r.node != me && done.networks.contains(n))
            .map(|(k, _)| k.clone())
            .collect();
        let released: Vec<(String, Ipv4Addr)> = done.holds.difference(&want).cloned().collect();
        for k in released {
            d.ipam_release_remote(&k.0, k.1).await;
            done.holds.remove(&k);
        }
        for k in want {
            if !done.holds.contains(&k) && d.ipam_hold_remote(&k.0, k.1).await {
                done.holds.insert(k);
            }
        }
    }

    /// Is `network` distributed (known in etcd)?
    async fn distributed(&self, network: &str) -> bool {
        self.sync.lock().await.view.networks.contains_key(network)
    }

    // ---- the daemon's operations on distributed networks ----

    /// `network create --vxlan` with etcd: created here (its tunnel on `--underlay-ip`), then
    /// registered; the other daemons create theirs when they see the key.
    async fn create_network(
        &self,
        d: &dyn RegistryHost,
        mut req: NetworkCreate,
    ) -> Result<NetworkInfo, DaemonError> {
        if req.vxlan.is_none() {
            // Not a VXLAN network: this host's only.
            return d.create_network_local(req).await;
        }
        let ul = self.opts.underlay_ip;
        match &req.vxlan_local {
            Some(l) if l.parse::<Ipv4Addr>().ok() != Some(ul) => {
                return Err(DaemonError::invalid(
                    "vxlan_local",
                    format!(
                        "with --etcd every tunnel's local address is --underlay-ip {ul} \
                         (given {l:?})"
                    ),
                ))
            }
            _ => req.vxlan_local = Some(ul.to_string()),
        }
        let key = self.key(&format!("networks/{}", req.name));
        {
            let s = self.sync.lock().await;
            if let Some(rec) = s.view.networks.get(&req.name) {
                // The same definition, already instantiated here (a config file applied again
                // after a restart): nothing to do.
                let same = Some(rec.vni) == req.vxlan
                    && req.subnet.as_ref().is_none_or(|x| *x == rec.subnet)
                    && req.gateway.as_ref().is_none_or(|x| *x == rec.gateway)
                    && req.vxlan_port.is_none_or(|p| p == u32::from(rec.port));
                if same && s.done.networks.contains(&req.name) {
                    drop(s);
                    return d.network(&req.name).await;
                }
                return Err(DaemonError::conflict(
                    Some("name"),
                    format!(
                        "network {:?} already exists in etcd (VNI {}, subnet {}, created by \
                         node {:?})",
                        req.name, rec.vni, rec.subnet, rec.created_by
                    ),
                ));
            }
            if let Some((other, rec)) = s
                .view
                .networks
                .iter()
                .find(|(_, r)| Some(r.vni) == req.vxlan)
            {
                return Err(DaemonError::conflict(
                    Some("vxlan"),
                    format!(
                        "network {other:?} in etcd already uses VNI {} (created by node {:?})",
                        rec.vni, rec.created_by
                    ),
                ));
            }
        }
        let info = d.create_network_local(req).await?;
        let Some(rec) = NetworkRec::from_info(&info, &self.opts.node) else {
            return Ok(info);
        };
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), json(&rec), None)]);
        match call("register network", c.txn(txn)).await {
            Ok(r) if r.succeeded() => {
                let mut s = self.sync.lock().await;
                s.view.networks.insert(info.name.clone(), rec);
                s.done.networks.insert(info.name.clone());
                let Sync { view, done } = &mut *s;
                self.reconcile(d, view, done).await;
                tracing::info!(network = %info.name, "network registered in etcd");
                Ok(info)
            }
            Ok(_) => {
                let _ = d.remove_network_local(&info.name).await;
                Err(DaemonError::conflict(
                    Some("name"),
                    format!(
                        "network {:?} was just registered in etcd by another node",
                        info.name
                    ),
                ))
            }
            Err(e) => {
                let _ = d.remove_network_local(&info.name).await;
                Err(e.into_daemon(&format!("registering network {:?}", info.name)))
            }
        }
    }

    /// `network rm` with etcd: a distributed network is removed everywhere (refused while any
    /// node has endpoints on it); a local one only here.
    async fn remove_network(&self, d: &dyn RegistryHost, name: &str) -> Result<(), DaemonError> {
        let remote: Vec<String> = {
            let s = self.sync.lock().await;
            if !s.view.networks.contains_key(name) {
                drop(s);
                return d.remove_network_local(name).await;
            }
            s.view
                .endpoints
                .iter()
                .filter(|((n, _), r)| n == name && r.node != self.opts.node)
                .map(|((_, mac), r)| format!("{mac} on node {}", r.node))
                .collect()
        };
        if d.has_endpoints(name).await {
            // The local removal names them.
            return d.remove_network_local(name).await;
        }
        if !remote.is_empty() {
            return Err(DaemonError::conflict(
                None,
                format!(
                    "network {name:?} has {} endpoint(s) on other nodes ({}): detach them first",
                    remote.len(),
                    remote.join(", ")
                ),
            ));
        }
        let mut c = self.client.clone();
        call(
            "delete",
            c.delete(self.key(&format!("networks/{name}")), None),
        )
        .await
        .map_err(|e| e.into_daemon(&format!("removing network {name:?} from etcd")))?;
        let mut s = self.sync.lock().await;
        s.view.networks.remove(name);
        let Sync { view, done } = &mut *s;
        self.reconcile(d, view, done).await;
        drop(s);
        match d.remove_network_local(name).await {
            Ok(()) | Err(DaemonError::NoNetwork(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Attach with etcd: on a distributed network the address is claimed cluster-wide first.
    async fn attach(
        &self,
        d: &dyn RegistryHost,
        network: &str,
        mut req: EndpointCreate,
    ) -> Result<EndpointInfo, DaemonError> {
        if !self.distributed(network).await {
            return d.attach_local(network, req).await;
        }
        let requested = match &req.ip {
            Some(s) => match s.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                // Not an address: the local attach names the field.
                Err(_) => return d.attach_local(network, req).await,
            },
            None => None,
        };
        let ip = match requested {
            Some(ip) => {
                match self.claim(network, ip, &req.name).await? {
                    Claim::Ours => {}
                    Claim::Held(h) if h.node == self.opts.node => {
                        // Held by this node: the local IPAM tells whether it is free.
                    }
                    Claim::Held(h) => {
                        return Err(DaemonError::conflict(
                            Some("ip"),
                            format!(
                                "address {ip} is in use on network {network:?} by node {:?}{}",
                                h.node,
                                if h.endpoint.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (endpoint {:?})", h.endpoint)
                                }
                            ),
                        ))
                    }
                }
                d.ipam_release_remote(network, ip).await;
                ip
            }
            None => {
                let mut skip = BTreeSet::new();
                loop {
                    let ip = d.next_free(network, &skip).await?;
                    match self.claim(network, ip, &req.name).await? {
                        Claim::Ours => break ip,
                        Claim::Held(h) => {
                            tracing::debug!(network, %ip, holder = %h.node, "address taken; next");
                            if h.node != self.opts.node {
                                d.ipam_hold_remote(network, ip).await;
                            }
                            skip.insert(ip);
                        }
                    }
                }
            }
        };
        req.ip = Some(ip.to_string());
        let claim_key = self.key(&format!("ipam/{network}/{ip}"));
        match d.attach_local(network, req).await {
            Ok(info) => {
                match info.mac.parse::<MacAddr>() {
                    Ok(mac) => {
                        self.register_endpoint(network, mac, ip, &info).await;
                    }
                    Err(e) => tracing::warn!(error = %e, mac = %info.mac, "endpoint MAC"),
                }
                Ok(info)
            }
            Err(e) => {
                self.own_set(&claim_key, None);
                let mut c = self.client.clone();
                if call("delete", c.delete(claim_key, None)).await.is_err() {
                    self.dirty.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// After a restart: an endpoint this node re-adopted keeps its address claim and its
    /// record, moved under the new lease (the old lease may still be alive, so the claim is
    /// taken over as "ours from before" by the keeper's republishing).
    async fn readopt(&self, info: &EndpointInfo) {
        let network = info.network.as_str();
        if !self.distributed(network).await {
            return;
        }
        let (Ok(mac), Ok(ip)) = (info.mac.parse::<MacAddr>(), info.ip.parse::<Ipv4Addr>()) else {
            return;
        };
        let claim_key = self.key(&format!("ipam/{network}/{ip}"));
        self.own_set(
            &claim_key,
            Some(json(&ClaimRec {
                node: self.opts.node.clone(),
                endpoint: info.name.clone(),
            })),
        );
        self.register_endpoint(network, mac, ip, info).await;
        if let Err(e) = self.publish_own().await {
            tracing::warn!(error = %e, network, endpoint = %info.name,
                "re-registering a restored endpoint in etcd failed; retrying later");
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes (or rewrites) the record of a local endpoint of distributed `network`.
    async fn register_endpoint(
        &self,
        network: &str,
        mac: MacAddr,
        ip: Ipv4Addr,
        info: &EndpointInfo,
    ) {
        let key = self.key(&format!("endpoints/{network}/{mac}"));
        let val = json(&EndpointRec {
            ip,
            node: self.opts.node.clone(),
            vtep: self.opts.underlay_ip,
            name: info.name.clone(),
            aliases: info.aliases.clone(),
        });
        self.own_set(&key, Some(val.clone()));
        let mut c = self.client.clone();
        if let Err(e) = call("put", c.put(key, val, self.put_opts())).await {
            tracing::warn!(error = %e, network, endpoint = %info.name,
                "registering the endpoint in etcd failed; retrying later");
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// After a local rename: the other hosts learn the new name (only for an endpoint this
    /// node registered).
    async fn renamed(&self, network: &str, info: &EndpointInfo) {
        let (Ok(mac), Ok(ip)) = (info.mac.parse::<MacAddr>(), info.ip.parse::<Ipv4Addr>()) else {
            return;
        };
        let key = self.key(&format!("endpoints/{network}/{mac}"));
        let ours = self
            .own
            .lock()
            .map(|o| o.contains_key(&key))
            .unwrap_or(false);
        if ours {
            self.register_endpoint(network, mac, ip, info).await;
        }
    }

    /// Claims `ip` on `network` for this node, leased.
    async fn claim(
        &self,
        network: &str,
        ip: Ipv4Addr,
        endpoint: &str,
    ) -> Result<Claim, DaemonError> {
        let key = self.key(&format!("ipam/{network}/{ip}"));
        let val = json(&ClaimRec {
            node: self.opts.node.clone(),
            endpoint: endpoint.to_string(),
        });
        let ctx = || format!("claiming {ip} on network {network:?} in etcd");
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), val.as_str(), self.put_opts())]);
        let r = call("claim", c.txn(txn))
            .await
            .map_err(|e| e.into_daemon(&ctx()))?;
        if r.succeeded() {
            self.own_set(&key, Some(val));
            return Ok(Claim::Ours);
        }
        let holder = self.holder(&key).await.map_err(|e| e.into_daemon(&ctx()))?;
        Ok(Claim::Held(holder.unwrap_or(ClaimRec {
            node: String::new(),
            endpoint: String::new(),
        })))
    }

    /// Detach with etcd: the endpoint's keys are deleted (its entries vanish on the others).
    async fn detach(
        &self,
        d: &dyn RegistryHost,
        network: &str,
        name: &str,
    ) -> Result<(), DaemonError> {
        let addr = d.endpoint_addr(network, name).await;
        d.detach_local(network, name).await?;
        if let Some((ip, mac)) = addr {
            let mut c = self.client.clone();
            for key in [
                self.key(&format!("endpoints/{network}/{mac}")),
                self.key(&format!("ipam/{network}/{ip}")),
            ] {
                let was_ours = self
                    .own
                    .lock()
                    .map(|o| o.contains_key(&key))
                    .unwrap_or(false);
                if !was_ours {
                    continue;
                }
                self.own_set(&key, None);
                if let Err(e) = call("delete", c.delete(key.as_str(), None)).await {
                    tracing::warn!(error = %e, key, "deleting from etcd failed; retrying later");
                    self.dirty.store(true, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Stops the keeper and the watcher and revokes the lease (this node's keys vanish from
    /// etcd at once).
    async fn stop(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
        let mut c = self.client.clone();
        match call("lease revoke", c.lease_revoke(self.lease_id())).await {
            Ok(_) => tracing::info!("etcd lease revoked"),
            Err(e) => tracing::warn!(error = %e, "revoking the etcd lease (its keys expire \
                with its TTL)"),
        }
    }
}

/// The daemon's operations go through the inherent methods above.
impl Registry for Cluster {
    fn create_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        req: NetworkCreate,
    ) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>> {
        Box::pin(Cluster::create_network(self, host, req))
    }

    fn remove_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>> {
        Box::pin(Cluster::remove_network(self, host, name))
    }

    fn attach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        req: EndpointCreate,
    ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>> {
        Box::pin(Cluster::attach(self, host, network, req))
    }

    fn detach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>> {
        Box::pin(Cluster::detach(self, host, network, name))
    }

    fn renamed<'a>(&'a self, network: &'a str, info: &'a EndpointInfo) -> BoxFuture<'a, ()> {
        Box::pin(Cluster::renamed(self, network, info))
    }

    fn readopt<'a>(&'a self, info: &'a EndpointInfo) -> BoxFuture<'a, ()> {
        Box::pin(Cluster::readopt(self, info))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(Cluster::stop(self))
    }
}

/// The outcome of a claim.
enum Claim {
    Ours,
    /// Another claim holds the address (its holder, as far as it parses).
    Held(ClaimRec),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(Key::parse("nodes/a"), Some(Key::Node("a".into())));
        assert_eq!(Key::parse("networks/ov"), Some(Key::Network("ov".into())));
        assert_eq!(
            Key::parse("endpoints/ov/02:42:0a:01:00:02"),
            Some(Key::Endpoint {
                network: "ov".into(),
                mac: MacAddr([2, 0x42, 10, 1, 0, 2])
            })
        );
        assert_eq!(
            Key::parse("ipam/ov/10.1.0.2"),
            Some(Key::Claim {
                network: "ov".into(),
                ip: Ipv4Addr::new(10, 1, 0, 2)
            })
        );
        for bad in [
            "",
            "nodes/",
            "endpoints/ov/zz",
            "ipam/ov/10.1",
            "x/y",
            "nodes/a/b",
        ] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn view_ignores_bad_values_and_deletes() {
        let mut v = View::default();
        let k = Key::Node("a".into());
        v.apply(&k, Some(br#"{"underlay_ip":"198.18.0.1"}"#));
        assert_eq!(v.nodes.get("a"), Some(&Ipv4Addr::new(198, 18, 0, 1)));
        v.apply(&k, Some(b"not json"));
        assert!(v.nodes.is_empty());
        let e = Key::Endpoint {
            network: "ov".into(),
            mac: MacAddr([2, 0x42, 10, 1, 0, 2]),
        };
        v.apply(
            &e,
            Some(br#"{"ip":"10.1.0.2","node":"b","vtep":"198.18.0.2"}"#),
        );
        assert_eq!(v.endpoints.len(), 1);
        v.apply(&e, None);
        assert!(v.endpoints.is_empty());
    }

    #[test]
    fn flags_are_validated_by_name() {
        let f = |etcd: &[&str], node: Option<&str>, ip: Option<&str>| {
            ClusterOptions::from_flags(
                etcd.iter().map(|s| s.to_string()).collect(),
                node.map(str::to_string),
                ip.map(str::to_string),
                None,
                None,
            )
        };
        assert_eq!(f(&[], None, None).unwrap(), None);
        let e = f(&["http://127.0.0.1:2379"], None, Some("198.18.0.1")).unwrap_err();
        assert_eq!(e.field(), Some("node"));
        let e = f(&["http://127.0.0.1:2379"], Some("a"), None).unwrap_err();
        assert_eq!(e.field(), Some("underlay-ip"));
        let e = f(&[], Some("a"), None).unwrap_err();
        assert_eq!(e.field(), Some("node"));
        let e = f(&["127.0.0.1:2379"], Some("a"), Some("198.18.0.1")).unwrap_err();
        assert_eq!(e.field(), Some("etcd[0]"));
        let o = f(
            &["http://10.0.0.1:2379,http://10.0.0.2:2379"],
            Some("a"),
            Some("198.18.0.1"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.endpoints.len(), 2);
        assert_eq!(o.prefix, DEFAULT_PREFIX);
        assert_eq!(o.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn network_record_round_trips_into_a_request() {
        let rec = NetworkRec {
            vni: 42,
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            port: 4789,
            mtu: 1450,
            internal: false,
            aging: 300,
            max_macs_per_port: 1024,
            host_loopback: true,
            max_flows: Some(1000),
            max_flows_per_endpoint: Some(10),
            created_by: "a".into(),
        };
        let back: NetworkRec = serde_json::from_str(&json(&rec)).unwrap();
        assert_eq!(back, rec);
        let req = rec.request("ov", Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(req.vxlan, Some(42));
        assert_eq!(req.vxlan_local.as_deref(), Some("198.18.0.2"));
        assert_eq!(req.subnet.as_deref(), Some("10.1.0.0/24"));
        assert!(req.vxlan_peers.is_empty());
        // The router's options travel too.
        assert!(req.host_loopback);
        assert_eq!(
            (req.max_flows, req.max_flows_per_endpoint),
            (Some(1000), Some(10))
        );
        // A record written before they existed still parses, with the defaults.
        let old = r#"{"vni":7,"subnet":"10.2.0.0/24","gateway":"10.2.0.1","port":4789,
            "mtu":1450,"aging":300,"max_macs_per_port":1024}"#;
        let old: NetworkRec = serde_json::from_str(old).unwrap();
        let req = old.request("old", Ipv4Addr::new(198, 18, 0, 2));
        assert!(!req.host_loopback);
        assert_eq!((req.max_flows, req.max_flows_per_endpoint), (None, None));
    }
}
