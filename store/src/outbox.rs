//! The outbox: intents to start or signal workflows, written with the data they follow from.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

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
}

pub async fn enqueue(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    workflow_id: &str,
    intent: Intent,
    name: &str,
    payload: &serde_json::Value,
) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO outbox (tenant_id, workflow_id, intent, name, payload) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        tenant_id,
        workflow_id,
        intent.as_str(),
        name,
        payload
    )
    .fetch_one(conn)
    .await?)
}

/// The oldest undelivered rows that are due, in id order. Rows of a workflow that has an
/// earlier row waiting for a retry are held back, so a workflow's intents stay in order.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as!(
        OutboxRow,
        "SELECT o.id, o.tenant_id, o.workflow_id, o.intent, o.name, o.payload, o.created_at, o.attempts
           FROM outbox o
          WHERE o.delivered_at IS NULL AND o.available_at <= now()
            AND NOT EXISTS (SELECT 1 FROM outbox e
                             WHERE e.workflow_id = o.workflow_id AND e.delivered_at IS NULL
                               AND e.id < o.id AND e.available_at > now())
          ORDER BY o.id
          LIMIT $1",
        limit
    )
    .fetch_all(conn)
    .await?)
}

pub async fn mark_delivered(conn: &mut PgConnection, id: i64, note: Option<&str>) -> Result<()> {
    sqlx::query!(
        "UPDATE outbox SET delivered_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1",
        id,
        note
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub async fn mark_failed(conn: &mut PgConnection, id: i64, error: &str, retry_in: time::Duration) -> Result<()> {
    sqlx::query!(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                available_at = now() + make_interval(secs => $3)
          WHERE id = $1",
        id,
        error,
        retry_in.as_seconds_f64()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Undelivered rows, for readiness and metrics.
pub async fn pending(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox WHERE delivered_at IS NULL"#).fetch_one(conn).await?)
}

/// Takes the relay's leader lock on this session if free (one relay delivers at a time, so
/// each workflow's intents go out in order).
pub async fn try_lead(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock(7241500001) AS "locked!""#).fetch_one(conn).await?)
}
