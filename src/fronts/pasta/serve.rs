//! The front's life: check the namespace (before forking, so Podman gets the error at once),
//! fork, and in the child set the namespace up on the engine, report ready, and serve until
//! the namespace (or the PID's process) is gone or a signal asks to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::background::{self, Readiness, Side};
use super::layout::{self, HostView, Layout};
use super::options::{Options, Target};
use super::ports;
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
    let served = match setup(&o, &target).await {
        Ok(s) => s,
        Err(msg) => {
            ready.fail(&msg);
            return 1;
        }
    };
    if let Err(e) = ready.ready(o.pid_file.as_deref()) {
        tracing::error!(error = %e, "reporting ready");
        served.stop().await;
        return 1;
    }
    let why = wait_for_end(&o, &target, &id).await;
    tracing::info!(reason = why, "stopping");
    served.stop().await;
    0
}

/// Waits until the namespace goes away (its path no longer names it, or the PID exits), or
/// SIGTERM/SIGINT/SIGHUP arrives; returns why.
async fn wait_for_end(o: &Options, target: &NsTarget, id: &NsIdentity) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let path: PathBuf = target.netns().to_path_buf();
    let watch_path = !o.no_netns_quit;
    let gone = async {
        if id.pid.is_some() {
            // A PID target: its process's exit ends it (pasta quits with the namespace).
            match netns::exit_watch(id) {
                Ok(Some(fd)) => {
                    let _ = netns::wait_exit(fd).await;
                }
                _ => return,
            }
            return;
        }
        if !watch_path {
            std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            if netns::check(&path, id) != NsStatus::Same {
                return;
            }
        }
    };
    tokio::select! {
        _ = gone => "the namespace is gone",
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

/// The namespace as served: stop it to tear everything down.
struct Served {
    daemon: crate::state::Daemon,
}

impl Served {
    async fn stop(self) {
        self.daemon.shutdown().await;
    }
}

/// The one network's and endpoint's name (nobody sees them: there is no API).
const NAME: &str = "pasta";

/// Plans the layout, starts the engine with the namespace's TAP and publishes the ports.
async fn setup(o: &Options, target: &NsTarget) -> Result<Served, String> {
    let host = host_view()
        .await
        .map_err(|e| format!("netyard pasta: reading the host's routes: {e}"))?;
    let layout = layout::plan(o, &host).map_err(|e| format!("netyard pasta: {e}"))?;
    tracing::info!(?layout, "namespace layout");
    let specs = ports::publish_specs(&o.tcp, &o.udp);
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
    let upstreams = match o.dns_host.first() {
        Some(ip) => vec![std::net::SocketAddr::new((*ip).into(), 53)],
        None => netyard_dns::upstreams_from_resolv_conf(Path::new("/etc/resolv.conf"))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no upstream DNS servers: --dns-forward will not resolve");
                Vec::new()
            }),
    };
    let daemon = crate::state::Daemon::new(
        crate::dnsd::DnsOptions {
            upstreams,
            ttl: netyard_dns::DEFAULT_LOCAL_TTL,
        },
        None,
    )
    .with_endpoint_options(crate::state::EndpointOptions {
        // Without --config-net pasta leaves the interface to the namespace's owner.
        configure: o.config_net,
        // Podman's resolv.conf names the --dns-forward address, served at the gateway.
        dns_in_namespace: false,
    });
    let served = Served { daemon };
    if let Err(e) = start(o, target, &layout, specs, &served.daemon).await {
        served.stop().await;
        return Err(e);
    }
    Ok(served)
}

/// The network and the endpoint, on the daemon's engine.
async fn start(
    o: &Options,
    target: &NsTarget,
    layout: &Layout,
    publish: Vec<String>,
    daemon: &crate::state::Daemon,
) -> Result<(), String> {
    let net = netyard_api::model::NetworkCreate {
        name: NAME.to_string(),
        subnet: Some(layout.subnet.to_string()),
        gateway: Some(layout.gateway.to_string()),
        mtu: layout.mtu,
        host_loopback: layout.gateway_to_host_loopback,
        gateway_extra: layout.dns_forward.iter().map(|a| a.to_string()).collect(),
        maps: layout
            .maps
            .iter()
            .map(|m| netyard_api::model::AddrMapReq {
                guest: m.from.to_string(),
                host: m.to.to_string(),
            })
            .collect(),
        // The namespace has one endpoint, its own: no neighbour to protect.
        port_security: Some(false),
        ..Default::default()
    };
    daemon
        .create_network(net)
        .await
        .map_err(|e| format!("netyard pasta: {e}"))?;
    let (netns, pid) = match o.target {
        Some(Target::Pid(pid)) if !o.netns_only && o.userns.is_none() => {
            (None, i32::try_from(pid).ok())
        }
        _ => (Some(target.netns().display().to_string()), None),
    };
    let ep = netyard_api::model::EndpointCreate {
        name: NAME.to_string(),
        netns,
        pid,
        userns: target.userns().map(|p| p.display().to_string()),
        ip: Some(layout.guest.to_string()),
        mac: o.ns_mac.map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }),
        ifname: Some(layout.ifname.clone()),
        publish,
        ..Default::default()
    };
    daemon
        .attach(NAME, ep)
        .await
        .map_err(|e| format!("netyard pasta: {e}"))?;
    Ok(())
}
