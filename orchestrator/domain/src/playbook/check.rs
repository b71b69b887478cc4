//! The checks that need more than the document's structure: CEL conditions, each action's
//! input schema, and what templates refer to (form fields, manual inputs, step outputs,
//! secrets). Every problem is reported, each at its line and column.

use serde_json::Value;
use serde_saphyr::Spanned;

use super::actions::{self, Action};
use super::expr::{CHANGED_TRIGGER_NAMES, Condition, STEP_NAMES, TRIGGER_NAMES};
use super::template::{Placeholder, ROOTS, placeholders};
use super::{IssueKind, Playbook, PlaybookErrors, PlaybookIssue, Step, Trigger, escape, strings_in};

/// What a playbook is checked against besides itself.
#[derive(Debug, Clone, Default)]
pub struct CheckEnv {
    /// The catalog item's form (a JSON Schema) whose answers `request.fields.X` reads.
    pub form: Option<Value>,
    /// Connection names defined in the tenant; `None`: not checked.
    pub connections: Option<Vec<String>>,
}

/// What `{{ticket.X}}` and CEL's `ticket.X` can read.
pub const TICKET_FIELDS: &[&str] = &[
    "id",
    "number",
    "kind",
    "title",
    "description",
    "status",
    "priority",
    "impact",
    "urgency",
    "requester_id",
    "requester_email",
    "assignee_id",
    "team_id",
    "created_at",
];

/// What `{{run.X}}` can read: `trigger` is the trigger's kind (`sla_breach`, `manual`, ...),
/// `event` what fired it (an SLA trigger's `{metric, cycle, kind, percent, at}`, else null).
pub const RUN_FIELDS: &[&str] = &["id", "number", "workflow_id", "trigger", "event"];

/// Parses and checks a playbook completely; every problem is returned at once.
pub fn validate(yaml: &str, env: &CheckEnv) -> Result<Playbook, PlaybookErrors> {
    let playbook = super::parse(yaml)?;
    let issues = check(&playbook, env);
    if issues.is_empty() { Ok(playbook) } else { Err(PlaybookErrors(issues)) }
}

/// The checks beyond structure (run after [`super::parse`] accepted the document).
pub fn check(playbook: &Playbook, env: &CheckEnv) -> Vec<PlaybookIssue> {
    let mut issues = Vec::new();
    check_triggers(playbook, &mut issues);
    for (i, step) in playbook.steps.iter().enumerate() {
        let Some(action) = actions::action(&step.value.action.value) else { continue };
        let checker = StepChecker { playbook, env, step: &step.value, index: i, action };
        checker.run(&mut issues);
    }
    issues
}

/// Whether a trigger's CEL `condition` holds for `ticket` (the scope's ticket shape) and, for a
/// change, the ticket as it was `before` it.
pub fn condition_holds(condition: &str, ticket: &Value, before: Option<&Value>) -> Result<bool, String> {
    match before {
        None => Condition::compile(condition, TRIGGER_NAMES)?.holds(&serde_json::json!({ "ticket": ticket })),
        Some(before) => Condition::compile(condition, CHANGED_TRIGGER_NAMES)?
            .holds(&serde_json::json!({ "ticket": ticket, "before": before })),
    }
}

fn at<T>(kind: IssueKind, path: String, span: &Spanned<T>, message: String) -> PlaybookIssue {
    PlaybookIssue { kind, path, line: span.referenced.line(), column: span.referenced.column(), message }
}

fn check_triggers(playbook: &Playbook, issues: &mut Vec<PlaybookIssue>) {
    for (i, trigger) in playbook.triggers.iter().enumerate() {
        let path = format!("/triggers/{i}");
        match &trigger.value {
            Trigger::TicketCreated { condition: Some(c) } | Trigger::TicketChanged { condition: Some(c) } => {
                let names = if matches!(trigger.value, Trigger::TicketChanged { .. }) {
                    CHANGED_TRIGGER_NAMES
                } else {
                    TRIGGER_NAMES
                };
                if let Err(e) = Condition::compile(c, names) {
                    issues.push(at(IssueKind::Cel, format!("{path}/condition"), trigger, e));
                }
            }
            Trigger::CatalogFulfilment { item } if item.trim().is_empty() => {
                issues.push(at(
                    IssueKind::Trigger,
                    format!("{path}/item"),
                    trigger,
                    "the catalog item is empty".into(),
                ));
            }
            Trigger::Manual => {
                if let Some(schema) = &playbook.inputs
                    && let Err(e) = jsonschema::draft202012::new(schema)
                {
                    let message = format!("`inputs` is not a valid JSON Schema: {e}");
                    issues.push(at(IssueKind::Trigger, "/inputs".into(), trigger, message));
                }
            }
            _ => {}
        }
    }
}

struct StepChecker<'a> {
    playbook: &'a Playbook,
    env: &'a CheckEnv,
    step: &'a Step,
    index: usize,
    action: &'static Action,
}

impl StepChecker<'_> {
    fn run(&self, issues: &mut Vec<PlaybookIssue>) {
        let i = self.index;
        for (field, cond) in [("when", &self.step.when), ("unless", &self.step.unless)] {
            if let Some(cond) = cond
                && let Err(e) = Condition::compile(&cond.value, STEP_NAMES)
            {
                issues.push(at(IssueKind::Cel, format!("/steps/{i}/{field}"), cond, e));
            }
        }
        if self.action.name == "wait"
            && let Some(until) = self.step.with.get("until")
            && let Value::String(text) = &until.value
            && let Err(e) = Condition::compile(text, STEP_NAMES)
        {
            issues.push(at(IssueKind::Cel, format!("/steps/{i}/with/until"), until, e));
        }
        self.check_input_schema(issues);
        self.check_connection(issues);
        for (key, value) in &self.step.with {
            for (path, text) in strings_in(&value.value, format!("/steps/{i}/with/{}", escape(key))) {
                self.check_template(&path, text, value, Some(key), issues);
            }
        }
        if let Some(key) = &self.step.idempotency_key {
            self.check_template(&format!("/steps/{i}/idempotency_key"), &key.value, key, None, issues);
        }
    }

    /// `with` against the action's input schema. A value that is a template is only known
    /// when the run renders it, so a type error at a templated value is left to the run.
    fn check_input_schema(&self, issues: &mut Vec<PlaybookIssue>) {
        let Ok(validator) = jsonschema::draft202012::new(&self.action.input) else { return };
        let instance: Value = Value::Object(self.step.with.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect());
        for error in validator.iter_errors(&instance) {
            let pointer = error.instance_path().to_string();
            let templated = instance.pointer(&pointer).is_some_and(|v| v.as_str().is_some_and(|s| s.contains("{{")));
            if templated {
                continue;
            }
            let key = pointer.trim_start_matches('/').split('/').next().unwrap_or("");
            let (line, column) = match self.step.with.get(key) {
                Some(v) => (v.referenced.line(), v.referenced.column()),
                None => (self.step_span().0, self.step_span().1),
            };
            issues.push(PlaybookIssue {
                kind: IssueKind::Input,
                path: format!("/steps/{}/with{pointer}", self.index),
                line,
                column,
                message: format!("`{}`: {error}", self.action.name),
            });
        }
    }

    fn step_span(&self) -> (u64, u64) {
        let s = &self.playbook.steps[self.index];
        (s.referenced.line(), s.referenced.column())
    }

    fn check_connection(&self, issues: &mut Vec<PlaybookIssue>) {
        let (Some(input), Some(known)) = (self.action.connection_input, &self.env.connections) else { return };
        if let Some(value) = self.step.with.get(input)
            && let Value::String(name) = &value.value
            && !name.contains("{{")
            && !known.iter().any(|k| k == name)
        {
            let message = format!("no connection is called `{name}`; define it under /api/v1/connections first");
            issues.push(at(IssueKind::Reference, format!("/steps/{}/with/{input}", self.index), value, message));
        }
    }

    fn check_template<T>(
        &self,
        path: &str,
        text: &str,
        span: &Spanned<T>,
        with_key: Option<&str>,
        issues: &mut Vec<PlaybookIssue>,
    ) {
        let found = match placeholders(text) {
            Ok(found) => found,
            Err(e) => return issues.push(at(IssueKind::Reference, path.to_owned(), span, e)),
        };
        for p in found {
            if let Err((kind, message)) = self.reference(&p, with_key) {
                issues.push(at(kind, path.to_owned(), span, message));
            }
        }
    }

    /// Whether a placeholder names something that will exist when the step runs.
    fn reference(&self, p: &Placeholder, with_key: Option<&str>) -> Result<(), (IssueKind, String)> {
        let text = p.text();
        let missing = |what: String| Err((IssueKind::Reference, format!("`{{{{{text}}}}}`: {what}")));
        match p.path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [root, ..] if !ROOTS.contains(root) => {
                missing(format!("`{root}` is not known; templates read {}", ROOTS.join(", ")))
            }
            ["ticket", field, ..] if !TICKET_FIELDS.contains(field) => {
                missing(format!("tickets have no `{field}`; known: {}", TICKET_FIELDS.join(", ")))
            }
            ["run", field, ..] if !RUN_FIELDS.contains(field) => missing(format!("runs have no `{field}`")),
            ["request", rest @ ..] => self.request_field(rest).or_else(&missing),
            ["inputs", field, ..] => self.input_field(field).or_else(&missing),
            ["steps", id, rest @ ..] => self.step_output(id, rest).or_else(&missing),
            ["secrets", name] => self.secret(name, with_key),
            ["secrets", ..] => missing("write `{{secrets.NAME}}`, NAME being the step's connection".into()),
            [_] => missing("name a field, e.g. `{{ticket.number}}`".into()),
            _ => Ok(()),
        }
    }

    fn request_field(&self, rest: &[&str]) -> Result<(), String> {
        let fulfils = self.playbook.triggers.iter().any(|t| matches!(t.value, Trigger::CatalogFulfilment { .. }));
        if !fulfils {
            return Err("only a playbook triggered by a catalog item's fulfilment has a request".into());
        }
        match rest {
            ["item"] => Ok(()),
            ["fields", field, ..] => match &self.env.form {
                Some(form) if form.pointer(&format!("/properties/{}", escape(field))).is_none() => {
                    Err(format!("the item's form has no field `{field}`"))
                }
                _ => Ok(()),
            },
            _ => Err("a request has `item` and `fields.NAME`".into()),
        }
    }

    fn input_field(&self, field: &str) -> Result<(), String> {
        match &self.playbook.inputs {
            None => Err("the playbook declares no `inputs`".into()),
            Some(schema) if schema.pointer(&format!("/properties/{}", escape(field))).is_none() => {
                Err(format!("`inputs` declares no `{field}`"))
            }
            Some(_) => Ok(()),
        }
    }

    fn step_output(&self, id: &str, rest: &[&str]) -> Result<(), String> {
        // whether `id` exists and is a dependency is checked with the structure
        let Some(step) = self.playbook.steps.iter().find(|s| s.value.id.value == id) else { return Ok(()) };
        match rest {
            ["status"] => Ok(()),
            ["output"] => Ok(()),
            ["output", field, below @ ..] => {
                if step.value.outputs.contains_key(*field) {
                    return Ok(());
                }
                let Some(action) = actions::action(&step.value.action.value) else { return Ok(()) };
                let path: Vec<String> =
                    std::iter::once(*field).chain(below.iter().copied()).map(str::to_owned).collect();
                if action.output_has(&path) {
                    Ok(())
                } else {
                    Err(format!("`{}` ({}) has no output `{}`", id, action.name, path.join(".")))
                }
            }
            _ => Err("read a step's `output.NAME` or `status`".into()),
        }
    }

    fn secret(&self, name: &str, with_key: Option<&str>) -> Result<(), (IssueKind, String)> {
        let allowed = with_key.is_some_and(|k| self.action.secret_inputs.contains(&k));
        if !allowed {
            let where_ = if self.action.secret_inputs.is_empty() {
                format!("`{}` takes no secret", self.action.name)
            } else {
                format!("`{}` takes secrets only in: {}", self.action.name, self.action.secret_inputs.join(", "))
            };
            return Err((IssueKind::Secret, format!("`{{{{secrets.{name}}}}}`: {where_}")));
        }
        let connection = self.action.connection_input.and_then(|c| self.step.with.get(c)).map(|v| &v.value);
        if connection.and_then(Value::as_str) != Some(name) {
            return Err((
                IssueKind::Secret,
                format!("`{{{{secrets.{name}}}}}`: a step reads only its own connection's secret"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env() -> CheckEnv {
        CheckEnv {
            form: Some(
                json!({"type": "object", "properties": {"full_name": {"type": "string"}, "needs_vpn": {"type": "boolean"}}}),
            ),
            connections: Some(vec!["graph".into(), "slack".into()]),
        }
    }

    fn issues(yaml: &str) -> Vec<PlaybookIssue> {
        match validate(yaml, &env()) {
            Ok(_) => Vec::new(),
            Err(PlaybookErrors(issues)) => issues,
        }
    }

    const HEAD: &str = "name: t\ntriggers: [ { catalog_fulfilment: { item: x } } ]\nsteps:\n";

    #[test]
    fn a_good_playbook_passes() {
        let yaml = format!(
            "{HEAD}  - id: a\n    action: http.request\n    when: request.fields.needs_vpn\n    with: {{ connection: slack, path: /x, headers: {{ Authorization: \"Bearer {{{{secrets.slack}}}}\" }}, body: {{ n: \"{{{{request.fields.full_name}}}}\" }} }}\n  - {{ id: b, action: ticket.comment, needs: [a], with: {{ body: \"{{{{steps.a.output.body.id}}}} {{{{ticket.number}}}}\" }} }}\n"
        );
        assert_eq!(issues(&yaml), Vec::new());
    }

    #[test]
    fn every_problem_is_located() {
        let yaml = format!(
            "{HEAD}  - id: a\n    action: ticket.comment\n    when: \"ticket.priority ==\"\n    with: {{ body: 5, public: \"{{{{request.fields.nope}}}}\" }}\n  - id: b\n    action: http.request\n    needs: [a]\n    with: {{ connection: nowhere, path: /x, body: \"{{{{steps.a.output.id}}}} {{{{secrets.graph}}}}\" }}\n"
        );
        let found = issues(&yaml);
        let kinds: Vec<(IssueKind, &str, u64)> = found.iter().map(|i| (i.kind, i.path.as_str(), i.line)).collect();
        assert!(kinds.contains(&(IssueKind::Cel, "/steps/0/when", 6)), "{found:#?}");
        assert!(kinds.contains(&(IssueKind::Input, "/steps/0/with/body", 7)), "{found:#?}");
        assert!(kinds.contains(&(IssueKind::Reference, "/steps/0/with/public", 7)), "{found:#?}");
        assert!(kinds.contains(&(IssueKind::Reference, "/steps/1/with/connection", 11)), "{found:#?}");
        assert!(kinds.iter().any(|k| k.0 == IssueKind::Reference && k.1 == "/steps/1/with/body"), "{found:#?}");
        assert!(kinds.iter().any(|k| k.0 == IssueKind::Secret && k.1 == "/steps/1/with/body"), "{found:#?}");
        assert!(found.iter().all(|i| i.column > 0));
    }

    #[test]
    fn request_fields_need_a_catalog_trigger_and_inputs_a_schema() {
        let yaml = "name: t\ntriggers: [manual]\nsteps:\n  - { id: a, action: ticket.comment, with: { body: \"{{request.fields.full_name}} {{inputs.level}}\" } }\n";
        let found = issues(yaml);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found.iter().all(|i| i.kind == IssueKind::Reference));
    }

    #[test]
    fn trigger_conditions_read_only_the_ticket() {
        let yaml = "name: t\ntriggers:\n  - ticket_created: { condition: \"ticket.priority == 1 && steps.x\" }\nsteps:\n  - { id: a, action: ticket.comment, with: { body: x } }\n";
        let found = issues(yaml);
        assert_eq!(found[0].kind, IssueKind::Cel);
        assert_eq!(found[0].path, "/triggers/0/condition");
        assert_eq!(condition_holds("ticket.priority == 1", &json!({"priority": 1}), None), Ok(true));
    }

    #[test]
    fn a_change_condition_also_reads_the_ticket_before_the_change() {
        let yaml = "name: t\ntriggers:\n  - ticket_changed: { condition: 'before.status != ticket.status' }\n  - ticket_created: { condition: 'before.status == \"new\"' }\nsteps:\n  - { id: a, action: ticket.comment, with: { body: x } }\n";
        let found = issues(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!((found[0].kind, found[0].path.as_str()), (IssueKind::Cel, "/triggers/1/condition"));
        let resolved = "before.status != \"resolved\" && ticket.status == \"resolved\"";
        let (was, now) = (json!({"status": "in_progress"}), json!({"status": "resolved"}));
        assert_eq!(condition_holds(resolved, &now, Some(&was)), Ok(true));
        assert_eq!(condition_holds(resolved, &now, Some(&now)), Ok(false));
        assert!(condition_holds(resolved, &now, None).is_err(), "a creation has no `before`");
    }

    #[test]
    fn templates_read_the_runs_trigger_and_event_but_no_other_run_field() {
        let yaml = "name: t\ntriggers: [sla_breach]\nsteps:\n  - { id: a, action: ticket.comment, with: { body: \"{{run.trigger}} {{run.event.metric}} {{run.number}} {{run.nope}}\" } }\n";
        let found = issues(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!((found[0].kind, found[0].path.as_str()), (IssueKind::Reference, "/steps/0/with/body"));
        assert!(found[0].message.contains("run.nope"), "{}", found[0].message);
    }

    #[test]
    fn wait_until_is_cel_and_needs_nothing_else() {
        let yaml = "name: t\nsteps:\n  - { id: w, action: wait, with: { until: \"ticket.status ==\", timeout: 1h } }\n  - { id: x, action: wait, with: { } }\n";
        let found = issues(yaml);
        assert!(found.iter().any(|i| i.kind == IssueKind::Cel && i.path == "/steps/0/with/until"), "{found:#?}");
        assert!(found.iter().any(|i| i.kind == IssueKind::Input && i.path.starts_with("/steps/1/with")), "{found:#?}");
    }
}
