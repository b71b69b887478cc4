//! The engine's side of the benchmarks: a bare workflow, a bare activity and a bare worker,
//! with none of Archer's code paths, so `engine-bench` measures what Temporal itself does on this
//! machine and each Archer figure can be printed beside the engine's, measured in the same run.
//!
//! The timer workflow has the shape of a ticket's SLA clock in Archer: one durable timer until
//! an instant it is given (its duration computed from workflow time), then one activity whose
//! only side effect is reading the wall clock, as Archer records a breach, with the options
//! the ticket workflow records it with (`ticket::record_options`). The worker uses the
//! SDK options Archer's worker sets (`max_cached_workflows`), a single-threaded runtime as
//! Archer's worker thread does, and the SDK's defaults otherwise.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};

use archer_orchestrator::workflows::ticket;

/// Archer's default `worker_max_cached_workflows`.
pub const MAX_CACHED_WORKFLOWS: usize = 200;

/// What a timer workflow is given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TimerInput {
    /// The due instant, unix milliseconds.
    pub due_ms: i64,
    /// Record with a local activity (as Archer records a breach) rather than a regular one.
    pub local: bool,
}

/// Does nothing: what the engine does for a workflow start, without Archer's work.
#[workflow]
#[derive(Default)]
pub struct NoopWorkflow;

#[workflow_methods]
impl NoopWorkflow {
    #[run(name = "engine_bench.noop")]
    pub async fn run(_ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        Ok(())
    }
}

/// Sleeps until its due instant, then returns the wall-clock instant an activity ran at.
#[workflow]
#[derive(Default)]
pub struct TimerWorkflow;

#[workflow_methods]
impl TimerWorkflow {
    #[run(name = "engine_bench.timer")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: TimerInput) -> WorkflowResult<i64> {
        let now_ms = ctx.workflow_time().map_or(0, unix_ms);
        ctx.timer(sleep_for(now_ms, input.due_ms)).await;
        let ran_at = if input.local {
            ctx.execute_local_activity(ClockActivities::now, input.due_ms, ticket::record_options()).await?
        } else {
            ctx.execute_activity(ClockActivities::now, input.due_ms, ticket::effect_options()).await?
        };
        Ok(ran_at)
    }
}

/// The timer's duration from workflow time to the due instant: at least a millisecond, as
/// Archer's waits are, so every workflow has exactly one timer.
pub fn sleep_for(now_ms: i64, due_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(due_ms.saturating_sub(now_ms)).unwrap_or(0).max(1))
}

/// Milliseconds since the unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub struct ClockActivities;

#[activities]
impl ClockActivities {
    /// Reads the wall clock: the instant the workflow's due work ran.
    #[activity(name = "engine_bench.now")]
    pub async fn now(_ctx: ActivityContext, _due_ms: i64) -> Result<i64, ActivityError> {
        Ok(unix_ms(SystemTime::now()))
    }
}

/// A client on the namespace Archer uses.
pub async fn connect(address: &str) -> anyhow::Result<Client> {
    let url = Url::parse(address)?;
    let options = ConnectionOptions::new(url)
        .identity(format!("engine-bench@{}", std::process::id()))
        .connect_timeout(Duration::from_secs(10))
        .build();
    let connection = Connection::connect(options).await?;
    Ok(Client::new(connection, ClientOptions::new("default").build())?)
}

/// Runs a bare worker on `task_queue` until the process ends. Call it on a current-thread
/// runtime (the SDK's worker future is not `Send`), as Archer's worker thread does.
pub async fn run_worker(address: &str, task_queue: &str, max_cached_workflows: usize) -> anyhow::Result<()> {
    let client = connect(address).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(task_queue.to_owned())
        .register_workflow::<NoopWorkflow>()?
        .register_workflow::<TimerWorkflow>()?
        .register_activities(ClockActivities)
        .max_cached_workflows(max_cached_workflows)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    worker.run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_runs_until_the_due_instant_and_never_less_than_a_millisecond() {
        assert_eq!(sleep_for(1_000, 31_000), Duration::from_secs(30));
        assert_eq!(sleep_for(1_000, 1_000), Duration::from_millis(1));
        assert_eq!(sleep_for(5_000, 1_000), Duration::from_millis(1));
    }
}
