//! `/approvals`: each approver's inbox, an approval's state (steps, who was asked, who decided
//! what and when, what is pending, the next reminder and timeout), in-app decisions, the
//! tenant's change routing and out-of-office delegation.
//!
//! A decision is recorded (once per approver and step, audited) in the same transaction as the
//! outbox row that signals it to the chain's workflow, which applies it exactly once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::TicketKind;
use archer_orchestrator::access::Permission;
use archer_orchestrator::approval::{ChainSpec, Decision, Mode, Rule, StepSpec};
use archer_orchestrator::catalog::{ChangeRouting, Route};
use archer_orchestrator::workflows::approval::{self as wf_approval, ChainState};
use archer_store::approvals::{self, ApprovalRow, Decided, TaskRow};
use archer_store::{StoreError, TenantTx, changes, tx_now, users};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath, AppQuery, OptionalJson, RequestMeta};
use crate::validate::Errors;

use crate::views::ticket::{find, is_agent};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbox))
        .routes(routes!(get_approval))
        .routes(routes!(live_state))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(ticket_approvals))
        .routes(routes!(get_change_routing, put_change_routing))
        .routes(routes!(get_out_of_office, put_out_of_office, delete_out_of_office))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Views

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

async fn user_ref(tx: &mut TenantTx, id: Uuid) -> ApiResult<UserRef> {
    match users::get(tx, id).await {
        Ok(u) => Ok(UserRef { id, name: u.display_name }),
        Err(StoreError::NotFound) => Ok(UserRef { id, name: String::new() }),
        Err(e) => Err(e.into()),
    }
}

async fn task_view(tx: &mut TenantTx, t: TaskRow) -> ApiResult<TaskView> {
    let approver = user_ref(tx, t.approver_id).await?;
    let on_behalf_of = match t.on_behalf_of {
        Some(u) => Some(user_ref(tx, u).await?),
        None => None,
    };
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

pub(crate) async fn approval_view(tx: &mut TenantTx, a: ApprovalRow) -> ApiResult<Approval> {
    let ticket = archer_store::tickets::get(tx, a.ticket_id).await?;
    let number = changes::parse(&ticket)?.number.to_string();
    let chain: ChainSpec = serde_json::from_value(a.chain.clone()).unwrap_or(ChainSpec { steps: Vec::new() });
    let now = tx_now(tx).await?;
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

fn step_view(
    ordinal: i32,
    spec: &StepSpec,
    row: Option<&approvals::StepRow>,
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

/// Who may see an approval: agents, the ticket's requester, and anyone asked in it.
async fn may_see(tx: &mut TenantTx, p: &Principal, a: &ApprovalRow) -> ApiResult<()> {
    if is_agent(p) {
        return Ok(());
    }
    let ticket = archer_store::tickets::get(tx, a.ticket_id).await?;
    if ticket.requester_id == p.user_id || approvals::task_of(tx, a.id, p.user_id).await?.is_some() {
        return Ok(());
    }
    Err(ApiError::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Inbox and state

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// `pending` (default): what waits for your decision, oldest first; `decided`: what you
    /// decided, newest first.
    #[param(pattern = "^(pending|decided)$")]
    state: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// Items per page, 1–200 (default 25).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// One page of an approvals inbox.
#[derive(Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<InboxItem>,
    page: i64,
    limit: i64,
    /// Items on every page together.
    total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct InboxItem {
    /// The approval (`GET /approvals/{id}`); decide with `POST /approvals/{id}/approve`.
    pub approval_id: Uuid,
    pub task_id: Uuid,
    pub step: String,
    pub ticket_id: Uuid,
    pub ticket: String,
    pub title: String,
    pub requester: UserRef,
    pub on_behalf_of: Option<UserRef>,
    /// `asked`, `approved` or `rejected`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub asked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    /// When the step times out.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timeout_at: Option<OffsetDateTime>,
}

/// Your approvals inbox: the tasks you are asked to decide (being asked is the permission,
/// whatever your roles), or those you decided; paged like every list.
#[utoipa::path(get, path = "/approvals", operation_id = "approval_inbox", tag = "approvals", params(InboxQuery), security(("bearer" = [])), responses(
    (status = 200, body = InboxPage),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn inbox(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppQuery(q): AppQuery<InboxQuery>,
) -> ApiResult<Json<InboxPage>> {
    let mut errors = Errors::new();
    let pending = match q.state.as_deref().unwrap_or("pending") {
        "pending" => true,
        "decided" => false,
        _ => {
            errors.add("?state", "enum", "`pending` or `decided`");
            true
        }
    };
    let (page, limit) = crate::validate::page(&mut errors, q.page, q.limit);
    errors.into_result()?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let (rows, total) = approvals::inbox(&mut tx, p.user_id, pending, limit, (page - 1) * limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: TicketKind = r.ticket_kind.parse().map_err(ApiError::internal)?;
        let requester = user_ref(&mut tx, r.requester_id).await?;
        let on_behalf_of = match r.on_behalf_of {
            Some(u) => Some(user_ref(&mut tx, u).await?),
            None => None,
        };
        out.push(InboxItem {
            approval_id: r.approval_id,
            task_id: r.task_id,
            step: r.step_name,
            ticket_id: r.ticket_id,
            ticket: format!("{}-{:06}", kind.prefix(), r.ticket_number),
            title: r.title,
            requester,
            on_behalf_of,
            state: r.state,
            asked_at: r.asked_at,
            decided_at: r.decided_at,
            timeout_at: r.timeout_at,
        });
    }
    tx.commit().await?;
    Ok(Json(InboxPage { items: out, page, limit, total }))
}

/// An approval: each step, who was asked, who decided what and when, what is pending, and
/// the next reminder and timeout. For agents, the ticket's requester and its approvers.
#[utoipa::path(get, path = "/approvals/{id}", tag = "approvals", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Approval),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_approval(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Approval>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let a = approvals::get(&mut tx, id).await?;
    may_see(&mut tx, &p, &a).await?;
    let view = approval_view(&mut tx, a).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// The chain as its workflow holds it (a Temporal query): the current step, its tasks and
/// the decisions applied so far, the next reminder and the timeout.
#[derive(Serialize, ToSchema)]
pub struct LiveChain {
    pub workflow_id: String,
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

/// The approval's chain, queried from its running workflow.
#[utoipa::path(get, path = "/approvals/{id}/workflow", tag = "approvals", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = LiveChain),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn live_state(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<LiveChain>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let a = approvals::get(&mut tx, id).await?;
    may_see(&mut tx, &p, &a).await?;
    tx.commit().await?;
    let client = state.temporal().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let handle = client.get_workflow_handle::<wf_approval::ApprovalChainWorkflow>(a.workflow_id.clone());
    let chain: ChainState = handle
        .query(wf_approval::ApprovalChainWorkflow::state, (), temporalio_client::WorkflowQueryOptions::default())
        .await
        .map_err(|e| ApiError::Unavailable(format!("the chain's workflow did not answer: {e}")))?;
    Ok(Json(LiveChain { workflow_id: a.workflow_id, state: serde_json::to_value(chain).map_err(ApiError::internal)? }))
}

/// A ticket's approvals, oldest first.
#[utoipa::path(get, path = "/tickets/{ticket}/approvals", tag = "approvals", params(("ticket" = String, Path, description = "id or number")), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Approval>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn ticket_approvals(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Json<Vec<Approval>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let ticket = find(&mut tx, &p, &reference, false).await?;
    let mut out = Vec::new();
    for a in approvals::of_ticket(&mut tx, ticket.id).await? {
        out.push(approval_view(&mut tx, a).await?);
    }
    tx.commit().await?;
    Ok(Json(out))
}

// ---------------------------------------------------------------------------------------------
// Deciding

/// The outcome of a decision request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionResult {
    /// Recorded now; the chain applies it moments later.
    Recorded,
    /// You had already decided the same way (a second click): nothing changed.
    AlreadyDecided,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionResponse {
    pub result: DecisionResult,
    pub decision: Decision,
    pub approval: Approval,
}

/// An approval, with a comment if you like; the body may be left out (empty means `{}`).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[schema(max_length = 4000)]
    comment: Option<String>,
}

/// A rejection: why (the requester sees it).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    #[schema(value_type = String, required = true, pattern = r"\S", max_length = 4000)]
    comment: Option<String>,
}

/// What deciding found, for the API and for the emailed links' pages.
pub(crate) enum Outcome {
    Recorded(TaskRow),
    Already(TaskRow),
    Closed { task: TaskRow, step_state: String, approval_state: String },
}

/// Records `decision` on `task` through the store's write path (with the outbox row that
/// delivers it to the chain's workflow). The caller has checked who decides.
pub(crate) async fn record_decision(
    tx: &mut TenantTx,
    approval: &ApprovalRow,
    task: &TaskRow,
    decision: Decision,
    comment: Option<&str>,
    via: &str,
) -> ApiResult<Outcome> {
    Ok(match archer_store::approval_changes::decide(tx, approval, task, decision, comment, via).await? {
        Decided::Already(t) => Outcome::Already(t),
        Decided::Closed { task, step_state, approval_state } => Outcome::Closed { task, step_state, approval_state },
        Decided::Recorded(t) => Outcome::Recorded(t),
    })
}

/// Whether a task's recorded decision is `decision`.
fn same(task: &TaskRow, decision: Decision) -> bool {
    matches!((task.state.as_str(), decision), ("approved", Decision::Approve) | ("rejected", Decision::Reject))
}

async fn decide_in_app(
    state: &AppState,
    meta: &RequestMeta,
    p: &Principal,
    id: Uuid,
    decision: Decision,
    comment: Option<String>,
) -> ApiResult<Json<DecisionResponse>> {
    // being asked by a step is the permission to decide that task, whatever one's roles
    let mut errors = Errors::new();
    // counted as sent, as the document's maxLength counts
    if comment.as_ref().is_some_and(|c| c.chars().count() > 4000) {
        errors.add("/comment", "length", "at most 4000 characters");
    }
    let comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if decision == Decision::Reject && comment.is_none() {
        errors.add("/comment", "required", "say why you reject: the requester sees it");
    }
    errors.into_result()?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    // an access token outlives a deactivation by up to its lifetime: a deactivated person
    // decides nothing
    if !archer_store::users::get(&mut tx, p.user_id).await.is_ok_and(|u| u.active) {
        return Err(ApiError::Forbidden("your account is deactivated".into()));
    }
    let approval = approvals::get(&mut tx, id).await?;
    let ticket = archer_store::tickets::get(&mut tx, approval.ticket_id).await?;
    if ticket.requester_id == p.user_id {
        return Err(ApiError::Forbidden("you cannot decide on your own request".into()));
    }
    let Some(task) = approvals::task_of(&mut tx, id, p.user_id).await? else {
        // not an approver of it: it does not exist for them, unless they may see it anyway
        may_see(&mut tx, p, &approval).await?;
        return Err(ApiError::Forbidden("you are not asked to decide this approval".into()));
    };
    let outcome = record_decision(&mut tx, &approval, &task, decision, comment.as_deref(), "app").await?;
    let result = match outcome {
        Outcome::Recorded(_) => DecisionResult::Recorded,
        // the same decision again, while its step is still open: a retry, answered as such
        Outcome::Already(t) if same(&t, decision) && approvals::step(&mut tx, t.step_id).await?.state == "open" => {
            DecisionResult::AlreadyDecided
        }
        // otherwise (the other decision, or a past step's decision while the chain moved on):
        // one refusal saying what was decided and when
        Outcome::Already(t) => {
            let step = approvals::step(&mut tx, t.step_id).await?;
            return Err(ApiError::Conflict(format!(
                "you already {} this{} (step \"{}\"); a decision cannot be changed",
                t.state,
                t.decided_at.map(|d| format!(" at {}", rfc3339(d))).unwrap_or_default(),
                step.name
            )));
        }
        Outcome::Closed { task, step_state, approval_state } => {
            return Err(ApiError::Conflict(closed_message(&task, &step_state, &approval_state)));
        }
    };
    let approval = approvals::get(&mut tx, id).await?;
    let view = approval_view(&mut tx, approval).await?;
    tx.commit().await?;
    Ok(Json(DecisionResponse { result, decision, approval: view }))
}

/// Why a decision on a closed step or approval is not taken, in words.
pub(crate) fn closed_message(task: &TaskRow, step_state: &str, approval_state: &str) -> String {
    if approval_state == "cancelled" {
        return "this approval was cancelled (the ticket was cancelled or sent back): nothing is left to decide".into();
    }
    if task.state == "superseded" && step_state == "open" {
        return "the step was escalated to someone else after its timeout: your decision is no longer needed".into();
    }
    if task.state == "waiting" {
        return "it is not your turn yet: this step asks its approvers one by one".into();
    }
    match step_state {
        "approved" | "rejected" => format!("this step was already {step_state} without your decision"),
        _ => format!("this approval is already {approval_state}"),
    }
}

/// Approve, as an approver the approval's open step asked (being asked is the permission).
///
/// Approving twice while the step is open answers `already_decided`; having decided otherwise,
/// or in a step the chain has moved past, is a 409 saying what you decided and when; a step
/// that closed meanwhile is a 409 saying how it ended. The requester cannot approve their own
/// request.
#[utoipa::path(post, path = "/approvals/{id}/approve", tag = "approvals", params(("id" = Uuid, Path)),
    request_body(content = Option<DecisionBody>, description = "optional: an empty body is `{}`"), security(("bearer" = [])), responses(
    (status = 200, body = DecisionResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "decided otherwise already, or the step closed"),
))]
pub async fn approve(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> ApiResult<Json<DecisionResponse>> {
    decide_in_app(&state, &meta, &p, id, Decision::Approve, body.comment).await
}

/// Reject, with a comment (required: the requester sees it), as an approver the open step
/// asked. Refusals as for approving.
#[utoipa::path(post, path = "/approvals/{id}/reject", tag = "approvals", params(("id" = Uuid, Path)),
    request_body = RejectBody, security(("bearer" = [])), responses(
    (status = 200, body = DecisionResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no comment"),
))]
pub async fn reject(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<RejectBody>,
) -> ApiResult<Json<DecisionResponse>> {
    decide_in_app(&state, &meta, &p, id, Decision::Reject, body.comment).await
}

// ---------------------------------------------------------------------------------------------
// Starting and cancelling approvals from ticket changes

// ---------------------------------------------------------------------------------------------
// Change routing

/// Which approval each change type gets when it enters authorization.
#[utoipa::path(get, path = "/settings/change-routing", tag = "approvals", security(("bearer" = [])), responses(
    (status = 200, body = ChangeRouting),
))]
pub async fn get_change_routing(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
) -> ApiResult<Json<ChangeRouting>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let r = archer_store::approval_changes::routing(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(r))
}

/// Replace the change routing. Needs `catalog:admin`. Changes entering authorization from now
/// on use it; approvals already running keep their chain.
#[utoipa::path(put, path = "/settings/change-routing", tag = "approvals", request_body = ChangeRouting, security(("bearer" = [])), responses(
    (status = 200, body = ChangeRouting),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_change_routing(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppJson(body, _): AppJson<ChangeRouting>,
) -> ApiResult<Json<ChangeRouting>> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    if let Err(errs) = body.validate() {
        return Err(ApiError::Validation(
            errs.into_iter().map(|e| crate::error::FieldError::new(e.pointer, e.code, e.message)).collect(),
        ));
    }
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let errors = super::catalog::approver_errors(&mut tx, &routing_chains(&body)).await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    approvals::set_change_routing(&mut tx, p.tenant_id, &serde_json::to_value(&body).map_err(ApiError::internal)?)
        .await?;
    tx.commit().await?;
    Ok(Json(body))
}

fn routing_chains(r: &ChangeRouting) -> Vec<(String, ChainSpec)> {
    [("standard", &r.standard), ("normal", &r.normal), ("emergency", &r.emergency)]
        .into_iter()
        .filter_map(|(n, route)| match route {
            Route::Chain(c) => Some((format!("/{n}/chain"), c.clone())),
            Route::AutoApprove { .. } => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Out of office

#[derive(Serialize, ToSchema)]
pub struct OutOfOffice {
    pub user_id: Uuid,
    /// Who is asked instead while it is active.
    pub delegate_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: OffsetDateTime,
    pub reason: Option<String>,
    /// Whether it is in force now.
    pub active: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutOfOfficeBody {
    delegate_id: Uuid,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    /// RFC 3339; after `starts_at`.
    #[schema(format = DateTime)]
    ends_at: String,
    #[schema(max_length = 500)]
    reason: Option<String>,
}

async fn whose(state: &AppState, meta: &RequestMeta, p: &Principal, user: &str) -> ApiResult<Uuid> {
    let id = if user == "me" { p.user_id } else { Uuid::parse_str(user).map_err(|_| ApiError::NotFound)? };
    if id != p.user_id {
        p.require(state, meta, Permission::UserAdmin).await?;
    }
    Ok(id)
}

/// A user's out-of-office delegation (`me` for yourself; others need `user:admin`).
#[utoipa::path(get, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path, description = "a user id or `me`")), security(("bearer" = [])), responses(
    (status = 200, body = OutOfOffice),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_out_of_office(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(user): AppPath<String>,
) -> ApiResult<Json<OutOfOffice>> {
    let id = whose(&state, &meta, &p, &user).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let d = approvals::delegation(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let now = tx_now(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ooo_view(d, now)))
}

fn ooo_view(d: approvals::Delegation, now: OffsetDateTime) -> OutOfOffice {
    OutOfOffice {
        user_id: d.user_id,
        delegate_id: d.delegate_id,
        starts_at: d.starts_at,
        ends_at: d.ends_at,
        reason: d.reason,
        active: d.starts_at <= now && now < d.ends_at,
    }
}

/// Set a user's out-of-office delegate: while active, approval steps that start ask the
/// delegate instead (recorded on their decision as on behalf of the user).
#[utoipa::path(put, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path)), request_body = OutOfOfficeBody, security(("bearer" = [])), responses(
    (status = 200, body = OutOfOffice),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_out_of_office(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(user): AppPath<String>,
    AppJson(body, _): AppJson<OutOfOfficeBody>,
) -> ApiResult<Json<OutOfOffice>> {
    let id = whose(&state, &meta, &p, &user).await?;
    let mut errors = Errors::new();
    let parse = |errors: &mut Errors, ptr: &str, v: &str| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| errors.add(ptr, "format", "must be an RFC 3339 date-time"))
            .ok()
    };
    let starts = body.starts_at.as_deref().and_then(|s| parse(&mut errors, "/starts_at", s));
    let ends = parse(&mut errors, "/ends_at", &body.ends_at);
    let reason = body.reason.as_deref().map(|r| errors.text("/reason", r, 0, 500));
    if body.delegate_id == id {
        errors.add("/delegate_id", "conflict", "a delegate is someone else");
    }
    errors.into_result()?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let now = tx_now(&mut tx).await?;
    let starts = starts.unwrap_or(now);
    let Some(ends) = ends else { return Err(ApiError::field("/ends_at", "required", "when does it end?")) };
    if ends <= starts {
        return Err(ApiError::field("/ends_at", "range", "ends after it starts"));
    }
    match users::get(&mut tx, body.delegate_id).await {
        Ok(u) if u.active => {}
        Ok(_) => return Err(ApiError::field("/delegate_id", "inactive", "this user is deactivated")),
        Err(StoreError::NotFound) => return Err(ApiError::field("/delegate_id", "unknown", "no such user")),
        Err(e) => return Err(e.into()),
    }
    if users::get(&mut tx, id).await.is_err() {
        return Err(ApiError::NotFound);
    }
    let d =
        approvals::set_delegation(&mut tx, p.tenant_id, id, body.delegate_id, starts, ends, reason.as_deref()).await?;
    tx.commit().await?;
    Ok(Json(ooo_view(d, now)))
}

/// End a user's out-of-office delegation.
#[utoipa::path(delete, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "cleared"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_out_of_office(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(user): AppPath<String>,
) -> ApiResult<StatusCode> {
    let id = whose(&state, &meta, &p, &user).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    if !approvals::clear_delegation(&mut tx, id).await? {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
