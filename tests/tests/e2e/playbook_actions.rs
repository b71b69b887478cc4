//! The worker side of playbook steps (`archer_workers::playbooks`), driven directly (no
//! Temporal) against a real database and a local HTTP server: what each action does, that a
//! retried attempt does it once, and the rules of HTTP steps (idempotency key, secrets only in
//! headers and never in the output, private addresses only when allowed, no redirects, Standard
//! Webhooks signatures that verify).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use archer_orchestrator::access::{Permission, Permissions};
use archer_orchestrator::commands::ticket::TicketChange;
use archer_orchestrator::commands::ticket::{Actor, NewTicket};
use archer_orchestrator::workflows::activities::TicketRef;
use archer_orchestrator::workflows::playbook_activities::{RecordRun, StepRecord};
use archer_orchestrator::workflows::playbook_activities::{RunRef, StepCall};
use archer_orchestrator::{Impact, LinkKind, Status, TenantSlug, TicketKind, Urgency};
use archer_store::connections::{self, Auth, ConnectionSpec};
use archer_store::playbooks::{self, StartRun};
use archer_store::secrets::{Cipher, SecretString};
use archer_store::tickets::{self, TicketRow};
use archer_store::{AuditContext, Db, TenantTx, approvals, changes};
use archer_workers::playbooks::{HttpClients, PlaybookActivities, StepError};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use uuid::Uuid;

const PLAYBOOK: &str = "name: actions
triggers:
  - manual
steps:
  - id: note
    action: ticket.comment
    with: { body: \"x\" }
  - id: bump
    action: ticket.update
    with: { priority: 1 }
  - id: close
    action: ticket.update
    with: { status: closed }
  - id: task
    action: ticket.create_task
    with: { title: \"x\" }
  - id: approve
    action: approval.request
    with: { approvers: [\"a@b.c\"] }
  - id: mail
    action: email.send
    with: { to: [\"a@b.c\"], subject: s, body: b }
  - id: call
    action: http.request
    with: { connection: vendor, path: /orders }
  - id: hook
    action: webhook.post
    with: { connection: hooks, event_type: e }
";

const SECRET: &str = "s3cret-token-value";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the local receiver saw: method, path (with query), headers, body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// An HTTP server on 127.0.0.1:0 that records every request and answers by path.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
                let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                record.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    headers: parts.headers.clone(),
                    body,
                });
                answer(&path, port)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(path: &str, port: u16) -> axum::response::Response {
    match path.split('?').next().unwrap_or_default() {
        "/api/orders" => (StatusCode::CREATED, axum::Json(json!({"id": "42"}))).into_response(),
        "/api/redirect" => {
            (StatusCode::FOUND, [("location", format!("http://127.0.0.1:{port}/api/elsewhere"))]).into_response()
        }
        "/api/busy" => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        "/api/bad" => (StatusCode::UNPROCESSABLE_ENTITY, "no such sku").into_response(),
        "/api/echo" => (StatusCode::OK, format!("you sent {SECRET}")).into_response(),
        "/hooks" => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A tenant with an agent and an approver, a ticket, a run of [`PLAYBOOK`] on it, and the
/// activities as the worker builds them (no mailer: emails stay queued).
struct World {
    db: Db,
    tenant_id: Uuid,
    tenant: TenantSlug,
    approver_email: String,
    ticket: TicketRow,
    run: playbooks::RunRow,
    acts: PlaybookActivities,
}

async fn world() -> World {
    let db = archer_tests::fresh_db().await;
    let slug = archer_tests::unique_slug("pa");
    let tenant_id = archer_api::seed::provision_tenant(&db, &slug, "Actions").await.unwrap();
    let email = format!("agent@{slug}.example");
    let agent_id =
        archer_api::seed::provision_user(&db, tenant_id, &email, "Agent", "x", &["admin"], None).await.unwrap();
    let approver_email = format!("approver@{slug}.example");
    archer_api::seed::provision_user(&db, tenant_id, &approver_email, "Approver", "x", &["agent"], None).await.unwrap();
    let agent = Actor::user(agent_id, Permissions::new(Permission::ALL.to_vec()));
    let tenant = TenantSlug::parse(&slug).unwrap();
    let acts = PlaybookActivities {
        pool: db.clone(),
        mailer: None,
        cipher: Cipher::dev(),
        http: HttpClients::new(Duration::from_secs(5)).unwrap(),
        public_url: "http://127.0.0.1:8080".into(),
    };
    let new = NewTicket {
        kind: TicketKind::Incident,
        title: "VPN down".into(),
        description: String::new(),
        impact: Impact::new(3).unwrap(),
        urgency: Urgency::new(3).unwrap(),
        priority: None,
        requester_id: None,
        assignee_id: None,
        team_id: None,
        category: None,
        tags: Vec::new(),
        change_type: None,
        risk: None,
    };
    let ctx = AuditContext { actor_id: Some(agent_id), ..Default::default() };
    let mut tx = TenantTx::begin(&db, tenant_id, &ctx).await.unwrap();
    let ticket = changes::open(&mut tx, &tenant, &new.open(&agent).unwrap()).await.unwrap();
    let parsed = archer_orchestrator::playbook::parse(PLAYBOOK).unwrap();
    let draft =
        playbooks::save_draft(&mut tx, tenant_id, "actions", PLAYBOOK, &playbooks::triggers_json(&parsed), None)
            .await
            .unwrap();
    let version = playbooks::publish(&mut tx, draft.playbook_id, draft.version, None).await.unwrap();
    let start = StartRun {
        version: &version,
        tenant: &tenant,
        ticket: &ticket,
        trigger: "manual",
        event: None,
        inputs: json!({}),
        request: None,
        started_by: Some(agent_id),
    };
    let run = playbooks::start_run(&mut tx, start).await.unwrap();
    tx.commit().await.unwrap();
    World { db, tenant_id, tenant, approver_email, ticket, run, acts }
}

impl World {
    async fn tx(&self) -> TenantTx {
        TenantTx::begin(&self.db, self.tenant_id, &AuditContext::default()).await.unwrap()
    }

    fn call(&self, step: &str, action: &str, input: Value) -> StepCall {
        let number = changes::parse(&self.ticket).unwrap().number;
        StepCall {
            run: RunRef {
                run_id: self.run.id,
                ticket: TicketRef {
                    tenant_id: self.tenant_id,
                    tenant: self.tenant.clone(),
                    ticket_id: self.ticket.id,
                    number,
                },
                workflow_id: self.run.workflow_id.clone(),
                playbook: "actions".into(),
                version: 1,
            },
            step: step.into(),
            action: action.into(),
            round: 0,
            input,
            idempotency_key: format!("{}/{step}", self.run.workflow_id),
        }
    }

    async fn connection(&self, name: &str, base_url: &str, auth: Auth, secret: &str, allow_private: bool) {
        let spec = ConnectionSpec { base_url: base_url.into(), auth, header_name: None, username: None, allow_private };
        let mut tx = self.tx().await;
        connections::create(&mut tx, self.tenant_id, &Cipher::dev(), name, &spec, Some(&SecretString::from(secret)))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// `(status, attempts, output)` of a step.
    async fn step(&self, step: &str) -> (String, i32, Option<Value>) {
        let mut tx = self.tx().await;
        let run = playbooks::run(&mut tx, self.run.id).await.unwrap();
        let s = run.steps.into_iter().find(|s| s.step_id == step).unwrap();
        (s.status, s.attempts, s.output)
    }

    async fn ticket_now(&self) -> TicketRow {
        let mut tx = self.tx().await;
        tickets::get(&mut tx, self.ticket.id).await.unwrap()
    }

    /// `sql` (counting rows, `$1` = the run's ticket) on the owner's connection (no RLS).
    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(self.ticket.id)
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn http_request_sends_the_idempotency_key_and_the_secret_only_in_headers() {
    let w = world().await;
    let rx = Receiver::start().await;
    w.connection("vendor", &rx.url("/api"), Auth::Bearer, SECRET, true).await;
    let call = w.call(
        "call",
        "http.request",
        json!({"connection": "vendor", "path": "/orders", "query": {"sku": "X1"},
               "headers": {"X-Api-Key": "{{secrets.vendor}}"}, "body": {"qty": 2}}),
    );
    let out = w.acts.send_http(&call, 1).await.unwrap();
    assert_eq!(out["status"], 201);
    assert_eq!(out["body"], json!({"id": "42"}));
    assert!(!out.to_string().contains(SECRET), "the secret never enters the output: {out}");
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/api/orders?sku=X1");
    assert_eq!(seen[0].headers["idempotency-key"], call.idempotency_key.as_str());
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {SECRET}").as_str());
    assert_eq!(seen[0].headers["x-api-key"], SECRET);
    assert_eq!(serde_json::from_slice::<Value>(&seen[0].body).unwrap(), json!({"qty": 2}));
    let (status, attempts, stored) = w.step("call").await;
    assert_eq!((status.as_str(), attempts), ("succeeded", 1));
    assert_eq!(stored.unwrap()["body"], json!({"id": "42"}));

    // a retried attempt of a step that succeeded sends nothing again
    let again = w.acts.send_http(&call, 2).await.unwrap();
    assert_eq!(again["status"], 201);
    assert_eq!(rx.seen().len(), 1, "the step's effect happens once");

    // a receiver echoing the secret does not put it in the output
    let echo = w.call("call", "http.request", json!({"connection": "vendor", "method": "GET", "path": "/echo"}));
    let mut tx = w.tx().await;
    sqlx::query("UPDATE playbook_steps SET status = 'failed' WHERE run_id = $1 AND step_id = 'call'")
        .bind(w.run.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = w.acts.send_http(&echo, 1).await.unwrap();
    assert!(!out.to_string().contains(SECRET), "{out}");
}

#[tokio::test]
async fn http_request_refuses_private_addresses_unless_the_connection_allows_them() {
    let w = world().await;
    let rx = Receiver::start().await;
    w.connection("vendor", &rx.url("/api"), Auth::None, SECRET, false).await;
    let call = w.call("call", "http.request", json!({"connection": "vendor", "path": "/orders"}));
    let e = w.acts.send_http(&call, 1).await.unwrap_err();
    assert!(matches!(e, StepError::Forbidden(_)), "{e}");
    assert!(e.to_string().contains("loopback"), "{e}");
    assert!(!e.is_retryable());
    assert!(rx.seen().is_empty(), "nothing was sent");

    // a name resolving to loopback is refused too (the check is on the resolved address)
    let mut tx = w.tx().await;
    sqlx::query("UPDATE connections SET base_url = $1 WHERE name = 'vendor'")
        .bind(format!("http://localhost:{}/api", rx.port))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let e = w.acts.send_http(&call, 2).await.unwrap_err();
    assert!(matches!(e, StepError::Forbidden(_)), "{e}");
    assert!(rx.seen().is_empty());

    // a path leaving the base URL is refused before anything is sent
    let escape = w.call("call", "http.request", json!({"connection": "vendor", "path": "/../admin"}));
    assert!(matches!(w.acts.send_http(&escape, 1).await, Err(StepError::Forbidden(_))));
    // a secret of another connection, or in the path, is an input error
    let other = w.call(
        "call",
        "http.request",
        json!({"connection": "vendor", "path": "/orders", "headers": {"X": "{{secrets.graph}}"}}),
    );
    assert!(matches!(w.acts.send_http(&other, 1).await, Err(StepError::Input(_))));
    let unknown = w.call("call", "http.request", json!({"connection": "nope", "path": "/orders"}));
    assert!(matches!(w.acts.send_http(&unknown, 1).await, Err(StepError::Input(_))));
    assert!(rx.seen().is_empty());
}

#[tokio::test]
async fn http_request_never_follows_a_redirect_and_maps_answers_to_retries() {
    let w = world().await;
    let rx = Receiver::start().await;
    w.connection("vendor", &rx.url("/api"), Auth::None, SECRET, true).await;
    let redirect =
        w.call("call", "http.request", json!({"connection": "vendor", "method": "GET", "path": "/redirect"}));
    let e = w.acts.send_http(&redirect, 1).await.unwrap_err();
    assert!(matches!(e, StepError::BadRequest(_)), "{e}");
    assert!(e.to_string().contains("redirects are not followed"), "{e}");
    let paths: Vec<String> = rx.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/api/redirect"], "the redirect's target was never requested");

    let busy = w.call("call", "http.request", json!({"connection": "vendor", "path": "/busy"}));
    let e = w.acts.send_http(&busy, 1).await.unwrap_err();
    assert!(matches!(e, StepError::Unavailable(_)) && e.is_retryable(), "{e}");
    let bad = w.call("call", "http.request", json!({"connection": "vendor", "path": "/bad"}));
    let e = w.acts.send_http(&bad, 2).await.unwrap_err();
    assert!(matches!(e, StepError::BadRequest(_)) && !e.is_retryable(), "{e}");
    assert!(e.to_string().contains("no such sku"), "{e}");
    let (status, attempts, _) = w.step("call").await;
    assert_eq!(
        (status.as_str(), attempts),
        ("running", 2),
        "the attempt is recorded; the workflow records the failure"
    );

    // nobody listening: unavailable, retried
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    w.connection("gone", &format!("http://127.0.0.1:{port}"), Auth::None, SECRET, true).await;
    let gone = w.call("call", "http.request", json!({"connection": "gone", "path": "/x"}));
    assert!(matches!(w.acts.send_http(&gone, 3).await, Err(StepError::Unavailable(_))));
}

#[tokio::test]
async fn webhook_post_is_signed_as_standard_webhooks() {
    let w = world().await;
    let rx = Receiver::start().await;
    w.connection("hooks", &rx.url("/hooks"), Auth::Webhook, WHSEC, true).await;
    let call = w.call(
        "hook",
        "webhook.post",
        json!({"connection": "hooks", "event_type": "ticket.major_incident", "payload": {"number": "INC-1"}}),
    );
    let out = w.acts.post_webhook(&call, 1).await.unwrap();
    assert_eq!(out, json!({"status": 204, "webhook_id": call.idempotency_key}));
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/hooks");
    assert_eq!(seen[0].headers["webhook-id"], call.idempotency_key.as_str());
    standardwebhooks::Webhook::new(WHSEC).unwrap().verify(&seen[0].body, &seen[0].headers).unwrap();
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["type"], "ticket.major_incident");
    assert_eq!(body["data"], json!({"number": "INC-1"}));
    assert!(!out.to_string().contains("whsec"), "{out}");
    // the same step again: done, nothing posted twice
    w.acts.post_webhook(&call, 2).await.unwrap();
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn ticket_comment_and_update_go_through_the_write_path_once() {
    let w = world().await;
    let note = w.call("note", "ticket.comment", json!({"body": "Provisioning started.", "public": true}));
    let first = w.acts.comment(&note, 1).await.unwrap();
    let again = w.acts.comment(&note, 2).await.unwrap();
    assert_eq!(first, again, "a retry answers with the first attempt's output");
    let mut tx = w.tx().await;
    let comments = tickets::comments(&mut tx, w.ticket.id, true).await.unwrap();
    drop(tx);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].body, "Provisioning started.");
    assert!(!comments[0].internal);
    assert_eq!(comments[0].author_id, None, "Archer's own comment");
    assert_eq!(first["comment_id"], json!(comments[0].id));
    let audited = w
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE ticket_id = $1 AND action = 'ticket_comments.insert'
               AND request_id = 'playbook:{}'",
            w.run.workflow_id
        ))
        .await;
    assert_eq!(audited, 1, "audited as the run, so no ticket trigger fires on it");

    let bump = w.call("bump", "ticket.update", json!({"priority": 1, "reason": "VIP"}));
    let out = w.acts.update(&bump, 1).await.unwrap();
    assert_eq!(out["priority"], 1);
    w.acts.update(&bump, 2).await.unwrap();
    let t = w.ticket_now().await;
    assert_eq!((t.priority, t.priority_reason.as_deref()), (1, Some("VIP")));
    let changed = w
        .count("SELECT count(*) FROM audit_log WHERE ticket_id = $1 AND action = 'tickets.update' AND request_id LIKE 'playbook:%'")
        .await;
    assert_eq!(changed, 1, "the change happened once");
    let (status, _, _) = w.step("bump").await;
    assert_eq!(status, "succeeded");

    // the state machine refuses: non-retryable, with the refusal's text, nothing written
    let close = w.call("close", "ticket.update", json!({"status": "closed"}));
    let e = w.acts.update(&close, 1).await.unwrap_err();
    assert!(matches!(e, StepError::Refused(_)) && !e.is_retryable(), "{e}");
    assert_eq!(w.ticket_now().await.status, Status::New);
}

#[tokio::test]
async fn create_task_opens_one_linked_watched_task() {
    let w = world().await;
    let call = w.call("task", "ticket.create_task", json!({"title": "Order a token", "description": "for VPN"}));
    let opened = w.acts.create_task(&call, 1).await.unwrap();
    let again = w.acts.create_task(&call, 2).await.unwrap();
    assert_eq!(opened, again, "the same step never opens two tasks");
    assert_eq!((opened.number.as_str(), opened.status.as_str()), ("TASK-000001", "new"));
    let mut tx = w.tx().await;
    let task = tickets::get(&mut tx, opened.ticket_id).await.unwrap();
    assert_eq!((task.kind, task.number), (TicketKind::Task, 1), "a task ticket, numbered on its own");
    assert_eq!(task.requester_id, w.ticket.requester_id);
    assert_eq!(task.title, "Order a token");
    let links = tickets::links(&mut tx, task.id).await.unwrap();
    drop(tx);
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].from_ticket_id, links[0].to_ticket_id), (task.id, w.ticket.id));
    assert_eq!(links[0].kind, LinkKind::TaskOf, "the task names its parent");
    let watched = w
        .count("SELECT count(*) FROM playbook_watches WHERE ticket_id IN (SELECT from_ticket_id FROM ticket_links WHERE to_ticket_id = $1)")
        .await;
    assert_eq!(watched, 1, "the run hears about the task's changes");
    let tasks = w.count("SELECT count(*) FROM ticket_links WHERE to_ticket_id = $1").await;
    assert_eq!(tasks, 1);
    let (status, attempts, _) = w.step("task").await;
    assert_eq!((status.as_str(), attempts), ("running", 1), "the step waits for the task");
}

/// What the run's workflow records when step `step` fails and an admin retries the run (the
/// step pending again, its output cleared), as `archer_store::playbooks::record` stores it.
async fn fail_then_retry(w: &World, step: &str) {
    let call = w.call(step, "ticket.create_task", json!({}));
    for (status, run) in [("failed", "failed"), ("pending", "running")] {
        let record = RecordRun {
            run: call.run.clone(),
            steps: vec![StepRecord {
                step: step.into(),
                action: "ticket.create_task".into(),
                status: status.into(),
                reason: (status == "failed").then(|| "the task was not closed in time".into()),
                output: None,
            }],
            status: run.into(),
            error: None,
        };
        let mut tx = w.tx().await;
        playbooks::record(&mut tx, &record).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// Moves ticket `id` to `to` as an agent would, through the write path.
async fn set_status(w: &World, id: Uuid, to: Status) {
    let mut tx = w.tx().await;
    let row = tickets::lock(&mut tx, id).await.unwrap();
    let change = TicketChange { status: Some(to), ..TicketChange::default() };
    let decision =
        changes::snapshot(&row).unwrap().apply(&change, &Actor::system(), changes::to_jiff(tx.now())).unwrap();
    changes::apply(&mut tx, &w.tenant, &row, decision, &Actor::system()).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_retried_run_waits_on_its_task_again_unless_it_was_cancelled() {
    let w = world().await;
    let input = json!({"title": "Order a token"});
    let round = |n: u32| StepCall { round: n, ..w.call("task", "ticket.create_task", input.clone()) };
    let first = w.acts.create_task(&round(0), 1).await.unwrap();

    // the task was not closed in time; the admin retries: the task is still open, so the
    // step waits on it again (and shows it) instead of opening a second one
    fail_then_retry(&w, "task").await;
    assert_eq!(w.step("task").await.2, None, "the retry cleared the step's output");
    assert_eq!(w.acts.create_task(&round(1), 1).await.unwrap(), first);
    let (status, _, output) = w.step("task").await;
    assert_eq!((status.as_str(), output.unwrap()["number"].as_str()), ("running", Some("TASK-000001")));

    // cancelled since: nobody will do it, so the next retry opens a new task
    set_status(&w, first.ticket_id, Status::Cancelled).await;
    fail_then_retry(&w, "task").await;
    let second = w.acts.create_task(&round(2), 1).await.unwrap();
    assert_eq!((second.number.as_str(), second.status.as_str()), ("TASK-000002", "new"));
    // within its round the step keeps its task whatever happens to it (the workflow then sees
    // it cancelled and the step succeeds)
    set_status(&w, second.ticket_id, Status::Cancelled).await;
    let same = w.acts.create_task(&round(2), 2).await.unwrap();
    assert_eq!((same.ticket_id, same.status.as_str()), (second.ticket_id, "cancelled"));

    // closed since the step failed: the work was done, the retry waits on it (and succeeds)
    fail_then_retry(&w, "task").await;
    let third = w.acts.create_task(&round(3), 1).await.unwrap();
    assert_eq!(third.number, "TASK-000003");
    set_status(&w, third.ticket_id, Status::Closed).await;
    fail_then_retry(&w, "task").await;
    let done = w.acts.create_task(&round(4), 1).await.unwrap();
    assert_eq!((done.ticket_id, done.status.as_str()), (third.ticket_id, "closed"));

    let tasks = w.count("SELECT count(*) FROM ticket_links WHERE to_ticket_id = $1 AND kind = 'task_of'").await;
    assert_eq!(tasks, 3, "one task per retry that needed one");
}

#[tokio::test]
async fn approval_request_records_an_approval_once_without_moving_the_ticket() {
    let w = world().await;
    let call = w.call(
        "approve",
        "approval.request",
        json!({"approvers": [w.approver_email], "rule": "any", "title": "Sign-off"}),
    );
    let opened = w.acts.request_approval(&call, 1).await.unwrap();
    let again = w.acts.request_approval(&call, 2).await.unwrap();
    assert_eq!(opened, again);
    assert_eq!(opened.seq, 1);
    assert_eq!(opened.chain.steps[0].name, "Sign-off");
    let mut tx = w.tx().await;
    let all = approvals::of_ticket(&mut tx, w.ticket.id).await.unwrap();
    drop(tx);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, "pending");
    assert_eq!(w.ticket_now().await.status, Status::New, "the ticket's status is not moved");
    let requests = w
        .count(&format!(
            "SELECT count(*) FROM outbox WHERE intent = 'start' AND name = '{}' AND tenant_id = (SELECT tenant_id FROM tickets WHERE id = $1)",
            archer_orchestrator::workflows::approval::REQUEST_TYPE
        ))
        .await;
    assert_eq!(requests, 0, "no request workflow: the playbook runs the chain itself");
    let unknown = w.call("approve", "approval.request", json!({"approvers": ["nobody@nowhere.example"]}));
    // another step's key: a new approval, whose unknown approver is an input error
    let other = StepCall { idempotency_key: "other".into(), ..unknown };
    assert!(matches!(w.acts.request_approval(&other, 1).await, Err(StepError::Input(_))));
}

#[tokio::test]
async fn email_send_queues_one_email_per_step() {
    let w = world().await;
    let call = w.call(
        "mail",
        "email.send",
        json!({"to": ["riley@example.com"], "subject": "Ordered", "body": "Your laptop ships Monday."}),
    );
    let out = w.acts.send_email(&call, 1).await.unwrap();
    assert_eq!(out, json!({"sent": 0}), "no mail server: queued");
    // a retry while it is queued queues nothing new
    let mut tx = w.tx().await;
    sqlx::query("UPDATE playbook_steps SET status = 'running' WHERE run_id = $1 AND step_id = 'mail'")
        .bind(w.run.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    w.acts.send_email(&call, 2).await.unwrap();
    let message_id = archer_workers::playbooks::email::message_id(w.run.id, "mail");
    let mut tx = w.tx().await;
    let rows: Vec<(String, Value)> = sqlx::query_as("SELECT template, data FROM email_outbox WHERE message_id = $1")
        .bind(&message_id)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "playbook_message");
    assert_eq!(rows[0].1["subject"], "Ordered");
    let bad = w.call("mail", "email.send", json!({"to": ["riley"], "subject": "s", "body": "b"}));
    assert!(matches!(w.acts.send_email(&bad, 1).await, Err(StepError::Input(_))));
}
