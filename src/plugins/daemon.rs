//! What the runtime plugins share: finding the daemon, making sure a network exists (runtimes
//! create networks lazily and concurrently), attaching, and detaching idempotently (a runtime
//! repeats DEL/teardown/Leave after a crash and expects success).

use std::path::PathBuf;

use axum::http::StatusCode;
use netyard_api::model::{
    EndpointCreate, EndpointInfo, FreeSubnet, FreeSubnetRequest, NetworkCreate, NetworkInfo,
    PublishRequest,
};
use netyard_cli::commands::seg;
use netyard_cli::{default_api_path, ApiClient, ClientError};

/// The daemon's socket: the plugin configuration's `api` when given, else `NETYARD_API`, else
/// the CLI's default (the same rule as `netyard --api`).
pub fn api_path(configured: Option<&str>) -> PathBuf {
    if let Some(p) = configured.filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("NETYARD_API") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_api_path(),
    }
}

/// The daemon refused the request (the status tells which kind of refusal).
pub fn refused(e: &ClientError) -> Option<StatusCode> {
    match e {
        ClientError::Api(_, status) => Some(*status),
        _ => None,
    }
}

fn info<T: serde::de::DeserializeOwned>(
    c: &ApiClient,
    v: serde_json::Value,
) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol {
        path: c.path().to_path_buf(),
        reason: format!("unexpected answer: {e}"),
    })
}

/// The network named `name`, or `None` when the daemon has none by that name.
pub async fn network(c: &ApiClient, name: &str) -> Result<Option<NetworkInfo>, ClientError> {
    match c.get(&format!("/v1/networks/{name}")).await {
        Ok(v) => info(c, v).map(Some),
        Err(e) if refused(&e) == Some(StatusCode::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The network `req.name`, created from `req` when it does not exist yet. An existing network
/// is used as it is (its subnet and options win: the runtime may have created it with other
/// defaults); a concurrent creation by another plugin call is not an error.
pub async fn ensure_network(
    c: &ApiClient,
    req: &NetworkCreate,
) -> Result<NetworkInfo, ClientError> {
    if let Some(n) = network(c, &req.name).await? {
        return Ok(n);
    }
    match c.post("/v1/networks", req).await {
        Ok(v) => info(c, v),
        Err(e) if refused(&e) == Some(StatusCode::CONFLICT) => match network(c, &req.name).await? {
            Some(n) => Ok(n),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Attaches `req` to `network`.
pub async fn attach(
    c: &ApiClient,
    network: &str,
    req: &EndpointCreate,
) -> Result<EndpointInfo, ClientError> {
    let v = c
        .post(&format!("/v1/networks/{network}/endpoints"), req)
        .await?;
    info(c, v)
}

/// The endpoint `name` on `network`, if attached.
pub async fn endpoint(
    c: &ApiClient,
    network: &str,
    name: &str,
) -> Result<Option<EndpointInfo>, ClientError> {
    let all: Vec<EndpointInfo> = info(c, c.get("/v1/endpoints").await?)?;
    Ok(all
        .into_iter()
        .find(|e| e.network == network && e.name == name))
}

/// Detaches `name` from `network`; an endpoint or network that is already gone is success
/// (`Ok(false)`).
pub async fn detach(c: &ApiClient, network: &str, name: &str) -> Result<bool, ClientError> {
    match c
        .delete(&format!("/v1/networks/{network}/endpoints/{name}"))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if refused(&e) == Some(StatusCode::NOT_FOUND) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `network`; one that is already gone is success (`Ok(false)`).
pub async fn remove_network(c: &ApiClient, network: &str) -> Result<bool, ClientError> {
    match c.delete(&format!("/v1/networks/{network}")).await {
        Ok(_) => Ok(true),
        Err(e) if refused(&e) == Some(StatusCode::NOT_FOUND) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The subnet a network created now without one would get (with `ipv6`, the IPv6 prefix a
/// `--ipv6` network would), avoiding `exclude` (pools a runtime's IPAM handed out that are no
/// network yet).
pub async fn free_subnet(
    c: &ApiClient,
    exclude: &[String],
    ipv6: bool,
) -> Result<String, ClientError> {
    let req = FreeSubnetRequest {
        exclude: exclude.to_vec(),
        ipv6,
    };
    let v: FreeSubnet = info(c, c.post("/v1/subnets/free", &req).await?)?;
    Ok(v.subnet)
}

/// Publishes more ports of an attached endpoint (Docker's SPECs; all or nothing).
pub async fn publish(
    c: &ApiClient,
    network: &str,
    name: &str,
    specs: &[String],
) -> Result<EndpointInfo, ClientError> {
    let req = PublishRequest {
        publish: specs.to_vec(),
    };
    let uri = format!(
        "/v1/networks/{}/endpoints/{}/ports",
        seg(network),
        seg(name)
    );
    info(c, c.post(&uri, &req).await?)
}

/// Stops publishing the ports `spec` names; an endpoint, network or port already gone is
/// success (`Ok(false)`).
pub async fn unpublish(
    c: &ApiClient,
    network: &str,
    name: &str,
    spec: &str,
) -> Result<bool, ClientError> {
    let uri = format!(
        "/v1/networks/{}/endpoints/{}/ports/{}",
        seg(network),
        seg(name),
        seg(spec)
    );
    match c.delete(&uri).await {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                refused(&e),
                Some(StatusCode::NOT_FOUND) | Some(StatusCode::CONFLICT)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
