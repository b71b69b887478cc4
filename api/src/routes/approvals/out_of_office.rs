//! `/users/{user}/out-of-office`: a user's delegate while they are away. Approval steps that
//! start while it is active ask the delegate instead.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::{StoreError, TenantTx, approvals, users};

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath};
use crate::validate::Errors;

#[derive(Serialize, ToSchema)]
pub struct OutOfOffice {
    pub user_id: Uuid,
    /// Who is asked instead while it is active.
    pub delegate_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: OffsetDateTime,
    pub reason: Option<String>,
    /// Whether it is in force now.
    pub active: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutOfOfficeBody {
    delegate_id: Uuid,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    /// RFC 3339; after `starts_at`.
    #[schema(format = DateTime)]
    ends_at: String,
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// The user `user` names (`me`, or an id): one's own, or anyone's with `user:admin`.
async fn whose(caller: &Caller, user: &str) -> ApiResult<Uuid> {
    let id = if user == "me" { caller.user_id() } else { Uuid::parse_str(user).map_err(|_| ApiError::NotFound)? };
    if id != caller.user_id() {
        caller.require(Permission::UserAdmin).await?;
    }
    Ok(id)
}

/// A user's out-of-office delegation (`me` for yourself; others need `user:admin`).
#[utoipa::path(get, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path, description = "a user id or `me`")), security(("bearer" = [])), responses(
    (status = 200, body = OutOfOffice),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_out_of_office(caller: Caller, AppPath(user): AppPath<String>) -> ApiResult<Json<OutOfOffice>> {
    let id = whose(&caller, &user).await?;
    let mut tx = caller.begin().await?;
    let d = approvals::delegation(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let now = tx.now();
    tx.commit().await?;
    Ok(Json(ooo_view(d, now)))
}

fn ooo_view(d: approvals::Delegation, now: OffsetDateTime) -> OutOfOffice {
    OutOfOffice {
        user_id: d.user_id,
        delegate_id: d.delegate_id,
        starts_at: d.starts_at,
        ends_at: d.ends_at,
        reason: d.reason,
        active: d.starts_at <= now && now < d.ends_at,
    }
}

/// The body's instants and reason, checked as far as they go without the database.
struct Parsed {
    starts: Option<OffsetDateTime>,
    ends: Option<OffsetDateTime>,
    reason: Option<String>,
}

fn parse_body(id: Uuid, body: &OutOfOfficeBody) -> ApiResult<Parsed> {
    let mut errors = Errors::new();
    let parse = |errors: &mut Errors, ptr: &str, v: &str| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| errors.add(ptr, "format", "must be an RFC 3339 date-time"))
            .ok()
    };
    let starts = body.starts_at.as_deref().and_then(|s| parse(&mut errors, "/starts_at", s));
    let ends = parse(&mut errors, "/ends_at", &body.ends_at);
    let reason = body.reason.as_deref().map(|r| errors.text("/reason", r, 0, 500));
    if body.delegate_id == id {
        errors.add("/delegate_id", "conflict", "a delegate is someone else");
    }
    errors.into_result()?;
    Ok(Parsed { starts, ends, reason })
}

/// The delegate must be an active user of the tenant.
async fn check_delegate(tx: &mut TenantTx, delegate: Uuid) -> ApiResult<()> {
    match users::get(tx, delegate).await {
        Ok(u) if u.active => Ok(()),
        Ok(_) => Err(ApiError::field("/delegate_id", "inactive", "this user is deactivated")),
        Err(StoreError::NotFound) => Err(ApiError::field("/delegate_id", "unknown", "no such user")),
        Err(e) => Err(e.into()),
    }
}

/// Set a user's out-of-office delegate: while active, approval steps that start ask the
/// delegate instead (recorded on their decision as on behalf of the user).
#[utoipa::path(put, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path)), request_body = OutOfOfficeBody, security(("bearer" = [])), responses(
    (status = 200, body = OutOfOffice),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_out_of_office(
    caller: Caller,
    AppPath(user): AppPath<String>,
    AppJson(body, _): AppJson<OutOfOfficeBody>,
) -> ApiResult<Json<OutOfOffice>> {
    let id = whose(&caller, &user).await?;
    let Parsed { starts, ends, reason } = parse_body(id, &body)?;
    let mut tx = caller.begin().await?;
    let now = tx.now();
    let starts = starts.unwrap_or(now);
    let Some(ends) = ends else { return Err(ApiError::field("/ends_at", "required", "when does it end?")) };
    if ends <= starts {
        return Err(ApiError::field("/ends_at", "range", "ends after it starts"));
    }
    check_delegate(&mut tx, body.delegate_id).await?;
    if users::get(&mut tx, id).await.is_err() {
        return Err(ApiError::NotFound);
    }
    let d =
        approvals::set_delegation(&mut tx, caller.tenant_id(), id, body.delegate_id, starts, ends, reason.as_deref())
            .await?;
    tx.commit().await?;
    Ok(Json(ooo_view(d, now)))
}

/// End a user's out-of-office delegation.
#[utoipa::path(delete, path = "/users/{user}/out-of-office", tag = "approvals", params(("user" = String, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "cleared"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "another user's needs `user:admin`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_out_of_office(caller: Caller, AppPath(user): AppPath<String>) -> ApiResult<StatusCode> {
    let id = whose(&caller, &user).await?;
    let mut tx = caller.begin().await?;
    if !approvals::clear_delegation(&mut tx, id).await? {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
