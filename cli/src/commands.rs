//! One function per client command: build the request, call the daemon, print the answer.

use std::io::Write;

use serde_json::Value;

use crate::client::{ApiClient, ClientError};
use crate::model::{
    EndpointCreate, EndpointInfo, FdbAdd, FdbRow, NetworkCreate, NetworkInfo, PortStatsRow,
    PublishRequest,
};
use crate::portspec::format_ports;
use crate::table::render;
use crate::{nsexec, AttachArgs, NetworkCommand, RunArgs, SystemCommand};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("unexpected answer from the daemon: {0}")]
    Decode(String),
    /// The command cannot run as asked (e.g. the live view without a terminal).
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError::Decode(e.to_string()))
}

pub(crate) fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("netyard: cannot render JSON: {e}"),
    }
}

/// Percent-encodes a path segment (names are validated by the daemon; this only keeps the URI
/// well-formed whatever the user typed).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Docker's `-o KEY=VALUE` driver options: `parent=IFACE` (the same as `--parent`, which it
/// must not contradict) and `macvlan_mode=bridge`, the only mode netyard has (endpoints of the
/// network reach each other through its switch). Anything else is refused by name.
fn driver_opts(opts: &[String], parent: Option<String>) -> Result<Option<String>, CliError> {
    let mut parent = parent;
    for o in opts {
        let Some((key, value)) = o.split_once('=') else {
            return Err(CliError::Usage(format!(
                "-o {o:?}: give KEY=VALUE (parent=IFACE or macvlan_mode=bridge)"
            )));
        };
        match key {
            "parent" => match &parent {
                Some(p) if p != value => {
                    return Err(CliError::Usage(format!(
                        "-o parent={value} contradicts --parent {p}"
                    )))
                }
                _ => parent = Some(value.to_string()),
            },
            "macvlan_mode" if value == "bridge" => {}
            "macvlan_mode" => {
                return Err(CliError::Usage(format!(
                    "-o macvlan_mode={value}: netyard's macvlan networks have bridge mode only"
                )))
            }
            other => {
                return Err(CliError::Usage(format!(
                    "-o {other}: not an option netyard knows (parent, macvlan_mode)"
                )))
            }
        }
    }
    Ok(parent)
}

pub async fn network(c: &ApiClient, cmd: NetworkCommand) -> Result<i32, CliError> {
    match cmd {
        NetworkCommand::Create {
            name,
            subnet,
            gateway,
            ipv6,
            subnet6,
            gateway6,
            mtu,
            internal,
            host_loopback,
            gateway_extra,
            maps,
            container_resolver,
            port_security,
            icc,
            max_flows_per_endpoint,
            max_flows,
            aging,
            max_macs_per_port,
            vxlan,
            vxlan_local,
            vxlan_port,
            vxlan_peers,
            driver,
            parent,
            ip_range,
            opts,
            gateway_router,
        } => {
            let parent = driver_opts(&opts, parent)?;
            // The daemon checks both addresses and names the field; a map without "=" is
            // passed with an empty host, which it refuses the same way.
            let maps = maps
                .iter()
                .map(|m| {
                    let (guest, host) = m.split_once('=').unwrap_or((m, ""));
                    netyard_api::model::AddrMapReq {
                        guest: guest.to_string(),
                        host: host.to_string(),
                    }
                })
                .collect();
            let req = NetworkCreate {
                name,
                subnet,
                gateway,
                ipv6,
                subnet6,
                gateway6,
                mtu,
                internal,
                host_loopback,
                gateway_extra,
                maps,
                container_resolver,
                port_security,
                icc,
                max_flows_per_endpoint,
                max_flows,
                aging,
                max_macs_per_port,
                vxlan,
                vxlan_local,
                vxlan_port,
                vxlan_peers,
                driver,
                parent,
                ip_range,
            };
            let n: NetworkInfo = decode(c.post("/v1/networks", &req).await?)?;
            if let Some(gr) = &gateway_router {
                gateway_router_for_new(c, &n.name, gr).await?;
            }
            match &n.vxlan {
                Some(v) => println!(
                    "{} {} gateway {} mtu {} vxlan {} on {}:{} peers [{}]",
                    n.name,
                    n.subnet,
                    n.gateway,
                    n.mtu,
                    v.vni,
                    v.local,
                    v.port,
                    v.peers.join(", ")
                ),
                None => match &n.parent {
                    Some(p) => println!(
                        "{} {} gateway {} mtu {} {} on {p}",
                        n.name, n.subnet, n.gateway, n.mtu, n.driver
                    ),
                    None => println!("{} {} gateway {}", n.name, n.subnet, n.gateway),
                },
            }
            if let (Some(s6), Some(g6)) = (&n.subnet6, &n.gateway6) {
                println!("{} {s6} gateway {g6}", n.name);
            }
            if let Some(gr) = &gateway_router {
                let router = gr.split_once('=').map_or(gr.as_str(), |(r, _)| r);
                let v = c.get(&format!("/v1/networks/{}", seg(&n.name))).await?;
                let ip = v["gateway_router_ip"].as_str().unwrap_or("?");
                println!("{}: default gateway {ip} (router {router})", n.name);
            }
        }
        NetworkCommand::Ls { json } => {
            let v = c.get("/v1/networks").await?;
            if json {
                print_json(&v);
            } else {
                let nets: Vec<NetworkInfo> = decode(v)?;
                let rows: Vec<Vec<String>> = nets
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.driver.clone(),
                            n.subnet.clone(),
                            n.gateway.clone(),
                            n.mtu.to_string(),
                            n.internal.to_string(),
                            n.endpoints.len().to_string(),
                            n.vxlan
                                .as_ref()
                                .map(|v| v.vni.to_string())
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    render(
                        &[
                            "NAME",
                            "DRIVER",
                            "SUBNET",
                            "GATEWAY",
                            "MTU",
                            "INTERNAL",
                            "ENDPOINTS",
                            "VXLAN"
                        ],
                        &rows
                    )
                );
            }
        }
        NetworkCommand::Inspect { name } => {
            print_json(&c.get(&format!("/v1/networks/{}", seg(&name))).await?);
        }
        NetworkCommand::Update {
            name,
            gateway_router,
            no_gateway_router,
        } => {
            let req = crate::model::NetworkUpdate {
                gateway_router: match (gateway_router, no_gateway_router) {
                    (Some(r), _) => Some(Some(r)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
            };
            let v = c
                .patch(&format!("/v1/networks/{}", seg(&name)), &req)
                .await?;
            let gw = v["gateway_router_ip"]
                .as_str()
                .or(v["gateway"].as_str())
                .unwrap_or("?");
            match v["gateway_router"].as_str() {
                Some(r) => println!("{name}: default gateway {gw} (router {r})"),
                None => println!("{name}: default gateway {gw} (netyard's gateway)"),
            }
        }
        NetworkCommand::Rm { name } => {
            c.delete(&format!("/v1/networks/{}", seg(&name))).await?;
            println!("{name}");
        }
    }
    Ok(0)
}

/// `network create NAME --gateway-router ROUTER[=IP]` after the network exists: the router
/// joins it, then becomes its gateway router; a failed step takes back what came before,
/// the network included, so the command changes nothing when it fails.
async fn gateway_router_for_new(c: &ApiClient, network: &str, spec: &str) -> Result<(), CliError> {
    let iface = crate::router::iface_req(&format!(
        "{network}={}",
        spec.split_once('=').map_or("", |(_, ip)| ip)
    ));
    let iface = netyard_api::router::RouterInterfaceReq {
        ip: iface.ip.filter(|ip| !ip.is_empty()),
        ..iface
    };
    let router = spec.split_once('=').map_or(spec, |(r, _)| r).to_string();
    let net_path = format!("/v1/networks/{}", seg(network));
    if let Err(e) = c
        .post(&format!("/v1/routers/{}/interfaces", seg(&router)), &iface)
        .await
    {
        let _ = c.delete(&net_path).await;
        // Named for the option, as the daemon names its fields; the network is gone again.
        return Err(CliError::Usage(format!(
            "gateway_router: {e} (network {network:?} was not kept)"
        )));
    }
    let update = crate::model::NetworkUpdate {
        gateway_router: Some(Some(router.clone())),
    };
    if let Err(e) = c.patch(&net_path, &update).await {
        let _ = c
            .delete(&format!(
                "/v1/routers/{}/interfaces/{}",
                seg(&router),
                seg(network)
            ))
            .await;
        let _ = c.delete(&net_path).await;
        return Err(CliError::Usage(format!(
            "gateway_router: {e} (network {network:?} was not kept)"
        )));
    }
    Ok(())
}

pub async fn attach(c: &ApiClient, a: AttachArgs) -> Result<i32, CliError> {
    let req = EndpointCreate {
        network: None,
        name: a.name,
        netns: a.netns,
        pid: a.pid,
        userns: a.userns,
        ip: a.ip,
        ip6: a.ip6,
        mac: a.mac,
        ifname: Some(a.ifname),
        kind: Some(a.kind),
        peer: None,
        offload: Some(!a.no_offload),
        trusted: a.trusted,
        aliases: a.aliases,
        publish: a.publish,
        owner: None,
    };
    let uri = format!("/v1/networks/{}/endpoints", seg(&a.network));
    let e: EndpointInfo = decode(c.post(&uri, &req).await?)?;
    println!(
        "{} attached to {}: {} {}/{} mac {} via {}",
        e.name, e.network, e.ifname, e.ip, e.prefix_len, e.mac, e.kind
    );
    if let (Some(ip6), Some(len)) = (&e.ip6, e.prefix_len6) {
        println!("{} {ip6}/{len}", e.ifname);
    }
    if !e.ports.is_empty() {
        println!("published: {}", format_ports(&e.ports));
    }
    println!("resolv.conf for the container:");
    print!("{}", e.resolv_conf);
    Ok(0)
}

pub async fn detach(c: &ApiClient, network: &str, name: &str) -> Result<i32, CliError> {
    c.delete(&format!(
        "/v1/networks/{}/endpoints/{}",
        seg(network),
        seg(name)
    ))
    .await?;
    println!("{name}");
    Ok(0)
}

pub async fn ps(c: &ApiClient, json: bool) -> Result<i32, CliError> {
    let v = c.get("/v1/endpoints").await?;
    if json {
        print_json(&v);
        return Ok(0);
    }
    let eps: Vec<EndpointInfo> = decode(v)?;
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.network.clone(),
                e.kind.clone(),
                match (&e.ip6, e.prefix_len6) {
                    (Some(ip6), Some(len)) => format!("{}/{},{ip6}/{len}", e.ip, e.prefix_len),
                    _ => format!("{}/{}", e.ip, e.prefix_len),
                },
                e.mac.clone(),
                e.ifname.clone(),
                e.counters.rx_packets.to_string(),
                e.counters.tx_packets.to_string(),
                e.counters.drops_total.to_string(),
                format_ports(&e.ports),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "NAME",
                "NETWORK",
                "KIND",
                "IP",
                "MAC",
                "INTERFACE",
                "RX",
                "TX",
                "DROPS",
                "PORTS"
            ],
            &rows
        )
    );
    Ok(0)
}

pub async fn fdb(c: &ApiClient, network: &str, json: bool) -> Result<i32, CliError> {
    let v = c.get(&format!("/v1/networks/{}/fdb", seg(network))).await?;
    if json {
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<FdbRow> = decode(v)?;
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.mac.clone(),
                r.port.clone(),
                if r.is_static {
                    "static".into()
                } else {
                    format!("{:.1}s", r.age)
                },
                r.remote.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!("{}", render(&["MAC", "PORT", "AGE", "REMOTE"], &rows));
    Ok(0)
}

/// `netyard fdb add NETWORK MAC --remote IP`.
pub async fn fdb_add(
    c: &ApiClient,
    network: &str,
    mac: &str,
    remote: &str,
) -> Result<i32, CliError> {
    let req = FdbAdd {
        mac: mac.to_string(),
        remote: remote.to_string(),
    };
    let r: FdbRow = decode(
        c.post(&format!("/v1/networks/{}/fdb", seg(network)), &req)
            .await?,
    )?;
    println!(
        "{} via {} remote {}",
        r.mac,
        r.port,
        r.remote.unwrap_or_default()
    );
    Ok(0)
}

/// `netyard fdb del NETWORK MAC`.
pub async fn fdb_del(c: &ApiClient, network: &str, mac: &str) -> Result<i32, CliError> {
    c.delete(&format!("/v1/networks/{}/fdb/{}", seg(network), seg(mac)))
        .await?;
    println!("{mac}");
    Ok(0)
}

pub async fn stats(c: &ApiClient, json: bool) -> Result<i32, CliError> {
    let v = c.get("/v1/stats").await?;
    if json {
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<PortStatsRow> = decode(v)?;
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let k = &r.counters;
            let reasons: Vec<String> = k
                .drops
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            vec![
                r.network.clone(),
                r.endpoint.clone(),
                k.rx_packets.to_string(),
                k.rx_bytes.to_string(),
                k.tx_packets.to_string(),
                k.tx_bytes.to_string(),
                k.drops_total.to_string(),
                reasons.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "NETWORK", "ENDPOINT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
                "REASONS"
            ],
            &rows
        )
    );
    Ok(0)
}

/// `netyard run`: the namespace its `--network` asks for (fresh and attached to each network
/// in order, fresh with only `lo`, the daemon's, or an endpoint's), the command in it, then
/// detach. Returns the command's exit code (128 + signal number if it was killed by a signal).
pub async fn run(c: &ApiClient, a: RunArgs) -> Result<i32, CliError> {
    use crate::runmode::{plan, EndpointFlags, RunMode};
    let io = |context: &str| {
        let context = context.to_string();
        move |source| CliError::Io { context, source }
    };
    let flags = EndpointFlags {
        ip: a.ip.is_some() || a.ip6.is_some(),
        mac: a.mac.is_some(),
        alias: !a.aliases.is_empty(),
        publish: !a.publish.is_empty(),
        kind: a.kind.is_some(),
        no_offload: a.no_offload,
    };
    let mode = plan(&a.network, &flags).map_err(|e| CliError::Usage(e.to_string()))?;
    match mode {
        RunMode::None => {
            let ns = nsexec::new_netns_lo_up()
                .await
                .map_err(io("creating the namespace"))?;
            run_in(&ns, &a.cmd, None).await
        }
        RunMode::Host => {
            let pid = nsexec::daemon_pid(c.path())
                .await
                .map_err(io("finding the daemon"))?;
            let ns = nsexec::daemon_netns(pid).map_err(io("entering the daemon's namespace"))?;
            run_in(&ns, &a.cmd, None).await
        }
        RunMode::Container(target) => run_joined(c, &a, &target).await,
        RunMode::Networks(nets) => run_attached(c, a, &nets).await,
    }
}

/// `run --network container:TARGET`: registered with the daemon while it runs (so `ps` lists
/// it), in TARGET's namespace, with TARGET's resolv.conf; nothing of TARGET is changed.
async fn run_joined(c: &ApiClient, a: &RunArgs, target: &str) -> Result<i32, CliError> {
    let dpid = nsexec::daemon_pid(c.path())
        .await
        .map_err(|source| CliError::Io {
            context: "finding the daemon".into(),
            source,
        })?;
    let req = crate::model::JoinCreate {
        name: a.name.clone(),
        target: target.to_string(),
    };
    let j: crate::model::JoinInfo = match c.post("/v1/joins", &req).await {
        Ok(v) => decode(v)?,
        // The daemon names the field "target": say which flag that is.
        Err(ClientError::Api(e, _)) if e.field.as_deref() == Some("target") => {
            return Err(CliError::Usage(format!(
                "--network container:{target}: {}",
                e.error.strip_prefix("target: ").unwrap_or(&e.error)
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let leave = format!("/v1/joins/{}", seg(&j.name));
    let ns = match nsexec::open_daemon_path(dpid, &j.netns, j.netns_dev, j.netns_ino) {
        Ok(ns) => ns,
        Err(source) => {
            let _ = c.delete(&leave).await;
            return Err(CliError::Io {
                context: format!("entering the namespace of {target}"),
                source,
            });
        }
    };
    let resolv = std::env::temp_dir().join(format!(
        "netyard-run-{}-{}.resolv.conf",
        std::process::id(),
        j.name
    ));
    let result = match std::fs::write(&resolv, &j.resolv_conf) {
        Ok(()) => run_in(&ns, &a.cmd, Some(&resolv)).await,
        Err(source) => Err(CliError::Io {
            context: format!("writing {}", resolv.display()),
            source,
        }),
    };
    let _ = std::fs::remove_file(&resolv);
    let left = c.delete(&leave).await;
    let code = result?;
    left?;
    Ok(code)
}

/// `run --network NET [--network NET2 ...]`: a fresh namespace attached to each network in
/// order (eth0, eth1, ...; all or nothing), resolv.conf from the first. The endpoint options
/// (`--ip`, `--mac`, `--alias`, `-p`) are the first network's.
async fn run_attached(c: &ApiClient, a: RunArgs, nets: &[String]) -> Result<i32, CliError> {
    let ns = nsexec::new_netns().map_err(|source| CliError::Io {
        context: "creating the namespace".into(),
        source,
    })?;
    let mut attached: Vec<String> = Vec::new();
    let mut first: Option<EndpointInfo> = None;
    let mut failure = None;
    for (i, net) in nets.iter().enumerate() {
        let req = EndpointCreate {
            network: None,
            name: a.name.clone(),
            netns: Some(nsexec::fd_path(&ns)),
            pid: None,
            userns: None,
            ip: if i == 0 { a.ip.clone() } else { None },
            ip6: if i == 0 { a.ip6.clone() } else { None },
            mac: if i == 0 { a.mac.clone() } else { None },
            ifname: Some(format!("eth{i}")),
            kind: Some(a.kind.clone().unwrap_or_else(|| "tap".into())),
            peer: None,
            offload: Some(!a.no_offload),
            trusted: false,
            aliases: if i == 0 {
                a.aliases.clone()
            } else {
                Vec::new()
            },
            publish: if i == 0 {
                a.publish.clone()
            } else {
                Vec::new()
            },
            owner: None,
        };
        let uri = format!("/v1/networks/{}/endpoints", seg(net));
        match c
            .post(&uri, &req)
            .await
            .map_err(CliError::from)
            .and_then(decode::<EndpointInfo>)
        {
            Ok(e) => {
                attached.push(format!("{uri}/{}", seg(&a.name)));
                first.get_or_insert(e);
            }
            Err(e) => {
                failure = Some(if nets.len() > 1 {
                    CliError::Usage(format!("--network {net}: {e}"))
                } else {
                    e
                });
                break;
            }
        }
    }
    let result = match (failure, &first) {
        (Some(e), _) => Err(e),
        (None, None) => Err(CliError::Usage("--network: no network given".into())),
        (None, Some(e)) => {
            if !e.ports.is_empty() {
                eprintln!("published: {}", format_ports(&e.ports));
            }
            // The command's /etc/resolv.conf points at the embedded resolver.
            let resolv = std::env::temp_dir().join(format!(
                "netyard-run-{}-{}.resolv.conf",
                std::process::id(),
                e.name
            ));
            let r = match std::fs::write(&resolv, &e.resolv_conf) {
                Ok(()) => run_in(&ns, &a.cmd, Some(&resolv)).await,
                Err(source) => Err(CliError::Io {
                    context: format!("writing {}", resolv.display()),
                    source,
                }),
            };
            let _ = std::fs::remove_file(&resolv);
            r
        }
    };
    // Detach in reverse order, every one even if one fails.
    let mut detached = Ok(());
    for uri in attached.iter().rev() {
        if let Err(e) = c.delete(uri).await {
            detached = Err(e);
        }
    }
    let code = result?;
    detached?;
    Ok(code)
}

async fn run_in(
    ns: &std::os::fd::OwnedFd,
    argv: &[String],
    resolv_conf: Option<&std::path::Path>,
) -> Result<i32, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let (prog, args) = argv.split_first().ok_or_else(|| CliError::Io {
        context: "run".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"),
    })?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    nsexec::enter_before_exec(&mut cmd, ns, resolv_conf).map_err(|source| CliError::Io {
        context: "preparing the command".into(),
        source,
    })?;
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| CliError::Io {
            context: format!("starting {prog}"),
            source,
        })?;
    // Keep running through the user's Ctrl-C (the child gets it from the terminal too) so the
    // endpoint is detached afterwards; pass SIGTERM on.
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            Some(()) = async { match int.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {}
            Some(()) = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
    }
    .map_err(|source| CliError::Io {
        context: format!("waiting for {prog}"),
        source,
    })?;
    let _ = std::io::stdout().flush();
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// `netyard capture`: streams pcap from the daemon to a file or stdout.
pub async fn capture(
    c: &ApiClient,
    network: &str,
    endpoint: Option<&str>,
    count: Option<u64>,
    duration: Option<f64>,
    write: &str,
) -> Result<i32, CliError> {
    let mut q = Vec::new();
    if let Some(e) = endpoint {
        q.push(format!("endpoint={}", seg(e)));
    }
    if let Some(n) = count {
        q.push(format!("count={n}"));
    }
    if let Some(d) = duration {
        q.push(format!("seconds={d}"));
    }
    let uri = format!("/v1/networks/{}/capture?{}", seg(network), q.join("&"));
    let mut out: Box<dyn Write> = if write == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(write).map_err(|source| CliError::Io {
            context: format!("creating {write}"),
            source,
        })?)
    };
    c.stream(&uri, &mut |chunk| {
        out.write_all(chunk)?;
        out.flush()
    })
    .await?;
    Ok(0)
}

/// `netyard publish NETWORK NAME SPEC...`: prints the endpoint's published ports afterwards.
pub async fn publish(
    c: &ApiClient,
    network: &str,
    name: &str,
    specs: Vec<String>,
) -> Result<i32, CliError> {
    let uri = format!(
        "/v1/networks/{}/endpoints/{}/ports",
        seg(network),
        seg(name)
    );
    let e: EndpointInfo = decode(c.post(&uri, &PublishRequest { publish: specs }).await?)?;
    println!("{}", format_ports(&e.ports));
    Ok(0)
}

/// `netyard unpublish NETWORK NAME SPEC`: prints the ports still published.
pub async fn unpublish(
    c: &ApiClient,
    network: &str,
    name: &str,
    spec: &str,
) -> Result<i32, CliError> {
    let uri = format!(
        "/v1/networks/{}/endpoints/{}/ports/{}",
        seg(network),
        seg(name),
        seg(spec)
    );
    let e: EndpointInfo = decode(c.delete(&uri).await?)?;
    println!("{}", format_ports(&e.ports));
    Ok(0)
}

pub async fn rename(
    c: &ApiClient,
    network: &str,
    name: &str,
    new_name: &str,
) -> Result<i32, CliError> {
    let uri = format!(
        "/v1/networks/{}/endpoints/{}/rename",
        seg(network),
        seg(name)
    );
    c.post(&uri, &serde_json::json!({ "name": new_name }))
        .await?;
    println!("{new_name}");
    Ok(0)
}

/// `netyard inspect NAME [--network NET]`: the endpoint(s) of that name as JSON.
pub async fn inspect(c: &ApiClient, name: &str, network: Option<&str>) -> Result<i32, CliError> {
    let eps: Vec<serde_json::Value> = decode(c.get("/v1/endpoints").await?)?;
    let found: Vec<serde_json::Value> = eps
        .into_iter()
        .filter(|e| e["name"] == name && network.is_none_or(|n| e["network"] == n))
        .collect();
    if found.is_empty() {
        return Err(CliError::Client(ClientError::Api(
            crate::model::ApiError {
                error: match network {
                    Some(n) => format!("no endpoint named {name:?} on network {n:?}"),
                    None => format!("no endpoint named {name:?}"),
                },
                field: Some("name".into()),
            },
            hyper::StatusCode::NOT_FOUND,
        )));
    }
    print_json(&found);
    Ok(0)
}

/// `netyard flows`: the gateways' connection trackers.
pub async fn flows(c: &ApiClient, json: bool) -> Result<i32, CliError> {
    let v = c.get("/v1/flows").await?;
    if json {
        print_json(&v);
        return Ok(0);
    }
    let mut rows = Vec::new();
    for net in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        for f in net["flows"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let s = |k: &str| match &f[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push(vec![
                net["network"].as_str().unwrap_or("").to_string(),
                s("protocol"),
                s("endpoint"),
                s("destination"),
                s("state"),
                format!("{}/{}", s("bytes_out"), s("bytes_in")),
                format!("{}s", s("age_secs")),
            ]);
        }
    }
    print!(
        "{}",
        render(
            &[
                "NETWORK",
                "PROTO",
                "ENDPOINT",
                "DESTINATION",
                "STATE",
                "BYTES OUT/IN",
                "AGE"
            ],
            &rows
        )
    );
    Ok(0)
}

/// What the daemon answers to `POST /v1/system/reset`.
#[derive(Debug, serde::Deserialize)]
struct ResetAnswer {
    networks_removed: u64,
    endpoints_removed: u64,
}

/// "1 network", "3 endpoints".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `netyard system reset`: the daemon removes every network and endpoint and its saved state.
pub async fn system(c: &ApiClient, cmd: SystemCommand) -> Result<i32, CliError> {
    match cmd {
        SystemCommand::Reset => {
            let r: ResetAnswer = decode(c.post("/v1/system/reset", &serde_json::json!({})).await?)?;
            println!(
                "removed {} and {}",
                count(r.networks_removed, "network"),
                count(r.endpoints_removed, "endpoint")
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(0, "network"), "0 networks");
        assert_eq!(count(1, "network"), "1 network");
        assert_eq!(count(3, "endpoint"), "3 endpoints");
    }
}
