//! The ticket API: fields, priority, state machine, optimistic concurrency, idempotency,
//! lists, comments and links.

use archer_tests::spawn_app;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn create_read_and_change_a_ticket() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app
        .post(Some(&t.requester.token), "/api/v1/tickets", &json!({"kind": "incident", "title": "  Wi-Fi down on 3rd floor ", "description": "All **APs** blink red", "impact": 2, "urgency": 1, "category": "network", "tags": ["wifi", "wifi", "floor-3"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("location"), Some("/api/v1/tickets/INC-000001"));
    assert_eq!(r.header("etag"), Some("\"1\""));
    let v = &r.json;
    assert_eq!(v["number"], "INC-000001");
    assert_eq!(v["title"], "Wi-Fi down on 3rd floor");
    assert_eq!(v["priority"], 1, "impact 2 × urgency 1 is P1");
    assert_eq!(v["status"], "new");
    assert_eq!(v["requester_id"], t.requester.id.to_string());
    assert_eq!(v["tags"], json!(["wifi", "floor-3"]));
    assert_eq!(v["allowed_transitions"], json!(["in_progress", "waiting_on_customer", "resolved", "cancelled"]));

    // by id and by number
    let id = v["id"].as_str().unwrap();
    assert_eq!(app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{id}")).await.json["number"], "INC-000001");
    assert_eq!(app.get(Some(&t.agent.token), "/api/v1/tickets/inc-1").await.json["id"], id);
    app.get(Some(&t.agent.token), "/api/v1/tickets/INC-000099").await.problem(404);
    app.get(Some(&t.agent.token), "/api/v1/tickets/garbage").await.problem(404);

    // an agent overrides the priority with a reason; a later impact change derives it again
    let r = app.patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"priority": 3, "priority_reason": "only one floor", "assignee_id": t.agent.id, "status": "in_progress"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["priority"], 3);
    assert_eq!(r.json["priority_reason"], "only one floor");
    assert_eq!(r.json["assignee_id"], t.agent.id.to_string());
    assert_eq!(r.header("etag"), Some("\"2\""));
    let r = app.patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"impact": 4})).await;
    assert_eq!(r.json["priority"], 3, "impact 4 × urgency 1 is P3");
    assert!(r.json["priority_reason"].is_null());
    // unassign with null
    let r = app
        .patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"assignee_id": null, "category": null}))
        .await;
    assert!(r.json["assignee_id"].is_null());
    assert!(r.json["category"].is_null());
    // resolve stamps resolved_at; reopen clears it; close stamps closed_at
    let r = app.patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"status": "resolved"})).await;
    assert!(r.json["resolved_at"].is_string());
    let r = app.patch(Some(&t.requester.token), "/api/v1/tickets/INC-000001", &json!({"status": "in_progress"})).await;
    assert_eq!(r.status, 200, "requesters may reopen: {}", r.body);
    assert!(r.json["resolved_at"].is_null());
    app.set_status(&t.agent, "INC-000001", "resolved").await;
    let r = app.set_status(&t.requester, "INC-000001", "closed").await;
    assert!(r["closed_at"].is_string());
    assert_eq!(r["allowed_transitions"], json!([]));
    // closed is final
    app.patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"status": "in_progress"})).await.problem(409);
    app.post(Some(&t.agent.token), "/api/v1/tickets/INC-000001/comments", &json!({"body": "late"})).await.problem(409);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requesters_are_limited_to_their_own_tickets_and_safe_changes() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let mine = app.incident(&t.requester, "my issue").await;
    let other = app.incident(&t.agent, "someone else's").await;
    let list = app.get(Some(&t.requester.token), "/api/v1/tickets").await;
    assert_eq!(list.json["total"], 1);
    app.get(Some(&t.requester.token), &format!("/api/v1/tickets/{}", other["id"].as_str().unwrap())).await.problem(404);
    app.get(Some(&t.requester.token), &format!("/api/v1/tickets?requester={}", t.agent.id)).await.problem(422);
    let n = mine["number"].as_str().unwrap();
    // they may edit the text, but not triage
    let r = app
        .patch(Some(&t.requester.token), &format!("/api/v1/tickets/{n}"), &json!({"description": "more detail"}))
        .await;
    assert_eq!(r.status, 200);
    app.patch(Some(&t.requester.token), &format!("/api/v1/tickets/{n}"), &json!({"status": "in_progress"}))
        .await
        .problem(403);
    app.patch(Some(&t.requester.token), &format!("/api/v1/tickets/{n}"), &json!({"urgency": 1})).await.problem(403);
    app.patch(Some(&t.requester.token), &format!("/api/v1/tickets/{n}"), &json!({"assignee_id": t.agent.id}))
        .await
        .problem(403);
    app.post(Some(&t.requester.token), "/api/v1/tickets", &json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 1, "priority": 1, "priority_reason": "urgent!"})).await.problem(403);
    app.post(
        Some(&t.requester.token),
        "/api/v1/tickets",
        &json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 1, "requester_id": t.agent.id}),
    )
    .await
    .problem(403);
    // but may cancel their new ticket
    assert_eq!(app.set_status(&t.requester, n, "cancelled").await["status"], "cancelled");
    // agents raise tickets on someone's behalf
    let r = app.create_ticket(&t.agent, json!({"kind": "incident", "title": "phoned in", "impact": 3, "urgency": 3, "requester_id": t.requester.id})).await;
    assert_eq!(r["requester_id"], t.requester.id.to_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_refuses_lost_updates() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.incident(&t.agent, "race").await;
    let path = "/api/v1/tickets/INC-000001";
    let ok = app
        .send(Method::PATCH, Some(&t.agent.token), path, Some(&json!({"title": "first"})), &[("if-match", "\"1\"")])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let stale = app
        .send(Method::PATCH, Some(&t.agent.token), path, Some(&json!({"title": "second"})), &[("if-match", "\"1\"")])
        .await;
    assert!(stale.problem(412)["detail"].as_str().unwrap().contains("\"2\""));
    assert_eq!(app.get(Some(&t.agent.token), path).await.json["title"], "first");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_replay_the_first_response() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let body = json!({"kind": "incident", "title": "once only", "impact": 3, "urgency": 3});
    let h = [("idempotency-key", "create-once-1")];
    let first = app.send(Method::POST, Some(&t.agent.token), "/api/v1/tickets", Some(&body), &h).await;
    assert_eq!(first.status, 201);
    let again = app.send(Method::POST, Some(&t.agent.token), "/api/v1/tickets", Some(&body), &h).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json, first.json);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM outbox WHERE intent = 'start'").await, 1);
    // the same key with another body is refused; another user's same key is theirs
    let other = app
        .send(
            Method::POST,
            Some(&t.agent.token),
            "/api/v1/tickets",
            Some(&json!({"kind": "incident", "title": "different", "impact": 3, "urgency": 3})),
            &h,
        )
        .await;
    assert_eq!(other.problem(422)["errors"][0]["pointer"], "Idempotency-Key");
    let theirs = app.send(Method::POST, Some(&t.manager.token), "/api/v1/tickets", Some(&body), &h).await;
    assert_eq!(theirs.status, 201);
    assert_eq!(theirs.json["number"], "INC-000002");
    // concurrent twins: one ticket
    let b2 = json!({"kind": "incident", "title": "twins", "impact": 3, "urgency": 3});
    let h2 = [("idempotency-key", "twin")];
    let (x, y) = tokio::join!(
        app.send(Method::POST, Some(&t.agent.token), "/api/v1/tickets", Some(&b2), &h2),
        app.send(Method::POST, Some(&t.agent.token), "/api/v1/tickets", Some(&b2), &h2)
    );
    assert_eq!((x.status, y.status), (201, 201));
    assert_eq!(x.json["id"], y.json["id"]);
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_filter_sort_and_page_by_offset_and_cursor() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let mk = |kind: &str, title: &str, impact: i64, urgency: i64| json!({"kind": kind, "title": title, "impact": impact, "urgency": urgency});
    app.create_ticket(&t.requester, mk("incident", "Printer jams on tray 2", 3, 3)).await; // P3
    app.create_ticket(&t.agent, mk("incident", "Email outage for sales", 1, 1)).await; // P1
    app.create_ticket(&t.agent, mk("service_request", "New monitor please", 4, 4)).await; // P4
    app.create_ticket(&t.agent, mk("problem", "Printers keep jamming", 2, 3)).await; // P3
    app.create_ticket(&t.agent, json!({"kind": "change", "title": "Swap printer fleet", "impact": 2, "urgency": 2, "tags": ["printers"], "team_id": null, "change_type": "standard", "risk": "low"})).await; // P2
    app.patch(
        Some(&t.agent.token),
        "/api/v1/tickets/INC-000002",
        &json!({"status": "in_progress", "assignee_id": t.agent.id}),
    )
    .await;

    let get = |q: &'static str| {
        let app = &app;
        let token = t.agent.token.clone();
        async move {
            let r = app.get(Some(&token), &format!("/api/v1/tickets{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            r.json
        }
    };
    let titles = |v: &serde_json::Value| {
        v["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };

    assert_eq!(get("").await["total"], 5);
    assert_eq!(
        titles(&get("?kind=incident,problem&sort=created_at").await),
        ["Printer jams on tray 2", "Email outage for sales", "Printers keep jamming"]
    );
    assert_eq!(titles(&get("?status=in_progress").await), ["Email outage for sales"]);
    assert_eq!(titles(&get("?assignee=me").await), ["Email outage for sales"]);
    assert_eq!(get("?assignee=none").await["total"], 4);
    assert_eq!(get("?priority=3").await["total"], 2);
    assert_eq!(titles(&get("?requester=me").await).len(), 4);
    assert_eq!(get("?tag=printers").await["total"], 1);
    // full-text search stems: "printer" finds "Printers" and "printer"
    assert_eq!(get("?q=printer").await["total"], 3);
    assert_eq!(
        titles(&get("?q=printer%20-fleet&sort=created_at").await),
        ["Printer jams on tray 2", "Printers keep jamming"]
    );
    // sorting by priority, most urgent (P1) first
    let by_prio = get("?sort=priority").await;
    let prios: Vec<i64> =
        by_prio["items"].as_array().unwrap().iter().map(|t| t["priority"].as_i64().unwrap()).collect();
    assert_eq!(prios, [1, 2, 3, 3, 4]);
    // created range
    assert_eq!(get("?created_from=2000-01-01T00:00:00Z&created_to=2000-01-02T00:00:00Z").await["total"], 0);

    // offset pages
    let p1 = get("?limit=2&page=1&sort=created_at").await;
    let p3 = get("?limit=2&page=3&sort=created_at").await;
    assert_eq!(titles(&p1), ["Printer jams on tray 2", "Email outage for sales"]);
    assert_eq!(titles(&p3), ["Swap printer fleet"]);
    assert_eq!(p1["total"], 5);

    // cursor pages cover everything exactly once, in order
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(c) => format!("/api/v1/tickets?limit=2&sort=-priority&cursor={c}"),
            None => "/api/v1/tickets?limit=2&sort=-priority".to_owned(),
        };
        let r = app.get(Some(&t.agent.token), &q).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(r.json["items"].as_array().unwrap().iter().map(|t| t["priority"].as_i64().unwrap()));
        match r.json["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, [4, 3, 3, 2, 1]);
    // a cursor is bound to its sort
    let c = get("?limit=2&sort=priority").await["next_cursor"].as_str().unwrap().to_owned();
    app.get(Some(&t.agent.token), &format!("/api/v1/tickets?sort=created_at&cursor={c}")).await.problem(422);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn comments_are_public_or_internal_and_links_go_both_ways() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let a = app.incident(&t.requester, "VPN down").await;
    let b = app
        .create_ticket(
            &t.agent,
            json!({"kind": "problem", "title": "VPN concentrator flaky", "impact": 2, "urgency": 2}),
        )
        .await;
    let (an, bn) = (a["number"].as_str().unwrap(), b["number"].as_str().unwrap());

    let c = app
        .post(Some(&t.requester.token), &format!("/api/v1/tickets/{an}/comments"), &json!({"body": "still down"}))
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    app.post(
        Some(&t.agent.token),
        &format!("/api/v1/tickets/{an}/comments"),
        &json!({"body": "suspect the concentrator", "internal": true}),
    )
    .await;
    app.post(
        Some(&t.requester.token),
        &format!("/api/v1/tickets/{an}/comments"),
        &json!({"body": "sneaky", "internal": true}),
    )
    .await
    .problem(403);
    app.post(Some(&t.requester.token), &format!("/api/v1/tickets/{an}/comments"), &json!({"body": ""}))
        .await
        .problem(422);
    let for_agent = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{an}/comments")).await;
    assert_eq!(for_agent.json.as_array().unwrap().len(), 2);
    let for_requester = app.get(Some(&t.requester.token), &format!("/api/v1/tickets/{an}/comments")).await;
    let bodies: Vec<&str> =
        for_requester.json.as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["still down"], "internal notes never reach the requester");

    let l = app
        .post(Some(&t.agent.token), &format!("/api/v1/tickets/{an}/links"), &json!({"kind": "caused_by", "target": bn}))
        .await;
    assert_eq!(l.status, 201, "{}", l.body);
    assert_eq!(l.json["direction"], "outgoing");
    assert_eq!(l.json["ticket"], bn);
    app.post(Some(&t.agent.token), &format!("/api/v1/tickets/{an}/links"), &json!({"kind": "caused_by", "target": bn}))
        .await
        .problem(422);
    app.post(
        Some(&t.agent.token),
        &format!("/api/v1/tickets/{an}/links"),
        &json!({"kind": "relates_to", "target": an}),
    )
    .await
    .problem(422);
    app.post(Some(&t.agent.token), &format!("/api/v1/tickets/{an}/links"), &json!({"kind": "fixes", "target": bn}))
        .await
        .problem(422);
    app.post(
        Some(&t.requester.token),
        &format!("/api/v1/tickets/{an}/links"),
        &json!({"kind": "relates_to", "target": bn}),
    )
    .await
    .problem(403);
    let from_b = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{bn}/links")).await;
    assert_eq!(from_b.json[0]["direction"], "incoming");
    assert_eq!(from_b.json[0]["kind"], "caused_by");
    assert_eq!(from_b.json[0]["ticket"], an);
    let link_id = l.json["id"].as_str().unwrap();
    assert_eq!(app.delete(Some(&t.agent.token), &format!("/api/v1/tickets/{bn}/links/{link_id}")).await.status, 204);
    assert_eq!(app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{an}/links")).await.json, json!([]));
    app.delete(Some(&t.agent.token), &format!("/api/v1/tickets/{bn}/links/{link_id}")).await.problem(404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_open_tasks_for_a_ticket_and_close_them_when_done() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let parent = app.incident(&t.requester, "New starter needs a laptop").await;
    let pn = parent["number"].as_str().unwrap();
    let task = json!({"kind": "task", "title": "Image a laptop", "impact": 3, "urgency": 3});
    // tasks are work handed between those who work tickets
    app.post(Some(&t.requester.token), "/api/v1/tickets", &task).await.problem(403);
    let r = app.post(Some(&t.agent.token), "/api/v1/tickets", &task).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json["number"].as_str(), r.json["kind"].as_str()), (Some("TASK-000001"), Some("task")));
    assert_eq!(r.header("location"), Some("/api/v1/tickets/TASK-000001"));
    assert_eq!(r.json["allowed_transitions"], json!(["in_progress", "waiting_on_customer", "closed", "cancelled"]));
    let typed =
        json!({"kind": "task", "title": "x", "impact": 3, "urgency": 3, "change_type": "normal", "risk": "low"});
    let p = app.post(Some(&t.agent.token), "/api/v1/tickets", &typed).await;
    let pointers: Vec<&str> =
        p.problem(422)["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/change_type", "/risk"], "a task has no change type or risk");

    // a task names its parent with a `task_of` link; the parent sees it incoming
    let l =
        app.post(Some(&t.agent.token), "/api/v1/tickets/task-1/links", &json!({"kind": "task_of", "target": pn})).await;
    assert_eq!(l.status, 201, "{}", l.body);
    let of_parent = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{pn}/links")).await;
    assert_eq!(
        (&of_parent.json[0]["kind"], &of_parent.json[0]["direction"], &of_parent.json[0]["ticket"]),
        (&json!("task_of"), &json!("incoming"), &json!("TASK-000001"))
    );

    // done is closed, without a resolution step, and final
    app.patch(Some(&t.agent.token), "/api/v1/tickets/TASK-000001", &json!({"status": "resolved"})).await.problem(409);
    app.set_status(&t.agent, "TASK-000001", "in_progress").await;
    let done = app.set_status(&t.agent, "TASK-000001", "closed").await;
    assert!(done["closed_at"].is_string() && done["resolved_at"].is_null(), "{done}");
    assert_eq!(done["allowed_transitions"], json!([]));
    let tasks = app.get(Some(&t.agent.token), "/api/v1/tickets?kind=task").await;
    assert_eq!(tasks.json["total"], 1);
    app.stop().await;
}
