//! Requester pages: home, the catalog, an item's form and its submission, my requests and
//! tickets, a ticket's page with its approval progress and comments.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Form, Json};
use serde_json::{Value, json};
use uuid::Uuid;

use archer_orchestrator::access::Permission;

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, IdempotencyKey};
use crate::portal::session::see_other;
use crate::portal::{Page, Portal, body_json, forms, when};
use crate::routes::{approvals, catalog, playbooks, teams, ticket_sla, tickets, users};

/// Form posts as `(name, value)` pairs, in order (a field may repeat).
pub(super) type Posted = Vec<(String, String)>;

/// Home: where to go from here, by what the user does.
pub(super) async fn home(p: Portal) -> Response {
    let pending = if p.me.approver {
        match approvals::inbox::inbox(p.call(), AppQuery(pending_query())).await {
            Ok(Json(page)) => serde_json::to_value(page).ok().and_then(|v| v["items"].as_array().map(Vec::len)),
            Err(e) => return p.error(&e),
        }
    } else {
        None
    };
    let page = Page {
        template: "portal/home",
        title: "Home".into(),
        nav: "home",
        data: json!({"pending": pending.unwrap_or(0)}),
    };
    p.page(StatusCode::OK, page)
}

/// The inbox's query for what waits for my decision.
#[allow(clippy::expect_used)]
pub(super) fn pending_query() -> approvals::inbox::InboxQuery {
    serde_json::from_value(json!({"state": "pending"})).expect("a valid inbox query")
}

/// The catalog, by category; `?q=` keeps the items whose name or description has the words.
pub(super) async fn catalog(p: Portal, RawQuery(raw): RawQuery) -> Response {
    let q = super::param(raw.as_deref(), "q").unwrap_or_default();
    let cats = match catalog::items::browse(p.call()).await {
        Ok(Json(c)) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let mut categories = Vec::new();
    for c in cats.as_array().into_iter().flatten() {
        let items: Vec<Value> = c["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| {
                let text = format!(
                    "{} {}",
                    i["name"].as_str().unwrap_or_default(),
                    i["spec"]["description"].as_str().unwrap_or_default()
                )
                .to_lowercase();
                words.iter().all(|w| text.contains(w))
            })
            .map(|i| json!({"id": i["id"], "name": i["name"], "description": i["spec"]["description"]}))
            .collect();
        if !items.is_empty() {
            categories.push(json!({"name": c["name"], "description": c["description"], "items": items}));
        }
    }
    let page = Page {
        template: "portal/catalog",
        title: "Request something".into(),
        nav: "catalog",
        data: json!({"q": q, "categories": categories}),
    };
    p.page(StatusCode::OK, page)
}

/// The item (as the caller may request it) and its form schema.
async fn item_of(p: &Portal, id: &str) -> Result<Value, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
    let Json(item) = catalog::items::get_item(p.call(), AppPath(id)).await?;
    serde_json::to_value(item).map_err(ApiError::internal)
}

fn item_page(p: &Portal, item: &Value, posted: &Posted, errors: &[(String, String)]) -> Response {
    let schema = &item["spec"]["form_schema"];
    let general: Vec<&String> = errors.iter().filter(|(f, _)| f.is_empty()).map(|(_, m)| m).collect();
    let page = Page {
        template: "portal/item",
        title: item["name"].as_str().unwrap_or("Request").to_owned(),
        nav: "catalog",
        data: json!({
            "item": {"id": item["id"], "name": item["name"], "description": item["spec"]["description"]},
            "fields": forms::fields(schema, posted, errors),
            "errors": general,
            "invalid": !errors.is_empty(),
            "key": posted.iter().find(|(k, _)| k == "_key").map(|(_, v)| v.clone()).unwrap_or_else(|| Uuid::now_v7().to_string()),
        }),
    };
    p.page(StatusCode::OK, page)
}

/// An item's form.
pub(super) async fn item(p: Portal, Path(id): Path<String>) -> Response {
    match item_of(&p, &id).await {
        Ok(item) => item_page(&p, &item, &Vec::new(), &[]),
        Err(e) => p.error(&e),
    }
}

/// Submits an item's form through the API's `POST /requests`; on success, to the new
/// request's page. The form carries an idempotency key, so sending it twice files one request.
pub(super) async fn submit(
    p: Portal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let item = match item_of(&p, &id).await {
        Ok(i) => i,
        Err(e) => return p.error(&e),
    };
    let schema = &item["spec"]["form_schema"];
    let fields = forms::answers(schema, &posted);
    let key = posted.iter().find(|(k, _)| k == "_key").map(|(_, v)| format!("portal-{v}"));
    let body = json!({"item": item["id"], "fields": fields});
    let submitted =
        async { catalog::requests::submit_request(p.call(), IdempotencyKey(key), AppJson::from_value(&body)?).await };
    match submitted.await {
        Ok(resp) if resp.status().is_success() => match body_json(resp).await {
            Ok(t) => see_other(&headers, &format!("/portal/tickets/{}", t["number"].as_str().unwrap_or_default())),
            Err(e) => p.error(&e),
        },
        Ok(resp) => {
            // a replay of an earlier answer that was a refusal
            let status = resp.status();
            let problem = body_json(resp).await.unwrap_or_default();
            p.error(&ApiError::BadRequest(format!("{status}: {}", problem["detail"].as_str().unwrap_or("refused"))))
        }
        Err(ApiError::Validation(errors)) => {
            let messages = forms::messages(schema, &errors);
            item_page(&p, &item, &posted, &messages)
        }
        Err(e) => p.error(&e),
    }
}

/// A ticket list row as pages show it.
pub(super) fn row(t: &Value) -> Value {
    json!({
        "number": t["number"],
        "title": t["title"],
        "kind": t["kind"],
        "status": forms::humanize(t["status"].as_str().unwrap_or_default()),
        "priority": priority(&t["priority"]),
        "created": when(&t["created_at"]),
        "sla": sla_badge(&t["sla"]),
    })
}

/// A priority as agents say it: `P1` ... `P4`.
fn priority(p: &Value) -> String {
    p.as_i64().map(|n| format!("P{n}")).unwrap_or_else(|| forms::text_of(p))
}

/// The SLA as a badge: its state, and the next deadline's countdown.
pub(super) fn sla_badge(sla: &Value) -> Value {
    if sla.is_null() {
        return Value::Null;
    }
    let clocks = sla["clocks"].as_array().cloned().unwrap_or_default();
    let next =
        clocks.iter().filter(|c| counting(c)).min_by_key(|c| c["remaining_seconds"].as_i64().unwrap_or(i64::MAX));
    let state = sla["state"].as_str().unwrap_or("none");
    let class = match state {
        "breached" => "bad",
        "warning" => "warn",
        "paused" => "plain",
        _ => "ok",
    };
    json!({
        "state": forms::humanize(state),
        "class": class,
        "due": next.map(|c| when(&c["due_at"])),
        "due_at": next.map(|c| c["due_at"].clone()),
        "metric": next.map(|c| forms::humanize(c["metric"].as_str().unwrap_or_default())),
        "remaining": next.map(|c| c["remaining_seconds"].clone()),
        "running": next.is_some_and(|c| c["paused"] == false && c["within_calendar_hours"] == true),
    })
}

/// My requests and tickets.
pub(super) async fn my_tickets(p: Portal) -> Response {
    let query = serde_json::from_value(json!({"requester": "me", "limit": 50}));
    let q = match query {
        Ok(q) => q,
        Err(e) => return p.error(&ApiError::internal(e)),
    };
    let list = match tickets::queries::list_tickets(p.call(), AppQuery(q)).await {
        Ok(Json(page)) => serde_json::to_value(page).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let rows: Vec<Value> = list["items"].as_array().into_iter().flatten().map(row).collect();
    let page = Page {
        template: "portal/tickets",
        title: "My requests and tickets".into(),
        nav: "mine",
        data: json!({"tickets": rows}),
    };
    p.page(StatusCode::OK, page)
}

/// Names of the users a ticket's page mentions (comment authors), by id.
async fn names(p: &Portal, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, String>, ApiError> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut tx = p.caller.begin().await?;
    for id in ids {
        if !out.contains_key(id)
            && let Ok(u) = archer_store::users::get(&mut tx, *id).await
        {
            out.insert(*id, u.display_name);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// The names of `ids`, in their order (an unknown one is left out).
pub(super) async fn names_of(p: &Portal, ids: &[Uuid]) -> Vec<String> {
    match names(p, ids).await {
        Ok(found) => ids.iter().filter_map(|id| found.get(id).cloned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The data of a ticket's page.
pub(super) async fn ticket_data(p: &Portal, number: &str) -> Result<Value, ApiError> {
    let resp = tickets::records::get_ticket(p.call(), AppPath(number.to_owned())).await?;
    let t = body_json(resp).await?;
    let number = t["number"].as_str().unwrap_or(number).to_owned();
    let Json(approvals) = approvals::views::ticket_approvals(p.call(), AppPath(number.clone())).await?;
    let approvals = serde_json::to_value(approvals).map_err(ApiError::internal)?;
    let Json(comments) = tickets::comments::list_comments(p.call(), AppPath(number.clone())).await?;
    let comments = serde_json::to_value(comments).map_err(ApiError::internal)?;
    let authors: Vec<Uuid> = comments
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["author_id"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    let mut ids = authors.clone();
    ids.extend(
        ["requester_id", "assignee_id"].iter().filter_map(|k| t[*k].as_str().and_then(|s| s.parse::<Uuid>().ok())),
    );
    let names = names(p, &ids).await?;
    let name_of = |v: &Value| v.as_str().and_then(|s| s.parse::<Uuid>().ok()).and_then(|id| names.get(&id).cloned());
    let comments: Vec<Value> = comments
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "author": name_of(&c["author_id"]).unwrap_or_else(|| "Archer".into()),
                "body": c["body"],
                "internal": c["internal"],
                "at": when(&c["created_at"]),
            })
        })
        .collect();
    let approvals: Vec<Value> = approvals.as_array().into_iter().flatten().map(approval_view).collect();
    let timeline = if p.me.agent {
        let Json(entries) = ticket_sla::timeline(p.call(), AppPath(number.clone())).await?;
        let entries = serde_json::to_value(entries).map_err(ApiError::internal)?;
        timeline_view(entries.as_array().map(Vec::as_slice).unwrap_or_default(), &t["sla"]["clocks"])
    } else {
        Vec::new()
    };
    let fields = if t["request"].is_null() { Vec::new() } else { request_answers(p, &t["id"]).await? };
    let allowed: Vec<Value> = t["allowed_transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| json!({"value": s, "label": forms::humanize(s.as_str().unwrap_or_default())}))
        .collect();
    let requester = t["requester_id"].as_str() == Some(&p.caller.user_id().to_string());
    let status = t["status"].as_str().unwrap_or_default();
    let can_cancel = requester && allowed.iter().any(|a| a["value"] == "cancelled");
    let can_reopen = requester && matches!(status, "resolved") && allowed.iter().any(|a| a["value"] == "in_progress");
    let workflow_url = if p.me.agent { t["workflow"]["url"].clone() } else { Value::Null };
    let work = if p.me.agent { agent_work(p, &number, &t).await? } else { Value::Null };
    Ok(json!({
        "ticket": {
            "number": number,
            "title": t["title"],
            "description": t["description"],
            "kind": forms::humanize(t["kind"].as_str().unwrap_or_default()),
            "status": forms::humanize(status),
            "status_value": status,
            "priority": priority(&t["priority"]),
            "version": t["version"],
            "created": when(&t["created_at"]),
            "requester": name_of(&t["requester_id"]),
            "assignee": name_of(&t["assignee_id"]),
        },
        "sla": sla_badge(&t["sla"]),
        "clocks": t["sla"]["clocks"].as_array().into_iter().flatten().map(clock_view).collect::<Vec<_>>(),
        "fields": fields,
        "approvals": approvals,
        "comments": comments,
        "timeline": timeline,
        "allowed": allowed,
        "can_change": p.me.agent && !t["allowed_transitions"].as_array().is_none_or(Vec::is_empty),
        "can_cancel": can_cancel,
        "can_reopen": can_reopen,
        "workflow_url": workflow_url,
        "work": work,
        "notice": Value::Null,
        "key": Uuid::now_v7().to_string(),
    }))
}

/// Who tickets can be assigned to: the active agents, `{id, name}` (none without
/// `ticket:assign`).
pub(super) async fn assignable(p: &Portal) -> Result<Vec<Value>, ApiError> {
    if !p.caller.can(Permission::TicketAssign) {
        return Ok(Vec::new());
    }
    let q =
        serde_json::from_value(json!({"role": "agent", "active": true, "limit": 200})).map_err(ApiError::internal)?;
    let Json(page) = users::list_users(p.call(), AppQuery(q)).await?;
    let page = serde_json::to_value(page).map_err(ApiError::internal)?;
    Ok(page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| json!({"id": u["id"], "name": u["display_name"]}))
        .collect())
}

/// What an agent works a ticket with: who may be assigned, the teams, the priorities, the
/// ticket's links and the playbooks that can be run on it by hand (and its runs so far).
async fn agent_work(p: &Portal, number: &str, t: &Value) -> Result<Value, ApiError> {
    let selected = |id: &Value, current: &Value| id.as_str().is_some() && id == current;
    let mut agents: Vec<Value> = assignable(p)
        .await?
        .into_iter()
        .map(|mut a| {
            a["selected"] = Value::Bool(selected(&a["id"], &t["assignee_id"]));
            a
        })
        .collect();
    // an assignee who is not an agent (any more) stays choosable
    if p.caller.can(Permission::TicketAssign)
        && t["assignee_id"].is_string()
        && !agents.iter().any(|a| a["selected"] == true)
    {
        agents.push(json!({"id": t["assignee_id"], "name": "the current assignee", "selected": true}));
    }
    let Json(teams) = teams::list_teams(p.call()).await?;
    let teams: Vec<Value> = serde_json::to_value(teams)
        .map_err(ApiError::internal)?
        .as_array()
        .into_iter()
        .flatten()
        .map(|tm| json!({"id": tm["id"], "name": tm["name"], "selected": selected(&tm["id"], &t["team_id"])}))
        .collect();
    let priorities: Vec<Value> =
        (1..=4).map(|n| json!({"value": n, "label": format!("P{n}"), "selected": t["priority"] == n})).collect();
    let Json(links) = tickets::links::list_links(p.call(), AppPath(number.to_owned())).await?;
    let links: Vec<Value> = serde_json::to_value(links)
        .map_err(ApiError::internal)?
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let kind = forms::humanize(l["kind"].as_str().unwrap_or_default()).to_lowercase();
            let says = if l["direction"] == "outgoing" {
                format!("This ticket {kind}")
            } else {
                format!("{kind} this ticket (from)")
            };
            json!({"says": says, "ticket": l["ticket"]})
        })
        .collect();
    let manage = p.caller.can(Permission::PlaybookAdmin);
    let Json(runs) = playbooks::runs::list_ticket_runs(p.call(), AppPath(number.to_owned())).await?;
    let runs: Vec<Value> = serde_json::to_value(runs)
        .map_err(ApiError::internal)?
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let status = r["status"].as_str().unwrap_or_default();
            json!({"id": r["id"], "playbook": r["playbook"], "run": r["run_number"], "status": forms::humanize(status), "error": r["error"],
                   "retry": manage && status == "failed", "cancel": manage && matches!(status, "pending" | "running")})
        })
        .collect();
    let manual: Vec<String> = {
        let mut tx = p.caller.begin().await?;
        let found = archer_store::playbooks::triggered(&mut tx, "manual").await?;
        tx.commit().await?;
        let mut names: Vec<String> = found.into_iter().map(|f| f.version.name).collect();
        names.sort();
        names.dedup();
        names
    };
    let kinds: Vec<Value> = ["relates_to", "duplicate_of", "blocked_by", "caused_by"]
        .iter()
        .map(|k| json!({"value": k, "label": forms::humanize(k)}))
        .collect();
    Ok(json!({
        "can_assign": p.caller.can(Permission::TicketAssign),
        "agents": agents,
        "teams": teams,
        "priorities": priorities,
        "links": links,
        "link_kinds": kinds,
        "playbooks": manual,
        "runs": runs,
    }))
}

/// The fields a change entry spells out, and how pages name them.
const CHANGED: &[(&str, &str)] = &[
    ("status", "Status"),
    ("priority", "Priority"),
    ("assignee_id", "Assignee"),
    ("team_id", "Team"),
    ("title", "Title"),
];

/// The timeline as agents read it: the API's entries (a change says what it changed, from what
/// to what) and each SLA clock's pauses and resumptions, in time order.
fn timeline_view(entries: &[Value], clocks: &Value) -> Vec<Value> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for e in entries {
        let kind = e["kind"].as_str().unwrap_or_default();
        let mut summary = e["summary"].as_str().unwrap_or_default().to_owned();
        if kind == "changed" {
            let changes: Vec<String> = CHANGED
                .iter()
                .filter(|(k, _)| e["after"].get(*k).is_some())
                .map(|(k, label)| {
                    let show = |v: &Value| match v {
                        Value::Null => "none".to_owned(),
                        Value::String(s) if *k == "status" => forms::humanize(s),
                        other => forms::text_of(other),
                    };
                    format!("{label}: {} to {}", show(&e["before"][*k]), show(&e["after"][*k]))
                })
                .collect();
            if !changes.is_empty() {
                summary = changes.join("; ");
            }
        }
        let at = e["at"].as_str().unwrap_or_default().to_owned();
        out.push((at, json!({"at": when(&e["at"]), "kind": forms::humanize(kind), "summary": summary})));
    }
    for c in clocks.as_array().into_iter().flatten() {
        let metric = forms::humanize(c["metric"].as_str().unwrap_or_default());
        let cycles =
            c["completed"].as_array().into_iter().flatten().chain(c["ongoing"].as_object().map(|_| &c["ongoing"]));
        for pause in cycles.flat_map(|cy| cy["pauses"].as_array().into_iter().flatten()) {
            let from = pause["from"].as_str().unwrap_or_default().to_owned();
            out.push((
                from,
                json!({"at": when(&pause["from"]), "kind": "SLA paused", "summary": format!("{metric} clock paused")}),
            ));
            if let Some(to) = pause["to"].as_str() {
                out.push((to.to_owned(), json!({"at": when(&pause["to"]), "kind": "SLA resumed", "summary": format!("{metric} clock resumed")})));
            }
        }
    }
    // RFC 3339 instants in UTC sort as text only when written alike: compare them as instants
    out.sort_by_key(|(at, _)| at.parse::<jiff::Timestamp>().ok());
    out.into_iter().map(|(_, v)| v).collect()
}

/// Whether a clock counts towards a deadline (running, warned or breached), or would but is
/// paused: what gets a countdown.
fn counting(c: &Value) -> bool {
    matches!(c["state"].as_str(), Some("running" | "paused" | "warning" | "breached"))
}

/// One SLA clock as the ticket page lists it.
fn clock_view(c: &Value) -> Value {
    json!({
        "metric": forms::humanize(c["metric"].as_str().unwrap_or_default()),
        "state": forms::humanize(c["state"].as_str().unwrap_or_default()),
        "due": when(&c["due_at"]),
        "due_at": c["due_at"],
        "remaining": c["remaining_seconds"],
        "paused": c["paused"],
        "running": c["paused"] == false && c["within_calendar_hours"] == true,
        "counting": counting(c),
    })
}

/// A catalog request's answers, `{label, value}` in its form's order with the form's titles, as
/// the approval emails and pages give them (none for other tickets).
pub(super) async fn request_answers(p: &Portal, ticket_id: &Value) -> Result<Vec<Value>, ApiError> {
    let Some(id) = ticket_id.as_str().and_then(|s| s.parse::<Uuid>().ok()) else { return Ok(Vec::new()) };
    let mut tx = p.caller.begin().await?;
    let ticket = archer_store::tickets::get(&mut tx, id).await?;
    let answers = archer_workers::approvals::form_answers(&mut tx, &ticket).await;
    tx.commit().await?;
    Ok(answers)
}

/// An approval as its progress: each step, who was asked and what they decided.
fn approval_view(a: &Value) -> Value {
    let steps: Vec<Value> = a["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tasks: Vec<Value> = s["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    json!({
                        "approver": t["approver"]["name"],
                        "state": forms::humanize(t["state"].as_str().unwrap_or_default()),
                        "decided": when(&t["decided_at"]),
                        "comment": t["comment"],
                        "via": t["via"],
                    })
                })
                .collect();
            json!({"name": s["name"], "state": s["state"], "state_label": forms::humanize(s["state"].as_str().unwrap_or_default()), "tasks": tasks})
        })
        .collect();
    json!({"state": forms::humanize(a["state"].as_str().unwrap_or_default()), "steps": steps})
}

/// A ticket's page.
pub(super) async fn ticket(p: Portal, Path(number): Path<String>) -> Response {
    match ticket_data(&p, &number).await {
        Ok(data) => ticket_page(&p, data, None),
        Err(e) => p.error(&e),
    }
}

pub(super) fn ticket_page(p: &Portal, mut data: Value, error: Option<String>) -> Response {
    data["error"] = error.map(Value::String).unwrap_or(Value::Null);
    let title = format!(
        "{} {}",
        data["ticket"]["number"].as_str().unwrap_or_default(),
        data["ticket"]["title"].as_str().unwrap_or_default()
    );
    p.page(
        StatusCode::OK,
        Page { template: "portal/ticket", title, nav: if p.me.agent { "queue" } else { "mine" }, data },
    )
}

/// Adds a comment (or, for agents, an internal note) through the API.
pub(super) async fn comment(
    p: Portal,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let get = |k: &str| posted.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let text = get("body").unwrap_or_default();
    let internal = p.me.agent && get("internal").as_deref() == Some("true");
    let key = get("_key").map(|k| format!("portal-{k}"));
    let body = json!({"body": text, "internal": internal});
    let added = async {
        tickets::comments::add_comment(
            p.call(),
            IdempotencyKey(key),
            AppPath(number.clone()),
            AppJson::from_value(&body)?,
        )
        .await
    };
    match added.await {
        Ok(_) => see_other(&headers, &format!("/portal/tickets/{number}#comments")),
        Err(ApiError::Validation(errs)) => {
            let why = errs
                .iter()
                .map(|e| if e.pointer == "/body" { "Write a comment first.".to_owned() } else { e.detail.clone() })
                .collect::<Vec<_>>()
                .join(" ");
            match ticket_data(&p, &number).await {
                Ok(data) => ticket_page(&p, data, Some(why)),
                Err(e) => p.error(&e),
            }
        }
        Err(e) => p.error(&e),
    }
}
