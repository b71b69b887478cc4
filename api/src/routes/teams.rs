//! `/teams`: teams and their members.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::{StoreError, teams, users};

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::validate::Errors;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_teams, create_team))
        .routes(routes!(get_team, update_team, delete_team))
        .routes(routes!(add_member, remove_member))
}

#[derive(Serialize, ToSchema)]
pub struct Team {
    id: Uuid,
    name: String,
    description: String,
    /// User ids of the members.
    members: Vec<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<teams::Team> for Team {
    fn from(t: teams::Team) -> Self {
        Team {
            id: t.id,
            name: t.name,
            description: t.description,
            members: t.members,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Every team of the tenant (any signed-in user may see them).
#[utoipa::path(get, path = "/teams", tag = "teams", security(("bearer" = [])), responses((status = 200, body = Vec<Team>)))]
pub async fn list_teams(caller: Caller) -> ApiResult<Json<Vec<Team>>> {
    let mut tx = caller.begin().await?;
    let all = teams::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Team::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    #[serde(default)]
    members: Vec<Uuid>,
}

/// Create a team. Needs `user:admin`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/teams", tag = "teams", request_body = CreateTeam, security(("bearer" = [])),
    params(IdempotencyKey), responses(
    (status = 201, body = Team),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_team(
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CreateTeam>,
) -> ApiResult<Response> {
    caller.require(Permission::UserAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let description = errors.text("/description", &body.description, 0, 2000);
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /teams", &digest).await? {
        return Ok(replay);
    }
    let id = Uuid::now_v7();
    teams::create(&mut tx, caller.tenant_id(), id, &name, &description).await?;
    for (i, member) in body.members.iter().enumerate() {
        teams::add_member(&mut tx, caller.tenant_id(), id, *member)
            .await
            .map_err(|e| member_error(e, &format!("/members/{i}")))?;
    }
    let team = Team::from(teams::get(&mut tx, id).await?);
    let location = format!("/api/v1/teams/{id}");
    let resp =
        idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &team, Some(&location)).await?;
    tx.commit().await?;
    Ok(resp)
}

fn member_error(e: StoreError, pointer: &str) -> ApiError {
    match e {
        StoreError::Constraint { .. } => ApiError::field(pointer, "unknown", "no such user"),
        other => other.into(),
    }
}

/// One team.
#[utoipa::path(get, path = "/teams/{id}", tag = "teams", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Team),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_team(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Team>> {
    let mut tx = caller.begin().await?;
    let team = teams::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(team.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
}

/// Rename or describe a team. Needs `user:admin`.
#[utoipa::path(patch, path = "/teams/{id}", tag = "teams", params(("id" = Uuid, Path)), request_body = UpdateTeam, security(("bearer" = [])), responses(
    (status = 200, body = Team),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_team(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<UpdateTeam>,
) -> ApiResult<Json<Team>> {
    caller.require(Permission::UserAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    let description = body.description.as_deref().map(|d| errors.text("/description", d, 0, 2000));
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let team = teams::update(&mut tx, id, name.as_deref(), description.as_deref()).await?;
    tx.commit().await?;
    Ok(Json(team.into()))
}

/// Delete a team that no ticket names. Needs `user:admin`.
#[utoipa::path(delete, path = "/teams/{id}", tag = "teams", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "tickets still belong to the team"),
))]
pub async fn delete_team(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::UserAdmin).await?;
    let mut tx = caller.begin().await?;
    match teams::delete(&mut tx, id).await {
        Err(StoreError::Constraint { .. }) => {
            return Err(ApiError::Conflict("tickets still belong to this team; reassign them first".into()));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a member. Needs `user:admin`.
#[utoipa::path(put, path = "/teams/{id}/members/{user_id}", tag = "teams", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Team),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn add_member(caller: Caller, AppPath((id, user_id)): AppPath<(Uuid, Uuid)>) -> ApiResult<Json<Team>> {
    caller.require(Permission::UserAdmin).await?;
    let mut tx = caller.begin().await?;
    teams::get(&mut tx, id).await?;
    users::get(&mut tx, user_id).await?;
    teams::add_member(&mut tx, caller.tenant_id(), id, user_id).await?;
    let team = teams::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(team.into()))
}

/// Remove a member. Needs `user:admin`.
#[utoipa::path(delete, path = "/teams/{id}/members/{user_id}", tag = "teams", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Team),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn remove_member(caller: Caller, AppPath((id, user_id)): AppPath<(Uuid, Uuid)>) -> ApiResult<Json<Team>> {
    caller.require(Permission::UserAdmin).await?;
    let mut tx = caller.begin().await?;
    teams::remove_member(&mut tx, id, user_id).await?;
    let team = teams::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(team.into()))
}
