//! The daemon side of the embedded DNS: one resolver for the whole daemon, and one pair of
//! listeners (UDP and TCP on 127.0.0.11:53) inside each attached namespace.
//!
//! The sockets are created inside the container's namespace (by the same namespace-entry path
//! as the TAP) and served by the daemon's own runtime; upstream queries leave from the
//! daemon's namespace, so loopback upstreams work. A namespace attached to several networks has
//! one listener pair whose asker context lists all of them, as Docker's per-sandbox resolver.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use netyard_dns::{
    serve_tcp, serve_udp, AskerContext, AskerHandle, Entry, RecordStore, Records, Resolver,
    ResolverConfig,
};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::DaemonError;
use crate::netns::{self, NsOpen, NsOpenRequest, NsTarget};

/// Where containers find the resolver, as on Docker.
pub const RESOLVER_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// What containers put in /etc/resolv.conf.
pub fn resolv_conf() -> String {
    format!("nameserver {RESOLVER_ADDR}\noptions ndots:0\n")
}

/// Identifies a network namespace: device and inode of its nsfs file.
pub type NsKey = (u64, u64);

pub fn ns_key(target: &NsTarget) -> Result<NsKey, DaemonError> {
    let m = std::fs::metadata(target.netns()).map_err(|e| DaemonError::Io {
        context: format!("reading {}", target.netns().display()),
        source: e,
    })?;
    Ok((m.dev(), m.ino()))
}

/// DNS settings of the daemon.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub upstreams: Vec<SocketAddr>,
    pub ttl: u32,
}

struct Listener {
    asker: AskerHandle,
    tasks: Vec<JoinHandle<()>>,
    /// Network name -> internal.
    networks: BTreeMap<String, bool>,
    /// A duplicate of the UDP socket the serving task owns, for reading its kernel drop
    /// count off the query path.
    udp: OwnedFd,
    /// The drop count at the last reading (a new socket starts at 0).
    udp_drops_seen: u32,
}

impl Listener {
    /// Datagrams the kernel dropped at this listener's full UDP receive buffer since the last
    /// reading (`SO_MEMINFO`'s `sk_drops`, 32 bits, wrapping: one reading a scrape apart
    /// cannot miss a wrap at any real rate). A failed reading counts nothing.
    fn udp_drops(&mut self) -> u64 {
        match netyard_switch::sys::socket_drops(self.udp.as_fd()) {
            Ok(total) => {
                let added = total.wrapping_sub(self.udp_drops_seen);
                self.udp_drops_seen = total;
                u64::from(added)
            }
            Err(_) => 0,
        }
    }

    fn context(&self) -> AskerContext {
        AskerContext {
            networks: self.networks.keys().cloned().collect(),
            internal: !self.networks.is_empty() && self.networks.values().all(|i| *i),
        }
    }
}

pub struct Dns {
    resolver: Arc<Resolver>,
    listeners: Mutex<HashMap<NsKey, Listener>>,
    /// The resolver's own single-threaded runtime (see [`dns_runtime`]).
    rt: tokio::runtime::Handle,
}

/// A current-thread tokio runtime on a thread of its own for the DNS listeners. Answering a
/// local name is a few microseconds of work; on the daemon's multi-threaded runtime each query
/// also paid for waking another worker, which cost a quarter of the rate (measured with
/// dnsperf: 48k qps shared, 62k qps alone, dnsmasq 60k in the same conditions).
fn dns_runtime() -> tokio::runtime::Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("netyard-dns".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Some(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no dedicated DNS runtime; sharing the daemon's");
                    let _ = tx.send(None);
                }
            }
        });
    match spawned.ok().and_then(|_| rx.recv().ok().flatten()) {
        Some(h) => h,
        None => tokio::runtime::Handle::current(),
    }
}

impl Dns {
    pub fn new(opts: DnsOptions) -> Dns {
        let store = Arc::new(RecordStore::new(Records::new(Vec::new(), opts.ttl)));
        let config = ResolverConfig {
            upstreams: opts.upstreams,
            ..ResolverConfig::default()
        };
        Dns {
            resolver: Arc::new(Resolver::new(config, store)),
            listeners: Mutex::new(HashMap::new()),
            rt: dns_runtime(),
        }
    }

    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// Makes `entries` the local names (after an attach, detach or rename: the whole list).
    /// Incremental: the next records are the current ones with the difference applied
    /// ([`Records::updated`]). The state lock, held by every caller, makes this the only
    /// writer, so nothing changes between the load and the replace.
    pub fn set_records(&self, entries: Vec<Entry>) {
        let store = self.resolver.records();
        let next = store.load().updated(entries);
        store.replace(next);
    }

    /// Makes sure the namespace has a listening resolver and that it answers for `network`.
    /// Returns when the sockets are bound.
    pub async fn join(
        &self,
        key: NsKey,
        target: &NsTarget,
        network: &str,
        internal: bool,
    ) -> Result<(), DaemonError> {
        let mut ls = self.listeners.lock().await;
        if let Some(l) = ls.get_mut(&key) {
            l.networks.insert(network.to_string(), internal);
            l.asker.set(l.context());
            return Ok(());
        }
        let addr = SocketAddr::from((RESOLVER_ADDR, 53));
        let req = NsOpenRequest::netlink_only()
            .with(NsOpen::UdpBind(addr))
            .with(NsOpen::TcpListen(addr));
        let fds =
            netns::open_in_ns(target, req)
                .await
                .map_err(|source| DaemonError::Namespace {
                    name: format!("resolver for network {network:?}"),
                    source,
                })?;
        let mut it = fds.fds.into_iter();
        let (Some(udp), Some(tcp)) = (it.next(), it.next()) else {
            return Err(DaemonError::Io {
                context: "starting the resolver".into(),
                source: std::io::Error::other("namespace helper returned too few sockets"),
            });
        };
        let io = |what: &str| {
            let context = format!("serving DNS in {}: {what}", target.netns().display());
            move |source| DaemonError::Io { context, source }
        };
        // Registered with the DNS runtime's reactor, where they are served.
        let (udp, tcp, udp_dup) = {
            let _rt = self.rt.enter();
            let udp = std::net::UdpSocket::from(udp);
            let dup = OwnedFd::from(udp.try_clone().map_err(io("udp socket"))?);
            let udp = tokio::net::UdpSocket::from_std(udp).map_err(io("udp socket"))?;
            let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp))
                .map_err(io("tcp listener"))?;
            (udp, tcp, dup)
        };
        let mut networks = BTreeMap::new();
        networks.insert(network.to_string(), internal);
        let mut l = Listener {
            asker: AskerHandle::new(AskerContext {
                networks: Vec::new(),
                internal: false,
            }),
            tasks: Vec::new(),
            networks,
            udp: udp_dup,
            udp_drops_seen: 0,
        };
        l.asker.set(l.context());
        l.tasks.push(
            self.rt
                .spawn(serve_udp(udp, self.resolver.clone(), l.asker.clone())),
        );
        l.tasks.push(
            self.rt
                .spawn(serve_tcp(tcp, self.resolver.clone(), l.asker.clone())),
        );
        ls.insert(key, l);
        Ok(())
    }

    /// The namespace left `network`; its listeners stop when it is on no network any more.
    pub async fn leave(&self, key: NsKey, network: &str) {
        let mut ls = self.listeners.lock().await;
        let Some(l) = ls.get_mut(&key) else { return };
        l.networks.remove(network);
        if l.networks.is_empty() {
            if let Some(mut l) = ls.remove(&key) {
                // Its last drops, before the socket closes.
                let added = l.udp_drops();
                self.resolver
                    .counters()
                    .udp_rcvbuf_full
                    .fetch_add(added, Relaxed);
                for t in l.tasks {
                    t.abort();
                }
            }
        } else {
            l.asker.set(l.context());
        }
    }

    /// Adds what the kernel dropped at the listeners' full UDP receive buffers since the
    /// last reading to the resolver's `udp_rcvbuf_full`. Called when the counters are asked
    /// for (`/v1/dns`, a metrics sample), never per query: one `getsockopt` per listener.
    pub async fn sync_kernel_drops(&self) {
        let mut ls = self.listeners.lock().await;
        let added: u64 = ls.values_mut().map(Listener::udp_drops).sum();
        self.resolver
            .counters()
            .udp_rcvbuf_full
            .fetch_add(added, Relaxed);
    }

    pub async fn shutdown(&self) {
        let mut ls = self.listeners.lock().await;
        for (_, l) in ls.drain() {
            for t in l.tasks {
                t.abort();
            }
        }
    }
}

/// The resolver as the gateway's port 53 sees it: a client on one network.
pub struct GatewayDns {
    resolver: Arc<Resolver>,
    asker: AskerContext,
}

impl GatewayDns {
    pub fn new(dns: &Dns, network: &str, internal: bool) -> GatewayDns {
        GatewayDns {
            resolver: dns.resolver.clone(),
            asker: AskerContext {
                networks: vec![network.to_string()],
                internal,
            },
        }
    }
}

impl netyard_router::gateway::DnsService for GatewayDns {
    fn answer(
        &self,
        query: Vec<u8>,
        tcp: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        let resolver = self.resolver.clone();
        let asker = self.asker.clone();
        let transport = if tcp {
            netyard_dns::Transport::Tcp
        } else {
            netyard_dns::Transport::Udp
        };
        Box::pin(async move { resolver.handle(&query, &asker, transport).await })
    }
}
