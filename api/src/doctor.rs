//! `archer doctor`: checks a configuration against the real parts it names and says what to fix.
//!
//! The database (reachable, migrated to exactly this binary's migrations, its role allowed to
//! switch to `archer_app`), Temporal (reachable, the namespace, Archer's search attributes with
//! their types, workers polling the task queue), the SMTP server (answers, offers what the URL
//! asks for) and the public URL (well formed, consistent with `listen`, answering as Archer).
//!
//! Every check runs under a timeout and ends as a [`Check`]: ok, a warning (not fatal, such as
//! no worker polling yet when the doctor runs before the workers start), a failure with its fix,
//! or skipped because a check it depends on failed. [`run`] returns them as a [`Report`], which
//! the CLI prints as lines or JSON; the exit status is 1 when anything failed. Secrets are never
//! shown: the configuration types redact themselves, and every detail goes through
//! [`redact_userinfo`] besides.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::Connection;
use sqlx::migrate::{Migrate, MigrateError};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use temporalio_client::Client;
use temporalio_client::tonic::{Code, IntoRequest};
use temporalio_common::protos::temporal::api::enums::v1::{
    IndexedValueType, NamespaceState, TaskQueueKind, TaskQueueType,
};
use temporalio_common::protos::temporal::api::operatorservice::v1::ListSearchAttributesRequest;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeTaskQueueRequest,
};
use url::Url;

use archer_orchestrator::workflows::search;

use crate::config::{Config, ConfigError};

/// The checks' names, as printed (`ok   database: ...`) and in the JSON report.
pub mod names {
    pub const CONFIGURATION: &str = "configuration";
    pub const DATABASE: &str = "database";
    pub const MIGRATIONS: &str = "migrations";
    pub const APP_ROLE: &str = "app role";
    pub const TEMPORAL: &str = "temporal";
    pub const NAMESPACE: &str = "namespace";
    pub const SEARCH_ATTRIBUTES: &str = "search attributes";
    pub const TASK_QUEUE: &str = "task queue";
    pub const SMTP: &str = "smtp";
    pub const PUBLIC_URL: &str = "public url";
    pub const API: &str = "api";
}

/// How long one check may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The table sqlx records applied migrations in (the store's migrator uses the default).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not fatal, but worth a look (or expected at this stage, as the detail says).
    Warn,
    Fail,
    /// Not run: a check it depends on failed.
    Skip,
}

impl Status {
    /// The line's first column: `ok  `, `warn`, `FAIL`, `skip`.
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// One of [`names`].
    pub name: &'static str,
    pub status: Status,
    /// What was found (for a failure or warning: what is wrong).
    pub detail: String,
    /// What to do about it (failures, and warnings that have a remedy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check { name, status: Status::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check { name, status: Status::Skip, detail: detail.into(), fix: None }
    }

    /// The printed line: `ok   <check>: <detail>`, `FAIL <check>: <what is wrong>. Fix: <what to do>`.
    pub fn line(&self) -> String {
        let detail = redact_userinfo(self.detail.trim_end_matches('.'));
        match &self.fix {
            Some(fix) => format!("{} {}: {detail}. Fix: {}", self.status.label(), self.name, redact_userinfo(fix)),
            None => format!("{} {}: {detail}", self.status.label(), self.name),
        }
    }
}

/// Every check's outcome, in a fixed order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether nothing failed (warnings allowed).
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let checks: Vec<Check> = checks
            .into_iter()
            .map(|c| Check { detail: redact_userinfo(&c.detail), fix: c.fix.as_deref().map(redact_userinfo), ..c })
            .collect();
        Report { passed: !checks.iter().any(|c| c.status == Status::Fail), checks }
    }

    /// The check called `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The process's exit status: 0 when nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.passed { 0 } else { 1 }
    }

    /// One line per check, then the summary.
    pub fn text(&self) -> String {
        let mut out: String = self.checks.iter().map(|c| c.line() + "\n").collect();
        let (ok, warn, fail, skip) =
            (self.count(Status::Ok), self.count(Status::Warn), self.count(Status::Fail), self.count(Status::Skip));
        let verdict = if fail > 0 { "fix the FAIL lines above" } else { "nothing failed" };
        out.push_str(&format!("\n{ok} ok, {warn} warnings, {fail} failed, {skip} skipped: {verdict}\n"));
        out
    }
}

/// Why the doctor could not print its report (its findings are never errors).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `archer doctor`: loads the configuration as `serve` and `worker` do, runs every check, prints
/// the report (lines, or JSON with `json`) and returns the exit status.
pub async fn cli(file: Option<&Path>, json: bool, timeout: Duration) -> Result<i32, DoctorError> {
    let report = run_from(file, timeout).await;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    out.flush()?;
    Ok(report.exit_code())
}

/// Loads the configuration (defaults, `file`, `ARCHER_*`) and checks it; a configuration that
/// does not load is the report's one (failed) check.
pub async fn run_from(file: Option<&Path>, timeout: Duration) -> Report {
    match Config::load(file) {
        Ok(config) => {
            let from = match file {
                Some(f) => format!("defaults, {}, ARCHER_* variables", f.display()),
                None => "defaults and ARCHER_* variables".to_owned(),
            };
            let mut checks = vec![Check::ok(names::CONFIGURATION, format!("loaded ({from})"))];
            checks.extend(run(&config, timeout).await.checks);
            Report::new(checks)
        }
        Err(e) => {
            let what = match &e {
                ConfigError::Load(e) => e.to_string(),
                ConfigError::Invalid(s) => s.clone(),
            };
            Report::new(vec![Check::fail(
                names::CONFIGURATION,
                what,
                "correct that key in the configuration file (--config, ARCHER_CONFIG) or its ARCHER_<KEY> \
                 environment variable (the README's Configuration table lists them)",
            )])
        }
    }
}

/// Checks `config` against the parts it names, each check within `timeout`.
pub async fn run(config: &Config, timeout: Duration) -> Report {
    let (database, temporal, smtp, public) = tokio::join!(
        database(config, timeout),
        temporal(config, timeout),
        smtp(config, timeout),
        public(config, timeout)
    );
    Report::new(database.into_iter().chain(temporal).chain([smtp]).chain(public).collect())
}

/// `fut`, or `None` when it takes longer than `timeout`.
async fn within<T>(timeout: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(timeout, fut).await.ok()
}

/// The innermost error under `e` (`Connection refused (os error 111)` rather than the layers of
/// transport errors wrapped around it).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

// ---- the database ----------------------------------------------------------------------------

async fn database(config: &Config, timeout: Duration) -> Vec<Check> {
    let url = config.database_url.expose_secret();
    let passwords = database_passwords(url);
    let scrub = |s: String| passwords.iter().fold(s, |s, p| s.replace(p.as_str(), "[REDACTED]"));
    let skipped = |why: &str| {
        vec![
            Check::skip(names::MIGRATIONS, format!("not checked: {why}")),
            Check::skip(names::APP_ROLE, format!("not checked: {why}")),
        ]
    };
    let opts = match PgConnectOptions::from_str(url) {
        Ok(o) => o.application_name("archer doctor"),
        Err(e) => {
            let mut out = vec![Check::fail(
                names::DATABASE,
                scrub(format!("database_url is not a PostgreSQL URL: {e}")),
                "set database_url (ARCHER_DATABASE_URL) to postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            )];
            out.extend(skipped("database_url does not parse"));
            return out;
        }
    };
    let user = opts.get_username().to_owned();
    let target =
        format!("postgres://{user}@{}:{}/{}", opts.get_host(), opts.get_port(), opts.get_database().unwrap_or(&user));
    let mut conn = match within(timeout, PgConnection::connect_with(&opts)).await {
        Some(Ok(conn)) => conn,
        Some(Err(e)) => {
            let (what, fix) = connect_failure(&e, &target, &user);
            let mut out = vec![Check::fail(names::DATABASE, scrub(what), fix)];
            out.extend(skipped("the database is unreachable"));
            return out;
        }
        None => {
            let mut out = vec![Check::fail(
                names::DATABASE,
                format!("{target}: no answer within {}", secs(timeout)),
                "check the host and port in database_url (ARCHER_DATABASE_URL), and that nothing (a firewall) \
                 drops the connection",
            )];
            out.extend(skipped("the database is unreachable"));
            return out;
        }
    };
    let version =
        conn.server_version_num().map(|v| format!(" (PostgreSQL {}.{})", v / 10000, v % 10000)).unwrap_or_default();
    let reachable = Check::ok(names::DATABASE, format!("{target} answers{version}"));
    let migrations = match within(timeout, migrations(&mut conn, &user)).await {
        Some(c) => c,
        None => Check::fail(
            names::MIGRATIONS,
            format!("reading {MIGRATIONS_TABLE} took longer than {}", secs(timeout)),
            "look for locks held on it (a migration running?) and try again",
        ),
    };
    let _ = conn.close().await;
    let role = match within(timeout, app_role(config, &user)).await {
        Some(c) => c,
        None => Check::fail(
            names::APP_ROLE,
            format!("switching to archer_app took longer than {}", secs(timeout)),
            "look for locks or a saturated server and try again",
        ),
    };
    vec![
        reachable,
        Check { detail: scrub(migrations.detail.clone()), ..migrations },
        Check { detail: scrub(role.detail.clone()), ..role },
    ]
}

/// The password in a database URL, as written and percent-decoded, to keep out of what is
/// printed.
fn database_passwords(url: &str) -> Vec<String> {
    let Some(raw) = Url::parse(url).ok().and_then(|u| u.password().filter(|p| !p.is_empty()).map(str::to_owned)) else {
        return Vec::new();
    };
    let decoded = percent_decode(&raw);
    if decoded == raw { vec![raw] } else { vec![decoded, raw] }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a failed connection means, and what to do.
fn connect_failure(e: &sqlx::Error, target: &str, user: &str) -> (String, String) {
    let url_key = "database_url (ARCHER_DATABASE_URL)";
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => (
                format!("{target}: password authentication failed for user {user:?}"),
                format!("correct the user or password in {url_key} (percent-encode special characters)"),
            ),
            Some("28000") => (
                format!("{target}: the server refuses user {user:?}: {}", db.message()),
                format!("check the user in {url_key} exists, and that pg_hba.conf lets it connect from this host"),
            ),
            Some("3D000") => (
                format!("{target}: {}", db.message()),
                format!("create the database (owned by {user:?}), then run `archer migrate`; or correct {url_key}"),
            ),
            Some("53300") => (
                format!("{target}: the server has no connection slot left: {}", db.message()),
                "raise PostgreSQL's max_connections or lower database_max_connections across Archer's processes".into(),
            ),
            _ => (format!("{target}: {}", db.message()), format!("check {url_key}")),
        },
        sqlx::Error::Io(io) => (
            format!("cannot reach {target}: {io}"),
            format!(
                "check the host and port in {url_key}, and that PostgreSQL runs and accepts TCP connections from \
                 this host (listen_addresses)"
            ),
        ),
        sqlx::Error::Tls(tls) => (
            format!("{target}: TLS failed: {tls}"),
            format!("check sslmode (and sslrootcert) in {url_key} against the server's certificate"),
        ),
        other => (format!("{target}: {other}"), format!("check {url_key}")),
    }
}

/// Applied migrations against the ones embedded in this binary.
async fn migrations(conn: &mut PgConnection, user: &str) -> Check {
    let migrate = "run `archer migrate` with this configuration";
    let applied = match conn.list_applied_migrations(MIGRATIONS_TABLE).await {
        Ok(applied) => applied,
        Err(MigrateError::Execute(sqlx::Error::Database(db))) if db.code().as_deref() == Some("42P01") => Vec::new(),
        Err(MigrateError::Execute(sqlx::Error::Database(db))) if db.code().as_deref() == Some("42501") => {
            return Check::fail(
                names::MIGRATIONS,
                format!("user {user:?} may not read {MIGRATIONS_TABLE}: {}", db.message()),
                "connect as the role that owns Archer's schema (the one that ran `archer migrate`)",
            );
        }
        Err(e) => return Check::fail(names::MIGRATIONS, format!("cannot read {MIGRATIONS_TABLE}: {e}"), migrate),
    };
    let dirty = if applied.is_empty() { None } else { conn.dirty_version(MIGRATIONS_TABLE).await.ok().flatten() };
    let known: Vec<_> = archer_store::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).collect();
    let label = |v: i64| match known.iter().find(|m| m.version == v) {
        Some(m) => format!("{v:04} {}", m.description),
        None => format!("{v:04}"),
    };
    let mut problems: Vec<(String, String)> = Vec::new();
    let ahead: Vec<i64> =
        applied.iter().map(|a| a.version).filter(|v| !known.iter().any(|m| m.version == *v)).collect();
    if !ahead.is_empty() {
        problems.push((
            format!(
                "the database has migrations this binary does not know ({}): a newer Archer migrated it",
                list(ahead.iter().map(|v| label(*v)))
            ),
            "run the Archer version that migrated the database (or a newer one); this binary is too old for it".into(),
        ));
    }
    if let Some(v) = dirty {
        problems.push((
            format!("migration {} failed part way and is recorded as unsuccessful", label(v)),
            format!(
                "see what it left behind, repair it by hand, delete its row from {MIGRATIONS_TABLE} and run \
                 `archer migrate`"
            ),
        ));
    }
    let changed: Vec<i64> = applied
        .iter()
        .filter(|a| known.iter().any(|m| m.version == a.version && m.checksum.as_ref() != a.checksum.as_ref()))
        .map(|a| a.version)
        .collect();
    if !changed.is_empty() {
        problems.push((
            format!(
                "applied migrations differ from this binary's ({}): the binary and the database come from different \
                 histories",
                list(changed.iter().map(|v| label(*v)))
            ),
            "run the Archer build whose migrations the database has (migrations are never edited once merged)".into(),
        ));
    }
    let pending: Vec<i64> =
        known.iter().map(|m| m.version).filter(|v| !applied.iter().any(|a| a.version == *v)).collect();
    if !pending.is_empty() {
        problems.push((
            format!(
                "{} of {} migrations pending: {}",
                pending.len(),
                known.len(),
                list(pending.iter().map(|v| label(*v)))
            ),
            migrate.into(),
        ));
    }
    if problems.is_empty() {
        let latest = known.last().map(|m| format!(" (latest {})", label(m.version))).unwrap_or_default();
        return Check::ok(names::MIGRATIONS, format!("all {} migrations applied{latest}", known.len()));
    }
    let (whats, fixes): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
    Check::fail(names::MIGRATIONS, whats.join("; "), fixes.join("; then "))
}

/// At most five items, then how many more.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let shown = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 { format!("{shown} and {} more", items.len() - 5) } else { shown }
}

/// Opens a tenant transaction as every request does (`SET LOCAL ROLE archer_app`), then rolls
/// it back.
async fn app_role(config: &Config, user: &str) -> Check {
    let db = match config.connect_db(1, Arc::new(archer_store::SystemClock)).await {
        Ok(db) => db,
        Err(e) => return Check::fail(names::APP_ROLE, format!("cannot open a pool: {e}"), "see the database check"),
    };
    let begun = archer_store::TenantTx::begin(&db, uuid::Uuid::nil(), &archer_store::AuditContext::default()).await;
    let check = match begun {
        Ok(tx) => {
            drop(tx); // rolled back: nothing was written
            Check::ok(names::APP_ROLE, format!("{user:?} can SET ROLE archer_app (row-level security applies)"))
        }
        Err(archer_store::StoreError::Database(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42501") => {
            Check::fail(
                names::APP_ROLE,
                format!("{user:?} may not SET ROLE archer_app ({}): every tenant request would fail", e.message()),
                format!("as a superuser (or a role with ADMIN on archer_app): GRANT archer_app TO \"{user}\""),
            )
        }
        Err(archer_store::StoreError::Database(sqlx::Error::Database(e))) if e.code().as_deref() == Some("22023") => {
            Check::fail(
                names::APP_ROLE,
                format!("the role archer_app does not exist on this server ({})", e.message()),
                "run `archer migrate` (the first migration creates archer_app and grants it to the migrating role)",
            )
        }
        Err(e) => Check::fail(names::APP_ROLE, format!("SET ROLE archer_app failed: {e}"), "see the database check"),
    };
    db.pool().close().await;
    check
}

// ---- Temporal --------------------------------------------------------------------------------

async fn temporal(config: &Config, timeout: Duration) -> Vec<Check> {
    let cfg = config.temporal();
    let address = cfg.address.to_string();
    let skipped = |why: &str| {
        [names::NAMESPACE, names::SEARCH_ATTRIBUTES, names::TASK_QUEUE]
            .into_iter()
            .map(|n| Check::skip(n, format!("not checked: {why}")))
            .collect::<Vec<_>>()
    };
    let reach = "check temporal_address (ARCHER_TEMPORAL_ADDRESS), and that the Temporal frontend (gRPC, usually \
                 port 7233) runs and is reachable from this host";
    let client = match within(timeout, archer_workers::temporal::connect(&cfg)).await {
        Some(Ok(client)) => client,
        Some(Err(e)) => {
            let what = format!("cannot connect to Temporal at {address}: {}", root_cause(&e));
            return std::iter::once(Check::fail(names::TEMPORAL, what, reach))
                .chain(skipped("Temporal is unreachable"))
                .collect();
        }
        None => {
            return std::iter::once(Check::fail(
                names::TEMPORAL,
                format!("no answer from {address} within {}", secs(timeout)),
                reach,
            ))
            .chain(skipped("Temporal is unreachable"))
            .collect();
        }
    };
    let mut out = vec![Check::ok(names::TEMPORAL, format!("{address} answers"))];
    let namespace = within(timeout, namespace(&client, &cfg.namespace)).await.unwrap_or_else(|| {
        Check::fail(names::NAMESPACE, format!("no answer within {}", secs(timeout)), "check Temporal's health")
    });
    if namespace.status == Status::Fail {
        out.push(namespace);
        out.extend(skipped("the namespace is not usable").into_iter().filter(|c| c.name != names::NAMESPACE));
        return out;
    }
    out.push(namespace);
    out.push(within(timeout, search_attributes(&client, &cfg.namespace)).await.unwrap_or_else(|| {
        Check::fail(names::SEARCH_ATTRIBUTES, format!("no answer within {}", secs(timeout)), "check Temporal's health")
    }));
    out.push(within(timeout, task_queue(&client, &cfg.namespace, &cfg.task_queue)).await.unwrap_or_else(|| {
        Check::fail(names::TASK_QUEUE, format!("no answer within {}", secs(timeout)), "check Temporal's health")
    }));
    out
}

async fn namespace(client: &Client, namespace: &str) -> Check {
    let create = format!(
        "create it (`temporal operator namespace create --namespace {namespace}`; on Temporal Cloud, in its \
         console), or set temporal_namespace (ARCHER_TEMPORAL_NAMESPACE) to an existing one"
    );
    let request = DescribeNamespaceRequest { namespace: namespace.to_owned(), ..Default::default() };
    match client.connection().workflow_service().describe_namespace(request.into_request()).await {
        Ok(r) => {
            let r = r.into_inner();
            let state = r.namespace_info.as_ref().map(|i| i.state).unwrap_or_default();
            let retention = r
                .config
                .and_then(|c| c.workflow_execution_retention_ttl)
                .map(|d| match d.seconds / 86_400 {
                    1 => ", closed workflows kept 1 day".to_owned(),
                    n => format!(", closed workflows kept {n} days"),
                })
                .unwrap_or_default();
            match NamespaceState::try_from(state) {
                Ok(NamespaceState::Registered) => {
                    Check::ok(names::NAMESPACE, format!("{namespace:?} is registered{retention}"))
                }
                Ok(NamespaceState::Deprecated) => Check::warn(
                    names::NAMESPACE,
                    format!("{namespace:?} is deprecated: no new workflows can start in it"),
                    create,
                ),
                _ => Check::fail(names::NAMESPACE, format!("{namespace:?} is deleted or in an unknown state"), create),
            }
        }
        Err(s) if s.code() == Code::NotFound => {
            Check::fail(names::NAMESPACE, format!("namespace {namespace:?} does not exist"), create)
        }
        Err(s) if s.code() == Code::PermissionDenied || s.code() == Code::Unauthenticated => Check::fail(
            names::NAMESPACE,
            format!("not allowed to describe namespace {namespace:?}: {}", s.message()),
            "give Archer's Temporal identity access to the namespace",
        ),
        Err(s) => Check::fail(
            names::NAMESPACE,
            format!("describing namespace {namespace:?}: {}", s.message()),
            "check Temporal's health and logs",
        ),
    }
}

/// Archer's search attributes (`archer_workers::temporal::ensure_search_attributes` registers
/// them), present with their types.
async fn search_attributes(client: &Client, namespace: &str) -> Check {
    let request = ListSearchAttributesRequest { namespace: namespace.to_owned() };
    let existing = match client.connection().operator_service().list_search_attributes(request.into_request()).await {
        Ok(r) => r.into_inner().custom_attributes,
        Err(s) => {
            return Check::fail(
                names::SEARCH_ATTRIBUTES,
                format!("listing the search attributes of {namespace:?}: {}", s.message()),
                "allow Archer the operator API, or compare them by hand with the README (Running it for real)",
            );
        }
    };
    let type_name = |t: i32| IndexedValueType::try_from(t).map(|t| format!("{t:?}")).unwrap_or_else(|_| t.to_string());
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (name, ty) in search::ALL {
        let want = archer_workers::temporal::indexed_value_type(ty);
        match existing.get(*name) {
            None => missing.push(format!("{name} ({want:?})")),
            Some(t) if *t != want as i32 => wrong.push(format!("{name} is {} but must be {want:?}", type_name(*t))),
            Some(_) => {}
        }
    }
    if !wrong.is_empty() {
        let mut what = format!("wrong types on {namespace:?}: {}", wrong.join(", "));
        if !missing.is_empty() {
            what.push_str(&format!("; missing: {}", missing.join(", ")));
        }
        return Check::fail(
            names::SEARCH_ATTRIBUTES,
            what,
            "a search attribute's type cannot change: remove it (`temporal operator search-attribute remove --name \
             NAME`), then run `archer migrate` to register it again",
        );
    }
    if !missing.is_empty() {
        return Check::fail(
            names::SEARCH_ATTRIBUTES,
            format!("missing on {namespace:?}: {}", missing.join(", ")),
            "run `archer migrate` (it registers them; on Temporal Cloud register them by hand, see the README)",
        );
    }
    Check::ok(names::SEARCH_ATTRIBUTES, format!("all {} of Archer's present with their types", search::ALL.len()))
}

/// Workers polling the task queue, for workflow tasks and for activity tasks.
async fn task_queue(client: &Client, namespace: &str, queue: &str) -> Check {
    let mut found = Vec::new();
    for (kind, ty) in [("workflow", TaskQueueType::Workflow), ("activity", TaskQueueType::Activity)] {
        let request = DescribeTaskQueueRequest {
            namespace: namespace.to_owned(),
            task_queue: Some(TaskQueue {
                name: queue.to_owned(),
                kind: TaskQueueKind::Normal as i32,
                ..Default::default()
            }),
            task_queue_type: ty as i32,
            ..Default::default()
        };
        match client.connection().workflow_service().describe_task_queue(request.into_request()).await {
            Ok(r) => {
                let mut who: Vec<String> = r.into_inner().pollers.into_iter().map(|p| p.identity).collect();
                who.sort();
                who.dedup();
                found.push((kind, who));
            }
            Err(s) => {
                return Check::fail(
                    names::TASK_QUEUE,
                    format!("describing task queue {queue:?} ({kind}): {}", s.message()),
                    "check Temporal's health and logs",
                );
            }
        }
    }
    let idle: Vec<&str> = found.iter().filter(|(_, who)| who.is_empty()).map(|(k, _)| *k).collect();
    if !idle.is_empty() {
        return Check::warn(
            names::TASK_QUEUE,
            format!(
                "no worker polls task queue {queue:?} for {} tasks (expected if no `archer worker` has started yet; \
                 otherwise workflows wait and no SLA clock fires)",
                idle.join(" or ")
            ),
            format!(
                "start `archer worker` with ARCHER_TASK_QUEUE={queue} (and the same temporal_address and \
                 temporal_namespace)"
            ),
        );
    }
    let shown: Vec<String> = found.iter().map(|(k, who)| format!("{k}: {}", list(who.iter().cloned()))).collect();
    Check::ok(names::TASK_QUEUE, format!("{queue:?} has pollers ({})", shown.join("; ")))
}

// ---- SMTP ------------------------------------------------------------------------------------

async fn smtp(config: &Config, timeout: Duration) -> Check {
    let shown = config.smtp_url.to_string();
    let mail_fix = "correct smtp_url (ARCHER_SMTP_URL) or mail_from (ARCHER_MAIL_FROM)";
    // the worker's own mailer: the URL as lettre reads it, the From mailbox, then a connection
    // made exactly as sending makes it (TLS and the login included) and a NOOP
    let mailer = match archer_workers::email::Mailer::new(&config.mail()) {
        Ok(m) => m,
        Err(e) => return Check::fail(names::SMTP, e.to_string(), mail_fix),
    };
    let reach = "check the host and port in smtp_url (ARCHER_SMTP_URL), and that the mail server runs and accepts \
                 connections from this host (and, for TLS or a login, that the URL's tls= and credentials match it)";
    match within(timeout, mailer.test_connection()).await {
        None => return Check::fail(names::SMTP, format!("{shown}: no answer within {}", secs(timeout)), reach),
        Some(Err(e)) => return Check::fail(names::SMTP, format!("{shown}: cannot connect: {e}"), reach),
        Some(Ok(())) => {}
    }
    let url = &config.smtp_url.0;
    let tls = url.scheme() == "smtps" || url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
    let how = match (tls, url.username().is_empty()) {
        (true, true) => "connects over TLS and answers",
        (true, false) => "connects over TLS, accepts the login and answers",
        (false, true) => "connects and answers",
        (false, false) => "connects, accepts the login and answers",
    };
    if !tls && !is_loopback_host(url) {
        return Check::warn(
            names::SMTP,
            format!("{shown} {how}, but email (with approval links) may cross the network unencrypted"),
            "use ?tls=required or smtps:// unless the network to the mail server is trusted",
        );
    }
    Check::ok(names::SMTP, format!("{shown} {how}"))
}

// ---- the public URL --------------------------------------------------------------------------

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        // (an IPv4 address in a URL of a scheme the URL standard does not know, such as smtp,
        // is an opaque host name)
        Some(url::Host::Domain(d)) => match d.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => {
                let d = d.to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
        },
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `url` as printed: without a password.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("[REDACTED]"));
    }
    url.to_string()
}

async fn public(config: &Config, timeout: Duration) -> Vec<Check> {
    let form = public_url_form(config);
    if form.status == Status::Fail {
        return vec![form, Check::skip(names::API, "not checked: public_url is not usable")];
    }
    let api = within(timeout, api_answers(&config.public_url, timeout)).await.unwrap_or_else(|| {
        Check::warn(
            names::API,
            format!(
                "{} did not answer within {} (expected if the API is not up yet)",
                shown(&config.public_url),
                secs(timeout)
            ),
            "start `archer serve`, or make public_url the address people reach it at",
        )
    });
    vec![form, api]
}

/// `public_url` on its own and against `listen`.
pub fn public_url_form(config: &Config) -> Check {
    let url = &config.public_url;
    let key = "public_url (ARCHER_PUBLIC_URL)";
    let fix = format!("set {key} to the address people reach the API at, e.g. https://archer.example.com");
    let mut wrong = Vec::new();
    if !matches!(url.scheme(), "http" | "https") {
        wrong.push(format!("its scheme is {:?}, not http or https", url.scheme()));
    }
    if url.host().is_none() {
        wrong.push("it names no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        wrong.push("it carries credentials, which every link would show".to_owned());
    }
    if url.query().is_some() {
        wrong.push("it has a query (?...), which links appended to it would break".to_owned());
    }
    if url.fragment().is_some() {
        wrong.push("it has a fragment (#...), which links appended to it would break".to_owned());
    }
    if !wrong.is_empty() {
        return Check::fail(names::PUBLIC_URL, format!("{} is not usable: {}", shown(url), wrong.join("; ")), fix);
    }
    let loopback = is_loopback_host(url);
    let mut warnings: Vec<(String, String)> = Vec::new();
    if url.scheme() == "http" && !loopback {
        warnings.push((
            format!(
                "{} is plain http on a host other people reach: session cookies lack Secure and links (approval \
                 decisions included) travel unencrypted",
                shown(url)
            ),
            "serve Archer behind TLS (a reverse proxy) and set public_url to its https:// address".into(),
        ));
    }
    if config.listen.ip().is_loopback() && !loopback {
        warnings.push((
            format!(
                "listen is {} (this host only) but public_url names {}: nobody else reaches the API unless a reverse \
                 proxy on this host forwards to it",
                config.listen,
                url.host_str().unwrap_or_default()
            ),
            "set listen (ARCHER_LISTEN) to 0.0.0.0:PORT, or forward to it from a proxy on this host".into(),
        ));
    }
    let same_host = match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            IpAddr::V4(ip) == config.listen.ip() || (loopback && config.listen.ip().is_loopback())
        }
        Some(url::Host::Ipv6(ip)) => {
            IpAddr::V6(ip) == config.listen.ip() || (loopback && config.listen.ip().is_loopback())
        }
        Some(url::Host::Domain(_)) => loopback && config.listen.ip().is_loopback(),
        None => false,
    };
    let public_port = url.port_or_known_default();
    if same_host && config.listen.port() != 0 && public_port != Some(config.listen.port()) {
        warnings.push((
            format!(
                "public_url points at port {} of the host the API listens on, but listen is port {}",
                public_port.map(|p| p.to_string()).unwrap_or_default(),
                config.listen.port()
            ),
            "use listen's port in public_url (or forward to it)".into(),
        ));
    }
    if warnings.is_empty() {
        return Check::ok(names::PUBLIC_URL, format!("{} (listen {})", shown(url), config.listen));
    }
    let (whats, fixes): (Vec<String>, Vec<String>) = warnings.into_iter().unzip();
    Check::warn(names::PUBLIC_URL, whats.join("; "), fixes.join("; "))
}

/// `GET {public_url}/health` answers as Archer's does, and `/ready` says whether that API is
/// ready.
async fn api_answers(public_url: &Url, timeout: Duration) -> Check {
    let base = shown(public_url).trim_end_matches('/').to_owned();
    let not_up = "(expected if the API is not up yet)";
    let start = "start `archer serve`, or make public_url the address people reach it at";
    let url = |path: &str| Url::parse(&format!("{}{path}", public_url.as_str().trim_end_matches('/')));
    let (Ok(health), Ok(ready)) = (url("/health"), url("/ready")) else {
        return Check::warn(names::API, format!("{base}/health is not a URL"), start);
    };
    let host = match health.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Check::warn(names::API, format!("{base} names no host"), start),
    };
    let port = health.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Check::warn(names::API, format!("{host} does not resolve from here: {e} {not_up}"), start);
        }
    };
    let client = match archer_workers::playbooks::HttpClients::new(timeout).and_then(|c| c.pinned(&health, &addrs)) {
        Ok(c) => c,
        Err(e) => return Check::warn(names::API, format!("no HTTP client: {e}"), "report this"),
    };
    let response = match client.get(health.as_str()).send().await {
        Ok(r) => r,
        Err(e) => {
            return Check::warn(
                names::API,
                format!("{base} is not reachable from here: {} {not_up}", root_cause(&e)),
                start,
            );
        }
    };
    let status = response.status();
    if status.is_redirection() {
        let to = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
        return Check::warn(
            names::API,
            format!("{base}/health redirects (HTTP {}) to {to}", status.as_u16()),
            "set public_url to where the API answers itself (https:// when a proxy redirects there)",
        );
    }
    let body: Option<serde_json::Value> = response.json().await.ok();
    if status.as_u16() != 200 || body.as_ref().and_then(|b| b.get("status")).and_then(|s| s.as_str()) != Some("ok") {
        return Check::warn(
            names::API,
            format!("something answers at {base}/health (HTTP {}), but not as Archer", status.as_u16()),
            "point public_url (and the proxy in front) at Archer's API",
        );
    }
    let readiness: Option<serde_json::Value> = match client.get(ready.as_str()).send().await {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    let Some(readiness) = readiness.filter(|r| r.get("ready").is_some() && r.get("outbox").is_some()) else {
        return Check::warn(
            names::API,
            format!("{base}/health answers, but {base}/ready does not answer as Archer's"),
            "point public_url (and the proxy in front) at Archer's API",
        );
    };
    if readiness["ready"].as_bool() == Some(true) {
        return Check::ok(names::API, format!("Archer answers at {base} and is ready"));
    }
    let failing: Vec<String> = ["database", "migrations", "temporal", "outbox"]
        .iter()
        .filter(|k| readiness[**k]["ok"].as_bool() == Some(false))
        .map(|k| match readiness[*k]["detail"].as_str() {
            Some(d) => format!("{k}: {d}"),
            None => (*k).to_owned(),
        })
        .collect();
    Check::warn(
        names::API,
        format!("Archer answers at {base} but is not ready ({})", failing.join("; ")),
        "see the checks above, and the API's log",
    )
}

// ---- secrets ---------------------------------------------------------------------------------

/// `text` with the password of every `scheme://user:password@host` in it replaced: a safety net
/// under the configuration types' own redaction (a value echoed by a parse error, say).
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first of / ? # or whitespace or a quote
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":[REDACTED]");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut f =
            Config::figment(None).set("jwt_secret", "x".repeat(32)).set("secrets_key", crate::config::DEV_SECRETS_KEY);
        for (k, v) in pairs {
            f = f.set(k, *v);
        }
        f.extract().unwrap()
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_userinfo("x postgres://archer:hunter2@db:5432/archer y smtps://u:p%40ss@mail:465"),
            "x postgres://archer:[REDACTED]@db:5432/archer y smtps://u:[REDACTED]@mail:465"
        );
        assert_eq!(
            redact_userinfo("\"smtp://a:b@c\" and http://host/x@y"),
            "\"smtp://a:[REDACTED]@c\" and http://host/x@y"
        );
        assert_eq!(redact_userinfo("no url, no:secret@here"), "no url, no:secret@here");
        assert_eq!(percent_decode("p%40ss%2"), "p@ss%2");
        assert_eq!(database_passwords("postgres://u:p%40ss@h/d"), ["p@ss", "p%40ss"]);
        assert_eq!(database_passwords("postgres://u:pw@h/d"), ["pw"]);
        assert!(database_passwords("postgres://u@h/d").is_empty());
    }

    #[test]
    fn the_public_url_is_judged_with_listen() {
        let c = config(&[]);
        assert_eq!(public_url_form(&c).status, Status::Ok);
        let c = config(&[("public_url", "https://archer.example.com/?next=1"), ("listen", "0.0.0.0:8080")]);
        let check = public_url_form(&c);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("query"), "{check:?}");
        let c = config(&[("public_url", "ftp://archer.example.com")]);
        assert!(public_url_form(&c).detail.contains("not http or https"));
        let c = config(&[("public_url", "https://u:pw@archer.example.com")]);
        let check = public_url_form(&c);
        assert_eq!(check.status, Status::Fail);
        assert!(!check.line().contains("pw@"), "{}", check.line());
        // plain http to the world, and a loopback listener nobody else reaches
        let c = config(&[("public_url", "http://archer.example.com")]);
        let check = public_url_form(&c);
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("Secure") && check.detail.contains("this host only"), "{check:?}");
        let c = config(&[("public_url", "https://archer.example.com"), ("listen", "0.0.0.0:8080")]);
        assert_eq!(public_url_form(&c).status, Status::Ok);
        let c = config(&[("public_url", "http://localhost:9000")]);
        assert!(public_url_form(&c).detail.contains("listen is port 8080"));
        assert!(is_loopback_host(&Url::parse("smtp://127.0.0.1:25").unwrap()));
        assert!(is_loopback_host(&Url::parse("smtp://[::1]:25").unwrap()));
        assert!(!is_loopback_host(&Url::parse("smtp://10.1.2.3:25").unwrap()));
    }

    #[test]
    fn lines_and_summary() {
        let report = Report::new(vec![
            Check::ok(names::DATABASE, "fine"),
            Check::fail(names::SMTP, "smtp://u:secret@h:25: refused.", "start it"),
            Check::warn(names::TASK_QUEUE, "idle", "start a worker"),
            Check::skip(names::API, "not checked"),
        ]);
        let text = report.text();
        assert!(
            text.starts_with("ok   database: fine\nFAIL smtp: smtp://u:[REDACTED]@h:25: refused. Fix: start it\n"),
            "{text}"
        );
        assert!(text.contains("warn task queue: idle. Fix: start a worker\nskip api: not checked\n"), "{text}");
        assert!(text.ends_with("1 ok, 1 warnings, 1 failed, 1 skipped: fix the FAIL lines above\n"), "{text}");
        assert_eq!(report.exit_code(), 1);
        assert!(!serde_json::to_string(&report).unwrap().contains("secret"));
    }
}
