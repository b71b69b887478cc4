//! Playbook runs end to end, against real Temporal, PostgreSQL and SMTP and a local HTTP
//! receiver the tests run: the shipped onboarding playbook after an approval, a worker killed
//! mid-step, skips, failures, compensation and retries, version pinning, the dry run against
//! the run, Standard Webhooks signatures, and recorded histories for the replay tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::time::Instant;

use archer_tests::playbooks::step;
use archer_tests::{Options, TestApp, TestTenant, TestUser, spawn_app, spawn_app_with};

const ONBOARDING: &str = include_str!("../../../playbooks/onboarding.yaml");

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    key: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    started: Instant,
    ended: Instant,
}

/// What a path answers: a list of statuses used up in order (then 200), and how long it takes.
#[derive(Default)]
struct Script {
    statuses: HashMap<String, Vec<u16>>,
    delay: HashMap<String, Duration>,
    /// path -> notified when the first call arrives (and the call then hangs for `hang`)
    hang: HashMap<String, Duration>,
}

/// A local HTTP receiver: records every call, answers as scripted, and dedupes by
/// `Idempotency-Key` as a careful receiver does (a key seen with a success gets the same answer
/// and no new effect).
#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<Script>>,
    effects: Arc<Mutex<HashMap<String, Value>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(receive).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.path == path).collect()
    }

    fn effects(&self) -> usize {
        self.effects.lock().expect("effects").len()
    }

    fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().expect("script"));
    }
}

async fn receive(
    State(r): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let started = Instant::now();
    let path = uri.path().to_owned();
    let key =
        headers.get("idempotency-key").or(headers.get("webhook-id")).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, delay, hang) = {
        let mut s = r.script.lock().expect("script");
        let status = s.statuses.get_mut(&path).and_then(|v| if v.is_empty() { None } else { Some(v.remove(0)) });
        let hang = s.hang.remove(&path);
        (status.unwrap_or(200), s.delay.get(&path).copied(), hang)
    };
    let record = |ended| Call {
        method: method.to_string(),
        path: path.clone(),
        key: key.clone(),
        headers: headers.clone(),
        body: body.to_vec(),
        started,
        ended,
    };
    if let Some(hang) = hang {
        r.calls.lock().expect("calls").push(record(started));
        tokio::time::sleep(hang).await;
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": "hung"})));
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let answer = if code.is_success() {
        let mut effects = r.effects.lock().expect("effects");
        let n = effects.len() + 1;
        let fresh = json!({"id": format!("obj-{n}"), "path": path});
        match &key {
            Some(k) => effects.entry(k.clone()).or_insert(fresh).clone(),
            None => fresh,
        }
    } else {
        json!({"error": format!("scripted {status}")})
    };
    r.calls.lock().expect("calls").push(record(Instant::now()));
    (code, axum::Json(answer))
}

async fn connection(app: &TestApp, admin: &TestUser, name: &str, base: &str, extra: Value) {
    let mut body = json!({"name": name, "base_url": base, "auth": "none", "allow_private": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = app.post(Some(&admin.token), "/api/v1/connections", &body).await;
    assert_eq!(r.status, 201, "connection {name}: {}", r.body);
}

async fn runs(app: &TestApp, user: &TestUser, ticket: &str) -> Vec<Value> {
    let r = app.get(Some(&user.token), &format!("/api/v1/tickets/{ticket}/playbook-runs")).await;
    assert_eq!(r.status, 200, "runs: {}", r.body);
    r.json.as_array().cloned().unwrap_or_default()
}

/// Waits until the ticket's run `n` (1-based) reaches `status`; returns it.
async fn run_until(app: &TestApp, user: &TestUser, ticket: &str, n: usize, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = runs(app, user, ticket).await;
        if let Some(run) = all.iter().find(|r| r["run_number"] == n as u64)
            && run["status"] == status
        {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "run {n} of {ticket} never became {status}: {all:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn new_starter_form() -> Value {
    json!({
        "type": "object",
        "required": ["full_name", "work_email", "department", "start_date", "laptop", "manager_email"],
        "properties": {
            "full_name": {"type": "string", "title": "Full name", "minLength": 2},
            "work_email": {"type": "string", "title": "Work email", "format": "email"},
            "department": {"type": "string", "title": "Department"},
            "start_date": {"type": "string", "title": "Start date", "format": "date"},
            "laptop": {"type": "string", "title": "Laptop", "enum": ["standard", "developer"]},
            "needs_vpn": {"type": "boolean", "title": "Needs VPN"},
            "manager_email": {"type": "string", "title": "Manager's email", "format": "email"}
        }
    })
}

struct Onboarding {
    t: TestTenant,
    employee: TestUser,
    item: Value,
    receiver: Receiver,
}

/// A tenant with the three connections onboarding uses (all to the local receiver), the
/// "New starter" item (the requester's manager approves) and the shipped onboarding playbook
/// published as its fulfilment.
async fn onboarding(app: &TestApp) -> Onboarding {
    let t = app.tenant().await;
    let employee = app.user(&t, "Nora Newhire", &["requester"], Some(t.manager.id)).await;
    let receiver = Receiver::default();
    let base = receiver.start().await;
    for name in ["graph", "vendor"] {
        connection(app, &t.admin, name, &base, json!({})).await;
    }
    connection(app, &t.admin, "slack", &base, json!({"auth": "bearer", "secret": "xoxb-test-secret"})).await;
    let spec = json!({
        "description": "Everything a new colleague needs on day one.",
        "form_schema": new_starter_form(),
        "approval": {"steps": [{"name": "Manager", "approvers": ["requester_manager"], "approve_when": "any"}]},
        "playbook": "onboarding"
    });
    let item = app.catalog_item(&t.admin, "New starter", spec).await;
    app.publish_playbook(&t.admin, ONBOARDING).await;
    Onboarding { t, employee, item, receiver }
}

fn answers() -> Value {
    json!({"full_name": "Ada Lovelace", "work_email": "ada@example.com", "department": "Engines",
           "start_date": "2027-01-04", "laptop": "developer", "needs_vpn": false, "manager_email": "boss@example.com"})
}

async fn submit_and_approve(app: &TestApp, o: &Onboarding) -> String {
    let r = app.submit(&o.employee, &o.item, answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json["number"].as_str().expect("number").to_owned();
    let a = app.approval_of(&o.t.agent, &number).await;
    let id = a["id"].as_str().expect("approval id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.post(Some(&o.t.manager.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "approve: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    number
}

fn overlap(a: &Call, b: &Call) -> bool {
    a.started < b.ended && b.started < a.ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_onboarding_playbook_runs_after_approval_each_call_once_dependants_wait_independents_overlap() {
    let app = spawn_app().await;
    let o = onboarding(&app).await;
    o.receiver.script(|s| {
        s.delay.insert("/users".into(), Duration::from_millis(1500));
        s.delay.insert("/orders".into(), Duration::from_millis(1500));
    });
    let number = submit_and_approve(&app, &o).await;
    let run = run_until(&app, &o.t.agent, &number, 1, "succeeded").await;
    let wf = run["workflow_id"].as_str().expect("workflow id").to_owned();
    assert_eq!(wf, format!("{}/{number}/playbook/onboarding/1", o.t.slug));
    assert_eq!(run["trigger"], "catalog_fulfilment");

    // each call once, with its idempotency key
    let account = o.receiver.calls_to("/users");
    let order = o.receiver.calls_to("/orders");
    // the account's id is whatever the receiver answered to its key (ids are numbered as calls
    // end, and the order call runs at the same time)
    let account_id = o.receiver.effects.lock().expect("effects")[&format!("{wf}/create_account")]["id"].clone();
    let licences = o.receiver.calls_to(&format!("/users/{}/licenses", account_id.as_str().unwrap_or_default()));
    let slack = o.receiver.calls_to("/chat.postMessage");
    for (calls, step_id) in [(&account, "create_account"), (&order, "order_hardware"), (&slack, "post_to_slack")] {
        assert_eq!(calls.len(), 1, "{step_id}: {calls:#?}");
        assert_eq!(calls[0].key.as_deref(), Some(format!("{wf}/{step_id}").as_str()));
    }
    assert_eq!(licences.len(), 1, "licences for the account's id: {:#?}", o.receiver.calls());
    assert_eq!(account[0].method, "POST");
    let body: Value = serde_json::from_slice(&account[0].body).expect("json body");
    assert_eq!(body["displayName"], "Ada Lovelace");
    assert_eq!(body["accountEnabled"], true, "a typed value stays typed");
    // the secret reached the receiver and nothing else
    assert_eq!(slack[0].headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer xoxb-test-secret"));
    let history = archer_tests::temporal::history(&app.temporal().await, &wf).await;
    assert!(!format!("{history:?}").contains("xoxb-test-secret"), "a secret entered the workflow history");

    // dependants waited; independent steps overlapped
    assert!(licences[0].started >= account[0].ended, "licences started before the account existed");
    assert!(overlap(&account[0], &order[0]), "create_account and order_hardware ran one after the other");

    // skipped, emailed, commented; the timeline shows every step
    assert_eq!(step(&run, "vpn_access")["status"], "skipped");
    assert!(step(&run, "vpn_access")["reason"].as_str().unwrap_or("").contains("when"));
    for id in ["create_account", "assign_licences", "order_hardware", "notify_manager", "post_to_slack", "summary"] {
        assert_eq!(step(&run, id)["status"], "succeeded", "{id}: {run:#}");
    }
    let mail = app.mail.wait_for(|m| m.to.iter().any(|t| t == "boss@example.com"), Duration::from_secs(30)).await;
    assert!(mail.subject.contains("Ada Lovelace"), "{}", mail.subject);
    let comments = app.get(Some(&o.employee.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert!(comments.body.contains("Onboarding of Ada Lovelace is done"), "{}", comments.body);

    archer_tests::temporal::replay_live(&app.temporal().await, &wf, "playbook/onboarding").await;
    app.stop().await;
}

/// `archer worker` as a separate process, so it can be killed for real.
async fn worker_process(app: &TestApp) -> tokio::process::Child {
    tokio::process::Command::new(archer_tests::archer_bin())
        .arg("worker")
        .env("ARCHER_DATABASE_URL", &app.database_url)
        .env("ARCHER_TEMPORAL_ADDRESS", archer_tests::services().temporal_address)
        .env("ARCHER_TASK_QUEUE", &app.task_queue)
        .env("ARCHER_JWT_SECRET", archer_tests::JWT_SECRET)
        .env("ARCHER_SECRETS_KEY", archer_api::config::DEV_SECRETS_KEY)
        .env("ARCHER_SMTP_URL", app.mail.url().as_str())
        .env("ARCHER_PUBLIC_URL", &app.base)
        .env("ARCHER_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn archer worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_during_a_step_repeats_the_call_with_the_same_key_and_the_effect_happens_once() {
    let app = spawn_app_with(Options { worker: false, relay: true }).await;
    let mut worker = worker_process(&app).await;
    let o = onboarding(&app).await;
    // the first account call hangs: the worker is killed while it is in flight
    o.receiver.script(|s| {
        s.hang.insert("/users".into(), Duration::from_secs(30));
    });
    let number = submit_and_approve(&app, &o).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while o.receiver.calls_to("/users").is_empty() {
        assert!(Instant::now() < deadline, "the account call never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.start_kill().expect("kill");
    worker.wait().await.expect("wait");
    let mut worker = worker_process(&app).await;
    let run = run_until(&app, &o.t.agent, &number, 1, "succeeded").await;
    let wf = run["workflow_id"].as_str().expect("wf").to_owned();
    let account = o.receiver.calls_to("/users");
    assert!(account.len() >= 2, "the call was repeated after the kill: {account:#?}");
    assert!(account.iter().all(|c| c.key.as_deref() == Some(format!("{wf}/create_account").as_str())));
    assert!(step(&run, "create_account")["attempts"].as_i64().unwrap_or(0) >= 2, "{run:#}");
    // one effect per step: the receiver deduped the repeated key
    let keys: std::collections::BTreeSet<_> = o.receiver.calls().iter().filter_map(|c| c.key.clone()).collect();
    assert_eq!(o.receiver.effects(), keys.len());
    let comments = app.get(Some(&o.employee.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert_eq!(comments.body.matches("Onboarding of Ada Lovelace is done").count(), 1, "{}", comments.body);
    worker.start_kill().expect("kill");
    app.stop().await;
}

const RULES: &str = r#"
name: rules
triggers: [manual]
inputs:
  type: object
  properties:
    fast: { type: boolean }
steps:
  - id: flaky
    action: http.request
    retry: { attempts: 3, initial_interval: 1s, backoff_coefficient: 2 }
    with: { connection: svc, method: POST, path: /flaky, body: { ticket: "{{ticket.number}}" } }
  - id: only_slow
    action: ticket.comment
    when: "inputs.fast == false"
    with: { body: "slow path" }
  - id: after_skip
    action: ticket.comment
    needs: [only_slow]
    with: { body: "only_slow was {{steps.only_slow.status}}" }
  - id: broken
    action: http.request
    on_failure: continue
    with: { connection: svc, path: /broken }
  - id: after_broken
    action: ticket.comment
    needs: [broken]
    with: { body: never }
  - id: signed
    action: webhook.post
    needs: [flaky]
    with: { connection: hooks, event_type: rules.done, payload: { ticket: "{{ticket.number}}" } }
  - id: charge
    action: http.request
    needs: [signed, after_skip]
    on_failure: { compensate: refund }
    with: { connection: svc, path: /charge }
  - id: refund
    action: ticket.comment
    needs: [signed]
    with: { body: "refunded after {{steps.signed.output.webhook_id}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skips_failures_compensation_retries_signatures_and_the_dry_run_behave_as_documented() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let receiver = Receiver::default();
    let base = receiver.start().await;
    connection(&app, &t.admin, "svc", &base, json!({})).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    connection(&app, &t.admin, "hooks", &base, json!({"auth": "webhook", "secret": secret})).await;
    receiver.script(|s| {
        s.statuses.insert("/flaky".into(), vec![503, 503]);
        s.statuses.insert("/broken".into(), vec![400]);
        s.statuses.insert("/charge".into(), vec![402]);
    });
    let (id, _) = app.publish_playbook(&t.admin, RULES).await;
    let ticket = app.incident(&t.agent, "Rules").await;
    let number = ticket["number"].as_str().expect("number").to_owned();

    // the dry run: no side effect, and the plan the run then follows
    let plan = app
        .post(
            Some(&t.admin.token),
            &format!("/api/v1/playbooks/{id}/dry-run"),
            &json!({"ticket": number, "inputs": {"fast": true}}),
        )
        .await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert!(runs(&app, &t.agent, &number).await.is_empty(), "a dry run started a run");

    let r = app
        .post(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}/playbook-runs"),
            &json!({"playbook": "rules", "inputs": {"fast": true}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = run_until(&app, &t.agent, &number, 1, "failed").await;

    // when: skipped by its condition, its dependant still runs
    assert_eq!(step(&run, "only_slow")["status"], "skipped");
    assert_eq!(step(&run, "after_skip")["status"], "succeeded");
    // on_failure continue: recorded, its dependant skipped, the run went on
    assert_eq!(step(&run, "broken")["status"], "failed");
    assert_eq!(step(&run, "after_broken")["status"], "skipped");
    // retries back off as configured: 1 s, then 2 s
    let flaky = receiver.calls_to("/flaky");
    assert_eq!(flaky.len(), 3, "{flaky:#?}");
    let gap1 = flaky[1].started - flaky[0].started;
    let gap2 = flaky[2].started - flaky[1].started;
    assert!(gap1 >= Duration::from_millis(900) && gap2 >= Duration::from_millis(1800), "{gap1:?} {gap2:?}");
    assert_eq!(step(&run, "flaky")["attempts"], 3);
    // compensation: charge failed, refund ran, the run failed on charge
    assert_eq!(step(&run, "charge")["status"], "failed");
    assert_eq!(step(&run, "refund")["status"], "succeeded");
    assert!(run["error"].as_str().unwrap_or("").starts_with("charge"), "{run:#}");

    // the webhook verifies with the Standard Webhooks reference algorithm
    let hook =
        receiver.calls().into_iter().find(|c| c.headers.contains_key("webhook-signature")).expect("webhook call");
    let wh = standardwebhooks::Webhook::new(secret).expect("secret");
    wh.verify(&hook.body, &hook.headers).expect("signature verifies");
    let payload: Value = serde_json::from_slice(&hook.body).expect("json");
    assert_eq!(payload["type"], "rules.done");

    // what ran and what was skipped is what the dry run planned, with the same inputs
    let planned = plan.json["steps"].as_array().cloned().unwrap_or_default();
    for p in &planned {
        let id = p["id"].as_str().unwrap_or_default();
        let actual = step(&run, id)["status"].as_str().unwrap_or_default().to_owned();
        match p["decision"].as_str() {
            Some("skipped") => assert_eq!(actual, "skipped", "{id}"),
            Some("run") if id != "after_broken" => assert_ne!(actual, "skipped", "{id} was planned to run"),
            _ => {}
        }
    }
    let flaky_plan = planned.iter().find(|p| p["id"] == "flaky").expect("flaky planned");
    assert_eq!(serde_json::from_slice::<Value>(&flaky[0].body).expect("json"), flaky_plan["input"]["body"]);

    // an admin retries the failed run: charge runs again (with the same key) and succeeds
    let r = app
        .post(
            Some(&t.admin.token),
            &format!("/api/v1/playbook-runs/{}/retry", run["id"].as_str().unwrap_or("")),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = run_until(&app, &t.agent, &number, 1, "succeeded").await;
    let charges = receiver.calls_to("/charge");
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].key, charges[1].key);
    assert_eq!(step(&run, "charge")["status"], "succeeded");

    let wf = run["workflow_id"].as_str().expect("wf").to_owned();
    archer_tests::temporal::replay_live(&app.temporal().await, &wf, "playbook/rules_retried").await;
    app.stop().await;
}

const PINNED_V1: &str = r#"
name: pinned
triggers: [manual]
steps:
  - { id: hold, action: wait, with: { duration: 4s } }
  - { id: v1_step, action: ticket.comment, needs: [hold], with: { body: "from v1" } }
"#;

const PINNED_V2: &str = r#"
name: pinned
triggers: [manual]
steps:
  - { id: v2_step, action: ticket.comment, with: { body: "from v2" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_keeps_its_version_when_the_next_one_is_published() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.publish_playbook(&t.admin, PINNED_V1).await;
    let ticket = app.incident(&t.agent, "Pinning").await;
    let number = ticket["number"].as_str().expect("number").to_owned();
    let path = format!("/api/v1/tickets/{number}/playbook-runs");
    let r = app.post(Some(&t.agent.token), &path, &json!({"playbook": "pinned"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    run_until(&app, &t.agent, &number, 1, "running").await;
    // v2 is published while v1 runs
    let (_, v2) = app.publish_playbook(&t.admin, PINNED_V2).await;
    assert_eq!(v2, 2);
    let run = run_until(&app, &t.agent, &number, 1, "succeeded").await;
    assert_eq!(run["version"], 1);
    assert_eq!(step(&run, "v1_step")["status"], "succeeded");
    let comments = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert!(comments.body.contains("from v1") && !comments.body.contains("from v2"), "{}", comments.body);
    // the next run takes v2
    let r = app.post(Some(&t.agent.token), &path, &json!({"playbook": "pinned"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run2 = run_until(&app, &t.agent, &number, 2, "succeeded").await;
    assert_eq!(run2["version"], 2);
    app.stop().await;
}
