//! Authentication and authorization refusals, each with the right status and, where an
//! account is concerned, an audit row.

use std::time::{SystemTime, UNIX_EPOCH};

use archer_tests::{JWT_SECRET, PASSWORD, TestApp, spawn_app};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

async fn audit_actions(app: &TestApp, user: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE actor_id = $1 ORDER BY id")
        .bind(user)
        .fetch_all(&app.pool)
        .await
        .expect("audit rows")
}

fn claims(sub: Uuid, tid: Uuid, ten: &str, exp: u64) -> serde_json::Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    json!({"sub": sub, "tid": tid, "ten": ten, "roles": ["admin"], "perms": ["user:admin", "audit:read"],
           "iss": "archer", "aud": "archer-api", "iat": now - 3600, "exp": exp, "jti": Uuid::new_v4()})
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_me_and_logout() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app
        .post(None, "/api/v1/auth/login", &json!({"email": t.agent.email.to_uppercase(), "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(r.json["token_type"], "Bearer");

    let me = app.get(Some(&access), "/api/v1/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["id"], t.agent.id.to_string());
    assert_eq!(me.json["tenant"]["slug"], t.slug);
    assert!(me.json["permissions"].as_array().unwrap().iter().any(|p| p == "ticket:update"));

    let r2 = app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": refresh})).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let refresh2 = r2.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh, refresh2, "refresh tokens rotate");

    let out = app.post(Some(&access), "/api/v1/auth/logout", &json!({"refresh_token": refresh2})).await;
    assert_eq!(out.status, 204, "{}", out.body);
    let r3 = app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": refresh2})).await;
    r3.problem(401);
    let actions = audit_actions(&app, t.agent.id).await;
    for a in ["auth.login", "auth.refresh", "auth.logout", "auth.refresh_revoked"] {
        assert!(actions.iter().any(|x| x == a), "missing {a} in {actions:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_audited_and_repeated_failures_lock_the_account() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app
        .post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": "not the password"}))
        .await;
    let p = r.problem(401);
    assert_eq!(p["detail"], "authentication required: invalid email or password");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"archer\""));
    assert!(audit_actions(&app, t.requester.id).await.contains(&"auth.login_failed".to_owned()));

    // an unknown email gets the same answer and writes nothing about anyone
    let before = app.count("SELECT count(*) FROM audit_log").await;
    let r =
        app.post(None, "/api/v1/auth/login", &json!({"email": "nobody@nowhere.example", "password": "whatever"})).await;
    assert_eq!(r.problem(401)["detail"], p["detail"]);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, before);

    // four more failures reach the limit of five: the account locks, even for the right password
    for _ in 0..4 {
        app.post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": "still wrong"}))
            .await
            .problem(401);
    }
    let locked = app.post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": PASSWORD})).await;
    locked.problem(429);
    assert!(locked.header("retry-after").is_some());
    let actions = audit_actions(&app, t.requester.id).await;
    assert!(actions.contains(&"auth.account_locked".to_owned()), "{actions:?}");
    assert!(actions.contains(&"auth.login_locked".to_owned()), "{actions:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tampered_unsigned_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());

    // expired (signed with the real key): 401, audited against the account
    let expired =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(t.admin.id, t.id, &t.slug, now - 60), &key)
            .unwrap();
    let r = app.get(Some(&expired), "/api/v1/auth/me").await;
    assert!(r.problem(401)["detail"].as_str().unwrap().contains("expired"));
    assert!(audit_actions(&app, t.admin.id).await.contains(&"auth.token_expired".to_owned()));

    // tampered: one byte of a valid token's payload changed
    let mut bytes = t.agent.token.clone().into_bytes();
    let dot = bytes.iter().position(|b| *b == b'.').unwrap();
    bytes[dot + 5] = if bytes[dot + 5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    app.get(Some(&tampered), "/api/v1/auth/me").await.problem(401);

    // alg: none, claiming to be the admin
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&claims(t.admin.id, t.id, &t.slug, now + 600)).unwrap())
    );
    app.get(Some(&unsigned), "/api/v1/users").await.problem(401);

    // signed with another key
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(t.admin.id, t.id, &t.slug, now + 600),
        &EncodingKey::from_secret(b"some-other-secret-some-other-secret-0123"),
    )
    .unwrap();
    app.get(Some(&foreign), "/api/v1/users").await.problem(401);

    // no token, and a malformed header
    app.get(None, "/api/v1/tickets").await.problem(401);
    let r = app.send(reqwest::Method::GET, None, "/api/v1/tickets", None, &[("authorization", "Basic abc")]).await;
    r.problem(401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_login() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app.post(None, "/api/v1/auth/login", &json!({"email": t.manager.email, "password": PASSWORD})).await;
    let first = r.json["refresh_token"].as_str().unwrap().to_owned();
    let r2 = app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": first})).await;
    assert_eq!(r2.status, 200);
    let second = r2.json["refresh_token"].as_str().unwrap().to_owned();

    // the old one again: theft is assumed, the family is revoked
    let reuse = app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": first})).await;
    assert!(reuse.problem(401)["detail"].as_str().unwrap().contains("reused"));
    // so the legitimate newer token stops working too
    app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": second})).await.problem(401);
    let actions = audit_actions(&app, t.manager.id).await;
    assert!(actions.contains(&"auth.refresh_reused".to_owned()), "{actions:?}");
    app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": "made-up"})).await.problem(401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_calling_an_admin_endpoint_is_forbidden_and_audited() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app
        .post(Some(&t.requester.token), "/api/v1/users", &json!({"email": "x@y.example", "display_name": "X"}))
        .await;
    assert!(r.problem(403)["detail"].as_str().unwrap().contains("user:admin"));
    app.get(Some(&t.requester.token), "/api/v1/audit").await.problem(403);
    app.get(Some(&t.agent.token), "/api/v1/audit").await.problem(403);
    let denied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'authz.denied' AND actor_id = $1")
            .bind(t.requester.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(denied, 2);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE email = 'x@y.example'").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivated_users_cannot_log_in_or_refresh() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app.post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": PASSWORD})).await;
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    let d = app.delete(Some(&t.admin.token), &format!("/api/v1/users/{}", t.requester.id)).await;
    assert_eq!(d.status, 204, "{}", d.body);
    app.post(None, "/api/v1/auth/login", &json!({"email": t.requester.email, "password": PASSWORD})).await.problem(401);
    app.post(None, "/api/v1/auth/refresh", &json!({"refresh_token": refresh})).await.problem(401);
    app.stop().await;
}
