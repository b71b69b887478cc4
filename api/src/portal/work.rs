//! Approver and agent pages: the approvals inbox and its decisions, the queue, and changing a
//! ticket's status.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Form, Json};
use serde_json::{Value, json};
use uuid::Uuid;

use archer_orchestrator::access::Permission;

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, OptionalJson};
use crate::portal::pages::{Posted, row, ticket_page};
use crate::portal::session::see_other;
use crate::portal::{Page, Portal, api_query, filters, forms, param, problems, user_by_email, when};
use crate::routes::{approvals, tickets};

fn get<'a>(posted: &'a Posted, name: &str) -> Option<&'a str> {
    posted.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What waits for my decision.
pub(super) async fn inbox(p: Portal, RawQuery(raw): RawQuery) -> Response {
    // after a decision: which request it was about (a ticket number, nothing else)
    let decided = param(raw.as_deref(), "decided")
        .filter(|v| !v.is_empty() && v.len() <= 32 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let notice = decided.map(|t| format!("Your decision on {t} is recorded."));
    inbox_page(&p, notice, None).await
}

async fn inbox_page(p: &Portal, notice: Option<String>, error: Option<String>) -> Response {
    let items = match approvals::inbox::inbox(p.call(), AppQuery(super::pages::pending_query())).await {
        Ok(Json(page)) => serde_json::to_value(page).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let mut cards = Vec::new();
    for i in items["items"].as_array().into_iter().flatten() {
        let (answers, others) = match context(p, i).await {
            Ok(c) => c,
            Err(e) => return p.error(&e),
        };
        cards.push(json!({
            "approval_id": i["approval_id"],
            "ticket": i["ticket"],
            "title": i["title"],
            "step": i["step"],
            "requester": i["requester"]["name"],
            "on_behalf_of": i["on_behalf_of"]["name"],
            "asked": when(&i["asked_at"]),
            "timeout": when(&i["timeout_at"]),
            "answers": answers,
            "others": others,
        }));
    }
    let items = cards;
    let page = Page {
        template: "portal/approvals",
        title: "Approvals".into(),
        nav: "approvals",
        data: json!({"items": items, "notice": notice, "error": error, "away": away(p).await}),
    };
    p.page(StatusCode::OK, page)
}

/// What an approver decides on: the request's answers in its form's order, and what the
/// others asked in the chain decided so far.
async fn context(p: &Portal, item: &Value) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let answers = super::pages::request_answers(p, &item["ticket_id"]).await?;
    let Some(id) = item["approval_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()) else {
        return Ok((answers, Vec::new()));
    };
    let others = match approvals::views::get_approval(p.call(), AppPath(id)).await {
        Ok(Json(a)) => {
            let a = serde_json::to_value(a).map_err(ApiError::internal)?;
            let me = p.caller.user_id().to_string();
            a["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    let step = s["name"].clone();
                    s["tasks"].as_array().cloned().unwrap_or_default().into_iter().map(move |t| (step.clone(), t))
                })
                .filter(|(_, t)| t["approver"]["id"].as_str() != Some(me.as_str()) && t["decided_at"].is_string())
                .map(|(step, t)| {
                    json!({"step": step, "approver": t["approver"]["name"], "state": forms::humanize(t["state"].as_str().unwrap_or_default()),
                           "comment": t["comment"], "when": when(&t["decided_at"])})
                })
                .collect()
        }
        Err(ApiError::NotFound | ApiError::Forbidden(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok((answers, others))
}

/// Approves or rejects through the API's in-app decision (the same rules as the emailed links).
pub(super) async fn decide(
    p: Portal,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
    Form(posted): Form<Posted>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let comment = get(&posted, "comment").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
    let ticket = get(&posted, "ticket").unwrap_or_default().to_owned();
    let result = match decision.as_str() {
        "approve" => match serde_json::from_value(json!({ "comment": comment })) {
            Ok(body) => approvals::deciding::approve(p.call(), AppPath(id), OptionalJson(body)).await,
            Err(e) => Err(ApiError::internal(e)),
        },
        "reject" => match serde_json::from_value(json!({ "comment": comment })) {
            Ok(body) => approvals::deciding::reject(p.call(), AppPath(id), OptionalJson(body)).await,
            Err(e) => Err(ApiError::internal(e)),
        },
        _ => return p.error(&ApiError::NotFound),
    };
    match result {
        Ok(Json(_)) => {
            let to = if ticket.is_empty() {
                "/portal/approvals".to_owned()
            } else {
                format!("/portal/approvals?decided={ticket}")
            };
            see_other(&headers, &to)
        }
        Err(ApiError::Validation(errs)) => {
            let why = errs
                .iter()
                .map(|e| {
                    if e.pointer == "/comment" {
                        "Say why you reject it: the requester sees your comment.".to_owned()
                    } else {
                        e.detail.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            inbox_page(&p, None, Some(format!("{ticket}: {why}"))).await
        }
        Err(e @ ApiError::Conflict(_)) => inbox_page(&p, None, Some(format!("{ticket}: {}", e.problem().detail))).await,
        Err(e) => p.error(&e),
    }
}

/// The filters the queue offers, in the API's own names; blanks are left out.
const QUEUE_FILTERS: &[&str] = &["status", "priority", "kind", "assignee", "q", "sla_state", "sort", "cursor"];

/// The agents' queue: the API's filters and sorts, SLA badges with live countdowns.
pub(super) async fn queue(p: Portal, RawQuery(raw): RawQuery) -> Response {
    let raw = raw.unwrap_or_default();
    let done = param(Some(&raw), "assigned").and_then(|v| v.parse::<u32>().ok());
    queue_page(&p, &raw, done.map(|n| format!("Assigned {n} ticket{}.", if n == 1 { "" } else { "s" })), None).await
}

async fn queue_page(p: &Portal, raw: &str, notice: Option<String>, failed: Option<String>) -> Response {
    if let Err(e) = p.caller.require(Permission::TicketUpdate).await {
        return p.error(&e);
    }
    let pairs = filters(Some(raw), QUEUE_FILTERS);
    let mut api = pairs.clone();
    api.push(("limit".into(), "50".into()));
    let result = async { tickets::queries::list_tickets(p.call(), AppQuery(api_query(&api)?)).await };
    let (list, error) = match result.await {
        Ok(Json(page)) => (serde_json::to_value(page).unwrap_or_default(), None),
        Err(ApiError::Validation(errs)) => (Value::Null, Some(problems(&errs))),
        Err(e) => return p.error(&e),
    };
    let rows: Vec<Value> = list["items"].as_array().into_iter().flatten().map(row).collect();
    let value = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let sort = value("sort");
    let sorts: Vec<Value> = [
        ("", "Newest first"),
        ("created_at", "Oldest first"),
        ("-priority", "Priority, highest first"),
        ("sla_due_at", "SLA due, soonest first"),
        ("-updated_at", "Recently updated"),
    ]
    .iter()
    .map(|(v, l)| json!({"value": v, "label": l, "selected": *v == sort}))
    .collect();
    let statuses: Vec<Value> = ["", "new", "in_progress", "waiting_on_customer", "pending_approval", "resolved", "closed"]
        .iter()
        .map(|s| json!({"value": s, "label": if s.is_empty() { "Any".to_owned() } else { forms::humanize(s) }, "selected": *s == value("status")}))
        .collect();
    let next = list["next_cursor"].as_str().map(|c| {
        let mut q = pairs.iter().filter(|(k, _)| k != "cursor").cloned().collect::<Vec<_>>();
        q.push(("cursor".into(), c.to_owned()));
        format!("/portal/queue?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
    });
    let page = Page {
        template: "portal/queue",
        title: "Queue".into(),
        nav: "queue",
        data: json!({
            "tickets": rows,
            "q": value("q"),
            "mine": value("assignee") == "me",
            "sorts": sorts,
            "statuses": statuses,
            "total": list["total"],
            "total_exact": list["total_exact"],
            "next": next,
            "error": error.or(failed),
            "notice": notice,
            // the filters and sort, from the first page (what a saved view keeps)
            "back": serde_urlencoded::to_string(pairs.iter().filter(|(k, _)| k != "cursor").collect::<Vec<_>>()).unwrap_or_default(),
            "agents": super::pages::assignable(p).await.unwrap_or_default(),
            "views": views(p).await,
        }),
    };
    p.page(StatusCode::OK, page)
}

/// Assigns the chosen tickets of the queue to one agent: each ticket is its own change through
/// the API (its own audit and workflow signal); the ones refused are named.
pub(super) async fn bulk_assign(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let back = get(&posted, "back").unwrap_or_default().to_owned();
    let assignee = match get(&posted, "assignee").unwrap_or_default() {
        "me" => p.caller.user_id().to_string(),
        other => other.to_owned(),
    };
    let numbers: Vec<&str> = posted.iter().filter(|(k, _)| k == "ticket").map(|(_, v)| v.as_str()).collect();
    if numbers.is_empty() || assignee.is_empty() {
        return queue_page(&p, &back, None, Some("Choose the tickets and whom to assign them to.".into())).await;
    }
    let mut failed = Vec::new();
    for number in &numbers {
        if let Err(e) = patch_ticket(&p, number, None, json!({ "assignee_id": assignee })).await {
            failed.push(format!("{number}: {}", e.problem().detail));
        }
    }
    if failed.is_empty() {
        let sep = if back.is_empty() { "" } else { "&" };
        return see_other(&headers, &format!("/portal/queue?{back}{sep}assigned={}", numbers.len()));
    }
    let done = numbers.len() - failed.len();
    queue_page(
        &p,
        &back,
        Some(format!("Assigned {done} of {}.", numbers.len())),
        Some(format!("Not assigned: {}", failed.join("; "))),
    )
    .await
}

/// Changes a ticket's status through the API's `PATCH /tickets/{ticket}`, with the version the
/// page showed as `If-Match` (someone else's change meanwhile is refused, not overwritten).
pub(super) async fn set_status(
    p: Portal,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let body = json!({ "status": get(&posted, "status").unwrap_or_default() });
    match patch_ticket(&p, &number, get(&posted, "version"), body).await {
        Ok(()) => see_other(&headers, &format!("/portal/tickets/{number}")),
        Err(e) => refused(&p, &number, e).await,
    }
}

/// Sends `body` as the API's `PATCH /tickets/{ticket}` with the version the page showed.
async fn patch_ticket(p: &Portal, number: &str, version: Option<&str>, body: Value) -> Result<(), ApiError> {
    let mut api_headers = HeaderMap::new();
    if let Some(v) = version.and_then(|v| v.parse::<i32>().ok())
        && let Ok(h) = HeaderValue::from_str(&crate::error::etag(v))
    {
        api_headers.insert(header::IF_MATCH, h);
    }
    tickets::records::update_ticket(p.call(), api_headers, AppPath(number.to_owned()), AppJson::from_value(&body)?)
        .await
        .map(|_| ())
}

/// The ticket's page again with `error` (a refused change), or the error page.
async fn refused(p: &Portal, number: &str, err: ApiError) -> Response {
    let why = match err {
        ApiError::IllegalTransition { detail, .. } => detail,
        ApiError::PreconditionFailed { .. } => {
            "Someone changed this ticket since you opened it; here it is as it is now. Choose again.".to_owned()
        }
        ApiError::Validation(errs) => errs.iter().map(|e| e.detail.clone()).collect::<Vec<_>>().join(" "),
        ApiError::Conflict(why) => why,
        e => return p.error(&e),
    };
    match super::pages::ticket_data(p, number).await {
        Ok(data) => ticket_page(p, data, Some(why)),
        Err(e) => p.error(&e),
    }
}

/// Assignment, team and priority: what changed is sent, nothing else.
pub(super) async fn assign(
    p: Portal,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let current = match tickets::records::get_ticket(p.call(), AppPath(number.clone())).await {
        Ok(resp) => super::body_json(resp).await.unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let mut body = serde_json::Map::new();
    let id_or_null = |v: &str| if v.is_empty() { Value::Null } else { Value::String(v.to_owned()) };
    // "Assign to me" posts `assignee=me` besides the select's own value
    let me = posted.iter().any(|(k, v)| k == "assignee" && v == "me");
    if let Some(a) = get(&posted, "assignee") {
        let a = if me { p.caller.user_id().to_string() } else { a.to_owned() };
        if id_or_null(&a) != current["assignee_id"] {
            body.insert("assignee_id".into(), id_or_null(&a));
        }
    }
    if let Some(team) = get(&posted, "team")
        && id_or_null(team) != current["team_id"]
    {
        body.insert("team_id".into(), id_or_null(team));
    }
    if let Some(pr) = get(&posted, "priority").and_then(|v| v.parse::<i64>().ok())
        && current["priority"].as_i64() != Some(pr)
    {
        body.insert("priority".into(), Value::from(pr));
        body.insert(
            "priority_reason".into(),
            Value::String(get(&posted, "priority_reason").unwrap_or_default().trim().to_owned()),
        );
    }
    if body.is_empty() {
        return see_other(&headers, &format!("/portal/tickets/{number}"));
    }
    match patch_ticket(&p, &number, get(&posted, "version"), Value::Object(body)).await {
        Ok(()) => see_other(&headers, &format!("/portal/tickets/{number}")),
        Err(e) => refused(&p, &number, e).await,
    }
}

/// Links the ticket to another, through the API's `POST /tickets/{ticket}/links`.
pub(super) async fn link(
    p: Portal,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let body = json!({"kind": get(&posted, "kind").unwrap_or_default(), "target": get(&posted, "target").unwrap_or_default().trim()});
    let result = async {
        tickets::links::add_link(
            p.call(),
            crate::extract::IdempotencyKey(None),
            AppPath(number.clone()),
            AppJson::from_value(&body)?,
        )
        .await
        .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => see_other(&headers, &format!("/portal/tickets/{number}#links")),
        Err(ApiError::NotFound) => {
            refused(&p, &number, ApiError::Conflict("There is no ticket with that number.".into())).await
        }
        Err(e) => refused(&p, &number, e).await,
    }
}

/// Starts a manual playbook on the ticket, through the API's `POST /tickets/{ticket}/playbook-runs`.
pub(super) async fn run_playbook(
    p: Portal,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let inputs = get(&posted, "inputs").unwrap_or_default().trim();
    let inputs: Value = if inputs.is_empty() {
        json!({})
    } else {
        match serde_json::from_str(inputs) {
            Ok(v) => v,
            Err(e) => {
                return refused(
                    &p,
                    &number,
                    ApiError::field("/inputs", "json", format!("The inputs are not valid JSON: {e}")),
                )
                .await;
            }
        }
    };
    let body = json!({"playbook": get(&posted, "playbook").unwrap_or_default(), "inputs": inputs});
    let result = async {
        crate::routes::playbooks::runs::start_run(p.call(), AppPath(number.clone()), AppJson::from_value(&body)?)
            .await
            .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => see_other(&headers, &format!("/portal/tickets/{number}#runs")),
        Err(e) => refused(&p, &number, e).await,
    }
}

/// My out-of-office delegation, as the inbox shows it (none when there is none).
async fn away(p: &Portal) -> Value {
    match approvals::out_of_office::get_out_of_office(p.call(), AppPath("me".to_owned())).await {
        Ok(Json(o)) => {
            let o = serde_json::to_value(o).unwrap_or_default();
            let name = super::pages::names_of(
                p,
                &[o["delegate_id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default()],
            )
            .await;
            json!({"delegate": name.into_iter().next().unwrap_or_default(), "from": when(&o["starts_at"]), "until": when(&o["ends_at"]), "active": o["active"]})
        }
        Err(_) => Value::Null,
    }
}

/// Sets my out-of-office delegate (found by email) until the end of a day, through the API's
/// `PUT /users/me/out-of-office`.
pub(super) async fn set_away(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let email = get(&posted, "delegate").unwrap_or_default().trim().to_lowercase();
    let until = get(&posted, "until").unwrap_or_default();
    let delegate = match user_by_email(&p, &email).await {
        Ok(d) => d,
        Err(e) => return p.error(&e),
    };
    let Some(delegate) = delegate else {
        return inbox_page(&p, None, Some("Out of office: no active colleague has that email.".into())).await;
    };
    let ends = match jiff::civil::Date::strptime("%Y-%m-%d", until) {
        // the end of that day, UTC
        Ok(d) => d
            .at(23, 59, 59, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().to_string())
            .unwrap_or_default(),
        Err(_) => {
            return inbox_page(&p, None, Some("Out of office: choose the last day you are away.".into())).await;
        }
    };
    let body = json!({"delegate_id": delegate, "ends_at": ends, "reason": get(&posted, "reason").map(str::trim).filter(|r| !r.is_empty())});
    let result = async {
        approvals::out_of_office::put_out_of_office(p.call(), AppPath("me".to_owned()), AppJson::from_value(&body)?)
            .await
            .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => see_other(&headers, "/portal/approvals"),
        Err(ApiError::Validation(errs)) => {
            let why = errs.iter().map(|e| e.detail.clone()).collect::<Vec<_>>().join(" ");
            inbox_page(&p, None, Some(format!("Out of office: {why}"))).await
        }
        Err(e) => p.error(&e),
    }
}

/// Ends my out-of-office delegation.
pub(super) async fn end_away(p: Portal, headers: HeaderMap) -> Response {
    match approvals::out_of_office::delete_out_of_office(p.call(), AppPath("me".to_owned())).await {
        Ok(_) | Err(ApiError::NotFound) => see_other(&headers, "/portal/approvals"),
        Err(e) => p.error(&e),
    }
}

/// My saved views, as links to the queue.
async fn views(p: &Portal) -> Vec<Value> {
    match crate::routes::tickets::saved_views::list_views(p.call()).await {
        Ok(Json(v)) => serde_json::to_value(v)
            .unwrap_or_default()
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| json!({"id": v["id"], "name": v["name"], "href": format!("/portal/queue?{}", v["query"].as_str().unwrap_or_default())}))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Saves the queue's current filters and sort as a view, through the API's `POST /saved-views`.
pub(super) async fn save_view(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let query = get(&posted, "query").unwrap_or_default().to_owned();
    let body = json!({"name": get(&posted, "name").unwrap_or_default(), "query": query});
    let result = async {
        crate::routes::tickets::saved_views::create_view(p.call(), AppJson::from_value(&body)?).await.map(|_| ())
    }
    .await;
    match result {
        Ok(()) => see_other(&headers, &format!("/portal/queue?{query}")),
        Err(ApiError::Validation(errs)) => {
            let why = errs.iter().map(|e| e.detail.clone()).collect::<Vec<_>>().join(" ");
            queue_page(&p, &query, None, Some(format!("The view was not saved: {why}"))).await
        }
        Err(e) => p.error(&e),
    }
}

/// Deletes one of my saved views.
pub(super) async fn delete_view(p: Portal, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    match crate::routes::tickets::saved_views::delete_view(p.call(), AppPath(id)).await {
        Ok(_) => see_other(&headers, "/portal/queue"),
        Err(e) => p.error(&e),
    }
}

/// Runs a failed playbook run again, or cancels a running one (with why), through the API;
/// back to the ticket's page.
pub(super) async fn manage_run(
    p: Portal,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    Form(posted): Form<Posted>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let number = get(&posted, "ticket").unwrap_or_default().to_owned();
    let result = match what.as_str() {
        "retry" => crate::routes::playbooks::runs::retry_run(p.call(), AppPath(id)).await.map(|_| ()),
        "cancel" => {
            let reason = get(&posted, "reason").unwrap_or_default().trim();
            let reason = if reason.is_empty() { "cancelled from the portal" } else { reason };
            async {
                crate::routes::playbooks::runs::cancel_run(
                    p.call(),
                    AppPath(id),
                    AppJson::from_value(&json!({ "reason": reason }))?,
                )
                .await
                .map(|_| ())
            }
            .await
        }
        _ => return p.error(&ApiError::NotFound),
    };
    match result {
        Ok(()) if !number.is_empty() => see_other(&headers, &format!("/portal/tickets/{number}#runs")),
        Ok(()) => see_other(&headers, "/portal"),
        Err(e) if !number.is_empty() => refused(&p, &number, e).await,
        Err(e) => p.error(&e),
    }
}
