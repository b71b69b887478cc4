//! The activities a playbook run calls: one per action (named `playbook.<action>`, so the
//! Temporal Web UI shows a run as its author wrote it) and one that records the run's progress.
//! Declared here (names and payloads are part of every history: never change them) and
//! implemented in `archer-workers`.

use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;
use uuid::Uuid;

use crate::workflows::activities::TicketRef;

/// Which run an activity works for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub run_id: Uuid,
    pub ticket: TicketRef,
    pub workflow_id: String,
    pub playbook: String,
    pub version: i32,
}

/// One step's call: the action's inputs, rendered from the run's scope. `{{secrets.NAME}}`
/// placeholders are still in `input`: only the activity reads a secret, so none ever enters a
/// workflow's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCall {
    pub run: RunRef,
    pub step: String,
    pub action: String,
    /// 0 for the first execution, n after the n-th retry of the run.
    pub round: u32,
    pub input: serde_json::Value,
    pub idempotency_key: String,
}

/// What the workflow records about a run: step states it decided (skipped, failed, waiting),
/// and the run's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRun {
    pub run: RunRef,
    pub steps: Vec<StepRecord>,
    /// The run's state after these steps (`running`, `succeeded`, `failed`, `cancelled`).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    pub action: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

/// A task ticket a `ticket.create_task` step opened (the step then waits for it to close).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOpened {
    pub ticket_id: Uuid,
    pub number: String,
    pub status: String,
}

/// An approval a step asked for: the workflow runs its chain as a child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalOpened {
    pub approval_id: Uuid,
    /// The approval's sequence number on the ticket (its chain's workflow id).
    pub seq: i32,
    pub chain: crate::approval::ChainSpec,
}

/// Withdraws the approval a step asked for (the run was cancelled, or the step's `timeout`
/// passed): the approval is cancelled in the database and its chain told, so it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawApproval {
    pub call: StepCall,
    pub approval_id: Uuid,
    pub reason: String,
}

/// Error types the actions fail with (`ActivityError`'s application error type), which a step's
/// `retry.non_retryable` may name.
pub mod errors {
    /// The input is wrong for the action (a template rendered to a bad value): never retried.
    pub const INPUT: &str = "Input";
    /// The receiver answered 4xx (except 408 and 429): never retried.
    pub const BAD_REQUEST: &str = "BadRequest";
    /// The receiver answered 5xx, 408 or 429, or could not be reached: retried.
    pub const UNAVAILABLE: &str = "Unavailable";
    /// The connection refuses the address (private, or not under its base URL): never retried.
    pub const FORBIDDEN: &str = "Forbidden";
    /// The ticket command was refused (a state machine rule): never retried.
    pub const REFUSED: &str = "Refused";
}

pub struct PlaybookActivities;

#[activity_definitions]
impl PlaybookActivities {
    #[activity(name = "playbook.record")]
    pub fn record(_input: RecordRun) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.ticket.comment")]
    pub fn ticket_comment(_input: StepCall) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.ticket.update")]
    pub fn ticket_update(_input: StepCall) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.ticket.create_task")]
    pub fn ticket_create_task(_input: StepCall) -> Result<TaskOpened, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.approval.request")]
    pub fn approval_request(_input: StepCall) -> Result<ApprovalOpened, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.approval.withdraw")]
    pub fn approval_withdraw(_input: WithdrawApproval) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.email.send")]
    pub fn email_send(_input: StepCall) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.http.request")]
    pub fn http_request(_input: StepCall) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    #[activity(name = "playbook.webhook.post")]
    pub fn webhook_post(_input: StepCall) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }
}
