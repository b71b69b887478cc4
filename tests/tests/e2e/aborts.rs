//! Issue 8, item 0: requests whose clients go away at any point, connections left inside a
//! transaction, and an outbox relay that never stalls behind one locked row.

use std::time::Duration;

use archer_tests::{Options, eventually, spawn_app, spawn_app_with};
use futures::StreamExt;
use serde_json::json;
use sqlx::{Connection, Row};

/// Sessions of this app's database that sit inside a transaction without running anything.
async fn idle_in_transaction(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT coalesce(state, '') || ': ' || coalesce(left(query, 120), '') FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND state IN ('idle in transaction', 'idle in transaction (aborted)')",
    )
    .fetch_all(pool)
    .await
    .expect("pg_stat_activity")
}

/// Lets the runtime turn `n` times, 20 µs apart (each turn polls the sockets, so the server's
/// answers arrive in between).
async fn turns(n: u64) {
    for _ in 0..n {
        std::thread::sleep(Duration::from_micros(20));
        tokio::task::yield_now().await;
    }
}

/// A spread of abort points from "before the request is sent" to "after it was answered",
/// deterministic so that a failure can be reproduced.
fn abort_after(i: u64) -> Duration {
    Duration::from_micros((i * 7919) % 60_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_abort_at_random_points_leave_nothing_stuck_or_half_written() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let mut numbers = Vec::new();
    for i in 0..10 {
        numbers.push(app.incident(&t.agent, &format!("target {i}")).await["number"].as_str().unwrap().to_owned());
    }
    // 300 creates and changes, each abandoned by its client after a different delay (most
    // mid-flight: while the server authenticates, begins, inserts or commits)
    let outcomes: Vec<Option<u16>> = futures::stream::iter(0..300u64)
        .map(|i| {
            let app = &app;
            let token = t.agent.token.clone();
            let target = numbers[(i % 10) as usize].clone();
            async move {
                let req = if i % 3 == 0 {
                    let body = json!({"impact": 1 + (i % 4), "urgency": 1 + (i / 4 % 4)});
                    app.http.patch(format!("{}/api/v1/tickets/{target}", app.base)).json(&body)
                } else {
                    let body = json!({"kind": "incident", "title": format!("aborted {i}"), "impact": 3, "urgency": 3});
                    app.http.post(format!("{}/api/v1/tickets", app.base)).json(&body)
                };
                let req = req.bearer_auth(&token).send();
                match tokio::time::timeout(abort_after(i), req).await {
                    Ok(Ok(r)) => Some(r.status().as_u16()),
                    _ => None,
                }
            }
        })
        .buffer_unordered(40)
        .collect()
        .await;
    let aborted = outcomes.iter().filter(|o| o.is_none()).count();
    assert!(aborted > 100, "most requests must be aborted mid-flight to test anything ({aborted} were)");
    let server_errors: Vec<u16> = outcomes.iter().flatten().copied().filter(|s| *s >= 500).collect();
    assert!(server_errors.is_empty(), "answered requests failed: {server_errors:?}");

    // no session is left inside a transaction (well before the server's own 30 s timeout)
    eventually(Duration::from_secs(5), "no session idle in transaction", || async {
        idle_in_transaction(&app.pool).await.is_empty()
    })
    .await;

    // every ticket that exists is whole: its creation audited, its workflow intent recorded
    // (exactly one start), and its changes each audited with their signal
    let half_written: i64 = app
        .count(
            "SELECT count(*) FROM tickets t
              WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.entity_id = t.id::text AND a.action = 'tickets.insert')
                 OR (SELECT count(*) FROM outbox o JOIN tenants n ON n.id = t.tenant_id
                      WHERE o.intent = 'start' AND o.workflow_id = n.slug || '/INC-' || lpad(t.number::text, 6, '0')) <> 1",
        )
        .await;
    assert_eq!(half_written, 0, "tickets without their audit row or workflow start");
    let tickets = app.count("SELECT count(*) FROM tickets").await;
    assert!(tickets > 10, "some of the aborted creates went through");

    // and every accepted ticket's workflow starts within seconds
    app.outbox_drained_within(Duration::from_secs(30)).await;
    let client = app.temporal().await;
    eventually(Duration::from_secs(30), "a workflow for every ticket", || async {
        app.list_workflows(&client, &format!("ArcherTenant = '{}'", t.slug)).await.len() as i64 == tickets
    })
    .await;
    let ready = app.get(None, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json["outbox"]["pending"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_connection_left_inside_a_transaction_is_never_reused_as_it_is() {
    let url = archer_tests::fresh_database().await;
    let pool = archer_store::connect(&url, 2).await.unwrap();

    // plant: a pooled connection that opens a transaction behind the driver's back, takes a
    // lock in it and goes back to the pool
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT pg_advisory_xact_lock(4815162342)").execute(&mut *conn).await.unwrap();
    let planted_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await.unwrap();
    drop(conn);

    // whatever the pool hands out now is outside any transaction, and the lock is free
    for _ in 0..3 {
        let mut a = pool.acquire().await.unwrap();
        let mut b = pool.acquire().await.unwrap();
        for c in [&mut a, &mut b] {
            let row = sqlx::raw_sql(
                "SELECT statement_timestamp() = transaction_timestamp() AS clean, pg_backend_pid() AS pid",
            )
            .fetch_one(&mut **c)
            .await
            .unwrap();
            assert!(row.get::<bool, _>("clean"), "the pool handed out a connection inside a transaction");
            assert_ne!(row.get::<i32, _>("pid"), planted_pid, "the planted session was reused");
        }
        let free: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(4815162342)").fetch_one(&mut *a).await.unwrap();
        assert!(free, "the planted transaction's lock is still held");
    }
    pool.close().await;
}

#[tokio::test]
async fn transactions_cancelled_while_beginning_leave_no_connection_inside_one() {
    let url = archer_tests::fresh_database().await;
    let pool = archer_store::connect(&url, 2).await.unwrap();
    // the driver's own hole: futures cancelled while beginning a transaction (sqlx 0.9.0
    // leaves the session inside it). Cancel at many points, then check every connection.
    // Each attempt is abandoned after a different number of turns of the runtime (each turn
    // polls the sockets once), so some are dropped between sending BEGIN and its answer.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut abandoned = 0;
    let mut left_inside = 0;
    for i in 0..400u64 {
        let attempt = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(4815162342)").execute(&mut *tx).await?;
            tx.commit().await
        };
        tokio::select! {
            biased;
            _ = attempt => continue,
            _ = turns(i % 40) => abandoned += 1,
        }
        // the abandoned connection goes back to the pool, whose release check (a query of its
        // own, on a spawned task that a loaded machine may run late) closes it if it is inside
        // a transaction: only a session still inside one a second later was left there (the
        // server's own idle-in-transaction timeout, 30 s, is far off)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let idle = loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let idle: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                    AND state LIKE 'idle in transaction%'",
            )
            .fetch_one(&mut other)
            .await
            .unwrap();
            if idle == 0 || tokio::time::Instant::now() > deadline {
                break idle;
            }
        };
        left_inside += idle;
    }
    assert!(abandoned > 100, "only {abandoned} attempts were abandoned");
    assert_eq!(left_inside, 0, "abandoned attempts left sessions inside a transaction");
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(pool.acquire().await.unwrap());
    }
    for c in &mut held {
        let clean: bool = sqlx::raw_sql("SELECT statement_timestamp() = transaction_timestamp() AS clean")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .get("clean");
        assert!(clean, "a cancelled BEGIN left a pooled connection inside a transaction");
    }
    drop(held);
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(4815162342)").fetch_one(&mut other).await.unwrap();
    assert!(free, "a cancelled request's lock is still held");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_moves_on_past_a_locked_row_and_ready_reports_the_backlog() {
    let mut app = spawn_app_with(Options { worker: true, relay: false }).await;
    let t = app.tenant().await;
    app.incident(&t.agent, "its outbox row is locked").await;

    // a session outside Archer's pool holds the row (as an abandoned transaction would)
    let mut holder = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT id FROM outbox WHERE delivered_at IS NULL FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    // a relay starts, with a short readiness threshold
    app.config.relay = true;
    app.config.outbox_max_age_secs = 3;
    app.stop_server().await;
    app.start_server().await;

    let mut later = Vec::new();
    for i in 0..20 {
        later.push(
            app.incident(&t.agent, &format!("after the stuck one {i}")).await["number"].as_str().unwrap().to_owned(),
        );
    }
    // everything else is delivered and marked; the locked row was delivered but stays unmarked
    let client = app.temporal().await;
    eventually(Duration::from_secs(20), "the later tickets' intents delivered", || async {
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").await == 1
    })
    .await;
    eventually(Duration::from_secs(20), "every workflow started, the stuck ticket's too", || async {
        app.list_workflows(&client, &format!("ArcherTenant = '{}'", t.slug)).await.len() == 21
    })
    .await;
    assert!(later.iter().all(|n| n.starts_with("INC-")));

    // the backlog shows in /ready and fails it once the oldest intent is too old
    eventually(Duration::from_secs(10), "/ready to fail on the outbox", || async {
        let r = app.get(None, "/ready").await;
        r.status == 503 && r.json["outbox"]["ok"] == false
    })
    .await;
    let r = app.get(None, "/ready").await;
    assert_eq!(r.json["outbox"]["pending"], 1, "{}", r.body);
    assert!(r.json["outbox"]["detail"].as_str().unwrap().contains("oldest undelivered"), "{}", r.body);
    assert_eq!(r.json["database"]["ok"], true);

    // the holder goes away; the row is marked and /ready recovers
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
    eventually(Duration::from_secs(45), "the stuck row marked delivered", || async {
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").await == 0
    })
    .await;
    let r = app.get(None, "/ready").await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

/// The relay's housekeeping forgets what is only kept for a while: old login throttles,
/// expired-token counts and refused links (and keeps recent ones).
#[tokio::test(flavor = "multi_thread")]
async fn housekeeping_forgets_old_throttles_token_counts_and_refused_links() {
    let mut app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO login_attempts (email, failures, updated_at) VALUES ('old@x.example', 3, now() - interval '2 days'),
                                                                        ('new@x.example', 3, now());
         INSERT INTO expired_token_uses (jti, tenant_id, user_id, first_at)
              VALUES (gen_random_uuid(), '{tid}', '{uid}', now() - interval '2 days'),
                     (gen_random_uuid(), '{tid}', '{uid}', now());
         INSERT INTO refused_links (at, page, reason) VALUES (now() - interval '100 days', 'confirm', 'old'),
                                                              (now(), 'confirm', 'new');",
        tid = t.id,
        uid = t.agent.id
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    app.config.relay = true;
    app.stop_server().await;
    app.start_server().await;
    eventually(Duration::from_secs(20), "the old rows to be forgotten", || async {
        app.count("SELECT count(*) FROM login_attempts").await == 1
            && app.count("SELECT count(*) FROM expired_token_uses").await == 1
            && app.count("SELECT count(*) FROM refused_links").await == 1
    })
    .await;
    assert_eq!(app.count("SELECT count(*) FROM refused_links WHERE reason = 'new'").await, 1);
    app.stop().await;
}
