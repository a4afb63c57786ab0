//! The control API: HTTP+JSON over a Unix socket (axum). Every error is an [`ApiError`] body
//! naming the field at fault where there is one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use netyard_api::model::{ApiError, EndpointCreate, NetworkCreate};
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::error::DaemonError;
use crate::state::Daemon;

type D = State<Arc<Daemon>>;

/// An error on its way to the client.
pub struct Failure(StatusCode, ApiError);

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Failure {
        let status = match &e {
            DaemonError::Invalid { .. } | DaemonError::Config { .. } => StatusCode::BAD_REQUEST,
            DaemonError::NoNetwork(_)
            | DaemonError::NoEndpoint { .. }
            | DaemonError::NoRouter(_) => StatusCode::NOT_FOUND,
            DaemonError::Conflict { .. } => StatusCode::CONFLICT,
            DaemonError::Namespace { .. } | DaemonError::Port { .. } | DaemonError::Io { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        Failure::new(status, e.field().map(str::to_string), e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type Res<T> = Result<Json<T>, Failure>;

/// Largest request body the API reads (`413` beyond it).
pub const BODY_MAX: usize = 1 << 20;
/// How long a client has to send a request's headers (and, idle, its next request) and then
/// its body: a slow or silent client gives its connection back.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections held at once (bounds the daemon's fds); more wait in the socket's backlog until
/// one closes or times out.
pub const MAX_CONNECTIONS: usize = 256;
/// Requests handled at once; more wait for a turn once their body is in.
pub const MAX_REQUESTS: usize = 64;
/// Longest error message sent back: serde quotes bad values whole, and a reply must never
/// grow with the input.
const ERROR_MAX: usize = 512;

impl Failure {
    fn new(status: StatusCode, field: Option<String>, error: String) -> Failure {
        let error = if error.len() > ERROR_MAX {
            let mut cut = ERROR_MAX;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}... ({} bytes)", &error[..cut], error.len())
        } else {
            error
        };
        Failure(status, ApiError { field, error })
    }
}

/// Parses a JSON body; a bad one names the field by its path (`subnet`, `aliases[2]`).
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // An unknown or missing field is named in backticks by serde, at the path's parent.
        let named = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .map(str::to_string);
        let field = named.or((path != ".").then_some(path));
        Failure::new(
            StatusCode::BAD_REQUEST,
            field.clone(),
            match field {
                Some(f) => format!("invalid request body: {f}: {msg}"),
                None => format!("invalid request body: {msg}"),
            },
        )
    })
}

/// Reads the whole body before any handler runs: more than [`BODY_MAX`] bytes is `413`, a
/// body that does not arrive within [`CLIENT_TIMEOUT`] is `408`, both in the JSON error shape.
/// Then waits for one of [`MAX_REQUESTS`] turns (held until the response starts: a capture's
/// stream does not keep it).
async fn bounded_body(State(turns): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("request body larger than {BODY_MAX} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > BODY_MAX as u64) {
        return too_big();
    }
    let bytes =
        match tokio::time::timeout(CLIENT_TIMEOUT, axum::body::to_bytes(body, BODY_MAX)).await {
            Err(_) => {
                return Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    None,
                    format!("request body not received within {CLIENT_TIMEOUT:?}"),
                )
                .into_response()
            }
            Ok(Err(_)) => return too_big(),
            Ok(Ok(b)) => b,
        };
    let Ok(_turn) = turns.acquire().await else {
        return Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the daemon is stopping".into(),
        )
        .into_response();
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Serves the API on `listener` until `stop` resolves, then lets running requests finish.
/// Written on hyper rather than `axum::serve` for what that does not offer: a header read
/// timeout (which also closes idle keep-alive connections) and a bound on connections.
pub async fn serve(listener: UnixListener, app: Router, stop: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut stop => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let io = tokio::select! {
            () = &mut stop => break,
            r = listener.accept() => match r {
                Ok((io, _)) => io,
                Err(e) => {
                    // Out of fds, say: back off rather than spin.
                    tracing::warn!(error = %e, "accepting an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // The client's pid (SO_PEERCRED, in the daemon's PID namespace; 0 when the client's
        // process is not visible there), for the handlers that watch their client.
        let peer = Peer(
            io.peer_cred()
                .ok()
                .and_then(|c| c.pid())
                .and_then(|p| u32::try_from(p).ok()),
        );
        let svc =
            hyper_util::service::TowerToHyperService::new(app.clone().layer(axum::Extension(peer)));
        let mut closed = closed.clone();
        conns.spawn(async move {
            let _permit = permit;
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CLIENT_TIMEOUT);
            let conn = b.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = closed.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "API connection ended");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    while conns.join_next().await.is_some() {}
}

/// The API connection's peer process, as the kernel saw it connect.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<u32>);

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(
            "/v1/ping",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{name}",
            get(get_network)
                .patch(update_network)
                .delete(remove_network),
        )
        .route("/v1/networks/{name}/endpoints", axum::routing::post(attach))
        .route("/v1/networks/{name}/endpoints/{ep}", delete(detach))
        .route(
            "/v1/networks/{name}/endpoints/{ep}/rename",
            axum::routing::post(rename),
        )
        .route(
            "/v1/networks/{name}/endpoints/{ep}/ports",
            axum::routing::post(publish),
        )
        .route(
            "/v1/networks/{name}/endpoints/{ep}/ports/{spec}",
            delete(unpublish),
        )
        .route("/v1/networks/{name}/fdb", get(fdb).post(fdb_add))
        .route("/v1/networks/{name}/fdb/{mac}", delete(fdb_del))
        .route("/v1/networks/{name}/capture", get(capture))
        .route("/v1/links", get(links_all))
        .route("/v1/networks/{name}/links", get(links_of))
        .route(
            "/v1/networks/{name}/links/{port}",
            get(link_one).post(link_set).delete(link_reset),
        )
        .route(
            "/v1/networks/{name}/links/{port}/down",
            axum::routing::post(link_down),
        )
        .route(
            "/v1/networks/{name}/links/{port}/up",
            axum::routing::post(link_up),
        )
        .route("/v1/routers", get(list_routers).post(create_router))
        .route("/v1/routers/{name}", get(get_router).delete(remove_router))
        .route("/v1/routers/{name}/routes", axum::routing::post(route_add))
        .route(
            "/v1/routers/{name}/interfaces",
            axum::routing::post(router_connect),
        )
        .route(
            "/v1/routers/{name}/interfaces/{network}",
            delete(router_disconnect),
        )
        .route("/v1/routers/{name}/routes/{prefix}", delete(route_del))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/joins", axum::routing::post(join))
        .route("/v1/joins/{name}", delete(unjoin))
        .route("/v1/stats", get(stats))
        .route("/v1/flows", get(flows))
        .route("/v1/dns", get(dns_counters))
        .route("/metrics", get(metrics))
        .route("/v1/system/reset", axum::routing::post(reset))
        // Nodes and labs (`crate::lab`).
        .route("/v1/nodes", get(nodes).post(node_create))
        .route("/v1/nodes/{name}", get(node_one).delete(node_remove))
        .route("/v1/nodes/{name}/routes", axum::routing::post(node_route))
        .route("/v1/labs", get(labs))
        .route(
            "/v1/labs/{name}",
            axum::routing::post(lab_put).delete(lab_remove),
        )
        .route("/v1/subnets/free", axum::routing::post(free_subnet))
        .fallback(|| async {
            Failure(
                StatusCode::NOT_FOUND,
                ApiError {
                    error: "no such API path".into(),
                    field: None,
                },
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Semaphore::new(MAX_REQUESTS)),
            bounded_body,
        ))
        .with_state(d)
}

/// Prometheus's text format (`crate::metrics`).
async fn metrics(State(d): D) -> impl IntoResponse {
    crate::metrics::answer(&d).await
}

async fn reset(State(d): D) -> Res<netyard_api::model::ResetReport> {
    let r = d.reset().await?;
    d.labs().remove_all().await;
    Ok(Json(r))
}

impl From<crate::lab::LabError> for Failure {
    fn from(e: crate::lab::LabError) -> Failure {
        use crate::lab::LabError as E;
        let status = match &e {
            E::Invalid { .. } => StatusCode::BAD_REQUEST,
            E::NoNode(_) | E::NoLab(_) => StatusCode::NOT_FOUND,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Start { .. } | E::Route { .. } | E::Io { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Failure::new(status, e.field().map(str::to_string), e.to_string())
    }
}

async fn nodes(State(d): D) -> Res<Vec<netyard_api::lab::NodeInfo>> {
    Ok(Json(d.labs().nodes()))
}

async fn node_one(State(d): D, Path(name): Path<String>) -> Res<netyard_api::lab::NodeInfo> {
    Ok(Json(d.labs().node(&name)?))
}

async fn node_create(State(d): D, body: Bytes) -> Res<netyard_api::lab::NodeInfo> {
    let req: netyard_api::lab::NodeCreate = parse_body(&body)?;
    Ok(Json(d.labs().create_node(req).await?))
}

async fn node_remove(State(d): D, Path(name): Path<String>) -> Res<netyard_api::lab::NodeInfo> {
    Ok(Json(d.labs().remove_node(&name).await?))
}

async fn node_route(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::lab::NodeRoute> {
    let req: netyard_api::lab::NodeRoute = parse_body(&body)?;
    d.labs().add_route(&name, &req).await?;
    Ok(Json(req))
}

async fn labs(State(d): D) -> Res<Vec<netyard_api::lab::LabRecord>> {
    Ok(Json(d.labs().labs()))
}

async fn lab_put(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::lab::LabRecord> {
    let rec: netyard_api::lab::LabRecord = parse_body(&body)?;
    Ok(Json(d.labs().put_lab(&name, rec)?))
}

async fn lab_remove(State(d): D, Path(name): Path<String>) -> Res<netyard_api::lab::LabRecord> {
    Ok(Json(d.labs().remove_lab(&name)?))
}

async fn free_subnet(State(d): D, body: Bytes) -> Res<netyard_api::model::FreeSubnet> {
    let req: netyard_api::model::FreeSubnetRequest = parse_body(&body)?;
    let mut exclude = Vec::new();
    for (i, s) in req.exclude.iter().enumerate() {
        let n: ipnet::IpNet = s.parse().map_err(|_| {
            DaemonError::invalid(
                format!("exclude[{i}]"),
                format!("{s:?} is not a CIDR such as 10.1.0.0/24"),
            )
        })?;
        exclude.push(n);
    }
    let subnet = if req.ipv6 {
        d.free_subnet6(&exclude).await?.to_string()
    } else {
        d.free_subnet(&exclude).await?.to_string()
    };
    Ok(Json(netyard_api::model::FreeSubnet { subnet }))
}

async fn list_networks(State(d): D) -> Res<Vec<netyard_api::model::NetworkInfo>> {
    Ok(Json(d.networks().await))
}

async fn create_network(State(d): D, body: Bytes) -> Res<netyard_api::model::NetworkInfo> {
    let req: NetworkCreate = parse_body(&body)?;
    Ok(Json(d.create_network(req).await?))
}

async fn get_network(State(d): D, Path(name): Path<String>) -> Res<serde_json::Value> {
    let n = d.network(&name).await?;
    let eps: Vec<_> = d
        .endpoints()
        .await
        .into_iter()
        .filter(|e| e.network == name)
        .collect();
    let mut v = serde_json::to_value(n).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "endpoint_details".into(),
            serde_json::to_value(eps).unwrap_or_default(),
        );
    }
    Ok(Json(v))
}

async fn remove_network(State(d): D, Path(name): Path<String>) -> Res<serde_json::Value> {
    d.remove_network(&name).await?;
    Ok(Json(serde_json::json!({"removed": name})))
}

async fn attach(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::model::EndpointInfo> {
    let mut req: EndpointCreate = parse_body(&body)?;
    if let Some(n) = &req.network {
        if n != &name {
            return Err(DaemonError::invalid(
                "network",
                format!("body names network {n:?} but the path names {name:?}"),
            )
            .into());
        }
    }
    req.network = Some(name.clone());
    Ok(Json(d.attach(&name, req).await?))
}

/// `run --network container:NAME` registers itself while it runs (`crate::joins`); its
/// process is the connection's peer.
async fn join(
    State(d): D,
    peer: Option<axum::Extension<Peer>>,
    body: Bytes,
) -> Res<netyard_api::model::JoinInfo> {
    let req: netyard_api::model::JoinCreate = parse_body(&body)?;
    let pid = peer.and_then(|axum::Extension(Peer(p))| p);
    Ok(Json(d.join(req, pid).await?))
}

async fn unjoin(State(d): D, Path(name): Path<String>) -> Res<serde_json::Value> {
    d.unjoin(&name)?;
    Ok(Json(serde_json::json!({"removed": name})))
}

async fn detach(State(d): D, Path((name, ep)): Path<(String, String)>) -> Res<serde_json::Value> {
    d.detach(&name, &ep).await?;
    Ok(Json(serde_json::json!({"detached": ep})))
}

/// Body of `POST .../endpoints/{ep}/rename`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(d): D,
    Path((name, ep)): Path<(String, String)>,
    body: Bytes,
) -> Res<netyard_api::model::EndpointInfo> {
    let b: RenameBody = parse_body(&body)?;
    Ok(Json(d.rename(&name, &ep, &b.name).await?))
}

/// `POST .../endpoints/{ep}/ports` with `{"publish": [SPEC, ...]}`: all or nothing.
async fn publish(
    State(d): D,
    Path((name, ep)): Path<(String, String)>,
    body: Bytes,
) -> Res<netyard_api::model::EndpointInfo> {
    let b: netyard_api::model::PublishRequest = parse_body(&body)?;
    Ok(Json(d.publish(&name, &ep, &b.publish).await?))
}

/// `DELETE .../endpoints/{ep}/ports/{spec}` (the SPEC percent-encoded): stops the mappings
/// the SPEC names.
async fn unpublish(
    State(d): D,
    Path((name, ep, spec)): Path<(String, String, String)>,
) -> Res<netyard_api::model::EndpointInfo> {
    Ok(Json(d.unpublish(&name, &ep, &spec).await?))
}

async fn fdb(State(d): D, Path(name): Path<String>) -> Res<Vec<netyard_api::model::FdbRow>> {
    Ok(Json(d.fdb(&name).await?))
}

async fn fdb_add(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::model::FdbRow> {
    let req: netyard_api::model::FdbAdd = parse_body(&body)?;
    Ok(Json(d.fdb_add(&name, req).await?))
}

async fn fdb_del(State(d): D, Path((name, mac)): Path<(String, String)>) -> Res<serde_json::Value> {
    d.fdb_del(&name, &mac).await?;
    Ok(Json(serde_json::json!({"removed": mac})))
}

async fn list_routers(State(d): D) -> Res<Vec<netyard_api::router::RouterInfo>> {
    Ok(Json(d.routers().await))
}

/// `PATCH /v1/networks/{name}` with a [`netyard_api::model::NetworkUpdate`].
async fn update_network(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::model::NetworkInfo> {
    let req: netyard_api::model::NetworkUpdate = parse_body(&body)?;
    Ok(Json(d.update_network(&name, req).await?))
}

async fn create_router(State(d): D, body: Bytes) -> Res<netyard_api::router::RouterInfo> {
    let req: netyard_api::router::RouterCreate = parse_body(&body)?;
    Ok(Json(d.create_router(req).await?))
}

async fn get_router(State(d): D, Path(name): Path<String>) -> Res<netyard_api::router::RouterInfo> {
    Ok(Json(d.router(&name).await?))
}

async fn remove_router(State(d): D, Path(name): Path<String>) -> Res<serde_json::Value> {
    d.remove_router(&name).await?;
    Ok(Json(serde_json::json!({"removed": name})))
}

/// `POST /v1/routers/{name}/routes` with a [`netyard_api::router::RouteReq`].
async fn route_add(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::router::RouterInfo> {
    let req: netyard_api::router::RouteReq = parse_body(&body)?;
    Ok(Json(d.route_add(&name, req).await?))
}

/// `DELETE /v1/routers/{name}/routes/{prefix}` (the prefix's `/` percent-encoded).
async fn route_del(
    State(d): D,
    Path((name, prefix)): Path<(String, String)>,
) -> Res<netyard_api::router::RouterInfo> {
    Ok(Json(d.route_del(&name, &prefix).await?))
}

/// `POST /v1/routers/{name}/interfaces` with a [`netyard_api::router::RouterInterfaceReq`]
/// (`router connect`).
async fn router_connect(
    State(d): D,
    Path(name): Path<String>,
    body: Bytes,
) -> Res<netyard_api::router::RouterInfo> {
    let req: netyard_api::router::RouterInterfaceReq = parse_body(&body)?;
    Ok(Json(d.connect_router(&name, req).await?))
}

/// `DELETE /v1/routers/{name}/interfaces/{network}` (`router disconnect`).
async fn router_disconnect(
    State(d): D,
    Path((name, network)): Path<(String, String)>,
) -> Res<netyard_api::router::RouterInfo> {
    Ok(Json(d.disconnect_router(&name, &network).await?))
}

async fn links_all(State(d): D) -> Res<Vec<netyard_api::model::LinkInfo>> {
    Ok(Json(d.links(None, None).await?))
}

async fn links_of(State(d): D, Path(name): Path<String>) -> Res<Vec<netyard_api::model::LinkInfo>> {
    Ok(Json(d.links(Some(&name), None).await?))
}

async fn link_one(
    State(d): D,
    Path((name, port)): Path<(String, String)>,
) -> Res<Vec<netyard_api::model::LinkInfo>> {
    Ok(Json(d.links(Some(&name), Some(&port)).await?))
}

/// `POST .../links/{port}` with a [`netyard_api::model::LinkSettings`]: `link set`.
async fn link_set(
    State(d): D,
    Path((name, port)): Path<(String, String)>,
    body: Bytes,
) -> Res<netyard_api::model::LinkInfo> {
    let req: netyard_api::model::LinkSettings = parse_body(&body)?;
    Ok(Json(d.link_set(&name, &port, &req).await?))
}

/// `DELETE .../links/{port}`: `link reset`.
async fn link_reset(
    State(d): D,
    Path((name, port)): Path<(String, String)>,
) -> Res<netyard_api::model::LinkInfo> {
    Ok(Json(d.link_reset(&name, &port).await?))
}

async fn link_down(
    State(d): D,
    Path((name, port)): Path<(String, String)>,
) -> Res<netyard_api::model::LinkInfo> {
    Ok(Json(d.link_carrier(&name, &port, false).await?))
}

async fn link_up(
    State(d): D,
    Path((name, port)): Path<(String, String)>,
) -> Res<netyard_api::model::LinkInfo> {
    Ok(Json(d.link_carrier(&name, &port, true).await?))
}

async fn endpoints(State(d): D) -> Res<Vec<netyard_api::model::EndpointInfo>> {
    Ok(Json(d.endpoints().await))
}

async fn flows(State(d): D) -> Res<serde_json::Value> {
    Ok(Json(d.flows().await))
}

/// The embedded resolver's counters (`netyard top` takes its query rate from two of these).
async fn dns_counters(State(d): D) -> Res<netyard_dns::CountersSnapshot> {
    d.dns().sync_kernel_drops().await;
    Ok(Json(d.dns().resolver().counters().snapshot()))
}

async fn stats(State(d): D) -> Res<Vec<netyard_api::model::PortStatsRow>> {
    Ok(Json(d.stats().await))
}

/// Query of `GET /v1/networks/{name}/capture`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureQuery {
    endpoint: Option<String>,
    /// Stop after this many frames.
    count: Option<u64>,
    /// Stop after this many seconds.
    seconds: Option<f64>,
}

/// Streams a pcap file of the network's (or one endpoint's) frames until `count` frames,
/// `seconds`, or the client going away.
async fn capture(
    State(d): D,
    Path(name): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Response, Failure> {
    let q: CaptureQuery = serde_urlencoded_lite(q.as_deref().unwrap_or(""))?;
    if let Some(s) = q.seconds {
        if !(s > 0.0 && s <= 86_400.0) {
            return Err(
                DaemonError::invalid("seconds", format!("{s} out of range (0 to 86400]")).into(),
            );
        }
    }
    let (guard, rx) = d.capture(&name, q.endpoint.as_deref()).await?;
    let deadline = q
        .seconds
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s));
    struct St {
        guard: crate::state::CaptureGuard,
        rx: tokio::sync::mpsc::Receiver<netyard_switch::capture::CapturedFrame>,
        left: Option<u64>,
        deadline: Option<tokio::time::Instant>,
        header: bool,
    }
    let st = St {
        guard,
        rx,
        left: q.count,
        deadline,
        header: false,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if !st.header {
            st.header = true;
            let h = Bytes::copy_from_slice(&netyard_switch::capture::pcap_header());
            return Some((Ok::<Bytes, std::io::Error>(h), st));
        }
        if st.left == Some(0) {
            tracing::debug!(dropped = st.guard.dropped(), "capture finished");
            return None;
        }
        let next = match st.deadline {
            Some(d) => tokio::time::timeout_at(d, st.rx.recv())
                .await
                .ok()
                .flatten(),
            None => st.rx.recv().await,
        };
        let f = next?;
        if let Some(l) = st.left.as_mut() {
            *l -= 1;
        }
        let mut out = Vec::with_capacity(f.data.len() + 16);
        netyard_switch::capture::pcap_record(&f, &mut out);
        Some((Ok(Bytes::from(out)), st))
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.tcpdump.pcap",
        )],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Parses `a=b&c=d` into a struct through serde_json (values that look like numbers become
/// numbers), naming the bad field on error.
fn serde_urlencoded_lite<T: DeserializeOwned>(q: &str) -> Result<T, Failure> {
    let mut m = serde_json::Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let val = v
            .parse::<u64>()
            .map(serde_json::Value::from)
            // NaN and infinities would become JSON null (no limit at all): keep them as text,
            // so the field's type check refuses them by name.
            .or_else(|_| match v.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(serde_json::Value::from(f)),
                _ => Err(()),
            })
            .unwrap_or(serde_json::Value::String(v));
        m.insert(percent_decode(k), val);
    }
    let body = serde_json::to_vec(&m).unwrap_or_default();
    parse_body(&Bytes::from(body))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
