//! `/approvals/decide`: the pages behind the approve and reject links of approval emails.
//!
//! The link's token (see `archer_workers::links`) says which task, approver and decision it
//! is for and until when; it works without logging in. Opening it (GET) only shows a
//! confirmation page: mail scanners and link previews fetch GETs. The page's form POSTs the
//! token back, and that decides: the decision, the token's use and the outbox row that tells
//! the chain's workflow are one transaction. A link that cannot decide (invalid or changed,
//! expired, used, sent to someone else, for a step that closed or an approval already decided)
//! answers with a page that says why and what the approval's state is; never an error dump.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::approval::Decision;
use archer_store::approvals::{self, ApprovalRow, StepRow, TaskRow};
use archer_store::tickets::TicketRow;
use archer_store::{AuditContext, StoreError, TenantTx, audit, changes, tx_now, users};
use archer_workers::links::LinkClaims;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::RequestMeta;
use crate::pages::{CONFIRM, DONE, PROBLEM};

use super::approvals::{Outcome, closed_message, record_decision};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(confirm_page, decide_page))
}

#[derive(Deserialize, IntoParams)]
pub struct LinkQuery {
    /// The token from the emailed link.
    token: Option<String>,
}

#[derive(Deserialize)]
struct DecideForm {
    token: Option<String>,
    comment: Option<String>,
}

/// A rendered page with the headers every decision page carries.
fn page(state: &AppState, status: StatusCode, name: &str, data: serde_json::Value) -> Response {
    let html = match state.pages.render(name, &data) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, page = name, "page did not render");
            return ApiError::internal(e).into_response();
        }
    };
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}

fn when(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

/// Why a link cannot decide.
enum Refusal {
    Invalid,
    Expired { at: OffsetDateTime },
    Used { at: OffsetDateTime },
    OtherApprover,
    DecidedOtherwise,
    Closed(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid => StatusCode::BAD_REQUEST,
            Refusal::Expired { .. } | Refusal::Used { .. } => StatusCode::GONE,
            Refusal::OtherApprover => StatusCode::FORBIDDEN,
            Refusal::DecidedOtherwise | Refusal::Closed(_) => StatusCode::CONFLICT,
        }
    }

    /// The audit action recorded for a refused link.
    fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Expired { .. } => "expired",
            Refusal::Used { .. } => "used",
            Refusal::OtherApprover => "other_approver",
            Refusal::DecidedOtherwise => "decided_otherwise",
            Refusal::Closed(_) => "closed",
        }
    }
}

/// Everything a valid token points at.
struct Target {
    claims: LinkClaims,
    approval: ApprovalRow,
    step: StepRow,
    task: TaskRow,
    ticket: TicketRow,
    number: String,
}

fn past(task: &TaskRow) -> &'static str {
    match task.state.as_str() {
        "approved" => "approved",
        "rejected" => "rejected",
        _ => "decided",
    }
}

fn refusal_page(state: &AppState, r: &Refusal, target: Option<&Target>) -> Response {
    let (title, message) = match r {
        Refusal::Invalid => (
            "This link is not valid".to_owned(),
            "This approval link is incomplete or was changed on the way, so it cannot decide anything. Use the \
             buttons in the latest email about this approval, or decide in Archer."
                .to_owned(),
        ),
        Refusal::Expired { at } => (
            "This link has expired".to_owned(),
            format!(
                "This approval link expired at {}. Nothing was decided. Decide in Archer, or ask the service desk to \
                 send the approval again.",
                when(*at)
            ),
        ),
        Refusal::Used { at } => {
            let state_now = target
                .map(|t| match t.task.decided_at {
                    Some(d) if matches!(t.task.state.as_str(), "approved" | "rejected") => {
                        format!(" You {} this step at {}; that decision stands.", past(&t.task), when(d))
                    }
                    _ => String::new(),
                })
                .unwrap_or_default();
            (
                "This link was already used".to_owned(),
                format!("This approval link was used at {} and works only once.{state_now}", when(*at)),
            )
        }
        Refusal::OtherApprover => (
            "This link was sent to someone else".to_owned(),
            "You are signed in as a different person than the approver this link was sent to. Only they can use \
             it; if you are asked too, use the link in your own email."
                .to_owned(),
        ),
        Refusal::DecidedOtherwise => {
            let t = target.map(|t| {
                format!(
                    "You already {} this step{}. A decision cannot be changed; ask the service desk if it was a \
                     mistake.",
                    past(&t.task),
                    t.task.decided_at.map(|d| format!(" at {}", when(d))).unwrap_or_default()
                )
            });
            ("You already decided".to_owned(), t.unwrap_or_default())
        }
        Refusal::Closed(why) => ("This approval step is closed".to_owned(), format!("Nothing was decided: {why}.")),
    };
    let mut data = json!({"title": title, "message": message});
    if let Some(t) = target {
        data["ticket"] = json!({"number": t.number, "title": t.ticket.title});
    }
    page(state, r.status(), PROBLEM, data)
}

/// The user a bearer token (if any) names, to refuse a link used by someone signed in as
/// another person.
fn signed_in_as(state: &AppState, headers: &HeaderMap) -> Option<Uuid> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?;
    state.tokens.verify(token.trim()).ok().map(|c| c.sub)
}

/// Reads and checks a token against the database, in `tx` of the token's tenant.
async fn resolve(tx: &mut TenantTx, claims: LinkClaims) -> Result<Target, Refusal> {
    let load = async {
        let task = approvals::task(tx, claims.task).await?;
        let step = approvals::step(tx, task.step_id).await?;
        let approval = approvals::get(tx, task.approval_id).await?;
        let ticket = archer_store::tickets::get(tx, task.ticket_id).await?;
        Ok::<_, StoreError>((task, step, approval, ticket))
    };
    let (task, step, approval, ticket) = match load.await {
        Ok(x) => x,
        Err(StoreError::NotFound) => return Err(Refusal::Invalid),
        Err(e) => {
            tracing::error!(error = %e, "loading an approval link's task");
            return Err(Refusal::Invalid);
        }
    };
    if task.approver_id != claims.approver || task.approval_id != claims.approval || task.step_id != claims.step {
        return Err(Refusal::Invalid);
    }
    let number = changes::parse(&ticket).map(|p| p.number.to_string()).map_err(|_| Refusal::Invalid)?;
    Ok(Target { claims, approval, step, task, ticket, number })
}

/// The checks a link passes before it may show its form or decide, in the order a person
/// would want to hear about them.
async fn check(tx: &mut TenantTx, t: &Target, signed_in: Option<Uuid>, now: OffsetDateTime) -> Result<(), Refusal> {
    if let Some(user) = signed_in
        && user != t.claims.approver
    {
        return Err(Refusal::OtherApprover);
    }
    if let Ok(Some(at)) = approvals::link_used(tx, t.claims.jti).await {
        return Err(Refusal::Used { at });
    }
    if matches!(t.task.state.as_str(), "approved" | "rejected") {
        let same = (t.task.state == "approved") == (t.claims.decision == Decision::Approve);
        return if same { Ok(()) } else { Err(Refusal::DecidedOtherwise) };
    }
    if t.task.state != "asked" || t.step.state != "open" || t.approval.state != "pending" {
        return Err(Refusal::Closed(closed_message(&t.task, &t.step.state, &t.approval.state)));
    }
    if t.claims.exp < now.unix_timestamp() {
        return Err(Refusal::Expired { at: OffsetDateTime::from_unix_timestamp(t.claims.exp).unwrap_or(now) });
    }
    Ok(())
}

fn done_page(state: &AppState, t: &Target, task: &TaskRow, already: bool) -> Response {
    page(
        state,
        StatusCode::OK,
        DONE,
        json!({
            "decision": past(task),
            "ticket": {"number": t.number, "title": t.ticket.title},
            "step": {"name": t.step.name},
            "decided_at": task.decided_at.map(when).unwrap_or_default(),
            "already": already,
        }),
    )
}

async fn confirm_data(tx: &mut TenantTx, t: &Target, token: &str) -> serde_json::Value {
    let name = |u: Result<archer_store::users::User, StoreError>| u.map(|u| u.display_name).unwrap_or_default();
    let approver = name(users::get(tx, t.task.approver_id).await);
    let requester = name(users::get(tx, t.ticket.requester_id).await);
    let on_behalf_of = match t.task.on_behalf_of {
        Some(u) => Some(name(users::get(tx, u).await)),
        None => None,
    };
    let fields = archer_workers::approvals::form_answers(tx, &t.ticket).await;
    let (decision, label) = match t.claims.decision {
        Decision::Approve => ("approve", "Approve"),
        Decision::Reject => ("reject", "Reject"),
    };
    json!({
        "decision": decision,
        "decision_label": label,
        "ticket": {"number": t.number, "title": t.ticket.title},
        "requester": {"name": requester},
        "step": {"name": t.step.name},
        "approver": {"name": approver},
        "on_behalf_of": on_behalf_of,
        "fields": fields,
        "token": token,
        "comment_required": t.claims.decision == Decision::Reject,
    })
}

/// Records a refused link in the audit log (who tried what, and why it decided nothing).
async fn audit_refusal(state: &AppState, meta: &RequestMeta, claims: Option<&LinkClaims>, r: &Refusal) {
    let Some(c) = claims else { return };
    let ctx = AuditContext { actor_id: Some(c.approver), request_id: Some(meta.request_id.clone()), ip: meta.ip };
    let Ok(mut tx) = TenantTx::begin(&state.pool, c.tenant, &ctx).await else { return };
    let event = audit::Event {
        tenant_id: c.tenant,
        action: "approval.link_refused",
        entity_type: "approval_tasks",
        entity_id: Some(c.task.to_string()),
        detail: Some(format!("{}: {:?} link {}", r.code(), c.decision, c.jti)),
    };
    if audit::record(&mut tx, &ctx, event).await.is_ok() {
        let _ = tx.commit().await;
    }
}

/// Opens an emailed decision link: shows what is being decided and a form whose POST decides.
/// Decides nothing.
#[utoipa::path(get, path = "/approvals/decide", tag = "approvals", params(LinkQuery), responses(
    (status = 200, description = "the confirmation page (or the decision, if it was recorded already)", content_type = "text/html"),
    (status = 400, description = "the link is invalid or was changed", content_type = "text/html"),
    (status = 403, description = "signed in as someone other than the link's approver", content_type = "text/html"),
    (status = 409, description = "decided otherwise already, or the step closed", content_type = "text/html"),
    (status = 410, description = "the link expired or was used", content_type = "text/html"),
))]
pub async fn confirm_page(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    let Ok(claims) = state.links.verify(&token) else {
        return refusal_page(&state, &Refusal::Invalid, None);
    };
    let ctx = AuditContext { actor_id: Some(claims.approver), request_id: Some(meta.request_id.clone()), ip: meta.ip };
    let mut tx = match TenantTx::begin(&state.pool, claims.tenant, &ctx).await {
        Ok(tx) => tx,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let now = match tx_now(&mut tx).await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let signed_in = signed_in_as(&state, &headers);
    let target = match resolve(&mut tx, claims.clone()).await {
        Ok(t) => t,
        Err(r) => return refusal_page(&state, &r, None),
    };
    if let Err(r) = check(&mut tx, &target, signed_in, now).await {
        return refusal_page(&state, &r, Some(&target));
    }
    if matches!(target.task.state.as_str(), "approved" | "rejected") {
        return done_page(&state, &target, &target.task, true);
    }
    let data = confirm_data(&mut tx, &target, &token).await;
    drop(tx);
    page(&state, StatusCode::OK, CONFIRM, data)
}

/// Decides from the confirmation page's form (`token`, and `comment`, required to reject).
#[utoipa::path(post, path = "/approvals/decide", tag = "approvals",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`token` from the link; `comment` (required to reject)"),
    responses(
    (status = 200, description = "decided (or found decided already)", content_type = "text/html"),
    (status = 400, description = "the link is invalid or was changed", content_type = "text/html"),
    (status = 403, description = "signed in as someone other than the link's approver", content_type = "text/html"),
    (status = 409, description = "decided otherwise already, or the step closed", content_type = "text/html"),
    (status = 410, description = "the link expired or was used", content_type = "text/html"),
    (status = 422, description = "a rejection without a comment: the form again, saying so", content_type = "text/html"),
))]
pub async fn decide_page(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: DecideForm = serde_urlencoded::from_bytes(&body).unwrap_or(DecideForm { token: None, comment: None });
    let token = form.token.unwrap_or_default();
    let Ok(claims) = state.links.verify(&token) else {
        return refusal_page(&state, &Refusal::Invalid, None);
    };
    let ctx = AuditContext { actor_id: Some(claims.approver), request_id: Some(meta.request_id.clone()), ip: meta.ip };
    let result = async {
        let mut tx = TenantTx::begin(&state.pool, claims.tenant, &ctx).await?;
        let now = tx_now(&mut tx).await?;
        let target = match resolve(&mut tx, claims.clone()).await {
            Ok(t) => t,
            Err(r) => return Ok::<_, ApiError>(Err((r, None))),
        };
        let tenant = tracing::Span::current();
        tenant.record("ticket", target.number.as_str());
        if let Err(r) = check(&mut tx, &target, signed_in_as(&state, &headers), now).await {
            return Ok(Err((r, Some(target))));
        }
        let comment = form
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.chars().take(4000).collect::<String>());
        if claims.decision == Decision::Reject && comment.is_none() && !matches!(target.task.state.as_str(), "rejected")
        {
            let mut data = confirm_data(&mut tx, &target, &token).await;
            data["error"] = json!("A comment is required to reject: say why, the requester sees it.");
            return Ok(Ok(page(&state, StatusCode::UNPROCESSABLE_ENTITY, CONFIRM, data)));
        }
        let outcome =
            record_decision(&mut tx, &target.approval, &target.task, claims.decision, comment.as_deref(), "email")
                .await?;
        let resp = match outcome {
            Outcome::Recorded(task) => {
                if !approvals::use_link(&mut tx, claims.tenant, claims.jti, task.id).await? {
                    // the same token raced itself; the other request decided
                    return Ok(Err((Refusal::Used { at: now }, Some(target))));
                }
                let r = done_page(&state, &target, &task, false);
                tx.commit().await?;
                r
            }
            Outcome::Already(task) if (task.state == "approved") == (claims.decision == Decision::Approve) => {
                done_page(&state, &target, &task, true)
            }
            Outcome::Already(_) => return Ok(Err((Refusal::DecidedOtherwise, Some(target)))),
            Outcome::Closed { task, step_state, approval_state } => {
                return Ok(Err((Refusal::Closed(closed_message(&task, &step_state, &approval_state)), Some(target))));
            }
        };
        Ok(Ok(resp))
    }
    .await;
    match result {
        Ok(Ok(resp)) => resp,
        Ok(Err((r, target))) => {
            audit_refusal(&state, &meta, Some(&claims), &r).await;
            refusal_page(&state, &r, target.as_ref())
        }
        Err(e) => e.into_response(),
    }
}
