//! Playbook triggers as a tenant's outbound webhooks, end to end against real Temporal and
//! PostgreSQL and a local receiver that verifies Standard Webhooks signatures: a playbook with
//! `ticket_created` and a conditional `ticket_changed` trigger and one `webhook.post` step
//! delivers exactly the events it subscribes to, once each; `sla_warning` / `sla_breach` start
//! a run once per recorded fact, with the fact in `run.event`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use archer_tests::sla::durations;
use archer_tests::{TestApp, TestUser, spawn_app};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A delivery the receiver got and verified: its `webhook-id`, the body and when it arrived.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    body: Value,
    at: OffsetDateTime,
}

/// A local webhook receiver: verifies each request's Standard Webhooks signature (a request that
/// fails is answered 401 and recorded as a failure) and records the deliveries.
#[derive(Clone, Default)]
struct Receiver {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    unverified: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(receive).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks")
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries").clone()
    }

    /// Waits until `n` deliveries arrived, then a while longer, and asserts no more came and
    /// every request verified.
    async fn exactly(&self, n: usize) -> Vec<Delivery> {
        archer_tests::eventually(Duration::from_secs(45), &format!("{n} deliveries"), || async {
            self.deliveries().len() >= n
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let unverified = self.unverified.lock().expect("unverified").clone();
        assert!(unverified.is_empty(), "requests whose signature failed: {unverified:#?}");
        let got = self.deliveries();
        assert_eq!(got.len(), n, "{got:#?}");
        got
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let wh = standardwebhooks::Webhook::new(SECRET).expect("secret");
    if let Err(e) = wh.verify(&body, &headers) {
        r.unverified.lock().expect("unverified").push(format!("{e}: {}", String::from_utf8_lossy(&body)));
        return StatusCode::UNAUTHORIZED;
    }
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.deliveries.lock().expect("deliveries").push(Delivery { id, body, at: OffsetDateTime::now_utc() });
    StatusCode::NO_CONTENT
}

/// A tenant's webhook connection `hooks` to the receiver (signing with [`SECRET`]; loopback
/// allowed) and the webhook playbook `yaml`, published.
async fn subscribe(app: &TestApp, admin: &TestUser, receiver: &Receiver, yaml: &str) {
    let base = receiver.start().await;
    let body = json!({"name": "hooks", "base_url": base, "auth": "webhook", "secret": SECRET, "allow_private": true});
    let r = app.post(Some(&admin.token), "/api/v1/connections", &body).await;
    assert_eq!(r.status, 201, "connection: {}", r.body);
    let r = app.post(Some(&admin.token), "/api/v1/playbooks", &json!({"source": yaml})).await;
    assert_eq!(r.status, 201, "save: {}", r.body);
    let (id, v) = (r.json["playbook_id"].as_str().expect("playbook_id"), r.json["version"].as_i64().expect("version"));
    let p = app.post(Some(&admin.token), &format!("/api/v1/playbooks/{id}/versions/{v}/publish"), &json!({})).await;
    assert_eq!(p.status, 200, "publish: {}", p.body);
}

/// The ticket's runs as (trigger, status), once every run has succeeded.
async fn runs_succeeded(app: &TestApp, user: &TestUser, number: &str, n: usize) -> Vec<String> {
    let path = format!("/api/v1/tickets/{number}/playbook-runs");
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < deadline {
        let r = app.get(Some(&user.token), &path).await;
        assert_eq!(r.status, 200, "runs: {}", r.body);
        let runs = r.json.as_array().cloned().unwrap_or_default();
        if runs.len() == n && runs.iter().all(|r| r["status"] == "succeeded") {
            let mut triggers: Vec<String> =
                runs.iter().map(|r| r["trigger"].as_str().unwrap_or_default().to_owned()).collect();
            triggers.sort();
            return triggers;
        }
        last = r.json;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{number} never had {n} succeeded runs: {last:#}");
}

const TICKET_EVENTS: &str = r#"
name: ticket-events
triggers:
  - ticket_created: {}
  - ticket_changed: { condition: 'before.status != "resolved" && ticket.status == "resolved"' }
steps:
  - id: notify
    action: webhook.post
    with:
      connection: hooks
      event_type: "ticket.{{run.trigger}}"
      payload:
        trigger: "{{run.trigger}}"
        event: "{{run.event}}"
        ticket: { number: "{{ticket.number}}", status: "{{ticket.status}}", priority: "{{ticket.priority}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_playbook_delivers_the_ticket_events_it_subscribes_to_signed_and_once_each() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let receiver = Receiver::default();
    subscribe(&app, &t.admin, &receiver, TICKET_EVENTS).await;

    let ticket = app.incident(&t.agent, "Outbound webhooks").await;
    let number = ticket["number"].as_str().expect("number").to_owned();
    // the creation is delivered before the ticket moves on, so the order below is the real one
    archer_tests::eventually(Duration::from_secs(45), "the creation's delivery", || async {
        !receiver.deliveries().is_empty()
    })
    .await;
    app.set_status(&t.agent, &number, "in_progress").await; // not subscribed: no delivery
    app.set_status(&t.agent, &number, "resolved").await;
    // still resolved, but not newly: the condition reads the ticket `before` the change
    let retitled = app
        .patch(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}"),
            &json!({"title": "Outbound webhooks (fixed)"}),
        )
        .await;
    assert_eq!(retitled.status, 200, "{}", retitled.body);

    let got = receiver.exactly(2).await;
    let bodies: Vec<&Value> = got.iter().map(|d| &d.body).collect();
    assert_eq!(bodies[0]["type"], "ticket.ticket_created");
    assert_eq!(
        bodies[0]["data"],
        json!({"trigger": "ticket_created", "event": null, "ticket": {"number": number, "status": "new", "priority": 3}}),
        "a lone placeholder keeps its JSON type (null, a number)"
    );
    assert_eq!(bodies[1]["type"], "ticket.ticket_changed");
    let data = &bodies[1]["data"];
    assert_eq!(data["trigger"], "ticket_changed");
    assert_eq!(data["ticket"], json!({"number": number, "status": "resolved", "priority": 3}));
    // a change's event is the ticket as it was before it
    assert_eq!(data["event"]["before"]["status"], "in_progress", "{data:#}");
    assert_eq!(data["event"]["before"]["number"], number.as_str());
    // one webhook id per run (the run's workflow id and the step), so retries dedupe
    let wf = |n: u32| format!("{}/{number}/playbook/ticket-events/{n}/notify", t.slug);
    assert_eq!((got[0].id.clone(), got[1].id.clone()), (wf(1), wf(2)));
    assert_eq!(runs_succeeded(&app, &t.agent, &number, 2).await, ["ticket_changed", "ticket_created"]);
    app.stop().await;
}

const SLA_EVENTS: &str = r#"
name: sla-events
triggers: [sla_warning, sla_breach]
steps:
  - id: notify
    action: webhook.post
    with:
      connection: hooks
      event_type: "sla.{{run.event.kind}}"
      payload: { trigger: "{{run.trigger}}", event: "{{run.event}}", ticket: "{{ticket.number}}", metric: "{{run.event.metric}}" }
"#;

fn instant(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_default(), &Rfc3339).unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sla_warning_and_breach_start_a_run_once_each_with_the_fact_as_the_runs_event() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    // 24×7: warned at 2 s, breached at 4 s
    app.policy(
        &t.admin,
        json!({"name": "Fast", "spec": {"targets": [
            {"metric": "resolution", "durations": durations([4, 4, 4, 4]), "warnings": [50]}
        ]}}),
    )
    .await;
    let receiver = Receiver::default();
    subscribe(&app, &t.admin, &receiver, SLA_EVENTS).await;
    let ticket = app.incident(&t.agent, "Breaching").await;
    let (id, number) = (ticket["id"].as_str().expect("id"), ticket["number"].as_str().expect("number").to_owned());
    let created = app.created_at(id).await;

    let got = receiver.exactly(2).await;
    let mut by_kind: Vec<&Delivery> = got.iter().collect();
    by_kind.sort_by_key(|d| d.body["data"]["event"]["kind"].as_str().unwrap_or_default().to_owned());
    let [breach, warning] = [by_kind[0], by_kind[1]];
    for (d, trigger, kind, percent, after) in
        [(breach, "sla_breach", "breach", Value::Null, 4), (warning, "sla_warning", "warning", json!(50), 2)]
    {
        let data = &d.body["data"];
        assert_eq!(d.body["type"], format!("sla.{kind}"), "{data:#}");
        assert_eq!(data["trigger"], trigger);
        assert_eq!(data["ticket"], number);
        assert_eq!(data["metric"], "resolution");
        assert_eq!(data["event"]["metric"], "resolution");
        assert_eq!(data["event"]["kind"], kind);
        assert_eq!(data["event"]["percent"], percent);
        assert!(data["event"]["cycle"].is_u64(), "{data:#}");
        // the fact's true instant, and the run started only after it
        let at = instant(&data["event"]["at"]);
        let due = created + time::Duration::seconds(after);
        assert!((at - due).abs() < time::Duration::milliseconds(1), "{kind} at {at}, due {due}");
        assert!(d.at >= at, "{kind} delivered at {} before it happened ({at})", d.at);
    }
    assert_eq!(runs_succeeded(&app, &t.agent, &number, 2).await, ["sla_breach", "sla_warning"]);
    app.stop().await;
}
