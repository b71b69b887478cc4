//! `/users` and `/roles`: user administration.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::{approval_changes, tokens, users};

use crate::app::AppState;
use crate::auth::hash_password;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath, AppQuery, IdempotencyKey};
use crate::idempotency;
use crate::validate::{self, Errors};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, deactivate_user))
        .routes(routes!(set_roles))
        .routes(routes!(list_roles))
}

#[derive(Serialize, ToSchema)]
pub struct User {
    id: Uuid,
    email: String,
    display_name: String,
    active: bool,
    manager_id: Option<Uuid>,
    roles: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<users::User> for User {
    fn from(u: users::User) -> Self {
        User {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            active: u.active,
            manager_id: u.manager_id,
            roles: u.roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    items: Vec<User>,
    page: i64,
    limit: i64,
    total: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// Matches email or name.
    q: Option<String>,
    role: Option<String>,
    active: Option<bool>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// Items per page (default 25).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// Users of the tenant. Needs `user:admin` or `ticket:assign` (to pick an assignee).
#[utoipa::path(get, path = "/users", tag = "users", params(UserQuery), security(("bearer" = [])), responses(
    (status = 200, body = UserPage),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_users(caller: Caller, AppQuery(q): AppQuery<UserQuery>) -> ApiResult<Json<UserPage>> {
    if !caller.can(Permission::TicketAssign) {
        caller.require(Permission::UserAdmin).await?;
    }
    let mut errors = Errors::new();
    let (page, limit) = validate::page(&mut errors, q.page, q.limit);
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let (rows, total) = users::list(
        &mut tx,
        users::UserFilter {
            q: q.q.as_deref(),
            role: q.role.as_deref(),
            active: q.active,
            limit,
            offset: (page - 1) * limit,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(UserPage { items: rows.into_iter().map(User::from).collect(), page, limit, total }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(pattern = r"\S", max_length = 200)]
    display_name: String,
    /// At least 10 characters. Without one the user cannot log in until an admin sets it.
    #[schema(min_length = 10, max_length = 1024)]
    password: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    manager_id: Option<Uuid>,
}

/// Create a user. Needs `user:admin`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    params(IdempotencyKey), responses(
    (status = 201, body = User),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_user(
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CreateUser>,
) -> ApiResult<Response> {
    caller.require(Permission::UserAdmin).await?;
    let mut errors = Errors::new();
    let email = errors.email("/email", &body.email);
    let name = errors.text("/display_name", &body.display_name, 1, 200);
    if let Some(pw) = &body.password {
        errors.password("/password", pw);
    }
    errors.into_result()?;
    let hash = body.password.as_deref().map(hash_password).transpose()?;
    let mut tx = caller.begin().await?;
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /users", &digest).await? {
        return Ok(replay);
    }
    let id = Uuid::now_v7();
    users::create(
        &mut tx,
        users::NewUser {
            id,
            tenant_id: caller.tenant_id(),
            email: &email,
            display_name: &name,
            password_hash: hash.as_deref(),
            manager_id: body.manager_id,
        },
    )
    .await?;
    users::set_roles(&mut tx, caller.tenant_id(), id, &body.roles).await?;
    let user = User::from(users::get(&mut tx, id).await?);
    let location = format!("/api/v1/users/{id}");
    let resp =
        idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &user, Some(&location)).await?;
    tx.commit().await?;
    Ok(resp)
}

/// One user. Needs `user:admin` or `ticket:assign`, or to be that user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_user(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<User>> {
    if id != caller.user_id() && !caller.can(Permission::TicketAssign) {
        caller.require(Permission::UserAdmin).await?;
    }
    let mut tx = caller.begin().await?;
    let user = users::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(user.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    #[schema(pattern = r"\S", max_length = 200)]
    display_name: Option<String>,
    active: Option<bool>,
    /// `null` clears the manager.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<Uuid>)]
    manager_id: Option<Option<Uuid>>,
    #[schema(min_length = 10, max_length = 1024)]
    password: Option<String>,
}

/// Change a user. Needs `user:admin`. Deactivating a user or setting a password ends their
/// sessions (refresh tokens are revoked).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser, security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_user(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<UpdateUser>,
) -> ApiResult<Json<User>> {
    caller.require(Permission::UserAdmin).await?;
    let mut errors = Errors::new();
    let email = body.email.as_deref().map(|e| errors.email("/email", e));
    let name = body.display_name.as_deref().map(|n| errors.text("/display_name", n, 1, 200));
    if let Some(pw) = &body.password {
        errors.password("/password", pw);
    }
    if body.active == Some(false) && id == caller.user_id() {
        errors.add("/active", "self", "you cannot deactivate yourself");
    }
    if body.manager_id == Some(Some(id)) {
        errors.add("/manager_id", "self", "a user cannot be their own manager");
    }
    errors.into_result()?;
    let hash = body.password.as_deref().map(hash_password).transpose()?;
    let mut tx = caller.begin().await?;
    let user = users::update(
        &mut tx,
        id,
        users::UserPatch {
            display_name: name.as_deref(),
            email: email.as_deref(),
            active: body.active,
            manager_id: body.manager_id,
            password_hash: hash.as_deref(),
        },
    )
    .await?;
    if body.active == Some(false) || hash.is_some() {
        tokens::revoke_user(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(Json(user.into()))
}

/// Deactivate a user (users are never deleted: tickets and the audit log name them).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deactivated"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "you cannot deactivate yourself"),
))]
pub async fn deactivate_user(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<StatusCode> {
    caller.require(Permission::UserAdmin).await?;
    if id == caller.user_id() {
        return Err(ApiError::Conflict("you cannot deactivate yourself".into()));
    }
    let mut tx = caller.begin().await?;
    users::update(&mut tx, id, users::UserPatch { active: Some(false), ..Default::default() }).await?;
    tokens::revoke_user(&mut tx, id).await?;
    approval_changes::hand_over_tasks_of_deactivated(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignment {
    /// The complete set of roles the user should have.
    roles: Vec<String>,
}

/// Set a user's roles. Needs `user:admin`. Takes effect at the user's next token refresh.
#[utoipa::path(put, path = "/users/{id}/roles", tag = "users", params(("id" = Uuid, Path)), request_body = RoleAssignment, security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn set_roles(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<RoleAssignment>,
) -> ApiResult<Json<User>> {
    caller.require(Permission::UserAdmin).await?;
    let mut tx = caller.begin().await?;
    let known = users::roles(&mut tx).await?;
    let mut errors = Errors::new();
    for (i, r) in body.roles.iter().enumerate() {
        if !known.iter().any(|k| &k.name == r) {
            errors.add(&format!("/roles/{i}"), "unknown", format!("unknown role `{r}`"));
        }
    }
    if id == caller.user_id()
        && !body.roles.iter().any(|r| r == "admin")
        && caller.principal.roles.iter().any(|r| r == "admin")
    {
        errors.add("/roles", "self", "you cannot remove your own admin role");
    }
    errors.into_result()?;
    users::get(&mut tx, id).await?;
    users::set_roles(&mut tx, caller.tenant_id(), id, &body.roles).await?;
    let user = users::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(user.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Role {
    name: String,
    description: String,
    permissions: Vec<String>,
}

/// The built-in roles and the permissions each grants.
#[utoipa::path(get, path = "/roles", tag = "users", security(("bearer" = [])), responses((status = 200, body = Vec<Role>)))]
pub async fn list_roles(caller: Caller) -> ApiResult<Json<Vec<Role>>> {
    let mut tx = caller.begin().await?;
    let roles = users::roles(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        roles
            .into_iter()
            .map(|r| Role { name: r.name, description: r.description, permissions: r.permissions })
            .collect(),
    ))
}
