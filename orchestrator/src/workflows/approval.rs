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
//!
//! Chains started with the [`LOCAL_EFFECTS`] patch marker run those activities as local
//! activities: a decision's workflow task closes the step, opens the next and sends its emails
//! itself, with no round trip through the server's task queues between them (issue 11: the
//! next step's emails within 0.2 s of a decision). Every effect stays idempotent (steps, tasks
//! and emails keyed as before, each email claimed before it is sent), so a local retry, or the
//! workflow task run again on another worker, never sends an email twice. A local attempt is
//! bounded ([`LOCAL_ATTEMPT`]); what it cannot finish (the mail server down) goes on as a
//! scheduled activity with the usual retries. Chains recorded before the marker replay their
//! scheduled activities.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::{ActivityDefinition, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, LocalActivityOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
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

/// Patch marker: the chain runs its effects as local activities (see the module docs).
pub const LOCAL_EFFECTS: &str = "chain-effects-local";

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
    ActivityOptions::with_start_to_close_timeout(EFFECT_TIMEOUT).retry_policy(effect_retries()).build()
}

/// How long one attempt at an effect (a scheduled activity's start-to-close timeout) may take.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Retries of an effect: soon, then backing off to every 30 s.
fn effect_retries() -> RetryPolicy {
    RetryPolicy::builder().initial_interval(Duration::from_secs(1)).maximum_interval(Duration::from_secs(30)).build()
}

/// How long a local attempt at an effect may take, retries included, before the chain hands
/// the effect to a scheduled activity: the scheduled activity's own start-to-close timeout, so
/// a slow mail server is given as long as before (an email whose sending is cut off stays
/// claimed and is never sent twice).
pub const LOCAL_ATTEMPT: Duration = EFFECT_TIMEOUT;

/// A bounded local attempt: up to three quick tries within [`LOCAL_ATTEMPT`]. A local activity runs
/// inside its workflow task, and the worker's graceful shutdown waits for it, so it must not
/// retry for ever (a mail server that is down would hold the chain's task, and the worker,
/// open). What the local attempt cannot finish goes to [`effects`] (see [`run_effect`]).
fn local_effects() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(LOCAL_ATTEMPT)
        .schedule_to_close_timeout(LOCAL_ATTEMPT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .maximum_interval(Duration::from_secs(1))
                .maximum_attempts(3)
                .build(),
        )
        .build()
}

/// How a chain runs its effects: scheduled on the task queue (histories from before
/// [`LOCAL_EFFECTS`]) or as local activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effects {
    Scheduled,
    Local,
}

/// Runs the effect `activity()` names the way `how` says. A local attempt that fails (an
/// error, or out of time) is followed by the same effect as a scheduled activity, which retries
/// with backoff for as long as it takes, on any worker. Running an effect again is harmless:
/// every effect is idempotent, and each email is claimed before it is sent, so one the local
/// attempt sent (or may have sent) is not sent again.
async fn run_effect<W, AD>(
    ctx: &WorkflowContext<W>,
    how: Effects,
    activity: impl Fn() -> AD,
    input: AD::Input,
) -> WorkflowResult<AD::Output>
where
    AD: ActivityDefinition,
    AD::Input: Clone,
    AD::Output: TemporalDeserializable,
{
    if how == Effects::Local {
        match ctx.execute_local_activity(activity(), input.clone(), local_effects()).await {
            Ok(out) => return Ok(out),
            Err(ActivityExecutionError::Failed(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ctx.execute_activity(activity(), input, effects()).await?)
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
    /// Every decision and withdrawal received, for [`ApprovalChainWorkflow::refeed`].
    received: Vec<(Uuid, Decision)>,
    withdrawn: Vec<Uuid>,
}

#[workflow_methods]
impl ApprovalChainWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: ChainInput) -> Self {
        let chain = Chain::new(input.chain.clone(), input.auto_approve.clone());
        Self { input, chain, signals: 0, received: Vec::new(), withdrawn: Vec::new() }
    }

    /// Executes what the chain says next until it is done.
    #[run(name = "approval_chain")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let (ticket, approval_id) = ctx.state(|s| (s.input.ticket.clone(), s.input.approval_id));
        let how = if ctx.patched(LOCAL_EFFECTS) { Effects::Local } else { Effects::Scheduled };
        loop {
            let now = workflow_now(ctx);
            match ctx.state_mut(|s| s.chain.next(now)) {
                Next::Open { index, step } => open(ctx, how, &ticket, approval_id, index, step).await?,
                Next::Ask { step_id, tasks, reminder } => ask(ctx, how, &ticket, step_id, tasks, reminder).await?,
                Next::Escalate { step_id, to } => escalate(ctx, how, &ticket, step_id, to).await?,
                Next::Close { step_id, outcome } => {
                    close(ctx, how, &ticket, approval_id, Some(step_id), outcome).await?;
                    ctx.state_mut(|s| s.chain.step_closed());
                }
                Next::Finish(outcome) => {
                    close(ctx, how, &ticket, approval_id, None, outcome).await?;
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
        self.received.push((d.task_id, d.decision));
        self.signals += 1;
    }

    #[signal(name = signals::names::WITHDRAW)]
    pub fn withdraw(&mut self, _ctx: &mut SyncWorkflowContext<Self>, w: ApproverWithdrawn) {
        self.chain.withdrawn(w.task_id);
        self.withdrawn.push(w.task_id);
        self.signals += 1;
    }

    #[signal(name = signals::names::CANCEL)]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ChainCancelled) {
        self.chain.cancelled(c.reason);
        self.signals += 1;
    }

    /// Hands every decision and withdrawal received so far to the chain again, after tasks
    /// were added (a step opened, or escalated) with local effects. Their rows are committed,
    /// and their emails sent, before the workflow task that ran them completes: if it is lost
    /// (a worker killed), the approvers may already have decided when it runs again, and the
    /// chain, which applies signals to the tasks it knows, dropped those decisions. Handing
    /// them over again is harmless: the chain applies a task's decision once, and ignores
    /// tasks that are not in the open step.
    fn refeed(&mut self) {
        for (task, decision) in &self.received {
            self.chain.decided(*task, *decision);
        }
        for task in &self.withdrawn {
            self.chain.withdrawn(*task);
        }
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
    how: Effects,
    ticket: &TicketRef,
    approval_id: Uuid,
    index: u32,
    step: StepSpec,
) -> WorkflowResult<()> {
    let input = OpenStep { ticket: ticket.clone(), approval_id, index, step };
    let opened = run_effect(ctx, how, || ApprovalActivities::open_step, input).await?;
    if let Some(reason) = opened.closed {
        ctx.state_mut(|s| s.chain.step_not_opened(reason));
        return Ok(());
    }
    send(ctx, how, ticket, opened.emails).await?;
    ctx.state_mut(|s| s.chain.step_opened(opened.step_id, opened.tasks, opened.reminders, opened.timeout));
    if how == Effects::Local {
        ctx.state_mut(ApprovalChainWorkflow::refeed);
    }
    Ok(())
}

/// Adds the escalation approvers to a timed-out step, asks them and sends their emails.
async fn escalate(
    ctx: &mut WorkflowContext<ApprovalChainWorkflow>,
    how: Effects,
    ticket: &TicketRef,
    step_id: Uuid,
    to: Vec<ApproverSpec>,
) -> WorkflowResult<()> {
    let input = EscalateStep { ticket: ticket.clone(), step_id, to };
    let esc = run_effect(ctx, how, || ApprovalActivities::escalate_step, input).await?;
    send(ctx, how, ticket, esc.emails).await?;
    ctx.state_mut(|s| s.chain.escalation_opened(esc.tasks));
    if how == Effects::Local {
        ctx.state_mut(ApprovalChainWorkflow::refeed);
    }
    Ok(())
}

/// Asks (or, with `reminder`, reminds) approvers of a step and sends their emails.
async fn ask<W>(
    ctx: &mut WorkflowContext<W>,
    how: Effects,
    ticket: &TicketRef,
    step_id: Uuid,
    task_ids: Vec<Uuid>,
    reminder: Option<u32>,
) -> WorkflowResult<()> {
    let input = Ask { ticket: ticket.clone(), step_id, task_ids, reminder };
    let emails = run_effect(ctx, how, || ApprovalActivities::ask, input).await?;
    send(ctx, how, ticket, emails).await
}

async fn send<W>(
    ctx: &mut WorkflowContext<W>,
    how: Effects,
    ticket: &TicketRef,
    emails: Vec<Uuid>,
) -> WorkflowResult<()> {
    if !emails.is_empty() {
        let input = SendEmails { tenant_id: ticket.tenant_id, ids: emails };
        run_effect(ctx, how, || SlaActivities::send_emails, input).await?;
    }
    Ok(())
}

/// Closes a step (`Some`) or the whole approval (`None`) with its outcome.
async fn close<W>(
    ctx: &mut WorkflowContext<W>,
    how: Effects,
    ticket: &TicketRef,
    approval_id: Uuid,
    step_id: Option<Uuid>,
    outcome: Outcome,
) -> WorkflowResult<()> {
    let input = Close { ticket: ticket.clone(), approval_id, step_id, outcome };
    run_effect(ctx, how, || ApprovalActivities::close, input).await
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
