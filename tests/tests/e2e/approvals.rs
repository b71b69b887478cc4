//! Approval chains end to end: a catalog request through its chain from emailed links (in a
//! real browser) and in-app decisions, rejections, timeouts with reminders and escalation,
//! decision-link tokens, out-of-office delegation, cancellation, and change routing (CAB).

use std::time::Duration;

use archer_tests::approvals::{Laptop, decision_links, laptop, laptop_answers, laptop_schema, token_of};
use archer_tests::browser::Browser;
use archer_tests::{Options, TestApp, TestUser, spawn_app, spawn_app_with};
use serde_json::{Value, json};

async fn submit(app: &TestApp, who: &TestUser, item: &Value) -> String {
    let r = app.submit(who, item, laptop_answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json["number"].as_str().unwrap().to_owned()
}

fn step(approval: &Value, i: usize) -> &Value {
    &approval["steps"][i]
}

fn task_of<'a>(approval: &'a Value, i: usize, user: &TestUser) -> &'a Value {
    step(approval, i)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["approver"]["id"] == user.id.to_string())
        .unwrap_or_else(|| panic!("{} not asked in step {i}: {approval:#}", user.email))
}

#[tokio::test]
async fn a_laptop_request_goes_through_its_chain_from_emailed_links_to_fulfilment() {
    let app = spawn_app().await;
    let Laptop { t, employee, approvers, item } = laptop(&app).await;
    let number = submit(&app, &employee, &item).await;

    // the manager is asked by email, with the answers and two links
    let mail = app.approval_mail(&t.manager, &number).await;
    assert!(mail.subject.contains(&number), "{}", mail.subject);
    assert!(mail.text.contains("Business justification: New starter in the data team"), "{}", mail.text);
    // (HTML-escaped: `=` is `&#x3D;` in the href, which a mail client decodes)
    assert_eq!(mail.html.matches("/approvals/decide?token").count(), 2, "the HTML part has both links: {}", mail.html);
    let (approve, reject) = decision_links(&mail);
    assert!(approve.starts_with(&app.base), "{approve}");
    assert_ne!(token_of(&approve), token_of(&reject));

    // in a real browser: opening the link only shows a confirmation page ...
    let browser = Browser::start().await;
    browser.goto(&approve).await;
    assert!(browser.text("#title").await.contains("Confirm"), "{}", browser.page_text().await);
    assert!(browser.page_text().await.contains(&number));
    let a = app.approval_of(&t.agent, &number).await;
    assert_eq!(task_of(&a, 0, &t.manager)["state"], "asked", "a GET decides nothing");
    // ... and its form's POST decides
    browser.click("#confirm").await;
    let outcome = browser.text("#outcome").await;
    assert!(outcome.to_lowercase().contains("approved"), "{outcome}");
    browser.close().await;

    // the second step's approvers get their emails
    let mut links = Vec::new();
    for a in &approvers {
        let m = app.approval_mail(a, &number).await;
        links.push(decision_links(&m).0);
    }
    let a = app.approval_until(&t.agent, &number, "step 2 open", |a| step(a, 1)["state"] == "open").await;
    assert_eq!(step(&a, 0)["state"], "approved");
    assert_eq!(task_of(&a, 0, &t.manager)["via"], "email");
    assert_eq!(a["pending"].as_array().unwrap().len(), 3);

    // two of three: one by link (a plain form POST), one in the app
    let (status, page) = app.confirm(&links[0], None, None).await;
    assert_eq!(status, 200, "{page}");
    let id = a["id"].as_str().unwrap();
    let inbox = app.get(Some(&approvers[1].token), "/api/v1/approvals?state=pending").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert!(
        inbox.json["items"].as_array().unwrap().iter().any(|i| i["approval_id"] == id && i["ticket"] == number),
        "{}",
        inbox.body
    );
    let r = app.post(Some(&approvers[1].token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["result"], "recorded");
    // approving again changes nothing
    let r = app.post(Some(&approvers[1].token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.json["result"], "already_decided", "{}", r.body);

    // the request moves to fulfilment
    app.ticket_status(&employee, &number, "in_progress").await;
    let a = app.approval_until(&t.agent, &number, "approved", |a| a["state"] == "approved").await;
    assert_eq!(step(&a, 1)["state"], "approved");
    assert_eq!(task_of(&a, 1, &approvers[2])["state"], "superseded", "the third approver is no longer needed");
    assert!(a["pending"].as_array().unwrap().is_empty());
    let inbox = app.get(Some(&approvers[2].token), "/api/v1/approvals").await;
    assert!(inbox.json["items"].as_array().unwrap().is_empty(), "{}", inbox.body);
    // and the third link now says the step closed, deciding nothing
    let (status, page) = app.confirm(&links[2], None, None).await;
    assert_eq!(status, 409, "{page}");
    assert_eq!(task_of(&app.approval_of(&t.agent, &number).await, 1, &approvers[2])["state"], "superseded");

    // the ticket's timeline shows each step
    let tl = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/timeline")).await;
    let summaries: Vec<String> =
        tl.json.as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap().to_owned()).collect();
    for want in [
        "step started: Manager approval",
        "step approved: Manager approval",
        "step started: Hardware approvers",
        "step approved: Hardware approvers",
        "approval approved",
    ] {
        assert!(summaries.iter().any(|s| s.starts_with(want)), "{want:?} not in the timeline {summaries:#?}");
    }
    assert!(summaries.iter().any(|s| s.contains("approved by Hugo Two") && s.contains("via app")), "{summaries:#?}");
    assert!(summaries.iter().any(|s| s.contains("approved by Hana One") && s.contains("via email")), "{summaries:#?}");
    // the workflow's query agrees
    let live = app.get(Some(&t.agent.token), &format!("/api/v1/approvals/{id}/workflow")).await;
    assert_eq!(live.status, 200, "{}", live.body);
    assert_eq!(live.json["state"]["outcome"]["outcome"], "approved", "{}", live.body);
    // every email once: the manager, each of the three
    app.outbox_drained().await;
    assert_eq!(app.approval_mails(&t.manager, &number), 1);
    for a in &approvers {
        assert_eq!(app.approval_mails(a, &number), 1, "{}", a.email);
    }
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{number}/request/1", t.slug),
        "request/laptop_approved",
    )
    .await;
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{number}/approval/1", t.slug),
        "approval_chain/laptop_two_steps",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_rejection_needs_a_comment_and_ends_the_chain() {
    let app = spawn_app().await;
    let Laptop { t, employee, approvers, item } = laptop(&app).await;
    let number = submit(&app, &employee, &item).await;
    app.approval_mail(&t.manager, &number).await;
    let id = app.approval_of(&t.agent, &number).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/approvals/{id}/reject");

    // without a comment: refused, nothing recorded
    let r = app.post(Some(&t.manager.token), &path, &json!({})).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/comment");
    let r = app.post(Some(&t.manager.token), &path, &json!({"comment": "   "})).await;
    r.problem(422);
    // by link too: the form comes back saying so
    let mail = app.approval_mail(&t.manager, &number).await;
    let (_, reject_link) = decision_links(&mail);
    let (status, page) = app.confirm(&reject_link, Some(""), None).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("id=\"error\"") && page.contains("comment is required"), "{page}");
    assert_eq!(task_of(&app.approval_of(&t.agent, &number).await, 0, &t.manager)["state"], "asked");
    // someone who was not asked cannot decide: for them it does not exist
    let r = app.post(Some(&approvers[0].token), &path, &json!({"comment": "no"})).await;
    r.problem(404);

    // with a comment: the chain ends rejected, the ticket is rejected, the requester told why
    let r = app.post(Some(&t.manager.token), &path, &json!({"comment": "We have spare laptops in the office"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.ticket_status(&employee, &number, "rejected").await;
    let a = app.approval_until(&t.agent, &number, "rejected", |a| a["state"] == "rejected").await;
    assert_eq!(step(&a, 0)["state"], "rejected");
    assert_eq!(step(&a, 1)["state"], "upcoming", "the second step never starts");
    assert_eq!(task_of(&a, 0, &t.manager)["comment"], "We have spare laptops in the office");
    let comments = app.get(Some(&employee.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert!(comments.body.contains("Rejected"), "the requester sees why: {}", comments.body);
    for a in &approvers {
        assert_eq!(app.approval_mails(a, &number), 0, "no second step, no emails");
    }
    // a decision after the end is answered with the state, not an error page
    let r = app.post(Some(&t.manager.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    let p = r.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("rejected"), "{p}");
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{number}/approval/1", t.slug),
        "approval_chain/rejected_with_comment",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_step_reminds_then_times_out_and_escalates_to_the_configured_approver() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let slow = app.user(&t, "Sam Slow", &["approver"], None).await;
    let backup = app.user(&t, "Bea Backup", &["approver"], None).await;
    let item = app
        .catalog_item(
            &t.admin,
            "Monitor",
            json!({"form_schema": {"type": "object"}, "approval": {"steps": [{
                "name": "Budget holder",
                "approvers": [{"user": slow.id}],
                "timeout": {"after": "4s", "reminders": ["2s"]},
                "on_timeout": {"escalate": [{"user": backup.id}]}
            }]}}),
        )
        .await;
    let r = app.submit(&t.requester, &item, json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json["number"].as_str().unwrap().to_owned();
    let first = app.approval_mail(&slow, &number).await;
    let a = app.approval_of(&t.agent, &number).await;
    assert!(step(&a, 0)["next_reminder_at"].is_string() && step(&a, 0)["timeout_at"].is_string(), "{a:#}");

    // the reminder, with its own template
    let slow_email = slow.email.clone();
    let reminder = app
        .mail
        .wait_for(|m| m.to.contains(&slow_email) && m.message_id != first.message_id, Duration::from_secs(30))
        .await;
    assert!(reminder.subject.to_lowercase().contains("reminder"), "{}", reminder.subject);
    // then the timeout escalates to the backup approver, who approves
    let esc = app.approval_mail(&backup, &number).await;
    assert!(esc.text.contains("escalated"), "{}", esc.text);
    assert!(esc.subject.contains("Escalated to you"), "its own template: {}", esc.subject);
    let a = app.approval_until(&t.agent, &number, "escalated", |a| step(a, 0)["escalated_at"].is_string()).await;
    assert_eq!(task_of(&a, 0, &slow)["state"], "superseded");
    assert_eq!(task_of(&a, 0, &backup)["escalation"], true);
    // the original approver's link no longer decides
    let (status, page) = app.confirm(&decision_links(&first).0, None, None).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("escalated"), "{page}");
    let (status, page) = app.confirm(&decision_links(&esc).0, None, None).await;
    assert_eq!(status, 200, "{page}");
    app.ticket_status(&t.requester, &number, "in_progress").await;
    let a = app.approval_until(&t.agent, &number, "approved", |a| a["state"] == "approved").await;
    assert_eq!(task_of(&a, 0, &backup)["state"], "approved");
    // one request and one reminder for the slow approver, one escalation email
    app.outbox_drained().await;
    assert_eq!(app.approval_mails(&slow, &number), 2);
    assert_eq!(app.approval_mails(&backup, &number), 1);
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{number}/approval/1", t.slug),
        "approval_chain/reminded_escalated",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn decision_links_refuse_expired_replayed_tampered_foreign_and_late_tokens() {
    let app = spawn_app().await;
    let Laptop { t, employee, approvers, item } = laptop(&app).await;
    let number = submit(&app, &employee, &item).await;
    let mail = app.approval_mail(&t.manager, &number).await;
    let (approve, reject) = decision_links(&mail);
    let state_of_manager =
        || async { task_of(&app.approval_of(&t.agent, &number).await, 0, &t.manager)["state"].clone() };

    // tampered: one byte of the token changed
    let token = token_of(&approve);
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() / 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}/approvals/decide?token={}", app.base, String::from_utf8(bytes).unwrap());
    let (status, page) = app.page(&tampered).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("not valid"), "{page}");
    let (status, _) = app.confirm(&tampered, None, None).await;
    assert_eq!(status, 400);
    assert_eq!(state_of_manager().await, "asked");

    // expired: a link signed with the server's key whose time is up
    let signer = app.config.link_signer();
    let mut claims = signer.verify(&token).unwrap();
    claims.jti = uuid::Uuid::now_v7();
    claims.exp = time::OffsetDateTime::now_utc().unix_timestamp() - 60;
    let expired = format!("{}/approvals/decide?token={}", app.base, signer.sign(&claims));
    let (status, page) = app.page(&expired).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    let (status, _) = app.confirm(&expired, None, None).await;
    assert_eq!(status, 410);
    assert_eq!(state_of_manager().await, "asked");

    // used by another approver: someone signed in as another person
    let (status, page) = app.confirm(&approve, None, Some(&approvers[0].token)).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("someone else"), "{page}");
    assert_eq!(state_of_manager().await, "asked");

    // the real one decides, once
    let (status, page) = app.confirm(&approve, None, Some(&t.manager.token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(state_of_manager().await, "approved");
    // replayed: the same link again (a second tab, a second press) says it was used, and when
    let (status, page) = app.confirm(&approve, None, None).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("already used") && page.contains("You approved this step"), "{page}");
    let (status, page) = app.page(&approve).await;
    assert_eq!(status, 410, "{page}");
    // the reject link of a decided task: a decision cannot be changed
    let (status, page) = app.confirm(&reject, Some("changed my mind"), None).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("cannot be changed"), "{page}");
    assert_eq!(state_of_manager().await, "approved");

    // after the step closed: two of three approve in the app; the third's link decides nothing
    for a in &approvers {
        app.approval_mail(a, &number).await;
    }
    let third = decision_links(&app.approval_mail(&approvers[2], &number).await);
    let id = app.approval_of(&t.agent, &number).await["id"].as_str().unwrap().to_owned();
    for a in &approvers[..2] {
        let r = app.post(Some(&a.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.approval_until(&t.agent, &number, "step 2 approved", |a| step(a, 1)["state"] == "approved").await;
    let (status, page) = app.page(&third.1).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("step is closed"), "{page}");
    let (status, _) = app.confirm(&third.1, Some("too late"), None).await;
    assert_eq!(status, 409);
    assert_eq!(task_of(&app.approval_of(&t.agent, &number).await, 1, &approvers[2])["state"], "superseded");
    // every refusal above decided nothing; each refused POST is in the audit log
    assert!(app.count("SELECT count(*) FROM audit_log WHERE action = 'approval.link_refused'").await >= 5);
    // and no page ever showed an internal error
    app.stop().await;
}

#[tokio::test]
async fn delegates_stand_in_requesters_never_approve_their_own_and_cancelling_ends_the_chain() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let boss = app.user(&t, "Bo Boss", &["manager"], None).await;
    let deputy = app.user(&t, "Dee Deputy", &["approver"], None).await;
    // the manager is out of office: the deputy decides for them
    let r = app
        .send(
            reqwest::Method::PUT,
            Some(&boss.token),
            "/api/v1/users/me/out-of-office",
            Some(&json!({"delegate_id": deputy.id, "ends_at": "2099-01-01T00:00:00Z", "reason": "holiday"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["active"], true);
    let employee = app.user(&t, "Em Ployee", &["requester"], Some(boss.id)).await;
    let item = app
        .catalog_item(
            &t.admin,
            "Desk",
            json!({"form_schema": {"type": "object"}, "approval": {"steps": [
                {"name": "Manager", "approvers": ["requester_manager", {"user": t.manager.id}], "approve_when": "all"}
            ]}}),
        )
        .await;
    let r = app.submit(&employee, &item, json!({})).await;
    let number = r.json["number"].as_str().unwrap().to_owned();
    let mail = app.approval_mail(&deputy, &number).await;
    assert!(mail.text.contains("on behalf of Bo Boss"), "{}", mail.text);
    assert_eq!(app.approval_mails(&boss, &number), 0, "the absent manager is not asked");
    let a = app.approval_until(&t.agent, &number, "open", |a| step(a, 0)["state"] == "open").await;
    assert_eq!(task_of(&a, 0, &deputy)["on_behalf_of"]["id"], boss.id.to_string());
    let id = a["id"].as_str().unwrap().to_owned();
    let r = app
        .post(Some(&deputy.token), &format!("/api/v1/approvals/{id}/approve"), &json!({"comment": "ok for Bo"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // a requester is never asked to approve their own request, even when named
    let own = app
        .catalog_item(
            &t.admin,
            "Own",
            json!({"form_schema": {"type": "object"}, "approval": {"steps": [
                {"name": "Self and manager", "approvers": [{"user": t.manager.id}, {"user": t.agent.id}], "approve_when": "all"}
            ]}}),
        )
        .await;
    let r = app.submit(&t.manager, &own, json!({})).await;
    let own_number = r.json["number"].as_str().unwrap().to_owned();
    let a = app.approval_until(&t.agent, &own_number, "open", |a| step(a, 0)["state"] == "open").await;
    let asked: Vec<&Value> = step(&a, 0)["tasks"].as_array().unwrap().iter().collect();
    assert_eq!(asked.len(), 1, "only the agent: {a:#}");
    let r = app
        .post(Some(&t.manager.token), &format!("/api/v1/approvals/{}/approve", a["id"].as_str().unwrap()), &json!({}))
        .await;
    r.problem(403);

    // cancelling the ticket cancels its pending approval: the chain ends, links stop working
    let agent_mail = app.approval_mail(&t.agent, &own_number).await;
    app.set_status(&t.agent, &own_number, "cancelled").await;
    let a = app.approval_until(&t.agent, &own_number, "cancelled", |a| a["state"] == "cancelled").await;
    assert_eq!(step(&a, 0)["state"], "cancelled");
    let (status, page) = app.confirm(&decision_links(&agent_mail).0, None, None).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("cancelled"), "{page}");
    let chain = format!("{}/{own_number}/approval/1", t.slug);
    let client = app.temporal().await;
    app.wait_for_status(&client, &chain, temporalio_client::WorkflowExecutionStatus::Completed).await;
    archer_tests::temporal::replay_live(&client, &chain, "approval_chain/cancelled").await;

    // an agent cannot move a request out of approval by hand
    let r = app.submit(&employee, &item, json!({})).await;
    let third = r.json["number"].as_str().unwrap().to_owned();
    let r =
        app.patch(Some(&t.agent.token), &format!("/api/v1/tickets/{third}"), &json!({"status": "in_progress"})).await;
    let p = r.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("only its approval"), "{p}");
    // but its requester may withdraw it while it waits
    app.approval_mail(&deputy, &third).await;
    let r =
        app.patch(Some(&employee.token), &format!("/api/v1/tickets/{third}"), &json!({"status": "cancelled"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = app.approval_of(&t.agent, &third).await;
    assert_eq!(a["state"], "cancelled");
    assert!(a["pending"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_request_cancelled_before_its_chain_starts_asks_nobody() {
    let mut app = spawn_app().await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    app.stop_worker().await;
    let number = submit(&app, &employee, &item).await;
    app.set_status(&employee, &number, "cancelled").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.start_worker().await;
    let client = app.temporal().await;
    let request = format!("{}/{number}/request/1", t.slug);
    app.wait_for_status(&client, &request, temporalio_client::WorkflowExecutionStatus::Completed).await;
    let a = app.approval_of(&t.agent, &number).await;
    assert_eq!(a["state"], "cancelled");
    assert!(a["steps"].as_array().unwrap().iter().all(|s| s["state"] == "upcoming"), "no step opened: {a:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.approval_mails(&t.manager, &number), 0, "nobody asked");
    assert_eq!(app.get(Some(&employee.token), &format!("/api/v1/tickets/{number}")).await.json["status"], "cancelled");
    let chain = format!("{}/{number}/approval/1", t.slug);
    archer_tests::temporal::replay_live(&client, &chain, "approval_chain/cancelled_before_start").await;
    app.stop().await;
}

/// Moves a change from new through assess into authorize.
async fn authorize(app: &TestApp, agent: &TestUser, change_type: &str, risk: &str) -> String {
    let c = app
        .create_ticket(agent, json!({"kind": "change", "title": format!("{change_type} change"), "impact": 3, "urgency": 3, "change_type": change_type, "risk": risk}))
        .await;
    let number = c["number"].as_str().unwrap().to_owned();
    assert_eq!(c["change_type"], change_type);
    app.set_status(agent, &number, "assess").await;
    app.set_status(agent, &number, "authorize").await;
    number
}

#[tokio::test]
async fn changes_route_by_type_to_automatic_approval_the_cab_or_the_ecab() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let cab: Vec<TestUser> = {
        let mut v = Vec::new();
        for n in ["Cab A", "Cab B", "Cab C"] {
            v.push(app.user(&t, n, &["cab_member"], None).await);
        }
        v
    };
    // a change needs a type and a risk
    let r = app
        .post(
            Some(&t.agent.token),
            "/api/v1/tickets",
            &json!({"kind": "change", "title": "x", "impact": 3, "urgency": 3}),
        )
        .await;
    let mut p = r.pointers();
    p.sort();
    assert_eq!(p, vec!["/change_type", "/risk"], "{}", r.body);
    let r = app
        .post(
            Some(&t.agent.token),
            "/api/v1/tickets",
            &json!({"kind": "incident", "title": "x", "impact": 3, "urgency": 3, "risk": "low"}),
        )
        .await;
    assert_eq!(r.pointers(), vec!["/risk"]);

    // standard: pre-approved, recorded as an automatic approval
    let std_change = authorize(&app, &t.agent, "standard", "low").await;
    app.ticket_status(&t.agent, &std_change, "scheduled").await;
    let a = app.approval_of(&t.agent, &std_change).await;
    assert_eq!(a["state"], "approved");
    assert!(a["reason"].as_str().unwrap().contains("pre-approved"), "{a:#}");

    // normal: the change manager, then the CAB (two of its members)
    let normal = authorize(&app, &t.agent, "normal", "medium").await;
    app.approval_mail(&t.manager, &normal).await;
    let a = app.approval_of(&t.agent, &normal).await;
    assert_eq!(step(&a, 0)["name"], "Change manager");
    assert_eq!(step(&a, 1)["name"], "Change advisory board");
    let id = a["id"].as_str().unwrap().to_owned();
    // a person cannot authorize it by hand
    app.patch(Some(&t.agent.token), &format!("/api/v1/tickets/{normal}"), &json!({"status": "scheduled"}))
        .await
        .problem(409);
    let r = app.post(Some(&t.manager.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for c in &cab {
        app.approval_mail(c, &normal).await;
    }
    for c in &cab[..2] {
        let r = app.post(Some(&c.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.ticket_status(&t.agent, &normal, "scheduled").await;

    // emergency: any two of the CAB, with a short timeout; two rejections end it at once
    let emergency = authorize(&app, &t.agent, "emergency", "high").await;
    for c in &cab {
        app.approval_mail(c, &emergency).await;
    }
    let a = app.approval_of(&t.agent, &emergency).await;
    assert_eq!(step(&a, 0)["name"], "Emergency CAB");
    assert!(step(&a, 0)["timeout_at"].is_string());
    let id = a["id"].as_str().unwrap().to_owned();
    for c in &cab[..2] {
        let r = app
            .post(
                Some(&c.token),
                &format!("/api/v1/approvals/{id}/reject"),
                &json!({"comment": "not without a rollback plan"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.ticket_status(&t.agent, &emergency, "rejected").await;
    let a = app.approval_until(&t.agent, &emergency, "rejected", |a| a["state"] == "rejected").await;
    assert!(a["reason"].as_str().unwrap().contains("can no longer be reached"), "{a:#}");

    // routing is configuration: normal changes now need one CAB member, nothing else
    let mut routing = app.get(Some(&t.admin.token), "/api/v1/settings/change-routing").await.json;
    routing["normal"] = json!({"chain": {"steps": [{"name": "Any CAB member", "approvers": [{"role": "cab_member"}], "approve_when": "any"}]}});
    app.send(reqwest::Method::PUT, Some(&t.agent.token), "/api/v1/settings/change-routing", Some(&routing), &[])
        .await
        .problem(403);
    let bad = json!({"standard": {"auto_approve": {"reason": ""}}, "normal": routing["normal"], "emergency": {"chain": {"steps": []}}});
    let r =
        app.send(reqwest::Method::PUT, Some(&t.admin.token), "/api/v1/settings/change-routing", Some(&bad), &[]).await;
    r.problem(422);
    let mut pointers = r.pointers();
    pointers.sort();
    assert_eq!(pointers, vec!["/emergency/chain/steps", "/standard/auto_approve/reason"]);
    let r = app
        .send(reqwest::Method::PUT, Some(&t.admin.token), "/api/v1/settings/change-routing", Some(&routing), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let again = authorize(&app, &t.agent, "normal", "low").await;
    app.approval_mail(&cab[2], &again).await;
    let a = app.approval_of(&t.agent, &again).await;
    assert_eq!(a["steps"].as_array().unwrap().len(), 1);
    let r = app
        .post(Some(&cab[2].token), &format!("/api/v1/approvals/{}/approve", a["id"].as_str().unwrap()), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.ticket_status(&t.agent, &again, "scheduled").await;
    assert_eq!(app.approval_mails(&t.manager, &again), 0, "the manager step is gone");
    // the routing change is audited
    assert!(app.count("SELECT count(*) FROM audit_log WHERE action LIKE 'tenant_settings.%'").await >= 1);
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{std_change}/request/1", t.slug),
        "request/standard_change_auto",
    )
    .await;
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{emergency}/approval/1", t.slug),
        "approval_chain/ecab_quorum_lost",
    )
    .await;
    app.stop().await;
}

/// `archer worker` as a separate process, so it can be killed for real.
async fn worker_process(app: &TestApp) -> tokio::process::Child {
    tokio::process::Command::new(archer_tests::archer_bin())
        .arg("worker")
        .env("ARCHER_DATABASE_URL", &app.database_url)
        .env("ARCHER_TEMPORAL_ADDRESS", archer_tests::services().temporal_address)
        .env("ARCHER_TASK_QUEUE", &app.task_queue)
        .env("ARCHER_JWT_SECRET", archer_tests::JWT_SECRET)
        .env("ARCHER_SMTP_URL", app.mail.url().as_str())
        .env("ARCHER_PUBLIC_URL", &app.base)
        .env("ARCHER_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn archer worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_between_a_decision_and_its_delivery_applies_it_once_and_mails_the_next_step_once() {
    let app = spawn_app_with(Options { worker: false, relay: true }).await;
    let mut worker = worker_process(&app).await;
    let Laptop { t, employee, approvers, item } = laptop(&app).await;
    let number = submit(&app, &employee, &item).await;
    app.approval_mail(&t.manager, &number).await;
    let a = app.approval_of(&t.agent, &number).await;
    let id = a["id"].as_str().unwrap().to_owned();

    // the worker dies (SIGKILL); the decision is recorded and signalled while it is down
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    let r = app.post(Some(&t.manager.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.outbox_drained().await;
    // the relay delivers it again (as after a relay crash before marking it delivered)
    sqlx::query("UPDATE outbox SET delivered_at = NULL, attempts = 0, available_at = now() WHERE name = 'decision'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.outbox_drained().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for a in &approvers {
        assert_eq!(app.approval_mails(a, &number), 0, "nothing moves while no worker runs");
    }

    // a new worker: the decision is applied once and the next step's emails go out once
    let mut worker = worker_process(&app).await;
    for a in &approvers {
        app.approval_mail(a, &number).await;
    }
    // kill it again mid-step and start another: still no duplicates
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    let mut worker = worker_process(&app).await;
    for a in &approvers[..2] {
        let r = app.post(Some(&a.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.ticket_status(&employee, &number, "in_progress").await;
    let a = app.approval_until(&t.agent, &number, "approved", |a| a["state"] == "approved").await;
    assert_eq!(step(&a, 0)["tasks"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.approval_mails(&t.manager, &number), 1);
    for a in &approvers {
        assert_eq!(app.approval_mails(a, &number), 1, "{} mailed once", a.email);
    }
    // the chain applied the manager's decision exactly once
    let client = app.temporal().await;
    let chain = format!("{}/{number}/approval/1", t.slug);
    let signals = archer_tests::temporal::signal_names(&client, &chain).await;
    assert_eq!(
        signals.iter().filter(|s| *s == "decision").count(),
        3,
        "1 manager (deduplicated) + 2 approvers: {signals:?}"
    );
    let comments = app.get(Some(&employee.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert_eq!(comments.body.matches("Approved:").count(), 1, "{}", comments.body);
    worker.start_kill().unwrap();
    app.stop().await;
}

/// A mail server that keeps refusing the first step's email (4xx, temporary): the chain's
/// bounded local attempt gives up after a few seconds and the email goes on as a scheduled
/// activity, retried with backoff, which sends it once the server takes it, and only once.
#[tokio::test]
async fn an_email_the_local_attempt_cannot_send_goes_on_as_a_scheduled_activity_and_arrives_once() {
    use temporalio_common::protos::temporal::api::enums::v1::EventType;
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

    let app = spawn_app().await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    app.mail.refuse_recipient(&t.manager.email, 452);
    let number = submit(&app, &employee, &item).await;
    let client = app.temporal().await;
    let chain = format!("{}/{number}/approval/1", t.slug);
    archer_tests::eventually(Duration::from_secs(30), "the approval chain to start", || async {
        app.workflow_status(&client, &chain).await.is_some()
    })
    .await;

    // the local attempt (a marker recording its failure) is followed by a scheduled send
    let scheduled_sends = |events: &[temporalio_common::protos::temporal::api::history::v1::HistoryEvent]| {
        events
            .iter()
            .filter(|e| match &e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    a.activity_type.as_ref().is_some_and(|t| t.name == "email.send")
                }
                _ => false,
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = archer_tests::temporal::history(&client, &chain).await;
        if scheduled_sends(&events) == 1 || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(scheduled_sends(&events), 1, "one scheduled send after the local attempt: {events:#?}");
    let markers = events.iter().filter(|e| e.event_type() == EventType::MarkerRecorded).count();
    assert!(markers >= 2, "the step opened and the send was tried locally first: {markers} markers");
    assert_eq!(app.approval_mails(&t.manager, &number), 0);

    // the server takes it again: the manager gets one email, however many tries it took
    app.mail.accept_recipient(&t.manager.email);
    app.approval_mail(&t.manager, &number).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.approval_mails(&t.manager, &number), 1);
    archer_tests::temporal::replay_live(&client, &chain, "approval_chain/local_attempt_fell_back.local_effects").await;
    app.stop().await;
}

#[tokio::test]
async fn the_approvals_api_is_described_and_refuses_bad_input() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    // unknown approval, bad ids, bad inbox filters
    app.get(Some(&t.manager.token), &format!("/api/v1/approvals/{}", uuid::Uuid::now_v7())).await.problem(404);
    app.get(Some(&t.manager.token), "/api/v1/approvals/not-a-uuid").await.problem(404);
    let r = app.get(Some(&t.manager.token), "/api/v1/approvals?state=maybe&limit=0").await;
    r.problem(422);
    let mut p = r.pointers();
    p.sort();
    assert_eq!(p, vec!["?limit", "?state"]);
    // being asked is the permission: someone never asked has an empty inbox, whatever their roles
    let r = app.get(Some(&t.requester.token), "/api/v1/approvals").await;
    assert_eq!((r.status, r.json["items"].clone(), r.json["total"].clone()), (200, json!([]), json!(0)), "{}", r.body);
    // out of office: a delegate must exist and differ; the end must follow the start
    let r = app
        .send(
            reqwest::Method::PUT,
            Some(&t.manager.token),
            "/api/v1/users/me/out-of-office",
            Some(&json!({"delegate_id": t.manager.id, "ends_at": "soon"})),
            &[],
        )
        .await;
    let mut p = r.pointers();
    p.sort();
    assert_eq!(p, vec!["/delegate_id", "/ends_at"], "{}", r.body);
    // the page without a token
    let (status, page) = app.page(&format!("{}/approvals/decide", app.base)).await;
    assert_eq!(status, 400);
    assert!(page.contains("not valid"));
    // the OpenAPI document describes the new endpoints
    let doc = app.get(None, "/api/v1/openapi.json").await.json;
    for path in [
        "/api/v1/catalog",
        "/api/v1/requests",
        "/api/v1/approvals",
        "/api/v1/approvals/{id}/approve",
        "/api/v1/approvals/{id}/reject",
        "/api/v1/settings/change-routing",
        "/approvals/decide",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not in the OpenAPI document");
    }
    let _ = laptop_schema();
    app.stop().await;
}

#[tokio::test]
async fn a_sequential_step_asks_one_approver_after_another_and_other_tenants_see_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let owner = app.user(&t, "Olive Owner", &["approver"], None).await;
    let second = app.user(&t, "Sid Second", &["approver"], None).await;
    let item = app
        .catalog_item(
            &t.admin,
            "Database access",
            json!({"owner_id": owner.id, "form_schema": {"type": "object"}, "approval": {"steps": [
                {"name": "Owner, then security", "approvers": ["item_owner", {"user": second.id}], "mode": "sequential"}
            ]}}),
        )
        .await;
    let r = app.submit(&t.requester, &item, json!({})).await;
    let number = r.json["number"].as_str().unwrap().to_owned();
    // the item's owner first; the second approver waits their turn
    app.approval_mail(&owner, &number).await;
    let a = app.approval_until(&t.agent, &number, "open", |a| step(a, 0)["state"] == "open").await;
    assert_eq!(task_of(&a, 0, &owner)["state"], "asked");
    assert_eq!(task_of(&a, 0, &second)["state"], "waiting");
    assert_eq!(app.approval_mails(&second, &number), 0);
    let id = a["id"].as_str().unwrap().to_owned();
    let r = app.post(Some(&second.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert!(r.problem(409)["detail"].as_str().unwrap().contains("not your turn"), "{}", r.body);

    // another tenant sees and decides nothing of it
    let other = app.tenant().await;
    let outsider = app.user(&other, "Out Sider", &["approver"], None).await;
    app.get(Some(&outsider.token), &format!("/api/v1/approvals/{id}")).await.problem(404);
    app.post(Some(&outsider.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await.problem(404);
    app.get(Some(&other.admin.token), &format!("/api/v1/tickets/{number}/approvals")).await.problem(404);
    let inbox = app.get(Some(&outsider.token), "/api/v1/approvals").await;
    assert_eq!(inbox.json["items"], json!([]));

    // the owner approves; then the second is asked
    let r = app.post(Some(&owner.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.approval_mail(&second, &number).await;
    let r = app.post(Some(&second.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.ticket_status(&t.requester, &number, "in_progress").await;
    archer_tests::temporal::replay_live(
        &app.temporal().await,
        &format!("{}/{number}/approval/1", t.slug),
        "approval_chain/sequential_item_owner",
    )
    .await;
    app.stop().await;
}

/// The rest of the text part's line that starts (after its indent) with `label`.
fn line_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

/// GETs a page as a browser would, without a token: (status, content type, body).
async fn browse(app: &TestApp, url: &str) -> (u16, String, String) {
    let r = app.http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let content_type =
        r.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, r.text().await.unwrap())
}

/// Whether `needles` occur in `haystack` in this order.
fn in_order(haystack: &str, needles: &[&str]) -> bool {
    let mut from = 0;
    needles.iter().all(|n| match haystack[from..].find(n) {
        Some(at) => {
            from += at + n.len();
            true
        }
        None => false,
    })
}

#[tokio::test]
async fn approval_emails_read_once_and_understood_and_view_the_request_opens_a_readable_page() {
    let app = spawn_app().await;
    let Laptop { t, employee, approvers, item } = laptop(&app).await;
    let number = submit(&app, &employee, &item).await;
    let mail = app.approval_mail(&t.manager, &number).await;
    let a = app.approval_until(&t.agent, &number, "step 1 open", |a| step(a, 0)["timeout_at"].is_string()).await;

    // the links expire an hour after the step times out, written as a person writes it
    let timeout = time::OffsetDateTime::parse(
        step(&a, 0)["timeout_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let human = time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute] UTC");
    let expires = (timeout + time::Duration::hours(1)).to_offset(time::UtcOffset::UTC).format(&human).unwrap();
    for body in [&mail.text, &mail.html] {
        assert!(body.contains(&format!("The links expire at {expires}.")), "expected {expires:?}:\n{body}");
        assert!(!body.contains("+00:00:00") && !body.contains(":00.0"), "{body}");
    }

    // the answers in the form's order, with its labels (not jsonb's key order or raw keys)
    let answers: Vec<&str> =
        mail.text.lines().skip_while(|l| l.trim() != "Answers:").skip(1).take_while(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        answers,
        [
            "  Device type: laptop",
            "  Operating system: linux",
            "  Needed by: 14 Dec 2026",
            "  Business justification: New starter in the data team needs a development machine",
        ],
        "{}",
        mail.text
    );
    assert!(in_order(&mail.html, &["Device type", "Operating system", "Needed by", "Business justification"]));

    // which step of how many, and its rule
    assert_eq!(line_after(&mail.text, "Step:"), "Manager approval (step 1 of 2: one approver)", "{}", mail.text);
    assert!(mail.html.contains("Manager approval (step 1 of 2: one approver)"), "{}", mail.html);

    // "View the request" opens a page a person reads: no login, HTML, the request and what is
    // pending, and no form
    let view = line_after(&mail.text, "View the request:").to_owned();
    assert!(view.starts_with(&format!("{}/approvals/view?token=", app.base)), "{view}");
    assert!(mail.html.contains(&view.replace('=', "&#x3D;")), "the HTML part links it too: {}", mail.html);
    let (status, content_type, page) = browse(&app, &view).await;
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let title = app.get(Some(&employee.token), &format!("/api/v1/tickets/{number}")).await.json["title"].clone();
    let title = title.as_str().unwrap();
    for needle in
        [number.as_str(), title, "Erin Employee", "Manager approval (step 1 of 2: one approver)", "Waiting for "]
    {
        assert!(page.contains(needle), "the view page lacks {needle:?}:\n{page}");
    }
    assert!(page.contains("1 more approval needed") && page.contains("You have not decided yet"), "{page}");
    assert!(page.contains("step 2 of 2: Hardware approvers"), "what comes next: {page}");
    assert!(
        in_order(
            &page,
            &[
                "Device type",
                "laptop",
                "Operating system",
                "linux",
                "Needed by",
                "14 Dec 2026",
                "Business justification",
                "New starter in the data team",
            ]
        ),
        "{page}"
    );
    assert!(!page.contains("<form") && !page.contains("name=\"token\""), "a view page decides nothing: {page}");
    assert_eq!(task_of(&app.approval_of(&t.agent, &number).await, 0, &t.manager)["state"], "asked");

    // a view token never decides, a decision token is not a view token, and a changed or
    // expired one gets the problem page
    let (approve, _) = decision_links(&mail);
    let view_token = token_of(&view);
    let (status, page) = app.confirm(&format!("{}/approvals/decide?token={view_token}", app.base), None, None).await;
    assert_eq!(status, 400, "{page}");
    let (status, page) = app.page(&format!("{}/approvals/decide?token={view_token}", app.base)).await;
    assert_eq!(status, 400, "{page}");
    let (status, _, page) = browse(&app, &format!("{}/approvals/view?token={}", app.base, token_of(&approve))).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("not valid"), "{page}");
    let mut bytes = view_token.clone().into_bytes();
    let i = bytes.len() / 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}/approvals/view?token={}", app.base, String::from_utf8(bytes).unwrap());
    let (status, _, page) = browse(&app, &tampered).await;
    assert_eq!(status, 400, "{page}");
    let signer = app.config.link_signer();
    let mut claims = signer.verify_view(&view_token).unwrap();
    claims.exp = time::OffsetDateTime::now_utc().unix_timestamp() - 60;
    let (status, _, page) =
        browse(&app, &format!("{}/approvals/view?token={}", app.base, signer.sign_view(&claims))).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert_eq!(task_of(&app.approval_of(&t.agent, &number).await, 0, &t.manager)["state"], "asked");

    // the second step: any two of the three, said so; the page follows the approval along
    let id = a["id"].as_str().unwrap().to_owned();
    let r = app.post(Some(&t.manager.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = app.approval_mail(&approvers[0], &number).await;
    assert_eq!(
        line_after(&second.text, "Step:"),
        "Hardware approvers (step 2 of 2: any 2 of 3 approvers)",
        "{}",
        second.text
    );
    let (status, _, page) = browse(&app, line_after(&second.text, "View the request:")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Waiting for Hana One, Hugo Two and Hope Three: 2 more approvals needed."), "{page}");
    let (status, _, page) = browse(&app, &view).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You approved this step at "), "{page}");
    assert!(
        page.contains(
            "This step was approved (1 of 1 approved); the request is now at step 2 of 2: Hardware approvers."
        )
    );
    assert!(!page.contains("Still to come"), "step 2 is the last: {page}");

    // the page is in the OpenAPI document like its neighbours
    let doc = app.get(None, "/api/v1/openapi.json").await.json;
    assert!(doc["paths"]["/approvals/view"]["get"].is_object(), "/approvals/view is not documented");
    app.stop().await;
}
