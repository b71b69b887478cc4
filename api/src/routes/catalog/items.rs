//! Catalog items: what each caller may request (by category), and the versioned items with
//! their forms and chains (`catalog:admin` to change).

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::catalog::ItemSpec;
use archer_store::{StoreError, TenantTx, catalog, teams};

use super::categories::Category;
use crate::approvals::approver_errors;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath};
use crate::forms;
use crate::validate::{Errors, name_taken};

#[derive(Serialize, ToSchema)]
pub struct Item {
    id: Uuid,
    category_id: Uuid,
    name: String,
    /// Requests keep the version they were submitted against.
    version: i32,
    spec: ItemSpec,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl TryFrom<catalog::Item> for Item {
    type Error = ApiError;
    fn try_from(i: catalog::Item) -> Result<Self, ApiError> {
        let spec = serde_json::from_value(i.spec).map_err(ApiError::internal)?;
        Ok(Item {
            id: i.id,
            category_id: i.category_id,
            name: i.name,
            version: i.version,
            spec,
            updated_at: i.updated_at,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct CatalogCategory {
    #[serde(flatten)]
    category: Category,
    items: Vec<Item>,
}

/// What the caller may request, by category, each item with its form schema.
#[utoipa::path(get, path = "/catalog", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<CatalogCategory>)))]
pub async fn browse(caller: Caller) -> ApiResult<Json<Vec<CatalogCategory>>> {
    let mut tx = caller.begin().await?;
    let my_teams = teams::of_user(&mut tx, caller.user_id()).await?;
    let cats = catalog::categories(&mut tx).await?;
    let items = catalog::items(&mut tx).await?;
    tx.commit().await?;
    let mut out = Vec::new();
    for c in cats {
        let mut visible = Vec::new();
        for i in items.iter().filter(|i| i.category_id == c.id) {
            let item = Item::try_from(i.clone())?;
            if item.spec.audience.admits(&caller.principal.roles, &my_teams) {
                visible.push(item);
            }
        }
        if !visible.is_empty() {
            out.push(CatalogCategory { category: c.into(), items: visible });
        }
    }
    Ok(Json(out))
}

/// Every active item (for admins).
#[utoipa::path(get, path = "/catalog/items", tag = "catalog", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Item>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_items(caller: Caller) -> ApiResult<Json<Vec<Item>>> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut tx = caller.begin().await?;
    let all = catalog::items(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Item::try_from).collect::<ApiResult<_>>()?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    category_id: Uuid,
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    spec: ItemSpec,
}

/// Checks an item version: its form is a valid JSON Schema, its chain is valid, and whatever
/// it names exists in the tenant.
async fn check_item(tx: &mut TenantTx, spec: &ItemSpec) -> ApiResult<Vec<FieldError>> {
    let mut errors = forms::check_schema(&spec.form_schema, "/spec/form_schema");
    if let Some(chain) = &spec.approval {
        if let Err(errs) = chain.validate() {
            errors.extend(
                errs.into_iter().map(|e| FieldError::new(format!("/spec/approval{}", e.pointer), e.code, e.message)),
            );
        }
        errors.extend(approver_errors(tx, &[("/spec/approval".to_owned(), chain.clone())]).await?);
    }
    if let Some(owner) = spec.owner_id
        && matches!(archer_store::users::get(tx, owner).await, Err(StoreError::NotFound))
    {
        errors.push(FieldError::new("/spec/owner_id", "unknown", "no such user"));
    }
    // the fulfilment playbook is named, not required to exist yet: its catalog trigger names
    // this item, so one of the two is always saved first; a request whose item names no
    // published playbook is fulfilled by hand, as before
    if let Some(name) = &spec.playbook
        && !archer_store::connections::valid_name(name)
    {
        errors.push(FieldError::new(
            "/spec/playbook",
            "format",
            "a playbook name: 1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit",
        ));
    }
    Ok(errors)
}

/// Create a catalog item (version 1). Needs `catalog:admin`.
#[utoipa::path(post, path = "/catalog/items", tag = "catalog", request_body = ItemBody, security(("bearer" = [])), responses(
    (status = 201, body = Item),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "not a valid JSON Schema, a bad chain, unknown category"),
))]
pub async fn create_item(caller: Caller, AppJson(body, _): AppJson<ItemBody>) -> ApiResult<(StatusCode, Json<Item>)> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut e = Errors::new();
    let name = e.text("/name", &body.name, 1, 200);
    let mut errors = e.into_fields();
    let mut tx = caller.begin().await?;
    if matches!(catalog::category(&mut tx, body.category_id).await, Err(StoreError::NotFound)) {
        errors.push(FieldError::new("/category_id", "unknown", "no such category"));
    }
    errors.extend(check_item(&mut tx, &body.spec).await?);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let item = catalog::create_item(
        &mut tx,
        caller.tenant_id(),
        Uuid::now_v7(),
        body.category_id,
        &name,
        &spec,
        Some(caller.user_id()),
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(item.try_into()?)))
}

/// One item (its current version): any item for `catalog:admin`, otherwise only an active
/// item the caller may request (404 for the rest).
#[utoipa::path(get, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Item),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_item(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Item>> {
    let mut tx = caller.begin().await?;
    let row = catalog::item(&mut tx, id).await?;
    let active = row.active;
    let item: Item = row.try_into()?;
    // catalog admins see every item; anyone else only the active ones they may request, and
    // what they may not see does not exist for them (as everywhere else)
    if !caller.can(Permission::CatalogAdmin) {
        let my_teams = teams::of_user(&mut tx, caller.user_id()).await?;
        if !active || !item.spec.audience.admits(&caller.principal.roles, &my_teams) {
            return Err(ApiError::NotFound);
        }
    }
    tx.commit().await?;
    Ok(Json(item))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    category_id: Option<Uuid>,
    /// A new spec makes a new version; requests already submitted keep theirs.
    spec: Option<ItemSpec>,
}

/// Rename, move, or write a new version of an item. Needs `catalog:admin`.
#[utoipa::path(patch, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = ItemUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Item),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_item(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<ItemUpdate>,
) -> ApiResult<Json<Item>> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut e = Errors::new();
    let name = body.name.as_deref().map(|n| e.text("/name", n, 1, 200));
    let mut errors = e.into_fields();
    let mut tx = caller.begin().await?;
    if let Some(c) = body.category_id
        && matches!(catalog::category(&mut tx, c).await, Err(StoreError::NotFound))
    {
        errors.push(FieldError::new("/category_id", "unknown", "no such category"));
    }
    if let Some(spec) = &body.spec {
        errors.extend(check_item(&mut tx, spec).await?);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let spec = body.spec.as_ref().map(serde_json::to_value).transpose().map_err(ApiError::internal)?;
    let item = catalog::update_item(
        &mut tx,
        caller.tenant_id(),
        id,
        name.as_deref(),
        body.category_id,
        spec.as_ref(),
        Some(caller.user_id()),
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(item.try_into()?))
}

/// Withdraw an item from the catalog. Needs `catalog:admin`.
#[utoipa::path(delete, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "withdrawn"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn deactivate_item(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut tx = caller.begin().await?;
    catalog::deactivate_item(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
