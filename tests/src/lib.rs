//! The end-to-end test harness: the real API, outbox relay and worker against real
//! PostgreSQL and Temporal.
//!
//! The suite shares one PostgreSQL cluster and one Temporal dev server per run (started by
//! `archer dev --exec`, which `./dev test` uses); each test gets its own database (a copy of a
//! migrated template), its own tenant slugs and its own task queue, so tests run in parallel.

pub mod approvals;
pub mod bench;
pub mod browser;
pub mod engine;
pub mod http;
pub mod playbooks;
pub mod processes;
pub mod sla;
pub mod smtp;
pub mod temporal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use archer_api::config::Config;
use archer_api::server::RunningServer;
use archer_store::{Clock, Db, SystemClock};
use archer_workers::{TemporalConfig, WorkerHandle};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

pub use http::{Resp, TestUser};

/// The signing key tests use, so they can forge tokens (expired, tampered) on purpose.
pub const JWT_SECRET: &str = "archer-test-secret-archer-test-secret-0123456789";
pub const PASSWORD: &str = "correct horse battery";

/// Where the shared services are.
#[derive(Debug, Clone)]
pub struct Services {
    /// The cluster's `postgres` database, as superuser.
    pub admin_url: String,
    pub temporal_address: String,
}

pub fn services() -> Services {
    crypto();
    let get = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!(
                "{k} is not set. These tests run against real PostgreSQL and Temporal: \
                 run them with `./dev test` (or `archer dev --exec -- cargo nextest run`)"
            )
        })
    };
    Services { admin_url: get("ARCHER_TEST_DATABASE_URL"), temporal_address: get("ARCHER_TEST_TEMPORAL_ADDRESS") }
}

fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("database url");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Logs go to the test output only when `TEST_LOG` is set.
/// Makes ring the process's TLS provider. The workers' reqwest is built with
/// `rustls-no-provider` (they configure rustls with ring themselves), and Cargo unifies that
/// feature into every reqwest of the workspace, so a client built with defaults needs a process
/// provider; tests build several.
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        archer_api::telemetry::init(archer_api::config::LogFormat::Pretty);
    }
}

const TEMPLATE: &str = "archer_template";

/// A fresh, migrated database of its own; returns its URL.
pub async fn fresh_database() -> String {
    let s = services();
    let mut admin = sqlx::PgConnection::connect(&s.admin_url).await.expect("connect to the test cluster");
    sqlx::query("SELECT pg_advisory_lock(4242)").execute(&mut admin).await.expect("template lock");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(TEMPLATE)
        .fetch_optional(&mut admin)
        .await
        .expect("look up template");
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {TEMPLATE}")))
            .execute(&mut admin)
            .await
            .expect("create template");
        let pool = archer_store::connect(&with_db(&s.admin_url, TEMPLATE), 2).await.expect("connect template");
        archer_store::migrate(&pool).await.expect("migrate template");
        pool.close().await;
    }
    let name = format!("test_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    sqlx::query("SELECT pg_advisory_unlock(4242)").execute(&mut admin).await.expect("template unlock");
    with_db(&s.admin_url, &name)
}

/// A fresh, migrated database of its own (see [`fresh_database`]) as the store sees it, on
/// the system clock: for tests of the store alone, without an API, a relay or a worker.
pub async fn fresh_db() -> Db {
    init_logging();
    let pool = archer_store::connect(&fresh_database().await, 5).await.expect("test pool");
    Db::new(pool, Arc::new(SystemClock))
}

/// A unique tenant slug (workflow ids share the Temporal namespace across tests).
pub fn unique_slug(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Configuration for an API and worker of this test.
pub fn config(database_url: &str, task_queue: &str, smtp_url: &str) -> Config {
    let s = services();
    Config::figment(None)
        .set("smtp_url", smtp_url)
        .set("listen", "127.0.0.1:0")
        .set("database_url", database_url)
        .set("database_max_connections", 30)
        .set("temporal_address", s.temporal_address)
        .set("task_queue", task_queue)
        // the portal links agents to a ticket's workflow there
        .set("temporal_ui_url", "http://127.0.0.1:8233")
        .set("jwt_secret", JWT_SECRET)
        // every test logs in from 127.0.0.1; the per-address limit has its own test
        .set("login_rate_burst", 10_000)
        .extract()
        .expect("test configuration")
}

pub struct Options {
    pub worker: bool,
    pub relay: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { worker: true, relay: true }
    }
}

/// An API (with relay) and a worker, on a database and task queue of their own.
pub struct TestApp {
    pub base: String,
    /// Every email the app sends arrives here.
    pub mail: smtp::SmtpSink,
    /// The app's database as its owner, to look at rows across tenants.
    pub pool: PgPool,
    /// The same pool with the app's clock: for transactions a test opens itself
    /// (`TenantTx::begin(&app.db, ..)`) and provisioning, stamped like the app's own.
    pub db: Db,
    pub database_url: String,
    pub task_queue: String,
    pub config: Config,
    pub http: reqwest::Client,
    server: Option<RunningServer>,
    worker: Option<WorkerHandle>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    spawn_app_with_clock(opts, Arc::new(SystemClock)).await
}

/// An app whose API, relay and worker read time from `clock`: pass a clone of an
/// `archer_store::ManualClock` to fix the time and move it on.
pub async fn spawn_app_with_clock(opts: Options, clock: Arc<dyn Clock>) -> TestApp {
    init_logging();
    let database_url = fresh_database().await;
    let task_queue = format!("archer-test-{}", Uuid::new_v4().simple());
    let mail = smtp::SmtpSink::start().await;
    let mut config = config(&database_url, &task_queue, mail.url().as_str());
    config.relay = opts.relay;
    let pool = archer_store::connect(&database_url, 10).await.expect("test pool");
    let mut app = TestApp {
        base: String::new(),
        mail,
        db: Db::new(pool.clone(), clock),
        pool,
        database_url,
        task_queue,
        config: config.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        server: None,
        worker: None,
    };
    app.start_server().await;
    if opts.worker {
        app.start_worker().await;
    }
    app
}

impl TestApp {
    pub fn temporal_config(&self) -> TemporalConfig {
        self.config.temporal()
    }

    pub async fn start_server(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // links in emails (approval decisions) point at this server
        self.config.public_url = format!("http://{addr}").parse().expect("public url");
        let server =
            archer_api::server::start(self.config.clone(), listener, self.db.clock().clone()).await.expect("start API");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    pub async fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    pub async fn start_worker(&mut self) {
        let cfg = self.temporal_config();
        let deps = self.config.worker_deps(self.db.clock().clone());
        let w = tokio::task::spawn_blocking(move || archer_workers::spawn_worker(cfg, deps))
            .await
            .expect("join")
            .expect("start worker");
        self.worker = Some(w);
    }

    pub async fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            tokio::task::spawn_blocking(move || w.shutdown()).await.expect("join").expect("worker shutdown");
        }
    }

    /// Stops the API and the worker.
    pub async fn stop(mut self) {
        self.stop_server().await;
        self.stop_worker().await;
        self.pool.close().await;
    }

    /// Waits until every outbox row has been delivered to Temporal.
    pub async fn outbox_drained(&self) {
        self.outbox_drained_within(Duration::from_secs(60)).await
    }

    pub async fn outbox_drained_within(&self, timeout: Duration) {
        eventually(timeout, "the outbox to drain", || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .expect("count outbox");
            n == 0
        })
        .await;
    }

    /// Counts rows with a query (as the schema owner, across tenants).
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.expect("count")
    }

    /// A tenant with an admin, an agent, a manager and a requester, all logged in.
    pub async fn tenant(&self) -> TestTenant {
        let slug = unique_slug("t");
        let id = archer_api::seed::provision_tenant(&self.db, &slug, &format!("Tenant {slug}")).await.expect("tenant");
        let mut users = Vec::new();
        for (name, roles) in [
            ("admin", vec!["admin"]),
            ("agent", vec!["agent"]),
            ("manager", vec!["manager"]),
            ("requester", vec!["requester"]),
        ] {
            let email = format!("{name}@{slug}.example");
            let uid = archer_api::seed::provision_user(&self.db, id, &email, name, PASSWORD, &roles, None)
                .await
                .expect("user");
            let token = self.login(&email, PASSWORD).await;
            users.push(TestUser { id: uid, email, token });
        }
        let mut it = users.into_iter();
        let mut next = || it.next().expect("four users");
        TestTenant { id, slug, admin: next(), agent: next(), manager: next(), requester: next() }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.post(None, "/api/v1/auth/login", &serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(r.status, 200, "login {email}: {}", r.body);
        r.json["access_token"].as_str().expect("access token").to_owned()
    }
}

pub struct TestTenant {
    pub id: Uuid,
    pub slug: String,
    pub admin: TestUser,
    pub agent: TestUser,
    pub manager: TestUser,
    pub requester: TestUser,
}

/// Polls `check` until it holds or `timeout` passes (then panics naming `what`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `archer` binary built alongside the tests (`ARCHER_TEST_BIN` overrides: a `TEST_` name,
/// which the configuration loader leaves alone, so the apps the tests spawn still start).
pub fn archer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ARCHER_TEST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // test binaries live in target/<profile>/deps, other binaries beside `archer`
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join("archer")).collect();
    let bin = candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| candidates[0].clone());
    assert!(bin.exists(), "{} is missing: build it with `cargo build --bin archer` (./dev test does)", bin.display());
    bin
}
