//! SLA policies (versioned, in matching order): targets per priority, their conditions and
//! escalation levels.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::sla::policy::PolicySpec;
use archer_store::{StoreError, TenantTx, sla};

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::validate::{Errors, name_taken};

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
pub async fn list_policies(caller: Caller) -> ApiResult<Json<Vec<Policy>>> {
    let mut tx = caller.begin().await?;
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
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<PolicyBody>,
) -> ApiResult<Response> {
    caller.require(Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let mut tx = caller.begin().await?;
    let mut fields = errors.into_fields();
    fields.extend(check_policy(&mut tx, &body.spec, body.calendar_id, "/spec").await?);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /sla/policies", &digest).await? {
        return Ok(replay);
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let row = sla::create_policy(
        &mut tx,
        caller.tenant_id(),
        Uuid::now_v7(),
        &name,
        body.position,
        &spec,
        body.calendar_id,
        Some(caller.user_id()),
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    let location = format!("/api/v1/sla/policies/{}", row.id);
    let resp = idempotency::respond(
        &mut tx,
        &caller.principal,
        &key,
        StatusCode::CREATED,
        &Policy::try_from(row)?,
        Some(&location),
    )
    .await?;
    tx.commit().await?;
    Ok(resp)
}

/// One policy (its current version).
#[utoipa::path(get, path = "/sla/policies/{id}", tag = "sla", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Policy),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_policy(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Policy>> {
    let mut tx = caller.begin().await?;
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
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<PolicyUpdate>,
) -> ApiResult<Json<Policy>> {
    caller.require(Permission::SlaAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    let mut tx = caller.begin().await?;
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
        caller.tenant_id(),
        id,
        name.as_deref(),
        body.position,
        new_spec.as_ref().map(|(s, c)| (s, *c)),
        Some(caller.user_id()),
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
pub async fn deactivate_policy(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::SlaAdmin).await?;
    let mut tx = caller.begin().await?;
    sla::deactivate_policy(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
