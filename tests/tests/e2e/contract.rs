//! The OpenAPI document tells the truth, and a fuzzer proves it (issue 8, item 15).
//!
//! Schemathesis generates requests from `/api/v1/openapi.json`, valid and invalid, sends them
//! to a real API and checks every answer against the document with all its checks: statuses,
//! content types, headers and bodies as documented, nothing valid refused, nothing invalid
//! accepted, no 5xx (but `/ready`'s documented 503), resources it created found again. What a schema cannot say (input checked
//! against stored data, links whose tokens are signed) is configured per operation, with the
//! reason, in `tests/schemathesis.toml`; no operation is left out.
//!
//! `./dev` installs schemathesis (PyPI, pinned) into `.archer/tools`; without it this test
//! fails rather than skips, so that CI cannot pass without running it.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use archer_tests::{Options, TestApp, spawn_app_with};

/// Fixed, so that a run is reproducible; the examples per operation and phase are bounded so
/// that both passes fit the suite's time (about a minute on two cores).
const SEED: &str = "20261130";
const MAX_EXAMPLES: &str = "10";

/// `ARCHER_SCHEMATHESIS_BIN`, else the one `./dev` installs into `.archer/tools/bin`.
fn schemathesis_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ARCHER_SCHEMATHESIS_BIN") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.archer/tools/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is missing ({}): run `./dev test` (it installs it) or set ARCHER_SCHEMATHESIS_BIN",
        bin.display()
    );
    bin
}

/// Runs every phase and every check against `app`, as the holder of `token`.
async fn schemathesis(app: &TestApp, token: &str) -> Output {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    // whatever it writes stays out of the checkout
    let cwd = tempfile::tempdir().expect("a directory to run in");
    let run = tokio::process::Command::new(schemathesis_bin())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", app.base))
        .args(["--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // every check runs (schemathesis's default); not `--checks all`, which would override
        // the one check tests/schemathesis.toml turns off for one operation, saying why
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        // one worker: with two, Hypothesis's lambda-source cache (not thread-safe) raced and
        // schemathesis reported its own KeyError as a flaky runtime error
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .arg("--no-color")
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finished within 5 minutes")
        .expect("run schemathesis")
}

/// Fails with the whole report; otherwise prints its warnings and summary.
fn assert_passed(who: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis, as the {who}, found the API unlike its document:\n{stdout}\n{stderr}");
    let tail = stdout.find("== WARNINGS ==").or_else(|| stdout.find("== SUMMARY ==")).unwrap_or(0);
    eprintln!("schemathesis, as the {who}:\n{}", &stdout[tail..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_api_as_its_openapi_document_says() {
    // a database and tenant of its own: the fuzzer reuses ids from responses, so it must never
    // meet another test's data, nor demo data
    let app = spawn_app_with(Options { worker: false, relay: false }).await;
    let t = app.tenant().await;
    // the admin may do everything: every operation's own logic
    let started = Instant::now();
    let admin = schemathesis(&app, &t.admin.token).await;
    eprintln!("schemathesis as the admin took {:?}", started.elapsed());
    assert_passed("admin", &admin);
    // a requester may do little: every refusal of permission, as documented
    let started = Instant::now();
    let requester = schemathesis(&app, &t.requester.token).await;
    eprintln!("schemathesis as a requester took {:?}", started.elapsed());
    assert_passed("requester", &requester);
    app.stop().await;
}
