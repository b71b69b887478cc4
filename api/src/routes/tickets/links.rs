//! Links between tickets (`duplicate_of`, `blocked_by`, `caused_by`, `relates_to`, `task_of`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::LinkKind;
use archer_orchestrator::access::Permission;
use archer_store::StoreError;
use archer_store::tickets as store;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::views::ticket::find;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Link {
    id: Uuid,
    kind: LinkKind,
    /// `outgoing`: this ticket *kind* the other; `incoming`: the other *kind* this one.
    direction: String,
    /// The other ticket's number.
    ticket: String,
    ticket_id: Uuid,
    created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

fn link_dto(this: Uuid, l: store::Link) -> ApiResult<Link> {
    let outgoing = l.from_ticket_id == this;
    Ok(Link {
        id: l.id,
        kind: l.kind,
        direction: if outgoing { "outgoing" } else { "incoming" }.into(),
        ticket: format!("{}-{:06}", l.other_kind.prefix(), l.other_number),
        ticket_id: if outgoing { l.to_ticket_id } else { l.from_ticket_id },
        created_by: l.created_by,
        created_at: l.created_at,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    kind: LinkKind,
    /// The other ticket: id or number.
    target: String,
}

/// A ticket's links, both directions.
#[utoipa::path(get, path = "/tickets/{ticket}/links", tag = "tickets", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Link>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_links(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Vec<Link>>> {
    let mut tx = caller.begin().await?;
    let t = find(&mut tx, &caller.principal, &reference, false).await?;
    let links = store::links(&mut tx, t.id).await?;
    tx.commit().await?;
    Ok(Json(links.into_iter().map(|l| link_dto(t.id, l)).collect::<ApiResult<_>>()?))
}

/// Link this ticket to another (`duplicate_of`, `blocked_by`, `caused_by`, `relates_to`, `task_of`).
/// Needs `ticket:update`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/tickets/{ticket}/links", tag = "tickets", request_body = NewLink, security(("bearer" = [])),
    params(("ticket" = String, Path), IdempotencyKey),
    responses(
        (status = 201, body = Link),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_link(
    caller: Caller,
    key: IdempotencyKey,
    AppPath(reference): AppPath<String>,
    AppJson(body, digest): AppJson<NewLink>,
) -> ApiResult<Response> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let t = find(&mut tx, &caller.principal, &reference, false).await?;
    let scope = format!("POST /tickets/{}/links", t.id);
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, &scope, &digest).await? {
        return Ok(replay);
    }
    let target = match find(&mut tx, &caller.principal, body.target.trim(), false).await {
        Ok(t) => t,
        Err(ApiError::NotFound) => return Err(ApiError::field("/target", "unknown", "no such ticket")),
        Err(e) => return Err(e),
    };
    if target.id == t.id {
        return Err(ApiError::field("/target", "self_link", "a ticket cannot link to itself"));
    }
    let link = store::add_link(&mut tx, caller.tenant_id(), t.id, target.id, body.kind, caller.user_id()).await?;
    let dto = link_dto(t.id, link)?;
    let resp = idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &dto, None).await?;
    tx.commit().await?;
    Ok(resp)
}

/// Remove a link. Needs `ticket:update`.
#[utoipa::path(delete, path = "/tickets/{ticket}/links/{link_id}", tag = "tickets", params(("ticket" = String, Path), ("link_id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_link(
    caller: Caller,
    AppPath((reference, link_id)): AppPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let t = find(&mut tx, &caller.principal, &reference, false).await?;
    match store::delete_link(&mut tx, t.id, link_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound),
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
