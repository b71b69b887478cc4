//! Starting, deciding and cancelling approvals, with the workflow intents each records (the
//! outbox rows), in the caller's transaction. Every writer (API handlers, decision pages, ticket
//! changes, catalog requests) goes through here; no other code records approval intents.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use archer_orchestrator::approval::{ChainSpec, Decision};
use archer_orchestrator::catalog::{ChangeRouting, ChangeType, Route};
use archer_orchestrator::workflows::activities::TicketRef;
use archer_orchestrator::workflows::approval::{self as wf, ChainCancelled, DecisionMade, RequestInput};
use archer_orchestrator::{Status, TenantSlug};

use crate::approvals::{self, ApprovalRow, Decided, TaskRow};
use crate::changes::{self, ServiceError};
use crate::outbox::{self, Intent};
use crate::tickets::TicketRow;
use crate::{TenantTx, tx_now};

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Who waits for an approval and where its outcome moves the ticket.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    /// The status the ticket waits in while the approval runs.
    pub waiting_in: Status,
    pub on_approved: Status,
    pub on_rejected: Status,
}

/// Records an approval of `ticket` by `chain` and the intent to run it (the ticket's `request`
/// workflow, which runs the chain as its child). `auto_approve` records it approved at once.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    tx: &mut TenantTx,
    ticket: &TicketRow,
    tenant: &TenantSlug,
    chain: &ChainSpec,
    auto_approve: Option<String>,
    source: &str,
    waiting: Waiting,
) -> Result<ApprovalRow, ServiceError> {
    let parsed = changes::parse(ticket)?;
    let ticket_wf = archer_orchestrator::workflows::ticket::workflow_id(tenant, &parsed.number);
    let chain_json = serde_json::to_value(chain)?;
    let approval = approvals::create(
        tx,
        ticket.tenant_id,
        ticket.id,
        |seq| wf::chain_workflow_id(&ticket_wf, seq),
        &chain_json,
        source,
    )
    .await?;
    let input = RequestInput {
        ticket: TicketRef {
            tenant_id: ticket.tenant_id,
            tenant: tenant.clone(),
            ticket_id: ticket.id,
            number: parsed.number,
        },
        approval_id: approval.id,
        seq: approval.seq,
        chain: chain.clone(),
        auto_approve,
        waiting_in: waiting.waiting_in,
        on_approved: waiting.on_approved,
        on_rejected: waiting.on_rejected,
    };
    outbox::enqueue(
        tx,
        ticket.tenant_id,
        &wf::request_workflow_id(&ticket_wf, approval.seq),
        Intent::Start,
        wf::REQUEST_TYPE,
        &serde_json::to_value(&input)?,
    )
    .await?;
    Ok(approval)
}

/// The tenant's change routing: configured, or the default.
pub async fn routing(tx: &mut TenantTx) -> Result<ChangeRouting, ServiceError> {
    let tenant = tx.tenant_id();
    match approvals::change_routing(tx, tenant).await? {
        Some(v) => Ok(serde_json::from_value(v)?),
        None => Ok(ChangeRouting::default_routing()),
    }
}

/// A change of `change_type` entered authorization: records its approval per the tenant's
/// routing and the intent to run it (standard changes get an automatic approval).
pub async fn start_change(
    tx: &mut TenantTx,
    ticket: &TicketRow,
    tenant: &TenantSlug,
    change_type: ChangeType,
) -> Result<ApprovalRow, ServiceError> {
    let routing = routing(tx).await?;
    let (chain, auto, source) = match routing.route(change_type) {
        Route::AutoApprove { reason } => (
            ChainSpec { steps: Vec::new() },
            Some(reason.clone()),
            format!("change routing: {} (automatic)", change_type.as_str()),
        ),
        Route::Chain(c) => (c.clone(), None, format!("change routing: {}", change_type.as_str())),
    };
    let waiting =
        Waiting { waiting_in: Status::Authorize, on_approved: Status::Scheduled, on_rejected: Status::Rejected };
    start(tx, ticket, tenant, &chain, auto, &source, waiting).await
}

/// The ticket left the status its approval waits in (cancelled, sent back): the pending
/// approval is cancelled now, in the database, and its chain told so.
pub async fn cancel_pending(tx: &mut TenantTx, ticket_id: Uuid, reason: &str) -> Result<(), ServiceError> {
    let Some(a) = approvals::pending_of_ticket(tx, ticket_id).await? else { return Ok(()) };
    approvals::finish(tx, a.id, "cancelled", reason).await?;
    for step in approvals::steps(tx, a.id).await? {
        if step.state == "open" {
            approvals::close_step(tx, step.id, "cancelled", reason).await?;
        }
    }
    let tenant = tx.tenant_id();
    outbox::enqueue(
        tx,
        tenant,
        &a.workflow_id,
        Intent::Signal,
        "cancel",
        &serde_json::to_value(ChainCancelled { reason: reason.to_owned() })?,
    )
    .await?;
    Ok(())
}

/// Records `decision` on `task` and, in the same transaction, the outbox row that delivers it
/// to the chain's workflow. The caller has checked who decides (`approval::may_decide`).
pub async fn decide(
    tx: &mut TenantTx,
    approval: &ApprovalRow,
    task: &TaskRow,
    decision: Decision,
    comment: Option<&str>,
    via: &str,
) -> Result<Decided, ServiceError> {
    let word = match decision {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    };
    let decided = approvals::decide(tx, task.id, word, comment, via).await?;
    if let Decided::Recorded(t) = &decided {
        let at = tx_now(tx).await?;
        let tenant = tx.tenant_id();
        let signal = DecisionMade { task_id: t.id, approver_id: t.approver_id, decision, at: rfc3339(at) };
        outbox::enqueue(tx, tenant, &approval.workflow_id, Intent::Signal, "decision", &serde_json::to_value(&signal)?)
            .await?;
    }
    Ok(decided)
}
