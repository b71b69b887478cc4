//! Reading approvals: one approval, its chain as its workflow holds it, and a ticket's
//! approvals.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::workflows::approval::{self as wf_approval, ChainState};
use archer_store::approvals;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::AppPath;
use crate::views::approval::{Approval, approval_view, may_see};
use crate::views::ticket::find;

/// An approval: each step, who was asked, who decided what and when, what is pending, and
/// the next reminder and timeout. For agents, the ticket's requester and its approvers.
#[utoipa::path(get, path = "/approvals/{id}", tag = "approvals", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Approval),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_approval(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Approval>> {
    let mut tx = caller.begin().await?;
    let a = approvals::get(&mut tx, id).await?;
    may_see(&mut tx, &caller.principal, &a).await?;
    let view = approval_view(&mut tx, a).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// The chain as its workflow holds it (a Temporal query): the current step, its tasks and
/// the decisions applied so far, the next reminder and the timeout.
#[derive(Serialize, ToSchema)]
pub struct LiveChain {
    pub workflow_id: String,
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

/// The approval's chain, queried from its running workflow.
#[utoipa::path(get, path = "/approvals/{id}/workflow", tag = "approvals", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = LiveChain),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn live_state(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<LiveChain>> {
    let mut tx = caller.begin().await?;
    let a = approvals::get(&mut tx, id).await?;
    may_see(&mut tx, &caller.principal, &a).await?;
    tx.commit().await?;
    let client = caller.state().temporal().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let handle = client.get_workflow_handle::<wf_approval::ApprovalChainWorkflow>(a.workflow_id.clone());
    let chain: ChainState = handle
        .query(wf_approval::ApprovalChainWorkflow::state, (), temporalio_client::WorkflowQueryOptions::default())
        .await
        .map_err(|e| ApiError::Unavailable(format!("the chain's workflow did not answer: {e}")))?;
    Ok(Json(LiveChain { workflow_id: a.workflow_id, state: serde_json::to_value(chain).map_err(ApiError::internal)? }))
}

/// A ticket's approvals, oldest first.
#[utoipa::path(get, path = "/tickets/{ticket}/approvals", tag = "approvals", params(("ticket" = String, Path, description = "id or number")), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Approval>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn ticket_approvals(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Vec<Approval>>> {
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, false).await?;
    let mut out = Vec::new();
    for a in approvals::of_ticket(&mut tx, ticket.id).await? {
        out.push(approval_view(&mut tx, a).await?);
    }
    tx.commit().await?;
    Ok(Json(out))
}
