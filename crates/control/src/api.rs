//! The deploy API: JSON over HTTP on `/_wedge/api/v1/`, behind a bearer token. Every
//! endpoint, with examples, is in docs/api.md.
//!
//! ```text
//! GET    /_wedge/api/v1/functions                  every function, app and deployed
//! PUT    /_wedge/api/v1/functions/{name}           deploy (multipart: config + wasm, or the
//!                                                  Wasm alone as application/wasm)
//! GET    /_wedge/api/v1/functions/{name}           config, current version, versions
//! DELETE /_wedge/api/v1/functions/{name}
//! POST   /_wedge/api/v1/functions/{name}/rollback  {"version": N} or empty: the previous one
//! GET    /_wedge/api/v1/functions/{name}/logs      ?follow=1 streams new lines
//! POST   /_wedge/api/v1/functions/{name}/triggers/{i}/fire   run trigger i now
//! GET    /_wedge/api/v1/queues[/{name}[/dlq]]      queues, their depth, dead letters
//! POST   /_wedge/api/v1/queues/{name}/messages     send (also .../batch, .../dlq/replay)
//! ```
//!
//! Errors are `{"error": code, "detail": message, "request_id": id}` with a 4xx/5xx status.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use wedge_host::logs::LogLine;
use wedge_host::time::rfc3339_seconds;
use wedge_host::{Body, BodyError, REQUEST_ID_HEADER};

/// A request to the deploy API, its body in the host's boxed body type.
pub type ApiRequest = hyper::Request<Body>;
/// The deploy API's answer to one request.
pub type ApiFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

use crate::config::FunctionConfig;
use crate::multipart;
use crate::plane::{ControlPlane, DeployError, FunctionInfo, Published};
use crate::queues_api;
use crate::store::StoredVersion;
use crate::token::ApiToken;

pub const PREFIX: &str = "/_wedge/api/v1";

/// Default largest upload (`wedge serve --max-upload-size`): JavaScript and Python components
/// are 13–18 MB; this leaves room for large ones.
pub const DEFAULT_MAX_UPLOAD: u64 = 128 << 20;

pub struct DeployApi {
    inner: Arc<Inner>,
}

struct Inner {
    plane: Arc<ControlPlane>,
    token: ApiToken,
    max_upload: u64,
    /// Set when the server shuts down: log followers end their streams, so that graceful
    /// shutdown is not held up by a `wedge logs -f`.
    closing: watch::Receiver<bool>,
}

impl DeployApi {
    pub fn new(
        plane: Arc<ControlPlane>,
        token: ApiToken,
        max_upload: u64,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                plane,
                token,
                max_upload,
                closing,
            }),
        }
    }
}

impl DeployApi {
    /// Answers one request under [`PREFIX`] (the HTTP trigger mounts this).
    pub fn handle(&self, request: ApiRequest, request_id: String) -> ApiFuture {
        let inner = self.inner.clone();
        Box::pin(async move {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let response = match inner.route(request, &request_id).await {
                Ok(response) => response,
                Err(error) => error.into_response(&request_id),
            };
            tracing::info!(
                target: "wedge::api",
                %method,
                path,
                status = response.status().as_u16(),
                request_id,
            );
            response
        })
    }
}

/// A refused API request: status, stable code, message.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// For 405: the methods the endpoint has.
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            allow: None,
        }
    }

    fn into_response(self, request_id: &str) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &json!({"error": self.code, "detail": self.detail, "request_id": request_id}),
        );
        if let Ok(value) = hyper::header::HeaderValue::from_str(request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        if let Some(allow) = self.allow {
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(allow),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"wedge\""),
            );
        }
        response
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, error.code(), error.detail())
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut response = Response::new(wedge_host::response::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

impl Inner {
    async fn route(
        self: &Arc<Self>,
        request: ApiRequest,
        request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !self.token.accepts(authorization) {
            let presented = authorization.is_some();
            discard_body(request, self.max_upload).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                if presented {
                    "the bearer token is wrong; use the one in the server's token file (wedge serve prints where it is)"
                } else {
                    "this endpoint needs `Authorization: Bearer <token>`; the token is in the file wedge serve printed at start-up (wedge clients take --token or WEDGE_TOKEN)"
                },
            ));
        }
        let path = request.uri().path().to_string();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_endpoint",
                format!("{path} is not an API endpoint; this server speaks {PREFIX}/"),
            ));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method().clone();
        match (segments.as_slice(), &method) {
            (["functions"], &Method::GET) => self.list(base_url(&request)).await,
            (["functions", name], &Method::GET) => self.show(base_url(&request), name).await,
            (["functions", name], &Method::PUT) => self.deploy(request, name).await,
            (["functions", name], &Method::DELETE) => self.delete(name).await,
            (["functions", name, "rollback"], &Method::POST) => self.rollback(request, name).await,
            (["functions", name, "logs"], &Method::GET) => self.logs(&request, name),
            (["functions", name, "triggers", index, "fire"], &Method::POST) => {
                self.fire(name, index).await
            }
            (["functions", _, "triggers", _, "fire"], _) => Err(not_allowed(&method, "POST")),
            (["queues"], &Method::GET) => self.queues_list().await,
            (["queues", name], &Method::GET) => self.queue_stats(query(&request), name).await,
            (["queues", name, "messages"], &Method::POST) => {
                self.queue_send(request, name, false).await
            }
            (["queues", name, "batch"], &Method::POST) => {
                self.queue_send(request, name, true).await
            }
            (["queues", name, "dlq"], &Method::GET) => self.queue_dead(query(&request), name).await,
            (["queues", name, "dlq", "replay"], &Method::POST) => {
                self.queue_replay(request, name).await
            }
            (["queues"], _) | (["queues", _], _) | (["queues", _, "dlq"], _) => {
                Err(not_allowed(&method, "GET"))
            }
            (["queues", _, "messages" | "batch"], _) | (["queues", _, "dlq", "replay"], _) => {
                Err(not_allowed(&method, "POST"))
            }
            (["functions"], _) => Err(not_allowed(&method, "GET")),
            (["functions", _], _) => Err(not_allowed(&method, "GET, PUT, DELETE")),
            (["functions", _, "rollback"], _) => Err(not_allowed(&method, "POST")),
            (["functions", _, "logs"], _) => Err(not_allowed(&method, "GET")),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_endpoint",
                format!(
                    "{path} is not an API endpoint; see docs/api.md ({PREFIX}/functions and below). request id {request_id}"
                ),
            )),
        }
    }

    /// Runs a blocking control-plane operation off the serving threads.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&ControlPlane) -> Result<T, DeployError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let inner = self.clone();
        match tokio::task::spawn_blocking(move || work(&inner.plane)).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(error) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the operation failed inside wedge: {error}"),
            )),
        }
    }

    async fn list(self: &Arc<Self>, base: String) -> Result<Response<Body>, ApiError> {
        let functions = self.blocking(|plane| plane.list()).await?;
        let functions: Vec<Value> = functions
            .iter()
            .map(|info| info_json(info, &base))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "functions": functions }),
        ))
    }

    async fn show(self: &Arc<Self>, base: String, name: &str) -> Result<Response<Body>, ApiError> {
        let owned = name.to_string();
        let (info, versions) = self.blocking(move |plane| plane.show(&owned)).await?;
        let mut value = info_json(&info, &base);
        if let FunctionInfo::Deployed { stored, .. } = &info {
            value["config"] = serde_json::to_value(&stored.current.config).unwrap_or(Value::Null);
            value["versions"] = versions.iter().map(version_json).collect();
        }
        Ok(json_response(StatusCode::OK, &value))
    }

    /// The queue `name` in the scope the request names (`?function=NAME`, else the app's).
    fn queue_of(
        &self,
        query: Option<&str>,
        name: &str,
    ) -> Result<
        (
            std::sync::Arc<wedge_capabilities::queue::Queues>,
            wedge_capabilities::queue::QueueId,
        ),
        ApiError,
    > {
        let queues = self.plane.queues().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_endpoint",
                "this server offers no queues",
            )
        })?;
        let function = queues_api::query_param(query, "function");
        let scope = self.plane.scope_of(function).map_err(ApiError::from)?;
        let name = wedge_capabilities::names::StateName::new("queue", name).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                error.to_string(),
            )
        })?;
        Ok((
            queues,
            wedge_capabilities::queue::QueueId::of(&scope, &name),
        ))
    }

    async fn queues_list(self: &Arc<Self>) -> Result<Response<Body>, ApiError> {
        let Some(queues) = self.plane.queues() else {
            return Ok(json_response(StatusCode::OK, &json!({ "queues": [] })));
        };
        let mut listed = Vec::new();
        for queue in self.plane.known_queues() {
            let stats = queues
                .backend(&queue)
                .stats(&queue)
                .await
                .map_err(queue_error)?;
            listed.push(queues_api::stats_json(&queue, &stats));
        }
        Ok(json_response(StatusCode::OK, &json!({ "queues": listed })))
    }

    async fn queue_stats(
        self: &Arc<Self>,
        query: Option<String>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (queues, queue) = self.queue_of(query.as_deref(), name)?;
        let stats = queues
            .backend(&queue)
            .stats(&queue)
            .await
            .map_err(queue_error)?;
        Ok(json_response(
            StatusCode::OK,
            &queues_api::stats_json(&queue, &stats),
        ))
    }

    async fn queue_send(
        self: &Arc<Self>,
        request: ApiRequest,
        name: &str,
        batch: bool,
    ) -> Result<Response<Body>, ApiError> {
        let (queues, queue) = self.queue_of(request.uri().query(), name)?;
        let content_type = request
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(request, self.max_upload).await?;
        let messages = if batch {
            queues_api::batch_messages(&body).map_err(|problem| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", problem)
            })?
        } else {
            vec![wedge_capabilities::queue::NewMessage { body, content_type }]
        };
        let ids = queues.send(&queue, messages).await.map_err(queue_error)?;
        tracing::info!(target: "wedge::api", %queue, count = ids.len(), "messages sent");
        Ok(json_response(
            StatusCode::CREATED,
            &json!({ "queue": queue.name().as_str(), "scope": queue.scope().as_str(), "ids": ids }),
        ))
    }

    async fn queue_dead(
        self: &Arc<Self>,
        query: Option<String>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (queues, queue) = self.queue_of(query.as_deref(), name)?;
        let limit = queues_api::query_param(query.as_deref(), "limit")
            .and_then(|limit| limit.parse::<usize>().ok())
            .unwrap_or(100)
            .clamp(1, 10_000);
        let dead = queues
            .backend(&queue)
            .dead_letters(&queue, limit)
            .await
            .map_err(queue_error)?;
        let dead: Vec<Value> = dead
            .iter()
            .map(|letter| {
                json!({
                    "id": letter.id,
                    "body": String::from_utf8_lossy(&letter.body),
                    "content_type": letter.content_type,
                    "attempts": letter.attempts,
                    "enqueued": wedge_host::time::rfc3339_millis(letter.enqueued_ms),
                    "died": wedge_host::time::rfc3339_millis(letter.died_ms),
                    "reason": letter.reason,
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "queue": queue.name().as_str(), "scope": queue.scope().as_str(), "dead_letters": dead }),
        ))
    }

    async fn queue_replay(
        self: &Arc<Self>,
        request: ApiRequest,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (queues, queue) = self.queue_of(request.uri().query(), name)?;
        let body = read_limited(request, self.max_upload).await?;
        let ids = if body.is_empty() {
            None
        } else {
            let value: Value = serde_json::from_slice(&body).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("the body must be empty (replay all) or {{\"ids\": [...]}}: {error}"),
                )
            })?;
            let ids = value
                .get("ids")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .map(|id| {
                            id.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| id.to_string())
                        })
                        .collect::<Vec<_>>()
                })
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "the body must be empty (replay all) or {\"ids\": [\"ID\", ...]}",
                    )
                })?;
            Some(ids)
        };
        let replayed = queues
            .backend(&queue)
            .replay(&queue, ids)
            .await
            .map_err(queue_error)?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "replayed": replayed }),
        ))
    }

    /// Runs one trigger of a function now: `POST .../functions/{name}/triggers/{i}/fire`.
    async fn fire(self: &Arc<Self>, name: &str, index: &str) -> Result<Response<Body>, ApiError> {
        let index: usize = index.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("`{index}` is not a trigger number; triggers are numbered from 0"),
            )
        })?;
        let firing = self.plane.fire(name, index).map_err(ApiError::from)?;
        match firing.await {
            Ok(fired) => Ok(json_response(
                StatusCode::OK,
                &json!({ "status": fired.status, "request_id": fired.request_id }),
            )),
            Err(error) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "cannot_fire",
                error.to_string(),
            )),
        }
    }

    async fn deploy(
        self: &Arc<Self>,
        request: ApiRequest,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let base = base_url(&request);
        let content_type = request
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let boundary = multipart::boundary(&content_type);
        let is_wasm = content_type
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/wasm"));
        if boundary.is_none() && !is_wasm {
            discard_body(request, self.max_upload).await;
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "the body is `{}`; send multipart/form-data with a `wasm` part and an optional `config` part (JSON), or the Wasm alone as application/wasm",
                    if content_type.is_empty() {
                        "untyped"
                    } else {
                        &content_type
                    }
                ),
            ));
        }
        let body = read_limited(request, self.max_upload).await?;
        let (config, wasm) = match boundary {
            Some(boundary) => split_deploy_parts(&body, &boundary)?,
            None => (FunctionConfig::default(), body),
        };
        if wasm.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_wasm",
                "the upload has no Wasm bytes; send the function's .wasm",
            ));
        }
        let owned = name.to_string();
        let published = self
            .blocking(move |plane| plane.deploy(&owned, config, &wasm))
            .await?;
        let status = if published.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(status, &published_json(&published, &base)))
    }

    async fn delete(self: &Arc<Self>, name: &str) -> Result<Response<Body>, ApiError> {
        let owned = name.to_string();
        self.blocking(move |plane| plane.delete(&owned)).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"name": name, "deleted": true}),
        ))
    }

    async fn rollback(
        self: &Arc<Self>,
        request: ApiRequest,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RollbackRequest {
            version: Option<u64>,
        }
        let base = base_url(&request);
        let body = read_limited(request, 64 << 10).await?;
        let version = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            parse_json::<RollbackRequest>(&body, "rollback request")?.version
        };
        let owned = name.to_string();
        let published = self
            .blocking(move |plane| plane.rollback(&owned, version))
            .await?;
        Ok(json_response(
            StatusCode::OK,
            &published_json(&published, &base),
        ))
    }

    fn logs(
        self: &Arc<Self>,
        request: &ApiRequest,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let follow = request.uri().query().is_some_and(|query| {
            query.split('&').any(|pair| {
                matches!(
                    pair.split_once('=').unwrap_or((pair, "1")),
                    ("follow", "1" | "true" | "yes")
                )
            })
        });
        let Some(function) = self.plane.function(name) else {
            return Err(DeployError::UnknownFunction(name.to_string()).into());
        };
        let (past, receiver) = function.log.follow();
        // Only the receiver may keep the log's sender alive in a follower; the function
        // itself is dropped here so a deletion ends the stream.
        drop(function);
        let mut text = String::new();
        for line in &past {
            text.push_str(&line.render());
            text.push('\n');
        }
        let mut response = if follow {
            Response::new(follow_body(
                Bytes::from(text),
                receiver,
                self.closing.clone(),
            ))
        } else {
            Response::new(wedge_host::response::full(text))
        };
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok(response)
    }
}

fn not_allowed(method: &Method, allowed: &'static str) -> ApiError {
    ApiError {
        allow: Some(allowed),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here; use {allowed}"),
        )
    }
}

/// Reads the whole body, refusing (413) one larger than `limit`, whether it says so up front
/// (Content-Length) or not (chunked).
async fn read_limited(request: ApiRequest, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload is larger than this server's limit of {} (wedge serve --max-upload-size)",
                wedge_engine::units::format_size(limit)
            ),
        )
    };
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        discard_body(request, limit).await;
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                format!("the upload could not be read: {error}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() as u64 + data.len() as u64 > limit {
                drop(collected);
                drain(&mut body, limit).await;
                return Err(too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Reads and drops up to `budget` bytes of a body that will not be used, so that a client
/// still sending it reads the error answer instead of a broken pipe. Bounded in bytes and
/// time: a client sending more, or slowly, is cut off instead.
async fn discard_body(request: ApiRequest, budget: u64) {
    drain(&mut request.into_body(), budget).await;
}

async fn drain(body: &mut Body, budget: u64) {
    let mut left = budget;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let Some(rest) = left.checked_sub(data.len() as u64) else {
                    return;
                };
                left = rest;
            }
        }
    })
    .await;
}

fn split_deploy_parts(body: &Bytes, boundary: &str) -> Result<(FunctionConfig, Bytes), ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", detail);
    let parts = multipart::parse(body, boundary).map_err(bad)?;
    let mut config = None;
    let mut wasm = None;
    for part in parts {
        let slot = match part.name.as_str() {
            "config" => &mut config,
            "wasm" => &mut wasm,
            other => {
                return Err(bad(format!(
                    "unexpected part `{other}`; a deploy has a `wasm` part and an optional `config` part"
                )));
            }
        };
        if slot.replace(part.data).is_some() {
            return Err(bad(format!("the part `{}` appears twice", part.name)));
        }
    }
    let Some(wasm) = wasm else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_wasm",
            "the upload has no `wasm` part; add the function's .wasm as a part named `wasm`",
        ));
    };
    let config = match config {
        Some(json) => parse_json::<FunctionConfig>(&json, "config")?,
        None => FunctionConfig::default(),
    };
    Ok((config, wasm))
}

/// Parses JSON, naming the field that is wrong.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let detail = if path == "." || path.is_empty() {
            format!("the {what} is not valid JSON for it: {inner}")
        } else {
            format!("the {what} has a bad field `{path}`: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_config", detail)
    })
}

/// `http://<Host the client used>`, so URLs in answers work from where the client is.
fn base_url(request: &ApiRequest) -> String {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The request's query, owned (a request is not `Sync`: no borrow of it may cross an await).
fn query(request: &ApiRequest) -> Option<String> {
    request.uri().query().map(str::to_string)
}

fn queue_error(error: wedge_capabilities::queue::QueueError) -> ApiError {
    let (status, code) = queues_api::error_status(&error);
    ApiError::new(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        code,
        error.to_string(),
    )
}

fn published_json(published: &Published, base: &str) -> Value {
    json!({
        "name": published.name,
        "version": published.version,
        "digest": published.digest,
        "kind": published.kind,
        "route": published.route,
        "url": published.route.as_ref().map(|route| format!("{base}{route}")),
    })
}

fn info_json(info: &FunctionInfo, base: &str) -> Value {
    match info {
        FunctionInfo::Deployed {
            stored,
            route,
            triggers,
            load_error,
        } => {
            let mut value = json!({
                "name": stored.name,
                "source": "api",
                "route": route,
                "url": route.as_ref().map(|route| format!("{base}{route}")),
                "triggers": triggers,
                "kind": stored.current.kind,
                "version": stored.current.version,
                "digest": stored.current.digest,
                "created": rfc3339_seconds(stored.created_ms / 1000),
                "updated": rfc3339_seconds(stored.updated_ms / 1000),
            });
            if let Some(error) = load_error {
                value["load_error"] = json!(error);
            }
            value
        }
        FunctionInfo::App {
            name,
            route,
            triggers,
            kind,
            manifest,
        } => json!({
            "name": name,
            "source": "app",
            "manifest": manifest.as_ref().map(|p| p.display().to_string()),
            "route": route,
            "url": route.as_ref().map(|route| format!("{base}{route}")),
            "triggers": triggers,
            "kind": kind,
        }),
    }
}

fn version_json(version: &StoredVersion) -> Value {
    json!({
        "version": version.version,
        "digest": version.digest,
        "kind": version.kind,
        "size": version.size,
        "created": rfc3339_seconds(version.created_ms / 1000),
        "config": version.config,
    })
}

/// A body that sends `past`, then each new log line, until the function is gone, the client
/// leaves or the server shuts down.
fn follow_body(
    past: Bytes,
    mut lines: broadcast::Receiver<LogLine>,
    mut closing: watch::Receiver<bool>,
) -> Body {
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if !past.is_empty() && sender.send(past).await.is_err() {
            return;
        }
        loop {
            let text = tokio::select! {
                line = lines.recv() => match line {
                    Ok(line) => line.render() + "\n",
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        format!("... {missed} lines skipped: this follower fell behind\n")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = closing.wait_for(|closing| *closing) => return,
                () = sender.closed() => return,
            };
            if sender.send(Bytes::from(text)).await.is_err() {
                return;
            }
        }
    });
    ChannelBody(receiver).boxed_unsync()
}

struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
