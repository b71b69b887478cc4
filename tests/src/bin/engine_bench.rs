//! The engine benchmark: Temporal's own ceilings on this machine, measured with a bare client
//! and a bare worker (no Archer workflow, activity or code path), against the dev server
//! Archer uses, so every Archer figure can be printed beside the engine's. Run it under
//! `archer dev --exec`:
//!
//! ```text
//! engine-bench [all|starts|timers] [--workflows N] [--inflight K] [--lead S] [--spread S]
//!              [--max-cached N] [--activity local|remote]
//! ```
//!
//! - `starts`: the client starts N trivial workflows, at most K start calls in flight, with no
//!   worker polling (as write-bench measures the relay); the figure is the rate of the start
//!   calls. A bare worker then runs them (the time until all complete).
//! - `timers`: the shape of sla-bench. N workflows each sleep on a durable timer until a due
//!   instant (spread evenly over `spread` seconds from `lead` seconds after now), then run one
//!   activity that reads the wall clock; lag is that instant minus the due instant. The activity
//!   is local by default, as Archer records a breach (`sla.record`). The defaults are
//!   sla-bench's: 10,000 workflows due from 240 s to 360 s after the start (`starts`: 2,000).
//!
//! The worker runs in a separate process (this binary as `engine-bench worker --task-queue Q`),
//! so its peak memory is its own. Besides the human-readable lines, each figure is printed as
//! `FIGURE <key> <value>` for a driver script.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use archer_tests::engine::{self, MAX_CACHED_WORKFLOWS, NoopWorkflow, TimerInput, TimerWorkflow};
use archer_tests::services;
use futures::StreamExt;
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::HasWorkflowDefinition;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    All,
    Starts,
    Timers,
    Worker,
}

#[derive(Debug, Clone)]
struct Args {
    scenario: Scenario,
    /// How many workflows (default: 2,000 for `starts`; for `timers` 10,000, sla-bench's count).
    workflows: Option<usize>,
    /// Start calls in flight at most.
    inflight: usize,
    /// Seconds from now to the first due instant.
    lead: u64,
    /// Seconds over which the due instants spread.
    spread: u64,
    max_cached: usize,
    local_activity: bool,
    /// For `worker`: the task queue to poll.
    task_queue: String,
}

const USAGE: &str = "usage: engine-bench [all|starts|timers] [--workflows N] [--inflight K] [--lead SECONDS] \
                     [--spread SECONDS] [--max-cached N] [--activity local|remote]\n       \
                     engine-bench worker --task-queue QUEUE [--max-cached N]";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn args() -> Args {
    let mut a = Args {
        scenario: Scenario::All,
        workflows: None,
        inflight: 16,
        lead: 240,
        spread: 120,
        max_cached: MAX_CACHED_WORKFLOWS,
        local_activity: true,
        task_queue: String::new(),
    };
    let mut argv = std::env::args().skip(1).peekable();
    if let Some(first) = argv.peek() {
        let scenario = match first.as_str() {
            "all" => Some(Scenario::All),
            "starts" => Some(Scenario::Starts),
            "timers" => Some(Scenario::Timers),
            "worker" => Some(Scenario::Worker),
            _ => None,
        };
        if let Some(s) = scenario {
            a.scenario = s;
            argv.next();
        }
    }
    while let Some(flag) = argv.next() {
        let Some(value) = argv.next() else { usage() };
        let number = value.parse::<u64>().ok().filter(|n| *n > 0);
        match (flag.as_str(), number) {
            ("--workflows", Some(v)) => a.workflows = Some(v as usize),
            ("--inflight", Some(v)) => a.inflight = v as usize,
            ("--lead", Some(v)) => a.lead = v,
            ("--spread", Some(v)) => a.spread = v,
            ("--max-cached", Some(v)) if v >= 2 => a.max_cached = v as usize,
            ("--task-queue", _) => a.task_queue = value,
            ("--activity", _) if value == "local" || value == "remote" => a.local_activity = value == "local",
            _ => usage(),
        }
    }
    if a.scenario == Scenario::Worker && a.task_queue.is_empty() {
        usage();
    }
    a
}

fn main() {
    let args = args();
    let code = if args.scenario == Scenario::Worker {
        worker_main(&args)
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        match rt {
            Ok(rt) => rt.block_on(bench(args)),
            Err(e) => {
                eprintln!("engine-bench: {e}");
                1
            }
        }
    };
    std::process::exit(code);
}

/// The worker process: a current-thread runtime, as Archer's worker thread has.
fn worker_main(args: &Args) -> i32 {
    let address = services().temporal_address;
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(engine::run_worker(&address, &args.task_queue, args.max_cached)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("engine-bench worker: {e:#}");
            1
        }
    }
}

async fn bench(args: Args) -> i32 {
    let address = services().temporal_address;
    let client = match engine::connect(&address).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engine-bench: cannot connect to Temporal at {address}: {e:#}");
            return 1;
        }
    };
    // unique per run: workflow ids and task queues never meet an earlier run's
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut ok = true;
    if matches!(args.scenario, Scenario::All | Scenario::Starts) {
        ok &= report(starts(&client, &args, &run).await);
    }
    if matches!(args.scenario, Scenario::All | Scenario::Timers) {
        ok &= report(timers(&client, &args, &run).await);
    }
    if ok { 0 } else { 1 }
}

fn report(outcome: anyhow::Result<bool>) -> bool {
    outcome.unwrap_or_else(|e| {
        eprintln!("engine-bench: {e:#}");
        false
    })
}

fn figure(label: &str, key: &str, value: f64, unit: &str) {
    println!("  {label:<26} {value:.3}{unit}");
    println!("FIGURE engine.{key} {value:.3}");
}

/// The bare worker in a process of its own, killed when dropped.
struct WorkerProcess {
    child: tokio::process::Child,
    pid: u32,
}

impl WorkerProcess {
    fn spawn(task_queue: &str, max_cached: usize) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["worker", "--task-queue", task_queue, "--max-cached", &max_cached.to_string()])
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("the worker exited at once"))?;
        Ok(Self { child, pid })
    }

    /// Peak resident memory so far (VmHWM), KiB; `None` once the process has ended.
    fn peak_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Counters the progress lines print every 5 s, and the worker's peak memory, sampled every
/// second (the bench ends at once if the worker dies).
struct Progress {
    total: usize,
    started: AtomicUsize,
    completed: AtomicUsize,
    worker_peak_kib: AtomicU64,
}

impl Progress {
    /// `worker_pid`: `None` while no worker runs yet.
    fn watch(total: usize, worker_pid: Option<u32>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let p = Arc::new(Progress {
            total,
            started: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            worker_peak_kib: AtomicU64::new(0),
        });
        let watched = p.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            for secs in 1u64.. {
                tick.tick().await;
                match worker_pid.map(WorkerProcess::peak_kib) {
                    None => {}
                    Some(Some(kib)) => _ = watched.worker_peak_kib.fetch_max(kib, Ordering::Relaxed),
                    Some(None) => {
                        // waiting on would only run into the deadline
                        eprintln!("engine-bench: the worker process ended (its error is above)");
                        std::process::exit(1);
                    }
                }
                if secs.is_multiple_of(5) {
                    println!(
                        "  [{secs:>4}s] started {} of {n}, completed {} of {n}",
                        watched.started.load(Ordering::Relaxed),
                        watched.completed.load(Ordering::Relaxed),
                        n = watched.total
                    );
                }
            }
        });
        (p, ticker)
    }

    fn worker_peak_mib(&self, pid: u32) -> f64 {
        let last = WorkerProcess::peak_kib(pid).unwrap_or(0);
        self.worker_peak_kib.load(Ordering::Relaxed).max(last) as f64 / 1024.0
    }
}

/// Starts `inputs` (workflow id, input) with at most `inflight` start calls in flight; returns
/// the ids started.
async fn start_all<W>(
    client: &Client,
    workflow: impl Fn() -> W,
    task_queue: &str,
    inputs: Vec<(String, W::Input)>,
    inflight: usize,
    progress: &Progress,
) -> Vec<String>
where
    W: HasWorkflowDefinition,
    W::Input: Send,
{
    let workflow = &workflow;
    futures::stream::iter(inputs)
        .map(|(id, input)| async move {
            let options = WorkflowStartOptions::new(task_queue.to_owned(), id.clone()).build();
            match client.start_workflow(workflow(), input, options).await {
                Ok(_) => {
                    progress.started.fetch_add(1, Ordering::Relaxed);
                    Some(id)
                }
                Err(e) => {
                    eprintln!("engine-bench: starting {id}: {e}");
                    None
                }
            }
        })
        .buffer_unordered(inflight)
        .filter_map(futures::future::ready)
        .collect()
        .await
}

/// A workflow's result, waiting (and retrying failed polls) until `deadline`; `None` if it did
/// not complete successfully by then.
async fn result_of<W: HasWorkflowDefinition>(client: &Client, id: &str, deadline: Instant) -> Option<W::Output> {
    let handle = client.get_workflow_handle::<W>(id.to_owned());
    let wait = async {
        loop {
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Ok(v) => return Some(v),
                Err(
                    e @ (WorkflowGetResultError::Failed(_)
                    | WorkflowGetResultError::Cancelled { .. }
                    | WorkflowGetResultError::Terminated { .. }
                    | WorkflowGetResultError::TimedOut
                    | WorkflowGetResultError::ContinuedAsNew
                    | WorkflowGetResultError::NotFound(_)),
                ) => {
                    eprintln!("engine-bench: {id}: {e}");
                    return None;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    };
    tokio::time::timeout_at(deadline.into(), wait).await.ok().flatten()
}

/// Long polls for results held open at once.
const RESULT_POLLS: usize = 64;

async fn starts(client: &Client, args: &Args, run: &str) -> anyhow::Result<bool> {
    let n = args.workflows.unwrap_or(2_000);
    let task_queue = format!("engine-bench-{run}-starts");
    println!("engine-bench starts: {n} workflows, at most {} start calls in flight", args.inflight);
    // no worker while the start calls run, as write-bench's relay runs without one: the figure
    // is what the server accepts, not what a worker then does with it
    let (progress, ticker) = Progress::watch(n, None);
    let began = Instant::now();
    let inputs = (0..n).map(|i| (format!("engine-bench-{run}-s{i}"), ())).collect();
    let ids = start_all(client, || NoopWorkflow::run, &task_queue, inputs, args.inflight, &progress).await;
    let start_secs = began.elapsed().as_secs_f64();
    let worker = WorkerProcess::spawn(&task_queue, args.max_cached)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let completed = futures::stream::iter(&ids)
        .map(|id| async {
            let done = result_of::<NoopWorkflow>(client, id, deadline).await.is_some();
            if done {
                progress.completed.fetch_add(1, Ordering::Relaxed);
            }
            done
        })
        .buffer_unordered(RESULT_POLLS)
        .filter(|done| futures::future::ready(*done))
        .count()
        .await;
    let all_secs = began.elapsed().as_secs_f64();
    ticker.abort();
    let _ = ticker.await;
    let peak_mib = progress.worker_peak_mib(worker.pid);
    worker.stop().await;
    println!();
    println!("  started                    {} of {n} in {start_secs:.1}s", ids.len());
    println!("  completed                  {completed} of {n}");
    figure("starts per second", "starts_per_s", ids.len() as f64 / start_secs, "/s");
    figure("start to all complete", "starts_all_complete_s", all_secs, "s");
    figure("worker peak memory", "starts_worker_peak_mib", peak_mib, " MiB");
    println!("FIGURE engine.starts_completed {completed}");
    Ok(completed == n)
}

async fn timers(client: &Client, args: &Args, run: &str) -> anyhow::Result<bool> {
    let n = args.workflows.unwrap_or(10_000);
    let task_queue = format!("engine-bench-{run}-timers");
    let kind = if args.local_activity { "local" } else { "regular" };
    println!(
        "engine-bench timers: {n} workflows due {}s to {}s from now, then one {kind} activity",
        args.lead,
        args.lead + args.spread
    );
    let worker = WorkerProcess::spawn(&task_queue, args.max_cached)?;
    let (progress, ticker) = Progress::watch(n, Some(worker.pid));
    let began = Instant::now();
    let first_due = engine::unix_ms(SystemTime::now()) + (args.lead * 1000) as i64;
    let step = (args.spread * 1000) as f64 / (n.max(2) - 1) as f64;
    let due = |i: usize| first_due + (i as f64 * step).round() as i64;
    let inputs = (0..n)
        .map(|i| (format!("engine-bench-{run}-t{i}"), TimerInput { due_ms: due(i), local: args.local_activity }))
        .collect();
    let ids = start_all(client, || TimerWorkflow::run, &task_queue, inputs, args.inflight, &progress).await;
    let start_secs = began.elapsed().as_secs_f64();
    println!("  every workflow started after {start_secs:.1}s ({:.1} starts/s)", ids.len() as f64 / start_secs);
    if start_secs > args.lead as f64 {
        println!("  note: starting took longer than the lead ({}s); early lags include start delay", args.lead);
    }
    let deadline = Instant::now() + Duration::from_secs(args.lead + args.spread + 600);
    let mut lags: Vec<f64> = futures::stream::iter(&ids)
        .map(|id| async {
            let i: usize = id.rsplit_once("-t").and_then(|(_, i)| i.parse().ok())?;
            let ran_at = result_of::<TimerWorkflow>(client, id, deadline).await?;
            progress.completed.fetch_add(1, Ordering::Relaxed);
            Some((ran_at - due(i)) as f64 / 1000.0)
        })
        .buffer_unordered(RESULT_POLLS)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    ticker.abort();
    let _ = ticker.await;
    let peak_mib = progress.worker_peak_mib(worker.pid);
    worker.stop().await;
    lags.sort_by(f64::total_cmp);
    println!();
    println!("  completed                  {} of {n}", lags.len());
    figure("timer lag median", "timer_lag_median_s", percentile(&lags, 0.5), "s");
    figure("timer lag p99", "timer_lag_p99_s", percentile(&lags, 0.99), "s");
    figure("timer lag max", "timer_lag_max_s", lags.last().copied().unwrap_or(f64::NAN), "s");
    figure("worker peak memory", "worker_peak_mib", peak_mib, " MiB");
    println!("FIGURE engine.timers_completed {}", lags.len());
    Ok(lags.len() == n)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
