//! The SLA benchmark: many open tickets whose resolution targets fall due over a few minutes.
//! It measures, for every ticket, the lag between the due instant and the moment the breach
//! was recorded, and the worker's peak memory. Run it with `./dev bench [--tickets N]`.
//!
//! Tickets are written through the same change path as the API (ticket, audit and outbox rows
//! in one transaction), the outbox relay starts their workflows, and a separate `archer
//! worker` process runs them, so its memory is the worker's alone.

use std::time::{Duration, Instant};

use archer_orchestrator::{Priority, Status, TenantSlug, TicketKind};
use archer_store::tickets::NewTicket;
use archer_store::{AuditContext, TenantTx};
use archer_tests::{JWT_SECRET, Options, archer_bin, services, spawn_app_with};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

struct Args {
    tickets: usize,
    /// Seconds from the start of creation to the first due instant (the relay must have
    /// started every workflow by then).
    lead: u64,
    /// Seconds over which the due instants spread.
    spread: u64,
}

fn args() -> Args {
    let mut a = Args { tickets: 10_000, lead: 240, spread: 120 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--tickets", Some(v)) => a.tickets = v as usize,
            ("--lead", Some(v)) => a.lead = v,
            ("--spread", Some(v)) => a.spread = v,
            _ => {
                eprintln!("usage: sla-bench [--tickets N] [--lead SECONDS] [--spread SECONDS]");
                std::process::exit(2);
            }
        }
    }
    a
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let app = spawn_app_with(Options { worker: false, relay: true }).await;
    let t = app.tenant().await;
    let s = services();
    let mut worker = tokio::process::Command::new(archer_bin())
        .arg("worker")
        .env("ARCHER_DATABASE_URL", &app.database_url)
        .env("ARCHER_TEMPORAL_ADDRESS", &s.temporal_address)
        .env("ARCHER_TASK_QUEUE", &app.task_queue)
        .env("ARCHER_JWT_SECRET", JWT_SECRET)
        .env("ARCHER_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start archer worker");
    let worker_pid = worker.id().expect("worker pid");

    // four priorities whose budgets spread the due instants over the window
    let step = args.spread / 3;
    let budgets = [args.lead, args.lead + step, args.lead + 2 * step, args.lead + args.spread];
    app.policy(
        &t.admin,
        json!({"name": "Bench", "spec": {"targets": [{"metric": "resolution", "warnings": [],
            "durations": {"1": budgets[0], "2": budgets[1], "3": budgets[2], "4": budgets[3]}}]}}),
    )
    .await;

    println!("sla-bench: {} tickets, due {}s to {}s after creation", args.tickets, budgets[0], budgets[3]);
    let started = Instant::now();
    let tenant = TenantSlug::parse(&t.slug).expect("slug");
    let created: Vec<()> = futures::stream::iter(0..args.tickets)
        .map(|i| {
            let (pool, tenant, agent, tenant_id) = (app.db.clone(), tenant.clone(), t.agent.id, t.id);
            async move {
                let p = (i % 4 + 1) as i16;
                let ctx = AuditContext { actor_id: Some(agent), ..Default::default() };
                let mut tx = TenantTx::begin(&pool, tenant_id, &ctx).await.expect("tx");
                let new = NewTicket {
                    id: Uuid::now_v7(),
                    tenant_id,
                    kind: TicketKind::Incident,
                    title: format!("bench {i}"),
                    description: String::new(),
                    requester_id: agent,
                    assignee_id: None,
                    team_id: None,
                    impact: p,
                    urgency: p,
                    priority: i16::from(Priority::new(i64::from(p)).expect("priority").get()),
                    priority_reason: None,
                    category: None,
                    status: Status::New,
                    tags: Vec::new(),
                    change_type: None,
                    risk: None,
                    catalog_item_id: None,
                    catalog_item_version: None,
                    request_fields: None,
                };
                archer_store::changes::create(&mut tx, &tenant, &new).await.expect("create");
                tx.commit().await.expect("commit");
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    println!("  created {} tickets in {:.1}s", created.len(), started.elapsed().as_secs_f64());
    app.outbox_drained_within(Duration::from_secs(args.lead + args.spread)).await;
    let started_all = started.elapsed().as_secs_f64();
    println!("  every workflow started after {started_all:.1}s");
    if started_all > args.lead as f64 {
        println!("  note: starting took longer than the lead ({}s); early lags include start delay", args.lead);
    }

    let deadline = Instant::now() + Duration::from_secs(args.lead + args.spread + 600);
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(peak_rss_kib(worker_pid).unwrap_or(0));
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sla_events WHERE kind = 'breach'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if n as usize >= args.tickets || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    peak_kib = peak_kib.max(peak_rss_kib(worker_pid).unwrap_or(0));
    let lags: Vec<(f64, f64)> = sqlx::query_as::<_, (f64, f64)>(
        "SELECT EXTRACT(EPOCH FROM recorded_at - at)::float8, EXTRACT(EPOCH FROM at)::float8
           FROM sla_events WHERE kind = 'breach'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("lags");
    let mut sorted: Vec<f64> = lags.iter().map(|(l, _)| *l).collect();
    sorted.sort_by(f64::total_cmp);
    let (first, last) = lags.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, at)| (a.min(*at), b.max(*at)));
    let window = (last - first).max(1.0);
    let median = percentile(&sorted, 0.5);
    let p99 = percentile(&sorted, 0.99);
    let max = sorted.last().copied().unwrap_or(f64::NAN);
    println!();
    println!("  breaches recorded      {} of {}", sorted.len(), args.tickets);
    println!("  due window             {window:.1}s ({:.1} breaches/s due)", sorted.len() as f64 / window);
    println!("  lag median             {median:.3}s");
    println!("  lag p99                {p99:.3}s");
    println!("  lag max                {max:.3}s");
    println!("  p99 lag / due window   {:.4}", p99 / window);
    println!("  worker peak memory     {:.1} MiB (VmHWM of the `archer worker` process)", peak_kib as f64 / 1024.0);
    println!("FIGURE sla.tickets {}", args.tickets);
    println!("FIGURE sla.lag_median_s {median:.4}");
    println!("FIGURE sla.lag_p99_s {p99:.4}");
    println!("FIGURE sla.worker_peak_mib {:.1}", peak_kib as f64 / 1024.0);
    let _ = worker.start_kill();
    let _ = worker.wait().await;
    app.stop().await;
    if sorted.len() < args.tickets {
        eprintln!("sla-bench: only {} of {} breaches were recorded in time", sorted.len(), args.tickets);
        std::process::exit(1);
    }
}
