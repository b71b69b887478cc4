//! A ticket's comments: public replies and internal notes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::commands::ticket as command;
use archer_store::changes;
use archer_store::tickets as store;

use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::validate::Errors;
use crate::views::ticket::{actor, decided, find};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Comment {
    id: Uuid,
    /// Absent for notes Archer wrote itself (escalations).
    author_id: Option<Uuid>,
    /// Markdown.
    body: String,
    /// Internal notes are never shown to the requester.
    internal: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<store::Comment> for Comment {
    fn from(c: store::Comment) -> Self {
        Comment { id: c.id, author_id: c.author_id, body: c.body, internal: c.internal, created_at: c.created_at }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// Markdown.
    #[schema(pattern = r"\S", max_length = 20000)]
    body: String,
    /// An internal note (agents only). Default false.
    #[serde(default)]
    internal: bool,
}

/// A ticket's comments, oldest first; requesters see only public ones.
#[utoipa::path(get, path = "/tickets/{ticket}/comments", tag = "tickets", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Comment>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_comments(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Vec<Comment>>> {
    let mut tx = caller.begin().await?;
    let t = find(&mut tx, &caller.principal, &reference, false).await?;
    let comments = store::comments(&mut tx, t.id, caller.is_agent()).await?;
    tx.commit().await?;
    Ok(Json(comments.into_iter().map(Comment::from).collect()))
}

/// Comment on a ticket. Public comments reach the ticket's workflow. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/tickets/{ticket}/comments", tag = "tickets", request_body = NewComment, security(("bearer" = [])),
    params(("ticket" = String, Path), IdempotencyKey),
    responses(
        (status = 201, body = Comment),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "an internal note needs `ticket:update`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "the ticket is closed"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "an empty body, or an `Idempotency-Key` used for another request"),
    ))]
pub async fn add_comment(
    caller: Caller,
    key: IdempotencyKey,
    AppPath(reference): AppPath<String>,
    AppJson(body, digest): AppJson<NewComment>,
) -> ApiResult<Response> {
    let mut errors = Errors::new();
    let text = errors.text("/body", &body.body, 1, 20000);
    errors.into_result()?;
    let (actor, comment) = (actor(&caller), command::NewComment { internal: body.internal });
    decided(&caller, comment.authorize(&actor)).await?;
    let mut tx = caller.begin().await?;
    let t = find(&mut tx, &caller.principal, &reference, true).await?;
    let scope = format!("POST /tickets/{}/comments", t.id);
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, &scope, &digest).await? {
        return Ok(replay);
    }
    let voice = decided(&caller, changes::snapshot(&t)?.comment(&comment, &actor)).await?;
    let c = changes::comment(&mut tx, &caller.tenant, &t, caller.user_id(), voice, &text, body.internal).await?;
    let resp =
        idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &Comment::from(c), None).await?;
    tx.commit().await?;
    Ok(resp)
}
