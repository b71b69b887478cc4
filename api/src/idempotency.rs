//! `Idempotency-Key` for POSTs: the first response is stored with the request's effects, in
//! the same transaction; a replay with the same key and body gets it back (with
//! `Idempotent-Replayed: true`), a reuse with another body is refused.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use archer_store::{TenantTx, idempotency as store};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, etag};
use crate::extract::{BodyDigest, IdempotencyKey};

/// Claims the key (if any). `Some(response)` means this is a replay: return it as is.
pub async fn claim(
    tx: &mut TenantTx,
    p: &Principal,
    key: &IdempotencyKey,
    scope: &str,
    digest: &BodyDigest,
) -> ApiResult<Option<Response>> {
    let Some(k) = key.0.as_deref() else { return Ok(None) };
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update(b"\0");
    h.update(digest.0);
    let hash = h.finalize().to_vec();
    match store::claim(tx, p.tenant_id, p.user_id, k, &hash).await? {
        None => Ok(None),
        Some(stored) if stored.request_hash != hash => {
            Err(ApiError::field("Idempotency-Key", "reused", "this key was already used for a different request"))
        }
        Some(stored) => {
            let status = StatusCode::from_u16(stored.status_code as u16).unwrap_or(StatusCode::OK);
            let mut resp = (status, Json(&stored.body)).into_response();
            let h = resp.headers_mut();
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            if let Some(loc) = stored.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
                h.insert(header::LOCATION, loc);
            }
            if let Some(v) = stored.body.get("version").and_then(|v| v.as_i64())
                && let Ok(tag) = HeaderValue::from_str(&etag(v as i32))
            {
                h.insert(header::ETAG, tag);
            }
            Ok(Some(resp))
        }
    }
}

/// Builds the response and, when a key was claimed, stores it in the same transaction.
pub async fn respond<T: Serialize>(
    tx: &mut TenantTx,
    p: &Principal,
    key: &IdempotencyKey,
    status: StatusCode,
    body: &T,
    location: Option<&str>,
) -> ApiResult<Response> {
    let value = serde_json::to_value(body).map_err(ApiError::internal)?;
    if let Some(k) = key.0.as_deref() {
        store::complete(tx, p.tenant_id, p.user_id, k, status.as_u16(), &value, location).await?;
    }
    let mut resp = (status, Json(value)).into_response();
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}
