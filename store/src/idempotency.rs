//! Idempotency keys for POSTs.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// A response stored for a key.
#[derive(Debug, Clone)]
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub status_code: i16,
    pub body: serde_json::Value,
    pub location: Option<String>,
}

/// Claims `key` for this transaction. Returns `None` when claimed (go on and do the work),
/// or the response stored by the request that claimed it first. A concurrent twin waits here
/// until the first commits or rolls back.
pub async fn claim(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<Stored>> {
    let claimed = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (tenant_id, user_id, key, request_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING RETURNING 1",
        tenant_id,
        user_id,
        key,
        request_hash
    )
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"SELECT request_hash, status_code AS "status_code!", response_body AS "body!", location
             FROM idempotency_keys WHERE tenant_id = $1 AND user_id = $2 AND key = $3"#,
        tenant_id,
        user_id,
        key
    )
    .fetch_one(conn)
    .await?;
    Ok(Some(Stored {
        request_hash: row.request_hash,
        status_code: row.status_code,
        body: row.body,
        location: row.location,
    }))
}

/// Stores the response of the request that claimed `key`, in its transaction.
pub async fn complete(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    key: &str,
    status_code: u16,
    body: &serde_json::Value,
    location: Option<&str>,
) -> Result<()> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status_code = $4, response_body = $5, location = $6
          WHERE tenant_id = $1 AND user_id = $2 AND key = $3",
        tenant_id,
        user_id,
        key,
        status_code as i16,
        body,
        location
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets keys older than `max_age` at `now` (run by the relay's housekeeping, outside a
/// transaction). Never waits for a lock: a key held by a transaction still in flight is skipped.
pub async fn expire(conn: &mut PgConnection, now: time::OffsetDateTime, max_age: time::Duration) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM idempotency_keys
          WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys
                                   WHERE created_at < $2::timestamptz - make_interval(secs => $1)
                                   FOR UPDATE SKIP LOCKED))",
        max_age.as_seconds_f64(),
        now
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
