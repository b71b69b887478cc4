//! YAML playbooks: the document model admins write, and its structural validation.
//!
//! A playbook is read with `serde-saphyr` (the maintained replacement for the deprecated
//! `serde_yaml`) under a strict budget, so a hostile document (an alias bomb, a huge or deeply
//! nested file) is refused before it costs memory or time. Every problem found is reported at
//! once, each with a JSON-pointer-like path (`/steps/2/needs/0`) and the YAML line and column of
//! the node, so an editor can underline it. Locations come from `serde_saphyr::Spanned` fields
//! in the model itself: one parse gives both the typed document and the positions.
//!
//! What is NOT done here: CEL expressions (`when`, `unless`) are kept as text, and templates are
//! only checked for which steps they reference; compiling CEL and checking `with` against each
//! action's input schema belong to the layers that own those engines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_saphyr::{Budget, Options, Spanned};

/// Documents above this size are refused before the parser sees a byte.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// More steps than a person writes; above it the dependency checks are not attempted, so a
/// generated document cannot make validation quadratic.
pub const MAX_STEPS: usize = 500;

/// The actions Archer ships; a step naming anything else is refused.
pub const ACTIONS: &[&str] = &[
    "ticket.comment",
    "ticket.update",
    "ticket.create_task",
    "approval.request",
    "email.send",
    "http.request",
    "webhook.post",
    "wait",
];

/// One playbook document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub triggers: Vec<Spanned<Trigger>>,
    /// A JSON Schema (2020-12) for the inputs of a manual run; checked by the API layer.
    #[serde(default)]
    pub inputs: Option<serde_json::Value>,
    /// How many steps of one run may execute at the same time; unbounded when absent.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    pub steps: Vec<Spanned<Step>>,
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The catalog item `item` was approved; its `request` workflow runs the playbook.
    CatalogFulfilment {
        item: String,
    },
    /// A ticket was created; `condition` is a CEL expression over the ticket.
    TicketCreated {
        #[serde(default)]
        condition: Option<String>,
    },
    /// A ticket changed; `condition` is a CEL expression over the ticket.
    TicketChanged {
        #[serde(default)]
        condition: Option<String>,
    },
    SlaWarning,
    SlaBreach,
    /// An agent or admin starts the run on a ticket, with inputs.
    Manual,
}

/// One step of a playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: Spanned<String>,
    pub action: Spanned<String>,
    /// The action's inputs; strings may contain `{{...}}` templates.
    #[serde(default)]
    pub with: BTreeMap<String, Spanned<serde_json::Value>>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// CEL: run the step only when this holds (kept as text, not evaluated here).
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// CEL: skip the step when this holds (kept as text, not evaluated here).
    #[serde(default)]
    pub unless: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: Option<Retry>,
    /// A humantime duration (`30s`, `2h`).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// Templated; defaults to one derived from the run and the step.
    #[serde(default)]
    pub idempotency_key: Option<Spanned<String>>,
    #[serde(default)]
    pub on_failure: Option<Spanned<OnFailure>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
}

/// How a failing step is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub initial_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub max_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub backoff_coefficient: Option<f64>,
    /// Error types that are never retried.
    #[serde(default)]
    pub non_retryable: Vec<String>,
}

/// What happens after a step has failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails (the default).
    Fail,
    /// The failure is recorded and the run goes on.
    Continue,
    /// The named step runs to undo what was done, then the run fails.
    Compensate(String),
}

/// The kind of a problem, so callers and tests need not match on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IssueKind {
    TooLarge,
    TooManySteps,
    Yaml,
    EmptyName,
    DuplicateStep,
    MissingNeed,
    Cycle,
    UnknownAction,
    TemplateNotDependency,
    MissingCompensation,
    BadDuration,
    /// A `when`, `unless` or trigger condition that does not compile, or reads an unknown name.
    Cel,
    /// A `with` value the action's input schema refuses.
    Input,
    /// A template naming something that does not exist (a form field, an output, an input).
    Reference,
    /// `{{secrets.NAME}}` where the action takes no secret, or an unknown connection.
    Secret,
    /// A trigger that cannot work (a catalog trigger without an item, a manual run's bad schema).
    Trigger,
}

/// One problem in a playbook, located in the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{path} (line {line}, column {column}): {message}")]
pub struct PlaybookIssue {
    pub kind: IssueKind,
    /// JSON-pointer-like path of the node (`/steps/2/needs/0`); empty when unknown.
    pub path: String,
    /// 1-based; 0 when the parser could not say.
    pub line: u64,
    /// 1-based; 0 when the parser could not say.
    pub column: u64,
    pub message: String,
}

/// Every problem found in a playbook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the playbook has {} error(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
pub struct PlaybookErrors(pub Vec<PlaybookIssue>);

/// Budgets small enough that an alias bomb or a deep nest fails fast, large enough for any
/// playbook a person writes.
fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = 64;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    budget.max_nodes = 100_000;
    budget.max_events = 200_000;
    budget.max_recorded_anchor_events = 10_000;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 10_000;
    options
}

/// Parses and validates a playbook; all problems are returned together.
pub fn parse(yaml: &str) -> Result<Playbook, PlaybookErrors> {
    if yaml.len() > MAX_DOCUMENT_BYTES {
        return Err(PlaybookErrors(vec![PlaybookIssue {
            kind: IssueKind::TooLarge,
            path: String::new(),
            line: 1,
            column: 1,
            message: format!("the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted", yaml.len()),
        }]));
    }
    let playbook = read(yaml).map_err(|issue| PlaybookErrors(vec![issue]))?;
    let issues = playbook.validate();
    if issues.is_empty() { Ok(playbook) } else { Err(PlaybookErrors(issues)) }
}

/// Deserializes the document, tracking the path of the node where reading stopped so that an
/// unknown field or a wrong type is reported with a path as well as a line and column.
fn read(yaml: &str) -> Result<Playbook, PlaybookIssue> {
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(yaml, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = pointer(e.path());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let location = e.location();
        PlaybookIssue {
            kind: IssueKind::Yaml,
            path,
            line: location.map_or(0, |l| l.line()),
            column: location.map_or(0, |l| l.column()),
            message: e.without_snippet().to_string(),
        }
    })
}

/// A serde path (`steps[0].retry`) as a JSON pointer (`/steps/0/retry`). `Spanned` fields add a
/// `value` segment of their own, which is dropped so the pointer names the document's nodes.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out: Vec<String> = Vec::new();
    let mut skipped_at = None;
    for segment in path.iter() {
        let segment = match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => continue,
        };
        if segment == "value" && skipped_at != Some(out.len()) && is_spanned(&out) {
            skipped_at = Some(out.len());
            continue;
        }
        out.push(segment);
    }
    out.iter().map(|segment| format!("/{}", escape(segment))).collect()
}

/// Whether the node at `path` (already a document path) is a `Spanned` field of the model.
fn is_spanned(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    const STEP_FIELDS: &[&str] = &["id", "action", "when", "unless", "timeout", "idempotency_key", "on_failure"];
    match path.as_slice() {
        ["name"] | ["triggers", _] | ["steps", _] => true,
        ["steps", _, field] => STEP_FIELDS.contains(field),
        ["steps", _, "needs" | "with", _] => true,
        ["steps", _, "retry", field] => ["initial_interval", "max_interval"].contains(field),
        _ => false,
    }
}

fn issue<T>(kind: IssueKind, path: String, at: &Spanned<T>, message: String) -> PlaybookIssue {
    PlaybookIssue { kind, path, line: at.referenced.line(), column: at.referenced.column(), message }
}

impl Playbook {
    /// Structural checks; every problem is collected.
    pub fn validate(&self) -> Vec<PlaybookIssue> {
        let mut issues = Vec::new();
        if self.name.value.trim().is_empty() {
            issues.push(issue(IssueKind::EmptyName, "/name".into(), &self.name, "the name is empty".into()));
        }
        if self.steps.len() > MAX_STEPS {
            issues.push(PlaybookIssue {
                kind: IssueKind::TooManySteps,
                path: "/steps".into(),
                line: self.steps.first().map_or(0, |s| s.referenced.line()),
                column: self.steps.first().map_or(0, |s| s.referenced.column()),
                message: format!("{} steps; at most {MAX_STEPS} are accepted", self.steps.len()),
            });
            return issues;
        }
        let index = self.step_index(&mut issues);
        for (i, step) in self.steps.iter().enumerate() {
            step.value.check_local(i, &index, &mut issues);
        }
        self.check_cycles(&index, &mut issues);
        self.check_templates(&index, &mut issues);
        issues
    }

    /// Step id -> position of its first definition; later duplicates are reported.
    fn step_index(&self, issues: &mut Vec<PlaybookIssue>) -> HashMap<&str, usize> {
        let mut index = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            let id = &step.value.id;
            if let Some(first) = index.get(id.value.as_str()) {
                issues.push(issue(
                    IssueKind::DuplicateStep,
                    format!("/steps/{i}/id"),
                    id,
                    format!("step id `{}` is already used by /steps/{first}", id.value),
                ));
            } else {
                index.insert(id.value.as_str(), i);
            }
        }
        index
    }

    /// The known dependencies of step `i`, as step positions.
    fn deps(&self, i: usize, index: &HashMap<&str, usize>) -> Vec<usize> {
        self.steps[i].value.needs.iter().filter_map(|n| index.get(n.value.as_str()).copied()).collect()
    }

    /// Positions of steps that are not reachable by a topological order (in or after a cycle).
    fn unordered(&self, index: &HashMap<&str, usize>) -> BTreeSet<usize> {
        let placed: BTreeSet<usize> = self.levels(index).into_iter().flatten().collect();
        (0..self.steps.len()).filter(|i| !placed.contains(i)).collect()
    }

    fn check_cycles(&self, index: &HashMap<&str, usize>, issues: &mut Vec<PlaybookIssue>) {
        let stuck = self.unordered(index);
        let mut reported = BTreeSet::new();
        for &start in &stuck {
            // Every stuck step needs another stuck step, so walking needs reaches a cycle.
            let mut trail = vec![start];
            let cycle = loop {
                let Some(&last) = trail.last() else { break None };
                let Some(next) = self.deps(last, index).into_iter().find(|d| stuck.contains(d)) else {
                    break None;
                };
                if let Some(pos) = trail.iter().position(|&s| s == next) {
                    break Some(trail.split_off(pos));
                }
                trail.push(next);
            };
            let Some(mut cycle) = cycle else { continue };
            let first = cycle.iter().copied().min().unwrap_or(start);
            if reported.contains(&first) {
                continue;
            }
            reported.extend(cycle.iter().copied());
            let at = cycle.iter().position(|&s| s == first).unwrap_or(0);
            cycle.rotate_left(at);
            let names: Vec<&str> = cycle.iter().map(|&s| self.steps[s].value.id.value.as_str()).collect();
            issues.push(issue(
                IssueKind::Cycle,
                format!("/steps/{first}/needs"),
                &self.steps[first],
                format!("steps depend on each other in a cycle: {} -> {}", names.join(" -> "), names[0]),
            ));
        }
    }

    /// The steps that `i` depends on, directly or not.
    fn ancestors(&self, i: usize, index: &HashMap<&str, usize>) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = self.deps(i, index);
        while let Some(d) = todo.pop() {
            if seen.insert(d) {
                todo.extend(self.deps(d, index));
            }
        }
        seen
    }

    /// A step may only read the outputs of steps it (transitively) needs: anything else could
    /// still be running, or never run. A string nested inside a `with` value gets its own path
    /// but the line and column of that `with` entry's value.
    fn check_templates(&self, index: &HashMap<&str, usize>, issues: &mut Vec<PlaybookIssue>) {
        for (i, step) in self.steps.iter().enumerate() {
            let ancestors = self.ancestors(i, index);
            let mut check = |path: String, at_line: u64, at_col: u64, text: &str| {
                for referenced in step_references(text) {
                    let ok = index.get(referenced.as_str()).is_some_and(|d| ancestors.contains(d));
                    if !ok {
                        issues.push(PlaybookIssue {
                            kind: IssueKind::TemplateNotDependency,
                            path: path.clone(),
                            line: at_line,
                            column: at_col,
                            message: format!(
                                "the template uses step `{referenced}`, which is not a dependency of `{}` (add it to `needs`)",
                                step.value.id.value
                            ),
                        });
                    }
                }
            };
            for (key, value) in &step.value.with {
                let (line, col) = (value.referenced.line(), value.referenced.column());
                for (sub, text) in strings_in(&value.value, format!("/steps/{i}/with/{}", escape(key))) {
                    check(sub, line, col, text);
                }
            }
            if let Some(key) = &step.value.idempotency_key {
                let path = format!("/steps/{i}/idempotency_key");
                check(path, key.referenced.line(), key.referenced.column(), &key.value);
            }
        }
    }

    /// Steps grouped by dependency level: every step of a wave needs only steps of earlier waves,
    /// so a wave's steps may run in parallel. Within a wave, steps keep their document order.
    /// Steps caught in a cycle are left out (a validated playbook has none).
    pub fn waves(&self) -> Vec<Vec<&Step>> {
        let index: HashMap<&str, usize> =
            self.steps.iter().enumerate().rev().map(|(i, s)| (s.value.id.value.as_str(), i)).collect();
        self.levels(&index).into_iter().map(|wave| wave.into_iter().map(|i| &self.steps[i].value).collect()).collect()
    }

    /// Kahn's algorithm by levels, on step positions: linear in steps and needs.
    fn levels(&self, index: &HashMap<&str, usize>) -> Vec<Vec<usize>> {
        let count = self.steps.len();
        let deps: Vec<Vec<usize>> = (0..count).map(|i| self.deps(i, index)).collect();
        let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut dependants = vec![Vec::new(); count];
        for (i, needs) in deps.iter().enumerate() {
            for &d in needs {
                dependants[d].push(i);
            }
        }
        let mut wave: Vec<usize> = (0..count).filter(|&i| pending[i] == 0).collect();
        let mut levels = Vec::new();
        while !wave.is_empty() {
            let mut next = Vec::new();
            for &i in &wave {
                for &j in &dependants[i] {
                    pending[j] -= 1;
                    if pending[j] == 0 {
                        next.push(j);
                    }
                }
            }
            next.sort_unstable();
            levels.push(std::mem::replace(&mut wave, next));
        }
        levels
    }
}

impl Step {
    /// Checks that need only this step and the id index.
    fn check_local(&self, i: usize, index: &HashMap<&str, usize>, issues: &mut Vec<PlaybookIssue>) {
        if !ACTIONS.contains(&self.action.value.as_str()) {
            issues.push(issue(
                IssueKind::UnknownAction,
                format!("/steps/{i}/action"),
                &self.action,
                format!("unknown action `{}`; known: {}", self.action.value, ACTIONS.join(", ")),
            ));
        }
        for (j, need) in self.needs.iter().enumerate() {
            if !index.contains_key(need.value.as_str()) {
                issues.push(issue(
                    IssueKind::MissingNeed,
                    format!("/steps/{i}/needs/{j}"),
                    need,
                    format!("no step has the id `{}`", need.value),
                ));
            }
        }
        if let Some(on_failure) = &self.on_failure
            && let OnFailure::Compensate(target) = &on_failure.value
            && !index.contains_key(target.as_str())
        {
            issues.push(issue(
                IssueKind::MissingCompensation,
                format!("/steps/{i}/on_failure/compensate"),
                on_failure,
                format!("the compensating step `{target}` does not exist"),
            ));
        }
        let mut durations = vec![("timeout", self.timeout.as_ref())];
        if let Some(retry) = &self.retry {
            durations.push(("retry/initial_interval", retry.initial_interval.as_ref()));
            durations.push(("retry/max_interval", retry.max_interval.as_ref()));
        }
        for (field, value) in durations {
            if let Some(value) = value
                && let Err(e) = humantime::parse_duration(&value.value)
            {
                issues.push(issue(
                    IssueKind::BadDuration,
                    format!("/steps/{i}/{field}"),
                    value,
                    format!("`{}` is not a duration ({e}); write e.g. `30s`, `5m`, `2h`", value.value),
                ));
            }
        }
    }
}

/// JSON Pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Every string inside a JSON value, with its path.
fn strings_in(value: &serde_json::Value, path: String) -> Vec<(String, &str)> {
    match value {
        serde_json::Value::String(s) => vec![(path, s.as_str())],
        serde_json::Value::Array(items) => {
            items.iter().enumerate().flat_map(|(i, v)| strings_in(v, format!("{path}/{i}"))).collect()
        }
        serde_json::Value::Object(map) => {
            map.iter().flat_map(|(k, v)| strings_in(v, format!("{path}/{}", escape(k)))).collect()
        }
        _ => Vec::new(),
    }
}

/// The step ids named by `{{steps.ID...}}` templates in `text` (a malformed template is
/// reported by the full check, `check::check`).
fn step_references(text: &str) -> Vec<String> {
    template::placeholders(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.root() == "steps")
        .filter_map(|p| p.path.get(1).cloned())
        .collect()
}

pub mod actions;
pub mod check;
pub mod expr;
pub mod run;
pub mod template;

pub use check::{CheckEnv, check, condition_holds, validate};

#[cfg(test)]
mod tests;
