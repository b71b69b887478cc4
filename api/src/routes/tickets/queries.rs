//! Listing tickets: filters, sorting and paging by page number or by cursor.

use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use archer_orchestrator::{Priority, Status, TicketKind};
use archer_store::sla;
use archer_store::tickets::{
    self as store, AssigneeFilter, BreachedFilter, Cursor, CursorValue, SortField, TicketFilter,
};

use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::AppQuery;
use crate::routes::{DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE};
use crate::validate::Errors;
use crate::views::ticket::{Ticket, enum_of, to_dto};

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

#[derive(Serialize, ToSchema)]
pub struct TicketPage {
    items: Vec<Ticket>,
    /// Tickets matching the filters, across pages, counted up to 1,000 (a list of a million
    /// does not count them all on every page): exact when `total_exact`, otherwise at least
    /// this many match.
    total: i64,
    /// Whether `total` counts every match.
    total_exact: bool,
    /// Whether more tickets follow this page (`next_cursor` continues after it).
    has_more: bool,
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

fn breached_param(errors: &mut Errors, raw: &str) -> BreachedFilter {
    let targets = csv(errors, "breached", Some(raw), |s| enum_of::<BreachedTarget>(Some(s)).map(|t| (t, s.to_owned())));
    if targets.is_empty() {
        errors.add("?breached", "enum", "must be `any` or targets: first_response, next_response, resolution");
    }
    if targets.iter().any(|(t, _)| matches!(t, BreachedTarget::Any)) {
        BreachedFilter::Any
    } else {
        BreachedFilter::Metrics(targets.into_iter().map(|(_, s)| s).collect())
    }
}

/// `sort` as given (`-created_at` by default): the field and whether it descends.
fn sort_param(errors: &mut Errors, raw: &str) -> (Option<SortField>, bool) {
    let (descending, name) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let sort = match name {
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
    (sort, descending)
}

/// Whose tickets: a requester lists only their own.
fn requester_param(errors: &mut Errors, caller: &Caller, v: Option<&str>) -> Option<Uuid> {
    let requester_id = user_param(errors, "requester", v, caller.user_id());
    if caller.is_agent() {
        return requester_id;
    }
    if requester_id.is_some_and(|r| r != caller.user_id()) {
        errors.add("?requester", "forbidden", "you can list only your own tickets");
    }
    Some(caller.user_id())
}

/// The page asked for: its size, its number (offset paging) and the cursor to continue after.
struct Paging {
    limit: i64,
    page: Option<i64>,
    after: Option<Cursor>,
}

fn paging(errors: &mut Errors, q: &TicketQuery, sort_raw: &str) -> Paging {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.add("?limit", "range", format!("must be between 1 and {MAX_LIMIT}"));
    }
    if q.page.is_some() && q.cursor.is_some() {
        errors.add("?cursor", "conflict", "use either page or cursor, not both");
    }
    if q.page.is_some_and(|p| !(1..=MAX_PAGE).contains(&p)) {
        errors.add("?page", "range", format!("must be between 1 and {MAX_PAGE}"));
    }
    let after = q.cursor.as_deref().and_then(|raw| {
        let c = decode_cursor(sort_raw, raw);
        if c.is_none() {
            errors.add("?cursor", "invalid", "not a cursor from a previous page with the same sort");
        }
        c
    });
    let page = if after.is_none() { Some(q.page.unwrap_or(1)) } else { None };
    Paging { limit, page, after }
}

/// The query as the store's filter, every failing parameter reported at once.
fn filter(caller: &Caller, q: TicketQuery, sort_raw: &str) -> ApiResult<(TicketFilter, Option<i64>)> {
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
        other => user_param(&mut errors, "assignee", other, caller.user_id()).map(AssigneeFilter::User),
    };
    let requester_id = requester_param(&mut errors, caller, q.requester.as_deref());
    let sla_states = csv(&mut errors, "sla_state", q.sla_state.as_deref(), |s| {
        enum_of::<SlaStateFilter>(Some(s)).map(|_| s.to_owned())
    });
    let breached = q.breached.as_deref().map(|raw| breached_param(&mut errors, raw));
    let created_from = time_param(&mut errors, "created_from", q.created_from.as_deref());
    let created_to = time_param(&mut errors, "created_to", q.created_to.as_deref());
    let (sort, descending) = sort_param(&mut errors, sort_raw);
    let Paging { limit, page, after } = paging(&mut errors, &q, sort_raw);
    let q_text = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    errors.into_result()?;
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
        sort: sort.unwrap_or(SortField::CreatedAt),
        descending,
        after,
        offset: page.map(|p| (p - 1) * limit).unwrap_or(0),
        limit,
    };
    Ok((filter, page))
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
pub async fn list_tickets(caller: Caller, AppQuery(q): AppQuery<TicketQuery>) -> ApiResult<Json<TicketPage>> {
    let sort_raw = q.sort.clone().unwrap_or_else(|| "-created_at".into());
    let (filter, page) = filter(&caller, q, &sort_raw)?;
    let mut tx = caller.begin().await?;
    let store::Page { rows, has_more, total, total_exact } = store::list(&mut tx, &filter).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let slas = sla::ticket_slas(&mut tx, &ids).await?;
    tx.commit().await?;
    let sla_of = |id: Uuid| slas.iter().find(|s| s.ticket_id == id);
    let limit = filter.limit;
    let next_cursor = if has_more {
        let due = |r: &store::TicketRow| sla_of(r.id).and_then(|s| s.next_due_at);
        rows.last().map(|r| encode_cursor(&sort_raw, &Cursor::after(r, due(r), filter.sort)))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| {
            let s = sla_of(r.id);
            to_dto(caller.state(), &caller.tenant, r, s)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(TicketPage { items, total, total_exact, has_more, limit, page, next_cursor }))
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
}
