//! `/requests`: submitting a request from the catalog, which becomes a `REQ-` ticket (through
//! the store's one write path) and, when the item has a chain, its approval.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::Status;
use archer_orchestrator::access::Permission;
use archer_orchestrator::catalog::ItemSpec;
use archer_orchestrator::commands::ticket::NewTicket;
use archer_store::{StoreError, TenantTx, approval_changes, catalog, changes, teams};

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, IdempotencyKey};
use crate::forms;
use crate::idempotency;
use crate::views::ticket::{Ticket, actor, dto, refused};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// The catalog item's id.
    item: Uuid,
    /// The form's answers, checked against the item's JSON Schema.
    #[schema(value_type = Object)]
    fields: serde_json::Value,
}

/// Submit a request from the catalog. Needs `ticket:create` and to be in the item's audience.
///
/// The answers are checked against the item's form schema: every failing field is reported
/// in one problem+json (`errors[]` with the pointer under `/fields`, the rule and a message)
/// and nothing is stored. A valid request becomes a `REQ-` ticket that keeps the item version
/// and the answers, and starts its request workflow: the item's approval chain (the ticket
/// waits in `pending_approval`), then fulfilment. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/requests", tag = "catalog", request_body = RequestBody, security(("bearer" = [])),
    params(IdempotencyKey),
    responses(
        (status = 201, body = Ticket),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_request(
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<RequestBody>,
) -> ApiResult<Response> {
    caller.require(Permission::TicketCreate).await?;
    let mut tx = caller.begin().await?;
    let (item, spec) = requestable(&mut tx, &caller, &body).await?;
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /requests", &digest).await? {
        return Ok(replay);
    }
    let description = describe(&spec, &body.fields);
    let decided = NewTicket::catalog_request(item.name.clone(), description, spec.approval.is_some(), &actor(&caller));
    let ticket = match decided {
        Ok(t) => t,
        Err(r) => return Err(refused(&caller, r).await),
    };
    let answers = changes::CatalogAnswers { item_id: item.id, item_version: item.version, fields: &body.fields };
    let row = changes::open_request(&mut tx, &caller.tenant, &ticket, answers).await?;
    if let Some(chain) = &spec.approval {
        let waiting = approval_changes::Waiting {
            waiting_in: Status::PendingApproval,
            on_approved: Status::InProgress,
            on_rejected: Status::Rejected,
        };
        let source = format!("catalog item {} v{}", item.name, item.version);
        approval_changes::start(&mut tx, &row, &caller.tenant, chain, None, &source, waiting).await?;
    }
    let version = row.version;
    let dto = dto(caller.state(), &mut tx, &caller.tenant, row).await?;
    let location = format!("/api/v1/tickets/{}", dto.number);
    let mut resp =
        idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &dto, Some(&location)).await?;
    tx.commit().await?;
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::error::etag(version)) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(resp)
}

/// The active item a request names, if the caller may request it and the answers fit its form
/// (every failing field reported at once).
async fn requestable(tx: &mut TenantTx, caller: &Caller, body: &RequestBody) -> ApiResult<(catalog::Item, ItemSpec)> {
    let item = match catalog::item(tx, body.item).await {
        Ok(i) if i.active => i,
        Ok(_) | Err(StoreError::NotFound) => return Err(ApiError::field("/item", "unknown", "no such catalog item")),
        Err(e) => return Err(e.into()),
    };
    let spec: ItemSpec = serde_json::from_value(item.spec.clone()).map_err(ApiError::internal)?;
    let my_teams = teams::of_user(tx, caller.user_id()).await?;
    if !spec.audience.admits(&caller.principal.roles, &my_teams) {
        return Err(ApiError::Forbidden(format!("you may not request {}", item.name)));
    }
    if !body.fields.is_object() {
        return Err(ApiError::field("/fields", "type", "the answers are an object of field names to values"));
    }
    let errors =
        forms::check_answers(&spec.form_schema, &body.fields, "/fields").map_err(|e| ApiError::Internal(e.into()))?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((item, spec))
}

/// A Markdown summary of the answers, for the ticket's description.
fn describe(spec: &ItemSpec, fields: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            let label =
                spec.form_schema.pointer(&format!("/properties/{k}/title")).and_then(|t| t.as_str()).unwrap_or(k);
            let value = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            out.push_str(&format!("- **{label}**: {value}\n"));
        }
    }
    out.chars().take(20_000).collect()
}
