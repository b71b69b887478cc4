//! Operating Archer (issue 13): Prometheus metrics over a real flow, traces from the API call
//! to the email it caused, the worker's own probes and metrics, and graceful shutdown of both
//! processes.

use std::process::Stdio;
use std::time::Duration;

use archer_tests::approvals::{Laptop, decision_links, laptop, laptop_answers};
use archer_tests::{JWT_SECRET, archer_bin, services, spawn_app};
use serde_json::json;

/// One sample of a Prometheus text exposition: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the text format's sample lines (comments and blank lines skipped).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels close: {line}"));
                let mut labels = Vec::new();
                // label values here never contain `",` (Archer's and the SDK's are plain words)
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("a label in {line}"));
                    labels.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

/// The sum of the samples named `name` whose labels include every pair of `want`; `None` when
/// no sample matches.
fn value(all: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = all
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(http: &reqwest::Client, url: &str) -> (String, String) {
    let r = http.get(url).send().await.expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, r.text().await.unwrap())
}

/// One flow through everything the metrics describe: a ticket that breaches its SLA (the
/// escalation emails its assignee), a catalog request whose manager approves from the emailed
/// link (the next step opens), the relay delivering it all. `/metrics` then shows each part
/// with the figures the database holds, in Prometheus' conventions: `_total` counters, units
/// in names, and label values from bounded sets only (never a ticket number, a tenant, a user).
#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_traffic_the_outbox_the_relay_slas_approvals_email_pools_and_the_worker() {
    let app = spawn_app().await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    app.resolution_policy(&t.admin, [2, 2, 2, 2]).await;
    let ticket = app
        .create_ticket(
            &t.agent,
            json!({"kind": "incident", "title": "Printer on fire", "impact": 1, "urgency": 1, "assignee_id": t.agent.id}),
        )
        .await;
    let incident = ticket["number"].as_str().unwrap().to_owned();
    let r = app.submit(&employee, &item, laptop_answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let request = r.json["number"].as_str().unwrap().to_owned();
    // the manager approves from the emailed link; the second step opens
    let mail = app.approval_mail(&t.manager, &request).await;
    let (approve, _) = decision_links(&mail);
    let (status, page) = app.confirm(&approve, None, None).await;
    assert_eq!(status, 200, "{page}");
    app.approval_until(&t.agent, &request, "step 2 open", |a| a["steps"][1]["state"] == "open").await;
    archer_tests::eventually(Duration::from_secs(30), "the breach recorded", || async {
        app.count("SELECT count(*) FROM sla_events WHERE kind = 'breach'").await >= 1
    })
    .await;
    app.outbox_drained().await;

    let url = format!("{}/metrics", app.base);
    // the breach and the emails are counted as they are recorded; the escalation's email goes
    // out after the breach is, so poll until all three show
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (all, text) = loop {
        let (ct, body) = scrape(&app.http, &url).await;
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let s = samples(&body);
        if value(&s, "archer_sla_breaches_total", &[]).is_some_and(|v| v >= 1.0)
            && value(&s, "archer_emails_total", &[("outcome", "sent")]).is_some_and(|v| v >= 2.0)
            && value(&s, "archer_approvals_pending", &[]).is_some_and(|v| v >= 2.0)
        {
            break (s, body);
        }
        assert!(tokio::time::Instant::now() < deadline, "breach, emails and pending approvals in /metrics:\n{body}");
        // the database gauges refresh at most every 10 s
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let s = &all;

    // HTTP, by route template and status
    assert!(
        value(s, "archer_http_requests_total", &[("method", "POST"), ("route", "/api/v1/tickets"), ("status", "201")])
            .is_some_and(|v| v >= 1.0)
    );
    assert!(
        value(s, "archer_http_requests_total", &[("method", "POST"), ("route", "/api/v1/requests"), ("status", "201")])
            .is_some_and(|v| v >= 1.0)
    );
    assert!(
        value(s, "archer_http_request_duration_seconds_count", &[("route", "/api/v1/tickets/{ticket}/approvals")])
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    // the outbox, drained, and its relay, leading
    assert_eq!(value(s, "archer_outbox_pending", &[]), Some(0.0));
    assert_eq!(value(s, "archer_relay_leader", &[]), Some(1.0));
    assert!(value(s, "archer_relay_deliveries_total", &[("operation", "start")]).is_some_and(|v| v >= 2.0));
    assert!(value(s, "archer_relay_deliveries_total", &[("operation", "signal")]).is_some_and(|v| v >= 1.0));
    assert!(value(s, "archer_workflow_starts_total", &[("workflow", "ticket")]).is_some_and(|v| v >= 1.0));
    assert!(value(s, "archer_workflow_starts_total", &[("workflow", "request")]).is_some_and(|v| v >= 1.0));
    assert!(value(s, "archer_workflow_signals_total", &[]).is_some_and(|v| v >= 1.0), "{text}");
    // SLA: the breach, its lag (due instant to recorded), the clocks by state
    let lag_count = value(s, "archer_sla_breach_lag_seconds_count", &[]).unwrap();
    let lag_sum = value(s, "archer_sla_breach_lag_seconds_sum", &[]).unwrap();
    assert!(lag_count >= 1.0 && lag_sum / lag_count < 10.0, "lag {lag_sum} over {lag_count}");
    assert!(value(s, "archer_sla_clocks", &[("state", "breached")]).is_some_and(|v| v >= 1.0), "{text}");
    assert!(value(s, "archer_sla_clocks", &[("state", "running")]).is_some(), "every state is reported, 0 included");
    // approvals: the second step asks three; the manager's decision was acted on
    assert!(value(s, "archer_approval_decision_to_next_step_seconds_count", &[]).is_some_and(|v| v >= 1.0));
    // database pools
    assert!(value(s, "archer_db_pool_connections", &[("pool", "api"), ("state", "idle")]).is_some());
    assert!(value(s, "archer_db_pool_max_connections", &[("pool", "worker")]).is_some_and(|v| v >= 1.0));
    assert!(value(s, "archer_db_pool_acquire_seconds_count", &[("pool", "api")]).is_some_and(|v| v >= 1.0));
    // the worker in this process: the Temporal SDK's task slots, cache and pollers
    assert!(value(s, "temporal_worker_task_slots_available", &[]).is_some(), "{text}");
    assert!(value(s, "temporal_sticky_cache_size", &[]).is_some(), "{text}");
    assert!(value(s, "temporal_num_pollers", &[]).is_some(), "{text}");
    assert_eq!(value(s, "archer_build_info", &[("role", "api"), ("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));

    // conventions: counters end in _total, no label value names a ticket, a tenant or a user
    for line in text.lines().filter(|l| l.starts_with("# TYPE archer_")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
    }
    let forbidden = [incident.as_str(), request.as_str(), t.slug.as_str(), &t.id.to_string(), &t.agent.email];
    for sample in s.iter() {
        for (k, v) in &sample.labels {
            assert!(!forbidden.iter().any(|f| v.contains(f)), "{} has {k}={v}", sample.name);
        }
    }
    app.stop().await;
}

/// `archer serve` or `archer worker` as a process of its own, its stdout kept.
struct Proc {
    child: tokio::process::Child,
    /// Its HTTP address (`listen` or `worker_listen`).
    base: String,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts `archer <role>` against the test app's database, task queue and SMTP sink, with
/// `extra` variables on top; waits for `/health`.
async fn start(app: &archer_tests::TestApp, role: &str, extra: &[(&str, String)]) -> Proc {
    use tokio::io::AsyncBufReadExt;
    let port = archer_api::devstack::free_port().unwrap();
    let listen_key = if role == "worker" { "ARCHER_WORKER_LISTEN" } else { "ARCHER_LISTEN" };
    let mut cmd = tokio::process::Command::new(archer_bin());
    cmd.arg(role)
        .env(listen_key, format!("127.0.0.1:{port}"))
        .env("ARCHER_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("ARCHER_DATABASE_URL", &app.database_url)
        .env("ARCHER_TEMPORAL_ADDRESS", services().temporal_address)
        .env("ARCHER_TASK_QUEUE", &app.task_queue)
        .env("ARCHER_JWT_SECRET", JWT_SECRET)
        .env("ARCHER_SMTP_URL", app.mail.url().to_string())
        .env("ARCHER_LOGIN_RATE_BURST", "10000")
        .env("ARCHER_LOG", "info,sqlx=warn,temporalio_sdk_core=warn,temporalio_client=warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn archer");
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let kept = stdout.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    archer_tests::eventually(Duration::from_secs(60), &format!("archer {role} to answer /health"), || async {
        http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    Proc { child, base, stdout }
}

impl Proc {
    /// SIGTERM, then waits for the exit (at most `within`); returns the exit status.
    async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within {within:?} of SIGTERM"))
            .expect("wait")
    }
}

/// A span the collector received.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: Vec<(String, String)>,
}

/// An OTLP/HTTP collector (protobuf, `POST /v1/traces`), keeping every span it receives.
async fn collector() -> (url::Url, std::sync::Arc<std::sync::Mutex<Vec<Span>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Span>::new()));
    let kept = spans.clone();
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let mut out = kept.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|a| a.key == "service.name")
                        .map(|a| text(&a.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                service: service.clone(),
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                name: s.name.clone(),
                                attributes: s.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect(),
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// With `otlp_endpoint` set, a catalog request is one trace from the API call to the email it
/// caused, across processes: the API's request span, the relay starting the workflow (its
/// context carried in the outbox row), the workflow and its activities in the worker process
/// (Temporal's `_tracer-data` header), down to the SMTP send. The JSON log lines of both carry
/// the trace id, and SIGTERM stops both cleanly with every span exported.
#[tokio::test(flavor = "multi_thread")]
async fn one_trace_follows_a_request_from_the_api_call_to_the_email_it_caused() {
    let app = archer_tests::spawn_app_with(archer_tests::Options { worker: false, relay: false }).await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    let (otlp, spans) = collector().await;
    let traced = [("ARCHER_OTLP_ENDPOINT", otlp.to_string()), ("ARCHER_LOG_FORMAT", "json".to_owned())];
    let mut api = start(&app, "serve", &traced).await;
    let mut worker = start(&app, "worker", &traced).await;

    let employee_token = app.login(&employee.email, archer_tests::PASSWORD).await;
    let r = app
        .http
        .post(format!("{}/api/v1/requests", api.base))
        .bearer_auth(&employee_token)
        .json(&json!({"item": item["id"], "fields": laptop_answers()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let number = r.json::<serde_json::Value>().await.unwrap()["number"].as_str().unwrap().to_owned();
    app.approval_mail(&t.manager, &number).await;

    // stopping flushes what is buffered
    assert!(worker.terminate(Duration::from_secs(40)).await.success(), "the worker exits 0 on SIGTERM");
    assert!(api.terminate(Duration::from_secs(40)).await.success(), "the API exits 0 on SIGTERM");
    let spans = spans.lock().unwrap().clone();
    let root = spans
        .iter()
        .find(|s| s.attributes.iter().any(|(k, v)| k == "request_id" && *v == request_id))
        .unwrap_or_else(|| panic!("the request's span ({request_id}) among {} spans", spans.len()));
    assert_eq!(root.service, "archer-api");
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == root.trace_id).collect();
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "request",
        "StartWorkflow:request",
        "StartWorkflow:ticket",
        "StartChildWorkflow:approval_chain",
        "RunActivity:approval.open_step",
        "RunActivity:email.send",
        "smtp.send",
    ] {
        assert!(names.contains(&want), "{want} in the request's trace: {names:?}");
    }
    // the relay's start is a child of the request's span (its context came through the outbox)
    let started = trace.iter().find(|s| s.name == "StartWorkflow:request").unwrap();
    assert_eq!(started.parent, root.span_id, "the start's parent is the request");
    assert_eq!((started.service.as_str(), root.service.as_str()), ("archer-api", "archer-api"));
    // the SMTP send descends, in the worker process, from the workflow the request started:
    // up through the activity and the approval chain to the child workflow's start (the
    // request's workflow span itself is exported when that workflow ends)
    let by_id: std::collections::HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let send = trace.iter().find(|s| s.name == "smtp.send").unwrap();
    assert_eq!(send.service, "archer-worker");
    let mut chain = vec![send.name.as_str()];
    let mut at = *send;
    while let Some(parent) = by_id.get(at.parent.as_str()) {
        chain.push(parent.name.as_str());
        at = parent;
    }
    for link in ["RunActivity:email.send", "RunWorkflow:approval_chain", "StartChildWorkflow:approval_chain"] {
        assert!(chain.contains(&link), "{link} between the email and the request: {chain:?}");
    }
    // log lines carry the trace id: the API's request, the worker's email
    let has_trace = |lines: &[String]| lines.iter().any(|l| l.contains(&root.trace_id));
    assert!(has_trace(&api.stdout.lock().unwrap()), "the API's logs name the trace");
    assert!(has_trace(&worker.stdout.lock().unwrap()), "the worker's logs name the trace");
    // ... and an activity's lines name the activity and its workflow (the tenant and the ticket)
    let workflow = format!("\"workflow_id\":\"{}/{number}", t.slug);
    assert!(
        worker
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&root.trace_id) && l.contains("\"activity\":\"email.send\"") && l.contains(&workflow)),
        "an email.send line with {workflow} and the trace id"
    );
    app.stop().await;
}

/// SIGTERM to `archer serve` under load: it stops accepting, answers every request it had
/// begun (none cut off, none failed), and exits 0; each ticket it acknowledged exists with its
/// workflow intent, and no other. Which requests the server began is read from its own log
/// (tower-http's "started processing request", by request id): a connection still waiting in
/// the kernel's accept queue when the listener closes is reset without the server having read
/// it, which the client cannot tell from a cut-off request.
#[tokio::test(flavor = "multi_thread")]
async fn archer_serve_answers_the_requests_it_accepted_when_told_to_stop() {
    use futures::StreamExt;
    let app = archer_tests::spawn_app_with(archer_tests::Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    let logs = [("ARCHER_LOG", "info,tower_http=debug".to_owned()), ("ARCHER_LOG_FORMAT", "json".to_owned())];
    let mut api = start(&app, "serve", &logs).await;
    // a connection per request, so a request never lands on a kept-alive connection the server
    // is closing (that race is the client's to retry, not a dropped request)
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (http, base, token, done) = (http.clone(), api.base.clone(), t.agent.token.clone(), done.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..300)
                .map(|i| {
                    let (http, base, token, done) = (http.clone(), base.clone(), token.clone(), done.clone());
                    async move {
                        let r = http
                            .post(format!("{base}/api/v1/tickets"))
                            .header("x-request-id", format!("drain-{i}"))
                            .bearer_auth(&token)
                            .json(
                                &json!({"kind": "incident", "title": format!("drain {i}"), "impact": 3, "urgency": 3}),
                            )
                            .send()
                            .await;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        match r {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body: serde_json::Value = r.json().await.unwrap_or_default();
                                Ok((i, status, body["number"].as_str().map(str::to_owned)))
                            }
                            Err(e) => Err((i, e.to_string())),
                        }
                    }
                })
                .buffer_unordered(12)
                .collect::<Vec<_>>()
                .await
        })
    };
    archer_tests::eventually(Duration::from_secs(30), "part of the load answered", || async {
        done.load(std::sync::atomic::Ordering::SeqCst) >= 30
    })
    .await;
    let status = api.terminate(Duration::from_secs(40)).await;
    assert!(status.success(), "exit status {status:?}");
    let results = load.await.unwrap();
    // the log pipe drains after the exit
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = api.stdout.lock().unwrap().clone();
    let logged = |what: &str, id: &str| {
        let id = format!("\"request_id\":\"{id}\"");
        lines.iter().any(|l| l.contains(what) && l.contains(&id))
    };
    let mut created = Vec::new();
    let mut never_read = 0;
    for r in &results {
        match r {
            Ok((i, 201, Some(number))) => {
                // (and the log says so: what the check below reads is there)
                assert!(logged("finished processing request", &format!("drain-{i}")), "drain-{i} in the log");
                created.push(number.clone());
            }
            Ok((_, status, _)) => panic!("a request answered {status} while the API stopped"),
            Err((i, e)) => {
                let id = format!("drain-{i}");
                assert!(!logged("started processing request", &id), "{id}, begun by the server, was cut off: {e}");
                never_read += 1;
            }
        }
    }
    for i in 0..300 {
        let id = format!("drain-{i}");
        if logged("started processing request", &id) {
            assert!(logged("finished processing request", &id), "{id} begun and never finished");
        }
    }
    println!("{} created, {never_read} refused or reset before the server read them", created.len());
    assert!(created.len() >= 30 && created.len() < 300, "the stop landed mid-load ({} created)", created.len());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE tenant_id = $1 AND title LIKE 'drain %'")
        .bind(t.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored as usize, created.len(), "every acknowledged ticket, and only those, is stored");
    let intents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE tenant_id = $1 AND intent = 'start' AND name = 'ticket'")
            .bind(t.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(intents as usize, created.len(), "each with its workflow's start intent");
    app.stop().await;
}

/// SIGTERM to `archer worker` while an activity is sending email: the worker takes no new task,
/// lets the send finish (the SMTP server takes seconds to accept), records it sent, and exits 0
/// within its grace period. The email arrives once, and nothing is left outcome-unknown.
#[tokio::test(flavor = "multi_thread")]
async fn archer_worker_lets_a_running_activity_finish_when_told_to_stop() {
    let app = archer_tests::spawn_app_with(archer_tests::Options { worker: false, relay: true }).await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    app.mail.delay_acceptance(Duration::from_secs(4));
    let mut worker = start(&app, "worker", &[("ARCHER_SHUTDOWN_GRACE_SECS", "20".to_owned())]).await;
    let r = app.submit(&employee, &item, laptop_answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json["number"].as_str().unwrap().to_owned();
    archer_tests::eventually(Duration::from_secs(30), "the approval email being sent", || async {
        app.count("SELECT count(*) FROM email_outbox WHERE sending_since IS NOT NULL AND sent_at IS NULL").await == 1
    })
    .await;
    let stopping = std::time::Instant::now();
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let (sent, unknown): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FILTER (WHERE outcome_unknown_at IS NOT NULL)
           FROM email_outbox",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((sent, unknown), (1, 0), "the send in flight finished before the worker exited");
    assert!(stopping.elapsed() < Duration::from_secs(20), "within the grace period: {:?}", stopping.elapsed());
    assert_eq!(app.approval_mails(&t.manager, &number), 1, "the email arrived, once");
    app.stop().await;
}

/// An email whose sender died mid-send and that no retry came back to (the workflow moved on
/// first: its approver decided) is flagged outcome unknown by the relay's sweep, 5 minutes after
/// its claim, and counted in `archer_emails_total{outcome="unknown"}`; one claimed a moment ago
/// (a sender may still be at it) is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_whose_sender_died_is_flagged_outcome_unknown() {
    let app = archer_tests::spawn_app_with(archer_tests::Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    let mut ids = Vec::new();
    for (name, claimed_ago) in [("stalled", "6 minutes"), ("recent", "10 seconds")] {
        let mut tx =
            archer_store::TenantTx::begin(&app.db, t.id, &archer_store::AuditContext::default()).await.unwrap();
        let id = archer_store::notifications::queue_email(
            &mut tx,
            t.id,
            &format!("<ops.{name}.{}@archer>", t.slug),
            &json!([{"name": "Alex", "address": "alex@acme.example"}]),
            "approval_request",
            &json!({}),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        sqlx::query("UPDATE email_outbox SET sending_since = now() - $2::interval WHERE id = $1")
            .bind(id)
            .bind(claimed_ago)
            .execute(&app.pool)
            .await
            .unwrap();
        ids.push(id);
    }
    // an `archer serve` leads the relay and sweeps at once
    let api = start(&app, "serve", &[]).await;
    let state = |id: uuid::Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (bool, bool)>(
                "SELECT outcome_unknown_at IS NOT NULL, sending_since IS NOT NULL FROM email_outbox WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    archer_tests::eventually(Duration::from_secs(30), "the stalled send flagged", || async {
        state(ids[0]).await == (true, false)
    })
    .await;
    assert_eq!(state(ids[1]).await, (false, true), "a recent claim is left to its sender");
    let (_, body) = scrape(&app.http, &format!("{}/metrics", api.base)).await;
    assert_eq!(value(&samples(&body), "archer_emails_total", &[("outcome", "unknown")]), Some(1.0));
    assert_eq!(app.mail.messages().len(), 0, "nothing is sent again");
    app.stop().await;
}
