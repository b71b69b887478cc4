//! Deadlines to the second: a breach recorded within a second of its due instant, a pause that
//! moves the breach by exactly its length, a priority change that keeps the elapsed time.
//!
//! These tests measure the system's own latency, so `./dev test` runs them after the rest of the
//! suite, one at a time (the `exact` profile in `.config/nextest.toml`): on a two-core machine the
//! other end-to-end tests running beside them would measure the machine's contention instead.

use std::time::Duration;

use archer_tests::sla::{durations, secs};
use archer_tests::spawn_app;
use archer_tests::temporal::replay_live;
use serde_json::json;
use temporalio_client::WorkflowExecutionStatus;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread")]
async fn a_breach_is_recorded_within_a_second_of_its_deadline_and_escalates_by_email_and_inbox() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.resolution_policy(&t.admin, [2, 2, 2, 2]).await;
    let ticket = app
        .create_ticket(&t.agent, json!({"kind": "incident", "title": "Mail server down", "impact": 1, "urgency": 1, "assignee_id": t.agent.id}))
        .await;
    let id = ticket["id"].as_str().unwrap();
    let number = ticket["number"].as_str().unwrap();
    let created = app.created_at(id).await;
    // the 201 already says when the target is due
    let clock = &ticket["sla"]["clocks"][0];
    assert_eq!(clock["metric"], "resolution");
    assert_eq!(clock["target_seconds"], 2);
    let due: OffsetDateTime =
        OffsetDateTime::parse(clock["due_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(due, created + time::Duration::seconds(2));

    let breach = app.breach(id, "resolution", Duration::from_secs(20)).await;
    assert_eq!(breach.at, due, "recorded with its true instant");
    assert!(
        secs(breach.recorded_at - breach.at) < 1.0,
        "recorded {:.3}s after the deadline",
        secs(breach.recorded_at - breach.at)
    );

    // the escalation's email reaches the SMTP server, once, with its deterministic Message-ID
    let mail = app.mail.wait_for(|m| m.to.contains(&t.agent.email), Duration::from_secs(20)).await;
    assert!(mail.subject.contains(number), "{}", mail.subject);
    assert!(mail.text.contains("Mail server down"));
    assert!(mail.message_id.contains(&format!("escalation.{id}.resolution.1.0.{}", t.agent.id)), "{}", mail.message_id);
    // and the assignee's inbox has it
    let inbox = app.get(Some(&t.agent.token), "/api/v1/notifications").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert_eq!(inbox.json["unread"], 1);
    let note = &inbox.json["items"][0];
    assert_eq!(note["kind"], "sla_breach");
    assert_eq!(note["ticket_id"], id);
    let read = app
        .post(Some(&t.agent.token), &format!("/api/v1/notifications/{}/read", note["id"].as_str().unwrap()), &json!({}))
        .await;
    assert!(read.json["read_at"].is_string(), "{}", read.body);
    assert_eq!(app.get(Some(&t.agent.token), "/api/v1/notifications?unread=true").await.json["unread"], 0);

    // the ticket, lists, the timeline and the workflow all show the breach
    let shown = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}")).await;
    assert_eq!(shown.json["sla"]["state"], "breached", "{}", shown.body);
    let breached = app.get(Some(&t.agent.token), "/api/v1/tickets?sla_state=breached").await;
    assert_eq!(breached.json["total"], 1);
    assert_eq!(app.get(Some(&t.agent.token), "/api/v1/tickets?sla_state=running").await.json["total"], 0);
    let timeline = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/timeline")).await;
    let kinds: Vec<&str> = timeline.json.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"sla_breach") && kinds.contains(&"escalation"), "{kinds:?}");
    let live = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/sla")).await;
    assert_eq!(live.json["source"], "workflow", "{}", live.body);
    assert_eq!(live.json["clocks"][0]["state"], "breached");
    let client = app.temporal().await;
    let wf = format!("{}/{number}", t.slug);
    archer_tests::eventually(Duration::from_secs(20), "ops to find it breached", || async {
        app.list_workflows(&client, &format!("ArcherTenant = '{}' AND ArcherSlaState = 'breached'", t.slug)).await.len()
            == 1
    })
    .await;
    // an escalation is audited
    let audit = app.get(Some(&t.admin.token), "/api/v1/audit?entity_type=sla_escalations").await;
    assert_eq!(audit.json["items"].as_array().unwrap().len(), 1, "{}", audit.body);

    app.set_status(&t.agent, number, "resolved").await;
    app.set_status(&t.agent, number, "closed").await;
    app.wait_for_status(&client, &wf, WorkflowExecutionStatus::Completed).await;
    assert_eq!(app.mail.count(|_| true), 1, "no email twice");
    replay_live(&client, &wf, "ticket/incident_sla_breach_escalated").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_the_customer_pauses_the_clock_and_moves_the_breach() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.resolution_policy(&t.admin, [4, 4, 4, 4]).await;
    let ticket = app.incident(&t.agent, "Needs the customer's log files").await;
    let (id, number) = (ticket["id"].as_str().unwrap().to_owned(), ticket["number"].as_str().unwrap().to_owned());
    let created = app.created_at(&id).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    app.set_status(&t.agent, &number, "waiting_on_customer").await;
    let paused = app.updated_at(&id).await;
    let live = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}")).await;
    assert!(
        live.json["sla"]["clocks"][0].get("due_at").is_none_or(|d| d.is_null()),
        "no due instant while paused: {}",
        live.body
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    app.set_status(&t.agent, &number, "in_progress").await;
    let resumed = app.updated_at(&id).await;
    let pause = resumed - paused;
    assert!((secs(pause) - 3.0).abs() < 0.5, "paused {:.3}s", secs(pause));

    let breach = app.breach(&id, "resolution", Duration::from_secs(20)).await;
    assert_eq!(breach.at, created + time::Duration::seconds(4) + pause, "the deadline moved by exactly the pause");
    let moved = breach.at - (created + time::Duration::seconds(4));
    assert!((secs(moved) - 3.0).abs() <= 0.5, "moved by {:.3}s", secs(moved));
    assert!(secs(breach.recorded_at - breach.at) < 1.0);
    let sla = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/sla")).await;
    let pauses = &sla.json["clocks"][0]["ongoing"]["pauses"];
    assert_eq!(pauses.as_array().unwrap().len(), 1, "{}", sla.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raising_the_priority_keeps_the_elapsed_time_and_breaches_on_the_new_target() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.resolution_policy(&t.admin, [4, 10, 30, 60]).await;
    // P3 → P1 two seconds in: the P1 budget of 4 s counts from creation
    let a = app.create_ticket(&t.agent, json!({"kind": "incident", "title": "slow", "impact": 3, "urgency": 3})).await;
    assert_eq!(a["priority"], 3);
    // P3 → P1 six seconds in: already past the new budget, so it breaches at once, at 4 s
    let b =
        app.create_ticket(&t.agent, json!({"kind": "incident", "title": "slower", "impact": 3, "urgency": 3})).await;
    let (ca, cb) = (app.created_at(a["id"].as_str().unwrap()).await, app.created_at(b["id"].as_str().unwrap()).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = app
        .patch(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{}", a["number"].as_str().unwrap()),
            &json!({"impact": 1, "urgency": 1}),
        )
        .await;
    assert_eq!(r.json["priority"], 1);
    assert_eq!(r.json["sla"]["clocks"][0]["target_seconds"], 4, "the response already shows the new target");
    let remaining = r.json["sla"]["clocks"][0]["remaining_seconds"].as_i64().unwrap();
    assert!((1..=2).contains(&remaining), "{remaining}");
    let breach = app.breach(a["id"].as_str().unwrap(), "resolution", Duration::from_secs(20)).await;
    assert_eq!(breach.at, ca + time::Duration::seconds(4));
    assert!(secs(breach.recorded_at - breach.at) < 1.0, "{:.3}s late", secs(breach.recorded_at - breach.at));

    let wait = (cb + time::Duration::seconds(6)) - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_secs_f64(secs(wait).max(0.0))).await;
    app.patch(
        Some(&t.agent.token),
        &format!("/api/v1/tickets/{}", b["number"].as_str().unwrap()),
        &json!({"impact": 1, "urgency": 1}),
    )
    .await;
    let changed = app.updated_at(b["id"].as_str().unwrap()).await;
    let breach = app.breach(b["id"].as_str().unwrap(), "resolution", Duration::from_secs(20)).await;
    assert_eq!(breach.at, cb + time::Duration::seconds(4), "the true breach instant, before the change");
    assert!(
        secs(breach.recorded_at - changed) < 1.5,
        "recorded {:.3}s after the change",
        secs(breach.recorded_at - changed)
    );
    let shown = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{}", b["number"].as_str().unwrap())).await;
    assert_eq!(shown.json["sla"]["clocks"][0]["target_seconds"], 4);
    assert_eq!(shown.json["sla"]["state"], "breached");
    app.stop().await;
}

/// Issue 8, item 14: a breach never waits behind another clock's escalations. Ticket A's first
/// response breaches at 2 s and fires five escalation levels, each emailing two people through a
/// mail server that takes 400 ms per message (4 s of work); its resolution breaches at 3 s. Ticket
/// B has the same targets and no escalations. Both resolution breaches are recorded within a
/// second of their due instant. (The sequential workflow ran all five levels before setting its
/// next timer, so A's breach came about 5 s late.) A is closed while its levels still run: the
/// workflow completes only after all of them ran.
#[tokio::test(flavor = "multi_thread")]
async fn a_breach_behind_five_escalation_levels_is_as_prompt_as_one_without_escalations() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.mail.delay_acceptance(Duration::from_millis(400));
    let targets = json!([
        {"metric": "first_response", "durations": durations([2, 2, 2, 2]), "warnings": []},
        {"metric": "resolution", "durations": durations([3, 3, 3, 3]), "warnings": []}
    ]);
    let levels: Vec<_> = (1..=5)
        .map(|i| {
            json!({"name": format!("First response level {i}"), "metric": "first_response", "when": "breach",
                   "actions": [{"type": "notify", "to": {"users": [t.agent.id, t.manager.id]}}]})
        })
        .collect();
    app.policy(
        &t.admin,
        json!({"name": "Escalating", "spec": {"applies_to": {"priorities": [1]}, "targets": targets, "escalations": levels}}),
    )
    .await;
    app.policy(&t.admin, json!({"name": "Quiet", "spec": {"applies_to": {"priorities": [2]}, "targets": targets}}))
        .await;
    let a = app
        .create_ticket(
            &t.agent,
            json!({"kind": "incident", "title": "Escalating", "impact": 1, "urgency": 1, "assignee_id": t.agent.id}),
        )
        .await;
    let b = app
        .create_ticket(
            &t.agent,
            json!({"kind": "incident", "title": "Quiet", "impact": 2, "urgency": 2, "assignee_id": t.agent.id}),
        )
        .await;
    assert_eq!((a["priority"].as_i64(), b["priority"].as_i64()), (Some(1), Some(2)));
    for (ticket, name) in [(&a, "with five escalation levels"), (&b, "without escalations")] {
        let id = ticket["id"].as_str().unwrap();
        let created = app.created_at(id).await;
        let breach = app.breach(id, "resolution", Duration::from_secs(30)).await;
        assert_eq!(breach.at, created + time::Duration::seconds(3), "{name}: the true instant");
        let late = secs(breach.recorded_at - breach.at);
        assert!(late < 1.0, "{name}: the resolution breach was recorded {late:.3}s after its due instant");
    }

    // closed while its levels are still emailing: the workflow completes once they all ran, in
    // order, each once (ten emails, none twice)
    let number = a["number"].as_str().unwrap();
    assert!(app.mail.count(|_| true) < 10, "the levels are still running");
    let client = app.temporal().await;
    let wf = format!("{}/{number}", t.slug);
    app.set_status(&t.agent, number, "in_progress").await;
    app.set_status(&t.agent, number, "resolved").await;
    app.set_status(&t.agent, number, "closed").await;
    app.wait_for_status(&client, &wf, WorkflowExecutionStatus::Completed).await;
    assert_eq!(app.mail.count(|m| m.subject.contains(number)), 10, "every level ran before the workflow completed");
    let levels: Vec<(i32, OffsetDateTime)> =
        sqlx::query_as("SELECT level, created_at FROM sla_escalations WHERE ticket_id = $1::uuid ORDER BY created_at")
            .bind(a["id"].as_str().unwrap())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(levels.iter().map(|l| l.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "in order, once each");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.mail.count(|_| true), 10, "no email twice");
    replay_live(&client, &wf, "ticket/breach_closed_while_escalation_levels_run").await;
    app.stop().await;
}

/// Issue 8, item 2: an unknown email, a deactivated account, one without a password and a
/// wrong password take the same time to refuse (here: medians of 30 interleaved rounds within
/// 10 ms; one argon2 check is about 20 ms on this machine, so fewer rounds measure its noise).
#[tokio::test(flavor = "multi_thread")]
async fn login_refusals_take_the_same_time_whatever_the_reason() {
    let mut app = spawn_app().await;
    let t = app.tenant().await;
    app.config.login_max_failures = 1000;
    app.stop_server().await;
    app.start_server().await;
    app.delete(Some(&t.admin.token), &format!("/api/v1/users/{}", t.requester.id)).await;
    sqlx::query("UPDATE users SET password_hash = NULL WHERE id = $1")
        .bind(t.manager.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let cases = [
        ("unknown", "nobody@nowhere.example", "whatever"),
        ("deactivated", t.requester.email.as_str(), archer_tests::PASSWORD),
        ("no password", t.manager.email.as_str(), archer_tests::PASSWORD),
        ("wrong password", t.agent.email.as_str(), "wrong"),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..31 {
        for (i, (_, email, password)) in cases.iter().enumerate() {
            let started = std::time::Instant::now();
            let r = app.post(None, "/api/v1/auth/login", &json!({"email": email, "password": password})).await;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(r.status, 401, "{}", r.body);
            if round > 0 {
                times[i].push(took);
            }
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let spread = medians.iter().copied().fold(f64::MIN, f64::max) - medians.iter().copied().fold(f64::MAX, f64::min);
    let named: Vec<String> = cases.iter().zip(&medians).map(|((n, _, _), m)| format!("{n}: {m:.1} ms")).collect();
    assert!(spread < 10.0, "median refusal times differ by {spread:.1} ms: {named:?}");
    app.stop().await;
}
