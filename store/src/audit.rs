//! The audit log: rows written by triggers for every mutation, and explicit events for what
//! is not a row change (refused logins, refused tokens, permission denials).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AuditContext, Result};

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub ip: Option<ipnet::IpNet>,
    pub detail: Option<String>,
}

/// An event that is not a row change.
pub struct Event<'a> {
    pub tenant_id: Uuid,
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: Option<String>,
    pub detail: Option<String>,
}

/// Records an event about a ticket that changes no row but has a before and an after (an
/// SLA rebuild).
pub async fn record_ticket_change(
    conn: &mut PgConnection,
    ctx: &AuditContext,
    e: Event<'_>,
    ticket_id: Uuid,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Result<()> {
    insert(conn, ctx, e, Some((ticket_id, before, after))).await
}

/// Everything the audit log holds about one ticket, oldest first: the ticket's own rows, its
/// comments and links, its SLA facts and escalations.
pub async fn ticket_history(conn: &mut PgConnection, ticket_id: Uuid, limit: i64) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as!(
        AuditEntry,
        "SELECT id, at, actor_id, action, entity_type, entity_id, before, after, request_id, ip, detail FROM audit_log
          WHERE ticket_id = $1
          ORDER BY id
          LIMIT $2",
        ticket_id,
        limit
    )
    .fetch_all(conn)
    .await?)
}

pub async fn record(conn: &mut PgConnection, ctx: &AuditContext, e: Event<'_>) -> Result<()> {
    insert(conn, ctx, e, None).await
}

/// One explicit audit row; `change` is the ticket it concerns with a before and an after.
async fn insert(
    conn: &mut PgConnection,
    ctx: &AuditContext,
    e: Event<'_>,
    change: Option<(Uuid, &serde_json::Value, &serde_json::Value)>,
) -> Result<()> {
    let ip = ctx.ip.map(ipnet::IpNet::from);
    let (ticket_id, before, after) = change.map_or((None, None, None), |(t, b, a)| (Some(t), Some(b), Some(a)));
    sqlx::query!(
        "INSERT INTO audit_log (tenant_id, actor_id, action, entity_type, entity_id, request_id, ip, detail, before, after,
                                ticket_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        e.tenant_id,
        ctx.actor_id,
        e.action,
        e.entity_type,
        e.entity_id,
        ctx.request_id,
        ip,
        e.detail,
        before,
        after,
        ticket_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Entries older than this id (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(conn: &mut PgConnection, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as!(
        AuditEntry,
        "SELECT id, at, actor_id, action, entity_type, entity_id, before, after, request_id, ip, detail
           FROM audit_log
          WHERE ($1::uuid IS NULL OR actor_id = $1)
            AND ($2::text IS NULL OR action = $2 OR action LIKE $2 || '.%')
            AND ($3::text IS NULL OR entity_type = $3)
            AND ($4::text IS NULL OR entity_id = $4)
            AND ($5::text IS NULL OR request_id = $5)
            AND ($6::timestamptz IS NULL OR at >= $6)
            AND ($7::timestamptz IS NULL OR at < $7)
            AND ($8::bigint IS NULL OR id < $8)
          ORDER BY id DESC
          LIMIT $9",
        f.actor_id,
        f.action,
        f.entity_type,
        f.entity_id,
        f.request_id,
        f.from,
        f.to,
        f.before_id,
        f.limit
    )
    .fetch_all(conn)
    .await?)
}
