//! `/connections`: where playbooks' `http.request` and `webhook.post` steps may send requests,
//! how they authenticate, and their secret (`playbook:admin`).
//!
//! The secret is write-only: it is encrypted by the store before it is kept, travels here only
//! as a `SecretString` (which never prints, so it cannot reach a log), and no response carries
//! it; they say `has_secret` instead.

use axum::Json;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_store::connections::{self as store, Auth, ConnectionError, ConnectionSpec};
use archer_store::{StoreError, TenantTx};

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath};

/// How a connection authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionAuth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(<username>:<secret>)`.
    Basic,
    /// `<header_name>: <secret>`.
    Header,
    /// Standard Webhooks signatures (`webhook-signature`) with the secret as the signing key.
    Webhook,
}

impl From<ConnectionAuth> for Auth {
    fn from(a: ConnectionAuth) -> Self {
        match a {
            ConnectionAuth::None => Auth::None,
            ConnectionAuth::Bearer => Auth::Bearer,
            ConnectionAuth::Basic => Auth::Basic,
            ConnectionAuth::Header => Auth::Header,
            ConnectionAuth::Webhook => Auth::Webhook,
        }
    }
}

impl From<Auth> for ConnectionAuth {
    fn from(a: Auth) -> Self {
        match a {
            Auth::None => ConnectionAuth::None,
            Auth::Bearer => ConnectionAuth::Bearer,
            Auth::Basic => ConnectionAuth::Basic,
            Auth::Header => ConnectionAuth::Header,
            Auth::Webhook => ConnectionAuth::Webhook,
        }
    }
}

/// A connection as it is shown: never its secret.
#[derive(Serialize, ToSchema)]
pub struct Connection {
    id: Uuid,
    /// What playbooks call it by (`connection: graph`, `{{secrets.graph}}`).
    name: String,
    /// Requests may go only to URLs under it.
    base_url: String,
    auth: ConnectionAuth,
    header_name: Option<String>,
    username: Option<String>,
    /// Whether a secret is set (it is never shown).
    has_secret: bool,
    /// Whether requests may reach loopback, private and link-local addresses.
    allow_private: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<store::Connection> for Connection {
    fn from(c: store::Connection) -> Self {
        Connection {
            id: c.id,
            name: c.name,
            base_url: c.base_url,
            auth: c.auth.into(),
            header_name: c.header_name,
            username: c.username,
            has_secret: c.secret_set,
            allow_private: c.allow_private,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The longest secret accepted, in characters (as the document's `maxLength` counts).
const MAX_SECRET_CHARS: usize = 4096;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// 1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    name: String,
    /// An absolute `http` or `https` URL without credentials, query or fragment.
    #[schema(max_length = 2000)]
    base_url: String,
    auth: ConnectionAuth,
    /// For auth `header`: the header that carries the secret.
    header_name: Option<String>,
    /// For auth `basic`.
    username: Option<String>,
    /// Write-only: required unless auth is `none`; encrypted at rest, never shown again.
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 4096)]
    secret: Option<SecretString>,
    /// Off by default: a playbook must not reach the internal network by accident.
    #[serde(default)]
    allow_private: bool,
}

/// The secret's own checks: present exactly when the auth uses one, of a sane size.
fn secret_errors(auth: Auth, secret: Option<&SecretString>, required: bool) -> Vec<FieldError> {
    match secret.map(|s| s.expose_secret().chars().count()) {
        Some(_) if auth == Auth::None => vec![FieldError::new("/secret", "unused", "auth `none` takes no secret")],
        Some(0) => vec![FieldError::new("/secret", "required", "must not be empty")],
        Some(n) if n > MAX_SECRET_CHARS => {
            vec![FieldError::new("/secret", "length", format!("at most {MAX_SECRET_CHARS} characters"))]
        }
        None if required && auth != Auth::None => {
            vec![FieldError::new("/secret", "required", "this auth needs a secret")]
        }
        _ => Vec::new(),
    }
}

/// A store refusal as the API answers it: bad fields as 422 with their pointers, a duplicate
/// name as `/name` taken.
fn refused(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::Invalid(problems) => ApiError::Validation(
            problems.into_iter().map(|p| FieldError::new(p.pointer, "invalid", p.message)).collect(),
        ),
        ConnectionError::Store(StoreError::Constraint { constraint, .. }) if constraint.contains("name") => {
            ApiError::field("/name", "taken", "a connection with this name already exists")
        }
        ConnectionError::Store(s) => s.into(),
        ConnectionError::Secret(s) => ApiError::internal(s),
    }
}

/// A connection by id or by name.
async fn find(tx: &mut TenantTx, reference: &str) -> ApiResult<store::Connection> {
    Ok(match Uuid::parse_str(reference) {
        Ok(id) => store::get(tx, id).await?,
        Err(_) => store::get_by_name(tx, reference).await?,
    })
}

/// Create a connection. Needs `playbook:admin`.
#[utoipa::path(post, path = "/connections", tag = "playbooks", request_body = NewConnection, security(("bearer" = [])), responses(
    (status = 201, body = Connection),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "a bad name, URL or auth, a missing secret, a name taken"),
))]
pub async fn create_connection(
    caller: Caller,
    AppJson(body, _): AppJson<NewConnection>,
) -> ApiResult<(StatusCode, Json<Connection>)> {
    caller.require(Permission::PlaybookAdmin).await?;
    let spec = ConnectionSpec {
        base_url: body.base_url,
        auth: body.auth.into(),
        header_name: body.header_name,
        username: body.username,
        allow_private: body.allow_private,
    };
    let mut errors: Vec<FieldError> = store::check(Some(&body.name), &spec)
        .into_iter()
        .map(|p| FieldError::new(p.pointer, "invalid", p.message))
        .collect();
    errors.extend(secret_errors(spec.auth, body.secret.as_ref(), true));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = caller.begin().await?;
    let created =
        store::create(&mut tx, caller.tenant_id(), &caller.state().secrets, &body.name, &spec, body.secret.as_ref())
            .await
            .map_err(refused)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The tenant's connections, by name. Needs `playbook:admin`.
#[utoipa::path(get, path = "/connections", tag = "playbooks", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Connection>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_connections(caller: Caller) -> ApiResult<Json<Vec<Connection>>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let all = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Connection::from).collect()))
}

/// One connection, by id or name. Needs `playbook:admin`.
#[utoipa::path(get, path = "/connections/{connection}", tag = "playbooks", params(("connection" = String, Path, description = "id or name")), security(("bearer" = [])), responses(
    (status = 200, body = Connection),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_connection(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Connection>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let c = find(&mut tx, &reference).await?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionUpdate {
    #[schema(max_length = 2000)]
    base_url: Option<String>,
    auth: Option<ConnectionAuth>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    header_name: Option<Option<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    username: Option<Option<String>>,
    /// Write-only: a new secret replaces the one set; `null` removes it; left out, it is kept.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 4096)]
    secret: Option<Option<SecretString>>,
    allow_private: Option<bool>,
}

/// Change a connection (its name stays: playbooks call it by it). Needs `playbook:admin`.
#[utoipa::path(patch, path = "/connections/{connection}", tag = "playbooks", params(("connection" = String, Path, description = "id or name")), request_body = ConnectionUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Connection),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "a bad URL or auth"),
))]
pub async fn update_connection(
    caller: Caller,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<ConnectionUpdate>,
) -> ApiResult<Json<Connection>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let current = find(&mut tx, &reference).await?;
    let spec = ConnectionSpec {
        base_url: body.base_url.unwrap_or(current.base_url),
        auth: body.auth.map_or(current.auth, Auth::from),
        header_name: body.header_name.unwrap_or(current.header_name),
        username: body.username.unwrap_or(current.username),
        allow_private: body.allow_private.unwrap_or(current.allow_private),
    };
    let secret = body.secret.as_ref().map(Option::as_ref);
    let mut errors: Vec<FieldError> =
        store::check(None, &spec).into_iter().map(|p| FieldError::new(p.pointer, "invalid", p.message)).collect();
    errors.extend(secret_errors(spec.auth, secret.flatten(), false));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let cipher = &caller.state().secrets;
    let mut updated = store::update(&mut tx, current.id, cipher, &spec, secret.flatten()).await.map_err(refused)?;
    if matches!(secret, Some(None)) || (spec.auth == Auth::None && updated.secret_set) {
        updated = store::clear_secret(&mut tx, current.id).await?;
    }
    tx.commit().await?;
    Ok(Json(updated.into()))
}

/// Delete a connection (steps naming it then fail). Needs `playbook:admin`.
#[utoipa::path(delete, path = "/connections/{connection}", tag = "playbooks", params(("connection" = String, Path, description = "id or name")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_connection(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let c = find(&mut tx, &reference).await?;
    store::delete(&mut tx, c.id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
