//! The OpenAPI document is generated from the code and served by the API.

use archer_tests::{Options, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_an_openapi_3_1_document_covering_every_route() {
    let app = spawn_app_with(Options { worker: false, relay: false }).await;
    let r = app.get(None, "/api/v1/openapi.json").await;
    assert_eq!(r.status, 200);
    let doc = &r.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/ready",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/tickets",
        "/api/v1/tickets/{ticket}",
        "/api/v1/tickets/{ticket}/comments",
        "/api/v1/tickets/{ticket}/links",
        "/api/v1/tickets/{ticket}/links/{link_id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/users/{id}/roles",
        "/api/v1/roles",
        "/api/v1/teams",
        "/api/v1/teams/{id}",
        "/api/v1/teams/{id}/members/{user_id}",
        "/api/v1/audit",
        "/api/v1/sla/calendars",
        "/api/v1/sla/calendars/{id}",
        "/api/v1/sla/policies",
        "/api/v1/sla/policies/{id}",
        "/api/v1/sla/preview",
        "/api/v1/tickets/{ticket}/sla",
        "/api/v1/tickets/{ticket}/sla/rebuild",
        "/api/v1/tickets/{ticket}/timeline",
        "/api/v1/notifications",
        "/api/v1/notifications/{id}/read",
        "/api/v1/notifications/read-all",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Ticket",
        "CreateTicket",
        "Problem",
        "FieldError",
        "Status",
        "TicketKind",
        "PolicySpec",
        "CalendarSpec",
        "ClockReport",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // it says what each operation answers when refused (issue 8, item 15; contract.rs fuzzes it)
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(op["responses"]["401"].is_object(), "{method} {path} does not document 401");
            }
        }
    }
    let preview = &doc["paths"]["/api/v1/sla/preview"]["get"]["parameters"];
    let param = |name: &str| preview.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!((param("kind")["in"].as_str(), param("kind")["required"].as_bool()), (Some("query"), Some(true)));
    assert_eq!(param("at")["required"], false);
    let limit = doc["paths"]["/api/v1/tickets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!((limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()), (Some(1), Some(200)));
    // and the API answers as documented: out of range is refused, naming the parameter
    let t = app.tenant().await;
    let r = app.get(Some(&t.agent.token), "/api/v1/tickets?limit=201").await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "?limit");
    let r = app.get(Some(&t.agent.token), "/api/v1/users?page=1000001").await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "?page");
    let r = app.get(Some(&t.agent.token), "/api/v1/sla/preview?impact=2&urgency=2").await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "?kind");
    let r = app.get(Some(&t.agent.token), "/api/v1/sla/preview?kind=incident&impact=2&urgency=2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // the health endpoints answer
    assert_eq!(app.get(None, "/health").await.json["status"], "ok");
    let ready = app.get(None, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    app.stop().await;
}
