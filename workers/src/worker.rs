//! Running a Temporal worker for Archer's task queue.
//!
//! The SDK's worker future is not `Send`, so it runs on a thread of its own with a
//! single-threaded runtime; [`WorkerHandle`] stops it gracefully.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use archer_orchestrator::workflows::approval::{ApprovalChainWorkflow, RequestWorkflow};
use archer_orchestrator::workflows::playbook::PlaybookRunWorkflow;
use archer_orchestrator::workflows::ticket::TicketWorkflow;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::activities::TicketActivities;
use crate::approvals::ApprovalActivities;
use crate::email::{MailConfig, Mailer};
use crate::links::LinkSigner;
use crate::playbooks::{HttpClients, PlaybookActivities};
use crate::temporal::{self, TemporalConfig, TemporalError};

/// What the activities reach: the database, the SMTP server, the API's public address, the
/// clock. The worker opens its own connections on its own runtime.
#[derive(Clone)]
pub struct WorkerDeps {
    pub database_url: String,
    pub database_max_connections: u32,
    /// Timeouts every database session of the worker runs under.
    pub database_limits: archer_store::SessionLimits,
    /// `None`: emails are queued but not sent.
    pub mail: Option<MailConfig>,
    pub public_url: String,
    /// Signs the decision links in approval emails (the API checks them with the same key).
    pub links: LinkSigner,
    /// Where the activities read the time (the API's clock, so a test fixes both at once).
    pub clock: Arc<dyn archer_store::Clock>,
    /// Decrypts connection secrets for playbook HTTP steps (`secrets_key`).
    pub secrets: archer_store::secrets::Cipher,
    /// Workflows kept in memory between their tasks (`worker_max_cached_workflows`). A workflow
    /// evicted from the cache is replayed from its history at its next task (a timer firing, a
    /// signal), so the bound trades memory for replay work, never correctness.
    pub max_cached_workflows: usize,
    /// How long a workflow task waits on this worker's sticky queue before the server hands it
    /// to any worker, which replays the workflow from its history (`worker_sticky_timeout_secs`).
    /// A timer that fires as a worker dies (a breach falling due) waits this long.
    pub sticky_timeout: std::time::Duration,
    /// After shutdown begins, running activities get this long to finish before they are
    /// cancelled (and retried by Temporal on another worker) (`shutdown_grace_secs`).
    pub shutdown_grace: std::time::Duration,
}

impl std::fmt::Debug for WorkerDeps {
    /// Without the database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let database = match url::Url::parse(&self.database_url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("[REDACTED]"));
                }
                u.to_string()
            }
            Err(_) => "[unparsable]".to_owned(),
        };
        f.debug_struct("WorkerDeps")
            .field("database_url", &database)
            .field("database_max_connections", &self.database_max_connections)
            .field("database_limits", &self.database_limits)
            .field("mail", &self.mail)
            .field("public_url", &self.public_url)
            .field("clock", &self.clock)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

/// How long a playbook's `http.request` or `webhook.post` waits for its receiver (connecting
/// included) before the attempt fails as unavailable and is retried.
const PLAYBOOK_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A running worker. Dropping it without [`WorkerHandle::shutdown`] leaves it running until
/// the process ends.
pub struct WorkerHandle {
    shutdown: Box<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<Result<(), TemporalError>>>,
}

impl WorkerHandle {
    /// Asks the worker to finish its current tasks and stop, and waits for it.
    pub fn shutdown(mut self) -> Result<(), TemporalError> {
        (self.shutdown)();
        self.join_inner()
    }

    /// Waits until the worker stops on its own (it only does on error).
    pub fn join(mut self) -> Result<(), TemporalError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<(), TemporalError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| TemporalError::Worker("worker thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

/// The SDK's runtime, its metrics exported in Prometheus form on a loopback port of its own,
/// which the process's `/metrics` reads and serves beside Archer's (`temporal_*`: task slots,
/// the sticky cache, pollers, latencies), named as Prometheus expects (`_total`, seconds).
fn sdk_runtime_options() -> Result<temporalio_sdk::runtime::RuntimeOptions, TemporalError> {
    use temporalio_common::telemetry::{PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter};
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .counters_total_suffix(true)
            .unit_suffix(true)
            .use_seconds_for_durations(true)
            .build(),
    )
    .map_err(|e| TemporalError::Worker(format!("the SDK's metrics exporter: {e}")))?;
    crate::telemetry::set_sdk_metrics(exporter.bound_addr);
    let meter: Arc<dyn temporalio_common::telemetry::metrics::CoreMeter> = exporter.meter;
    temporalio_sdk::runtime::RuntimeOptions::builder()
        .telemetry_options(TelemetryOptions::builder().metrics(meter).build())
        .build()
        .map_err(TemporalError::Worker)
}

/// Connects to Temporal, registers Archer's workflows and activities and starts polling.
/// Returns once the worker is polling (or failed to start).
pub fn spawn_worker(cfg: TemporalConfig, deps: WorkerDeps) -> Result<WorkerHandle, TemporalError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Box<dyn Fn() + Send + Sync>, TemporalError>>();
    let thread = std::thread::Builder::new()
        .name(format!("temporal-worker-{}", cfg.task_queue))
        .spawn(move || -> Result<(), TemporalError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| TemporalError::Worker(e.to_string()))?;
            rt.block_on(async move {
                let started = async {
                    let client = temporal::connect(&cfg).await?;
                    let runtime = Runtime::from_current_tokio(sdk_runtime_options()?)
                        .map_err(|e| TemporalError::Worker(e.to_string()))?;
                    let pool = archer_store::connect_with(
                        &deps.database_url,
                        deps.database_max_connections,
                        deps.database_limits,
                    )
                    .await
                    .map_err(|e| TemporalError::Worker(format!("database: {e}")))?;
                    let pool = archer_store::Db::new(pool, deps.clock.clone()).watched("worker");
                    let mailer = deps
                        .mail
                        .as_ref()
                        .map(Mailer::new)
                        .transpose()
                        .map_err(|e| TemporalError::Worker(format!("mail: {e}")))?;
                    let approvals = ApprovalActivities {
                        pool: pool.clone(),
                        links: deps.links.clone(),
                        public_url: deps.public_url.clone(),
                    };
                    let playbooks = PlaybookActivities {
                        pool: pool.clone(),
                        mailer: mailer.clone(),
                        cipher: deps.secrets.clone(),
                        http: HttpClients::new(PLAYBOOK_HTTP_TIMEOUT)
                            .map_err(|e| TemporalError::Worker(format!("playbook HTTP: {e}")))?,
                        public_url: deps.public_url.clone(),
                    };
                    let activities = TicketActivities { pool, mailer, public_url: deps.public_url.clone() };
                    let werr = |e: temporalio_sdk::WorkflowRegistrationError| TemporalError::Worker(e.to_string());
                    let options = WorkerOptions::new(cfg.task_queue.clone())
                        .register_workflow::<TicketWorkflow>()
                        .map_err(werr)?
                        .register_workflow::<RequestWorkflow>()
                        .map_err(werr)?
                        .register_workflow::<ApprovalChainWorkflow>()
                        .map_err(werr)?
                        .register_workflow::<PlaybookRunWorkflow>()
                        .map_err(werr)?
                        .register_activities(activities)
                        .register_activities(approvals)
                        .register_activities(playbooks)
                        .max_cached_workflows(deps.max_cached_workflows)
                        .sticky_queue_schedule_to_start_timeout(deps.sticky_timeout)
                        .graceful_shutdown_period(deps.shutdown_grace)
                        .worker_plugin(crate::telemetry::activity_spans())
                        .build();
                    let worker =
                        Worker::new(&runtime, client, options).map_err(|e| TemporalError::Worker(e.to_string()))?;
                    Ok::<_, TemporalError>((runtime, worker))
                }
                .await;
                let (_runtime, mut worker) = match started {
                    Ok(w) => w,
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = ready_tx.send(Err(e));
                        return Err(TemporalError::Worker(msg));
                    }
                };
                let _ = ready_tx.send(Ok(Box::new(worker.shutdown_handle())));
                tracing::info!(task_queue = %cfg.task_queue, "worker polling");
                worker.run().await.map_err(|e| TemporalError::Worker(e.to_string()))
            })
        })
        .map_err(|e| TemporalError::Worker(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(shutdown)) => Ok(WorkerHandle { shutdown, thread: Some(thread) }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(match thread.join() {
            Ok(Err(e)) => e,
            _ => TemporalError::Worker("worker thread ended before starting".into()),
        }),
    }
}
