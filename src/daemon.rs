//! Running the daemon: config, API socket, serving, clean shutdown.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::dnsd::DnsOptions;
use crate::error::DaemonError;
use crate::spec::StateSpec;
use crate::state::Daemon;
use crate::store::Store;

/// What `netyard daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub api: PathBuf,
    pub config: Option<PathBuf>,
    /// Where the state is kept (locked, one daemon per directory); None keeps none, as
    /// `ephemeral` (the demo, tests that build the daemon in-process).
    pub state_dir: Option<PathBuf>,
    /// `--dns-upstream`: ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT); the host's resolv.conf when
    /// empty.
    pub dns_upstreams: Vec<String>,
    /// `--dns-ttl`: TTL of local answers.
    pub dns_ttl: Option<u32>,
    /// `--etcd` and its companions: VXLAN networks, endpoints and IPAM shared through etcd.
    pub etcd: Option<crate::cluster::ClusterOptions>,
    /// `--ephemeral`: no state, no persistent device, everything removed on exit.
    pub ephemeral: bool,
}

impl Options {
    /// Defaults for an API socket path.
    pub fn new(api: PathBuf) -> Options {
        Options {
            api,
            config: None,
            state_dir: None,
            dns_upstreams: Vec::new(),
            dns_ttl: None,
            etcd: None,
            ephemeral: true,
        }
    }

    fn dns(&self) -> Result<DnsOptions, DaemonError> {
        let upstreams = if self.dns_upstreams.is_empty() {
            match netyard_dns::upstreams_from_resolv_conf(Path::new("/etc/resolv.conf")) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "no upstream DNS servers: names outside netyard will not resolve");
                    Vec::new()
                }
            }
        } else {
            let mut v = Vec::new();
            for (i, u) in self.dns_upstreams.iter().enumerate() {
                v.push(parse_upstream(u).ok_or_else(|| {
                    DaemonError::invalid(
                        format!("dns-upstream[{i}]"),
                        format!("{u:?} is not ADDR, ADDR:PORT or [IPv6]:PORT"),
                    )
                })?);
            }
            if v.len() > netyard_dns::MAX_UPSTREAMS {
                return Err(DaemonError::invalid(
                    "dns-upstream",
                    format!("at most {} upstream servers", netyard_dns::MAX_UPSTREAMS),
                ));
            }
            v
        };
        let ttl = self.dns_ttl.unwrap_or(netyard_dns::DEFAULT_LOCAL_TTL);
        if ttl > 86_400 {
            return Err(DaemonError::invalid(
                "dns-ttl",
                format!("{ttl} out of range (0 to 86400 seconds)"),
            ));
        }
        Ok(DnsOptions { upstreams, ttl })
    }
}

fn parse_upstream(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    s.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// A daemon serving its API until told to stop.
pub struct Running {
    pub daemon: Arc<Daemon>,
    pub api: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving and removes the socket; an ephemeral daemon also removes every endpoint
    /// and device, a persistent one leaves them for the next start.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        self.reaper.abort();
        self.daemon.shutdown().await;
        let _ = std::fs::remove_file(&self.api);
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}

/// Binds the API socket (refusing if another daemon answers there), takes back the saved
/// state, applies the config and starts serving. On any error nothing is left behind and no
/// file of the state directory has changed.
pub async fn start(opts: Options) -> Result<Running, DaemonError> {
    let config = match &opts.config {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    opts.dns()?;
    // The state directory is locked and read before anything else: a second daemon on it, a
    // corrupt file or a newer schema stop the start here, with nothing changed.
    let (store, saved) = match (&opts.state_dir, opts.ephemeral) {
        (None, _) | (_, true) => (None, None),
        (Some(dir), false) => {
            let store = Store::open(dir).map_err(store_err)?;
            let saved: Option<StateSpec> = store.load().map_err(store_err)?;
            (Some(store), saved)
        }
    };
    let listener = bind_api(&opts.api).await?;
    let dns = opts.dns()?;
    let daemon = Arc::new(Daemon::new(dns, store));
    if let Some(saved) = saved {
        let t0 = std::time::Instant::now();
        match daemon.restore(saved).await {
            Ok(r) => tracing::info!(
                networks = r.networks,
                endpoints = r.endpoints,
                dropped = r.dropped.len(),
                ms = t0.elapsed().as_millis() as u64,
                "state restored"
            ),
            Err(e) => {
                let _ = std::fs::remove_file(&opts.api);
                return Err(e);
            }
        }
    }
    if let Some(etcd) = opts.etcd.clone() {
        // Before the config: its VXLAN networks are registered like the API's.
        let host: Arc<dyn crate::registry::RegistryHost> = daemon.clone();
        match crate::cluster::start(&host, etcd).await {
            Ok(registry) => daemon.set_registry(registry),
            Err(e) => {
                daemon.shutdown().await;
                let _ = std::fs::remove_file(&opts.api);
                return Err(e);
            }
        }
        daemon.reregister().await;
    }
    if let Some(cfg) = config {
        let path = opts
            .config
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if let Err(e) = apply_config(&daemon, cfg).await {
            daemon.shutdown().await;
            let _ = std::fs::remove_file(&opts.api);
            return Err(DaemonError::Config {
                path,
                reason: e.to_string(),
            });
        }
    }
    // Endpoints follow their containers: a `--pid` endpoint's process exit arrives from its
    // pidfd watcher at once; deleted namespaces and vanished devices are polled every second.
    let reaper = {
        let d = daemon.clone();
        let mut exits = daemon.take_exits();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        d.reap().await;
                    }
                    Some(e) = async {
                        match exits.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        d.process_exited(e).await;
                    }
                }
            }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let app = crate::api::router(daemon.clone());
    let server = tokio::spawn(async move {
        crate::api::serve(listener, app, async {
            let _ = stopped.await;
        })
        .await;
    });
    tracing::info!(api = %opts.api.display(), "netyard daemon ready");
    Ok(Running {
        daemon,
        api: opts.api,
        stop: Some(stop),
        server,
        reaper,
    })
}

fn store_err(e: crate::store::StoreError) -> DaemonError {
    match e {
        crate::store::StoreError::Locked { .. } => {
            DaemonError::conflict(Some("state-dir"), e.to_string())
        }
        _ => DaemonError::invalid("state-dir", e.to_string()),
    }
}

/// Raises the soft limit on open files to the hard one: every egress flow and every attached
/// namespace's resolver holds descriptors, and the default soft limit (1024) is far below
/// what the flow caps allow.
pub(crate) fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            }
        }
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    raise_nofile_limit();
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM handler"))?;
    let running = start(opts).await?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn bind_api(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(format!(
            "creating the API socket's directory {}",
            dir.display()
        )))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::conflict(
                Some("api"),
                format!("another daemon is already serving {}", path.display()),
            ));
        }
        // A stale socket from a daemon that died: nobody answers, so it is safe to replace.
        std::fs::remove_file(path)
            .map_err(io_err(format!("removing stale socket {}", path.display())))?;
    }
    // The socket gets its final mode before it has its final name: bound in a fresh 0700
    // directory next to it (nobody else can reach it there), made 0600, then renamed into
    // place. A process-wide umask would race with the other threads creating files.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = dir.join(format!(".netyard-api.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_err(format!("creating {}", private.display())))?;
    let staged = private.join("api.sock");
    let placed = UnixListener::bind(&staged)
        .map_err(io_err(format!("binding {}", staged.display())))
        .and_then(|l| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("setting mode 0600 on {}", staged.display())))?;
            std::fs::rename(&staged, path).map_err(io_err(format!(
                "moving the API socket to {}",
                path.display()
            )))?;
            Ok(l)
        });
    let _ = std::fs::remove_dir_all(&private);
    placed
}

/// Creates the config's networks then endpoints; stops at the first failure and removes what
/// this config created (all or nothing: what a saved state held stays). An entry the saved
/// state already holds is taken as it is: when it matches nothing happens, when it differs
/// the state wins and a log line names the fields; so a restart with the same `--config` is
/// never an error.
async fn apply_config(d: &Daemon, cfg: Config) -> Result<(), DaemonError> {
    let mut networks = Vec::new();
    let mut endpoints = Vec::new();
    let r = apply_entries(d, cfg, &mut networks, &mut endpoints).await;
    if r.is_err() {
        for (net, name) in endpoints.iter().rev() {
            let _ = d.detach(net, name).await;
        }
        for net in networks.iter().rev() {
            let _ = d.remove_network(net).await;
        }
    }
    r
}

async fn apply_entries(
    d: &Daemon,
    cfg: Config,
    networks: &mut Vec<String>,
    endpoints: &mut Vec<(String, String)>,
) -> Result<(), DaemonError> {
    for (i, n) in cfg.network.into_iter().enumerate() {
        if let Some(saved) = d.saved_network(&n.name).await {
            let differ = crate::plan::network_differs(&n, &saved);
            if differ.is_empty() {
                tracing::info!(network = %n.name, "config: network already in the state");
            } else {
                tracing::warn!(network = %n.name, fields = ?differ,
                    "config: the saved network differs from the config; keeping the saved one");
            }
            continue;
        }
        let name = n.name.clone();
        d.create_network(n)
            .await
            .map_err(|e| e.within(&format!("network[{i}].")))?;
        networks.push(name);
    }
    for (i, e) in cfg.endpoint.into_iter().enumerate() {
        let net = e.network.clone().unwrap_or_default();
        if let Some(saved) = d.saved_endpoint(&net, &e.name).await {
            let differ = crate::plan::endpoint_differs(&e, &saved);
            if differ.is_empty() {
                tracing::info!(network = %net, endpoint = %e.name, "config: endpoint already in the state");
            } else {
                tracing::warn!(network = %net, endpoint = %e.name, fields = ?differ,
                    "config: the saved endpoint differs from the config; keeping the saved one");
            }
            continue;
        }
        let name = e.name.clone();
        d.attach(&net, e)
            .await
            .map_err(|err| err.within(&format!("endpoint[{i}].")))?;
        endpoints.push((net, name));
    }
    Ok(())
}
