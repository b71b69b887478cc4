//! Configuration: defaults, then an optional TOML file, then `ARCHER_*` environment variables.
//!
//! Every field is documented in the README's configuration table; keep the two in step.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use archer_workers::TemporalConfig;
use archer_workers::email::MailConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// The URL people reach the API at (used in links Archer sends).
    pub public_url: Url,
    /// PostgreSQL connection URL. The role must own Archer's schema (it runs migrations) and
    /// be a member of `archer_app`, which requests switch to so row-level security applies.
    pub database_url: SecretString,
    /// Connections per process.
    pub database_max_connections: u32,
    /// A database session left inside a transaction without sending anything for this long is
    /// ended by the server (its locks released), in seconds.
    pub database_idle_in_transaction_timeout_secs: u64,
    /// How long a statement waits for a lock before it gives up (503, `Retry-After`), in
    /// seconds.
    pub database_lock_timeout_secs: u64,
    /// `/ready` fails while the oldest undelivered workflow intent in the outbox is older than
    /// this, in seconds.
    pub outbox_max_age_secs: u64,
    /// Temporal frontend, e.g. `http://127.0.0.1:7233`.
    pub temporal_address: Url,
    pub temporal_namespace: String,
    /// Task queue for Archer's workflows and activities.
    pub task_queue: String,
    /// How many workflows a worker keeps in memory between their tasks; one evicted is
    /// replayed from its history when it next has work.
    pub worker_max_cached_workflows: usize,
    pub worker_sticky_timeout_secs: u64,
    /// The Temporal Web UI, for links to a ticket's workflow (optional).
    pub temporal_ui_url: Option<Url>,
    /// HMAC key for access tokens (at least 32 bytes).
    pub jwt_secret: SecretString,
    /// The key connection secrets are encrypted with at rest (ChaCha20-Poly1305): 32 bytes,
    /// base64. Required; `archer dev` uses a fixed development key. Changing it makes the
    /// secrets already stored unreadable (set them again).
    pub secrets_key: SecretsKey,
    /// Lifetime of an access token, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Failed logins in a row that lock an account.
    pub login_max_failures: i32,
    /// How long a locked account stays locked, in seconds.
    pub login_lockout_secs: u64,
    /// Logins one client address may attempt at once, before `login_rate_per_minute` applies.
    pub login_rate_burst: u32,
    /// Logins one client address may attempt per minute, sustained (429 beyond).
    pub login_rate_per_minute: u32,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Whether `archer serve` also runs the outbox relay (one relay delivers at a time; extra
    /// ones stand by).
    pub relay: bool,
    /// The SMTP server Archer sends email through: `smtp://host:port` (plain; local catchers),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
    pub smtp_url: SmtpUrl,
    /// The `From` of the email Archer sends, a mailbox such as `Archer <archer@example.com>`.
    pub mail_from: String,
    /// `pretty` or `json`.
    pub log_format: LogFormat,
    /// Address `archer worker` serves `/health`, `/ready` and `/metrics` on (probes and
    /// Prometheus; the API serves them on `listen`).
    pub worker_listen: SocketAddr,
    /// On SIGTERM or Ctrl-C a process stops taking new work and gives what it has started this
    /// long to finish (requests in flight, the relay's batch, running activities), in seconds.
    pub shutdown_grace_secs: u64,
    /// An OpenTelemetry collector's OTLP/HTTP address, e.g. `http://otel-collector:4318`:
    /// traces are exported there when set, and not collected at all when unset (the default).
    pub otlp_endpoint: Option<Url>,
}

/// `secrets_key`: read from base64 when the configuration is read, so a missing or malformed
/// key stops the process at startup rather than at the first secret. Shown without the key.
#[derive(Clone)]
pub struct SecretsKey(archer_store::secrets::Cipher);

impl<'de> Deserialize<'de> for SecretsKey {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = SecretString::deserialize(de)?;
        archer_store::secrets::Cipher::from_base64(text.expose_secret())
            .map(SecretsKey)
            .map_err(|e| serde::de::Error::custom(format!("secrets_key (ARCHER_SECRETS_KEY): {e}")))
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey([REDACTED])")
    }
}

/// The SMTP URL, which may carry a password: shown (`Debug`, `Display`) without it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SmtpUrl(pub Url);

impl std::ops::Deref for SmtpUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("[REDACTED]"));
        }
        f.write_str(shown.as_str())
    }
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The defaults, as TOML (also the template for a config file).
pub const DEFAULTS: &str = r#"
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
database_url = "postgres://archer@127.0.0.1:54329/archer"
database_max_connections = 20
database_idle_in_transaction_timeout_secs = 30
database_lock_timeout_secs = 10
outbox_max_age_secs = 60
temporal_address = "http://127.0.0.1:7233"
temporal_namespace = "default"
task_queue = "archer"
worker_max_cached_workflows = 200
worker_sticky_timeout_secs = 10
jwt_secret = ""
secrets_key = ""
access_token_ttl_secs = 900
refresh_token_ttl_secs = 2592000
login_max_failures = 5
login_lockout_secs = 900
login_rate_burst = 20
login_rate_per_minute = 30
body_limit_bytes = 262144
relay = true
smtp_url = "smtp://127.0.0.1:1025"
mail_from = "Archer <archer@archer.localhost>"
log_format = "pretty"
worker_listen = "127.0.0.1:9091"
shutdown_grace_secs = 30
"#;

/// The `secrets_key` of `archer dev` and of tests (`archer_store::secrets::Cipher::dev`'s key):
/// fixed, so data a developer stored survives a restart; never for production (it is public).
pub const DEV_SECRETS_KEY: &str = "YXJjaGVyLWRldi1vbmx5LW5vdC1hLXNlY3JldC1rZXk=";

/// Configuration sources not yet read.
pub struct ConfigSources(Figment);

impl ConfigSources {
    /// Sets one value over everything else.
    pub fn set(self, key: &str, value: impl serde::Serialize) -> Self {
        Self(self.0.merge(Serialized::default(key, value)))
    }

    pub fn extract(self) -> Result<Config, ConfigError> {
        let cfg: Config = self.0.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads defaults, then `file` (if given), then `ARCHER_*` variables (`ARCHER_DATABASE_URL`…).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file).extract()
    }

    /// The layered sources; tests merge their own values on top before extracting.
    pub fn figment(file: Option<&Path>) -> ConfigSources {
        let mut f = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        }
        // ARCHER_* variables that are not configuration (read by the CLI, the dev stack, tests)
        let not_config = |k: &figment::value::UncasedStr| {
            ["config", "log", "temporal_bin", "pg_bin", "maildev_bin", "dev_dir"].iter().any(|n| k == *n)
                || k.as_str().to_ascii_lowercase().starts_with("test_")
        };
        ConfigSources(f.merge(Env::prefixed("ARCHER_").filter(move |k| !not_config(k))))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.expose_secret().len() < 32 {
            return Err(ConfigError::Invalid("jwt_secret (ARCHER_JWT_SECRET) must be at least 32 bytes".into()));
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid("token lifetimes must be positive".into()));
        }
        if self.login_max_failures < 1 {
            return Err(ConfigError::Invalid("login_max_failures must be at least 1".into()));
        }
        if self.login_rate_burst == 0 || self.login_rate_per_minute == 0 || self.login_rate_per_minute > 60_000 {
            return Err(ConfigError::Invalid(
                "login_rate_burst must be positive and login_rate_per_minute between 1 and 60000".into(),
            ));
        }
        if self.database_idle_in_transaction_timeout_secs == 0 || self.database_lock_timeout_secs == 0 {
            return Err(ConfigError::Invalid("database timeouts must be positive (0 would mean wait forever)".into()));
        }
        if self.worker_max_cached_workflows < 2 {
            // the SDK needs two workflow task slots for a sticky cache; 0 would turn caching off
            return Err(ConfigError::Invalid("worker_max_cached_workflows must be at least 2".into()));
        }
        if self.worker_sticky_timeout_secs == 0 {
            return Err(ConfigError::Invalid("worker_sticky_timeout_secs must be positive".into()));
        }
        if self.outbox_max_age_secs == 0 {
            return Err(ConfigError::Invalid("outbox_max_age_secs must be positive".into()));
        }
        if self.shutdown_grace_secs == 0 {
            return Err(ConfigError::Invalid("shutdown_grace_secs must be positive".into()));
        }
        if let Some(otlp) = &self.otlp_endpoint
            && !matches!(otlp.scheme(), "http" | "https")
        {
            return Err(ConfigError::Invalid("otlp_endpoint must be an http:// or https:// URL".into()));
        }
        if !matches!(self.smtp_url.scheme(), "smtp" | "smtps") {
            return Err(ConfigError::Invalid("smtp_url must be an smtp:// or smtps:// URL".into()));
        }
        Ok(())
    }

    /// What a worker needs besides Temporal: the database, SMTP, the public URL and the clock
    /// its activities read.
    pub fn worker_deps(&self, clock: std::sync::Arc<dyn archer_store::Clock>) -> archer_workers::WorkerDeps {
        use secrecy::ExposeSecret;
        archer_workers::WorkerDeps {
            database_url: self.database_url.expose_secret().to_owned(),
            database_max_connections: self.database_max_connections.min(10),
            database_limits: self.database_limits(),
            mail: Some(self.mail()),
            public_url: self.public_url.to_string(),
            links: self.link_signer(),
            clock,
            secrets: self.cipher(),
            max_cached_workflows: self.worker_max_cached_workflows,
            sticky_timeout: std::time::Duration::from_secs(self.worker_sticky_timeout_secs),
            shutdown_grace: self.shutdown_grace(),
        }
    }

    /// Encrypts and decrypts connection secrets (`secrets_key`).
    pub fn cipher(&self) -> archer_store::secrets::Cipher {
        self.secrets_key.0.clone()
    }

    /// Signs and checks approval decision links, with a key derived from `jwt_secret` for that
    /// purpose alone (rotating the secret invalidates links not yet used).
    pub fn link_signer(&self) -> archer_workers::links::LinkSigner {
        use secrecy::ExposeSecret;
        archer_workers::links::LinkSigner::new(self.jwt_secret.expose_secret().as_bytes())
    }

    pub fn temporal(&self) -> TemporalConfig {
        TemporalConfig {
            address: self.temporal_address.clone(),
            namespace: self.temporal_namespace.clone(),
            task_queue: self.task_queue.clone(),
        }
    }

    /// Where and as whom to send email (`archer_workers::email::Mailer::new` checks it).
    pub fn mail(&self) -> MailConfig {
        MailConfig { smtp_url: self.smtp_url.0.clone(), from: self.mail_from.clone() }
    }

    /// The limits every database session of this process runs under.
    pub fn database_limits(&self) -> archer_store::SessionLimits {
        archer_store::SessionLimits {
            idle_in_transaction: Duration::from_secs(self.database_idle_in_transaction_timeout_secs),
            lock_wait: Duration::from_secs(self.database_lock_timeout_secs),
        }
    }

    /// Connects this process's database pool.
    pub async fn connect_database(&self, max_connections: u32) -> Result<sqlx::PgPool, archer_store::StoreError> {
        archer_store::connect_with(self.database_url.expose_secret(), max_connections, self.database_limits()).await
    }

    /// Connects this process's database handle: its pool, and the clock its transactions read.
    pub async fn connect_db(
        &self,
        max_connections: u32,
        clock: std::sync::Arc<dyn archer_store::Clock>,
    ) -> Result<archer_store::Db, archer_store::StoreError> {
        Ok(archer_store::Db::new(self.connect_database(max_connections).await?, clock))
    }

    /// How long a stopping process waits for the work it has started (`shutdown_grace_secs`).
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Issue 10: connection secrets are encrypted under a key nobody forgets to set: without
    /// one (or with one that is not 32 bytes) nothing starts.
    #[test]
    fn the_secrets_key_is_required_and_checked() {
        let base = || Config::figment(None).set("jwt_secret", "x".repeat(32));
        // empty is the default, i.e. not configured (set here so an ARCHER_SECRETS_KEY in the
        // environment, as `archer dev --exec` exports, does not stand in for it)
        let missing = base().set("secrets_key", "").extract().unwrap_err().to_string();
        assert!(missing.contains("secrets_key (ARCHER_SECRETS_KEY)"), "{missing}");
        assert!(base().set("secrets_key", "c2hvcnQ=").extract().is_err());
        let config = base().set("secrets_key", DEV_SECRETS_KEY).extract().unwrap();
        assert!(!format!("{config:?}").contains(DEV_SECRETS_KEY));
        // the development key is the store's own development key
        let sealed = config.cipher().encrypt(&"s3cret".into()).unwrap();
        let opened = archer_store::secrets::Cipher::dev().decrypt(&sealed.0, &sealed.1).unwrap();
        assert_eq!(opened.expose_secret(), "s3cret");
    }

    /// Issue 11: the worker's workflow cache is bounded (200 by default: measured, it holds
    /// memory where the SDK's 1,000 doubled it) and can be set, but not turned off (below 2 the
    /// SDK refuses a sticky cache).
    #[test]
    fn the_worker_cache_is_bounded_and_configurable() {
        let base = || Config::figment(None).set("jwt_secret", "x".repeat(32)).set("secrets_key", DEV_SECRETS_KEY);
        let default = base().extract().unwrap();
        assert_eq!(default.worker_deps(std::sync::Arc::new(archer_store::SystemClock)).max_cached_workflows, 200);
        let small = base().set("worker_max_cached_workflows", 50).extract().unwrap();
        assert_eq!(small.worker_max_cached_workflows, 50);
        let off = base().set("worker_max_cached_workflows", 1).extract().unwrap_err().to_string();
        assert!(off.contains("worker_max_cached_workflows must be at least 2"), "{off}");
        let deps = base()
            .set("worker_sticky_timeout_secs", 3)
            .extract()
            .unwrap()
            .worker_deps(std::sync::Arc::new(archer_store::SystemClock));
        assert_eq!(deps.sticky_timeout, std::time::Duration::from_secs(3));
        let never = base().set("worker_sticky_timeout_secs", 0).extract().unwrap_err().to_string();
        assert!(never.contains("worker_sticky_timeout_secs must be positive"), "{never}");
    }

    /// Issue 8, item 6: no secret in what configuration prints.
    #[test]
    fn debug_and_display_show_no_secret() {
        let config = Config::figment(None)
            .set("smtp_url", "smtps://mailer:smtp-hunter2@mail.example:465")
            .set("database_url", "postgres://archer:db-hunter2@db.example/archer")
            .set("jwt_secret", "jwt-hunter2-jwt-hunter2-jwt-hunter2-0123")
            .set("secrets_key", DEV_SECRETS_KEY)
            .extract()
            .unwrap();
        let shown = format!(
            "{config:?} {} {:?} {:?}",
            config.smtp_url,
            config.mail(),
            config.worker_deps(std::sync::Arc::new(archer_store::SystemClock))
        );
        for secret in ["smtp-hunter2", "db-hunter2", "jwt-hunter2"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("mail.example"), "{shown}");
        // the URL itself still carries the password for the mailer
        assert_eq!(config.mail().smtp_url.password(), Some("smtp-hunter2"));
    }
}
