//! The playbook run workflow: executes one pinned version of an admin's YAML playbook on a
//! ticket, step by step, as activities named by their actions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::workflows::playbook_activities::RunRef;

pub const WORKFLOW_TYPE: &str = "playbook";

/// `<tenant>/<number>/playbook/<name>/<n>`: the ticket's workflow id, the playbook and the run's
/// number among that playbook's runs on the ticket.
pub fn workflow_id(ticket_workflow_id: &str, playbook: &str, n: i32) -> String {
    format!("{ticket_workflow_id}/playbook/{playbook}/{n}")
}

/// What a run is started with. The version's source travels with it, so a run keeps the
/// version it started with whatever is published later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    pub run: RunRef,
    /// The pinned version's YAML.
    pub source: String,
    /// What templates and conditions read: `ticket`, `request`, `inputs`, `run` (see
    /// `archer_domain::playbook::run::Scope`).
    pub scope: serde_json::Value,
    /// What started the run (`catalog_fulfilment`, `ticket_created`, `manual`, ...).
    pub trigger: String,
}

/// A watched ticket changed (the run's own ticket, or a task it opened): its new snapshot in
/// the scope's `ticket` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketChanged {
    pub ticket_id: Uuid,
    pub ticket: serde_json::Value,
}

/// An admin asked to run the failed steps again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRun {
    pub by: Option<Uuid>,
}

/// An admin cancelled the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRun {
    pub by: Option<Uuid>,
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// The workflow

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Value, json};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use crate::approval::Outcome as ApprovalOutcome;
use crate::playbook::expr::{Condition, STEP_NAMES};
use crate::playbook::run::{Move, Outcome, RunState, Scope, Start, StepState};
use crate::playbook::template::Mode;
use crate::playbook::{self, Playbook};
use crate::workflows::approval::{ApprovalChainWorkflow, ChainInput, chain_workflow_id, effects};
use crate::workflows::playbook_activities::{PlaybookActivities, RecordRun, StepCall, StepRecord, WithdrawApproval};
use crate::workflows::signals;

/// How long a failed run waits for an admin's retry or cancel before it ends as failed.
pub const FAILED_RUN_PATIENCE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a task or a `wait … until` waits when the step sets no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);
/// One attempt of an action's activity (an HTTP call, a database write): short, so a worker that
/// died mid-step holds the step up for seconds, not minutes (the retry runs elsewhere).
const ATTEMPT: Duration = Duration::from_secs(10);

/// The run's progress, as the `state` query answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunProgress {
    pub status: String,
    pub state: Option<RunState>,
    /// Why the pinned source could not be read (never for a published version).
    pub error: Option<String>,
}

#[workflow]
pub struct PlaybookRunWorkflow {
    input: RunInput,
    playbook: Option<Playbook>,
    parse_error: Option<String>,
    state: Option<RunState>,
    scope: Scope,
    /// The latest snapshot of every watched ticket (the run's own and its tasks).
    tickets: BTreeMap<Uuid, Value>,
    status: String,
    retry: bool,
    cancel: Option<String>,
    /// Bumped by every signal: a waiting run re-checks what it waits for.
    signals: u64,
}

#[workflow_methods]
impl PlaybookRunWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: RunInput) -> Self {
        let (playbook, parse_error) = match playbook::parse(&input.source) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let state = playbook.as_ref().map(RunState::new);
        let scope: Scope = serde_json::from_value(input.scope.clone()).unwrap_or_default();
        let mut tickets = BTreeMap::new();
        tickets.insert(input.run.ticket.ticket_id, scope.ticket.clone());
        Self {
            input,
            playbook,
            parse_error,
            state,
            scope,
            tickets,
            status: "running".into(),
            retry: false,
            cancel: None,
            signals: 0,
        }
    }

    #[run(name = "playbook")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let run = ctx.state(|s| s.input.run.clone());
        let Some(playbook) = ctx.state(|s| s.playbook.clone()) else {
            let error = ctx.state(|s| s.parse_error.clone()).unwrap_or_default();
            record(ctx, &run, Vec::new(), "failed", Some(error.clone())).await?;
            return Ok(Outcome::Failed { step: String::new(), error });
        };
        record(ctx, &run, Vec::new(), "running", None).await?;
        let mut in_flight: Vec<StepFuture> = Vec::new();
        loop {
            let moves = ctx.state_mut(|s| {
                let scope = s.scope.clone();
                let wf = s.input.run.workflow_id.clone();
                s.state.as_mut().map(|st| st.next(&playbook, &scope, &wf, Mode::Run)).unwrap_or_default()
            });
            let mut records = Vec::new();
            for m in moves {
                match m {
                    Move::Start(start) => in_flight.push(step_future(ctx.clone(), run.clone(), start)),
                    Move::Skip { step, action, reason } => {
                        records.push(step_record(step, action, "skipped", Some(reason), None))
                    }
                    Move::Fail { step, action, error } => {
                        records.push(step_record(step, action, "failed", Some(error), None))
                    }
                }
            }
            if !records.is_empty() {
                record(ctx, &run, records, "running", None).await?;
            }
            if in_flight.is_empty() {
                let (outcome, done) = ctx.state(|s| {
                    let st = s.state.as_ref();
                    (st.and_then(RunState::outcome), st.is_some_and(|st| st.done(&playbook)))
                });
                match outcome {
                    Some(Outcome::Failed { step, error }) => {
                        record(ctx, &run, Vec::new(), "failed", Some(format!("{step}: {error}"))).await?;
                        ctx.state_mut(|s| s.status = "failed".into());
                        if !wait_for_retry(ctx, &playbook).await? {
                            let reason = ctx.state(|s| s.cancel.clone());
                            return finish(
                                ctx,
                                &run,
                                reason.map_or(Outcome::Failed { step, error }, |reason| Outcome::Cancelled { reason }),
                            )
                            .await;
                        }
                        record(ctx, &run, Vec::new(), "running", None).await?;
                        continue;
                    }
                    Some(other) => return finish(ctx, &run, other).await,
                    None if done => return finish(ctx, &run, Outcome::Succeeded).await,
                    None => {}
                }
            }
            if let Some((step, result)) = step_ended_or_signal(ctx, &mut in_flight).await? {
                let action = playbook
                    .steps
                    .iter()
                    .find(|x| x.value.id.value == step)
                    .map(|x| x.value.action.value.clone())
                    .unwrap_or_default();
                let rec = ctx.state_mut(|s| {
                    let st = s.state.as_mut()?;
                    st.finish(&playbook, &step, result.clone());
                    Some(match st.steps.get(&step) {
                        Some(StepState::Succeeded { output }) => {
                            step_record(step.clone(), action.clone(), "succeeded", None, Some(output.clone()))
                        }
                        _ => step_record(step.clone(), action.clone(), "failed", result.err(), None),
                    })
                });
                if let Some(rec) = rec {
                    record(ctx, &run, vec![rec], "running", None).await?;
                }
            }
            // A cancelled run starts nothing more; steps already running end as they end.
            ctx.state_mut(|s| {
                let reason = s.cancel.clone()?;
                s.state.as_mut()?.cancel(&reason);
                Some(())
            });
        }
    }

    #[signal(name = signals::names::PLAYBOOK_TICKET_CHANGED)]
    pub fn ticket_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, changed: TicketChanged) {
        if changed.ticket_id == self.input.run.ticket.ticket_id {
            self.scope.ticket = changed.ticket.clone();
        }
        self.tickets.insert(changed.ticket_id, changed.ticket);
        self.signals += 1;
    }

    #[signal(name = signals::names::PLAYBOOK_RETRY)]
    pub fn retry(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _r: RetryRun) {
        self.retry = true;
        self.signals += 1;
    }

    #[signal(name = signals::names::PLAYBOOK_CANCEL)]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: CancelRun) {
        self.cancel.get_or_insert(c.reason);
        self.signals += 1;
    }

    #[query(name = "state")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> RunProgress {
        RunProgress { status: self.status.clone(), state: self.state.clone(), error: self.parse_error.clone() }
    }
}

type StepFuture = Pin<Box<dyn Future<Output = (String, Result<Value, String>)>>>;

/// Waits for a step in flight to end (`Some`: it is taken out of `in_flight`) or for a signal
/// (`None`: a cancel, a retry, a ticket change a step waits on).
async fn step_ended_or_signal(
    ctx: &WorkflowContext<PlaybookRunWorkflow>,
    in_flight: &mut Vec<StepFuture>,
) -> WorkflowResult<Option<(String, Result<Value, String>)>> {
    let seen = ctx.state(|s| s.signals);
    if in_flight.is_empty() {
        ctx.wait_condition(|s| s.signals != seen).await?;
        return Ok(None);
    }
    let ended = {
        let any = futures::future::select_all(in_flight.iter_mut()).fuse();
        let signalled = ctx.wait_condition(|s| s.signals != seen).fuse();
        futures::pin_mut!(any, signalled);
        temporalio_sdk::workflows::select! {
            (result, index, _) = any => Some((index, result)),
            _ = signalled => None,
        }
    };
    Ok(ended.map(|(index, result)| {
        drop(in_flight.remove(index));
        result
    }))
}

fn step_future(ctx: WorkflowContext<PlaybookRunWorkflow>, run: RunRef, start: Start) -> StepFuture {
    Box::pin(async move {
        let step = start.step.clone();
        let result = execute(&ctx, &run, start).await;
        (step, result)
    })
}

fn step_record(
    step: String,
    action: String,
    status: &str,
    reason: Option<String>,
    output: Option<Value>,
) -> StepRecord {
    StepRecord { step, action, status: status.into(), reason, output }
}

/// Records the run's progress (idempotent: the activity upserts).
async fn record(
    ctx: &WorkflowContext<PlaybookRunWorkflow>,
    run: &RunRef,
    steps: Vec<StepRecord>,
    status: &str,
    error: Option<String>,
) -> WorkflowResult<()> {
    let input = RecordRun { run: run.clone(), steps, status: status.into(), error };
    ctx.execute_activity(PlaybookActivities::record, input, effects()).await?;
    Ok(())
}

async fn finish(ctx: &WorkflowContext<PlaybookRunWorkflow>, run: &RunRef, outcome: Outcome) -> WorkflowResult<Outcome> {
    let (status, error) = match &outcome {
        Outcome::Succeeded => ("succeeded", None),
        Outcome::Failed { step, error } => ("failed", Some(format!("{step}: {error}"))),
        Outcome::Cancelled { reason } => ("cancelled", Some(reason.clone())),
    };
    record(ctx, run, Vec::new(), status, error).await?;
    ctx.state_mut(|s| s.status = status.into());
    Ok(outcome)
}

/// A failed run waits for an admin: `true` to go again (retry), `false` to end (cancel, or
/// nobody came within [`FAILED_RUN_PATIENCE`]).
async fn wait_for_retry(ctx: &WorkflowContext<PlaybookRunWorkflow>, playbook: &Playbook) -> WorkflowResult<bool> {
    let timer = ctx.timer(FAILED_RUN_PATIENCE);
    futures::pin_mut!(timer);
    let woke = {
        let due = timer.as_mut().fuse();
        let asked = ctx.wait_condition(|s| s.retry || s.cancel.is_some()).fuse();
        futures::pin_mut!(due, asked);
        temporalio_sdk::workflows::select! {
            _ = due => false,
            r = asked => { r?; true }
        }
    };
    if !woke {
        return Ok(false);
    }
    timer.cancel();
    Ok(ctx.state_mut(|s| {
        s.retry = false;
        if s.cancel.is_some() {
            return false;
        }
        s.status = "running".into();
        s.state.as_mut().is_some_and(|st| st.retry(playbook))
    }))
}

/// The step's activity options: named by its step (the Web UI shows them), retried as the
/// step's `retry` says, bounded by its `timeout`.
fn step_options(start: &Start) -> ActivityOptions {
    let r = &start.retry;
    let retry = RetryPolicy::builder()
        .initial_interval(r.initial_interval)
        .maximum_interval(r.max_interval)
        .backoff_coefficient(r.backoff_coefficient)
        .maximum_attempts(r.attempts)
        .non_retryable_error_types(r.non_retryable.clone())
        .build();
    let id = if start.round == 0 { start.step.clone() } else { format!("{}#{}", start.step, start.round) };
    let mut options = ActivityOptions::with_start_to_close_timeout(start.timeout.map_or(ATTEMPT, |t| t.min(ATTEMPT)))
        .retry_policy(retry)
        .activity_id(id)
        .summary(format!("{} ({})", start.step, start.action))
        .build();
    options.close_timeouts = match start.timeout {
        Some(total) => temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: total,
            start_to_close: total.min(ATTEMPT),
        },
        None => options.close_timeouts,
    };
    options
}

fn call(run: &RunRef, start: &Start) -> StepCall {
    StepCall {
        run: run.clone(),
        step: start.step.clone(),
        action: start.action.clone(),
        round: start.round,
        input: start.input.clone(),
        idempotency_key: start.idempotency_key.clone(),
    }
}

/// Runs one step to its end: an activity, or a wait the workflow keeps itself.
async fn execute(ctx: &WorkflowContext<PlaybookRunWorkflow>, run: &RunRef, start: Start) -> Result<Value, String> {
    let opts = step_options(&start);
    let c = call(run, &start);
    let failed = |e: temporalio_sdk::ActivityExecutionError| e.to_string();
    match start.action.as_str() {
        "ticket.comment" => ctx.execute_activity(PlaybookActivities::ticket_comment, c, opts).await.map_err(failed),
        "ticket.update" => ctx.execute_activity(PlaybookActivities::ticket_update, c, opts).await.map_err(failed),
        "email.send" => ctx.execute_activity(PlaybookActivities::email_send, c, opts).await.map_err(failed),
        "http.request" => ctx.execute_activity(PlaybookActivities::http_request, c, opts).await.map_err(failed),
        "webhook.post" => ctx.execute_activity(PlaybookActivities::webhook_post, c, opts).await.map_err(failed),
        "ticket.create_task" => {
            let task = ctx.execute_activity(PlaybookActivities::ticket_create_task, c, opts).await.map_err(failed)?;
            let closed = |s: &PlaybookRunWorkflow| {
                s.tickets.get(&task.ticket_id).and_then(|t| t.get("status")).and_then(Value::as_str).map(str::to_owned)
            };
            let terminal = |status: Option<String>| matches!(status.as_deref(), Some("closed" | "cancelled"));
            let waited = wait_until(ctx, start.timeout.unwrap_or(DEFAULT_WAIT), |s| terminal(closed(s))).await;
            match waited {
                Waited::Held => Ok(json!({"number": task.number, "status": ctx.state(closed)})),
                Waited::TimedOut => Err(format!("the task {} was not closed in time", task.number)),
                Waited::Cancelled(e) => Err(e),
            }
        }
        "approval.request" => {
            let opened =
                ctx.execute_activity(PlaybookActivities::approval_request, c.clone(), opts).await.map_err(failed)?;
            let ticket_wf = crate::workflows::ticket::workflow_id(&run.ticket.tenant, &run.ticket.number);
            let input = ChainInput {
                ticket: run.ticket.clone(),
                approval_id: opened.approval_id,
                chain: opened.chain,
                auto_approve: None,
            };
            let options =
                ChildWorkflowOptions::builder().workflow_id(chain_workflow_id(&ticket_wf, opened.seq)).build();
            let started = ctx
                .start_child_workflow(ApprovalChainWorkflow::run, input, options)
                .await
                .map_err(|e| e.to_string())?;
            let result = started.result();
            futures::pin_mut!(result);
            let ended = {
                let stop = approval_stop(ctx, start.timeout).fuse();
                let decided = result.as_mut().fuse();
                futures::pin_mut!(stop, decided);
                temporalio_sdk::workflows::select! {
                    r = decided => Some(r),
                    withdraw = stop => {
                        // the chain ends when told: cancelled, or with a decision that came first
                        let w = WithdrawApproval { call: c, approval_id: opened.approval_id, reason: withdraw };
                        ctx.execute_activity(PlaybookActivities::approval_withdraw, w, effects()).await.map_err(failed)?;
                        None
                    }
                }
            };
            let outcome = match ended {
                Some(r) => r,
                None => result.await,
            };
            match outcome.map_err(|e| e.to_string())? {
                ApprovalOutcome::Approved { reason } => Ok(json!({"outcome": "approved", "reason": reason})),
                ApprovalOutcome::Rejected { reason } => Ok(json!({"outcome": "rejected", "reason": reason})),
                ApprovalOutcome::Cancelled { reason } => Err(format!("the approval was cancelled: {reason}")),
            }
        }
        "wait" => wait_step(ctx, &start).await,
        other => Err(format!("unknown action `{other}`")),
    }
}

/// Why an `approval.request` step stops waiting for its chain: the run was cancelled, or the
/// step's `timeout` (when it has one) passed. Never resolves otherwise.
async fn approval_stop(ctx: &WorkflowContext<PlaybookRunWorkflow>, timeout: Option<Duration>) -> String {
    let cancelled = |s: &PlaybookRunWorkflow| s.cancel.clone().map(|r| format!("the run was cancelled: {r}"));
    match timeout {
        None => {
            if ctx.wait_condition(|s| s.cancel.is_some()).await.is_err() {
                return "the run's workflow was cancelled".into();
            }
            ctx.state(cancelled).unwrap_or_default()
        }
        Some(t) => match wait_until(ctx, t, |_| false).await {
            Waited::TimedOut => format!("the step's timeout ({}) passed", humantime::format_duration(t)),
            Waited::Held | Waited::Cancelled(_) => ctx.state(cancelled).unwrap_or_default(),
        },
    }
}

enum Waited {
    Held,
    TimedOut,
    Cancelled(String),
}

/// Waits until `holds` is true of the workflow's state (re-checked at every signal), the run
/// is cancelled, or `timeout` passes.
async fn wait_until(
    ctx: &WorkflowContext<PlaybookRunWorkflow>,
    timeout: Duration,
    mut holds: impl FnMut(&PlaybookRunWorkflow) -> bool,
) -> Waited {
    let timer = ctx.timer(timeout);
    futures::pin_mut!(timer);
    let held = {
        let due = timer.as_mut().fuse();
        let cond = ctx.wait_condition(|s| s.cancel.is_some() || holds(s)).fuse();
        futures::pin_mut!(due, cond);
        temporalio_sdk::workflows::select! {
            _ = due => false,
            _ = cond => true,
        }
    };
    if !held {
        return Waited::TimedOut;
    }
    timer.cancel();
    match ctx.state(|s| s.cancel.clone()) {
        Some(reason) => Waited::Cancelled(format!("the run was cancelled: {reason}")),
        None => Waited::Held,
    }
}

/// `wait`: a duration, or until a CEL condition over the scope holds (re-checked whenever a
/// watched ticket changes), with a timeout.
async fn wait_step(ctx: &WorkflowContext<PlaybookRunWorkflow>, start: &Start) -> Result<Value, String> {
    let parse = |key: &str| -> Result<Option<Duration>, String> {
        match start.input.get(key).and_then(Value::as_str) {
            Some(text) => humantime::parse_duration(text).map(Some).map_err(|e| format!("`{key}`: {e}")),
            None => Ok(None),
        }
    };
    if let Some(d) = parse("duration")? {
        return match wait_until(ctx, d, |_| false).await {
            Waited::TimedOut | Waited::Held => Ok(json!({"timed_out": false})),
            Waited::Cancelled(e) => Err(e),
        };
    }
    let until = start.input.get("until").and_then(Value::as_str).ok_or("`wait` needs `duration` or `until`")?;
    let condition = Condition::compile(until, STEP_NAMES)?;
    let timeout = parse("timeout")?.or(start.timeout).unwrap_or(DEFAULT_WAIT);
    let eval = |s: &PlaybookRunWorkflow| {
        let data = s.state.as_ref().map(|st| st.scope_json(&s.scope)).unwrap_or_default();
        condition.holds(&data)
    };
    // A condition that fails when evaluated (a missing key, a wrong type) ends the wait and
    // fails the step, as every condition does, instead of waiting for the timeout as if false.
    match wait_until(ctx, timeout, |s| eval(s).unwrap_or(true)).await {
        Waited::Held => match ctx.state(eval) {
            Ok(_) => Ok(json!({"timed_out": false})),
            Err(e) => Err(format!("`until`: {e}")),
        },
        Waited::TimedOut => Ok(json!({"timed_out": true})),
        Waited::Cancelled(e) => Err(e),
    }
}
