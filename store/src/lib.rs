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

pub mod approvals;
pub mod audit;
pub mod catalog;
pub mod changes;
pub mod idempotency;
pub mod notifications;
pub mod outbox;
pub mod sla;
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
use std::time::Duration;
use uuid::Uuid;

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
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connects a pool. `max_connections` bounds what one process holds.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.application_name("archer");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?;
    Ok(pool)
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

/// A transaction confined to one tenant by row-level security.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: Uuid,
}

impl TenantTx {
    pub async fn begin(pool: &PgPool, tenant_id: Uuid, ctx: &AuditContext) -> Result<Self> {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL ROLE archer_app").execute(&mut *tx).await?;
        set_context(&mut tx, Some(tenant_id), ctx).await?;
        Ok(Self { tx, tenant_id })
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
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
}

impl SystemTx {
    /// `tenant_id` is set for audit triggers when the work concerns one tenant.
    pub async fn begin(pool: &PgPool, tenant_id: Option<Uuid>, ctx: &AuditContext) -> Result<Self> {
        let mut tx = pool.begin().await?;
        set_context(&mut tx, tenant_id, ctx).await?;
        Ok(Self { tx })
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

async fn set_context(conn: &mut PgConnection, tenant_id: Option<Uuid>, ctx: &AuditContext) -> Result<()> {
    sqlx::query(
        "SELECT set_config('archer.tenant_id', $1, true), set_config('archer.actor_id', $2, true), \
                set_config('archer.request_id', $3, true), set_config('archer.client_ip', $4, true)",
    )
    .bind(tenant_id.map(|t| t.to_string()).unwrap_or_default())
    .bind(ctx.actor_id.map(|a| a.to_string()).unwrap_or_default())
    .bind(ctx.request_id.clone().unwrap_or_default())
    .bind(ctx.ip.map(|ip| ip.to_string()).unwrap_or_default())
    .execute(conn)
    .await?;
    Ok(())
}

/// The transaction's timestamp (`now()`), the instant every row it writes is stamped with.
pub async fn tx_now(conn: &mut PgConnection) -> Result<time::OffsetDateTime> {
    Ok(sqlx::query_scalar!(r#"SELECT now() AS "now!""#).fetch_one(conn).await?)
}
