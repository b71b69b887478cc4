//! Portal sessions over the API's own login, refresh and lockout, and CSRF protection.
//!
//! Signing in (`POST /portal/login`) calls the API's login handler: the same per-email lockout,
//! the same audit, and the per-address rate limit of `/api/v1/auth/login`. The access and
//! refresh tokens it issues are kept in two cookies, HttpOnly, `SameSite=Lax`, and `Secure`
//! when `public_url` is `https` (everywhere but a plain-http dev or test setup):
//! - [`ACCESS`], path `/`: the short-lived access token;
//! - [`REFRESH`], path `/portal`: the single-use refresh token.
//!
//! [`gate`] stands before every signed-in page. A valid access token is passed on as the
//! request's `Authorization: Bearer` header, so pages use the API's own extractors
//! ([`Caller`](crate::caller::Caller)) and permissions. An expired one is exchanged through the
//! API's refresh handler (rotation, reuse detection and audit included) and both cookies are
//! renewed on the response. Without a usable session, the browser is sent to the login page
//! and comes back afterwards (`next`, a path inside the portal only).
//!
//! CSRF: a signed double-submit token. The [`CSRF`] cookie holds `nonce.mac` (the MAC keys on
//! the JWT secret, so nobody without it can plant a cookie that passes), every form posts the
//! same value as [`CSRF_FIELD`], and every unsafe request is refused (403 page) unless both are
//! there, equal and signed. Signing in replaces the token. `SameSite=Lax` is a second line.
//!
//! Several requests of one browser can arrive with the same expired access token at once (tabs
//! restored together, a page and its htmx preview). The first renews the session; the others,
//! on the same process and within [`RENEWAL_GRACE`], get the same new tokens instead of
//! presenting the now used refresh token, which the API would rightly take for theft and end
//! the session. Only the browser that holds both that refresh token and its CSRF cookie gets
//! them. (Across API replicas the window is the replicas' own: a load balancer with sticky
//! sessions closes it.)
//!
//! A request dropped midway is safe: a refresh either committed (the new cookies may never
//! reach the browser; its next request presents the used token, which the API treats as theft
//! and ends the session: the user signs in again) or did not (nothing changed).

use std::time::Duration;

use axum::Form;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{AppJson, BodyDigest, RequestMeta};
use crate::portal::{Page, render};
use crate::routes::auth as api_auth;

/// The access token's cookie.
pub const ACCESS: &str = "archer_session";
/// The refresh token's cookie.
pub const REFRESH: &str = "archer_refresh";
/// The CSRF token's cookie.
pub const CSRF: &str = "archer_csrf";
/// The form field every portal form posts the CSRF token in.
pub const CSRF_FIELD: &str = "_csrf";

/// How long a renewal is handed to the other requests that present the same refresh token.
pub const RENEWAL_GRACE: Duration = Duration::from_secs(10);

/// Recent renewals: the hash of the refresh token and CSRF cookie they were made for, when,
/// and the access token and cookies they gave. Renewals happen one at a time per process
/// (a few per second at most: one per session every access-token lifetime).
/// A renewal: when, the access token, and the cookies it set.
type Renewal = (std::time::Instant, String, Vec<Cookie<'static>>);

#[derive(Default)]
pub struct Renewals(tokio::sync::Mutex<std::collections::HashMap<[u8; 32], Renewal>>);

impl Renewals {
    /// The session's renewal: one made for the same refresh token and CSRF cookie within
    /// [`RENEWAL_GRACE`], or a new one through the API's refresh.
    async fn renew(
        &self,
        state: &AppState,
        meta: RequestMeta,
        refresh: &str,
        csrf: &str,
    ) -> Option<(String, Vec<Cookie<'static>>)> {
        let mut key = Sha256::new();
        key.update(refresh.as_bytes());
        key.update(b"\0");
        key.update(csrf.as_bytes());
        let key: [u8; 32] = key.finalize().into();
        let mut recent = self.0.lock().await;
        recent.retain(|_, (at, _, _)| at.elapsed() < RENEWAL_GRACE);
        if let Some((_, access, cookies)) = recent.get(&key) {
            return Some((access.clone(), cookies.clone()));
        }
        let body = serde_json::from_value(json!({ "refresh_token": refresh })).ok()?;
        let pair = api_auth::refresh(State(state.clone()), meta, AppJson(body, BodyDigest([0; 32]))).await.ok()?;
        let (access, cookies) = session_cookies(state, &serde_json::to_value(pair.0).ok()?)?;
        recent.insert(key, (std::time::Instant::now(), access.clone(), cookies.clone()));
        Some((access, cookies))
    }
}

/// The request's CSRF token, for the forms a page renders (put there by [`gate`]).
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

type HmacSha256 = Hmac<Sha256>;

fn csrf_mac(state: &AppState, nonce: &str) -> HmacSha256 {
    let key = state.config.jwt_secret.expose_secret().as_bytes();
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new_from_slice(b"archer").expect("HMAC accepts any key length"));
    mac.update(b"archer portal csrf\0");
    mac.update(nonce.as_bytes());
    mac
}

/// A new signed CSRF token.
pub fn new_csrf(state: &AppState) -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mac = csrf_mac(state, &nonce).finalize().into_bytes();
    format!("{nonce}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac))
}

/// Whether `token` is a CSRF token this server signed.
pub fn csrf_signed(state: &AppState, token: &str) -> bool {
    let Some((nonce, mac)) = token.split_once('.') else { return false };
    let Ok(mac) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac) else { return false };
    csrf_mac(state, nonce).verify_slice(&mac).is_ok()
}

/// The browser's CSRF token when it is one this server signed, and whether a new one had to be
/// made (to be set as the cookie).
fn csrf_of(state: &AppState, jar: &CookieJar) -> (String, bool) {
    match jar.get(CSRF).map(|c| c.value().to_owned()).filter(|v| csrf_signed(state, v)) {
        Some(v) => (v, false),
        None => (new_csrf(state), true),
    }
}

/// Whether a form's token matches the cookie's, both signed (constant time on the MAC).
fn csrf_matches(state: &AppState, cookie: Option<&str>, field: Option<&str>) -> bool {
    match (cookie, field) {
        (Some(c), Some(f)) => c.len() == f.len() && c.as_bytes() == f.as_bytes() && csrf_signed(state, f),
        _ => false,
    }
}

/// How long the cookies last: as long as the refresh token.
fn keep(state: &AppState) -> Duration {
    state.config.refresh_token_ttl()
}

/// Whether cookies must be `Secure`: whenever Archer is reached over https.
fn secure(state: &AppState) -> bool {
    state.config.public_url.scheme() == "https"
}

fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    path: &'static str,
    max_age: Duration,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure(state))
        .path(path)
        .max_age(time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)))
        .build()
}

fn expired(state: &AppState, name: &'static str, path: &'static str) -> Cookie<'static> {
    cookie(state, name, String::new(), path, Duration::ZERO)
}

fn set_cookies(resp: &mut Response, cookies: Vec<Cookie<'static>>) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// The cookies of a new token pair.
fn session_cookies(state: &AppState, pair: &serde_json::Value) -> Option<(String, Vec<Cookie<'static>>)> {
    let access = pair["access_token"].as_str()?.to_owned();
    let refresh = pair["refresh_token"].as_str()?.to_owned();
    let keep = keep(state);
    Some((
        access.clone(),
        vec![cookie(state, ACCESS, access, "/", keep), cookie(state, REFRESH, refresh, "/portal", keep)],
    ))
}

/// Where to go after signing in: a path inside the portal, never elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/portal") && !n.contains("//") && !n.contains('\\') => n.to_owned(),
        _ => "/portal".to_owned(),
    }
}

/// A 303 to `to`; for htmx requests, `HX-Redirect` so the whole page goes there.
pub fn see_other(headers: &HeaderMap, to: &str) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    if headers.contains_key("hx-request")
        && let Ok(v) = HeaderValue::from_str(to)
    {
        resp.headers_mut().insert("hx-redirect", v);
    }
    resp
}

fn to_login(headers: &HeaderMap, uri: &axum::http::Uri, state: &AppState) -> Response {
    let next = if uri.path() == "/portal/logout" {
        "/portal".to_owned()
    } else {
        uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/portal".into())
    };
    let to =
        format!("/portal/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    let mut resp = see_other(headers, &to);
    set_cookies(&mut resp, vec![expired(state, ACCESS, "/"), expired(state, REFRESH, "/portal")]);
    resp
}

/// Stands before every signed-in page: authenticates (refreshing when the access token has
/// expired), checks the CSRF token of unsafe requests, and hands the page an `Authorization`
/// header and the [`Csrf`] token.
pub async fn gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let jar = CookieJar::from_headers(req.headers());
    let mut renewed = Vec::new();
    let (csrf, fresh) = csrf_of(&state, &jar);
    if fresh {
        renewed.push(cookie(&state, CSRF, csrf.clone(), "/", keep(&state)));
    }
    let access = jar.get(ACCESS).map(|c| c.value().to_owned()).filter(|t| state.tokens.verify(t).is_ok());
    let access = match (access, jar.get(REFRESH).map(|c| c.value().to_owned())) {
        (Some(a), _) => a,
        (None, Some(refresh)) => {
            let meta = RequestMeta { request_id: request_id(req.headers()), ip: peer(&req) };
            match state.renewals.renew(&state, meta, &refresh, &csrf).await {
                Some((access, cookies)) => {
                    renewed.extend(cookies);
                    access
                }
                None => return to_login(req.headers(), req.uri(), &state),
            }
        }
        (None, None) => return to_login(req.headers(), req.uri(), &state),
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, state.config.body_limit_bytes).await {
            Ok(b) => b,
            Err(_) => return ApiError::PayloadTooLarge { limit: state.config.body_limit_bytes }.into_response(),
        };
        let field = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
        let cookie_value = jar.get(CSRF).map(|c| c.value().to_owned());
        if !csrf_matches(&state, cookie_value.as_deref(), field.as_deref()) {
            tracing::info!(path = %parts.uri.path(), "portal form refused: missing or wrong CSRF token");
            let err = ApiError::Forbidden(
                "This form was not sent from an Archer page you opened (its security token is missing or out of date). Go back, reload the page and send it again.".into(),
            );
            let mut resp = super::error_page(&state, None, &csrf, &err);
            set_cookies(&mut resp, renewed);
            return resp;
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {access}")) {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    req.extensions_mut().insert(Csrf(csrf));
    let mut resp = next.run(req).await;
    set_cookies(&mut resp, renewed);
    resp
}

fn request_id(headers: &HeaderMap) -> String {
    headers.get(crate::app::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn peer(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|ci| ci.0.ip())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in page (with a fresh CSRF token when the browser has none).
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let jar = CookieJar::from_headers(&headers);
    let (csrf, fresh) = csrf_of(&state, &jar);
    let next = safe_next(q.next.as_deref());
    let mut resp = login_form(&state, StatusCode::OK, &csrf, &next, "", None, false);
    if fresh {
        set_cookies(&mut resp, vec![cookie(&state, CSRF, csrf, "/", keep(&state))]);
    }
    resp
}

fn login_form(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<String>,
    ask_tenant: bool,
) -> Response {
    let page = Page {
        template: "portal/login",
        title: "Sign in".into(),
        nav: "login",
        data: json!({"next": next, "email": email, "error": error, "ask_tenant": ask_tenant}),
    };
    render(state, status, None, csrf, page)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
}

/// Signs in through the API's login (lockout, rate limit and audit included).
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let jar = CookieJar::from_headers(&headers);
    let next = safe_next(f.next.as_deref());
    let cookie_csrf = jar.get(CSRF).map(|c| c.value().to_owned());
    if !csrf_matches(&state, cookie_csrf.as_deref(), f.csrf.as_deref()) {
        let csrf = new_csrf(&state);
        let why = "The sign-in form had expired. Sign in again.".to_owned();
        let mut resp = login_form(&state, StatusCode::OK, &csrf, &next, &f.email, Some(why), false);
        set_cookies(&mut resp, vec![cookie(&state, CSRF, csrf, "/", keep(&state))]);
        return resp;
    }
    let csrf = cookie_csrf.unwrap_or_default();
    let tenant = f.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let body = json!({"email": f.email, "password": f.password, "tenant": tenant});
    let result = match serde_json::from_value(body) {
        Ok(body) => api_auth::login(State(state.clone()), meta, AppJson(body, BodyDigest([0; 32]))).await,
        Err(e) => Err(ApiError::internal(e)),
    };
    let err = match result.map(|p| serde_json::to_value(p.0)) {
        Ok(Ok(pair)) => match session_cookies(&state, &pair) {
            Some((_, mut cookies)) => {
                // a new session gets a new CSRF token
                cookies.push(cookie(&state, CSRF, new_csrf(&state), "/", keep(&state)));
                let mut resp = see_other(&headers, &next);
                set_cookies(&mut resp, cookies);
                return resp;
            }
            None => ApiError::Internal("the login answered no tokens".into()),
        },
        Ok(Err(e)) => ApiError::internal(e),
        Err(e) => e,
    };
    let (message, ask_tenant) = match &err {
        ApiError::Validation(errs) => (errs.iter().map(|e| e.detail.clone()).collect::<Vec<_>>().join("; "), false),
        ApiError::Unauthorized(_) => ("The email or password is not right.".to_owned(), false),
        ApiError::Conflict(_) => {
            ("This email has accounts in several organisations: enter the one to sign in to.".to_owned(), true)
        }
        ApiError::TooManyRequests { retry_after_secs, .. } => {
            (format!("Too many attempts. Try again in {} minutes.", retry_after_secs.div_ceil(60).max(1)), false)
        }
        other if other.status().is_server_error() => {
            tracing::error!(error = %other, "portal sign-in failed");
            ("Signing in failed on our side. Try again in a moment.".to_owned(), false)
        }
        other => (other.problem().detail, false),
    };
    // a refused sign-in is the form again, with why (a browser logs any other status of a page
    // as a failed load); only the lockout keeps its 429 and Retry-After
    let status = if matches!(err, ApiError::TooManyRequests { .. }) { err.status() } else { StatusCode::OK };
    let mut resp = login_form(&state, status, &csrf, &next, &f.email, Some(message), ask_tenant);
    if let ApiError::TooManyRequests { retry_after_secs, .. } = &err
        && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Signs out: the session's refresh tokens stop working (the API's logout) and the cookies go.
pub async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    principal: Principal,
    headers: HeaderMap,
) -> Response {
    let jar = CookieJar::from_headers(&headers);
    if let Some(refresh) = jar.get(REFRESH).map(|c| c.value().to_owned())
        && let Ok(body) = serde_json::from_value(json!({ "refresh_token": refresh }))
        && let Err(e) =
            api_auth::logout(State(state.clone()), meta, principal, AppJson(body, BodyDigest([0; 32]))).await
    {
        tracing::info!(error = %e, "portal sign-out: the refresh token was not revoked");
    }
    let mut resp = see_other(&headers, "/portal/login");
    set_cookies(
        &mut resp,
        vec![expired(&state, ACCESS, "/"), expired(&state, REFRESH, "/portal"), expired(&state, CSRF, "/")],
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_portal() {
        assert_eq!(safe_next(Some("/portal/tickets/REQ-000001")), "/portal/tickets/REQ-000001");
        assert_eq!(safe_next(Some("https://evil.example/portal")), "/portal");
        assert_eq!(safe_next(Some("//evil.example")), "/portal");
        assert_eq!(safe_next(Some("/portal//evil.example")), "/portal");
        assert_eq!(safe_next(Some("/portal\\evil")), "/portal");
        assert_eq!(safe_next(Some("/api/v1/tickets")), "/portal");
        assert_eq!(safe_next(None), "/portal");
    }
}
