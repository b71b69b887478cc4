//! The playbook API (issue 10): saving checks a document completely and refuses it with every
//! problem located by pointer, line and column, storing nothing; versions go draft → published
//! → retired; a dry run has no side effect at all; connection secrets are write-only; manual
//! runs need a manual trigger and inputs that pass the playbook's schema, and answer 202 with
//! the run's intent in the outbox; requesters may do none of it.

use archer_tests::{Options, Resp, TestApp, TestUser, spawn_app_with};
use reqwest::Method;
use serde_json::json;

/// No worker and no relay: what the API records stays where a test can see it.
async fn app() -> TestApp {
    spawn_app_with(Options { worker: false, relay: false }).await
}

async fn save_yaml(app: &TestApp, user: &TestUser, yaml: &str) -> Resp {
    app.raw(Method::POST, Some(&user.token), "/api/v1/playbooks", "application/yaml", yaml.as_bytes().to_vec()).await
}

async fn count(app: &TestApp, sql: &str, tenant: uuid::Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(tenant).fetch_one(&app.pool).await.unwrap()
}

/// Rows a playbook request could leave, in the tenant: playbooks, versions, runs, outbox, audit.
async fn footprint(app: &TestApp, tenant: uuid::Uuid) -> [i64; 5] {
    [
        count(app, "SELECT count(*) FROM playbooks WHERE tenant_id = $1", tenant).await,
        count(app, "SELECT count(*) FROM playbook_versions WHERE tenant_id = $1", tenant).await,
        count(app, "SELECT count(*) FROM playbook_runs WHERE tenant_id = $1", tenant).await,
        count(app, "SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant).await,
        count(app, "SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant).await,
    ]
}

const COMMENT: &str = "name: triage-note
description: Leaves a note, waits, leaves another.
triggers:
  - manual
inputs:
  type: object
  required: [reason]
  properties:
    reason: { type: string, minLength: 3 }
steps:
  - id: note
    action: ticket.comment
    with: { body: \"Triage started: {{inputs.reason}}\" }
  - id: pause
    action: wait
    needs: [note]
    with: { duration: 1s }
  - id: done
    action: ticket.comment
    needs: [pause]
    with: { body: Triage done }
";

fn alias_bomb() -> String {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    format!("name: bomb\nsteps: []\ninputs:\n  {}", yaml.replace('\n', "\n  "))
}

#[tokio::test]
async fn invalid_playbooks_are_refused_with_every_problem_located_and_nothing_stored() {
    let app = app().await;
    let t = app.tenant().await;
    let before = footprint(&app, t.id).await;
    let huge = format!("name: huge\nsteps: []\ndescription: '{}'\n", "x".repeat(5 * 1024 * 1024));
    // (why, document, the kinds it must report, a pointer it must name)
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        (
            "a cycle",
            "name: c\nsteps:\n  - id: a\n    action: wait\n    needs: [b]\n    with: { duration: 1s }\n  - id: b\n    action: wait\n    needs: [a]\n    with: { duration: 1s }\n".into(),
            vec!["cycle"],
            "",
        ),
        ("an unknown action", "name: u\nsteps:\n  - id: a\n    action: slack.post\n".into(), vec!["unknown_action"], "/steps/0/action"),
        (
            "a missing step and an unknown action together",
            "name: m\nsteps:\n  - id: a\n    action: nope\n  - id: b\n    action: wait\n    needs: [ghost]\n    with: { duration: 1s }\n".into(),
            vec!["unknown_action", "missing_need"],
            "/steps/1/needs/0",
        ),
        ("a YAML alias bomb", alias_bomb(), vec!["yaml"], ""),
        ("a 5 MB document", huge, vec!["too_large"], "/"),
        (
            "a bad duration",
            "name: d\nsteps:\n  - id: a\n    action: wait\n    timeout: soon\n    with: { duration: 1s }\n".into(),
            vec!["bad_duration"],
            "/steps/0/timeout",
        ),
        ("not YAML at all", "name: [unclosed\n".into(), vec!["yaml"], ""),
    ];
    for (why, yaml, kinds, pointer) in cases {
        let r = save_yaml(&app, &t.admin, &yaml).await;
        let p = r.problem(422);
        let errors = p["errors"].as_array().unwrap_or_else(|| panic!("{why}: no errors[]: {}", r.body));
        for e in errors {
            assert!(e["line"].as_u64().is_some_and(|l| l > 0), "{why}: no line in {e}");
            assert!(e["column"].as_u64().is_some_and(|c| c > 0), "{why}: no column in {e}");
            assert!(e["pointer"].is_string() && e["detail"].is_string(), "{why}: {e}");
        }
        let codes: Vec<&str> = errors.iter().filter_map(|e| e["code"].as_str()).collect();
        for kind in kinds {
            assert!(codes.contains(&kind), "{why}: expected {kind} in {codes:?}");
        }
        if !pointer.is_empty() {
            assert!(r.pointers().iter().any(|p| p == pointer), "{why}: expected {pointer} in {:?}", r.pointers());
        }
    }
    // the same document as JSON, and a catalog trigger naming an item that does not exist
    let unknown_item = "name: fulfil\ntriggers:\n  - catalog_fulfilment: { item: no-such-item }\nsteps: []\n";
    let r = app.post(Some(&t.admin.token), "/api/v1/playbooks", &json!({"source": unknown_item})).await;
    r.problem(422);
    assert_eq!(r.json["errors"][0]["line"], 3, "{}", r.body);
    assert!(r.pointers()[0].starts_with("/triggers/0"), "{:?}", r.pointers());
    // another media type is refused as such
    let r = app.raw(Method::POST, Some(&t.admin.token), "/api/v1/playbooks", "text/plain", b"name: x".to_vec()).await;
    r.problem(415);
    let after = footprint(&app, t.id).await;
    assert_eq!(before[..3], after[..3], "a refused playbook stored something");
    assert_eq!(before[3], after[3], "a refused playbook recorded a workflow intent");
    app.stop().await;
}

#[tokio::test]
async fn versions_go_from_draft_to_published_to_retired() {
    let app = app().await;
    let t = app.tenant().await;
    let token = Some(t.admin.token.as_str());
    let r = save_yaml(&app, &t.admin, COMMENT).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json["version"].as_i64(), r.json["status"].as_str()), (Some(1), Some("draft")), "{}", r.body);
    let id = r.json["playbook_id"].as_str().unwrap().to_owned();
    // saving again replaces the draft, as JSON this time
    let r = app.post(token, "/api/v1/playbooks", &json!({"source": COMMENT.replace("Triage done", "Done")})).await;
    assert_eq!((r.status, r.json["version"].as_i64()), (201, Some(1)), "{}", r.body);
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/versions/1/publish"), &json!({})).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("published")), "{}", r.body);
    // published is immutable: the next save is version 2, a draft
    let r = save_yaml(&app, &t.admin, COMMENT).await;
    assert_eq!((r.status, r.json["version"].as_i64(), r.json["status"].as_str()), (201, Some(2), Some("draft")));
    let v1 = app.get(token, &format!("/api/v1/playbooks/{id}/versions/1")).await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert!(v1.json["source"].as_str().unwrap().contains("body: Done"), "{}", v1.body);
    // publishing v2 retires v1; publishing it again conflicts
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/versions/2/publish"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.post(token, &format!("/api/v1/playbooks/{id}/versions/2/publish"), &json!({})).await.problem(409);
    let pb = app.get(token, &format!("/api/v1/playbooks/{id}")).await;
    assert_eq!(pb.status, 200, "{}", pb.body);
    let statuses: Vec<(i64, String)> = pb.json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(statuses, [(2, "published".to_owned()), (1, "retired".to_owned())], "{}", pb.body);
    // retiring the published version leaves none published
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/versions/2/retire"), &json!({})).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("retired")), "{}", r.body);
    app.post(token, &format!("/api/v1/playbooks/{id}/versions/2/retire"), &json!({})).await.problem(409);
    app.get(token, &format!("/api/v1/playbooks/{id}/versions/9")).await.problem(404);
    let list = app.get(token, "/api/v1/playbooks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json.as_array().unwrap().len(), 1, "{}", list.body);
    assert_eq!(list.json[0]["name"], "triage-note");
    app.stop().await;
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_and_changes_nothing() {
    let app = app().await;
    let t = app.tenant().await;
    let token = Some(t.admin.token.as_str());
    let ticket = app.incident(&t.agent, "Printer on fire").await;
    let number = ticket["number"].as_str().unwrap();
    let r = save_yaml(&app, &t.admin, COMMENT).await;
    let id = r.json["playbook_id"].as_str().unwrap().to_owned();
    let before = footprint(&app, t.id).await;
    let r = app
        .post(
            token,
            &format!("/api/v1/playbooks/{id}/dry-run"),
            &json!({"ticket": number, "inputs": {"reason": "smoke"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["waves"], json!([["note"], ["pause"], ["done"]]), "{}", r.body);
    assert_eq!(r.json["steps"][0]["input"]["body"], "Triage started: smoke", "{}", r.body);
    // keys like a real run's on this ticket, but never one a run sends
    let key = r.json["steps"][0]["idempotency_key"].as_str().unwrap();
    assert!(key.contains(&format!("/{number}/playbook/triage-note/dry-run")), "{key}");
    // without a ticket: a sample one
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/dry-run"), &json!({"inputs": {"reason": "smoke"}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // an unknown ticket or version is a 422 naming it
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/dry-run"), &json!({"ticket": "INC-999999"})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/ticket");
    let r = app.post(token, &format!("/api/v1/playbooks/{id}/dry-run"), &json!({"version": 7})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/version");
    assert_eq!(footprint(&app, t.id).await, before, "a dry run left rows (playbooks, versions, runs, outbox, audit)");
    app.stop().await;
}

#[tokio::test]
async fn connection_secrets_are_write_only() {
    let app = app().await;
    let t = app.tenant().await;
    let token = Some(t.admin.token.as_str());
    let secret = "hunter2-connection-secret-4f1c";
    let body =
        json!({"name": "graph", "base_url": "https://graph.example.com/v1.0", "auth": "bearer", "secret": secret});
    let mut seen = Vec::new();
    let r = app.post(token, "/api/v1/connections", &body).await;
    assert_eq!((r.status, r.json["has_secret"].as_bool()), (201, Some(true)), "{}", r.body);
    let id = r.json["id"].as_str().unwrap().to_owned();
    seen.push(r.body);
    seen.push(app.get(token, "/api/v1/connections").await.body);
    seen.push(app.get(token, "/api/v1/connections/graph").await.body);
    seen.push(app.get(token, &format!("/api/v1/connections/{id}")).await.body);
    let r = app.patch(token, "/api/v1/connections/graph", &json!({"secret": format!("{secret}-rotated")})).await;
    assert_eq!((r.status, r.json["has_secret"].as_bool()), (200, Some(true)), "{}", r.body);
    seen.push(r.body);
    // a name taken, a bad URL, a bearer connection without a secret: refused by pointer
    let r = app.post(token, "/api/v1/connections", &body).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/name");
    let bad = json!({"name": "x", "base_url": "ftp://files.example", "auth": "bearer"});
    let r = app.post(token, "/api/v1/connections", &bad).await;
    r.problem(422);
    assert_eq!(r.pointers(), ["/base_url", "/secret"]);
    // the secret is in no response, no audit row and not in the table as written
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT concat(before::text, after::text, detail) FROM audit_log WHERE tenant_id = $1")
            .bind(t.id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(audit.iter().any(|a| a.contains("graph.example.com")), "the connection's changes were not audited");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_ciphertext FROM connections WHERE tenant_id = $1")
        .bind(t.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for text in seen.iter().chain(audit.iter()).chain([&String::from_utf8_lossy(&stored).into_owned()]) {
        assert!(!text.contains("hunter2"), "the secret leaked: {text}");
    }
    // `null` removes it; delete removes the connection
    let r = app.patch(token, "/api/v1/connections/graph", &json!({"secret": null})).await;
    assert_eq!((r.status, r.json["has_secret"].as_bool()), (200, Some(false)), "{}", r.body);
    assert_eq!(app.delete(token, "/api/v1/connections/graph").await.status, 204);
    app.get(token, "/api/v1/connections/graph").await.problem(404);
    app.stop().await;
}

#[tokio::test]
async fn manual_runs_need_the_trigger_and_good_inputs_and_are_recorded_with_their_intent() {
    let app = app().await;
    let t = app.tenant().await;
    let admin = Some(t.admin.token.as_str());
    let agent = Some(t.agent.token.as_str());
    let ticket = app.incident(&t.agent, "VPN down for the sales team").await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tickets/{number}/playbook-runs");
    // a published playbook without a manual trigger
    let automatic =
        COMMENT.replace("triggers:\n  - manual\n", "triggers:\n  - sla_breach\n").replace("triage-note", "auto");
    let r = save_yaml(&app, &t.admin, &automatic).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let auto_id = r.json["playbook_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post(admin, &format!("/api/v1/playbooks/{auto_id}/versions/1/publish"), &json!({})).await.status,
        200
    );
    let r = app.post(agent, &path, &json!({"playbook": "auto", "inputs": {"reason": "because"}})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/playbook", "{}", r.body);
    // a draft is not runnable; nor is a playbook that does not exist
    let r = save_yaml(&app, &t.admin, COMMENT).await;
    let id = r.json["playbook_id"].as_str().unwrap().to_owned();
    app.post(agent, &path, &json!({"playbook": "triage-note", "inputs": {"reason": "because"}})).await.problem(422);
    app.post(agent, &path, &json!({"playbook": "nothing-like-it", "inputs": {}})).await.problem(422);
    assert_eq!(app.post(admin, &format!("/api/v1/playbooks/{id}/versions/1/publish"), &json!({})).await.status, 200);
    // inputs the schema refuses, each by pointer
    let r = app.post(agent, &path, &json!({"playbook": "triage-note", "inputs": {"reason": 7}})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/inputs/reason", "{}", r.body);
    let r = app.post(agent, &path, &json!({"playbook": "triage-note", "inputs": {}})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/inputs/reason", "{}", r.body);
    assert_eq!(count(&app, "SELECT count(*) FROM playbook_runs WHERE tenant_id = $1", t.id).await, 0);
    // accepted: 202 with the run, its row and its start intent
    let r = app.post(agent, &path, &json!({"playbook": "triage-note", "inputs": {"reason": "because"}})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let workflow_id = r.json["workflow_id"].as_str().unwrap().to_owned();
    assert_eq!(workflow_id, format!("{}/{number}/playbook/triage-note/1", t.slug));
    let run_id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(count(&app, "SELECT count(*) FROM playbook_runs WHERE tenant_id = $1", t.id).await, 1);
    let starts: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE workflow_id = $1 AND intent = 'start'")
        .bind(&workflow_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(starts, 1, "no start intent for {workflow_id}");
    // the run as recorded, on its own and on its ticket
    let run = app.get(agent, &format!("/api/v1/playbook-runs/{run_id}")).await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!((run.json["playbook"].as_str(), run.json["version"].as_i64()), (Some("triage-note"), Some(1)));
    assert_eq!(run.json["trigger"], "manual");
    let steps: Vec<(&str, &str)> = run.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("note", "pending"), ("pause", "pending"), ("done", "pending")], "{}", run.body);
    let runs = app.get(agent, &path).await;
    assert_eq!(runs.json.as_array().map(Vec::len), Some(1), "{}", runs.body);
    // a run that has not failed cannot be retried; cancelling is for admins
    app.post(admin, &format!("/api/v1/playbook-runs/{run_id}/retry"), &json!({})).await.problem(409);
    app.post(agent, &format!("/api/v1/playbook-runs/{run_id}/cancel"), &json!({"reason": "x"})).await.problem(403);
    app.stop().await;
}

#[tokio::test]
async fn requesters_and_agents_cannot_author_playbooks_or_connections() {
    let app = app().await;
    let t = app.tenant().await;
    let ticket = app.incident(&t.requester, "My laptop is slow").await;
    let number = ticket["number"].as_str().unwrap();
    for user in [&t.requester, &t.agent] {
        save_yaml(&app, user, COMMENT).await.problem(403);
        app.get(Some(&user.token), "/api/v1/connections").await.problem(403);
        let body = json!({"name": "x", "base_url": "https://x.example", "auth": "none"});
        app.post(Some(&user.token), "/api/v1/connections", &body).await.problem(403);
        app.get(Some(&user.token), "/api/v1/playbooks").await.problem(403);
    }
    let r = app
        .post(
            Some(&t.requester.token),
            &format!("/api/v1/tickets/{number}/playbook-runs"),
            &json!({"playbook": "triage-note", "inputs": {"reason": "because"}}),
        )
        .await;
    r.problem(403);
    app.get(Some(&t.requester.token), &format!("/api/v1/tickets/{number}/playbook-runs")).await.problem(403);
    app.stop().await;
}

/// The checks that need more than the document: the catalog item's form, the actions' input
/// schemas and the CEL compiler. One document with all three mistakes is refused with each one
/// located (pointer, line, column); nothing is stored.
#[tokio::test]
async fn form_fields_input_types_and_cel_are_checked_on_save_each_at_its_line() {
    let app = app().await;
    let t = app.tenant().await;
    let spec = json!({"description": "A computer", "form_schema": archer_tests::approvals::laptop_schema()});
    app.catalog_item(&t.admin, "Laptop order", spec).await;
    let before = footprint(&app, t.id).await;
    let yaml = "name: laptop-fulfil
triggers:
  - catalog_fulfilment: { item: laptop-order }
steps:
  - id: note
    action: ticket.comment
    with: { body: \"Ordering a {{request.fields.colour}}\" }
  - id: raise
    action: ticket.update
    with: { priority: high }
  - id: check
    action: ticket.comment
    when: ticket.priority ==
    with: { body: checked }
  - id: who
    action: ticket.comment
    unless: manager.approved
    with: { body: \"{{request.fields.device_type}}\" }
";
    let r = save_yaml(&app, &t.admin, yaml).await;
    let p = r.problem(422);
    let errors = p["errors"].as_array().unwrap_or_else(|| panic!("no errors[]: {}", r.body));
    // (code, pointer, line, what the detail names)
    let expected = [
        ("reference", "/steps/0/with/body", 7, "colour"),
        ("input", "/steps/1/with/priority", 10, "integer"),
        ("cel", "/steps/2/when", 13, ""),
        ("cel", "/steps/3/unless", 17, "manager"),
    ];
    for (code, pointer, line, names) in expected {
        let e = errors
            .iter()
            .find(|e| e["code"] == code && e["pointer"] == pointer)
            .unwrap_or_else(|| panic!("no {code} at {pointer} in {}", r.body));
        assert_eq!(e["line"], line, "{code} at {pointer}: {e}");
        assert!(e["column"].as_u64().is_some_and(|c| c > 0), "{e}");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains(names)), "{code}: {e}");
    }
    assert_eq!(errors.len(), expected.len(), "only the four mistakes are reported: {}", r.body);
    assert_eq!(before, footprint(&app, t.id).await, "a refused playbook left rows behind");
    // the same document with the mistakes mended is saved
    let mended = yaml
        .replace("colour", "device_type")
        .replace("priority: high", "priority: 2")
        .replace("ticket.priority ==", "ticket.priority == 2")
        .replace("manager.approved", "request.fields.device_type == \"desktop\"");
    let r = save_yaml(&app, &t.admin, &mended).await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn a_catalog_item_names_its_fulfilment_playbook_and_the_playbook_finds_the_item() {
    let app = app().await;
    let t = app.tenant().await;
    let token = Some(t.admin.token.as_str());
    let spec = json!({"description": "A computer", "form_schema": archer_tests::approvals::laptop_schema()});
    let item = app.catalog_item(&t.admin, "Laptop order", spec.clone()).await;
    // the trigger names the item by its slug; its form is what `request.fields` reads
    let yaml = "name: laptop-fulfil\ntriggers:\n  - catalog_fulfilment: { item: laptop-order }\nsteps:\n  - id: note\n    action: ticket.comment\n    with: { body: \"Ordering a {{request.fields.device_type}}\" }\n";
    let r = save_yaml(&app, &t.admin, yaml).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["triggers"], json!([{"kind": "catalog_fulfilment", "item": "laptop-order"}]));
    // the item names it (a new version of the item) and shows it
    let mut named = spec;
    named["playbook"] = json!("laptop-fulfil");
    let path = format!("/api/v1/catalog/items/{}", item["id"].as_str().unwrap());
    let r = app.patch(token, &path, &json!({"spec": named})).await;
    assert_eq!((r.status, r.json["spec"]["playbook"].as_str()), (200, Some("laptop-fulfil")), "{}", r.body);
    assert_eq!(app.get(token, &path).await.json["spec"]["playbook"], "laptop-fulfil");
    named["playbook"] = json!("not a name!");
    let r = app.patch(token, &path, &json!({"spec": named})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/spec/playbook");
    app.stop().await;
}
