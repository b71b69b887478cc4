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
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body(req, state).await?;
        let digest = BodyDigest(Sha256::digest(&bytes).into());
        parse_json(&bytes).map(|v| AppJson(v, digest))
    }
}

impl<T: DeserializeOwned> AppJson<T> {
    /// The body a page built for an API handler, as if it had arrived over HTTP: parsed with the
    /// same field errors, and digested the same way (for idempotency keys).
    pub fn from_value(body: &serde_json::Value) -> Result<AppJson<T>, ApiError> {
        let bytes = body.to_string();
        let digest = BodyDigest(Sha256::digest(bytes.as_bytes()).into());
        parse_json(bytes.as_bytes()).map(|v| AppJson(v, digest))
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The body, refused as problem+json when it is larger than the limit.
async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req.extensions().get::<crate::app::BodyLimit>().map(|l| l.0).unwrap_or(0);
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(rej.body_text())
        }
    })
}

/// A JSON body that may be left out: an empty body (or only whitespace, whatever its type)
/// and a JSON `null` are `T::default()`; any other is read as `AppJson` reads it.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        if bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Deserializes JSON, turning serde's first complaint into a problem with a pointer. Text with
/// a NUL character (`\u0000`, which PostgreSQL cannot store) is refused, every such field named.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if contains_ignore_case(bytes, b"\\u0000")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let mut errors = Vec::new();
        nul_fields(&value, &mut String::new(), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
    }
    // every body is a JSON object, which serde would also read from an array of its fields
    let object = |v: T| match bytes.trim_ascii_start().first() {
        Some(b'{') => Ok(v),
        _ => Err(ApiError::field("/", "type", "the body must be a JSON object")),
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => return object(v),
        Err(err) => err,
    };
    // JSON (and the JSON Schema of the OpenAPI document) counts `2.0` as the integer 2: read a
    // body whose integers are written with a zero fraction again, as integers
    if err.inner().to_string().starts_with("invalid type: floating point")
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && whole_floats_as_integers(&mut value)
    {
        return serde_path_to_error::deserialize::<_, T>(value).map_err(|e| json_problem(e, bytes)).and_then(object);
    }
    Err(json_problem(err, bytes))
}

/// A 400 only for a body that is not JSON at all; well-formed JSON of the wrong shape is a 422
/// naming where. (serde reports some shape errors as syntax: an enum written as an object
/// with several keys is "expected value".)
fn json_problem(err: serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]) -> ApiError {
    let pointer = pointer_of(err.path());
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() =>
        {
            ApiError::MalformedJson(inner.to_string())
        }
        _ => ApiError::Validation(vec![field_error(&pointer, &inner.to_string())]),
    }
}

/// Turns every number with a zero fraction (`2.0`, `-1e3`) that fits an `i64` into that integer;
/// returns whether it changed any.
fn whole_floats_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            // 2^63 is exactly representable; every f64 below it in magnitude converts exactly
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => {
                    *n = serde_json::Number::from(f as i64);
                    true
                }
                _ => false,
            }
        }
        // every one, not only up to the first
        Value::Array(items) => items.iter_mut().map(whole_floats_as_integers).filter(|changed| *changed).count() > 0,
        Value::Object(map) => map.values_mut().map(whole_floats_as_integers).filter(|changed| *changed).count() > 0,
        _ => false,
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

/// Documents the header as the extractor checks it (`params(IdempotencyKey)` in a path).
impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "Replays of the same key return the first response (`Idempotent-Replayed: true`); the same key \
                     with another body is refused.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build(),
        ]
    }
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        n: i32,
        #[serde(default)]
        items: Vec<i64>,
        f: Option<f64>,
    }

    fn problem(r: Result<Body, ApiError>) -> (u16, Vec<String>) {
        let p = r.unwrap_err().problem();
        (p.status, p.errors.into_iter().map(|e| e.pointer).collect())
    }

    #[test]
    fn integers_written_with_a_zero_fraction_are_integers() {
        let b: Body = parse_json(br#"{"n": 2.0, "items": [1e3, -4.0], "f": 1.0}"#).unwrap();
        assert_eq!(b, Body { n: 2, items: vec![1000, -4], f: Some(1.0) });
        assert_eq!(problem(parse_json(br#"{"n": 2.5}"#)), (422, vec!["/n".to_owned()]));
        assert_eq!(problem(parse_json(br#"{"n": 1.0, "items": [0.5]}"#)), (422, vec!["/items/0".to_owned()]));
        // out of the target's range, written either way
        assert_eq!(problem(parse_json(br#"{"n": 3000000000.0}"#)), (422, vec!["/n".to_owned()]));
    }

    #[test]
    fn a_body_is_an_object_not_an_array_of_its_fields() {
        assert_eq!(problem(parse_json(br#"[1, [], null]"#)), (422, vec!["/".to_owned()]));
        assert_eq!(problem(parse_json(br#" [1.0, [], null]"#)), (422, vec!["/".to_owned()]));
        assert_eq!(problem(parse_json(br#"{"n": 1"#)).0, 400);
        assert_eq!(parse_json::<Body>(b" {\"n\": 1}").unwrap().n, 1);
    }

    /// Well-formed JSON of the wrong shape is a 422, even where serde calls it a syntax error
    /// (an enum written as an object with two keys); only a body that is not JSON is a 400.
    #[test]
    fn well_formed_json_of_the_wrong_shape_is_not_malformed() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Chain {
            approvers: Vec<archer_orchestrator::approval::ApproverSpec>,
        }
        let two_keys = br#"{"approvers": [{"user": "116d7c78-8b03-294d-9ddc-ae4bedee8c4c", "role": false}]}"#;
        let p = parse_json::<Chain>(two_keys).unwrap_err().problem();
        assert_eq!(p.status, 422, "{p:?}");
        assert_eq!(parse_json::<Chain>(br#"{"approvers": [{"user": "#).unwrap_err().problem().status, 400);
    }
}
