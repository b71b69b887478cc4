//! Extractors whose rejections are problem+json: JSON bodies (with a JSON pointer to the
//! failing field), query strings, paths, the request's metadata and the authenticated
//! principal.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use archer_store::AuditContext;

use crate::error::{ApiError, FieldError};

/// A JSON body. Unknown fields, wrong types and malformed JSON are refused with the field's
/// pointer. The second field is the SHA-256 of the raw body (for idempotency keys).
pub struct AppJson<T>(pub T, pub BodyDigest);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest(pub [u8; 32]);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req.extensions().get::<crate::app::BodyLimit>().map(|l| l.0).unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(rej.body_text())
            }
        })?;
        let digest = BodyDigest(Sha256::digest(&bytes).into());
        parse_json(&bytes).map(|v| AppJson(v, digest))
    }
}

/// Deserializes JSON, turning serde's first complaint into a problem with a pointer. Text with
/// a NUL character (`\u0000`, which PostgreSQL cannot store) is refused, every such field named.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if contains_ignore_case(bytes, b"\\u0000") {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let mut errors = Vec::new();
            nul_fields(&value, &mut String::new(), &mut errors);
            if !errors.is_empty() {
                return Err(ApiError::Validation(errors));
            }
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let pointer = pointer_of(err.path());
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Syntax
                | serde_json::error::Category::Eof
                | serde_json::error::Category::Io => Err(ApiError::MalformedJson(inner.to_string())),
                serde_json::error::Category::Data => {
                    Err(ApiError::Validation(vec![field_error(&pointer, &inner.to_string())]))
                }
            }
        }
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

const NUL_DETAIL: &str = "must not contain the NUL character (\\u0000)";

/// Every string (value or key) in `value` that contains NUL, by pointer.
fn nul_fields(value: &serde_json::Value, path: &mut String, out: &mut Vec<FieldError>) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            out.push(FieldError::new(if path.is_empty() { "/" } else { path.as_str() }, "nul", NUL_DETAIL));
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                nul_fields(item, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if k.contains('\0') {
                    out.push(FieldError::new(path.clone(), "nul", NUL_DETAIL));
                } else {
                    nul_fields(v, path, out);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => out.push_str("/?"),
        }
    }
    out
}

/// Classifies a serde data error and points at the right field: for a missing or unknown
/// field serde's path ends at the enclosing object, so the field's name is appended.
fn field_error(path: &str, message: &str) -> FieldError {
    // serde's messages end with " at line L column C"
    let message = message.split(" at line ").next().unwrap_or(message);
    let named =
        |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(|name| name.to_owned());
    if let Some(name) = named("missing field `") {
        return FieldError::new(join(path, &name), "required", format!("{name} is required"));
    }
    if let Some(name) = named("unknown field `") {
        let pointer = if path.ends_with(&format!("/{name}")) { path.to_owned() } else { join(path, &name) };
        return FieldError::new(pointer, "unknown_field", message.to_owned());
    }
    let code = if message.starts_with("invalid type") {
        "type"
    } else if message.starts_with("unknown variant") {
        "enum"
    } else if message.starts_with("invalid length") {
        "length"
    } else {
        "invalid"
    };
    FieldError::new(if path.is_empty() { "/".to_owned() } else { path.to_owned() }, code, message.to_owned())
}

fn join(path: &str, name: &str) -> String {
    format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// A query string; errors name the parameter as `?name`.
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let nul: Vec<FieldError> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| FieldError::new(format!("?{}", k.replace('\0', "")), "nul", NUL_DETAIL))
            .collect();
        if !nul.is_empty() {
            return Err(ApiError::Validation(nul));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de).map(AppQuery).map_err(|err| {
            let name = err.path().to_string();
            let inner = err.into_inner().to_string();
            let e = field_error("", &inner);
            let param = if name == "." { e.pointer.trim_start_matches('/').to_owned() } else { name };
            ApiError::Validation(vec![FieldError::new(format!("?{param}"), &e.code, e.detail)])
        })
    }
}

/// Who made the request and how to find it in the logs: the audit context of its writes.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub ip: Option<IpAddr>,
}

impl RequestMeta {
    pub fn audit(&self, actor: Option<uuid::Uuid>) -> AuditContext {
        AuditContext { actor_id: actor, request_id: Some(self.request_id.clone()), ip: self.ip }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id =
            parts.headers.get(crate::app::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip());
        Ok(RequestMeta { request_id, ip })
    }
}

/// A path parameter that is refused as a 404 when it does not parse (an id that cannot exist).
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // a NUL character cannot be in any id or number (and PostgreSQL refuses it)
        let raw =
            axum::extract::RawPathParams::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound)?;
        if raw.iter().any(|(_, v)| v.contains('\0')) {
            return Err(ApiError::NotFound);
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AppPath(p.0))
            .map_err(|_| ApiError::NotFound)
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else { return Ok(IdempotencyKey(None)) };
        let bad = || ApiError::field("Idempotency-Key", "format", "must be 1 to 255 visible ASCII characters");
        let s = v.to_str().map_err(|_| bad())?;
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(IdempotencyKey(Some(s.to_owned())))
    }
}
