//! The outbox: intents to start or signal workflows, written with the data they follow from.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::workflows::signals::Signal;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Start,
    Signal,
}

impl Intent {
    fn as_str(self) -> &'static str {
        match self {
            Intent::Start => "start",
            Intent::Signal => "signal",
        }
    }
}

tokio::task_local! {
    static TRACE_CONTEXT: Option<String>;
}

/// Runs `f` with `traceparent` (a W3C `traceparent` value) as the trace context every intent it
/// records carries to the relay, and through Temporal's headers into the workflow. The API sets
/// it per request when tracing is on.
pub async fn with_trace_context<F: std::future::Future>(traceparent: Option<String>, f: F) -> F::Output {
    TRACE_CONTEXT.scope(traceparent, f).await
}

/// The trace context intents recorded now carry (see [`with_trace_context`]).
pub fn current_trace_context() -> Option<String> {
    TRACE_CONTEXT.try_with(Clone::clone).ok().flatten()
}

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub tenant_id: Uuid,
    pub workflow_id: String,
    pub intent: String,
    /// Workflow type for a start, signal name for a signal.
    pub name: String,
    pub payload: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub attempts: i32,
    /// The `traceparent` of the request that recorded it (tracing on), else `None`.
    pub trace_context: Option<String>,
}

/// Records the intent to send `signal` to the workflow `workflow_id`, in the caller's
/// transaction. The signal's name comes from its type (`archer_orchestrator::workflows::signals`).
pub async fn signal<S: Signal>(conn: &mut PgConnection, tenant_id: Uuid, workflow_id: &str, signal: &S) -> Result<i64> {
    let payload = serde_json::to_value(signal).map_err(|e| StoreError::Encode(e.to_string()))?;
    enqueue(conn, tenant_id, workflow_id, Intent::Signal, S::NAME, &payload).await
}

/// Records the intent to start the workflow `workflow_id` of type `workflow_type` with `input`,
/// in the caller's transaction.
pub async fn start<I: serde::Serialize>(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    workflow_id: &str,
    workflow_type: &str,
    input: &I,
) -> Result<i64> {
    let payload = serde_json::to_value(input).map_err(|e| StoreError::Encode(e.to_string()))?;
    enqueue(conn, tenant_id, workflow_id, Intent::Start, workflow_type, &payload).await
}

async fn enqueue(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    workflow_id: &str,
    intent: Intent,
    name: &str,
    payload: &serde_json::Value,
) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO outbox (tenant_id, workflow_id, intent, name, payload, trace_context)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        tenant_id,
        workflow_id,
        intent.as_str(),
        name,
        payload,
        current_trace_context()
    )
    .fetch_one(conn)
    .await?)
}

/// The oldest undelivered rows that are due at `now`, in id order, except those in `skip`
/// (delivered, but not yet marked so). Rows of a workflow that has an earlier row waiting for a
/// retry, or an earlier row in `skip`, are held back, so a workflow's intents stay in order.
///
/// The relay's statements run outside a transaction (no `archer_now()` of Archer's clock), so
/// they are given the clock's instant.
pub async fn due(conn: &mut PgConnection, now: OffsetDateTime, limit: i64, skip: &[i64]) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as!(
        OutboxRow,
        "SELECT o.id, o.tenant_id, o.workflow_id, o.intent, o.name, o.payload, o.created_at, o.attempts,
                o.trace_context
           FROM outbox o
          WHERE o.delivered_at IS NULL AND o.available_at <= $3 AND o.id <> ALL($2)
            AND NOT EXISTS (SELECT 1 FROM outbox e
                             WHERE e.workflow_id = o.workflow_id AND e.delivered_at IS NULL
                               AND e.id < o.id AND (e.available_at > $3 OR e.id = ANY($2)))
          ORDER BY o.id
          LIMIT $1",
        limit,
        skip,
        now
    )
    .fetch_all(conn)
    .await?)
}

/// Marks rows delivered at `now`, each with its note (`None` for a plain delivery), in one
/// statement. Never waits for a lock: a row locked by another session (a transaction that
/// should not exist, see `connect_with`) is left as it is; the ids returned are those marked,
/// and the relay delivers the others again later, which is harmless.
pub async fn mark_delivered(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    rows: &[(i64, Option<String>)],
) -> Result<Vec<i64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    let notes: Vec<Option<String>> = rows.iter().map(|(_, note)| note.clone()).collect();
    Ok(sqlx::query_scalar!(
        r#"UPDATE outbox o SET delivered_at = $3, attempts = o.attempts + 1, last_error = d.note
             FROM unnest($1::bigint[], $2::text[]) AS d(id, note)
            WHERE o.id = d.id
              AND o.id IN (SELECT id FROM outbox WHERE id = ANY($1) FOR UPDATE SKIP LOCKED)
        RETURNING o.id"#,
        &ids,
        &notes as &[Option<String>],
        now
    )
    .fetch_all(conn)
    .await?)
}

/// Records a failed attempt at `now` and when to try again. Never waits for a lock (as
/// [`mark_delivered`]): `false` when the row was locked by another session.
pub async fn mark_failed(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    id: i64,
    error: &str,
    retry_in: time::Duration,
) -> Result<bool> {
    let r = sqlx::query!(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                available_at = $4::timestamptz + make_interval(secs => $3)
          WHERE id = (SELECT id FROM outbox WHERE id = $1 FOR UPDATE SKIP LOCKED)",
        id,
        error,
        retry_in.as_seconds_f64(),
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// How far behind delivery is at `now`: the number of undelivered rows and the age in seconds
/// of the oldest one (0 when none waits).
pub async fn backlog(conn: &mut PgConnection, now: OffsetDateTime) -> Result<(i64, f64)> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "pending!",
                  COALESCE(EXTRACT(EPOCH FROM $1::timestamptz - min(created_at))::float8, 0) AS "oldest_age!"
             FROM outbox WHERE delivered_at IS NULL"#,
        now
    )
    .fetch_one(conn)
    .await?;
    Ok((row.pending, row.oldest_age))
}

/// Takes the relay's leader lock on this session if free (one relay delivers at a time, so
/// each workflow's intents go out in order).
pub async fn try_lead(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock(7241500001) AS "locked!""#).fetch_one(conn).await?)
}
