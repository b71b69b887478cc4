//! A ticket's SLA: live clocks (from its workflow), rebuilds (`sla:admin`) and its timeline.

use std::collections::HashMap;

use axum::Json;
use serde::{Deserialize, Serialize};
use temporalio_client::WorkflowQueryOptions;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::sla::engine::{ClockReport, EngineState, SlaEngine};
use archer_orchestrator::sla::rebuild;
use archer_orchestrator::workflows::ticket::{self as wf, TicketWorkflow};
use archer_orchestrator::{TenantSlug, TicketNumber};
use archer_store::audit::{self, AuditEntry};
use archer_store::changes::{self, to_time};
use archer_store::sla_changes::{self, RebuildError};
use archer_store::{TenantTx, sla};

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath};
use crate::views::playbook::PlaybookNames;
use crate::views::sla::{PolicyRef, TicketSla, view};
use crate::views::ticket::find;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ticket_sla)).routes(routes!(rebuild)).routes(routes!(timeline))
}

#[derive(Serialize, ToSchema)]
pub struct LiveSla {
    /// `workflow`: asked the ticket's running workflow; `projection`: its last recorded
    /// projection (the workflow has finished or cannot be reached).
    source: &'static str,
    #[serde(flatten)]
    sla: TicketSla,
}

/// The ticket's clocks, live from its workflow when it runs.
#[utoipa::path(get, path = "/tickets/{ticket}/sla", tag = "sla", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = LiveSla),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "no such ticket, or no SLA applies to it"),
))]
pub async fn ticket_sla(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<LiveSla>> {
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, false).await?;
    let row = sla::ticket_sla(&mut tx, ticket.id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    let parsed = changes::parse(&ticket)?;
    let now = caller.now();
    let live = live_clocks(caller.state(), &caller.tenant, &parsed.number).await;
    let mut sla = view(&row, now)?;
    let source = match live {
        Some(engine_state) => {
            let engine = SlaEngine::from_state(engine_state);
            let summary = engine.summary(now);
            sla.clocks = engine.report(now);
            sla.state = summary.state;
            sla.next_due_at = summary.next_due_at;
            "workflow"
        }
        None => "projection",
    };
    Ok(Json(LiveSla { source, sla }))
}

/// The clocks as the ticket's running workflow holds them; none when Temporal cannot be
/// reached or the workflow has finished (the projection answers then).
async fn live_clocks(state: &AppState, tenant: &TenantSlug, number: &TicketNumber) -> Option<EngineState> {
    let client = state.temporal().await.map_err(|e| tracing::warn!(error = %e, "no Temporal for a live SLA")).ok()?;
    let h = client.get_workflow_handle::<TicketWorkflow>(wf::workflow_id(tenant, number));
    h.query(TicketWorkflow::sla, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| tracing::info!(error = %e, "SLA query refused; answering from the projection"))
        .ok()
        .flatten()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// The policy to run the clocks under; default: the one pinned to the ticket.
    policy_id: Option<Uuid>,
    /// Its version; default: the current one.
    policy_version: Option<i32>,
}

impl From<RebuildRequest> for rebuild::Request {
    fn from(r: RebuildRequest) -> Self {
        rebuild::Request { policy_id: r.policy_id, policy_version: r.policy_version }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Rebuilt {
    policy: PolicyRef,
    before: Vec<ClockReport>,
    after: Vec<ClockReport>,
}

/// Rebuild a ticket's clocks from its audit history under a chosen policy version (after a
/// calendar fix, say), with the policy's calendar as it is now. Needs `sla:admin`. The
/// rebuild is audited with the clocks before and after, and the ticket's workflow continues
/// with the rebuilt clocks.
#[utoipa::path(post, path = "/tickets/{ticket}/sla/rebuild", tag = "sla", params(("ticket" = String, Path)), request_body = RebuildRequest, security(("bearer" = [])), responses(
    (status = 200, body = Rebuilt),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the ticket is closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no such policy version, or none pinned and none named"),
))]
pub async fn rebuild(
    caller: Caller,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<RebuildRequest>,
) -> ApiResult<Json<Rebuilt>> {
    caller.require(Permission::SlaAdmin).await?;
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, true).await?;
    // read after the ticket's lock is held, so no change of it is later than this instant
    let now = caller.now();
    let r = sla_changes::rebuild(&mut tx, &caller.audit(), &caller.tenant, &ticket, body.into(), now).await?;
    tx.commit().await?;
    Ok(Json(Rebuilt { policy: PolicyRef::from(&r.assignment), before: r.before, after: r.after }))
}

impl From<RebuildError> for ApiError {
    fn from(e: RebuildError) -> Self {
        match e {
            RebuildError::Refused(r @ rebuild::Refusal::Closed) => ApiError::Conflict(r.to_string()),
            RebuildError::Refused(r @ rebuild::Refusal::NoPolicy) => {
                ApiError::field("/policy_id", "required", r.to_string())
            }
            RebuildError::UnknownPolicy => ApiError::field("/policy_id", "unknown", "no such policy version"),
            RebuildError::Service(e) => e.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    /// `created`, `changed`, `comment`, `link`, `sla_warning`, `sla_breach`, `escalation`,
    /// `sla_rebuilt`, `approval`, `approval_step`, `approval_task`, `approval_decision`,
    /// `playbook_run` (a run started, ran again or ended; a run follows the ticket),
    /// `playbook_step` (a step's state, attempt, reason or error, and a short output).
    kind: String,
    /// Who did it; absent for Archer itself (clocks, escalations).
    actor_id: Option<Uuid>,
    summary: String,
    /// The changed fields before and after, for changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<serde_json::Value>,
    /// SLA warnings and breaches: the true instant the threshold was reached (their `at`).
    /// Escalations: when the level was due to run (its trigger's instant, or later when the
    /// policy's cooldown held it back).
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    due_at: Option<OffsetDateTime>,
    /// SLA warnings and breaches: when Archer recorded them. Escalations: when the level
    /// actually ran (their `at`). Later than `due_at` by the timer's lag, the levels run before
    /// it, or the time a worker was down.
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    recorded_at: Option<OffsetDateTime>,
}

/// When an SLA fact or an escalation was due, and when Archer recorded or ran it, from its
/// audited row (`None` for other entries).
fn due_and_recorded(action: &str, row: Option<&serde_json::Value>) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let instant = |key: &str| {
        row.and_then(|r| r.get(key))
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(to_time)
    };
    match action {
        "sla_events.insert" => (instant("at"), instant("recorded_at")),
        "sla_escalations.insert" => (instant("fired_at"), instant("created_at")),
        _ => (None, None),
    }
}

/// Everything that happened to a ticket, oldest first: changes, comments, links, SLA warnings
/// and breaches (at their true instants) and escalations (when they ran), each of these two
/// with `due_at` and `recorded_at`, so lateness shows; approvals; playbook runs and their
/// steps. Needs `ticket:update`.
#[utoipa::path(get, path = "/tickets/{ticket}/timeline", tag = "tickets", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Vec<TimelineEntry>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn timeline(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Vec<TimelineEntry>>> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, false).await?;
    let history = audit::ticket_history(&mut tx, ticket.id, 10_000).await?;
    let names = ApprovalNames::of_ticket(&mut tx, ticket.id).await?;
    let playbooks = PlaybookNames::of_ticket(&mut tx, ticket.id, &history).await?;
    tx.commit().await?;
    let mut out: Vec<TimelineEntry> = history.into_iter().map(|h| names.entry(h, &playbooks)).collect();
    out.sort_by_key(|e| e.at);
    Ok(Json(out))
}

/// Names for the approval entries of a timeline: steps by id, and each task's approver (with
/// their step) and whom they decide for.
#[derive(Default)]
struct ApprovalNames {
    steps: HashMap<String, String>,
    tasks: HashMap<String, (String, Option<String>)>,
}

impl ApprovalNames {
    async fn of_ticket(tx: &mut TenantTx, ticket_id: Uuid) -> ApiResult<Self> {
        use archer_store::{approvals, users};
        let mut names = ApprovalNames::default();
        let mut users: HashMap<Uuid, String> = HashMap::new();
        for a in approvals::of_ticket(tx, ticket_id).await? {
            for step in approvals::steps(tx, a.id).await? {
                names.steps.insert(step.id.to_string(), step.name);
            }
            for t in approvals::tasks_of_approval(tx, a.id).await? {
                for u in [Some(t.approver_id), t.on_behalf_of].into_iter().flatten() {
                    if let std::collections::hash_map::Entry::Vacant(e) = users.entry(u) {
                        e.insert(users::get(tx, u).await.map(|u| u.display_name).unwrap_or_default());
                    }
                }
                let name = users.get(&t.approver_id).cloned().unwrap_or_default();
                let behalf = t.on_behalf_of.and_then(|u| users.get(&u).cloned());
                let step = names.steps.get(&t.step_id.to_string()).cloned().unwrap_or_default();
                names.tasks.insert(t.id.to_string(), (format!("{name} ({step})"), behalf));
            }
        }
        Ok(names)
    }

    /// One audited row as a timeline entry (a playbook table's row as `playbooks` names it).
    fn entry(&self, h: AuditEntry, playbooks: &PlaybookNames) -> TimelineEntry {
        let (kind, summary, at) = match playbooks.describe(&h) {
            Some((kind, summary)) => (kind, summary, h.at),
            None => self.describe(&h),
        };
        let (due_at, recorded_at) = due_and_recorded(&h.action, h.after.as_ref());
        TimelineEntry {
            at,
            kind: kind.into(),
            actor_id: h.actor_id,
            summary,
            before: h.before,
            after: h.after,
            due_at,
            recorded_at,
        }
    }

    /// The entry's kind, its one-line summary and its instant.
    fn describe(&self, h: &AuditEntry) -> (&'static str, String, OffsetDateTime) {
        let (kind, summary) = match h.action.as_str() {
            "tickets.insert" => ("created", format!("created: {}", text(&h.after, "title"))),
            "tickets.update" => {
                let fields: Vec<String> = h
                    .after
                    .as_ref()
                    .and_then(|a| a.as_object())
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                ("changed", format!("changed {}", fields.join(", ")))
            }
            "ticket_comments.insert" => {
                let internal = h.after.as_ref().and_then(|a| a.get("internal")).and_then(|v| v.as_bool()) == Some(true);
                ("comment", if internal { "internal note".to_owned() } else { "public comment".to_owned() })
            }
            "ticket_links.insert" => ("link", format!("linked: {}", text(&h.after, "kind"))),
            "ticket_links.delete" => ("link", format!("unlinked: {}", text(&h.before, "kind"))),
            "sla_events.insert" => return sla_fact(h),
            "sla_escalations.insert" => {
                ("escalation", format!("escalation: {} ({})", text(&h.after, "name"), text(&h.after, "metric")))
            }
            "sla.rebuilt" => ("sla_rebuilt", h.detail.clone().unwrap_or_default()),
            "approvals.insert" => ("approval", format!("approval requested: {}", text(&h.after, "source"))),
            "approvals.update" => {
                ("approval", format!("approval {}: {}", text(&h.after, "state"), text(&h.after, "reason")))
            }
            "approval_steps.insert" => ("approval_step", format!("step started: {}", text(&h.after, "name"))),
            "approval_steps.update" => ("approval_step", self.step_change(h)),
            "approval_tasks.insert" => {
                let who = self.task(h).0;
                ("approval_task", format!("approver added: {who}"))
            }
            "approval_tasks.update" => ("approval_decision", self.task_change(h)),
            other => ("changed", other.to_owned()),
        };
        (kind, summary, h.at)
    }

    fn step_change(&self, h: &AuditEntry) -> String {
        let name = h.entity_id.as_ref().and_then(|id| self.steps.get(id)).cloned().unwrap_or_default();
        let after = h.after.as_ref();
        if after.and_then(|a| a.get("state")).is_some() {
            format!("step {}: {name} ({})", text(&h.after, "state"), text(&h.after, "reason"))
        } else if after.and_then(|a| a.get("escalated_at")).is_some() {
            format!("step escalated after its timeout: {name}")
        } else {
            format!("step scheduled (reminders, timeout): {name}")
        }
    }

    /// The task's approver (with their step) and whom they decide for.
    fn task(&self, h: &AuditEntry) -> (String, Option<String>) {
        h.entity_id.as_ref().and_then(|id| self.tasks.get(id)).cloned().unwrap_or_default()
    }

    fn task_change(&self, h: &AuditEntry) -> String {
        let (who, behalf) = self.task(h);
        let behalf = behalf.map(|b| format!(" on behalf of {b}")).unwrap_or_default();
        let state = text(&h.after, "state");
        match state.as_str() {
            "asked" => format!("asked: {who}{behalf}"),
            "approved" | "rejected" => {
                let via = text(&h.after, "via");
                let comment = text(&h.after, "comment");
                let comment =
                    if comment.is_empty() || comment == "null" { String::new() } else { format!(": {comment}") };
                format!("{state} by {who}{behalf} (via {via}){comment}")
            }
            "superseded" => format!("no longer asked: {who}"),
            other => format!("{other}: {who}"),
        }
    }
}

/// A warning or a breach, at its true instant (when the threshold was reached).
fn sla_fact(h: &AuditEntry) -> (&'static str, String, OffsetDateTime) {
    let kind = text(&h.after, "kind");
    let at = h
        .after
        .as_ref()
        .and_then(|a| a.get("at"))
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(to_time)
        .unwrap_or(h.at);
    let label = if kind == "breach" { "sla_breach" } else { "sla_warning" };
    let summary =
        format!("{} {} (cycle {})", text(&h.after, "metric"), kind.replace('_', " "), text(&h.after, "cycle"));
    (label, summary, at)
}

/// A field of an audited row as text (strings as they are, other values as JSON; empty when
/// absent).
fn text(v: &Option<serde_json::Value>, k: &str) -> String {
    v.as_ref()
        .and_then(|v| v.get(k))
        .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
        .unwrap_or_default()
}
