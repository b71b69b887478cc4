//! The browser harness (`archer_tests::browser`) against a real page and a real form POST, served
//! by a tiny axum app inside the test: no PostgreSQL, no Temporal.

use std::time::Duration;

use archer_tests::browser::Browser;
use archer_tests::eventually;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

const FORM: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Approve REQ-000042</title></head>
<body>
  <h1 id="title">Approve REQ-000042</h1>
  <form method="post" action="/done">
    <input type="hidden" name="token" value="t0k3n-42">
    <label for="comment">Comment</label>
    <textarea id="comment" name="comment"></textarea>
    <button id="confirm" type="submit">Approve</button>
  </form>
</body>
</html>"#;

#[derive(Deserialize)]
struct Decision {
    token: String,
    comment: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn done(Form(d): Form<Decision>) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Done</title></head><body>\
         <p id=\"outcome\">{}</p><p id=\"token\">{}</p></body></html>",
        escape(&d.comment),
        escape(&d.token)
    ))
}

/// The app on 127.0.0.1, on a port of its own; returns its base URL.
async fn serve() -> String {
    let app = Router::new().route("/form", get(|| async { Html(FORM) })).route("/done", post(done));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn fills_and_posts_a_form() {
    let base = serve().await;
    let browser = Browser::start().await;

    browser.goto(&format!("{base}/form")).await;
    assert_eq!(browser.text("#title").await, "Approve REQ-000042");
    assert!(browser.page_text().await.contains("Comment"));

    let comment = r#"Fine by me: ship it & say "thanks" <today>"#;
    browser.fill("#comment", comment).await;
    browser.click("#confirm").await;

    assert_eq!(browser.text("#outcome").await, comment);
    assert_eq!(browser.text("#token").await, "t0k3n-42");
    assert_eq!(browser.current_url().await, format!("{base}/done"));
    browser.close().await;
}

/// Whether `pid` is a live process (zombies are dead: they only wait to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// A test that panics with a browser open leaves no chromedriver or Chromium behind.
#[tokio::test]
async fn a_panicking_test_leaves_no_browser_running() {
    let base = serve().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let browser = Browser::start().await;
        browser.goto(&format!("{base}/form")).await;
        tx.send(browser.processes()).unwrap();
        panic!("a test fails with its browser open");
    });
    let processes = rx.await.unwrap();
    assert!(processes.len() > 2, "chromedriver, Chromium and its helpers: {processes:?}");
    assert!(test.await.unwrap_err().is_panic());
    eventually(Duration::from_secs(10), "the browser's processes to end", || async {
        processes.iter().all(|&pid| !alive(pid))
    })
    .await;
}
