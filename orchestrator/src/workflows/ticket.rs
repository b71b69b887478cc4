//! The ticket workflow: one durable execution per ticket, from creation until it closes.
//!
//! The database records what people did; this workflow is where time is decided. It receives
//! every change the API recorded (status, priority, assignment, public comment) as a signal,
//! in the order the outbox relay delivers them, and completes when the ticket reaches a
//! terminal status. Each signal carries the ticket's event sequence number, so a redelivered or
//! stale signal is recognised and ignored.
//!
//! With an SLA policy assigned, the workflow also runs the ticket's clocks ([`SlaEngine`]): it
//! sleeps until the earliest next warning, breach or escalation instant, wakes on any signal,
//! applies each change at the instant it was recorded, and sleeps again. Warnings and breaches
//! are recorded with their true instants (a local activity), escalations run as activities.
//! A ticket that lives long continues as new, carrying its state, before its history grows big.
//!
//! Escalation levels run beside the clocks, one after another in their order: recording what
//! fell due and setting the next timer never waits for them, so a breach is as prompt on a
//! ticket with five levels emailing people as on one without escalations. Histories recorded
//! before that (without the [`CONCURRENT_ESCALATIONS`] patch marker) replay the old path, which
//! ran the levels before setting the next timer.

use std::collections::VecDeque;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ContinueAsNewOptions, LocalActivityOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};
use uuid::Uuid;

use crate::ids::{TenantSlug, TicketNumber};
use crate::priority::Priority;
use crate::sla::engine::{EngineState, Fact, SlaAssignment, SlaEngine, SlaEvent, Summary, status_triggers};
use crate::sla::policy::Trigger;
use crate::ticket::Status;
use crate::workflows::activities::{Escalate, RecordSla, SendEmails, SlaActivities, TicketRef};
use crate::workflows::search;
use crate::workflows::signals;
use crate::workflows::wait::{self, workflow_now};

/// Continue as new once the history has this many events (Temporal's limit is 50,000).
const CONTINUE_AS_NEW_AFTER: u32 = 5_000;

/// The patch (a marker in the history) under which escalation levels run beside the clocks
/// instead of before the next timer. A run decides it when its first level fires: histories
/// recorded without the marker take the old, sequential path, new runs take the new one. Part
/// of every history that has it: never rename it.
pub const CONCURRENT_ESCALATIONS: &str = "escalations-beside-clocks";

/// The workflow type name, as it appears in the Web UI and in histories.
pub const WORKFLOW_TYPE: &str = "ticket";

/// The deterministic workflow id of a ticket: `<tenant>/<number>` (`acme/INC-000045`).
///
/// Starting it twice is harmless: the relay starts with a conflict policy that returns the
/// running execution and a reuse policy that refuses to start a closed ticket again.
pub fn workflow_id(tenant: &TenantSlug, number: &TicketNumber) -> String {
    format!("{tenant}/{number}")
}

/// What the workflow starts with: the ticket as it was committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketWorkflowInput {
    pub tenant_id: Uuid,
    pub tenant: TenantSlug,
    pub ticket_id: Uuid,
    pub number: TicketNumber,
    pub status: Status,
    pub priority: Priority,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    /// The ticket's event sequence at creation (0); later signals carry higher ones.
    pub seq: i64,
    /// When the ticket was created, RFC 3339, as the database recorded it.
    pub created_at: String,
    /// The SLA policy and calendar pinned at creation; none: no clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaAssignment>,
    /// State carried over from the previous run when the workflow continued as new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Carried>,
}

/// What a run hands to the next when it continues as new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub ticket: TicketLifecycle,
    pub sla: Option<EngineState>,
    pub projection_seq: u64,
    pub published_sla: Option<Summary>,
}

/// An admin re-applied a policy or rebuilt the clocks: the new assignment and the ticket's
/// events, from which the clocks are recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaRebuilt {
    pub seq: i64,
    pub at: String,
    pub assignment: SlaAssignment,
    pub events: Vec<SlaEvent>,
}

/// A status change, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChanged {
    pub seq: i64,
    pub at: String,
    pub actor_id: Option<Uuid>,
    pub from: Status,
    pub to: Status,
}

/// A priority change (derived from impact/urgency or overridden with a reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityChanged {
    pub seq: i64,
    pub at: String,
    pub actor_id: Option<Uuid>,
    pub from: Priority,
    pub to: Priority,
    pub reason: Option<String>,
}

/// A change of assignee and/or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentChanged {
    pub seq: i64,
    pub at: String,
    pub actor_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
}

/// Who wrote a public comment, as far as SLA clocks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentAuthor {
    /// The requester (or someone on their side).
    Customer,
    /// Someone working the ticket.
    Agent,
}

/// A public comment was added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommentAdded {
    pub seq: i64,
    pub at: String,
    pub comment_id: Uuid,
    pub author_id: Uuid,
    pub author: CommentAuthor,
}

/// The ticket as the workflow sees it; pure, so it is unit-tested without Temporal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketLifecycle {
    pub status: Status,
    pub priority: Priority,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    /// Highest event sequence applied.
    pub seq: i64,
    /// Number of changes applied (not counting ignored ones).
    pub applied: u64,
    /// Number of signals ignored as stale or duplicated.
    pub ignored: u64,
    /// Public comments seen, by author.
    pub customer_comments: u64,
    pub agent_comments: u64,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the ticket.
    Changed,
    /// The event was older than (or equal to) what the workflow already had.
    Stale,
}

impl TicketLifecycle {
    pub fn new(input: &TicketWorkflowInput) -> Self {
        Self {
            status: input.status,
            priority: input.priority,
            assignee_id: input.assignee_id,
            team_id: input.team_id,
            seq: input.seq,
            applied: 0,
            ignored: 0,
            customer_comments: 0,
            agent_comments: 0,
        }
    }

    fn accept(&mut self, seq: i64) -> bool {
        if seq <= self.seq {
            self.ignored += 1;
            false
        } else {
            self.seq = seq;
            self.applied += 1;
            true
        }
    }

    pub fn status_changed(&mut self, e: &StatusChanged) -> Applied {
        if !self.accept(e.seq) {
            return Applied::Stale;
        }
        self.status = e.to;
        Applied::Changed
    }

    pub fn priority_changed(&mut self, e: &PriorityChanged) -> Applied {
        if !self.accept(e.seq) {
            return Applied::Stale;
        }
        self.priority = e.to;
        Applied::Changed
    }

    pub fn assignment_changed(&mut self, e: &AssignmentChanged) -> Applied {
        if !self.accept(e.seq) {
            return Applied::Stale;
        }
        self.assignee_id = e.assignee_id;
        self.team_id = e.team_id;
        Applied::Changed
    }

    pub fn comment_added(&mut self, e: &CommentAdded) -> Applied {
        if !self.accept(e.seq) {
            return Applied::Stale;
        }
        match e.author {
            CommentAuthor::Customer => self.customer_comments += 1,
            CommentAuthor::Agent => self.agent_comments += 1,
        }
        Applied::Changed
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_terminal()
    }
}

/// How a ticket workflow ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketOutcome {
    pub number: TicketNumber,
    pub final_status: Status,
    pub changes_applied: u64,
}

/// A change waiting for the run loop, with the ticket's state after it.
#[derive(Debug, Clone)]
enum Inbound {
    Event(SlaEvent),
    Rebuilt(Box<SlaRebuilt>),
}

#[workflow]
pub struct TicketWorkflow {
    input: TicketWorkflowInput,
    ticket: TicketLifecycle,
    /// Bumped by every applied signal; the run loop wakes on it.
    changes: u64,
    inbox: VecDeque<Inbound>,
    sla: Option<SlaEngine>,
    projection_seq: u64,
    published_sla: Option<Summary>,
    /// Escalation levels that fired and wait for their turn to run (in firing order), each
    /// with what it acts on as it was when it fired.
    escalations: VecDeque<Escalate>,
}

fn parse_at(at: &str, fallback: Timestamp) -> Timestamp {
    at.parse().unwrap_or(fallback)
}

/// How a ticket workflow records SLA facts (`sla.record`): also what `engine-bench`'s bare
/// timers use, so the two stay comparable.
pub fn record_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(15))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .build()
}

/// How a ticket workflow runs its effects (`sla.escalate`).
pub fn effect_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(60))
                .build(),
        )
        .build()
}

impl TicketWorkflow {
    fn ticket_ref(&self) -> TicketRef {
        TicketRef {
            tenant_id: self.input.tenant_id,
            tenant: self.input.tenant.clone(),
            ticket_id: self.input.ticket_id,
            number: self.input.number,
        }
    }

    fn enqueue(&mut self, at: &str, triggers: Vec<Trigger>) {
        let fallback = self.sla.as_ref().map(|e| e.state().now).unwrap_or(Timestamp::UNIX_EPOCH);
        if self.sla.is_some() {
            self.inbox.push_back(Inbound::Event(SlaEvent {
                at: parse_at(at, fallback),
                triggers,
                status: self.ticket.status,
                priority: self.ticket.priority,
            }));
        }
        self.changes += 1;
    }

    /// Applies queued changes in order and records what fell due up to `now`.
    fn process(&mut self, now: Timestamp) -> Vec<Fact> {
        let Some(engine) = self.sla.as_mut() else {
            self.inbox.clear();
            return Vec::new();
        };
        let mut facts = Vec::new();
        while let Some(item) = self.inbox.pop_front() {
            match item {
                Inbound::Event(ev) => {
                    facts.extend(engine.advance(ev.at));
                    engine.apply(&ev);
                }
                Inbound::Rebuilt(r) => {
                    let (rebuilt, replayed) = SlaEngine::replay(r.assignment.clone(), &r.events, now);
                    *engine = rebuilt;
                    // warnings and breaches of the rebuilt history are recorded (the store
                    // dedupes what was recorded before); its past escalations are not re-run
                    facts.extend(replayed.into_iter().filter(|f| !matches!(f, Fact::Escalation { .. })));
                }
            }
        }
        facts.extend(engine.advance(now));
        facts
    }

    /// What each escalation among `facts` runs with, in order: its level, and the clock as it
    /// stood when the level fired. Built when the facts are recorded, so a level that waits
    /// for its turn still reports the instant it fired.
    fn escalation_inputs(&self, facts: &[Fact]) -> Vec<Escalate> {
        let Some(engine) = self.sla.as_ref() else { return Vec::new() };
        facts
            .iter()
            .filter_map(|fact| {
                let Fact::Escalation { level, metric, cycle, due_at, fired_at, .. } = fact else { return None };
                let clock = engine.report(*fired_at).into_iter().find(|c| c.metric == *metric);
                Some(Escalate {
                    ticket: self.ticket_ref(),
                    level_index: *level,
                    level: engine.level(*level)?.clone(),
                    metric: *metric,
                    cycle: *cycle,
                    due_at: *due_at,
                    fired_at: *fired_at,
                    clock,
                })
            })
            .collect()
    }
}

/// The escalation levels running beside the clocks, if any.
type Escalating = Option<LocalBoxFuture<'static, WorkflowResult<()>>>;

#[workflow_methods]
impl TicketWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, mut input: TicketWorkflowInput) -> Self {
        let carried = input.carried.take();
        let (ticket, sla, projection_seq, published_sla) = match carried {
            Some(c) => (c.ticket, c.sla.map(SlaEngine::from_state), c.projection_seq, c.published_sla),
            None => {
                let ticket = TicketLifecycle::new(&input);
                let sla = input.sla.clone().map(|a| {
                    let created = parse_at(&input.created_at, Timestamp::UNIX_EPOCH);
                    SlaEngine::start(a, created, input.status, input.priority)
                });
                (ticket, sla, 0, None)
            }
        };
        Self {
            input,
            ticket,
            changes: 0,
            inbox: VecDeque::new(),
            sla,
            projection_seq,
            published_sla,
            escalations: VecDeque::new(),
        }
    }

    #[run(name = "ticket")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<TicketOutcome> {
        let mut seen_changes = 0;
        let mut published = ctx.state(|s| (s.ticket.status, s.ticket.priority));
        let has_sla = ctx.state(|s| s.sla.is_some());
        // a fresh run with clocks records their initial projection
        let mut dirty = has_sla && ctx.state(|s| s.input.carried.is_none() && s.projection_seq == 0);
        // whether escalation levels run beside the clocks: decided when the first level fires
        let mut concurrent: Option<bool> = None;
        let mut escalating: Escalating = None;
        loop {
            if has_sla {
                let now = workflow_now(ctx);
                let facts = ctx.state_mut(|s| s.process(now));
                if !facts.is_empty() || dirty {
                    // warnings and breaches first, with their true instants
                    record_sla(ctx, now, &facts).await?;
                    let levels = ctx.state(|s| s.escalation_inputs(&facts));
                    if !levels.is_empty() {
                        if *concurrent.get_or_insert_with(|| ctx.patched(CONCURRENT_ESCALATIONS)) {
                            ctx.state_mut(|s| s.escalations.extend(levels));
                        } else {
                            // histories from before the patch: each level before the next timer
                            for input in levels {
                                escalate(ctx, input).await?;
                            }
                        }
                    }
                }
                publish_sla(ctx, now);
            }
            let status_now = ctx.state(|s| (s.ticket.status, s.ticket.priority));
            if status_now != published {
                ctx.upsert_search_attributes([
                    search::STATUS.value_set(status_now.0.as_str().to_owned()),
                    search::PRIORITY.value_set(i64::from(status_now.1.get())),
                ]);
                published = status_now;
            }
            if ctx.state(|s| s.ticket.is_finished()) {
                finish_escalations(ctx, &mut escalating).await?;
                break;
            }
            if ctx.history_length() >= CONTINUE_AS_NEW_AFTER || ctx.continue_as_new_suggested() {
                // levels that fired run in this run, not in the next
                finish_escalations(ctx, &mut escalating).await?;
                let next = ctx.state(|s| TicketWorkflowInput {
                    carried: Some(Carried {
                        ticket: s.ticket.clone(),
                        sla: s.sla.as_ref().map(|e| e.state().clone()),
                        projection_seq: s.projection_seq,
                        published_sla: s.published_sla.clone(),
                    }),
                    ..s.input.clone()
                });
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
            if escalating.is_none() && ctx.state(|s| !s.escalations.is_empty()) {
                escalating = Some(Box::pin(run_escalations(ctx.clone())));
            }
            let wake = ctx.state(|s| s.sla.as_ref().and_then(|e| e.next_wakeup()));
            // the escalation levels never hold up the timer: waiting ends when it fires or the
            // ticket changes, and their completing only clears them
            let changed = move |s: &Self| s.changes != seen_changes || s.ticket.is_finished();
            wait::sleep_beside(ctx, wake, changed, &mut escalating).await?;
            seen_changes = ctx.state(|s| s.changes);
            dirty = has_sla;
        }
        Ok(ctx.state(|s| TicketOutcome {
            number: s.input.number,
            final_status: s.ticket.status,
            changes_applied: s.ticket.applied,
        }))
    }

    #[signal(name = signals::names::STATUS_CHANGED)]
    pub fn status_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: StatusChanged) {
        if self.ticket.status_changed(&e) == Applied::Changed {
            self.enqueue(&e.at, status_triggers(e.from, e.to));
        }
    }

    #[signal(name = signals::names::PRIORITY_CHANGED)]
    pub fn priority_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: PriorityChanged) {
        if self.ticket.priority_changed(&e) == Applied::Changed {
            self.enqueue(&e.at, vec![Trigger::PriorityChanged]);
        }
    }

    #[signal(name = signals::names::ASSIGNMENT_CHANGED)]
    pub fn assignment_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: AssignmentChanged) {
        if self.ticket.assignment_changed(&e) == Applied::Changed {
            self.enqueue(&e.at, vec![Trigger::Assigned]);
        }
    }

    #[signal(name = signals::names::COMMENT_ADDED)]
    pub fn comment_added(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: CommentAdded) {
        if self.ticket.comment_added(&e) == Applied::Changed {
            let trigger = match e.author {
                CommentAuthor::Customer => Trigger::CustomerReply,
                CommentAuthor::Agent => Trigger::AgentReply,
            };
            self.enqueue(&e.at, vec![trigger]);
        }
    }

    /// An admin re-applied a policy or rebuilt the clocks from the ticket's history.
    #[signal(name = signals::names::SLA_REBUILT)]
    pub fn sla_rebuilt(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: SlaRebuilt) {
        // not a ticket change, so it has no place in the ticket's event sequence
        if self.sla.is_none() {
            let created = parse_at(&self.input.created_at, Timestamp::UNIX_EPOCH);
            self.sla = Some(SlaEngine::start(e.assignment.clone(), created, self.input.status, self.input.priority));
        }
        self.inbox.push_back(Inbound::Rebuilt(Box::new(e)));
        self.changes += 1;
    }

    /// The live ticket as the workflow holds it.
    #[query(name = "ticket")]
    pub fn ticket(&self, _ctx: &WorkflowContextView) -> TicketLifecycle {
        self.ticket.clone()
    }

    /// The live clocks' state (render it with `SlaEngine::from_state(..).report(now)`).
    #[query(name = "sla")]
    pub fn sla(&self, _ctx: &WorkflowContextView) -> Option<EngineState> {
        self.sla.as_ref().map(|e| e.state().clone())
    }
}

/// Records facts and the clocks' projection (a local activity: a quick, idempotent write).
async fn record_sla(ctx: &mut WorkflowContext<TicketWorkflow>, now: Timestamp, facts: &[Fact]) -> WorkflowResult<()> {
    let input = ctx.state_mut(|s| {
        s.projection_seq += 1;
        let engine = s.sla.as_ref()?;
        let a = &engine.state().assignment;
        Some(RecordSla {
            ticket: s.ticket_ref(),
            seq: s.projection_seq,
            ticket_seq: s.ticket.seq,
            facts: facts.to_vec(),
            clocks: engine.report(now),
            summary: engine.summary(now),
            policy_id: a.policy_id,
            policy_version: a.policy_version,
            at: now,
        })
    });
    if let Some(input) = input {
        ctx.execute_local_activity(SlaActivities::record, input, record_options()).await?;
    }
    Ok(())
}

/// Runs one escalation level: its actions, then the emails they queued.
async fn escalate(ctx: &WorkflowContext<TicketWorkflow>, input: Escalate) -> WorkflowResult<()> {
    let tenant_id = input.ticket.tenant_id;
    let done = ctx.execute_activity(SlaActivities::escalate, input, effect_options()).await?;
    if !done.emails.is_empty() {
        ctx.execute_activity(SlaActivities::send_emails, SendEmails { tenant_id, ids: done.emails }, effect_options())
            .await?;
    }
    Ok(())
}

/// Runs the escalation levels waiting for their turn, one after another in firing order,
/// including those that fire while it runs; returns when none waits.
async fn run_escalations(ctx: WorkflowContext<TicketWorkflow>) -> WorkflowResult<()> {
    while let Some(input) = ctx.state_mut(|s| s.escalations.pop_front()) {
        escalate(&ctx, input).await?;
    }
    Ok(())
}

/// Waits until every escalation level that fired has run (before the workflow completes or
/// continues as new).
async fn finish_escalations(ctx: &WorkflowContext<TicketWorkflow>, escalating: &mut Escalating) -> WorkflowResult<()> {
    if let Some(running) = escalating.take() {
        running.await?;
    }
    run_escalations(ctx.clone()).await
}

/// Keeps the search attributes ops filter on current: the worst clock state, and the next due
/// instant while a clock runs (kept at its last value after, since the server refuses to unset
/// a Datetime attribute; the state says whether it still matters).
fn publish_sla(ctx: &mut WorkflowContext<TicketWorkflow>, now: Timestamp) {
    let summary = ctx.state(|s| s.sla.as_ref().map(|e| e.summary(now)));
    let Some(summary) = summary else { return };
    if ctx.state(|s| s.published_sla.as_ref() == Some(&summary)) {
        return;
    }
    let mut updates = vec![search::SLA_STATE.value_set(summary.state.clone())];
    if let Some(t) = summary.next_due_at {
        updates.push(
            search::SLA_DUE
                .value_set(temporalio_common::search_attributes::Timestamp::new(t.as_second(), t.subsec_nanosecond())),
        );
    }
    ctx.upsert_search_attributes(updates);
    ctx.state_mut(|s| s.published_sla = Some(summary));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sla::policy::Metric;
    use crate::ticket::TicketKind;

    fn input() -> TicketWorkflowInput {
        TicketWorkflowInput {
            tenant_id: Uuid::nil(),
            tenant: TenantSlug::parse("acme").unwrap(),
            ticket_id: Uuid::nil(),
            number: TicketNumber::new(TicketKind::Incident, 45).unwrap(),
            status: Status::New,
            priority: Priority::new(3).unwrap(),
            assignee_id: None,
            team_id: None,
            seq: 0,
            created_at: "2026-11-23T10:00:00Z".into(),
            sla: None,
            carried: None,
        }
    }

    fn status(seq: i64, from: Status, to: Status) -> StatusChanged {
        StatusChanged { seq, at: "2026-11-23T10:00:01Z".into(), actor_id: None, from, to }
    }

    #[test]
    fn applies_in_order_and_ignores_stale_and_duplicate_events() {
        let mut t = TicketLifecycle::new(&input());
        assert_eq!(t.status_changed(&status(1, Status::New, Status::InProgress)), Applied::Changed);
        assert_eq!(t.status_changed(&status(1, Status::New, Status::InProgress)), Applied::Stale);
        assert_eq!(t.status_changed(&status(3, Status::InProgress, Status::Resolved)), Applied::Changed);
        // an older event arriving late does not roll the ticket back
        assert_eq!(t.status_changed(&status(2, Status::InProgress, Status::WaitingOnCustomer)), Applied::Stale);
        assert_eq!(t.status, Status::Resolved);
        assert_eq!((t.applied, t.ignored, t.seq), (2, 2, 3));
        assert!(!t.is_finished());
        t.status_changed(&status(4, Status::Resolved, Status::Closed));
        assert!(t.is_finished());
    }

    /// First response 2 s, resolution 3 s; five levels on the first response's breach.
    fn escalating(input: TicketWorkflowInput) -> TicketWorkflow {
        let levels: Vec<_> = (1..=5)
            .map(|i| {
                serde_json::json!({"name": format!("level {i}"), "metric": "first_response", "when": "breach",
                    "actions": [{"type": "notify", "to": {"assignee": true}}]})
            })
            .collect();
        let spec = serde_json::json!({
            "targets": [
                {"metric": "first_response", "durations": {"1": 2, "2": 2, "3": 2, "4": 2}, "warnings": []},
                {"metric": "resolution", "durations": {"1": 3, "2": 3, "3": 3, "4": 3}, "warnings": []}
            ],
            "escalations": levels
        });
        let assignment = SlaAssignment {
            policy_id: Uuid::nil(),
            policy_version: 1,
            policy_name: "escalating".into(),
            policy: serde_json::from_value::<crate::sla::policy::PolicySpec>(spec).unwrap().compile().unwrap(),
            calendar_id: None,
            calendar_version: None,
            calendar: crate::sla::calendar::CalendarSpec::always(),
        };
        let created: Timestamp = input.created_at.parse().unwrap();
        TicketWorkflow {
            ticket: TicketLifecycle::new(&input),
            sla: Some(SlaEngine::start(assignment, created, input.status, input.priority)),
            input,
            changes: 0,
            inbox: VecDeque::new(),
            projection_seq: 0,
            published_sla: None,
            escalations: VecDeque::new(),
        }
    }

    #[test]
    fn escalation_levels_are_built_in_order_as_they_fired_and_the_next_timer_does_not_wait_for_them() {
        let mut wf = escalating(input());
        let created: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let breached = created + jiff::SignedDuration::from_secs(2);
        // the timer fired a little late: the breach keeps its true instant, the levels fire then
        let facts = wf.process(breached + jiff::SignedDuration::from_millis(150));
        let breaches: Vec<_> = facts.iter().filter(|f| matches!(f, Fact::Breach { .. })).collect();
        assert_eq!(breaches, [&Fact::Breach { metric: Metric::FirstResponse, cycle: 1, at: breached }]);
        let levels = wf.escalation_inputs(&facts);
        assert_eq!(levels.iter().map(|l| l.level_index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        for l in &levels {
            assert_eq!((l.metric, l.cycle, l.due_at, l.fired_at), (Metric::FirstResponse, 1, breached, breached));
            assert_eq!(l.level.name, format!("level {}", l.level_index + 1));
            let clock = l.clock.as_ref().unwrap();
            assert_eq!((clock.metric, clock.state.as_str()), (Metric::FirstResponse, "breached"));
            assert_eq!(l.ticket.number, wf.input.number);
        }
        // the next timer is the resolution's breach, one second later, whatever the levels do
        assert_eq!(wf.sla.as_ref().unwrap().next_wakeup(), Some(created + jiff::SignedDuration::from_secs(3)));
        // and facts without escalations give none to run
        assert!(wf.escalation_inputs(&breaches.into_iter().cloned().collect::<Vec<_>>()).is_empty());
    }

    #[test]
    fn workflow_ids_are_tenant_and_number() {
        let i = input();
        assert_eq!(workflow_id(&i.tenant, &i.number), "acme/INC-000045");
    }
}
