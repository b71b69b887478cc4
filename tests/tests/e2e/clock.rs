//! Issue 9, item 7: one clock outside workflows. The API, the relay and what they write read
//! time from the clock the app was given, so a test that fixes it sees its instant in the row,
//! the audit row, the workflow intent and the response, and moving it moves them all.

use std::sync::Arc;

use archer_store::{AuditContext, ManualClock, TenantTx, tx_now};
use archer_tests::{Options, TestApp, spawn_app_with_clock};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Where a ticket's creation left its instant: the row, its audit row, its start intent (and
/// the input it gives the workflow).
#[derive(Debug, PartialEq, Eq)]
struct Stamps {
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    audited_at: OffsetDateTime,
    intended_at: OffsetDateTime,
    available_at: OffsetDateTime,
    told_workflow: OffsetDateTime,
}

impl Stamps {
    fn all(at: OffsetDateTime) -> Self {
        Stamps { created_at: at, updated_at: at, audited_at: at, intended_at: at, available_at: at, told_workflow: at }
    }
}

async fn stamps(app: &TestApp, ticket: Uuid) -> Stamps {
    let (created_at, updated_at) = sqlx::query_as("SELECT created_at, updated_at FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let audited_at =
        sqlx::query_scalar("SELECT at FROM audit_log WHERE action = 'tickets.insert' AND entity_id = $1::text")
            .bind(ticket)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let (intended_at, available_at, told_workflow) = sqlx::query_as(
        "SELECT o.created_at, o.available_at, (o.payload->'input'->>'created_at')::timestamptz FROM outbox o JOIN tickets t ON o.payload->'input'->>'ticket_id' = t.id::text
          WHERE t.id = $1 AND o.intent = 'start'",
    )
    .bind(ticket)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    Stamps { created_at, updated_at, audited_at, intended_at, available_at, told_workflow }
}

fn instant(v: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn id(ticket: &serde_json::Value) -> Uuid {
    ticket["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_clock_stamps_the_ticket_its_audit_row_its_intent_and_the_response_and_moving_it_moves_them() {
    // A whole second a minute ago: access tokens issued at it are still within their lifetime by
    // the system's clock, which jsonwebtoken checks expiry against.
    let fixed = (OffsetDateTime::now_utc() - time::Duration::minutes(1)).replace_nanosecond(0).unwrap();
    let clock = ManualClock::new(fixed);
    // no worker: the intents are delivered (the relay reads the clock too), no workflow runs
    let app = spawn_app_with_clock(Options { worker: false, relay: true }, Arc::new(clock.clone())).await;
    let t = app.tenant().await;

    let first = app.incident(&t.requester, "Reported at a fixed instant").await;
    assert_eq!(instant(&first["created_at"]), fixed, "{first}");
    assert_eq!(instant(&first["updated_at"]), fixed, "{first}");
    assert_eq!(stamps(&app, id(&first)).await, Stamps::all(fixed));
    app.outbox_drained().await;
    let delivered: OffsetDateTime = sqlx::query_scalar("SELECT max(delivered_at) FROM outbox WHERE tenant_id = $1")
        .bind(t.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(delivered, fixed, "the relay marks deliveries by the clock");

    // the clock moves only when told to, and everything moves with it
    let later = clock.advance(time::Duration::minutes(90));
    let second = app.incident(&t.requester, "Reported an hour and a half later").await;
    assert_eq!(instant(&second["created_at"]), later, "{second}");
    assert_eq!(stamps(&app, id(&second)).await, Stamps::all(later));
    let number = first["number"].as_str().unwrap();
    let updated = app.set_status(&t.agent, number, "in_progress").await;
    assert_eq!(instant(&updated["updated_at"]), later, "{updated}");
    assert_eq!(instant(&updated["created_at"]), fixed, "{updated}");
    let (updated_at, audited_at): (OffsetDateTime, OffsetDateTime) = sqlx::query_as(
        "SELECT t.updated_at, a.at FROM tickets t JOIN audit_log a ON a.entity_id = t.id::text
          WHERE t.id = $1 AND a.action = 'tickets.update'",
    )
    .bind(id(&first))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((updated_at, audited_at), (later, later));
    let signalled: OffsetDateTime = sqlx::query_scalar(
        "SELECT created_at FROM outbox WHERE tenant_id = $1 AND intent = 'signal' AND name = 'status_changed'",
    )
    .bind(t.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(signalled, later);

    // a transaction's instant is the clock's, in Rust and in SQL alike
    let mut tx = TenantTx::begin(&app.db, t.id, &AuditContext::default()).await.unwrap();
    assert_eq!(tx.now(), later);
    assert_eq!(tx_now(&mut tx).await.unwrap(), later);
    drop(tx);
    app.stop().await;
}
