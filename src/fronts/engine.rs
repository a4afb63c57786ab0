//! The engine both runtime fronts run on: one network and one endpoint, served in this
//! process by the daemon's own [`Daemon`] (its planning, TAP port kind, switch, gateway with
//! egress, TCP relay and published ports, and the embedded resolver), ephemeral: no API
//! socket, no state directory, nothing persisted, and everything it made (the network's
//! ports, the TAP if it created it) removed when it stops.
//!
//! API, for `slirp4netns.rs` and `pasta/`:
//!
//! ```text
//! let engine = Engine::start(EngineConfig { subnet, gateway, dns: Some(ip), mtu, maps, .. ,
//!                                           endpoint: EngineEndpoint { ns, tap, ip, .. } }).await?;
//! engine.publish(&["0.0.0.0:8080:80/tcp".into()]).await?;   // Docker SPECs, all or nothing
//! engine.unpublish("0.0.0.0:8080:80/tcp").await?;          // the mappings that SPEC names
//! let why = engine.gone().await;   // the container's process exited, its namespace path
//!                                  // names another namespace, or its TAP vanished
//! engine.stop().await;             // removes the endpoint (the TAP) and the network
//!                                  // (takes &self: an Arc<Engine> shared with tasks works)
//! ```
//!
//! [`Engine::start`] must run inside a multi-threaded tokio runtime. It returns once the TAP
//! is open and served (and configured, with `configure`): that is when a front reports ready.
//! The TAP is opened as the daemon's ephemeral TAPs are: created, or attached to when one of
//! that name exists and is not open (RootlessKit creates `tap0` itself); one the engine
//! created vanishes when it stops. Egress sockets, published ports and DNS forwarding use the
//! process's own network namespace (the host's, for a rootless runtime).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use netyard_api::model::{AddrMapReq, EndpointCreate, EndpointInfo, NetworkCreate};

use crate::dnsd::DnsOptions;
use crate::error::DaemonError;
use crate::state::{Daemon, EndpointOptions};

/// The network's name inside the engine (what DNS answers NAME.NETWORK under).
pub const NETWORK: &str = "netyard";

/// Where the container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineNs {
    /// A process of the container: its network namespace, and its user namespace when that
    /// is not this process's (`/proc/PID/ns/{net,user}`). Its exit ends the engine.
    Pid(u32),
    /// A network namespace path (`--netns-type=path`, pasta's `--netns`), and the user
    /// namespace that owns it when this process is not already in it.
    Path {
        netns: String,
        userns: Option<String>,
    },
}

/// The one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEndpoint {
    /// Its name (DNS answers it); a valid netyard name.
    pub name: String,
    pub ns: EngineNs,
    /// The TAP's name inside the namespace.
    pub tap: String,
    /// The interface's MAC (default: Docker's scheme from the address).
    pub mac: Option<String>,
    pub ip: Ipv4Addr,
    /// Its IPv6 address, on a dual-stack engine ([`EngineConfig::ipv6`]).
    pub ip6: Option<Ipv6Addr>,
    /// Configure the interface: MAC, MTU, addresses, up, `lo` up, default route via the
    /// gateway (IPv6's from the gateway's Router Advertisement). False leaves all of that to
    /// the runtime.
    pub configure: bool,
    /// Published ports at start (Docker SPECs).
    pub publish: Vec<String>,
}

/// What to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The resolver's address besides the gateway's port 53 (slirp4netns's .3, pasta's
    /// `--dns-forward`), inside the subnet or not; None when it is the gateway's or off.
    pub dns: Option<Ipv4Addr>,
    pub mtu: u32,
    /// The gateway's address reaches the host's 127.0.0.1 (slirp4netns without
    /// `--disable-host-loopback`).
    pub host_loopback: bool,
    /// Destination maps: egress to `.0` leaves to the host address `.1`.
    pub maps: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Upstream resolvers; empty: the host's /etc/resolv.conf.
    pub dns_upstreams: Vec<SocketAddr>,
    /// Dual stack: the network's IPv6 side (egress through the host's IPv6 sockets, the
    /// gateway's address mapped to the host's ::1 with `host_loopback`).
    pub ipv6: Option<EngineV6>,
    pub endpoint: EngineEndpoint,
}

/// A dual-stack engine's IPv6 side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineV6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    /// The resolver's IPv6 address besides the gateway's (slirp4netns's fd00::3); None when
    /// it is the gateway's or off.
    pub dns: Option<Ipv6Addr>,
}

/// Why the engine's container is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The process exited (`EngineNs::Pid`).
    ProcessExited,
    /// The namespace path names another namespace or nothing, or the TAP vanished.
    NamespaceGone,
}

/// A running engine.
pub struct Engine {
    daemon: Arc<Daemon>,
    endpoint: String,
    info: EndpointInfo,
}

impl Engine {
    /// Creates the network and attaches the endpoint. On failure nothing is left behind.
    pub async fn start(cfg: EngineConfig) -> Result<Engine, DaemonError> {
        crate::daemon::raise_nofile_limit();
        let upstreams = if cfg.dns_upstreams.is_empty() {
            netyard_dns::upstreams_from_resolv_conf(std::path::Path::new("/etc/resolv.conf"))
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no upstream DNS servers: names outside netyard will not resolve");
                    Vec::new()
                })
        } else {
            cfg.dns_upstreams.clone()
        };
        let daemon = Arc::new(
            Daemon::new(DnsOptions { upstreams, ttl: 60 }, None).with_endpoint_options(
                EndpointOptions {
                    configure: cfg.endpoint.configure,
                    // The container's resolver is the gateway's address (slirp4netns's .3),
                    // never 127.0.0.11: nothing of netyard's listens inside the namespace.
                    dns_in_namespace: false,
                },
            ),
        );
        let net = NetworkCreate {
            name: NETWORK.to_string(),
            subnet: Some(cfg.subnet.to_string()),
            gateway: Some(cfg.gateway.to_string()),
            mtu: Some(cfg.mtu),
            host_loopback: cfg.host_loopback,
            ipv6: cfg.ipv6.is_some(),
            subnet6: cfg.ipv6.map(|v| v.subnet.to_string()),
            gateway6: cfg.ipv6.map(|v| v.gateway.to_string()),
            gateway_extra: cfg
                .dns
                .filter(|d| *d != cfg.gateway)
                .map(|d| d.to_string())
                .into_iter()
                .chain(
                    cfg.ipv6
                        .and_then(|v| v.dns.filter(|d| *d != v.gateway))
                        .map(|d| d.to_string()),
                )
                .collect(),
            maps: cfg
                .maps
                .iter()
                .map(|(g, h)| AddrMapReq {
                    guest: g.to_string(),
                    host: h.to_string(),
                })
                .collect(),
            // One container: nothing to protect it from but itself, and its runtime may give
            // it addresses of its own choosing (RootlessKit configures tap0 itself).
            port_security: Some(false),
            ..NetworkCreate::default()
        };
        daemon.create_network(net).await?;
        let ep = &cfg.endpoint;
        let (netns, pid, userns) = match &ep.ns {
            EngineNs::Pid(p) => (None, Some(*p as i32), None),
            EngineNs::Path { netns, userns } => (Some(netns.clone()), None, userns.clone()),
        };
        let req = EndpointCreate {
            name: ep.name.clone(),
            netns,
            pid,
            userns,
            ip: Some(ep.ip.to_string()),
            ip6: ep.ip6.map(|ip| ip.to_string()),
            mac: ep.mac.clone(),
            ifname: Some(ep.tap.clone()),
            publish: ep.publish.clone(),
            ..EndpointCreate::default()
        };
        let info = match daemon.attach(NETWORK, req).await {
            Ok(i) => i,
            Err(e) => {
                daemon.shutdown().await;
                return Err(e);
            }
        };
        Ok(Engine {
            daemon,
            endpoint: ep.name.clone(),
            info,
        })
    }

    /// The endpoint as attached (address, MAC, published ports).
    pub fn info(&self) -> &EndpointInfo {
        &self.info
    }

    /// Publishes more ports (Docker SPECs, all or nothing); returns the endpoint with every
    /// mapping it now has.
    pub async fn publish(&self, specs: &[String]) -> Result<EndpointInfo, DaemonError> {
        self.daemon.publish(NETWORK, &self.endpoint, specs).await
    }

    /// Removes the mappings a SPEC names.
    pub async fn unpublish(&self, spec: &str) -> Result<EndpointInfo, DaemonError> {
        self.daemon.unpublish(NETWORK, &self.endpoint, spec).await
    }

    /// Resolves when the container is gone: its process exited (at once, through a pidfd),
    /// or its namespace path or TAP is gone (checked every second).
    pub async fn gone(&self) -> Gone {
        let mut exits = self.daemon.take_exits();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !self.daemon.reap().await.is_empty() {
                        return Gone::NamespaceGone;
                    }
                }
                Some(e) = async {
                    match exits.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.daemon.process_exited(e).await;
                    return Gone::ProcessExited;
                }
            }
        }
    }

    /// Stops: the published ports close, the endpoint's TAP (if the engine created it) and
    /// the network's ports are removed.
    pub async fn stop(&self) {
        self.daemon.shutdown().await;
    }
}
