//! An approval as the API shows it (its chain, each step and each approver's task), and who
//! may see one. Shared by the approval routes that answer with approvals (views, deciding) and
//! list them (a ticket's approvals, the inbox).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::approval::{ChainSpec, Mode, Rule, StepSpec};
use archer_store::approvals::{self, ApprovalRow, StepRow, TaskRow};
use archer_store::{StoreError, TenantTx, changes, users};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::views::ticket::is_agent;

/// An instant as the API writes it (RFC 3339).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
pub struct UserRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    pub approver: UserRef,
    /// The approver stands in for this user (out-of-office delegation).
    pub on_behalf_of: Option<UserRef>,
    /// `waiting` (not asked yet: a sequential step), `asked`, `approved`, `rejected`, or
    /// `superseded` (the step closed, or was escalated, before they decided).
    pub state: String,
    /// Asked because the step timed out and was escalated.
    pub escalation: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub asked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    pub comment: Option<String>,
    /// `app` or `email`.
    pub via: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub ordinal: i32,
    pub name: String,
    /// `upcoming` (not started), `open`, `approved`, `rejected` or `cancelled`.
    pub state: String,
    pub reason: Option<String>,
    pub mode: Mode,
    pub approve_when: Rule,
    pub reject_when: Option<Rule>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    /// When the approvers who have not decided are reminded.
    #[schema(value_type = Vec<String>)]
    pub reminders_at: Vec<String>,
    /// The next reminder still to come, while the step is open.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_reminder_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timeout_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub escalated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<OffsetDateTime>,
    pub tasks: Vec<TaskView>,
}

/// An approval of a ticket: its chain, each step and each approver's task.
#[derive(Serialize, ToSchema)]
pub struct Approval {
    pub id: Uuid,
    pub ticket_id: Uuid,
    /// The ticket's number (`REQ-000012`).
    pub ticket: String,
    /// The nth approval of the ticket.
    pub seq: i32,
    /// `pending`, `approved`, `rejected` or `cancelled`.
    pub state: String,
    pub reason: Option<String>,
    /// Why this chain runs (the catalog item, or the change routing).
    pub source: String,
    /// Who is being waited for now.
    pub pending: Vec<UserRef>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    /// The chain's workflow (Temporal workflow id).
    pub workflow_id: String,
    pub steps: Vec<StepView>,
}

/// A user by id with their display name (empty for someone no longer in the tenant).
pub async fn user_ref(tx: &mut TenantTx, id: Uuid) -> ApiResult<UserRef> {
    match users::get(tx, id).await {
        Ok(u) => Ok(UserRef { id, name: u.display_name }),
        Err(StoreError::NotFound) => Ok(UserRef { id, name: String::new() }),
        Err(e) => Err(e.into()),
    }
}

/// [`user_ref`] of someone who may not be there.
pub async fn user_ref_of(tx: &mut TenantTx, id: Option<Uuid>) -> ApiResult<Option<UserRef>> {
    match id {
        Some(u) => Ok(Some(user_ref(tx, u).await?)),
        None => Ok(None),
    }
}

pub async fn task_view(tx: &mut TenantTx, t: TaskRow) -> ApiResult<TaskView> {
    let approver = user_ref(tx, t.approver_id).await?;
    let on_behalf_of = user_ref_of(tx, t.on_behalf_of).await?;
    Ok(TaskView {
        id: t.id,
        approver,
        on_behalf_of,
        state: t.state,
        escalation: t.escalation,
        asked_at: t.asked_at,
        decided_at: t.decided_at,
        comment: t.comment,
        via: t.via,
    })
}

/// The approval with every step of its chain (those not started as `upcoming`), their tasks,
/// and who is being waited for.
pub async fn approval_view(tx: &mut TenantTx, a: ApprovalRow) -> ApiResult<Approval> {
    let ticket = archer_store::tickets::get(tx, a.ticket_id).await?;
    let number = changes::parse(&ticket)?.number.to_string();
    let chain: ChainSpec = serde_json::from_value(a.chain.clone()).unwrap_or(ChainSpec { steps: Vec::new() });
    let now = tx.now();
    let rows = approvals::steps(tx, a.id).await?;
    let mut tasks = approvals::tasks_of_approval(tx, a.id).await?;
    let mut steps = Vec::new();
    let mut pending = Vec::new();
    for (i, spec) in chain.steps.iter().enumerate() {
        let row = rows.iter().find(|r| r.ordinal == i as i32);
        let mine: Vec<TaskRow> = match row {
            Some(r) => {
                let (m, rest): (Vec<TaskRow>, Vec<TaskRow>) = tasks.into_iter().partition(|t| t.step_id == r.id);
                tasks = rest;
                m
            }
            None => Vec::new(),
        };
        let mut views = Vec::new();
        for t in mine {
            if t.state == "asked" {
                pending.push(user_ref(tx, t.approver_id).await?);
            }
            views.push(task_view(tx, t).await?);
        }
        steps.push(step_view(i as i32, spec, row, now, views));
    }
    Ok(Approval {
        id: a.id,
        ticket_id: a.ticket_id,
        ticket: number,
        seq: a.seq,
        state: a.state,
        reason: a.reason,
        source: a.source,
        pending,
        created_at: a.created_at,
        decided_at: a.decided_at,
        workflow_id: a.workflow_id,
        steps,
    })
}

/// A step of the chain: as it ran (`row`), or as the chain describes it if it has not started.
pub fn step_view(
    ordinal: i32,
    spec: &StepSpec,
    row: Option<&StepRow>,
    now: OffsetDateTime,
    tasks: Vec<TaskView>,
) -> StepView {
    let open = row.is_some_and(|r| r.state == "open");
    StepView {
        ordinal,
        name: row.map(|r| r.name.clone()).unwrap_or_else(|| spec.name.clone()),
        state: row.map(|r| r.state.clone()).unwrap_or_else(|| "upcoming".into()),
        reason: row.and_then(|r| r.reason.clone()),
        mode: spec.mode,
        approve_when: spec.approve_when,
        reject_when: spec.reject_when,
        started_at: row.map(|r| r.started_at),
        reminders_at: row.map(|r| r.reminders_at.iter().map(|t| rfc3339(*t)).collect()).unwrap_or_default(),
        next_reminder_at: row
            .filter(|r| open && r.escalated_at.is_none())
            .and_then(|r| r.reminders_at.iter().copied().find(|t| *t > now)),
        timeout_at: row.and_then(|r| r.timeout_at),
        escalated_at: row.and_then(|r| r.escalated_at),
        closed_at: row.and_then(|r| r.closed_at),
        tasks,
    }
}

/// Who may see an approval: agents, the ticket's requester, and anyone asked in it. Anyone
/// else gets 404: for them it does not exist.
pub async fn may_see(tx: &mut TenantTx, p: &Principal, a: &ApprovalRow) -> ApiResult<()> {
    if is_agent(p) {
        return Ok(());
    }
    let ticket = archer_store::tickets::get(tx, a.ticket_id).await?;
    if ticket.requester_id == p.user_id || approvals::task_of(tx, a.id, p.user_id).await?.is_some() {
        return Ok(());
    }
    Err(ApiError::NotFound)
}
