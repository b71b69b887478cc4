//! The approval activities: opening a step (resolving and asking its approvers, with their
//! emails and signed decision links), asking the next approver or reminding, escalating a
//! timed-out step, closing a step or an approval, and moving the ticket on after it.
//!
//! Each is idempotent under retries: steps and tasks are keyed by (approval, step) and
//! (step, approver), emails by a Message-ID derived from their task and purpose, and the
//! ticket moves only if it still waits for this approval.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::approval::{ApproverSpec, ChainSpec, Clock, Decision, Outcome, StepSpec};
use archer_orchestrator::commands::approval::{self as rules, ApprovalState, Approver, Named, StepState, TaskState};
use archer_orchestrator::commands::ticket::{Actor, ApprovalRoute};
use archer_orchestrator::sla::calendar::{Calendar, CalendarSpec};
use archer_orchestrator::sla::engine::SlaAssignment;
use archer_orchestrator::workflows::activities::{
    ApplyOutcome, Ask, Close, EscalateStep, OpenStep, OpenedStep, StepEscalated, TaskRef, TicketRef,
};
use archer_store::approvals::{self, StepRow, TaskRow};
use archer_store::changes::{self, to_jiff, to_time};
use archer_store::{AuditContext, StoreError, TenantTx, notifications, tickets};

use crate::email::{self, StepText, answers, human_utc};
use crate::links::{LinkClaims, LinkSigner, ViewClaims};

/// What the approval activities need.
pub struct ApprovalActivities {
    pub pool: archer_store::Db,
    pub links: LinkSigner,
    pub public_url: String,
}

fn fail(e: impl std::fmt::Display) -> ActivityError {
    ActivityError::from(anyhow::anyhow!("{e}"))
}

fn workflow_ctx(t: &TicketRef) -> AuditContext {
    AuditContext { actor_id: None, request_id: Some(format!("workflow:{}/{}", t.tenant, t.number)), ip: None }
}

impl ApprovalActivities {
    /// Who a step with these approver specs asks, by the domain's rules ([`rules::approvers`]:
    /// a delegate for someone out of office, nobody twice, only active people, never the
    /// requester), given each named person's delegation and whether whoever would be asked is
    /// active.
    async fn resolve(
        &self,
        tx: &mut TenantTx,
        specs: &[ApproverSpec],
        ticket: &tickets::TicketRow,
    ) -> Result<Vec<Approver>, StoreError> {
        let mut named = Vec::new();
        for user in self.named(tx, specs, ticket).await? {
            let delegate = approvals::delegate_of(tx, user).await?;
            let active = archer_store::users::get(tx, delegate.unwrap_or(user)).await.is_ok_and(|u| u.active);
            named.push(Named { user, delegate, active });
        }
        Ok(rules::approvers(&named, ticket.requester_id))
    }

    /// The users a step's approver specs name, in order (repeats included).
    async fn named(
        &self,
        tx: &mut TenantTx,
        specs: &[ApproverSpec],
        ticket: &tickets::TicketRow,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut ids: Vec<Uuid> = Vec::new();
        for spec in specs {
            match spec {
                ApproverSpec::User(id) => ids.push(*id),
                ApproverSpec::Role(role) => {
                    let (users, _) = archer_store::users::list(
                        tx,
                        archer_store::users::UserFilter {
                            q: None,
                            role: Some(role),
                            active: Some(true),
                            limit: 1000,
                            offset: 0,
                        },
                    )
                    .await?;
                    ids.extend(users.into_iter().map(|u| u.id));
                }
                ApproverSpec::Team(team) => {
                    if let Ok(t) = archer_store::teams::get(tx, *team).await {
                        ids.extend(t.members);
                    }
                }
                ApproverSpec::RequesterManager => {
                    if let Ok(u) = archer_store::users::get(tx, ticket.requester_id).await
                        && let Some(m) = u.manager_id
                    {
                        ids.push(m);
                    }
                }
                ApproverSpec::ItemOwner => {
                    if let (Some(item), Some(version)) = (ticket.catalog_item_id, ticket.catalog_item_version)
                        && let Ok(i) = archer_store::catalog::item_version(tx, item, version).await
                        && let Some(owner) =
                            i.spec.get("owner_id").and_then(|o| o.as_str()).and_then(|o| Uuid::parse_str(o).ok())
                    {
                        ids.push(owner);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// Tells the item's owner (else the tenant's admins) that a step could not be met by the
    /// approvers it found, once per step.
    async fn notify_unsatisfiable(
        &self,
        tx: &mut TenantTx,
        t: &TicketRef,
        ticket: &tickets::TicketRow,
        spec: &archer_orchestrator::approval::StepSpec,
        step: &approvals::StepRow,
        found: usize,
    ) -> Result<(), StoreError> {
        let owner = match (ticket.catalog_item_id, ticket.catalog_item_version) {
            (Some(item), Some(version)) => archer_store::catalog::item_version(tx, item, version)
                .await
                .ok()
                .and_then(|i| i.spec.get("owner_id").and_then(|o| o.as_str()).and_then(|o| Uuid::parse_str(o).ok())),
            _ => None,
        };
        let recipients: Vec<Uuid> = match owner {
            Some(o) => vec![o],
            None => {
                let filter = archer_store::users::UserFilter {
                    q: None,
                    role: Some("admin"),
                    active: Some(true),
                    limit: 100,
                    offset: 0,
                };
                archer_store::users::list(tx, filter).await?.0.into_iter().map(|u| u.id).collect()
            }
        };
        let needed = spec.approve_when.needed(found as u32).max(1);
        let title = format!("{}: approval step \"{}\" cannot be met", t.number, spec.name);
        let body = format!(
            "The step needs {needed} approval(s) but {found} approver(s) could be found, so the request was \
             rejected. Add approvers (or change the chain) and ask the requester to submit it again."
        );
        let data =
            serde_json::json!({"ticket": t.number.to_string(), "step": spec.name, "needed": needed, "found": found});
        for user in recipients {
            archer_store::notifications::notify(
                tx,
                archer_store::notifications::NewNotification {
                    tenant_id: t.tenant_id,
                    user_id: user,
                    ticket_id: Some(t.ticket_id),
                    kind: "approval.unsatisfiable",
                    title: &title,
                    body: &body,
                    data: &data,
                    dedup_key: &format!("approval-unsatisfiable:{}", step.id),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Queues the email asking (or reminding) an approver, with approve and reject links.
    async fn email(
        &self,
        tx: &mut TenantTx,
        t: &TicketRef,
        ticket: &tickets::TicketRow,
        step: &StepRow,
        task: &TaskRow,
        purpose: &str,
    ) -> Result<Uuid, ActivityError> {
        let approver = archer_store::users::get(tx, task.approver_id).await.map_err(fail)?;
        let requester = archer_store::users::get(tx, ticket.requester_id).await.map_err(fail)?;
        let on_behalf_of = match task.on_behalf_of {
            Some(u) => archer_store::users::get(tx, u).await.ok().map(|u| u.display_name),
            None => None,
        };
        let exp = rules::link_expires_at(step.timeout_at.map(to_jiff), to_jiff(tx.now())).as_second();
        let link = |decision: Decision| {
            let token = self.links.sign(&LinkClaims {
                jti: Uuid::now_v7(),
                tenant: t.tenant_id,
                approval: task.approval_id,
                step: step.id,
                task: task.id,
                approver: task.approver_id,
                decision,
                exp,
            });
            format!("{}/approvals/decide?token={token}", self.public_url.trim_end_matches('/'))
        };
        // "View the request": a page showing the request to this approver, deciding nothing
        let view = self.links.sign_view(&ViewClaims {
            tenant: t.tenant_id,
            approval: task.approval_id,
            step: step.id,
            task: task.id,
            approver: task.approver_id,
            exp,
        });
        let fields = form_answers(tx, ticket).await;
        // (an escalation email is built before the step row says it was escalated)
        let about = step_text(tx, step, step.escalated_at.is_some() || task.escalation).await;
        let number = t.number.to_string();
        let data = json!({
            "recipient": {"name": approver.display_name},
            "ticket": {"number": number, "title": ticket.title},
            "requester": {"name": requester.display_name},
            "step": {"name": step.name, "position": about.position, "rule": about.rule, "summary": about.summary},
            "on_behalf_of": on_behalf_of,
            "fields": fields,
            "approve_url": link(Decision::Approve),
            "reject_url": link(Decision::Reject),
            "view_url": format!("{}/approvals/view?token={view}", self.public_url.trim_end_matches('/')),
            "inbox_url": format!("{}/portal/approvals", self.public_url.trim_end_matches('/')),
            "expires_at": human_utc(Timestamp::from_second(exp).unwrap_or(Timestamp::MAX)),
            "reminder": purpose.starts_with("reminder"),
            "escalated": task.escalation,
        });
        let message_id = format!("<approval.{}.{purpose}@archer>", task.id);
        let recipients = json!([{"name": approver.display_name, "address": approver.email}]);
        let template = if purpose.starts_with("reminder") {
            "approval_reminder"
        } else if task.escalation {
            "approval_escalated"
        } else {
            "approval_request"
        };
        notifications::queue_email(tx, t.tenant_id, &message_id, &recipients, template, &data).await.map_err(fail)
    }
}

/// The request's answers as emails and pages show them (`[{"label", "value"}]`): in the order
/// of the form of the item version it was submitted against, labelled with the form's titles,
/// values as text (see [`crate::email::answers`]).
pub async fn form_answers(tx: &mut TenantTx, ticket: &tickets::TicketRow) -> Vec<serde_json::Value> {
    let Some(fields) = ticket.request_fields.as_ref().and_then(|f| f.as_object()) else { return Vec::new() };
    let spec = match (ticket.catalog_item_id, ticket.catalog_item_version) {
        (Some(id), Some(v)) => archer_store::catalog::item_version(tx, id, v).await.ok().map(|i| i.spec),
        _ => None,
    };
    let form = spec.as_ref().and_then(|s| s.get("form_schema"));
    answers(form, fields).into_iter().map(|a| json!({"label": a.label, "value": a.value})).collect()
}

/// Which step of how many `step` is and what settles it, as emails and pages say it
/// (`step 2 of 2: any 2 of 3 approvers`): the chain is the one its approval runs, the approvers
/// those the step asks (once `escalated`, those it was escalated to).
pub async fn step_text(tx: &mut TenantTx, step: &StepRow, escalated: bool) -> StepText {
    let total = approvals::get(tx, step.approval_id)
        .await
        .ok()
        .and_then(|a| serde_json::from_value::<ChainSpec>(a.chain).ok())
        .map(|c| c.steps.len());
    let spec = serde_json::from_value::<StepSpec>(step.spec.clone()).ok();
    let approvers =
        approvals::tasks(tx, step.id).await.map(|ts| ts.iter().filter(|t| t.escalation == escalated).count());
    let index = usize::try_from(step.ordinal).unwrap_or(0);
    email::step_text(index, total, spec.as_ref(), approvers.unwrap_or(0), escalated)
}

/// The calendar approvals count business time in: the one of the ticket's SLA policy, else 24×7.
async fn calendar_of(tx: &mut TenantTx, ticket_id: Uuid) -> Calendar {
    let spec = archer_store::sla::ticket_sla(tx, ticket_id)
        .await
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_value::<SlaAssignment>(s.assignment).ok())
        .map(|a| a.calendar)
        .unwrap_or_else(CalendarSpec::always);
    spec.compile().unwrap_or_else(|_| Calendar::always())
}

fn after(calendar: &Calendar, clock: Clock, start: Timestamp, secs: u64) -> Timestamp {
    let d = jiff::SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
    match clock {
        Clock::Wall => start.checked_add(d).unwrap_or(start),
        Clock::Business => calendar.add(start, d).unwrap_or(start),
    }
}

/// A task's state as the domain knows it.
fn task_state(task: &TaskRow) -> Result<TaskState, ActivityError> {
    task.state.parse().map_err(fail)
}

/// Records how long the workflow took to act on a decision (`archer_approval_decision_to_next_step_seconds`).
fn decision_acted_on(decided: OffsetDateTime, acted: OffsetDateTime) {
    let secs = (acted - decided).as_seconds_f64().max(0.0);
    archer_store::metrics::metrics().approval_decision_to_next_step.observe(secs);
}

fn task_refs(tasks: &[TaskRow]) -> Vec<TaskRef> {
    tasks.iter().map(|t| TaskRef { task_id: t.id, approver_id: t.approver_id }).collect()
}

#[activities]
impl ApprovalActivities {
    #[activity(name = "approval.open_step")]
    pub async fn open_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: OpenStep,
    ) -> Result<OpenedStep, ActivityError> {
        let t = &input.ticket;
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &workflow_ctx(t)).await.map_err(fail)?;
        let ticket = tickets::get(&mut tx, t.ticket_id).await.map_err(fail)?;
        // cancelled before this step opened (the ticket was cancelled): ask nobody
        let approval = approvals::get(&mut tx, input.approval_id).await.map_err(fail)?;
        if approval.state.parse::<ApprovalState>().map_err(fail)? != ApprovalState::Pending {
            let reason = approval.reason.unwrap_or_else(|| format!("the approval is {}", approval.state));
            return Ok(OpenedStep {
                step_id: Uuid::nil(),
                tasks: Vec::new(),
                reminders: Vec::new(),
                timeout: None,
                emails: Vec::new(),
                closed: Some(reason),
            });
        }
        let spec = serde_json::to_value(&input.step).map_err(fail)?;
        let (step, new) = approvals::open_step(
            &mut tx,
            t.tenant_id,
            input.approval_id,
            t.ticket_id,
            input.index as i32,
            &input.step.name,
            &spec,
        )
        .await
        .map_err(fail)?;
        if new && input.index > 0 {
            // the decision that closed the previous step, to this one opening
            if let Some(decided) = approvals::last_decision_at(&mut tx, input.approval_id).await.map_err(fail)? {
                decision_acted_on(decided, step.started_at);
            }
        }
        if new {
            let asked = self.resolve(&mut tx, &input.step.approvers, &ticket).await.map_err(fail)?;
            for (i, a) in asked.into_iter().enumerate() {
                approvals::add_task(&mut tx, t.tenant_id, &step, i as i32, a.user, a.on_behalf_of, false)
                    .await
                    .map_err(fail)?;
            }
            if let Some(timeout) = &input.step.timeout {
                let calendar = calendar_of(&mut tx, t.ticket_id).await;
                let start = to_jiff(step.started_at);
                let reminders: Vec<OffsetDateTime> =
                    timeout.reminders.iter().map(|r| to_time(after(&calendar, timeout.clock, start, r.0))).collect();
                let until = to_time(after(&calendar, timeout.clock, start, timeout.after.0));
                approvals::set_schedule(&mut tx, step.id, &reminders, Some(until)).await.map_err(fail)?;
            }
        }
        let step = approvals::step(&mut tx, step.id).await.map_err(fail)?;
        let tasks = approvals::tasks(&mut tx, step.id).await.map_err(fail)?;
        if !archer_orchestrator::approval::StepTally::satisfiable(&input.step, tasks.len()) {
            // Fail closed: a rule the approvers found cannot meet is never lowered to them.
            // Nobody is asked; the chain sees the tally and rejects with the reason; whoever
            // can fix the chain (the item's owner, else the tenant's admins) is told.
            self.notify_unsatisfiable(&mut tx, t, &ticket, &input.step, &step, tasks.len()).await.map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            return Ok(OpenedStep {
                step_id: step.id,
                tasks: task_refs(&tasks),
                reminders: Vec::new(),
                timeout: None,
                emails: Vec::new(),
                closed: None,
            });
        }
        let first: Vec<Uuid> =
            tasks.iter().take(rules::asked_at_open(input.step.mode, tasks.len())).map(|t| t.id).collect();
        approvals::ask(&mut tx, &first).await.map_err(fail)?;
        let mut emails = Vec::new();
        for task in approvals::tasks(&mut tx, step.id).await.map_err(fail)? {
            if task_state(&task)? == TaskState::Asked {
                emails.push(self.email(&mut tx, t, &ticket, &step, &task, "request").await?);
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(OpenedStep {
            step_id: step.id,
            tasks: task_refs(&tasks),
            reminders: step.reminders_at.iter().map(|r| to_jiff(*r)).collect(),
            timeout: step.timeout_at.map(to_jiff),
            emails,
            closed: None,
        })
    }

    #[activity(name = "approval.ask")]
    pub async fn ask(self: Arc<Self>, _ctx: ActivityContext, input: Ask) -> Result<Vec<Uuid>, ActivityError> {
        let t = &input.ticket;
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &workflow_ctx(t)).await.map_err(fail)?;
        let ticket = tickets::get(&mut tx, t.ticket_id).await.map_err(fail)?;
        let step = approvals::step(&mut tx, input.step_id).await.map_err(fail)?;
        if input.reminder.is_none() {
            approvals::ask(&mut tx, &input.task_ids).await.map_err(fail)?;
        }
        let purpose = match input.reminder {
            Some(n) => format!("reminder.{n}"),
            None => "request".to_owned(),
        };
        let step_state: StepState = step.state.parse().map_err(fail)?;
        let mut emails = Vec::new();
        if step_state == StepState::Open {
            for id in &input.task_ids {
                let task = approvals::task(&mut tx, *id).await.map_err(fail)?;
                if rules::awaits_decision(task_state(&task)?, step_state) {
                    emails.push(self.email(&mut tx, t, &ticket, &step, &task, &purpose).await?);
                }
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(emails)
    }

    #[activity(name = "approval.escalate_step")]
    pub async fn escalate_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: EscalateStep,
    ) -> Result<StepEscalated, ActivityError> {
        let t = &input.ticket;
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &workflow_ctx(t)).await.map_err(fail)?;
        let ticket = tickets::get(&mut tx, t.ticket_id).await.map_err(fail)?;
        let step = approvals::step(&mut tx, input.step_id).await.map_err(fail)?;
        let resolved = self.resolve(&mut tx, &input.to, &ticket).await.map_err(fail)?;
        let base = approvals::tasks(&mut tx, step.id).await.map_err(fail)?.len() as i32;
        for (i, a) in resolved.into_iter().enumerate() {
            approvals::add_task(&mut tx, t.tenant_id, &step, base + i as i32, a.user, a.on_behalf_of, true)
                .await
                .map_err(fail)?;
        }
        approvals::mark_escalated(&mut tx, step.id).await.map_err(fail)?;
        let escalation: Vec<TaskRow> =
            approvals::tasks(&mut tx, step.id).await.map_err(fail)?.into_iter().filter(|t| t.escalation).collect();
        let ids: Vec<Uuid> = escalation.iter().map(|t| t.id).collect();
        approvals::ask(&mut tx, &ids).await.map_err(fail)?;
        let mut emails = Vec::new();
        for task in approvals::tasks(&mut tx, step.id).await.map_err(fail)? {
            if task.escalation && task_state(&task)? == TaskState::Asked {
                emails.push(self.email(&mut tx, t, &ticket, &step, &task, "escalation").await?);
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(StepEscalated { tasks: task_refs(&escalation), emails })
    }

    #[activity(name = "approval.close")]
    pub async fn close(self: Arc<Self>, _ctx: ActivityContext, input: Close) -> Result<(), ActivityError> {
        let t = &input.ticket;
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &workflow_ctx(t)).await.map_err(fail)?;
        let reason = match &input.outcome {
            Outcome::Approved { reason } | Outcome::Rejected { reason } | Outcome::Cancelled { reason } => reason,
        };
        let step_state = StepState::from(&input.outcome).as_str();
        let mut pending_metric = None;
        match input.step_id {
            Some(step) => {
                approvals::close_step(&mut tx, step, step_state, reason).await.map_err(fail)?;
            }
            None => {
                let state = ApprovalState::from(&input.outcome).as_str();
                let finished = approvals::finish(&mut tx, input.approval_id, state, reason).await.map_err(fail)?;
                if !matches!(input.outcome, Outcome::Cancelled { .. })
                    && let Some(decided) =
                        approvals::last_decision_at(&mut tx, input.approval_id).await.map_err(fail)?
                {
                    pending_metric = Some((decided, tx.now(), finished));
                }
                // any step still open (cancellation) closes with it
                for step in approvals::steps(&mut tx, input.approval_id).await.map_err(fail)? {
                    if step.state.parse::<StepState>().map_err(fail)? == StepState::Open {
                        approvals::close_step(&mut tx, step.id, step_state, reason).await.map_err(fail)?;
                    }
                }
            }
        }
        tx.commit().await.map_err(fail)?;
        if let Some((decided, now, true)) = pending_metric {
            decision_acted_on(decided, now);
        }
        Ok(())
    }

    #[activity(name = "request.apply_outcome")]
    pub async fn apply_outcome(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ApplyOutcome,
    ) -> Result<(), ActivityError> {
        let t = &input.ticket;
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &workflow_ctx(t)).await.map_err(fail)?;
        let ticket = tickets::lock(&mut tx, t.ticket_id).await.map_err(fail)?;
        let route = ApprovalRoute {
            waiting_in: input.waiting_in,
            on_approved: input.on_approved,
            on_rejected: input.on_rejected,
        };
        let now = to_jiff(tx.now());
        // only a ticket still waiting for this approval moves (a retry finds it moved)
        let decided = changes::snapshot(&ticket).map_err(fail)?.after_approval(route, &input.outcome, now);
        let Some(decision) = decided.map_err(fail)? else { return Ok(()) };
        let moved = changes::apply(&mut tx, &t.tenant, &ticket, decision, &Actor::system()).await.map_err(fail)?;
        if input.outcome.is_approved() {
            // the request may go ahead: its item's fulfilment playbook starts with the move
            archer_store::fulfilment::start(&mut tx, &t.tenant, &moved).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(())
    }
}
