//! `/tickets`: incidents, service requests, changes and problems; their comments and links.
//!
//! Every write records its workflow intent in the same transaction (see `archer_store::changes`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::catalog::{ChangeType, Risk};
use archer_orchestrator::workflows::ticket::CommentAuthor;
use archer_orchestrator::{Impact, LinkKind, Priority, Status, TicketKind, Urgency};
use archer_store::tickets::{
    self as store, AssigneeFilter, BreachedFilter, Cursor, CursorValue, SortField, TicketFilter,
};
use archer_store::{StoreError, TenantTx, sla, tx_now};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Problem, etag};
use crate::extract::{AppJson, AppPath, AppQuery, IdempotencyKey, RequestMeta};
use crate::idempotency;
use crate::validate::Errors;
use crate::views::ticket::{Ticket, dto, enum_of, find, is_agent, tenant_slug, to_dto};
use archer_store::changes::{self as service, Event};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(get_ticket, update_ticket))
        .routes(routes!(list_comments, add_comment))
        .routes(routes!(list_links, add_link))
        .routes(routes!(delete_link))
}

fn with_etag(mut resp: Response, version: i32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    kind: TicketKind,
    #[schema(pattern = r"\S", max_length = 200)]
    title: String,
    #[serde(default)]
    #[schema(max_length = 20000)]
    description: String,
    /// 1 (extensive) to 4 (minor).
    #[schema(value_type = Impact)]
    impact: i64,
    /// 1 (critical) to 4 (low).
    #[schema(value_type = Urgency)]
    urgency: i64,
    /// Overrides the matrix; needs `ticket:update` and `priority_reason`.
    #[schema(value_type = Option<Priority>)]
    priority: Option<i64>,
    /// Why the priority is overridden: required with `priority`, and only with it.
    #[schema(pattern = r"\S")]
    priority_reason: Option<String>,
    /// On whose behalf (agents only); defaults to the caller.
    requester_id: Option<Uuid>,
    /// Needs `ticket:assign`.
    assignee_id: Option<Uuid>,
    /// Needs `ticket:assign`.
    team_id: Option<Uuid>,
    #[schema(pattern = r"\S", max_length = 100)]
    category: Option<String>,
    /// At most 20 (duplicates are dropped).
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<Tag>)]
    tags: Vec<String>,
    /// Required for changes (and only for them): which approval the change gets.
    change_type: Option<ChangeType>,
    /// Required for changes (and only for them).
    risk: Option<Risk>,
}

/// Changes carry a type and a risk; other kinds carry neither.
fn check_change_fields(errors: &mut Errors, kind: TicketKind, change_type: bool, risk: bool) {
    if kind == TicketKind::Change {
        if !change_type {
            errors.add("/change_type", "required", "a change is standard, normal or emergency");
        }
        if !risk {
            errors.add("/risk", "required", "a change's risk is low, medium or high");
        }
    } else {
        if change_type {
            errors.add("/change_type", "kind", "only changes have a change type");
        }
        if risk {
            errors.add("/risk", "kind", "only changes have a risk");
        }
    }
}

fn check_tags(errors: &mut Errors, tags: &[String]) -> Vec<String> {
    if tags.len() > 20 {
        errors.add("/tags", "length", "at most 20 tags");
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let t = errors.text(&format!("/tags/{i}"), t, 1, 50);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn check_level<T>(
    errors: &mut Errors,
    pointer: &str,
    v: i64,
    f: fn(i64) -> Result<T, archer_orchestrator::priority::OutOfRange>,
) -> Option<T> {
    match f(v) {
        Ok(x) => Some(x),
        Err(e) => {
            errors.add(pointer, "range", e.to_string());
            None
        }
    }
}

/// Create a ticket. Needs `ticket:create`.
///
/// Writes the ticket, its audit row and the intent to start its workflow in one transaction;
/// the workflow (`<tenant>/<number>`) starts moments later. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/tickets", tag = "tickets", request_body = CreateTicket, security(("bearer" = [])),
    params(IdempotencyKey),
    responses(
        (status = 201, body = Ticket, headers(("ETag" = String), ("Location" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_ticket(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CreateTicket>,
) -> ApiResult<Response> {
    p.require(&state, &meta, Permission::TicketCreate).await?;
    let tenant = tenant_slug(&p)?;
    let mut errors = Errors::new();
    let title = errors.text("/title", &body.title, 1, 200);
    let description = errors.text("/description", &body.description, 0, 20000);
    let impact = check_level(&mut errors, "/impact", body.impact, Impact::new);
    let urgency = check_level(&mut errors, "/urgency", body.urgency, Urgency::new);
    let category = body.category.as_deref().map(|c| errors.text("/category", c, 1, 100));
    let tags = check_tags(&mut errors, &body.tags);
    check_change_fields(&mut errors, body.kind, body.change_type.is_some(), body.risk.is_some());
    let override_ = match (body.priority, body.priority_reason.as_deref().map(str::trim)) {
        (None, None) => None,
        (Some(_), None) | (Some(_), Some("")) => {
            errors.add("/priority_reason", "required", "overriding the priority needs a reason");
            None
        }
        (None, Some(_)) => {
            errors.add("/priority", "required", "a priority_reason goes with a priority override");
            None
        }
        (Some(v), Some(reason)) => {
            check_level(&mut errors, "/priority", v, Priority::new).map(|pr| (pr, reason.to_owned()))
        }
    };
    errors.into_result()?;
    let (Some(impact), Some(urgency)) = (impact, urgency) else { unreachable!("validated above") };
    if override_.is_some() {
        p.require(&state, &meta, Permission::TicketUpdate).await?;
    }
    if body.assignee_id.is_some() || body.team_id.is_some() {
        p.require(&state, &meta, Permission::TicketAssign).await?;
    }
    let requester_id = match body.requester_id {
        Some(r) if r != p.user_id => {
            p.require(&state, &meta, Permission::TicketUpdate).await?;
            r
        }
        _ => p.user_id,
    };
    let (priority, priority_reason) = match override_ {
        Some((pr, reason)) => (pr, Some(reason)),
        None => (Priority::derive(impact, urgency), None),
    };

    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    if let Some(replay) = idempotency::claim(&mut tx, &p, &key, "POST /tickets", &digest).await? {
        return Ok(replay);
    }
    let new = store::NewTicket {
        id: Uuid::now_v7(),
        tenant_id: p.tenant_id,
        kind: body.kind.as_str().to_owned(),
        title,
        description,
        requester_id,
        assignee_id: body.assignee_id,
        team_id: body.team_id,
        impact: i16::from(impact.get()),
        urgency: i16::from(urgency.get()),
        priority: i16::from(priority.get()),
        priority_reason,
        category,
        status: Status::New.as_str().to_owned(),
        tags,
        change_type: body.change_type.map(|t| t.as_str().to_owned()),
        risk: body.risk.map(|r| r.as_str().to_owned()),
        catalog_item_id: None,
        catalog_item_version: None,
        request_fields: None,
    };
    let row = service::create(&mut tx, &tenant, &new).await?;
    let version = row.version;
    let dto = dto(&state, &mut tx, &tenant, row).await?;
    tracing::Span::current().record("ticket", dto.number.as_str());
    let location = format!("/api/v1/tickets/{}", dto.number);
    let resp = idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &dto, Some(&location)).await?;
    tx.commit().await?;
    Ok(with_etag(resp, version))
}

/// One ticket, by id or number (`INC-000045`).
#[utoipa::path(get, path = "/tickets/{ticket}", tag = "tickets", params(("ticket" = String, Path, description = "id or number")), security(("bearer" = [])), responses(
    (status = 200, body = Ticket, headers(("ETag" = String))),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_ticket(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Response> {
    let tenant = tenant_slug(&p)?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let row = find(&mut tx, &p, &reference, false).await?;
    let version = row.version;
    let dto = dto(&state, &mut tx, &tenant, row).await?;
    tx.commit().await?;
    Ok(with_etag(Json(dto).into_response(), version))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTicket {
    #[schema(pattern = r"\S", max_length = 200)]
    title: Option<String>,
    #[schema(max_length = 20000)]
    description: Option<String>,
    status: Option<Status>,
    #[schema(value_type = Option<Impact>)]
    impact: Option<i64>,
    #[schema(value_type = Option<Urgency>)]
    urgency: Option<i64>,
    /// Overrides the matrix; needs `priority_reason`. Changing impact or urgency without it
    /// derives the priority again and clears an override.
    #[schema(value_type = Option<Priority>)]
    priority: Option<i64>,
    /// Why the priority is overridden: required with `priority`, and only with it.
    #[schema(pattern = r"\S")]
    priority_reason: Option<String>,
    /// `null` unassigns. Needs `ticket:assign`.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<Uuid>)]
    assignee_id: Option<Option<Uuid>>,
    /// `null` clears. Needs `ticket:assign`.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<Uuid>)]
    team_id: Option<Option<Uuid>>,
    /// `null` clears.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>, pattern = r"\S", max_length = 100)]
    category: Option<Option<String>>,
    /// Replaces the tags: at most 20 (duplicates are dropped).
    #[schema(max_items = 20, value_type = Option<Vec<Tag>>)]
    tags: Option<Vec<String>>,
    /// Changes, before authorization. Needs `ticket:update`.
    change_type: Option<ChangeType>,
    /// Changes, before authorization. Needs `ticket:update`.
    risk: Option<Risk>,
}

/// What a requester may do to their own ticket without `ticket:update`.
fn requester_may(kind: TicketKind, from: Status, to: Status) -> bool {
    match kind {
        TicketKind::Incident | TicketKind::ServiceRequest => matches!(
            (from, to),
            (Status::Resolved, Status::Closed)
                | (Status::Resolved, Status::InProgress)
                | (Status::New, Status::Cancelled)
                | (Status::PendingApproval, Status::Cancelled)
        ),
        _ => false,
    }
}

/// Change a ticket. Send `If-Match` with the `ETag` you read to refuse lost updates (412).
///
/// An illegal status change is a 409 listing the allowed ones. Each status, priority and
/// assignment change is delivered to the ticket's workflow as a signal.
#[utoipa::path(patch, path = "/tickets/{ticket}", tag = "tickets", request_body = UpdateTicket, security(("bearer" = [])),
    params(
        ("ticket" = String, Path, description = "id or number"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "the `ETag` you read, or `*`"),
    ),
    responses(
        (status = 200, body = Ticket, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "illegal status change"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_ticket(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    headers: HeaderMap,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<UpdateTicket>,
) -> ApiResult<Response> {
    let tenant = tenant_slug(&p)?;
    let mut errors = Errors::new();
    let title = body.title.as_deref().map(|t| errors.text("/title", t, 1, 200));
    let description = body.description.as_deref().map(|d| errors.text("/description", d, 0, 20000));
    let impact = body.impact.and_then(|v| check_level(&mut errors, "/impact", v, Impact::new));
    let urgency = body.urgency.and_then(|v| check_level(&mut errors, "/urgency", v, Urgency::new));
    let category = body.category.as_ref().map(|c| c.as_deref().map(|c| errors.text("/category", c, 1, 100)));
    let tags = body.tags.as_deref().map(|t| check_tags(&mut errors, t));
    let override_ = match (body.priority, body.priority_reason.as_deref().map(str::trim)) {
        (None, None) => None,
        (Some(_), None) | (Some(_), Some("")) => {
            errors.add("/priority_reason", "required", "overriding the priority needs a reason");
            None
        }
        (None, Some(_)) => {
            errors.add("/priority", "required", "a priority_reason goes with a priority override");
            None
        }
        (Some(v), Some(reason)) => {
            check_level(&mut errors, "/priority", v, Priority::new).map(|pr| (pr, reason.to_owned()))
        }
    };
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().map(str::trim).map(str::to_owned));
    if let Some(Err(_)) = if_match {
        errors.add("If-Match", "format", "not a valid ETag");
    }
    errors.into_result()?;
    if body.assignee_id.is_some() || body.team_id.is_some() {
        p.require(&state, &meta, Permission::TicketAssign).await?;
    }
    if impact.is_some()
        || urgency.is_some()
        || override_.is_some()
        || category.is_some()
        || tags.is_some()
        || body.change_type.is_some()
        || body.risk.is_some()
    {
        p.require(&state, &meta, Permission::TicketUpdate).await?;
    }

    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let old = find(&mut tx, &p, &reference, true).await?;
    if let Some(Ok(tag)) = &if_match
        && tag != "*"
        && tag.trim_start_matches("W/") != etag(old.version)
    {
        return Err(ApiError::PreconditionFailed { current_etag: etag(old.version) });
    }
    let parsed = service::parse(&old)?;
    if (title.is_some() || description.is_some()) && !is_agent(&p) && old.requester_id != p.user_id {
        p.require(&state, &meta, Permission::TicketUpdate).await?;
    }
    let now = tx_now(&mut tx).await?;
    let mut new = old.clone();
    let mut events = Vec::new();

    if (body.change_type.is_some() || body.risk.is_some()) && parsed.kind != TicketKind::Change {
        let mut e = Errors::new();
        check_change_fields(&mut e, parsed.kind, body.change_type.is_some(), body.risk.is_some());
        e.into_result()?;
    }
    let type_changes = body.change_type.is_some_and(|t| old.change_type.as_deref() != Some(t.as_str()))
        || body.risk.is_some_and(|r| old.risk.as_deref() != Some(r.as_str()));
    if type_changes && !matches!(parsed.status, Status::New | Status::Assess) {
        return Err(ApiError::Conflict(format!(
            "a change's type and risk are settled once it is {}: send it back to assess first",
            parsed.status
        )));
    }
    if let Some(t) = body.change_type {
        new.change_type = Some(t.as_str().to_owned());
    }
    if let Some(r) = body.risk {
        new.risk = Some(r.as_str().to_owned());
    }
    let mut approval_starts = false;
    let mut approval_cancelled = None;
    if let Some(to) = body.status.filter(|s| *s != parsed.status) {
        if !is_agent(&p) && !requester_may(parsed.kind, parsed.status, to) {
            p.require(&state, &meta, Permission::TicketUpdate).await?;
        }
        if Status::approval_only(parsed.kind, parsed.status, to) {
            return Err(ApiError::IllegalTransition {
                detail: format!(
                    "only its approval moves a {} from {} to {}; {}",
                    parsed.kind,
                    parsed.status,
                    to,
                    if parsed.status == Status::Authorize || parsed.status == Status::PendingApproval {
                        "decide the approval (POST /api/v1/approvals/{id}/approve or reject)"
                    } else {
                        "requests from the catalog wait for theirs"
                    }
                ),
                from: parsed.status,
                to,
                allowed: parsed
                    .status
                    .allowed_next(parsed.kind)
                    .iter()
                    .copied()
                    .filter(|s| !Status::approval_only(parsed.kind, parsed.status, *s))
                    .collect(),
            });
        }
        approval_starts = parsed.kind == TicketKind::Change && to == Status::Authorize;
        if matches!(parsed.status, Status::Authorize | Status::PendingApproval) {
            approval_cancelled =
                Some(format!("the ticket moved from {} to {} before its approval ended", parsed.status, to));
        }
        parsed.status.transition(parsed.kind, to).map_err(|e| ApiError::IllegalTransition {
            detail: e.to_string(),
            from: e.from,
            to: e.to,
            allowed: e.allowed.clone(),
        })?;
        new.status = to.as_str().to_owned();
        if to == Status::Resolved {
            new.resolved_at = Some(now);
        } else if parsed.status.is_reopen(to) {
            new.resolved_at = None;
        }
        if to.is_terminal() {
            new.closed_at = Some(now);
        }
        events.push(Event::Status { from: parsed.status, to });
    }
    if let Some(t) = title {
        new.title = t;
    }
    if let Some(d) = description {
        new.description = d;
    }
    if let Some(i) = impact {
        new.impact = i16::from(i.get());
    }
    if let Some(u) = urgency {
        new.urgency = i16::from(u.get());
    }
    match override_ {
        Some((pr, reason)) => {
            new.priority = i16::from(pr.get());
            new.priority_reason = Some(reason);
        }
        None if impact.is_some() || urgency.is_some() => {
            let i = Impact::new(i64::from(new.impact)).map_err(ApiError::internal)?;
            let u = Urgency::new(i64::from(new.urgency)).map_err(ApiError::internal)?;
            new.priority = i16::from(Priority::derive(i, u).get());
            new.priority_reason = None;
        }
        None => {}
    }
    if new.priority != old.priority {
        let to = Priority::new(i64::from(new.priority)).map_err(ApiError::internal)?;
        events.push(Event::Priority { from: parsed.priority, to, reason: new.priority_reason.clone() });
    }
    if let Some(a) = body.assignee_id {
        new.assignee_id = a;
    }
    if let Some(t) = body.team_id {
        new.team_id = t;
    }
    if new.assignee_id != old.assignee_id || new.team_id != old.team_id {
        events.push(Event::Assignment { assignee_id: new.assignee_id, team_id: new.team_id });
    }
    if let Some(c) = category {
        new.category = c;
    }
    if let Some(t) = tags {
        new.tags = t;
    }
    let unchanged = new.title == old.title
        && new.description == old.description
        && new.category == old.category
        && new.tags == old.tags
        && new.change_type == old.change_type
        && new.risk == old.risk
        && new.impact == old.impact
        && new.urgency == old.urgency
        && new.priority_reason == old.priority_reason
        && events.is_empty();
    let row = if unchanged { old } else { service::save(&mut tx, &tenant, &old, new, events, Some(p.user_id)).await? };
    if let Some(reason) = approval_cancelled {
        archer_store::approval_changes::cancel_pending(&mut tx, row.id, &reason).await?;
    }
    if approval_starts {
        let change_type: ChangeType = row
            .change_type
            .as_deref()
            .and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok())
            .ok_or_else(|| ApiError::field("/change_type", "required", "a change needs a type before authorization"))?;
        archer_store::approval_changes::start_change(&mut tx, &row, &tenant, change_type).await?;
    }
    let version = row.version;
    let dto = dto(&state, &mut tx, &tenant, row).await?;
    tx.commit().await?;
    Ok(with_etag(Json(dto).into_response(), version))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TicketQuery {
    /// Comma-separated kinds.
    #[param(value_type = Option<Vec<TicketKind>>, style = Form, explode = false)]
    kind: Option<String>,
    /// Comma-separated statuses.
    #[param(value_type = Option<Vec<Status>>, style = Form, explode = false)]
    status: Option<String>,
    /// Comma-separated priorities (1–4).
    #[param(value_type = Option<Vec<Priority>>, style = Form, explode = false)]
    priority: Option<String>,
    /// A user id, `me`, or `none` (unassigned).
    #[param(pattern = "^(me|none|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$")]
    assignee: Option<String>,
    team: Option<Uuid>,
    /// A user id or `me`.
    #[param(pattern = "^(me|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$")]
    requester: Option<String>,
    category: Option<String>,
    tag: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    created_from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    created_to: Option<String>,
    /// Full-text search over title and description (`printer -toner`, `"exact phrase"`).
    q: Option<String>,
    /// Comma-separated SLA states (`none`: no policy applies).
    #[param(value_type = Option<Vec<SlaStateFilter>>, style = Form, explode = false)]
    sla_state: Option<String>,
    /// Tickets that ever breached: `any` target, or a comma-separated list of targets (a ticket
    /// that breached any of them). From the recorded breaches, unlike `sla_state` (the clocks'
    /// live state): a breached ticket stays listed once cancelled, resolved, closed or rebuilt,
    /// as compliance reports count it.
    #[param(value_type = Option<Vec<BreachedTarget>>, style = Form, explode = false)]
    breached: Option<String>,
    /// `created_at`, `updated_at`, `priority` or `sla_due_at` (earliest upcoming breach first);
    /// prefix `-` for descending. Default `-created_at`.
    #[param(pattern = "^-?(created_at|updated_at|priority|sla_due_at)$")]
    sort: Option<String>,
    /// Page number (1-based) for offset paging; not with `cursor`.
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// Items per page (default 25).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// From a previous page's `next_cursor` (with the same `sort`), for keyset paging; not with
    /// `page`. Only such a cursor is valid (422 otherwise).
    cursor: Option<String>,
}

/// The SLA states `GET /tickets` filters by.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaStateFilter {
    Breached,
    Warning,
    Running,
    Paused,
    Met,
    Cancelled,
    /// No policy applies to the ticket.
    None,
}

/// The targets `GET /tickets?breached=` filters by.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreachedTarget {
    /// Any target.
    Any,
    FirstResponse,
    NextResponse,
    Resolution,
}

/// A ticket's tag, as `check_tags` takes it (this type only documents it).
#[derive(ToSchema)]
#[schema(pattern = r"\S", max_length = 50)]
#[allow(dead_code)]
pub struct Tag(String);

#[derive(Serialize, ToSchema)]
pub struct TicketPage {
    items: Vec<Ticket>,
    /// Tickets matching the filters, across pages.
    total: i64,
    limit: i64,
    /// Present with offset paging.
    page: Option<i64>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

fn csv<T>(errors: &mut Errors, name: &str, v: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let mut out = Vec::new();
    for part in v.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse(part) {
            Some(x) => out.push(x),
            None => errors.add(&format!("?{name}"), "enum", format!("unknown value `{part}`")),
        }
    }
    out
}

fn user_param(errors: &mut Errors, name: &str, v: Option<&str>, me: Uuid) -> Option<Uuid> {
    match v? {
        "me" => Some(me),
        s => match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.add(&format!("?{name}"), "format", "must be a user id or `me`");
                None
            }
        },
    }
}

fn time_param(errors: &mut Errors, name: &str, v: Option<&str>) -> Option<OffsetDateTime> {
    let v = v?;
    OffsetDateTime::parse(v, &Rfc3339)
        .map_err(|_| errors.add(&format!("?{name}"), "format", "must be an RFC 3339 date-time"))
        .ok()
}

#[derive(Serialize, Deserialize)]
struct CursorToken {
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<i16>,
    id: Uuid,
}

fn encode_cursor(sort: &str, c: &Cursor) -> String {
    let (t, p) = match &c.value {
        CursorValue::Time(t) => (Some(t.format(&Rfc3339).unwrap_or_default()), None),
        CursorValue::Int(i) => (None, Some(*i)),
    };
    let json = serde_json::to_vec(&CursorToken { s: sort.to_owned(), t, p, id: c.id }).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(sort: &str, raw: &str) -> Option<Cursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
    let tok: CursorToken = serde_json::from_slice(&bytes).ok()?;
    if tok.s != sort {
        return None;
    }
    let value = match (tok.t, tok.p) {
        (Some(t), None) => CursorValue::Time(OffsetDateTime::parse(&t, &Rfc3339).ok()?),
        (None, Some(p)) => CursorValue::Int(p),
        _ => return None,
    };
    Some(Cursor { value, id: tok.id })
}

/// Tickets, filtered, sorted and paged (by `page` or by `cursor`). A requester sees only
/// their own.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(TicketQuery), security(("bearer" = [])), responses(
    (status = 200, body = TicketPage),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_tickets(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppQuery(q): AppQuery<TicketQuery>,
) -> ApiResult<Json<TicketPage>> {
    let tenant = tenant_slug(&p)?;
    let mut errors = Errors::new();
    let kinds =
        csv(&mut errors, "kind", q.kind.as_deref(), |s| s.parse::<TicketKind>().ok().map(|k| k.as_str().to_owned()));
    let statuses =
        csv(&mut errors, "status", q.status.as_deref(), |s| s.parse::<Status>().ok().map(|k| k.as_str().to_owned()));
    let priorities = csv(&mut errors, "priority", q.priority.as_deref(), |s| {
        s.parse::<i64>().ok().and_then(|v| Priority::new(v).ok()).map(|p| i16::from(p.get()))
    });
    let assignee = match q.assignee.as_deref() {
        Some("none") => Some(AssigneeFilter::Unassigned),
        other => user_param(&mut errors, "assignee", other, p.user_id).map(AssigneeFilter::User),
    };
    let mut requester_id = user_param(&mut errors, "requester", q.requester.as_deref(), p.user_id);
    if !is_agent(&p) {
        if requester_id.is_some_and(|r| r != p.user_id) {
            errors.add("?requester", "forbidden", "you can list only your own tickets");
        }
        requester_id = Some(p.user_id);
    }
    let sla_states = csv(&mut errors, "sla_state", q.sla_state.as_deref(), |s| {
        enum_of::<SlaStateFilter>(Some(s)).map(|_| s.to_owned())
    });
    let breached = q.breached.as_deref().map(|raw| {
        let targets =
            csv(&mut errors, "breached", Some(raw), |s| enum_of::<BreachedTarget>(Some(s)).map(|t| (t, s.to_owned())));
        if targets.is_empty() {
            errors.add("?breached", "enum", "must be `any` or targets: first_response, next_response, resolution");
        }
        if targets.iter().any(|(t, _)| matches!(t, BreachedTarget::Any)) {
            BreachedFilter::Any
        } else {
            BreachedFilter::Metrics(targets.into_iter().map(|(_, s)| s).collect())
        }
    });
    let created_from = time_param(&mut errors, "created_from", q.created_from.as_deref());
    let created_to = time_param(&mut errors, "created_to", q.created_to.as_deref());
    let sort_raw = q.sort.clone().unwrap_or_else(|| "-created_at".into());
    let (descending, sort_name) = match sort_raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sort_raw.as_str()),
    };
    let sort = match sort_name {
        "created_at" => Some(SortField::CreatedAt),
        "updated_at" => Some(SortField::UpdatedAt),
        "priority" => Some(SortField::Priority),
        "sla_due_at" => Some(SortField::SlaDueAt),
        _ => {
            errors.add(
                "?sort",
                "enum",
                "must be created_at, updated_at, priority or sla_due_at, optionally prefixed with -",
            );
            None
        }
    };
    let limit = q.limit.unwrap_or(super::DEFAULT_LIMIT);
    if !(1..=super::MAX_LIMIT).contains(&limit) {
        errors.add("?limit", "range", format!("must be between 1 and {}", super::MAX_LIMIT));
    }
    if q.page.is_some() && q.cursor.is_some() {
        errors.add("?cursor", "conflict", "use either page or cursor, not both");
    }
    if q.page.is_some_and(|p| !(1..=super::MAX_PAGE).contains(&p)) {
        errors.add("?page", "range", format!("must be between 1 and {}", super::MAX_PAGE));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(raw) => {
            let c = decode_cursor(&sort_raw, raw);
            if c.is_none() {
                errors.add("?cursor", "invalid", "not a cursor from a previous page with the same sort");
            }
            c
        }
    };
    let q_text = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    errors.into_result()?;
    let Some(sort) = sort else { unreachable!("validated above") };
    let page = if after.is_none() { Some(q.page.unwrap_or(1)) } else { None };
    let filter = TicketFilter {
        kinds,
        statuses,
        priorities,
        assignee,
        team_id: q.team,
        requester_id,
        created_from,
        created_to,
        tag: q.tag,
        category: q.category,
        q: q_text,
        sla_states,
        breached,
        sort,
        descending,
        after,
        offset: page.map(|p| (p - 1) * limit).unwrap_or(0),
        limit,
    };
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let (rows, total) = store::list(&mut tx, &filter).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let slas = sla::ticket_slas(&mut tx, &ids).await?;
    tx.commit().await?;
    let sla_of = |id: Uuid| slas.iter().find(|s| s.ticket_id == id);
    let next_cursor = if rows.len() as i64 == limit {
        rows.last().map(|r| encode_cursor(&sort_raw, &Cursor::after(r, sla_of(r.id).and_then(|s| s.next_due_at), sort)))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| {
            let s = sla_of(r.id);
            to_dto(&state, &tenant, r, s)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(TicketPage { items, total, limit, page, next_cursor }))
}

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
pub async fn list_comments(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Json<Vec<Comment>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let t = find(&mut tx, &p, &reference, false).await?;
    let comments = store::comments(&mut tx, t.id, is_agent(&p)).await?;
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
    ))]
pub async fn add_comment(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppPath(reference): AppPath<String>,
    AppJson(body, digest): AppJson<NewComment>,
) -> ApiResult<Response> {
    let tenant = tenant_slug(&p)?;
    let mut errors = Errors::new();
    let text = errors.text("/body", &body.body, 1, 20000);
    errors.into_result()?;
    if body.internal {
        p.require(&state, &meta, Permission::TicketUpdate).await?;
    }
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let t = find(&mut tx, &p, &reference, true).await?;
    if let Some(replay) =
        idempotency::claim(&mut tx, &p, &key, &format!("POST /tickets/{}/comments", t.id), &digest).await?
    {
        return Ok(replay);
    }
    if service::parse(&t)?.status.is_terminal() {
        return Err(ApiError::Conflict("the ticket is closed; open a new one".into()));
    }
    let author =
        if t.requester_id == p.user_id || !is_agent(&p) { CommentAuthor::Customer } else { CommentAuthor::Agent };
    let c = service::comment(&mut tx, &tenant, &t, p.user_id, author, &text, body.internal).await?;
    let resp = idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &Comment::from(c), None).await?;
    tx.commit().await?;
    Ok(resp)
}

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
    let kind: LinkKind = l.kind.parse().map_err(|e: String| ApiError::Internal(e.into()))?;
    let other_kind: TicketKind = l.other_kind.parse().map_err(ApiError::internal)?;
    Ok(Link {
        id: l.id,
        kind,
        direction: if outgoing { "outgoing" } else { "incoming" }.into(),
        ticket: format!("{}-{:06}", other_kind.prefix(), l.other_number),
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
pub async fn list_links(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(reference): AppPath<String>,
) -> ApiResult<Json<Vec<Link>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let t = find(&mut tx, &p, &reference, false).await?;
    let links = store::links(&mut tx, t.id).await?;
    tx.commit().await?;
    Ok(Json(links.into_iter().map(|l| link_dto(t.id, l)).collect::<ApiResult<_>>()?))
}

/// Link this ticket to another (`duplicate_of`, `blocked_by`, `caused_by`, `relates_to`).
/// Needs `ticket:update`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/tickets/{ticket}/links", tag = "tickets", request_body = NewLink, security(("bearer" = [])),
    params(("ticket" = String, Path), IdempotencyKey),
    responses(
        (status = 201, body = Link),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_link(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppPath(reference): AppPath<String>,
    AppJson(body, digest): AppJson<NewLink>,
) -> ApiResult<Response> {
    p.require(&state, &meta, Permission::TicketUpdate).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let t = find(&mut tx, &p, &reference, false).await?;
    if let Some(replay) =
        idempotency::claim(&mut tx, &p, &key, &format!("POST /tickets/{}/links", t.id), &digest).await?
    {
        return Ok(replay);
    }
    let target = match find(&mut tx, &p, body.target.trim(), false).await {
        Ok(t) => t,
        Err(ApiError::NotFound) => return Err(ApiError::field("/target", "unknown", "no such ticket")),
        Err(e) => return Err(e),
    };
    if target.id == t.id {
        return Err(ApiError::field("/target", "self_link", "a ticket cannot link to itself"));
    }
    let link = store::add_link(&mut tx, p.tenant_id, t.id, target.id, body.kind.as_str(), p.user_id).await?;
    let dto = link_dto(t.id, link)?;
    let resp = idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &dto, None).await?;
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
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath((reference, link_id)): AppPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    p.require(&state, &meta, Permission::TicketUpdate).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let t = find(&mut tx, &p, &reference, false).await?;
    match store::delete_link(&mut tx, t.id, link_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound),
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_sort() {
        let c = Cursor { value: CursorValue::Int(3), id: Uuid::nil() };
        let raw = encode_cursor("-priority", &c);
        assert_eq!(decode_cursor("-priority", &raw), Some(c));
        assert_eq!(decode_cursor("priority", &raw), None);
        assert_eq!(decode_cursor("-priority", "garbage"), None);
    }

    #[test]
    fn requesters_may_only_close_reopen_or_cancel() {
        assert!(requester_may(TicketKind::Incident, Status::Resolved, Status::Closed));
        assert!(requester_may(TicketKind::Incident, Status::Resolved, Status::InProgress));
        assert!(!requester_may(TicketKind::Incident, Status::New, Status::Resolved));
        assert!(!requester_may(TicketKind::Change, Status::New, Status::Cancelled));
    }
}
