//! Admin pages: catalog items with a form-schema editor (checked on save, with a live preview
//! of the form) and playbooks (a YAML editor whose errors point at their line and column,
//! drafts and publishing). Each save goes through the API's own handler, so an invalid
//! schema or playbook is refused whole and nothing is stored.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Form, Json};
use serde_json::{Value, json};
use uuid::Uuid;

use archer_orchestrator::access::Permission;

use crate::error::{ApiError, FieldError};
use crate::extract::{AppJson, AppPath};
use crate::portal::pages::Posted;
use crate::portal::session::see_other;
use crate::portal::{Page, Portal, api_query, filters, forms, param, problems, user_by_email};
use crate::routes::catalog;
use crate::routes::playbooks::{self, PlaybookSource};

fn get<'a>(posted: &'a Posted, name: &str) -> &'a str {
    posted.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

fn notice_of(raw: Option<String>) -> Option<String> {
    param(raw.as_deref(), "saved").filter(|v| v.len() <= 200).map(|v| format!("Saved {v}."))
}

/// The catalog's items, for catalog admins.
pub(super) async fn catalog_items(p: Portal, RawQuery(raw): RawQuery) -> Response {
    let items = match catalog::items::list_items(p.call()).await {
        Ok(Json(items)) => serde_json::to_value(items).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let items: Vec<Value> = items
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| json!({"id": i["id"], "name": i["name"], "version": i["version"], "description": i["spec"]["description"]}))
        .collect();
    let page = Page {
        template: "portal/admin_catalog",
        title: "Catalog items".into(),
        nav: "admin",
        data: json!({"items": items, "notice": notice_of(raw)}),
    };
    p.page(StatusCode::OK, page)
}

/// A starting point for a new item's form.
const EXAMPLE_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["what"],
  "properties": {
    "what": {"title": "What do you need?", "type": "string", "minLength": 3, "maxLength": 200}
  }
}"#;

/// The editor of a new item: empty, or as posted with its errors and the form's preview.
pub(super) async fn new_item(p: Portal) -> Response {
    if let Err(e) = p.caller.require(Permission::CatalogAdmin).await {
        return p.error(&e);
    }
    let posted: Posted = vec![("form_schema".into(), EXAMPLE_SCHEMA.into()), ("everyone".into(), "true".into())];
    editor(&p, None, &posted, &[]).await
}

/// The editor of an existing item, filled with its current version (saving makes a new one;
/// requests already submitted keep theirs).
pub(super) async fn edit_item(p: Portal, Path(id): Path<String>) -> Response {
    if let Err(e) = p.caller.require(Permission::CatalogAdmin).await {
        return p.error(&e);
    }
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let item = match catalog::items::get_item(p.call(), AppPath(id)).await {
        Ok(Json(i)) => serde_json::to_value(i).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let spec = &item["spec"];
    let pretty =
        |v: &Value| if v.is_null() { String::new() } else { serde_json::to_string_pretty(v).unwrap_or_default() };
    let roles: Vec<&str> =
        spec["audience"]["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let posted: Posted = vec![
        ("name".into(), item["name"].as_str().unwrap_or_default().into()),
        ("category".into(), item["category_id"].as_str().unwrap_or_default().into()),
        ("description".into(), spec["description"].as_str().unwrap_or_default().into()),
        ("form_schema".into(), pretty(&spec["form_schema"])),
        ("approval".into(), pretty(&spec["approval"])),
        ("everyone".into(), if spec["audience"]["everyone"] == true { "true".into() } else { String::new() }),
        ("roles".into(), roles.join(", ")),
    ];
    editor(&p, Some(id), &posted, &[]).await
}

/// Where an error of `POST /catalog/items` belongs in the editor.
fn editor_field(pointer: &str) -> &'static str {
    if pointer.starts_with("/spec/form_schema") {
        "form_schema"
    } else if pointer.starts_with("/spec/approval") {
        "approval"
    } else if pointer.starts_with("/category_id") {
        "category"
    } else if pointer.starts_with("/name") {
        "name"
    } else {
        "general"
    }
}

async fn editor(p: &Portal, item: Option<Uuid>, posted: &Posted, errors: &[FieldError]) -> Response {
    let categories = match catalog::categories::list_categories(p.call()).await {
        Ok(Json(c)) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let chosen = get(posted, "category");
    let categories: Vec<Value> = categories
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"id": c["id"], "name": c["name"], "selected": c["id"].as_str() == Some(chosen)}))
        .collect();
    // every field's list, empty or not (the template reads each one)
    let mut by_field: serde_json::Map<String, Value> =
        ["name", "category", "form_schema", "approval", "general"].iter().map(|k| (k.to_string(), json!([]))).collect();
    for e in errors {
        let at = e
            .pointer
            .strip_prefix("/spec/form_schema")
            .or_else(|| e.pointer.strip_prefix("/spec/approval"))
            .unwrap_or("");
        let message = match (e.line, at.is_empty()) {
            (Some(line), _) if line > 0 => format!("line {line}, column {}: {}", e.column.unwrap_or(0), e.detail),
            (_, false) => format!("at {at}: {}", e.detail),
            _ => e.detail.clone(),
        };
        let list = by_field.entry(editor_field(&e.pointer)).or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(Value::String(message));
        }
    }
    // the preview: the form as a requester will see it, when the schema at least parses
    let preview = serde_json::from_str::<Value>(get(posted, "form_schema"))
        .ok()
        .filter(Value::is_object)
        .map(|schema| forms::fields(&schema, &[], &[]));
    let (title, action) = match item {
        Some(id) => (format!("Edit {}", get(posted, "name")), format!("/portal/admin/catalog/{id}/edit")),
        None => ("New catalog item".to_owned(), "/portal/admin/catalog/new".to_owned()),
    };
    let page = Page {
        template: "portal/admin_item",
        title: title.clone(),
        nav: "admin",
        data: json!({
            "heading": title,
            "action": action,
            "name": get(posted, "name"),
            "description": get(posted, "description"),
            "form_schema": get(posted, "form_schema"),
            "approval": get(posted, "approval"),
            "everyone": get(posted, "everyone") == "true",
            "roles": get(posted, "roles"),
            "categories": categories,
            "errors": by_field,
            "invalid": !errors.is_empty(),
            "preview": preview,
        }),
    };
    p.page(StatusCode::OK, page)
}

/// A JSON text area's content, or where it fails to parse.
fn json_field(text: &str, pointer: &str) -> Result<Option<Value>, FieldError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|e| {
        let mut err = FieldError::new(pointer, "json", format!("this is not valid JSON: {e}"));
        err.line = Some(e.line() as u64);
        err.column = Some(e.column() as u64);
        err
    })
}

/// Saves a new item through the API's `POST /catalog/items` (or, with `action=preview`, only
/// shows the form it would have). On success the item is in the catalog at once.
pub(super) async fn create_item(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    save_item(p, headers, None, posted).await
}

/// Saves a new version of an item through the API's `PATCH /catalog/items/{id}`: what the
/// editor does not show (icon, owner, fulfilment target and playbook) stays as it was.
pub(super) async fn update_item(
    p: Portal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    save_item(p, headers, Some(id), posted).await
}

async fn save_item(p: Portal, headers: HeaderMap, item: Option<Uuid>, posted: Posted) -> Response {
    if let Err(e) = p.caller.require(Permission::CatalogAdmin).await {
        return p.error(&e);
    }
    let mut errors = Vec::new();
    let schema = json_field(get(&posted, "form_schema"), "/spec/form_schema").unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let approval = json_field(get(&posted, "approval"), "/spec/approval").unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if get(&posted, "action") == "preview" || !errors.is_empty() {
        return editor(&p, item, &posted, &errors).await;
    }
    // an existing item keeps what the editor does not show
    let mut spec = match item {
        Some(id) => match catalog::items::get_item(p.call(), AppPath(id)).await {
            Ok(Json(i)) => serde_json::to_value(i).unwrap_or_default()["spec"].clone(),
            Err(e) => return p.error(&e),
        },
        None => json!({}),
    };
    let roles: Vec<&str> = get(&posted, "roles").split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
    spec["description"] = json!(get(&posted, "description"));
    spec["audience"] = json!({"everyone": get(&posted, "everyone") == "true", "roles": roles});
    spec["form_schema"] = schema.unwrap_or(Value::Null);
    match (approval, spec.as_object_mut()) {
        (Some(a), _) => spec["approval"] = a,
        (None, Some(map)) => {
            map.remove("approval");
        }
        (None, None) => {}
    }
    let category = get(&posted, "category");
    let category = if category.is_empty() { Value::Null } else { Value::String(category.into()) };
    let body = json!({"category_id": category, "name": get(&posted, "name"), "spec": spec});
    let result = async {
        match item {
            Some(id) => catalog::items::update_item(p.call(), AppPath(id), AppJson::from_value(&body)?).await,
            None => catalog::items::create_item(p.call(), AppJson::from_value(&body)?).await.map(|(_, item)| item),
        }
    }
    .await;
    match result {
        Ok(Json(item)) => {
            let item = serde_json::to_value(item).unwrap_or_default();
            let what = format!("{} (version {})", item["name"].as_str().unwrap_or_default(), item["version"]);
            let what: String = url::form_urlencoded::byte_serialize(what.as_bytes()).collect();
            see_other(&headers, &format!("/portal/admin/catalog?saved={what}"))
        }
        Err(ApiError::Validation(errs)) => editor(&p, item, &posted, &errs).await,
        Err(e) => p.error(&e),
    }
}

/// The playbooks, and the editor for a new draft.
pub(super) async fn playbook_list(p: Portal, RawQuery(raw): RawQuery) -> Response {
    playbooks_page(&p, notice_of(raw), "", &[]).await
}

async fn playbooks_page(p: &Portal, notice: Option<String>, source: &str, errors: &[FieldError]) -> Response {
    playbooks_page_with(p, notice, source, errors, Value::Null).await
}

/// The plan of a playbook's version (draft, else published) for a ticket or a neutral sample:
/// which steps run, in which waves, with their inputs rendered. Nothing is written or started.
pub(super) async fn dry_run(p: Portal, Path(id): Path<String>, Form(posted): Form<Posted>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let ticket = get(&posted, "ticket").trim();
    let body = if ticket.is_empty() { json!({}) } else { json!({ "ticket": ticket }) };
    let result = async {
        playbooks::documents::dry_run(
            p.call(),
            AppPath(id),
            crate::extract::OptionalJson(AppJson::from_value(&body)?.0),
        )
        .await
    }
    .await;
    match result {
        Ok(Json(plan)) => {
            let plan = serde_json::to_value(plan).unwrap_or_default();
            let steps: Vec<Value> = plan["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    json!({"id": s["id"], "action": s["action"], "wave": s["wave"], "decision": s["decision"], "reason": s["reason"],
                           "input": serde_json::to_string_pretty(&s["input"]).unwrap_or_default()})
                })
                .collect();
            let plan = json!({"ticket": if ticket.is_empty() { "a sample ticket" } else { ticket }, "steps": steps});
            playbooks_page_with(&p, None, "", &[], plan).await
        }
        Err(ApiError::Validation(errs)) => {
            let why = errs.iter().map(|e| e.detail.clone()).collect::<Vec<_>>().join(" ");
            playbooks_page_with(&p, Some(format!("Dry run: {why}")), "", &[], Value::Null).await
        }
        Err(e) => p.error(&e),
    }
}

async fn playbooks_page_with(
    p: &Portal,
    notice: Option<String>,
    source: &str,
    errors: &[FieldError],
    plan: Value,
) -> Response {
    let list = match playbooks::documents::list_playbooks(p.call()).await {
        Ok(Json(l)) => serde_json::to_value(l).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            let at = match e.line {
                Some(l) if l > 0 => format!("Line {l}, column {}", e.column.unwrap_or(0)),
                _ => "The document".to_owned(),
            };
            json!({"at": at, "pointer": e.pointer, "message": e.detail, "line": e.line})
        })
        .collect();
    let lines: Vec<Value> = source
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let n = i as u64 + 1;
            json!({"n": n, "text": l, "bad": errors.iter().any(|e| e["line"] == n)})
        })
        .collect();
    let page = Page {
        template: "portal/admin_playbooks",
        title: "Playbooks".into(),
        nav: "playbooks",
        data: json!({
            "playbooks": list,
            "notice": notice,
            "source": source,
            "errors": errors,
            "lines": if errors.is_empty() { Vec::new() } else { lines },
            "plan": plan,
        }),
    };
    p.page(StatusCode::OK, page)
}

/// Saves a playbook's draft through the API's `POST /playbooks`: checked whole (YAML, schema,
/// actions, a DAG without cycles); refused with every problem at its line and column.
pub(super) async fn save_playbook(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let source = get(&posted, "source").replace("\r\n", "\n");
    match playbooks::documents::save_playbook(p.call(), PlaybookSource(source.clone())).await {
        Ok((_, Json(v))) => {
            let v = serde_json::to_value(v).unwrap_or_default();
            // (the version's fields are flattened into the answer, beside `source`)
            let what = format!("{} version {} (a draft)", v["name"].as_str().unwrap_or_default(), v["version"]);
            let what: String = url::form_urlencoded::byte_serialize(what.as_bytes()).collect();
            see_other(&headers, &format!("/portal/admin/playbooks?saved={what}"))
        }
        Err(ApiError::Validation(errs)) => playbooks_page(&p, None, &source, &errs).await,
        Err(e) => p.error(&e),
    }
}

/// Publishes a playbook's draft version.
pub(super) async fn publish(p: Portal, headers: HeaderMap, Path((id, version)): Path<(String, i32)>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    match playbooks::documents::publish_version(p.call(), AppPath((id, version))).await {
        Ok(Json(v)) => {
            let v = serde_json::to_value(v).unwrap_or_default();
            let what = format!("{} version {} (published)", v["name"].as_str().unwrap_or_default(), v["version"]);
            let what: String = url::form_urlencoded::byte_serialize(what.as_bytes()).collect();
            see_other(&headers, &format!("/portal/admin/playbooks?saved={what}"))
        }
        Err(e) => p.error(&e),
    }
}

/// The filters the audit log page offers, in the API's own names; blanks are left out.
const AUDIT_FILTERS: &[&str] = &["action", "entity_type", "entity_id", "request_id", "from", "to", "cursor"];

/// The audit log with the API's filters, newest first. Needs `audit:read`.
pub(super) async fn audit_log(p: Portal, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = p.caller.require(Permission::AuditRead).await {
        return p.error(&e);
    }
    let pairs = filters(raw.as_deref(), AUDIT_FILTERS);
    let result =
        async { crate::routes::audit::list_audit(p.call(), crate::extract::AppQuery(api_query(&pairs)?)).await };
    let (page, error) = match result.await {
        Ok(Json(page)) => (serde_json::to_value(page).unwrap_or_default(), None),
        Err(ApiError::Validation(errs)) => (Value::Null, Some(problems(&errs))),
        Err(e) => return p.error(&e),
    };
    let entries: Vec<Value> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let change = |v: &Value| if v.is_null() { String::new() } else { v.to_string().chars().take(300).collect() };
            json!({
                "at": crate::portal::when(&e["at"]),
                "action": e["action"],
                "entity": format!("{} {}", e["entity_type"].as_str().unwrap_or_default(), e["entity_id"].as_str().unwrap_or_default()),
                "actor": e["actor_id"],
                "before": change(&e["before"]),
                "after": change(&e["after"]),
                "detail": e["detail"],
                "request_id": e["request_id"],
            })
        })
        .collect();
    let value = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let next = page["next_cursor"].as_str().map(|c| {
        let mut q: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        q.push(("cursor".into(), c.to_owned()));
        format!("/portal/admin/audit?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
    });
    let page = Page {
        template: "portal/admin_audit",
        title: "Audit log".into(),
        nav: "audit",
        data: json!({
            "entries": entries,
            "action": value("action"), "entity_type": value("entity_type"), "entity_id": value("entity_id"),
            "request_id": value("request_id"), "from": value("from"), "to": value("to"),
            "next": next, "error": error,
        }),
    };
    p.page(StatusCode::OK, page)
}

/// An example policy document for the editor.
const EXAMPLE_POLICY: &str = r#"{
  "name": "Standard incidents",
  "spec": {
    "applies_to": {"kinds": ["incident"]},
    "targets": [{"metric": "resolution", "durations": {"1": 14400, "2": 28800, "3": 86400, "4": 172800}}]
  }
}"#;

/// An example calendar document for the editor.
const EXAMPLE_CALENDAR: &str = r#"{
  "name": "Paris office hours",
  "spec": {
    "time_zone": "Europe/Paris",
    "weekly": [
      {"day": "monday", "start": "09:00", "end": "17:00"},
      {"day": "tuesday", "start": "09:00", "end": "17:00"},
      {"day": "wednesday", "start": "09:00", "end": "17:00"},
      {"day": "thursday", "start": "09:00", "end": "17:00"},
      {"day": "friday", "start": "09:00", "end": "17:00"}
    ],
    "holidays": []
  }
}"#;

/// SLA calendars and policies, the preview (when would a ticket created at a chosen instant be
/// due), and editors to add either. Needs `sla:admin`.
pub(super) async fn sla(p: Portal, RawQuery(raw): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect();
    let value = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let saved = value("saved");
    let notice = (!saved.is_empty() && saved.len() <= 200).then(|| format!("Saved {saved}."));
    sla_page(&p, notice, &pairs, SlaEditors::default()).await
}

/// What the editors show: the documents as typed and their errors.
#[derive(Default)]
struct SlaEditors {
    policy: Option<String>,
    calendar: Option<String>,
    policy_errors: Vec<String>,
    calendar_errors: Vec<String>,
}

async fn sla_page(p: &Portal, notice: Option<String>, query: &[(String, String)], editors: SlaEditors) -> Response {
    if let Err(e) = p.caller.require(Permission::SlaAdmin).await {
        return p.error(&e);
    }
    let calendars = match crate::routes::sla::calendars::list_calendars(p.call()).await {
        Ok(Json(c)) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let policies = match crate::routes::sla::policies::list_policies(p.call()).await {
        Ok(Json(c)) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let calendar_name = |id: &Value| {
        calendars
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == *id)
            .and_then(|c| c["name"].as_str())
            .unwrap_or("24×7")
            .to_owned()
    };
    let policies: Vec<Value> = policies
        .as_array()
        .into_iter()
        .flatten()
        .map(|pol| {
            let targets: Vec<String> = pol["spec"]["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{}: P1 {}", forms::humanize(t["metric"].as_str().unwrap_or_default()), duration(&t["durations"]["1"])))
                .collect();
            json!({"name": pol["name"], "position": pol["position"], "version": pol["version"], "calendar": calendar_name(&pol["calendar_id"]), "targets": targets.join("; ")})
        })
        .collect();
    let calendars: Vec<Value> = calendars
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "version": c["version"], "time_zone": c["spec"]["time_zone"]}))
        .collect();
    // the preview, when asked for
    let value = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (kind, impact, urgency, at) = (value("kind"), value("impact"), value("urgency"), value("at"));
    let mut preview = Value::Null;
    let mut preview_error = None;
    if !kind.is_empty() {
        let mut q = vec![("kind", kind.clone()), ("impact", impact.clone()), ("urgency", urgency.clone())];
        if !at.is_empty() {
            q.push(("at", at.clone()));
        }
        let parsed = serde_urlencoded::to_string(&q)
            .map_err(ApiError::internal)
            .and_then(|s| serde_urlencoded::from_str(&s).map_err(|e| ApiError::field("?", "query", format!("{e}"))));
        let result = match parsed {
            Ok(q) => crate::routes::sla::preview::preview(p.call(), crate::extract::AppQuery(q)).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Json(pr)) => {
                let pr = serde_json::to_value(pr).unwrap_or_default();
                let targets: Vec<Value> = pr["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| json!({"metric": forms::humanize(t["metric"].as_str().unwrap_or_default()), "due": crate::portal::when(&t["due_at"]), "due_at": t["due_at"]}))
                    .collect();
                preview = json!({"policy": pr["policy"]["name"], "priority": format!("P{}", pr["priority"]), "created": crate::portal::when(&pr["created_at"]), "targets": targets});
            }
            Err(ApiError::Validation(errs)) => {
                preview_error = Some(problems(&errs));
            }
            Err(e) => return p.error(&e),
        }
    }
    let option = |v: &str, sel: &str, label: &str| json!({"value": v, "label": label, "selected": v == sel});
    let kinds: Vec<Value> = ["incident", "service_request", "change", "problem"]
        .iter()
        .map(|k| option(k, &kind, &forms::humanize(k)))
        .collect();
    let levels = |sel: &str| -> Vec<Value> { ["1", "2", "3", "4"].iter().map(|l| option(l, sel, l)).collect() };
    let page = Page {
        template: "portal/admin_sla",
        title: "SLA calendars and policies".into(),
        nav: "sla",
        data: json!({
            "notice": notice,
            "calendars": calendars,
            "policies": policies,
            "kinds": kinds,
            "impacts": levels(if impact.is_empty() { "3" } else { &impact }),
            "urgencies": levels(if urgency.is_empty() { "3" } else { &urgency }),
            "at": at,
            "preview": preview,
            "preview_error": preview_error,
            "policy": editors.policy.unwrap_or_else(|| EXAMPLE_POLICY.to_owned()),
            "calendar": editors.calendar.unwrap_or_else(|| EXAMPLE_CALENDAR.to_owned()),
            "policy_errors": editors.policy_errors,
            "calendar_errors": editors.calendar_errors,
        }),
    };
    p.page(StatusCode::OK, page)
}

/// A target's duration as people say it: seconds as `4 h`, `90 min`, `2 d`; the canonical
/// text the API gives (`4h`, `2bd`) as it is.
fn duration(v: &Value) -> String {
    if let Some(text) = v.as_str() {
        return text.to_owned();
    }
    match v.as_i64() {
        Some(s) if s % 86_400 == 0 => format!("{} d", s / 86_400),
        Some(s) if s % 3600 == 0 => format!("{} h", s / 3600),
        Some(s) if s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
        None => "-".into(),
    }
}

/// An error of a JSON document as the editor lists it.
fn located(e: &FieldError) -> String {
    match e.line {
        Some(l) if l > 0 => format!("line {l}, column {}: {}", e.column.unwrap_or(0), e.detail),
        _ if e.pointer.is_empty() || e.pointer == "/" => e.detail.clone(),
        _ => format!("{}: {}", e.pointer, e.detail),
    }
}

/// Adds a policy or a calendar from its JSON document, through the API's own handler.
pub(super) async fn sla_save(
    p: Portal,
    headers: HeaderMap,
    Path(what): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let doc = get(&posted, "document").to_owned();
    let mut editors = SlaEditors::default();
    let errors: Vec<FieldError> = match json_field(&doc, "/") {
        Err(e) => vec![e],
        Ok(None) => vec![FieldError::new("/", "required", "write the document first")],
        Ok(Some(body)) => {
            let result = match what.as_str() {
                "policies" => {
                    async {
                        crate::routes::sla::policies::create_policy(
                            p.call(),
                            crate::extract::IdempotencyKey(None),
                            AppJson::from_value(&body)?,
                        )
                        .await
                        .map(|_| ())
                    }
                    .await
                }
                "calendars" => {
                    async {
                        crate::routes::sla::calendars::create_calendar(
                            p.call(),
                            crate::extract::IdempotencyKey(None),
                            AppJson::from_value(&body)?,
                        )
                        .await
                        .map(|_| ())
                    }
                    .await
                }
                _ => return p.error(&ApiError::NotFound),
            };
            match result {
                Ok(()) => {
                    let name: String =
                        url::form_urlencoded::byte_serialize(body["name"].as_str().unwrap_or_default().as_bytes())
                            .collect();
                    return see_other(&headers, &format!("/portal/admin/sla?saved={name}"));
                }
                Err(ApiError::Validation(errs)) => errs,
                Err(e) => return p.error(&e),
            }
        }
    };
    let listed: Vec<String> = errors.iter().map(located).collect();
    if what == "policies" {
        (editors.policy, editors.policy_errors) = (Some(doc), listed);
    } else {
        (editors.calendar, editors.calendar_errors) = (Some(doc), listed);
    }
    sla_page(&p, None, &[], editors).await
}

/// Users, their roles, and teams: the API's user and team administration. Needs `user:admin`.
pub(super) async fn people(p: Portal, RawQuery(raw): RawQuery) -> Response {
    people_page(&p, notice_of(raw), None).await
}

async fn people_page(p: &Portal, notice: Option<String>, error: Option<String>) -> Response {
    if let Err(e) = p.caller.require(Permission::UserAdmin).await {
        return p.error(&e);
    }
    let roles = match crate::routes::users::list_roles(p.call()).await {
        Ok(Json(r)) => serde_json::to_value(r).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let role_names: Vec<String> =
        roles.as_array().into_iter().flatten().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
    let q = match serde_json::from_value(json!({"limit": 200})) {
        Ok(q) => q,
        Err(e) => return p.error(&ApiError::internal(e)),
    };
    let users = match crate::routes::users::list_users(p.call(), crate::extract::AppQuery(q)).await {
        Ok(Json(page)) => serde_json::to_value(page).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let users = users["items"].as_array().cloned().unwrap_or_default();
    let name_of = |id: &Value| {
        users.iter().find(|u| u["id"] == *id).and_then(|u| u["display_name"].as_str()).unwrap_or("?").to_owned()
    };
    let user_rows: Vec<Value> = users
        .iter()
        .map(|u| {
            let has: Vec<&str> = u["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let roles: Vec<Value> = role_names.iter().map(|r| json!({"name": r, "checked": has.contains(&r.as_str())})).collect();
            json!({"id": u["id"], "name": u["display_name"], "email": u["email"], "active": u["active"], "roles": roles})
        })
        .collect();
    let teams = match crate::routes::teams::list_teams(p.call()).await {
        Ok(Json(t)) => serde_json::to_value(t).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let teams: Vec<Value> = teams
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let members: Vec<String> = t["members"].as_array().into_iter().flatten().map(name_of).collect();
            json!({"id": t["id"], "name": t["name"], "description": t["description"], "members": members.join(", ")})
        })
        .collect();
    let page = Page {
        template: "portal/admin_people",
        title: "Users and teams".into(),
        nav: "people",
        data: json!({"users": user_rows, "teams": teams, "roles": role_names, "notice": notice, "error": error}),
    };
    p.page(StatusCode::OK, page)
}

/// The refusal of a people form, in words.
fn why(err: &ApiError) -> Option<String> {
    match err {
        ApiError::Validation(errs) => Some(
            errs.iter()
                .map(|e| format!("{}: {}", e.pointer.trim_start_matches('/'), e.detail))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ApiError::Conflict(why) => Some(why.clone()),
        _ => None,
    }
}

async fn people_result(p: &Portal, headers: &HeaderMap, saved: &str, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => {
            let saved: String = url::form_urlencoded::byte_serialize(saved.as_bytes()).collect();
            see_other(headers, &format!("/portal/admin/people?saved={saved}"))
        }
        Err(e) => match why(&e) {
            Some(why) => people_page(p, None, Some(why)).await,
            None => p.error(&e),
        },
    }
}

/// The roles ticked in a form.
fn ticked(posted: &Posted) -> Vec<String> {
    posted.iter().filter(|(k, _)| k == "role").map(|(_, v)| v.clone()).collect()
}

/// Creates a user through the API's `POST /users`.
pub(super) async fn create_user(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let password = get(&posted, "password");
    let body = json!({
        "email": get(&posted, "email").trim(),
        "display_name": get(&posted, "display_name").trim(),
        "password": if password.is_empty() { Value::Null } else { Value::String(password.to_owned()) },
        "roles": ticked(&posted),
    });
    let result = async {
        crate::routes::users::create_user(p.call(), crate::extract::IdempotencyKey(None), AppJson::from_value(&body)?)
            .await
            .map(|_| ())
    }
    .await;
    let saved = get(&posted, "display_name").trim().to_owned();
    people_result(&p, &headers, &saved, result).await
}

/// Sets a user's roles through the API's `PUT /users/{id}/roles`.
pub(super) async fn set_roles(
    p: Portal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let result = async {
        crate::routes::users::set_roles(p.call(), AppPath(id), AppJson::from_value(&json!({"roles": ticked(&posted)}))?)
            .await
            .map(|_| ())
    }
    .await;
    people_result(&p, &headers, "the roles", result).await
}

/// Deactivates a user through the API's `DELETE /users/{id}`.
pub(super) async fn deactivate_user(p: Portal, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let result = crate::routes::users::deactivate_user(p.call(), AppPath(id)).await.map(|_| ());
    people_result(&p, &headers, "the deactivation", result).await
}

/// Creates a team through the API's `POST /teams`.
pub(super) async fn create_team(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    let body = json!({"name": get(&posted, "name").trim(), "description": get(&posted, "description").trim()});
    let result = async {
        crate::routes::teams::create_team(p.call(), crate::extract::IdempotencyKey(None), AppJson::from_value(&body)?)
            .await
            .map(|_| ())
    }
    .await;
    let saved = get(&posted, "name").trim().to_owned();
    people_result(&p, &headers, &saved, result).await
}

/// Adds a user (by email) to a team through the API's `PUT /teams/{id}/members/{user}`.
pub(super) async fn add_member(
    p: Portal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let found = user_by_email(&p, get(&posted, "email")).await;
    let result = match found {
        Ok(Some(user)) => crate::routes::teams::add_member(p.call(), AppPath((id, user))).await.map(|_| ()),
        Ok(None) => Err(ApiError::field("/email", "unknown", "no active user has this email")),
        Err(e) => Err(e),
    };
    people_result(&p, &headers, "the team's members", result).await
}

/// The change routing (which approval each change type gets), as a JSON document the admin
/// edits; saved through the API's `PUT /settings/change-routing`.
pub(super) async fn routing(p: Portal, RawQuery(raw): RawQuery) -> Response {
    let current = match crate::routes::approvals::routing::get_change_routing(p.call()).await {
        Ok(Json(r)) => serde_json::to_string_pretty(&r).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    routing_page(&p, notice_of(raw), &current, &[])
}

fn routing_page(p: &Portal, notice: Option<String>, document: &str, errors: &[FieldError]) -> Response {
    let page = Page {
        template: "portal/admin_routing",
        title: "Change routing".into(),
        nav: "routing",
        data: json!({"notice": notice, "document": document, "errors": errors.iter().map(located).collect::<Vec<_>>()}),
    };
    p.page(StatusCode::OK, page)
}

pub(super) async fn save_routing(p: Portal, headers: HeaderMap, Form(posted): Form<Posted>) -> Response {
    if let Err(e) = p.caller.require(Permission::CatalogAdmin).await {
        return p.error(&e);
    }
    let doc = get(&posted, "document").to_owned();
    let result = match json_field(&doc, "/") {
        Err(e) => Err(ApiError::Validation(vec![e])),
        Ok(None) => Err(ApiError::field("/", "required", "write the routing first")),
        Ok(Some(body)) => {
            async {
                crate::routes::approvals::routing::put_change_routing(p.call(), AppJson::from_value(&body)?)
                    .await
                    .map(|_| ())
            }
            .await
        }
    };
    match result {
        Ok(()) => see_other(&headers, "/portal/admin/routing?saved=the+change+routing"),
        Err(ApiError::Validation(errs)) => routing_page(&p, None, &doc, &errs),
        Err(e) => p.error(&e),
    }
}

/// A playbook's versions (newest first) and one version's document, which can be saved again
/// as the draft.
pub(super) async fn playbook_versions(p: Portal, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return p.error(&ApiError::NotFound) };
    let detail = match playbooks::documents::get_playbook(p.call(), AppPath(id)).await {
        Ok(Json(d)) => serde_json::to_value(d).unwrap_or_default(),
        Err(e) => return p.error(&e),
    };
    let chosen = param(raw.as_deref(), "version")
        .and_then(|v| v.parse::<i32>().ok())
        .or_else(|| detail["latest_version"].as_i64().and_then(|v| i32::try_from(v).ok()));
    let shown = match chosen {
        Some(v) => match playbooks::documents::get_version(p.call(), AppPath((id, v))).await {
            Ok(Json(v)) => serde_json::to_value(v).unwrap_or_default(),
            Err(e) => return p.error(&e),
        },
        None => Value::Null,
    };
    let versions: Vec<Value> = detail["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            json!({"version": v["version"], "status": forms::humanize(v["status"].as_str().unwrap_or_default()),
                   "created": crate::portal::when(&v["created_at"]), "published": crate::portal::when(&v["published_at"]),
                   "retired": crate::portal::when(&v["retired_at"]), "shown": v["version"] == shown["version"]})
        })
        .collect();
    let name = detail["name"].as_str().unwrap_or_default().to_owned();
    let page = Page {
        template: "portal/admin_playbook",
        title: format!("Playbook {name}"),
        nav: "playbooks",
        data: json!({
            "id": detail["id"], "name": name, "versions": versions,
            "shown": if shown.is_null() { Value::Null } else {
                json!({"version": shown["version"], "status": forms::humanize(shown["status"].as_str().unwrap_or_default()), "source": shown["source"]})
            },
        }),
    };
    p.page(StatusCode::OK, page)
}
