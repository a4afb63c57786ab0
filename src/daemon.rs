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
    /// `--metrics-addr`: ADDR:PORT of a TCP listener serving only `/metrics` (off when None;
    /// the API socket serves `/metrics` either way).
    pub metrics_addr: Option<String>,
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
            metrics_addr: None,
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
    /// The `--metrics-addr` listener's task (stopped with the API server).
    metrics: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops serving and removes the socket; an ephemeral daemon also removes every endpoint
    /// and device, a persistent one leaves them for the next start.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        if let Some(m) = self.metrics.take() {
            m.abort();
        }
        self.reaper.abort();
        // An ephemeral daemon ends its nodes (their endpoints go with the daemon's
        // shutdown); a persistent one leaves them running for the next start.
        if !self.daemon.persistent() {
            self.daemon.labs().remove_all().await;
        }
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
    let metrics_addr = opts
        .metrics_addr
        .as_deref()
        .map(crate::metrics::parse_addr)
        .transpose()?;
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
    // Bound before the API socket, so a port in use fails the start with nothing to undo.
    let metrics_listener = match metrics_addr {
        Some(a) => Some(crate::metrics::bind(a).await?),
        None => None,
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
    if let Err(e) = daemon.labs().restore() {
        tracing::warn!(error = %e, "nodes and labs not restored");
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
        if let Err(e) = apply_config(&daemon, &cfg).await {
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
    let metrics = metrics_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "serving /metrics");
        }
        tokio::spawn(crate::metrics::serve(
            l,
            daemon.clone(),
            std::future::pending(),
        ))
    });
    tracing::info!(api = %opts.api.display(), "netyard daemon ready");
    Ok(Running {
        daemon,
        api: opts.api,
        stop: Some(stop),
        server,
        reaper,
        metrics,
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

/// Runs until SIGINT or SIGTERM, then shuts down cleanly; SIGHUP applies `--config` again.
/// Under systemd (`NOTIFY_SOCKET`), READY=1 is sent once the API socket serves and the saved
/// state is re-adopted, RELOADING=1/READY=1 around a reload, STOPPING=1 on the way out.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    raise_nofile_limit();
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM handler"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(io_err("installing SIGHUP handler"))?;
    let config = opts.config.clone();
    let running = start(opts).await?;
    crate::service::ready("serving");
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                crate::service::reloading();
                reload(&running.daemon, config.as_deref()).await;
                crate::service::ready("serving (config reloaded)");
            }
        }
    }
    crate::service::stopping();
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

/// What applying a config did.
#[derive(Debug, Default)]
pub struct Applied {
    pub networks: usize,
    pub endpoints: usize,
    pub ports: usize,
    /// Entries that differ in what cannot change live (logged, left as they run).
    pub kept: usize,
    pub unchanged: usize,
}

/// What one application created, to undo it when a later entry fails.
#[derive(Default)]
struct Created {
    networks: Vec<String>,
    endpoints: Vec<(String, String)>,
    /// (network, endpoint, exact SPECs of the mappings added).
    ports: Vec<(String, String, Vec<String>)>,
}

/// Applies a config to the running state, at start and on SIGHUP (planned by
/// `plan::plan_config`): creates its new networks, then its new endpoints, then publishes the
/// ports running endpoints do not publish yet; logs, by name and field, each entry that
/// differs from what runs in what cannot change live, and leaves it as it runs (so a restart
/// with the same `--config` is never an error). All or nothing: when an entry fails, what this
/// call created is removed again and the error names the entry's field.
pub async fn apply_config(d: &Daemon, cfg: &Config) -> Result<Applied, DaemonError> {
    let running = d.specs().await;
    let plan = crate::plan::plan_config(cfg, &running)?;
    for k in &plan.kept {
        match &k.endpoint {
            None => tracing::warn!(network = %k.network, fields = ?k.fields,
                "config: the network differs in fields that cannot change live; keeping it as it runs"),
            Some(ep) => tracing::warn!(network = %k.network, endpoint = %ep, fields = ?k.fields,
                "config: the endpoint differs in fields that cannot change live; keeping it as it runs"),
        }
    }
    let mut created = Created::default();
    if let Err(e) = carry_out(d, &plan, &running, &mut created).await {
        for (net, ep, specs) in created.ports.iter().rev() {
            for spec in specs {
                let _ = d.unpublish(net, ep, spec).await;
            }
        }
        for (net, name) in created.endpoints.iter().rev() {
            let _ = d.detach(net, name).await;
        }
        for net in created.networks.iter().rev() {
            let _ = d.remove_network(net).await;
        }
        return Err(e);
    }
    Ok(Applied {
        networks: created.networks.len(),
        endpoints: created.endpoints.len(),
        ports: created.ports.iter().map(|(_, _, s)| s.len()).sum(),
        kept: plan.kept.len(),
        unchanged: plan.unchanged,
    })
}

async fn carry_out(
    d: &Daemon,
    plan: &crate::plan::ConfigPlan,
    running: &StateSpec,
    created: &mut Created,
) -> Result<(), DaemonError> {
    for (i, n) in &plan.networks {
        d.create_network(n.clone())
            .await
            .map_err(|e| e.within(&format!("network[{i}].")))?;
        created.networks.push(n.name.clone());
    }
    for (i, e) in &plan.endpoints {
        let net = e.network.clone().unwrap_or_default();
        d.attach(&net, e.clone())
            .await
            .map_err(|err| err.within(&format!("endpoint[{i}].")))?;
        created.endpoints.push((net, e.name.clone()));
    }
    for p in &plan.publish {
        let mut before: Vec<(u16, u16, String)> = running
            .networks
            .get(&p.network)
            .and_then(|n| n.endpoints.get(&p.endpoint))
            .map(|e| {
                e.published
                    .iter()
                    .map(|m| (m.host_port, m.container_port, m.proto.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut added = Vec::new();
        // One SPEC at a time, so an error names the file's `publish[j]`.
        for (j, spec) in &p.specs {
            let r = d
                .publish(&p.network, &p.endpoint, std::slice::from_ref(spec))
                .await;
            let info = match r {
                Ok(info) => info,
                Err(e) => {
                    created
                        .ports
                        .push((p.network.clone(), p.endpoint.clone(), added));
                    return Err(e.at(format!("endpoint[{}].publish[{j}]", p.index)));
                }
            };
            for m in info.ports {
                let key = (m.host_port, m.container_port, m.protocol.clone());
                if !before.contains(&key) {
                    // Exactly this mapping: host port and container port, any host IP.
                    added.push(format!(
                        "{}:{}/{}",
                        m.host_port, m.container_port, m.protocol
                    ));
                    before.push(key);
                }
            }
        }
        created
            .ports
            .push((p.network.clone(), p.endpoint.clone(), added));
    }
    Ok(())
}

/// SIGHUP: reads `--config` again and applies it. A file that does not parse or an entry that
/// fails changes nothing (the error is logged naming the file and the field); the daemon runs
/// on either way.
pub async fn reload(d: &Daemon, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --config to reload; nothing changed");
        return;
    };
    let shown = path.display().to_string();
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %shown, error = %e, "config reload failed; nothing changed");
            return;
        }
    };
    match apply_config(d, &cfg).await {
        Ok(a) => tracing::info!(
            config = %shown,
            networks_created = a.networks,
            endpoints_created = a.endpoints,
            ports_published = a.ports,
            kept_as_running = a.kept,
            unchanged = a.unchanged,
            "config reloaded"
        ),
        Err(e) => tracing::error!(config = %shown, error = %e,
            "config reload failed; nothing changed"),
    }
}
