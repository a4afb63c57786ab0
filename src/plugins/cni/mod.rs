//! The CNI plugin: `netyard` run with `CNI_COMMAND` set (a conflist entry `"type":
//! "netyard"`, the binary or a link to it in the runtime's CNI plugin directory). A client of
//! the running daemon (the configuration's `api`, else `NETYARD_API`, else the default
//! socket), which owns the state: the plugin keeps none.
//!
//! - ADD makes sure the configuration's `network` exists (created from its `subnet` and
//!   options on first use), attaches `CNI_NETNS` as `CNI_IFNAME` under the name
//!   `K8S_POD_NAME` or the container id ([`config::endpoint_name`]) with the runtime's `ips`,
//!   `mac`, `aliases` and `portMappings`, and tags the endpoint with the attachment's key
//!   (`owner`: `cni:CONTAINERID:IFNAME`, the spec's primary key), by which DEL, CHECK and GC
//!   find it again whatever its name.
//! - DEL detaches that endpoint; a missing network, endpoint or namespace is success.
//! - CHECK compares `prevResult` with the daemon's endpoint and the namespace (interface up
//!   with its MAC, address, routes via the gateway).
//! - VERSION; STATUS (1.1.0: is the daemon there?) and GC (1.1.0: detaches this network's
//!   CNI endpoints whose attachment is not in `cni.dev/valid-attachments`).
//!
//! Errors are the spec's error JSON on stdout with exit status 1 ([`error::CniError`]).

pub mod config;
pub mod error;
pub mod result;

#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Read, Write};

use netyard_api::model::{EndpointCreate, EndpointInfo, NetworkInfo};
use netyard_cli::ApiClient;
use serde_json::Value;

use self::config::{Command, Env, NetConf, Version};
use self::error::{CniError, Code};
use self::result::{Attachment, Dns, Observed};
use super::daemon;
use crate::netns::{self, NsOpenRequest, NsTarget};

/// Runs one CNI command (arguments are not used: CNI passes everything in the environment and
/// on stdin); returns the exit status.
pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
    let mut stdin = Vec::new();
    // A terminal (someone trying `CNI_COMMAND=VERSION netyard` by hand) gives no
    // configuration rather than a wait for end of input.
    let read = if std::io::stdin().is_terminal() {
        Ok(0)
    } else {
        std::io::stdin().read_to_end(&mut stdin)
    };
    let env = config::parse_env(|k| std::env::var(k).ok());
    let version = config::version_asked(&stdin);
    let outcome = match (read, env) {
        (Err(e), _) => Err(CniError::new(
            Code::IoFailure,
            "reading stdin",
            e.to_string(),
        )),
        (_, Err(e)) => Err(e),
        (Ok(_), Ok(env)) => run(&env, &stdin),
    };
    let (text, status) = match outcome {
        Ok(Some(v)) => (v.to_string(), 0),
        Ok(None) => (String::new(), 0),
        Err(e) => (e.to_json(version.as_str()).to_string(), 1),
    };
    let mut out = std::io::stdout().lock();
    if !text.is_empty() {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
    status
}

fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(serde_json::json!({
            "cniVersion": config::version_asked(stdin).as_str(),
            "supportedVersions": config::SUPPORTED,
        })));
    }
    let conf = config::parse_conf(stdin)?;
    let need = |v: Version, what: &str| {
        if conf.version < v {
            Err(CniError::new(
                Code::IncompatibleVersion,
                format!("{what} needs cniVersion {} or later", v.as_str()),
                format!("the configuration says {}", conf.version.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    match env.command {
        Command::Check => need(Version::V040, "CHECK")?,
        Command::Status => need(Version::V110, "STATUS")?,
        Command::Gc => need(Version::V110, "GC")?,
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                Code::IoFailure,
                "starting the plugin's runtime",
                e.to_string(),
            )
        })?;
    let client = ApiClient::new(daemon::api_path(conf.api.as_deref()));
    rt.block_on(async {
        match env.command {
            Command::Add => add(&client, env, &conf).await.map(Some),
            Command::Del => del(&client, env, &conf).await.map(|()| None),
            Command::Check => check(&client, env, &conf).await.map(|()| None),
            Command::Status => status(&client).await.map(|()| None),
            Command::Gc => gc(&client, &conf).await.map(|()| None),
            Command::Version => Ok(None),
        }
    })
}

/// The network's endpoints that carry an owner key.
async fn endpoints(
    c: &ApiClient,
    what: &str,
    network: &str,
) -> Result<Vec<EndpointInfo>, CniError> {
    let v = c
        .get("/v1/endpoints")
        .await
        .map_err(|e| CniError::from_daemon(what, &e))?;
    let all: Vec<EndpointInfo> = serde_json::from_value(v).map_err(|e| {
        CniError::new(
            Code::IoFailure,
            format!("{what}: the daemon's endpoint list"),
            e.to_string(),
        )
    })?;
    Ok(all.into_iter().filter(|e| e.network == network).collect())
}

fn find<'a>(eps: &'a [EndpointInfo], owner: &str) -> Option<&'a EndpointInfo> {
    eps.iter().find(|e| e.owner.as_deref() == Some(owner))
}

async fn add(c: &ApiClient, env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let netns = env.netns.clone().unwrap_or_default();
    // Checked here too, so a namespace gone before ADD is "unknown container" whatever the
    // daemon says (it opens the path in its own mount namespace).
    if let Err(e) = std::fs::metadata(&netns) {
        return Err(CniError::new(
            Code::UnknownContainer,
            "ADD: invalid CNI_NETNS",
            format!("{netns}: {e}"),
        ));
    }
    let net = daemon::ensure_network(c, &conf.network)
        .await
        .map_err(|e| CniError::from_daemon("ADD", &e))?;
    let owner = config::owner_key(&env.container_id, &env.ifname);
    let eps = endpoints(c, "ADD", &net.name).await?;
    // The runtime must not ADD twice; if it does (a retry after a lost answer), the same
    // attachment answers the same.
    if let Some(ep) = find(&eps, &owner) {
        return Ok(result(conf, &net, ep, &netns).await);
    }
    let primary = config::endpoint_name(env.pod_name.as_deref(), &env.container_id);
    let mut names = vec![primary.clone(), config::fallback_name(&env.container_id)];
    if eps.iter().any(|e| e.name == primary) {
        names.remove(0);
    }
    let mut last = None;
    for name in names {
        let req = EndpointCreate {
            name,
            netns: Some(netns.clone()),
            ifname: Some(env.ifname.clone()),
            ip: conf.runtime.ip.map(|ip| ip.to_string()),
            ip6: conf.runtime.ip6.map(|ip| ip.to_string()),
            mac: conf.runtime.mac.clone(),
            kind: conf.kind.clone(),
            aliases: conf.runtime.aliases.clone(),
            publish: conf.runtime.publish.clone(),
            owner: Some(owner.clone()),
            ..EndpointCreate::default()
        };
        match daemon::attach(c, &net.name, &req).await {
            Ok(ep) => return Ok(result(conf, &net, &ep, &netns).await),
            // Taken meanwhile by another container of the same name: the id's name.
            Err(e)
                if daemon::refused(&e) == Some(axum::http::StatusCode::CONFLICT)
                    && matches!(&e, netyard_cli::ClientError::Api(a, _) if a.field.as_deref() == Some("name")) =>
            {
                last = Some(e)
            }
            Err(e) => return Err(CniError::from_daemon("ADD", &e)),
        }
    }
    Err(match last {
        Some(e) => CniError::from_daemon("ADD", &e),
        None => CniError::new(Code::Refused, "ADD: no endpoint name left", ""),
    })
}

/// ADD's result for endpoint `ep`: the default route is reported when the namespace has it
/// through this interface (a namespace attached to another network first keeps that one's);
/// on a dual-stack network the IPv6 address too, with `::/0` via the IPv6 gateway beside the
/// IPv4 default route unless the network is internal (the gateway's Router Advertisements
/// give it, through the gateway's link-local address, as they arrive).
async fn result(conf: &NetConf, net: &NetworkInfo, ep: &EndpointInfo, netns: &str) -> Value {
    let seen = observe(netns, &ep.ifname).await.ok();
    let gateway = ep
        .gateway
        .parse()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let default_route = seen.as_ref().is_none_or(|s| {
        s.routes
            .iter()
            .any(|(d, g)| d == "0.0.0.0/0" && *g == Some(std::net::IpAddr::V4(gateway)))
    });
    let a = Attachment {
        ifname: ep.ifname.clone(),
        mac: ep.mac.clone(),
        sandbox: netns.to_string(),
        mtu: net.mtu,
        ip: ep.ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        prefix_len: ep.prefix_len,
        gateway,
        default_route,
        ip6: ep
            .ip6
            .as_deref()
            .and_then(|a| a.parse().ok())
            .zip(ep.prefix_len6),
        gateway6: ep.gateway6.as_deref().and_then(|g| g.parse().ok()),
        default_route6: default_route && !net.internal,
        dns: Dns::from_resolv_conf(&ep.resolv_conf),
    };
    result::build(conf.version, &a, conf.prev_result.as_ref())
}

/// The interface `ifname` of namespace `netns` as the kernel has it.
async fn observe(netns: &str, ifname: &str) -> Result<Observed, CniError> {
    let io = |e: netns::NetnsError| {
        CniError::new(
            Code::IoFailure,
            format!("reading {ifname} in {netns}"),
            e.to_string(),
        )
    };
    let target = NsTarget::from_paths(netns, None)
        .map_err(|e| CniError::new(Code::UnknownContainer, "invalid CNI_NETNS", e.to_string()))?;
    let fds = netns::open_in_ns(&target, NsOpenRequest::netlink_only())
        .await
        .map_err(io)?;
    let handle = fds.netlink.into_handle().map_err(io)?;
    let Some(v) = netns::view_link(&handle, ifname).await.map_err(io)? else {
        return Ok(Observed::default());
    };
    Ok(Observed {
        present: true,
        up: v.up,
        mac: v
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        addrs: v.addrs,
        routes: v.routes.iter().map(|(d, g)| (d.to_string(), *g)).collect(),
    })
}

async fn del(c: &ApiClient, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let owner = config::owner_key(&env.container_id, &env.ifname);
    let eps = endpoints(c, "DEL", &conf.network.name).await?;
    if let Some(ep) = find(&eps, &owner) {
        daemon::detach(c, &conf.network.name, &ep.name)
            .await
            .map_err(|e| CniError::from_daemon("DEL", &e))?;
    }
    Ok(())
}

async fn check(c: &ApiClient, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("prevResult", "missing: CHECK compares ADD's result"))?;
    let owner = config::owner_key(&env.container_id, &env.ifname);
    let eps = endpoints(c, "CHECK", &conf.network.name).await?;
    let ep = find(&eps, &owner).ok_or_else(|| {
        CniError::new(
            Code::CheckFailed,
            "CHECK: the container is not attached",
            format!("network {:?} has no endpoint of {owner}", conf.network.name),
        )
    })?;
    let netns = env.netns.clone().unwrap_or_default();
    let seen = observe(&netns, &env.ifname).await?;
    let ips: Vec<&str> = std::iter::once(ep.ip.as_str())
        .chain(ep.ip6.as_deref())
        .collect();
    let problems = result::check(prev, &env.ifname, &netns, &ips, &ep.mac, &seen);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            Code::CheckFailed,
            format!("CHECK: endpoint {} is not as ADD left it", ep.name),
            problems.join("; "),
        ))
    }
}

async fn status(c: &ApiClient) -> Result<(), CniError> {
    c.get("/v1/networks").await.map(drop).map_err(|e| {
        CniError::new(
            Code::NotAvailable,
            "the netyard daemon is not available",
            e.to_string(),
        )
    })
}

async fn gc(c: &ApiClient, conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let eps = endpoints(c, "GC", &conf.network.name).await?;
    let mut failed = Vec::new();
    for ep in &eps {
        let Some((cid, ifname)) = ep.owner.as_deref().and_then(config::parse_owner) else {
            continue;
        };
        if valid.iter().any(|(c, i)| c == cid && i == ifname) {
            continue;
        }
        if let Err(e) = daemon::detach(c, &conf.network.name, &ep.name).await {
            failed.push(format!("{}: {e}", ep.name));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            Code::TryAgainLater,
            "GC: some stale endpoints could not be detached",
            failed.join("; "),
        ))
    }
}
