//! A ticket's SLA as the API shows it: the projection the ticket workflow records, brought up
//! to the moment of the read (and caught up from the ticket's history when the workflow has not
//! yet applied its latest change).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::sla::engine::{ClockReport, SlaAssignment, SlaEngine};
use archer_store::{TenantTx, sla};

use crate::error::{ApiError, ApiResult};

fn ts(t: OffsetDateTime) -> Timestamp {
    archer_store::changes::to_jiff(t)
}

#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct PolicyRef {
    id: Uuid,
    name: String,
    version: i32,
    calendar_id: Option<Uuid>,
    calendar_version: Option<i32>,
    time_zone: String,
}

impl From<&SlaAssignment> for PolicyRef {
    fn from(a: &SlaAssignment) -> Self {
        PolicyRef {
            id: a.policy_id,
            name: a.policy_name.clone(),
            version: a.policy_version,
            calendar_id: a.calendar_id,
            calendar_version: a.calendar_version,
            time_zone: a.calendar.time_zone.clone(),
        }
    }
}

/// A ticket's SLA as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct TicketSla {
    pub policy: PolicyRef,
    /// The worst state across the clocks.
    pub state: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_due_at: Option<Timestamp>,
    /// When these figures were computed.
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// The ticket's workflow has not yet applied its latest change (the clocks are from just
    /// before; they catch up within moments).
    pub stale: bool,
    pub clocks: Vec<ClockReport>,
}

/// The projection brought up to `now`: running clocks' elapsed and remaining business time
/// move on with the calendar.
pub fn view(row: &sla::TicketSlaRow, now: Timestamp) -> ApiResult<TicketSla> {
    let (assignment, clocks) = row.clocks_as_of(now).map_err(ApiError::internal)?;
    Ok(TicketSla {
        policy: PolicyRef::from(&assignment),
        state: row.state.clone(),
        next_due_at: row.next_due_at.map(ts),
        as_of: now,
        stale: false,
        clocks,
    })
}

/// Histories longer than this are not replayed on reads; the projection is shown as it is
/// (marked stale) until the workflow catches up, which it does within moments.
const CATCH_UP_LIMIT: i64 = 500;

/// Brings a stale projection up to date by replaying the ticket's history (not stored).
/// Returns whether it could.
pub async fn catch_up(
    tx: &mut TenantTx,
    row: &mut sla::TicketSlaRow,
    ticket: &archer_store::tickets::TicketRow,
) -> ApiResult<bool> {
    let assignment: SlaAssignment = serde_json::from_value(row.assignment.clone()).map_err(ApiError::internal)?;
    let history = archer_store::audit::ticket_history(tx, ticket.id, CATCH_UP_LIMIT + 1).await?;
    if history.len() as i64 > CATCH_UP_LIMIT {
        return Ok(false);
    }
    let events = archer_store::changes::sla_events_from_history(&history, ticket.requester_id);
    // the history may hold a change committed after this transaction began: never replay to
    // an instant before the last event
    let now = events.iter().map(|e| e.at).fold(archer_store::changes::to_jiff(tx.now()), Timestamp::max);
    let (engine, _) = SlaEngine::replay(assignment, &events, now);
    let summary = engine.summary(now);
    row.clocks = serde_json::to_value(engine.report(now)).map_err(ApiError::internal)?;
    row.state = summary.state;
    row.next_due_at = summary.next_due_at.map(archer_store::changes::to_time);
    row.event_seq = ticket.event_seq;
    Ok(true)
}
