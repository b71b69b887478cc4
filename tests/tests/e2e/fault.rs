//! Killing the API at any moment loses no ticket and leaves no orphan workflow.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use archer_tests::{JWT_SECRET, Options, archer_bin, services, spawn_app_with};
use futures::StreamExt;
use serde_json::json;
use temporalio_client::WorkflowExecutionStatus;

/// `archer serve` as a separate process, so it can be killed for real.
struct ApiProcess {
    child: tokio::process::Child,
    base: String,
}

async fn start_api(database_url: &str, task_queue: &str) -> ApiProcess {
    let port = archer_api::devstack::free_port().unwrap();
    let child = tokio::process::Command::new(archer_bin())
        .arg("serve")
        .env("ARCHER_LISTEN", format!("127.0.0.1:{port}"))
        .env("ARCHER_DATABASE_URL", database_url)
        .env("ARCHER_TEMPORAL_ADDRESS", services().temporal_address)
        .env("ARCHER_TASK_QUEUE", task_queue)
        .env("ARCHER_JWT_SECRET", JWT_SECRET)
        .env("ARCHER_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn archer serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = {
        archer_tests::crypto();
        reqwest::Client::new()
    };
    archer_tests::eventually(Duration::from_secs(30), "archer serve to listen", || async {
        http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    ApiProcess { child, base }
}

async fn create(http: &reqwest::Client, base: &str, token: &str, title: String) -> Option<String> {
    let r = http
        .post(format!("{base}/api/v1/tickets"))
        .bearer_auth(token)
        .json(&json!({"kind": "incident", "title": title, "impact": 3, "urgency": 3}))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 201 {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["number"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_api_mid_burst_loses_no_ticket_and_leaves_no_orphan_workflow() {
    // the in-process app is used only for provisioning and inspection: no relay, no worker
    let mut app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    let http = {
        archer_tests::crypto();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_secs(10))
    .build()
    .unwrap();

    // 1. worker stopped: 50 tickets are accepted anyway
    let mut api = start_api(&app.database_url, &app.task_queue).await;
    let mut acknowledged = BTreeSet::new();
    for i in 0..50 {
        acknowledged.insert(
            create(&http, &api.base, &t.agent.token, format!("first {i}")).await.expect("201 while the worker is down"),
        );
    }

    // 2. a burst of creates, and the API killed (SIGKILL) while it is under way
    let done = Arc::new(AtomicUsize::new(0));
    let burst = {
        let http = http.clone();
        let base = api.base.clone();
        let token = t.agent.token.clone();
        let done = done.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..400)
                .map(|i| {
                    let (http, base, token, done) = (http.clone(), base.clone(), token.clone(), done.clone());
                    async move {
                        let r = create(&http, &base, &token, format!("burst {i}")).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        r
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    archer_tests::eventually(Duration::from_secs(30), "part of the burst", || async {
        done.load(Ordering::SeqCst) >= 40
    })
    .await;
    api.child.start_kill().unwrap();
    api.child.wait().await.unwrap();
    let burst: Vec<Option<String>> = burst.await.unwrap();
    let acked_in_burst = burst.iter().flatten().count();
    assert!((40..400).contains(&acked_in_burst), "the kill landed mid-burst ({acked_in_burst} of 400 acknowledged)");
    acknowledged.extend(burst.into_iter().flatten());

    // 3. restart everything: API (with its relay) and a worker
    let api = start_api(&app.database_url, &app.task_queue).await;
    app.start_worker().await;
    app.outbox_drained().await;

    // every acknowledged ticket is in the database, and the database holds nothing else odd
    let stored: BTreeSet<String> = sqlx::query_scalar::<_, i32>("SELECT number FROM tickets WHERE tenant_id = $1")
        .bind(t.id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|n| format!("INC-{n:06}"))
        .collect();
    assert!(
        acknowledged.is_subset(&stored),
        "acknowledged tickets missing: {:?}",
        acknowledged.difference(&stored).collect::<Vec<_>>()
    );
    let expected: BTreeSet<String> = (1..=stored.len()).map(|n| format!("INC-{n:06}")).collect();
    assert_eq!(stored, expected, "numbers stay gap-free across the crash");

    // each stored ticket has exactly one workflow execution, running; no workflow lacks a ticket
    let client = app.temporal().await;
    let want: BTreeSet<String> = stored.iter().map(|n| format!("{}/{n}", t.slug)).collect();
    let slug = t.slug.clone();
    let list = || async {
        let mut executions: BTreeMap<String, Vec<WorkflowExecutionStatus>> = BTreeMap::new();
        for (id, status) in app.list_workflows(&client, &format!("ArcherTenant = '{slug}'")).await {
            executions.entry(id).or_default().push(status);
        }
        executions
    };
    archer_tests::eventually(Duration::from_secs(60), "visibility to list every workflow", || async {
        list().await.keys().cloned().collect::<BTreeSet<_>>() == want
    })
    .await;
    let executions = list().await;
    for (id, runs) in &executions {
        assert_eq!(runs, &vec![WorkflowExecutionStatus::Running], "{id} has {runs:?}");
    }
    // and the restarted worker runs them: every one answers a query
    for id in want.iter().take(5) {
        let live = app.workflow_ticket(&client, id).await;
        assert_eq!(live.status, archer_orchestrator::Status::New);
    }
    drop(api);
    app.stop().await;
}
