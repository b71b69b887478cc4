//! Logs and traces. `ARCHER_LOG` (or `RUST_LOG`) picks what is logged, `log_format` how;
//! `otlp_endpoint` turns on traces, exported over OTLP/HTTP.
//!
//! With tracing on, each HTTP request is a trace: its span's context goes with the workflow
//! intents the request records (the outbox's `trace_context`), the relay delivers them inside
//! it, and the Temporal SDK's OpenTelemetry plugin carries it in Temporal's `_tracer-data`
//! header into the workflow and its activities, so one trace runs from the API call to the
//! email it caused. Log lines of a request carry its `trace_id`.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use temporalio_sdk::opentelemetry::{WorkflowIdGenerator, WorkflowSpanProcessor};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use url::Url;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,sqlx=warn,temporalio_sdk_core=warn,temporalio_client=warn,tower_http=info";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otlp_endpoint: {0}")]
    Exporter(String),
}

/// The tracer provider, kept until [`shutdown`] flushes it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn filter() -> EnvFilter {
    std::env::var("ARCHER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber (logs only) once; later calls do nothing (tests call it per
/// test).
pub fn init(format: LogFormat) {
    let _ = try_init(format, None, "archer");
}

/// Installs the global subscriber once: logs in `format`, and traces exported to `otlp` when
/// given (as service `service`: `archer-api`, `archer-worker`).
pub fn try_init(format: LogFormat, otlp: Option<&Url>, service: &str) -> Result<(), TelemetryError> {
    let traces = match otlp {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint, service)?;
            let tracer = provider.tracer("archer");
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = PROVIDER.set(provider);
            archer_workers::telemetry::enable_tracing();
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter()).with(traces).with(logs).try_init();
    Ok(())
}

/// Spans are batched and exported over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`. Ids
/// come from the Temporal SDK's generator, which gives a workflow's spans the same ids when it
/// is replayed, and its processor drops the spans of replays (they were exported the first
/// time).
fn tracer_provider(endpoint: &Url, service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // `http://collector:4318` and `http://collector:4318/base/` mean `…/v1/traces` below them
    let traces = Url::parse(&format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/')))
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    // https collectors: the TLS provider Archer's other clients use (`main` installs it too)
    let _ = rustls::crypto::ring::default_provider().install_default();
    // the blocking HTTP client the exporter uses must be built (and dropped) off the async
    // runtime, so it is built on a thread of its own
    let target = traces.to_string();
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(target)
            .with_timeout(std::time::Duration::from_secs(5))
            .build()
    })
    .join()
    .map_err(|_| TelemetryError::Exporter("building the exporter panicked".into()))?
    .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let processor = WorkflowSpanProcessor::new(BatchSpanProcessor::builder(exporter).build());
    Ok(SdkTracerProvider::builder()
        .with_id_generator(WorkflowIdGenerator::default())
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
        .build())
}

/// Exports the spans buffered so far (tracing on). Blocks: call off the async runtime.
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::warn!(error = %e, "traces: flushing failed");
    }
}

/// Exports the spans still buffered and stops the exporter. Call off the async runtime (it
/// blocks), before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("traces: flushing at shutdown failed: {e}");
    }
}
