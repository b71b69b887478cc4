//! `/playbooks`, `/playbook-runs` and `/connections`: YAML playbooks (saved as drafts, checked
//! completely, published, retired, previewed by a dry run), their runs on tickets, and the
//! connections their HTTP steps call. Admins (`playbook:admin`) author playbooks and
//! connections; agents (`ticket:update`) start manual runs and read runs.
//!
//! The API never waits on Temporal: starting, retrying or cancelling a run records the intent
//! in the run's transaction (the outbox) and answers 202; the relay delivers it.

pub mod connections;
pub mod documents;
pub mod runs;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::{AppState, BodyLimit};
use crate::error::ApiError;
use crate::extract::AppJson;

/// The largest playbook request body read. Larger than the domain's document limit
/// (`playbook::MAX_DOCUMENT_BYTES`) on purpose: a document over that limit is refused like
/// any other problem in it (422, `too_large`, with its line and column) rather than as a bare
/// 413, and only a body beyond this is cut off.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    let documents = OpenApiRouter::new()
        .routes(routes!(documents::list_playbooks, documents::save_playbook))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(BodyLimit(BODY_LIMIT)));
    OpenApiRouter::new()
        .merge(documents)
        .routes(routes!(documents::get_playbook))
        .routes(routes!(documents::get_version))
        .routes(routes!(documents::publish_version))
        .routes(routes!(documents::retire_version))
        .routes(routes!(documents::dry_run))
        .routes(routes!(runs::list_ticket_runs, runs::start_run))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::retry_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(connections::list_connections, connections::create_connection))
        .routes(routes!(connections::get_connection, connections::update_connection, connections::delete_connection))
}

/// `{"source": "..."}`: a playbook sent as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceBody {
    /// The YAML document.
    source: String,
}

/// A playbook document: the body itself as `application/yaml` (or `text/yaml`), or JSON
/// `{"source": "..."}`. Any other media type is refused (415).
pub struct PlaybookSource(pub String);

impl<S: Send + Sync> FromRequest<S> for PlaybookSource {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mime = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(mime.as_str(), "application/yaml" | "text/yaml" | "application/x-yaml") {
            let AppJson(body, _) = AppJson::<SourceBody>::from_request(req, state).await?;
            return Ok(PlaybookSource(body.source));
        }
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(rej.body_text())
            }
        })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::field("/", "encoding", "a YAML document is UTF-8 text"))?;
        if text.contains('\0') {
            return Err(ApiError::field("/", "nul", "must not contain the NUL character"));
        }
        Ok(PlaybookSource(text))
    }
}
