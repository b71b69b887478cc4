//! Approvals: one per approval chain run on a ticket, its steps, and each approver's task.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::TicketKind;

use crate::tickets::Text;
use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub seq: i32,
    pub workflow_id: String,
    pub chain: serde_json::Value,
    pub source: String,
    pub state: String,
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
}

/// Records a new approval of a ticket (its sequence number allocated here).
pub async fn create(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    ticket_id: Uuid,
    workflow_id: impl Fn(i32) -> String,
    chain: &serde_json::Value,
    source: &str,
) -> Result<ApprovalRow> {
    let seq: i32 = sqlx::query_scalar!(
        r#"SELECT COALESCE(max(seq), 0) + 1 AS "seq!" FROM approvals WHERE ticket_id = $1"#,
        ticket_id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(sqlx::query_as!(
        ApprovalRow,
        "INSERT INTO approvals (id, tenant_id, ticket_id, seq, workflow_id, chain, source) VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, ticket_id, seq, workflow_id, chain, source, state, reason, created_at, decided_at",
        Uuid::now_v7(),
        tenant_id,
        ticket_id,
        seq,
        workflow_id(seq),
        chain,
        source
    )
    .fetch_one(conn)
    .await?)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<ApprovalRow> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, ticket_id, seq, workflow_id, chain, source, state, reason, created_at, decided_at FROM approvals WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// A ticket's approvals, oldest first.
pub async fn of_ticket(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<ApprovalRow>> {
    Ok(sqlx::query_as!(
        ApprovalRow,
        "SELECT id, ticket_id, seq, workflow_id, chain, source, state, reason, created_at, decided_at
           FROM approvals WHERE ticket_id = $1 ORDER BY seq",
        ticket_id
    )
    .fetch_all(conn)
    .await?)
}

/// Sets the outcome of an approval still pending; returns whether it was.
pub async fn finish(conn: &mut PgConnection, id: Uuid, state: &str, reason: &str) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE approvals SET state = $2, reason = $3, decided_at = archer_now() WHERE id = $1 AND state = 'pending'",
        id,
        state,
        reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: Uuid,
    pub approval_id: Uuid,
    pub ticket_id: Uuid,
    pub ordinal: i32,
    pub name: String,
    pub spec: serde_json::Value,
    pub state: String,
    pub reason: Option<String>,
    pub started_at: OffsetDateTime,
    pub reminders_at: Vec<OffsetDateTime>,
    pub timeout_at: Option<OffsetDateTime>,
    pub escalated_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
}

/// Opens a step, or returns it when it is open already (a retried activity).
#[allow(clippy::too_many_arguments)]
pub async fn open_step(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    approval_id: Uuid,
    ticket_id: Uuid,
    ordinal: i32,
    name: &str,
    spec: &serde_json::Value,
) -> Result<(StepRow, bool)> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO approval_steps (id, tenant_id, approval_id, ticket_id, ordinal, name, spec)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (approval_id, ordinal) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        tenant_id,
        approval_id,
        ticket_id,
        ordinal,
        name,
        spec
    )
    .fetch_optional(&mut *conn)
    .await?;
    let step = sqlx::query_as!(
        StepRow,
        "SELECT id, approval_id, ticket_id, ordinal, name, spec, state, reason, started_at, reminders_at, timeout_at,
                escalated_at, closed_at
           FROM approval_steps WHERE approval_id = $1 AND ordinal = $2",
        approval_id,
        ordinal
    )
    .fetch_one(conn)
    .await?;
    Ok((step, inserted.is_some()))
}

pub async fn set_schedule(
    conn: &mut PgConnection,
    step_id: Uuid,
    reminders: &[OffsetDateTime],
    timeout: Option<OffsetDateTime>,
) -> Result<()> {
    sqlx::query!(
        "UPDATE approval_steps SET reminders_at = $2, timeout_at = $3 WHERE id = $1",
        step_id,
        reminders,
        timeout
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn steps(conn: &mut PgConnection, approval_id: Uuid) -> Result<Vec<StepRow>> {
    Ok(sqlx::query_as!(
        StepRow,
        "SELECT id, approval_id, ticket_id, ordinal, name, spec, state, reason, started_at, reminders_at, timeout_at,
                escalated_at, closed_at
           FROM approval_steps WHERE approval_id = $1 ORDER BY ordinal",
        approval_id
    )
    .fetch_all(conn)
    .await?)
}

pub async fn step(conn: &mut PgConnection, id: Uuid) -> Result<StepRow> {
    sqlx::query_as!(
        StepRow,
        "SELECT id, approval_id, ticket_id, ordinal, name, spec, state, reason, started_at, reminders_at, timeout_at,
                escalated_at, closed_at
           FROM approval_steps WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Closes an open step with its outcome; the tasks not decided are superseded.
pub async fn close_step(conn: &mut PgConnection, id: Uuid, state: &str, reason: &str) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE approval_steps SET state = $2, reason = $3, closed_at = archer_now() WHERE id = $1 AND state = 'open'",
        id,
        state,
        reason
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE approval_tasks SET state = 'superseded' WHERE step_id = $1 AND state IN ('waiting', 'asked')",
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_escalated(conn: &mut PgConnection, step_id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE approval_steps SET escalated_at = COALESCE(escalated_at, archer_now()) WHERE id = $1",
        step_id
    )
    .execute(&mut *conn)
    .await?;
    // the original approvers are superseded by the escalation
    sqlx::query!(
        "UPDATE approval_tasks SET state = 'superseded' WHERE step_id = $1 AND NOT escalation AND state IN ('waiting', 'asked')",
        step_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: Uuid,
    pub step_id: Uuid,
    pub approval_id: Uuid,
    pub ticket_id: Uuid,
    pub position: i32,
    pub approver_id: Uuid,
    pub on_behalf_of: Option<Uuid>,
    pub state: String,
    pub escalation: bool,
    pub asked_at: Option<OffsetDateTime>,
    pub decided_at: Option<OffsetDateTime>,
    pub comment: Option<String>,
    pub via: Option<String>,
}

/// Adds an approver to a step (once: a retry finds the existing task).
#[allow(clippy::too_many_arguments)]
pub async fn add_task(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    step: &StepRow,
    position: i32,
    approver_id: Uuid,
    on_behalf_of: Option<Uuid>,
    escalation: bool,
) -> Result<TaskRow> {
    sqlx::query!(
        "INSERT INTO approval_tasks (id, tenant_id, step_id, approval_id, ticket_id, position, approver_id, on_behalf_of,
                                     state, escalation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'waiting', $9)
         ON CONFLICT (step_id, approver_id) DO NOTHING",
        Uuid::now_v7(),
        tenant_id,
        step.id,
        step.approval_id,
        step.ticket_id,
        position,
        approver_id,
        on_behalf_of,
        escalation
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as!(
        TaskRow,
        "SELECT id, step_id, approval_id, ticket_id, position, approver_id, on_behalf_of, state, escalation, asked_at,
                decided_at, comment, via
           FROM approval_tasks WHERE step_id = $1 AND approver_id = $2",
        step.id,
        approver_id
    )
    .fetch_one(conn)
    .await
    .map_err(Into::into)
}

pub async fn tasks(conn: &mut PgConnection, step_id: Uuid) -> Result<Vec<TaskRow>> {
    Ok(sqlx::query_as!(
        TaskRow,
        "SELECT id, step_id, approval_id, ticket_id, position, approver_id, on_behalf_of, state, escalation, asked_at,
                decided_at, comment, via
           FROM approval_tasks WHERE step_id = $1 ORDER BY escalation, position",
        step_id
    )
    .fetch_all(conn)
    .await?)
}

pub async fn task(conn: &mut PgConnection, id: Uuid) -> Result<TaskRow> {
    sqlx::query_as!(
        TaskRow,
        "SELECT id, step_id, approval_id, ticket_id, position, approver_id, on_behalf_of, state, escalation, asked_at,
                decided_at, comment, via
           FROM approval_tasks WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Marks tasks asked (those still waiting); returns the ones newly asked.
pub async fn ask(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "UPDATE approval_tasks SET state = 'asked', asked_at = archer_now() WHERE id = ANY($1) AND state = 'waiting' RETURNING id",
        ids
    )
    .fetch_all(conn)
    .await?)
}

/// What deciding a task found.
#[derive(Debug, Clone)]
pub enum Decided {
    /// Recorded now.
    Recorded(TaskRow),
    /// This approver decided already (a second click, another tab).
    Already(TaskRow),
    /// The step or the approval closed before this decision (or the approver was never asked).
    Closed { task: TaskRow, step_state: String, approval_state: String },
}

/// Records an approver's decision, once. Locks the task, so two concurrent clicks decide once.
pub async fn decide(
    conn: &mut PgConnection,
    task_id: Uuid,
    decision: &str,
    comment: Option<&str>,
    via: &str,
) -> Result<Decided> {
    let current = sqlx::query!(
        r#"SELECT t.state AS task_state, s.state AS step_state, a.state AS approval_state
             FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id JOIN approvals a ON a.id = t.approval_id
            WHERE t.id = $1 FOR UPDATE OF t"#,
        task_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    if matches!(current.task_state.as_str(), "approved" | "rejected") {
        return Ok(Decided::Already(task(conn, task_id).await?));
    }
    if current.task_state != "asked" || current.step_state != "open" || current.approval_state != "pending" {
        return Ok(Decided::Closed {
            task: task(conn, task_id).await?,
            step_state: current.step_state,
            approval_state: current.approval_state,
        });
    }
    let state = if decision == "approve" { "approved" } else { "rejected" };
    sqlx::query!(
        "UPDATE approval_tasks SET state = $2, decided_at = archer_now(), comment = $3, via = $4 WHERE id = $1",
        task_id,
        state,
        comment,
        via
    )
    .execute(&mut *conn)
    .await?;
    Ok(Decided::Recorded(task(conn, task_id).await?))
}

/// Records the use of an emailed link; `false` if it was used before.
pub async fn use_link(conn: &mut PgConnection, tenant_id: Uuid, token_id: Uuid, task_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO approval_link_uses (token_id, tenant_id, task_id) VALUES ($1, $2, $3)
         ON CONFLICT (token_id) DO NOTHING RETURNING token_id",
        token_id,
        tenant_id,
        task_id
    )
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// An approver's task with what the inbox shows of it.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub task_id: Uuid,
    pub approval_id: Uuid,
    pub step_name: String,
    pub ticket_id: Uuid,
    pub ticket_kind: TicketKind,
    pub ticket_number: i32,
    pub title: String,
    pub requester_id: Uuid,
    pub on_behalf_of: Option<Uuid>,
    pub state: String,
    pub asked_at: Option<OffsetDateTime>,
    pub decided_at: Option<OffsetDateTime>,
    pub timeout_at: Option<OffsetDateTime>,
}

/// An approver's open tasks (`pending`), oldest first; or their decisions, newest first: one
/// page of them, and how many there are in all.
pub async fn inbox(
    conn: &mut PgConnection,
    approver_id: Uuid,
    pending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<InboxRow>, i64)> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!"
             FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id
            WHERE t.approver_id = $1
              AND CASE WHEN $2 THEN t.state = 'asked' AND s.state = 'open' ELSE t.state IN ('approved', 'rejected') END"#,
        approver_id,
        pending
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as!(
        InboxRow,
        r#"SELECT t.id AS task_id, t.approval_id, s.name AS step_name, k.id AS ticket_id, k.kind AS "ticket_kind: Text<TicketKind>",
                k.number AS ticket_number, k.title, k.requester_id, t.on_behalf_of, t.state, t.asked_at, t.decided_at,
                s.timeout_at
           FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id JOIN tickets k ON k.id = t.ticket_id
          WHERE t.approver_id = $1
            AND CASE WHEN $2 THEN t.state = 'asked' AND s.state = 'open' ELSE t.state IN ('approved', 'rejected') END
          ORDER BY CASE WHEN $2 THEN t.asked_at END ASC, CASE WHEN NOT $2 THEN t.decided_at END DESC, t.id
          LIMIT $3 OFFSET $4"#,
        approver_id,
        pending,
        limit,
        offset
    )
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

/// Every task of an approval, by step and position.
pub async fn tasks_of_approval(conn: &mut PgConnection, approval_id: Uuid) -> Result<Vec<TaskRow>> {
    Ok(sqlx::query_as!(
        TaskRow,
        "SELECT t.id, t.step_id, t.approval_id, t.ticket_id, t.position, t.approver_id, t.on_behalf_of, t.state,
                t.escalation, t.asked_at, t.decided_at, t.comment, t.via
           FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id
          WHERE t.approval_id = $1 ORDER BY s.ordinal, t.escalation, t.position",
        approval_id
    )
    .fetch_all(conn)
    .await?)
}

/// The approver's task in an approval: the one in its open step if any, else their latest.
pub async fn task_of(conn: &mut PgConnection, approval_id: Uuid, approver_id: Uuid) -> Result<Option<TaskRow>> {
    Ok(sqlx::query_as!(
        TaskRow,
        "SELECT t.id, t.step_id, t.approval_id, t.ticket_id, t.position, t.approver_id, t.on_behalf_of, t.state,
                t.escalation, t.asked_at, t.decided_at, t.comment, t.via
           FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id
          WHERE t.approval_id = $1 AND t.approver_id = $2
          ORDER BY (s.state = 'open') DESC, s.ordinal DESC
          LIMIT 1",
        approval_id,
        approver_id
    )
    .fetch_optional(conn)
    .await?)
}

/// Whether the link with this token id decided already.
pub async fn link_used(conn: &mut PgConnection, token_id: Uuid) -> Result<Option<OffsetDateTime>> {
    Ok(sqlx::query_scalar!("SELECT used_at FROM approval_link_uses WHERE token_id = $1", token_id)
        .fetch_optional(conn)
        .await?)
}

/// The active out-of-office delegate of a user, if any.
pub async fn delegate_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT delegate_id FROM user_delegations WHERE user_id = $1 AND starts_at <= archer_now() AND ends_at > archer_now()
          ORDER BY starts_at DESC LIMIT 1",
        user_id
    )
    .fetch_optional(conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct Delegation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub delegate_id: Uuid,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub reason: Option<String>,
}

/// Replaces a user's out-of-office delegation.
pub async fn set_delegation(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    delegate_id: Uuid,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
    reason: Option<&str>,
) -> Result<Delegation> {
    sqlx::query!("DELETE FROM user_delegations WHERE user_id = $1", user_id).execute(&mut *conn).await?;
    Ok(sqlx::query_as!(
        Delegation,
        "INSERT INTO user_delegations (id, tenant_id, user_id, delegate_id, starts_at, ends_at, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, user_id, delegate_id, starts_at, ends_at, reason",
        Uuid::now_v7(),
        tenant_id,
        user_id,
        delegate_id,
        starts_at,
        ends_at,
        reason
    )
    .fetch_one(conn)
    .await?)
}

pub async fn delegation(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<Delegation>> {
    Ok(sqlx::query_as!(
        Delegation,
        "SELECT id, user_id, delegate_id, starts_at, ends_at, reason FROM user_delegations WHERE user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn clear_delegation(conn: &mut PgConnection, user_id: Uuid) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM user_delegations WHERE user_id = $1", user_id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant's change routing (which chain each change type runs), if configured.
pub async fn change_routing(conn: &mut PgConnection, tenant_id: Uuid) -> Result<Option<serde_json::Value>> {
    Ok(sqlx::query_scalar!("SELECT change_routing FROM tenant_settings WHERE tenant_id = $1", tenant_id)
        .fetch_optional(conn)
        .await?
        .flatten())
}

pub async fn set_change_routing(conn: &mut PgConnection, tenant_id: Uuid, routing: &serde_json::Value) -> Result<()> {
    sqlx::query!(
        "INSERT INTO tenant_settings (tenant_id, change_routing) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET change_routing = $2, updated_at = archer_now()",
        tenant_id,
        routing
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A deactivated approver's task that is still open (asked, or waiting its turn, in an open
/// step), with the workflow of its chain.
#[derive(Debug, Clone)]
pub struct OpenTask {
    pub task_id: Uuid,
    pub ticket_id: Uuid,
    pub approval_id: Uuid,
    pub workflow_id: String,
    pub state: String,
}

/// Every open task of `approver`.
pub async fn open_tasks_of(conn: &mut PgConnection, approver: Uuid) -> Result<Vec<OpenTask>> {
    Ok(sqlx::query_as!(
        OpenTask,
        "SELECT t.id AS task_id, t.ticket_id, t.approval_id, a.workflow_id, t.state
           FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id JOIN approvals a ON a.id = t.approval_id
          WHERE t.approver_id = $1 AND t.state IN ('asked', 'waiting') AND s.state = 'open' AND a.state = 'pending'
          ORDER BY t.id
          FOR UPDATE OF t",
        approver
    )
    .fetch_all(conn)
    .await?)
}

/// Hands an open task to `delegate`, on behalf of its approver (audited by trigger). `false`
/// when the delegate already has a task in the same step (then nobody stands in).
pub async fn hand_task_to(conn: &mut PgConnection, task_id: Uuid, delegate: Uuid, on_behalf_of: Uuid) -> Result<bool> {
    let r = sqlx::query!(
        "UPDATE approval_tasks t SET approver_id = $2, on_behalf_of = $3
          WHERE t.id = $1 AND t.state IN ('asked', 'waiting')
            AND NOT EXISTS (SELECT 1 FROM approval_tasks o WHERE o.step_id = t.step_id AND o.approver_id = $2)",
        task_id,
        delegate,
        on_behalf_of
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Withdraws an open task from its step (its approver is gone and nobody stands in).
pub async fn withdraw_task(conn: &mut PgConnection, task_id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE approval_tasks SET state = 'withdrawn' WHERE id = $1 AND state IN ('asked', 'waiting')",
        task_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Approval tasks waiting for their approver's decision, across tenants (the process's own
/// role; for metrics).
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM approval_tasks WHERE state = 'asked'"#)
        .fetch_one(conn)
        .await?)
}

/// When the latest decision on approval `approval_id` was recorded (none yet: `None`).
pub async fn last_decision_at(conn: &mut PgConnection, approval_id: Uuid) -> Result<Option<OffsetDateTime>> {
    Ok(sqlx::query_scalar!("SELECT max(decided_at) FROM approval_tasks WHERE approval_id = $1", approval_id)
        .fetch_one(conn)
        .await?)
}
