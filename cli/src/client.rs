//! A small HTTP/1.1 client over the daemon's Unix socket (hyper).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::model::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon is not there.
    #[error("cannot reach the netyard daemon at {path}: {source} (is `netyard daemon` running? set --api or NETYARD_API)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the daemon at {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    /// The daemon refused the request.
    #[error("{}", .0.error)]
    Api(ApiError, StatusCode),
}

/// One connection per request: the CLI makes a handful of calls.
#[derive(Debug, Clone)]
pub struct ApiClient {
    path: PathBuf,
}

impl ApiClient {
    pub fn new(path: impl Into<PathBuf>) -> ApiClient {
        ApiClient { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn get(&self, uri: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, uri, None).await
    }

    pub async fn delete(&self, uri: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::DELETE, uri, None).await
    }

    pub async fn post<T: serde::Serialize>(
        &self,
        uri: &str,
        body: &T,
    ) -> Result<serde_json::Value, ClientError> {
        let v = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        self.call(Method::POST, uri, Some(v)).await
    }

    pub async fn patch<T: serde::Serialize>(
        &self,
        uri: &str,
        body: &T,
    ) -> Result<serde_json::Value, ClientError> {
        let v = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        self.call(Method::PATCH, uri, Some(v)).await
    }

    fn protocol(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Opens a connection, sends one request and returns the response head with the task
    /// driving the connection (abort it when done with the body).
    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<
        (
            hyper::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<Result<(), hyper::Error>>,
        ),
        ClientError,
    > {
        let stream =
            UnixStream::connect(&self.path)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.path.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(e))?;
        let conn_task = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "netyard")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(e))?;
        Ok((resp, conn_task))
    }

    /// GETs `uri` and hands each chunk of a successful body to `sink` as it arrives.
    pub async fn stream(
        &self,
        uri: &str,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ClientError> {
        let (resp, conn_task) = self.send(Method::GET, uri, None).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| self.protocol(e))?
                .to_bytes();
            conn_task.abort();
            let err = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
                error: format!("daemon answered {status}"),
                field: None,
            });
            return Err(ClientError::Api(err, status));
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.protocol(e))?;
            if let Some(data) = frame.data_ref() {
                if let Err(e) = sink(data) {
                    // The reader went away (e.g. `| head`): stop quietly.
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        break;
                    }
                    return Err(self.protocol(e));
                }
            }
        }
        conn_task.abort();
        Ok(())
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, ClientError> {
        let (resp, conn_task) = self.send(method, uri, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(e))?
            .to_bytes();
        conn_task.abort();
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| self.protocol(e));
        }
        let err = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            error: format!(
                "daemon answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ),
            field: None,
        });
        Err(ClientError::Api(err, status))
    }
}
