//! The API's one error type, mapped to HTTP once, as `application/problem+json` (RFC 9457).
//!
//! 5xx bodies reveal nothing; the cause is logged once, with the request id that the body
//! carries, so an operator can find it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use archer_orchestrator::Status;
use archer_store::StoreError;

/// One failing field: where (a JSON pointer into the request), and why.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the field, e.g. `/impact`; for query parameters `?name`.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
    /// A stable machine-readable reason (`required`, `range`, `unknown_field`, `type`…).
    pub code: String,
    /// For a field that is a document of its own (a YAML playbook): the 1-based line of the
    /// node in that document (0 when the parser could not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// With `line`: the 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, code: &str, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into(), code: code.to_owned(), line: None, column: None }
    }

    /// A failure inside a document sent as text (a playbook), located by line and column there
    /// as well as by pointer, so an editor can underline it.
    pub fn located(mut self, line: u64, column: u64) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    IllegalTransition { detail: String, from: Status, to: Status, allowed: Vec<Status> },
    #[error("{0}")]
    Conflict(String),
    #[error("the resource changed: it is now at {current_etag}")]
    PreconditionFailed { current_etag: String },
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_secs: u64 },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    pub fn field(pointer: &str, code: &str, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(pointer, code, detail)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::IllegalTransition { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's slug; `type` is `/problems/<slug>`, documented at that path.
    fn slug(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::Validation(_) => "validation-failed",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not-found",
            ApiError::IllegalTransition { .. } => "illegal-transition",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed { .. } => "precondition-failed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => {
                "something went wrong on our side; quote the request id when reporting it".to_owned()
            }
            ApiError::Validation(errs) if errs.len() == 1 => format!("{}: {}", errs[0].pointer, errs[0].detail),
            ApiError::Validation(errs) => format!("{} fields are invalid", errs.len()),
            other => other.to_string(),
        };
        let (errors, allowed) = match self {
            ApiError::Validation(errs) => (errs.clone(), None),
            ApiError::IllegalTransition { allowed, .. } => {
                (vec![FieldError::new("/status", "illegal_transition", self.to_string())], Some(allowed.clone()))
            }
            _ => (Vec::new(), None),
        };
        Problem {
            r#type: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            allowed,
            request_id: None,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Identifies the kind of problem; documented at that path.
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field, when the problem is about the request's content.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For an illegal status change: the statuses allowed from the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Status>>,
    /// The request's id (also in the `x-request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut resp = problem_response(self.problem());
        match &self {
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"archer\""));
            }
            ApiError::TooManyRequests { retry_after_secs, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

pub fn problem_response(p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&p).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"))], body).into_response()
}

/// Database refusals that are the client's fault become field errors; the rest are 500s.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::VersionConflict { current } => ApiError::PreconditionFailed { current_etag: etag(current) },
            StoreError::Constraint { constraint, .. } => match on_constraint(&constraint) {
                Some(err) => err,
                None => ApiError::Internal(format!("constraint {constraint} refused a write").into()),
            },
            StoreError::Busy(reason) => {
                tracing::warn!(%reason, "database busy");
                ApiError::Unavailable("the database is busy; try again in a moment".into())
            }
            other => ApiError::internal(other),
        }
    }
}

/// Named constraints that mean "your input conflicts with existing data".
fn on_constraint(name: &str) -> Option<ApiError> {
    let (pointer, code, detail) = match name {
        "users_email_per_tenant" => ("/email", "taken", "a user with this email already exists"),
        "teams_name_per_tenant" => ("/name", "taken", "a team with this name already exists"),
        "users_tenant_id_manager_id_fkey" => ("/manager_id", "unknown", "no such user"),
        "user_roles_role_fkey" => ("/roles", "unknown", "unknown role"),
        "team_members_tenant_id_user_id_fkey" => ("/user_id", "unknown", "no such user"),
        "tickets_tenant_id_requester_id_fkey" => ("/requester_id", "unknown", "no such user"),
        "tickets_tenant_id_assignee_id_fkey" => ("/assignee_id", "unknown", "no such user"),
        "tickets_tenant_id_team_id_fkey" => ("/team_id", "unknown", "no such team"),
        "ticket_links_from_ticket_id_to_ticket_id_kind_key" => ("/target", "taken", "this link already exists"),
        "ticket_links_check" => ("/target", "self_link", "a ticket cannot link to itself"),
        _ => return None,
    };
    Some(ApiError::field(pointer, code, detail))
}

/// A strong ETag for a versioned resource.
pub fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

pub type ApiResult<T> = Result<T, ApiError>;
