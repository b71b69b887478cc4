//! `/auth`: login, refresh, logout, me.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_store::{SystemTx, TenantTx, audit, teams, tenants, tokens, users};

use crate::app::AppState;
use crate::auth::{self, Principal, audit_refusal};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, RequestMeta};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(refresh)).routes(routes!(logout)).routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "agent@acme.example")]
    email: String,
    password: String,
    /// The tenant's slug; needed only when the same email has accounts in several tenants.
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A fresh pair of tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Short-lived JWT for `Authorization: Bearer`.
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Opaque, single-use: exchange it at `/auth/refresh` for a new pair.
    refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    refresh_expires_at: OffsetDateTime,
}

const BAD_CREDENTIALS: &str = "invalid email or password";

/// Log in with email and password.
///
/// Repeated failures lock the account for a while (429 with `Retry-After`). Every refusal that
/// concerns an existing account is audited.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the email exists in several tenants: name one"),
    (status = 429, body = Problem, content_type = "application/problem+json", description = "account locked"),
))]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req, _): AppJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut errors = Vec::new();
    if req.email.trim().is_empty() {
        errors.push(FieldError::new("/email", "required", "email is required"));
    }
    if req.password.is_empty() {
        errors.push(FieldError::new("/password", "required", "password is required"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal(archer_store::StoreError::from(e)))?;
    let accounts = users::find_for_login(&mut conn, req.email.trim(), req.tenant.as_deref()).await?;
    drop(conn);
    if accounts.is_empty() {
        // Spend the same time as a real check so that response times do not reveal accounts.
        let _ = auth::verify_password(&req.password, &state.dummy_hash);
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    let now = OffsetDateTime::now_utc();
    let mut matched = Vec::new();
    for account in &accounts {
        let ctx = meta.audit(Some(account.id));
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            audit_refusal(
                &state,
                &meta,
                account.tenant_id,
                Some(account.id),
                "auth.login_locked",
                "user",
                Some(account.id.to_string()),
                "login refused: account locked",
            )
            .await;
            if accounts.len() == 1 {
                return Err(ApiError::TooManyRequests {
                    detail: "too many failed logins: this account is locked for a while".into(),
                    retry_after_secs: (until - now).whole_seconds().max(1) as u64,
                });
            }
            continue;
        }
        let ok =
            account.active && account.password_hash.as_deref().is_some_and(|h| auth::verify_password(&req.password, h));
        if ok {
            matched.push(account);
            continue;
        }
        let mut tx = SystemTx::begin(&state.pool, Some(account.tenant_id), &ctx).await?;
        let locked = users::record_login_failure(
            &mut tx,
            account.id,
            state.config.login_max_failures,
            time::Duration::seconds(state.config.login_lockout_secs as i64),
        )
        .await?;
        let detail =
            if !account.active { "login refused: account deactivated" } else { "login refused: wrong password" };
        audit::record(
            &mut tx,
            &ctx,
            audit::Event {
                tenant_id: account.tenant_id,
                action: "auth.login_failed",
                entity_type: "user",
                entity_id: Some(account.id.to_string()),
                detail: Some(detail.into()),
            },
        )
        .await?;
        if locked.is_some() {
            audit::record(
                &mut tx,
                &ctx,
                audit::Event {
                    tenant_id: account.tenant_id,
                    action: "auth.account_locked",
                    entity_type: "user",
                    entity_id: Some(account.id.to_string()),
                    detail: Some(format!("locked after {} failed logins", state.config.login_max_failures)),
                },
            )
            .await?;
        }
        tx.commit().await?;
    }
    let account = match matched.as_slice() {
        [] => return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into())),
        [one] => *one,
        _ => return Err(ApiError::Conflict("this email has accounts in several tenants: send `tenant` too".into())),
    };
    let ctx = meta.audit(Some(account.id));
    let mut tx = SystemTx::begin(&state.pool, Some(account.tenant_id), &ctx).await?;
    users::record_login_success(&mut tx, account.id).await?;
    let pair = issue_pair(&state, &mut tx, account.id, account.tenant_id, &account.tenant_slug, Uuid::now_v7()).await?;
    audit::record(
        &mut tx,
        &ctx,
        audit::Event {
            tenant_id: account.tenant_id,
            action: "auth.login",
            entity_type: "user",
            entity_id: Some(account.id.to_string()),
            detail: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(pair))
}

async fn issue_pair(
    state: &AppState,
    tx: &mut SystemTx,
    user_id: Uuid,
    tenant_id: Uuid,
    tenant_slug: &str,
    family: Uuid,
) -> ApiResult<TokenResponse> {
    let user = users::get(tx, user_id).await?;
    let perms = users::permissions_of(tx, user_id).await?;
    let access_token = state.tokens.issue(user_id, tenant_id, tenant_slug, user.roles, perms)?;
    let (refresh_token, hash) = auth::new_refresh_token();
    let refresh_expires_at = OffsetDateTime::now_utc() + state.config.refresh_token_ttl();
    tokens::insert(tx, tenant_id, user_id, family, &hash, refresh_expires_at).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl().as_secs(),
        refresh_token,
        refresh_expires_at,
    })
}

/// Exchange a refresh token for a new pair.
///
/// Refresh tokens are single-use. Presenting one that was already used is taken as theft:
/// every token of that login is revoked and the refusal is audited.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req, _): AppJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let hash = auth::refresh_token_hash(&req.refresh_token);
    let mut tx = SystemTx::begin(&state.pool, None, &meta.audit(None)).await?;
    let Some(token) = tokens::lock_by_hash(&mut tx, &hash).await? else {
        return Err(ApiError::Unauthorized("unknown refresh token".into()));
    };
    let ctx = meta.audit(Some(token.user_id));
    let refuse = |action: &'static str, detail: &'static str| (action, detail);
    let refusal = if token.revoked_at.is_some() {
        Some(refuse("auth.refresh_revoked", "refresh token was revoked"))
    } else if token.used_at.is_some() {
        Some(refuse("auth.refresh_reused", "refresh token reused: every token of this login is revoked"))
    } else if token.expires_at <= OffsetDateTime::now_utc() {
        Some(refuse("auth.refresh_expired", "refresh token expired"))
    } else if !users::is_active(&mut tx, token.user_id).await? {
        Some(refuse("auth.refresh_inactive", "account deactivated"))
    } else {
        None
    };
    if let Some((action, detail)) = refusal {
        if action == "auth.refresh_reused" {
            tokens::revoke_family(&mut tx, token.family_id).await?;
        }
        audit::record(
            &mut tx,
            &ctx,
            audit::Event {
                tenant_id: token.tenant_id,
                action,
                entity_type: "user",
                entity_id: Some(token.user_id.to_string()),
                detail: Some(detail.into()),
            },
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::Unauthorized(detail.into()));
    }
    tokens::mark_used(&mut tx, token.id).await?;
    let tenant = tenants::by_id(&mut tx, token.tenant_id).await?;
    let pair = issue_pair(&state, &mut tx, token.user_id, token.tenant_id, &tenant.slug, token.family_id).await?;
    audit::record(
        &mut tx,
        &ctx,
        audit::Event {
            tenant_id: token.tenant_id,
            action: "auth.refresh",
            entity_type: "user",
            entity_id: Some(token.user_id.to_string()),
            detail: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// End a login: its refresh tokens stop working. The access token lapses at its expiry.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest, security(("bearer" = [])), responses(
    (status = 204, description = "logged out"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    principal: Principal,
    AppJson(req, _): AppJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let ctx = meta.audit(Some(principal.user_id));
    let mut tx = SystemTx::begin(&state.pool, Some(principal.tenant_id), &ctx).await?;
    let hash = auth::refresh_token_hash(&req.refresh_token);
    match tokens::lock_by_hash(&mut tx, &hash).await? {
        Some(t) if t.user_id == principal.user_id => {
            tokens::revoke_family(&mut tx, t.family_id).await?;
        }
        _ => return Err(ApiError::field("/refresh_token", "unknown", "not a refresh token of yours")),
    }
    audit::record(
        &mut tx,
        &ctx,
        audit::Event {
            tenant_id: principal.tenant_id,
            action: "auth.logout",
            entity_type: "user",
            entity_id: Some(principal.user_id.to_string()),
            detail: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The current user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    id: Uuid,
    email: String,
    display_name: String,
    tenant: TenantRef,
    roles: Vec<String>,
    permissions: Vec<String>,
    teams: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantRef {
    id: Uuid,
    slug: String,
    name: String,
}

/// Who the access token belongs to.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = Me),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub async fn me(State(state): State<AppState>, meta: RequestMeta, principal: Principal) -> ApiResult<Json<Me>> {
    let mut tx = TenantTx::begin(&state.pool, principal.tenant_id, &meta.audit(Some(principal.user_id))).await?;
    let user = users::get(&mut tx, principal.user_id).await?;
    let tenant = tenants::by_id(&mut tx, principal.tenant_id).await?;
    let teams = teams::of_user(&mut tx, principal.user_id).await?;
    tx.commit().await?;
    Ok(Json(Me {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        tenant: TenantRef { id: tenant.id, slug: tenant.slug, name: tenant.name },
        roles: principal.roles,
        permissions: principal.permissions,
        teams,
    }))
}
