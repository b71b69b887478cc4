//! Archer's system of record: PostgreSQL through sqlx.
//!
//! Architecture invariant: this is the only crate that speaks SQL. Every tenant-owned query
//! runs inside a [`TenantTx`], a transaction that has switched to the `archer_app` role and set
//! the tenant, so row-level security decides what it can see and write whatever the query
//! says. The owner connection ([`SystemTx`]) is used only where no tenant is known yet (login),
//! across tenants (the outbox relay) or to provision tenants.
//!
//! Every mutation of an audited table writes its audit row through a database trigger that
//! reads the transaction's context ([`AuditContext`]), so no code path can change data
//! without a trace.
//!
//! Time comes from one [`Clock`], carried by the database handle ([`Db`]): each transaction
//! reads it once when it begins and stamps everything it writes with that instant
//! (`archer_now()` in SQL), so a test that fixes the clock sees it in every row.

pub mod approval_changes;
pub mod approvals;
pub mod audit;
pub mod catalog;
pub mod changes;
pub mod clock;
pub mod connections;
pub mod fulfilment;
pub mod idempotency;
pub mod metrics;
pub mod notifications;
pub mod outbox;
pub mod playbook_tasks;
pub mod playbooks;
pub mod saved_views;
pub mod secrets;
pub mod security;
pub mod sla;
pub mod sla_changes;
pub mod teams;
pub mod tenants;
pub mod tickets;
pub mod tokens;
pub mod users;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, SystemClock};
pub use sqlx;

/// Migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A named constraint refused the write (unique, foreign key or check).
    #[error("constraint {constraint} refused the write")]
    Constraint { constraint: String, kind: ConstraintKind },
    /// The row changed since the caller read it (optimistic concurrency).
    #[error("the record changed since it was read (now version {current})")]
    VersionConflict { current: i32 },
    /// Stored data that no longer passes the domain's checks.
    #[error("{0}")]
    Invalid(String),
    /// The database gave up waiting (a lock held too long, a conflict with a concurrent
    /// transaction, a cancelled statement): nothing was written; trying again later may work.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// A workflow payload could not be encoded (a bug, never the caller's input).
    #[error("could not encode a workflow payload: {0}")]
    Encode(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    Unique,
    ForeignKey,
    Check,
    Other,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.constraint().is_some() => {
                let kind = match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => ConstraintKind::Unique,
                    sqlx::error::ErrorKind::ForeignKeyViolation => ConstraintKind::ForeignKey,
                    sqlx::error::ErrorKind::CheckViolation => ConstraintKind::Check,
                    _ => ConstraintKind::Other,
                };
                StoreError::Constraint { constraint: db.constraint().unwrap_or_default().to_owned(), kind }
            }
            // lock_not_available (lock_timeout), query_canceled (statement_timeout),
            // serialization_failure, deadlock_detected
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("55P03" | "57014" | "40001" | "40P01")) =>
            {
                StoreError::Busy(db.message().to_owned())
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Limits every Archer database session runs under (PostgreSQL settings sent at connect).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `idle_in_transaction_session_timeout`: the server ends a session that sits inside an
    /// open transaction without sending anything for this long, releasing its locks. Nothing in
    /// Archer keeps a transaction open while it waits on something else for long, so a session
    /// idle that long was abandoned (a cancelled request, a stuck process).
    pub idle_in_transaction: Duration,
    /// `lock_timeout`: a statement that waits this long for a row or table lock fails (SQLSTATE
    /// 55P03, answered 503 with `Retry-After`) instead of waiting forever behind a stuck holder.
    pub lock_wait: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { idle_in_transaction: Duration::from_secs(30), lock_wait: Duration::from_secs(10) }
    }
}

/// Connects a pool with the default [`SessionLimits`]. `max_connections` bounds what one
/// process holds.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    connect_with(url, max_connections, SessionLimits::default()).await
}

/// Connects a pool whose sessions run under `limits` and which never hands out a connection
/// that is inside a transaction.
///
/// A request future dropped at an await (a client disconnects, a timeout fires) can leave its
/// connection inside a transaction that nothing will roll back: in sqlx 0.9.0 a future
/// cancelled during `BEGIN` returns the connection to the pool with the server-side
/// transaction open (sqlx issues 4385 and 4393), holding whatever it locked; the next user of
/// the connection would then run its statements inside that transaction, and they would never
/// commit. Archer does not rely on the driver for this: when a connection comes back to the
/// pool, [`released_clean`] asks the server whether it is inside a transaction block, and a
/// connection that is (or that cannot answer) is closed, never reused; closing it ends the
/// transaction and releases its locks. `idle_in_transaction_session_timeout` bounds the damage
/// of any path this check does not see (a detached connection).
pub async fn connect_with(url: &str, max_connections: u32, limits: SessionLimits) -> Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.application_name("archer").options([
        ("idle_in_transaction_session_timeout", format!("{}ms", limits.idle_in_transaction.as_millis())),
        ("lock_timeout", format!("{}ms", limits.lock_wait.as_millis())),
    ]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_release(|conn, _meta| Box::pin(released_clean(conn)))
        .connect_with(opts)
        .await?;
    Ok(pool)
}

/// Whether a connection coming back to the pool is outside any transaction block, asked of
/// the server (not of the driver's bookkeeping). Sent with the simple query protocol, so the
/// query is the first command of its own transaction unless one is already open: then
/// `statement_timestamp()` is later than `transaction_timestamp()` (PostgreSQL documents both
/// as equal during a transaction's first command). In a failed transaction the query errors,
/// which also keeps the connection out of the pool.
pub async fn released_clean(conn: &mut PgConnection) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Row;
    let row =
        sqlx::raw_sql("SELECT statement_timestamp() = transaction_timestamp() AS clean").fetch_one(&mut *conn).await?;
    let clean: bool = row.try_get("clean")?;
    if !clean {
        tracing::warn!("a connection came back to the pool inside a transaction; closing it");
    }
    Ok(clean)
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether the database is reachable and has every migration this binary knows applied.
pub async fn migrations_current(pool: &PgPool) -> Result<bool> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await?;
    Ok(MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).all(|m| applied.contains(&m.version)))
}

/// Who is acting and on whose behalf: recorded on every audit row the transaction writes.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
}

/// The database handle every process shares: the pool and the one clock its transactions
/// read. Cheap to clone. Dereferences to the pool for what does not need the time.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    /// The pool's label in metrics (`archer_db_pool_*{pool}`).
    name: &'static str,
}

impl Db {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Db { pool, clock, name: "archer" }
    }

    /// Reports this pool's use and waits in metrics as `pool="<name>"` (`api`, `worker`).
    pub fn watched(mut self, name: &'static str) -> Self {
        self.name = name;
        metrics::metrics().watch_pool(name, &self.pool);
        self
    }

    /// A transaction, its wait for a connection measured (`archer_db_pool_acquire_seconds`).
    async fn begin_tx(&self) -> Result<Transaction<'static, Postgres>> {
        let started = std::time::Instant::now();
        let conn = self.pool.acquire().await?;
        metrics::metrics().observe_acquire(self.name, started.elapsed());
        Ok(Transaction::begin(conn, None).await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The clock's instant at the database's precision (microseconds), so that what Rust holds
    /// and what PostgreSQL stores are the same instant.
    pub fn now(&self) -> OffsetDateTime {
        to_micros(self.clock.now())
    }
}

impl Deref for Db {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

/// `t` without its nanoseconds below the microsecond (PostgreSQL's precision; it would round).
fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

/// A transaction confined to one tenant by row-level security.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: Uuid,
    now: OffsetDateTime,
}

impl TenantTx {
    pub async fn begin(db: &Db, tenant_id: Uuid, ctx: &AuditContext) -> Result<Self> {
        let mut tx = db.begin_tx().await?;
        let now = db.now();
        set_context(&mut tx, Some(tenant_id), ctx, now, Confine::Tenant).await?;
        Ok(Self { tx, tenant_id, now })
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    /// The transaction's instant (`archer_now()`), read from the clock when it began: every
    /// row it writes is stamped with it.
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// A transaction as the schema owner: not confined by row-level security. Used for login
/// (before a tenant is known), provisioning tenants and the outbox relay.
pub struct SystemTx {
    tx: Transaction<'static, Postgres>,
    now: OffsetDateTime,
}

impl SystemTx {
    /// `tenant_id` is set for audit triggers when the work concerns one tenant.
    pub async fn begin(db: &Db, tenant_id: Option<Uuid>, ctx: &AuditContext) -> Result<Self> {
        let mut tx = db.begin_tx().await?;
        let now = db.now();
        set_context(&mut tx, tenant_id, ctx, now, Confine::No).await?;
        Ok(Self { tx, now })
    }

    /// The transaction's instant (`archer_now()`), as [`TenantTx::now`].
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Deref for SystemTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for SystemTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Whether a transaction runs as `archer_app`, confined to its tenant by row-level security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confine {
    Tenant,
    No,
}

/// Sets the transaction's audit context and its instant (`archer.now`, read by `archer_now()`)
/// in one statement; when confined, also the role row-level security confines
/// (`set_config('role', ...)` is `SET LOCAL ROLE archer_app`, in the same round trip).
async fn set_context(
    conn: &mut PgConnection,
    tenant_id: Option<Uuid>,
    ctx: &AuditContext,
    now: OffsetDateTime,
    confine: Confine,
) -> Result<()> {
    // RFC 3339 in UTC: PostgreSQL reads it whatever the session's DateStyle and TimeZone
    let now = now
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Invalid(format!("the clock's instant {now} cannot be written: {e}")))?;
    sqlx::query(
        "SELECT set_config('archer.tenant_id', $1, true), set_config('archer.actor_id', $2, true), \
                set_config('archer.request_id', $3, true), set_config('archer.client_ip', $4, true), \
                set_config('archer.now', $5, true), \
                CASE WHEN $6 THEN set_config('role', 'archer_app', true) END",
    )
    .bind(tenant_id.map(|t| t.to_string()).unwrap_or_default())
    .bind(ctx.actor_id.map(|a| a.to_string()).unwrap_or_default())
    .bind(ctx.request_id.clone().unwrap_or_default())
    .bind(ctx.ip.map(|ip| ip.to_string()).unwrap_or_default())
    .bind(now)
    .bind(confine == Confine::Tenant)
    .execute(conn)
    .await?;
    Ok(())
}

/// The transaction's instant (`archer_now()`), the instant every row it writes is stamped with:
/// in a [`TenantTx`] or [`SystemTx`], the same as its `now()`, which needs no round trip.
pub async fn tx_now(conn: &mut PgConnection) -> Result<time::OffsetDateTime> {
    Ok(sqlx::query_scalar!(r#"SELECT archer_now() AS "now!""#).fetch_one(conn).await?)
}
