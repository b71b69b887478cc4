//! A ticket's SLA: live clocks (from its workflow), rebuilds (`sla:admin`) and its timeline.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use temporalio_client::WorkflowQueryOptions;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::sla::engine::{ClockReport, SlaEngine};
use archer_orchestrator::workflows::ticket::{self as wf, SlaRebuilt, TicketWorkflow};
use archer_store::changes::{self, to_time};
use archer_store::outbox::{self, Intent};
use archer_store::{TenantTx, audit, sla};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath, RequestMeta};
use crate::views::sla::{PolicyRef, TicketSla, now, view};
use crate::views::ticket::{find, is_agent, tenant_slug};

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
pub async fn ticket_sla(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Json<LiveSla>> {
    let tenant = tenant_slug(&p)?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let ticket = find(&mut tx, &p, &reference, false).await?;
    let row = sla::ticket_sla(&mut tx, ticket.id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    let parsed = changes::parse(&ticket)?;
    let now = now();
    let live = async {
        let client =
            state.temporal().await.map_err(|e| tracing::warn!(error = %e, "no Temporal for a live SLA")).ok()?;
        let h = client.get_workflow_handle::<TicketWorkflow>(wf::workflow_id(&tenant, &parsed.number));
        h.query(TicketWorkflow::sla, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| tracing::info!(error = %e, "SLA query refused; answering from the projection"))
            .ok()
            .flatten()
    }
    .await;
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// The policy to run the clocks under; default: the one pinned to the ticket.
    policy_id: Option<Uuid>,
    /// Its version; default: the current one.
    policy_version: Option<i32>,
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
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<RebuildRequest>,
) -> ApiResult<Json<Rebuilt>> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let tenant = tenant_slug(&p)?;
    let ctx = meta.audit(Some(p.user_id));
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &ctx).await?;
    let ticket = find(&mut tx, &p, &reference, true).await?;
    let parsed = changes::parse(&ticket)?;
    if parsed.status.is_terminal() {
        return Err(ApiError::Conflict("the ticket is closed; its clocks are final".into()));
    }
    let current = sla::ticket_sla(&mut tx, ticket.id).await?;
    let policy_id = match (body.policy_id, &current) {
        (Some(id), _) => id,
        (None, Some(c)) => c.policy_id,
        (None, None) => {
            return Err(ApiError::field("/policy_id", "required", "no policy is pinned to this ticket: name one"));
        }
    };
    let policy = match body.policy_version {
        Some(v) => sla::policy_version(&mut tx, policy_id, v).await,
        None => sla::policy(&mut tx, policy_id).await,
    }
    .map_err(|e| match e {
        archer_store::StoreError::NotFound => ApiError::field("/policy_id", "unknown", "no such policy version"),
        other => other.into(),
    })?;
    let assignment = sla::assignment_for(&mut tx, &policy).await?;
    let history = audit::ticket_history(&mut tx, ticket.id, i64::MAX).await?;
    let events = changes::sla_events_from_history(&history, ticket.requester_id);
    let now = now();
    let (engine, _) = SlaEngine::replay(assignment.clone(), &events, now);
    let after = engine.report(now);
    let before = match &current {
        Some(row) => view(row, now)?.clocks,
        None => Vec::new(),
    };
    let summary = engine.summary(now);
    sla::assign(
        &mut tx,
        sla::NewTicketSla {
            tenant_id: p.tenant_id,
            ticket_id: ticket.id,
            policy_id: assignment.policy_id,
            policy_version: assignment.policy_version,
            calendar_id: assignment.calendar_id,
            calendar_version: assignment.calendar_version,
            assignment: &serde_json::to_value(&assignment).map_err(ApiError::internal)?,
            clocks: &serde_json::to_value(&after).map_err(ApiError::internal)?,
            state: &summary.state,
            next_due_at: summary.next_due_at.map(to_time),
        },
    )
    .await?;
    let before_json = serde_json::to_value(&before).map_err(ApiError::internal)?;
    let after_json = serde_json::to_value(&after).map_err(ApiError::internal)?;
    audit::record_ticket_change(
        &mut tx,
        &ctx,
        audit::Event {
            tenant_id: p.tenant_id,
            action: "sla.rebuilt",
            entity_type: "ticket_sla",
            entity_id: Some(ticket.id.to_string()),
            detail: Some(format!("clocks rebuilt under {} v{}", assignment.policy_name, assignment.policy_version)),
        },
        ticket.id,
        &before_json,
        &after_json,
    )
    .await?;
    let signal = SlaRebuilt { seq: ticket.event_seq, at: now.to_string(), assignment: assignment.clone(), events };
    outbox::enqueue(
        &mut tx,
        p.tenant_id,
        &wf::workflow_id(&tenant, &parsed.number),
        Intent::Signal,
        "sla_rebuilt",
        &serde_json::to_value(&signal).map_err(ApiError::internal)?,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Rebuilt { policy: PolicyRef::from(&assignment), before, after }))
}

#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    /// `created`, `changed`, `comment`, `link`, `sla_warning`, `sla_breach`, `escalation`,
    /// `sla_rebuilt`, `approval`, `approval_step`, `approval_task`, `approval_decision`.
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
/// with `due_at` and `recorded_at`, so lateness shows. Needs `ticket:update`.
#[utoipa::path(get, path = "/tickets/{ticket}/timeline", tag = "tickets", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Vec<TimelineEntry>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn timeline(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Json<Vec<TimelineEntry>>> {
    if !is_agent(&p) {
        p.require(&state, &meta, Permission::TicketUpdate).await?;
    }
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let ticket = find(&mut tx, &p, &reference, false).await?;
    let history = audit::ticket_history(&mut tx, ticket.id, 10_000).await?;
    // names for approval entries: steps by id, approvers by id
    let mut step_names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut task_users: std::collections::HashMap<String, (String, Option<String>)> = std::collections::HashMap::new();
    let mut user_names: std::collections::HashMap<Uuid, String> = std::collections::HashMap::new();
    for a in archer_store::approvals::of_ticket(&mut tx, ticket.id).await? {
        for step in archer_store::approvals::steps(&mut tx, a.id).await? {
            step_names.insert(step.id.to_string(), step.name);
        }
        for t in archer_store::approvals::tasks_of_approval(&mut tx, a.id).await? {
            for u in [Some(t.approver_id), t.on_behalf_of].into_iter().flatten() {
                if let std::collections::hash_map::Entry::Vacant(e) = user_names.entry(u) {
                    e.insert(archer_store::users::get(&mut tx, u).await.map(|u| u.display_name).unwrap_or_default());
                }
            }
            let name = user_names.get(&t.approver_id).cloned().unwrap_or_default();
            let behalf = t.on_behalf_of.and_then(|u| user_names.get(&u).cloned());
            let step = step_names.get(&t.step_id.to_string()).cloned().unwrap_or_default();
            task_users.insert(t.id.to_string(), (format!("{name} ({step})"), behalf));
        }
    }
    tx.commit().await?;
    let s = |v: &Option<serde_json::Value>, k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .unwrap_or_default()
    };
    let mut out: Vec<TimelineEntry> = history
        .into_iter()
        .map(|h| {
            let (kind, summary, at) = match h.action.as_str() {
                "tickets.insert" => ("created", format!("created: {}", s(&h.after, "title")), h.at),
                "tickets.update" => {
                    let fields: Vec<String> = h
                        .after
                        .as_ref()
                        .and_then(|a| a.as_object())
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    ("changed", format!("changed {}", fields.join(", ")), h.at)
                }
                "ticket_comments.insert" => {
                    let internal =
                        h.after.as_ref().and_then(|a| a.get("internal")).and_then(|v| v.as_bool()) == Some(true);
                    ("comment", if internal { "internal note".to_owned() } else { "public comment".to_owned() }, h.at)
                }
                "ticket_links.insert" => ("link", format!("linked: {}", s(&h.after, "kind")), h.at),
                "ticket_links.delete" => ("link", format!("unlinked: {}", s(&h.before, "kind")), h.at),
                "sla_events.insert" => {
                    let kind = s(&h.after, "kind");
                    let at = h
                        .after
                        .as_ref()
                        .and_then(|a| a.get("at"))
                        .and_then(|v| v.as_str())
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map(to_time)
                        .unwrap_or(h.at);
                    let label = if kind == "breach" { "sla_breach" } else { "sla_warning" };
                    (
                        label,
                        format!(
                            "{} {} (cycle {})",
                            s(&h.after, "metric"),
                            kind.replace('_', " "),
                            s(&h.after, "cycle")
                        ),
                        at,
                    )
                }
                "sla_escalations.insert" => {
                    ("escalation", format!("escalation: {} ({})", s(&h.after, "name"), s(&h.after, "metric")), h.at)
                }
                "sla.rebuilt" => ("sla_rebuilt", h.detail.clone().unwrap_or_default(), h.at),
                "approvals.insert" => ("approval", format!("approval requested: {}", s(&h.after, "source")), h.at),
                "approvals.update" => {
                    ("approval", format!("approval {}: {}", s(&h.after, "state"), s(&h.after, "reason")), h.at)
                }
                "approval_steps.insert" => ("approval_step", format!("step started: {}", s(&h.after, "name")), h.at),
                "approval_steps.update" => {
                    let name = h.entity_id.as_ref().and_then(|id| step_names.get(id)).cloned().unwrap_or_default();
                    let after = h.after.as_ref();
                    if after.and_then(|a| a.get("state")).is_some() {
                        (
                            "approval_step",
                            format!("step {}: {name} ({})", s(&h.after, "state"), s(&h.after, "reason")),
                            h.at,
                        )
                    } else if after.and_then(|a| a.get("escalated_at")).is_some() {
                        ("approval_step", format!("step escalated after its timeout: {name}"), h.at)
                    } else {
                        ("approval_step", format!("step scheduled (reminders, timeout): {name}"), h.at)
                    }
                }
                "approval_tasks.insert" => {
                    let who = h
                        .entity_id
                        .as_ref()
                        .and_then(|id| task_users.get(id))
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default();
                    ("approval_task", format!("approver added: {who}"), h.at)
                }
                "approval_tasks.update" => {
                    let (who, behalf) =
                        h.entity_id.as_ref().and_then(|id| task_users.get(id)).cloned().unwrap_or_default();
                    let behalf = behalf.map(|b| format!(" on behalf of {b}")).unwrap_or_default();
                    let state = s(&h.after, "state");
                    let summary = match state.as_str() {
                        "asked" => format!("asked: {who}{behalf}"),
                        "approved" | "rejected" => {
                            let via = s(&h.after, "via");
                            let comment = s(&h.after, "comment");
                            let comment = if comment.is_empty() || comment == "null" {
                                String::new()
                            } else {
                                format!(": {comment}")
                            };
                            format!("{state} by {who}{behalf} (via {via}){comment}")
                        }
                        "superseded" => format!("no longer asked: {who}"),
                        other => format!("{other}: {who}"),
                    };
                    ("approval_decision", summary, h.at)
                }
                other => ("changed", other.to_owned(), h.at),
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
        })
        .collect();
    out.sort_by_key(|e| e.at);
    Ok(Json(out))
}
