//! Business calendars (versioned): an IANA time zone, weekly working intervals and holidays.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::sla::calendar::CalendarSpec;
use archer_store::sla;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::validate::{Errors, name_taken};

#[derive(Serialize, ToSchema)]
pub struct Calendar {
    id: Uuid,
    name: String,
    /// Each change makes a new version; tickets keep the version they were created under.
    version: i32,
    spec: CalendarSpec,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<sla::CalendarRow> for Calendar {
    fn from(c: sla::CalendarRow) -> Self {
        let spec = serde_json::from_value(c.spec).unwrap_or_else(|_| CalendarSpec::always());
        Calendar { id: c.id, name: c.name, version: c.version, spec, updated_at: c.updated_at }
    }
}

fn calendar_errors(prefix: &str, errs: Vec<archer_orchestrator::sla::calendar::CalendarError>) -> Vec<FieldError> {
    errs.into_iter().map(|e| FieldError::new(format!("{prefix}{}", e.pointer), e.code, e.message)).collect()
}

/// Checks a calendar's name and spec (each when given), every problem at once; returns the
/// trimmed name.
fn checked_calendar(name: Option<&str>, spec: Option<&CalendarSpec>) -> ApiResult<Option<String>> {
    let mut errors = Errors::new();
    let name = name.map(|n| errors.text("/name", n, 1, 200));
    let mut fields = errors.into_fields();
    if let Some(Err(errs)) = spec.map(CalendarSpec::compile) {
        fields.extend(calendar_errors("/spec", errs));
    }
    if fields.is_empty() { Ok(name) } else { Err(ApiError::Validation(fields)) }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    spec: CalendarSpec,
}

/// Business calendars of the tenant.
#[utoipa::path(get, path = "/sla/calendars", tag = "sla", security(("bearer" = [])), responses((status = 200, body = Vec<Calendar>)))]
pub async fn list_calendars(caller: Caller) -> ApiResult<Json<Vec<Calendar>>> {
    let mut tx = caller.begin().await?;
    let all = sla::calendars(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Calendar::from).collect()))
}

/// Create a business calendar: an IANA time zone, weekly working intervals and holidays.
/// Needs `sla:admin`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/sla/calendars", tag = "sla", request_body = CalendarBody, security(("bearer" = [])),
    params(IdempotencyKey), responses(
        (status = 201, body = Calendar),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown time zone, overlapping intervals, bad times or dates"),
    ))]
pub async fn create_calendar(
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CalendarBody>,
) -> ApiResult<Response> {
    caller.require(Permission::SlaAdmin).await?;
    let name = checked_calendar(Some(&body.name), Some(&body.spec))?.unwrap_or_default();
    let mut tx = caller.begin().await?;
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /sla/calendars", &digest).await? {
        return Ok(replay);
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let row = sla::create_calendar(&mut tx, caller.tenant_id(), Uuid::now_v7(), &name, &spec, Some(caller.user_id()))
        .await
        .map_err(|e| name_taken(e, "/name"))?;
    let location = format!("/api/v1/sla/calendars/{}", row.id);
    let resp = idempotency::respond(
        &mut tx,
        &caller.principal,
        &key,
        StatusCode::CREATED,
        &Calendar::from(row),
        Some(&location),
    )
    .await?;
    tx.commit().await?;
    Ok(resp)
}

/// One calendar (its current version).
#[utoipa::path(get, path = "/sla/calendars/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Calendar),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_calendar(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Calendar>> {
    let mut tx = caller.begin().await?;
    let c = sla::calendar(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    /// A new spec makes a new version.
    spec: Option<CalendarSpec>,
}

/// Rename a calendar or write a new version of it. Needs `sla:admin`. Running tickets keep
/// the version they were created under until an admin rebuilds their clocks.
#[utoipa::path(put, path = "/sla/calendars/{id}", tag = "sla", params(("id" = Uuid, Path)), request_body = CalendarUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Calendar),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_calendar(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<CalendarUpdate>,
) -> ApiResult<Json<Calendar>> {
    caller.require(Permission::SlaAdmin).await?;
    let name = checked_calendar(body.name.as_deref(), body.spec.as_ref())?;
    let spec = body.spec.as_ref().map(serde_json::to_value).transpose().map_err(ApiError::internal)?;
    let mut tx = caller.begin().await?;
    let c =
        sla::update_calendar(&mut tx, caller.tenant_id(), id, name.as_deref(), spec.as_ref(), Some(caller.user_id()))
            .await
            .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

/// Archive a calendar no active policy uses. Needs `sla:admin`.
#[utoipa::path(delete, path = "/sla/calendars/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "archived"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "policies use it"),
))]
pub async fn archive_calendar(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::SlaAdmin).await?;
    let mut tx = caller.begin().await?;
    let users = sla::policies_using_calendar(&mut tx, id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!("policies use this calendar: {}", users.join(", "))));
    }
    sla::archive_calendar(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
