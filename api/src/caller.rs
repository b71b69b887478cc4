//! `Caller`: what every tenant handler starts from. The authenticated principal, their tenant,
//! the request's audit context and the way into the tenant's transaction, in one extractor, so
//! a handler never assembles `TenantTx::begin(pool, tenant, audit)` itself.
//!
//! The transaction is opened by [`Caller::begin`], not by the extractor: a handler validates
//! its input (and reads the body) before it holds a database connection, so a slow client
//! never keeps a connection or a transaction open while it uploads.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use archer_orchestrator::TenantSlug;
use archer_orchestrator::access::Permission;
use archer_store::{AuditContext, TenantTx};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::RequestMeta;

#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    pub tenant: TenantSlug,
    pub meta: RequestMeta,
    state: AppState,
}

impl Caller {
    /// The caller's user id.
    pub fn user_id(&self) -> uuid::Uuid {
        self.principal.user_id
    }

    pub fn tenant_id(&self) -> uuid::Uuid {
        self.principal.tenant_id
    }

    /// The application's state, for handlers that need more than the tenant transaction
    /// (configuration, Temporal, the pool outside row-level security).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The current instant, from the one clock (for reads; a change takes its transaction's).
    pub fn now(&self) -> jiff::Timestamp {
        self.state.clock().timestamp()
    }

    /// Whether the caller holds `permission` (no refusal recorded).
    pub fn can(&self, permission: Permission) -> bool {
        self.principal.can(permission)
    }

    /// Refuses with 403 (and an audit row) unless the caller holds `permission`.
    pub async fn require(&self, permission: Permission) -> ApiResult<()> {
        self.principal.require(&self.state, &self.meta, permission).await
    }

    /// Whether the caller works tickets (sees all of them) or only follows their own.
    pub fn is_agent(&self) -> bool {
        crate::views::ticket::is_agent(&self.principal)
    }

    /// Who did it, for the audit rows the transaction's changes write.
    pub fn audit(&self) -> AuditContext {
        self.meta.audit(Some(self.principal.user_id))
    }

    /// Opens the caller's tenant transaction: row-level security confines it to their tenant and
    /// every change it makes is audited as theirs.
    pub async fn begin(&self) -> ApiResult<TenantTx> {
        Ok(TenantTx::begin(&self.state.pool, self.principal.tenant_id, &self.audit()).await?)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let meta = RequestMeta::from_request_parts(parts, state).await?;
        let principal = Principal::from_request_parts(parts, state).await?;
        let tenant = TenantSlug::parse(&principal.tenant)
            .map_err(|_| ApiError::Unauthorized("the token names no valid tenant".into()))?;
        Ok(Caller { principal, tenant, meta, state: state.clone() })
    }
}
