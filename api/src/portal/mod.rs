//! The web portal: server-rendered pages for requesters, approvers, agents and admins, served
//! by `archer serve` under `/portal`.
//!
//! Pages are Handlebars templates (`templates/portal/`, compiled into the binary, strict: a
//! field a template uses but the data lacks is an error, and a unit test renders every page).
//! They work without JavaScript; htmx (embedded, from the npm registry at build time) and
//! `portal.js` only enhance them (countdowns, conditional form fields).
//!
//! One write path: a page calls the API's own handler functions with the signed-in user's
//! [`Caller`](crate::caller::Caller), so the same commands, RBAC, tenancy, audit and outbox
//! apply; a refusal comes back as the same [`ApiError`] and is shown beside the fields it names.
//! A refused form is the same page again with its errors (status 200: browsers log a page
//! answered with any other status as a failed load); what cannot be shown at all (another
//! role's page, another tenant's ticket, a form without its CSRF token) is an error page with
//! the API's status (403, 404, 409...).
//! Sessions, CSRF and the headers every page carries are in [`session`].

mod admin;
mod assets;
mod forms;
mod pages;
pub mod session;
mod work;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use archer_orchestrator::access::Permission;

use crate::app::AppState;
use crate::auth::Principal;
use crate::caller::Caller;
use crate::error::ApiError;

/// The portal's routes: the public ones (login, assets) and those behind [`session::gate`].
pub fn router(state: &AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/portal", get(pages::home))
        .route("/portal/catalog", get(pages::catalog))
        .route("/portal/catalog/{item}", get(pages::item).post(pages::submit))
        .route("/portal/tickets", get(pages::my_tickets))
        .route("/portal/tickets/{ticket}", get(pages::ticket))
        .route("/portal/tickets/{ticket}/comments", post(pages::comment))
        .route("/portal/tickets/{ticket}/status", post(work::set_status))
        .route("/portal/tickets/{ticket}/assignment", post(work::assign))
        .route("/portal/tickets/{ticket}/links", post(work::link))
        .route("/portal/tickets/{ticket}/runs", post(work::run_playbook))
        .route("/portal/runs/{id}/{what}", post(work::manage_run))
        .route("/portal/approvals", get(work::inbox))
        .route("/portal/approvals/away", post(work::set_away))
        .route("/portal/approvals/away/end", post(work::end_away))
        .route("/portal/approvals/{id}/{decision}", post(work::decide))
        .route("/portal/queue", get(work::queue))
        .route("/portal/queue/assign", post(work::bulk_assign))
        .route("/portal/queue/views", post(work::save_view))
        .route("/portal/queue/views/{id}/delete", post(work::delete_view))
        .route("/portal/admin/catalog", get(admin::catalog_items))
        .route("/portal/admin/catalog/new", get(admin::new_item).post(admin::create_item))
        .route("/portal/admin/catalog/{id}/edit", get(admin::edit_item).post(admin::update_item))
        .route("/portal/admin/playbooks", get(admin::playbook_list).post(admin::save_playbook))
        .route("/portal/admin/audit", get(admin::audit_log))
        .route("/portal/admin/sla", get(admin::sla))
        .route("/portal/admin/routing", get(admin::routing).post(admin::save_routing))
        .route("/portal/admin/people", get(admin::people))
        .route("/portal/admin/people/users", post(admin::create_user))
        .route("/portal/admin/people/users/{id}/roles", post(admin::set_roles))
        .route("/portal/admin/people/users/{id}/deactivate", post(admin::deactivate_user))
        .route("/portal/admin/people/teams", post(admin::create_team))
        .route("/portal/admin/people/teams/{id}/members", post(admin::add_member))
        .route("/portal/admin/sla/{what}", post(admin::sla_save))
        .route("/portal/admin/playbooks/{id}/versions/{version}/publish", post(admin::publish))
        .route("/portal/admin/playbooks/{id}/dry-run", post(admin::dry_run))
        .route("/portal/admin/playbooks/{id}", get(admin::playbook_versions))
        .route("/portal/logout", post(session::logout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), session::gate));
    // signing in here is limited per address exactly as `/api/v1/auth/login` is
    let sign_in = Router::new()
        .route("/portal/login", post(session::login))
        .layer(crate::routes::auth::login_rate_limit(&state.config))
        .route("/portal/login", get(session::login_page));
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal") }))
        .merge(sign_in)
        .route("/portal/static/{file}", get(assets::serve))
        .merge(signed_in)
}

/// Who is signed in, as every page's layout shows it.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub agent: bool,
    pub approver: bool,
    pub admin: bool,
    pub auditor: bool,
    pub sla_admin: bool,
    pub user_admin: bool,
}

impl Me {
    pub fn of(principal: &Principal, name: String) -> Me {
        Me {
            name,
            agent: principal.can(Permission::TicketUpdate),
            approver: principal.can(Permission::ApprovalDecide) || principal.roles.iter().any(|r| r == "manager"),
            auditor: principal.can(Permission::AuditRead),
            admin: principal.can(Permission::CatalogAdmin) || principal.can(Permission::PlaybookAdmin),
            sla_admin: principal.can(Permission::SlaAdmin),
            user_admin: principal.can(Permission::UserAdmin),
        }
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "agent": self.agent, "approver": self.approver, "admin": self.admin, "auditor": self.auditor, "sla_admin": self.sla_admin, "user_admin": self.user_admin})
    }
}

/// A page: the template, its title, the navigation entry it belongs to and its own data.
pub struct Page {
    pub template: &'static str,
    pub title: String,
    pub nav: &'static str,
    pub data: Value,
}

/// Renders `page` in the layout (`me` and `csrf` absent on pages seen signed out).
pub fn render(state: &AppState, status: StatusCode, me: Option<&Me>, csrf: &str, page: Page) -> Response {
    let mut data = page.data;
    if let Value::Object(map) = &mut data {
        map.insert("title".into(), Value::String(page.title));
        map.insert("nav".into(), json!({ page.nav: true }));
        map.insert("csrf".into(), Value::String(csrf.to_owned()));
        map.insert("me".into(), me.map(Me::json).unwrap_or(Value::Null));
    }
    match state.pages.render(page.template, &data) {
        Ok(html) => html_response(status, html),
        Err(e) => {
            tracing::error!(error = %e, page = page.template, "portal page did not render");
            html_response(StatusCode::INTERNAL_SERVER_ERROR, crate::pages::FALLBACK_ERROR.to_owned())
        }
    }
}

/// The portal's content security policy: its own scripts, styles and images only (no inline
/// script or style, nothing from elsewhere), forms to itself, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML document with the headers every portal page carries.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp
}

/// A refusal or failure shown as a page: the same problem the API would answer, in words.
pub fn error_page(state: &AppState, me: Option<&Me>, csrf: &str, err: &ApiError) -> Response {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, source = ?std::error::Error::source(err), "portal page failed");
    }
    let problem = err.problem();
    let (heading, text) = match status {
        StatusCode::FORBIDDEN => ("You may not open this page", problem.detail.clone()),
        StatusCode::NOT_FOUND => ("Not found", "There is nothing here, or it is not yours to see.".to_owned()),
        StatusCode::CONFLICT => ("That could not be done", problem.detail.clone()),
        StatusCode::PRECONDITION_FAILED => (
            "Someone changed this meanwhile",
            "The ticket changed since you opened it. Go back, reload it and try again.".to_owned(),
        ),
        _ if status.is_server_error() => {
            ("Something went wrong", "Something went wrong on our side. Try again in a moment.".to_owned())
        }
        _ => ("That could not be done", problem.detail.clone()),
    };
    let errors: Vec<Value> = problem.errors.iter().map(|e| json!({"field": e.pointer, "message": e.detail})).collect();
    let page = Page {
        template: "portal/error",
        title: heading.to_owned(),
        nav: "none",
        data: json!({"status": status.as_u16(), "heading": heading, "text": text, "errors": errors}),
    };
    render(state, status, me, csrf, page)
}

/// What every signed-in page starts from: the API's [`Caller`] (the session's access token,
/// put there by [`session::gate`]), who that is, and the CSRF token its forms post.
pub struct Portal {
    pub caller: Caller,
    pub me: Me,
    pub csrf: String,
}

impl axum::extract::FromRequestParts<AppState> for Portal {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let csrf = parts.extensions.get::<session::Csrf>().map(|c| c.0.clone()).unwrap_or_default();
        let caller = Caller::from_request_parts(parts, state).await.map_err(|e| error_page(state, None, &csrf, &e))?;
        let name = async {
            let mut tx = caller.begin().await?;
            let user = archer_store::users::get(&mut tx, caller.user_id()).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(user.display_name)
        }
        .await
        .map_err(|e| error_page(state, None, &csrf, &e))?;
        let me = Me::of(&caller.principal, name);
        Ok(Portal { caller, me, csrf })
    }
}

impl Portal {
    pub fn state(&self) -> &AppState {
        self.caller.state()
    }

    /// `page`, rendered for this user.
    pub fn page(&self, status: StatusCode, page: Page) -> Response {
        render(self.state(), status, Some(&self.me), &self.csrf, page)
    }

    /// `err` as a page for this user.
    pub fn error(&self, err: &ApiError) -> Response {
        error_page(self.state(), Some(&self.me), &self.csrf, err)
    }

    /// A copy of the caller, to hand to an API handler.
    pub fn call(&self) -> Caller {
        self.caller.clone()
    }
}

/// The value of query parameter `name` in a page's query string.
pub fn param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A page's filters: the query parameters named in `allowed` that have a value, trimmed.
pub fn filters(raw: Option<&str>, allowed: &[&str]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, v)| allowed.contains(&k.as_ref()) && !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect()
}

/// An API query type from a page's filters (`(name, value)` pairs), parsed as the API parses
/// its query string.
pub fn api_query<T: serde::de::DeserializeOwned>(pairs: &[(String, String)]) -> Result<T, ApiError> {
    let text = serde_urlencoded::to_string(pairs).map_err(ApiError::internal)?;
    serde_urlencoded::from_str(&text).map_err(|e| ApiError::BadRequest(format!("the filters do not parse: {e}")))
}

/// Field errors on one line, as a page shows them above its form: `status: unknown; ...`.
pub fn problems(errs: &[crate::error::FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{}: {}", e.pointer.trim_start_matches(['?', '/']), e.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The active user of the tenant with this email (case aside), if any.
pub async fn user_by_email(p: &Portal, email: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    let email = email.trim().to_lowercase();
    if email.is_empty() {
        return Ok(None);
    }
    let mut tx = p.caller.begin().await?;
    let filter =
        archer_store::users::UserFilter { q: Some(&email), role: None, active: Some(true), limit: 10, offset: 0 };
    let (users, _) = archer_store::users::list(&mut tx, filter).await?;
    tx.commit().await?;
    Ok(users.into_iter().find(|u| u.email.to_lowercase() == email).map(|u| u.id))
}

/// The JSON body of a response an API handler answered.
pub async fn body_json(resp: Response) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.map_err(ApiError::internal)?;
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// An instant as pages show it: `2026-11-30 14:05 UTC` (the `<time>` element carries the
/// exact RFC 3339 instant).
pub fn when(v: &Value) -> Value {
    match v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
        Some(t) => Value::String(t.strftime("%Y-%m-%d %H:%M UTC").to_string()),
        None => Value::Null,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pages::{EMBEDDED, Pages};

    fn me() -> Value {
        json!({"name": "Riley Requester", "agent": true, "approver": true, "admin": true, "auditor": true, "sla_admin": true, "user_admin": true})
    }

    fn layout(mut data: Value, me: Value) -> Value {
        data["title"] = json!("A page");
        data["nav"] = json!({"queue": true});
        data["csrf"] = json!("nonce.mac");
        data["me"] = me;
        data
    }

    fn row() -> Value {
        json!({"number": "REQ-000012", "title": "Laptop <for> a new starter", "kind": "service_request", "status": "Pending approval",
               "priority": "P3", "created": "2026-11-30 09:00 UTC",
               "sla": {"state": "Warning", "class": "warn", "due": "2026-12-01 17:00 UTC", "due_at": "2026-12-01T17:00:00Z",
                       "metric": "Resolution", "remaining": 3600, "running": true}})
    }

    /// Every portal page, with sample data as its handler builds it (and the optional parts
    /// left out): `(name, full data, data without the optional parts)`.
    fn samples() -> Vec<(&'static str, Value, Value)> {
        let field = json!({"name": "os", "id": "f-os", "label": "Operating system", "hint": "Laptops only.", "kind": "select",
            "is_select": true, "is_checkbox": false, "is_checkboxes": false, "is_textarea": false, "input_type": "text",
            "required": false, "conditional": true, "value": "", "checked": false,
            "options": [{"value": "linux", "label": "Linux", "selected": true}], "error": "Operating system is required.",
            "show_when": "device_type=laptop", "describedby": "f-os-hint f-os-error"});
        let ticket = json!({
            "ticket": {"number": "REQ-000012", "title": "Laptop", "description": "- **Device**: laptop", "kind": "Service request",
                       "status": "Pending approval", "status_value": "pending_approval", "priority": "P3", "version": 4,
                       "created": "2026-11-30 09:00 UTC", "requester": "Riley Requester", "assignee": "Alex Agent"},
            "sla": row()["sla"],
            "clocks": [{"metric": "Resolution", "state": "Running", "due": "2026-12-01 17:00 UTC", "due_at": "2026-12-01T17:00:00Z",
                        "remaining": 3600, "paused": false, "running": true, "counting": true}],
            "fields": [{"label": "Device type", "value": "laptop"}],
            "approvals": [{"state": "Pending", "steps": [{"name": "Manager approval", "state": "open", "state_label": "Open",
                "tasks": [{"approver": "Morgan Manager", "state": "Approved", "decided": "2026-11-30 10:00 UTC", "comment": "ok", "via": "email"}]}]}],
            "comments": [{"author": "Alex Agent", "body": "On it", "internal": true, "at": "2026-11-30 10:00 UTC"}],
            "timeline": [{"at": "2026-11-30 10:00 UTC", "kind": "Changed", "summary": "status: new -> in_progress"}],
            "allowed": [{"value": "waiting_on_customer", "label": "Waiting on customer"}],
            "can_change": true, "can_cancel": true, "can_reopen": true,
            "workflow_url": "http://127.0.0.1:8233/namespaces/default/workflows/acme/REQ-000012", "key": "k", "error": "It changed",
            "notice": "Done",
            "work": {"can_assign": true, "agents": [{"id": "a", "name": "Alex", "selected": true}], "teams": [{"id": "t", "name": "Desk", "selected": false}],
                     "priorities": [{"value": 1, "label": "P1", "selected": true}], "links": [{"says": "This ticket relates to", "ticket": "INC-000002"}],
                     "link_kinds": [{"value": "relates_to", "label": "Relates to"}], "playbooks": ["triage"],
                     "runs": [{"id": "r", "playbook": "triage", "run": 1, "status": "Failed", "error": "boom", "retry": true, "cancel": true}]}
        });
        let mut bare_ticket = ticket.clone();
        for k in ["sla", "workflow_url", "error", "notice", "work"] {
            bare_ticket[k] = Value::Null;
        }
        for k in ["clocks", "fields", "approvals", "comments", "timeline", "allowed"] {
            bare_ticket[k] = json!([]);
        }
        bare_ticket["ticket"]["assignee"] = Value::Null;
        vec![
            (
                "portal/login",
                json!({"next": "/portal", "email": "a@b.example", "error": "Wrong", "ask_tenant": true}),
                json!({"next": "/portal", "email": ""}),
            ),
            ("portal/home", json!({"pending": 2}), json!({"pending": 0})),
            (
                "portal/catalog",
                json!({"q": "lap", "categories": [{"name": "Hardware", "description": "Computers", "items": [{"id": "x", "name": "Laptop", "description": "A laptop"}]}]}),
                json!({"q": "", "categories": []}),
            ),
            (
                "portal/item",
                json!({"item": {"id": "x", "name": "Laptop", "description": "A laptop"}, "fields": [field], "errors": ["whole form"], "invalid": true, "key": "k"}),
                json!({"item": {"id": "x", "name": "Laptop", "description": "A laptop"}, "fields": [], "errors": [], "invalid": false, "key": "k"}),
            ),
            ("portal/tickets", json!({"tickets": [row()]}), json!({"tickets": []})),
            ("portal/ticket", ticket, bare_ticket),
            (
                "portal/approvals",
                json!({"items": [{"approval_id": "a", "ticket": "REQ-000012", "title": "Laptop", "step": "Manager approval", "requester": "Riley",
                               "on_behalf_of": "Avery", "asked": "2026-11-30 09:00 UTC", "timeout": "2026-12-02 09:00 UTC",
                               "answers": [{"label": "Device", "value": "laptop"}], "others": [{"step": "Manager", "approver": "Morgan", "state": "Approved", "comment": "ok", "when": "2026-11-30 10:00 UTC"}]}],
                    "notice": "Done", "error": "No", "away": {"delegate": "Avery", "from": "2026-12-01 00:00 UTC", "until": "2026-12-05 23:59 UTC", "active": true}}),
                json!({"items": []}),
            ),
            (
                "portal/queue",
                json!({"tickets": [row()], "q": "printer", "mine": true, "sorts": [{"value": "sla_due_at", "label": "SLA due", "selected": true}],
                    "statuses": [{"value": "", "label": "Any", "selected": false}], "total": 1000, "total_exact": false, "next": "/portal/queue?cursor=x", "error": "bad",
                    "notice": "Assigned 2 tickets.", "back": "sort=sla_due_at", "agents": [{"id": "a", "name": "Alex"}],
                    "views": [{"id": "v", "name": "Mine by SLA", "href": "/portal/queue?assignee=me&sort=sla_due_at"}]}),
                json!({"tickets": [], "q": "", "mine": false, "sorts": [], "statuses": [], "total": 0, "total_exact": true, "back": "", "agents": [], "views": []}),
            ),
            (
                "portal/error",
                json!({"status": 404, "heading": "Not found", "text": "Nothing here", "errors": [{"field": "/x", "message": "bad"}]}),
                json!({"status": 403, "heading": "No", "text": "No", "errors": []}),
            ),
            (
                "portal/admin_catalog",
                json!({"items": [{"id": "x", "name": "Laptop", "version": 2, "description": "A laptop"}], "notice": "Saved Laptop."}),
                json!({"items": []}),
            ),
            (
                "portal/admin_item",
                json!({"heading": "Edit Monitor", "action": "/portal/admin/catalog/x/edit", "name": "Monitor", "description": "A screen", "form_schema": "{}", "approval": "", "everyone": true, "roles": "",
                    "categories": [{"id": "c", "name": "Hardware", "selected": true}],
                    "errors": {"name": ["required"], "category": ["unknown"], "form_schema": ["at /type: bad"], "approval": ["line 1, column 2: bad"], "general": ["bad"]},
                    "invalid": true, "preview": [field.clone()]}),
                json!({"heading": "New catalog item", "action": "/portal/admin/catalog/new", "name": "", "description": "", "form_schema": "", "approval": "", "everyone": false, "roles": "", "categories": [],
                    "errors": {"name": [], "category": [], "form_schema": [], "approval": [], "general": []}, "invalid": false, "preview": null}),
            ),
            (
                "portal/admin_playbooks",
                json!({"playbooks": [{"id": "p", "name": "triage", "published_version": 1, "draft_version": 2, "latest_version": 2}],
                    "notice": "Saved", "source": "name: c", "errors": [{"at": "Line 1, column 1", "pointer": "/steps", "message": "cycle", "line": 1}],
                    "lines": [{"n": 1, "text": "name: c", "bad": true}],
                    "plan": {"ticket": "INC-000001", "steps": [{"id": "note", "action": "ticket.comment", "wave": 0, "decision": "run", "reason": "because", "input": "{}"}]}}),
                json!({"playbooks": [], "source": "", "errors": [], "lines": [], "plan": null}),
            ),
            (
                "portal/admin_audit",
                json!({"entries": [{"at": "2026-11-30 10:00 UTC", "action": "tickets.update", "entity": "ticket x", "actor": "u", "before": "{}", "after": "{}", "detail": "d", "request_id": "r"}],
                    "action": "tickets", "entity_type": "", "entity_id": "", "request_id": "", "from": "", "to": "", "next": "/portal/admin/audit?cursor=c", "error": "bad"}),
                json!({"entries": [], "action": "", "entity_type": "", "entity_id": "", "request_id": "", "from": "", "to": ""}),
            ),
            (
                "portal/admin_sla",
                json!({"notice": "Saved", "calendars": [{"name": "Office", "version": 1, "time_zone": "Europe/Paris"}],
                    "policies": [{"name": "Std", "position": 1, "version": 1, "calendar": "Office", "targets": "Resolution: P1 4h"}],
                    "kinds": [{"value": "incident", "label": "Incident", "selected": true}], "impacts": [{"value": "1", "label": "1", "selected": true}],
                    "urgencies": [{"value": "1", "label": "1", "selected": true}], "at": "2026-11-30T09:00:00Z",
                    "preview": {"policy": "Std", "priority": "P1", "created": "2026-11-30 09:00 UTC", "targets": [{"metric": "Resolution", "due": "2026-11-30 13:00 UTC", "due_at": "2026-11-30T13:00:00Z"}]},
                    "preview_error": "bad", "policy": "{}", "calendar": "{}", "policy_errors": ["line 1"], "calendar_errors": ["line 2"]}),
                json!({"calendars": [], "policies": [], "kinds": [], "impacts": [], "urgencies": [], "at": "", "preview": null,
                    "policy": "", "calendar": "", "policy_errors": [], "calendar_errors": []}),
            ),
            (
                "portal/admin_people",
                json!({"users": [{"id": "u", "name": "Alex", "email": "alex@x.example", "active": false, "roles": [{"name": "agent", "checked": true}]}],
                    "teams": [{"id": "t", "name": "Desk", "description": "First line", "members": "Alex"}], "roles": ["agent"], "notice": "Saved", "error": "bad"}),
                json!({"users": [], "teams": [], "roles": []}),
            ),
            (
                "portal/admin_routing",
                json!({"notice": "Saved", "document": "{}", "errors": ["line 1, column 2: bad"]}),
                json!({"document": "", "errors": []}),
            ),
            (
                "portal/admin_playbook",
                json!({"id": "p", "name": "triage", "versions": [
                        {"version": 2, "status": "Draft", "created": "2026-11-30 10:00 UTC", "published": null, "retired": null, "shown": true},
                        {"version": 1, "status": "Published", "created": "2026-11-29 10:00 UTC", "published": "2026-11-29 11:00 UTC", "retired": "2026-11-30 11:00 UTC", "shown": false}],
                    "shown": {"version": 2, "status": "Draft", "source": "name: triage"}}),
                json!({"id": "p", "name": "triage", "versions": [], "shown": null}),
            ),
        ]
    }

    #[test]
    fn every_portal_page_renders_with_and_without_its_optional_parts() {
        let pages = Pages::new().unwrap();
        let samples = samples();
        let portal: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).filter(|n| n.starts_with("portal/")).collect();
        assert_eq!(portal, samples.iter().map(|s| s.0).collect::<Vec<_>>(), "every portal page has a sample");
        for (name, full, bare) in samples {
            // only the sign-in and error pages are ever seen signed out
            let signed_out = matches!(name, "portal/login" | "portal/error");
            let mut variants = vec![(full.clone(), me()), (bare.clone(), me())];
            if signed_out {
                variants.push((bare, Value::Null));
            }
            for (data, me) in variants {
                let html = pages.render(name, &layout(data, me)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "{name}:\n{html}");
                assert!(html.trim_end().ends_with("</html>"), "{name}:\n{html}");
                assert!(!html.contains("{{"), "{name}:\n{html}");
                assert_eq!(html.matches(" id=\"title\"").count(), 1, "{name}:\n{html}");
                assert!(!html.contains("<for>"), "{name}: escaped:\n{html}");
                for form in html.split("<form method=\"post\"").skip(1) {
                    assert!(
                        form.contains("name=\"_csrf\" value=\"nonce.mac\""),
                        "{name}: a form without its CSRF token:\n{form}"
                    );
                }
            }
        }
    }
}
