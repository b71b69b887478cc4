//! Authentication and authorization: password hashing, access tokens, the authenticated
//! [`Principal`] and permission checks.
//!
//! Access tokens are short-lived HS256 JWTs carrying user, tenant, roles and permissions; only
//! HS256 is accepted (so `alg: none` and algorithm confusion are refused). Refresh tokens are
//! random, stored hashed, rotated on every use; reuse of a rotated one revokes its family
//! (see `routes::auth`).

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::access::{Permission, Permissions};

use archer_store::{SystemTx, audit};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::RequestMeta;

pub const ISSUER: &str = "archer";
pub const AUDIENCE: &str = "archer-api";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    /// Tenant slug.
    pub ten: String,
    pub roles: Vec<String>,
    pub perms: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
}

/// Signs and verifies access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

pub enum TokenError {
    /// Signature valid but expired: the claims can be trusted to name the account.
    Expired(Box<Claims>),
    Invalid(String),
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token issued at `now` (the clock's instant), valid for the TTL. Its expiry is checked
    /// by jsonwebtoken against the system's clock.
    pub fn issue(
        &self,
        now: OffsetDateTime,
        sub: Uuid,
        tid: Uuid,
        ten: &str,
        roles: Vec<String>,
        perms: Vec<String>,
    ) -> Result<String, ApiError> {
        let now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let claims = Claims {
            sub,
            tid,
            ten: ten.to_owned(),
            roles,
            perms,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            jti: Uuid::new_v4(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                // The signature was checked before expiry, so these claims are authentic.
                let mut v = self.validation.clone();
                v.validate_exp = false;
                match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
                    Ok(data) => Err(TokenError::Expired(Box::new(data.claims))),
                    Err(e) => Err(TokenError::Invalid(e.to_string())),
                }
            }
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

/// Hashes a password with Argon2id (the crate's recommended parameters).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// Checks a password against a stored hash; a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A new opaque refresh token and the hash stored for it.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = refresh_token_hash(&token);
    (token, hash)
}

pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub roles: Vec<String>,
    pub permissions: Permissions,
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.has(permission)
    }

    /// Refuses with 403 (and an audit row) unless the caller holds `permission`.
    pub async fn require(&self, state: &AppState, meta: &RequestMeta, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            return Ok(());
        }
        let detail = format!("this needs the {permission} permission");
        audit_refusal(
            state,
            meta,
            self.tenant_id,
            Some(self.user_id),
            "authz.denied",
            "permission",
            Some(permission.as_str().to_owned()),
            &detail,
        )
        .await;
        Err(ApiError::Forbidden(detail))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let meta = RequestMeta::from_request_parts(parts, state).await?;
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
        match state.tokens.verify(token) {
            Ok(c) => {
                let span = tracing::Span::current();
                span.record("tenant", c.ten.as_str());
                span.record("user", tracing::field::display(c.sub));
                Ok(Principal {
                    user_id: c.sub,
                    tenant_id: c.tid,
                    tenant: c.ten,
                    roles: c.roles,
                    permissions: Permissions::parse(&c.perms),
                })
            }
            Err(TokenError::Expired(c)) => {
                // audited once per token, then only counted: a client that keeps sending an
                // expired token must not write an audit row per request
                let first = async {
                    let mut conn = state.pool.acquire().await?;
                    let now = state.pool.now();
                    archer_store::tokens::count_expired_use(&mut conn, now, c.jti, c.tid, c.sub).await
                }
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not count an expired token's use");
                    false
                });
                if first {
                    audit_refusal(
                        state,
                        &meta,
                        c.tid,
                        Some(c.sub),
                        "auth.token_expired",
                        "user",
                        Some(c.sub.to_string()),
                        &format!("access token {} expired", c.jti),
                    )
                    .await;
                }
                Err(ApiError::Unauthorized("the access token has expired; refresh it".into()))
            }
            Err(TokenError::Invalid(why)) => {
                tracing::info!(%why, "invalid access token");
                Err(ApiError::Unauthorized("the access token is invalid".into()))
            }
        }
    }
}

/// Writes an audit row for a refused request. A failure to audit is logged, never hidden
/// behind the refusal's own status.
#[allow(clippy::too_many_arguments)]
pub async fn audit_refusal(
    state: &AppState,
    meta: &RequestMeta,
    tenant_id: Uuid,
    actor: Option<Uuid>,
    action: &str,
    entity_type: &str,
    entity_id: Option<String>,
    detail: &str,
) {
    let ctx = meta.audit(actor);
    let res = async {
        let mut tx = SystemTx::begin(&state.pool, Some(tenant_id), &ctx).await?;
        audit::record(
            &mut tx,
            &ctx,
            audit::Event { tenant_id, action, entity_type, entity_id, detail: Some(detail.to_owned()) },
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::error!(error = %e, action, "could not audit a refusal");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not-a-hash"));
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_and_other_algorithms() {
        let keys = TokenKeys::new(&[7u8; 32], Duration::from_secs(60));
        let now = OffsetDateTime::now_utc();
        let t = keys
            .issue(now, Uuid::nil(), Uuid::nil(), "acme", vec!["agent".into()], vec!["ticket:update".into()])
            .unwrap();
        assert!(keys.verify(&t).is_ok());
        // flip one character of the signature
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(keys.verify(std::str::from_utf8(&bytes).unwrap()), Err(TokenError::Invalid(_))));
        // unsigned token
        let (h, rest) = t.split_once('.').unwrap();
        let _ = h;
        let payload = rest.split('.').next().unwrap();
        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(matches!(keys.verify(&format!("{none_header}.{payload}.")), Err(TokenError::Invalid(_))));
        // a token from another key
        let other = TokenKeys::new(&[8u8; 32], Duration::from_secs(60));
        let t2 = other.issue(now, Uuid::nil(), Uuid::nil(), "acme", vec![], vec![]).unwrap();
        assert!(matches!(keys.verify(&t2), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, hb) = new_refresh_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(refresh_token_hash(&a), ha);
    }
}
