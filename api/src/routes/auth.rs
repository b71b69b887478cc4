//! `/auth`: login, refresh, logout, me.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_store::{SystemTx, audit, teams, tenants, tokens, users};

use std::sync::Arc;

use axum::response::IntoResponse;
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::app::AppState;
use crate::auth::{self, Principal, audit_refusal};
use crate::caller::Caller;
use crate::config::Config;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, RequestMeta};

pub fn router(config: &Config) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .layer(login_rate_limit(config))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Per client address: `login_rate_burst` logins at once, then `login_rate_per_minute`, so one
/// address cannot spray passwords over many accounts (each email has its own lockout too).
pub(crate) fn login_rate_limit(
    config: &Config,
) -> GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware<QuantaInstant>, axum::body::Body> {
    let period_ms = (60_000 / u64::from(config.login_rate_per_minute.max(1))).max(1);
    let governor = GovernorConfigBuilder::default()
        .per_millisecond(period_ms)
        .burst_size(config.login_rate_burst.max(1))
        .finish()
        .map(Arc::new)
        .unwrap_or_default();
    // forget addresses that have been quiet for a while, so the table stays small
    let limiter = Arc::clone(governor.limiter());
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limiter.retain_recent();
            }
        });
    }
    GovernorLayer::new(governor).error_handler(|e| match e {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::TooManyRequests {
            detail: "too many logins from this address: wait and try again".into(),
            retry_after_secs: wait_time.max(1),
        }
        .into_response(),
        other => ApiError::internal(other).into_response(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "agent@acme.example", pattern = r"\S")]
    email: String,
    #[schema(min_length = 1)]
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
/// `login_max_failures` failed attempts for an email, known or not, lock it for
/// `login_lockout_secs` (429 with `Retry-After`): no more passwords are checked for it until
/// then, whatever the concurrency. Each address may try `login_rate_burst` logins at once, then
/// `login_rate_per_minute` (429 with `Retry-After`). An unknown email, a deactivated account,
/// one without a password and a wrong password get the same answer in the same time. Every
/// refusal that concerns an existing account is audited.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the email exists in several tenants: name one"),
    (status = 429, body = Problem, content_type = "application/problem+json"),
))]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req, _): AppJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    req.check()?;
    // One slot per attempt, reserved before anything is checked (see users::reserve_login_attempt):
    // unknown emails are counted and locked like known ones, so neither the status, the body
    // nor the time of a refusal says whether an account exists.
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal(archer_store::StoreError::from(e)))?;
    let now = state.pool.now();
    let gate = users::reserve_login_attempt(
        &mut conn,
        now,
        &req.email,
        state.config.login_max_failures,
        time::Duration::seconds(state.config.login_lockout_secs as i64),
    )
    .await?;
    let accounts = users::find_for_login(&mut conn, req.email.trim(), req.tenant.as_deref()).await?;
    drop(conn);
    let locks = match gate {
        users::LoginGate::Locked { until } => {
            refuse_locked(&state, &meta, &accounts).await;
            return Err(locked(until, now));
        }
        users::LoginGate::Open { locks } => locks,
    };
    let matched = check_password(&state, &meta, &req.password, &accounts, locks).await?;
    let account = match matched.as_slice() {
        [] => return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into())),
        [one] => *one,
        _ => return Err(ApiError::Conflict("this email has accounts in several tenants: send `tenant` too".into())),
    };
    let ctx = meta.audit(Some(account.id));
    let mut tx = SystemTx::begin(&state.pool, Some(account.tenant_id), &ctx).await?;
    users::clear_login_attempts(&mut tx, &req.email).await?;
    let pair = issue_pair(&state, &mut tx, account.id, account.tenant_id, &account.tenant_slug, Uuid::now_v7()).await?;
    audit::record(&mut tx, &ctx, user_event(account.tenant_id, account.id, "auth.login", None)).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

impl LoginRequest {
    /// Both fields are there (checked before an attempt is counted).
    fn check(&self) -> ApiResult<()> {
        let mut errors = Vec::new();
        if self.email.trim().is_empty() {
            errors.push(FieldError::new("/email", "required", "email is required"));
        }
        if self.password.is_empty() {
            errors.push(FieldError::new("/password", "required", "password is required"));
        }
        if errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(errors)) }
    }
}

/// A locked email's attempt checks nothing; each account it names gets an audited refusal.
async fn refuse_locked(state: &AppState, meta: &RequestMeta, accounts: &[users::LoginAccount]) {
    for account in accounts {
        audit_refusal(
            state,
            meta,
            account.tenant_id,
            Some(account.id),
            "auth.login_locked",
            "user",
            Some(account.id.to_string()),
            "login refused: too many failed logins for this email",
        )
        .await;
    }
}

/// The accounts `password` opens among those the email names. Every account costs the same
/// (a hash check and a transaction), known or not, active or not, so the time of an answer
/// reveals nothing; each refusal of an existing account is audited, with the lock this attempt
/// starts when `locks`.
async fn check_password<'a>(
    state: &AppState,
    meta: &RequestMeta,
    password: &str,
    accounts: &'a [users::LoginAccount],
    locks: bool,
) -> ApiResult<Vec<&'a users::LoginAccount>> {
    let mut matched = Vec::new();
    if accounts.is_empty() {
        // Spend the same time as a real check (the hash, and a transaction like the one that
        // audits a refusal) so that response times do not reveal accounts.
        let _ = auth::verify_password(password, &state.dummy_hash);
        SystemTx::begin(&state.pool, None, &meta.audit(None)).await?.commit().await?;
    }
    for account in accounts {
        // deactivated and password-less accounts are checked against the dummy hash: same time
        let hash = account.password_hash.as_deref().filter(|_| account.active).unwrap_or(&state.dummy_hash);
        let ok = auth::verify_password(password, hash) && account.active && account.password_hash.is_some();
        if ok {
            matched.push(account);
        } else {
            audit_failed(state, meta, account, locks).await?;
        }
    }
    Ok(matched)
}

/// Audits a refused login of `account` (why), and the lock it starts when `locks`.
async fn audit_failed(
    state: &AppState,
    meta: &RequestMeta,
    account: &users::LoginAccount,
    locks: bool,
) -> ApiResult<()> {
    let ctx = meta.audit(Some(account.id));
    let mut tx = SystemTx::begin(&state.pool, Some(account.tenant_id), &ctx).await?;
    let detail = if !account.active {
        "login refused: account deactivated"
    } else if account.password_hash.is_none() {
        "login refused: account has no password"
    } else {
        "login refused: wrong password"
    };
    audit::record(&mut tx, &ctx, user_event(account.tenant_id, account.id, "auth.login_failed", Some(detail.into())))
        .await?;
    if locks {
        let detail = format!("locked after {} failed logins", state.config.login_max_failures);
        audit::record(&mut tx, &ctx, user_event(account.tenant_id, account.id, "auth.account_locked", Some(detail)))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// An audit event about a user's sign-in.
fn user_event(tenant_id: Uuid, user_id: Uuid, action: &str, detail: Option<String>) -> audit::Event<'_> {
    audit::Event { tenant_id, action, entity_type: "user", entity_id: Some(user_id.to_string()), detail }
}

fn locked(until: OffsetDateTime, now: OffsetDateTime) -> ApiError {
    ApiError::TooManyRequests {
        detail: "too many failed logins for this email: try again later".into(),
        retry_after_secs: (until - now).whole_seconds().max(1) as u64,
    }
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
    let access_token = state.tokens.issue(tx.now(), user_id, tenant_id, tenant_slug, user.roles, perms)?;
    let (refresh_token, hash) = auth::new_refresh_token();
    let refresh_expires_at = tx.now() + state.config.refresh_token_ttl();
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
    if let Some((action, detail)) = refresh_refusal(&mut tx, &token).await? {
        if action == "auth.refresh_reused" {
            tokens::revoke_family(&mut tx, token.family_id).await?;
        }
        audit::record(&mut tx, &ctx, user_event(token.tenant_id, token.user_id, action, Some(detail.into()))).await?;
        tx.commit().await?;
        return Err(ApiError::Unauthorized(detail.into()));
    }
    tokens::mark_used(&mut tx, token.id).await?;
    let tenant = tenants::by_id(&mut tx, token.tenant_id).await?;
    let pair = issue_pair(&state, &mut tx, token.user_id, token.tenant_id, &tenant.slug, token.family_id).await?;
    audit::record(&mut tx, &ctx, user_event(token.tenant_id, token.user_id, "auth.refresh", None)).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// Why a refresh token may not be exchanged (the audit action and the detail), if it may not:
/// revoked, already used (taken as theft), expired, or its account deactivated.
async fn refresh_refusal(
    tx: &mut SystemTx,
    token: &tokens::RefreshToken,
) -> ApiResult<Option<(&'static str, &'static str)>> {
    Ok(if token.revoked_at.is_some() {
        Some(("auth.refresh_revoked", "refresh token was revoked"))
    } else if token.used_at.is_some() {
        Some(("auth.refresh_reused", "refresh token reused: every token of this login is revoked"))
    } else if token.expires_at <= tx.now() {
        Some(("auth.refresh_expired", "refresh token expired"))
    } else if !users::is_active(tx, token.user_id).await? {
        Some(("auth.refresh_inactive", "account deactivated"))
    } else {
        None
    })
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
    audit::record(&mut tx, &ctx, user_event(principal.tenant_id, principal.user_id, "auth.logout", None)).await?;
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
pub async fn me(caller: Caller) -> ApiResult<Json<Me>> {
    let mut tx = caller.begin().await?;
    let user = users::get(&mut tx, caller.user_id()).await?;
    let tenant = tenants::by_id(&mut tx, caller.tenant_id()).await?;
    let teams = teams::of_user(&mut tx, caller.user_id()).await?;
    tx.commit().await?;
    let principal = caller.principal;
    Ok(Json(Me {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        tenant: TenantRef { id: tenant.id, slug: tenant.slug, name: tenant.name },
        roles: principal.roles,
        permissions: principal.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
        teams,
    }))
}
