//! `POST /approvals/{id}/approve` and `/reject`: deciding in the app. The domain's rules say
//! whether a decision is recorded (`crate::approvals::decide`); this answers in HTTP.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::approval::Decision;
use archer_orchestrator::commands::approval::{Actor, Refusal, Via, needs_comment};
use archer_store::approvals::{self, ApprovalRow, TaskRow};
use archer_store::changes::to_jiff;
use archer_store::{TenantTx, users};

use crate::approvals::{Decided, Deciding, Refused, decide};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppPath, OptionalJson};
use crate::validate::Errors;
use crate::views::approval::{Approval, approval_view, may_see, rfc3339};

/// The outcome of a decision request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionResult {
    /// Recorded now; the chain applies it moments later.
    Recorded,
    /// You had already decided the same way (a second click): nothing changed.
    AlreadyDecided,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionResponse {
    pub result: DecisionResult,
    pub decision: Decision,
    pub approval: Approval,
}

/// An approval, with a comment if you like; the body may be left out (empty means `{}`).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[schema(max_length = 4000)]
    comment: Option<String>,
}

/// A rejection: why (the requester sees it).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    #[schema(value_type = String, required = true, pattern = r"\S", max_length = 4000)]
    comment: Option<String>,
}

/// Approve, as an approver the approval's open step asked (being asked is the permission).
///
/// Approving twice while the step is open answers `already_decided`; having decided otherwise,
/// or in a step the chain has moved past, is a 409 saying what you decided and when; a step
/// that closed meanwhile is a 409 saying how it ended. The requester cannot approve their own
/// request.
#[utoipa::path(post, path = "/approvals/{id}/approve", tag = "approvals", params(("id" = Uuid, Path)),
    request_body(content = Option<DecisionBody>, description = "optional: an empty body is `{}`"), security(("bearer" = [])), responses(
    (status = 200, body = DecisionResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "decided otherwise already, or the step closed"),
))]
pub async fn approve(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> ApiResult<Json<DecisionResponse>> {
    decide_in_app(&caller, id, Decision::Approve, body.comment).await
}

/// Reject, with a comment (required: the requester sees it), as an approver the open step
/// asked. Refusals as for approving.
#[utoipa::path(post, path = "/approvals/{id}/reject", tag = "approvals", params(("id" = Uuid, Path)),
    request_body = RejectBody, security(("bearer" = [])), responses(
    (status = 200, body = DecisionResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no comment"),
))]
pub async fn reject(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<RejectBody>,
) -> ApiResult<Json<DecisionResponse>> {
    decide_in_app(&caller, id, Decision::Reject, body.comment).await
}

/// The comment as recorded (trimmed; none if blank), or the field errors: at most 4000
/// characters as sent (as the document's maxLength counts), and one to say why a rejection.
fn comment_of(decision: Decision, comment: Option<String>) -> ApiResult<Option<String>> {
    let mut errors = Errors::new();
    if comment.as_ref().is_some_and(|c| c.chars().count() > 4000) {
        errors.add("/comment", "length", "at most 4000 characters");
    }
    let comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if needs_comment(decision) && comment.is_none() {
        errors.add("/comment", "required", "say why you reject: the requester sees it");
    }
    errors.into_result()?;
    Ok(comment)
}

async fn decide_in_app(
    caller: &Caller,
    id: Uuid,
    decision: Decision,
    comment: Option<String>,
) -> ApiResult<Json<DecisionResponse>> {
    let comment = comment_of(decision, comment)?;
    let mut tx = caller.begin().await?;
    let active = users::get(&mut tx, caller.user_id()).await.is_ok_and(|u| u.active);
    let actor = Actor { user: caller.user_id(), active, via: Via::App };
    // before the approval is looked up: a deactivated account learns nothing about it
    actor.may_act().map_err(|r| ApiError::Forbidden(r.to_string()))?;
    let approval = approvals::get(&mut tx, id).await?;
    let ticket = archer_store::tickets::get(&mut tx, approval.ticket_id).await?;
    let task = approvals::task_of(&mut tx, id, caller.user_id()).await?;
    let now = to_jiff(tx.now());
    let d = Deciding { approval: &approval, actor: &actor, decision, now };
    let result = match decide(&mut tx, &d, ticket.requester_id, task, comment.as_deref()).await? {
        Ok(Decided::Recorded(_)) => DecisionResult::Recorded,
        Ok(Decided::AlreadyDecided(_)) => DecisionResult::AlreadyDecided,
        Err(refused) => return Err(refusal(&mut tx, caller, &approval, refused).await),
    };
    let approval = approvals::get(&mut tx, id).await?;
    let view = approval_view(&mut tx, approval).await?;
    tx.commit().await?;
    Ok(Json(DecisionResponse { result, decision, approval: view }))
}

/// A refused decision in the app's words: 403 for who may not decide, 409 (saying what was
/// decided when, or how the step ended) for a task that decides nothing now.
async fn refusal(tx: &mut TenantTx, caller: &Caller, approval: &ApprovalRow, refused: Refused) -> ApiError {
    let Refused { refusal, task } = refused;
    match (refusal, task) {
        // not an approver of it: it does not exist for them, unless they may see it anyway
        (r @ Refusal::NotAsked, _) => match may_see(tx, &caller.principal, approval).await {
            Ok(()) => ApiError::Forbidden(r.to_string()),
            Err(e) => e,
        },
        (r @ (Refusal::Deactivated | Refusal::OwnRequest), _) => ApiError::Forbidden(r.to_string()),
        (Refusal::Closed(why), _) => ApiError::Conflict(why.to_string()),
        (Refusal::Decided { .. }, Some(t)) => decided_already(tx, &t).await,
        (r, _) => ApiError::internal(r),
    }
}

/// "You already approved this at ... (step "..."); a decision cannot be changed."
async fn decided_already(tx: &mut TenantTx, t: &TaskRow) -> ApiError {
    match approvals::step(tx, t.step_id).await {
        Ok(step) => ApiError::Conflict(format!(
            "you already {} this{} (step \"{}\"); a decision cannot be changed",
            t.state,
            t.decided_at.map(|d| format!(" at {}", rfc3339(d))).unwrap_or_default(),
            step.name
        )),
        Err(e) => e.into(),
    }
}
