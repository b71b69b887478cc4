//! Playbook runs: starting one by hand on a ticket, reading runs and their steps, and an
//! admin's retry or cancel. Writes answer from the database and record their workflow intent
//! in the same transaction (202): the API never waits on Temporal. Reading one run also asks
//! its workflow, briefly, what is happening right now (a wait in progress, the round).

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_client::{QueryRejectCondition, WorkflowQueryOptions};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::playbook::run::StepState;
use archer_orchestrator::playbook::{self, Trigger};
use archer_orchestrator::workflows::playbook::{PlaybookRunWorkflow, RunProgress};
use archer_store::playbooks::{self as store, PlaybookError, RunDetail, StartRun};

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppPath};
use crate::validate::Errors;
use crate::views::playbook as view;
use crate::views::ticket::find;

/// One step of a run, as the ticket's timeline shows it.
#[derive(Serialize, ToSchema)]
pub struct RunStep {
    /// The step's `id` in the document.
    id: String,
    action: String,
    /// `pending`, `running`, `succeeded`, `failed` or `skipped`.
    status: String,
    /// 0, then one more for each retry of the run.
    round: i32,
    attempts: i32,
    /// Why it was skipped.
    reason: Option<String>,
    /// A summary of its output (at most 8 KiB).
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<OffsetDateTime>,
}

/// A run of a playbook on a ticket, with its steps.
#[derive(Serialize, ToSchema)]
pub struct Run {
    id: Uuid,
    /// The playbook's name.
    playbook: String,
    playbook_id: Uuid,
    /// The version it runs (pinned when it started).
    version: i32,
    ticket_id: Uuid,
    /// The nth run of this playbook on this ticket.
    run_number: i32,
    /// `<tenant>/<number>/playbook/<name>/<n>`.
    workflow_id: String,
    /// What started it: `catalog_fulfilment`, `ticket_created`, `ticket_changed`,
    /// `sla_warning`, `sla_breach` or `manual`.
    trigger: String,
    #[schema(value_type = Object)]
    inputs: Value,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    status: String,
    error: Option<String>,
    started_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<OffsetDateTime>,
    /// The run's round (0, then one more per retry), as its workflow holds it; absent when the
    /// answer comes from the database alone.
    round: Option<u32>,
    /// Where the run's and its steps' states come from. `workflow`: the run's workflow answered
    /// (`GET /playbook-runs/{id}` asks it while it runs), so a step executing right now, a
    /// `wait` in progress or a task being waited on shows `running`, with its round; outputs,
    /// attempts and times are the database's. `database`: as last recorded (the run has
    /// finished, has not started yet, Temporal did not answer in time, or a list or an admin's
    /// retry or cancel, which never ask the workflow).
    source: Source,
    steps: Vec<RunStep>,
}

/// Where a run's view comes from: `workflow` (it answered, live) or `database` (as recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Workflow,
    Database,
}

/// How long reading a run waits for its workflow's answer (connecting included) before it
/// answers from the database: a person is waiting, and the database is never wrong, only late.
const LIVE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The run's progress as its workflow holds it; `None` (and a log line) when Temporal cannot be
/// reached, the workflow is unknown (not started yet), has closed (its last state is recorded;
/// a closed workflow is not replayed just to answer), or does not answer within
/// [`LIVE_QUERY_TIMEOUT`].
async fn live_progress(state: &AppState, workflow_id: &str) -> Option<RunProgress> {
    let ask = async {
        let client = state
            .temporal()
            .await
            .map_err(|e| tracing::warn!(error = %e, "no Temporal for a live playbook run"))
            .ok()?;
        let handle = client.get_workflow_handle::<PlaybookRunWorkflow>(workflow_id.to_owned());
        let opts = WorkflowQueryOptions::builder().reject_condition(QueryRejectCondition::NotOpen).build();
        handle
            .query(PlaybookRunWorkflow::progress, (), opts)
            .await
            .map_err(|e| tracing::info!(error = %e, workflow_id, "run query refused; answering from the database"))
            .ok()
    };
    tokio::time::timeout(LIVE_QUERY_TIMEOUT, ask).await.unwrap_or_else(|_| {
        tracing::warn!(workflow_id, "the run's workflow did not answer in time; answering from the database");
        None
    })
}

impl Run {
    /// Overlays what the workflow says now on the recorded run: the run's status and round,
    /// and each step's state (details the step no longer has are cleared; outputs are stored
    /// summaries, as the database keeps them).
    fn merge(&mut self, live: RunProgress) {
        self.source = Source::Workflow;
        self.status = live.status;
        let Some(state) = live.state else { return };
        self.round = Some(state.round);
        for step in &mut self.steps {
            if let Some(now) = state.steps.get(&step.id) {
                step.merge(now);
            }
        }
    }
}

impl RunStep {
    fn merge(&mut self, now: &StepState) {
        if let StepState::Running { round } = now {
            self.round = i32::try_from(*round).unwrap_or(i32::MAX);
        }
        if self.status == now.name() {
            return;
        }
        self.status = now.name().to_owned();
        self.finished_at = None;
        (self.reason, self.error, self.output) = match now {
            StepState::Pending | StepState::Running { .. } => (None, None, None),
            StepState::Succeeded { output } => (None, None, Some(store::output_summary(output))),
            StepState::Failed { error } => (None, Some(error.clone()), None),
            StepState::Skipped { reason, .. } => (Some(reason.clone()), None, None),
        };
    }
}

impl From<RunDetail> for Run {
    fn from(d: RunDetail) -> Self {
        let r = d.run;
        Run {
            id: r.id,
            playbook: r.playbook,
            playbook_id: r.playbook_id,
            version: r.version,
            ticket_id: r.ticket_id,
            run_number: r.run_number,
            workflow_id: r.workflow_id,
            trigger: r.trigger,
            inputs: r.inputs,
            status: r.status,
            error: r.error,
            started_by: r.started_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            round: None,
            source: Source::Database,
            steps: d
                .steps
                .into_iter()
                .map(|s| RunStep {
                    id: s.step_id,
                    action: s.action,
                    status: s.status,
                    round: s.round,
                    attempts: s.attempts,
                    reason: s.reason,
                    output: s.output,
                    error: s.error,
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                })
                .collect(),
        }
    }
}

fn lifecycle(e: PlaybookError) -> ApiError {
    match e {
        PlaybookError::State(detail) => ApiError::Conflict(detail),
        PlaybookError::Store(s) => s.into(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The playbook's name; its published version runs, and it needs a `manual` trigger.
    #[schema(pattern = r"\S", max_length = 100)]
    playbook: String,
    /// Checked against the playbook's `inputs` schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    inputs: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// What a started run answers: where to follow it.
#[derive(Serialize, ToSchema)]
pub struct StartedRun {
    /// The run (`GET /playbook-runs/{id}`).
    id: Uuid,
    workflow_id: String,
    run_number: i32,
    /// `pending` until its workflow starts.
    status: String,
}

/// Start a playbook on a ticket by hand: its published version must have a `manual` trigger
/// and the inputs must pass its `inputs` schema (every failure by pointer). The run starts
/// once the relay delivers it (202). Needs `ticket:update`.
#[utoipa::path(post, path = "/tickets/{ticket}/playbook-runs", tag = "playbooks", params(("ticket" = String, Path)), request_body = NewRun, security(("bearer" = [])), responses(
    (status = 202, body = StartedRun),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the ticket is closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no published playbook of that name, no manual trigger, or inputs its schema refuses"),
))]
pub async fn start_run(
    caller: Caller,
    AppPath(reference): AppPath<String>,
    AppJson(body, _): AppJson<NewRun>,
) -> ApiResult<(StatusCode, Json<StartedRun>)> {
    caller.require(Permission::TicketUpdate).await?;
    let mut e = Errors::new();
    let name = e.text("/playbook", &body.playbook, 1, 100);
    e.into_result()?;
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, false).await?;
    if ticket.status.is_terminal() {
        return Err(ApiError::Conflict("the ticket is closed; reopen it to run a playbook on it".into()));
    }
    let unknown = || ApiError::field("/playbook", "unknown", "no playbook of this name has a published version");
    let version = store::published(&mut tx, &name).await?.ok_or_else(unknown)?;
    let pb = playbook::parse(&version.source).map_err(|e| ApiError::Internal(Box::new(e)))?;
    if !pb.triggers.iter().any(|t| t.value == Trigger::Manual) {
        return Err(ApiError::field("/playbook", "trigger", "this playbook has no `manual` trigger"));
    }
    let errors = view::input_errors(pb.inputs.as_ref(), &body.inputs);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let start = StartRun {
        version: &version,
        tenant: &caller.tenant,
        ticket: &ticket,
        trigger: "manual",
        event: None,
        inputs: body.inputs,
        request: None,
        started_by: Some(caller.user_id()),
    };
    let run = store::start_run(&mut tx, start).await?;
    tx.commit().await?;
    let started =
        StartedRun { id: run.id, workflow_id: run.workflow_id, run_number: run.run_number, status: run.status };
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// The playbook runs on a ticket, oldest first, with their steps. Needs `ticket:update`.
#[utoipa::path(get, path = "/tickets/{ticket}/playbook-runs", tag = "playbooks", params(("ticket" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Run>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_ticket_runs(caller: Caller, AppPath(reference): AppPath<String>) -> ApiResult<Json<Vec<Run>>> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let ticket = find(&mut tx, &caller.principal, &reference, false).await?;
    let runs = store::runs_of_ticket(&mut tx, ticket.id).await?;
    tx.commit().await?;
    Ok(Json(runs.into_iter().map(Run::from).collect()))
}

/// A run and its steps: as recorded, with what its workflow says now while it runs (`source`
/// tells which). Temporal being slow or away never fails the request: the database answers.
/// Needs `ticket:update`.
#[utoipa::path(get, path = "/playbook-runs/{id}", tag = "playbooks", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Run),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_run(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<Run>> {
    caller.require(Permission::TicketUpdate).await?;
    let mut tx = caller.begin().await?;
    let mut run = Run::from(store::run(&mut tx, id).await?);
    // committed before asking Temporal: no transaction is held while the workflow answers
    tx.commit().await?;
    if let Some(live) = live_progress(caller.state(), &run.workflow_id).await {
        run.merge(live);
    }
    Ok(Json(run))
}

/// Run a failed run's failed steps (and those skipped because of them) again, with the same
/// idempotency keys. Needs `playbook:admin`.
#[utoipa::path(post, path = "/playbook-runs/{id}/retry", tag = "playbooks", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 202, body = Run, description = "the retry is on its way to the run"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the run has not failed"),
))]
pub async fn retry_run(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<(StatusCode, Json<Run>)> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    store::request_retry(&mut tx, id, Some(caller.user_id())).await.map_err(lifecycle)?;
    let run = store::run(&mut tx, id).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (recorded with the run).
    #[schema(pattern = r"\S", max_length = 500)]
    reason: String,
}

/// Stop a run that has not finished (pending, running, or failed and waiting for a retry).
/// Needs `playbook:admin`.
#[utoipa::path(post, path = "/playbook-runs/{id}/cancel", tag = "playbooks", params(("id" = Uuid, Path)), request_body = CancelBody, security(("bearer" = [])), responses(
    (status = 202, body = Run, description = "the cancellation is on its way to the run"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the run has finished"),
))]
pub async fn cancel_run(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<CancelBody>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut e = Errors::new();
    let reason = e.text("/reason", &body.reason, 1, 500);
    e.into_result()?;
    let mut tx = caller.begin().await?;
    store::request_cancel(&mut tx, id, Some(caller.user_id()), &reason).await.map_err(lifecycle)?;
    let run = store::run(&mut tx, id).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use archer_store::playbooks::{RunRow, StepRow};
    use serde_json::json;

    use super::*;

    fn step(id: &str, action: &str, status: &str) -> StepRow {
        StepRow {
            run_id: Uuid::nil(),
            step_id: id.into(),
            action: action.into(),
            status: status.into(),
            round: 0,
            attempts: 0,
            reason: None,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn recorded() -> Run {
        let mut note = step("note", "ticket.comment", "succeeded");
        note.attempts = 1;
        note.output = Some(json!({"comment_id": "c-1"}));
        let run = RunRow {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            playbook_id: Uuid::nil(),
            playbook: "views".into(),
            version_id: Uuid::nil(),
            version: 1,
            ticket_id: Uuid::nil(),
            run_number: 1,
            workflow_id: "acme/INC-000001/playbook/views/1".into(),
            trigger: "manual".into(),
            inputs: json!({}),
            status: "pending".into(),
            error: None,
            started_by: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            finished_at: None,
        };
        let steps = vec![note, step("hold", "wait", "failed"), step("after", "email.send", "pending")];
        Run::from(RunDetail { run, steps })
    }

    #[test]
    fn the_workflow_says_what_runs_now_and_the_database_keeps_the_details() {
        let mut run = recorded();
        assert_eq!(run.source, Source::Database);
        let state = json!({
            "steps": {
                "note": {"status": "succeeded", "output": {"comment_id": "c-1"}},
                "hold": {"status": "running", "round": 1},
                "after": {"status": "skipped", "reason": "dependency `hold` failed", "by_condition": false}
            },
            "round": 1, "failure": null, "cancelled": null, "queued": []
        });
        let live = RunProgress { status: "running".into(), state: serde_json::from_value(state).unwrap(), error: None };
        run.merge(live);
        assert_eq!((run.source, run.status.as_str(), run.round), (Source::Workflow, "running", Some(1)));
        let [note, hold, after] = &run.steps[..] else { panic!("three steps") };
        assert_eq!((note.status.as_str(), note.attempts), ("succeeded", 1));
        assert_eq!(note.output, Some(json!({"comment_id": "c-1"})));
        assert_eq!((hold.status.as_str(), hold.round, hold.error.as_deref()), ("running", 1, None));
        assert_eq!((after.status.as_str(), after.reason.as_deref()), ("skipped", Some("dependency `hold` failed")));
        let shown = serde_json::to_value(&run).unwrap();
        assert_eq!(shown["source"], "workflow");
    }
}
