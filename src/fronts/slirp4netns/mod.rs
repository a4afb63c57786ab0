//! `netyard slirp4netns` (or netyard run as `slirp4netns`): a drop-in for slirp4netns 1.2,
//! the network helper rootless Podman (`network_cmd_path`, `--network-cmd-path`) and
//! RootlessKit (`--net=slirp4netns --slirp4netns-binary=...`) start per container, served by
//! netyard's engine ([`crate::fronts::engine`]) instead of libslirp.
//!
//! `slirp4netns [OPTION]... PID|PATH [TAPNAME]` (`args`, `help`): the network is 10.0.2.0/24
//! or `--cidr`, the gateway .2 (the host's 127.0.0.1 behind it unless
//! `--disable-host-loopback`), the resolver .3 (the engine's, forwarding to the host's
//! resolvers; off with `--disable-dns`), the guest .100, configured with `-c`. With `-6` the
//! network is dual-stack in slirp4netns's IPv6 layout: fd00::/64, gateway fd00::2 (the
//! host's ::1 behind it, as for IPv4), resolver fd00::3, the guest fd00::100 (set by `-c`;
//! its default route comes from the gateway's Router Advertisement). The TAP named
//! TAPNAME (default tap0) is opened if it exists (RootlessKit makes its own) or created,
//! entering the container's user namespace as `attach --pid` does. Once it is served, "1" is
//! written to the ready fd (`fds`), which is then closed. `--api-socket` serves
//! add_hostfwd/list_hostfwd/remove_hostfwd (`api`). The process exits 0 when the exit fd
//! reports hang-up, when the container's process exits (PID) or its namespace path names
//! another namespace, or on SIGTERM/SIGINT, removing what it made; a refused command line or
//! a failed start exits 1 with slirp4netns's message.
//!
//! Accepted without effect (documented in `--help`): `--enable-sandbox`, `--enable-seccomp`
//! (netyard keeps its mount namespace and has no seccomp filter), `--outbound-addr[6]`
//! (egress leaves by the host's routes).

pub mod api;
pub mod args;
pub mod fds;
pub mod help;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use args::{Args, Layout, Layout6, NetnsType, Parsed};

use crate::fronts::engine::{Engine, EngineConfig, EngineEndpoint, EngineNs, EngineV6};

/// The endpoint's name (DNS answers it on the network).
const GUEST_NAME: &str = "guest";

/// Runs the front with the arguments after the name it was invoked by; returns the process
/// exit status (slirp4netns's: 0, or 1 for any error).
pub fn main(args: Vec<OsString>) -> i32 {
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args::parse(&argv) {
        Ok(Parsed::Help) => {
            print!("{}", help::usage());
            0
        }
        Ok(Parsed::Version) => {
            print!("{}", help::version());
            0
        }
        Err(e) => {
            eprintln!("slirp4netns: {e}");
            eprint!("{}", help::usage());
            1
        }
        Ok(Parsed::Run(a)) => run(*a),
    }
}

fn run(a: Args) -> i32 {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if a.outbound_addr.is_some() || a.outbound_addr6.is_some() {
        eprintln!(
            "netyard slirp4netns: --outbound-addr accepted, but egress leaves by the host's routes"
        );
    }
    // The fds first: a bad one is refused before anything is made.
    let exit_fd = match a.exit_fd.map(fds::take).transpose() {
        Ok(f) => f,
        Err(e) => {
            // slirp4netns polls it and takes the error as its exit event: it exits 0.
            eprintln!(
                "netyard slirp4netns: exit fd {}: {e}: exiting at once, as slirp4netns does",
                a.exit_fd.unwrap_or_default()
            );
            return 0;
        }
    };
    let ready_fd = match a.ready_fd.map(fds::take).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "netyard slirp4netns: ready fd {}: {e}",
                a.ready_fd.unwrap_or_default()
            );
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("netyard-slirp")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netyard slirp4netns: starting the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(serve(a, exit_fd, ready_fd))
}

/// The engine's configuration for a command line.
pub fn engine_config(a: &Args) -> EngineConfig {
    let l = Layout::of(a.cidr);
    let ns = match (a.netns_type, args::pid(&a.target)) {
        (NetnsType::Pid, Some(pid)) if a.userns_path.is_none() => EngineNs::Pid(pid),
        // A PID with an explicit user namespace: its namespace by path (the path stops
        // naming it when the process exits, which the engine notices within a second).
        (NetnsType::Pid, _) => EngineNs::Path {
            netns: format!("/proc/{}/ns/net", a.target),
            userns: a.userns_path.clone(),
        },
        (NetnsType::Path, _) => EngineNs::Path {
            netns: a.target.clone(),
            userns: a.userns_path.clone(),
        },
    };
    EngineConfig {
        subnet: l.subnet,
        gateway: l.gateway,
        dns: (!a.disable_dns).then_some(l.dns),
        mtu: a.mtu,
        host_loopback: !a.disable_host_loopback,
        maps: Vec::new(),
        dns_upstreams: Vec::new(),
        ipv6: a.enable_ipv6.then_some(EngineV6 {
            subnet: Layout6::SLIRP.subnet,
            gateway: Layout6::SLIRP.gateway,
            dns: (!a.disable_dns).then_some(Layout6::SLIRP.dns),
        }),
        endpoint: EngineEndpoint {
            name: GUEST_NAME.to_string(),
            ns,
            tap: a.tapname.clone(),
            mac: a.macaddress.clone(),
            ip: l.guest,
            // Only what -c configures: without it the runtime configures the interface, and
            // RootlessKit leaves IPv6 to SLAAC, which netyard's RA does not offer, so the
            // guest has no fd00::100 for a forward to reach.
            ip6: (a.enable_ipv6 && a.configure).then_some(Layout6::SLIRP.guest),
            configure: a.configure,
            publish: Vec::new(),
        },
    }
}

async fn serve(a: Args, exit_fd: Option<OwnedFd>, ready_fd: Option<OwnedFd>) -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("netyard slirp4netns: cannot handle signals");
        return 1;
    };
    // The API socket is bound before the engine starts, so a bad path fails with nothing
    // made. slirp4netns removes a stale file of that name first.
    let listener = match &a.api_socket {
        None => None,
        Some(p) => {
            let _ = std::fs::remove_file(p);
            match tokio::net::UnixListener::bind(p) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("api_bindlisten: bind: {p}: {e}");
                    return 1;
                }
            }
        }
    };
    let remove_socket = || {
        if let Some(p) = &a.api_socket {
            let _ = std::fs::remove_file(p);
        }
    };
    let cfg = engine_config(&a);
    let guest = api::Guest {
        v4: cfg.endpoint.ip,
        v6: cfg.endpoint.ip6,
    };
    let engine = match Engine::start(cfg).await {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("netyard slirp4netns: {e}");
            remove_socket();
            return 1;
        }
    };
    let api = listener.map(|l| tokio::spawn(api::serve(l, engine.clone(), guest)));
    if let Some(fd) = ready_fd {
        if let Err(e) = fds::ready(fd) {
            eprintln!("netyard slirp4netns: writing to the ready fd: {e}");
        }
    }
    let exit_event = async {
        match exit_fd {
            Some(fd) => {
                if let Err(e) = fds::exit_event(fd).await {
                    eprintln!("netyard slirp4netns: cannot watch the exit fd: {e}");
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = exit_event => tracing::info!("exit fd event"),
        why = engine.gone() => eprintln!("netyard slirp4netns: the container is gone ({why:?})"),
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if let Some(t) = api {
        t.abort();
    }
    remove_socket();
    engine.stop().await;
    0
}
