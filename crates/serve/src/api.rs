//! HTTP: the routes, reading bodies within the size limit, and running the server until
//! Ctrl-C. Handlers parse and answer; every model call goes through the [`Worker`] queue.

use crate::error::{Result, ServeError};
use crate::models::{Models, PhotoModel};
use crate::worker::Worker;
use crate::{Limits, ServeConfig};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use convnet_zoo::compare::{CompareRow, TIMM_RESULTS_CREDIT};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// An over-limit body is read on (and dropped) up to this many times the limit, so that the
/// client, still sending, gets its 413 instead of a reset connection; beyond it the connection
/// is cut.
const DRAIN_FACTOR: u64 = 4;

/// What the handlers share.
pub struct AppState {
    worker: Worker<Models>,
    limits: Limits,
    photos: Vec<PhotoModel>,
    sound: bool,
    compare: Vec<CompareRow>,
    chart: OnceLock<std::result::Result<Vec<u8>, String>>,
}

impl AppState {
    /// Starts the inference thread over `models`.
    pub fn new(models: Models, limits: Limits) -> std::io::Result<Arc<Self>> {
        let photos = models.photos.clone();
        let sound = models.sound.is_some();
        let worker = Worker::start(models, limits.queue)?;
        let compare = convnet_zoo::compare::compare_rows(&[]);
        Ok(Arc::new(AppState { worker, limits, photos, sound, compare, chart: OnceLock::new() }))
    }
}

/// The app's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }))
        .route("/api/models", get(models))
        .route("/api/digit", post(digit))
        .route("/api/classify", post(classify))
        .route("/api/audio", post(audio))
        .route("/api/compare", get(compare))
        .route("/api/compare.png", get(compare_png))
        .fallback(|| async { ServeError::NotFound("no such page; the app is at /".into()) })
        .with_state(state)
}

/// Reads a request body of at most `limit` bytes. A larger one is [`ServeError::TooLarge`]:
/// at once when its `Content-Length` says so and is beyond the drain allowance, otherwise
/// after reading (and dropping) the rest, so that the client gets the answer.
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let drain_cap = limit.saturating_mul(DRAIN_FACTOR);
    if let Some(n) = declared.filter(|&n| n > drain_cap) {
        return Err(ServeError::TooLarge { got: n, limit });
    }
    let mut body = body;
    let mut data: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ServeError::BadRequest(format!("the upload broke off: {e}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        seen += chunk.len() as u64;
        if seen > drain_cap {
            break;
        }
        if seen <= limit {
            data.extend_from_slice(&chunk);
        } else if !data.is_empty() {
            // over the limit: keep counting, stop keeping
            data = Vec::new();
        }
    }
    if seen > limit {
        return Err(ServeError::TooLarge { got: seen, limit });
    }
    if data.is_empty() {
        return Err(ServeError::BadRequest("the request has no body: send the file's bytes as the body".into()));
    }
    Ok(Bytes::from(data))
}

async fn models(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "digits": {"model": crate::models::MNIST_FILE, "input": [28, 28, 1]},
        "photos": app.photos,
        "sound": {"model": app.sound.then_some(crate::models::SOUND_FILE)},
        "limits": {
            "max_upload_bytes": app.limits.max_upload_bytes,
            "max_pixels": app.limits.max_pixels,
            "max_audio_seconds": app.limits.max_audio_seconds,
            "queue": app.limits.queue,
        },
    }))
}

async fn digit(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<Value>> {
    let bytes = read_body(&headers, body, app.limits.max_upload_bytes).await?;
    let answer = app.worker.run(move |m| m.digit(&bytes)).await?;
    Ok(Json(json!(answer)))
}

/// `?model=NAME&top=K` of `/api/classify`.
#[derive(Deserialize)]
struct ClassifyQuery {
    model: Option<String>,
    top: Option<usize>,
}

async fn classify(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ClassifyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let name = match q.model {
        Some(n) => n,
        None => app.photos.first().map(|m| m.name.clone()).ok_or_else(|| {
            ServeError::Unavailable(
                "no photo model: put a timm checkpoint (e.g. tf_efficientnet_lite0.safetensors) in the models folder"
                    .into(),
            )
        })?,
    };
    if !app.photos.iter().any(|m| m.name == name) {
        let known: Vec<&str> = app.photos.iter().map(|m| m.name.as_str()).collect();
        return Err(ServeError::NotFound(format!("no photo model {name:?}; served: {}", known.join(", "))));
    }
    let top = q.top.unwrap_or(5).clamp(1, 20);
    let bytes = read_body(&headers, body, app.limits.max_upload_bytes).await?;
    let answer = app.worker.run(move |m| m.classify(&name, &bytes, top)).await?;
    Ok(Json(json!(answer)))
}

async fn audio(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<Value>> {
    let bytes = read_body(&headers, body, app.limits.max_upload_bytes).await?;
    let answer = app.worker.run(move |m| m.sound(&bytes)).await?;
    Ok(Json(json!(answer)))
}

async fn compare(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"source": TIMM_RESULTS_CREDIT, "models": app.compare}))
}

async fn compare_png(State(app): State<Arc<AppState>>) -> Result<Response> {
    // drawn once, off the async threads
    let chart = tokio::task::spawn_blocking(move || {
        app.chart
            .get_or_init(|| {
                let desc = "latency: run `convnet compare` to measure it here";
                convnet_zoo::compare::chart_png(&app.compare, desc).map_err(|e| e.to_string())
            })
            .clone()
    })
    .await
    .map_err(|e| ServeError::Internal(e.to_string()))?
    .map_err(ServeError::Internal)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "max-age=3600")], chart)
        .into_response())
}

/// A bound server, not yet answering.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Server {
    /// Binds `config.addr` and starts the inference thread over `models`.
    pub async fn bind(config: &ServeConfig, models: Models) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let state = AppState::new(models, config.limits)?;
        Ok(Server { listener, app: router(state) })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers requests until `shutdown` completes, then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.app).with_graceful_shutdown(shutdown).await
    }
}

/// Runs the app on a new runtime until Ctrl-C: binds, prints the address (and whether it is
/// reachable from other machines), serves, and shuts down gracefully.
pub fn run_blocking(config: &ServeConfig, models: Models) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let server = Server::bind(config, models).await?;
        let addr = server.local_addr()?;
        let reach = if addr.ip().is_loopback() {
            "only this machine can reach it (--addr 0.0.0.0:PORT to open it to the network)"
        } else {
            "other machines on the network can reach it"
        };
        println!("convnet serve: listening on http://{addr}/ ; {reach}; Ctrl-C stops it");
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
                println!("convnet serve: shutting down");
            })
            .await
    })
}
