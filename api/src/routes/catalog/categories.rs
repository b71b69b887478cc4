//! Catalog categories: listing them, and changing them (`catalog:admin`).

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::{StoreError, catalog};

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath};
use crate::validate::{Errors, name_taken};

#[derive(Serialize, ToSchema)]
pub struct Category {
    id: Uuid,
    name: String,
    description: String,
    icon: Option<String>,
    position: i32,
}

impl From<catalog::Category> for Category {
    fn from(c: catalog::Category) -> Self {
        Category { id: c.id, name: c.name, description: c.description, icon: c.icon, position: c.position }
    }
}

/// Every category (for admins).
#[utoipa::path(get, path = "/catalog/categories", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<Category>)))]
pub async fn list_categories(caller: Caller) -> ApiResult<Json<Vec<Category>>> {
    let mut tx = caller.begin().await?;
    let all = catalog::categories(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Category::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    icon: Option<String>,
    #[serde(default)]
    position: i32,
}

/// Create a category. Needs `catalog:admin`.
#[utoipa::path(post, path = "/catalog/categories", tag = "catalog", request_body = CategoryBody, security(("bearer" = [])), responses(
    (status = 201, body = Category),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_category(
    caller: Caller,
    AppJson(body, _): AppJson<CategoryBody>,
) -> ApiResult<(StatusCode, Json<Category>)> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let description = errors.text("/description", &body.description, 0, 2000);
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let c = catalog::create_category(
        &mut tx,
        caller.tenant_id(),
        Uuid::now_v7(),
        &name,
        &description,
        body.icon.as_deref(),
        body.position,
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    icon: Option<Option<String>>,
    position: Option<i32>,
}

/// Change a category. Needs `catalog:admin`.
#[utoipa::path(patch, path = "/catalog/categories/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = CategoryUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Category),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_category(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<CategoryUpdate>,
) -> ApiResult<Json<Category>> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let c = catalog::update_category(
        &mut tx,
        id,
        name.as_deref(),
        body.description.as_deref(),
        body.icon.as_ref().map(|i| i.as_deref()),
        body.position,
    )
    .await
    .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

/// Delete an empty category. Needs `catalog:admin`.
#[utoipa::path(delete, path = "/catalog/categories/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "items still belong to it"),
))]
pub async fn delete_category(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::CatalogAdmin).await?;
    let mut tx = caller.begin().await?;
    match catalog::delete_category(&mut tx, id).await {
        Err(StoreError::Constraint { .. }) => {
            return Err(ApiError::Conflict("items still belong to this category".into()));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
