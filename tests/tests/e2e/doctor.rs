//! `archer doctor` (issue 13) against the real parts: a healthy setup (migrated database,
//! worker polling, SMTP listening, API up) passes every check, in process and as the binary;
//! each broken part gives its own line with its fix, the checks that depend on it are skipped,
//! every other check still passes, and the exit status says whether anything failed.

use std::collections::BTreeMap;
use std::time::Duration;

use archer_api::config::DEV_SECRETS_KEY;
use archer_api::doctor::{self, Status, names};
use archer_tests::{JWT_SECRET, Options, TestApp, archer_bin, eventually, fresh_database, services, spawn_app_with};
use sqlx::Connection;
use uuid::Uuid;

/// Every check a configuration that loads gets, in the order printed.
const ALL: [&str; 11] = [
    names::CONFIGURATION,
    names::DATABASE,
    names::MIGRATIONS,
    names::APP_ROLE,
    names::TEMPORAL,
    names::NAMESPACE,
    names::SEARCH_ATTRIBUTES,
    names::TASK_QUEUE,
    names::SMTP,
    names::PUBLIC_URL,
    names::API,
];

/// The `ARCHER_*` variables of `app`'s setup: its database, its worker's task queue, its SMTP
/// sink, its API.
fn env(app: &TestApp) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("ARCHER_DATABASE_URL", app.database_url.clone()),
        ("ARCHER_TEMPORAL_ADDRESS", services().temporal_address),
        ("ARCHER_TEMPORAL_NAMESPACE", "default".to_owned()),
        ("ARCHER_TASK_QUEUE", app.task_queue.clone()),
        ("ARCHER_SMTP_URL", app.mail.url().to_string()),
        ("ARCHER_PUBLIC_URL", app.base.clone()),
        ("ARCHER_LISTEN", app.base.trim_start_matches("http://").to_owned()),
        ("ARCHER_JWT_SECRET", JWT_SECRET.to_owned()),
        ("ARCHER_SECRETS_KEY", DEV_SECRETS_KEY.to_owned()),
    ])
}

/// What `archer doctor` printed, and its exit status.
struct Run {
    code: i32,
    stdout: String,
}

impl Run {
    /// Each check's status label (`ok`, `warn`, `FAIL`, `skip`) and its line.
    fn lines(&self) -> BTreeMap<String, (String, String)> {
        let lines: BTreeMap<String, (String, String)> = self
            .stdout
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (label, rest) = l.split_at(4);
                let name = rest.trim_start().split_once(": ").expect("a check line").0;
                (name.to_owned(), (label.trim().to_owned(), l.to_owned()))
            })
            .collect();
        let printed = self.stdout.lines().take_while(|l| !l.is_empty()).count();
        assert_eq!(lines.len(), printed, "one line per check:\n{}", self.stdout);
        lines
    }

    fn label(&self, name: &str) -> String {
        self.lines().get(name).map(|(l, _)| l.clone()).unwrap_or_else(|| panic!("no {name} line in\n{}", self.stdout))
    }

    fn line(&self, name: &str) -> String {
        self.lines().get(name).map(|(_, l)| l.clone()).unwrap_or_else(|| panic!("no {name} line in\n{}", self.stdout))
    }
}

/// Runs the `archer doctor` binary with exactly `env` as its configuration.
async fn doctor_bin(env: &BTreeMap<&'static str, String>, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(archer_bin());
    cmd.arg("doctor").args(args);
    // only this setup's configuration (the suite's own ARCHER_TEST_* variables are not configuration)
    for (k, _) in std::env::vars() {
        if k.starts_with("ARCHER_") && !k.starts_with("ARCHER_TEST_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("archer doctor finishes")
        .expect("run archer doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "archer doctor wrote to stderr: {stderr}\nstdout:\n{stdout}");
    Run { code: out.status.code().expect("an exit status"), stdout }
}

/// The database password of `url`, which nothing may print.
fn password(url: &str) -> String {
    url::Url::parse(url).unwrap().password().expect("the test cluster has a password").to_owned()
}

/// `url` with another user, password or database.
fn with(url: &str, user: Option<&str>, password: Option<&str>, database: Option<&str>) -> String {
    let mut u = url::Url::parse(url).unwrap();
    if let Some(user) = user {
        u.set_username(user).unwrap();
    }
    if let Some(p) = password {
        u.set_password(Some(p)).unwrap();
    }
    if let Some(d) = database {
        u.set_path(&format!("/{d}"));
    }
    u.to_string()
}

/// The app and the worker it polls with are up, so the pollers show (a moment after starting).
async fn healthy_app() -> TestApp {
    let mut app = spawn_app_with(Options::default()).await;
    app.config.listen = app.base.trim_start_matches("http://").parse().unwrap();
    let config = app.config.clone();
    eventually(Duration::from_secs(30), "the worker to poll its task queue", || async {
        doctor::run(&config, doctor::DEFAULT_TIMEOUT).await.check(names::TASK_QUEUE).unwrap().status == Status::Ok
    })
    .await;
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_setup_passes_every_check() {
    let app = healthy_app().await;

    // in process
    let report = doctor::run(&app.config, doctor::DEFAULT_TIMEOUT).await;
    assert!(report.passed, "{}", report.text());
    assert!(report.checks.iter().all(|c| c.status == Status::Ok), "{}", report.text());
    assert_eq!(report.checks.len(), ALL.len() - 1, "{}", report.text());

    // the binary, configured only by ARCHER_* variables
    let run = doctor_bin(&env(&app), &[]).await;
    println!("{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let lines = run.lines();
    assert_eq!(
        lines.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(),
        ALL.into(),
        "{}",
        run.stdout
    );
    for name in ALL {
        assert_eq!(run.label(name), "ok", "{}", run.stdout);
    }
    assert!(run.stdout.ends_with("\n11 ok, 0 warnings, 0 failed, 0 skipped: nothing failed\n"), "{}", run.stdout);
    assert!(run.line(names::TASK_QUEUE).contains("workflow: archer@"), "the pollers are named: {}", run.stdout);
    assert!(run.line(names::API).contains("is ready"), "{}", run.stdout);
    assert!(!run.stdout.contains(&password(&app.database_url)), "the database password is printed:\n{}", run.stdout);

    // the same as JSON
    let run = doctor_bin(&env(&app), &["--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["passed"], true, "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), ALL.len(), "{json:#}");
    assert!(checks.iter().all(|c| c["status"] == "ok" && c["fix"].is_null()), "{json:#}");

    app.stop().await;
}

/// One broken part: the environment it changes, the check that must say so (how, and the fix),
/// the checks that then cannot run, and the exit status.
struct Case {
    what: &'static str,
    set: Vec<(&'static str, String)>,
    check: &'static str,
    status: &'static str,
    says: Vec<String>,
    fix: Vec<String>,
    skipped: &'static [&'static str],
    code: i32,
    /// A secret the output must not contain.
    secret: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_part_fails_its_own_check_with_the_fix() {
    let app = healthy_app().await;
    let admin_url = services().admin_url;
    let real_password = password(&app.database_url);
    let free_port = || archer_api::devstack::free_port().unwrap();

    // an empty database: nothing migrated
    let empty = format!("doctor_empty_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {empty}"))).execute(&mut admin).await.unwrap();
    // a database migrated by a newer Archer (a migration this binary does not know)
    let ahead_url = fresh_database().await;
    let mut ahead = sqlx::PgConnection::connect(&ahead_url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut ahead)
    .await
    .unwrap();
    ahead.close().await.unwrap();
    // a login role that may read the migrations but is not a member of archer_app
    let outsider = format!("doctor_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let outsider_url = fresh_database().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {outsider} LOGIN PASSWORD 'outsider-pw-4711'")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut owner = sqlx::PgConnection::connect(&outsider_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("GRANT SELECT ON _sqlx_migrations TO {outsider}")))
        .execute(&mut owner)
        .await
        .unwrap();
    let missing_namespace = format!("doctor-missing-{}", Uuid::new_v4().simple());
    let idle_queue = format!("doctor-idle-{}", Uuid::new_v4().simple());
    let nowhere = free_port();
    let database_skips: &[&str] = &[names::MIGRATIONS, names::APP_ROLE];
    let temporal_skips: &[&str] = &[names::NAMESPACE, names::SEARCH_ATTRIBUTES, names::TASK_QUEUE];

    let cases = vec![
        Case {
            what: "a wrong database password",
            set: vec![("ARCHER_DATABASE_URL", with(&app.database_url, None, Some("wrong-pw-0815"), None))],
            check: names::DATABASE,
            status: "FAIL",
            says: vec!["password authentication failed".into()],
            fix: vec!["correct the user or password in database_url (ARCHER_DATABASE_URL)".into()],
            skipped: database_skips,
            code: 1,
            secret: Some("wrong-pw-0815".into()),
        },
        Case {
            what: "an unmigrated database",
            set: vec![("ARCHER_DATABASE_URL", with(&app.database_url, None, None, Some(&empty)))],
            check: names::MIGRATIONS,
            status: "FAIL",
            says: vec![format!("{n} of {n} migrations pending: 0001 foundation", n = migrations())],
            fix: vec!["run `archer migrate`".into()],
            skipped: &[],
            code: 1,
            secret: None,
        },
        Case {
            what: "a database ahead of the binary",
            set: vec![("ARCHER_DATABASE_URL", ahead_url.clone())],
            check: names::MIGRATIONS,
            status: "FAIL",
            says: vec!["migrations this binary does not know (99990101)".into()],
            fix: vec!["this binary is too old".into()],
            skipped: &[],
            code: 1,
            secret: None,
        },
        Case {
            what: "a role that is not a member of archer_app",
            set: vec![("ARCHER_DATABASE_URL", with(&outsider_url, Some(&outsider), Some("outsider-pw-4711"), None))],
            check: names::APP_ROLE,
            status: "FAIL",
            says: vec![format!("\"{outsider}\" may not SET ROLE archer_app")],
            fix: vec![format!("GRANT archer_app TO \"{outsider}\"")],
            skipped: &[],
            code: 1,
            secret: Some("outsider-pw-4711".into()),
        },
        Case {
            what: "a Temporal address where nothing listens",
            set: vec![("ARCHER_TEMPORAL_ADDRESS", format!("http://127.0.0.1:{nowhere}"))],
            check: names::TEMPORAL,
            status: "FAIL",
            says: vec![format!("127.0.0.1:{nowhere}")],
            fix: vec!["check temporal_address (ARCHER_TEMPORAL_ADDRESS)".into()],
            skipped: temporal_skips,
            code: 1,
            secret: None,
        },
        Case {
            what: "a namespace that does not exist",
            set: vec![("ARCHER_TEMPORAL_NAMESPACE", missing_namespace.clone())],
            check: names::NAMESPACE,
            status: "FAIL",
            says: vec![format!("namespace \"{missing_namespace}\" does not exist")],
            fix: vec![format!("temporal operator namespace create --namespace {missing_namespace}")],
            skipped: &[names::SEARCH_ATTRIBUTES, names::TASK_QUEUE],
            code: 1,
            secret: None,
        },
        Case {
            what: "a task queue nobody polls (a warning: expected before the worker starts)",
            set: vec![("ARCHER_TASK_QUEUE", idle_queue.clone())],
            check: names::TASK_QUEUE,
            status: "warn",
            says: vec![
                format!("no worker polls task queue \"{idle_queue}\" for workflow or activity tasks"),
                "expected if no `archer worker` has started yet".into(),
            ],
            fix: vec![format!("start `archer worker` with ARCHER_TASK_QUEUE={idle_queue}")],
            skipped: &[],
            code: 0,
            secret: None,
        },
        Case {
            what: "an SMTP port where nothing listens",
            set: vec![("ARCHER_SMTP_URL", format!("smtp://127.0.0.1:{nowhere}"))],
            check: names::SMTP,
            status: "FAIL",
            says: vec![format!("smtp://127.0.0.1:{nowhere}"), "cannot connect".into()],
            fix: vec!["smtp_url (ARCHER_SMTP_URL)".into()],
            skipped: &[],
            code: 1,
            secret: None,
        },
        Case {
            what: "a public URL with a query",
            set: vec![("ARCHER_PUBLIC_URL", "https://archer.example.com/?next=1".into())],
            check: names::PUBLIC_URL,
            status: "FAIL",
            says: vec!["https://archer.example.com/?next=1 is not usable".into(), "query".into()],
            fix: vec!["set public_url (ARCHER_PUBLIC_URL)".into()],
            skipped: &[names::API],
            code: 1,
            secret: None,
        },
        Case {
            what: "a public URL where the API is not up (yet)",
            set: vec![
                ("ARCHER_PUBLIC_URL", format!("http://127.0.0.1:{nowhere}")),
                ("ARCHER_LISTEN", format!("127.0.0.1:{nowhere}")),
            ],
            check: names::API,
            status: "warn",
            says: vec!["not reachable from here".into(), "(expected if the API is not up yet)".into()],
            fix: vec!["start `archer serve`".into()],
            skipped: &[],
            code: 0,
            secret: None,
        },
    ];

    let base = env(&app);
    let runs = futures::future::join_all(cases.iter().map(|case| {
        let mut env = base.clone();
        env.extend(case.set.iter().cloned());
        async move { doctor_bin(&env, &[]).await }
    }))
    .await;
    for (case, run) in cases.iter().zip(&runs) {
        println!("--- {}\n{}", case.what, run.stdout);
        let ctx = format!("{}:\n{}", case.what, run.stdout);
        assert_eq!(run.code, case.code, "exit status for {ctx}");
        assert_eq!(run.label(case.check), case.status, "{ctx}");
        let line = run.line(case.check);
        let (said, fix) = line.split_once(". Fix: ").unwrap_or_else(|| panic!("no fix on the line: {ctx}"));
        for s in &case.says {
            assert!(said.contains(s.as_str()), "{s:?} missing from the {} line: {ctx}", case.check);
        }
        for f in &case.fix {
            assert!(fix.contains(f.as_str()), "{f:?} missing from the fix: {ctx}");
        }
        for name in ALL.iter().filter(|n| **n != case.check) {
            let want = if case.skipped.contains(name) { "skip" } else { "ok" };
            assert_eq!(run.label(name), want, "{name} for {ctx}");
        }
        for secret in case.secret.iter().chain([&real_password]) {
            assert!(!run.stdout.contains(secret.as_str()), "a password is printed for {ctx}");
        }
        let (fails, warns) = if case.status == "FAIL" { (1, 0) } else { (0, 1) };
        let skips = case.skipped.len();
        let summary = format!("{} ok, {warns} warnings, {fails} failed, {skips} skipped", ALL.len() - 1 - skips);
        assert!(run.stdout.contains(&summary), "{summary:?} in {ctx}");
    }

    // a configuration that does not load is the one check, failed, with its key
    let mut env = base.clone();
    env.insert("ARCHER_PUBLIC_URL", "not a url".into());
    let run = doctor_bin(&env, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.lines().len(), 1, "{}", run.stdout);
    let line = run.line(names::CONFIGURATION);
    assert!(
        line.starts_with("FAIL configuration: ") && line.to_lowercase().contains("\"public_url\""),
        "{}",
        run.stdout
    );
    assert!(line.contains("Fix: correct that key"), "{}", run.stdout);

    // the role can be dropped once nothing it holds is left
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY {outsider}"))).execute(&mut owner).await;
    let _ = owner.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {outsider}"))).execute(&mut admin).await;
    app.stop().await;
}

/// How many migrations this binary embeds.
fn migrations() -> usize {
    archer_store::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count()
}
