//! Playbooks as the API and the `archer playbook` commands check and preview them: the domain's
//! located issues as problem+json field errors, the scope a dry run renders against, and a
//! manual run's inputs checked against the playbook's `inputs` schema. One definition, so the
//! CLI reports exactly what the API refuses. Also how a ticket's timeline names playbook runs
//! and steps ([`PlaybookNames`]).

use serde_json::{Value, json};

use archer_orchestrator::playbook::run::Scope;
use archer_orchestrator::playbook::{PlaybookErrors, PlaybookIssue};

use crate::error::FieldError;

mod timeline;

pub use timeline::PlaybookNames;

/// The issue's kind as it is written in problem+json and by the CLI (`missing_need`).
pub fn kind_name(issue: &PlaybookIssue) -> String {
    serde_json::to_value(issue.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Every issue as a field error: the pointer is the node's path in the document
/// (`/steps/2/needs/0`; `/` for the document as a whole), `code` its kind, with the YAML line
/// and column.
pub fn issue_errors(errors: &PlaybookErrors) -> Vec<FieldError> {
    errors
        .0
        .iter()
        .map(|i| {
            let pointer = if i.path.is_empty() { "/".to_owned() } else { i.path.clone() };
            FieldError::new(pointer, &kind_name(i), i.message.clone()).located(i.line, i.column)
        })
        .collect()
}

/// `FILE:LINE:COLUMN: kind: message`, as compilers print, one per issue.
pub fn issue_lines(file: &str, errors: &PlaybookErrors) -> Vec<String> {
    errors.0.iter().map(|i| format!("{file}:{}:{}: {}: {}", i.line, i.column, kind_name(i), i.message)).collect()
}

/// A ticket for a dry run that names none: every field a real scope has, with neutral values,
/// so templates render and conditions evaluate instead of failing on a missing name.
pub fn sample_ticket() -> Value {
    json!({
        "id": "00000000-0000-0000-0000-000000000000",
        "number": "REQ-000000",
        "kind": "service_request",
        "title": "Dry run",
        "description": "",
        "status": "new",
        "priority": 4,
        "impact": 3,
        "urgency": 3,
        "requester_id": null,
        "requester_email": null,
        "assignee_id": null,
        "team_id": null,
        "created_at": "1970-01-01T00:00:00Z"
    })
}

/// The workflow id a dry run renders idempotency keys with: a real run's shape
/// (`<tenant>/<number>/playbook/<name>/<n>`) with `dry-run` for the run's number, so a key seen
/// in a plan can never be mistaken for one a run sent.
pub fn dry_run_workflow_id(tenant: &str, ticket_number: &str, playbook: &str) -> String {
    format!("{tenant}/{ticket_number}/playbook/{playbook}/dry-run")
}

/// The scope of a dry run: `ticket` (or [`sample_ticket`]), the catalog request and the manual
/// inputs given, and a run that does not exist (no trigger fired it: `trigger` and `event` are
/// null, so `{{run.trigger}}` renders and `{{run.event.X}}` shows as unrenderable).
pub fn dry_run_scope(ticket: Option<Value>, request: Option<Value>, inputs: Option<Value>, workflow_id: &str) -> Scope {
    Scope {
        ticket: ticket.unwrap_or_else(sample_ticket),
        request,
        inputs: inputs.unwrap_or_else(|| json!({})),
        run: json!({"id": null, "number": 0, "workflow_id": workflow_id, "trigger": null, "event": null}),
    }
}

/// Every way `inputs` fails the playbook's `inputs` schema, with pointers under `/inputs`. A
/// playbook without a schema takes any object.
pub fn input_errors(schema: Option<&Value>, inputs: &Value) -> Vec<FieldError> {
    if !inputs.is_object() {
        return vec![FieldError::new("/inputs", "type", "the inputs are an object")];
    }
    let Some(schema) = schema else { return Vec::new() };
    match crate::forms::check_answers(schema, inputs, "/inputs") {
        Ok(errors) => errors,
        // the schema was checked when the playbook was saved; one that no longer compiles
        // refuses every input rather than admitting any
        Err(e) => vec![FieldError::new("/inputs", "schema", format!("the playbook's inputs schema is invalid: {e}"))],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn issues_keep_their_location_and_kind() {
        let yaml = "name: x\nsteps:\n  - id: a\n    action: nope\n  - id: b\n    action: wait\n    needs: [zz]\n";
        let errors = archer_orchestrator::playbook::parse(yaml).unwrap_err();
        let fields = issue_errors(&errors);
        let found: Vec<(&str, &str, Option<u64>)> =
            fields.iter().map(|f| (f.pointer.as_str(), f.code.as_str(), f.line)).collect();
        assert!(found.contains(&("/steps/0/action", "unknown_action", Some(4))), "{found:?}");
        assert!(found.contains(&("/steps/1/needs/0", "missing_need", Some(7))), "{found:?}");
        let lines = issue_lines("pb.yaml", &errors);
        assert!(lines.iter().any(|l| l.starts_with("pb.yaml:4:") && l.contains(": unknown_action: ")), "{lines:?}");
    }

    #[test]
    fn inputs_are_checked_against_the_schema_with_pointers() {
        let schema = json!({"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}});
        let errs = input_errors(Some(&schema), &json!({"reason": 3}));
        assert_eq!(errs[0].pointer, "/inputs/reason");
        assert_eq!(input_errors(Some(&schema), &json!({}))[0].pointer, "/inputs/reason");
        assert!(input_errors(Some(&schema), &json!({"reason": "why"})).is_empty());
        assert!(input_errors(None, &json!({"any": 1})).is_empty());
        assert_eq!(input_errors(None, &json!([1]))[0].code, "type");
    }
}
