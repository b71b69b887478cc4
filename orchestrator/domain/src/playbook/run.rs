//! Running a playbook: the pure state machine the run workflow executes and the dry run
//! reports, so what a dry run plans is what a run does.
//!
//! The rules (docs/playbooks.md says the same for authors):
//! - A step starts when every step it `needs` succeeded or was skipped by its own `when` /
//!   `unless`, at most `max_parallel` at a time, in document order.
//! - A step whose dependency failed (with `on_failure: continue`) or was skipped because of a
//!   failure is skipped too ("dependency X failed"): that skip spreads to its dependants.
//! - `on_failure: fail` (the default): no new step starts, steps already running finish, and the
//!   run fails. `continue`: the failure is recorded and the run goes on. `compensate: C`: step
//!   C (a step that only ever runs as a compensation) runs, then the run fails.
//! - A failed run can be retried: its failed steps, and those skipped because of them, run
//!   again (a new round; idempotency keys stay the same). A cancelled run starts nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::expr::{Condition, STEP_NAMES};
use super::template::{self, Mode};
use super::{OnFailure, Playbook, Step};

/// What a run's templates and conditions read (besides `steps`, which the run fills in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub ticket: Value,
    #[serde(default)]
    pub request: Option<Value>,
    #[serde(default)]
    pub inputs: Value,
    #[serde(default)]
    pub run: Value,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running {
        round: u32,
    },
    Succeeded {
        output: Value,
    },
    Failed {
        error: String,
    },
    /// `by_condition`: the step's own `when`/`unless` skipped it (its dependants still run).
    Skipped {
        reason: String,
        by_condition: bool,
    },
}

impl StepState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running { .. } => "running",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
        }
    }
}

/// How an activity is retried (from the step's `retry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPlan {
    pub attempts: u32,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub backoff_coefficient: f64,
    pub non_retryable: Vec<String>,
}

/// A step to start now, with its inputs rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub step: String,
    pub action: String,
    pub round: u32,
    pub input: Value,
    pub idempotency_key: String,
    /// The step's whole time, retries included.
    pub timeout: Option<Duration>,
    pub retry: RetryPlan,
    /// The failed step this one compensates.
    pub compensates: Option<String>,
}

/// What the run does next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Move {
    Start(Start),
    Skip {
        step: String,
        action: String,
        reason: String,
    },
    /// A step failed before it started (its condition or inputs could not be evaluated).
    Fail {
        step: String,
        action: String,
        error: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed { step: String, error: String },
    Cancelled { reason: String },
}

/// A run's progress: serializable, so the workflow's query shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub steps: BTreeMap<String, StepState>,
    pub round: u32,
    pub failure: Option<(String, String)>,
    pub cancelled: Option<String>,
    /// Compensations due to start.
    queued: Vec<(String, String)>,
}

/// Steps that run only as another step's compensation.
fn compensations(playbook: &Playbook) -> BTreeSet<&str> {
    playbook
        .steps
        .iter()
        .filter_map(|s| match s.value.on_failure.as_ref().map(|f| &f.value) {
            Some(OnFailure::Compensate(c)) => Some(c.as_str()),
            _ => None,
        })
        .collect()
}

fn duration(text: Option<&serde_saphyr::Spanned<String>>) -> Option<Duration> {
    text.and_then(|t| humantime::parse_duration(&t.value).ok())
}

fn retry_plan(step: &Step) -> RetryPlan {
    let r = step.retry.as_ref();
    RetryPlan {
        attempts: r.and_then(|r| r.attempts).unwrap_or(3).max(1),
        initial_interval: duration(r.and_then(|r| r.initial_interval.as_ref())).unwrap_or(Duration::from_secs(1)),
        max_interval: duration(r.and_then(|r| r.max_interval.as_ref())).unwrap_or(Duration::from_secs(60)),
        backoff_coefficient: r.and_then(|r| r.backoff_coefficient).filter(|c| *c >= 1.0).unwrap_or(2.0),
        non_retryable: r.map(|r| r.non_retryable.clone()).unwrap_or_default(),
    }
}

impl RunState {
    pub fn new(playbook: &Playbook) -> Self {
        let steps = playbook.steps.iter().map(|s| (s.value.id.value.clone(), StepState::Pending)).collect();
        Self { steps, round: 0, failure: None, cancelled: None, queued: Vec::new() }
    }

    /// The scope with the steps' states and outputs, as templates and conditions read it.
    pub fn scope_json(&self, scope: &Scope) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .steps
            .iter()
            .map(|(id, s)| {
                let output = match s {
                    StepState::Succeeded { output } => output.clone(),
                    _ => Value::Null,
                };
                (id.clone(), json!({"status": s.name(), "output": output}))
            })
            .collect();
        json!({"ticket": scope.ticket, "request": scope.request, "inputs": scope.inputs, "run": scope.run, "steps": steps})
    }

    fn running(&self) -> usize {
        self.steps.values().filter(|s| matches!(s, StepState::Running { .. })).count()
    }

    /// The steps to start or skip now. Starting ones are marked running; skipped and failed
    /// ones are marked so (a failure is applied with [`RunState::finish`] by the caller
    /// through the returned [`Move::Fail`] being already recorded here).
    pub fn next(&mut self, playbook: &Playbook, scope: &Scope, workflow_id: &str, mode: Mode) -> Vec<Move> {
        let mut moves = Vec::new();
        for (step, compensates) in std::mem::take(&mut self.queued) {
            if let Some(s) = playbook.steps.iter().find(|s| s.value.id.value == step) {
                moves.push(self.start(&s.value, scope, workflow_id, mode, Some(compensates)));
            }
        }
        if self.cancelled.is_some() || self.failure.is_some() {
            return moves;
        }
        let only_compensating = compensations(playbook);
        let limit = playbook.max_parallel.map_or(usize::MAX, |m| m.max(1) as usize);
        // Skips can unblock later steps, so go round until nothing changes.
        loop {
            let mut changed = false;
            for s in &playbook.steps {
                let step = &s.value;
                let id = step.id.value.as_str();
                if only_compensating.contains(id) || self.steps.get(id) != Some(&StepState::Pending) {
                    continue;
                }
                match self.readiness(step) {
                    Readiness::Wait => continue,
                    Readiness::Blocked(reason) => {
                        moves.push(self.skip(step, reason, false));
                        changed = true;
                        continue;
                    }
                    Readiness::Ready => {}
                }
                match self.condition(step, scope, mode) {
                    Ok(None) => {}
                    Ok(Some(reason)) => {
                        moves.push(self.skip(step, reason, true));
                        changed = true;
                        continue;
                    }
                    Err(error) => {
                        moves.push(self.fail_early(playbook, step, error));
                        changed = true;
                        if self.failure.is_some() {
                            return moves;
                        }
                        continue;
                    }
                }
                if self.running() >= limit {
                    continue;
                }
                moves.push(self.start(step, scope, workflow_id, mode, None));
                changed = true;
                if self.failure.is_some() {
                    return moves;
                }
            }
            if !changed {
                return moves;
            }
        }
    }

    fn readiness(&self, step: &Step) -> Readiness {
        for need in &step.needs {
            match self.steps.get(need.value.as_str()) {
                Some(StepState::Succeeded { .. } | StepState::Skipped { by_condition: true, .. }) => {}
                Some(StepState::Failed { .. }) => {
                    return Readiness::Blocked(format!("dependency `{}` failed", need.value));
                }
                Some(StepState::Skipped { by_condition: false, .. }) => {
                    return Readiness::Blocked(format!("dependency `{}` was skipped after a failure", need.value));
                }
                _ => return Readiness::Wait,
            }
        }
        Readiness::Ready
    }

    /// `Ok(Some(reason))` when `when`/`unless` skip the step.
    fn condition(&self, step: &Step, scope: &Scope, mode: Mode) -> Result<Option<String>, String> {
        let data = self.scope_json(scope);
        for (field, cond, skip_if) in [("when", &step.when, false), ("unless", &step.unless, true)] {
            let Some(cond) = cond else { continue };
            let holds = Condition::compile(&cond.value, STEP_NAMES).and_then(|c| c.holds(&data));
            match holds {
                Ok(h) if h == skip_if => return Ok(Some(format!("`{field}: {}` is {h}", cond.value))),
                Ok(_) => {}
                Err(e) if mode == Mode::Plan => return Ok(Some(format!("decided when the run gets there: {e}"))),
                Err(e) => return Err(format!("`{field}`: {e}")),
            }
        }
        Ok(None)
    }

    fn skip(&mut self, step: &Step, reason: String, by_condition: bool) -> Move {
        let id = step.id.value.clone();
        self.steps.insert(id.clone(), StepState::Skipped { reason: reason.clone(), by_condition });
        Move::Skip { step: id, action: step.action.value.clone(), reason }
    }

    fn fail_early(&mut self, playbook: &Playbook, step: &Step, error: String) -> Move {
        self.finish(playbook, &step.id.value, Err(error.clone()));
        Move::Fail { step: step.id.value.clone(), action: step.action.value.clone(), error }
    }

    fn start(
        &mut self,
        step: &Step,
        scope: &Scope,
        workflow_id: &str,
        mode: Mode,
        compensates: Option<String>,
    ) -> Move {
        let data = self.scope_json(scope);
        let input: Result<Value, String> = step
            .with
            .iter()
            .map(|(k, v)| {
                Ok((k.clone(), template::render(&v.value, &data, mode).map_err(|e| format!("`with.{k}`: {e}"))?))
            })
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object);
        let key = match &step.idempotency_key {
            Some(k) => template::render_str(&k.value, &data, mode).map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            None => Ok(format!("{workflow_id}/{}", step.id.value)),
        };
        let (input, key) = match (input, key) {
            (Ok(i), Ok(k)) => (i, k),
            (Err(e), _) | (_, Err(e)) => {
                // a compensation's own failure does not compensate again
                let error = format!("the inputs could not be rendered: {e}");
                self.steps.insert(step.id.value.clone(), StepState::Failed { error: error.clone() });
                if compensates.is_none() && self.failure.is_none() {
                    self.failure = Some((step.id.value.clone(), error.clone()));
                }
                return Move::Fail { step: step.id.value.clone(), action: step.action.value.clone(), error };
            }
        };
        self.steps.insert(step.id.value.clone(), StepState::Running { round: self.round });
        Move::Start(Start {
            step: step.id.value.clone(),
            action: step.action.value.clone(),
            round: self.round,
            input,
            idempotency_key: key,
            timeout: duration(step.timeout.as_ref()),
            retry: retry_plan(step),
            compensates,
        })
    }

    /// Records how a started step ended and applies its `on_failure`. A success's output gets
    /// the step's declared `outputs` (templates over `output`) added.
    pub fn finish(&mut self, playbook: &Playbook, step: &str, result: Result<Value, String>) {
        let Some(def) = playbook.steps.iter().find(|s| s.value.id.value == step).map(|s| &s.value) else { return };
        match result {
            Ok(output) => {
                let output = with_declared_outputs(def, output);
                self.steps.insert(step.to_owned(), StepState::Succeeded { output });
            }
            Err(error) => {
                self.steps.insert(step.to_owned(), StepState::Failed { error: error.clone() });
                if compensations(playbook).contains(step) {
                    return;
                }
                match def.on_failure.as_ref().map(|f| &f.value) {
                    Some(OnFailure::Continue) => {}
                    Some(OnFailure::Compensate(c)) => {
                        self.queued.push((c.clone(), step.to_owned()));
                        self.failure.get_or_insert((step.to_owned(), error));
                    }
                    Some(OnFailure::Fail) | None => {
                        self.failure.get_or_insert((step.to_owned(), error));
                    }
                }
            }
        }
    }

    /// How the run ended, once nothing runs and nothing more will start.
    pub fn outcome(&self) -> Option<Outcome> {
        if self.running() > 0 || !self.queued.is_empty() {
            return None;
        }
        if let Some(reason) = &self.cancelled {
            return Some(Outcome::Cancelled { reason: reason.clone() });
        }
        if let Some((step, error)) = &self.failure {
            return Some(Outcome::Failed { step: step.clone(), error: error.clone() });
        }
        None
    }

    /// Whether every step that will ever run has ended (compensation-only steps aside).
    pub fn done(&self, playbook: &Playbook) -> bool {
        let only = compensations(playbook);
        self.running() == 0
            && self.steps.iter().all(|(id, s)| only.contains(id.as_str()) || !matches!(s, StepState::Pending))
    }

    /// An admin's retry of a failed run: failed steps and those skipped after a failure run
    /// again in a new round; compensations may run again.
    pub fn retry(&mut self, playbook: &Playbook) -> bool {
        if self.failure.is_none() || self.cancelled.is_some() || self.running() > 0 {
            return false;
        }
        let only = compensations(playbook);
        for (id, state) in self.steps.iter_mut() {
            let again = matches!(state, StepState::Failed { .. } | StepState::Skipped { by_condition: false, .. })
                || (only.contains(id.as_str()) && !matches!(state, StepState::Pending));
            if again {
                *state = StepState::Pending;
            }
        }
        self.failure = None;
        self.round += 1;
        true
    }

    /// Cancels the run: steps not started are skipped; running ones end as they end.
    pub fn cancel(&mut self, reason: &str) {
        if self.cancelled.is_some() {
            return;
        }
        self.cancelled = Some(reason.to_owned());
        self.queued.clear();
        for state in self.steps.values_mut() {
            if matches!(state, StepState::Pending) {
                *state = StepState::Skipped { reason: format!("the run was cancelled: {reason}"), by_condition: false };
            }
        }
    }
}

enum Readiness {
    Ready,
    Wait,
    Blocked(String),
}

/// The action's output with the step's `outputs` added (each a template over `output`). A
/// declared output that cannot be rendered is left out (a template error would lose a success).
fn with_declared_outputs(step: &Step, output: Value) -> Value {
    if step.outputs.is_empty() {
        return output;
    }
    let data = json!({ "output": output });
    let mut out = match output {
        Value::Object(map) => map,
        other => {
            let mut map = serde_json::Map::new();
            map.insert("value".into(), other);
            map
        }
    };
    for (name, spec) in &step.outputs {
        if let Ok(v) = template::render(spec, &data, Mode::Run) {
            out.insert(name.clone(), v);
        }
    }
    Value::Object(out)
}

/// What a dry run reports: every step, in dependency waves, with its rendered inputs or why it
/// is skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    /// Step ids by wave: a wave's steps may run at the same time.
    pub waves: Vec<Vec<String>>,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedStep {
    pub id: String,
    pub action: String,
    /// 0-based dependency wave.
    pub wave: usize,
    /// `run`, `skipped`, `fail` (its inputs cannot be rendered), or `compensation` (runs only
    /// if the step it undoes fails).
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rendered inputs; references to outputs of earlier steps and secrets stay as written.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: Value,
    pub idempotency_key: String,
}

/// The plan of `playbook` for `scope`, with no side effect: the run's own state machine,
/// driven as if every started step succeeded.
pub fn dry_run(playbook: &Playbook, scope: &Scope, workflow_id: &str) -> Plan {
    let mut state = RunState::new(playbook);
    let mut planned: BTreeMap<String, PlannedStep> = BTreeMap::new();
    let wave_of = |planned: &BTreeMap<String, PlannedStep>, step: &Step| {
        step.needs.iter().filter_map(|n| planned.get(n.value.as_str()).map(|p| p.wave + 1)).max().unwrap_or(0)
    };
    let unlimited = Playbook { max_parallel: None, ..playbook.clone() };
    loop {
        let moves = state.next(&unlimited, scope, workflow_id, Mode::Plan);
        if moves.is_empty() {
            break;
        }
        for m in moves {
            let (id, decision, reason, input, key) = match m {
                Move::Start(s) => {
                    state.finish(playbook, &s.step, Ok(Value::Object(Default::default())));
                    (s.step, "run", None, s.input, s.idempotency_key)
                }
                Move::Skip { step, reason, .. } => (step, "skipped", Some(reason), Value::Null, String::new()),
                Move::Fail { step, error, .. } => (step, "fail", Some(error), Value::Null, String::new()),
            };
            let Some(def) = playbook.steps.iter().find(|s| s.value.id.value == id) else { continue };
            let wave = wave_of(&planned, &def.value);
            let action = def.value.action.value.clone();
            planned.insert(
                id.clone(),
                PlannedStep { id, action, wave, decision: decision.into(), reason, input, idempotency_key: key },
            );
        }
    }
    for comp in compensations(playbook) {
        let Some(def) = playbook.steps.iter().find(|s| s.value.id.value == comp) else { continue };
        let of: Vec<&str> = playbook
            .steps
            .iter()
            .filter(|s| matches!(s.value.on_failure.as_ref().map(|f| &f.value), Some(OnFailure::Compensate(c)) if c == comp))
            .map(|s| s.value.id.value.as_str())
            .collect();
        let wave = wave_of(&planned, &def.value);
        planned.insert(
            comp.to_owned(),
            PlannedStep {
                id: comp.to_owned(),
                action: def.value.action.value.clone(),
                wave,
                decision: "compensation".into(),
                reason: Some(format!("runs only if {} fails", of.join(" or "))),
                input: Value::Null,
                idempotency_key: format!("{workflow_id}/{comp}"),
            },
        );
    }
    let mut steps: Vec<PlannedStep> =
        playbook.steps.iter().filter_map(|s| planned.remove(s.value.id.value.as_str())).collect();
    steps.sort_by_key(|s| s.wave);
    let depth = steps.iter().map(|s| s.wave + 1).max().unwrap_or(0);
    let mut waves = vec![Vec::new(); depth];
    for s in &steps {
        if s.decision == "run" || s.decision == "skipped" || s.decision == "fail" {
            waves[s.wave].push(s.id.clone());
        }
    }
    waves.retain(|w| !w.is_empty());
    Plan { waves, steps }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
