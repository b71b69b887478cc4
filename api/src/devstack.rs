//! `archer dev`: the whole system on embedded defaults, for people and for the test suite.
//!
//! It runs a local PostgreSQL cluster (the machine's PostgreSQL binaries, a project-local data
//! directory) and a local Temporal dev server (the `temporal` CLI), then migrates, loads demo
//! data and runs the API, the outbox relay and a worker in this process. `--exec` instead runs
//! a command against throwaway services and tears them down after (the test suite uses it).
//! `archer dev` (not `--exec`) also runs MailDev, when installed, to catch the email Archer sends.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use rand::Rng;
use sqlx::Connection;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevError {
    let what = what.into();
    move |source| DevError::Io { what, source }
}

/// The external programs the dev stack runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Directory holding `initdb` and `postgres`.
    pub pg_bin: PathBuf,
    /// The `temporal` CLI.
    pub temporal: PathBuf,
    /// MailDev, the mail catcher `archer dev` sends email to; `None` when it is not installed
    /// (email then goes nowhere).
    pub maildev: Option<PathBuf>,
}

impl Tools {
    /// Finds PostgreSQL (`ARCHER_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`), the
    /// Temporal CLI (`ARCHER_TEMPORAL_BIN`, else `<project>/.archer/tools/bin/temporal`, else
    /// `PATH`) and MailDev (`ARCHER_MAILDEV_BIN`, else
    /// `<project>/.archer/tools/maildev/node_modules/.bin/maildev`, which `./dev up` installs).
    pub fn find(project_root: &Path) -> Result<Self, DevError> {
        let pg_bin = match std::env::var_os("ARCHER_PG_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                        let bin = e.path().join("bin");
                        bin.join("postgres").exists().then_some((v, bin))
                    })
                    .collect();
                found.sort();
                found.pop().map(|(_, p)| p).ok_or_else(|| {
                    DevError::Setup(
                        "PostgreSQL binaries not found: install postgresql (15+) or set ARCHER_PG_BIN".into(),
                    )
                })?
            }
        };
        let temporal = match std::env::var_os("ARCHER_TEMPORAL_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let local = project_root.join(".archer/tools/bin/temporal");
                if local.exists() {
                    local
                } else {
                    which("temporal").ok_or_else(|| {
                        DevError::Setup(
                            "the temporal CLI was not found: run ./dev (it installs it) or set ARCHER_TEMPORAL_BIN"
                                .into(),
                        )
                    })?
                }
            }
        };
        let maildev = match std::env::var_os("ARCHER_MAILDEV_BIN") {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(project_root.join(".archer/tools/maildev/node_modules/.bin/maildev")).filter(|p| p.exists()),
        };
        Ok(Tools { pg_bin, temporal, maildev })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// A free TCP port on loopback (there is a small window before the service binds it).
pub fn free_port() -> Result<u16, DevError> {
    let l = StdListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

fn port_free(port: u16) -> bool {
    StdListener::bind(("127.0.0.1", port)).is_ok()
}

/// PostgreSQL refuses to run as root; when we are root it runs as the `postgres` user.
fn service_user() -> Result<Option<User>, DevError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    User::from_name("postgres")
        .map_err(|e| DevError::Setup(format!("looking up the postgres user: {e}")))?
        .map(Some)
        .ok_or_else(|| DevError::Setup("running as root needs a `postgres` system user to run PostgreSQL as".into()))
}

fn chown_tree(path: &Path, user: &User) -> Result<(), DevError> {
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .map_err(io(format!("chown {}", path.display())))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(format!("reading {}", path.display())))? {
            let entry = entry.map_err(io("reading a directory"))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// Whether a user other than the owner can reach `path` (every ancestor searchable).
fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .skip(1)
        .all(|a| a.as_os_str().is_empty() || std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn command_as(program: &Path, user: Option<&User>) -> Command {
    let mut c = Command::new(program);
    if let Some(u) = user {
        c.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    c
}

fn log_file(path: &Path) -> Result<std::fs::File, DevError> {
    std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(format!("opening {}", path.display())))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// How a cluster is tuned: durable for the dev stack, fast for throwaway test clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Throwaway,
}

/// A PostgreSQL server this process started.
pub struct Postgres {
    child: Child,
    pub port: u16,
    pub password: String,
    log: PathBuf,
}

impl Postgres {
    /// Starts a cluster in `data_dir`, creating it on first use. Credentials are kept in
    /// `<data_dir>/../pg-password`.
    pub async fn start(tools: &Tools, data_dir: &Path, port: u16, durability: Durability) -> Result<Self, DevError> {
        let user = service_user()?;
        let parent = data_dir.parent().ok_or_else(|| DevError::Setup("the data directory needs a parent".into()))?;
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        if user.is_some() && !reachable_by_others(data_dir) {
            return Err(DevError::Setup(format!(
                "PostgreSQL runs as the postgres user and cannot reach {}; use a data directory under a world-searchable path (ARCHER_DEV_DIR)",
                data_dir.display()
            )));
        }
        let pw_path = parent.join("pg-password");
        let password = match std::fs::read_to_string(&pw_path) {
            Ok(p) if data_dir.join("PG_VERSION").exists() => p.trim().to_owned(),
            _ => {
                let mut bytes = [0u8; 18];
                rand::rng().fill_bytes(&mut bytes);
                let p: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(&pw_path, &p).map_err(io("writing the database password"))?;
                p
            }
        };
        let log = parent.join("postgres.log");
        if !data_dir.join("PG_VERSION").exists() {
            let _ = std::fs::remove_dir_all(data_dir); // a half-made cluster from an interrupted run
            std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
            let pwfile = parent.join(".initdb-pw");
            std::fs::write(&pwfile, &password).map_err(io("writing initdb's password file"))?;
            if let Some(u) = &user {
                chown_tree(data_dir, u)?;
                chown_tree(&pwfile, u)?;
            }
            let out = command_as(&tools.pg_bin.join("initdb"), user.as_ref())
                .arg("-D")
                .arg(data_dir)
                .args(["-U", "archer", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-instructions"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()
                .await
                .map_err(io("running initdb"))?;
            let _ = std::fs::remove_file(&pwfile);
            if !out.status.success() {
                return Err(DevError::Setup(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr))));
            }
        }
        if let Some(u) = &user {
            chown_tree(data_dir, u)?;
        }
        stop_stale_postmaster(tools, data_dir, user.as_ref()).await;
        if !port_free(port) {
            return Err(DevError::Setup(format!(
                "port {port} is in use; PostgreSQL needs it (pick another with --pg-port)"
            )));
        }
        let mut cmd = command_as(&tools.pg_bin.join("postgres"), user.as_ref());
        cmd.arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"])
            .arg("-k")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .kill_on_drop(true);
        if durability == Durability::Throwaway {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=256MB",
            ]);
        }
        let child = cmd.spawn().map_err(io("starting postgres"))?;
        let mut pg = Postgres { child, port, password, log };
        pg.wait_ready().await?;
        Ok(pg)
    }

    /// A URL for `db` as the cluster's superuser `archer`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://archer:{}@127.0.0.1:{}/{}", self.password, self.port, db)
    }

    async fn wait_ready(&mut self) -> Result<(), DevError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevError::Setup(format!("postgres exited ({status}):\n{}", tail(&self.log))));
            }
            if let Ok(c) = sqlx::PgConnection::connect(&self.url("postgres")).await {
                let _ = c.close().await;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevError::Setup(format!("postgres did not come up:\n{}", tail(&self.log))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates `db` unless it exists.
    pub async fn ensure_database(&self, db: &str) -> Result<(), DevError> {
        let mut c =
            sqlx::PgConnection::connect(&self.url("postgres")).await.map_err(|e| DevError::Setup(e.to_string()))?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(db)
            .fetch_optional(&mut c)
            .await
            .map_err(|e| DevError::Setup(e.to_string()))?;
        if exists.is_none() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
                .execute(&mut c)
                .await
                .map_err(|e| DevError::Setup(e.to_string()))?;
        }
        Ok(())
    }

    /// Fast shutdown (SIGINT): ends sessions, checkpoints, exits.
    pub async fn stop(mut self) {
        stop_child(&mut self.child, Signal::SIGINT, Duration::from_secs(20)).await;
    }
}

async fn stop_stale_postmaster(tools: &Tools, data_dir: &Path, user: Option<&User>) {
    let Ok(pidfile) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else { return };
    let Some(pid) = pidfile.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return };
    if kill(Pid::from_raw(pid), None).is_ok() {
        tracing::warn!(pid, "stopping a PostgreSQL left running by an earlier `archer dev`");
        let _ = command_as(&tools.pg_bin.join("pg_ctl"), user)
            .arg("-D")
            .arg(data_dir)
            .args(["stop", "-m", "fast", "-w"])
            .output()
            .await;
    }
}

async fn stop_child(child: &mut Child, signal: Signal, grace: Duration) {
    if let Some(id) = child.id() {
        let _ = kill(Pid::from_raw(id as i32), signal);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// A Temporal dev server this process started.
pub struct TemporalDev {
    child: Child,
    pub port: u16,
    pub ui_port: Option<u16>,
    pid_file: Option<PathBuf>,
}

impl TemporalDev {
    /// Starts `temporal server start-dev`. With `db_file` its state survives restarts (SQLite in
    /// WAL mode); without, it lives in memory. `ui_port: None` runs it headless.
    pub async fn start(
        tools: &Tools,
        port: u16,
        ui_port: Option<u16>,
        db_file: Option<&Path>,
        log: &Path,
    ) -> Result<Self, DevError> {
        let pid_file = db_file.map(|f| f.with_extension("pid"));
        if let Some(pf) = &pid_file {
            stop_stale_temporal(pf);
        }
        for p in std::iter::once(port).chain(ui_port) {
            if !port_free(p) {
                return Err(DevError::Setup(format!("port {p} is in use; the Temporal dev server needs it")));
            }
        }
        let mut cmd = Command::new(&tools.temporal);
        cmd.args(["server", "start-dev", "--ip", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"]);
        match ui_port {
            Some(ui) => {
                cmd.args(["--ui-ip", "127.0.0.1", "--ui-port", &ui.to_string()]);
            }
            None => {
                cmd.arg("--headless");
            }
        }
        if let Some(f) = db_file {
            cmd.arg("--db-filename").arg(f).args([
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]);
        }
        cmd.stdin(Stdio::null()).stdout(log_file(log)?).stderr(log_file(log)?).kill_on_drop(true);
        let child = cmd.spawn().map_err(io(format!("starting {}", tools.temporal.display())))?;
        if let (Some(pf), Some(id)) = (&pid_file, child.id()) {
            let _ = std::fs::write(pf, id.to_string());
        }
        let mut t = TemporalDev { child, port, ui_port, pid_file };
        t.wait_ready(log).await?;
        Ok(t)
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ui_url(&self) -> Option<String> {
        self.ui_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<(), DevError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let cfg = archer_workers::TemporalConfig {
            address: url::Url::parse(&self.address()).map_err(|e| DevError::Setup(e.to_string()))?,
            namespace: "default".into(),
            task_queue: "archer".into(),
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevError::Setup(format!("the Temporal dev server exited ({status}):\n{}", tail(log))));
            }
            if let Ok(client) = archer_workers::temporal::connect(&cfg).await
                && archer_workers::temporal::ensure_search_attributes(&client, "default").await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevError::Setup(format!("the Temporal dev server did not come up:\n{}", tail(log))));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn stop(mut self) {
        stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(15)).await;
        if let Some(pf) = &self.pid_file {
            let _ = std::fs::remove_file(pf);
        }
    }
}

fn stop_stale_temporal(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("start-dev") {
        tracing::warn!(pid, "stopping a Temporal dev server left running by an earlier `archer dev`");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        std::thread::sleep(Duration::from_secs(2));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(pid_file);
}

/// A MailDev mail catcher this process started: an SMTP server that keeps every message, and a
/// web inbox (with a REST API under `/email`) to read them.
pub struct MailDev {
    child: Child,
    pub smtp_port: u16,
    pub ui_port: u16,
    pid_file: PathBuf,
}

impl MailDev {
    /// Starts `bin` on loopback with its SMTP server on `smtp_port` and its web inbox on
    /// `ui_port`, keeping messages in `<dir>/maildev` and its log in `<dir>/maildev.log`. Stops
    /// a MailDev left running by an earlier `archer dev` first (`<dir>/maildev.pid`).
    pub async fn start(bin: &Path, smtp_port: u16, ui_port: u16, dir: &Path) -> Result<Self, DevError> {
        let pid_file = dir.join("maildev.pid");
        stop_stale_maildev(&pid_file).await;
        for (p, option) in [(smtp_port, "--smtp-port"), (ui_port, "--mail-ui-port")] {
            if !port_free(p) {
                return Err(DevError::Setup(format!(
                    "port {p} is in use; MailDev needs it (pick another with {option})"
                )));
            }
        }
        let mail_dir = dir.join("maildev");
        std::fs::create_dir_all(&mail_dir).map_err(io(format!("creating {}", mail_dir.display())))?;
        let log = dir.join("maildev.log");
        let mut cmd = Command::new(bin);
        cmd.args(["--ip", "127.0.0.1", "--smtp", &smtp_port.to_string()])
            .args(["--web-ip", "127.0.0.1", "--web", &ui_port.to_string()])
            .arg("--mail-directory")
            .arg(&mail_dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(io(format!("starting MailDev ({}; it needs node on PATH)", bin.display())))?;
        if let Some(id) = child.id() {
            let _ = std::fs::write(&pid_file, id.to_string());
        }
        let mut m = MailDev { child, smtp_port, ui_port, pid_file };
        if let Err(e) = m.wait_ready(&log).await {
            m.stop().await;
            return Err(e);
        }
        Ok(m)
    }

    /// The web inbox.
    pub fn ui_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ui_port)
    }

    /// Waits until both the SMTP port and the web inbox accept connections.
    async fn wait_ready(&mut self, log: &Path) -> Result<(), DevError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevError::Setup(format!("MailDev exited ({status}):\n{}", tail(log))));
            }
            let accepts = |port: u16| tokio::net::TcpStream::connect(("127.0.0.1", port));
            if accepts(self.smtp_port).await.is_ok() && accepts(self.ui_port).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevError::Setup(format!("MailDev did not come up:\n{}", tail(log))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(mut self) {
        stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(10)).await;
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

async fn stop_stale_maildev(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("maildev") {
        tracing::warn!(pid, "stopping a MailDev left running by an earlier `archer dev`");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(pid_file);
}

/// Reads `<dir>/<name>`, or writes a new random secret there.
pub fn persistent_secret(dir: &Path, name: &str) -> Result<String, DevError> {
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 32
    {
        return Ok(s.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &s).map_err(io(format!("writing {}", path.display())))?;
    Ok(s)
}

/// Ports and places for `archer dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub project_root: PathBuf,
    /// Where data and logs live (default `<project>/.archer`).
    pub dir: PathBuf,
    pub api_port: u16,
    pub temporal_port: u16,
    pub ui_port: u16,
    pub pg_port: u16,
    /// MailDev's SMTP port; Archer's `smtp_url` points there.
    pub smtp_port: u16,
    /// MailDev's web inbox port.
    pub mail_ui_port: u16,
    pub seed: bool,
}

/// Brings everything up, prints where to click, and runs until Ctrl-C or SIGTERM.
pub async fn run_dev(opts: DevOptions) -> Result<(), DevError> {
    use secrecy::SecretString;
    let started = Instant::now();
    let tools = Tools::find(&opts.project_root)?;
    std::fs::create_dir_all(&opts.dir).map_err(io(format!("creating {}", opts.dir.display())))?;
    if !port_free(opts.api_port) {
        return Err(DevError::Setup(format!(
            "port {} is in use; the API needs it (pick another with --api-port)",
            opts.api_port
        )));
    }
    println!("archer dev: starting PostgreSQL ({}) on port {}", tools.pg_bin.display(), opts.pg_port);
    let pg = Postgres::start(&tools, &opts.dir.join("pg"), opts.pg_port, Durability::Durable).await?;
    let result = async {
        pg.ensure_database("archer").await?;
        println!("archer dev: starting the Temporal dev server on port {} (UI {})", opts.temporal_port, opts.ui_port);
        let temporal = TemporalDev::start(
            &tools,
            opts.temporal_port,
            Some(opts.ui_port),
            Some(&opts.dir.join("temporal.db")),
            &opts.dir.join("temporal.log"),
        )
        .await?;
        let result = async {
            let jwt = persistent_secret(&opts.dir, "jwt-secret")?;
            let config = crate::config::Config::figment(None)
                .set("listen", format!("127.0.0.1:{}", opts.api_port))
                .set("public_url", format!("http://127.0.0.1:{}", opts.api_port))
                .set("database_url", pg.url("archer"))
                .set("temporal_address", temporal.address())
                .set("temporal_ui_url", temporal.ui_url())
                .set("jwt_secret", jwt)
                .set("secrets_key", crate::config::DEV_SECRETS_KEY)
                .set("smtp_url", format!("smtp://127.0.0.1:{}", opts.smtp_port))
                .extract()
                .map_err(|e| DevError::Setup(e.to_string()))?;
            let _: &SecretString = &config.database_url;
            let maildev = match &tools.maildev {
                Some(bin) => {
                    println!("archer dev: starting MailDev on port {} (inbox {})", opts.smtp_port, opts.mail_ui_port);
                    Some(MailDev::start(bin, opts.smtp_port, opts.mail_ui_port, &opts.dir).await?)
                }
                None => {
                    println!(
                        "archer dev: MailDev is not installed, so email Archer sends goes nowhere; \
                         `./dev up` installs it (or set ARCHER_MAILDEV_BIN)"
                    );
                    None
                }
            };
            let mail_ui = maildev.as_ref().map(MailDev::ui_url);
            let result = run_system(&opts, config, temporal.ui_url(), mail_ui, started).await;
            if let Some(m) = maildev {
                m.stop().await;
            }
            result
        }
        .await;
        temporal.stop().await;
        result
    }
    .await;
    pg.stop().await;
    println!("archer dev: stopped");
    result
}

async fn run_system(
    opts: &DevOptions,
    config: crate::config::Config,
    ui: Option<String>,
    mail_ui: Option<String>,
    started: Instant,
) -> Result<(), DevError> {
    use secrecy::ExposeSecret;
    let setup = |e: &dyn std::fmt::Display| DevError::Setup(e.to_string());
    let clock: std::sync::Arc<dyn archer_store::Clock> = std::sync::Arc::new(archer_store::SystemClock);
    let pool = archer_store::connect(config.database_url.expose_secret(), 5).await.map_err(|e| setup(&e))?;
    let pool = archer_store::Db::new(pool, clock.clone());
    archer_store::migrate(&pool).await.map_err(|e| setup(&e))?;
    let worker =
        archer_workers::spawn_worker(config.temporal(), config.worker_deps(clock.clone())).map_err(|e| setup(&e))?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(io("binding the API port"))?;
    let server = crate::server::start(config.clone(), listener, clock).await.map_err(|e| setup(&e))?;
    if opts.seed && crate::seed::demo(&pool).await.map_err(|e| setup(&e))? {
        println!("archer dev: loaded demo data");
    }
    print_banner(&config, ui.as_deref(), mail_ui.as_deref(), started.elapsed());
    crate::server::shutdown_signal().await;
    println!("\narcher dev: stopping");
    server.stop().await;
    if let Err(e) = tokio::task::spawn_blocking(move || worker.shutdown()).await {
        tracing::warn!(error = %e, "worker did not stop cleanly");
    }
    pool.close().await;
    Ok(())
}

fn print_banner(config: &crate::config::Config, ui: Option<&str>, mail_ui: Option<&str>, took: Duration) {
    let api = config.public_url.as_str().trim_end_matches('/');
    println!();
    println!("  Archer is up ({:.1} s)", took.as_secs_f64());
    println!();
    println!("  Portal        {api}/portal   (sign in with a demo login below)");
    println!("  API           {api}/api/v1   (OpenAPI: {api}/api/v1/openapi.json)");
    println!("  Ready         {api}/ready   (metrics: {api}/metrics)");
    if let Some(ui) = ui {
        println!("  Temporal UI   {ui}/namespaces/default/workflows");
    }
    println!("  Temporal      {}", config.temporal_address);
    if let Some(mail_ui) = mail_ui {
        println!("  Mail inbox    {mail_ui}   (what Archer sent to {})", config.smtp_url);
    }
    println!();
    println!("  Demo logins (password: {}):", crate::seed::DEMO_PASSWORD);
    for l in crate::seed::DEMO_LOGINS {
        println!("    {:<8} {:<28} {}", l.tenant, l.email, l.roles);
    }
    println!();
    println!("  Try:");
    println!("    TOKEN=$(curl -s {api}/api/v1/auth/login -H 'content-type: application/json' \\");
    println!(
        "      -d '{{\"email\":\"agent@acme.example\",\"password\":\"{}\"}}' | jq -r .access_token)",
        crate::seed::DEMO_PASSWORD
    );
    println!(
        "    curl -s {api}/api/v1/tickets -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\"
    );
    println!("      -d '{{\"kind\":\"incident\",\"title\":\"Printer on fire\",\"impact\":1,\"urgency\":1}}'");
    println!(
        "    temporal workflow list --address {} --query 'ArcherTenant=\"acme\"'",
        config.temporal_address.as_str().trim_start_matches("http://").trim_end_matches('/')
    );
    println!();
    println!("  Approvals: as requester@acme.example, open {api}/portal/catalog and request a Laptop;");
    println!("    the manager's email with Approve and Reject links arrives in the mail inbox, and");
    println!("    manager@acme.example sees it at {api}/portal/approvals");
    println!();
    println!("  Ctrl-C stops everything; data stays in .archer/ for the next run.");
    println!();
}

/// Runs `cmd` against throwaway PostgreSQL and Temporal servers and returns its exit code.
///
/// The command sees `ARCHER_TEST_DATABASE_URL` (the cluster's `postgres` database as
/// superuser), `ARCHER_TEST_TEMPORAL_ADDRESS` and `ARCHER_TEST_TEMPORAL_BIN`, and, unless it
/// is set already, `ARCHER_SECRETS_KEY` as `archer dev` has it (the development key), so the
/// APIs and workers it starts have the one key they require.
pub async fn run_exec(project_root: &Path, cmd: &[String]) -> Result<i32, DevError> {
    let (program, args) = cmd.split_first().ok_or_else(|| DevError::Setup("--exec needs a command".into()))?;
    let tools = Tools::find(project_root)?;
    let dir = std::env::temp_dir().join(format!("archer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let pg = Postgres::start(&tools, &dir.join("pg"), free_port()?, Durability::Throwaway).await?;
    let code = async {
        let temporal = TemporalDev::start(&tools, free_port()?, None, None, &dir.join("temporal.log")).await?;
        let code = async {
            let mut command = Command::new(program);
            command
                .args(args)
                .env("ARCHER_TEST_DATABASE_URL", pg.url("postgres"))
                .env("ARCHER_TEST_TEMPORAL_ADDRESS", temporal.address())
                .env("ARCHER_TEST_TEMPORAL_BIN", &tools.temporal);
            if std::env::var_os("ARCHER_SECRETS_KEY").is_none() {
                command.env("ARCHER_SECRETS_KEY", crate::config::DEV_SECRETS_KEY);
            }
            let mut child = command.spawn().map_err(io(format!("running {program}")))?;
            let status = tokio::select! {
                s = child.wait() => s.map_err(io("waiting for the command"))?,
                _ = crate::server::shutdown_signal() => {
                    stop_child(&mut child, Signal::SIGINT, Duration::from_secs(10)).await;
                    child.wait().await.map_err(io("waiting for the command"))?
                }
            };
            Ok::<i32, DevError>(status.code().unwrap_or(1))
        }
        .await;
        temporal.stop().await;
        code
    }
    .await;
    pg.stop().await;
    if code.as_ref().is_ok_and(|c| *c == 0) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("archer dev --exec: service logs kept in {}", dir.display());
    }
    code
}
