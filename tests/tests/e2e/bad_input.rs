//! Bad input gets problem+json naming the problem, and nothing is written.

use archer_tests::{TestApp, spawn_app};
use reqwest::Method;
use serde_json::json;

/// Rows that any write would add to.
async fn footprint(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM tickets").await,
        app.count("SELECT count(*) FROM outbox").await,
        app.count("SELECT count(*) FROM audit_log").await,
        app.count("SELECT count(*) FROM ticket_comments").await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ticket_input_is_refused_with_the_field_and_nothing_is_written() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ticket = app.incident(&t.agent, "baseline").await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let before = footprint(&app).await;
    let token = Some(t.agent.token.as_str());

    // malformed JSON: 400 with the position
    let r = app
        .raw(
            Method::POST,
            token,
            "/api/v1/tickets",
            "application/json",
            br#"{"kind": "incident", "title": "x",,}"#.to_vec(),
        )
        .await;
    let p = r.problem(400);
    assert_eq!(p["type"], "/problems/malformed-json");
    assert!(p["detail"].as_str().unwrap().contains("line 1"), "{p}");

    // not JSON at all
    app.raw(Method::POST, token, "/api/v1/tickets", "text/plain", b"hello".to_vec()).await.problem(415);

    // table of field-level refusals: body, the pointer it must name, and why
    let cases = [
        (
            json!({"kind": "incident", "title": "x", "impact": 3, "urgency": 3, "colour": "red"}),
            "/colour",
            "unknown_field",
            "unknown fields are refused",
        ),
        (json!({"kind": "incident", "title": "x", "impact": 7, "urgency": 3}), "/impact", "range", "impact is 1..4"),
        (
            json!({"kind": "incident", "title": "x", "impact": 0, "urgency": 9}),
            "/impact",
            "range",
            "every failing field is listed (also /urgency)",
        ),
        (json!({"kind": "incident", "title": "x", "impact": "high", "urgency": 3}), "/impact", "type", "wrong type"),
        (json!({"kind": "ticket", "title": "x", "impact": 1, "urgency": 3}), "/kind", "enum", "unknown kind"),
        (json!({"kind": "incident", "impact": 1, "urgency": 3}), "/title", "required", "missing title"),
        (json!({"kind": "incident", "title": "   ", "impact": 1, "urgency": 3}), "/title", "required", "blank title"),
        (
            json!({"kind": "incident", "title": "x".repeat(201), "impact": 1, "urgency": 3}),
            "/title",
            "length",
            "title too long",
        ),
        (
            json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 3, "priority": 1}),
            "/priority_reason",
            "required",
            "override without a reason",
        ),
        (
            json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 3, "tags": ["a", ""]}),
            "/tags/1",
            "required",
            "empty tag",
        ),
        (
            json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 3, "team_id": "not-a-uuid"}),
            "/team_id",
            "invalid",
            "bad uuid",
        ),
    ];
    for (body, pointer, code, why) in &cases {
        let r = app.post(token, "/api/v1/tickets", body).await;
        let p = r.problem(422);
        let errors = p["errors"].as_array().unwrap_or_else(|| panic!("{why}: no errors[] in {p}"));
        let hit = errors
            .iter()
            .find(|e| e["pointer"] == *pointer)
            .unwrap_or_else(|| panic!("{why}: {pointer} not named in {p}"));
        assert_eq!(hit["code"], *code, "{why}: {p}");
        assert!(!hit["detail"].as_str().unwrap().is_empty());
    }
    let both =
        app.post(token, "/api/v1/tickets", &json!({"kind": "incident", "title": "", "impact": 0, "urgency": 9})).await;
    both.problem(422);
    assert_eq!(both.pointers(), ["/title", "/impact", "/urgency"]);

    // an unknown field in a PATCH, and an out-of-range value
    let path = format!("/api/v1/tickets/{number}");
    assert_eq!(
        app.patch(token, &path, &json!({"statuss": "resolved"})).await.problem(422)["errors"][0]["pointer"],
        "/statuss"
    );
    assert_eq!(app.patch(token, &path, &json!({"urgency": 5})).await.problem(422)["errors"][0]["pointer"], "/urgency");

    // an illegal transition: 409 listing the allowed ones
    let r = app.patch(token, &path, &json!({"status": "closed"})).await;
    let p = r.problem(409);
    assert_eq!(p["type"], "/problems/illegal-transition");
    assert_eq!(p["allowed"], json!(["in_progress", "waiting_on_customer", "resolved", "cancelled"]));
    assert_eq!(p["errors"][0]["pointer"], "/status");

    // an oversized body: 413, whatever its content
    let huge =
        json!({"kind": "incident", "title": "x", "impact": 1, "urgency": 1, "description": "y".repeat(300 * 1024)});
    let r = app.post(token, "/api/v1/tickets", &huge).await;
    assert!(r.problem(413)["detail"].as_str().unwrap().contains("262144"), "{}", r.body);

    // bad query parameters
    let r = app.get(token, "/api/v1/tickets?status=nope&limit=0&sort=colour").await;
    r.problem(422);
    assert_eq!(r.pointers(), ["?status", "?sort", "?limit"]);
    app.get(token, "/api/v1/tickets?unknown=1").await.problem(422);

    // unknown paths and methods
    app.get(token, "/api/v1/nothing-here").await.problem(404);
    app.send(Method::PUT, token, "/api/v1/tickets", None, &[]).await.problem(405);

    assert_eq!(footprint(&app).await, before, "nothing was written");
    let r = app.get(token, &path).await;
    assert_eq!(r.json["status"], "new");
    assert_eq!(r.json["version"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn problems_carry_the_request_id_and_are_documented() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, None, "/api/v1/tickets", None, &[("x-request-id", "trace-me-42")]).await;
    assert_eq!(r.problem(401)["request_id"], "trace-me-42");
    let doc = app.http.get(format!("{}/problems/illegal-transition", app.base)).send().await.unwrap();
    assert_eq!(doc.status(), 200);
    assert!(doc.text().await.unwrap().contains("allowed"));
    app.stop().await;
}

/// Issue 8, item 5: no input gets a 500. PostgreSQL cannot store NUL, and page numbers
/// overflowed the offset.
#[tokio::test(flavor = "multi_thread")]
async fn nul_characters_and_huge_page_numbers_are_refused_with_the_field() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ticket = app.incident(&t.agent, "baseline").await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let before = footprint(&app).await;
    let agent = Some(t.agent.token.as_str());
    let admin = Some(t.admin.token.as_str());

    let r = app
        .post(
            agent,
            "/api/v1/tickets",
            &json!({"kind": "incident", "title": "a\u{0}b", "impact": 3, "urgency": 3, "tags": ["ok", "x\u{0}"]}),
        )
        .await;
    let mut pointers = r.pointers();
    pointers.sort();
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(pointers, vec!["/tags/1", "/title"], "{}", r.body);
    assert!(r.body.contains("NUL"), "{}", r.body);
    let r = app.patch(agent, &format!("/api/v1/tickets/{number}"), &json!({"category": "net\u{0}work"})).await;
    assert_eq!((r.status, r.pointers()), (422, vec!["/category".to_owned()]), "{}", r.body);
    let r = app.post(agent, &format!("/api/v1/tickets/{number}/comments"), &json!({"body": "\u{0}"})).await;
    assert_eq!((r.status, r.pointers()), (422, vec!["/body".to_owned()]), "{}", r.body);
    for (path, param) in [
        ("/api/v1/tickets?q=pr%00inter", "?q"),
        ("/api/v1/tickets?category=a%00", "?category"),
        ("/api/v1/tickets?tag=%00", "?tag"),
        ("/api/v1/audit?action=ticket%00", "?action"),
        ("/api/v1/audit?entity_id=%00", "?entity_id"),
    ] {
        let token = if path.contains("audit") { admin } else { agent };
        let r = app.get(token, path).await;
        assert_eq!((r.status, r.pointers()), (422, vec![param.to_owned()]), "{path}: {}", r.body);
    }
    // a NUL in a path names nothing that exists
    app.get(agent, "/api/v1/tickets/INC-%00").await.problem(404);
    // page numbers past the bound
    for path in [
        "/api/v1/tickets?page=9223372036854775807",
        "/api/v1/users?page=9223372036854775807",
        "/api/v1/tickets?page=1000001",
    ] {
        let token = if path.contains("users") { admin } else { agent };
        let r = app.get(token, path).await;
        assert_eq!((r.status, r.pointers()), (422, vec!["?page".to_owned()]), "{path}: {}", r.body);
    }
    assert_eq!(footprint(&app).await, before, "nothing written");
    app.stop().await;
}

/// Issue 8, item 5: an expired token is audited once, not once per request.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_audited_once_however_often_it_is_sent() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let app = spawn_app().await;
    let t = app.tenant().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": t.agent.id, "tid": t.id, "ten": t.slug, "roles": ["agent"], "perms": ["ticket:create"],
        "iss": "archer", "aud": "archer-api", "iat": now - 7200, "exp": now - 3600, "jti": uuid::Uuid::new_v4()});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(archer_tests::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    for _ in 0..20 {
        app.get(Some(&token), "/api/v1/tickets").await.problem(401);
    }
    let rows = app.count("SELECT count(*) FROM audit_log WHERE action = 'auth.token_expired'").await;
    assert_eq!(rows, 1);
    let uses = app.count("SELECT uses FROM expired_token_uses").await;
    assert_eq!(uses, 20, "later uses are counted");
    app.stop().await;
}
