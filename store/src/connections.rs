//! Connections: where a playbook's `http.request` and `webhook.post` steps may send requests
//! (a base URL), how they authenticate, and the secret they use.
//!
//! The secret is write-only: it is encrypted here ([`Cipher`]) before it reaches the database,
//! no read of this module returns it except [`resolve`] (for the worker that sends the request,
//! as a [`SecretString`] that never prints), and the audit log records only whether one is set.
//! Updating a connection without a secret keeps the one it has.

use secrecy::SecretString;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::secrets::{Cipher, SecretError};
use crate::{Result as StoreResult, StoreError};

/// How a connection authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(<username>:<secret>)`.
    Basic,
    /// `<header_name>: <secret>`.
    Header,
    /// Standard Webhooks signing: the secret is the signing key (`whsec_...`).
    Webhook,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Bearer => "bearer",
            Auth::Basic => "basic",
            Auth::Header => "header",
            Auth::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Result<Auth, StoreError> {
        Ok(match s {
            "none" => Auth::None,
            "bearer" => Auth::Bearer,
            "basic" => Auth::Basic,
            "header" => Auth::Header,
            "webhook" => Auth::Webhook,
            other => return Err(StoreError::Invalid(format!("unknown connection auth `{other}`"))),
        })
    }
}

/// What an admin writes about a connection (everything but its name and secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    pub base_url: String,
    pub auth: Auth,
    /// The header carrying the secret, for [`Auth::Header`] only.
    pub header_name: Option<String>,
    /// For [`Auth::Basic`].
    pub username: Option<String>,
    /// Whether requests may go to loopback, private or link-local addresses (tests, on-premise
    /// services). Off by default: a playbook must not reach the internal network by accident.
    pub allow_private: bool,
}

/// A connection as it is shown: never its secret, only whether one is set.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: Uuid,
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub header_name: Option<String>,
    pub username: Option<String>,
    pub allow_private: bool,
    pub secret_set: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What the worker needs to send a request through a connection, secret included.
#[derive(Debug, Clone)]
pub struct ResolvedConnection {
    pub name: String,
    pub base_url: url::Url,
    pub auth: Auth,
    pub header_name: Option<String>,
    pub username: Option<String>,
    pub secret: Option<SecretString>,
    pub allow_private: bool,
}

/// A refused field: its JSON pointer in the connection's document and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("the connection is invalid: {}", .0.iter().map(|p| format!("{}: {}", p.pointer, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldProblem>),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ConnectionError {
    fn from(e: sqlx::Error) -> Self {
        ConnectionError::Store(e.into())
    }
}

/// Whether `name` can name a connection (and a `{{secrets.NAME}}` template): as the table's check.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 100
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a base URL: absolute `http` or `https` with a host, no credentials in it, no query
/// and no fragment (a request's path is appended to it). Returns it normalised.
pub fn check_base_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme must be http or https, not `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL; use the connection's auth and secret".into());
    }
    if url.query().is_some() {
        return Err("the base URL cannot have a query".into());
    }
    if url.fragment().is_some() {
        return Err("the base URL cannot have a fragment".into());
    }
    if url.as_str().len() > 2000 {
        return Err("the URL is longer than 2000 characters".into());
    }
    Ok(url)
}

/// Every problem with `name` (when given) and `spec`, with pointers; empty when it is valid.
pub fn check(name: Option<&str>, spec: &ConnectionSpec) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let mut refuse = |pointer: &str, message: String| {
        problems.push(FieldProblem { pointer: pointer.to_owned(), message });
    };
    if let Some(name) = name
        && !valid_name(name)
    {
        refuse("/name", "1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit".into());
    }
    if let Err(e) = check_base_url(&spec.base_url) {
        refuse("/base_url", e);
    }
    match (spec.auth, spec.header_name.as_deref()) {
        (Auth::Header, None) => refuse("/header_name", "required when auth is `header`".into()),
        (Auth::Header, Some(h)) if !valid_header_name(h) => {
            refuse("/header_name", "not a valid HTTP header name".into());
        }
        (Auth::Header, Some(_)) | (_, None) => {}
        (_, Some(_)) => refuse("/header_name", "only for auth `header`".into()),
    }
    match (spec.auth, spec.username.as_deref()) {
        (Auth::Basic, None) => refuse("/username", "required when auth is `basic`".into()),
        (Auth::Basic, Some(u)) if u.is_empty() || u.contains(':') || u.len() > 200 => {
            refuse("/username", "1 to 200 characters, without `:`".into());
        }
        (Auth::Basic, Some(_)) | (_, None) => {}
        (_, Some(_)) => refuse("/username", "only for auth `basic`".into()),
    }
    problems
}

/// An RFC 9110 token, at most 200 characters.
fn valid_header_name(h: &str) -> bool {
    !h.is_empty() && h.len() <= 200 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `spec` checked, with its base URL normalised.
fn checked(name: Option<&str>, spec: &ConnectionSpec) -> Result<ConnectionSpec, ConnectionError> {
    let problems = check(name, spec);
    if !problems.is_empty() {
        return Err(ConnectionError::Invalid(problems));
    }
    let base_url = check_base_url(&spec.base_url)
        .map_err(|m| ConnectionError::Invalid(vec![FieldProblem { pointer: "/base_url".into(), message: m }]))?;
    Ok(ConnectionSpec { base_url: base_url.to_string(), ..spec.clone() })
}

struct Row {
    id: Uuid,
    name: String,
    base_url: String,
    auth: String,
    header_name: Option<String>,
    username: Option<String>,
    allow_private: bool,
    secret_set: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl Row {
    fn into_connection(self) -> StoreResult<Connection> {
        Ok(Connection {
            id: self.id,
            name: self.name,
            base_url: self.base_url,
            auth: Auth::parse(&self.auth)?,
            header_name: self.header_name,
            username: self.username,
            allow_private: self.allow_private,
            secret_set: self.secret_set,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Creates a connection; `secret`, when given, is encrypted with `cipher` before it is stored.
#[tracing::instrument(skip_all, fields(name))]
pub async fn create(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    cipher: &Cipher,
    name: &str,
    spec: &ConnectionSpec,
    secret: Option<&SecretString>,
) -> Result<Connection, ConnectionError> {
    let spec = checked(Some(name), spec)?;
    let (ciphertext, nonce) = secret.map(|s| cipher.encrypt(s)).transpose()?.unzip();
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO connections (id, tenant_id, name, base_url, auth, header_name, username, secret_ciphertext,
                                  secret_nonce, allow_private)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        tenant_id,
        name,
        spec.base_url,
        spec.auth.as_str(),
        spec.header_name,
        spec.username,
        ciphertext,
        nonce,
        spec.allow_private
    )
    .execute(&mut *conn)
    .await?;
    Ok(get(conn, id).await?)
}

/// Replaces what `spec` says about connection `id`; its secret is replaced when `secret` is
/// given and kept otherwise.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    cipher: &Cipher,
    spec: &ConnectionSpec,
    secret: Option<&SecretString>,
) -> Result<Connection, ConnectionError> {
    let spec = checked(None, spec)?;
    let (ciphertext, nonce) = secret.map(|s| cipher.encrypt(s)).transpose()?.unzip();
    let done = sqlx::query!(
        "UPDATE connections
            SET base_url = $2, auth = $3, header_name = $4, username = $5, allow_private = $6,
                secret_ciphertext = CASE WHEN $7 THEN $8 ELSE secret_ciphertext END,
                secret_nonce = CASE WHEN $7 THEN $9 ELSE secret_nonce END,
                updated_at = archer_now()
          WHERE id = $1",
        id,
        spec.base_url,
        spec.auth.as_str(),
        spec.header_name,
        spec.username,
        spec.allow_private,
        ciphertext.is_some(),
        ciphertext,
        nonce
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound.into());
    }
    Ok(get(conn, id).await?)
}

/// Removes the secret of connection `id` (a connection with auth `none` needs none).
pub async fn clear_secret(conn: &mut PgConnection, id: Uuid) -> StoreResult<Connection> {
    let done = sqlx::query!(
        "UPDATE connections SET secret_ciphertext = NULL, secret_nonce = NULL, updated_at = archer_now() WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, id).await
}

/// The tenant's connections, by name.
pub async fn list(conn: &mut PgConnection) -> StoreResult<Vec<Connection>> {
    sqlx::query_as!(
        Row,
        r#"SELECT id, name, base_url, auth, header_name, username, allow_private,
                  secret_ciphertext IS NOT NULL AS "secret_set!", created_at, updated_at
             FROM connections ORDER BY name"#
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Row::into_connection)
    .collect()
}

/// The names of the tenant's connections (what a playbook's `{{secrets.NAME}}` may name).
pub async fn names(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar!("SELECT name FROM connections ORDER BY name").fetch_all(conn).await?)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> StoreResult<Connection> {
    sqlx::query_as!(
        Row,
        r#"SELECT id, name, base_url, auth, header_name, username, allow_private,
                  secret_ciphertext IS NOT NULL AS "secret_set!", created_at, updated_at
             FROM connections WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)?
    .into_connection()
}

pub async fn get_by_name(conn: &mut PgConnection, name: &str) -> StoreResult<Connection> {
    sqlx::query_as!(
        Row,
        r#"SELECT id, name, base_url, auth, header_name, username, allow_private,
                  secret_ciphertext IS NOT NULL AS "secret_set!", created_at, updated_at
             FROM connections WHERE name = $1"#,
        name
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)?
    .into_connection()
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> StoreResult<()> {
    let done = sqlx::query!("DELETE FROM connections WHERE id = $1", id).execute(conn).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The connection `name` with its secret decrypted, for the worker about to send a request.
#[tracing::instrument(skip_all, fields(name))]
pub async fn resolve(
    conn: &mut PgConnection,
    name: &str,
    cipher: &Cipher,
) -> Result<ResolvedConnection, ConnectionError> {
    let row = sqlx::query!(
        "SELECT name, base_url, auth, header_name, username, secret_ciphertext, secret_nonce, allow_private
           FROM connections WHERE name = $1",
        name
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    let secret = match (row.secret_ciphertext, row.secret_nonce) {
        (Some(ct), Some(nonce)) => Some(cipher.decrypt(&ct, &nonce)?),
        _ => None,
    };
    let base_url = check_base_url(&row.base_url)
        .map_err(|e| StoreError::Invalid(format!("connection {name} holds a bad base URL: {e}")))?;
    Ok(ResolvedConnection {
        name: row.name,
        base_url,
        auth: Auth::parse(&row.auth)?,
        header_name: row.header_name,
        username: row.username,
        secret,
        allow_private: row.allow_private,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(base_url: &str, auth: Auth) -> ConnectionSpec {
        ConnectionSpec { base_url: base_url.into(), auth, header_name: None, username: None, allow_private: false }
    }

    #[test]
    fn base_urls_are_http_without_credentials_query_or_fragment() {
        for (url, ok) in [
            ("https://graph.example.com/v1.0", true),
            ("http://127.0.0.1:8080", true),
            ("ftp://example.com", false),
            ("https://user:pw@example.com", false),
            ("https://example.com/?a=1", false),
            ("https://example.com/#x", false),
            ("/relative", false),
            ("mailto:a@b.c", false),
        ] {
            assert_eq!(check_base_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn auth_fields_are_checked_together() {
        assert!(check(Some("graph"), &spec("https://x.example", Auth::Bearer)).is_empty());
        let p = check(Some("bad name"), &spec("https://x.example", Auth::Header));
        let pointers: Vec<&str> = p.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(pointers, ["/name", "/header_name"]);
        let mut s = spec("https://x.example", Auth::Basic);
        assert_eq!(check(None, &s)[0].pointer, "/username");
        s.username = Some("svc".into());
        assert!(check(None, &s).is_empty());
        s.auth = Auth::None;
        assert_eq!(check(None, &s)[0].pointer, "/username");
        let mut h = spec("https://x.example", Auth::Header);
        h.header_name = Some("X-Api Key".into());
        assert_eq!(check(None, &h)[0].pointer, "/header_name");
        h.header_name = Some("X-Api-Key".into());
        assert!(check(None, &h).is_empty());
    }
}
