//! `http.request` and the sending both HTTP actions share: a connection's request to a URL
//! under its base URL, at checked addresses, without following redirects, the answer mapped to
//! a step outcome (2xx succeeds; 408, 429, 5xx and transport failures are retried; other 4xx
//! and 3xx fail for good).

use std::collections::BTreeMap;

pub use reqwest::header::HeaderMap;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::StepError;
use super::net::{self, HttpClients};

/// The most of a response body a step keeps in its output (it enters the workflow's history).
pub const BODY_CAP: usize = 64 * 1024;

/// What a connection resolves to for a request (its secret decrypted, for this request only).
pub struct Target {
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub allow_private: bool,
    pub secret: Option<SecretString>,
}

/// How a connection authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic` with the username and the secret as password.
    Basic {
        username: String,
    },
    /// `<name>: <secret>`.
    Header {
        name: String,
    },
    /// The secret signs `webhook.post` bodies; it is sent nowhere.
    Webhook,
}

/// `http.request`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    pub connection: String,
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

/// A request ready to send (its credentials are sensitive header values, which `Debug` hides).
#[derive(Debug)]
pub struct Outgoing {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Value,
    pub body: Value,
}

/// Fills `{{secrets.NAME}}` in a header value with the connection's secret. NAME must be the
/// step's own connection: a step reads no other connection's secret.
pub fn fill_secrets(value: &str, connection: &str, secret: Option<&SecretString>) -> Result<String, StepError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { break };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        match inner.strip_prefix("secrets.") {
            Some(name) if name == connection => {
                let secret =
                    secret.ok_or_else(|| StepError::Input(format!("connection {connection:?} has no secret set")))?;
                out.push_str(secret.expose_secret());
            }
            Some(name) => {
                return Err(StepError::Input(format!(
                    "a step may read only its own connection's secret ({connection:?}), not {name:?}"
                )));
            }
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `value` (an input other than headers) names a secret, which only headers may.
pub fn names_a_secret(value: &Value) -> bool {
    match value {
        Value::String(s) => s.split("{{").skip(1).any(|t| t.trim_start().starts_with("secrets.")),
        Value::Array(a) => a.iter().any(names_a_secret),
        Value::Object(o) => o.iter().any(|(k, v)| names_a_secret(&Value::String(k.clone())) || names_a_secret(v)),
        _ => false,
    }
}

/// The request `input` describes against `target`, with the step's idempotency key.
pub fn prepare(input: &HttpRequest, target: &Target, idempotency_key: &str) -> Result<Outgoing, StepError> {
    let method = match input.method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
            reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| StepError::Input(e.to_string()))?
        }
        other => return Err(StepError::Input(format!("method {other:?} is not one of GET, POST, PUT, PATCH, DELETE"))),
    };
    let in_path_or_body = names_a_secret(&Value::String(input.path.clone()))
        || input.query.iter().any(|(k, v)| names_a_secret(&json!([k, v])))
        || input.body.as_ref().is_some_and(names_a_secret);
    if in_path_or_body {
        return Err(StepError::Input("{{secrets.…}} may appear only in headers".into()));
    }
    let mut url = net::join(&target.base_url, &input.path)?;
    if !input.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &input.query {
            pairs.append_pair(k, v);
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value_of) in &input.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| StepError::Input(format!("header name {name:?} is not valid")))?;
        let filled = fill_secrets(value_of, &target.name, target.secret.as_ref())?;
        // the value may hold the secret: the error never shows it
        let mut value = HeaderValue::from_str(&filled)
            .map_err(|_| StepError::Input(format!("header {name} has an invalid value")))?;
        value.set_sensitive(names_a_secret(&Value::String(value_of.clone())));
        headers.insert(name, value);
    }
    authenticate(&mut headers, target)?;
    headers.insert("idempotency-key", header(idempotency_key, "the idempotency key")?);
    let body = match &input.body {
        None | Some(Value::Null) => None,
        Some(b) => {
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Some(serde_json::to_vec(b).map_err(|e| StepError::Input(e.to_string()))?)
        }
    };
    Ok(Outgoing { method, url, headers, body })
}

fn header(v: &str, what: &str) -> Result<HeaderValue, StepError> {
    HeaderValue::from_str(v).map_err(|_| StepError::Input(format!("{what} is not a valid header value")))
}

/// Adds the connection's credentials (marked sensitive, so they are never logged).
fn authenticate(headers: &mut HeaderMap, target: &Target) -> Result<(), StepError> {
    let secret = || {
        target
            .secret
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or_else(|| StepError::Input(format!("connection {:?} has no secret set", target.name)))
    };
    let (name, value) = match &target.auth {
        Auth::None | Auth::Webhook => return Ok(()),
        Auth::Bearer => (reqwest::header::AUTHORIZATION, format!("Bearer {}", secret()?)),
        Auth::Basic { username } => {
            use base64::Engine as _;
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", secret()?));
            (reqwest::header::AUTHORIZATION, format!("Basic {pair}"))
        }
        Auth::Header { name } => (
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| StepError::Input(format!("the connection's header name {name:?} is not valid")))?,
            secret()?.to_owned(),
        ),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        StepError::Input(format!("connection {:?}: its secret is not a valid header value", target.name))
    })?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

/// Sends `out` to checked addresses only, following no redirect, and maps the answer.
pub async fn send(clients: &HttpClients, out: Outgoing, target: &Target) -> Result<Answer, StepError> {
    let addrs = net::resolve(&out.url, target.allow_private).await?;
    let client = clients.pinned(&out.url, &addrs)?;
    let mut request = client.request(out.method, out.url.clone()).headers(out.headers);
    if let Some(body) = out.body {
        request = request.body(body);
    }
    let redact = |text: String| match target.secret.as_ref().map(|s| s.expose_secret()) {
        Some(s) if !s.is_empty() => text.replace(s, "[REDACTED]"),
        _ => text,
    };
    let mut response = request.send().await.map_err(|e| {
        // the error names the URL (no credentials: they travel in headers), never a header
        StepError::Unavailable(redact(format!("{} {}: {}", out.url.host_str().unwrap_or(""), out.url.path(), e)))
    })?;
    let status = response.status();
    let headers = answer_headers(response.headers());
    let json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let (bytes, truncated) = read_capped(&mut response).await?;
    let text = || redact(String::from_utf8_lossy(&bytes).into_owned());
    let code = status.as_u16();
    if status.is_success() {
        let body = match (json, truncated) {
            (true, false) => serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text())),
            _ => Value::String(text()),
        };
        return Ok(Answer { status: code, headers, body });
    }
    let snippet: String = text().chars().take(300).collect();
    Err(match code {
        300..=399 => StepError::BadRequest(format!("the receiver answered {status}: redirects are not followed")),
        408 | 429 | 500..=599 => StepError::Unavailable(format!("the receiver answered {status}: {snippet}")),
        _ => StepError::BadRequest(format!("the receiver answered {status}: {snippet}")),
    })
}

/// The answer's headers as the output shows them (no cookies).
fn answer_headers(h: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in h {
        if name == reqwest::header::SET_COOKIE {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    Value::Object(out)
}

/// Reads at most [`BODY_CAP`] bytes of the body; whether there was more.
async fn read_capped(response: &mut reqwest::Response) -> Result<(Vec<u8>, bool), StepError> {
    let mut bytes = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| StepError::Unavailable(format!("reading the answer: {e}")))?
    {
        let room = BODY_CAP - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// `http.request`: the step's output `{status, headers, body}`.
pub async fn request(
    clients: &HttpClients,
    target: &Target,
    input: &HttpRequest,
    idempotency_key: &str,
) -> Result<Value, StepError> {
    let out = prepare(input, target, idempotency_key)?;
    let answer = send(clients, out, target).await?;
    Ok(json!({"status": answer.status, "headers": answer.headers, "body": answer.body}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(auth: Auth, secret: Option<&str>) -> Target {
        Target {
            name: "vendor".into(),
            base_url: "https://api.vendor.example/v2".into(),
            auth,
            allow_private: false,
            secret: secret.map(SecretString::from),
        }
    }

    fn input(v: Value) -> HttpRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn secrets_fill_only_the_steps_own_connection() {
        let s = SecretString::from("tok");
        assert_eq!(fill_secrets("Bearer {{secrets.vendor}}", "vendor", Some(&s)).unwrap(), "Bearer tok");
        assert_eq!(fill_secrets("{{ secrets.vendor }}-{{secrets.vendor}}", "vendor", Some(&s)).unwrap(), "tok-tok");
        assert_eq!(fill_secrets("plain {{x}}", "vendor", Some(&s)).unwrap(), "plain {{x}}");
        let e = fill_secrets("{{secrets.other}}", "vendor", Some(&s)).unwrap_err();
        assert!(matches!(e, StepError::Input(_)) && e.to_string().contains("\"other\""), "{e}");
        assert!(matches!(fill_secrets("{{secrets.vendor}}", "vendor", None), Err(StepError::Input(_))));
    }

    #[test]
    fn a_request_carries_its_key_its_auth_and_the_filled_headers() {
        let t = target(Auth::Bearer, Some("s3cret"));
        let i = input(json!({"connection": "vendor", "path": "/orders", "query": {"a": "1 2"},
            "headers": {"X-Api-Key": "{{secrets.vendor}}"}, "body": {"n": 1}}));
        let out = prepare(&i, &t, "t/INC-1/playbook/p/1/order").unwrap();
        assert_eq!(out.method, reqwest::Method::POST, "POST by default");
        assert_eq!(out.url.as_str(), "https://api.vendor.example/v2/orders?a=1+2");
        assert_eq!(out.headers["idempotency-key"], "t/INC-1/playbook/p/1/order");
        assert_eq!(out.headers["authorization"], "Bearer s3cret");
        assert!(out.headers["authorization"].is_sensitive());
        assert_eq!(out.headers["x-api-key"], "s3cret");
        assert!(out.headers["x-api-key"].is_sensitive());
        assert_eq!(out.headers["content-type"], "application/json");
        assert_eq!(out.body.unwrap(), br#"{"n":1}"#);
    }

    #[test]
    fn auth_kinds() {
        let i = input(json!({"connection": "vendor", "method": "get", "path": "/"}));
        let out = prepare(&i, &target(Auth::Basic { username: "u".into() }, Some("p")), "k").unwrap();
        assert_eq!(out.headers["authorization"], "Basic dTpw");
        assert_eq!(out.method, reqwest::Method::GET);
        assert!(out.body.is_none());
        let out = prepare(&i, &target(Auth::Header { name: "X-Token".into() }, Some("p")), "k").unwrap();
        assert_eq!(out.headers["x-token"], "p");
        let out = prepare(&i, &target(Auth::None, None), "k").unwrap();
        assert!(!out.headers.contains_key("authorization"));
        assert!(matches!(prepare(&i, &target(Auth::Bearer, None), "k"), Err(StepError::Input(_))));
    }

    #[test]
    fn secrets_outside_headers_and_bad_inputs_are_refused() {
        let t = target(Auth::None, Some("s"));
        for bad in [
            json!({"connection": "vendor", "path": "/{{secrets.vendor}}"}),
            json!({"connection": "vendor", "path": "/", "query": {"k": "{{secrets.vendor}}"}}),
            json!({"connection": "vendor", "path": "/", "body": {"x": ["{{ secrets.vendor }}"]}}),
            json!({"connection": "vendor", "path": "/", "method": "TRACE"}),
            json!({"connection": "vendor", "path": "/", "headers": {"bad name": "x"}}),
            json!({"connection": "vendor", "path": "/", "headers": {"X-A": "{{secrets.other}}"}}),
        ] {
            assert!(matches!(prepare(&input(bad.clone()), &t, "k"), Err(StepError::Input(_))), "{bad}");
        }
        let escape = input(json!({"connection": "vendor", "path": "/../admin"}));
        assert!(matches!(prepare(&escape, &t, "k"), Err(StepError::Forbidden(_))));
    }

    #[test]
    fn a_secret_with_a_newline_is_refused_without_showing_it() {
        let i = input(json!({"connection": "vendor", "path": "/"}));
        let e = prepare(&i, &target(Auth::Bearer, Some("line1\nline2")), "k").unwrap_err();
        assert!(!e.to_string().contains("line1"), "{e}");
    }
}
