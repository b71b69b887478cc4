//! `GET /approvals`: each approver's inbox, what waits for their decision or what they decided.

use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use archer_store::TenantTx;
use archer_store::approvals::{self, InboxRow};

use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::AppQuery;
use crate::validate::Errors;
use crate::views::approval::{UserRef, user_ref, user_ref_of};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// `pending` (default): what waits for your decision, oldest first; `decided`: what you
    /// decided, newest first.
    #[param(pattern = "^(pending|decided)$")]
    state: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// Items per page, 1–200 (default 25).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// One page of an approvals inbox.
#[derive(Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<InboxItem>,
    page: i64,
    limit: i64,
    /// Items on every page together.
    total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct InboxItem {
    /// The approval (`GET /approvals/{id}`); decide with `POST /approvals/{id}/approve`.
    pub approval_id: Uuid,
    pub task_id: Uuid,
    pub step: String,
    pub ticket_id: Uuid,
    pub ticket: String,
    pub title: String,
    pub requester: UserRef,
    pub on_behalf_of: Option<UserRef>,
    /// `asked`, `approved` or `rejected`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub asked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    /// When the step times out.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timeout_at: Option<OffsetDateTime>,
}

/// Your approvals inbox: the tasks you are asked to decide (being asked is the permission,
/// whatever your roles), or those you decided; paged like every list.
#[utoipa::path(get, path = "/approvals", operation_id = "approval_inbox", tag = "approvals", params(InboxQuery), security(("bearer" = [])), responses(
    (status = 200, body = InboxPage),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn inbox(caller: Caller, AppQuery(q): AppQuery<InboxQuery>) -> ApiResult<Json<InboxPage>> {
    let mut errors = Errors::new();
    let pending = match q.state.as_deref().unwrap_or("pending") {
        "pending" => true,
        "decided" => false,
        _ => {
            errors.add("?state", "enum", "`pending` or `decided`");
            true
        }
    };
    let (page, limit) = crate::validate::page(&mut errors, q.page, q.limit);
    errors.into_result()?;
    let mut tx = caller.begin().await?;
    let (rows, total) = approvals::inbox(&mut tx, caller.user_id(), pending, limit, (page - 1) * limit).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(item(&mut tx, r).await?);
    }
    tx.commit().await?;
    Ok(Json(InboxPage { items, page, limit, total }))
}

async fn item(tx: &mut TenantTx, r: InboxRow) -> ApiResult<InboxItem> {
    let kind = r.ticket_kind;
    let requester = user_ref(tx, r.requester_id).await?;
    let on_behalf_of = user_ref_of(tx, r.on_behalf_of).await?;
    Ok(InboxItem {
        approval_id: r.approval_id,
        task_id: r.task_id,
        step: r.step_name,
        ticket_id: r.ticket_id,
        ticket: format!("{}-{:06}", kind.prefix(), r.ticket_number),
        title: r.title,
        requester,
        on_behalf_of,
        state: r.state,
        asked_at: r.asked_at,
        decided_at: r.decided_at,
        timeout_at: r.timeout_at,
    })
}
