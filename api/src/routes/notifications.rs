//! `/notifications`: each user's in-app inbox.

use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_store::notifications;

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::{AppPath, AppQuery};
use crate::validate::{self, Errors};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(inbox)).routes(routes!(mark_read)).routes(routes!(mark_all_read))
}

#[derive(Serialize, ToSchema)]
pub struct Notification {
    id: Uuid,
    /// `sla_warning`, `sla_breach`, …
    kind: String,
    title: String,
    body: String,
    ticket_id: Option<Uuid>,
    /// What the notification is about (ticket number, target, instants…).
    data: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    read_at: Option<OffsetDateTime>,
}

impl From<notifications::Notification> for Notification {
    fn from(n: notifications::Notification) -> Self {
        Notification {
            id: n.id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            ticket_id: n.ticket_id,
            data: n.data,
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Inbox {
    items: Vec<Notification>,
    unread: i64,
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only unread ones (default false).
    #[serde(default)]
    #[param(required = false)]
    unread: bool,
    /// From a previous page's `next_cursor`.
    cursor: Option<Uuid>,
    /// Items per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(InboxQuery), security(("bearer" = [])), responses(
    (status = 200, body = Inbox),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn inbox(caller: Caller, AppQuery(q): AppQuery<InboxQuery>) -> ApiResult<Json<Inbox>> {
    let mut errors = Errors::new();
    let limit = validate::limit(&mut errors, q.limit, 50, 200);
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let (rows, unread) = notifications::inbox(&mut tx, caller.user_id(), q.unread, q.cursor, limit).await?;
    tx.commit().await?;
    let next_cursor = validate::next_cursor(&rows, limit, |n| n.id);
    Ok(Json(Inbox { items: rows.into_iter().map(Notification::from).collect(), unread, next_cursor }))
}

/// Mark one notification read.
#[utoipa::path(post, path = "/notifications/{id}/read", tag = "notifications", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Notification),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn mark_read(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Notification>> {
    let mut tx = caller.begin().await?;
    let n = notifications::mark_read(&mut tx, caller.user_id(), id).await?;
    tx.commit().await?;
    Ok(Json(n.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Marked {
    marked: u64,
}

/// Mark every notification read.
#[utoipa::path(post, path = "/notifications/read-all", tag = "notifications", security(("bearer" = [])), responses((status = 200, body = Marked)))]
pub async fn mark_all_read(caller: Caller) -> ApiResult<Json<Marked>> {
    let mut tx = caller.begin().await?;
    let marked = notifications::mark_all_read(&mut tx, caller.user_id()).await?;
    tx.commit().await?;
    Ok(Json(Marked { marked }))
}
