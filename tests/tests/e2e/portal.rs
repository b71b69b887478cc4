//! The web portal in headless Chromium against the real system: a requester's laptop request
//! through its emailed approval, an agent's queue and SLA countdown, the same essentials with
//! JavaScript off, and what the portal refuses (forms without their CSRF token, pages of
//! another role or tenant).
//!
//! Every page a test visits is checked as a person meets it: screenshots at 1280 and 390 px
//! wide (written to `target/portal-screenshots/`), no console error, and no serious or
//! critical axe-core violation.

use std::path::PathBuf;
use std::time::Duration;

use archer_tests::approvals::{Laptop, decision_links, laptop};
use archer_tests::browser::Browser;
use archer_tests::{PASSWORD, TestApp, eventually, spawn_app};
use serde_json::json;

/// Where the screenshots go (the README says so too).
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/portal-screenshots")
}

/// Screenshots at both widths, then: nothing logged as an error, nothing axe-core calls
/// serious or critical.
async fn audit(b: &Browser, name: &str) {
    for width in [1280, 390] {
        b.screenshot(&screenshots().join(format!("{name}-{width}.png")), width).await;
    }
    let violations = b.axe().await;
    assert!(violations.is_empty(), "{name} ({}): axe-core finds {violations:#?}", b.current_url().await);
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{name} ({}): the console has errors {errors:#?}", b.current_url().await);
}

async fn sign_in(b: &Browser, email: &str) {
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click_through("#sign-in").await;
}

/// A field's current value (inputs and text areas).
async fn value(b: &Browser, id: &str) -> String {
    b.script(&format!("return document.getElementById('{id}').value")).await.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_requester_asks_for_a_laptop_and_sees_the_managers_emailed_approval_move_it_on() {
    let app = spawn_app().await;
    let Laptop { t, employee, item, .. } = laptop(&app).await;
    let b = Browser::start().await;

    // signed out, the portal asks to sign in and comes back afterwards
    b.goto(&format!("{}/portal/catalog", app.base)).await;
    assert!(b.current_url().await.contains("/portal/login?next=%2Fportal%2Fcatalog"), "{}", b.current_url().await);
    audit(&b, "login").await;
    b.fill("#email", &employee.email).await;
    b.fill("#password", "not the password").await;
    b.click_through("#sign-in").await;
    assert_eq!(b.text("#error").await, "The email or password is not right.");
    audit(&b, "login-refused").await;
    sign_in(&b, &employee.email).await;
    assert!(b.current_url().await.ends_with("/portal/catalog"), "{}", b.current_url().await);
    assert!(b.text("#me").await.contains("Erin Employee"));
    audit(&b, "catalog").await;

    // the laptop form: the operating system is asked for laptops only
    b.click_through(&format!("a[href='/portal/catalog/{}']", item["id"].as_str().unwrap())).await;
    assert_eq!(b.text("#title").await, "Laptop");
    assert!(!b.visible("#f-os").await, "no device chosen yet: no OS field");
    b.select("#f-device_type", "laptop").await;
    assert!(b.visible("#f-os").await, "a laptop asks for its OS");
    b.select("#f-device_type", "desktop").await;
    assert!(!b.visible("#f-os").await, "a desktop does not");
    b.select("#f-device_type", "laptop").await;
    b.select("#f-os", "linux").await;
    audit(&b, "item").await;

    // a justification that is too short is refused beside its field, and what was typed stays
    b.fill("#f-justification", "Need one").await;
    b.click_through("#submit").await;
    assert_eq!(b.text("#f-justification-error").await, "Enter at least 20 characters.");
    assert_eq!(value(&b, "f-justification").await, "Need one");
    assert_eq!(value(&b, "f-os").await, "linux");
    assert!(b.visible("#f-os").await);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE title = 'Laptop'").await, 0, "nothing stored");
    audit(&b, "item-refused").await;

    b.fill("#f-justification", "New starter in the data team needs a development machine").await;
    b.click_through("#submit").await;
    let url = b.current_url().await;
    let number = url.rsplit('/').next().unwrap().to_owned();
    assert!(number.starts_with("REQ-"), "{url}");
    assert!(b.text("#title").await.contains(&number));
    assert!(b.text("#answers").await.contains("linux"));
    // the chain's workflow opens the first step moments later
    let (bref, page) = (&b, url.as_str());
    eventually(Duration::from_secs(60), "the first step open on the request's page", move || async move {
        bref.goto(page).await;
        bref.text("#approvals").await.contains("Manager approval: Open")
    })
    .await;
    audit(&b, "ticket-requester").await;

    // the manager confirms from the emailed link, signed in or not
    let mail = app.approval_mail(&t.manager, &number).await;
    let (approve, _) = decision_links(&mail);
    let manager = Browser::start().await;
    manager.goto(&approve).await;
    manager.click_through("#confirm").await;
    assert!(manager.text("#outcome").await.to_lowercase().contains("approved"));
    manager.close().await;

    // the requester's page shows the next step
    eventually(Duration::from_secs(60), "the next step on the requester's page", move || async move {
        bref.goto(page).await;
        bref.text("#approvals").await.contains("Hardware approvers: Open")
    })
    .await;
    assert!(b.text("#approvals").await.contains("Manager approval: Approved"));

    b.goto(&format!("{}/portal/tickets", app.base)).await;
    assert!(b.text("#tickets").await.contains(&number));
    audit(&b, "my-tickets").await;
    b.goto(&format!("{}/portal", app.base)).await;
    audit(&b, "home").await;
    b.click_through("#logout").await;
    assert!(b.current_url().await.contains("/portal/login"));
    b.goto(&format!("{}/portal/tickets", app.base)).await;
    assert!(b.current_url().await.contains("/portal/login"), "signed out for good");
    b.close().await;
}

/// Waits until `number`'s SLA projection has its clocks (the ticket workflow records them).
async fn has_clock(app: &TestApp, token: &str, number: &str) {
    eventually(Duration::from_secs(30), "the ticket's SLA clock", || async {
        let r = app.get(Some(token), &format!("/api/v1/tickets/{number}")).await;
        r.json["sla"]["clocks"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
}

#[tokio::test]
async fn an_agent_sorts_the_queue_by_sla_due_sets_a_ticket_waiting_and_its_countdown_stops() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.resolution_policy(&t.admin, [3600, 7200, 14_400, 28_800]).await;
    let later = app
        .create_ticket(&t.requester, json!({"kind": "incident", "title": "Printer jammed", "impact": 3, "urgency": 3}))
        .await;
    let sooner = app
        .create_ticket(&t.requester, json!({"kind": "incident", "title": "Email is down", "impact": 1, "urgency": 1}))
        .await;
    let (later, sooner) = (later["number"].as_str().unwrap().to_owned(), sooner["number"].as_str().unwrap().to_owned());
    has_clock(&app, &t.agent.token, &later).await;
    has_clock(&app, &t.agent.token, &sooner).await;
    app.set_status(&t.agent, &sooner, "in_progress").await;

    let b = Browser::start().await;
    b.goto(&format!("{}/portal/queue", app.base)).await;
    sign_in(&b, &t.agent.email).await;
    assert!(b.current_url().await.ends_with("/portal/queue"));
    // newest first by default: the later-created ticket leads
    assert_eq!(b.text("#queue tbody tr:first-child a").await, sooner);
    b.select("#sort", "sla_due_at").await;
    b.click_through("#apply").await;
    assert!(b.current_url().await.contains("sort=sla_due_at"), "{}", b.current_url().await);
    assert_eq!(b.text("#queue tbody tr:first-child a").await, sooner, "P1 is due first");
    assert_eq!(b.text("#queue tbody tr:nth-child(2) a").await, later);
    audit(&b, "queue").await;

    // the ticket's countdown runs ...
    b.click_through("#queue tbody tr:first-child a").await;
    assert_eq!(b.attr("#countdown-0", "data-running").await.as_deref(), Some("true"));
    let first = b.text("#countdown-0").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_ne!(b.text("#countdown-0").await, first, "a running clock counts down");
    assert!(b.text("#workflow").await.contains("Temporal"));
    audit(&b, "ticket-agent").await;

    // ... until the ticket waits on the customer
    b.select("#new-status", "waiting_on_customer").await;
    b.click_through("#change-status").await;
    assert_eq!(b.text("#status").await, "Waiting on customer");
    assert_eq!(b.attr("#countdown-0", "data-running").await.as_deref(), Some("false"));
    let paused = b.text("#countdown-0").await;
    assert!(paused.ends_with("(paused)"), "{paused}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.text("#countdown-0").await, paused, "a paused clock stands still");
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("Status: In progress to Waiting on customer"), "{timeline}");
    assert!(timeline.contains("Resolution clock paused"), "{timeline}");
    audit(&b, "ticket-agent-paused").await;
    b.close().await;
}
