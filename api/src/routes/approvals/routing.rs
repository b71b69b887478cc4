//! `/settings/change-routing`: which approval each change type gets when it enters
//! authorization.

use axum::Json;

use archer_orchestrator::access::Permission;
use archer_orchestrator::approval::ChainSpec;
use archer_orchestrator::catalog::{ChangeRouting, Route};
use archer_store::{approval_changes, approvals};

use crate::approvals::approver_errors;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::AppJson;

/// Which approval each change type gets when it enters authorization.
#[utoipa::path(get, path = "/settings/change-routing", tag = "approvals", security(("bearer" = [])), responses(
    (status = 200, body = ChangeRouting),
))]
pub async fn get_change_routing(caller: Caller) -> ApiResult<Json<ChangeRouting>> {
    let mut tx = caller.begin().await?;
    let r = approval_changes::routing(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(r))
}

/// Replace the change routing. Needs `catalog:admin`. Changes entering authorization from now
/// on use it; approvals already running keep their chain.
#[utoipa::path(put, path = "/settings/change-routing", tag = "approvals", request_body = ChangeRouting, security(("bearer" = [])), responses(
    (status = 200, body = ChangeRouting),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_change_routing(
    caller: Caller,
    AppJson(body, _): AppJson<ChangeRouting>,
) -> ApiResult<Json<ChangeRouting>> {
    caller.require(Permission::CatalogAdmin).await?;
    if let Err(errs) = body.validate() {
        return Err(ApiError::Validation(
            errs.into_iter().map(|e| FieldError::new(e.pointer, e.code, e.message)).collect(),
        ));
    }
    let mut tx = caller.begin().await?;
    let errors = approver_errors(&mut tx, &routing_chains(&body)).await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let routing = serde_json::to_value(&body).map_err(ApiError::internal)?;
    approvals::set_change_routing(&mut tx, caller.tenant_id(), &routing).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// The chains a routing runs, with the pointer each one's errors start with.
fn routing_chains(r: &ChangeRouting) -> Vec<(String, ChainSpec)> {
    [("standard", &r.standard), ("normal", &r.normal), ("emergency", &r.emergency)]
        .into_iter()
        .filter_map(|(n, route)| match route {
            Route::Chain(c) => Some((format!("/{n}/chain"), c.clone())),
            Route::AutoApprove { .. } => None,
        })
        .collect()
}
