//! The list benchmark (issue 11): a tenant with a million tickets (`archer_tests::bench`), then
//! each documented list query the issue measures, asked over HTTP of a release-built API as an
//! agent would, many times; it prints p50 and p99 beside the goal (p99 ≤ 20 ms) and their ratio.
//! Run it with `./dev bench lists [--tickets N] [--rounds N] [--only a,b] [--explain]`; with
//! `LIST_BENCH_HOLD_SECS=N` it keeps the database up that long at the end (its URL printed), to
//! try plans by hand with psql.

use std::time::{Duration, Instant};

use archer_store::tickets::{AssigneeFilter, Cursor, CursorValue, SortField, TicketFilter};
use archer_store::{AuditContext, TenantTx};
use archer_tests::bench::{Population, generate_tickets};
use archer_tests::{Options, PASSWORD, TestApp, TestTenant, spawn_app_with};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct Args {
    tickets: i64,
    rounds: usize,
    only: Vec<String>,
    /// Also print each scenario's plans as PostgreSQL ran them (the profile).
    explain: bool,
}

fn args() -> Args {
    let mut a = Args { tickets: 1_000_000, rounds: 200, only: Vec::new(), explain: false };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--explain" {
            a.explain = true;
            continue;
        }
        let value = it.next();
        match (flag.as_str(), value) {
            ("--tickets", Some(v)) if v.parse::<i64>().is_ok_and(|n| n > 0) => a.tickets = v.parse().unwrap_or(1),
            ("--rounds", Some(v)) if v.parse::<usize>().is_ok_and(|n| n > 0) => a.rounds = v.parse().unwrap_or(1),
            ("--only", Some(v)) => a.only = v.split(',').map(str::to_owned).collect(),
            _ => {
                eprintln!("usage: list-bench [--tickets N] [--rounds N] [--only {}] [--explain]", names().join(","));
                std::process::exit(2);
            }
        }
    }
    a
}

/// The goal for every list (the issue's: p99 ≤ 20 ms).
const GOAL_P99_MS: f64 = 20.0;

/// Each scenario: its name and the query (`page3`: the third page by cursor of the default list).
const SCENARIOS: &[(&str, &str)] = &[
    ("default", "limit=50"),
    ("new-by-priority", "status=new&sort=-priority&limit=50"),
    ("assignee-me", "assignee=me&limit=50"),
    ("search-printer", "q=printer&limit=50"),
    ("cursor-page-3", "limit=50"),
    ("sla-due", "sort=sla_due_at&limit=50"),
];

fn names() -> Vec<&'static str> {
    SCENARIOS.iter().map(|(n, _)| *n).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

async fn page(app: &TestApp, token: &str, query: &str) -> (Value, Duration) {
    let started = Instant::now();
    let r = app.get(Some(token), &format!("/api/v1/tickets?{query}")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "GET /tickets?{query}: {}", r.body);
    (r.json, took)
}

/// The query of the third page (by cursor) of `query`.
async fn third_page(app: &TestApp, token: &str, query: &str) -> String {
    let mut q = query.to_owned();
    for _ in 0..2 {
        let (p, _) = page(app, token, &q).await;
        let cursor = p["next_cursor"].as_str().expect("a next page").to_owned();
        q = format!("{query}&cursor={}", urlencoding(&cursor));
    }
    q
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The store's filter for scenario `name` (as the API builds it for that query).
async fn filter_of(app: &TestApp, t: &TestTenant, name: &str, token: &str) -> TicketFilter {
    let base = TicketFilter::newest_first(50);
    match name {
        "new-by-priority" => {
            TicketFilter { statuses: vec!["new".into()], sort: SortField::Priority, descending: true, ..base }
        }
        "assignee-me" => TicketFilter { assignee: Some(AssigneeFilter::User(t.agent.id)), ..base },
        "search-printer" => TicketFilter { q: Some("printer".into()), ..base },
        "sla-due" => TicketFilter { sort: SortField::SlaDueAt, descending: false, ..base },
        "cursor-page-3" => {
            let (p, _) = page(app, token, "limit=100").await;
            let last = &p["items"][99];
            let at = last["created_at"].as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
            let id = last["id"].as_str().and_then(|s| s.parse().ok());
            let (Some(at), Some(id)) = (at, id) else { return base };
            TicketFilter { after: Some(Cursor { value: CursorValue::Time(at), id }), ..base }
        }
        _ => base,
    }
}

/// The plan's nodes with their actual rows and times, one a line, indented by depth.
fn plan_lines(node: &Value, depth: usize, out: &mut Vec<String>) {
    let on = node["Index Name"].as_str().or(node["Relation Name"].as_str()).unwrap_or("");
    out.push(format!(
        "{:indent$}{} {on} rows={} loops={} ms={:.2} shared_hit={} read={}",
        "",
        node["Node Type"].as_str().unwrap_or("?"),
        node["Actual Rows"],
        node["Actual Loops"],
        node["Actual Total Time"].as_f64().unwrap_or(0.0),
        node["Shared Hit Blocks"],
        node["Shared Read Blocks"],
        indent = 6 + depth * 2
    ));
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_lines(child, depth + 1, out);
    }
}

/// Runs scenario `name`'s page and count under `EXPLAIN ANALYZE` as the agent and prints them.
async fn explain(app: &TestApp, t: &TestTenant, name: &str, token: &str) {
    let f = filter_of(app, t, name, token).await;
    let ctx = AuditContext { actor_id: Some(t.agent.id), ..Default::default() };
    let mut tx = TenantTx::begin(&app.db, t.id, &ctx).await.expect("tx");
    let plans = archer_store::tickets::explain_list(&mut tx, &f, true).await.expect("explain");
    drop(tx);
    for (what, plan) in ["page", "count"].iter().zip(plans.iter()) {
        let mut lines = Vec::new();
        plan_lines(&plan[0]["Plan"], 0, &mut lines);
        println!(
            "    {what}: {:.2} ms executing, {:.2} ms planning",
            plan[0]["Execution Time"].as_f64().unwrap_or(0.0),
            plan[0]["Planning Time"].as_f64().unwrap_or(0.0)
        );
        for l in lines {
            println!("{l}");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    let mut teams = Vec::new();
    for name in ["Service desk", "Network", "Workplace"] {
        teams.push(app.team(&t.admin, name, &[&t.agent]).await);
    }
    app.policy(
        &t.admin,
        json!({"name": "Standard", "spec": {"targets": [{"metric": "resolution", "warnings": [75],
            "durations": {"1": 14400, "2": 28800, "3": 86400, "4": 172800}}]}}),
    )
    .await;
    let seed = app.incident(&t.agent, "Seed ticket for the SLA projection").await;
    let sla_from = seed["id"].as_str().and_then(|s| s.parse().ok());
    let pop = Population {
        tenant_id: t.id,
        requesters: vec![t.requester.id, t.manager.id, t.admin.id, t.agent.id],
        agents: vec![t.agent.id, t.admin.id, t.manager.id],
        teams,
        sla_from,
    };
    println!("list-bench: generating {} tickets", args.tickets);
    let started = Instant::now();
    generate_tickets(&app.db, &pop, args.tickets, |done, n| {
        println!("  {done:>9} of {n} ({:.0} s)", started.elapsed().as_secs_f64());
    })
    .await;
    let token = app.login(&t.agent.email, PASSWORD).await;

    println!();
    println!("  {:<18} {:>9} {:>9} {:>9} {:>12}  query", "scenario", "p50 ms", "p99 ms", "goal ms", "goal / p99");
    for (name, query) in SCENARIOS.iter().filter(|(n, _)| args.only.is_empty() || args.only.iter().any(|o| o == n)) {
        let query = if *name == "cursor-page-3" { third_page(&app, &token, query).await } else { (*query).to_owned() };
        for _ in 0..5 {
            page(&app, &token, &query).await;
        }
        let mut took = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            took.push(page(&app, &token, &query).await.1.as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
        println!("  {name:<18} {p50:>9.1} {p99:>9.1} {GOAL_P99_MS:>9.0} {:>12.2}  ?{query}", GOAL_P99_MS / p99);
        println!("FIGURE list.{name}.p99_ms {p99:.3}");
        if args.explain {
            explain(&app, &t, name, &token).await;
        }
    }
    if let Some(secs) = std::env::var("LIST_BENCH_HOLD_SECS").ok().and_then(|s| s.parse().ok()) {
        println!("holding {secs} s: {}", app.database_url);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    app.stop().await;
}
