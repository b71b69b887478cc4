//! Business calendars, SLA policies (both versioned), each ticket's SLA assignment and clock
//! projection, recorded SLA facts and escalations.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::sla::calendar::CalendarSpec;
use archer_orchestrator::sla::engine::{ClockReport, SlaAssignment, clocks_as_of};
use archer_orchestrator::sla::policy::{MatchInput, PolicySpec};

use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct CalendarRow {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub spec: serde_json::Value,
    pub archived: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub async fn create_calendar(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: &str,
    spec: &serde_json::Value,
    by: Option<Uuid>,
) -> Result<CalendarRow> {
    sqlx::query!("INSERT INTO business_calendars (id, tenant_id, name) VALUES ($1, $2, $3)", id, tenant_id, name)
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "INSERT INTO business_calendar_versions (id, tenant_id, calendar_id, version, spec, created_by)
         VALUES ($1, $2, $3, 1, $4, $5)",
        Uuid::now_v7(),
        tenant_id,
        id,
        spec,
        by
    )
    .execute(&mut *conn)
    .await?;
    calendar(conn, id).await
}

pub async fn calendar(conn: &mut PgConnection, id: Uuid) -> Result<CalendarRow> {
    sqlx::query_as!(
        CalendarRow,
        r#"SELECT c.id, c.name, c.current_version AS version, v.spec, c.archived, c.created_at, c.updated_at
             FROM business_calendars c
             JOIN business_calendar_versions v ON v.calendar_id = c.id AND v.version = c.current_version
            WHERE c.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn calendars(conn: &mut PgConnection) -> Result<Vec<CalendarRow>> {
    Ok(sqlx::query_as!(
        CalendarRow,
        r#"SELECT c.id, c.name, c.current_version AS version, v.spec, c.archived, c.created_at, c.updated_at
             FROM business_calendars c
             JOIN business_calendar_versions v ON v.calendar_id = c.id AND v.version = c.current_version
            WHERE NOT c.archived
            ORDER BY lower(c.name)"#
    )
    .fetch_all(conn)
    .await?)
}

/// Writes a new version of a calendar (versions are immutable) and makes it current.
pub async fn update_calendar(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    spec: Option<&serde_json::Value>,
    by: Option<Uuid>,
) -> Result<CalendarRow> {
    let current = calendar(conn, id).await?;
    if current.archived {
        return Err(StoreError::NotFound);
    }
    let version = if let Some(spec) = spec {
        let v = current.version + 1;
        sqlx::query!(
            "INSERT INTO business_calendar_versions (id, tenant_id, calendar_id, version, spec, created_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
            Uuid::now_v7(),
            tenant_id,
            id,
            v,
            spec,
            by
        )
        .execute(&mut *conn)
        .await?;
        v
    } else {
        current.version
    };
    sqlx::query!(
        "UPDATE business_calendars SET name = COALESCE($2, name), current_version = $3, updated_at = archer_now() WHERE id = $1",
        id,
        name,
        version
    )
    .execute(&mut *conn)
    .await?;
    calendar(conn, id).await
}

pub async fn archive_calendar(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "UPDATE business_calendars SET archived = true, updated_at = archer_now() WHERE id = $1 AND NOT archived",
        id
    )
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Active policies that use a calendar.
pub async fn policies_using_calendar(conn: &mut PgConnection, calendar_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT p.name FROM sla_policies p JOIN sla_policy_versions v ON v.policy_id = p.id AND v.version = p.current_version
          WHERE p.active AND v.calendar_id = $1 ORDER BY p.position",
        calendar_id
    )
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub active: bool,
    pub version: i32,
    pub spec: serde_json::Value,
    pub calendar_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[allow(clippy::too_many_arguments)]
pub async fn create_policy(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: &str,
    position: Option<i32>,
    spec: &serde_json::Value,
    calendar_id: Option<Uuid>,
    by: Option<Uuid>,
) -> Result<PolicyRow> {
    let position = match position {
        Some(p) => p,
        None => {
            sqlx::query_scalar!(r#"SELECT COALESCE(max(position), 0) + 10 AS "p!" FROM sla_policies WHERE active"#)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    sqlx::query!(
        "INSERT INTO sla_policies (id, tenant_id, name, position) VALUES ($1, $2, $3, $4)",
        id,
        tenant_id,
        name,
        position
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO sla_policy_versions (id, tenant_id, policy_id, version, spec, calendar_id, created_by)
         VALUES ($1, $2, $3, 1, $4, $5, $6)",
        Uuid::now_v7(),
        tenant_id,
        id,
        spec,
        calendar_id,
        by
    )
    .execute(&mut *conn)
    .await?;
    policy(conn, id).await
}

pub async fn policy(conn: &mut PgConnection, id: Uuid) -> Result<PolicyRow> {
    sqlx::query_as!(
        PolicyRow,
        r#"SELECT p.id, p.name, p.position, p.active, p.current_version AS version, v.spec, v.calendar_id,
                  p.created_at, p.updated_at
             FROM sla_policies p JOIN sla_policy_versions v ON v.policy_id = p.id AND v.version = p.current_version
            WHERE p.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// One version of a policy (for rebuilds against an older or newer version).
pub async fn policy_version(conn: &mut PgConnection, id: Uuid, version: i32) -> Result<PolicyRow> {
    sqlx::query_as!(
        PolicyRow,
        r#"SELECT p.id, p.name, p.position, p.active, v.version, v.spec, v.calendar_id, p.created_at, p.updated_at
             FROM sla_policies p JOIN sla_policy_versions v ON v.policy_id = p.id AND v.version = $2
            WHERE p.id = $1"#,
        id,
        version
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Active policies in matching order.
pub async fn policies(conn: &mut PgConnection) -> Result<Vec<PolicyRow>> {
    Ok(sqlx::query_as!(
        PolicyRow,
        r#"SELECT p.id, p.name, p.position, p.active, p.current_version AS version, v.spec, v.calendar_id,
                  p.created_at, p.updated_at
             FROM sla_policies p JOIN sla_policy_versions v ON v.policy_id = p.id AND v.version = p.current_version
            WHERE p.active
            ORDER BY p.position, p.created_at"#
    )
    .fetch_all(conn)
    .await?)
}

#[allow(clippy::too_many_arguments)]
pub async fn update_policy(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    position: Option<i32>,
    spec: Option<(&serde_json::Value, Option<Uuid>)>,
    by: Option<Uuid>,
) -> Result<PolicyRow> {
    let current = policy(conn, id).await?;
    if !current.active {
        return Err(StoreError::NotFound);
    }
    let version = if let Some((spec, calendar_id)) = spec {
        let v = current.version + 1;
        sqlx::query!(
            "INSERT INTO sla_policy_versions (id, tenant_id, policy_id, version, spec, calendar_id, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            Uuid::now_v7(),
            tenant_id,
            id,
            v,
            spec,
            calendar_id,
            by
        )
        .execute(&mut *conn)
        .await?;
        v
    } else {
        current.version
    };
    sqlx::query!(
        "UPDATE sla_policies SET name = COALESCE($2, name), position = COALESCE($3, position), current_version = $4,
                updated_at = archer_now()
          WHERE id = $1",
        id,
        name,
        position,
        version
    )
    .execute(&mut *conn)
    .await?;
    policy(conn, id).await
}

pub async fn deactivate_policy(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let done =
        sqlx::query!("UPDATE sla_policies SET active = false, updated_at = archer_now() WHERE id = $1 AND active", id)
            .execute(conn)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct TicketSlaRow {
    pub ticket_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: i32,
    pub calendar_id: Option<Uuid>,
    pub calendar_version: Option<i32>,
    pub assignment: serde_json::Value,
    pub clocks: serde_json::Value,
    pub state: String,
    pub next_due_at: Option<OffsetDateTime>,
    pub seq: i64,
    pub event_seq: i64,
    pub updated_at: OffsetDateTime,
}

impl TicketSlaRow {
    /// The policy and calendar pinned to the ticket, and its recorded clocks brought up to `now`
    /// (`engine::clocks_as_of`): what a read or a rebuild shows as the ticket's clocks.
    pub fn clocks_as_of(&self, now: jiff::Timestamp) -> serde_json::Result<(SlaAssignment, Vec<ClockReport>)> {
        let assignment: SlaAssignment = serde_json::from_value(self.assignment.clone())?;
        let clocks: Vec<ClockReport> = serde_json::from_value(self.clocks.clone())?;
        let clocks = clocks_as_of(&assignment, clocks, now);
        Ok((assignment, clocks))
    }
}

pub struct NewTicketSla<'a> {
    pub tenant_id: Uuid,
    pub ticket_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: i32,
    pub calendar_id: Option<Uuid>,
    pub calendar_version: Option<i32>,
    pub assignment: &'a serde_json::Value,
    pub clocks: &'a serde_json::Value,
    pub state: &'a str,
    pub next_due_at: Option<OffsetDateTime>,
}

/// Pins a policy to a ticket (at creation, or when an admin re-applies one) with its clocks.
pub async fn assign(conn: &mut PgConnection, t: NewTicketSla<'_>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO ticket_sla (ticket_id, tenant_id, policy_id, policy_version, calendar_id, calendar_version,
                                 assignment, clocks, state, next_due_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (ticket_id) DO UPDATE SET policy_id = $3, policy_version = $4, calendar_id = $5,
             calendar_version = $6, assignment = $7, clocks = $8, state = $9, next_due_at = $10, updated_at = archer_now()",
        t.ticket_id,
        t.tenant_id,
        t.policy_id,
        t.policy_version,
        t.calendar_id,
        t.calendar_version,
        t.assignment,
        t.clocks,
        t.state,
        t.next_due_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The SLA rows of several tickets (for lists).
pub async fn ticket_slas(conn: &mut PgConnection, ticket_ids: &[Uuid]) -> Result<Vec<TicketSlaRow>> {
    Ok(sqlx::query_as!(
        TicketSlaRow,
        "SELECT ticket_id, policy_id, policy_version, calendar_id, calendar_version, assignment, clocks, state,
                next_due_at, seq, event_seq, updated_at
           FROM ticket_sla WHERE ticket_id = ANY($1)",
        ticket_ids
    )
    .fetch_all(conn)
    .await?)
}

pub async fn ticket_sla(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Option<TicketSlaRow>> {
    Ok(sqlx::query_as!(
        TicketSlaRow,
        "SELECT ticket_id, policy_id, policy_version, calendar_id, calendar_version, assignment, clocks, state,
                next_due_at, seq, event_seq, updated_at
           FROM ticket_sla WHERE ticket_id = $1",
        ticket_id
    )
    .fetch_optional(conn)
    .await?)
}

/// Writes the workflow's projection of a ticket's clocks unless a newer one is there already.
pub async fn project(
    conn: &mut PgConnection,
    ticket_id: Uuid,
    seq: i64,
    event_seq: i64,
    clocks: &serde_json::Value,
    state: &str,
    next_due_at: Option<OffsetDateTime>,
) -> Result<bool> {
    // the ticket first, as every writer takes them: the projection's trigger copies the due
    // instant onto the ticket (migration 0013)
    sqlx::query!("SELECT id FROM tickets WHERE id = $1 FOR NO KEY UPDATE", ticket_id)
        .fetch_optional(&mut *conn)
        .await?;
    let done = sqlx::query!(
        "UPDATE ticket_sla SET clocks = $3, state = $4, next_due_at = $5, seq = $2, event_seq = $6, updated_at = archer_now()
          WHERE ticket_id = $1 AND seq <= $2",
        ticket_id,
        seq,
        clocks,
        state,
        next_due_at,
        event_seq
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a warning or breach once; returns whether it was new.
pub async fn record_event(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    ticket_id: Uuid,
    metric: &str,
    cycle: i32,
    kind: &str,
    at: OffsetDateTime,
) -> Result<bool> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO sla_events (tenant_id, ticket_id, metric, cycle, kind, at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (ticket_id, metric, cycle, kind) DO NOTHING RETURNING id",
        tenant_id,
        ticket_id,
        metric,
        cycle,
        kind,
        at
    )
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// A recorded warning or breach.
#[derive(Debug, Clone)]
pub struct SlaEventRow {
    pub metric: String,
    pub cycle: i32,
    /// `breach` or `warning_<percent>`.
    pub kind: String,
    /// The true instant the threshold or target was reached.
    pub at: OffsetDateTime,
    /// When Archer recorded it (after `at` by the timer's lag, or by a worker outage).
    pub recorded_at: OffsetDateTime,
}

/// A ticket's recorded warnings and breaches, in the order they fell due.
pub async fn events(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<SlaEventRow>> {
    Ok(sqlx::query_as!(
        SlaEventRow,
        "SELECT metric, cycle, kind, at, recorded_at FROM sla_events WHERE ticket_id = $1 ORDER BY at, id",
        ticket_id
    )
    .fetch_all(conn)
    .await?)
}

/// Claims an escalation (level, target, cycle) for a ticket; `None` if it already fired.
#[allow(clippy::too_many_arguments)]
pub async fn claim_escalation(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    ticket_id: Uuid,
    metric: &str,
    cycle: i32,
    level: i32,
    name: &str,
    due_at: OffsetDateTime,
    fired_at: OffsetDateTime,
    actions: &serde_json::Value,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO sla_escalations (id, tenant_id, ticket_id, metric, cycle, level, name, due_at, fired_at, actions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (ticket_id, metric, cycle, level) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        tenant_id,
        ticket_id,
        metric,
        cycle,
        level,
        name,
        due_at,
        fired_at,
        actions
    )
    .fetch_optional(conn)
    .await?)
}

/// An escalation level that ran.
#[derive(Debug, Clone)]
pub struct EscalationRow {
    pub metric: String,
    pub cycle: i32,
    pub level: i32,
    pub name: String,
    /// When its trigger fell due (the warning, the breach, or the breach plus its delay).
    pub due_at: OffsetDateTime,
    /// When it was due to run: `due_at`, or later when the cooldown held it back.
    pub fired_at: OffsetDateTime,
    /// When it actually ran (its activity claimed it): after `fired_at` by the timer's lag, the
    /// levels before it, or a worker outage.
    pub ran_at: OffsetDateTime,
    pub actions: serde_json::Value,
}

/// A ticket's escalations, in the order they were due to run.
pub async fn escalations(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<EscalationRow>> {
    Ok(sqlx::query_as!(
        EscalationRow,
        "SELECT metric, cycle, level, name, due_at, fired_at, created_at AS ran_at, actions FROM sla_escalations
          WHERE ticket_id = $1 ORDER BY fired_at, level",
        ticket_id
    )
    .fetch_all(conn)
    .await?)
}

/// A policy resolved for a ticket, ready to pin.
pub struct Resolved {
    pub assignment: SlaAssignment,
}

#[derive(Debug, thiserror::Error)]
#[error("stored SLA configuration no longer validates ({what}): {detail}")]
pub struct InvalidStored {
    pub what: String,
    pub detail: String,
}

/// Compiles a stored policy version (and its calendar's current version) into an assignment.
pub async fn assignment_for(conn: &mut PgConnection, p: &PolicyRow) -> Result<SlaAssignment> {
    let calendar = match p.calendar_id {
        Some(id) => Some(calendar(conn, id).await?),
        None => None,
    };
    let spec: PolicySpec = serde_json::from_value(p.spec.clone()).map_err(|e| {
        StoreError::Invalid(InvalidStored { what: format!("policy {}", p.name), detail: e.to_string() }.to_string())
    })?;
    compile_assignment(p, spec, calendar.as_ref().map(|c| (c.name.as_str(), c.version, &c.spec)))
}

/// Compiles a policy version (its row and parsed `spec`) and its calendar's version (`name`,
/// `version`, `spec`; `None` for a policy that counts every hour) into an assignment.
fn compile_assignment(
    p: &PolicyRow,
    spec: PolicySpec,
    calendar: Option<(&str, i32, &serde_json::Value)>,
) -> Result<SlaAssignment> {
    let bad = |what: String, detail: String| StoreError::Invalid(InvalidStored { what, detail }.to_string());
    let policy = spec.compile().map_err(|e| bad(format!("policy {}", p.name), format!("{e:?}")))?;
    let (calendar, calendar_id, calendar_version) = match (p.calendar_id, calendar) {
        (Some(id), Some((name, version, spec))) => {
            let spec: CalendarSpec =
                serde_json::from_value(spec.clone()).map_err(|e| bad(format!("calendar {name}"), e.to_string()))?;
            (spec, Some(id), Some(version))
        }
        (Some(id), None) => return Err(bad(format!("policy {}", p.name), format!("its calendar {id} is missing"))),
        (None, _) => (CalendarSpec::always(), None, None),
    };
    Ok(SlaAssignment {
        policy_id: p.id,
        policy_version: p.version,
        policy_name: p.name.clone(),
        policy,
        calendar_id,
        calendar_version,
        calendar,
    })
}

/// The first active policy (in order) that applies to a ticket, compiled: what
/// [`resolve_for_create`] reads, without the playbooks' answer (the SLA preview).
pub async fn resolve(conn: &mut PgConnection, t: &MatchInput<'_>) -> Result<Option<Resolved>> {
    Ok(resolve_for_create(conn, t).await?.0)
}

/// What a create reads before it writes, in one round trip: the first active policy (in
/// order) that applies to the ticket, compiled with its calendar's current version, and
/// whether the tenant has a published `ticket_created` playbook that may fire (none inside a
/// playbook run's own writes; `playbooks::created_triggers` reads them when there is one).
pub async fn resolve_for_create(conn: &mut PgConnection, t: &MatchInput<'_>) -> Result<(Option<Resolved>, bool)> {
    let rows = sqlx::query!(
        r#"SELECT f.created_playbooks AS "created_playbooks!",
                  p.id AS "id?", p.name AS "name?", p.position AS "position?", p.active AS "active?",
                  p.current_version AS "version?", v.spec AS "spec?", v.calendar_id AS "calendar_id?",
                  p.created_at AS "created_at?", p.updated_at AS "updated_at?",
                  c.name AS "calendar_name?", c.current_version AS "calendar_version?", cv.spec AS "calendar_spec?"
             FROM (SELECT EXISTS (
                          SELECT 1 FROM playbook_versions pv
                           WHERE pv.status = 'published'
                             AND pv.triggers @> '[{"kind": "ticket_created"}]'::jsonb)
                      AND COALESCE(current_setting('archer.request_id', true), '') NOT LIKE 'playbook:%'
                      AS created_playbooks) f
             LEFT JOIN (sla_policies p
                        JOIN sla_policy_versions v ON v.policy_id = p.id AND v.version = p.current_version
                        LEFT JOIN business_calendars c ON c.id = v.calendar_id
                        LEFT JOIN business_calendar_versions cv
                               ON cv.calendar_id = c.id AND cv.version = c.current_version)
                    ON p.active
            ORDER BY p.position, p.created_at"#
    )
    .fetch_all(conn)
    .await?;
    let created_playbooks = rows.first().is_some_and(|r| r.created_playbooks);
    // (a tenant without an active policy has one row, without a policy)
    let policies = rows.into_iter().filter_map(|r| {
        let policy = PolicyRow {
            id: r.id?,
            name: r.name?,
            position: r.position?,
            active: r.active?,
            version: r.version?,
            spec: r.spec?,
            calendar_id: r.calendar_id,
            created_at: r.created_at?,
            updated_at: r.updated_at?,
        };
        let calendar = match (r.calendar_name, r.calendar_version, r.calendar_spec) {
            (Some(name), Some(version), Some(spec)) => Some((name, version, spec)),
            _ => None,
        };
        Some((policy, calendar))
    });
    for (p, calendar) in policies {
        let spec: PolicySpec = match serde_json::from_value(p.spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(policy = %p.name, error = %e, "skipping an SLA policy that no longer parses");
                continue;
            }
        };
        if spec.applies_to.matches(t) {
            let calendar = calendar.as_ref().map(|(name, version, spec)| (name.as_str(), *version, spec));
            return Ok((Some(Resolved { assignment: compile_assignment(&p, spec, calendar)? }), created_playbooks));
        }
    }
    Ok((None, created_playbooks))
}

/// The states a ticket's SLA takes (the worst of its clocks, as the workflow projects it).
pub const CLOCK_STATES: [&str; 7] = ["running", "warning", "paused", "breached", "met", "cancelled", "none"];

/// Tickets' SLA by state, across tenants (the process's own role; for metrics).
pub async fn clocks_by_state(conn: &mut PgConnection) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(r#"SELECT state, count(*) AS "n!" FROM ticket_sla GROUP BY state"#).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
}
