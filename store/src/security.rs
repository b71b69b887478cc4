//! Security events that belong to no verified tenant: decision links whose signature fails.

use sqlx::PgConnection;
use std::net::IpAddr;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// A refused link, as far as it can be known.
#[derive(Debug, Clone)]
pub struct RefusedLink {
    /// When it was refused (the clock's instant; outside any transaction, so given).
    pub at: OffsetDateTime,
    pub ip: Option<IpAddr>,
    pub request_id: Option<String>,
    /// Which page refused it (`confirm`, `decide`, `view`).
    pub page: &'static str,
    pub reason: String,
    /// What the link's unverifiable payload says, if it could be read.
    pub claimed_tenant_id: Option<Uuid>,
    pub claimed_approver: Option<Uuid>,
    /// Who was signed in (a valid access token) when it was used.
    pub signed_in_user: Option<Uuid>,
    pub signed_in_tenant: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct RefusedLinkRow {
    pub id: i64,
    pub at: OffsetDateTime,
    pub ip: Option<ipnet::IpNet>,
    pub request_id: Option<String>,
    pub page: String,
    pub reason: String,
    pub claimed_tenant_id: Option<Uuid>,
    pub claimed_approver: Option<Uuid>,
    pub signed_in_user: Option<Uuid>,
    pub signed_in_tenant: Option<Uuid>,
}

/// Records a refused link (as the owner role: no tenant can be trusted from it).
pub async fn record_refused_link(conn: &mut PgConnection, r: &RefusedLink) -> Result<()> {
    sqlx::query!(
        "INSERT INTO refused_links (at, ip, request_id, page, reason, claimed_tenant_id, claimed_approver,
                                    signed_in_user, signed_in_tenant)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        r.at,
        r.ip.map(ipnet::IpNet::from),
        r.request_id,
        r.page,
        r.reason,
        r.claimed_tenant_id,
        r.claimed_approver,
        r.signed_in_user,
        r.signed_in_tenant
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Refused links that name `tenant` (unverified) or were used by someone signed in to it,
/// newest first, older than `before` when given.
pub async fn refused_links_of(
    conn: &mut PgConnection,
    tenant: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RefusedLinkRow>> {
    Ok(sqlx::query_as!(
        RefusedLinkRow,
        "SELECT id, at, ip, request_id, page, reason, claimed_tenant_id, claimed_approver, signed_in_user,
                signed_in_tenant
           FROM refused_links
          WHERE (claimed_tenant_id = $1 OR signed_in_tenant = $1) AND ($2::bigint IS NULL OR id < $2)
          ORDER BY id DESC
          LIMIT $3",
        tenant,
        before,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// Forgets refused links older than `max_age` at `now` (housekeeping, outside a transaction).
pub async fn expire_refused_links(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    max_age: time::Duration,
) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM refused_links WHERE at < $2::timestamptz - make_interval(secs => $1)",
        max_age.as_seconds_f64(),
        now
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
