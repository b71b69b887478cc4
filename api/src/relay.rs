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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
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
    // rows delivered whose mark found them locked by another session: not picked up again
    // until their hold ends, so one stuck row never stalls the rest
    let mut held: HashMap<i64, tokio::time::Instant> = HashMap::new();
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        held.retain(|_, until| *until > now);
        let skip: Vec<i64> = held.keys().copied().collect();
        // the lock connection doubles as the relay's connection: if it breaks, leadership is
        // lost and the outer loop starts over
        let rows = outbox::due(&mut lock_conn, pool.now(), BATCH, &skip).await?;
        let full = rows.len() as i64 == BATCH;
        if !rows.is_empty() {
            for id in deliver_batch(pool, &client, temporal, rows).await? {
                held.insert(id, now + HOLD_LOCKED);
            }
        }
        if last_housekeeping.elapsed() > Duration::from_secs(600) {
            let at = pool.now();
            let n = idempotency::expire(&mut lock_conn, at, IDEMPOTENCY_TTL).await?;
            let m = archer_store::users::expire_login_attempts(&mut lock_conn, at, IDEMPOTENCY_TTL).await?;
            let e = archer_store::tokens::expire_expired_token_uses(&mut lock_conn, at, IDEMPOTENCY_TTL).await?;
            let r = archer_store::security::expire_refused_links(&mut lock_conn, at, REFUSED_LINKS_TTL).await?;
            tracing::debug!(
                expired = n,
                login_attempts = m,
                expired_tokens = e,
                refused_links = r,
                "idempotency keys, login throttles, expired-token counts and old refused links forgotten"
            );
            last_housekeeping = tokio::time::Instant::now();
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = listener.recv() => { n?; }
            // retries that came due, and a safety net for a missed notification
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Delivers a batch, concurrently across workflows and in order within one. Returns the rows
/// that could not be marked (locked by another session).
async fn deliver_batch(
    pool: &Db,
    client: &Client,
    temporal: &TemporalConfig,
    rows: Vec<OutboxRow>,
) -> Result<Vec<i64>, RelayError> {
    let mut by_workflow: BTreeMap<String, Vec<OutboxRow>> = BTreeMap::new();
    for row in rows {
        by_workflow.entry(row.workflow_id.clone()).or_default().push(row);
    }
    let results: Vec<Result<Vec<i64>, RelayError>> = futures::stream::iter(by_workflow.into_values())
        .map(|rows| async move {
            let mut conn = pool.acquire().await?;
            let mut unmarked = Vec::new();
            for row in rows {
                let outcome = tokio::time::timeout(DELIVERY_TIMEOUT, deliver(client, temporal, &row))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer from Temporal within {DELIVERY_TIMEOUT:?}")));
                match outcome {
                    Ok(note) => {
                        if !outbox::mark_delivered(&mut conn, pool.now(), row.id, note.as_deref()).await? {
                            tracing::warn!(outbox_id = row.id, workflow_id = %row.workflow_id, "delivered, but the row is locked by another session: moving on");
                            unmarked.push(row.id);
                        }
                    }
                    Err(error) => {
                        let wait = time::Duration::seconds(2_i64.saturating_pow(row.attempts.clamp(0, 5) as u32));
                        tracing::warn!(outbox_id = row.id, workflow_id = %row.workflow_id, %error, attempts = row.attempts + 1, "delivery failed; will retry");
                        if !outbox::mark_failed(&mut conn, pool.now(), row.id, &error, wait).await? {
                            unmarked.push(row.id);
                        }
                        // later intents for this workflow wait for this one
                        break;
                    }
                }
            }
            Ok(unmarked)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut unmarked = Vec::new();
    for r in results {
        unmarked.extend(r?);
    }
    Ok(unmarked)
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
