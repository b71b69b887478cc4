//! The outbox relay: delivers workflow intents recorded with the data to Temporal.
//!
//! One relay delivers at a time (a PostgreSQL advisory lock elects it; others stand by), in
//! outbox order per workflow, concurrently across workflows. Delivery is idempotent, so a
//! relay killed between Temporal accepting an intent and the row being marked delivered does
//! no harm when it (or its successor) delivers the row again:
//! - starts use a deterministic workflow id, `UseExisting` for a running one and
//!   `RejectDuplicate` for a closed one;
//! - signals carry a request id derived from the outbox row, which Temporal deduplicates, and a
//!   sequence number the workflow checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sqlx::postgres::PgListener;
use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use tokio_util::sync::CancellationToken;

use archer_orchestrator::workflows::approval::{self as wf_approval, ApprovalChainWorkflow, RequestWorkflow};
use archer_orchestrator::workflows::playbook::{self as wf_playbook, PlaybookRunWorkflow};
use archer_orchestrator::workflows::search;
use archer_orchestrator::workflows::signals::{ChainSignal, Delivery, RunSignal, TicketSignal};
use archer_orchestrator::workflows::ticket::{self as wf, TicketWorkflow};
use archer_store::outbox::{self, OutboxRow};
use archer_store::{Db, StoreError, idempotency};
use archer_workers::TemporalConfig;

use archer_store::changes::StartTicket;

/// How many intents one round picks up.
const BATCH: i64 = 200;
/// Workflows delivered to at once.
const CONCURRENCY: usize = 16;
/// One delivery to Temporal may take this long before it counts as failed (and is retried).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// A row delivered but found locked when marking it is left alone this long, then delivered
/// again (harmless) and marked.
const HOLD_LOCKED: Duration = Duration::from_secs(30);
/// Refused decision links (signature failures) are kept this long.
const REFUSED_LINKS_TTL: time::Duration = time::Duration::days(90);
/// Idempotency keys are kept this long.
const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);
/// An email claimed for sending this long ago and not finished had a sender that died (every
/// send activity times out within a minute), and is flagged outcome unknown.
const STALLED_SEND: time::Duration = time::Duration::minutes(5);
/// How often the relay looks for such emails.
const STALLED_SENDS_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Runs until `shutdown` is cancelled. Survives database and Temporal outages by retrying.
/// Its statements run outside transactions, so each is given the instant of `pool`'s clock.
pub async fn run(pool: Db, temporal: TemporalConfig, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        match lead(&pool, &temporal, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay interrupted");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Waits to become the leader, then delivers until shutdown or an error.
async fn lead(pool: &Db, temporal: &TemporalConfig, shutdown: &CancellationToken) -> Result<(), RelayError> {
    let mut lock_conn = pool.acquire().await?.detach();
    loop {
        if outbox::try_lead(&mut lock_conn).await? {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    tracing::info!("outbox relay leading");
    let _leading = Leading::new();
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen("archer_outbox").await?;
    let client = loop {
        match archer_workers::temporal::connect(temporal).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "relay waiting for Temporal");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    if let Err(e) = archer_workers::temporal::ensure_search_attributes(&client, &temporal.namespace).await {
        // e.g. no operator permission on a managed cluster: `archer migrate` or an admin does it
        tracing::warn!(error = %e, "could not register search attributes; starts fail until they exist");
    }
    let mut last_housekeeping = tokio::time::Instant::now() - Duration::from_secs(3600);
    let mut last_stalled_sends = tokio::time::Instant::now() - Duration::from_secs(3600);
    let mut relay = Pipeline::default();
    // the last fetch filled a batch, or a notification came: fetch again as soon as there is room
    let mut more = true;
    loop {
        if shutdown.is_cancelled() {
            // deliveries under way finish (each bounded by DELIVERY_TIMEOUT) and are marked
            while let Some(outcome) = relay.in_flight.next().await {
                relay.settle(&mut lock_conn, pool, outcome).await?;
            }
            relay.flush(&mut lock_conn, pool).await?;
            return Ok(());
        }
        if relay.queue.is_empty() && relay.in_flight.len() < CONCURRENCY && (more || relay.in_flight.is_empty()) {
            // marking first lets the next intents of the workflows just delivered come due
            relay.flush(&mut lock_conn, pool).await?;
            // the lock connection doubles as the relay's connection: if it breaks, leadership
            // is lost and the outer loop starts over
            let rows = outbox::due(&mut lock_conn, pool.now(), BATCH, &relay.skip()).await?;
            more = rows.len() as i64 == BATCH;
            relay.enqueue(rows);
        }
        relay.start(client.clone(), temporal.clone());
        if relay.in_flight.is_empty() {
            if last_housekeeping.elapsed() > Duration::from_secs(600) {
                housekeeping(&mut lock_conn, pool.now()).await?;
                last_housekeeping = tokio::time::Instant::now();
            }
            if last_stalled_sends.elapsed() > STALLED_SENDS_EVERY {
                let n =
                    archer_store::notifications::flag_stalled_sends(&mut lock_conn, pool.now(), STALLED_SEND).await?;
                if n > 0 {
                    archer_store::metrics::metrics().emails.with_label_values(&["unknown"]).inc_by(n);
                    tracing::warn!(
                        emails = n,
                        "emails whose sender died mid-send flagged outcome unknown (not sent again)"
                    );
                }
                last_stalled_sends = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                n = listener.recv() => { n?; more = true; }
                // retries that came due, and a safety net for a missed notification
                _ = tokio::time::sleep(Duration::from_secs(1)) => { more = true; }
            }
            continue;
        }
        tokio::select! {
            Some(outcome) = relay.in_flight.next() => relay.settle(&mut lock_conn, pool, outcome).await?,
            // new intents (an approval decision) need not wait for the deliveries under way
            n = listener.recv() => { n?; more = true; }
        }
    }
}

/// `archer_relay_leader` is 1 while this value lives (the relay leads), 0 after.
struct Leading;

impl Leading {
    fn new() -> Self {
        archer_store::metrics::metrics().relay_leader.set(1);
        Leading
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        archer_store::metrics::metrics().relay_leader.set(0);
    }
}

/// Counts one delivery attempt of `row` in the relay's metrics.
fn count(row: &OutboxRow, outcome: &Result<Option<String>, String>) {
    let m = archer_store::metrics::metrics();
    // label values are Archer's own: an intent is `start` or `signal` (a CHECK in the schema),
    // and only a delivered row's name is known to be one of Archer's workflow types or signals
    let operation = if row.intent == "signal" { "signal" } else { "start" };
    match outcome {
        Ok(note) => {
            m.relay_deliveries.with_label_values(&[operation]).inc();
            match operation {
                "signal" => m.workflow_signals.with_label_values(&[row.name.as_str()]).inc(),
                _ if note.is_none() => m.workflow_starts.with_label_values(&[row.name.as_str()]).inc(),
                _ => {}
            }
        }
        Err(_) => m.relay_failures.with_label_values(&[operation]).inc(),
    }
}

/// Forgets what has expired: idempotency keys, login throttles, expired-token counts, refused
/// decision links.
async fn housekeeping(conn: &mut sqlx::PgConnection, at: time::OffsetDateTime) -> Result<(), RelayError> {
    let n = idempotency::expire(conn, at, IDEMPOTENCY_TTL).await?;
    let m = archer_store::users::expire_login_attempts(conn, at, IDEMPOTENCY_TTL).await?;
    let e = archer_store::tokens::expire_expired_token_uses(conn, at, IDEMPOTENCY_TTL).await?;
    let r = archer_store::security::expire_refused_links(conn, at, REFUSED_LINKS_TTL).await?;
    tracing::debug!(
        expired = n,
        login_attempts = m,
        expired_tokens = e,
        refused_links = r,
        "idempotency keys, login throttles, expired-token counts and old refused links forgotten"
    );
    Ok(())
}

/// What became of one workflow's intents: those delivered (with their notes), then the first
/// that failed, if any (the workflow's later intents wait for it), and every id it was given.
struct Outcome {
    ids: Vec<i64>,
    delivered: Vec<(i64, Option<String>)>,
    failed: Option<(OutboxRow, String)>,
}

type Delivering = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>;

/// The relay's deliveries: up to [`CONCURRENCY`] workflows at once, each in outbox order, with
/// no pause between batches (a slow start holds up only its own workflow). Delivered rows are
/// marked together, in one statement, before the next fetch.
#[derive(Default)]
struct Pipeline {
    /// Workflows fetched, waiting for a delivery slot.
    queue: std::collections::VecDeque<Vec<OutboxRow>>,
    in_flight: FuturesUnordered<Delivering>,
    /// Ids being delivered or delivered and not yet marked: not fetched again, and (by
    /// [`outbox::due`]) neither is any later intent of their workflows.
    claimed: HashSet<i64>,
    to_mark: Vec<(i64, Option<String>)>,
    /// Rows delivered whose mark found them locked by another session: not picked up again
    /// until their hold ends, so one stuck row never stalls the rest.
    held: HashMap<i64, tokio::time::Instant>,
}

impl Pipeline {
    fn skip(&mut self) -> Vec<i64> {
        let now = tokio::time::Instant::now();
        self.held.retain(|_, until| *until > now);
        self.held.keys().chain(self.claimed.iter()).copied().collect()
    }

    fn enqueue(&mut self, rows: Vec<OutboxRow>) {
        let mut by_workflow: BTreeMap<String, Vec<OutboxRow>> = BTreeMap::new();
        for row in rows {
            self.claimed.insert(row.id);
            by_workflow.entry(row.workflow_id.clone()).or_default().push(row);
        }
        self.queue.extend(by_workflow.into_values());
    }

    fn start(&mut self, client: Client, temporal: TemporalConfig) {
        while self.in_flight.len() < CONCURRENCY {
            let Some(rows) = self.queue.pop_front() else { return };
            let (client, temporal) = (client.clone(), temporal.clone());
            self.in_flight.push(Box::pin(async move { deliver_workflow(&client, &temporal, rows).await }));
        }
    }

    /// Takes in one workflow's outcome: its deliveries wait to be marked, a failure is
    /// recorded now with its retry instant.
    async fn settle(&mut self, conn: &mut sqlx::PgConnection, pool: &Db, outcome: Outcome) -> Result<(), RelayError> {
        let delivered: HashSet<i64> = outcome.delivered.iter().map(|(id, _)| *id).collect();
        self.to_mark.extend(outcome.delivered);
        for id in outcome.ids.iter().filter(|id| !delivered.contains(id)) {
            self.claimed.remove(id);
        }
        if let Some((row, error)) = outcome.failed {
            let wait = time::Duration::seconds(2_i64.saturating_pow(row.attempts.clamp(0, 5) as u32));
            tracing::warn!(outbox_id = row.id, workflow_id = %row.workflow_id, %error, attempts = row.attempts + 1, "delivery failed; will retry");
            if !outbox::mark_failed(conn, pool.now(), row.id, &error, wait).await? {
                self.held.insert(row.id, tokio::time::Instant::now() + HOLD_LOCKED);
            }
        }
        Ok(())
    }

    /// Marks every delivered row in one statement.
    async fn flush(&mut self, conn: &mut sqlx::PgConnection, pool: &Db) -> Result<(), RelayError> {
        if self.to_mark.is_empty() {
            return Ok(());
        }
        let marked: HashSet<i64> = outbox::mark_delivered(conn, pool.now(), &self.to_mark).await?.into_iter().collect();
        let until = tokio::time::Instant::now() + HOLD_LOCKED;
        for (id, _) in self.to_mark.drain(..) {
            self.claimed.remove(&id);
            if !marked.contains(&id) {
                tracing::warn!(outbox_id = id, "delivered, but the row is locked by another session: moving on");
                self.held.insert(id, until);
            }
        }
        Ok(())
    }
}

/// Delivers one workflow's intents in order, stopping at the first that fails.
async fn deliver_workflow(client: &Client, temporal: &TemporalConfig, rows: Vec<OutboxRow>) -> Outcome {
    let ids = rows.iter().map(|r| r.id).collect();
    let mut delivered = Vec::new();
    for row in rows {
        // the request's trace continues here (tracing on): the start or signal carries it on
        let delivery =
            archer_workers::telemetry::in_trace(row.trace_context.as_deref(), deliver(client, temporal, &row));
        let outcome = tokio::time::timeout(DELIVERY_TIMEOUT, delivery)
            .await
            .unwrap_or_else(|_| Err(format!("no answer from Temporal within {DELIVERY_TIMEOUT:?}")));
        count(&row, &outcome);
        match outcome {
            Ok(note) => delivered.push((row.id, note)),
            Err(error) => return Outcome { ids, delivered, failed: Some((row, error)) },
        }
    }
    Outcome { ids, delivered, failed: None }
}

/// Delivers one intent. `Ok(Some(note))` when it was delivered earlier or is moot.
async fn deliver(client: &Client, temporal: &TemporalConfig, row: &OutboxRow) -> Result<Option<String>, String> {
    match (row.intent.as_str(), row.name.as_str()) {
        ("start", wf::WORKFLOW_TYPE) => start_ticket(client, temporal, row).await,
        ("start", wf_approval::REQUEST_TYPE) => start_request(client, temporal, row).await,
        ("start", wf_playbook::WORKFLOW_TYPE) => start_run(client, temporal, row).await,
        ("signal", name) => match Delivery::parse(name, row.payload.clone()).map_err(|e| e.to_string())? {
            Delivery::Ticket(signal) => signal_ticket(client, row, *signal).await,
            Delivery::ApprovalChain(signal) => signal_chain(client, row, signal).await,
            Delivery::PlaybookRun(signal) => signal_run(client, row, signal).await,
        },
        (intent, name) => Err(format!("unknown intent {intent}/{name}")),
    }
}

async fn start_ticket(client: &Client, temporal: &TemporalConfig, row: &OutboxRow) -> Result<Option<String>, String> {
    let start: StartTicket = serde_json::from_value(row.payload.clone()).map_err(|e| format!("bad payload: {e}"))?;
    let input = start.input;
    let attrs = SearchAttributes::new([
        search::TENANT.value_set(input.tenant.to_string()),
        search::NUMBER.value_set(input.number.to_string()),
        search::KIND.value_set(input.number.kind().as_str().to_owned()),
        search::PRIORITY.value_set(i64::from(input.priority.get())),
        search::STATUS.value_set(input.status.as_str().to_owned()),
    ]);
    let mut memo = temporalio_common::MemoValues::new();
    memo.insert("title", start.title.clone());
    memo.insert("kind", input.number.kind().as_str().to_owned());
    let opts = WorkflowStartOptions::new(temporal.task_queue.clone(), row.workflow_id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .search_attributes(attrs)
        .memo(memo)
        .static_summary(format!("{}: {}", input.number, start.title))
        .build();
    match client.start_workflow(TicketWorkflow::run, input, opts).await {
        Ok(_) => Ok(None),
        // a closed ticket's workflow: the start was delivered before
        Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Some("already started".into())),
        Err(e) => Err(e.to_string()),
    }
}

async fn start_request(client: &Client, temporal: &TemporalConfig, row: &OutboxRow) -> Result<Option<String>, String> {
    let input: wf_approval::RequestInput =
        serde_json::from_value(row.payload.clone()).map_err(|e| format!("bad payload: {e}"))?;
    let attrs = SearchAttributes::new([
        search::TENANT.value_set(input.ticket.tenant.to_string()),
        search::NUMBER.value_set(input.ticket.number.to_string()),
        search::KIND.value_set(input.ticket.number.kind().as_str().to_owned()),
    ]);
    let opts = WorkflowStartOptions::new(temporal.task_queue.clone(), row.workflow_id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .search_attributes(attrs)
        .static_summary(format!("{}: approval {}", input.ticket.number, input.seq))
        .build();
    match client.start_workflow(RequestWorkflow::run, input, opts).await {
        Ok(_) => Ok(None),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Some("already started".into())),
        Err(e) => Err(e.to_string()),
    }
}

/// A playbook run: its pinned version travels in the input; the Web UI lists it under the
/// ticket's search attributes, titled by its playbook.
async fn start_run(client: &Client, temporal: &TemporalConfig, row: &OutboxRow) -> Result<Option<String>, String> {
    let input: wf_playbook::RunInput =
        serde_json::from_value(row.payload.clone()).map_err(|e| format!("bad payload: {e}"))?;
    let t = &input.run.ticket;
    let attrs = SearchAttributes::new([
        search::TENANT.value_set(t.tenant.to_string()),
        search::NUMBER.value_set(t.number.to_string()),
        search::KIND.value_set(t.number.kind().as_str().to_owned()),
    ]);
    let summary = format!("{}: playbook {} v{} ({})", t.number, input.run.playbook, input.run.version, input.trigger);
    let opts = WorkflowStartOptions::new(temporal.task_queue.clone(), row.workflow_id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .search_attributes(attrs)
        .static_summary(summary)
        .build();
    match client.start_workflow(PlaybookRunWorkflow::run, input, opts).await {
        Ok(_) => Ok(None),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Some("already started".into())),
        Err(e) => Err(e.to_string()),
    }
}

/// Ticket changes, retries and cancellation, to a playbook run. A run that has ended has
/// nothing left to hear; one not started yet is retried.
async fn signal_run(client: &Client, row: &OutboxRow, signal: RunSignal) -> Result<Option<String>, String> {
    let handle = client.get_workflow_handle::<PlaybookRunWorkflow>(row.workflow_id.clone());
    let opts = WorkflowSignalOptions::builder().request_id(format!("archer-outbox-{}", row.id)).build();
    let sent = match signal {
        RunSignal::TicketChanged(p) => handle.signal(PlaybookRunWorkflow::ticket_changed, p, opts).await,
        RunSignal::Retry(p) => handle.signal(PlaybookRunWorkflow::retry, p, opts).await,
        RunSignal::Cancel(p) => handle.signal(PlaybookRunWorkflow::cancel, p, opts).await,
    };
    match sent {
        Ok(()) => Ok(None),
        Err(WorkflowInteractionError::NotFound(status)) => {
            match handle.describe(WorkflowDescribeOptions::default()).await {
                Ok(_) => Ok(Some(format!("playbook run already ended: {}", status.message()))),
                Err(e) => Err(format!("playbook run not started yet: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Decisions, withdrawals and cancellation, to an approval chain. The chain is started by its
/// request workflow; until it exists, delivery is retried.
async fn signal_chain(client: &Client, row: &OutboxRow, signal: ChainSignal) -> Result<Option<String>, String> {
    let handle = client.get_workflow_handle::<ApprovalChainWorkflow>(row.workflow_id.clone());
    let opts = WorkflowSignalOptions::builder().request_id(format!("archer-outbox-{}", row.id)).build();
    let sent = match signal {
        ChainSignal::Decision(p) => handle.signal(ApprovalChainWorkflow::decision, p, opts).await,
        ChainSignal::Withdraw(p) => handle.signal(ApprovalChainWorkflow::withdraw, p, opts).await,
        ChainSignal::Cancel(p) => handle.signal(ApprovalChainWorkflow::cancel, p, opts).await,
    };
    match sent {
        Ok(()) => Ok(None),
        Err(WorkflowInteractionError::NotFound(status)) => {
            match handle.describe(WorkflowDescribeOptions::default()).await {
                // the chain ended (its step closed, the ticket was cancelled): nothing to apply
                Ok(_) => Ok(Some(format!("approval chain already closed: {}", status.message()))),
                Err(e) => Err(format!("approval chain not started yet: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn signal_ticket(client: &Client, row: &OutboxRow, signal: TicketSignal) -> Result<Option<String>, String> {
    let handle = client.get_workflow_handle::<TicketWorkflow>(row.workflow_id.clone());
    let opts = WorkflowSignalOptions::builder().request_id(format!("archer-outbox-{}", row.id)).build();
    let sent = match signal {
        TicketSignal::StatusChanged(p) => handle.signal(TicketWorkflow::status_changed, p, opts).await,
        TicketSignal::PriorityChanged(p) => handle.signal(TicketWorkflow::priority_changed, p, opts).await,
        TicketSignal::AssignmentChanged(p) => handle.signal(TicketWorkflow::assignment_changed, p, opts).await,
        TicketSignal::CommentAdded(p) => handle.signal(TicketWorkflow::comment_added, p, opts).await,
        TicketSignal::SlaRebuilt(p) => handle.signal(TicketWorkflow::sla_rebuilt, p, opts).await,
    };
    match sent {
        Ok(()) => Ok(None),
        Err(WorkflowInteractionError::NotFound(status)) => {
            // Completed (the ticket closed): nothing left to tell it. Not started yet: retry.
            match handle.describe(WorkflowDescribeOptions::default()).await {
                Ok(_) => Ok(Some(format!("workflow already closed: {}", status.message()))),
                Err(e) => Err(format!("workflow not found: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}
