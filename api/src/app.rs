//! The HTTP application: shared state, router, middleware and the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::ApiError;
use crate::routes;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub config: Config,
    pub tokens: TokenKeys,
    /// Checks the signed decision links of approval emails.
    pub links: archer_workers::links::LinkSigner,
    /// The HTML pages behind emailed decision links.
    pub pages: crate::pages::Pages,
    /// A real Argon2 hash, verified when an email is unknown so that a login takes as long
    /// whether or not the account exists.
    pub dummy_hash: String,
    /// Connected on first use, so the API starts (and reports not ready) while Temporal is down.
    pub temporal: tokio::sync::OnceCell<temporalio_client::Client>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(pool: PgPool, config: Config) -> Result<Self, ApiError> {
        let tokens = TokenKeys::new(config.jwt_secret.expose_secret().as_bytes(), config.access_token_ttl());
        let dummy_hash = crate::auth::hash_password("archer: no such account")?;
        let links = config.link_signer();
        let pages = crate::pages::Pages::new().map_err(ApiError::internal)?;
        Ok(Self(Arc::new(Inner {
            pool,
            config,
            tokens,
            links,
            pages,
            dummy_hash,
            temporal: tokio::sync::OnceCell::new(),
        })))
    }
}

impl AppState {
    /// A Temporal client, connecting on first use.
    pub async fn temporal(&self) -> Result<&temporalio_client::Client, archer_workers::TemporalError> {
        let cfg = self.config.temporal();
        self.temporal.get_or_try_init(|| async move { archer_workers::temporal::connect(&cfg).await }).await
    }
}

/// The largest body a request may have; extractors read it to say so in their refusal.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Archer",
        description = "IT service management orchestration: tickets, approvals and SLAs on durable Temporal workflows.\n\n\
            Errors are `application/problem+json` (RFC 9457) with `errors[]` naming each failing field by JSON pointer.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Login, token refresh and the current user"),
        (name = "tickets", description = "Incidents, service requests, changes and problems"),
        (name = "users", description = "Users and their roles (admin)"),
        (name = "teams", description = "Teams and their members (admin)"),
        (name = "audit", description = "The immutable audit log"),
        (name = "sla", description = "Business calendars, SLA policies and ticket clocks"),
        (name = "notifications", description = "Each user's in-app inbox"),
        (name = "catalog", description = "The service catalog and requests from it"),
        (name = "approvals", description = "Approval chains: inboxes, decisions, change routing, out of office"),
        (name = "ops", description = "Health, readiness and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The routes and the OpenAPI document generated from them.
pub fn api(config: &Config) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::approval_pages::router())
        .nest("/api/v1", routes::v1(config))
        .split_for_parts()
}

/// The whole HTTP service.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api(&state.config);
    let openapi = Arc::new(openapi);
    let limit = state.config.body_limit_bytes;
    let request_span = |req: &Request| {
        let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id,
            tenant = tracing::field::Empty,
            user = tracing::field::Empty,
            ticket = tracing::field::Empty,
        )
    };
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = openapi.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route("/problems/{slug}", get(routes::problems::describe))
    .fallback(|| async { ApiError::NotFound })
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .layer(DefaultBodyLimit::max(limit))
    .layer(axum::Extension(BodyLimit(limit)))
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(request_id_in_problems))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                ApiError::Internal("handler panicked".into()).into_response()
            }))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(30),
            )),
    )
    .with_state(state)
}

/// Adds the request id to a problem body.
pub async fn request_id_in_problems(req: Request, next: axum::middleware::Next) -> Response {
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let resp = next.run(req).await;
    let is_problem = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    match (is_problem, id) {
        (true, Some(id)) => {
            let (mut parts, body) = resp.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
                return Response::from_parts(parts, axum::body::Body::empty());
            };
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("request_id".into(), serde_json::Value::String(id));
            }
            let body = serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec());
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(body))
        }
        (_, _) => resp,
    }
}
