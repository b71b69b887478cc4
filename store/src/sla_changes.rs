//! Rebuilding a ticket's clocks, as the domain decides it (`sla::rebuild`): the ticket's SLA
//! row, the audit entry with the clocks before and after, and the signal that hands the rebuilt
//! clocks to the ticket's workflow (its outbox row), all in the caller's transaction. Every
//! writer (the API today, playbooks next) rebuilds through here; no other code records that
//! signal.

use jiff::Timestamp;

use archer_orchestrator::TenantSlug;
use archer_orchestrator::sla::engine::{ClockReport, SlaAssignment};
use archer_orchestrator::sla::rebuild::{self, PolicyChoice, Refusal, Request};
use archer_orchestrator::workflows::ticket::{self as wf, SlaRebuilt};

use crate::changes::{self, CorruptRow, ServiceError, to_time};
use crate::outbox;
use crate::tickets::TicketRow;
use crate::{AuditContext, StoreError, TenantTx, audit, sla};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The domain refused the rebuild (closed ticket, no policy to rebuild under).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The chosen policy, or the named version of it, does not exist in the tenant.
    #[error("no such policy version")]
    UnknownPolicy,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for RebuildError {
    fn from(e: StoreError) -> Self {
        RebuildError::Service(e.into())
    }
}

impl From<CorruptRow> for RebuildError {
    fn from(e: CorruptRow) -> Self {
        RebuildError::Service(e.into())
    }
}

impl From<serde_json::Error> for RebuildError {
    fn from(e: serde_json::Error) -> Self {
        RebuildError::Service(e.into())
    }
}

/// A rebuild as it was recorded: the policy the clocks now run under, and the clocks before
/// (as they stood at the rebuild; none when no policy was pinned) and after.
#[derive(Debug)]
pub struct Rebuilt {
    pub assignment: SlaAssignment,
    pub before: Vec<ClockReport>,
    pub after: Vec<ClockReport>,
}

/// Rebuilds the clocks of `ticket` (locked by the caller in `tx`) from its audited history, as
/// of `now`, under the policy version `request` names or the one pinned to it, with that
/// policy's calendar as it is now. `ctx` is who did it, for the audit entry.
pub async fn rebuild(
    tx: &mut TenantTx,
    ctx: &AuditContext,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    request: Request,
    now: Timestamp,
) -> Result<Rebuilt, RebuildError> {
    let parsed = changes::parse(ticket)?;
    let current = sla::ticket_sla(tx, ticket.id).await?;
    let choice = rebuild::choose(parsed.status, current.as_ref().map(|c| c.policy_id), request)?;
    let assignment = assignment_of(tx, choice).await?;
    let history = audit::ticket_history(tx, ticket.id, i64::MAX).await?;
    let events = changes::sla_events_from_history(&history, ticket.requester_id);
    let before = match &current {
        Some(row) => row.clocks_as_of(now)?.1,
        None => Vec::new(),
    };
    let rebuilt = rebuild::rebuild(assignment, events, now);
    record(tx, ctx, ticket, &before, &rebuilt).await?;
    let signal = SlaRebuilt {
        seq: ticket.event_seq,
        at: now.to_string(),
        assignment: rebuilt.assignment.clone(),
        events: rebuilt.events,
    };
    outbox::signal(tx, ticket.tenant_id, &wf::workflow_id(tenant, &parsed.number), &signal).await?;
    Ok(Rebuilt { assignment: rebuilt.assignment, before, after: rebuilt.clocks })
}

/// The chosen policy version, compiled with its calendar as it is now.
async fn assignment_of(tx: &mut TenantTx, choice: PolicyChoice) -> Result<SlaAssignment, RebuildError> {
    let policy = match choice {
        PolicyChoice::Current(id) => sla::policy(tx, id).await,
        PolicyChoice::Version(id, version) => sla::policy_version(tx, id, version).await,
    }
    .map_err(|e| match e {
        StoreError::NotFound => RebuildError::UnknownPolicy,
        other => other.into(),
    })?;
    Ok(sla::assignment_for(tx, &policy).await?)
}

/// Pins the rebuilt clocks to the ticket and audits the rebuild with the clocks before and after.
async fn record(
    tx: &mut TenantTx,
    ctx: &AuditContext,
    ticket: &TicketRow,
    before: &[ClockReport],
    r: &rebuild::Rebuilt,
) -> Result<(), RebuildError> {
    let a = &r.assignment;
    sla::assign(
        tx,
        sla::NewTicketSla {
            tenant_id: ticket.tenant_id,
            ticket_id: ticket.id,
            policy_id: a.policy_id,
            policy_version: a.policy_version,
            calendar_id: a.calendar_id,
            calendar_version: a.calendar_version,
            assignment: &serde_json::to_value(a)?,
            clocks: &serde_json::to_value(&r.clocks)?,
            state: &r.summary.state,
            next_due_at: r.summary.next_due_at.map(to_time),
        },
    )
    .await?;
    audit::record_ticket_change(
        tx,
        ctx,
        audit::Event {
            tenant_id: ticket.tenant_id,
            action: "sla.rebuilt",
            entity_type: "ticket_sla",
            entity_id: Some(ticket.id.to_string()),
            detail: Some(r.describe()),
        },
        ticket.id,
        &serde_json::to_value(before)?,
        &serde_json::to_value(&r.clocks)?,
    )
    .await?;
    Ok(())
}
