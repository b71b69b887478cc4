//! `archer dev`, the README's first command after its install step: brings everything up on
//! its own PostgreSQL and Temporal, stops cleanly on SIGTERM, and keeps its data for the next run.

use std::process::Stdio;
use std::time::Duration;

use archer_api::devstack::free_port;
use archer_tests::{archer_bin, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use temporalio_client::WorkflowExecutionStatus;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Dev {
    child: tokio::process::Child,
    banner: tokio::sync::watch::Receiver<String>,
}

struct Ports {
    api: u16,
    temporal: u16,
    ui: u16,
    pg: u16,
    smtp: u16,
    mail_ui: u16,
}

fn start(dir: &std::path::Path, p: &Ports) -> Dev {
    let temporal_bin =
        std::env::var("ARCHER_TEST_TEMPORAL_BIN").expect("ARCHER_TEST_TEMPORAL_BIN (set by archer dev --exec)");
    let mut child = tokio::process::Command::new(archer_bin())
        .arg("dev")
        .arg("--dir")
        .arg(dir)
        .args(["--api-port", &p.api.to_string(), "--temporal-port", &p.temporal.to_string()])
        .args(["--ui-port", &p.ui.to_string(), "--pg-port", &p.pg.to_string()])
        .args(["--smtp-port", &p.smtp.to_string(), "--mail-ui-port", &p.mail_ui.to_string()])
        .env("ARCHER_TEMPORAL_BIN", temporal_bin)
        .env("ARCHER_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn archer dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::watch::channel(String::new());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut all = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
            let _ = tx.send(all.clone());
        }
    });
    Dev { child, banner: rx }
}

async fn wait_up(dev: &Dev, api: &str) {
    let http = {
        archer_tests::crypto();
        reqwest::Client::new()
    };
    eventually(Duration::from_secs(180), "archer dev to be ready", || async {
        http.get(format!("{api}/ready")).send().await.is_ok_and(|r| r.status().is_success())
            && dev.banner.borrow().contains("Archer is up")
    })
    .await;
}

async fn stop(mut dev: Dev) {
    let pid = dev.child.id().expect("pid") as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(60), dev.child.wait())
        .await
        .expect("stops within a minute")
        .expect("wait");
    assert!(status.success(), "archer dev exited with {status}");
    assert!(dev.banner.borrow().contains("archer dev: stopped"));
}

async fn login(api: &str) -> String {
    let r = {
        archer_tests::crypto();
        reqwest::Client::new()
    }
    .post(format!("{api}/api/v1/auth/login"))
    .json(&json!({"email": "agent@acme.example", "password": archer_api::seed::DEMO_PASSWORD}))
    .send()
    .await
    .expect("login");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    v["access_token"].as_str().expect("token").to_owned()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn archer_dev_runs_the_system_stops_cleanly_and_keeps_its_data() {
    let dir = std::env::temp_dir().join(format!("archer-dev-test-{}", uuid::Uuid::new_v4().simple()));
    let p = Ports {
        api: free_port().unwrap(),
        temporal: free_port().unwrap(),
        ui: free_port().unwrap(),
        pg: free_port().unwrap(),
        smtp: free_port().unwrap(),
        mail_ui: free_port().unwrap(),
    };
    let api = format!("http://127.0.0.1:{}", p.api);

    let dev = start(&dir, &p);
    wait_up(&dev, &api).await;
    let banner = dev.banner.borrow().clone();
    for expected in [api.as_str(), "agent@acme.example", "admin@globex.example", "Temporal UI", "archer-demo"] {
        assert!(banner.contains(expected), "the banner lacks {expected}:\n{banner}");
    }
    let token = login(&api).await;
    let http = {
        archer_tests::crypto();
        reqwest::Client::new()
    };
    let r = http
        .post(format!("{api}/api/v1/tickets"))
        .bearer_auth(&token)
        .json(&json!({"kind": "incident", "title": "Printer on fire", "impact": 1, "urgency": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ticket: serde_json::Value = r.json().await.unwrap();
    // after the two demo incidents (the tasks the shipped major-incident playbook opens for
    // P1s are numbered TASK-, apart)
    let number = ticket["number"].as_str().unwrap().to_owned();
    assert_eq!(number, "INC-000003");
    let workflow_id = format!("acme/{number}");

    let cfg = archer_workers::TemporalConfig {
        address: url::Url::parse(&format!("http://127.0.0.1:{}", p.temporal)).unwrap(),
        namespace: "default".into(),
        task_queue: "archer".into(),
    };
    let client = archer_workers::temporal::connect(&cfg).await.unwrap();
    let status = |id: String| {
        let client = client.clone();
        async move {
            client
                .get_workflow_handle::<archer_orchestrator::workflows::ticket::TicketWorkflow>(id)
                .describe(Default::default())
                .await
                .ok()
                .map(|d| d.status())
        }
    };
    eventually(Duration::from_secs(30), "the new ticket's workflow", || async {
        status(workflow_id.clone()).await == Some(WorkflowExecutionStatus::Running)
    })
    .await;
    drop(client);

    // the demo catalog: the requester asks for a laptop; their manager finds it in their inbox
    let as_user = |email: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let r = http
                .post(format!("{api}/api/v1/auth/login"))
                .json(&json!({"email": email, "password": archer_api::seed::DEMO_PASSWORD}))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let requester = as_user("requester@acme.example").await;
    let catalog: serde_json::Value =
        http.get(format!("{api}/api/v1/catalog")).bearer_auth(&requester).send().await.unwrap().json().await.unwrap();
    let laptop = catalog
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["items"].as_array().unwrap().iter())
        .find(|i| i["name"] == "Laptop")
        .unwrap_or_else(|| panic!("no Laptop in the demo catalog: {catalog}"))
        .clone();
    let fields = json!({"device_type": "laptop", "os": "linux", "justification": "My old laptop no longer boots"});
    let r = http
        .post(format!("{api}/api/v1/requests"))
        .bearer_auth(&requester)
        .json(&json!({"item": laptop["id"], "fields": fields}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let req: serde_json::Value = r.json().await.unwrap();
    assert_eq!(req["status"], "pending_approval");
    let manager = as_user("manager@acme.example").await;
    eventually(Duration::from_secs(30), "the manager to be asked", || async {
        let inbox: serde_json::Value = http
            .get(format!("{api}/api/v1/approvals"))
            .bearer_auth(&manager)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        inbox["items"].as_array().is_some_and(|a| a.iter().any(|i| i["ticket"] == req["number"]))
    })
    .await;

    stop(dev).await;
    for port in [p.api, p.temporal, p.pg] {
        assert!(port_free(port), "port {port} is still held after stopping");
    }

    // the second run reuses the cluster and Temporal's state, and does not load the demo twice
    let dev = start(&dir, &p);
    wait_up(&dev, &api).await;
    let token = login(&api).await;
    let list: serde_json::Value = http
        .get(format!("{api}/api/v1/tickets?kind=incident"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // the "Communications lead" tasks the P1s opened are tasks, not incidents
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
    let client = archer_workers::temporal::connect(&cfg).await.unwrap();
    let h = client.get_workflow_handle::<archer_orchestrator::workflows::ticket::TicketWorkflow>(workflow_id.clone());
    assert_eq!(h.describe(Default::default()).await.unwrap().status(), WorkflowExecutionStatus::Running);
    // and its worker still runs it
    let r = http
        .patch(format!("{api}/api/v1/tickets/{number}"))
        .bearer_auth(&token)
        .json(&json!({"status": "cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(30), "the workflow to complete", || async {
        h.describe(Default::default()).await.is_ok_and(|d| d.status() == WorkflowExecutionStatus::Completed)
    })
    .await;
    stop(dev).await;
    let _ = std::fs::remove_dir_all(&dir);
}
