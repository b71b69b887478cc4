//! The playbook steps that wait on people, driven end to end through the run workflow against
//! real Temporal, PostgreSQL and SMTP, each test in a tenant of its own with a `manual` run:
//! `approval.request` (a child approval chain the approver, emailed, decides in the app; the
//! step's outcome steers its dependants), `wait` with `until` (re-checked when the ticket
//! changes, or timing out, which is not a failure) and `ticket.create_task` (the step waits
//! for the task to close or be cancelled, and fails when it stays open past its timeout).

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use archer_tests::playbooks::step;
use archer_tests::{TestApp, TestUser, spawn_app};

/// A new incident (status `new`, priority neither 1 nor 2); returns its number.
async fn ticket(app: &TestApp, agent: &TestUser, title: &str) -> String {
    app.incident(agent, title).await["number"].as_str().expect("number").to_owned()
}

/// The run once it has `status`; a failed one once its error is recorded too (the view can
/// show the workflow's live `failed` a moment before the activity recording the run's error
/// has committed).
async fn run_status(app: &TestApp, user: &TestUser, id: &str, status: &str) -> Value {
    app.playbook_run_until(user, id, status, |r| {
        r["status"] == status && (status != "failed" || r["error"].is_string())
    })
    .await
}

fn instant(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("not an instant: {v}")), &Rfc3339).expect("RFC 3339")
}

async fn comments(app: &TestApp, user: &TestUser, number: &str) -> String {
    let r = app.get(Some(&user.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert_eq!(r.status, 200, "comments of {number}: {}", r.body);
    r.body
}

/// The run's workflow replays against the current code.
async fn replays(app: &TestApp, run: &Value, name: &str) {
    let wf = run["workflow_id"].as_str().expect("workflow id");
    archer_tests::temporal::replay_live(&app.temporal().await, wf, &format!("playbook/{name}")).await;
}

// ---------------------------------------------------------------------------------------------
// approval.request

const SIGN_OFF: &str = r#"
name: sign-off
triggers: [manual]
inputs:
  type: object
  required: [approver]
  properties:
    approver: { type: string }
steps:
  - id: approve
    action: approval.request
    with: { approvers: ["{{inputs.approver}}"], title: "Sign-off for {{ticket.number}}" }
  - id: on_approved
    action: ticket.comment
    needs: [approve]
    when: 'steps.approve.output.outcome == "approved"'
    with: { body: "Signed off: {{steps.approve.output.reason}}" }
  - id: on_rejected
    action: ticket.comment
    needs: [approve]
    when: 'steps.approve.output.outcome == "rejected"'
    with: { body: "Turned down: {{steps.approve.output.reason}}" }
"#;

/// A `sign-off` run the approver decided, as it ended.
struct Decided {
    app: TestApp,
    agent: TestUser,
    /// The ticket's number.
    number: String,
    /// The run, finished.
    run: Value,
    /// The approval, decided.
    approval: Value,
}

/// Runs `sign-off` on a new incident; the manager, emailed, decides `decision` in the app with
/// `comment`.
async fn sign_off(decision: &str, comment: &str) -> Decided {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, SIGN_OFF).await;
    let number = ticket(&app, &t.agent, "Needs a sign-off").await;
    let id = app.start_playbook(&t.agent, &number, "sign-off", json!({"approver": t.manager.email})).await;

    // the approver is emailed (with decision links) and the approval waits for them
    let mail = app.approval_mail(&t.manager, &number).await;
    let (approve_link, reject_link) = archer_tests::approvals::decision_links(&mail);
    assert!(approve_link.starts_with(&app.base) && reject_link.starts_with(&app.base), "{}", mail.text);
    let approval = app.approval_of(&t.agent, &number).await;
    let approval_id = approval["id"].as_str().expect("approval id").to_owned();
    assert_eq!(approval["state"], "pending", "{approval:#}");
    assert!(approval["source"].as_str().unwrap_or("").contains("playbook sign-off v1, step approve"), "{approval:#}");
    assert_eq!(approval["pending"][0]["id"], t.manager.id.to_string(), "{approval:#}");
    assert_eq!(approval["steps"][0]["name"], format!("Sign-off for {number}"), "{approval:#}");
    let waiting = app.playbook_run(&t.agent, &id).await;
    assert_eq!(waiting["status"], "running", "{waiting:#}");
    assert_eq!(step(&waiting, "approve")["status"], "running", "{waiting:#}");

    // the approver decides in the app (the API answers 200 once the task is asked)
    let path = format!("/api/v1/approvals/{approval_id}/{decision}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.post(Some(&t.manager.token), &path, &json!({"comment": comment})).await;
        if r.status == 200 {
            assert_eq!(r.json["result"], "recorded", "{}", r.body);
            break;
        }
        assert!(Instant::now() < deadline, "{decision}: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = run_status(&app, &t.agent, &id, "succeeded").await;
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/approvals/{approval_id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // the task: the manager's, decided in the app, with the comment
    let task = &r.json["steps"][0]["tasks"][0];
    assert_eq!(task["approver"]["id"], t.manager.id.to_string(), "{:#}", r.json);
    assert_eq!(task["via"], "app", "{:#}", r.json);
    assert_eq!(task["comment"], comment, "{:#}", r.json);
    assert!(r.json["decided_at"].is_string(), "{:#}", r.json);
    // an approval a playbook asks for leaves the ticket where it was
    let now = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}")).await;
    assert_eq!(now.json["status"], "new", "{}", now.body);
    Decided { app, agent: t.agent, number, run, approval: r.json }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_approval_step_runs_the_step_that_waits_for_approval() {
    let Decided { app, agent, number, run, approval } = sign_off("approve", "Fine by me").await;
    assert_eq!(approval["state"], "approved", "{approval:#}");
    assert_eq!(approval["steps"][0]["tasks"][0]["state"], "approved", "{approval:#}");
    let approve = step(&run, "approve");
    assert_eq!(approve["status"], "succeeded", "{run:#}");
    assert_eq!(approve["output"]["outcome"], "approved", "{run:#}");
    assert_eq!(step(&run, "on_approved")["status"], "succeeded", "{run:#}");
    let skipped = step(&run, "on_rejected");
    assert_eq!(skipped["status"], "skipped", "{run:#}");
    assert!(skipped["reason"].as_str().unwrap_or("").contains("when"), "{run:#}");
    let reason = approve["output"]["reason"].as_str().expect("a reason").to_owned();
    let said = comments(&app, &agent, &number).await;
    assert!(said.contains(&format!("Signed off: {reason}")) && !said.contains("Turned down"), "{said}");
    replays(&app, &run, "approval_approved").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_approval_step_succeeds_with_the_outcome_rejected_and_skips_the_approved_path() {
    let Decided { app, agent, number, run, approval } = sign_off("reject", "Not this quarter").await;
    assert_eq!(approval["state"], "rejected", "{approval:#}");
    assert_eq!(approval["steps"][0]["tasks"][0]["state"], "rejected", "{approval:#}");
    // the chain rejected: the step still succeeds (its outcome says so), and so does the run
    let approve = step(&run, "approve");
    assert_eq!(approve["status"], "succeeded", "{run:#}");
    assert_eq!(approve["output"]["outcome"], "rejected", "{run:#}");
    assert!(run["error"].is_null(), "{run:#}");
    let skipped = step(&run, "on_approved");
    assert_eq!(skipped["status"], "skipped", "{run:#}");
    assert!(skipped["reason"].as_str().unwrap_or("").contains("when"), "{run:#}");
    assert_eq!(step(&run, "on_rejected")["status"], "succeeded", "{run:#}");
    let said = comments(&app, &agent, &number).await;
    assert!(said.contains("Turned down: ") && !said.contains("Signed off"), "{said}");
    replays(&app, &run, "approval_rejected").await;
    app.stop().await;
}

/// `sign-off` whose approval step gives up after `timeout`.
fn sign_off_within(name: &str, timeout: &str) -> String {
    SIGN_OFF
        .replace("name: sign-off", &format!("name: {name}"))
        .replace("    action: approval.request\n", &format!("    action: approval.request\n    timeout: {timeout}\n"))
}

/// The approval a run's step asked for on `number`, once it is `state`.
async fn approval_until(app: &TestApp, user: &TestUser, number: &str, state: &str) -> Value {
    app.approval_until(user, number, state, |a| a["state"] == state).await
}

/// An approval a step asked for is withdrawn (cancelled, its chain told) when the step stops
/// waiting for it: the step's `timeout` passed, the run was cancelled, or the ticket ended. The
/// approver can then no longer decide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_step_withdraws_its_approval_on_timeout_run_cancel_and_ticket_cancel() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, &sign_off_within("sign-off-soon", "3s")).await;
    app.publish_playbook(&t.admin, &sign_off_within("sign-off-later", "10m")).await;
    let approver = json!({"approver": t.manager.email});
    let (late, stopped, ended) = (
        ticket(&app, &t.agent, "Nobody decides").await,
        ticket(&app, &t.agent, "Run cancelled").await,
        ticket(&app, &t.agent, "Ticket cancelled").await,
    );
    let late_run = app.start_playbook(&t.agent, &late, "sign-off-soon", approver.clone()).await;
    let stopped_run = app.start_playbook(&t.agent, &stopped, "sign-off-later", approver.clone()).await;
    let ended_run = app.start_playbook(&t.agent, &ended, "sign-off-later", approver).await;
    for number in [&late, &stopped, &ended] {
        approval_until(&app, &t.agent, number, "pending").await;
    }

    // the step's timeout: the approval is withdrawn and the step fails
    let run = run_status(&app, &t.agent, &late_run, "failed").await;
    let error = step(&run, "approve")["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("the approval was cancelled") && error.contains("timeout (3s)"), "{run:#}");
    let a = approval_until(&app, &t.agent, &late, "cancelled").await;
    let r = app
        .post(
            Some(&t.manager.token),
            &format!("/api/v1/approvals/{}/approve", a["id"].as_str().unwrap_or("")),
            &json!({}),
        )
        .await;
    assert_ne!(r.status, 200, "a withdrawn approval cannot be decided: {}", r.body);

    // the run cancelled: the approval goes with it, the run ends cancelled
    let path = format!("/api/v1/playbook-runs/{stopped_run}/cancel");
    let r = app.post(Some(&t.admin.token), &path, &json!({"reason": "asked elsewhere"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = run_status(&app, &t.agent, &stopped_run, "cancelled").await;
    assert!(run["error"].as_str().unwrap_or("").contains("asked elsewhere"), "{run:#}");
    let a = approval_until(&app, &t.agent, &stopped, "cancelled").await;
    assert!(a["reason"].as_str().unwrap_or("").contains("asked elsewhere"), "{a:#}");

    // the ticket cancelled: its pending approvals end with it, and the step fails so
    app.set_status(&t.agent, &ended, "cancelled").await;
    let a = approval_until(&app, &t.agent, &ended, "cancelled").await;
    assert_eq!(a["reason"], "the ticket was cancelled", "{a:#}");
    let run = run_status(&app, &t.agent, &ended_run, "failed").await;
    let error = step(&run, "approve")["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("the approval was cancelled: the ticket was cancelled"), "{run:#}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// wait … until

const WAIT_FOR_WORK: &str = r#"
name: wait-for-work
triggers: [manual]
steps:
  - id: work_started
    action: wait
    with: { until: 'ticket.status == "in_progress"', timeout: 60s }
  - id: announce
    action: ticket.comment
    needs: [work_started]
    when: 'steps.work_started.output.timed_out == false'
    with: { body: "Work started on {{ticket.number}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_until_ends_as_soon_as_the_ticket_change_makes_its_condition_hold() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, WAIT_FOR_WORK).await;
    let number = ticket(&app, &t.agent, "Waits for work").await;
    let id = app.start_playbook(&t.agent, &number, "wait-for-work", json!({})).await;
    run_status(&app, &t.agent, &id, "running").await;
    // it waits: nothing happens while the condition does not hold
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = app.playbook_run(&t.agent, &id).await;
    assert_eq!(waiting["status"], "running", "{waiting:#}");
    assert_eq!(step(&waiting, "work_started")["status"], "running", "{waiting:#}");
    assert_eq!(step(&waiting, "announce")["status"], "pending", "{waiting:#}");

    let changed = app.set_status(&t.agent, &number, "in_progress").await;
    let changed_at = Instant::now();
    let run = run_status(&app, &t.agent, &id, "succeeded").await;
    let took = changed_at.elapsed();
    assert!(took < Duration::from_secs(10), "the wait ended {took:?} after the change (timeout 60 s)");
    let waited = step(&run, "work_started");
    assert_eq!(waited["status"], "succeeded", "{run:#}");
    assert_eq!(waited["output"], json!({"timed_out": false}), "{run:#}");
    // as the database saw it too: the step ended seconds after the change, not at the timeout
    let lag = instant(&waited["finished_at"]) - instant(&changed["updated_at"]);
    assert!(lag < time::Duration::seconds(10), "finished {lag} after the change: {run:#}");
    assert_eq!(step(&run, "announce")["status"], "succeeded", "{run:#}");
    assert!(comments(&app, &t.agent, &number).await.contains(&format!("Work started on {number}")));
    replays(&app, &run, "wait_until_held").await;
    app.stop().await;
}

const WAIT_IN_VAIN: &str = r#"
name: wait-in-vain
triggers: [manual]
inputs:
  type: object
  properties:
    flag: { type: boolean }
steps:
  - id: resolved
    action: wait
    with: { until: 'ticket.status == "resolved"', timeout: 2s }
  - id: escalated
    action: wait
    timeout: 3s
    with: { until: 'ticket.priority == 1' }
  - id: gave_up
    action: ticket.comment
    needs: [resolved, escalated]
    when: 'steps.resolved.output.timed_out && steps.escalated.output.timed_out'
    with: { body: "Nobody came" }
  - id: unreadable
    action: wait
    on_failure: continue
    with: { until: 'inputs.flag == true', timeout: 30s }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_until_whose_condition_never_holds_times_out_without_failing_and_one_that_fails_fails_at_once() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, WAIT_IN_VAIN).await;
    let number = ticket(&app, &t.agent, "Nobody comes").await;
    let started = Instant::now();
    let id = app.start_playbook(&t.agent, &number, "wait-in-vain", json!({})).await;
    run_status(&app, &t.agent, &id, "running").await;
    // a change the conditions re-check and still refuse
    app.set_status(&t.agent, &number, "in_progress").await;

    let run = run_status(&app, &t.agent, &id, "succeeded").await;
    let took = started.elapsed();
    // `with.timeout` (2 s) and, without one, the step's `timeout` (3 s) bound the waits
    assert!(took >= Duration::from_secs(3), "the waits ended after {took:?}, before their timeouts");
    assert!(took < Duration::from_secs(30), "the waits took {took:?}");
    for s in ["resolved", "escalated"] {
        assert_eq!(step(&run, s)["status"], "succeeded", "{run:#}");
        assert_eq!(step(&run, s)["output"], json!({"timed_out": true}), "{run:#}");
    }
    let (resolved, escalated) =
        (instant(&step(&run, "resolved")["finished_at"]), instant(&step(&run, "escalated")["finished_at"]));
    let created = instant(&run["created_at"]);
    assert!(resolved - created >= time::Duration::seconds(2), "{run:#}");
    assert!(escalated - created >= time::Duration::seconds(3), "{run:#}");
    assert_eq!(step(&run, "gave_up")["status"], "succeeded", "{run:#}");
    assert!(run["error"].is_null(), "{run:#}");
    // a condition that cannot be evaluated (`flag` was not given) fails its step at once, as
    // conditions do, instead of waiting out its 30 s as if it were false
    let unreadable = step(&run, "unreadable");
    assert_eq!(unreadable["status"], "failed", "{run:#}");
    assert!(unreadable["error"].as_str().unwrap_or("").starts_with("`until`: "), "{run:#}");
    assert!(instant(&unreadable["finished_at"]) - created < time::Duration::seconds(10), "{run:#}");
    assert!(comments(&app, &t.agent, &number).await.contains("Nobody came"));
    replays(&app, &run, "wait_until_timed_out").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// ticket.create_task

/// A playbook opening a task for the Facilities team, open at most `timeout`, then commenting.
fn task_playbook(name: &str, timeout: &str) -> String {
    format!(
        r#"
name: {name}
triggers: [manual]
steps:
  - id: badge
    action: ticket.create_task
    timeout: {timeout}
    with: {{ title: "Replace the badge reader for {{{{ticket.number}}}}", description: "Door 3", team: Facilities }}
  - id: report
    action: ticket.comment
    needs: [badge]
    with: {{ body: "Task {{{{steps.badge.output.number}}}} ended {{{{steps.badge.output.status}}}}" }}
"#
    )
}

/// Waits until the run's task step has opened its task (the running step's output names it);
/// returns the task's number.
async fn task_of(app: &TestApp, user: &TestUser, run: &str) -> String {
    let waiting = app
        .playbook_run_until(user, run, "the task to open", |r| step(r, "badge")["output"]["number"].is_string())
        .await;
    assert_eq!(waiting["status"], "running", "{waiting:#}");
    assert_eq!(step(&waiting, "badge")["status"], "running", "{waiting:#}");
    assert_eq!(step(&waiting, "report")["status"], "pending", "{waiting:#}");
    step(&waiting, "badge")["output"]["number"].as_str().expect("number").to_owned()
}

/// Moves a ticket to `closed` along its kind's state machine (whatever the kind), as `agent`.
async fn close(app: &TestApp, agent: &TestUser, number: &str) {
    for _ in 0..4 {
        let r = app.get(Some(&agent.token), &format!("/api/v1/tickets/{number}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.json["status"] == "closed" {
            return;
        }
        let allowed = r.json["allowed_transitions"].as_array().cloned().unwrap_or_default();
        let next = ["closed", "resolved", "in_progress"]
            .into_iter()
            .find(|s| allowed.iter().any(|a| a == s))
            .unwrap_or_else(|| panic!("{number} cannot move towards closed: {}", r.body));
        app.set_status(agent, number, next).await;
    }
    panic!("{number} did not close in four moves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_step_waits_for_its_task_to_close_then_the_run_goes_on() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let team = app.team(&t.admin, "Facilities", &[&t.agent]).await;
    app.publish_playbook(&t.admin, &task_playbook("badge-task", "2m")).await;
    let number = ticket(&app, &t.agent, "Door 3 does not open").await;
    let id = app.start_playbook(&t.agent, &number, "badge-task", json!({})).await;
    let task = task_of(&app, &t.agent, &id).await;
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{task}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["title"], format!("Replace the badge reader for {number}"), "{}", r.body);
    assert_eq!(r.json["team_id"], team.to_string(), "{}", r.body);
    assert!(r.json["description"].as_str().unwrap_or("").contains("Door 3"), "{}", r.body);
    // the run waits while the task is open, also when it is being worked on
    app.set_status(&t.agent, &task, "in_progress").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = app.playbook_run(&t.agent, &id).await;
    assert_eq!(step(&waiting, "badge")["status"], "running", "{waiting:#}");

    close(&app, &t.agent, &task).await;
    let closed_at = Instant::now();
    let run = run_status(&app, &t.agent, &id, "succeeded").await;
    assert!(closed_at.elapsed() < Duration::from_secs(10), "the step ended {:?} after the close", closed_at.elapsed());
    let badge = step(&run, "badge");
    assert_eq!(badge["status"], "succeeded", "{run:#}");
    assert_eq!(badge["output"]["number"], task, "{run:#}");
    assert_eq!(badge["output"]["status"], "closed", "{run:#}");
    assert_eq!(step(&run, "report")["status"], "succeeded", "{run:#}");
    assert!(comments(&app, &t.agent, &number).await.contains(&format!("Task {task} ended closed")));
    replays(&app, &run, "task_closed").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_task_ends_its_step_and_a_task_left_open_past_the_timeout_fails_it() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.team(&t.admin, "Facilities", &[&t.agent]).await;
    app.publish_playbook(&t.admin, &task_playbook("badge-task", "2m")).await;
    app.publish_playbook(&t.admin, &task_playbook("badge-task-soon", "3s")).await;
    let cancelled = ticket(&app, &t.agent, "Door 4 does not open").await;
    let late = ticket(&app, &t.agent, "Door 5 does not open").await;
    // the short one first: its task is seen open before its 3 s are up
    let late_run = app.start_playbook(&t.agent, &late, "badge-task-soon", json!({})).await;
    let late_task = task_of(&app, &t.agent, &late_run).await;
    let cancelled_run = app.start_playbook(&t.agent, &cancelled, "badge-task", json!({})).await;
    let task = task_of(&app, &t.agent, &cancelled_run).await;

    // cancelled: the step succeeds with the task's status, and the run goes on (as documented)
    app.set_status(&t.agent, &task, "cancelled").await;
    let run = run_status(&app, &t.agent, &cancelled_run, "succeeded").await;
    let badge = step(&run, "badge");
    assert_eq!(badge["status"], "succeeded", "{run:#}");
    assert_eq!(badge["output"], json!({"number": task, "status": "cancelled"}), "{run:#}");
    assert_eq!(step(&run, "report")["status"], "succeeded", "{run:#}");
    assert!(comments(&app, &t.agent, &cancelled).await.contains(&format!("Task {task} ended cancelled")));

    // left open past the step's timeout: the step fails, its dependant does not run
    let run = run_status(&app, &t.agent, &late_run, "failed").await;
    let badge = step(&run, "badge");
    assert_eq!(badge["status"], "failed", "{run:#}");
    let error = badge["error"].as_str().unwrap_or("");
    assert!(error.contains(&format!("the task {late_task} was not closed in time")), "{run:#}");
    assert!(run["error"].as_str().unwrap_or("").starts_with("badge: "), "{run:#}");
    assert_ne!(step(&run, "report")["status"], "succeeded", "{run:#}");
    assert!(!comments(&app, &t.agent, &late).await.contains("ended"));
    // the task itself stays open: the run only stopped waiting for it
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{late_task}")).await;
    assert_eq!(r.json["status"], "new", "{}", r.body);
    // the failed run waits for an admin: cancelling ends it
    let r = app
        .post(
            Some(&t.admin.token),
            &format!("/api/v1/playbook-runs/{late_run}/cancel"),
            &json!({"reason": "the door was replaced"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let ended = run_status(&app, &t.agent, &late_run, "cancelled").await;
    assert!(ended["error"].as_str().unwrap_or("").contains("the door was replaced"), "{ended:#}");
    replays(&app, &app.playbook_run(&t.agent, &cancelled_run).await, "task_cancelled").await;
    app.stop().await;
}
