//! Looking at workflows the way ops would, and replaying their histories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowFetchHistoryOptions, WorkflowHistory,
    WorkflowListOptions, WorkflowQueryOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

use archer_orchestrator::workflows::approval::{ApprovalChainWorkflow, RequestWorkflow};
use archer_orchestrator::workflows::ticket::{TicketLifecycle, TicketWorkflow};

use crate::{TestApp, eventually};

impl TestApp {
    pub async fn temporal(&self) -> Client {
        archer_workers::temporal::connect(&self.temporal_config()).await.expect("connect to Temporal")
    }

    /// The workflow's status, or `None` if it does not exist.
    pub async fn workflow_status(&self, client: &Client, workflow_id: &str) -> Option<WorkflowExecutionStatus> {
        let h = client.get_workflow_handle::<TicketWorkflow>(workflow_id.to_owned());
        h.describe(WorkflowDescribeOptions::default()).await.ok().map(|d| d.status())
    }

    pub async fn wait_for_status(&self, client: &Client, workflow_id: &str, want: WorkflowExecutionStatus) {
        eventually(Duration::from_secs(60), &format!("{workflow_id} to be {want:?}"), || async {
            self.workflow_status(client, workflow_id).await == Some(want)
        })
        .await;
    }

    /// The ticket as the running workflow holds it.
    pub async fn workflow_ticket(&self, client: &Client, workflow_id: &str) -> TicketLifecycle {
        let h = client.get_workflow_handle::<TicketWorkflow>(workflow_id.to_owned());
        h.query(TicketWorkflow::ticket, (), WorkflowQueryOptions::default()).await.expect("query ticket")
    }

    /// The ticket as the running workflow holds it, or `None` while it cannot answer (a workflow
    /// task that failed and is being retried, as when signals arrive while it continues as new).
    pub async fn try_workflow_ticket(&self, client: &Client, workflow_id: &str) -> Option<TicketLifecycle> {
        let h = client.get_workflow_handle::<TicketWorkflow>(workflow_id.to_owned());
        h.query(TicketWorkflow::ticket, (), WorkflowQueryOptions::default()).await.ok()
    }

    /// Workflow ids (and how many executions each has) matching a visibility query.
    pub async fn list_workflows(&self, client: &Client, query: &str) -> Vec<(String, WorkflowExecutionStatus)> {
        let mut out = Vec::new();
        let mut s = client.list_workflows(query, WorkflowListOptions::default());
        while let Some(w) = s.next().await {
            let w = w.expect("list workflows");
            out.push((w.id().to_owned(), w.status()));
        }
        out
    }
}

/// A workflow's whole history.
pub async fn history(
    client: &Client,
    workflow_id: &str,
) -> Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent> {
    let h = client.get_workflow_handle::<TicketWorkflow>(workflow_id.to_owned());
    h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.expect("fetch history")
}

/// The names of the signals in a workflow's history, in order.
pub async fn signal_names(client: &Client, workflow_id: &str) -> Vec<String> {
    history(client, workflow_id)
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::WorkflowExecutionSignaled)
        .filter_map(|e| match e.attributes {
            Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) => Some(a.signal_name),
            _ => None,
        })
        .collect()
}

/// A replayer knowing every Archer workflow.
fn replayer() -> WorkflowReplayer {
    replayer_with(false)
}

/// A replayer of Archer's workflows; `traced`: with the Temporal SDK's OpenTelemetry plugin, as
/// a worker runs them when `otlp_endpoint` is set.
fn replayer_with(traced: bool) -> WorkflowReplayer {
    let mut opts = WorkflowReplayerOptions::new();
    if traced {
        opts = opts.worker_plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build());
    }
    let opts = opts
        .register_workflow::<TicketWorkflow>()
        .expect("register ticket workflow")
        .register_workflow::<RequestWorkflow>()
        .expect("register request workflow")
        .register_workflow::<ApprovalChainWorkflow>()
        .expect("register approval chain workflow")
        .register_workflow::<archer_orchestrator::workflows::playbook::PlaybookRunWorkflow>()
        .expect("register playbook run workflow")
        .build();
    WorkflowReplayer::new(opts).expect("replayer")
}

/// Replays a live workflow's history against the current code, and records it as
/// `tests/histories/<record_as>.json` (`record_as` is `<workflow type>/<name>`) when
/// `ARCHER_TEST_RECORD_HISTORIES` is set.
pub async fn replay_live(client: &Client, workflow_id: &str, record_as: &str) {
    let events = history(client, workflow_id).await;
    let history = temporalio_common::protos::temporal::api::history::v1::History { events };
    if std::env::var_os("ARCHER_TEST_RECORD_HISTORIES").is_some() {
        let path = histories_dir().join(format!("{record_as}.json"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("histories dir");
        }
        let json = WorkflowHistory::from(history.clone()).to_json().await.expect("history json");
        std::fs::write(&path, json).expect("write history");
    }
    replayer().replay_workflow(WorkflowHistory::from(history)).await.expect("replays against current code");
}

/// `tests/histories`: one folder per workflow type.
pub fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("histories")
}

/// Replays every recorded history in `dir` (a workflow type's folder); returns how many.
pub async fn replay_recorded(dir: &Path) -> usize {
    replay_recorded_with(dir, false).await
}

/// [`replay_recorded`], with the worker's tracing plugin installed when `traced`.
pub async fn replay_recorded_with(dir: &Path, traced: bool) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let r = replayer_with(traced);
    for f in &files {
        let bytes = std::fs::read(f).expect("read history");
        let h = WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Err(e) = r.replay_workflow(h).await {
            panic!("{} no longer replays against the current workflow code: {e}", f.display());
        }
    }
    files.len()
}
