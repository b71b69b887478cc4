//! The write benchmark: ticket creation through the HTTP API beside PostgreSQL's own ceiling
//! (pgbench on the same cluster, in the same run), then the outbox relay's start rate.
//!
//! Scenarios (all by default, or name some): `pgbench`, `create`, `starts`.
//! - `pgbench`: bare SQL of the same shape, 8 clients: one ticket row and one outbox row per
//!   transaction, then the same with the per-tenant number counter and a NOTIFY (the
//!   guarantees Archer keeps, without Archer).
//! - `create`: 8 clients `POST /api/v1/tickets` back to back (the sustained rate and its
//!   latency), then an open-loop run at half that rate (latency measured from each request's
//!   scheduled instant, so a stall is not hidden). The relay is off, so nothing waits on
//!   Temporal; the tenant has an SLA policy, so every create resolves and assigns one.
//! - `starts`: the relay is started over the backlog the creates left in the outbox, with no
//!   worker (engine-bench's bare client starts with none either); the figure is workflows
//!   started per second over 2,000 starts from the relay's first rows marked delivered (its
//!   start-up, printed on its own, is left out as the bare client's connecting is), and over
//!   the whole backlog with start-up.
//!
//! The tenant first gets `--existing` tickets (100,000 by default) from the data generator,
//! analyzed as autovacuum would, so every figure is that of a tenant in use.
//!
//! Every figure is also printed as `FIGURE <key> <value>` for `./dev bench`'s summary.

use std::time::{Duration, Instant};

use archer_tests::bench::{Population, generate_tickets};
use archer_tests::{Options, spawn_app_with};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Args {
    scenarios: Vec<String>,
    clients: usize,
    seconds: u64,
    /// Tickets the tenant already has (generated, then analyzed as autovacuum would), so
    /// creates are measured against indexes and statistics of a tenant in use.
    existing: i64,
}

fn args() -> Args {
    let mut a = Args { scenarios: Vec::new(), clients: 8, seconds: 20, existing: 100_000 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "pgbench" | "create" | "starts" => a.scenarios.push(arg.clone()),
            "--clients" => a.clients = num().map(|v| v as usize).unwrap_or_else(|| usage()),
            "--seconds" => a.seconds = num().unwrap_or_else(|| usage()),
            "--existing" => a.existing = num().map(|v| v as i64).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    if a.scenarios.is_empty() {
        a.scenarios = vec!["pgbench".into(), "create".into(), "starts".into()];
    }
    a
}

fn usage() -> ! {
    eprintln!("usage: write-bench [pgbench] [create] [starts] [--clients N] [--seconds S] [--existing N]");
    std::process::exit(2)
}

fn figure(key: &str, value: f64) {
    println!("FIGURE {key} {value:.4}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Bare SQL of a create's shape, on copies of the tables without Archer's triggers.
const PGBENCH_SETUP: &str = "
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.tickets (LIKE public.tickets INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS);
CREATE TABLE bench.outbox (LIKE public.outbox INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING IDENTITY);
CREATE TABLE bench.ticket_counters (LIKE public.ticket_counters INCLUDING ALL);
CREATE SEQUENCE bench.numbers;
";

const PLAIN: &str = "
\\set p random(1, 4)
BEGIN;
INSERT INTO bench.tickets (id, tenant_id, kind, number, title, description, requester_id, impact, urgency, priority, status)
  VALUES (gen_random_uuid(), :tenant, 'incident', nextval('bench.numbers'), 'Printer on floor 3 jams', '', :user, :p, :p, :p, 'new');
INSERT INTO bench.outbox (tenant_id, workflow_id, intent, name, payload)
  VALUES (:tenant, 'bench/' || gen_random_uuid(), 'start', 'ticket', '{\"input\": {}}');
COMMIT;
";

const COUNTER: &str = "
\\set p random(1, 4)
BEGIN;
INSERT INTO bench.ticket_counters (tenant_id, kind, last_number) VALUES (:tenant, 'incident', 1)
  ON CONFLICT (tenant_id, kind) DO UPDATE SET last_number = bench.ticket_counters.last_number + 1
  RETURNING last_number AS n \\gset
INSERT INTO bench.tickets (id, tenant_id, kind, number, title, description, requester_id, impact, urgency, priority, status)
  VALUES (gen_random_uuid(), :tenant, 'incident', :n, 'Printer on floor 3 jams', '', :user, :p, :p, :p, 'new');
INSERT INTO bench.outbox (tenant_id, workflow_id, intent, name, payload)
  VALUES (:tenant, 'bench/' || gen_random_uuid(), 'start', 'ticket', '{\"input\": {}}');
NOTIFY archer_bench;
COMMIT;
";

fn pgbench_bin() -> String {
    if let Ok(dir) = std::env::var("ARCHER_PG_BIN") {
        return format!("{dir}/pgbench");
    }
    let mut found: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    Some((v, format!("{}/bin/pgbench", e.path().display())))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().map(|(_, p)| p).unwrap_or_else(|| "pgbench".into())
}

/// Runs pgbench with `script` and returns its transactions per second.
fn pgbench(url: &str, script: &str, tenant: uuid::Uuid, user: uuid::Uuid, clients: usize, seconds: u64) -> f64 {
    let file = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(file.path(), script).expect("write script");
    let out = std::process::Command::new(pgbench_bin())
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .args(["-D", &format!("tenant={tenant}"), "-D", &format!("user={user}")])
        .arg("-f")
        .arg(file.path())
        .arg(url)
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("pgbench failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("no tps in pgbench's output:\n{text}");
            std::process::exit(1)
        })
}

struct Latencies {
    ok: usize,
    failed: usize,
    seconds: f64,
    sorted_ms: Vec<f64>,
}

impl Latencies {
    fn print(&self, what: &str, key: &str) {
        let rate = self.ok as f64 / self.seconds;
        println!(
            "  {what:<34} {rate:>8.1} req/s   p50 {:>6.1} ms   p99 {:>6.1} ms   ({} ok, {} failed)",
            percentile(&self.sorted_ms, 0.5),
            percentile(&self.sorted_ms, 0.99),
            self.ok,
            self.failed
        );
        figure(&format!("{key}.rate"), rate);
        figure(&format!("{key}.p50_ms"), percentile(&self.sorted_ms, 0.5));
        figure(&format!("{key}.p99_ms"), percentile(&self.sorted_ms, 0.99));
    }
}

fn body(i: usize) -> serde_json::Value {
    let p = i % 4 + 1;
    json!({"kind": "incident", "title": format!("Printer on floor {} jams ({i})", i % 9),
           "description": "Paper jam in tray 2; the display shows E-204.", "impact": p, "urgency": p})
}

async fn post(http: &reqwest::Client, url: &str, token: &str, i: usize) -> Result<(), String> {
    let r = http.post(url).bearer_auth(token).json(&body(i)).send().await.map_err(|e| e.to_string())?;
    if r.status() == 201 { Ok(()) } else { Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())) }
}

/// `clients` loops posting back to back for `seconds`.
async fn closed_loop(http: &reqwest::Client, url: &str, token: &str, clients: usize, seconds: u64) -> Latencies {
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let runs = (0..clients).map(|c| async move {
        let (mut lat, mut failed, mut i) = (Vec::new(), 0usize, c);
        while Instant::now() < end {
            let t = Instant::now();
            match post(http, url, token, i).await {
                Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("  a create failed: {e}");
                    }
                }
            }
            i += clients;
        }
        (lat, failed)
    });
    let results = futures::future::join_all(runs).await;
    let seconds = started.elapsed().as_secs_f64();
    collect(results, seconds)
}

/// Requests scheduled at a fixed `rate` for `seconds`, each timed from its scheduled instant.
async fn open_loop(http: &reqwest::Client, url: &str, token: &str, rate: f64, seconds: u64) -> Latencies {
    let started = Instant::now();
    let n = (rate * seconds as f64) as usize;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = started + gap.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let r = post(&http, &url, &token, 1_000_000 + i).await;
            (r, due.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("join") {
            (Ok(()), ms) => lat.push(ms),
            (Err(_), _) => failed += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    collect(vec![(lat, failed)], seconds)
}

fn collect(results: Vec<(Vec<f64>, usize)>, seconds: f64) -> Latencies {
    let mut sorted_ms: Vec<f64> = results.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    sorted_ms.sort_by(f64::total_cmp);
    Latencies { ok: sorted_ms.len(), failed: results.iter().map(|(_, f)| f).sum(), seconds, sorted_ms }
}

async fn undelivered(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetch_one(pool).await.expect("count")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    app.policy(
        &t.admin,
        json!({"name": "Bench", "spec": {"targets": [{"metric": "resolution", "warnings": [50],
            "durations": {"1": 14400, "2": 28800, "3": 86400, "4": 172800}}]}}),
    )
    .await;
    if std::env::var_os("WRITE_BENCH_LOG_SQL").is_some() {
        // the profile: every statement of the API's sessions into the server's log (to count
        // round trips), or with `=explain` every plan with its timings
        let db = app.database_url.rsplit('/').next().unwrap_or_default().to_owned();
        let explain = std::env::var("WRITE_BENCH_LOG_SQL").is_ok_and(|v| v == "explain");
        let sql = if explain {
            // every statement's plan with its timings, nested ones (triggers, functions) too
            format!(
                "ALTER DATABASE {db} SET session_preload_libraries = 'auto_explain';
                 ALTER DATABASE {db} SET auto_explain.log_min_duration = 0;
                 ALTER DATABASE {db} SET auto_explain.log_analyze = on;
                 ALTER DATABASE {db} SET auto_explain.log_nested_statements = on;"
            )
        } else {
            format!("ALTER DATABASE {db} SET log_statement = 'all'")
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&app.pool).await.expect("log statements");
        app.stop_server().await;
        app.start_server().await;
    }
    if args.existing > 0 {
        println!("write-bench: the tenant's existing {} tickets", args.existing);
        let seed = app.incident(&t.agent, "Seed ticket for the SLA projection").await;
        let mut teams = Vec::new();
        for name in ["Service desk", "Network", "Workplace"] {
            teams.push(app.team(&t.admin, name, &[&t.agent]).await);
        }
        let pop = Population {
            tenant_id: t.id,
            requesters: vec![t.requester.id, t.manager.id, t.admin.id, t.agent.id],
            agents: vec![t.agent.id, t.admin.id, t.manager.id],
            teams,
            sla_from: seed["id"].as_str().and_then(|s| s.parse().ok()),
        };
        let started = Instant::now();
        generate_tickets(&app.db, &pop, args.existing, |done, n| {
            println!("  {done:>9} of {n} ({:.0} s)", started.elapsed().as_secs_f64());
        })
        .await;
        // the outbox of the seed: the relay is off until `starts`
        sqlx::query("DELETE FROM outbox").execute(&app.pool).await.expect("clear the seed's intent");
    }
    let run = |s: &str| args.scenarios.iter().any(|x| x == s);

    if run("pgbench") {
        println!("write-bench: PostgreSQL alone (pgbench, {} clients, {}s each)", args.clients, args.seconds);
        sqlx::raw_sql(PGBENCH_SETUP).execute(&app.pool).await.expect("pgbench tables");
        let plain = pgbench(&app.database_url, PLAIN, t.id, t.agent.id, args.clients, args.seconds);
        println!("  ticket + outbox row                {plain:>8.1} tx/s");
        figure("pg.plain_tps", plain);
        sqlx::raw_sql("TRUNCATE bench.tickets, bench.outbox").execute(&app.pool).await.expect("truncate");
        let counter = pgbench(&app.database_url, COUNTER, t.id, t.agent.id, args.clients, args.seconds);
        println!("  + number counter + NOTIFY          {counter:>8.1} tx/s");
        figure("pg.counter_notify_tps", counter);
        sqlx::raw_sql("DROP SCHEMA bench CASCADE").execute(&app.pool).await.expect("drop pgbench tables");
    }

    if run("create") || run("starts") {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("http client");
        let url = format!("{}/api/v1/tickets", app.base);
        println!("write-bench: POST /api/v1/tickets ({} clients, {}s; relay off)", args.clients, args.seconds);
        let _ = closed_loop(&http, &url, &t.agent.token, args.clients, 3).await; // warm up
        let sustained = closed_loop(&http, &url, &t.agent.token, args.clients, args.seconds).await;
        sustained.print("sustained", "create.sustained");
        let half = sustained.ok as f64 / sustained.seconds / 2.0;
        let paced = open_loop(&http, &url, &t.agent.token, half, args.seconds).await;
        paced.print(&format!("at half that rate ({half:.0}/s)"), "create.half");
    }

    if run("starts") {
        let backlog = undelivered(&app.pool).await;
        // no worker, as engine-bench's bare client starts with none: the figure is the relay's
        // delivery to the server, not what a worker then does (the SLA rows measure that)
        println!("write-bench: the relay starts {backlog} workflows");
        let stop = CancellationToken::new();
        let started = Instant::now();
        let relay = tokio::spawn(archer_api::relay::run(app.db.clone(), app.temporal_config(), stop.clone()));
        // the figure is over 2,000 starts, as many as engine-bench's bare client makes (the dev
        // server's store grows, and every start gets slower as it does), timed from the first
        // rows marked delivered: the bare client's figure leaves out its connecting too, and the
        // relay's start-up (leadership, connecting, search attributes) is printed on its own
        let first = backlog.min(2_000);
        let mut first_mark: Option<(f64, i64)> = None;
        let mut first_secs = None;
        let mut last = Instant::now();
        loop {
            let left = undelivered(&app.pool).await;
            let done = backlog - left;
            if first_mark.is_none() && done > 0 {
                first_mark = Some((started.elapsed().as_secs_f64(), done));
            }
            if let (None, Some((t0, n0))) = (first_secs, first_mark)
                && (done - n0 >= first || left == 0)
            {
                first_secs = Some((started.elapsed().as_secs_f64() - t0, done - n0));
            }
            if left == 0 {
                break;
            }
            if last.elapsed() > Duration::from_secs(5) {
                println!("  {} of {backlog} started", backlog - left);
                last = Instant::now();
            }
            if started.elapsed() > Duration::from_secs(1800) {
                eprintln!("write-bench: the relay did not drain the outbox in 30 minutes");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (t0, n0) = first_mark.unwrap_or((0.0, 0));
        println!("  relay start-up, to its first {n0} rows marked delivered: {t0:.2}s");
        let all = backlog as f64 / started.elapsed().as_secs_f64();
        let (secs, counted) = first_secs.filter(|(_, n)| *n > 0).unwrap_or((started.elapsed().as_secs_f64(), backlog));
        let rate = counted as f64 / secs.max(f64::EPSILON);
        println!(
            "  outbox → workflow started          {rate:>8.1} starts/s ({counted} after the first marks; all {backlog} with start-up: {all:.1}/s)"
        );
        figure("relay.starts_per_s", rate);
        figure("relay.all_starts_per_s", all);
        stop.cancel();
        let _ = relay.await;
    }
    app.stop().await;
}
