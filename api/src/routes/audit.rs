//! `/audit`: the audit log, newest first.

use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::audit;

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::AppQuery;
use crate::validate::{self, Errors};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit)).routes(routes!(refused_links))
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    actor_id: Option<Uuid>,
    /// `<table>.insert|update|delete` for data changes; `auth.*`, `authz.*` for security events.
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    /// The changed columns before (updates) or the whole row (deletes).
    before: Option<serde_json::Value>,
    /// The changed columns after (updates) or the whole row (inserts).
    after: Option<serde_json::Value>,
    request_id: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<Uuid>,
    /// An exact action (`tickets.update`) or a prefix (`auth`).
    action: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<String>,
    request_id: Option<String>,
    /// RFC 3339; inclusive.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; exclusive.
    #[param(format = DateTime)]
    to: Option<String>,
    /// From a previous page's `next_cursor`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    cursor: Option<String>,
    /// Items per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

fn time_param(errors: &mut Errors, name: &str, v: Option<&str>) -> Option<OffsetDateTime> {
    let v = v?;
    match OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            errors.add(&format!("?{name}"), "format", "must be an RFC 3339 date-time, e.g. 2026-11-23T10:00:00Z");
            None
        }
    }
}

/// The audit log. Needs `audit:read`.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])), responses(
    (status = 200, body = AuditPage),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_audit(caller: Caller, AppQuery(q): AppQuery<AuditQuery>) -> ApiResult<Json<AuditPage>> {
    caller.require(Permission::AuditRead).await?;
    let filter = audit::AuditFilter::try_from(q)?;
    let mut tx = caller.begin().await?;
    let rows = audit::list(&mut tx, &filter).await?;
    tx.commit().await?;
    let next_cursor = validate::next_cursor(&rows, filter.limit, |r| r.id);
    Ok(Json(AuditPage { items: rows.into_iter().map(AuditEntry::from).collect(), next_cursor }))
}

impl TryFrom<AuditQuery> for audit::AuditFilter {
    type Error = ApiError;

    fn try_from(q: AuditQuery) -> Result<Self, ApiError> {
        let mut errors = Errors::new();
        let from = time_param(&mut errors, "from", q.from.as_deref());
        let to = time_param(&mut errors, "to", q.to.as_deref());
        let before_id = validate::cursor(&mut errors, q.cursor.as_deref());
        let limit = validate::limit(&mut errors, q.limit, 50, 500);
        errors.into_result()?;
        Ok(audit::AuditFilter {
            actor_id: q.actor,
            action: q.action,
            entity_type: q.entity_type,
            entity_id: q.entity_id,
            request_id: q.request_id,
            from,
            to,
            before_id,
            limit,
        })
    }
}

impl From<audit::AuditEntry> for AuditEntry {
    fn from(r: audit::AuditEntry) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor_id: r.actor_id,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            before: r.before,
            after: r.after,
            request_id: r.request_id,
            ip: r.ip.map(|ip| ip.addr().to_string()),
            detail: r.detail,
        }
    }
}

/// A decision link refused because its signature does not hold: recorded with what can be
/// known, since no tenant can be trusted from such a link.
#[derive(Serialize, ToSchema)]
pub struct RefusedLink {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    ip: Option<String>,
    request_id: Option<String>,
    /// Which page refused it: `confirm` (opening a link), `decide` (its form), `view`.
    page: String,
    reason: String,
    /// Whether the link claims this tenant. Unverified: the link's signature failed, so this
    /// is only what it says.
    claims_this_tenant: bool,
    /// The approver the link claims to be for (unverified).
    claimed_approver: Option<Uuid>,
    /// Who was signed in to this tenant when it was used (verified), if anyone.
    signed_in_user: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct RefusedLinkPage {
    items: Vec<RefusedLink>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RefusedLinkQuery {
    /// From a previous page's `next_cursor`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    cursor: Option<String>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Decision links refused because their signature failed (forged or changed), that claim this
/// tenant or were used by someone signed in to it. Needs `audit:read`. Refusals of authentic
/// links (expired, used, superseded…) are audit entries (`approval.link_refused`).
#[utoipa::path(get, path = "/audit/refused-links", tag = "audit", params(RefusedLinkQuery), security(("bearer" = [])), responses(
    (status = 200, body = RefusedLinkPage),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn refused_links(
    caller: Caller,
    AppQuery(q): AppQuery<RefusedLinkQuery>,
) -> ApiResult<Json<RefusedLinkPage>> {
    caller.require(Permission::AuditRead).await?;
    let mut errors = Errors::new();
    let before = validate::cursor(&mut errors, q.cursor.as_deref());
    let limit = validate::limit(&mut errors, q.limit, 50, 500);
    errors.into_result()?;
    let tenant = caller.tenant_id();
    // not tenant data (no tenant is proven by such a link): read as the owner, filtered here
    let mut conn =
        caller.state().pool.acquire().await.map_err(|e| ApiError::internal(archer_store::StoreError::from(e)))?;
    let rows = archer_store::security::refused_links_of(&mut conn, tenant, before, limit).await?;
    drop(conn);
    let next_cursor = validate::next_cursor(&rows, limit, |r| r.id);
    let items = rows
        .into_iter()
        .map(|r| RefusedLink {
            id: r.id,
            at: r.at,
            ip: r.ip.map(|ip| ip.addr().to_string()),
            request_id: r.request_id,
            page: r.page,
            reason: r.reason,
            claims_this_tenant: r.claimed_tenant_id == Some(tenant),
            claimed_approver: r.claimed_approver.filter(|_| r.claimed_tenant_id == Some(tenant)),
            signed_in_user: r.signed_in_user.filter(|_| r.signed_in_tenant == Some(tenant)),
        })
        .collect();
    Ok(Json(RefusedLinkPage { items, next_cursor }))
}
