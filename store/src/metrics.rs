//! Archer's Prometheus instruments: one registry per process, shared by the API, the relay and
//! the worker (one process runs all three under `archer dev`), exposed as text by `/metrics`.
//!
//! Names follow Prometheus conventions: `archer_` prefix, the unit in the name (`_seconds`,
//! `_bytes`), `_total` on counters. Label values are bounded sets (a route template, an
//! operation, a state, an outcome), never a ticket number, a tenant or a user.
//!
//! The instruments are the `prometheus` crate's (the one the Temporal SDK's own exporter uses).

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sqlx::PgPool;

/// Every instrument Archer records, registered in [`Metrics::registry`].
pub struct Metrics {
    pub registry: Registry,
    /// `archer_http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `archer_http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `archer_outbox_pending`: undelivered workflow intents (read from the database at scrape).
    pub outbox_pending: IntGauge,
    /// `archer_outbox_oldest_age_seconds`: age of the oldest undelivered intent.
    pub outbox_oldest_age: prometheus::Gauge,
    /// `archer_relay_deliveries_total{operation}`: intents Temporal accepted (start|signal).
    pub relay_deliveries: IntCounterVec,
    /// `archer_relay_failures_total{operation}`: delivery attempts that failed (retried).
    pub relay_failures: IntCounterVec,
    /// `archer_relay_leader`: 1 while this process's relay is the one delivering.
    pub relay_leader: IntGauge,
    /// `archer_workflow_starts_total{workflow}`: workflows started (by type).
    pub workflow_starts: IntCounterVec,
    /// `archer_workflow_signals_total{signal}`: signals delivered (by signal name).
    pub workflow_signals: IntCounterVec,
    /// `archer_sla_clocks{state}`: SLA clocks by state (from the database at scrape).
    pub sla_clocks: IntGaugeVec,
    /// `archer_sla_warnings_total`: warnings recorded.
    pub sla_warnings: IntCounter,
    /// `archer_sla_breaches_total`: breaches recorded.
    pub sla_breaches: IntCounter,
    /// `archer_sla_breach_lag_seconds`: from the instant a target fell due to the breach being
    /// recorded.
    pub sla_breach_lag: Histogram,
    /// `archer_approvals_pending`: approval tasks waiting for a decision (from the database).
    pub approvals_pending: IntGauge,
    /// `archer_approval_decision_to_next_step_seconds`: from a decision being recorded to the
    /// workflow acting on it (the next step opened or the chain concluded).
    pub approval_decision_to_next_step: Histogram,
    /// `archer_emails_total{outcome}`: sent | failed | unknown (the SMTP server may or may not
    /// have accepted it; never sent again automatically).
    pub emails: IntCounterVec,
    /// `archer_db_pool_acquire_seconds{pool}`: waiting for a connection from the pool.
    pub db_pool_acquire: HistogramVec,
    /// `archer_build_info{version,role}`.
    pub build_info: IntGaugeVec,
    pools: std::sync::Arc<PoolsCollector>,
}

/// Bucket bounds, in seconds.
const HTTP_BUCKETS: &[f64] = &[0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const LAG_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];
const POOL_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

fn reg<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // names are constants of this module, registered once: a failure is a programming error
    registry.register(Box::new(c.clone())).expect("each metric is registered once");
    c
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let m = Metrics {
            http_requests: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_http_requests_total", "HTTP requests answered, by route template and status."),
                    &["method", "route", "status"],
                )
                .expect("valid metric"),
            ),
            http_duration: reg(
                &r,
                HistogramVec::new(
                    hist("archer_http_request_duration_seconds", "Time to answer an HTTP request.", HTTP_BUCKETS),
                    &["method", "route"],
                )
                .expect("valid metric"),
            ),
            outbox_pending: reg(
                &r,
                IntGauge::with_opts(opts("archer_outbox_pending", "Workflow intents in the outbox not yet delivered."))
                    .expect("valid metric"),
            ),
            outbox_oldest_age: reg(
                &r,
                prometheus::Gauge::with_opts(opts(
                    "archer_outbox_oldest_age_seconds",
                    "Age of the oldest undelivered workflow intent (0 when none waits).",
                ))
                .expect("valid metric"),
            ),
            relay_deliveries: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_relay_deliveries_total", "Outbox intents delivered to Temporal."),
                    &["operation"],
                )
                .expect("valid metric"),
            ),
            relay_failures: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_relay_failures_total", "Outbox deliveries that failed and will be retried."),
                    &["operation"],
                )
                .expect("valid metric"),
            ),
            relay_leader: reg(
                &r,
                IntGauge::with_opts(opts(
                    "archer_relay_leader",
                    "1 while this process's outbox relay leads (delivers); 0 while it stands by.",
                ))
                .expect("valid metric"),
            ),
            workflow_starts: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_workflow_starts_total", "Workflows started through the outbox, by type."),
                    &["workflow"],
                )
                .expect("valid metric"),
            ),
            workflow_signals: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_workflow_signals_total", "Signals delivered through the outbox, by name."),
                    &["signal"],
                )
                .expect("valid metric"),
            ),
            sla_clocks: reg(
                &r,
                IntGaugeVec::new(opts("archer_sla_clocks", "SLA clocks by state."), &["state"]).expect("valid metric"),
            ),
            sla_warnings: reg(
                &r,
                IntCounter::with_opts(opts("archer_sla_warnings_total", "SLA warnings recorded."))
                    .expect("valid metric"),
            ),
            sla_breaches: reg(
                &r,
                IntCounter::with_opts(opts("archer_sla_breaches_total", "SLA breaches recorded."))
                    .expect("valid metric"),
            ),
            sla_breach_lag: reg(
                &r,
                Histogram::with_opts(hist(
                    "archer_sla_breach_lag_seconds",
                    "From the instant an SLA target fell due to its breach being recorded.",
                    LAG_BUCKETS,
                ))
                .expect("valid metric"),
            ),
            approvals_pending: reg(
                &r,
                IntGauge::with_opts(opts("archer_approvals_pending", "Approval tasks waiting for a decision."))
                    .expect("valid metric"),
            ),
            approval_decision_to_next_step: reg(
                &r,
                Histogram::with_opts(hist(
                    "archer_approval_decision_to_next_step_seconds",
                    "From an approval decision being recorded to the workflow acting on it.",
                    LAG_BUCKETS,
                ))
                .expect("valid metric"),
            ),
            emails: reg(
                &r,
                IntCounterVec::new(
                    opts("archer_emails_total", "Emails by outcome: sent, failed, or unknown (not retried)."),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            db_pool_acquire: reg(
                &r,
                HistogramVec::new(
                    hist(
                        "archer_db_pool_acquire_seconds",
                        "Time spent waiting for a database connection.",
                        POOL_BUCKETS,
                    ),
                    &["pool"],
                )
                .expect("valid metric"),
            ),
            build_info: reg(
                &r,
                IntGaugeVec::new(
                    opts("archer_build_info", "1, labelled with the running version and the process's roles."),
                    &["version", "role"],
                )
                .expect("valid metric"),
            ),
            pools: std::sync::Arc::new(PoolsCollector::new()),
            registry: r,
        };
        m.registry.register(Box::new(PoolsHandle(m.pools.clone()))).expect("registered once");
        // every known series exists from the start at 0, so `increase()` and `rate()` see the
        // first event and alerts on them can fire
        for operation in ["start", "signal"] {
            m.relay_deliveries.with_label_values(&[operation]);
            m.relay_failures.with_label_values(&[operation]);
        }
        for outcome in ["sent", "failed", "unknown"] {
            m.emails.with_label_values(&[outcome]);
        }
        #[cfg(target_os = "linux")]
        {
            let _ = m.registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        m
    }

    /// The text exposition of every instrument (Prometheus format 0.0.4).
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        // encoding into a Vec fails only on an inconsistent family, which these are not
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reports `pool`'s connections (in use, idle, maximum) under the label `name` from now on.
    pub fn watch_pool(&self, name: &'static str, pool: &PgPool) {
        if let Ok(mut pools) = self.pools.pools.lock() {
            pools.retain(|(_, p)| !p.is_closed());
            pools.push((name, pool.clone()));
        }
    }

    /// Records one wait for a connection of the pool labelled `pool`.
    pub fn observe_acquire(&self, pool: &str, waited: Duration) {
        self.db_pool_acquire.with_label_values(&[pool]).observe(waited.as_secs_f64());
    }

    /// Marks this process as running `role` (api, relay, worker).
    pub fn running(&self, role: &str) {
        self.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), role]).set(1);
    }
}

/// The process's instruments.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Database pool use, read from the pools at each scrape.
struct PoolsCollector {
    pools: Mutex<Vec<(&'static str, PgPool)>>,
    connections: IntGaugeVec,
    max: IntGaugeVec,
}

impl PoolsCollector {
    fn new() -> Self {
        PoolsCollector {
            pools: Mutex::new(Vec::new()),
            connections: IntGaugeVec::new(
                opts("archer_db_pool_connections", "Database connections of a pool, by state (in_use, idle)."),
                &["pool", "state"],
            )
            .expect("valid metric"),
            max: IntGaugeVec::new(opts("archer_db_pool_max_connections", "A pool's connection limit."), &["pool"])
                .expect("valid metric"),
        }
    }
}

struct PoolsHandle(std::sync::Arc<PoolsCollector>);

impl Collector for PoolsHandle {
    fn desc(&self) -> Vec<&Desc> {
        self.0.connections.desc().into_iter().chain(self.0.max.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.0;
        c.connections.reset();
        c.max.reset();
        if let Ok(pools) = c.pools.lock() {
            for (name, pool) in pools.iter().filter(|(_, p)| !p.is_closed()) {
                let size = i64::from(pool.size());
                let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
                c.connections.with_label_values(&[*name, "idle"]).set(idle);
                c.connections.with_label_values(&[*name, "in_use"]).set((size - idle).max(0));
                c.max.with_label_values(&[*name]).set(i64::from(pool.options().get_max_connections()));
            }
        }
        c.connections.collect().into_iter().chain(c.max.collect()).collect()
    }
}

/// The database figures behind the scrape-time gauges: the outbox backlog, SLA clocks by
/// state, approvals pending. Read across tenants by the process's own role (the owner of the
/// tables, which row-level security does not restrict), never by a request's.
/// Each statement gets at most two seconds, so a slow database never holds a scrape.
pub async fn refresh_database_gauges(db: &crate::Db) -> crate::Result<()> {
    let mut conn = db.pool().begin().await?;
    sqlx::query("SET LOCAL statement_timeout = '2s'").execute(&mut *conn).await?;
    let (pending, oldest) = crate::outbox::backlog(&mut conn, db.now()).await?;
    let m = metrics();
    m.outbox_pending.set(pending);
    m.outbox_oldest_age.set(oldest);
    let clocks = crate::sla::clocks_by_state(&mut conn).await?;
    m.sla_clocks.reset();
    for state in crate::sla::CLOCK_STATES {
        m.sla_clocks.with_label_values(&[state]).set(0);
    }
    for (state, n) in clocks {
        m.sla_clocks.with_label_values(&[state.as_str()]).set(n);
    }
    m.approvals_pending.set(crate::approvals::pending_count(&mut conn).await?);
    conn.rollback().await?;
    Ok(())
}
