//! `/sla`: business calendars and SLA policies (versioned; `sla:admin`), previews; and each
//! ticket's clocks, rebuilds and timeline.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::sla::calendar::CalendarSpec;
use archer_orchestrator::sla::engine::{ClockReport, SlaEngine};
use archer_orchestrator::sla::policy::{MatchInput, PolicySpec};
use archer_orchestrator::{Impact, Priority, Status, TicketKind, Urgency};
use archer_store::{StoreError, TenantTx, sla};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath, AppQuery, IdempotencyKey, RequestMeta};
use crate::idempotency;
use crate::validate::Errors;
use crate::views::sla::PolicyRef;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calendars, create_calendar))
        .routes(routes!(get_calendar, update_calendar, archive_calendar))
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, update_policy, deactivate_policy))
        .routes(routes!(preview))
}

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    spec: CalendarSpec,
}

/// Business calendars of the tenant.
#[utoipa::path(get, path = "/sla/calendars", tag = "sla", security(("bearer" = [])), responses((status = 200, body = Vec<Calendar>)))]
pub async fn list_calendars(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
) -> ApiResult<Json<Vec<Calendar>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
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
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CalendarBody>,
) -> ApiResult<Response> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let mut fields = errors.into_fields();
    if let Err(errs) = body.spec.compile() {
        fields.extend(calendar_errors("/spec", errs));
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    if let Some(replay) = idempotency::claim(&mut tx, &p, &key, "POST /sla/calendars", &digest).await? {
        return Ok(replay);
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let row = sla::create_calendar(&mut tx, p.tenant_id, Uuid::now_v7(), &name, &spec, Some(p.user_id))
        .await
        .map_err(|e| name_taken(e, "/name"))?;
    let location = format!("/api/v1/sla/calendars/{}", row.id);
    let resp =
        idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &Calendar::from(row), Some(&location)).await?;
    tx.commit().await?;
    Ok(resp)
}

fn name_taken(e: StoreError, pointer: &str) -> ApiError {
    match e {
        StoreError::Constraint { ref constraint, .. } if constraint.ends_with("_name") => {
            ApiError::field(pointer, "taken", "this name is already in use")
        }
        other => other.into(),
    }
}

/// One calendar (its current version).
#[utoipa::path(get, path = "/sla/calendars/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Calendar),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_calendar(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Calendar>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
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
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<CalendarUpdate>,
) -> ApiResult<Json<Calendar>> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    let mut fields = errors.into_fields();
    if let Some(Err(errs)) = body.spec.as_ref().map(CalendarSpec::compile) {
        fields.extend(calendar_errors("/spec", errs));
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let spec = body.spec.as_ref().map(serde_json::to_value).transpose().map_err(ApiError::internal)?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let c = sla::update_calendar(&mut tx, p.tenant_id, id, name.as_deref(), spec.as_ref(), Some(p.user_id))
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
pub async fn archive_calendar(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let users = sla::policies_using_calendar(&mut tx, id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!("policies use this calendar: {}", users.join(", "))));
    }
    sla::archive_calendar(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Policy {
    id: Uuid,
    name: String,
    /// Matching order: the first active policy that applies to a ticket wins.
    position: i32,
    version: i32,
    /// The calendar the targets count in; none for 24×7.
    calendar_id: Option<Uuid>,
    spec: PolicySpec,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl TryFrom<sla::PolicyRow> for Policy {
    type Error = ApiError;
    fn try_from(p: sla::PolicyRow) -> Result<Self, ApiError> {
        let spec = serde_json::from_value(p.spec).map_err(ApiError::internal)?;
        Ok(Policy {
            id: p.id,
            name: p.name,
            position: p.position,
            version: p.version,
            calendar_id: p.calendar_id,
            spec,
            updated_at: p.updated_at,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    position: Option<i32>,
    calendar_id: Option<Uuid>,
    spec: PolicySpec,
}

/// Checks a policy spec and what it refers to, every problem at once.
async fn check_policy(
    tx: &mut TenantTx,
    spec: &PolicySpec,
    calendar_id: Option<Uuid>,
    prefix: &str,
) -> ApiResult<Vec<FieldError>> {
    let mut fields = Vec::new();
    if let Err(errs) = spec.compile() {
        fields.extend(errs.into_iter().map(|e| FieldError::new(format!("{prefix}{}", e.pointer), e.code, e.message)));
    }
    if let Some(c) = calendar_id {
        match sla::calendar(tx, c).await {
            Ok(row) if !row.archived => {}
            Ok(_) | Err(StoreError::NotFound) => {
                fields.push(FieldError::new("/calendar_id", "unknown", "no such calendar"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (users, teams) = spec.ids_referenced();
    for u in users {
        if matches!(archer_store::users::get(tx, u).await, Err(StoreError::NotFound)) {
            fields.push(FieldError::new(format!("{prefix}/escalations"), "unknown", format!("no user {u}")));
        }
    }
    for t in teams {
        if matches!(archer_store::teams::get(tx, t).await, Err(StoreError::NotFound)) {
            fields.push(FieldError::new(prefix, "unknown", format!("no team {t}")));
        }
    }
    Ok(fields)
}

/// Active SLA policies in matching order.
#[utoipa::path(get, path = "/sla/policies", tag = "sla", security(("bearer" = [])), responses((status = 200, body = Vec<Policy>)))]
pub async fn list_policies(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
) -> ApiResult<Json<Vec<Policy>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let all = sla::policies(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Policy::try_from).collect::<ApiResult<_>>()?))
}

/// Create an SLA policy. Needs `sla:admin`. Accepts `Idempotency-Key`.
///
/// Every target needs a duration for each priority; conditions default per target (waiting on
/// the customer pauses every clock, first public agent reply or work starting stops first
/// response, resolving stops resolution and reopening resumes it).
#[utoipa::path(post, path = "/sla/policies", tag = "sla", request_body = PolicyBody, security(("bearer" = [])),
    params(IdempotencyKey), responses(
        (status = 201, body = Policy),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_policy(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<PolicyBody>,
) -> ApiResult<Response> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let mut fields = errors.into_fields();
    fields.extend(check_policy(&mut tx, &body.spec, body.calendar_id, "/spec").await?);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    if let Some(replay) = idempotency::claim(&mut tx, &p, &key, "POST /sla/policies", &digest).await? {
        return Ok(replay);
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let row = sla::create_policy(
        &mut tx,
        p.tenant_id,
        Uuid::now_v7(),
        &name,
        body.position,
        &spec,
        body.calendar_id,
        Some(p.user_id),
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    let location = format!("/api/v1/sla/policies/{}", row.id);
    let resp =
        idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &Policy::try_from(row)?, Some(&location)).await?;
    tx.commit().await?;
    Ok(resp)
}

/// One policy (its current version).
#[utoipa::path(get, path = "/sla/policies/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Policy),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_policy(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Policy>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let row = sla::policy(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row.try_into()?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    position: Option<i32>,
    /// A new spec (with its calendar) makes a new version.
    spec: Option<PolicySpec>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<Uuid>)]
    calendar_id: Option<Option<Uuid>>,
}

/// Rename, reorder or write a new version of a policy. Needs `sla:admin`. Tickets keep the
/// version they were created under unless an admin rebuilds their clocks.
#[utoipa::path(put, path = "/sla/policies/{id}", tag = "sla", params(("id" = Uuid, Path)), request_body = PolicyUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Policy),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_policy(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<PolicyUpdate>,
) -> ApiResult<Json<Policy>> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let current = sla::policy(&mut tx, id).await?;
    let mut fields = errors.into_fields();
    let new_spec = match (&body.spec, body.calendar_id) {
        (None, None) => None,
        (spec, cal) => {
            let spec = match spec {
                Some(s) => s.clone(),
                None => serde_json::from_value(current.spec.clone()).map_err(ApiError::internal)?,
            };
            let calendar = cal.unwrap_or(current.calendar_id);
            fields.extend(check_policy(&mut tx, &spec, calendar, "/spec").await?);
            Some((serde_json::to_value(&spec).map_err(ApiError::internal)?, calendar))
        }
    };
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let row = sla::update_policy(
        &mut tx,
        p.tenant_id,
        id,
        name.as_deref(),
        body.position,
        new_spec.as_ref().map(|(s, c)| (s, *c)),
        Some(p.user_id),
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(row.try_into()?))
}

/// Deactivate a policy: new tickets no longer match it; tickets pinned to it keep it.
#[utoipa::path(delete, path = "/sla/policies/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deactivated"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn deactivate_policy(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    p.require(&state, &meta, Permission::SlaAdmin).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    sla::deactivate_policy(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    kind: TicketKind,
    #[param(value_type = Impact)]
    impact: i64,
    #[param(value_type = Urgency)]
    urgency: i64,
    category: Option<String>,
    team: Option<Uuid>,
    /// RFC 3339; defaults to now.
    #[param(format = DateTime)]
    at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// None when no policy applies (no clocks would run).
    policy: Option<PolicyRef>,
    priority: Priority,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    targets: Vec<ClockReport>,
}

/// "If I create this ticket now, when is each target due?" Creates nothing.
#[utoipa::path(get, path = "/sla/preview", tag = "sla", params(PreviewQuery), security(("bearer" = [])), responses(
    (status = 200, body = Preview),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn preview(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppQuery(q): AppQuery<PreviewQuery>,
) -> ApiResult<Json<Preview>> {
    let mut errors = Errors::new();
    let impact = Impact::new(q.impact).map_err(|e| errors.add("?impact", "range", e.to_string())).ok();
    let urgency = Urgency::new(q.urgency).map_err(|e| errors.add("?urgency", "range", e.to_string())).ok();
    let at = match q.at.as_deref() {
        None => Some(Timestamp::now()),
        Some(s) => {
            s.parse::<Timestamp>().map_err(|_| errors.add("?at", "format", "must be an RFC 3339 date-time")).ok()
        }
    };
    errors.into_result()?;
    let (Some(impact), Some(urgency), Some(at)) = (impact, urgency, at) else { unreachable!("validated above") };
    let priority = Priority::derive(impact, urgency);
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let resolved =
        sla::resolve(&mut tx, &MatchInput { kind: q.kind, priority, category: q.category.as_deref(), team_id: q.team })
            .await?;
    tx.commit().await?;
    Ok(Json(match resolved {
        None => Preview { policy: None, priority, created_at: at, targets: Vec::new() },
        Some(r) => {
            let engine = SlaEngine::start(r.assignment.clone(), at, Status::New, priority);
            Preview {
                policy: Some(PolicyRef::from(&r.assignment)),
                priority,
                created_at: at,
                targets: engine.report(at),
            }
        }
    }))
}
