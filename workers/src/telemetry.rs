//! What the worker and the relay add to the process's telemetry: the Temporal SDK's own metrics
//! (task slots, the workflow cache, pollers) beside Archer's, and trace context carried through
//! Temporal's headers when tracing is on.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{FutureExt, TraceContextExt, WithContext};
use opentelemetry_sdk::propagation::TraceContextPropagator;

static TRACING: AtomicBool = AtomicBool::new(false);

/// Marks tracing as on for this process (`otlp_endpoint` set): Temporal clients connected from
/// now on carry trace context in their headers (the SDK's OpenTelemetry plugin), and workers
/// trace workflows and activities.
pub fn enable_tracing() {
    TRACING.store(true, Ordering::SeqCst);
}

/// Whether tracing is on (see [`enable_tracing`]).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::SeqCst)
}

/// The current span's W3C `traceparent`, when tracing is on and a span is being recorded.
pub fn current_traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace id of the current span (hex), for log lines; `None` when tracing is off.
pub fn current_trace_id() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Runs `f` as part of the trace `traceparent` names (an outbox row's), so what it starts or
/// signals in Temporal carries that trace on; without one, in the current context.
pub fn in_trace<F: std::future::Future>(traceparent: Option<&str>, f: F) -> WithContext<F> {
    let cx = match traceparent.filter(|_| tracing_enabled()) {
        Some(tp) => {
            let carrier: std::collections::HashMap<String, String> =
                [("traceparent".to_owned(), tp.to_owned())].into_iter().collect();
            TraceContextPropagator::new().extract(&carrier)
        }
        None => opentelemetry::Context::current(),
    };
    f.with_context(cx)
}

/// Where this process's Temporal SDK serves its Prometheus metrics (loopback, a port of its
/// own), once a worker started.
static SDK_METRICS: Mutex<Option<SocketAddr>> = Mutex::new(None);

pub(crate) fn set_sdk_metrics(addr: SocketAddr) {
    if let Ok(mut a) = SDK_METRICS.lock() {
        *a = Some(addr);
    }
}

/// The Temporal SDK's metrics (`temporal_*`), as Prometheus text, when a worker runs in this
/// process: read from the SDK's own exporter, which listens on loopback only.
pub async fn sdk_metrics_text() -> Option<String> {
    // one client for every scrape (its connection to the exporter is kept)
    static CLIENT: std::sync::LazyLock<Option<reqwest::Client>> =
        std::sync::LazyLock::new(|| reqwest::Client::builder().timeout(Duration::from_secs(2)).build().ok());
    let addr = SDK_METRICS.lock().ok().and_then(|a| *a)?;
    let client = CLIENT.as_ref()?;
    match client.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.ok(),
        Ok(r) => {
            tracing::warn!(status = %r.status(), "the Temporal SDK's metrics exporter refused");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the Temporal SDK's metrics exporter did not answer");
            None
        }
    }
}

/// Every activity runs in a `tracing` span naming the activity, its workflow (`<tenant>/<number>`:
/// the tenant and the ticket), the attempt and, tracing on, the trace id, so each line an
/// activity logs carries them (and, tracing on, its spans sit under the SDK's `RunActivity`).
pub(crate) fn activity_spans() -> temporalio_sdk::SimplePlugin {
    use temporalio_sdk::interceptors::ActivityInboundInterceptor;
    temporalio_sdk::SimplePlugin::builder("archer-activity-spans")
        .activity_inbound_interceptors(vec![Arc::new(ActivitySpans) as Arc<dyn ActivityInboundInterceptor>])
        .build()
}

struct ActivitySpans;

impl temporalio_sdk::interceptors::ActivityInboundInterceptor for ActivitySpans {
    fn execute_activity<'a>(
        &'a self,
        input: temporalio_sdk::interceptors::ExecuteActivityInput,
        next: temporalio_sdk::interceptors::Next<
            'a,
            temporalio_sdk::interceptors::ExecuteActivityInput,
            temporalio_sdk::interceptors::ExecuteActivityOutput<'a>,
        >,
    ) -> temporalio_sdk::interceptors::ExecuteActivityOutput<'a> {
        use tracing::Instrument;
        let info = input.activity_info();
        let (activity, workflow_id, attempt) =
            (info.activity_type.clone(), info.workflow_id.clone().unwrap_or_default(), info.attempt);
        // made when first polled, inside the OpenTelemetry plugin's context (an outer
        // interceptor attaches it to the future this returns, not to this call)
        Box::pin(async move {
            let span = tracing::info_span!(
                "activity",
                activity = %activity,
                workflow_id = %workflow_id,
                attempt,
                trace_id = current_trace_id(),
            );
            next.run(input).instrument(span).await
        })
    }
}
