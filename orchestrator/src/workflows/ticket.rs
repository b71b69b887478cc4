//! The ticket workflow: one durable execution per ticket, from creation until it closes.
//!
//! The database records what people did; this workflow is where time is decided. It receives
//! every change the API recorded (status, priority, assignment, public comment) as a signal,
//! in the order the outbox relay delivers them, and completes when the ticket reaches a
//! terminal status. Each signal carries the ticket's event sequence number, so a redelivered or
//! stale signal is recognised and ignored. SLA clocks (next issue) hang off [`TicketLifecycle`]:
//! the run loop will sleep until the next deadline instead of waiting only for signals.

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};
use uuid::Uuid;

use crate::ids::{TenantSlug, TicketNumber};
use crate::priority::Priority;
use crate::ticket::Status;
use crate::workflows::search;

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

#[workflow]
pub struct TicketWorkflow {
    input: TicketWorkflowInput,
    ticket: TicketLifecycle,
    /// Bumped by every applied signal; the run loop wakes on it.
    changes: u64,
}

#[workflow_methods]
impl TicketWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: TicketWorkflowInput) -> Self {
        let ticket = TicketLifecycle::new(&input);
        Self { input, ticket, changes: 0 }
    }

    #[run(name = "ticket")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<TicketOutcome> {
        let mut seen_changes = 0;
        let mut published = ctx.state(|s| (s.ticket.status, s.ticket.priority));
        loop {
            if ctx.state(|s| s.ticket.is_finished()) {
                break;
            }
            ctx.wait_condition(|s: &Self| s.changes != seen_changes || s.ticket.is_finished()).await?;
            seen_changes = ctx.state(|s| s.changes);
            let now = ctx.state(|s| (s.ticket.status, s.ticket.priority));
            if now != published {
                ctx.upsert_search_attributes([
                    search::STATUS.value_set(now.0.as_str().to_owned()),
                    search::PRIORITY.value_set(i64::from(now.1.get())),
                ]);
                published = now;
            }
        }
        Ok(ctx.state(|s| TicketOutcome {
            number: s.input.number,
            final_status: s.ticket.status,
            changes_applied: s.ticket.applied,
        }))
    }

    #[signal(name = "status_changed")]
    pub fn status_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: StatusChanged) {
        if self.ticket.status_changed(&e) == Applied::Changed {
            self.changes += 1;
        }
    }

    #[signal(name = "priority_changed")]
    pub fn priority_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: PriorityChanged) {
        if self.ticket.priority_changed(&e) == Applied::Changed {
            self.changes += 1;
        }
    }

    #[signal(name = "assignment_changed")]
    pub fn assignment_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: AssignmentChanged) {
        if self.ticket.assignment_changed(&e) == Applied::Changed {
            self.changes += 1;
        }
    }

    #[signal(name = "comment_added")]
    pub fn comment_added(&mut self, _ctx: &mut SyncWorkflowContext<Self>, e: CommentAdded) {
        if self.ticket.comment_added(&e) == Applied::Changed {
            self.changes += 1;
        }
    }

    /// The live ticket as the workflow holds it.
    #[query(name = "ticket")]
    pub fn ticket(&self, _ctx: &WorkflowContextView) -> TicketLifecycle {
        self.ticket.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
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

    #[test]
    fn workflow_ids_are_tenant_and_number() {
        let i = input();
        assert_eq!(workflow_id(&i.tenant, &i.number), "acme/INC-000045");
    }
}
