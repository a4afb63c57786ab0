//! The netavark plugin (Podman 5 and 6): `netyard create|setup NETNS|teardown NETNS|info`,
//! netavark's plugin API (its `docs/plugin-API.md`).
//!
//! netavark runs the binary named after a network's driver from its plugin directories
//! (`netavark_plugin_dirs` in containers.conf), so a link `netyard` there to this binary makes
//! `podman network create -d netyard` networks netyard networks. The subcommands come first on
//! the command line, where netyard's own commands never are `create`, `setup`, `teardown` or
//! `info` (`front_door` in `lib.rs` tells them apart before clap parses anything; they are not
//! in `--help`).
//!
//! Each call is a client of the running daemon (`plugins::daemon`), found through the
//! network's option `api`, else `NETYARD_API`, else the default socket:
//! - `create`: the network config on stdin; the daemon creates the netyard network (choosing
//!   the subnet when none is given) and the config comes back completed.
//! - `setup NETNS`: creates the network from the config when the daemon lacks it (a network
//!   made elsewhere, or a daemon reset since), attaches NETNS with netavark's interface name,
//!   Podman's address and MAC, the aliases as DNS names and the port mappings published, and
//!   answers the status block.
//! - `teardown NETNS`: detaches the container's endpoint on the network (its owner key
//!   `netavark:CONTAINERID:NETWORK`, or any in NETNS); nothing to detach is
//!   success (netavark calls it again after failures, and with a namespace already gone).
//! - `info`: name, version and API version.
//!
//! Errors: `{"error": "..."}` on stdout and exit status 1, as netavark expects.

mod convert;
#[cfg(test)]
mod tests;
pub mod types;

use std::ffi::OsString;
use std::io::{IsTerminal, Read};

use axum::http::StatusCode;
use netyard_api::model::{EndpointCreate, EndpointInfo};
use netyard_cli::{ApiClient, ClientError};

use super::daemon;
use types::{Info, JsonError, Network, PluginExec, API_VERSION};

pub use convert::{
    check_existing, completed, endpoint_name, endpoint_request, network_plan, owner, publish_specs,
    status_block, NetworkPlan, OPTIONS,
};

/// Why a plugin call failed; its text is the `error` netavark shows the user.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("netyard netavark plugin: {0}")]
    Usage(String),
    /// Bad input: the JSON path of the field and why.
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("reading the JSON on stdin: {0}")]
    Stdin(std::io::Error),
    #[error("{0}")]
    Json(String),
    /// The daemon's answer does not make sense.
    #[error("{0}")]
    Daemon(String),
    #[error("{what}: {source}")]
    Client { what: String, source: ClientError },
}

fn client(what: impl Into<String>) -> impl FnOnce(ClientError) -> PluginError {
    let what = what.into();
    move |source| PluginError::Client { what, source }
}

/// Runs one subcommand (`args` starts with it); prints its answer or netavark's error JSON
/// on stdout and returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let (out, code) = match run(&args) {
        Ok(out) => (out, 0),
        Err(e) => {
            let err = JsonError {
                error: e.to_string(),
            };
            (
                serde_json::to_string(&err).unwrap_or_else(|_| "{\"error\":\"?\"}".into()),
                1,
            )
        }
    };
    // teardown answers nothing on success.
    if !out.is_empty() {
        println!("{out}");
    }
    code
}

fn run(args: &[OsString]) -> Result<String, PluginError> {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or_else(|| PluginError::Usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let netns = || {
        args.get(1)
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or_else(|| {
                PluginError::Usage(format!(
                    "{} needs the network namespace path: netyard {} NETNS < options.json",
                    args[0], args[0]
                ))
            })
    };
    let out = match args.first().map(String::as_str) {
        Some("info") => to_json(&Info {
            name: "netyard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION.into(),
        })?,
        Some("create") => {
            let net: Network = read_stdin("network config")?;
            to_json(&block_on(create(net))??)?
        }
        Some("setup") => {
            let ns = netns()?;
            let exec: PluginExec = read_stdin("network options")?;
            to_json(&block_on(setup(&ns, exec))??)?
        }
        Some("teardown") => {
            let ns = netns()?;
            let exec: PluginExec = read_stdin("network options")?;
            block_on(teardown(&ns, exec))??;
            String::new()
        }
        other => {
            return Err(PluginError::Usage(format!(
                "unknown subcommand {other:?} (create, setup, teardown, info)"
            )))
        }
    };
    Ok(out)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, PluginError> {
    serde_json::to_string(v).map_err(|e| PluginError::Json(format!("writing the answer: {e}")))
}

/// Reads and parses the JSON on stdin; an error names the JSON path of the bad field.
fn read_stdin<T: serde::de::DeserializeOwned>(what: &str) -> Result<T, PluginError> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(PluginError::Usage(format!(
            "expects the {what} as JSON on stdin (netavark runs these subcommands; see the README)"
        )));
    }
    let mut buf = Vec::new();
    stdin.read_to_end(&mut buf).map_err(PluginError::Stdin)?;
    parse(what, &buf)
}

/// Parses `buf` as `T`; an error names the JSON path of the bad field.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, buf: &[u8]) -> Result<T, PluginError> {
    let de = &mut serde_json::Deserializer::from_slice(buf);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            PluginError::Json(format!("the {what} on stdin: {inner}"))
        } else {
            PluginError::Field {
                field: path,
                reason: inner.to_string(),
            }
        }
    })
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, PluginError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginError::Usage(format!("starting the tokio runtime: {e}")))?;
    Ok(rt.block_on(f))
}

async fn create(net: Network) -> Result<Network, PluginError> {
    let plan = network_plan(&net, "")?;
    let c = ApiClient::new(daemon::api_path(plan.api.as_deref()));
    let info = daemon::ensure_network(&c, &plan.create)
        .await
        .map_err(client(format!("creating netyard network {:?}", net.name)))?;
    check_existing(&plan.create, &info, "")?;
    completed(net, &info)
}

async fn setup(netns: &str, exec: PluginExec) -> Result<types::StatusBlock, PluginError> {
    let plan = network_plan(&exec.network, "network.")?;
    let req = endpoint_request(&exec, netns, &plan.kind)?;
    let c = ApiClient::new(daemon::api_path(plan.api.as_deref()));
    let net = &exec.network.name;
    let info = daemon::ensure_network(&c, &plan.create)
        .await
        .map_err(client(format!("creating netyard network {net:?}")))?;
    check_existing(&plan.create, &info, "network.")?;
    let ep = match daemon::attach(&c, net, &req).await {
        Ok(ep) => ep,
        Err(e) => match again(&c, net, &req, &e).await {
            Some(ep) => ep,
            None => {
                return Err(PluginError::Client {
                    what: format!("attaching {netns} to netyard network {net:?}"),
                    source: e,
                })
            }
        },
    };
    status_block(&ep, exec.network.dns_enabled)
}

/// A setup repeated for an attachment that exists already (netavark retrying, a plugin call
/// whose answer was lost) gets that endpoint back: same name, owner and namespace.
async fn again(
    c: &ApiClient,
    net: &str,
    req: &EndpointCreate,
    e: &ClientError,
) -> Option<EndpointInfo> {
    if daemon::refused(e) != Some(StatusCode::CONFLICT) {
        return None;
    }
    let ep = daemon::endpoint(c, net, &req.name).await.ok().flatten()?;
    (ep.owner == req.owner && Some(&ep.netns) == req.netns.as_ref()).then_some(ep)
}

async fn teardown(netns: &str, exec: PluginExec) -> Result<(), PluginError> {
    let plan = network_plan(&exec.network, "network.")?;
    let c = ApiClient::new(daemon::api_path(plan.api.as_deref()));
    let net = &exec.network.name;
    let all: Vec<EndpointInfo> = serde_json::from_value(
        c.get("/v1/endpoints")
            .await
            .map_err(client("listing netyard's endpoints"))?,
    )
    .map_err(|e| PluginError::Daemon(format!("the daemon's endpoint list: {e}")))?;
    // Its owner key finds the attachment; the namespace path finds one made without it.
    let key = owner(&exec);
    let mine = |e: &&EndpointInfo| {
        &e.network == net && (e.owner.as_ref() == Some(&key) || e.netns == netns)
    };
    for ep in all.iter().filter(mine) {
        daemon::detach(&c, net, &ep.name)
            .await
            .map_err(client(format!("detaching {:?} from {net:?}", ep.name)))?;
    }
    Ok(())
}
