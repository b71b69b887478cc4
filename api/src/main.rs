//! The `archer` binary: `serve`, `worker`, `migrate`, `dev`, `doctor` and `playbook`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use archer_api::config::{Config, LogFormat};
use archer_api::{devstack, server, telemetry};
use archer_store::SystemClock;

#[derive(Parser)]
#[command(name = "archer", version, about = "Archer: ITSM orchestration on durable workflows")]
struct Cli {
    /// A TOML configuration file (environment variables `ARCHER_*` override it).
    #[arg(long, global = true, env = "ARCHER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the HTTP API and the outbox relay.
    Serve,
    /// Run a Temporal worker for Archer's workflows and activities.
    Worker,
    /// Apply database migrations and register Temporal search attributes.
    Migrate,
    /// Run the whole system locally on embedded defaults (PostgreSQL, Temporal, API, worker).
    Dev {
        /// Where data and logs live.
        #[arg(long, env = "ARCHER_DEV_DIR", default_value = ".archer")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        api_port: u16,
        #[arg(long, default_value_t = 7233)]
        temporal_port: u16,
        #[arg(long, default_value_t = 8233)]
        ui_port: u16,
        #[arg(long, default_value_t = 54329)]
        pg_port: u16,
        /// MailDev's SMTP port, where Archer sends its email.
        #[arg(long, default_value_t = 1025)]
        smtp_port: u16,
        /// MailDev's web inbox, to read what Archer sent.
        #[arg(long, default_value_t = 1080)]
        mail_ui_port: u16,
        /// Do not load the demo tenants, users and tickets.
        #[arg(long)]
        no_demo: bool,
        /// Instead: start throwaway services, run COMMAND against them, stop them.
        #[arg(long, requires = "command")]
        exec: bool,
        /// The command for --exec, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Check this configuration against the real parts and say what to fix.
    ///
    /// Loads the configuration as `serve` and `worker` do, then checks: the database (reachable,
    /// every migration of this binary applied and none newer, the role allowed to `SET ROLE
    /// archer_app`), Temporal (reachable, the namespace, Archer's search attributes and their
    /// types, workers polling the task queue), the SMTP server (answers EHLO, offers STARTTLS when
    /// the URL asks for it) and `public_url` (well formed, consistent with `listen`, answering as
    /// Archer). One line per check: `ok`, `warn` (not fatal: no worker polling yet is expected
    /// before `archer worker` starts; an API not up yet), `FAIL ...: <what is wrong>. Fix: <what to
    /// do>`, or `skip` (a check it needs failed). Exit status 1 when anything failed.
    Doctor {
        /// Print the report as JSON (`passed`, and each check's name, status, detail and fix).
        #[arg(long)]
        json: bool,
        /// Seconds each check may take before it counts as failed.
        #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout: u64,
    },
    /// Check or preview a YAML playbook, with the API's validator (no database, no server).
    Playbook {
        #[command(subcommand)]
        command: PlaybookCmd,
    },
}

#[derive(Subcommand)]
enum PlaybookCmd {
    /// Validate FILE: `OK: <name>, N steps in M waves`, or every issue as
    /// `FILE:LINE:COLUMN: kind: message` (exit status 1).
    Validate {
        file: PathBuf,
        /// The catalog item's form (a JSON Schema file) whose fields `request.fields.X` reads.
        #[arg(long, value_name = "SCHEMA.json")]
        form: Option<PathBuf>,
    },
    /// Print the plan of FILE for a sample request (which steps run, in which waves, with
    /// which inputs; which are skipped and why) as JSON. Nothing is run.
    DryRun {
        file: PathBuf,
        /// The catalog request: `{"item": "laptop", "fields": {...}}`.
        #[arg(long, value_name = "JSON")]
        request: Option<String>,
        /// The ticket (the scope's `ticket`); a neutral sample when left out.
        #[arg(long, value_name = "JSON")]
        ticket: Option<String>,
        /// A manual run's inputs.
        #[arg(long, value_name = "JSON")]
        inputs: Option<String>,
        /// The catalog item's form (a JSON Schema file).
        #[arg(long, value_name = "SCHEMA.json")]
        form: Option<PathBuf>,
    },
}

/// jemalloc instead of glibc's malloc. The worker replays evicted workflows from their
/// histories on threads other than those that free them, which is the pattern where glibc's
/// per-thread arenas keep freed memory: profiled at 2,000 open tickets (heaptrack), the worker
/// used 49 MiB of heap at its peak but held 190 MiB resident, growing with every replay.
/// jemalloc returns unused pages to the system over time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // the TLS provider of every HTTPS client in the process (reqwest is built without one):
    // ring, as sqlx, lettre and the workers' clients use
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let code = rt.block_on(run(cli))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    // the spans still buffered go out (tracing on), off the runtime: the exporter blocks
    telemetry::shutdown();
    std::process::exit(code);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Cmd::Dev {
            dir,
            api_port,
            temporal_port,
            ui_port,
            pg_port,
            smtp_port,
            mail_ui_port,
            no_demo,
            exec,
            command,
        } => {
            telemetry::init(LogFormat::Pretty);
            let project_root = std::env::current_dir().context("reading the current directory")?;
            if exec {
                return Ok(devstack::run_exec(&project_root, &command).await?);
            }
            let dir = if dir.is_absolute() { dir } else { project_root.join(dir) };
            devstack::run_dev(devstack::DevOptions {
                project_root,
                dir,
                api_port,
                temporal_port,
                ui_port,
                pg_port,
                smtp_port,
                mail_ui_port,
                seed: !no_demo,
            })
            .await?;
            Ok(0)
        }
        Cmd::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::try_init(config.log_format, config.otlp_endpoint.as_ref(), "archer-api")?;
            let grace = config.shutdown_grace();
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let running = server::start(config, listener, Arc::new(SystemClock)).await?;
            let token = running.token();
            tokio::select! {
                _ = server::shutdown_signal() => {}
                _ = token.cancelled() => {}
            }
            tracing::info!(?grace, "stopping: draining requests and the relay's deliveries");
            running.stop_within(grace).await;
            Ok(0)
        }
        Cmd::Worker => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::try_init(config.log_format, config.otlp_endpoint.as_ref(), "archer-worker")?;
            let grace = config.shutdown_grace();
            let listener = tokio::net::TcpListener::bind(config.worker_listen)
                .await
                .with_context(|| format!("binding worker_listen {}", config.worker_listen))?;
            let status = archer_api::ops::WorkerStatus::default();
            let http_stop = tokio_util::sync::CancellationToken::new();
            let http = tokio::spawn(archer_api::ops::serve_worker_http(listener, status.clone(), http_stop.clone()));
            archer_store::metrics::metrics().running("worker");
            let (temporal, deps) = (config.temporal(), config.worker_deps(Arc::new(SystemClock)));
            let worker = tokio::task::spawn_blocking(move || archer_workers::spawn_worker(temporal, deps)).await??;
            status.set_polling(true);
            server::shutdown_signal().await;
            // not ready from now on; running activities get the grace period to finish, then are
            // cancelled and retried elsewhere
            status.set_polling(false);
            tracing::info!(?grace, "stopping: no new tasks; running activities may finish");
            let stopped = tokio::task::spawn_blocking(move || worker.shutdown());
            match tokio::time::timeout(grace + std::time::Duration::from_secs(5), stopped).await {
                Ok(joined) => joined??,
                Err(_) => tracing::warn!("the worker did not stop within the grace period; exiting anyway"),
            }
            http_stop.cancel();
            let _ = http.await;
            Ok(0)
        }
        Cmd::Doctor { json, timeout } => {
            Ok(archer_api::doctor::cli(cli.config.as_deref(), json, std::time::Duration::from_secs(timeout)).await?)
        }
        Cmd::Playbook { command } => playbook(command),
        Cmd::Migrate => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(config.log_format);
            let pool = archer_store::connect(config.database_url.expose_secret(), 2).await?;
            archer_store::migrate(&pool).await?;
            let client = archer_workers::temporal::connect(&config.temporal()).await?;
            archer_workers::temporal::ensure_search_attributes(&client, &config.temporal_namespace).await?;
            println!("migrations applied; search attributes registered");
            Ok(0)
        }
    }
}

/// `archer playbook`: the same validation as `POST /api/v1/playbooks` (without the tenant's
/// connections, which only the API knows), reported as a compiler would.
fn playbook(command: PlaybookCmd) -> anyhow::Result<i32> {
    use archer_api::views::playbook as view;
    use archer_orchestrator::playbook::{self, CheckEnv};
    let (file, form) = match &command {
        PlaybookCmd::Validate { file, form } | PlaybookCmd::DryRun { file, form, .. } => (file, form),
    };
    let source = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let form = form.as_deref().map(json_file).transpose()?;
    let env = CheckEnv { form, connections: None };
    let pb = match playbook::validate(&source, &env) {
        Ok(pb) => pb,
        Err(errors) => {
            for line in view::issue_lines(&file.display().to_string(), &errors) {
                println!("{line}");
            }
            return Ok(1);
        }
    };
    match command {
        PlaybookCmd::Validate { .. } => {
            println!("OK: {}, {} steps in {} waves", pb.name.value, pb.steps.len(), pb.waves().len());
        }
        PlaybookCmd::DryRun { request, ticket, inputs, .. } => {
            let arg = |name: &str, v: Option<String>| -> anyhow::Result<Option<serde_json::Value>> {
                v.map(|s| serde_json::from_str(&s).with_context(|| format!("--{name} is not JSON"))).transpose()
            };
            let workflow_id = view::dry_run_workflow_id("cli", "DRY-RUN", &pb.name.value);
            let scope = view::dry_run_scope(
                arg("ticket", ticket)?,
                arg("request", request)?,
                arg("inputs", inputs)?,
                &workflow_id,
            );
            let plan = playbook::run::dry_run(&pb, &scope, &workflow_id);
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
    }
    Ok(0)
}

fn json_file(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
