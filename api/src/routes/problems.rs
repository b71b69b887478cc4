//! `GET /problems/{slug}`: what each problem `type` means.

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::ApiError;

const PROBLEMS: &[(&str, &str)] = &[
    ("malformed-json", "The body is not valid JSON. `detail` gives the line and column."),
    (
        "validation-failed",
        "The request is well-formed but some fields are wrong. `errors[]` lists every failing field by JSON pointer (`/impact`) or query parameter (`?limit`), with a machine-readable `code` and a `detail`. Nothing was written.",
    ),
    ("bad-request", "The request cannot be understood as sent."),
    (
        "unauthorized",
        "No valid access token: it is missing, malformed, tampered with, signed with another key or algorithm, or expired. Log in or refresh.",
    ),
    ("forbidden", "The access token is valid but its roles lack the permission this needs. The refusal is audited."),
    (
        "not-found",
        "No such resource in your tenant (resources of other tenants are indistinguishable from missing ones).",
    ),
    (
        "illegal-transition",
        "The ticket's status cannot change that way from where it is. `allowed` lists the statuses it may move to.",
    ),
    ("conflict", "The request conflicts with the current state of the resource."),
    (
        "precondition-failed",
        "`If-Match` named a version that is no longer current; re-read the resource (its `ETag`) and retry.",
    ),
    ("payload-too-large", "The body exceeds the configured limit."),
    ("unsupported-media-type", "Send the body as `application/json`."),
    ("too-many-requests", "Too many attempts; wait `Retry-After` seconds."),
    ("method-not-allowed", "This path does not accept that method."),
    ("unavailable", "A dependency (database or Temporal) is not reachable; retry later."),
    ("internal", "Something failed on the server. Quote the `request_id` when reporting it."),
];

pub async fn describe(Path(slug): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (_, text) = PROBLEMS.iter().find(|(s, _)| *s == slug).ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{slug}\n\n{text}\n")))
}
