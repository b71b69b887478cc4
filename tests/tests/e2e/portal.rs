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

/// Opens `url` again and again (up to a minute) until the element `css` says `wanted`: what a
/// person does while a workflow moves on.
async fn reload_until(b: &Browser, url: &str, css: &str, wanted: &str) {
    let what = format!("{css} on {url} to say {wanted:?}");
    eventually(Duration::from_secs(60), &what, move || async move {
        b.goto(url).await;
        b.text(css).await.contains(wanted)
    })
    .await;
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
    reload_until(&b, &url, "#approvals", "Manager approval: Open").await;
    audit(&b, "ticket-requester").await;

    // the manager confirms from the emailed link, signed in or not
    let mail = app.approval_mail(&t.manager, &number).await;
    let (approve, _) = decision_links(&mail);
    assert!(mail.text.contains(&format!("{}/portal/approvals", app.base)), "the email links the inbox: {}", mail.text);
    let manager = Browser::start().await;
    manager.goto(&approve).await;
    audit(&manager, "approval-confirm").await;
    manager.click_through("#confirm").await;
    assert!(manager.text("#outcome").await.to_lowercase().contains("approved"));
    audit(&manager, "approval-done").await;
    manager.close().await;

    // the requester's page shows the next step
    reload_until(&b, &url, "#approvals", "Hardware approvers: Open").await;
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
    // a playbook agents can run by hand
    let yaml = "name: triage\ntriggers: [manual]\nsteps:\n  - id: note\n    action: ticket.comment\n    with: { body: Triage started }\n";
    let r = app.post(Some(&t.admin.token), "/api/v1/playbooks", &json!({"source": yaml})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let publish = format!("/api/v1/playbooks/{}/versions/1/publish", r.json["playbook_id"].as_str().unwrap());
    let r = app.post(Some(&t.admin.token), &publish, &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);

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
    // bulk assignment: the picked ticket only, and the queue keeps its sort
    b.click(&format!("#pick-{later}")).await;
    b.select("#bulk-assignee", "me").await;
    b.click_through("#bulk-assign").await;
    assert_eq!(b.text("#notice").await, "Assigned 1 ticket.");
    assert!(b.current_url().await.contains("sort=sla_due_at"), "{}", b.current_url().await);
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{later}")).await;
    assert_eq!(r.json["assignee_id"], t.agent.id.to_string());
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{sooner}")).await;
    assert!(r.json["assignee_id"].is_null());
    // a saved view keeps the filters and sort
    b.fill("#view-name", "Due first").await;
    b.click_through("#save-view").await;
    b.goto(&format!("{}/portal/queue", app.base)).await;
    b.click_through("#views a").await;
    assert!(b.current_url().await.ends_with("/portal/queue?sort=sla_due_at"), "{}", b.current_url().await);
    assert_eq!(b.text("#queue tbody tr:first-child a").await, sooner);

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
    // the SLA section comes again from the server (htmx, every minute): as it would now
    b.script("document.getElementById('sla').setAttribute('data-stale', 'yes')").await;
    b.script("return htmx.ajax('GET', location.pathname, {target: '#sla', select: '#sla', swap: 'outerHTML'}).then(() => true)").await;
    assert_eq!(b.attr("#sla", "data-stale").await, None, "swapped for the server's");
    assert_eq!(b.attr("#countdown-0", "data-running").await.as_deref(), Some("false"));
    assert!(b.text("#countdown-0").await.ends_with("(paused)"));
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("Status: In progress to Waiting on customer"), "{timeline}");
    assert!(timeline.contains("Resolution clock paused"), "{timeline}");
    audit(&b, "ticket-agent-paused").await;

    // assignment and priority: a priority change needs a reason
    b.click_through("#assign-me").await;
    assert_eq!(b.text("#assignee-name").await, "agent");
    b.select("#priority", "2").await;
    b.click_through("#save-assignment").await;
    assert!(b.text("#error").await.to_lowercase().contains("reason"), "{}", b.text("#error").await);
    assert_eq!(b.text("#priority-value").await, "P1");
    b.select("#priority", "2").await;
    b.fill("#priority-reason", "Only the CEO is affected").await;
    b.click_through("#save-assignment").await;
    assert_eq!(b.text("#priority-value").await, "P2");
    // links, and a playbook run by hand
    b.fill("#link-target", &later).await;
    b.click_through("#add-link").await;
    assert!(b.text("#links").await.contains(&later));
    b.select("#playbook", "triage").await;
    b.click_through("#run-playbook").await;
    // (without the `#runs` fragment: going to the same URL with one would not reload the page)
    let page = b.current_url().await.split('#').next().unwrap().to_owned();
    reload_until(&b, &page, "#runs", "triage run 1: Succeeded").await;
    reload_until(&b, &page, "#comments", "Triage started").await;
    audit(&b, "ticket-agent-worked").await;
    b.close().await;
}

/// Screenshots and axe-core on a page a refusal answers: its status is the refusal's (the one
/// console line a browser logs for it is expected), nothing else is logged.
async fn audit_refusal(b: &Browser, name: &str, status: u16) {
    for width in [1280, 390] {
        b.screenshot(&screenshots().join(format!("{name}-{width}.png")), width).await;
    }
    let violations = b.axe().await;
    assert!(violations.is_empty(), "{name}: axe-core finds {violations:#?}");
    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains(&format!("the server responded with a status of {status}")))
        .collect();
    assert!(errors.is_empty(), "{name}: the console has errors {errors:#?}");
}

#[tokio::test]
async fn without_javascript_people_sign_in_request_approve_and_comment() {
    let app = spawn_app().await;
    let Laptop { t, employee, item, approvers } = laptop(&app).await;

    // the requester: every field shows, the server checks the answers
    let b = Browser::without_javascript().await;
    b.goto(&format!("{}/portal/catalog/{}", app.base, item["id"].as_str().unwrap())).await;
    sign_in(&b, &employee.email).await;
    assert_eq!(b.text("#title").await, "Laptop");
    assert!(b.visible("#f-os").await, "without JavaScript every field shows");
    assert!(b.visible("#f-asset_tag").await);
    b.select("#f-device_type", "laptop").await;
    b.fill("#f-justification", "New starter in the data team needs a development machine").await;
    b.click_through("#submit").await;
    assert_eq!(b.text("#f-os-error").await, "Operating system is required.");
    b.select("#f-os", "macos").await;
    b.click_through("#submit").await;
    let url = b.current_url().await;
    let number = url.rsplit('/').next().unwrap().to_owned();
    assert!(number.starts_with("REQ-"), "{url}: {}", b.page_text().await);

    // the manager approves in the app
    let m = Browser::without_javascript().await;
    m.goto(&format!("{}/portal/approvals", app.base)).await;
    sign_in(&m, &t.manager.email).await;
    let approvals = format!("{}/portal/approvals", app.base);
    let (mref, approvals) = (&m, approvals.as_str());
    let card = format!("#approval-{number}");
    let card = card.as_str();
    eventually(Duration::from_secs(60), "the request in the manager's inbox", move || async move {
        mref.goto(approvals).await;
        mref.page_text().await.contains(card.trim_start_matches("#approval-"))
    })
    .await;
    assert!(m.text(card).await.contains("Erin Employee"));
    // the answers in the form's order
    let answers = m.text(&format!("#answers-{number}")).await;
    let (device, why) = (answers.find("Device type").unwrap(), answers.find("Business justification").unwrap());
    assert!(device < why, "{answers}");
    m.fill(&format!("#comment-{number}"), "Fine by me").await;
    m.click_through(&format!("#approve-{number}")).await;
    assert_eq!(m.text("#notice").await, format!("Your decision on {number} is recorded."));
    // out of office: a colleague decides in the manager's place until the manager is back
    m.fill("#delegate", &approvers[0].email).await;
    // (a date input takes what is typed in the browser locale's order: en-US here)
    m.fill("#until", "01152027").await;
    m.fill("#reason", "Parental leave").await;
    m.click_through("#set-away").await;
    assert!(m.text("#away").await.contains("Hana One"), "{}", m.page_text().await);
    let r = app.get(Some(&t.manager.token), "/api/v1/users/me/out-of-office").await;
    assert_eq!(r.json["delegate_id"], approvers[0].id.to_string(), "{}", r.body);
    m.click_through("#end-away").await;
    assert!(m.text("#away").await.contains("Going away?"));
    m.close().await;

    // the next approver sees who decided before them
    let h = Browser::without_javascript().await;
    h.goto(&format!("{}/portal/approvals", app.base)).await;
    sign_in(&h, &approvers[0].email).await;
    let (href, approvals) = (&h, approvals);
    eventually(Duration::from_secs(60), "the request in the next approver's inbox", move || async move {
        href.goto(approvals).await;
        href.page_text().await.contains("Decided so far")
    })
    .await;
    let others = h.text(&format!("#others-{number}")).await;
    assert!(others.contains("manager (Manager approval): Approved") && others.contains("Fine by me"), "{others}");
    h.close().await;

    // the requester sees it, and comments
    reload_until(&b, &url, "#approvals", "Manager approval: Approved").await;
    assert!(b.text("#approvals").await.contains("\"Fine by me\""));
    b.fill("#comment", "Thanks! Any black one will do.").await;
    b.click_through("#send-comment").await;
    assert!(b.text("#comments").await.contains("Thanks! Any black one will do."));
    let r = app.get(Some(&t.agent.token), &format!("/api/v1/tickets/{number}/comments")).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1, "{}", r.body);
    b.close().await;

    // an agent changes a ticket
    let incident = app.incident(&employee, "Screen flickers").await;
    let incident = incident["number"].as_str().unwrap();
    let a = Browser::without_javascript().await;
    a.goto(&format!("{}/portal/tickets/{incident}", app.base)).await;
    sign_in(&a, &t.agent.email).await;
    a.select("#new-status", "in_progress").await;
    a.click_through("#change-status").await;
    assert_eq!(a.text("#status").await, "In progress");
    a.click_through("#assign-me").await;
    assert_eq!(a.text("#assignee-name").await, "agent");
    a.close().await;
}

/// The cookies a response sets, as `name=value` pairs for a `Cookie` header.
fn cookies(r: &reqwest::Response, jar: &mut Vec<(String, String)>) {
    for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
        let pair = v.to_str().unwrap().split(';').next().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        jar.retain(|(n, _)| n != name);
        if !value.is_empty() {
            jar.push((name.to_owned(), value.to_owned()));
        }
    }
}

fn header(jar: &[(String, String)]) -> String {
    jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

/// Signs in over plain HTTP (no browser); returns the cookies and the CSRF token.
async fn session(app: &TestApp, email: &str) -> (Vec<(String, String)>, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Vec::new();
    let r = http.get(format!("{}/portal/login", app.base)).send().await.unwrap();
    cookies(&r, &mut jar);
    let csrf = jar.iter().find(|(n, _)| n == "archer_csrf").unwrap().1.clone();
    let r = http
        .post(format!("{}/portal/login", app.base))
        .header("cookie", header(&jar))
        .form(&[("email", email), ("password", PASSWORD), ("_csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    cookies(&r, &mut jar);
    let csrf = jar.iter().find(|(n, _)| n == "archer_csrf").unwrap().1.clone();
    (jar, csrf)
}

#[tokio::test]
async fn the_portal_refuses_forms_without_their_token_and_pages_of_another_role_or_tenant() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let mine = app.incident(&t.requester, "My laptop is slow").await;
    let theirs = app.incident(&other.requester, "Their printer").await;
    // numbers are per tenant (both are INC-000001): the other tenant's ticket by its id
    let (mine, theirs) = (mine["number"].as_str().unwrap(), theirs["id"].as_str().unwrap());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // signing in without the form's token signs nobody in
    let r = http
        .post(format!("{}/portal/login", app.base))
        .form(&[("email", t.requester.email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("archer_session="))
    );
    assert!(r.text().await.unwrap().contains("The sign-in form had expired"));

    let (jar, csrf) = session(&app, &t.requester.email).await;
    let comment = |token: Option<String>| {
        let mut form = vec![("body".to_owned(), "Still slow".to_owned())];
        if let Some(t) = token {
            form.push(("_csrf".into(), t));
        }
        http.post(format!("{}/portal/tickets/{mine}/comments", app.base))
            .header("cookie", header(&jar))
            .form(&form)
            .send()
    };
    // a form post without its token, or with another one, is refused and changes nothing
    for token in [None, Some("forged.token".to_owned())] {
        let r = comment(token).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("security token"));
    }
    let count = "SELECT count(*) FROM ticket_comments";
    assert_eq!(app.count(count).await, 0);
    // with it, the comment is made
    let r = comment(Some(csrf)).await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(app.count(count).await, 1);

    // a requester may not open the agents' queue, nor see another tenant's ticket
    let page = |path: String| http.get(format!("{}{path}", app.base)).header("cookie", header(&jar)).send();
    let r = page("/portal/queue".into()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("You may not open this page"));
    let r = page(format!("/portal/tickets/{theirs}")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Not found"));
    let r = page(format!("/portal/tickets/{mine}")).await.unwrap();
    assert_eq!(r.status(), 200);

    // without the access token (as once it has expired) the refresh token renews the session
    // through the API's refresh; requests that arrive together share that one renewal
    let without_access: Vec<(String, String)> = jar.iter().filter(|(n, _)| n != "archer_session").cloned().collect();
    let get = |cookies: String| http.get(format!("{}/portal/tickets", app.base)).header("cookie", cookies).send();
    let (r1, r2) = tokio::join!(get(header(&without_access)), get(header(&without_access)));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!((r1.status(), r2.status()), (reqwest::StatusCode::OK, reqwest::StatusCode::OK));
    let (mut renewed, mut twin) = (without_access.clone(), without_access.clone());
    cookies(&r1, &mut renewed);
    cookies(&r2, &mut twin);
    let access = |jar: &[(String, String)]| jar.iter().find(|(n, _)| n == "archer_session").map(|(_, v)| v.clone());
    assert!(access(&renewed).is_some(), "a new access token: {renewed:?}");
    assert_eq!(access(&renewed), access(&twin), "one renewal for both");
    let old = without_access.iter().find(|(n, _)| n == "archer_refresh").unwrap();
    assert!(renewed.iter().any(|(n, v)| n == "archer_refresh" && v != &old.1), "a new refresh token");
    // the used refresh token without this browser's CSRF cookie (someone who stole only it) is
    // taken for theft: the session ends
    let stolen: Vec<(String, String)> = without_access.iter().filter(|(n, _)| n != "archer_csrf").cloned().collect();
    let r = get(header(&stolen)).await.unwrap();
    assert_eq!(r.status(), 303, "a used refresh token signs nobody in");
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/portal/login"));
    let r = get(header(&renewed)).await.unwrap();
    assert_eq!(r.status(), 200, "the access token lives on until it expires");
    let reused = "SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reused'";
    assert_eq!(app.count(reused).await, 1, "the reuse is audited as theft");

    // and in a browser, the same pages as a person sees them
    let b = Browser::start().await;
    b.goto(&format!("{}/portal/queue", app.base)).await;
    sign_in(&b, &t.requester.email).await;
    assert_eq!(b.text("#title").await, "You may not open this page");
    audit_refusal(&b, "forbidden", 403).await;
    b.goto(&format!("{}/portal/tickets/{theirs}", app.base)).await;
    assert_eq!(b.text("#title").await, "Not found");
    audit_refusal(&b, "not-found", 404).await;

    // the requester reopens what was resolved but is not solved, and cancels what is not needed
    let mouse = app.incident(&t.requester, "Mouse broken").await;
    let mouse = mouse["number"].as_str().unwrap();
    app.set_status(&t.agent, mouse, "in_progress").await;
    app.set_status(&t.agent, mouse, "resolved").await;
    b.goto(&format!("{}/portal/tickets/{mouse}", app.base)).await;
    assert_eq!(b.text("#status").await, "Resolved");
    b.click_through("#reopen").await;
    assert_eq!(b.text("#status").await, "In progress");
    b.goto(&format!("{}/portal/tickets/{mine}", app.base)).await;
    b.click_through("#cancel").await;
    assert_eq!(b.text("#status").await, "Cancelled");
    assert!(b.page_text().await.contains("Still slow"), "the comment made above");
    audit(&b, "ticket-requester-cancelled").await;
    b.close().await;
}

#[tokio::test]
async fn an_admin_is_refused_an_invalid_form_schema_and_a_playbook_with_a_cycle_and_a_saved_item_is_requestable() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let r = app.post(Some(&t.admin.token), "/api/v1/catalog/categories", &json!({"name": "Hardware"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let items = "SELECT count(*) FROM catalog_items";
    let before = app.count(items).await;

    let b = Browser::start().await;
    b.goto(&format!("{}/portal/admin/catalog/new", app.base)).await;
    sign_in(&b, &t.admin.email).await;
    assert_eq!(b.text("#title").await, "New catalog item");
    // the preview follows the schema as it is typed
    assert!(b.text("#preview").await.contains("What do you need?"));
    b.fill("#form_schema", r#"{"type": "object", "properties": {"size": {"title": "Screen size", "type": "string", "enum": ["24", "27"]}}}"#).await;
    let bref = &b;
    // (read by script: htmx swaps the element while a test would hold it)
    eventually(Duration::from_secs(10), "the live preview", move || async move {
        bref.script("return document.getElementById('preview').innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .contains("Screen size")
    })
    .await;
    audit(&b, "admin-item").await;

    // a schema that is not valid JSON Schema: refused beside the field, nothing stored
    b.fill("#name", "Monitor").await;
    b.select("#category", r.json["id"].as_str().unwrap()).await;
    b.fill("#form_schema", r#"{"type": "object", "properties": {"size": {"type": "strin"}}}"#).await;
    b.click_through("#save").await;
    let error = b.text("#form_schema-error").await;
    assert!(error.contains("/properties/size/type"), "{error}");
    assert_eq!(value(&b, "name").await, "Monitor", "what was typed stays");
    // nor JSON at all: the line and column of the mistake
    b.fill("#form_schema", "{\"type\": \"object\",\n \"properties\": {]}").await;
    b.click_through("#save").await;
    let error = b.text("#form_schema-error").await;
    assert!(error.contains("line 2, column"), "{error}");
    audit(&b, "admin-item-refused").await;
    assert_eq!(app.count(items).await, before, "nothing stored");

    // a valid one is saved, and a requester can ask for it at once
    b.fill("#form_schema", r#"{"type": "object", "required": ["size"], "properties": {"size": {"title": "Screen size", "type": "string", "enum": ["24", "27"]}}}"#).await;
    b.fill("#description", "A second screen").await;
    b.click_through("#save").await;
    assert_eq!(b.text("#notice").await, "Saved Monitor (version 1).");
    assert!(b.text("#items").await.contains("Monitor"));
    audit(&b, "admin-catalog").await;
    let requester = Browser::start().await;
    requester.goto(&format!("{}/portal/catalog?q=monitor", app.base)).await;
    sign_in(&requester, &t.requester.email).await;
    requester.click_through("article.item a").await;
    assert_eq!(requester.text("#title").await, "Monitor");
    requester.select("#f-size", "27").await;
    requester.click_through("#submit").await;
    assert!(requester.current_url().await.contains("/portal/tickets/REQ-"), "{}", requester.page_text().await);

    // editing it makes a new version, which requesters see at once
    b.click_through("#edit-0").await;
    assert_eq!(b.text("#title").await, "Edit Monitor");
    assert!(value(&b, "form_schema").await.contains("Screen size"));
    b.fill("#description", "A second screen, 24 or 27 inches").await;
    b.click_through("#save").await;
    assert_eq!(b.text("#notice").await, "Saved Monitor (version 2).");
    requester.goto(&format!("{}/portal/catalog?q=monitor", app.base)).await;
    assert!(requester.text("article.item").await.contains("24 or 27 inches"));
    requester.close().await;

    // a playbook whose steps need each other is refused at its lines, and nothing is stored
    let playbooks = "SELECT count(*) FROM playbook_versions";
    let stored = app.count(playbooks).await;
    b.goto(&format!("{}/portal/admin/playbooks", app.base)).await;
    let cycle = "name: loop\nsteps:\n  - id: a\n    action: wait\n    needs: [b]\n    with: { duration: 1s }\n  - id: b\n    action: wait\n    needs: [a]\n    with: { duration: 1s }\n";
    b.fill("#source", cycle).await;
    b.click_through("#save").await;
    let errors = b.text("#errors").await;
    assert!(errors.contains("Line ") && errors.to_lowercase().contains("cycle"), "{errors}");
    assert!(b.text("ol.source li.bad").await.contains("problem on this line"));
    assert_eq!(value(&b, "source").await, cycle, "the document stays as typed");
    assert_eq!(app.count(playbooks).await, stored, "nothing stored");
    audit(&b, "admin-playbooks-refused").await;
    // a good one is saved as a draft and published
    b.fill("#source", "name: triage\ntriggers: [manual]\nsteps:\n  - id: note\n    action: ticket.comment\n    with: { body: Triage started }\n").await;
    b.click_through("#save").await;
    assert_eq!(b.text("#notice").await, "Saved triage version 1 (a draft).");
    // a dry run plans it and starts nothing
    b.click_through("#dry-run-triage").await;
    let plan = b.text("#plan").await;
    assert!(plan.contains("note (ticket.comment), wave 0") && plan.contains("Triage started"), "{plan}");
    b.click_through("#publish-triage").await;
    assert_eq!(b.text("#notice").await, "Saved triage version 1 (published).");
    // its versions, and a version's document saved again as the draft
    b.click_through("#versions-triage").await;
    assert!(b.text("#versions").await.contains("Published"));
    assert!(value(&b, "source").await.contains("Triage started"));
    b.click_through("#save").await;
    assert_eq!(b.text("#notice").await, "Saved triage version 2 (a draft).");
    audit(&b, "admin-playbooks").await;

    // SLAs: a calendar and a policy from their JSON documents (a bad one refused with where),
    // then the preview says when a ticket created at a chosen instant is due
    b.goto(&format!("{}/portal/admin/sla", app.base)).await;
    b.fill("#calendar", r#"{"name": "Bad", "spec": {"time_zone": "Mars/Olympus", "weekly": []}}"#).await;
    b.click_through("#save-calendar").await;
    assert!(b.text("#calendar-errors").await.contains("/spec/time_zone"), "{}", b.text("#calendar-errors").await);
    b.goto(&format!("{}/portal/admin/sla", app.base)).await;
    b.click_through("#save-calendar").await;
    assert_eq!(b.text("#notice").await, "Saved Paris office hours.");
    b.click_through("#save-policy").await;
    assert_eq!(b.text("#notice").await, "Saved Standard incidents.");
    assert!(b.text("#policies").await.contains("Resolution: P1 4h"), "{}", b.text("#policies").await);
    b.select("#kind", "incident").await;
    b.select("#impact", "1").await;
    b.select("#urgency", "1").await;
    b.fill("#at", "2026-12-04T16:30:00Z").await;
    b.click_through("#show-preview").await;
    let preview = b.text("#preview").await;
    assert!(
        preview.contains("Standard incidents") && preview.contains("Resolution due 2026-12-04 20:30 UTC"),
        "{preview}"
    );
    audit(&b, "admin-sla").await;

    // users, roles and teams
    b.goto(&format!("{}/portal/admin/people", app.base)).await;
    let pat = format!("pat@{}.example", t.slug);
    b.fill("#new-email", &pat).await;
    b.fill("#new-name", "Pat Agent").await;
    b.fill("#new-password", "a long enough password").await;
    b.click("form[action='/portal/admin/people/users'] input[value='agent']").await;
    b.click_through("#create-user").await;
    assert_eq!(b.text("#notice").await, "Saved Pat Agent.");
    assert!(b.text("#users").await.contains(&pat));
    b.fill("#new-team", "Desk").await;
    b.click_through("#create-team").await;
    assert_eq!(b.text("#notice").await, "Saved Desk.");
    b.fill("#member-0", &pat).await;
    b.click_through("#add-member-0").await;
    assert!(b.text("#teams").await.contains("Pat Agent"), "{}", b.text("#teams").await);
    audit(&b, "admin-people").await;
    let r = app.get(Some(&t.admin.token), "/api/v1/users?q=pat").await;
    assert_eq!(r.json["items"][0]["roles"], json!(["agent"]), "{}", r.body);

    // the change routing, as a JSON document
    b.goto(&format!("{}/portal/admin/routing", app.base)).await;
    let stored = value(&b, "document").await;
    b.fill("#document", "{\"standard\": ").await;
    b.click_through("#save").await;
    assert!(b.text("#errors").await.contains("line 1, column"), "{}", b.text("#errors").await);
    // the default routing asks a CAB this tenant does not have: refused, saying so
    b.fill("#document", &stored).await;
    b.click_through("#save").await;
    assert!(b.text("#errors").await.contains("/emergency/chain"), "{}", b.text("#errors").await);
    let auto = r#"{"standard": {"auto_approve": {"reason": "pre-approved"}}, "normal": {"auto_approve": {"reason": "small team"}}, "emergency": {"auto_approve": {"reason": "small team"}}}"#;
    b.fill("#document", auto).await;
    b.click_through("#save").await;
    assert_eq!(b.text("#notice").await, "Saved the change routing.");
    assert!(value(&b, "document").await.contains("small team"));
    audit(&b, "admin-routing").await;

    // a running playbook run is cancelled from its ticket's page
    let slow = "name: slow\ntriggers: [manual]\nsteps:\n  - id: later\n    action: wait\n    with: { duration: 1h }\n";
    let r = app.post(Some(&t.admin.token), "/api/v1/playbooks", &json!({"source": slow})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let publish = format!("/api/v1/playbooks/{}/versions/1/publish", r.json["playbook_id"].as_str().unwrap());
    assert_eq!(app.post(Some(&t.admin.token), &publish, &json!({})).await.status, 200);
    let incident = app.incident(&t.requester, "Slow playbook").await;
    let page = format!("{}/portal/tickets/{}", app.base, incident["number"].as_str().unwrap());
    b.goto(&page).await;
    b.select("#playbook", "slow").await;
    b.click_through("#run-playbook").await;
    reload_until(&b, &page, "#runs", "slow run 1: Running").await;
    b.fill("#cancel-reason-1", "Not needed after all").await;
    b.click_through("#cancel-1").await;
    reload_until(&b, &page, "#runs", "slow run 1: Cancelled").await;

    // the audit log, filtered: the item saved above
    b.goto(&format!("{}/portal/admin/audit", app.base)).await;
    b.fill("#action", "catalog_items").await;
    b.click_through("#apply").await;
    let entries = b.text("#entries").await;
    assert!(entries.contains("catalog_items.insert") && entries.contains("Monitor"), "{entries}");
    assert!(!entries.contains("playbook"), "only what the filter names: {entries}");
    audit(&b, "admin-audit").await;
    b.close().await;
}
