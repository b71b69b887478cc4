//! The actions a step can name, each with the JSON Schema of its inputs and outputs. The
//! validator checks a step's `with` against the input schema and `{{steps.X.output.Y}}`
//! against the output schema; `schemas/playbook.schema.json` says the same for editors.

use std::sync::LazyLock;

use serde_json::{Value, json};

/// One action Archer ships.
#[derive(Debug)]
pub struct Action {
    pub name: &'static str,
    pub input: Value,
    pub output: Value,
    /// Inputs where `{{secrets.NAME}}` may appear (filled in by the activity alone).
    pub secret_inputs: &'static [&'static str],
    /// The input naming the connection the action uses (and whose secret it may read).
    pub connection_input: Option<&'static str>,
}

impl Action {
    /// Whether the output schema lets a template read `path` (below `output`): known
    /// properties, or anything below an open object.
    pub fn output_has(&self, path: &[String]) -> bool {
        let mut schema = &self.output;
        for key in path {
            if schema.get("type") != Some(&json!("object")) {
                // a number or string has nothing below it; an untyped value could hold anything
                return schema.get("type").is_none();
            }
            match schema.get("properties").and_then(|p| p.get(key)) {
                Some(s) => schema = s,
                None => return schema.get("additionalProperties") != Some(&json!(false)),
            }
        }
        true
    }
}

fn string() -> Value {
    json!({"type": "string", "minLength": 1})
}

fn duration() -> Value {
    json!({"type": "string", "description": "a duration: 30s, 5m, 2h, 3d"})
}

static ACTIONS: LazyLock<Vec<Action>> = LazyLock::new(|| {
    vec![
        Action {
            name: "ticket.comment",
            input: json!({"type": "object", "additionalProperties": false, "required": ["body"],
                "properties": {"body": string(), "public": {"type": "boolean"}}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"comment_id": {"type": "string"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
        Action {
            name: "ticket.update",
            input: json!({"type": "object", "additionalProperties": false, "minProperties": 1,
                "properties": {
                    // every `Status::as_str` (the kind's state machine decides which one is allowed)
                    "status": {"enum": ["new", "in_progress", "waiting_on_customer", "resolved", "closed", "cancelled",
                                        "assess", "authorize", "scheduled", "implement", "review",
                                        "root_cause_analysis", "fix_in_progress", "pending_approval", "rejected"]},
                    "priority": {"type": "integer", "minimum": 1, "maximum": 4},
                    "assignee": string(), "team": string(),
                    "fields": {"type": "object"}, "reason": string()}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"number": {"type": "string"}, "status": {"type": "string"}, "priority": {"type": "integer"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
        Action {
            name: "ticket.create_task",
            input: json!({"type": "object", "additionalProperties": false, "required": ["title"],
                "properties": {"title": string(), "description": {"type": "string"}, "team": string(), "assignee": string()}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"number": {"type": "string"}, "status": {"type": "string"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
        Action {
            name: "approval.request",
            input: json!({"type": "object", "additionalProperties": false, "required": ["approvers"],
                "properties": {
                    "approvers": {"type": "array", "minItems": 1, "items": string()},
                    "rule": {"oneOf": [{"enum": ["all", "any"]}, {"type": "integer", "minimum": 1}]},
                    "title": string()}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"outcome": {"enum": ["approved", "rejected"]}, "reason": {"type": "string"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
        Action {
            name: "email.send",
            input: json!({"type": "object", "additionalProperties": false, "required": ["to", "subject", "body"],
                "properties": {"to": {"type": "array", "minItems": 1, "items": string()}, "subject": string(), "body": string()}}),
            output: json!({"type": "object", "additionalProperties": false, "properties": {"sent": {"type": "integer"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
        Action {
            name: "http.request",
            input: json!({"type": "object", "additionalProperties": false, "required": ["connection", "path"],
                "properties": {
                    "connection": string(),
                    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                    "path": {"type": "string", "pattern": "^(/|\\{\\{)"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "query": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {}}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"status": {"type": "integer"}, "body": {}, "headers": {"type": "object"}}}),
            secret_inputs: &["headers"],
            connection_input: Some("connection"),
        },
        Action {
            name: "webhook.post",
            input: json!({"type": "object", "additionalProperties": false, "required": ["connection", "event_type"],
                "properties": {"connection": string(), "event_type": string(), "payload": {}}}),
            output: json!({"type": "object", "additionalProperties": false,
                "properties": {"status": {"type": "integer"}, "webhook_id": {"type": "string"}}}),
            secret_inputs: &[],
            connection_input: Some("connection"),
        },
        Action {
            name: "wait",
            input: json!({"type": "object", "additionalProperties": false,
                "properties": {"duration": duration(), "until": string(), "timeout": duration()},
                "oneOf": [{"required": ["duration"], "not": {"required": ["until"]}}, {"required": ["until"]}]}),
            output: json!({"type": "object", "additionalProperties": false, "properties": {"timed_out": {"type": "boolean"}}}),
            secret_inputs: &[],
            connection_input: None,
        },
    ]
});

/// The action called `name`.
pub fn action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Every action, in the order the documentation lists them.
pub fn all() -> &'static [Action] {
    &ACTIONS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_action_has_schemas_that_compile() {
        for name in super::super::ACTIONS {
            let a = action(name).unwrap_or_else(|| panic!("{name} has no definition"));
            assert!(jsonschema::validator_for(&a.input).is_ok(), "{name} input");
            assert!(jsonschema::validator_for(&a.output).is_ok(), "{name} output");
        }
        assert_eq!(all().len(), super::super::ACTIONS.len());
    }

    #[test]
    fn outputs_are_read_by_their_schema() {
        let http = action("http.request").unwrap();
        assert!(http.output_has(&["body".into(), "id".into()]));
        assert!(http.output_has(&["status".into()]));
        assert!(!http.output_has(&["stauts".into()]));
        assert!(!http.output_has(&["status".into(), "x".into()]));
    }
}
