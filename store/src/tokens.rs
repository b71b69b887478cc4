//! Refresh tokens: stored as SHA-256 hashes, rotated on every use, revoked by family.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: &[u8],
    expires_at: OffsetDateTime,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, tenant_id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        tenant_id,
        user_id,
        family_id,
        token_hash,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Finds a token by its hash and locks it for this transaction.
pub async fn lock_by_hash(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<RefreshToken>> {
    Ok(sqlx::query_as!(
        RefreshToken,
        "SELECT id, tenant_id, user_id, family_id, expires_at, used_at, revoked_at
           FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        token_hash
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn mark_used(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query!("UPDATE refresh_tokens SET used_at = archer_now() WHERE id = $1", id).execute(conn).await?;
    Ok(())
}

/// Revokes every token of a family; returns how many were still live.
pub async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> Result<u64> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = archer_now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Revokes every token of a user (deactivation, password change).
pub async fn revoke_user(conn: &mut PgConnection, user_id: Uuid) -> Result<u64> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = archer_now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Counts a use of an expired access token at `now` (outside a transaction); `true` the first
/// time this token is seen (audit it then; later uses are only counted).
pub async fn count_expired_use(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    jti: Uuid,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO expired_token_uses AS e (jti, tenant_id, user_id, first_at, last_at) VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (jti) DO UPDATE SET uses = e.uses + 1, last_at = $4
           RETURNING e.uses = 1 AS "first!""#,
        jti,
        tenant_id,
        user_id,
        now
    )
    .fetch_one(conn)
    .await?)
}

/// Forgets counts of expired tokens first seen longer ago than `max_age` at `now` (housekeeping,
/// outside a transaction): such a token is audited again, once, if it is still being sent.
pub async fn expire_expired_token_uses(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    max_age: time::Duration,
) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM expired_token_uses WHERE first_at < $2::timestamptz - make_interval(secs => $1)",
        max_age.as_seconds_f64(),
        now
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
