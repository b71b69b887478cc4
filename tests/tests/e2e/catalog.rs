//! The service catalog: items with JSON Schema forms (checked as schemas when saved), what each
//! user may request, versions, and submissions checked against the form with every failure
//! reported at once and nothing stored.

use archer_tests::approvals::{laptop_answers, laptop_schema};
use archer_tests::spawn_app;
use serde_json::{Value, json};

fn laptop_spec() -> Value {
    json!({
        "description": "A new or replacement computer",
        "form_schema": laptop_schema(),
        "approval": {"steps": [{"name": "Manager approval", "approvers": ["requester_manager"], "approve_when": "any"}]}
    })
}

fn errors(r: &archer_tests::Resp) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r.json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors[]: {} {}", r.status, r.body))
        .iter()
        .map(|e| {
            (e["pointer"].as_str().unwrap_or_default().to_owned(), e["code"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    v.sort();
    v
}

fn pair(p: &str, c: &str) -> (String, String) {
    (p.to_owned(), c.to_owned())
}

#[tokio::test]
async fn invalid_submissions_list_every_failure_and_store_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let item = app.catalog_item(&t.admin, "Laptop", laptop_spec()).await;
    type Case = (&'static str, Value, Vec<(String, String)>);
    let cases: Vec<Case> = vec![
        (
            "missing required fields",
            json!({}),
            vec![pair("/fields/device_type", "required"), pair("/fields/justification", "required")],
        ),
        (
            "conditional field missing while its condition holds (laptop needs an OS)",
            json!({"device_type": "laptop", "justification": "I need a laptop to work from home"}),
            vec![pair("/fields/os", "required")],
        ),
        (
            "the OS given for a desktop (only laptops have one)",
            json!({"device_type": "desktop", "os": "linux", "justification": "I need a desktop for CAD work"}),
            vec![pair("/fields", "not")],
        ),
        (
            "wrong enum",
            json!({"device_type": "phone", "justification": "I need a phone for on-call duty"}),
            vec![pair("/fields/device_type", "enum")],
        ),
        (
            "too short justification",
            json!({"device_type": "desktop", "justification": "need one"}),
            vec![pair("/fields/justification", "minLength")],
        ),
        (
            "wrong type",
            json!({"device_type": "desktop", "justification": "I need a desktop for CAD work", "replacement": "yes"}),
            vec![pair("/fields/replacement", "type")],
        ),
        (
            "extra field",
            json!({"device_type": "desktop", "justification": "I need a desktop for CAD work", "colour": "red"}),
            vec![pair("/fields/colour", "additionalProperties")],
        ),
        (
            "all at once",
            json!({"device_type": "laptop", "justification": "short", "replacement": "yes", "colour": "red", "needed_by": "next week"}),
            vec![
                pair("/fields/colour", "additionalProperties"),
                pair("/fields/justification", "minLength"),
                pair("/fields/needed_by", "format"),
                pair("/fields/os", "required"),
                pair("/fields/replacement", "type"),
            ],
        ),
    ];
    for (what, fields, want) in cases {
        let r = app.submit(&t.requester, &item, fields).await;
        r.problem(422);
        let got = errors(&r);
        for w in &want {
            assert!(got.contains(w), "{what}: expected {w:?} in {got:?}");
        }
        if what == "all at once" {
            assert_eq!(got.len(), want.len(), "{what}: exactly these failures, each once: {got:?}");
        }
        for e in r.json["errors"].as_array().unwrap() {
            assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: each failure says why: {e}");
        }
    }
    // the answers must be an object, and the item must exist
    app.submit(&t.requester, &item, json!(["laptop"])).await.problem(422);
    let r = app.submit(&t.requester, &json!({"id": uuid::Uuid::now_v7()}), laptop_answers()).await;
    assert_eq!(r.problem(422)["errors"][0]["pointer"], "/item");

    // nothing stored: no ticket, no approval, no workflow intent
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM approvals").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 0);

    // and a valid one goes through
    let r = app.submit(&t.requester, &item, laptop_answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json["number"].as_str().unwrap().starts_with("REQ-"));
    assert_eq!(r.json["kind"], "service_request");
    assert_eq!(r.json["status"], "pending_approval");
    assert_eq!(r.json["request"]["fields"], laptop_answers());
    assert_eq!(r.json["request"]["item_version"], 1);
    app.stop().await;
}

#[tokio::test]
async fn items_are_checked_when_saved_and_versioned() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    // not a JSON Schema, not an object form, a bad chain: every problem reported
    let r = app.post(Some(&t.admin.token), "/api/v1/catalog/categories", &json!({"name": "Hardware"})).await;
    let category = r.json["id"].clone();
    let r = app
        .post(
            Some(&t.admin.token),
            "/api/v1/catalog/items",
            &json!({"category_id": category, "name": "Broken", "spec": {
                "form_schema": {"type": "object", "properties": {"a": {"type": "strnig"}}},
                "approval": {"steps": [{"name": "", "approvers": [{"role": "no_such_role"}], "approve_when": {"count": 0}}]}
            }}),
        )
        .await;
    r.problem(422);
    let pointers = r.pointers();
    for p in [
        "/spec/form_schema/properties/a/type",
        "/spec/approval/steps/0/name",
        "/spec/approval/steps/0/approve_when",
        "/spec/approval/steps/0/approvers/0",
    ] {
        assert!(pointers.iter().any(|x| x == p), "{p} not in {pointers:?}");
    }
    // a requester may not define items
    let r = app
        .post(
            Some(&t.requester.token),
            "/api/v1/catalog/items",
            &json!({"category_id": category, "name": "X", "spec": laptop_spec()}),
        )
        .await;
    r.problem(403);

    // the shipped example forms are valid items
    for (name, schema) in [
        ("Laptop", archer_api::seed::LAPTOP_SCHEMA),
        ("Software access", archer_api::seed::SOFTWARE_ACCESS_SCHEMA),
        ("Onboarding", archer_api::seed::ONBOARDING_SCHEMA),
    ] {
        let schema: Value = serde_json::from_str(schema).unwrap();
        let r = app
            .post(
                Some(&t.admin.token),
                "/api/v1/catalog/items",
                &json!({"category_id": category, "name": name, "spec": {"form_schema": schema}}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: {}", r.body);
    }
    let items = app.get(Some(&t.admin.token), "/api/v1/catalog/items").await.json;
    let id_of = |name: &str| items.as_array().unwrap().iter().find(|i| i["name"] == name).unwrap()["id"].clone();
    let software = json!({"id": id_of("Software access")});
    let onboarding = json!({"id": id_of("Onboarding")});
    // dependentRequired: a paid seat needs a cost centre; oneOf: permanent or a temporary object
    let r = app
        .submit(&t.requester, &software, json!({"application": "figma", "access_level": "write", "paid_seat": true, "duration": {"until": "2027-01-31"}, "justification": "design review work"}))
        .await;
    assert_eq!(errors(&r), vec![pair("/fields/cost_centre", "dependentRequired")], "{}", r.body);
    let r = app
        .submit(&t.requester, &software, json!({"application": "figma", "access_level": "write", "duration": "forever", "justification": "design review work"}))
        .await;
    assert_eq!(errors(&r), vec![pair("/fields/duration", "oneOf")], "{}", r.body);
    let r = app
        .submit(&t.requester, &software, json!({"application": "figma", "access_level": "write", "paid_seat": true, "cost_centre": "CC-1234", "duration": "permanent", "justification": "design review work"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // formats: email and date
    let r = app
        .submit(&t.requester, &onboarding, json!({"full_name": "Jo", "work_email": "not-an-email", "start_date": "2026-02-30", "department": "sales", "employment": {"type": "contractor", "end_date": "2027-06-30", "agency": "Temps"}, "manager_email": "boss@example.com", "laptop": "standard-14", "needs_vpn": false}))
        .await;
    assert_eq!(
        errors(&r),
        vec![pair("/fields/start_date", "format"), pair("/fields/work_email", "format")],
        "{}",
        r.body
    );

    // a new version: requests keep the version they were submitted against
    let laptop = app.catalog_item(&t.admin, "Laptop v", laptop_spec()).await;
    let first = app.submit(&t.requester, &laptop, laptop_answers()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let mut v2 = laptop_spec();
    v2["form_schema"]["properties"]["justification"]["minLength"] = json!(80);
    let r = app
        .patch(
            Some(&t.admin.token),
            &format!("/api/v1/catalog/items/{}", laptop["id"].as_str().unwrap()),
            &json!({"spec": v2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["version"], 2);
    let again = app.submit(&t.requester, &laptop, laptop_answers()).await;
    assert_eq!(errors(&again), vec![pair("/fields/justification", "minLength")], "v2 asks for more: {}", again.body);
    let first_now =
        app.get(Some(&t.requester.token), &format!("/api/v1/tickets/{}", first.json["number"].as_str().unwrap())).await;
    assert_eq!(first_now.json["request"]["item_version"], 1);
    app.stop().await;
}

#[tokio::test]
async fn the_catalog_shows_each_user_what_they_may_request() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.catalog_item(&t.admin, "For everyone", json!({"form_schema": {"type": "object"}})).await;
    let agents_only = app
        .catalog_item(
            &t.admin,
            "Agents only",
            json!({"form_schema": {"type": "object"}, "audience": {"everyone": false, "roles": ["agent"]}}),
        )
        .await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()))
            .collect()
    };
    let r = app.get(Some(&t.requester.token), "/api/v1/catalog").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(names(&r.json), vec!["For everyone"]);
    assert!(r.body.contains("form_schema"), "each item comes with its form: {}", r.body);
    let r = app.get(Some(&t.agent.token), "/api/v1/catalog").await;
    let mut n = names(&r.json);
    n.sort();
    assert_eq!(n, vec!["Agents only", "For everyone"]);
    // and the API refuses a request for an item outside the user's audience
    app.submit(&t.requester, &agents_only, json!({})).await.problem(403);
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0);
    // issue 8 item 6: reading an item outside one's audience is a 404, like anything else one
    // cannot see (its spec names approvers); catalog admins read every item
    let path = format!("/api/v1/catalog/items/{}", agents_only["id"].as_str().unwrap());
    app.get(Some(&t.requester.token), &path).await.problem(404);
    assert_eq!(app.get(Some(&t.agent.token), &path).await.status, 200);
    assert_eq!(app.get(Some(&t.admin.token), &path).await.status, 200);
    // a withdrawn item is gone for requesters, still there for admins
    assert_eq!(app.delete(Some(&t.admin.token), &path).await.status, 204);
    app.get(Some(&t.agent.token), &path).await.problem(404);
    assert_eq!(app.get(Some(&t.admin.token), &path).await.status, 200);
    app.stop().await;
}
