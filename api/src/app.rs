//! The HTTP application: shared state, router, middleware and the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use archer_store::{Clock, Db};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
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
    /// The database and the one clock handlers read (see [`AppState::clock`]).
    pub pool: Db,
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
    /// Encrypts connection secrets before the store keeps them (`secrets_key`); the API never
    /// decrypts one (they are write-only), only the workers' `http.request` does.
    pub secrets: archer_store::secrets::Cipher,
    /// The portal's recent session renewals (see `portal::session::Renewals`).
    pub renewals: crate::portal::session::Renewals,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(pool: Db, config: Config) -> Result<Self, ApiError> {
        let tokens = TokenKeys::new(config.jwt_secret.expose_secret().as_bytes(), config.access_token_ttl());
        let dummy_hash = crate::auth::hash_password("archer: no such account")?;
        let links = config.link_signer();
        let pages = crate::pages::Pages::new().map_err(ApiError::internal)?;
        let secrets = config.cipher();
        Ok(Self(Arc::new(Inner {
            pool,
            config,
            tokens,
            links,
            pages,
            dummy_hash,
            temporal: tokio::sync::OnceCell::new(),
            secrets,
            renewals: Default::default(),
        })))
    }
}

impl AppState {
    /// Where handlers read the time: the clock the database handle stamps transactions with,
    /// so a test that fixes it sees the same instant in responses and rows. Inside a
    /// transaction, its `now()` is the instant to use.
    pub fn clock(&self) -> &dyn Clock {
        self.pool.clock().as_ref()
    }

    /// A Temporal client, connecting on first use.
    pub async fn temporal(&self) -> Result<&temporalio_client::Client, archer_workers::TemporalError> {
        let cfg = self.config.temporal();
        self.temporal.get_or_try_init(|| async move { archer_workers::temporal::connect(&cfg).await }).await
    }
}

/// How long a request may take before it is abandoned (408).
pub const REQUEST_TIMEOUT_SECS: u64 = 30;

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
    // schemas that only parameters name (`#[param(value_type = ...)]`), which no route collects
    components(schemas(routes::tickets::SlaStateFilter, routes::tickets::BreachedTarget)),
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
        (name = "playbooks", description = "YAML playbooks, their runs on tickets, and the connections they call"),
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
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::approvals::pages::router())
        .nest("/api/v1", routes::v1(config))
        .split_for_parts();
    common_responses::document(&mut doc);
    (router, doc)
}

/// The refusals every operation of a kind can answer, added to the generated document so that
/// no handler has to repeat them (and none can forget them): they come from the extractors
/// and the database, not from the handler. See `document`.
pub mod common_responses {
    use utoipa::openapi::content::Content;
    use utoipa::openapi::header::Header;
    use utoipa::openapi::link::LinkBuilder;
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::response::{Response, ResponseBuilder};
    use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, ObjectBuilder, Schema, Type};
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{OpenApi, Ref, RefOr};

    /// Operations that touch nothing that can be busy (no database, no Temporal).
    const NO_DEPENDENCIES: &[&str] = &["/health"];

    /// The shared problem responses: component name, status, description (`problem` adds the
    /// headers that 401, 429 and 503 carry).
    const RESPONSES: &[(&str, &str, &str)] = &[
        ("MalformedJson", "400", "The body is not valid JSON (`/problems/malformed-json`); `detail` says where."),
        (
            "Unauthorized",
            "401",
            "No valid access token: missing, malformed, tampered with, signed with another key, or expired \
             (`/problems/unauthorized`). Log in or refresh.",
        ),
        (
            "Forbidden",
            "403",
            "The access token is valid but its roles lack the permission this needs (`/problems/forbidden`); \
             the refusal is audited.",
        ),
        ("NotFound", "404", "No such resource in your tenant (`/problems/not-found`)."),
        ("Conflict", "409", "The request conflicts with the resource's current state (`/problems/conflict`)."),
        (
            "PreconditionFailed",
            "412",
            "`If-Match` named a version that is no longer current (`/problems/precondition-failed`): re-read it.",
        ),
        ("PayloadTooLarge", "413", "The body is larger than `body_limit_bytes` (`/problems/payload-too-large`)."),
        ("UnsupportedMediaType", "415", "The body is not `application/json` (`/problems/unsupported-media-type`)."),
        (
            "ValidationFailed",
            "422",
            "A field or parameter is invalid (`/problems/validation-failed`): `errors[]` names each by JSON pointer \
             (`/title`), query parameter (`?limit`) or header, with a `code`. Nothing was written.",
        ),
        ("TooManyRequests", "429", "Too many attempts (`/problems/too-many-requests`); wait `Retry-After` seconds."),
        (
            "Unavailable",
            "503",
            "The database is busy (a lock held too long, a conflicting transaction) or unreachable \
             (`/problems/unavailable`): nothing was written; retry after `Retry-After` seconds.",
        ),
    ];

    fn problem(description: &str, status: &str) -> Response {
        let mut r = ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))));
        let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        match status {
            "401" => {
                let mut h = Header::new(string());
                h.description = Some("`Bearer realm=\"archer\"`".into());
                r = r.header("WWW-Authenticate", h);
            }
            "429" | "503" => {
                let mut h = Header::new(integer());
                h.description = Some("Seconds to wait before trying again.".into());
                r = r.header("Retry-After", h);
            }
            _ => {}
        }
        r.build()
    }

    /// What the router's `TimeoutLayer` answers, with no body.
    const TIMEOUT: (&str, &str) = ("RequestTimeout", "408");

    fn add(op: &mut Operation, status: &str, name: &str) {
        op.responses.responses.entry(status.to_owned()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }

    /// A problem a handler documents without saying what it means (`(status = 403, body =
    /// Problem, content_type = "application/problem+json")`) becomes the shared response of that
    /// status; every other response without a description gets its status's reason phrase
    /// (OpenAPI requires one).
    fn describe(op: &mut Operation) {
        for (status, response) in op.responses.responses.iter_mut() {
            let RefOr::T(r) = response else { continue };
            if !r.description.is_empty() {
                continue;
            }
            let problem_only = r.headers.is_empty() && r.content.keys().all(|c| c == "application/problem+json");
            match RESPONSES.iter().find(|(_, s, _)| s == status) {
                Some((name, _, _)) if problem_only && !r.content.is_empty() => {
                    *response = RefOr::Ref(Ref::from_response_name(*name));
                }
                _ => {
                    r.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
            }
        }
    }

    /// Links each creating `POST` (one whose 2xx body has an `id`) to the operations on what it
    /// created, `POST /teams` to `GET /teams/{id}` and the rest under `/teams/{id}`: the new
    /// `id` fills the parameter right after the collection's path, and the `POST`'s own path
    /// parameters fill theirs. Clients, and the fuzzer's stateful phase, follow them.
    fn link(doc: &mut OpenApi) {
        let with_id: Vec<String> = doc
            .components
            .iter()
            .flat_map(|c| c.schemas.iter())
            .filter(|(_, s)| matches!(s, RefOr::T(Schema::Object(o)) if o.properties.contains_key("id")))
            .map(|(name, _)| format!("#/components/schemas/{name}"))
            .collect();
        let mut targets = Vec::new();
        for (path, item) in &doc.paths.paths {
            let ops = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for op in ops.into_iter().flatten() {
                if let Some(id) = &op.operation_id {
                    targets.push((path.clone(), id.clone()));
                }
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let Some(post) = item.post.as_mut() else { continue };
            let own: Vec<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            for (status, response) in post.responses.responses.iter_mut() {
                let RefOr::T(response) = response else { continue };
                let creates = status.starts_with('2')
                    && response.content.get("application/json").is_some_and(|c| match c {
                        RefOr::T(c) => matches!(&c.schema, Some(RefOr::Ref(r)) if with_id.contains(&r.ref_location)),
                        RefOr::Ref(_) => false,
                    });
                if !creates {
                    continue;
                }
                for (target, operation_id) in &targets {
                    let Some(param) = target
                        .strip_prefix(path.as_str())
                        .and_then(|rest| rest.strip_prefix("/{"))
                        .and_then(|rest| rest.split('}').next())
                    else {
                        continue;
                    };
                    let mut l = LinkBuilder::new().operation_id(operation_id).parameter(param, "$response.body#/id");
                    for name in &own {
                        l = l.parameter(name, format!("$request.path.{name}"));
                    }
                    response.links.insert(operation_id.clone(), RefOr::T(l.build()));
                }
            }
        }
    }

    /// Spells out `pattern = "\\S"` (not blank) as exactly what `Errors::text` keeps.
    fn non_blank(schema: &mut RefOr<Schema>) {
        let RefOr::T(schema) = schema else { return };
        match schema {
            Schema::Object(o) => {
                if o.pattern.as_deref() == Some(r"\S") {
                    o.pattern = Some(crate::validate::NON_BLANK.to_owned());
                }
                o.properties.values_mut().for_each(non_blank);
                if let Some(AdditionalProperties::RefOr(a)) = o.additional_properties.as_deref_mut() {
                    non_blank(a);
                }
            }
            Schema::Array(a) => {
                if let ArrayItems::RefOrSchema(items) = &mut a.items {
                    non_blank(items);
                }
            }
            Schema::OneOf(x) => x.items.iter_mut().for_each(non_blank),
            Schema::AllOf(x) => x.items.iter_mut().for_each(non_blank),
            Schema::AnyOf(x) => x.items.iter_mut().for_each(non_blank),
            _ => {}
        }
    }

    /// Adds to every operation of `doc` the problem+json responses its kind can answer:
    ///
    /// - 401 to every operation with a `security` requirement (the `Principal` extractor);
    /// - 400, 413, 415 and 422 to every operation with a JSON request body (`AppJson`);
    /// - 422 to every operation with query or header parameters (`AppQuery`, `Idempotency-Key`,
    ///   `If-Match`);
    /// - 404 to every operation with path parameters (`AppPath`: an id that cannot exist);
    /// - 503 to every operation that uses the database (a lock timeout answers 503 with
    ///   `Retry-After`), and 408 (the router's timeout), to every one but `NO_DEPENDENCIES`.
    ///
    /// It also links each creating `POST` to the operations on what it created (`link`).
    ///
    /// 403 (permissions), 409, 412 and 429 depend on what the handler checks: each handler
    /// documents them, as a bare `(status = 403, body = Problem, content_type =
    /// "application/problem+json")` that becomes the shared response, or with a description of
    /// its own. Text fields documented `pattern = "\\S"` get `validate::NON_BLANK`.
    pub fn document(doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, status, description) in RESPONSES {
            components.responses.insert((*name).to_owned(), RefOr::T(problem(description, status)));
        }
        let timeout =
            format!("The request took longer than {} seconds and was abandoned.", super::REQUEST_TIMEOUT_SECS);
        components.responses.insert(TIMEOUT.0.to_owned(), RefOr::T(Response::new(timeout)));
        components.schemas.values_mut().for_each(non_blank);
        link(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                describe(op);
                for p in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(p) = p
                        && let Some(schema) = p.schema.as_mut()
                    {
                        non_blank(schema);
                    }
                }
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    for content in body.content.values_mut() {
                        if let RefOr::T(c) = content
                            && let Some(schema) = c.schema.as_mut()
                        {
                            non_blank(schema);
                        }
                    }
                }
                let secured = op
                    .security
                    .as_ref()
                    .is_some_and(|s| !s.is_empty() && s.iter().all(|r| *r != SecurityRequirement::default()));
                let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                    RefOr::T(b) => b.content.keys().any(|c| c == "application/json"),
                    RefOr::Ref(_) => false,
                });
                let params = op.parameters.iter().flatten().filter_map(|p| match p {
                    RefOr::T(p) => Some(p.parameter_in.clone()),
                    RefOr::Ref(_) => None,
                });
                let (mut in_path, mut in_query_or_header) = (false, false);
                for p in params {
                    match p {
                        ParameterIn::Path => in_path = true,
                        ParameterIn::Query | ParameterIn::QueryString | ParameterIn::Header => {
                            in_query_or_header = true
                        }
                        ParameterIn::Cookie => {}
                    }
                }
                if secured {
                    add(op, "401", "Unauthorized");
                }
                if json_body {
                    add(op, "400", "MalformedJson");
                    add(op, "413", "PayloadTooLarge");
                    add(op, "415", "UnsupportedMediaType");
                }
                if json_body || in_query_or_header {
                    add(op, "422", "ValidationFailed");
                }
                if in_path {
                    add(op, "404", "NotFound");
                }
                if !NO_DEPENDENCIES.contains(&path.as_str()) {
                    add(op, "503", "Unavailable");
                    add(op, TIMEOUT.1, TIMEOUT.0);
                }
            }
        }
    }
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
            trace_id = tracing::field::Empty,
        )
    };
    api.merge(crate::portal::router(&state))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/problems/{slug}", get(routes::problems::describe))
        // the route template each request matched, for the HTTP metrics
        .route_layer(axum::middleware::from_fn(crate::ops::route_label))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(crate::ops::http_metrics))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                // one line per answered request (an access log), in the request's span: its
                // request id, tenant, ticket and, tracing on, trace id
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(axum::middleware::from_fn(crate::ops::trace_context))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(request_id_in_problems))
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                    ApiError::Internal("handler panicked".into()).into_response()
                }))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(REQUEST_TIMEOUT_SECS),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn document() -> Value {
        let config = Config::figment(None)
            .set("jwt_secret", "x".repeat(32))
            .set("secrets_key", crate::config::DEV_SECRETS_KEY)
            .extract()
            .unwrap();
        serde_json::to_value(api(&config).1).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
        out
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::HashMap::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap().to_owned();
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("{method} {path} and {other} are both `{id}`");
            }
        }
    }

    #[test]
    fn parameters_are_where_the_handlers_read_them() {
        for (method, path, op) in operations(&document()) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_template = path.contains(&format!("{{{name}}}"));
                // a query struct without `#[into_params(parameter_in = Query)]` lands in the path
                assert_eq!(p["in"] == "path", in_template, "{method} {path}: parameter {name} is in {}", p["in"]);
                assert!(
                    !p["schema"]["type"].as_array().is_some_and(|t| t.contains(&Value::from("null"))),
                    "{method} {path}: parameter {name} may be null"
                );
            }
        }
    }

    #[test]
    fn every_operation_documents_the_refusals_of_its_kind() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let params: Vec<&str> =
                op["parameters"].as_array().into_iter().flatten().map(|p| p["in"].as_str().unwrap()).collect();
            let label = format!("{method} {path}");
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(has("401"), "{label}: no 401");
            }
            if op["requestBody"]["content"].get("application/json").is_some() {
                for s in ["400", "413", "415", "422"] {
                    assert!(has(s), "{label}: no {s}");
                }
            }
            if params.iter().any(|p| *p == "query" || *p == "header") {
                assert!(has("422"), "{label}: no 422");
            }
            if params.contains(&"path") {
                assert!(has("404"), "{label}: no 404");
            }
            // liveness and metrics answer whatever else is down
            if path != "/health" && path != "/metrics" {
                assert!(has("503"), "{label}: no 503");
            }
            for (status, r) in responses {
                let r = match r.get("$ref").and_then(Value::as_str) {
                    Some(name) => doc.pointer(name.strip_prefix('#').unwrap()).unwrap(),
                    None => r,
                };
                assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()), "{label}: {status} undescribed");
                if (status.starts_with('4') || status.starts_with('5')) && status != "408" {
                    let content = r["content"].as_object().unwrap();
                    assert!(
                        content.contains_key("application/problem+json")
                            || content.contains_key("text/html")
                            || path == "/ready",
                        "{label}: {status} is not problem+json"
                    );
                }
            }
        }
    }

    #[test]
    fn what_a_post_creates_is_linked_to_the_operations_on_it() {
        let doc = document();
        let links = &doc["paths"]["/api/v1/tickets"]["post"]["responses"]["201"]["links"];
        assert_eq!(links["get_ticket"]["parameters"]["ticket"], "$response.body#/id");
        assert_eq!(links["add_comment"]["operationId"], "add_comment");
        let links = &doc["paths"]["/api/v1/tickets/{ticket}/links"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            links["delete_link"]["parameters"],
            serde_json::json!({"link_id": "$response.body#/id", "ticket": "$request.path.ticket"})
        );
    }

    #[test]
    fn texts_that_must_not_be_blank_say_exactly_what_blank_is() {
        let text = document().to_string();
        assert!(!text.contains(r#""pattern":"\\S""#), "a `\\S` pattern was left as it was written");
        assert!(text.contains(&serde_json::to_string(crate::validate::NON_BLANK).unwrap()));
    }
}
