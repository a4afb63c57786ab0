//! Running the daemon: config, API socket, serving, clean shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::error::DaemonError;
use crate::state::Daemon;

/// What `netyard daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub api: PathBuf,
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
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
    /// Stops serving, removes every endpoint and device, and removes the socket.
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

/// Binds the API socket (refusing if another daemon answers there), applies the config and
/// starts serving. On any error nothing is left behind.
pub async fn start(opts: Options) -> Result<Running, DaemonError> {
    let config = match &opts.config {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    if let Some(dir) = &opts.state_dir {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    let listener = bind_api(&opts.api).await?;
    let daemon = Arc::new(Daemon::new());
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
    let reaper = {
        let d = daemon.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                d.reap().await;
            }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let app = crate::api::router(daemon.clone());
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "API server failed");
        }
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

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
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
    let listener =
        UnixListener::bind(path).map_err(io_err(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("setting mode 0600 on {}", path.display())))?;
    Ok(listener)
}

/// Creates the config's networks then endpoints; stops at the first failure (the caller then
/// tears everything down).
async fn apply_config(d: &Daemon, cfg: Config) -> Result<(), DaemonError> {
    for (i, n) in cfg.network.into_iter().enumerate() {
        d.create_network(n)
            .await
            .map_err(|e| e.within(&format!("network[{i}].")))?;
    }
    for (i, e) in cfg.endpoint.into_iter().enumerate() {
        let net = e.network.clone().unwrap_or_default();
        d.attach(&net, e)
            .await
            .map_err(|err| err.within(&format!("endpoint[{i}].")))?;
    }
    Ok(())
}
