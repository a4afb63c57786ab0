//! The front's life: check the namespace (before forking, so Podman gets the error at once),
//! fork, and in the child set the namespace up on the engine, report ready, and serve until
//! the namespace (or the PID's process) is gone or a signal asks to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::background::{self, Readiness, Side};
use super::layout::{self, HostView};
use super::options::{Options, Target};
use super::ports;
use crate::fronts::engine::{Engine, EngineConfig, EngineEndpoint, EngineNs, EngineV6, Gone};
use crate::netns::{self, NetnsError, NsIdentity, NsStatus, NsTarget};

/// How often the namespace's path is looked at: pasta watches it with inotify; a stat a few
/// times a second costs nothing and also sees a path replaced by another namespace.
const WATCH_EVERY: Duration = Duration::from_millis(200);

pub fn run(o: Options) -> i32 {
    if let Err(e) = init_logging(&o) {
        eprintln!("{e}");
        return 1;
    }
    let (target, pid) = match open_target(&o) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let id = match netns::identify(&target, pid) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{}", ns_error(target.netns(), &e));
            return 1;
        }
    };
    if !o.ignored.is_empty() {
        tracing::info!(options = ?o.ignored, "accepted with no effect in netyard");
    }
    let ready = match background::split(o.foreground) {
        Ok(Side::Parent(code)) => return code,
        Ok(Side::Serve(ready)) => ready,
        Err(e) => {
            eprintln!("netyard pasta: fork: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("netyard-pasta")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ready.fail(&format!("netyard pasta: starting the tokio runtime: {e}"));
            return 1;
        }
    };
    let code = rt.block_on(serve(o, target, id, ready));
    // Whatever a task still holds (a host socket, the TAP) closes with the runtime.
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The namespaces to serve, as pasta resolves them: a PID's network namespace and (unless
/// `--netns-only`) its user namespace; a path's network namespace, and `--userns` if given.
fn open_target(o: &Options) -> Result<(NsTarget, Option<u32>), String> {
    match o.target.as_ref() {
        Some(Target::Pid(pid)) => {
            let target = if o.netns_only || o.userns.is_some() {
                NsTarget::from_paths(format!("/proc/{pid}/ns/net"), o.userns.clone())
            } else {
                NsTarget::from_pid(*pid)
            };
            target
                .map(|t| (t, Some(*pid)))
                .map_err(|e| ns_error(Path::new(&format!("/proc/{pid}/ns/net")), &e))
        }
        Some(Target::Path(path)) => NsTarget::from_paths(path.clone(), o.userns.clone())
            .map(|t| (t, None))
            .map_err(|e| ns_error(path, &e)),
        // `Options::check` refused a command line without a target.
        None => Err("netyard pasta: no namespace given".to_string()),
    }
}

/// pasta's wording: "Couldn't open network namespace PATH: No such file or directory".
fn ns_error(path: &Path, e: &NetnsError) -> String {
    match e {
        NetnsError::OpenNamespace { source, .. } => format!(
            "Couldn't open network namespace {}: {}",
            path.display(),
            strerror(source)
        ),
        other => format!(
            "Couldn't open network namespace {}: {other}",
            path.display()
        ),
    }
}

/// The C library's text for an errno (io::Error's Display adds " (os error N)").
fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// Logs go to `--log-file` (appended) or stderr (which the background child points at
/// /dev/null once ready): warnings with `--quiet`, information by default, debug with
/// `-d`/`--trace`; NETYARD_LOG overrides.
fn init_logging(o: &Options) -> Result<(), String> {
    let level = match (o.debug, o.quiet) {
        (true, _) => "debug",
        (false, true) => "warn",
        (false, false) => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let result = match &o.log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    format!(
                        "Couldn't open log file {}: {}",
                        path.display(),
                        strerror(&e)
                    )
                })?;
            builder.with_writer(std::sync::Mutex::new(f)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    // Already set (a test calling twice): keep the first.
    let _ = result;
    Ok(())
}

/// The child: everything after the fork. Returns the exit status.
async fn serve(o: Options, target: NsTarget, id: NsIdentity, ready: Readiness) -> i32 {
    let engine = match setup(&o, &target).await {
        Ok(e) => e,
        Err(msg) => {
            ready.fail(&msg);
            return 1;
        }
    };
    if let Err(e) = ready.ready(o.pid_file.as_deref()) {
        tracing::error!(error = %e, "reporting ready");
        engine.stop().await;
        return 1;
    }
    let why = wait_for_end(&o, &target, &id, &engine).await;
    tracing::info!(reason = why, "stopping");
    engine.stop().await;
    0
}

/// Waits until the namespace goes away or SIGTERM/SIGINT/SIGHUP arrives; returns why.
///
/// The engine sees a PID target's exit at once (a pidfd) and a path or TAP gone within a
/// second; the path is also looked at every 200 ms here, so Podman's next container does not
/// wait on a lingering helper. `--no-netns-quit` keeps a path target served until a signal.
async fn wait_for_end(
    o: &Options,
    target: &NsTarget,
    id: &NsIdentity,
    engine: &Engine,
) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let path: PathBuf = target.netns().to_path_buf();
    let follow = id.pid.is_some() || !o.no_netns_quit;
    let watch = async {
        if !follow {
            return std::future::pending::<&'static str>().await;
        }
        // One future for the whole wait: the engine hands its exit notices out once.
        let gone = engine.gone();
        tokio::pin!(gone);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                g = &mut gone => return match g {
                    Gone::ProcessExited => "the namespace's process exited",
                    Gone::NamespaceGone => "the namespace is gone",
                },
                _ = tick.tick() => {
                    if id.pid.is_none() && netns::check(&path, id) != NsStatus::Same {
                        return "the namespace is gone";
                    }
                }
            }
        }
    };
    tokio::select! {
        why = watch => why,
        _ = recv(&mut term) => "SIGTERM",
        _ = recv(&mut int) => "SIGINT",
        _ = recv(&mut hup) => "SIGHUP",
    }
}

/// The next delivery of a signal that could be hooked; never for one that could not.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// What the host has that the layout depends on.
async fn host_view() -> Result<HostView, NetnsError> {
    let handle = netns::host_handle()?;
    let routes = netns::host_routes(&handle).await?;
    let uplink = netns::host_uplink(&handle).await?;
    Ok(HostView {
        routes,
        default_if: uplink.default_if,
        any_addr: uplink.any_addr,
    })
}

/// The TAP's own MTU, for `-m 0` (pasta: "disables assignment").
const TAP_DEFAULT_MTU: u32 = 1500;

/// Plans the layout and starts the engine with the namespace's TAP and the published ports.
async fn setup(o: &Options, target: &NsTarget) -> Result<Engine, String> {
    let host = host_view()
        .await
        .map_err(|e| format!("netyard pasta: reading the host's routes: {e}"))?;
    let layout = layout::plan(o, &host).map_err(|e| format!("netyard pasta: {e}"))?;
    let layout6 =
        layout::plan6(o, &host, rand::random::<u64>).map_err(|e| format!("netyard pasta: {e}"))?;
    tracing::info!(?layout, ?layout6, "namespace layout");
    for mode in [&o.tcp, &o.udp] {
        if let ports::PortMode::Spec(list) = mode {
            for f in list.iter().filter(|f| f.ifname.is_some()) {
                tracing::warn!(
                    ifname = f.ifname.as_deref().unwrap_or_default(),
                    port = f.host.start,
                    "interface-scoped forwards are bound on the address alone"
                );
            }
        }
    }
    let ns = match o.target {
        Some(Target::Pid(pid)) if !o.netns_only && o.userns.is_none() => EngineNs::Pid(pid),
        _ => EngineNs::Path {
            netns: target.netns().display().to_string(),
            userns: target.userns().map(|p| p.display().to_string()),
        },
    };
    let cfg = EngineConfig {
        subnet: layout.subnet,
        gateway: layout.gateway,
        dns: layout.dns_forward.first().copied(),
        mtu: layout.mtu.unwrap_or(TAP_DEFAULT_MTU),
        host_loopback: layout.gateway_to_host_loopback,
        maps: layout.maps.iter().map(|m| (m.from, m.to)).collect(),
        dns_upstreams: o
            .dns_host
            .iter()
            .map(|ip| std::net::SocketAddr::new((*ip).into(), 53))
            .collect(),
        ipv6: layout6.as_ref().map(|l| EngineV6 {
            subnet: l.subnet,
            gateway: l.gateway,
            dns: l.dns_forward,
        }),
        endpoint: EngineEndpoint {
            name: "pasta".to_string(),
            ns,
            tap: layout.ifname.clone(),
            mac: o.ns_mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            ip: layout.guest,
            ip6: layout6.as_ref().map(|l| l.guest),
            // Without --config-net pasta leaves the interface to the namespace's owner.
            configure: o.config_net,
            publish: ports::publish_specs(&o.tcp, &o.udp),
        },
    };
    Engine::start(cfg)
        .await
        .map_err(|e| format!("netyard pasta: {e}"))
}
