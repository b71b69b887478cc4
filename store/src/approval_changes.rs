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

use crate::TenantTx;
use crate::approvals::{self, ApprovalRow, Decided, TaskRow};
use crate::changes::{self, ServiceError};
use crate::outbox;
use crate::tickets::TicketRow;

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
    outbox::start(tx, ticket.tenant_id, &wf::request_workflow_id(&ticket_wf, approval.seq), wf::REQUEST_TYPE, &input)
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

/// The ticket left the status its approval waits in (cancelled, sent back), or ended: its
/// pending approvals (the request's or change's own, and any a playbook step asked for) are
/// cancelled now, in the database, and their chains told so.
pub async fn cancel_pending(tx: &mut TenantTx, ticket_id: Uuid, reason: &str) -> Result<(), ServiceError> {
    for a in approvals::of_ticket(tx, ticket_id).await?.into_iter().filter(|a| a.state == "pending") {
        cancel(tx, &a, reason).await?;
    }
    Ok(())
}

/// Cancels the pending approval `a` (its open steps closed) and tells its chain, which then
/// ends as cancelled. The caller has checked that `a` is pending.
pub async fn cancel(tx: &mut TenantTx, a: &ApprovalRow, reason: &str) -> Result<(), ServiceError> {
    approvals::finish(tx, a.id, "cancelled", reason).await?;
    for step in approvals::steps(tx, a.id).await? {
        if step.state == "open" {
            approvals::close_step(tx, step.id, "cancelled", reason).await?;
        }
    }
    let tenant = tx.tenant_id();
    outbox::signal(tx, tenant, &a.workflow_id, &ChainCancelled { reason: reason.to_owned() }).await?;
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
        let at = tx.now();
        let tenant = tx.tenant_id();
        let signal = DecisionMade { task_id: t.id, approver_id: t.approver_id, decision, at: rfc3339(at) };
        outbox::signal(tx, tenant, &approval.workflow_id, &signal).await?;
    }
    Ok(decided)
}

/// A deactivated approver decides nothing: each of their open approval tasks goes to their
/// out-of-office delegate if they have an active one (who is told in the app and by the step's
/// next reminder), otherwise it is withdrawn and its chain is told to decide the step again
/// without it (it may then be approved, or impossible). In the deactivating transaction.
pub async fn hand_over_tasks_of_deactivated(tx: &mut TenantTx, user: Uuid) -> Result<(), ServiceError> {
    let delegate = match approvals::delegate_of(tx, user).await? {
        Some(d) if crate::users::get(tx, d).await.is_ok_and(|u| u.active) => Some(d),
        _ => None,
    };
    for task in approvals::open_tasks_of(tx, user).await? {
        if let Some(d) = delegate
            && approvals::hand_task_to(tx, task.task_id, d, user).await?
        {
            notify_handed_over(tx, &task, d).await?;
            continue;
        }
        approvals::withdraw_task(tx, task.task_id).await?;
        let signal = wf::ApproverWithdrawn { task_id: task.task_id, reason: "the approver was deactivated".into() };
        let tenant = tx.tenant_id();
        outbox::signal(tx, tenant, &task.workflow_id, &signal).await?;
    }
    Ok(())
}

/// Tells `delegate` that `task` is theirs now, once per task.
async fn notify_handed_over(tx: &mut TenantTx, task: &approvals::OpenTask, delegate: Uuid) -> Result<(), ServiceError> {
    use crate::notifications::{self, NewNotification};
    let data = serde_json::json!({"approval_id": task.approval_id, "task_id": task.task_id});
    let tenant_id = tx.tenant_id();
    notifications::notify(
        tx,
        NewNotification {
            tenant_id,
            user_id: delegate,
            ticket_id: Some(task.ticket_id),
            kind: "approval.handed_over",
            title: "An approval was handed to you",
            body: "Its approver was deactivated and you are their delegate: decide it in your approvals inbox.",
            data: &data,
            dedup_key: &format!("approval-handed-over:{}", task.task_id),
        },
    )
    .await?;
    Ok(())
}
