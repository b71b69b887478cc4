//! `archer serve` and `archer worker` as processes of their own, to kill with SIGKILL and start
//! again (the scale-out test), and a small seeded random number generator for chaos schedules.
//!
//! Each process's output goes to `target/scale-out/<name>.log` (every start appends, with a
//! header line), so a failure can be traced to the process that did what.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use temporalio_client::Client;
use temporalio_client::tonic::IntoRequest;
use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, TaskQueueType};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{JWT_SECRET, archer_bin, services};

/// A seeded pseudo-random generator (SplitMix64): the same seed gives the same schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo) }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// An index into a slice of `n` things (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.range(0, n as u64) as usize
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// An independent generator for a sub-task (a client, the chaos schedule).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// The seed from `var` if set (to repeat a run), else one from the clock.
pub fn seed(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// What an `archer serve` or `archer worker` of a test is configured with (as environment
/// variables, as operators configure it).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub database_url: String,
    pub task_queue: String,
    pub smtp_url: String,
    /// The URL emailed links point at (one of the APIs; a load balancer in production).
    pub public_url: String,
    /// `ARCHER_LOG`: the relay's leadership changes are read from its `info` lines; the
    /// workers' `info` lines say what each recorded and sent.
    pub log_filter: String,
    /// Extra `ARCHER_*` settings for every process.
    pub extra: Vec<(String, String)>,
}

impl Cluster {
    pub fn new(database_url: &str, task_queue: &str, smtp_url: &str, public_url: &str) -> Self {
        Cluster {
            database_url: database_url.to_owned(),
            task_queue: task_queue.to_owned(),
            smtp_url: smtp_url.to_owned(),
            public_url: public_url.to_owned(),
            log_filter: "warn,archer_api::relay=info,archer_workers=info".to_owned(),
            extra: Vec::new(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("ARCHER_DATABASE_URL", self.database_url.as_str()),
            ("ARCHER_TEMPORAL_ADDRESS", services().temporal_address.as_str()),
            ("ARCHER_TASK_QUEUE", self.task_queue.as_str()),
            ("ARCHER_JWT_SECRET", JWT_SECRET),
            ("ARCHER_SMTP_URL", self.smtp_url.as_str()),
            ("ARCHER_PUBLIC_URL", self.public_url.as_str()),
            ("ARCHER_LOG", self.log_filter.as_str()),
            ("ARCHER_LOG_FORMAT", "json"),
            // every test client logs in from 127.0.0.1
            ("ARCHER_LOGIN_RATE_BURST", "10000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(self.extra.iter().cloned());
        env
    }

    /// `archer serve` (API and relay) listening on `port`; not started yet.
    pub fn serve(&self, name: &str, port: u16) -> Archer {
        let mut env = self.env();
        env.push(("ARCHER_LISTEN".into(), format!("127.0.0.1:{port}")));
        env.push(("ARCHER_RELAY".into(), "true".into()));
        Archer::new(name, Role::Serve, format!("http://127.0.0.1:{port}"), env)
    }

    /// `archer worker` serving its probes on `port`; not started yet.
    pub fn worker(&self, name: &str, port: u16) -> Archer {
        let mut env = self.env();
        env.push(("ARCHER_WORKER_LISTEN".into(), format!("127.0.0.1:{port}")));
        Archer::new(name, Role::Worker, format!("http://127.0.0.1:{port}"), env)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Worker,
}

/// What a process said about the relay, by this process's monotonic clock.
#[derive(Debug, Default)]
struct RelayLog {
    /// "outbox relay leading": it took the lock.
    leading: Option<Instant>,
    /// "outbox relay interrupted": it lost its connection (and the lock with it).
    interrupted: Option<Instant>,
}

/// One `archer` process slot: started, killed and started again under the same name, port and
/// configuration.
pub struct Archer {
    pub name: String,
    pub role: Role,
    /// serve: the API; worker: its probes.
    pub base: String,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    /// The running process's id.
    pub pid: Option<u32>,
    /// How many times it was started.
    pub starts: u32,
    relay: Arc<Mutex<RelayLog>>,
    log_path: PathBuf,
}

/// `target/scale-out`: the processes' logs.
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("scale-out");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Archer {
    fn new(name: &str, role: Role, base: String, env: Vec<(String, String)>) -> Self {
        let log_path = log_dir().join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log_path);
        Archer {
            name: name.to_owned(),
            role,
            base,
            env,
            child: None,
            pid: None,
            starts: 0,
            relay: Arc::default(),
            log_path,
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// Starts the process (without waiting for it to be ready: see [`Archer::ready`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let sub = match self.role {
            Role::Serve => "serve",
            Role::Worker => "worker",
        };
        let mut cmd = tokio::process::Command::new(archer_bin());
        cmd.arg(sub).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn archer {sub} ({}): {e}", self.name));
        self.starts += 1;
        self.pid = child.id();
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = RelayLog::default();
        let file = Arc::new(Mutex::new(
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("process log"),
        ));
        let _ = writeln!(
            file.lock().unwrap_or_else(PoisonError::into_inner),
            "==== start {} of {} (pid {:?})",
            self.starts,
            self.name,
            self.pid
        );
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let streams: [Box<dyn tokio::io::AsyncRead + Send + Unpin>; 2] = [Box::new(stdout), Box::new(stderr)];
        for stream in streams {
            let file = Arc::clone(&file);
            let relay = Arc::clone(&self.relay);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let now = Instant::now();
                    if line.contains("outbox relay leading") {
                        relay.lock().unwrap_or_else(PoisonError::into_inner).leading = Some(now);
                    } else if line.contains("outbox relay interrupted") {
                        relay.lock().unwrap_or_else(PoisonError::into_inner).interrupted = Some(now);
                    }
                    let _ = writeln!(file.lock().unwrap_or_else(PoisonError::into_inner), "{line}");
                }
            });
        }
        self.child = Some(child);
    }

    /// Waits until the process serves: the API's `/health`; a worker polling its task queue
    /// (Temporal lists it, by the identity `archer@<pid>`, among the queue's pollers).
    pub async fn ready(&self, http: &reqwest::Client, temporal: &Client, task_queue: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = match self.role {
                Role::Serve => {
                    http.get(format!("{}/health", self.base)).send().await.is_ok_and(|r| r.status().is_success())
                }
                Role::Worker => match self.pid {
                    Some(pid) => polling(temporal, task_queue).await.contains(&format!("archer@{pid}")),
                    None => false,
                },
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "{} ({:?}) did not become ready within 60 s", self.name, self.role);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self, http: &reqwest::Client, temporal: &Client, task_queue: &str) {
        self.spawn();
        self.ready(http, temporal, task_queue).await;
    }

    /// SIGKILL, and waits for the process to be gone; returns when the signal was sent.
    pub async fn kill(&mut self) -> Instant {
        let mut child = self.child.take().unwrap_or_else(|| panic!("{} is not running", self.name));
        let at = Instant::now();
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait for the killed process");
        self.pid = None;
        at
    }

    /// Whether this process leads the outbox relay: the `archer_relay_leader` gauge of its
    /// `/metrics` when it has one, else what it logged (it took the lock and did not lose it
    /// since). `false` while it is down.
    pub async fn leads(&self, http: &reqwest::Client) -> bool {
        if self.child.is_none() || self.role != Role::Serve {
            return false;
        }
        if let Some(v) = relay_leader_gauge(http, &self.base).await {
            return v;
        }
        let r = self.relay.lock().unwrap_or_else(PoisonError::into_inner);
        match (r.leading, r.interrupted) {
            (Some(l), Some(i)) => l > i,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// The `archer_relay_leader` gauge, if the process exports it.
async fn relay_leader_gauge(http: &reqwest::Client, base: &str) -> Option<bool> {
    let r = http.get(format!("{base}/metrics")).timeout(Duration::from_secs(2)).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let text = r.text().await.ok()?;
    text.lines()
        .filter(|l| l.starts_with("archer_relay_leader"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .next()
        .map(|v| v >= 1.0)
}

/// The identities polling `task_queue` for workflow tasks (recently: Temporal keeps a poller
/// listed for a while after it stopped).
pub async fn polling(temporal: &Client, task_queue: &str) -> Vec<String> {
    let mut svc = temporal.connection().workflow_service();
    let req = DescribeTaskQueueRequest {
        namespace: "default".to_owned(),
        task_queue: Some(TaskQueue {
            name: task_queue.to_owned(),
            kind: TaskQueueKind::Normal as i32,
            normal_name: String::new(),
        }),
        task_queue_type: TaskQueueType::Workflow as i32,
        ..Default::default()
    };
    match svc.describe_task_queue(req.into_request()).await {
        Ok(r) => r.into_inner().pollers.into_iter().map(|p| p.identity).collect(),
        Err(_) => Vec::new(),
    }
}

/// CPU time (user and system, in seconds) process `pid` has used, if it runs.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // after the command: state, ppid, ... utime (14th field of the line), stime (15th)
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The processes of the stack this test runs against, by command name (`temporal`, `postgres`,
/// ...): the descendants of the nearest `archer` ancestor of this process (`archer dev --exec`,
/// which `./dev test` runs the suite under). Empty when there is none.
pub fn stack() -> BTreeMap<String, Vec<u32>> {
    let mut parent = HashMap::new();
    let mut command = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some((head, rest))) = (stat.find('('), stat.rsplit_once(')')) else { continue };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) else { continue };
        command.insert(pid, head[open + 1..].to_owned());
        parent.insert(pid, ppid);
    }
    let mut root = None;
    let mut p = std::process::id();
    while let Some(&pp) = parent.get(&p) {
        if command.get(&pp).is_some_and(|c| c == "archer") {
            root = Some(pp);
            break;
        }
        p = pp;
    }
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let Some(root) = root else { return out };
    for (&pid, cmd) in &command {
        let mut a = pid;
        while let Some(&pp) = parent.get(&a) {
            if pp == root {
                out.entry(cmd.clone()).or_default().push(pid);
                break;
            }
            a = pp;
        }
    }
    out
}

/// CPU seconds every core of the machine spent busy (not idle, not waiting on I/O) so far.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|t| t.parse::<f64>().ok()).collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((ticks.iter().take(8).sum::<f64>() - idle) / 100.0)
}

/// CPU seconds used so far by groups of processes.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    at: Option<Instant>,
    used: BTreeMap<String, f64>,
}

impl CpuSample {
    /// Samples `groups` (name → pids), and the whole machine as `machine`.
    pub fn take(groups: &BTreeMap<String, Vec<u32>>) -> Self {
        let mut used: BTreeMap<String, f64> =
            groups.iter().map(|(g, pids)| (g.clone(), pids.iter().filter_map(|p| cpu_seconds(*p)).sum())).collect();
        if let Some(busy) = machine_busy_seconds() {
            used.insert("machine".into(), busy);
        }
        CpuSample { at: Some(Instant::now()), used }
    }

    /// Each group's share of one core between `earlier` and this sample, in percent.
    pub fn since(&self, earlier: &CpuSample) -> BTreeMap<String, f64> {
        let wall = match (self.at, earlier.at) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64().max(1e-3),
            _ => return BTreeMap::new(),
        };
        self.used
            .iter()
            .map(|(g, s)| (g.clone(), 100.0 * (s - earlier.used.get(g).copied().unwrap_or(0.0)) / wall))
            .collect()
    }
}
