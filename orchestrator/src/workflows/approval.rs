//! The request workflow and its approval chain (a child workflow per approval).
//!
//! `request` runs for a service request submitted from the catalog, and for a change entering
//! authorization: it starts the approval chain as a child, waits for its outcome, and moves the
//! ticket on (fulfilment, scheduling) or rejects it. `approval_chain` runs the chain's steps in
//! order: it opens a step (an activity resolves and asks its approvers), applies each decision
//! signalled to it exactly once, reminds and times out on schedule, and closes the step when
//! its rule is met or can no longer be. Decisions and cancellation arrive as signals the outbox
//! relay delivers; everything with a side effect is an activity.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};
use uuid::Uuid;

use crate::approval::{ChainSpec, Decision, OnTimeout, Outcome, StepSpec, StepTally};
use crate::ticket::Status;
use crate::workflows::activities::{
    ApplyOutcome, ApprovalActivities, Ask, Close, EscalateStep, OpenStep, SendEmails, SlaActivities, TaskRef, TicketRef,
};

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
fn effects() -> ActivityOptions {
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

/// An approval as the workflow holds it (its query).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainState {
    pub step: Option<u32>,
    pub tasks: Vec<TaskRef>,
    pub tally: StepTally,
    pub next_reminder: Option<Timestamp>,
    pub timeout: Option<Timestamp>,
    pub escalated: bool,
    pub outcome: Option<Outcome>,
}

#[workflow]
pub struct ApprovalChainWorkflow {
    input: ChainInput,
    state: ChainState,
    /// Decisions not yet applied, in arrival order.
    inbox: Vec<DecisionMade>,
    /// Tasks whose decision was applied (a redelivered signal changes nothing).
    applied: Vec<Uuid>,
    cancelled: Option<String>,
    signals: u64,
    /// Tasks withdrawn from the current step (their approver was deactivated), not yet applied.
    withdrawn: Vec<Uuid>,
}

fn workflow_now<W>(ctx: &WorkflowContext<W>) -> Timestamp {
    ctx.workflow_time().and_then(|t| Timestamp::try_from(t).ok()).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl ApprovalChainWorkflow {
    /// Removes withdrawn tasks that have not decided from the current step (and its tally).
    fn apply_withdrawals(&mut self) {
        for task in std::mem::take(&mut self.withdrawn) {
            if let Some(i) = self.state.tasks.iter().position(|t| t.task_id == task)
                && self.state.tally.decisions.get(i).is_some_and(Option::is_none)
            {
                self.state.tasks.remove(i);
                self.state.tally.decisions.remove(i);
            }
        }
    }

    /// Applies queued decisions of the current step's tasks; returns them.
    fn apply_decisions(&mut self) -> usize {
        let mut n = 0;
        for d in std::mem::take(&mut self.inbox) {
            if self.applied.contains(&d.task_id) {
                continue;
            }
            if let Some(i) = self.state.tasks.iter().position(|t| t.task_id == d.task_id)
                && let Some(slot) = self.state.tally.decisions.get_mut(i)
            {
                *slot = Some(d.decision);
                self.applied.push(d.task_id);
                n += 1;
            }
        }
        n
    }
}

#[workflow_methods]
impl ApprovalChainWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: ChainInput) -> Self {
        Self {
            input,
            state: ChainState::default(),
            inbox: Vec::new(),
            applied: Vec::new(),
            cancelled: None,
            signals: 0,
            withdrawn: Vec::new(),
        }
    }

    #[run(name = "approval_chain")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let (ticket, approval_id) = ctx.state(|s| (s.input.ticket.clone(), s.input.approval_id));
        if let Some(reason) = ctx.state(|s| s.input.auto_approve.clone()) {
            let outcome = Outcome::Approved { reason };
            return finish(ctx, &ticket, approval_id, outcome).await;
        }
        let steps: Vec<StepSpec> = ctx.state(|s| s.input.chain.steps.clone());
        for (index, step) in steps.iter().enumerate() {
            if let Some(reason) = ctx.state(|s| s.cancelled.clone()) {
                return finish(ctx, &ticket, approval_id, Outcome::Cancelled { reason }).await;
            }
            let opened = ctx
                .execute_activity(
                    ApprovalActivities::open_step,
                    OpenStep { ticket: ticket.clone(), approval_id, index: index as u32, step: step.clone() },
                    effects(),
                )
                .await?;
            if let Some(reason) = opened.closed.clone() {
                return finish(ctx, &ticket, approval_id, Outcome::Cancelled { reason }).await;
            }
            send(ctx, &ticket, opened.emails.clone()).await?;
            let mut reminders = opened.reminders.clone();
            let mut timeout = opened.timeout;
            // tasks asked so far (open_step asks the first of a sequential step)
            let mut asked: Vec<Uuid> = opened.tasks.iter().take(1).map(|t| t.task_id).collect();
            let mut reminders_sent = 0u32;
            ctx.state_mut(|s| {
                s.state.step = Some(index as u32);
                s.state.tally = StepTally::new(opened.tasks.len());
                s.state.tasks = opened.tasks.clone();
                s.state.escalated = false;
                s.state.next_reminder = reminders.first().copied();
                s.state.timeout = timeout;
            });
            let mut escalated_step: Option<StepSpec> = None;
            let outcome = loop {
                ctx.state_mut(|s| {
                    s.apply_withdrawals();
                    s.apply_decisions()
                });
                if let Some(reason) = ctx.state(|s| s.cancelled.clone()) {
                    break Outcome::Cancelled { reason };
                }
                let rule = escalated_step.as_ref().unwrap_or(step);
                if let Some(o) = ctx.state(|s| s.state.tally.outcome(rule)) {
                    break o;
                }
                // a sequential step asks the next approver once the previous one approved
                if let Some(current) = ctx.state(|s| s.state.tally.current(rule))
                    && let Some(task) = ctx.state(|s| s.state.tasks.get(current).map(|t| t.task_id))
                    && !asked.contains(&task)
                {
                    ask(ctx, &ticket, opened.step_id, vec![task], None).await?;
                    asked.push(task);
                    continue;
                }
                let now = workflow_now(ctx);
                if let Some(at) = reminders.first().copied()
                    && at <= now
                {
                    reminders.remove(0);
                    reminders_sent += 1;
                    ctx.state_mut(|s| s.state.next_reminder = reminders.first().copied());
                    let pending = ctx.state(|s| {
                        s.state
                            .tasks
                            .iter()
                            .zip(&s.state.tally.decisions)
                            .filter(|(_, d)| d.is_none())
                            .map(|(t, _)| t.task_id)
                            .collect::<Vec<_>>()
                    });
                    ask(ctx, &ticket, opened.step_id, pending, Some(reminders_sent)).await?;
                    continue;
                }
                if let Some(at) = timeout
                    && at <= now
                {
                    timeout = None;
                    reminders.clear();
                    ctx.state_mut(|s| {
                        s.state.timeout = None;
                        s.state.next_reminder = None;
                    });
                    match &step.on_timeout {
                        OnTimeout::Reject => break Outcome::Rejected { reason: format!("{} timed out", step.name) },
                        OnTimeout::Approve => {
                            break Outcome::Approved { reason: format!("{} approved on timeout", step.name) };
                        }
                        OnTimeout::Escalate(to) => {
                            let esc = ctx
                                .execute_activity(
                                    ApprovalActivities::escalate_step,
                                    EscalateStep { ticket: ticket.clone(), step_id: opened.step_id, to: to.clone() },
                                    effects(),
                                )
                                .await?;
                            send(ctx, &ticket, esc.emails).await?;
                            // the escalation approvers decide the step: one decision settles it
                            let mut decides = step.clone();
                            decides.mode = crate::approval::Mode::Parallel;
                            decides.approve_when = crate::approval::Rule::Any;
                            decides.reject_when = Some(crate::approval::Rule::Any);
                            escalated_step = Some(decides);
                            ctx.state_mut(|s| {
                                s.state.tasks = esc.tasks.clone();
                                s.state.tally = StepTally::new(esc.tasks.len());
                                s.state.escalated = true;
                            });
                            continue;
                        }
                    }
                }
                // sleep until the next reminder or timeout, or until a decision arrives
                let seen = ctx.state(|s| s.signals);
                let wake = reminders.first().copied().into_iter().chain(timeout).min();
                match wake {
                    None => {
                        ctx.wait_condition(|s: &Self| s.signals != seen).await?;
                    }
                    Some(at) => {
                        let nanos = (at.as_nanosecond() - now.as_nanosecond()).max(0);
                        let millis = (nanos + 999_999) / 1_000_000;
                        let timer = ctx.timer(Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX).max(1)));
                        futures::pin_mut!(timer);
                        temporalio_sdk::workflows::select! {
                            _ = &mut timer => {}
                            r = ctx.wait_condition(|s: &Self| s.signals != seen) => {
                                timer.cancel();
                                r?;
                            }
                        }
                    }
                }
            };
            ctx.execute_activity(
                ApprovalActivities::close,
                Close { ticket: ticket.clone(), approval_id, step_id: Some(opened.step_id), outcome: outcome.clone() },
                effects(),
            )
            .await?;
            if !outcome.is_approved() {
                return finish(ctx, &ticket, approval_id, outcome).await;
            }
        }
        let reason = format!("all {} steps approved", steps.len());
        finish(ctx, &ticket, approval_id, Outcome::Approved { reason }).await
    }

    #[signal(name = "decision")]
    pub fn decision(&mut self, _ctx: &mut SyncWorkflowContext<Self>, d: DecisionMade) {
        self.inbox.push(d);
        self.signals += 1;
    }

    #[signal(name = "withdraw")]
    pub fn withdraw(&mut self, _ctx: &mut SyncWorkflowContext<Self>, w: ApproverWithdrawn) {
        self.withdrawn.push(w.task_id);
        self.signals += 1;
    }

    #[signal(name = "cancel")]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ChainCancelled) {
        if self.cancelled.is_none() {
            self.cancelled = Some(c.reason);
        }
        self.signals += 1;
    }

    /// The chain as it stands: current step, who was asked, their decisions, next reminder
    /// and timeout.
    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> ChainState {
        self.state.clone()
    }
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

async fn finish(
    ctx: &mut WorkflowContext<ApprovalChainWorkflow>,
    ticket: &TicketRef,
    approval_id: Uuid,
    outcome: Outcome,
) -> WorkflowResult<Outcome> {
    ctx.execute_activity(
        ApprovalActivities::close,
        Close { ticket: ticket.clone(), approval_id, step_id: None, outcome: outcome.clone() },
        effects(),
    )
    .await?;
    ctx.state_mut(|s| s.state.outcome = Some(outcome.clone()));
    Ok(outcome)
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
