//! Creating and changing tickets, and the workflow intents each change records.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use archer_orchestrator::workflows::ticket::{
    self as wf, AssignmentChanged, CommentAdded, CommentAuthor, PriorityChanged, StatusChanged, TicketWorkflowInput,
};
use archer_orchestrator::{Priority, Status, TenantSlug, TicketKind, TicketNumber};
use archer_store::outbox::{self, Intent};
use archer_store::tickets::{self, NewTicket, TicketRow};
use archer_store::{StoreError, TenantTx};

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
    let kind: TicketKind = row.kind.parse().map_err(|e| bad(format!("{e}")))?;
    let number = TicketNumber::new(kind, u32::try_from(row.number).map_err(|e| bad(e.to_string()))?)
        .map_err(|e| bad(e.to_string()))?;
    let status: Status = row.status.parse().map_err(|e| bad(format!("{e}")))?;
    let priority = Priority::new(i64::from(row.priority)).map_err(|e| bad(e.to_string()))?;
    Ok(Parsed { kind, number, status, priority })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
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

/// Creates a ticket and records the intent to start its workflow, in `tx`.
pub async fn create(tx: &mut TenantTx, tenant: &TenantSlug, new: &NewTicket) -> Result<TicketRow, ServiceError> {
    let row = tickets::create(tx, new).await?;
    let p = parse(&row)?;
    let input = TicketWorkflowInput {
        tenant_id: row.tenant_id,
        tenant: tenant.clone(),
        ticket_id: row.id,
        number: p.number,
        status: p.status,
        priority: p.priority,
        assignee_id: row.assignee_id,
        team_id: row.team_id,
        seq: row.event_seq,
        created_at: rfc3339(row.created_at),
    };
    let start = StartTicket { input, title: row.title.clone() };
    outbox::enqueue(
        tx,
        row.tenant_id,
        &wf::workflow_id(tenant, &p.number),
        Intent::Start,
        wf::WORKFLOW_TYPE,
        &serde_json::to_value(&start)?,
    )
    .await?;
    Ok(row)
}

/// What the relay needs to start a ticket workflow: its input and the memo's title.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StartTicket {
    pub input: TicketWorkflowInput,
    pub title: String,
}

/// A change the workflow hears about.
pub enum Event {
    Status { from: Status, to: Status },
    Priority { from: Priority, to: Priority, reason: Option<String> },
    Assignment { assignee_id: Option<Uuid>, team_id: Option<Uuid> },
}

/// Saves `new` (a modified copy of `old`, locked in `tx`) and records one signal per event.
pub async fn save(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    old: &TicketRow,
    mut new: TicketRow,
    events: Vec<Event>,
    actor_id: Uuid,
) -> Result<TicketRow, ServiceError> {
    new.event_seq = old.event_seq + events.len() as i64;
    let saved = tickets::save(tx, &new).await?;
    let p = parse(&saved)?;
    let workflow_id = wf::workflow_id(tenant, &p.number);
    let at = rfc3339(saved.updated_at);
    for (i, event) in events.into_iter().enumerate() {
        let seq = old.event_seq + 1 + i as i64;
        let actor_id = Some(actor_id);
        let at = at.clone();
        let (name, payload) = match event {
            Event::Status { from, to } => {
                ("status_changed", serde_json::to_value(StatusChanged { seq, at, actor_id, from, to })?)
            }
            Event::Priority { from, to, reason } => {
                ("priority_changed", serde_json::to_value(PriorityChanged { seq, at, actor_id, from, to, reason })?)
            }
            Event::Assignment { assignee_id, team_id } => (
                "assignment_changed",
                serde_json::to_value(AssignmentChanged { seq, at, actor_id, assignee_id, team_id })?,
            ),
        };
        outbox::enqueue(tx, saved.tenant_id, &workflow_id, Intent::Signal, name, &payload).await?;
    }
    Ok(saved)
}

/// Adds a comment; a public one is signalled to the workflow (SLA clocks react to replies).
pub async fn comment(
    tx: &mut TenantTx,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    author_id: Uuid,
    author: CommentAuthor,
    body: &str,
    internal: bool,
) -> Result<tickets::Comment, ServiceError> {
    let c = tickets::add_comment(tx, ticket.tenant_id, ticket.id, author_id, body, internal).await?;
    if !internal {
        let seq = tickets::next_event_seq(tx, ticket.id).await?;
        let p = parse(ticket)?;
        let payload = CommentAdded { seq, at: rfc3339(c.created_at), comment_id: c.id, author_id, author };
        outbox::enqueue(
            tx,
            ticket.tenant_id,
            &wf::workflow_id(tenant, &p.number),
            Intent::Signal,
            "comment_added",
            &serde_json::to_value(payload)?,
        )
        .await?;
    }
    Ok(c)
}
