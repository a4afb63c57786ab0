//! The control API: HTTP+JSON over a Unix socket (axum). Every error is an [`ApiError`] body
//! naming the field at fault where there is one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use netyard_cli::model::{ApiError, EndpointCreate, NetworkCreate};
use serde::de::DeserializeOwned;

use crate::error::DaemonError;
use crate::state::Daemon;

type D = State<Arc<Daemon>>;

/// An error on its way to the client.
pub struct Failure(StatusCode, ApiError);

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Failure {
        let status = match &e {
            DaemonError::Invalid { .. } | DaemonError::Config { .. } => StatusCode::BAD_REQUEST,
            DaemonError::NoNetwork(_) | DaemonError::NoEndpoint { .. } => StatusCode::NOT_FOUND,
            DaemonError::Conflict { .. } => StatusCode::CONFLICT,
            DaemonError::Namespace { .. } | DaemonError::Port { .. } | DaemonError::Io { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        Failure(
            status,
            ApiError {
                field: e.field().map(str::to_string),
                error: e.to_string(),
            },
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type Res<T> = Result<Json<T>, Failure>;

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in backticks: surface it as `field` too.
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .map(str::to_string);
        Failure(
            StatusCode::BAD_REQUEST,
            ApiError {
                error: format!("invalid request body: {msg}"),
                field,
            },
        )
    })
}

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(
            "/v1/ping",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{name}",
            get(get_network).delete(remove_network),
        )
        .route("/v1/networks/{name}/endpoints", axum::routing::post(attach))
        .route("/v1/networks/{name}/endpoints/{ep}", delete(detach))
        .route("/v1/networks/{name}/fdb", get(fdb))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/stats", get(stats))
        .fallback(|| async {
            Failure(
                StatusCode::NOT_FOUND,
                ApiError {
                    error: "no such API path".into(),
                    field: None,
                },
            )
        })
        .with_state(d)
}

async fn list_networks(State(d): D) -> Res<Vec<netyard_cli::model::NetworkInfo>> {
    Ok(Json(d.networks().await))
}

async fn create_network(State(d): D, body: Bytes) -> Res<netyard_cli::model::NetworkInfo> {
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
) -> Res<netyard_cli::model::EndpointInfo> {
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

async fn detach(State(d): D, Path((name, ep)): Path<(String, String)>) -> Res<serde_json::Value> {
    d.detach(&name, &ep).await?;
    Ok(Json(serde_json::json!({"detached": ep})))
}

async fn fdb(State(d): D, Path(name): Path<String>) -> Res<Vec<netyard_cli::model::FdbRow>> {
    Ok(Json(d.fdb(&name).await?))
}

async fn endpoints(State(d): D) -> Res<Vec<netyard_cli::model::EndpointInfo>> {
    Ok(Json(d.endpoints().await))
}

async fn stats(State(d): D) -> Res<Vec<netyard_cli::model::PortStatsRow>> {
    Ok(Json(d.stats().await))
}
