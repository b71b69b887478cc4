//! Logging: `ARCHER_LOG` (or `RUST_LOG`) picks what is logged, `log_format` how.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,sqlx=warn,temporalio_sdk_core=warn,temporalio_client=warn,tower_http=info";

/// Installs the global subscriber once; later calls do nothing (tests call it per test).
pub fn init(format: LogFormat) {
    let filter = std::env::var("ARCHER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
