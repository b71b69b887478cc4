//! Users, roles and teams (admin).

use archer_tests::{PASSWORD, spawn_app};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn admins_manage_users_and_roles() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let admin = Some(t.admin.token.as_str());
    let r = app.post(admin, "/api/v1/users", &json!({"email": "new.hire@corp.example", "display_name": "New Hire", "password": "long enough pw", "roles": ["requester"], "manager_id": t.manager.id})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["roles"], json!(["requester"]));
    assert_eq!(r.json["manager_id"], t.manager.id.to_string());
    // duplicate email (case-insensitive), bad email, short password, unknown role: field errors
    let dup =
        app.post(admin, "/api/v1/users", &json!({"email": "NEW.HIRE@corp.example", "display_name": "Again"})).await;
    assert_eq!(dup.problem(422)["errors"][0]["pointer"], "/email");
    let bad =
        app.post(admin, "/api/v1/users", &json!({"email": "nope", "display_name": "", "password": "short"})).await;
    bad.problem(422);
    assert_eq!(bad.pointers(), ["/email", "/display_name", "/password"]);
    let roles = app
        .send(
            reqwest::Method::PUT,
            admin,
            &format!("/api/v1/users/{id}/roles"),
            Some(&json!({"roles": ["agent", "wizard"]})),
            &[],
        )
        .await;
    assert_eq!(roles.problem(422)["errors"][0]["pointer"], "/roles/1");

    // roles change what the next login can do
    let token = app.login("new.hire@corp.example", "long enough pw").await;
    app.post(
        Some(&token),
        "/api/v1/tickets",
        &json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 1, "priority": 1, "priority_reason": "r"}),
    )
    .await
    .problem(403);
    let r = app
        .send(
            reqwest::Method::PUT,
            admin,
            &format!("/api/v1/users/{id}/roles"),
            Some(&json!({"roles": ["agent"]})),
            &[],
        )
        .await;
    assert_eq!(r.json["roles"], json!(["agent"]));
    let token = app.login("new.hire@corp.example", "long enough pw").await;
    let r = app.post(Some(&token), "/api/v1/tickets", &json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 1, "priority": 2, "priority_reason": "r"})).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // update, list, search; admins cannot lock themselves out
    let r =
        app.patch(admin, &format!("/api/v1/users/{id}"), &json!({"display_name": "Renamed", "manager_id": null})).await;
    assert_eq!(r.json["display_name"], "Renamed");
    assert!(r.json["manager_id"].is_null());
    let found = app.get(admin, "/api/v1/users?q=renam").await;
    assert_eq!(found.json["total"], 1);
    assert_eq!(app.get(admin, "/api/v1/users?role=agent").await.json["total"], 2);
    app.patch(admin, &format!("/api/v1/users/{}", t.admin.id), &json!({"active": false})).await.problem(422);
    app.delete(admin, &format!("/api/v1/users/{}", t.admin.id)).await.problem(409);
    let roles = app
        .send(
            reqwest::Method::PUT,
            admin,
            &format!("/api/v1/users/{}/roles", t.admin.id),
            Some(&json!({"roles": ["agent"]})),
            &[],
        )
        .await;
    roles.problem(422);
    // agents may look users up (to assign), requesters may not
    assert_eq!(app.get(Some(&t.agent.token), "/api/v1/users").await.status, 200);
    app.get(Some(&t.requester.token), "/api/v1/users").await.problem(403);
    assert_eq!(app.get(Some(&t.requester.token), &format!("/api/v1/users/{}", t.requester.id)).await.status, 200);
    // a password reset ends the user's sessions and the new password works
    let r =
        app.patch(admin, &format!("/api/v1/users/{}", t.requester.id), &json!({"password": "a brand new one"})).await;
    assert_eq!(r.status, 200);
    app.post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": PASSWORD})).await.problem(401);
    app.login(&t.requester.email, "a brand new one").await;
    // an idempotent create: the replay returns the same user and creates no second one
    let body = json!({"email": "twice@corp.example", "display_name": "Twice"});
    let h = [("idempotency-key", "user-twice")];
    let a = app.send(reqwest::Method::POST, admin, "/api/v1/users", Some(&body), &h).await;
    let b = app.send(reqwest::Method::POST, admin, "/api/v1/users", Some(&body), &h).await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(a.json["id"], b.json["id"]);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.count("SELECT count(*) FROM users WHERE email = 'twice@corp.example'").await, 1);
    let all = app.get(admin, "/api/v1/roles").await;
    assert_eq!(all.json.as_array().unwrap().len(), 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_manage_teams_and_members() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let admin = Some(t.admin.token.as_str());
    let r = app
        .post(
            admin,
            "/api/v1/teams",
            &json!({"name": "Service Desk", "description": "first line", "members": [t.agent.id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["members"], json!([t.agent.id]));
    app.post(admin, "/api/v1/teams", &json!({"name": "service desk"})).await.problem(422);
    app.post(admin, "/api/v1/teams", &json!({"name": "Ghosts", "members": [uuid::Uuid::now_v7()]})).await.problem(422);
    app.post(Some(&t.agent.token), "/api/v1/teams", &json!({"name": "Rogue"})).await.problem(403);

    let r =
        app.send(reqwest::Method::PUT, admin, &format!("/api/v1/teams/{id}/members/{}", t.manager.id), None, &[]).await;
    assert_eq!(r.json["members"].as_array().unwrap().len(), 2, "{}", r.body);
    let r = app.delete(admin, &format!("/api/v1/teams/{id}/members/{}", t.agent.id)).await;
    assert_eq!(r.json["members"], json!([t.manager.id]));
    let r = app.patch(admin, &format!("/api/v1/teams/{id}"), &json!({"name": "Desk"})).await;
    assert_eq!(r.json["name"], "Desk");
    assert_eq!(app.get(Some(&t.requester.token), "/api/v1/teams").await.json.as_array().unwrap().len(), 1);

    // a team that tickets name cannot be deleted
    app.create_ticket(&t.agent, json!({"kind": "incident", "title": "x", "impact": 3, "urgency": 3, "team_id": id}))
        .await;
    app.delete(admin, &format!("/api/v1/teams/{id}")).await.problem(409);
    app.patch(Some(&t.agent.token), "/api/v1/tickets/INC-000001", &json!({"team_id": null})).await;
    assert_eq!(app.delete(admin, &format!("/api/v1/teams/{id}")).await.status, 204);
    app.get(admin, &format!("/api/v1/teams/{id}")).await.problem(404);
    app.stop().await;
}
