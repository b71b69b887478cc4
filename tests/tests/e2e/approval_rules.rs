//! Issue 8, items 7 and 8: a quorum is never lowered, and one situation gets one answer.

use archer_tests::spawn_app;
use serde_json::json;

/// A rule the approvers cannot meet fails closed at run time and is refused when saved.
#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_is_never_lowered_to_the_approvers_there_are() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let owner = app.user(&t, "Ivy Owner", &["agent"], None).await;
    let cab1 = app.user(&t, "Cab One", &["cab_member"], None).await;
    let cab2 = app.user(&t, "Cab Two", &["cab_member"], None).await;

    // saved: "any two CAB members" with two of them is fine
    let spec = |owner: &archer_tests::TestUser| {
        json!({"owner_id": owner.id, "form_schema": {"type": "object"}, "approval": {"steps": [
            {"name": "CAB", "approvers": [{"role": "cab_member"}], "approve_when": {"count": 2}}
        ]}})
    };
    let item = app.catalog_item(&t.admin, "Firewall change", spec(&owner)).await;

    // one CAB member leaves: requests now fail closed instead of being authorized by one person
    assert_eq!(app.delete(Some(&t.admin.token), &format!("/api/v1/users/{}", cab2.id)).await.status, 204);
    let r = app.submit(&t.requester, &item, json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json["number"].as_str().unwrap().to_owned();
    app.ticket_status(&t.agent, &number, "rejected").await;
    let a = app.approval_until(&t.agent, &number, "rejected", |a| a["state"] == "rejected").await;
    let reason = a["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("needs 2 approvals but only 1 approver"), "{a:#}");
    assert_eq!(app.approval_mails(&cab1, &number), 0, "nobody is asked");
    // the reason is on the ticket's timeline, and the item's owner is told
    let timeline = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/timeline")).await;
    assert!(timeline.body.contains("needs 2 approvals"), "{}", timeline.body);
    let inbox = app.get(Some(&owner.token), "/api/v1/notifications").await;
    assert!(inbox.body.contains("approval.unsatisfiable") && inbox.body.contains(&number), "{}", inbox.body);

    // and saving a chain or a routing that cannot be met today is refused, pointing at the step
    let r = app
        .post(
            Some(&t.admin.token),
            "/api/v1/catalog/items",
            &json!({"category_id": item["category_id"], "name": "Another firewall change", "spec": spec(&owner)}),
        )
        .await;
    assert_eq!((r.status, r.pointers()), (422, vec!["/spec/approval/steps/0/approve_when".to_owned()]), "{}", r.body);
    let routing = app.get(Some(&t.admin.token), "/api/v1/settings/change-routing").await.json;
    let mut emergency = routing.clone();
    emergency["emergency"] = json!({"chain": {"steps": [
        {"name": "ECAB", "approvers": [{"role": "cab_member"}], "approve_when": {"count": 2}}
    ]}});
    let r = app
        .send(reqwest::Method::PUT, Some(&t.admin.token), "/api/v1/settings/change-routing", Some(&emergency), &[])
        .await;
    // the default routing's normal chain (two CAB members after the change manager) cannot be
    // met any more either: every unsatisfiable step is named
    let mut p = r.pointers();
    p.sort();
    assert_eq!(
        (r.status, p),
        (
            422,
            vec!["/emergency/chain/steps/0/approve_when".to_owned(), "/normal/chain/steps/1/approve_when".to_owned()]
        ),
        "{}",
        r.body
    );
    app.stop().await;
}

/// Approving or rejecting as a past step's approver is one refusal; being asked is the
/// permission to decide, whatever one's roles.
#[tokio::test(flavor = "multi_thread")]
async fn a_past_steps_approver_gets_one_refusal_and_being_asked_is_the_permission() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    // neither has `approval:decide`: they are asked by name
    let first = app.user(&t, "Fay First", &["agent"], None).await;
    let second = app.user(&t, "Sam Second", &["requester"], None).await;
    let item = app
        .catalog_item(
            &t.admin,
            "Two steps",
            json!({"form_schema": {"type": "object"}, "approval": {"steps": [
                {"name": "First", "approvers": [{"user": first.id}]},
                {"name": "Second", "approvers": [{"user": second.id}]}
            ]}}),
        )
        .await;
    let number = app.submit(&t.requester, &item, json!({})).await.json["number"].as_str().unwrap().to_owned();
    let a = app.approval_until(&t.agent, &number, "first step open", |a| a["steps"][0]["state"] == "open").await;
    let id = a["id"].as_str().unwrap().to_owned();
    let inbox = app.get(Some(&first.token), "/api/v1/approvals").await;
    assert_eq!((inbox.status, inbox.json["total"].clone()), (200, json!(1)), "{}", inbox.body);
    assert_eq!(inbox.json["page"], 1);
    let r = app.post(Some(&first.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!((r.status, r.json["result"].clone()), (200, json!("recorded")), "{}", r.body);
    // again while the step is open (a retry): the same answer
    let again = app.post(Some(&first.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    if again.status == 200 {
        assert_eq!(again.json["result"], "already_decided", "{}", again.body);
    }
    app.approval_until(&t.agent, &number, "second step open", |a| a["steps"][1]["state"] == "open").await;

    // the chain has moved on: approving and rejecting again get the same refusal
    let approve = app.post(Some(&first.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    let reject = app
        .post(Some(&first.token), &format!("/api/v1/approvals/{id}/reject"), &json!({"comment": "changed my mind"}))
        .await;
    let a = approve.problem(409)["detail"].as_str().unwrap().to_owned();
    let r = reject.problem(409)["detail"].as_str().unwrap().to_owned();
    assert_eq!(a, r);
    assert!(a.contains("you already approved this at ") && a.contains("\"First\""), "{a}");

    // the second approver, a plain requester, decides in the app
    let r = app.post(Some(&second.token), &format!("/api/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!((r.status, r.json["result"].clone()), (200, json!("recorded")), "{}", r.body);
    app.ticket_status(&t.agent, &number, "in_progress").await;
    let decided = app.get(Some(&second.token), "/api/v1/approvals?state=decided&limit=1&page=1").await;
    assert_eq!((decided.json["total"].clone(), decided.json["items"].as_array().unwrap().len()), (json!(1), 1));
    let r = app.get(Some(&second.token), "/api/v1/approvals?page=0&limit=500").await;
    let mut p = r.pointers();
    p.sort();
    assert_eq!((r.status, p), (422, vec!["?limit".to_owned(), "?page".to_owned()]), "{}", r.body);
    app.stop().await;
}

/// Issue 8, item 4: a link whose signature fails is recorded (IP, request id, why, who was
/// signed in) where the tenant's auditors see it; a refused authentic link's audit row names
/// the signed-in person as the actor and the addressee separately.
#[tokio::test(flavor = "multi_thread")]
async fn every_refused_link_is_recorded_where_an_admin_can_see_it() {
    use archer_tests::approvals::{decision_links, token_of};
    let app = spawn_app().await;
    let t = app.tenant().await;
    let boss = app.user(&t, "Bo Boss", &["approver"], None).await;
    let item = app
        .catalog_item(
            &t.admin,
            "Monitor",
            json!({"form_schema": {"type": "object"}, "approval": {"steps": [{"name": "Boss", "approvers": [{"user": boss.id}]}]}}),
        )
        .await;
    let number = app.submit(&t.requester, &item, json!({})).await.json["number"].as_str().unwrap().to_owned();
    let (approve, _) = decision_links(&app.approval_mail(&boss, &number).await);
    let token = token_of(&approve);
    // change one character of the signature
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = app.page(&format!("{}/approvals/decide?token={forged}", app.base)).await;
    assert_eq!(status, 400);
    let r = app
        .http
        .post(format!("{}/approvals/decide", app.base))
        .bearer_auth(&t.agent.token)
        .form(&[("token", forged.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let seen = app.get(Some(&t.admin.token), "/api/v1/audit/refused-links").await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let items = seen.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", seen.body);
    for i in items {
        assert_eq!(i["claims_this_tenant"], true);
        assert_eq!(i["claimed_approver"], json!(boss.id));
        assert_eq!(i["ip"], "127.0.0.1");
        assert!(i["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{i}");
        assert!(i["reason"].as_str().unwrap().contains("signature"), "{i}");
    }
    assert_eq!(items[0]["page"], "decide");
    assert_eq!(items[0]["signed_in_user"], json!(t.agent.id));
    assert_eq!(items[1]["page"], "confirm");
    assert_eq!(items[1]["signed_in_user"], json!(null));
    // another tenant sees none of it; a requester may not read it
    let other = app.tenant().await;
    let r = app.get(Some(&other.admin.token), "/api/v1/audit/refused-links").await;
    assert_eq!(r.json["items"], json!([]), "{}", r.body);
    app.get(Some(&t.requester.token), "/api/v1/audit/refused-links").await.problem(403);

    // an authentic link used by someone signed in as another person: the actor is that person
    let r = app
        .http
        .post(format!("{}/approvals/decide", app.base))
        .bearer_auth(&t.agent.token)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (actor, detail): (Option<uuid::Uuid>, String) = sqlx::query_as(
        "SELECT actor_id, detail FROM audit_log WHERE action = 'approval.link_refused' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, Some(t.agent.id));
    assert!(detail.contains(&format!("addressed to {}", boss.id)), "{detail}");
    app.stop().await;
}

/// Issue 8, item 3: a deactivated approver decides nothing; their open tasks go to their
/// delegate, or leave the step, which is decided again without them.
#[tokio::test(flavor = "multi_thread")]
async fn a_deactivated_approver_decides_nothing_and_their_tasks_move_on() {
    use archer_tests::approvals::decision_links;
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ann = app.user(&t, "Ann Approver", &["approver"], None).await;
    let ben = app.user(&t, "Ben Approver", &["approver"], None).await;
    let cat = app.user(&t, "Cat Approver", &["approver"], None).await;
    let dan = app.user(&t, "Dan Delegate", &["agent"], None).await;
    let item = |name: &str, rule: serde_json::Value| {
        json!({"form_schema": {"type": "object"}, "approval": {"steps": [
            {"name": name, "approvers": [{"user": ann.id}, {"user": ben.id}, {"user": cat.id}], "approve_when": rule}
        ]}})
    };
    let all = app.catalog_item(&t.admin, "Everyone signs", item("All three", json!("all"))).await;
    let two = app.catalog_item(&t.admin, "Three of three", item("Three", json!({"count": 3}))).await;
    let first = app.submit(&t.requester, &all, json!({})).await.json["number"].as_str().unwrap().to_owned();
    let second = app.submit(&t.requester, &two, json!({})).await.json["number"].as_str().unwrap().to_owned();
    let (ann_link, _) = decision_links(&app.approval_mail(&ann, &first).await);
    app.approval_mail(&cat, &first).await;
    app.approval_mail(&cat, &second).await;
    let a1 = app.approval_until(&t.agent, &first, "open", |a| a["steps"][0]["state"] == "open").await;
    let id1 = a1["id"].as_str().unwrap().to_owned();

    // Cat goes out of office (after being asked), then Cat and Ann are deactivated
    let r = app
        .send(
            reqwest::Method::PUT,
            Some(&cat.token),
            "/api/v1/users/me/out-of-office",
            Some(&json!({"delegate_id": dan.id, "ends_at": "2099-01-01T00:00:00Z"})),
            &[],
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    for u in [&cat, &ann] {
        assert_eq!(app.delete(Some(&t.admin.token), &format!("/api/v1/users/{}", u.id)).await.status, 204);
    }
    // Ann's link and her still-valid access token decide nothing
    let (status, page) = app.confirm(&ann_link, None, None).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("deactivated"), "{page}");
    let r = app.post(Some(&ann.token), &format!("/api/v1/approvals/{id1}/approve"), &json!({})).await;
    assert!(r.problem(403)["detail"].as_str().unwrap().contains("deactivated"), "{}", r.body);

    // the first request: Ann's task withdrawn, Cat's handed to Dan; Ben and Dan approve it
    let inbox = app.get(Some(&dan.token), "/api/v1/approvals").await;
    let on_behalf: Vec<_> =
        inbox.json["items"].as_array().unwrap().iter().filter(|i| i["approval_id"] == id1.as_str()).collect();
    assert_eq!(on_behalf.len(), 1, "Dan stands in for Cat: {}", inbox.body);
    assert_eq!(on_behalf[0]["on_behalf_of"]["id"], json!(cat.id));
    for u in [&ben, &dan] {
        let r = app.post(Some(&u.token), &format!("/api/v1/approvals/{id1}/approve"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.ticket_status(&t.agent, &first, "in_progress").await;
    let a1 = app.approval_of(&t.agent, &first).await;
    assert_eq!(a1["state"], "approved", "{a1:#}");
    let notes = app.get(Some(&dan.token), "/api/v1/notifications").await;
    assert!(notes.body.contains("approval.handed_over"), "{}", notes.body);

    // the second needs all three by count: with Ann gone it can no longer be met
    app.ticket_status(&t.agent, &second, "rejected").await;
    let a2 = app.approval_of(&t.agent, &second).await;
    assert!(a2["reason"].as_str().unwrap().contains("needs 3 approvals but only 2 approvers"), "{a2:#}");
    // both chains, withdrawals included, replay against the current code
    let client = app.temporal().await;
    let wf = |n: &str| format!("{}/{n}/approval/1", t.slug);
    app.wait_for_status(&client, &wf(&first), temporalio_client::WorkflowExecutionStatus::Completed).await;
    archer_tests::temporal::replay_live(&client, &wf(&first), "approval_chain/withdrawn_and_handed_over").await;
    archer_tests::temporal::replay_live(&client, &wf(&second), "approval_chain/withdrawn_quorum_lost").await;
    app.stop().await;
}
