//! Tenant isolation, enforced by row-level security in the database, and the audit log's
//! immutability.

use archer_store::{AuditContext, SystemTx, TenantTx};
use archer_tests::spawn_app;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_never_sees_another_tenants_tickets() {
    let app = spawn_app().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    let mine = app.incident(&a.requester, "A's laptop").await;
    let theirs = app.incident(&b.requester, "B's laptop").await;
    app.incident(&b.agent, "B's server").await;
    let their_id = theirs["id"].as_str().unwrap();
    let their_number = theirs["number"].as_str().unwrap();
    assert_eq!(mine["number"], theirs["number"], "numbering is per tenant: both are INC-000001");

    // by id: 404, for every verb, not 403 (existence is not revealed)
    for token in [&a.admin.token, &a.agent.token, &a.requester.token] {
        app.get(Some(token), &format!("/api/v1/tickets/{their_id}")).await.problem(404);
        app.patch(Some(token), &format!("/api/v1/tickets/{their_id}"), &json!({"title": "mine now"}))
            .await
            .problem(404);
        app.get(Some(token), &format!("/api/v1/tickets/{their_id}/comments")).await.problem(404);
        app.post(Some(token), &format!("/api/v1/tickets/{their_id}/comments"), &json!({"body": "hi"}))
            .await
            .problem(404);
    }
    // by number, A gets A's own ticket
    let r = app.get(Some(&a.agent.token), &format!("/api/v1/tickets/{their_number}")).await;
    assert_eq!(r.json["id"], mine["id"]);
    // lists: only A's rows, whatever the filter
    for q in ["", "?q=laptop", "?kind=incident&status=new", "?sort=priority&limit=200"] {
        let r = app.get(Some(&a.admin.token), &format!("/api/v1/tickets{q}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.json["items"].as_array().unwrap();
        assert!(items.iter().all(|t| t["id"] == mine["id"]), "{q}: {items:?}");
        assert_eq!(r.json["total"], 1, "{q}");
    }
    // B's users are invisible too, and cannot be assigned or linked
    let users = app.get(Some(&a.admin.token), "/api/v1/users?limit=200").await;
    assert!(
        users.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["email"].as_str().unwrap().ends_with(&format!("{}.example", a.slug)))
    );
    app.get(Some(&a.admin.token), &format!("/api/v1/users/{}", b.agent.id)).await.problem(404);
    let r = app
        .patch(
            Some(&a.agent.token),
            &format!("/api/v1/tickets/{}", mine["number"].as_str().unwrap()),
            &json!({"assignee_id": b.agent.id}),
        )
        .await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/assignee_id");
    let r = app
        .post(
            Some(&a.agent.token),
            &format!("/api/v1/tickets/{}/links", mine["id"].as_str().unwrap()),
            &json!({"kind": "relates_to", "target": their_id}),
        )
        .await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/target");
    // and the audit log of A holds nothing of B
    let audit = app.get(Some(&a.admin.token), "/api/v1/audit?limit=500").await;
    assert!(!audit.body.contains(their_id));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_confines_a_query_without_any_tenant_filter() {
    let app = spawn_app().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    app.incident(&a.requester, "one").await;
    app.incident(&b.requester, "two").await;
    app.incident(&b.requester, "three").await;

    // the API's transaction, for tenant A, runs a query that names no tenant
    let mut tx = TenantTx::begin(&app.db, a.id, &AuditContext::default()).await.unwrap();
    let tenants: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM tickets").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(tenants, vec![a.id]);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(users, 4, "only A's four users");
    let outbox: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM outbox").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(outbox, vec![a.id]);
    // writing a row for another tenant is refused by the policy
    let err = sqlx::query("INSERT INTO teams (id, tenant_id, name) VALUES ($1, $2, 'intruders')")
        .bind(uuid::Uuid::now_v7())
        .bind(b.id)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);

    // as archer_app with no tenant set, nothing is visible at all
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE archer_app").execute(&mut *tx).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 0);
    drop(tx);

    // the owner (relay, provisioning) sees all three
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_rows_cannot_be_changed_or_deleted_by_anyone() {
    let app = spawn_app().await;
    let a = app.tenant().await;
    app.incident(&a.requester, "audited").await;
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM audit_log").fetch_one(&app.pool).await.unwrap();

    // not even the owner of the table
    for sql in ["UPDATE audit_log SET action = 'nothing' WHERE id = $1", "DELETE FROM audit_log WHERE id = $1"] {
        let mut tx = SystemTx::begin(&app.db, None, &AuditContext::default()).await.unwrap();
        let err = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let err = sqlx::query("TRUNCATE audit_log").execute(&app.pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // and the API role has no such privilege to begin with
    let mut tx = TenantTx::begin(&app.db, a.id, &AuditContext::default()).await.unwrap();
    let err = sqlx::query("DELETE FROM audit_log").execute(&mut *tx).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(tx);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mutation_is_audited_with_actor_request_and_before_after() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ticket = app.incident(&t.requester, "Keyboard sticky").await;
    let id = ticket["id"].as_str().unwrap();
    let r = app
        .send(
            reqwest::Method::PATCH,
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{id}"),
            Some(&json!({"status": "in_progress", "urgency": 1})),
            &[("x-request-id", "req-audit-1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-id"), Some("req-audit-1"));

    let audit = app.get(Some(&t.admin.token), &format!("/api/v1/audit?entity_type=tickets&entity_id={id}")).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let items = audit.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    let update = &items[0];
    assert_eq!(update["action"], "tickets.update");
    assert_eq!(update["actor_id"], t.agent.id.to_string());
    assert_eq!(update["request_id"], "req-audit-1");
    assert_eq!(update["before"]["status"], "new");
    assert_eq!(update["after"]["status"], "in_progress");
    assert_eq!(update["before"]["urgency"], 3);
    assert_eq!(update["after"]["urgency"], 1);
    assert!(update["ip"].as_str().is_some_and(|ip| ip == "127.0.0.1"));
    assert!(update["before"].get("title").is_none(), "only changed columns are recorded");
    let insert = &items[1];
    assert_eq!(insert["action"], "tickets.insert");
    assert_eq!(insert["actor_id"], t.requester.id.to_string());
    assert_eq!(insert["after"]["title"], "Keyboard sticky");
    assert!(insert["before"].is_null());

    // filter by action prefix and by request id
    let by_req = app.get(Some(&t.admin.token), "/api/v1/audit?request_id=req-audit-1").await;
    assert_eq!(by_req.json["items"].as_array().unwrap().len(), 1);
    let auth = app.get(Some(&t.admin.token), "/api/v1/audit?action=auth").await;
    assert!(auth.json["items"].as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("auth.")));
    app.stop().await;
}
