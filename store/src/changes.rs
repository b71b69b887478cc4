//! Creating and changing tickets together with the workflow intents each change records (the
//! outbox rows), in the caller's transaction: the one write path for tickets. The domain's
//! ticket commands (`archer_orchestrator::commands::ticket`) decide a change; [`apply`] and
//! [`open`] persist the decision. The API, the workers (approval outcomes, escalations) and the
//! demo seed all write tickets through here, so every change reaches the ticket's workflow the
//! same way; no other code writes a ticket's outbox rows.
//!
//! Playbooks hook in here too: a create or an applied change fires the tenant's
//! `ticket_created` / `ticket_changed` playbooks (except for changes a playbook run makes, see
//! `playbooks::RUN_REQUEST_PREFIX`), and every saved change or comment is signalled to the runs
//! watching the ticket (`playbooks::notify_watchers`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use archer_orchestrator::commands::ticket::{Actor, Decision, FollowUp, Ticket, Voice};
use archer_orchestrator::sla::engine::SlaEngine;
use archer_orchestrator::sla::policy::MatchInput;
use archer_orchestrator::workflows::ticket::{
    self as wf, AssignmentChanged, CommentAdded, CommentAuthor, PriorityChanged, StatusChanged, TicketWorkflowInput,
};
use archer_orchestrator::{Impact, Priority, Status, TenantSlug, TicketKind, TicketNumber, Urgency};

use crate::approval_changes;
use crate::outbox;
use crate::playbooks::{self, TicketTrigger};
use crate::sla;
use crate::tickets::{self, NewTicket, TicketRow};
use crate::{StoreError, TenantTx};

/// Reads the domain view of a stored ticket. The database's checks make these infallible
/// for rows it accepted; a row that fails them is corrupt and reported as such.
pub struct Parsed {
    pub kind: TicketKind,
    pub number: TicketNumber,
    pub status: Status,
    pub priority: Priority,
}

#[derive(Debug, thiserror::Error)]
#[error("ticket {id} holds a value the domain does not know: {what}")]
pub struct CorruptRow {
    pub id: Uuid,
    pub what: String,
}

pub fn parse(row: &TicketRow) -> Result<Parsed, CorruptRow> {
    let bad = |what: String| CorruptRow { id: row.id, what };
    let number = TicketNumber::new(row.kind, u32::try_from(row.number).map_err(|e| bad(e.to_string()))?)
        .map_err(|e| bad(e.to_string()))?;
    let priority = Priority::new(i64::from(row.priority)).map_err(|e| bad(e.to_string()))?;
    Ok(Parsed { kind: row.kind, number, status: row.status, priority })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The database's instants as the SLA engine's.
pub fn to_jiff(t: OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

pub fn to_time(t: jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Creates a ticket, pins the first matching SLA policy to it with its initial clocks, and
/// records the intent to start its workflow, all in `tx`.
pub async fn create(tx: &mut TenantTx, tenant: &TenantSlug, new: &NewTicket) -> Result<TicketRow, ServiceError> {
    Ok(create_with_sla(tx, tenant, new).await?.0)
}

/// [`create`], also answering the SLA row it pinned (what a reply shows, without reading it
/// back).
///
/// Everything a create reads (the tenant's SLA policies, and whether it has `ticket_created`
/// playbooks: one round trip, `sla::resolve_for_create`; the playbooks themselves only when it
/// has) is read first, and every write is then one statement (`tickets::create`): that statement takes
/// the tenant's number counter for the kind, which every other create of the kind waits for
/// until this transaction commits. The SLA clocks start at the transaction's instant, which is
/// the ticket's `created_at` (`archer_now()`).
pub async fn create_with_sla(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    new: &NewTicket,
) -> Result<(TicketRow, Option<sla::TicketSlaRow>), ServiceError> {
    let corrupt = |what: String| CorruptRow { id: new.id, what };
    let priority = Priority::new(i64::from(new.priority)).map_err(|e| corrupt(format!("priority: {e}")))?;
    let matching = MatchInput { kind: new.kind, priority, category: new.category.as_deref(), team_id: new.team_id };
    let created = to_jiff(tx.now());
    let (resolved, created_playbooks) = sla::resolve_for_create(tx, &matching).await?;
    let resolved = resolved.map(|r| r.assignment);
    // (the playbooks' triggers are a second read only for a tenant that has such a playbook)
    let triggered = if created_playbooks { playbooks::created_triggers(tx).await? } else { Vec::new() };
    let engine = resolved.as_ref().map(|a| SlaEngine::start(a.clone(), created, new.status, priority));
    let summary = engine.as_ref().map(|e| e.summary(created));
    let (assignment, clocks) = match (&resolved, &engine) {
        (Some(a), Some(e)) => (serde_json::to_value(a)?, serde_json::to_value(e.report(created))?),
        _ => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let pin = match (&resolved, &summary) {
        (Some(a), Some(summary)) => Some(sla::NewTicketSla {
            tenant_id: new.tenant_id,
            ticket_id: new.id,
            policy_id: a.policy_id,
            policy_version: a.policy_version,
            calendar_id: a.calendar_id,
            calendar_version: a.calendar_version,
            assignment: &assignment,
            clocks: &clocks,
            state: &summary.state,
            next_due_at: summary.next_due_at.map(to_time),
        }),
        _ => None,
    };
    // the workflow's id and input as for number 1; the statement writes the real number
    let placeholder = TicketNumber::new(new.kind, 1).map_err(|e| corrupt(e.to_string()))?;
    let start = StartTicket {
        input: TicketWorkflowInput {
            tenant_id: new.tenant_id,
            tenant: tenant.clone(),
            ticket_id: new.id,
            number: placeholder,
            status: new.status,
            priority,
            assignee_id: new.assignee_id,
            team_id: new.team_id,
            seq: 0,
            created_at: rfc3339(tx.now()),
            sla: resolved,
            carried: None,
        },
        title: new.title.clone(),
    };
    let workflow_id = wf::workflow_id(tenant, &placeholder);
    let opening = tickets::Opening {
        sla: pin.as_ref(),
        workflow_prefix: workflow_id.strip_suffix(&placeholder.to_string()).unwrap_or(&workflow_id),
        workflow_type: wf::WORKFLOW_TYPE,
        payload: &serde_json::to_value(&start)?,
    };
    let row = tickets::create(tx, new, &opening).await?;
    let p = parse(&row)?;
    debug_assert_eq!(
        (row.event_seq, p.status, p.priority, row.created_at),
        (0, new.status, priority, tx.now()),
        "the workflow's input describes the ticket as stored"
    );
    playbooks::fire_created(tx, tenant, &row, &triggered).await?;
    // the pin as stored: its sequences start at 0 and it was written at the ticket's instant
    let pinned = pin.map(|p| sla::TicketSlaRow {
        ticket_id: p.ticket_id,
        policy_id: p.policy_id,
        policy_version: p.policy_version,
        calendar_id: p.calendar_id,
        calendar_version: p.calendar_version,
        assignment: assignment.clone(),
        clocks: clocks.clone(),
        state: p.state.to_owned(),
        next_due_at: p.next_due_at,
        seq: 0,
        event_seq: 0,
        updated_at: row.created_at,
    });
    Ok((row, pinned))
}

/// What the relay needs to start a ticket workflow: its input and the memo's title.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StartTicket {
    pub input: TicketWorkflowInput,
    pub title: String,
}

/// A change the workflow hears about (decided by the domain's ticket commands).
pub use archer_orchestrator::commands::ticket::Event;

/// The domain's view of a stored ticket, for its commands to decide on.
pub fn snapshot(row: &TicketRow) -> Result<Ticket, CorruptRow> {
    let p = parse(row)?;
    let bad = |what: String| CorruptRow { id: row.id, what };
    Ok(Ticket {
        kind: p.kind,
        status: p.status,
        title: row.title.clone(),
        description: row.description.clone(),
        requester_id: row.requester_id,
        assignee_id: row.assignee_id,
        team_id: row.team_id,
        impact: Impact::new(i64::from(row.impact)).map_err(|e| bad(e.to_string()))?,
        urgency: Urgency::new(i64::from(row.urgency)).map_err(|e| bad(e.to_string()))?,
        priority: p.priority,
        priority_reason: row.priority_reason.clone(),
        category: row.category.clone(),
        tags: row.tags.clone(),
        change_type: text_enum(row.id, row.change_type.as_deref())?,
        risk: text_enum(row.id, row.risk.as_deref())?,
        resolved_at: row.resolved_at.map(to_jiff),
        closed_at: row.closed_at.map(to_jiff),
    })
}

/// A stored name of a domain enum (`change_type`, `risk`) read by its serde name.
fn text_enum<T: serde::de::DeserializeOwned>(id: Uuid, v: Option<&str>) -> Result<Option<T>, CorruptRow> {
    v.map(|t| serde_json::from_value(serde_json::Value::from(t)))
        .transpose()
        .map_err(|e| CorruptRow { id, what: e.to_string() })
}

/// `row` with the fields a command decides set as `t` has them.
fn with_decided(row: &TicketRow, t: &Ticket) -> TicketRow {
    TicketRow {
        title: t.title.clone(),
        description: t.description.clone(),
        assignee_id: t.assignee_id,
        team_id: t.team_id,
        impact: i16::from(t.impact.get()),
        urgency: i16::from(t.urgency.get()),
        priority: i16::from(t.priority.get()),
        priority_reason: t.priority_reason.clone(),
        category: t.category.clone(),
        status: t.status,
        tags: t.tags.clone(),
        resolved_at: t.resolved_at.map(to_time),
        closed_at: t.closed_at.map(to_time),
        change_type: t.change_type.map(|c| c.as_str().to_owned()),
        risk: t.risk.map(|r| r.as_str().to_owned()),
        ..row.clone()
    }
}

/// Opens the ticket a command decided (`NewTicket::open`), as [`create`] does.
pub async fn open(tx: &mut TenantTx, tenant: &TenantSlug, t: &Ticket) -> Result<TicketRow, ServiceError> {
    create(tx, tenant, &new_row(tx.tenant_id(), t, None)).await
}

/// [`open`], also answering the SLA row it pinned (see [`create_with_sla`]).
pub async fn open_with_sla(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    t: &Ticket,
) -> Result<(TicketRow, Option<sla::TicketSlaRow>), ServiceError> {
    create_with_sla(tx, tenant, &new_row(tx.tenant_id(), t, None)).await
}

/// The answers a catalog request keeps: its item, the version submitted against, the fields.
pub struct CatalogAnswers<'a> {
    pub item_id: Uuid,
    pub item_version: i32,
    pub fields: &'a serde_json::Value,
}

/// Opens a catalog request a command decided (`NewTicket::catalog_request`) with its answers.
pub async fn open_request(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    t: &Ticket,
    answers: CatalogAnswers<'_>,
) -> Result<TicketRow, ServiceError> {
    let row = create(tx, tenant, &new_row(tx.tenant_id(), t, Some(answers))).await?;
    // no approval to wait for: the item's fulfilment playbook starts with the request
    if t.status != Status::PendingApproval {
        crate::fulfilment::start(tx, tenant, &row).await?;
    }
    Ok(row)
}

fn new_row(tenant_id: Uuid, t: &Ticket, answers: Option<CatalogAnswers<'_>>) -> NewTicket {
    NewTicket {
        id: Uuid::now_v7(),
        tenant_id,
        kind: t.kind,
        title: t.title.clone(),
        description: t.description.clone(),
        requester_id: t.requester_id,
        assignee_id: t.assignee_id,
        team_id: t.team_id,
        impact: i16::from(t.impact.get()),
        urgency: i16::from(t.urgency.get()),
        priority: i16::from(t.priority.get()),
        priority_reason: t.priority_reason.clone(),
        category: t.category.clone(),
        status: t.status,
        tags: t.tags.clone(),
        change_type: t.change_type.map(|c| c.as_str().to_owned()),
        risk: t.risk.map(|r| r.as_str().to_owned()),
        catalog_item_id: answers.as_ref().map(|a| a.item_id),
        catalog_item_version: answers.as_ref().map(|a| a.item_version),
        request_fields: answers.map(|a| a.fields.clone()),
    }
}

/// Persists what a ticket command decided about `old` (read locked in `tx`): the saved row
/// with one signal per event, then the follow-ups in order (approvals cancelled or started
/// through `approval_changes`, Archer's notes). A decision that changed nothing writes nothing.
pub async fn apply(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    old: &TicketRow,
    decision: Decision,
    actor: &Actor,
) -> Result<TicketRow, ServiceError> {
    if !decision.changed {
        return Ok(old.clone());
    }
    let new = with_decided(old, &decision.ticket);
    let row = save(tx, tenant, old, new, decision.events, actor.user_id()).await?;
    for follow_up in decision.follow_ups {
        match follow_up {
            FollowUp::CancelPendingApproval { reason } => approval_changes::cancel_pending(tx, row.id, &reason).await?,
            FollowUp::StartChangeApproval(change_type) => {
                approval_changes::start_change(tx, &row, tenant, change_type).await?;
            }
            FollowUp::Note(body) => {
                note(tx, &row, &body, false).await?;
            }
        }
    }
    playbooks::fire_ticket_triggers(tx, tenant, &row, TicketTrigger::Changed { before: old }).await?;
    Ok(row)
}

/// Saves `new` (a modified copy of `old`, locked in `tx`) and records one signal per event.
pub async fn save(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    old: &TicketRow,
    mut new: TicketRow,
    events: Vec<Event>,
    actor_id: Option<Uuid>,
) -> Result<TicketRow, ServiceError> {
    new.event_seq = old.event_seq + events.len() as i64;
    let saved = tickets::save(tx, &new).await?;
    let p = parse(&saved)?;
    let workflow_id = wf::workflow_id(tenant, &p.number);
    let at = rfc3339(saved.updated_at);
    for (i, event) in events.into_iter().enumerate() {
        let seq = old.event_seq + 1 + i as i64;
        let at = at.clone();
        let tenant_id = saved.tenant_id;
        match event {
            Event::Status { from, to } => {
                outbox::signal(tx, tenant_id, &workflow_id, &StatusChanged { seq, at, actor_id, from, to }).await?
            }
            Event::Priority { from, to, reason } => {
                let signal = PriorityChanged { seq, at, actor_id, from, to, reason };
                outbox::signal(tx, tenant_id, &workflow_id, &signal).await?
            }
            Event::Assignment { assignee_id, team_id } => {
                let signal = AssignmentChanged { seq, at, actor_id, assignee_id, team_id };
                outbox::signal(tx, tenant_id, &workflow_id, &signal).await?
            }
        };
    }
    playbooks::notify_watchers(tx, &saved).await?;
    Ok(saved)
}

/// Adds a comment by `author_id` speaking for `voice` (as `Ticket::comment` decided); a public
/// one is signalled to the workflow (SLA clocks react to replies).
pub async fn comment(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    author_id: Uuid,
    voice: Voice,
    body: &str,
    internal: bool,
) -> Result<tickets::Comment, ServiceError> {
    let author = match voice {
        Voice::Customer => CommentAuthor::Customer,
        Voice::Agent => CommentAuthor::Agent,
    };
    let c = tickets::add_comment(tx, ticket.tenant_id, ticket.id, Some(author_id), body, internal).await?;
    if !internal {
        let seq = tickets::next_event_seq(tx, ticket.id).await?;
        let p = parse(ticket)?;
        let payload = CommentAdded { seq, at: rfc3339(c.created_at), comment_id: c.id, author_id, author };
        outbox::signal(tx, ticket.tenant_id, &wf::workflow_id(tenant, &p.number), &payload).await?;
    }
    playbooks::notify_watchers(tx, ticket).await?;
    Ok(c)
}

/// Adds Archer's own comment (an approval's outcome, a playbook step's note): no author, so it
/// is nobody's reply and the SLA clocks, which count replies (first response, a customer's
/// answer), are not signalled; ticket fields are unchanged, so watchers are not either.
pub async fn note(
    tx: &mut TenantTx,
    ticket: &TicketRow,
    body: &str,
    internal: bool,
) -> Result<tickets::Comment, ServiceError> {
    Ok(tickets::add_comment(tx, ticket.tenant_id, ticket.id, None, body, internal).await?)
}

/// The ticket events the SLA clocks saw, reconstructed from the audit log (for rebuilds): the
/// creation, each status, priority and assignment change, and each public comment.
pub fn sla_events_from_history(
    history: &[crate::audit::AuditEntry],
    requester_id: Uuid,
) -> Vec<archer_orchestrator::sla::engine::SlaEvent> {
    use archer_orchestrator::sla::engine::{SlaEvent, status_triggers};
    use archer_orchestrator::sla::policy::Trigger;
    let mut out: Vec<SlaEvent> = Vec::new();
    let (mut status, mut priority) = (Status::New, Priority::P4);
    let field = |v: &Option<serde_json::Value>, k: &str| v.as_ref().and_then(|v| v.get(k)).cloned();
    let status_of = |v: Option<serde_json::Value>| v.and_then(|s| s.as_str().and_then(|s| s.parse::<Status>().ok()));
    let priority_of = |v: Option<serde_json::Value>| v.and_then(|p| p.as_i64()).and_then(|p| Priority::new(p).ok());
    for row in history {
        let at = to_jiff(row.at);
        match row.action.as_str() {
            "tickets.insert" => {
                status = status_of(field(&row.after, "status")).unwrap_or(Status::New);
                priority = priority_of(field(&row.after, "priority")).unwrap_or(priority);
                let created = field(&row.after, "created_at")
                    .and_then(|c| c.as_str().and_then(|c| c.parse::<jiff::Timestamp>().ok()))
                    .unwrap_or(at);
                out.push(SlaEvent { at: created, triggers: vec![Trigger::Created], status, priority });
            }
            "tickets.update" => {
                let mut triggers = Vec::new();
                let mut changed = false;
                if let Some(to) = status_of(field(&row.after, "status")) {
                    triggers.extend(status_triggers(status, to));
                    status = to;
                    changed = true;
                }
                if let Some(p) = priority_of(field(&row.after, "priority")) {
                    triggers.push(Trigger::PriorityChanged);
                    priority = p;
                    changed = true;
                }
                if field(&row.after, "assignee_id").is_some() || field(&row.after, "team_id").is_some() {
                    triggers.push(Trigger::Assigned);
                    changed = true;
                }
                if changed {
                    out.push(SlaEvent { at, triggers, status, priority });
                }
            }
            "ticket_comments.insert" if field(&row.after, "internal").and_then(|v| v.as_bool()) == Some(false) => {
                let author =
                    field(&row.after, "author_id").and_then(|a| a.as_str().and_then(|a| Uuid::parse_str(a).ok()));
                let trigger = if author == Some(requester_id) { Trigger::CustomerReply } else { Trigger::AgentReply };
                out.push(SlaEvent { at, triggers: vec![trigger], status, priority });
            }
            _ => {}
        }
    }
    out
}
