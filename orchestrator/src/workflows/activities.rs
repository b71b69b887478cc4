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
