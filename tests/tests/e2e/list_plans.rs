//! Every documented filter and sort of `GET /tickets` is served by an index (issue 11), checked
//! on the query plans PostgreSQL makes for the very SQL the store runs, in a tenant of its own
//! with generated tickets (`archer_tests::bench`), under row-level security as `archer_app`.
//!
//! The planner is told that sequential scans cost more than anything (`enable_seqscan = off`),
//! so one still in a plan means that no index can answer the query: a missing index fails here
//! at any table size, not only at a million rows. A sort is checked the same way: a list sorted
//! without a filter must come from an index in that order (no `Sort` node over the tenant's
//! tickets), or every page would read them all. `./dev bench lists` measures the same queries
//! at a million tickets.

use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

use archer_store::tickets::{AssigneeFilter, BreachedFilter, Cursor, CursorValue, SortField, TicketFilter};
use archer_store::{AuditContext, TenantTx};
use archer_tests::bench::{Population, generate_tickets};
use archer_tests::{Options, spawn_app_with};

/// Tickets generated: enough that the tenant's rows span many pages of every index.
const TICKETS: i64 = 30_000;

fn filter() -> TicketFilter {
    TicketFilter::newest_first(50)
}

/// The plan's nodes, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

fn scans_tickets(plan: &Value) -> bool {
    nodes(plan).iter().any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "tickets")
}

fn sorts(plan: &Value) -> bool {
    nodes(plan).iter().any(|n| n["Node Type"] == "Sort" || n["Node Type"] == "Incremental Sort")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_filter_and_sort_is_served_by_an_index() {
    let app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    let team = app.team(&t.admin, "Service desk", &[&t.agent]).await;
    app.policy(
        &t.admin,
        json!({"name": "Standard", "spec": {"targets": [{"metric": "resolution", "warnings": [],
            "durations": {"1": 14400, "2": 28800, "3": 86400, "4": 172800}}]}}),
    )
    .await;
    let seed = app.incident(&t.agent, "Seed").await;
    let pop = Population {
        tenant_id: t.id,
        requesters: vec![t.requester.id, t.manager.id],
        agents: vec![t.agent.id, t.admin.id, t.manager.id],
        teams: vec![team],
        sla_from: seed["id"].as_str().and_then(|s| s.parse().ok()),
    };
    let started = Instant::now();
    generate_tickets(&app.db, &pop, TICKETS, |_, _| {}).await;
    eprintln!("generated {TICKETS} tickets in {:.1}s", started.elapsed().as_secs_f64());

    let after = Cursor { value: CursorValue::Time(time::OffsetDateTime::now_utc()), id: Uuid::max() };
    let mut cases: Vec<(String, TicketFilter, bool)> = Vec::new();
    // every sort, both ways, on its own: the order comes from an index
    for (name, sort) in [
        ("created_at", SortField::CreatedAt),
        ("updated_at", SortField::UpdatedAt),
        ("priority", SortField::Priority),
        ("sla_due_at", SortField::SlaDueAt),
    ] {
        for descending in [false, true] {
            let f = TicketFilter { sort, descending, ..filter() };
            cases.push((format!("sort={}{name}", if descending { "-" } else { "" }), f, true));
        }
    }
    let me = t.agent.id;
    let filters: Vec<(&str, TicketFilter)> = vec![
        ("kind=incident", TicketFilter { kinds: vec!["incident".into()], ..filter() }),
        ("status=new", TicketFilter { statuses: vec!["new".into()], ..filter() }),
        ("priority=1", TicketFilter { priorities: vec![1], ..filter() }),
        ("assignee=me", TicketFilter { assignee: Some(AssigneeFilter::User(me)), ..filter() }),
        ("assignee=none", TicketFilter { assignee: Some(AssigneeFilter::Unassigned), ..filter() }),
        ("team", TicketFilter { team_id: Some(team), ..filter() }),
        ("requester=me", TicketFilter { requester_id: Some(t.requester.id), ..filter() }),
        (
            "created_from",
            TicketFilter { created_from: Some(time::OffsetDateTime::now_utc() - time::Duration::days(7)), ..filter() },
        ),
        ("tag=vip", TicketFilter { tag: Some("vip".into()), ..filter() }),
        ("category=network", TicketFilter { category: Some("network".into()), ..filter() }),
        ("q=printer", TicketFilter { q: Some("printer".into()), ..filter() }),
        ("sla_state=breached", TicketFilter { sla_states: vec!["breached".into()], ..filter() }),
        ("breached=any", TicketFilter { breached: Some(BreachedFilter::Any), ..filter() }),
        (
            "status=new&sort=-priority",
            TicketFilter { statuses: vec!["new".into()], sort: SortField::Priority, descending: true, ..filter() },
        ),
        ("cursor", TicketFilter { after: Some(after), ..filter() }),
    ];
    for (name, f) in filters {
        cases.push((name.to_owned(), f, false));
    }

    let ctx = AuditContext::default();
    let mut failures = Vec::new();
    for (name, f, ordered) in &cases {
        let mut tx = TenantTx::begin(&app.db, t.id, &ctx).await.expect("tx");
        sqlx::raw_sql("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("planner setting");
        let [page, count] = archer_store::tickets::explain_list(&mut tx, f, false).await.expect("explain");
        drop(tx); // nothing to keep: the pool rolls it back
        let (page, count) = (&page[0]["Plan"], &count[0]["Plan"]);
        if scans_tickets(page) {
            failures.push(format!("{name}: the page scans tickets:\n{page:#}"));
        }
        if scans_tickets(count) {
            failures.push(format!("{name}: the count scans tickets:\n{count:#}"));
        }
        if *ordered && sorts(page) {
            failures
                .push(format!("{name}: the page sorts the tenant's tickets instead of reading an index:\n{page:#}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} plans fall back:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    app.stop().await;
}
