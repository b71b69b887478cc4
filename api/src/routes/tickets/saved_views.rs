//! `/saved-views`: an agent's named ticket lists (the filters and sort of `GET /tickets`, as
//! its query string), private to their owner. The portal's queue offers them.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::saved_views;

use super::queries::TicketQuery;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath};
use crate::validate::{Errors, name_taken};

#[derive(Serialize, ToSchema)]
pub struct SavedView {
    id: Uuid,
    name: String,
    /// The query string of `GET /tickets` this view lists (without `cursor` or `page`).
    #[schema(example = "status=new&sort=sla_due_at")]
    query: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<saved_views::SavedView> for SavedView {
    fn from(v: saved_views::SavedView) -> Self {
        SavedView { id: v.id, name: v.name, query: v.query, created_at: v.created_at }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSavedView {
    #[schema(pattern = r"\S", max_length = 100)]
    name: String,
    /// Filters and sort as `GET /tickets` takes them; checked like that endpoint checks them.
    #[schema(max_length = 2000)]
    query: String,
}

/// My saved views, by name. Needs `ticket:update`.
#[utoipa::path(get, path = "/saved-views", tag = "tickets", security(("bearer" = [])), responses(
    (status = 200, body = Vec<SavedView>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_views(caller: Caller) -> ApiResult<Json<Vec<SavedView>>> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let views = saved_views::of_user(&mut tx, caller.user_id()).await?;
    tx.commit().await?;
    Ok(Json(views.into_iter().map(SavedView::from).collect()))
}

/// Save a view: a name (unique among mine) and the query string of `GET /tickets` it lists.
/// Needs `ticket:update`.
#[utoipa::path(post, path = "/saved-views", tag = "tickets", request_body = NewSavedView, security(("bearer" = [])), responses(
    (status = 201, body = SavedView),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no name, a name I already use, or a query `GET /tickets` refuses"),
))]
pub async fn create_view(
    caller: Caller,
    AppJson(body, _): AppJson<NewSavedView>,
) -> ApiResult<(StatusCode, Json<SavedView>)> {
    caller.require(Permission::TicketUpdate).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 100);
    let query = body.query.trim().trim_start_matches('?').to_owned();
    if query.chars().count() > 2000 {
        errors.add("/query", "length", "at most 2000 characters");
    } else if url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "cursor" || k == "page") {
        errors.add("/query", "paging", "a view lists from the start: no `cursor` or `page`");
    } else if let Err(e) = serde_urlencoded::from_str::<TicketQuery>(&query) {
        errors.add("/query", "query", format!("`GET /tickets` would refuse it: {e}"));
    }
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let view = saved_views::create(&mut tx, caller.tenant_id(), caller.user_id(), &name, &query)
        .await
        .map_err(|e| name_taken(e, "/name"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// Delete one of my saved views.
#[utoipa::path(delete, path = "/saved-views/{id}", tag = "tickets", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_view(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    let mut tx = caller.begin().await?;
    if !saved_views::delete(&mut tx, caller.user_id(), id).await? {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
