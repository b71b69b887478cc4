//! Users and their roles.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub active: bool,
    pub manager_id: Option<Uuid>,
    pub roles: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What login needs to know about an account, found by email before the tenant is known.
#[derive(Debug, Clone)]
pub struct LoginAccount {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub active: bool,
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub manager_id: Option<Uuid>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserPatch<'a> {
    pub display_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub active: Option<bool>,
    /// `Some(None)` clears the manager.
    pub manager_id: Option<Option<Uuid>>,
    pub password_hash: Option<&'a str>,
}

pub async fn create(conn: &mut PgConnection, u: NewUser<'_>) -> Result<User> {
    sqlx::query!(
        "INSERT INTO users (id, tenant_id, email, display_name, password_hash, manager_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        u.id,
        u.tenant_id,
        u.email,
        u.display_name,
        u.password_hash,
        u.manager_id
    )
    .execute(&mut *conn)
    .await?;
    get(conn, u.id).await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<User> {
    sqlx::query_as!(
        User,
        r#"SELECT u.id, u.tenant_id, u.email, u.display_name, u.active, u.manager_id,
                  array(SELECT r.role FROM user_roles r WHERE r.user_id = u.id ORDER BY r.role) AS "roles!",
                  u.created_at, u.updated_at
             FROM users u WHERE u.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub struct UserFilter<'a> {
    pub q: Option<&'a str>,
    pub role: Option<&'a str>,
    pub active: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(conn: &mut PgConnection, f: UserFilter<'_>) -> Result<(Vec<User>, i64)> {
    let pattern = f.q.map(|q| format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let rows = sqlx::query_as!(
        User,
        r#"SELECT u.id, u.tenant_id, u.email, u.display_name, u.active, u.manager_id,
                  array(SELECT r.role FROM user_roles r WHERE r.user_id = u.id ORDER BY r.role) AS "roles!",
                  u.created_at, u.updated_at
             FROM users u
            WHERE ($1::text IS NULL OR u.email ILIKE $1 OR u.display_name ILIKE $1)
              AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = $2))
              AND ($3::bool IS NULL OR u.active = $3)
            ORDER BY lower(u.display_name), u.id
            LIMIT $4 OFFSET $5"#,
        pattern,
        f.role,
        f.active,
        f.limit,
        f.offset
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users u
            WHERE ($1::text IS NULL OR u.email ILIKE $1 OR u.display_name ILIKE $1)
              AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = $2))
              AND ($3::bool IS NULL OR u.active = $3)"#,
        pattern,
        f.role,
        f.active
    )
    .fetch_one(conn)
    .await?;
    Ok((rows, total))
}

pub async fn update(conn: &mut PgConnection, id: Uuid, p: UserPatch<'_>) -> Result<User> {
    let done = sqlx::query!(
        "UPDATE users SET
            display_name  = COALESCE($2, display_name),
            email         = COALESCE($3, email),
            active        = COALESCE($4, active),
            manager_id    = CASE WHEN $5 THEN $6 ELSE manager_id END,
            password_hash = COALESCE($7, password_hash),
            updated_at    = archer_now()
          WHERE id = $1",
        id,
        p.display_name,
        p.email,
        p.active,
        p.manager_id.is_some(),
        p.manager_id.flatten(),
        p.password_hash
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, id).await
}

/// Replaces a user's roles with `roles` (unknown role names fail on the foreign key).
pub async fn set_roles(conn: &mut PgConnection, tenant_id: Uuid, user_id: Uuid, roles: &[String]) -> Result<()> {
    sqlx::query!("DELETE FROM user_roles WHERE user_id = $1 AND NOT (role = ANY($2))", user_id, roles)
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "INSERT INTO user_roles (tenant_id, user_id, role)
         SELECT $1, $2, r FROM unnest($3::text[]) AS r
         ON CONFLICT DO NOTHING",
        tenant_id,
        user_id,
        roles
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The permissions a user's roles grant, sorted and without repeats.
pub async fn permissions_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT DISTINCT p AS "p!" FROM user_roles ur JOIN roles r ON r.name = ur.role, unnest(r.permissions) p
            WHERE ur.user_id = $1 ORDER BY 1"#,
        user_id
    )
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

pub async fn roles(conn: &mut PgConnection) -> Result<Vec<Role>> {
    Ok(sqlx::query_as!(Role, "SELECT name, description, permissions FROM roles ORDER BY name").fetch_all(conn).await?)
}

/// Accounts with this email, across tenants (login runs before the tenant is known).
pub async fn find_for_login(
    conn: &mut PgConnection,
    email: &str,
    tenant_slug: Option<&str>,
) -> Result<Vec<LoginAccount>> {
    Ok(sqlx::query_as!(
        LoginAccount,
        r#"SELECT u.id, u.tenant_id, t.slug AS tenant_slug, u.email, u.password_hash, u.active
             FROM users u JOIN tenants t ON t.id = u.tenant_id
            WHERE lower(u.email) = lower($1) AND ($2::text IS NULL OR t.slug = $2)
            ORDER BY t.slug"#,
        email,
        tenant_slug
    )
    .fetch_all(conn)
    .await?)
}

/// What the login throttle says about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    /// Check the password. `locks` when this attempt used the window's last slot (so the email
    /// is now locked unless the password is right).
    Open { locks: bool },
    /// Refuse without checking anything, until then.
    Locked { until: OffsetDateTime },
}

/// Reserves a slot for one login attempt for `email` (any email, known or not), in one
/// statement: at most `max_failures` attempts get a slot per lock window, whatever the
/// concurrency; the attempt that takes the last slot starts the lock. A lock that has run out
/// starts a new window. [`clear_login_attempts`] after a right password gives the slots back.
/// Runs outside a transaction (the slot is taken even if the login fails later), so it is given
/// the clock's instant `now`.
pub async fn reserve_login_attempt(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    email: &str,
    max_failures: i32,
    lockout: time::Duration,
) -> Result<LoginGate> {
    let key = email.trim().to_lowercase();
    let reserved = sqlx::query!(
        r#"INSERT INTO login_attempts AS a (email, failures, locked_until, updated_at)
           VALUES ($1, 1, CASE WHEN 1 >= $2 THEN $4::timestamptz + make_interval(secs => $3) END, $4)
           ON CONFLICT (email) DO UPDATE SET
               failures = CASE WHEN a.locked_until IS NOT NULL THEN 1 ELSE a.failures + 1 END,
               locked_until = CASE WHEN (CASE WHEN a.locked_until IS NOT NULL THEN 1 ELSE a.failures + 1 END) >= $2
                                   THEN $4::timestamptz + make_interval(secs => $3) END,
               updated_at = $4
             WHERE a.locked_until IS NULL OR a.locked_until <= $4
           RETURNING a.locked_until"#,
        key,
        max_failures,
        lockout.as_seconds_f64(),
        now
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = reserved {
        return Ok(LoginGate::Open { locks: row.locked_until.is_some() });
    }
    let until = sqlx::query_scalar!("SELECT locked_until FROM login_attempts WHERE email = $1", key)
        .fetch_one(conn)
        .await?
        .unwrap_or(now);
    Ok(LoginGate::Locked { until })
}

/// A right password: the email's failures are forgotten.
pub async fn clear_login_attempts(conn: &mut PgConnection, email: &str) -> Result<()> {
    sqlx::query!("DELETE FROM login_attempts WHERE email = $1", email.trim().to_lowercase()).execute(conn).await?;
    Ok(())
}

/// Forgets throttle rows untouched for `max_age` whose lock has run out at `now` (housekeeping,
/// outside a transaction).
pub async fn expire_login_attempts(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    max_age: time::Duration,
) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM login_attempts
          WHERE email = ANY (ARRAY(SELECT email FROM login_attempts
                                    WHERE updated_at < $2::timestamptz - make_interval(secs => $1)
                                      AND (locked_until IS NULL OR locked_until < $2)
                                    FOR UPDATE SKIP LOCKED))",
        max_age.as_seconds_f64(),
        now
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Whether an account exists and is active (checked on refresh, so a deactivated user's
/// session ends at the next refresh).
pub async fn is_active(conn: &mut PgConnection, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!("SELECT active FROM users WHERE id = $1", user_id)
        .fetch_optional(conn)
        .await?
        .unwrap_or(false))
}
