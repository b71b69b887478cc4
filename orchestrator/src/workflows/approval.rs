//! The request workflow and its approval chain (a child workflow per approval).
//!
//! `request` runs for a service request submitted from the catalog, and for a change entering
//! authorization: it starts the approval chain as a child, waits for its outcome, and moves the
//! ticket on (fulfilment, scheduling) or rejects it. `approval_chain` runs the chain's steps in
//! order: it opens a step (an activity resolves and asks its approvers), applies each decision
//! signalled to it exactly once, reminds and times out on schedule, and closes the step when
//! its rule is met or can no longer be. What to do and when is decided by the pure
//! [`Chain`](crate::approval_chain::Chain); the workflow only executes it (activities, timers,
//! waits). Decisions and cancellation arrive as signals the outbox relay delivers; everything
//! with a side effect is an activity.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};
use uuid::Uuid;

use crate::approval::{ApproverSpec, ChainSpec, Decision, Outcome, StepSpec};
use crate::approval_chain::{Chain, Next};
use crate::ticket::Status;
use crate::workflows::activities::{
    ApplyOutcome, ApprovalActivities, Ask, Close, EscalateStep, OpenStep, SendEmails, SlaActivities, TicketRef,
};
use crate::workflows::signals;
use crate::workflows::wait::{self, workflow_now};

/// An approval as the workflow holds it (its `state` query), kept by the pure chain.
pub use crate::approval_chain::ChainState;

pub const REQUEST_TYPE: &str = "request";
pub const CHAIN_TYPE: &str = "approval_chain";

/// `<ticket workflow id>/request/<n>` and `<ticket workflow id>/approval/<n>`.
pub fn request_workflow_id(ticket_workflow_id: &str, seq: i32) -> String {
    format!("{ticket_workflow_id}/request/{seq}")
}

pub fn chain_workflow_id(ticket_workflow_id: &str, seq: i32) -> String {
    format!("{ticket_workflow_id}/approval/{seq}")
}

/// Activities touch the database and send a few emails: seconds at most. A short
/// start-to-close timeout bounds how long a worker that died mid-activity holds the chain up
/// (the retry runs on another worker; every activity is idempotent).
pub(crate) fn effects() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(15))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(30))
                .build(),
        )
        .build()
}

/// What an approval chain is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainInput {
    pub ticket: TicketRef,
    pub approval_id: Uuid,
    pub chain: ChainSpec,
    /// Approve at once, recording this reason (pre-approved standard changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<String>,
}

/// A decision recorded in the database and delivered by the outbox relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionMade {
    pub task_id: Uuid,
    pub approver_id: Uuid,
    pub decision: Decision,
    pub at: String,
}

/// The ticket was cancelled: the chain ends without a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCancelled {
    pub reason: String,
}

/// An approver was deactivated with nobody to stand in: their open task leaves its step, which
/// is decided again without it (it may now be approved, or impossible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverWithdrawn {
    pub task_id: Uuid,
    pub reason: String,
}

#[workflow]
pub struct ApprovalChainWorkflow {
    input: ChainInput,
    /// What the chain does next; it holds the signals received and the state queried.
    chain: Chain,
    /// Bumped by every signal: a sleeping chain wakes on it.
    signals: u64,
}

#[workflow_methods]
impl ApprovalChainWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: ChainInput) -> Self {
        let chain = Chain::new(input.chain.clone(), input.auto_approve.clone());
        Self { input, chain, signals: 0 }
    }

    /// Executes what the chain says next until it is done.
    #[run(name = "approval_chain")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let (ticket, approval_id) = ctx.state(|s| (s.input.ticket.clone(), s.input.approval_id));
        loop {
            let now = workflow_now(ctx);
            match ctx.state_mut(|s| s.chain.next(now)) {
                Next::Open { index, step } => open(ctx, &ticket, approval_id, index, step).await?,
                Next::Ask { step_id, tasks, reminder } => ask(ctx, &ticket, step_id, tasks, reminder).await?,
                Next::Escalate { step_id, to } => escalate(ctx, &ticket, step_id, to).await?,
                Next::Close { step_id, outcome } => {
                    close(ctx, &ticket, approval_id, Some(step_id), outcome).await?;
                    ctx.state_mut(|s| s.chain.step_closed());
                }
                Next::Finish(outcome) => {
                    close(ctx, &ticket, approval_id, None, outcome).await?;
                    ctx.state_mut(|s| s.chain.approval_closed());
                }
                Next::Done(outcome) => return Ok(outcome),
                Next::Sleep { until } => {
                    let seen = ctx.state(|s| s.signals);
                    wait::sleep_until_or_signal(ctx, until, move |s: &Self| s.signals != seen).await?;
                }
            }
        }
    }

    #[signal(name = signals::names::DECISION)]
    pub fn decision(&mut self, _ctx: &mut SyncWorkflowContext<Self>, d: DecisionMade) {
        self.chain.decided(d.task_id, d.decision);
        self.signals += 1;
    }

    #[signal(name = signals::names::WITHDRAW)]
    pub fn withdraw(&mut self, _ctx: &mut SyncWorkflowContext<Self>, w: ApproverWithdrawn) {
        self.chain.withdrawn(w.task_id);
        self.signals += 1;
    }

    #[signal(name = signals::names::CANCEL)]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ChainCancelled) {
        self.chain.cancelled(c.reason);
        self.signals += 1;
    }

    /// The chain as it stands: current step, who was asked, their decisions, next reminder
    /// and timeout.
    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> ChainState {
        self.chain.state().clone()
    }
}

/// Opens a step (resolving and asking its approvers) and sends their emails; the chain learns
/// the step's tasks and schedule, or that the approval ended before it could open.
async fn open(
    ctx: &mut WorkflowContext<ApprovalChainWorkflow>,
    ticket: &TicketRef,
    approval_id: Uuid,
    index: u32,
    step: StepSpec,
) -> WorkflowResult<()> {
    let opened = ctx
        .execute_activity(
            ApprovalActivities::open_step,
            OpenStep { ticket: ticket.clone(), approval_id, index, step },
            effects(),
        )
        .await?;
    if let Some(reason) = opened.closed {
        ctx.state_mut(|s| s.chain.step_not_opened(reason));
        return Ok(());
    }
    send(ctx, ticket, opened.emails).await?;
    ctx.state_mut(|s| s.chain.step_opened(opened.step_id, opened.tasks, opened.reminders, opened.timeout));
    Ok(())
}

/// Adds the escalation approvers to a timed-out step, asks them and sends their emails.
async fn escalate(
    ctx: &mut WorkflowContext<ApprovalChainWorkflow>,
    ticket: &TicketRef,
    step_id: Uuid,
    to: Vec<ApproverSpec>,
) -> WorkflowResult<()> {
    let esc = ctx
        .execute_activity(
            ApprovalActivities::escalate_step,
            EscalateStep { ticket: ticket.clone(), step_id, to },
            effects(),
        )
        .await?;
    send(ctx, ticket, esc.emails).await?;
    ctx.state_mut(|s| s.chain.escalation_opened(esc.tasks));
    Ok(())
}

/// Asks (or, with `reminder`, reminds) approvers of a step and sends their emails.
async fn ask<W>(
    ctx: &mut WorkflowContext<W>,
    ticket: &TicketRef,
    step_id: Uuid,
    task_ids: Vec<Uuid>,
    reminder: Option<u32>,
) -> WorkflowResult<()> {
    let emails = ctx
        .execute_activity(
            ApprovalActivities::ask,
            Ask { ticket: ticket.clone(), step_id, task_ids, reminder },
            effects(),
        )
        .await?;
    send(ctx, ticket, emails).await
}

async fn send<W>(ctx: &mut WorkflowContext<W>, ticket: &TicketRef, emails: Vec<Uuid>) -> WorkflowResult<()> {
    if !emails.is_empty() {
        ctx.execute_activity(
            SlaActivities::send_emails,
            SendEmails { tenant_id: ticket.tenant_id, ids: emails },
            effects(),
        )
        .await?;
    }
    Ok(())
}

/// Closes a step (`Some`) or the whole approval (`None`) with its outcome.
async fn close<W>(
    ctx: &mut WorkflowContext<W>,
    ticket: &TicketRef,
    approval_id: Uuid,
    step_id: Option<Uuid>,
    outcome: Outcome,
) -> WorkflowResult<()> {
    ctx.execute_activity(
        ApprovalActivities::close,
        Close { ticket: ticket.clone(), approval_id, step_id, outcome },
        effects(),
    )
    .await?;
    Ok(())
}

/// What a request workflow is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInput {
    pub ticket: TicketRef,
    pub approval_id: Uuid,
    /// The approval's sequence number on the ticket (workflow ids).
    pub seq: i32,
    pub chain: ChainSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<String>,
    /// The status the ticket waits in, and where it goes after.
    pub waiting_in: Status,
    pub on_approved: Status,
    pub on_rejected: Status,
}

#[workflow]
pub struct RequestWorkflow {
    input: RequestInput,
    outcome: Option<Outcome>,
}

#[workflow_methods]
impl RequestWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: RequestInput) -> Self {
        Self { input, outcome: None }
    }

    #[run(name = "request")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let input = ctx.state(|s| s.input.clone());
        let ticket_wf = crate::workflows::ticket::workflow_id(&input.ticket.tenant, &input.ticket.number);
        let chain = ChainInput {
            ticket: input.ticket.clone(),
            approval_id: input.approval_id,
            chain: input.chain.clone(),
            auto_approve: input.auto_approve.clone(),
        };
        let options = ChildWorkflowOptions::builder().workflow_id(chain_workflow_id(&ticket_wf, input.seq)).build();
        let started = ctx.start_child_workflow(ApprovalChainWorkflow::run, chain, options).await?;
        let outcome = started.result().await?;
        ctx.execute_activity(
            ApprovalActivities::apply_outcome,
            ApplyOutcome {
                ticket: input.ticket.clone(),
                approval_id: input.approval_id,
                waiting_in: input.waiting_in,
                on_approved: input.on_approved,
                on_rejected: input.on_rejected,
                outcome: outcome.clone(),
            },
            effects(),
        )
        .await?;
        ctx.state_mut(|s| s.outcome = Some(outcome.clone()));
        Ok(outcome)
    }

    #[query(name = "outcome")]
    pub fn outcome(&self, _ctx: &WorkflowContextView) -> Option<Outcome> {
        self.outcome.clone()
    }
}
