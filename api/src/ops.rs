//! Operating Archer: the HTTP metrics middleware, `/metrics`, and the small HTTP listener of
//! `archer worker` (`/health`, `/ready`, `/metrics`) that probes and Prometheus reach.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use archer_store::Db;
use archer_store::metrics::metrics;

/// The content type of Prometheus' text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the gauges read from the database (outbox, SLA clocks, approvals) are refreshed at
/// most, however often `/metrics` is scraped.
const DATABASE_GAUGES_EVERY: Duration = Duration::from_secs(10);

/// The route template a request matched, filled in by [`route_label`] (inside the router) for
/// [`http_metrics`] (around it) to read.
#[derive(Clone, Default)]
struct RouteSlot(Arc<Mutex<Option<String>>>);

/// Counts and times every request by method, route template and status
/// (`archer_http_requests_total`, `archer_http_request_duration_seconds`). A request whose
/// client went away before the answer (its future dropped) is counted with status `499`, as
/// proxies do.
pub async fn http_metrics(mut req: Request, next: Next) -> Response {
    let slot = RouteSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = method_label(req.method());
    let mut guard = Observation { slot, method, started: Instant::now(), status: None };
    let response = next.run(req).await;
    guard.status = Some(response.status());
    response
}

/// Puts the matched route template where [`http_metrics`] finds it.
pub async fn route_label(req: Request, next: Next) -> Response {
    if let (Some(path), Some(slot)) = (req.extensions().get::<MatchedPath>(), req.extensions().get::<RouteSlot>())
        && let Ok(mut s) = slot.0.lock()
    {
        *s = Some(path.as_str().to_owned());
    }
    next.run(req).await
}

struct Observation {
    slot: RouteSlot,
    method: &'static str,
    started: Instant,
    status: Option<StatusCode>,
}

impl Drop for Observation {
    fn drop(&mut self) {
        let route = self.slot.0.lock().ok().and_then(|mut s| s.take()).unwrap_or_else(|| "unmatched".to_owned());
        let status = self.status.map_or(499, |s| s.as_u16());
        let m = metrics();
        m.http_requests.with_label_values(&[self.method, route.as_str(), status.to_string().as_str()]).inc();
        m.http_duration.with_label_values(&[self.method, route.as_str()]).observe(self.started.elapsed().as_secs_f64());
    }
}

/// A bounded label for a method: the standard ones, else `other` (a client picks the method).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The process's metrics as Prometheus text: Archer's, refreshed from the database when `db`
/// is given (the API), then the Temporal SDK's when a worker runs in this process.
pub async fn metrics_text(db: Option<&Db>) -> String {
    if let Some(db) = db {
        refresh_database_gauges(db).await;
    }
    let mut text = metrics().render();
    if let Some(sdk) = archer_workers::telemetry::sdk_metrics_text().await {
        text.push_str(&sdk);
    }
    text
}

/// Refreshes the database gauges unless that was done in the last [`DATABASE_GAUGES_EVERY`];
/// scrapes arriving together wait for one refresh. A failure keeps the last values (logged).
async fn refresh_database_gauges(db: &Db) {
    static LAST: tokio::sync::Mutex<Option<Instant>> = tokio::sync::Mutex::const_new(None);
    let mut last = LAST.lock().await;
    if last.is_some_and(|t| t.elapsed() < DATABASE_GAUGES_EVERY) {
        return;
    }
    match archer_store::metrics::refresh_database_gauges(db).await {
        Ok(()) => *last = Some(Instant::now()),
        Err(e) => tracing::warn!(error = %e, "metrics: reading the outbox, SLA and approval figures failed"),
    }
}

/// The response of `/metrics`.
pub fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE))], text).into_response()
}

/// Inside the request's span: gives the span its trace id (so every log line of the request
/// carries it) and lets every workflow intent the request records carry its trace context
/// (`archer_store::outbox::with_trace_context`). Nothing happens while tracing is off.
pub async fn trace_context(req: Request, next: Next) -> Response {
    let traceparent = archer_workers::telemetry::current_traceparent();
    if let Some(tp) = &traceparent
        && let Some(trace_id) = tp.split('-').nth(1)
    {
        tracing::Span::current().record("trace_id", trace_id);
    }
    archer_store::outbox::with_trace_context(traceparent, next.run(req)).await
}

/// What `archer worker`'s `/ready` reports: whether the worker is polling.
#[derive(Clone, Default)]
pub struct WorkerStatus(Arc<std::sync::atomic::AtomicBool>);

impl WorkerStatus {
    pub fn set_polling(&self, polling: bool) {
        self.0.store(polling, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn polling(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `archer worker`'s HTTP service: `/health` (the process is up), `/ready` (the worker polls
/// its task queue), `/metrics`.
pub fn worker_router(status: WorkerStatus) -> Router {
    Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/ready",
            get(|State(status): State<WorkerStatus>| async move {
                let polling = status.polling();
                let code = if polling { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, axum::Json(serde_json::json!({"ready": polling, "worker": {"ok": polling}})))
            }),
        )
        .route("/metrics", get(|| async { metrics_response(metrics_text(None).await) }))
        .route_layer(axum::middleware::from_fn(route_label))
        .layer(axum::middleware::from_fn(http_metrics))
        .with_state(status)
}

/// Serves [`worker_router`] on `listener` until `shutdown`.
pub async fn serve_worker_http(
    listener: tokio::net::TcpListener,
    status: WorkerStatus,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "worker health and metrics listening");
    axum::serve(listener, worker_router(status)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
