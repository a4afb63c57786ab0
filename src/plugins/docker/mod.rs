//! `netyard docker-plugin`: Docker's remote network driver and IPAM driver (libnetwork's
//! plugin protocol: JSON over HTTP POSTs on a Unix socket Docker finds in
//! /run/docker/plugins), a client of the running daemon like the CLI.
//!
//! | Docker calls | netyard does |
//! |---|---|
//! | `IpamDriver.RequestPool` | the subnet given, else the one `network create` would pick ([`daemon::free_subnet`]; with `V6` a ULA /64) |
//! | `IpamDriver.RequestAddress` | the gateway: the one given or the pool's first host; a container: the one given or the first address no endpoint holds (IPv4 or IPv6, as the pool) |
//! | `NetworkDriver.CreateNetwork` | creates the network from the pools and gateways (`--ipv6`: dual stack), `--internal`, `-o netyard.*` ([`mapping::network_request`]), 127.0.0.11 left to Docker |
//! | `NetworkDriver.CreateEndpoint` | attaches a veth with Docker's addresses whose peer waits in the daemon's namespace (an IPv6 address Docker did not give is answered back) |
//! | `NetworkDriver.Join` | names that peer (`SrcName`) and the gateways; Docker moves it in and configures it |
//! | `NetworkDriver.ProgramExternalConnectivity` | publishes the `-p` bindings (client address kept) |
//! | `RevokeExternalConnectivity`, `Leave`, `DeleteEndpoint`, `DeleteNetwork` | unpublishes, detaches, removes (each idempotent) |
//!
//! Names come from Docker's ids (see [`mapping`]), so the plugin holds nothing a restart
//! would lose but the pools and addresses it handed out that are no network or endpoint yet.

pub mod mapping;
pub mod wire;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use netyard_api::model::EndpointInfo;
use netyard_cli::{ApiClient, ClientError};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::daemon;
use mapping::Fault;
use wire::*;

/// Where Docker looks for plugin sockets.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/netyard.sock";

/// `netyard docker-plugin`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "netyard docker-plugin",
    about = "Serve Docker's remote network and IPAM driver API for netyard networks \
             (`docker network create -d netyard --ipam-driver netyard`)"
)]
struct Args {
    /// The plugin socket Docker finds (the driver's name is the file's name without .sock).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The netyard daemon's API socket [default: $NETYARD_API, else the CLI's default].
    #[arg(long)]
    api: Option<String>,
}

/// Runs the plugin with the arguments after `docker-plugin`; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv = std::iter::once(OsString::from("netyard docker-plugin")).chain(args);
    let a = match <Args as clap::Parser>::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netyard docker-plugin: starting the tokio runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(a)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("netyard docker-plugin: {e}");
            1
        }
    }
}

async fn serve(a: Args) -> Result<(), String> {
    let api = daemon::api_path(a.api.as_deref());
    let listener = bind(&a.socket).await?;
    tracing::info!(socket = %a.socket.display(), api = %api.display(), "docker plugin listening");
    let plugin = Arc::new(Plugin::new(ApiClient::new(api)));
    let app = router(plugin);
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    let _ = std::fs::remove_file(&a.socket);
    r.map_err(|e| format!("serving {}: {e}", a.socket.display()))
}

/// Binds the plugin socket; a stale one (nobody answers) is replaced, a live one is refused.
async fn bind(path: &FsPath) -> Result<tokio::net::UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(format!(
                "another plugin is already serving {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("binding {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("setting mode 0600 on {}: {e}", path.display()))?;
    Ok(l)
}

/// The plugin's HTTP routes: one POST per call, `/{Interface.Method}`.
pub fn router(plugin: Arc<Plugin>) -> Router {
    Router::new()
        .route("/{call}", axum::routing::post(call))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, err_body("no such plugin call")) })
        .with_state(plugin)
}

/// What the plugin remembers between calls: the pools and addresses its IPAM handed out that
/// are no network or endpoint yet (so two concurrent requests do not get the same one).
pub struct Plugin {
    api: ApiClient,
    pools: Mutex<BTreeSet<IpNet>>,
    addresses: Mutex<BTreeSet<IpAddr>>,
}

/// Why a call failed: Docker's request (the field named), the daemon, or the call.
enum Failure {
    /// The body is not the call's JSON: HTTP 400 (the protocol's "syntactic problem").
    Body(String),
    Fault(Fault),
    Daemon(ClientError),
    Unknown(String),
}

impl From<Fault> for Failure {
    fn from(f: Fault) -> Failure {
        Failure::Fault(f)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Daemon(e)
    }
}

fn err_body(msg: impl std::fmt::Display) -> Value {
    json!({ "Err": msg.to_string() })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

async fn call(State(p): State<Arc<Plugin>>, Path(name): Path<String>, body: Bytes) -> Response {
    tracing::debug!(call = %name, body = %String::from_utf8_lossy(&body), "docker plugin call");
    match p.dispatch(&name, &body).await {
        Ok(v) => reply(StatusCode::OK, v),
        Err(f) => {
            let (status, msg) = match f {
                Failure::Body(m) => (StatusCode::BAD_REQUEST, m),
                Failure::Fault(f) => (StatusCode::OK, f.to_string()),
                Failure::Daemon(e) => (StatusCode::OK, daemon_error(&e)),
                Failure::Unknown(m) => (StatusCode::NOT_FOUND, m),
            };
            tracing::warn!(call = %name, error = %msg, "docker plugin call failed");
            reply(status, err_body(msg))
        }
    }
}

/// A daemon error as Docker shows it: the daemon's field, when it names one.
fn daemon_error(e: &ClientError) -> String {
    match e {
        ClientError::Api(a, _) => match &a.field {
            Some(f) => format!("netyard daemon: {f}: {}", a.error),
            None => format!("netyard daemon: {}", a.error),
        },
        other => format!("netyard: {other}"),
    }
}

/// The call's JSON body; an error names the field (its JSON path) at fault.
fn parse<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, Failure> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        Failure::Body(format!("netyard: {call}: {field}: {}", e.inner()))
    })
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|_| json!({}))
}

impl Plugin {
    pub fn new(api: ApiClient) -> Plugin {
        Plugin {
            api,
            pools: Mutex::new(BTreeSet::new()),
            addresses: Mutex::new(BTreeSet::new()),
        }
    }

    async fn dispatch(&self, call: &str, body: &[u8]) -> Result<Value, Failure> {
        let c = &self.api;
        match call {
            "Plugin.Activate" => Ok(to_value(Activate {
                implements: vec!["NetworkDriver", "IpamDriver"],
            })),
            "NetworkDriver.GetCapabilities" => Ok(to_value(Capabilities {
                scope: "local",
                connectivity_scope: "local",
            })),
            "NetworkDriver.CreateNetwork" => {
                let req: CreateNetwork = parse(call, body)?;
                let want = mapping::network_request(&req)?;
                let net = match c.post("/v1/networks", &want).await {
                    Ok(_) => want.name.clone(),
                    // Created before (Docker repeats a call whose answer it lost): the same
                    // subnet is success.
                    Err(e) if daemon::refused(&e) == Some(StatusCode::CONFLICT) => {
                        match daemon::network(c, &want.name).await? {
                            Some(n) if Some(&n.subnet) == want.subnet.as_ref() => n.name,
                            _ => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                for s in [&want.subnet, &want.subnet6] {
                    if let Some(s) = s.as_deref().and_then(|s| s.parse().ok()) {
                        self.lock_pools().remove(&s);
                    }
                }
                tracing::info!(network = %net, subnet = ?want.subnet, subnet6 = ?want.subnet6,
                               "docker network created");
                Ok(json!({}))
            }
            "NetworkDriver.DeleteNetwork" => {
                let req: NetworkRef = parse(call, body)?;
                let net = mapping::network_name(&req.network_id)?;
                daemon::remove_network(c, &net).await?;
                tracing::info!(network = %net, "docker network removed");
                Ok(json!({}))
            }
            "NetworkDriver.CreateEndpoint" => {
                let req: CreateEndpoint = parse(call, body)?;
                let net = mapping::network_name(&req.network_id)?;
                let want = mapping::endpoint_request(&req)?;
                let info = match daemon::attach(c, &net, &want).await {
                    Ok(i) => i,
                    Err(e) if daemon::refused(&e) == Some(StatusCode::CONFLICT) => {
                        match daemon::endpoint(c, &net, &want.name).await? {
                            Some(i)
                                if Some(&i.ip) == want.ip.as_ref()
                                    && (want.ip6.is_none() || i.ip6 == want.ip6) =>
                            {
                                i
                            }
                            _ => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                for ip in std::iter::once(&info.ip).chain(&info.ip6) {
                    if let Ok(ip) = ip.parse() {
                        self.lock_addresses().remove(&ip);
                    }
                }
                Ok(to_value(CreateEndpointReply {
                    interface: mapping::endpoint_reply(req.interface.as_ref(), &info),
                }))
            }
            "NetworkDriver.DeleteEndpoint" | "NetworkDriver.Leave" => {
                let req: EndpointRef = parse(call, body)?;
                let net = mapping::network_name(&req.network_id)?;
                let ep = mapping::endpoint_name(&req.endpoint_id)?;
                match daemon::detach(c, &net, &ep).await {
                    Ok(_) => Ok(json!({})),
                    // The network went first (Docker removed it while the endpoint's
                    // deletion was retried): nothing left to detach.
                    Err(e) if daemon::network(c, &net).await.ok() == Some(None) => {
                        tracing::debug!(error = %e, "network gone; endpoint taken as detached");
                        Ok(json!({}))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            "NetworkDriver.EndpointOperInfo" => {
                let req: EndpointRef = parse(call, body)?;
                let (_, _, info) = self.endpoint_of(&req).await?;
                Ok(json!({ "Value": info.map(|i| json!({
                    "netyard.endpoint": i.name,
                    "netyard.host_ifname": i.host_ifname,
                    "netyard.port": i.port,
                    "netyard.ports": i.ports,
                })).unwrap_or_else(|| json!({})) }))
            }
            "NetworkDriver.Join" => {
                let req: EndpointRef = parse(call, body)?;
                let (net, ep, info) = self.endpoint_of(&req).await?;
                let info = info.ok_or_else(|| {
                    Fault::new(
                        "EndpointID",
                        format!(
                            "no endpoint {ep:?} on netyard network {net:?}: CreateEndpoint first"
                        ),
                    )
                })?;
                Ok(to_value(JoinReply {
                    interface_name: InterfaceName {
                        src_name: mapping::peer_name(&req.endpoint_id)?,
                        dst_prefix: "eth".into(),
                    },
                    gateway: info.gateway,
                    gateway_ipv6: info.gateway6.unwrap_or_default(),
                    static_routes: Vec::new(),
                    disable_gateway_service: false,
                }))
            }
            "NetworkDriver.ProgramExternalConnectivity" => {
                let req: EndpointRef = parse(call, body)?;
                let specs = mapping::port_specs(&req.options)?;
                let (net, ep, info) = self.endpoint_of(&req).await?;
                let info = info.ok_or_else(|| {
                    Fault::new(
                        "EndpointID",
                        format!("no endpoint {ep:?} on network {net:?}"),
                    )
                })?;
                // A repeated call publishes nothing twice.
                let new: Vec<String> = specs.into_iter().filter(|s| !published(&info, s)).collect();
                if !new.is_empty() {
                    let info = daemon::publish(c, &net, &ep, &new).await?;
                    tracing::info!(network = %net, endpoint = %ep, ports = ?info.ports, "published");
                }
                Ok(json!({}))
            }
            "NetworkDriver.RevokeExternalConnectivity" => {
                let req: EndpointRef = parse(call, body)?;
                let (net, ep, info) = self.endpoint_of(&req).await?;
                let Some(info) = info else {
                    return Ok(json!({}));
                };
                let ports: BTreeSet<String> = info
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.container_port, p.protocol))
                    .collect();
                for spec in ports {
                    daemon::unpublish(c, &net, &ep, &spec).await?;
                }
                Ok(json!({}))
            }
            "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
            "IpamDriver.GetCapabilities" => Ok(to_value(IpamCapabilities {
                requires_mac_address: false,
            })),
            "IpamDriver.GetDefaultAddressSpaces" => Ok(to_value(AddressSpaces {
                local_default_address_space: "netyard-local",
                global_default_address_space: "netyard-global",
            })),
            "IpamDriver.RequestPool" => {
                let req: RequestPool = parse(call, body)?;
                let pool = match mapping::requested_pool(&req)? {
                    Some(p) => p,
                    None => {
                        let pending: Vec<String> =
                            self.lock_pools().iter().map(ToString::to_string).collect();
                        let s = daemon::free_subnet(c, &pending, req.v6).await?;
                        mapping::parse_pool("Pool", &s)?
                    }
                };
                self.lock_pools().insert(pool);
                Ok(to_value(PoolReply {
                    pool_id: pool.to_string(),
                    pool: pool.to_string(),
                    data: Default::default(),
                }))
            }
            "IpamDriver.ReleasePool" => {
                let req: PoolRef = parse(call, body)?;
                let pool = mapping::parse_pool("PoolID", &req.pool_id)?;
                self.lock_pools().remove(&pool);
                Ok(json!({}))
            }
            "IpamDriver.RequestAddress" => {
                let req: RequestAddress = parse(call, body)?;
                let ip = self.request_address(&req).await?;
                let pool = mapping::parse_pool("PoolID", &req.pool_id)?;
                Ok(to_value(AddressReply {
                    address: mapping::with_prefix(ip, pool),
                    data: Default::default(),
                }))
            }
            "IpamDriver.ReleaseAddress" => {
                let req: RequestAddress = parse(call, body)?;
                if let Ok(ip) = req.address.parse() {
                    self.lock_addresses().remove(&ip);
                }
                Ok(json!({}))
            }
            other => Err(Failure::Unknown(format!(
                "netyard: {other} is not a call this plugin serves"
            ))),
        }
    }

    /// RequestAddress: the gateway's (before the network exists), or a container's (the
    /// network exists: its endpoints' addresses and those handed out are skipped).
    async fn request_address(&self, req: &RequestAddress) -> Result<IpAddr, Failure> {
        let pool = mapping::parse_pool("PoolID", &req.pool_id)?;
        let preferred = match req.address.as_str() {
            "" => None,
            a => Some(mapping::host_address("Address", a, pool)?),
        };
        if req.options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_REQUEST) {
            return Ok(preferred.unwrap_or_else(|| mapping::default_gateway(pool)));
        }
        let nets: Vec<netyard_api::model::NetworkInfo> =
            serde_json::from_value(self.api.get("/v1/networks").await?).map_err(|e| {
                Failure::Daemon(ClientError::Protocol {
                    path: self.api.path().to_path_buf(),
                    reason: format!("unexpected answer: {e}"),
                })
            })?;
        let v6 = matches!(pool, IpNet::V6(_));
        let subnet_of = |n: &netyard_api::model::NetworkInfo| match v6 {
            false => n.subnet.parse::<IpNet>().ok(),
            true => n.subnet6.as_deref().and_then(|s| s.parse::<IpNet>().ok()),
        };
        let net = nets
            .iter()
            .find(|n| subnet_of(n) == Some(pool))
            .ok_or_else(|| {
                Fault::new(
                    "PoolID",
                    format!("no netyard network has subnet {pool} (create it with -d netyard)"),
                )
            })?;
        let gateway = match v6 {
            false => Some(net.gateway.as_str()),
            true => net.gateway6.as_deref(),
        };
        let gateway: IpAddr = gateway.and_then(|g| g.parse().ok()).ok_or_else(|| {
            Fault::new(
                "PoolID",
                format!("network {:?} has no gateway in {pool}", net.name),
            )
        })?;
        if let Some(ip) = preferred {
            if ip == gateway {
                return Err(Fault::new("Address", format!("{ip} is the network's gateway")).into());
            }
            return Ok(ip);
        }
        let all: Vec<EndpointInfo> =
            serde_json::from_value(self.api.get("/v1/endpoints").await?).unwrap_or_default();
        let mut addresses = self.lock_addresses();
        let mut taken: BTreeSet<IpAddr> = all
            .iter()
            .filter(|e| e.network == net.name)
            .filter_map(|e| match v6 {
                false => e.ip.parse().ok(),
                true => e.ip6.as_deref().and_then(|a| a.parse().ok()),
            })
            .collect();
        taken.retain(|ip| pool.contains(ip));
        taken.extend(addresses.iter().copied());
        let ip = mapping::free_address(pool, gateway, &taken)
            .ok_or_else(|| Fault::new("PoolID", format!("no free address left in {pool}")))?;
        addresses.insert(ip);
        Ok(ip)
    }

    /// The netyard network and endpoint names of a request, and the endpoint if attached.
    async fn endpoint_of(
        &self,
        req: &EndpointRef,
    ) -> Result<(String, String, Option<EndpointInfo>), Failure> {
        let net = mapping::network_name(&req.network_id)?;
        let ep = mapping::endpoint_name(&req.endpoint_id)?;
        let info = daemon::endpoint(&self.api, &net, &ep).await?;
        Ok((net, ep, info))
    }

    fn lock_pools(&self) -> std::sync::MutexGuard<'_, BTreeSet<IpNet>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_addresses(&self) -> std::sync::MutexGuard<'_, BTreeSet<IpAddr>> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Does the endpoint already publish what `spec` names (same container port and protocol)?
fn published(info: &EndpointInfo, spec: &str) -> bool {
    let Ok(s) = netyard_api::portspec::parse(spec) else {
        return false;
    };
    info.ports
        .iter()
        .any(|p| p.protocol == s.proto.to_string() && s.container_ports.contains(p.container_port))
}
