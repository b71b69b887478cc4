//! How people see a playbook run (issue 10): `GET /playbook-runs/{id}` asks the run's workflow
//! while it runs (a `wait` in progress shows `running`, which the database cannot know) and says
//! so (`source`), and answers from the database when the workflow cannot answer (not started,
//! finished, terminated); the ticket's timeline shows the run and each step's state as
//! `playbook_run` and `playbook_step` entries. Each test in a tenant of its own.

use std::time::Duration;

use serde_json::{Value, json};
use temporalio_client::WorkflowTerminateOptions;
use tokio::time::Instant;

use archer_orchestrator::workflows::playbook::PlaybookRunWorkflow;
use archer_tests::playbooks::step;
use archer_tests::{Options, TestApp, TestUser, spawn_app, spawn_app_with};

/// A note, then a wait the test ends by moving the ticket on (or that times out after a minute).
const VIEWS: &str = r#"
name: views
triggers: [manual]
steps:
  - { id: note, action: ticket.comment, with: { body: "Looking into it" } }
  - id: hold
    action: wait
    needs: [note]
    with: { until: 'ticket.status == "in_progress"', timeout: 60s }
"#;

/// A new incident; returns its number.
async fn ticket(app: &TestApp, agent: &TestUser, title: &str) -> String {
    app.incident(agent, title).await["number"].as_str().expect("number").to_owned()
}

/// The run is waiting in `hold`, as its workflow says (the comment done).
fn waiting_live(run: &Value) -> bool {
    run["source"] == "workflow"
        && step(run, "note")["status"] == "succeeded"
        && step(run, "hold")["status"] == "running"
}

/// The ticket's timeline entries as (kind, summary), in the order the API gives them.
async fn timeline(app: &TestApp, user: &TestUser, number: &str) -> Vec<(String, String)> {
    let r = app.get(Some(&user.token), &format!("/api/v1/tickets/{number}/timeline")).await;
    assert_eq!(r.status, 200, "timeline of {number}: {}", r.body);
    let entries = r.json.as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|e| (e["kind"].as_str().unwrap_or("").to_owned(), e["summary"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Where the first entry of `kind` whose summary starts with `summary` is.
fn position(entries: &[(String, String)], kind: &str, summary: &str) -> usize {
    entries
        .iter()
        .position(|(k, s)| k == kind && s.starts_with(summary))
        .unwrap_or_else(|| panic!("no {kind} entry starting {summary:?} in {entries:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_run_is_shown_live_from_its_workflow_and_its_steps_are_on_the_ticket_timeline() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, VIEWS).await;
    let number = ticket(&app, &t.agent, "Printer on fire").await;
    let id = app.start_playbook(&t.agent, &number, "views", json!({})).await;

    // while it waits, the workflow says so; the database has no word for a wait in progress
    let live = app.playbook_run_until(&t.agent, &id, "the wait, live", waiting_live).await;
    assert_eq!(live["status"], "running", "{live:#}");
    assert_eq!(live["round"], 0, "{live:#}");
    assert_eq!(step(&live, "hold")["round"], 0, "{live:#}");
    let comment_id = step(&live, "note")["output"]["comment_id"].as_str().expect("comment id").to_owned();
    assert_eq!(step(&live, "note")["attempts"], 1, "attempts come from the database: {live:#}");
    let listed = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/playbook-runs")).await;
    let recorded = &listed.json[0];
    assert_eq!(recorded["source"], "database", "{recorded:#}");
    assert_eq!(recorded["round"], Value::Null, "{recorded:#}");
    assert_eq!(step(recorded, "hold")["status"], "pending", "a wait is not recorded as running: {recorded:#}");

    // the timeline tells the run's story in order, with no raw table rows
    let entries = timeline(&app, &t.agent, &number).await;
    let started = position(&entries, "playbook_run", "playbook views v1, run 1 started (trigger: manual)");
    let pending = position(&entries, "playbook_step", "step note (ticket.comment) pending");
    let running = position(&entries, "playbook_step", "step note (ticket.comment) running (attempt 1)");
    let done = position(&entries, "playbook_step", "step note (ticket.comment) succeeded: ");
    assert!(started < pending && pending < running && running < done, "out of order: {entries:#?}");
    assert_eq!(entries[done].1, format!("step note (ticket.comment) succeeded: comment_id={comment_id}"));
    position(&entries, "playbook_step", "step hold (wait) pending");
    position(&entries, "playbook_run", "playbook views v1, run 1 follows this ticket's changes");
    let raw: Vec<_> = entries.iter().filter(|(_, s)| s.contains("playbook_")).collect();
    assert!(raw.is_empty(), "raw playbook rows on the timeline: {raw:#?}");

    // moving the ticket on ends the wait; a finished run answers from the database
    app.set_status(&t.agent, &number, "in_progress").await;
    let ended = app
        .playbook_run_until(&t.agent, &id, "the recorded end", |r| {
            r["source"] == "database" && r["status"] == "succeeded"
        })
        .await;
    assert_eq!(step(&ended, "hold")["status"], "succeeded", "{ended:#}");
    assert_eq!(ended["round"], Value::Null, "{ended:#}");
    let entries = timeline(&app, &t.agent, &number).await;
    let finished = position(&entries, "playbook_run", "playbook views v1, run 1 succeeded");
    assert!(finished > done, "{entries:#?}");
    position(&entries, "playbook_step", "step hold (wait) succeeded: timed_out=false");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_whose_workflow_is_gone_is_shown_as_recorded() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, VIEWS).await;
    let number = ticket(&app, &t.agent, "Workflow terminated by ops").await;
    let id = app.start_playbook(&t.agent, &number, "views", json!({})).await;
    let live = app.playbook_run_until(&t.agent, &id, "the wait, live", waiting_live).await;
    let wf = live["workflow_id"].as_str().expect("workflow id").to_owned();

    // someone terminates the workflow in Temporal: the run is still readable, as recorded
    let client = app.temporal().await;
    let handle = client.get_workflow_handle::<PlaybookRunWorkflow>(wf);
    handle.terminate(WorkflowTerminateOptions::builder().reason("e2e: gone").build()).await.expect("terminate");
    let asked = Instant::now();
    let recorded = app.playbook_run_until(&t.agent, &id, "the database's answer", |r| r["source"] == "database").await;
    assert!(asked.elapsed() < Duration::from_secs(10), "the fallback took {:?}", asked.elapsed());
    assert_eq!(recorded["status"], "running", "{recorded:#}");
    assert_eq!(recorded["round"], Value::Null, "{recorded:#}");
    assert_eq!(step(&recorded, "note")["status"], "succeeded", "{recorded:#}");
    assert_eq!(step(&recorded, "hold")["status"], "pending", "{recorded:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_whose_workflow_has_not_started_is_shown_as_recorded() {
    // no relay: the run's start stays in the outbox, so Temporal does not know the workflow
    let app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, VIEWS).await;
    let number = ticket(&app, &t.agent, "Not started yet").await;
    let id = app.start_playbook(&t.agent, &number, "views", json!({})).await;
    let asked = Instant::now();
    let run = app.playbook_run(&t.agent, &id).await;
    assert!(asked.elapsed() < Duration::from_secs(5), "the fallback took {:?}", asked.elapsed());
    assert_eq!(run["source"], "database", "{run:#}");
    assert_eq!(run["status"], "pending", "{run:#}");
    assert_eq!(step(&run, "note")["status"], "pending", "{run:#}");
    app.stop().await;
}
