//! The playbooks Archer ships (`playbooks/*.yaml`) are valid twice over: for editors, against
//! `schemas/playbook.schema.json`, and for Archer, against the domain's validator. The schema
//! must say what the domain says: it refuses what the domain's model refuses, and its per-action
//! `with` shapes agree with the domain's action input schemas.

use std::path::{Path, PathBuf};

use archer_domain::playbook::{CheckEnv, Trigger, actions, parse, validate};
use serde_json::{Value, json};

/// The repository root (this crate lives in `orchestrator/domain`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("schemas/playbook.schema.json")).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("the schema does not compile: {e}"))
}

/// What an editor sees: the YAML document as JSON.
fn as_json(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}"))
}

/// `(file name, source)` of every shipped playbook, sorted by name.
fn shipped() -> Vec<(String, String)> {
    let dir = root().join("playbooks");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, source)
        })
        .collect();
    files.sort();
    files
}

/// The schema's complaints about `instance`, as `pointer: message` lines.
fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema: Value = serde_json::from_str(&read("schemas/playbook.schema.json")).expect("the schema is JSON");
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("not a valid schema: {e}");
    }
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // every action the domain ships is offered to editors, and nothing else
    let offered = &schema["$defs"]["step"]["properties"]["action"]["enum"];
    assert_eq!(offered, &json!(archer_domain::playbook::ACTIONS), "the schema's actions are the domain's");
}

#[test]
fn the_five_playbooks_are_shipped_with_the_editor_header() {
    let names: Vec<String> = shipped().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["access-grant.yaml", "laptop-order.yaml", "major-incident.yaml", "onboarding.yaml", "standard-change.yaml"]
    );
    for (file, source) in shipped() {
        assert!(
            source.starts_with("# yaml-language-server: $schema=../schemas/playbook.schema.json\n"),
            "{file}: the first line points editors to the schema"
        );
        let playbook = parse(&source).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(format!("{}.yaml", playbook.name.value), file, "{file}: the file is named after the playbook");
        assert!(!playbook.description.trim().is_empty(), "{file}: has a description");
        assert!(!playbook.triggers.is_empty(), "{file}: has a trigger");
    }
}

#[test]
fn every_shipped_playbook_matches_the_schema() {
    let validator = schema();
    for (file, source) in shipped() {
        let errors = schema_errors(&validator, &as_json(&source));
        assert!(errors.is_empty(), "{file} does not match schemas/playbook.schema.json:\n{}", errors.join("\n"));
    }
}

#[test]
fn every_shipped_playbook_passes_archers_validator() {
    for (file, source) in shipped() {
        if let Err(errors) = validate(&source, &CheckEnv::default()) {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            panic!("{file} is refused:\n{}", lines.join("\n"));
        }
    }
}

/// The demo's connections (seeded with the demo data) and each catalog item's form: the
/// playbooks that fulfil catalog items read only fields the item's form has.
#[test]
fn catalog_playbooks_read_only_their_forms_fields_and_the_demo_connections() {
    let forms =
        [("new-starter", "schemas/catalog/onboarding.schema.json"), ("laptop", "schemas/catalog/laptop.schema.json")];
    let connections: Vec<String> = ["graph", "vendor", "slack", "status-page"].map(String::from).to_vec();
    let mut checked = 0;
    for (file, source) in shipped() {
        let playbook = parse(&source).unwrap_or_else(|e| panic!("{file}: {e}"));
        let item = playbook.triggers.iter().find_map(|t| match &t.value {
            Trigger::CatalogFulfilment { item } => Some(item.clone()),
            _ => None,
        });
        let form = item.map(|item| {
            let (_, path) =
                forms.iter().find(|(slug, _)| *slug == item).unwrap_or_else(|| panic!("{file}: no form for {item}"));
            serde_json::from_str::<Value>(&read(path)).expect("a form is JSON")
        });
        checked += usize::from(form.is_some());
        let env = CheckEnv { form, connections: Some(connections.clone()) };
        if let Err(errors) = validate(&source, &env) {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            panic!("{file} is refused against the demo data:\n{}", lines.join("\n"));
        }
    }
    assert_eq!(checked, 2, "onboarding and laptop-order fulfil catalog items");
}

/// A one-step playbook around `step`.
fn with_step(step: Value) -> Value {
    json!({"name": "x", "steps": [step]})
}

#[test]
fn the_schema_refuses_broken_documents() {
    let validator = schema();
    let cases = [
        ("unknown action", with_step(json!({"id": "a", "action": "slack.post", "with": {}}))),
        ("missing steps", json!({"name": "x"})),
        ("missing name", json!({"steps": []})),
        ("empty name", json!({"name": " ", "steps": []})),
        ("unknown top-level field", json!({"name": "x", "steps": [], "step": []})),
        (
            "bad on_failure",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "on_failure": "stop"})),
        ),
        (
            "on_failure with two keys",
            with_step(
                json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "on_failure": {"compensate": "b", "fail": null}}),
            ),
        ),
        (
            "unknown step field",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "retries": 3})),
        ),
        ("bad step id", with_step(json!({"id": "1st", "action": "wait", "with": {"duration": "1m"}}))),
        (
            "bad duration",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "timeout": "soon"})),
        ),
        ("duration without unit", with_step(json!({"id": "a", "action": "wait", "with": {"duration": "30"}}))),
        (
            "needs as a string",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "needs": "b"})),
        ),
        (
            "zero attempts",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "retry": {"attempts": 0}})),
        ),
        (
            "unknown retry field",
            with_step(json!({"id": "a", "action": "wait", "with": {"duration": "1m"}, "retry": {"tries": 2}})),
        ),
        ("max_parallel 0", json!({"name": "x", "steps": [], "max_parallel": 0})),
        ("action without inputs", with_step(json!({"id": "a", "action": "ticket.comment"}))),
        (
            "http.request without path",
            with_step(json!({"id": "a", "action": "http.request", "with": {"connection": "c"}})),
        ),
        (
            "secret outside http.request headers",
            with_step(json!({"id": "a", "action": "ticket.comment", "with": {"body": "token {{ secrets.slack }}"}})),
        ),
        ("unknown trigger", json!({"name": "x", "steps": [], "triggers": ["sla_escalation"]})),
        ("struct trigger as a string", json!({"name": "x", "steps": [], "triggers": ["ticket_created"]})),
        ("catalog trigger without item", json!({"name": "x", "steps": [], "triggers": [{"catalog_fulfilment": {}}]})),
        (
            "two triggers in one entry",
            json!({"name": "x", "steps": [], "triggers": [{"manual": null, "sla_breach": null}]}),
        ),
        ("unit trigger with settings", json!({"name": "x", "steps": [], "triggers": [{"manual": {"x": 1}}]})),
    ];
    for (what, document) in cases {
        assert!(!validator.is_valid(&document), "the schema accepts a document with {what}: {document}");
    }
}

/// The domain reads the same documents the schema refuses as errors too (the structural cases:
/// the rest are the validator's `check`).
#[test]
fn the_domain_refuses_what_the_schema_refuses() {
    let cases = [
        "name: x\nsteps:\n  - id: a\n    action: slack.post\n",
        "name: x\n",
        "name: x\nsteps:\n  - id: a\n    action: wait\n    with: { duration: 1m }\n    on_failure: stop\n",
        "name: x\nsteps: []\nstep: []\n",
        "name: x\nsteps: []\ntriggers: [ticket_created]\n",
        "name: x\nsteps: []\ntriggers: [{ catalog_fulfilment: {} }]\n",
        "name: x\nsteps: []\ntriggers: [{ manual: { x: 1 } }]\n",
        "name: x\nsteps:\n  - id: a\n    action: wait\n    with: { duration: 1m }\n    timeout: soon\n",
    ];
    let validator = schema();
    for yaml in cases {
        assert!(!validator.is_valid(&as_json(yaml)), "the schema accepts:\n{yaml}");
        assert!(parse(yaml).is_err(), "the domain accepts:\n{yaml}");
    }
}

/// The forms the domain's model reads, written the ways YAML allows, are accepted by the schema.
#[test]
fn the_schema_accepts_every_form_the_model_reads() {
    let yaml = r#"name: forms
description: every trigger and on_failure form
triggers:
  - manual
  - sla_warning
  - sla_breach:
  - manual: null
  - catalog_fulfilment: { item: laptop }
  - ticket_created: {}
  - ticket_changed: { condition: 'ticket.status == "resolved"' }
inputs: { type: object, properties: { level: { enum: [read, write] } } }
max_parallel: 2
steps:
  - id: first_step
    action: wait
    with: { until: 'ticket.status == "closed"', timeout: 1h 30m }
    on_failure: continue
  - id: Second-step
    action: ticket.update
    needs: [first_step]
    when: 'inputs.level == "write"'
    unless: ticket.priority == 4
    with: { priority: "{{ ticket.priority }}", fields: { cost_centre: CC-1234 } }
    retry: { attempts: 3, initial_interval: 500ms, max_interval: 2m, backoff_coefficient: 1.5, non_retryable: [Refused] }
    timeout: 10s
    idempotency_key: "update-{{run.id}}"
    on_failure: { compensate: undo }
    outputs: { note: done }
  - id: undo
    action: ticket.comment
    with: { body: undone, public: false }
    on_failure: fail
"#;
    let playbook = parse(yaml).unwrap_or_else(|e| panic!("the domain refuses it: {e}"));
    assert_eq!(playbook.triggers.len(), 7);
    let errors = schema_errors(&schema(), &as_json(yaml));
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Each action's `with` in the schema agrees with the domain's input schema for that action.
#[test]
fn action_inputs_agree_with_the_domain() {
    let samples: &[(&str, Value, bool)] = &[
        ("ticket.comment", json!({"body": "hi"}), true),
        ("ticket.comment", json!({"body": "hi", "public": true}), true),
        ("ticket.comment", json!({}), false),
        ("ticket.comment", json!({"body": ""}), false),
        ("ticket.comment", json!({"body": "hi", "public": "yes"}), false),
        ("ticket.comment", json!({"body": "hi", "internal": true}), false),
        ("ticket.update", json!({"status": "resolved"}), true),
        ("ticket.update", json!({"status": "implement"}), true),
        ("ticket.update", json!({"status": "review", "reason": "done"}), true),
        ("ticket.update", json!({"priority": 2, "team": "Service Desk", "fields": {"a": 1}}), true),
        ("ticket.update", json!({}), false),
        ("ticket.update", json!({"priority": 5}), false),
        ("ticket.update", json!({"status": "finished"}), false),
        ("ticket.create_task", json!({"title": "t", "description": "d", "team": "Network Operations"}), true),
        ("ticket.create_task", json!({"team": "Network Operations"}), false),
        ("approval.request", json!({"approvers": ["role:approver"], "rule": "any", "title": "t"}), true),
        ("approval.request", json!({"approvers": ["a", "b"], "rule": 2}), true),
        ("approval.request", json!({"approvers": []}), false),
        ("approval.request", json!({"approvers": ["a"], "rule": 0}), false),
        ("approval.request", json!({"approvers": ["a"], "rule": "most"}), false),
        ("email.send", json!({"to": ["a@x.example"], "subject": "s", "body": "b"}), true),
        ("email.send", json!({"to": "a@x.example", "subject": "s", "body": "b"}), false),
        ("email.send", json!({"to": ["a@x.example"], "subject": "s"}), false),
        ("http.request", json!({"connection": "graph", "path": "/users", "method": "POST", "body": {"a": [1]}}), true),
        ("http.request", json!({"connection": "graph", "path": "{{steps.a.output.body.next}}"}), true),
        (
            "http.request",
            json!({"connection": "graph", "path": "/u", "headers": {"Authorization": "Bearer {{secrets.graph}}"}, "query": {"q": "x"}}),
            true,
        ),
        ("http.request", json!({"connection": "graph", "path": "users"}), false),
        ("http.request", json!({"connection": "graph", "path": "/u", "method": "FETCH"}), false),
        ("http.request", json!({"connection": "graph", "path": "/u", "headers": {"X-Count": 1}}), false),
        ("http.request", json!({"path": "/u"}), false),
        (
            "webhook.post",
            json!({"connection": "status-page", "event_type": "incident.opened", "payload": {"n": 1}}),
            true,
        ),
        ("webhook.post", json!({"connection": "status-page"}), false),
        ("wait", json!({"duration": "5m"}), true),
        ("wait", json!({"until": "ticket.status == 'closed'", "timeout": "1h"}), true),
        ("wait", json!({"until": "ticket.status == 'closed'"}), true),
        ("wait", json!({}), false),
        ("wait", json!({"timeout": "1h"}), false),
    ];
    let validator = schema();
    let mut disagreements = Vec::new();
    for (action, with, expected) in samples {
        let domain_schema = &actions::action(action).unwrap_or_else(|| panic!("no action {action}")).input;
        let domain = jsonschema::draft202012::new(domain_schema).expect("compiles").is_valid(with);
        let document = with_step(json!({"id": "a", "action": action, "with": with}));
        let editor = validator.is_valid(&document);
        if domain != *expected || editor != *expected {
            disagreements.push(format!("{action} {with}: expected {expected}, domain {domain}, schema {editor}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// A demo ticket as the run's scope shows it.
fn sample_ticket(kind: &str, number: &str, priority: u8) -> Value {
    json!({
        "id": "0190f0c4-0000-7000-8000-000000000001", "number": number, "kind": kind,
        "title": "Sample", "description": "A sample ticket.", "status": "new", "priority": priority,
        "impact": "medium", "urgency": "medium", "requester_id": "0190f0c4-0000-7000-8000-000000000002",
        "requester_email": "requester@acme.example", "assignee_id": null, "team_id": null,
        "created_at": "2026-03-02T09:00:00Z"
    })
}

/// The plan of a shipped playbook for demo data: every step renders (no `fail`), and the
/// conditions decide as the playbook means them to (a condition on a step's output, like
/// access-grant's `grant`, is shown skipped: "decided when the run gets there").
#[test]
fn every_shipped_playbook_plans_cleanly_for_demo_data() {
    use archer_domain::playbook::run::{Scope, dry_run};
    let onboarding_fields = json!({
        "full_name": "Jo Doe", "work_email": "jo.doe@acme.example", "start_date": "2026-03-02",
        "department": "engineering", "manager_email": "manager@acme.example",
        "employment": {"type": "permanent"}, "laptop": "standard-14", "needs_vpn": false
    });
    let laptop_fields = json!({"device_type": "desktop", "justification": "The old one no longer boots up."});
    let scopes = [
        (
            "access-grant.yaml",
            "REQ-1",
            "service_request",
            None,
            json!({"system": "github", "level": "write"}),
            vec!["grant"],
        ),
        (
            "laptop-order.yaml",
            "REQ-2",
            "service_request",
            Some(json!({"item": "laptop", "fields": laptop_fields})),
            json!({}),
            vec!["image"],
        ),
        ("major-incident.yaml", "INC-3", "incident", None, json!({}), vec![]),
        (
            "onboarding.yaml",
            "REQ-4",
            "service_request",
            Some(json!({"item": "new-starter", "fields": onboarding_fields})),
            json!({}),
            vec!["vpn_access"],
        ),
        ("standard-change.yaml", "CHG-5", "change", None, json!({}), vec![]),
    ];
    let files: std::collections::BTreeMap<String, String> = shipped().into_iter().collect();
    for (file, number, kind, request, inputs, skipped) in scopes {
        let playbook = parse(&files[file]).unwrap_or_else(|e| panic!("{file}: {e}"));
        let workflow_id = format!("acme/{number}/playbook/{}/1", playbook.name.value);
        let scope = Scope {
            ticket: sample_ticket(kind, number, 1),
            request,
            inputs,
            run: json!({"id": "0190f0c4-0000-7000-8000-000000000003", "number": 1, "workflow_id": workflow_id}),
        };
        let plan = dry_run(&playbook, &scope, &workflow_id);
        assert_eq!(plan.steps.len(), playbook.steps.len(), "{file}: every step is planned: {plan:#?}");
        for step in &plan.steps {
            assert_ne!(step.decision, "fail", "{file}: {} does not render: {:?}", step.id, step.reason);
            let expected_skip = skipped.contains(&step.id.as_str());
            assert_eq!(
                step.decision == "skipped",
                expected_skip,
                "{file}: {} is {} ({:?})",
                step.id,
                step.decision,
                step.reason
            );
        }
    }
}
