//! The activities Archer's workflows call, declared here (the contract: names and payloads)
//! and implemented in `archer-workers`. Names are part of every history; never change them.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;
use uuid::Uuid;

use crate::ids::{TenantSlug, TicketNumber};
use crate::sla::engine::{ClockReport, Fact, Summary};
use crate::sla::policy::{EscalationLevel, Metric};

/// Which ticket an activity acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRef {
    pub tenant_id: Uuid,
    pub tenant: TenantSlug,
    pub ticket_id: Uuid,
    pub number: TicketNumber,
}

/// Records SLA facts (warnings, breaches) and the clocks' projection, idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSla {
    pub ticket: TicketRef,
    /// Increases with every projection the workflow writes; an older one never overwrites a newer.
    pub seq: u64,
    /// The ticket's event sequence the clocks have applied.
    #[serde(default)]
    pub ticket_seq: i64,
    pub facts: Vec<Fact>,
    pub clocks: Vec<ClockReport>,
    pub summary: Summary,
    pub policy_id: Uuid,
    pub policy_version: i32,
    pub at: Timestamp,
}

/// Runs one escalation level's actions, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalate {
    pub ticket: TicketRef,
    pub level_index: u32,
    pub level: EscalationLevel,
    pub metric: Metric,
    pub cycle: u32,
    pub due_at: Timestamp,
    pub fired_at: Timestamp,
    pub clock: Option<ClockReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Escalated {
    /// Emails queued by the escalation, to send next.
    pub emails: Vec<Uuid>,
}

/// Sends queued emails that have not gone out yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendEmails {
    pub tenant_id: Uuid,
    pub ids: Vec<Uuid>,
}

pub struct SlaActivities;

#[activity_definitions]
impl SlaActivities {
    #[activity(name = "sla.record")]
    pub fn record(_input: RecordSla) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = "sla.escalate")]
    pub fn escalate(_input: Escalate) -> Result<Escalated, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "email.send")]
    pub fn send_emails(_input: SendEmails) -> Result<u32, ActivityError> {
        unimplemented!()
    }
}

/// Opens step `index` of an approval: resolves its approvers (roles, teams, the requester's
/// manager, the item's owner; out-of-office delegates stand in; the requester is never asked),
/// records the step and one task per approver, asks them (all at once, or the first one for a
/// sequential step) and queues their emails. Idempotent: reopening an open step returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenStep {
    pub ticket: TicketRef,
    pub approval_id: Uuid,
    pub index: u32,
    pub step: crate::approval::StepSpec,
}

/// An approver's task in a step, in the order they are asked (the pure chain needs it too).
pub use crate::approval_chain::TaskRef;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenedStep {
    pub step_id: Uuid,
    pub tasks: Vec<TaskRef>,
    /// Reminder instants, and the timeout instant (computed in the step's clock: wall or the
    /// tenant's business calendar).
    pub reminders: Vec<Timestamp>,
    pub timeout: Option<Timestamp>,
    pub emails: Vec<Uuid>,
    /// The approval ended before this step could open (the ticket was cancelled meanwhile):
    /// why. Nobody was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<String>,
}

/// Asks approvers of an open step (the next one of a sequential step) and queues their emails;
/// with `reminder: Some(n)` it sends the n-th reminder to those asked who have not decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub ticket: TicketRef,
    pub step_id: Uuid,
    pub task_ids: Vec<Uuid>,
    pub reminder: Option<u32>,
}

/// Adds escalation approvers to a timed-out step and asks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalateStep {
    pub ticket: TicketRef,
    pub step_id: Uuid,
    pub to: Vec<crate::approval::ApproverSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEscalated {
    pub tasks: Vec<TaskRef>,
    pub emails: Vec<Uuid>,
}

/// Closes a step (tasks not decided are superseded) or the whole approval with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Close {
    pub ticket: TicketRef,
    pub approval_id: Uuid,
    /// The step to close; `None` closes the approval.
    pub step_id: Option<Uuid>,
    pub outcome: crate::approval::Outcome,
}

/// Moves the ticket on after its approval: to `on_approved` or `on_rejected`, with a public
/// comment saying why, if it is still waiting for the approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub ticket: TicketRef,
    pub approval_id: Uuid,
    pub waiting_in: crate::ticket::Status,
    pub on_approved: crate::ticket::Status,
    pub on_rejected: crate::ticket::Status,
    pub outcome: crate::approval::Outcome,
}

pub struct ApprovalActivities;

#[activity_definitions]
impl ApprovalActivities {
    #[activity(name = "approval.open_step")]
    pub fn open_step(_input: OpenStep) -> Result<OpenedStep, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "approval.ask")]
    pub fn ask(_input: Ask) -> Result<Vec<Uuid>, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "approval.escalate_step")]
    pub fn escalate_step(_input: EscalateStep) -> Result<StepEscalated, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "approval.close")]
    pub fn close(_input: Close) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = "request.apply_outcome")]
    pub fn apply_outcome(_input: ApplyOutcome) -> Result<(), ActivityError> {
        unimplemented!()
    }
}
