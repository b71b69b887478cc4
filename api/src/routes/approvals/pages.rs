//! `/approvals/decide`: the pages behind the approve and reject links of approval emails.
//!
//! The link's token (see `archer_workers::links`) says which task, approver and decision it
//! is for and until when; it works without logging in. Opening it (GET) only shows a
//! confirmation page: mail scanners and link previews fetch GETs. The page's form POSTs the
//! token back, and that decides: the decision, the token's use and the outbox row that tells
//! the chain's workflow are one transaction. A link that cannot decide (invalid or changed,
//! expired, used, sent to someone else, for a step that closed or an approval already decided)
//! answers with a page that says why and what the approval's state is; never an error dump.
//! Whether a link may decide is the domain's call (`archer_orchestrator::commands::approval`),
//! the same rules as deciding in the app; these pages say it in their own words.
//!
//! `/approvals/view`: the page behind an email's "View the request" link. Its token is a view
//! token (signed like a decision token, but for viewing only: it never decides, and a decision
//! token does not open it). It shows the request, its answers in the form's order, the step
//! and its rule, and what is pending, with no form; an invalid or expired token gets the same
//! problem page as a decision link.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use jiff::Timestamp;

use archer_orchestrator::approval::{ChainSpec, Decision, StepSpec};
use archer_orchestrator::commands::approval::{self as rules, Actor, Closed, Link, Verdict, Via};
use archer_store::approvals::{self, ApprovalRow, StepRow, TaskRow};
use archer_store::changes::{to_jiff, to_time};
use archer_store::tickets::TicketRow;
use archer_store::{AuditContext, StoreError, TenantTx, audit, changes, users};
use archer_workers::links::LinkClaims;

use crate::app::AppState;
use crate::approvals::{Decided, Deciding, Refused, record, task_facts};
use crate::error::{ApiError, ApiResult};
use crate::extract::RequestMeta;
use crate::pages::{CONFIRM, DONE, PROBLEM};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(confirm_page, decide_page)).routes(routes!(view_page))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
            "default-src 'none'; style-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

/// An instant as the emails write it (`13 Dec 2026, 22:18 UTC`), so a page says the same time
/// as the email whose link opened it.
fn when(t: OffsetDateTime) -> String {
    archer_workers::email::human_utc(changes::to_jiff(t))
}

/// Why a link cannot decide, as the pages tell it.
enum Refusal {
    Invalid,
    Expired {
        at: OffsetDateTime,
    },
    Used {
        at: OffsetDateTime,
    },
    OtherApprover,
    /// The approver the link was sent to has been deactivated.
    Deactivated,
    DecidedOtherwise,
    Closed(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid => StatusCode::BAD_REQUEST,
            Refusal::Expired { .. } | Refusal::Used { .. } => StatusCode::GONE,
            Refusal::OtherApprover | Refusal::Deactivated => StatusCode::FORBIDDEN,
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
            Refusal::Deactivated => "deactivated",
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
        Refusal::Deactivated => (
            "This account is deactivated".to_owned(),
            "The approver this link was sent to has been deactivated, so it decides nothing. Their open approvals \
             went to their delegate, or were withdrawn."
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
    signed_in(state, headers).map(|(user, _)| user)
}

/// The user and tenant a valid bearer token (if any) names.
fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(Uuid, Uuid)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?;
    state.tokens.verify(token.trim()).ok().map(|c| (c.sub, c.tid))
}

/// Records a link refused because its signature does not hold. It proves no tenant, so it is
/// not a tenant's audit row: it goes to `refused_links` with what can be known (IP, request
/// id, why, who was signed in, and the tenant the link claims, unverified), which the admins
/// of that tenant read at `GET /api/v1/audit/refused-links`.
async fn record_invalid_link(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    token: &str,
    page: &'static str,
) {
    let (claimed_tenant_id, claimed_approver) = archer_workers::links::LinkSigner::unverified_claims(token);
    let who = signed_in(state, headers);
    let reason = if token.trim().is_empty() { "no token" } else { "the signature does not match: forged or changed" };
    tracing::warn!(page, reason, ip = ?meta.ip, claimed_tenant = ?claimed_tenant_id, "decision link refused");
    let refused = archer_store::security::RefusedLink {
        at: state.pool.now(),
        ip: meta.ip,
        request_id: Some(meta.request_id.clone()),
        page,
        reason: reason.to_owned(),
        claimed_tenant_id,
        claimed_approver,
        signed_in_user: who.map(|(u, _)| u),
        signed_in_tenant: who.map(|(_, t)| t),
    };
    let recorded = async {
        let mut conn = state.pool.acquire().await?;
        archer_store::security::record_refused_link(&mut conn, &refused).await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not record a refused link");
    }
}

/// What a link's task, step, approval and ticket are.
struct Loaded {
    approval: ApprovalRow,
    step: StepRow,
    task: TaskRow,
    ticket: TicketRow,
    number: String,
}

/// Loads the task a link names, in `tx` of the link's tenant, and checks that it is the
/// approver's, in that approval and step.
async fn load(tx: &mut TenantTx, task: Uuid, approver: Uuid, approval: Uuid, step: Uuid) -> Result<Loaded, Refusal> {
    let rows = async {
        let task = approvals::task(tx, task).await?;
        let step = approvals::step(tx, task.step_id).await?;
        let approval = approvals::get(tx, task.approval_id).await?;
        let ticket = archer_store::tickets::get(tx, task.ticket_id).await?;
        Ok::<_, StoreError>((task, step, approval, ticket))
    };
    let (task, step_row, approval_row, ticket) = match rows.await {
        Ok(x) => x,
        Err(StoreError::NotFound) => return Err(Refusal::Invalid),
        Err(e) => {
            tracing::error!(error = %e, "loading an approval link's task");
            return Err(Refusal::Invalid);
        }
    };
    if task.approver_id != approver || task.approval_id != approval || task.step_id != step {
        return Err(Refusal::Invalid);
    }
    let number = changes::parse(&ticket).map(|p| p.number.to_string()).map_err(|_| Refusal::Invalid)?;
    Ok(Loaded { approval: approval_row, step: step_row, task, ticket, number })
}

/// Reads and checks a token against the database, in `tx` of the token's tenant.
async fn resolve(tx: &mut TenantTx, claims: LinkClaims) -> Result<Target, Refusal> {
    let Loaded { approval, step, task, ticket, number } =
        load(tx, claims.task, claims.approver, claims.approval, claims.step).await?;
    Ok(Target { claims, approval, step, task, ticket, number })
}

/// The checks a link passes before it may show its form or decide (the domain's, in the order
/// a person would want to hear about them), and what deciding by it comes to; with the link's
/// approver as the one deciding.
async fn check(
    tx: &mut TenantTx,
    t: &Target,
    signed_in: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<(Verdict, Actor), Refusal> {
    let active = users::get(tx, t.claims.approver).await.is_ok_and(|u| u.active);
    let used_at = approvals::link_used(tx, t.claims.jti).await.ok().flatten();
    let link = Link { signed_in, used_at: used_at.map(to_jiff), expires_at: expires_at(&t.claims) };
    let actor = Actor { user: t.claims.approver, active, via: Via::Link(link) };
    let facts = task_facts(&t.task, &t.step.state, &t.approval.state).map_err(|e| {
        tracing::error!(error = %e, "a decision link's task");
        Refusal::Invalid
    })?;
    match rules::decide(&actor, t.ticket.requester_id, Some(&facts), t.claims.decision, to_jiff(now)) {
        Ok(verdict) => Ok((verdict, actor)),
        Err(r) => Err(refusal(r, &t.claims, now)),
    }
}

/// When a link's token stops deciding (its expiry is in whole seconds).
fn expires_at(claims: &LinkClaims) -> Timestamp {
    Timestamp::from_second(claims.exp).unwrap_or(if claims.exp < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// The domain's refusal as a page tells it.
fn refusal(r: rules::Refusal, claims: &LinkClaims, now: OffsetDateTime) -> Refusal {
    match r {
        rules::Refusal::OtherApprover => Refusal::OtherApprover,
        rules::Refusal::Deactivated => Refusal::Deactivated,
        rules::Refusal::LinkUsed { at } => Refusal::Used { at: to_time(at) },
        rules::Refusal::Decided { .. } => Refusal::DecidedOtherwise,
        rules::Refusal::Closed(why) => Refusal::Closed(why.to_string()),
        rules::Refusal::LinkExpired { .. } => {
            Refusal::Expired { at: OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(now) }
        }
        // never for a link: it names its task, and a requester is never asked
        rules::Refusal::OwnRequest | rules::Refusal::NotAsked => Refusal::Invalid,
    }
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
        "step": {"name": t.step.name, "summary": step_text(tx, &t.step).await.summary},
        "approver": {"name": approver},
        "on_behalf_of": on_behalf_of,
        "fields": fields,
        "token": token,
        "comment_required": t.claims.decision == Decision::Reject,
    })
}

/// The step's position and rule as the emails say it (`step 2 of 2: any 2 of 3 approvers`).
async fn step_text(tx: &mut TenantTx, step: &StepRow) -> archer_workers::email::StepText {
    archer_workers::approvals::step_text(tx, step, step.escalated_at.is_some()).await
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What a step is waiting for, in a sentence, given its approvers' names and tasks (those who
/// decide it now: the approvers it was escalated to, once escalated), and, once it closed,
/// where the approval is now (`now`: the step open now, as `step 2 of 2: Hardware approvers`).
fn pending_text(l: &Loaded, deciders: &[(&TaskRow, String)], spec: Option<&StepSpec>, now: Option<&str>) -> String {
    let because = |r: &Option<String>| r.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    if l.approval.state != "pending" {
        return format!("Nothing is pending: the approval was {}{}.", l.approval.state, because(&l.approval.reason));
    }
    if l.step.state != "open" {
        let next = match now {
            Some(step) => format!("the request is now at {step}"),
            None => "the request is moving on to its next step".to_owned(),
        };
        return format!("This step was {}{}; {next}.", l.step.state, because(&l.step.reason));
    }
    let names = |state: &str| -> Vec<String> {
        deciders.iter().filter(|(t, _)| t.state == state).map(|(_, n)| n.clone()).collect()
    };
    let (asked, queued) = (names("asked"), names("waiting"));
    if asked.is_empty() {
        return "Every approver asked has decided; the step is closing.".to_owned();
    }
    let mut text = if l.step.escalated_at.is_some() {
        format!("Waiting for a decision from {}: the first one settles the step.", and_list(&asked))
    } else {
        let of = u32::try_from(deciders.len()).unwrap_or(u32::MAX);
        let needed = spec.map(|s| s.approve_when.needed(of)).unwrap_or(of);
        let approved = u32::try_from(names("approved").len()).unwrap_or(u32::MAX);
        let more = needed.saturating_sub(approved);
        let plural = if more == 1 { "" } else { "s" };
        format!("Waiting for {}: {more} more approval{plural} needed.", and_list(&asked))
    };
    if !queued.is_empty() {
        text.push_str(&format!(" Then {}, one after another.", and_list(&queued)));
    }
    text
}

/// Where the link's approver stands in the step, in a sentence.
fn yours_text(l: &Loaded) -> String {
    let task = &l.task;
    match task.state.as_str() {
        "approved" | "rejected" => format!(
            "You {} this step{}.",
            past(task),
            task.decided_at.map(|d| format!(" at {}", when(d))).unwrap_or_default()
        ),
        "asked" if l.step.state == "open" && l.approval.state == "pending" => {
            "You have not decided yet. To decide, use the Approve or Reject link in your email.".to_owned()
        }
        "waiting" if l.step.state == "open" && l.approval.state == "pending" => {
            "You will be asked when it is your turn: this step asks its approvers one after another.".to_owned()
        }
        // "the step was escalated ...", "this step was already approved ...": as a sentence
        _ => {
            let why = match task_facts(task, &l.step.state, &l.approval.state) {
                Ok(f) => Closed::of(f.state, f.step, f.approval).to_string(),
                Err(e) => e.to_string(),
            };
            let mut chars = why.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
            format!("{first}{}.", chars.as_str())
        }
    }
}

/// The view page's data: the request, its answers, the step and its rule, what is pending.
async fn view_data(tx: &mut TenantTx, l: &Loaded) -> serde_json::Value {
    let name = |u: Result<archer_store::users::User, StoreError>| u.map(|u| u.display_name).unwrap_or_default();
    let approver = name(users::get(tx, l.task.approver_id).await);
    let requester = name(users::get(tx, l.ticket.requester_id).await);
    let on_behalf_of = match l.task.on_behalf_of {
        Some(u) => Some(name(users::get(tx, u).await)),
        None => None,
    };
    let fields = archer_workers::approvals::form_answers(tx, &l.ticket).await;
    let about = step_text(tx, &l.step).await;
    let escalated = l.step.escalated_at.is_some();
    let mut deciders = Vec::new();
    let tasks = approvals::tasks(tx, l.step.id).await.unwrap_or_default();
    for task in tasks.iter().filter(|t| t.escalation == escalated) {
        deciders.push((task, name(users::get(tx, task.approver_id).await)));
    }
    let spec = serde_json::from_value::<StepSpec>(l.step.spec.clone()).ok();
    let chain = serde_json::from_value::<ChainSpec>(l.approval.chain.clone()).ok();
    // the step open now, when it is not this one (this one closed and the chain moved on)
    let open = approvals::steps(tx, l.approval.id).await.unwrap_or_default().into_iter().find(|s| s.state == "open");
    let total = chain.as_ref().map(|c| c.steps.len());
    let position = |ordinal: i32| match total {
        Some(total) => format!("step {} of {total}", ordinal + 1),
        None => format!("step {}", ordinal + 1),
    };
    let now = open.as_ref().filter(|s| s.id != l.step.id).map(|s| format!("{}: {}", position(s.ordinal), s.name));
    let later: Vec<String> = match (&chain, total) {
        (Some(c), Some(total)) if l.approval.state == "pending" => {
            let after = open.as_ref().map_or(l.step.ordinal, |s| s.ordinal.max(l.step.ordinal));
            let next = usize::try_from(after).map_or(total, |i| i + 1);
            c.steps
                .iter()
                .enumerate()
                .skip(next)
                .map(|(i, s)| format!("step {} of {total}: {}", i + 1, s.name))
                .collect()
        }
        _ => Vec::new(),
    };
    json!({
        "view": true,
        "ticket": {"number": l.number, "title": l.ticket.title},
        "requester": {"name": requester},
        "step": {"name": l.step.name, "summary": about.summary},
        "approver": {"name": approver},
        "on_behalf_of": on_behalf_of,
        "fields": fields,
        "status": pending_text(l, &deciders, spec.as_ref(), now.as_deref()),
        "yours": yours_text(l),
        "later": later,
    })
}

/// Records a refused link in the audit log (who tried what, and why it decided nothing).
/// Audits a refused use of an authentic link in its tenant. The actor is whoever was signed in
/// (if anyone), never the link's addressee, who is named separately: the person at the
/// keyboard may not be the one the link was sent to.
async fn audit_refusal(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    claims: Option<&LinkClaims>,
    r: &Refusal,
) {
    let Some(c) = claims else { return };
    let ctx =
        AuditContext { actor_id: signed_in_as(state, headers), request_id: Some(meta.request_id.clone()), ip: meta.ip };
    let Ok(mut tx) = TenantTx::begin(&state.pool, c.tenant, &ctx).await else { return };
    let event = audit::Event {
        tenant_id: c.tenant,
        action: "approval.link_refused",
        entity_type: "approval_tasks",
        entity_id: Some(c.task.to_string()),
        detail: Some(format!("{}: {:?} link {} addressed to {}", r.code(), c.decision, c.jti, c.approver)),
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
        record_invalid_link(&state, &meta, &headers, &token, "confirm").await;
        return refusal_page(&state, &Refusal::Invalid, None);
    };
    let mut tx = match link_tx(&state, &meta, claims.tenant, claims.approver).await {
        Ok(tx) => tx,
        Err(e) => return e.into_response(),
    };
    let now = tx.now();
    let signed_in = signed_in_as(&state, &headers);
    let target = match resolve(&mut tx, claims.clone()).await {
        Ok(t) => t,
        Err(r) => {
            drop(tx);
            audit_refusal(&state, &meta, &headers, Some(&claims), &r).await;
            return refusal_page(&state, &r, None);
        }
    };
    match check(&mut tx, &target, signed_in, now).await {
        Err(r) => {
            drop(tx);
            audit_refusal(&state, &meta, &headers, Some(&claims), &r).await;
            return refusal_page(&state, &r, Some(&target));
        }
        Ok((Verdict::AlreadyDecided, _)) => return done_page(&state, &target, &target.task, true),
        Ok((Verdict::Record, _)) => {}
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
        record_invalid_link(&state, &meta, &headers, &token, "decide").await;
        return refusal_page(&state, &Refusal::Invalid, None);
    };
    match decide_by_link(&state, &meta, &headers, &claims, &token, form.comment.as_deref()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err((r, target))) => {
            audit_refusal(&state, &meta, &headers, Some(&claims), &r).await;
            refusal_page(&state, &r, target.as_ref())
        }
        Err(e) => e.into_response(),
    }
}

/// The transaction a verified link's page works in: what it reads and records is audited as
/// the link's approver's.
async fn link_tx(state: &AppState, meta: &RequestMeta, tenant: Uuid, approver: Uuid) -> ApiResult<TenantTx> {
    let ctx = AuditContext { actor_id: Some(approver), request_id: Some(meta.request_id.clone()), ip: meta.ip };
    Ok(TenantTx::begin(&state.pool, tenant, &ctx).await?)
}

/// A link's refusal, with what the link points at when that is known.
type LinkRefused = (Refusal, Option<Target>);

/// Decides by a link whose signature holds, in one transaction with the link's use: the page
/// to answer with, or why the link decides nothing.
async fn decide_by_link(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    claims: &LinkClaims,
    token: &str,
    comment: Option<&str>,
) -> ApiResult<Result<Response, LinkRefused>> {
    let mut tx = link_tx(state, meta, claims.tenant, claims.approver).await?;
    let now = tx.now();
    let target = match resolve(&mut tx, claims.clone()).await {
        Ok(t) => t,
        Err(r) => return Ok(Err((r, None))),
    };
    tracing::Span::current().record("ticket", target.number.as_str());
    let (verdict, actor) = match check(&mut tx, &target, signed_in_as(state, headers), now).await {
        Ok(v) => v,
        Err(r) => return Ok(Err((r, Some(target)))),
    };
    let comment = comment.map(str::trim).filter(|c| !c.is_empty()).map(|c| c.chars().take(4000).collect::<String>());
    if let Some(error) = comment_error(claims.decision, verdict, comment.as_deref()) {
        let mut data = confirm_data(&mut tx, &target, token).await;
        data["error"] = json!(error);
        return Ok(Ok(page(state, StatusCode::UNPROCESSABLE_ENTITY, CONFIRM, data)));
    }
    if verdict == Verdict::AlreadyDecided {
        return Ok(Ok(done_page(state, &target, &target.task, true)));
    }
    let d = Deciding { approval: &target.approval, actor: &actor, decision: claims.decision, now: to_jiff(now) };
    let task = match record(&mut tx, &d, &target.task, comment.as_deref()).await? {
        Ok(Decided::Recorded(task)) => task,
        Ok(Decided::AlreadyDecided(task)) => return Ok(Ok(done_page(state, &target, &task, true))),
        Err(Refused { refusal: r, .. }) => return Ok(Err((refusal(r, claims, now), Some(target)))),
    };
    if !approvals::use_link(&mut tx, claims.tenant, claims.jti, task.id).await? {
        // the same token raced itself; the other request decided
        return Ok(Err((Refusal::Used { at: now }, Some(target))));
    }
    let resp = done_page(state, &target, &task, false);
    tx.commit().await?;
    Ok(Ok(resp))
}

/// Why the form's comment cannot go with the decision, if it cannot: a NUL character, or no
/// comment on a rejection still to be recorded (the requester sees why).
fn comment_error(decision: Decision, verdict: Verdict, comment: Option<&str>) -> Option<&'static str> {
    if comment.is_some_and(|c| c.contains('\0')) {
        return Some("The comment cannot contain a NUL character.");
    }
    if rules::needs_comment(decision) && comment.is_none() && verdict == Verdict::Record {
        return Some("A comment is required to reject: say why, the requester sees it.");
    }
    None
}

/// Opens an email's "View the request" link: the request, its answers in the form's order, the
/// step and its rule, and what is pending. Decides nothing (the page has no form, and its token
/// cannot decide). Works without logging in until the link expires.
#[utoipa::path(get, path = "/approvals/view", tag = "approvals", params(LinkQuery), responses(
    (status = 200, description = "the request as its approver is asked about it; decides nothing", content_type = "text/html"),
    (status = 400, description = "the link is invalid or was changed (a decision link is not a view link)", content_type = "text/html"),
    (status = 410, description = "the link expired", content_type = "text/html"),
))]
pub async fn view_page(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    let Ok(claims) = state.links.verify_view(&token) else {
        record_invalid_link(&state, &meta, &headers, &token, "view").await;
        return refusal_page(&state, &Refusal::Invalid, None);
    };
    let mut tx = match link_tx(&state, &meta, claims.tenant, claims.approver).await {
        Ok(tx) => tx,
        Err(e) => return e.into_response(),
    };
    let now = tx.now();
    if claims.exp < now.unix_timestamp() {
        let at = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(now);
        return refusal_page(&state, &Refusal::Expired { at }, None);
    }
    let loaded = match load(&mut tx, claims.task, claims.approver, claims.approval, claims.step).await {
        Ok(l) => l,
        Err(r) => return refusal_page(&state, &r, None),
    };
    let data = view_data(&mut tx, &loaded).await;
    // read only: nothing to commit
    drop(tx);
    page(&state, StatusCode::OK, CONFIRM, data)
}
