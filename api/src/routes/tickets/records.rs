//! One ticket: opening it, reading it and changing it.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::catalog::{ChangeType, Risk};
use archer_orchestrator::commands::ticket::{self as command, NewTicket, PriorityOverride, TicketChange};
use archer_orchestrator::priority::OutOfRange;
use archer_orchestrator::{Impact, Priority, Status, TicketKind, Urgency};
use archer_store::changes;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem, etag};
use crate::extract::{AppJson, AppPath, IdempotencyKey};
use crate::idempotency;
use crate::validate::Errors;
use crate::views::ticket::{Ticket, actor, decided, dto, find, to_dto};

fn with_etag(mut resp: Response, version: i32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// A ticket's tag, as `check_tags` takes it (this type only documents it).
#[derive(ToSchema)]
#[schema(pattern = r"\S", max_length = 50)]
#[allow(dead_code)]
pub struct Tag(String);

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

impl CreateTicket {
    /// The request as the domain's command, every failing field reported at once.
    fn parse(self) -> ApiResult<NewTicket> {
        let mut errors = Errors::new();
        let title = errors.text("/title", &self.title, 1, 200);
        let description = errors.text("/description", &self.description, 0, 20000);
        let impact = check_level(&mut errors, "/impact", self.impact, Impact::new);
        let urgency = check_level(&mut errors, "/urgency", self.urgency, Urgency::new);
        let category = self.category.as_deref().map(|c| errors.text("/category", c, 1, 100));
        let tags = check_tags(&mut errors, &self.tags);
        for e in command::change_fields(self.kind, self.change_type.is_some(), self.risk.is_some()) {
            errors.add(e.pointer, e.code, e.detail);
        }
        let priority = priority_override(&mut errors, self.priority, self.priority_reason.as_deref());
        errors.into_result()?;
        let (impact, urgency) =
            impact.zip(urgency).ok_or_else(|| ApiError::Internal("impact and urgency were validated".into()))?;
        Ok(NewTicket {
            kind: self.kind,
            title,
            description,
            impact,
            urgency,
            priority,
            requester_id: self.requester_id,
            assignee_id: self.assignee_id,
            team_id: self.team_id,
            category,
            tags,
            change_type: self.change_type,
            risk: self.risk,
        })
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

fn check_level<T>(errors: &mut Errors, pointer: &str, v: i64, f: fn(i64) -> Result<T, OutOfRange>) -> Option<T> {
    match f(v) {
        Ok(x) => Some(x),
        Err(e) => {
            errors.add(pointer, "range", e.to_string());
            None
        }
    }
}

/// `priority` and `priority_reason` come together or not at all.
fn priority_override(errors: &mut Errors, priority: Option<i64>, reason: Option<&str>) -> Option<PriorityOverride> {
    match (priority, reason.map(str::trim)) {
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
            check_level(errors, "/priority", v, Priority::new).and_then(|p| PriorityOverride::new(p, reason))
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
    caller: Caller,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<CreateTicket>,
) -> ApiResult<Response> {
    caller.require(Permission::TicketCreate).await?;
    let ticket = decided(&caller, body.parse()?.open(&actor(&caller))).await?;
    let mut tx = caller.begin().await?;
    if let Some(replay) = idempotency::claim(&mut tx, &caller.principal, &key, "POST /tickets", &digest).await? {
        return Ok(replay);
    }
    let (row, sla) = changes::open_with_sla(&mut tx, &caller.tenant, &ticket).await?;
    let version = row.version;
    let dto = to_dto(caller.state(), &caller.tenant, row, sla.as_ref())?;
    tracing::Span::current().record("ticket", dto.number.as_str());
    let location = format!("/api/v1/tickets/{}", dto.number);
    let resp =
        idempotency::respond(&mut tx, &caller.principal, &key, StatusCode::CREATED, &dto, Some(&location)).await?;
    tx.commit().await?;
    Ok(with_etag(resp, version))
}

/// One ticket, by id or number (`INC-000045`).
#[utoipa::path(get, path = "/tickets/{ticket}", tag = "tickets", params(("ticket" = String, Path, description = "id or number")), security(("bearer" = [])), responses(
    (status = 200, body = Ticket, headers(("ETag" = String))),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_ticket(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Response> {
    let mut tx = caller.begin().await?;
    let row = find(&mut tx, &caller.principal, &reference, false).await?;
    let version = row.version;
    let dto = dto(caller.state(), &mut tx, &caller.tenant, row).await?;
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

impl UpdateTicket {
    /// The request as the domain's change; failing fields go to `errors` (the change is then
    /// not to be used).
    fn parse(self, errors: &mut Errors) -> TicketChange {
        TicketChange {
            title: self.title.as_deref().map(|t| errors.text("/title", t, 1, 200)),
            description: self.description.as_deref().map(|d| errors.text("/description", d, 0, 20000)),
            status: self.status,
            impact: self.impact.and_then(|v| check_level(errors, "/impact", v, Impact::new)),
            urgency: self.urgency.and_then(|v| check_level(errors, "/urgency", v, Urgency::new)),
            category: self.category.map(|c| c.as_deref().map(|c| errors.text("/category", c, 1, 100))),
            tags: self.tags.as_deref().map(|t| check_tags(errors, t)),
            priority: priority_override(errors, self.priority, self.priority_reason.as_deref()),
            assignee_id: self.assignee_id,
            team_id: self.team_id,
            change_type: self.change_type,
            risk: self.risk,
        }
    }
}

/// The `If-Match` header, trimmed.
fn if_match(errors: &mut Errors, headers: &HeaderMap) -> Option<String> {
    match headers.get(header::IF_MATCH)?.to_str() {
        Ok(v) => Some(v.trim().to_owned()),
        Err(_) => {
            errors.add("If-Match", "format", "not a valid ETag");
            None
        }
    }
}

/// Refuses a change made against another version than the one stored (412).
fn check_version(if_match: Option<&str>, version: i32) -> ApiResult<()> {
    match if_match {
        Some(tag) if tag != "*" && tag.trim_start_matches("W/") != etag(version) => {
            Err(ApiError::PreconditionFailed { current_etag: etag(version) })
        }
        _ => Ok(()),
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
    caller: Caller,
    headers: HeaderMap,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<UpdateTicket>,
) -> ApiResult<Response> {
    let mut errors = Errors::new();
    let change = body.parse(&mut errors);
    let if_match = if_match(&mut errors, &headers);
    errors.into_result()?;
    let actor = actor(&caller);
    decided(&caller, change.authorize(&actor)).await?;
    let mut tx = caller.begin().await?;
    let old = find(&mut tx, &caller.principal, &reference, true).await?;
    check_version(if_match.as_deref(), old.version)?;
    let now = changes::to_jiff(tx.now());
    let decision = decided(&caller, changes::snapshot(&old)?.apply(&change, &actor, now)).await?;
    let row = changes::apply(&mut tx, &caller.tenant, &old, decision, &actor).await?;
    let version = row.version;
    let dto = dto(caller.state(), &mut tx, &caller.tenant, row).await?;
    tx.commit().await?;
    Ok(with_etag(Json(dto).into_response(), version))
}
