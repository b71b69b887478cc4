//! Issue 13: Archer scaled out (two `archer serve`, whose two relays elect one leader, and two
//! `archer worker`, all real processes against one PostgreSQL and one Temporal) keeps every
//! promise while its processes are killed with SIGKILL at random points and started again.
//!
//! 1. **Drain rate.** With no worker running, [`DRAIN_TICKETS`] creates are delivered to
//!    Temporal (a backlog of ticket workflows waiting for a worker); then one worker (or two) is
//!    started and the rate at which tickets are fully processed (their workflow ran and recorded
//!    its SLA projection) is measured between the 10th and 90th percentile. Four trials, one
//!    worker, two, two, one (the order balances a drift of the machine's load), each setting
//!    the best of its two (what else runs on the machine only slows a trial). Two workers must
//!    drain at least [`DRAIN_FLOOR`] × one worker's rate. Each trial prints the share of a core
//!    the workers, Temporal, PostgreSQL and the whole machine used meanwhile.
//! 2. **Chaos.** [`OPS`] operations by [`CLIENTS`] clients over both APIs, each retrying on the
//!    other API when a connection fails (or a 502/503/504), as a load balancer does, with
//!    `Idempotency-Key` on creates and comments and `If-Match` on changes, so that a retry after
//!    a kill is never a second write: incident creates, catalog requests (a laptop: the
//!    requester's manager, then two of three hardware approvers), changes (status, priority,
//!    assignee), comments, and approval decisions, by the emailed link or in the app. Every
//!    attempt carries `x-request-id: <operation>.<attempt>`, which its audit rows carry too.
//!    Meanwhile a seeded schedule (the seed is printed; `ARCHER_TEST_SEED` repeats the schedule,
//!    though not the exact timing) SIGKILLs the relay leader (3 times), the standby API (twice,
//!    each API kill waiting up to 3 s for a request under way to it) and a worker (4 times),
//!    one at a time, and starts each again after 0.5 to 3 s.
//! 3. **Settle and count.** Everything delivered, every chain caught up, every due breach
//!    recorded, every email sent; then a table of what was lost or doubled, all asserted zero:
//!    tickets (every acknowledged create is stored and audited once, no key stored twice, numbers
//!    without gaps), workflows (exactly one execution of every ticket, request and approval-chain
//!    workflow, nothing else on the task queue) and their signals (as many in each ticket
//!    workflow's history as it has signal intents in the outbox), changes and comments (each
//!    acknowledged one audited once), decisions (each acknowledged one stored with its channel
//!    and audited once, no task decided twice, no decision signalled to its chain twice, and
//!    every step, approval and request in the state its decisions make it), emails (none
//!    received twice, every queued one sent and received unless the database flags its outcome
//!    unknown because its sender died mid-send, every asked approver emailed) and breaches
//!    (every resolution clock that ran past its due instant, as computed here from the very
//!    intents its workflow was sent, breached exactly once, at that instant, escalated once;
//!    none that was not due).
//!
//! The SLA target is 20 s for every priority, and clients never stop a clock (resolve, cancel,
//! wait on the customer) within [`GUARD`] before its due instant: a stop recorded just before
//! the deadline but delivered after it is a race the workflow cannot see. Such a stop (its
//! outbox row delivered after the due instant) is counted as contested and fails the test,
//! since it means a delivery took longer than the guard.
//!
//! **Relay takeover.** The leader holds a PostgreSQL session advisory lock; SIGKILL closes its
//! connection, PostgreSQL ends the session and frees the lock, and the standby, which tries the
//! lock every 3 s (`api/src/relay.rs`), leads at its next try. Measured on 2 cores over 21
//! kills of the leader: 0.5 to 2.9 s to lead (which `archer_relay_leader` on `/metrics` says
//! when the process exports it, else its log line), 0.02 to 0.3 s more to its first delivery.
//! The bound, [`TAKEOVER_BOUND`], is the 3 s retry interval plus 2 s for the session to end
//! and the standby to start delivering on a loaded machine.
//!
//! Run it alone (it runs in `./dev test`'s second pass, the `exact` profile, so that its figures
//! measure Archer rather than the rest of the suite):
//! `./dev test -E 'test(/^scale_out::/)' --no-capture` (about 2 minutes). The processes' logs
//! are in `target/scale-out/`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use archer_tests::approvals::{decision_links, laptop, laptop_answers, token_of};
use archer_tests::processes::{Archer, Cluster, CpuSample, Rng};
use archer_tests::{Options, Resp, TestApp, TestTenant, TestUser, spawn_app_with};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use temporalio_client::{Client, WorkflowExecutionStatus};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use time::OffsetDateTime;
use uuid::Uuid;

/// Operations the clients issue.
const OPS: usize = 1000;
/// Clients issuing them at once.
const CLIENTS: usize = 6;
/// The resolution target of every incident, every priority (seconds).
const BUDGET: f64 = 20.0;
/// No clock is stopped this close before its due instant (seconds).
const GUARD: f64 = 8.0;
/// How long a request may take to be recorded after a client sends it (seconds), for the guard.
const LATENCY: f64 = 1.0;
/// Tickets in each drain backlog (`ARCHER_TEST_DRAIN_TICKETS` overrides it).
const DRAIN_TICKETS: usize = 300;
/// Two workers drain at least this share of one worker's rate. On the 2 cores CI runs on, the
/// drain is bound by the CPU that Temporal, PostgreSQL and the workers share (173-196 % of 200 %
/// busy during a trial), so a second worker splits the same cores: the ratio measured 0.80 to
/// 1.20 over nine runs (about 1.0). The floor is that noise's low end, and catches what a
/// second worker must never do: slow the drain down (a lock, a shared queue, contention).
const DRAIN_FLOOR: f64 = 0.8;
/// From SIGKILL of the leading relay to the standby leading.
const TAKEOVER_BOUND: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// What the clients did

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered with success.
    Acked,
    /// A retry was refused because an earlier attempt, whose answer was lost, had done it
    /// (`412` on the same `If-Match`, `410` for a used link).
    AnswerLost,
    /// Refused (the status).
    Refused(u16),
    /// No answer at all, however often retried.
    Lost,
}

#[derive(Debug, Clone)]
struct Op {
    key: String,
    /// `incident`, `request`, `status`, `priority`, `assignee`, `comment`, `decision`.
    what: &'static str,
    ticket: Option<String>,
    outcome: Outcome,
    attempts: u32,
    /// An attempt was cut off after it was sent (its process killed mid-request).
    cut: bool,
}

#[derive(Debug, Clone)]
struct DecisionOp {
    op: Op,
    task: Uuid,
    decision: &'static str,
    via: &'static str,
}

#[derive(Debug, Default)]
struct Ledger {
    creates: Vec<Op>,
    changes: Vec<Op>,
    comments: Vec<Op>,
    decisions: Vec<DecisionOp>,
}

/// An approver's open task, as the database lists it.
#[derive(Debug, Clone)]
struct Ready {
    task: Uuid,
    approval: Uuid,
    step: Uuid,
    approver: Uuid,
    number: String,
}

/// Open approval tasks, and how many of each step's the clients are to decide.
#[derive(Debug, Default)]
struct Board {
    open: Vec<Ready>,
    taken: HashSet<Uuid>,
    plan: HashMap<Uuid, usize>,
    used: HashMap<Uuid, usize>,
}

impl Board {
    fn take(&mut self, rng: &mut Rng) -> Option<Ready> {
        let free: Vec<&Ready> = self
            .open
            .iter()
            .filter(|r| {
                !self.taken.contains(&r.task)
                    && self.used.get(&r.step).copied().unwrap_or(0) < self.plan.get(&r.step).copied().unwrap_or(1)
            })
            .collect();
        if free.is_empty() {
            return None;
        }
        let r = free[rng.index(free.len())].clone();
        self.taken.insert(r.task);
        *self.used.entry(r.step).or_default() += 1;
        Some(r)
    }
}

/// A resolution clock as a client can know it: due within a window while it runs (seconds
/// since the run's epoch), the time left within a window while it is stopped.
#[derive(Debug, Clone, Copy)]
enum Clock {
    Running(f64, f64),
    Stopped(f64, f64),
    /// Past due for sure, or ended: any change is safe.
    Free,
    /// Stopped too close to its due instant to know whether it breached: never stopped again.
    Frozen,
}

fn running(status: &str) -> bool {
    matches!(status, "new" | "in_progress")
}

/// An incident a client created and works on (only its creator changes it).
#[derive(Debug, Clone)]
struct Mine {
    number: String,
    status: String,
    version: i64,
    allowed: Vec<String>,
    priority: i64,
    assignee: Option<String>,
    clock: Clock,
}

impl Mine {
    fn read(&mut self, v: &Value) {
        self.status = v["status"].as_str().unwrap_or_default().to_owned();
        self.version = v["version"].as_i64().unwrap_or(self.version);
        self.allowed = v["allowed_transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .map(str::to_owned)
            .collect();
        self.priority = v["priority"].as_i64().unwrap_or(self.priority);
        self.assignee = v["assignee_id"].as_str().map(str::to_owned);
    }

    fn final_(&self) -> bool {
        matches!(self.status.as_str(), "closed" | "cancelled")
    }

    /// The clock after a status change sent at `s` and answered at `a`.
    fn moved(&mut self, from: &str, to: &str, s: f64, a: f64) {
        self.clock = match (running(from), running(to), self.clock) {
            (true, false, Clock::Running(lo, hi)) => {
                let (rl, rh) = (lo - a, hi - s);
                if rh < 0.0 {
                    Clock::Free
                } else if rl < 0.0 {
                    Clock::Frozen
                } else {
                    Clock::Stopped(rl, rh)
                }
            }
            (false, true, Clock::Stopped(rl, rh)) => Clock::Running(s + rl, a + rh),
            (_, _, c) => c,
        };
        if matches!(to, "cancelled" | "closed") {
            self.clock = Clock::Free;
        }
    }

    fn tick(&mut self, now: f64) {
        if let Clock::Running(_, hi) = self.clock
            && now > hi + 0.5
        {
            self.clock = Clock::Free;
        }
    }

    /// Whether stopping the clock now cannot land just before its due instant.
    fn may_stop(&self, now: f64) -> bool {
        match self.clock {
            Clock::Running(lo, _) => now + LATENCY < lo - GUARD,
            Clock::Stopped(..) | Clock::Free => true,
            Clock::Frozen => false,
        }
    }
}

/// What every client shares.
struct World {
    app: Arc<TestApp>,
    http: reqwest::Client,
    apis: [String; 2],
    tenant: Uuid,
    agents: [TestUser; 2],
    employee: TestUser,
    item: Value,
    manager: Uuid,
    /// Approvers by id (the manager and the three hardware approvers).
    approvers: HashMap<Uuid, TestUser>,
    epoch: Instant,
    issued: AtomicUsize,
    done: Arc<AtomicUsize>,
    /// Requests under way to each API (the chaos kills an API while some are).
    in_flight: InFlight,
    ledger: Mutex<Ledger>,
    board: Mutex<Board>,
    /// (approver email, ticket number) → (approve link, reject link), from the emails received.
    links: Mutex<HashMap<(String, String), (String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Requests under way, per API.
type InFlight = Arc<[AtomicUsize; 2]>;

/// Counts a request under way to an API for as long as it lives.
struct Underway<'a>(&'a AtomicUsize);

impl<'a> Underway<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Underway(n)
    }
}

impl Drop for Underway<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request as sent (to whichever API), with its answer if one came.
struct Sent {
    resp: Option<Resp>,
    attempts: u32,
    /// Some attempt may have reached the server without its answer coming back.
    ambiguous: bool,
    first: Instant,
}

impl World {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn at(&self, i: Instant) -> f64 {
        i.duration_since(self.epoch).as_secs_f64()
    }

    /// Sends a request to one API, and on a failed connection (or a 502/503/504, or an answer
    /// cut short) again to the other, as a load balancer does. Each attempt carries
    /// `x-request-id: <key>.<attempt>`, which the audit rows it writes carry too.
    async fn call(
        &self,
        prefer: usize,
        key: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Sent {
        let first = Instant::now();
        let mut ambiguous = false;
        for attempt in 1..=80u32 {
            let i = (prefer + attempt as usize - 1) % 2;
            let underway = Underway::new(&self.in_flight[i]);
            let sent = build(&self.http, &self.apis[i]).header("x-request-id", format!("{key}.{attempt}")).send().await;
            match sent {
                Ok(r) => {
                    let resp = archer_tests::http::read(r).await;
                    drop(underway);
                    if (200..300).contains(&resp.status) && resp.body.is_empty() {
                        ambiguous = true;
                    } else if !matches!(resp.status, 502..=504) {
                        return Sent { resp: Some(resp), attempts: attempt, ambiguous, first };
                    }
                }
                Err(e) => {
                    drop(underway);
                    ambiguous |= !e.is_connect();
                }
            }
            tokio::time::sleep(Duration::from_millis(40 * u64::from(attempt.min(8)))).await;
        }
        Sent { resp: None, attempts: 80, ambiguous: true, first }
    }

    async fn create_incident(&self, k: usize, key: String, rng: &mut Rng, mine: &mut Vec<Mine>) {
        let agent = &self.agents[k % 2];
        let mut body = json!({"kind": "incident", "title": format!("scale-out {key}"),
            "impact": rng.range(1, 5), "urgency": rng.range(1, 5)});
        if rng.chance(0.7) {
            body["assignee_id"] = json!(self.agents[rng.index(2)].id);
        }
        let sent = self
            .call(k, &key, |h, base| {
                h.post(format!("{base}/api/v1/tickets"))
                    .bearer_auth(&agent.token)
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        let (s, a) = (self.at(sent.first), self.now());
        let mut op = Op {
            key,
            what: "incident",
            ticket: None,
            outcome: Outcome::Lost,
            attempts: sent.attempts,
            cut: sent.ambiguous,
        };
        match &sent.resp {
            Some(r) if r.status == 201 => {
                let number = r.json["number"].as_str().expect("number").to_owned();
                op.ticket = Some(number.clone());
                op.outcome = Outcome::Acked;
                let mut m = Mine {
                    number,
                    status: String::new(),
                    version: 1,
                    allowed: Vec::new(),
                    priority: 4,
                    assignee: None,
                    clock: Clock::Running(s + BUDGET, a + BUDGET),
                };
                m.read(&r.json);
                mine.push(m);
            }
            Some(r) => op.outcome = Outcome::Refused(r.status),
            None => {}
        }
        lock(&self.ledger).creates.push(op);
    }

    async fn create_request(&self, k: usize, key: String) {
        let mut fields = laptop_answers();
        fields["justification"] = json!(format!("scale-out {key}: a new starter needs a machine"));
        let body = json!({"item": self.item["id"], "fields": fields});
        let token = &self.employee.token;
        let sent = self
            .call(k, &key, |h, base| {
                h.post(format!("{base}/api/v1/requests")).bearer_auth(token).header("idempotency-key", &key).json(&body)
            })
            .await;
        let mut op = Op {
            key,
            what: "request",
            ticket: None,
            outcome: Outcome::Lost,
            attempts: sent.attempts,
            cut: sent.ambiguous,
        };
        match &sent.resp {
            Some(r) if r.status == 201 => {
                op.ticket = r.json["number"].as_str().map(str::to_owned);
                op.outcome = Outcome::Acked;
            }
            Some(r) => op.outcome = Outcome::Refused(r.status),
            None => {}
        }
        lock(&self.ledger).creates.push(op);
    }

    /// Reads the ticket again (after an answer was lost or refused).
    async fn resync(&self, k: usize, key: &str, m: &mut Mine, sent_at: f64) {
        let token = &self.agents[k % 2].token;
        let number = m.number.clone();
        let sent = self
            .call(k, &format!("{key}-read"), |h, base| {
                h.get(format!("{base}/api/v1/tickets/{number}")).bearer_auth(token)
            })
            .await;
        if let Some(r) = sent.resp.filter(|r| r.status == 200) {
            let from = m.status.clone();
            m.read(&r.json);
            let to = m.status.clone();
            m.moved(&from, &to, sent_at, self.now());
        }
    }

    async fn change(&self, k: usize, key: String, rng: &mut Rng, m: &mut Mine) {
        let now = self.now();
        m.tick(now);
        let (allow_cancel, allow_close) = (rng.chance(0.15), rng.chance(0.4));
        let statuses: Vec<String> = m
            .allowed
            .iter()
            .filter(|to| {
                let stops = running(&m.status) && !running(to);
                (!stops || m.may_stop(now))
                    && (to.as_str() != "cancelled" || allow_cancel)
                    && (to.as_str() != "closed" || allow_close)
            })
            .cloned()
            .collect();
        let roll = rng.range(0, 100);
        let (what, body) = if roll < 55 && !statuses.is_empty() {
            ("status", json!({"status": statuses[rng.index(statuses.len())]}))
        } else if roll < 78 {
            ("priority", json!({"priority": m.priority % 4 + 1, "priority_reason": format!("scale-out {key}")}))
        } else {
            let next = match &m.assignee {
                Some(a) if *a == self.agents[0].id.to_string() => json!(self.agents[1].id),
                Some(_) if rng.chance(0.3) => Value::Null,
                _ => json!(self.agents[0].id),
            };
            ("assignee", json!({"assignee_id": next}))
        };
        let token = &self.agents[k % 2].token;
        let (number, etag) = (m.number.clone(), format!("\"{}\"", m.version));
        let sent = self
            .call(k, &key, |h, base| {
                h.patch(format!("{base}/api/v1/tickets/{number}"))
                    .bearer_auth(token)
                    .header("if-match", &etag)
                    .json(&body)
            })
            .await;
        let s = self.at(sent.first);
        let mut op = Op {
            key: key.clone(),
            what,
            ticket: Some(m.number.clone()),
            outcome: Outcome::Lost,
            attempts: sent.attempts,
            cut: sent.ambiguous,
        };
        match &sent.resp {
            Some(r) if r.status == 200 => {
                op.outcome = Outcome::Acked;
                let from = m.status.clone();
                m.read(&r.json);
                let to = m.status.clone();
                m.moved(&from, &to, s, self.now());
            }
            Some(r) => {
                op.outcome =
                    if r.status == 412 && sent.ambiguous { Outcome::AnswerLost } else { Outcome::Refused(r.status) };
                self.resync(k, &key, m, s).await;
            }
            None => self.resync(k, &key, m, s).await,
        }
        lock(&self.ledger).changes.push(op);
    }

    async fn comment(&self, k: usize, key: String, rng: &mut Rng, m: &Mine) {
        let token = &self.agents[k % 2].token;
        let body = json!({"body": format!("scale-out comment {key}"), "internal": rng.chance(0.3)});
        let number = m.number.clone();
        let sent = self
            .call(k, &key, |h, base| {
                h.post(format!("{base}/api/v1/tickets/{number}/comments"))
                    .bearer_auth(token)
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        let outcome = match &sent.resp {
            Some(r) if r.status == 201 => Outcome::Acked,
            Some(r) => Outcome::Refused(r.status),
            None => Outcome::Lost,
        };
        lock(&self.ledger).comments.push(Op {
            key,
            what: "comment",
            ticket: Some(m.number.clone()),
            outcome,
            attempts: sent.attempts,
            cut: sent.ambiguous,
        });
    }

    async fn decide(&self, k: usize, key: String, rng: &mut Rng, r: Ready) {
        let approve = rng.chance(0.8);
        let approver = &self.approvers[&r.approver];
        let link = lock(&self.links).get(&(approver.email.clone(), r.number.clone())).cloned();
        let by_link = link.is_some() && rng.chance(0.5);
        let comment = format!("scale-out {key}");
        let sent = match link.filter(|_| by_link) {
            Some((yes, no)) => {
                let token = token_of(if approve { &yes } else { &no });
                self.call(k, &key, |h, base| {
                    let mut form = vec![("token", token.clone())];
                    if !approve {
                        form.push(("comment", comment.clone()));
                    }
                    h.post(format!("{base}/approvals/decide")).form(&form)
                })
                .await
            }
            None => {
                let path = if approve { "approve" } else { "reject" };
                let body = if approve { json!({}) } else { json!({"comment": comment}) };
                self.call(k, &key, |h, base| {
                    h.post(format!("{base}/api/v1/approvals/{}/{path}", r.approval))
                        .bearer_auth(&approver.token)
                        .json(&body)
                })
                .await
            }
        };
        let outcome = match &sent.resp {
            Some(resp) if resp.status == 200 => Outcome::Acked,
            Some(resp) if resp.status == 410 && sent.ambiguous => Outcome::AnswerLost,
            Some(resp) => Outcome::Refused(resp.status),
            None => Outcome::Lost,
        };
        lock(&self.ledger).decisions.push(DecisionOp {
            op: Op {
                key,
                what: "decision",
                ticket: Some(r.number.clone()),
                outcome,
                attempts: sent.attempts,
                cut: sent.ambiguous,
            },
            task: r.task,
            decision: if approve { "approved" } else { "rejected" },
            via: if by_link { "email" } else { "app" },
        });
    }
}

/// One client: operations until the shared count reaches [`OPS`], on its own incidents, the
/// catalog, and the open approval tasks.
async fn client(w: Arc<World>, k: usize, mut rng: Rng) {
    let mut mine: Vec<Mine> = Vec::new();
    let mut n = 0;
    while w.issued.fetch_add(1, Ordering::SeqCst) < OPS {
        tokio::time::sleep(rng.millis(150, 550)).await;
        n += 1;
        let key = format!("so-{k}-{n}");
        let roll = rng.range(0, 100);
        let open: Vec<usize> = (0..mine.len()).filter(|i| !mine[*i].final_()).collect();
        let ready = if roll >= 78 { lock(&w.board).take(&mut rng) } else { None };
        if let Some(ready) = ready {
            w.decide(k, key, &mut rng, ready).await;
        } else if (22..32).contains(&roll) {
            w.create_request(k, key).await;
        } else if (32..78).contains(&roll) && !open.is_empty() {
            // half the changes go to incidents whose clock may still be stopped in time, so
            // that many clocks end before they are due
            let now = w.now();
            let young: Vec<usize> = open
                .iter()
                .copied()
                .filter(|i| matches!(mine[*i].clock, Clock::Running(..)) && mine[*i].may_stop(now))
                .collect();
            let pool = if !young.is_empty() && rng.chance(0.5) { &young } else { &open };
            let i = pool[rng.index(pool.len())];
            if roll < 62 {
                w.change(k, key, &mut rng, &mut mine[i]).await;
            } else {
                w.comment(k, key, &mut rng, &mine[i]).await;
            }
        } else {
            w.create_incident(k, key, &mut rng, &mut mine).await;
        }
        w.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Keeps the board of open approval tasks and the index of emailed links current.
async fn watch_approvals(w: Arc<World>, stop: Arc<AtomicBool>, mut rng: Rng) {
    let mut seen = 0;
    while !stop.load(Ordering::SeqCst) {
        let rows: Vec<(Uuid, Uuid, Uuid, Uuid, i32)> = sqlx::query_as(
            "SELECT t.id, t.approval_id, t.step_id, t.approver_id, k.number
               FROM approval_tasks t JOIN approval_steps s ON s.id = t.step_id JOIN tickets k ON k.id = t.ticket_id
              WHERE t.tenant_id = $1 AND t.state = 'asked' AND s.state = 'open'",
        )
        .bind(w.tenant)
        .fetch_all(&w.app.pool)
        .await
        .unwrap_or_default();
        {
            let mut b = lock(&w.board);
            b.open = rows
                .into_iter()
                .map(|(task, approval, step, approver, n)| Ready {
                    task,
                    approval,
                    step,
                    approver,
                    number: format!("REQ-{n:06}"),
                })
                .collect();
            for r in b.open.clone() {
                let plan = if r.approver == w.manager {
                    1
                } else if rng.chance(0.15) {
                    3
                } else {
                    2
                };
                b.plan.entry(r.step).or_insert(plan);
            }
        }
        let mails = w.app.mail.messages_since(seen);
        seen += mails.len();
        for m in mails.iter().filter(|m| m.text.contains("/approvals/decide?token=")) {
            let Some(number) = m.subject.strip_prefix('[').and_then(|s| s.split_once(']')).map(|(n, _)| n.to_owned())
            else {
                continue;
            };
            let links = decision_links(m);
            for to in &m.to {
                lock(&w.links).insert((to.clone(), number.clone()), links.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The processes and the chaos

struct Procs {
    apis: Vec<Archer>,
    workers: Vec<Archer>,
    http: reqwest::Client,
    temporal: Client,
    queue: String,
}

impl Procs {
    async fn start_api(&mut self, i: usize) {
        let (http, temporal, queue) = (self.http.clone(), self.temporal.clone(), self.queue.clone());
        self.apis[i].start(&http, &temporal, &queue).await;
    }

    async fn start_worker(&mut self, i: usize) {
        let (http, temporal, queue) = (self.http.clone(), self.temporal.clone(), self.queue.clone());
        self.workers[i].start(&http, &temporal, &queue).await;
    }

    /// The API whose relay leads, waiting for one to.
    async fn leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for (i, a) in self.apis.iter().enumerate() {
                if a.leads(&self.http).await {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no relay leads after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Leader,
    Standby,
    Worker,
}

#[derive(Debug, Default)]
struct ChaosReport {
    /// One line per kill.
    events: Vec<String>,
    kills: BTreeMap<&'static str, usize>,
    /// Per leader kill: seconds to the standby leading, and to its first delivery.
    takeovers: Vec<(f64, Option<f64>)>,
}

/// Kills (SIGKILL) and restarts processes at seeded random points of the run, one at a time.
async fn chaos(
    mut procs: Procs,
    pool: PgPool,
    done: Arc<AtomicUsize>,
    in_flight: InFlight,
    finished: Arc<AtomicBool>,
    mut rng: Rng,
) -> (Procs, ChaosReport) {
    use Victim::*;
    let schedule = [Leader, Worker, Standby, Worker, Leader, Worker, Standby, Leader, Worker];
    let span = (OPS - 150) / schedule.len();
    let mut report = ChaosReport::default();
    for (i, victim) in schedule.into_iter().enumerate() {
        let at = 60 + i * span + rng.range(0, span as u64 * 2 / 3) as usize;
        while done.load(Ordering::SeqCst) < at && !finished.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if finished.load(Ordering::SeqCst) {
            break;
        }
        let down = rng.millis(500, 3000);
        let op = done.load(Ordering::SeqCst);
        match victim {
            Leader | Standby => {
                let leader = procs.leader(Duration::from_secs(20)).await;
                let (i, other) = if victim == Leader { (leader, 1 - leader) } else { (1 - leader, leader) };
                // mid-request if one comes within 3 s: the request's transaction may or may not
                // commit, and its answer is lost either way
                let waiting = Instant::now();
                while in_flight[i].load(Ordering::SeqCst) == 0 && waiting.elapsed() < Duration::from_secs(3) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let underway = in_flight[i].load(Ordering::SeqCst);
                let wall = OffsetDateTime::now_utc();
                let killed = procs.apis[i].kill().await;
                let mut line = format!(
                    "op {op:>4}, {}: SIGKILL {} ({}, {underway} requests under way)",
                    clock(wall),
                    procs.apis[i].name,
                    if victim == Leader { "relay leader" } else { "standby API" }
                );
                if victim == Leader {
                    let mut took = None;
                    while killed.elapsed() < Duration::from_secs(30) {
                        if procs.apis[other].leads(&procs.http).await {
                            took = Some(killed.elapsed().as_secs_f64());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let took = took.unwrap_or_else(|| {
                        panic!("{} did not take the relay over within 30 s", procs.apis[other].name)
                    });
                    let mut delivered = None;
                    while killed.elapsed() < Duration::from_secs(30) && delivered.is_none() {
                        let first: Option<OffsetDateTime> =
                            sqlx::query_scalar("SELECT min(delivered_at) FROM outbox WHERE delivered_at > $1")
                                .bind(wall)
                                .fetch_one(&pool)
                                .await
                                .unwrap_or(None);
                        delivered = first.map(|t| (t - wall).as_seconds_f64());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = write!(line, "; {} leads after {took:.2} s", procs.apis[other].name);
                    if let Some(d) = delivered {
                        let _ = write!(line, ", delivers after {d:.2} s");
                    }
                    report.takeovers.push((took, delivered));
                }
                tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
                procs.start_api(i).await;
                let _ = write!(line, "; back after {:.1} s", killed.elapsed().as_secs_f64());
                *report.kills.entry(if victim == Leader { "relay leader" } else { "standby API" }).or_default() += 1;
                report.events.push(line);
            }
            Worker => {
                let i = rng.index(procs.workers.len());
                let wall = OffsetDateTime::now_utc();
                let killed = procs.workers[i].kill().await;
                tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
                procs.start_worker(i).await;
                report.events.push(format!(
                    "op {op:>4}, {}: SIGKILL {}; back after {:.1} s",
                    clock(wall),
                    procs.workers[i].name,
                    killed.elapsed().as_secs_f64()
                ));
                *report.kills.entry("worker").or_default() += 1;
            }
        }
    }
    (procs, report)
}

/// A wall-clock instant as `HH:MM:SS.mmm` (UTC), to set beside the processes' logs.
fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond())
}

/// What the database, the SMTP listener and Temporal say about an email that went wrong.
#[allow(clippy::type_complexity)]
async fn explain_email(app: &TestApp, temporal: &Client, message_id: &str) -> String {
    let mut out = String::new();
    let row: Option<(OffsetDateTime, Option<OffsetDateTime>, Option<OffsetDateTime>, i32, Option<String>)> =
        sqlx::query_as(
            "SELECT created_at, sending_since, outcome_unknown_at, attempts, last_error FROM email_outbox
              WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_optional(&app.pool)
        .await
        .expect("email row");
    if let Some((created, sending, unknown, attempts, error)) = row {
        let _ = write!(
            out,
            "queued {}, sending since {:?}, unknown {:?}, {attempts} attempts, last error {error:?}",
            clock(created),
            sending.map(clock),
            unknown.map(clock)
        );
    }
    let now = (std::time::SystemTime::now(), Instant::now());
    for m in app.mail.messages().iter().filter(|m| m.message_id == message_id) {
        let at = now.0 - now.1.duration_since(m.received_at);
        let _ = write!(out, "; received {}", clock(OffsetDateTime::from(at)));
    }
    let Some(task) =
        message_id.strip_prefix("<approval.").and_then(|s| s.split('.').next()).and_then(|s| s.parse::<Uuid>().ok())
    else {
        return out;
    };
    let step: Option<(String, Option<OffsetDateTime>, i32, String, String, String, i32)> = sqlx::query_as(
        "SELECT t.state, t.asked_at, s.ordinal, s.state, a.workflow_id, a.state, k.number FROM approval_tasks t
           JOIN approval_steps s ON s.id = t.step_id JOIN approvals a ON a.id = t.approval_id
           JOIN tickets k ON k.id = t.ticket_id WHERE t.id = $1",
    )
    .bind(task)
    .fetch_optional(&app.pool)
    .await
    .expect("task");
    let Some((task_state, asked, ordinal, step_state, chain, approval_state, number)) = step else { return out };
    let _ = write!(
        out,
        "; REQ-{number:06} step {ordinal} ({step_state}), task {task_state} asked {:?}, approval {approval_state}; {chain} is {:?}:",
        asked.map(clock),
        app.workflow_status(temporal, &chain).await
    );
    for e in archer_tests::temporal::history(temporal, &chain).await {
        let at = e
            .event_time
            .as_ref()
            .and_then(|t| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
                    .ok()
            })
            .map(clock)
            .unwrap_or_default();
        let _ = write!(out, " {:?}@{at}", e.event_type());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Drain rate

#[derive(Debug)]
struct Drain {
    rate: f64,
    span: f64,
    /// Share of one core each kind of process used while the backlog drained (percent).
    cpu: BTreeMap<String, f64>,
}

impl Drain {
    fn cpu(&self) -> String {
        self.cpu.iter().map(|(g, p)| format!("{g} {p:.0}%")).collect::<Vec<_>>().join(", ")
    }
}

/// Delivers [`DRAIN_TICKETS`] ticket workflows to Temporal while no worker runs, then starts
/// `workers` workers and measures how fast they process them (tickets whose workflow recorded
/// its first SLA projection, per second, between the 10th and 90th percentile).
async fn drain(procs: &mut Procs, app: &TestApp, t: &TestTenant, workers: usize) -> Drain {
    let n: usize =
        std::env::var("ARCHER_TEST_DRAIN_TICKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(DRAIN_TICKETS).max(10);
    assert!(procs.workers.iter().all(|w| !w.is_up()), "the workers are stopped while the backlog builds");
    let http = procs.http.clone();
    let apis: Vec<String> = procs.apis.iter().map(|a| a.base.clone()).collect();
    let ids: Vec<Uuid> = futures::stream::iter(0..n)
        .map(|i| {
            let (http, base, token) = (http.clone(), apis[i % 2].clone(), t.agent.token.clone());
            async move {
                let r = http
                    .post(format!("{base}/api/v1/tickets"))
                    .bearer_auth(token)
                    .json(&json!({"kind": "incident", "title": format!("drain {workers} {i}"), "impact": 3, "urgency": 3}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status().as_u16(), 201);
                let v: Value = r.json().await.expect("ticket");
                v["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()).expect("id")
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    archer_tests::eventually(Duration::from_secs(120), "the backlog delivered to Temporal", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE tenant_id = $1 AND delivered_at IS NULL")
            .bind(t.id)
            .fetch_one(&app.pool)
            .await
            .expect("outbox");
        n == 0
    })
    .await;
    for i in 0..workers {
        procs.workers[i].spawn();
    }
    for i in 0..workers {
        let (http, temporal, queue) = (procs.http.clone(), procs.temporal.clone(), procs.queue.clone());
        procs.workers[i].ready(&http, &temporal, &queue).await;
    }
    let mut groups = archer_tests::processes::stack();
    groups.retain(|g, _| g == "temporal" || g == "postgres");
    groups.insert("workers".into(), procs.workers.iter().filter_map(|w| w.pid).collect());
    groups.insert("apis".into(), procs.apis.iter().filter_map(|a| a.pid).collect());
    let before = CpuSample::take(&groups);
    let processed = || async {
        sqlx::query_scalar::<_, OffsetDateTime>(
            "SELECT updated_at FROM ticket_sla WHERE ticket_id = ANY($1) AND seq >= 1 ORDER BY updated_at",
        )
        .bind(&ids)
        .fetch_all(&app.pool)
        .await
        .expect("ticket_sla")
    };
    archer_tests::eventually(Duration::from_secs(180), "the backlog processed", || async {
        processed().await.len() == n
    })
    .await;
    let cpu = CpuSample::take(&groups).since(&before);
    let at = processed().await;
    let (lo, hi) = (at[n / 10], at[n * 9 / 10]);
    let span = (hi - lo).as_seconds_f64();
    Drain { rate: (n * 9 / 10 - n / 10) as f64 / span.max(1e-3), span, cpu }
}

// ---------------------------------------------------------------------------------------------
// The checks

/// Waits until `check` holds, up to `timeout`; says whether it did.
async fn settled<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn jiff_of(t: OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).expect("timestamp")
}

/// A resolution clock as its workflow should see it, from the events it was sent.
#[derive(Debug)]
struct Expected {
    /// When it breaches (passes its due instant while running), if it does.
    breach: Option<jiff::Timestamp>,
    /// A stop recorded before the due instant it prevented but delivered after it.
    contested: bool,
}

/// An outbox row: workflow id, intent, name, payload, when delivered.
type OutboxRow = (String, String, String, Value, Option<OffsetDateTime>);

/// Computes each incident's resolution clock from its workflow's start input (`created_at`)
/// and `status_changed` signals, as outbox rows: the clock runs while the ticket is new or in
/// progress, and breaches once its running time reaches [`BUDGET`].
fn expected_clocks(rows: &[OutboxRow]) -> BTreeMap<String, Expected> {
    // per workflow: when it was created, and its status changes (seq, at, to, delivered)
    type Changes = Vec<(i64, jiff::Timestamp, String, Option<jiff::Timestamp>)>;
    let mut by_wf: BTreeMap<String, (Option<jiff::Timestamp>, Changes)> = BTreeMap::new();
    for (wf, intent, name, payload, delivered) in rows {
        let entry = by_wf.entry(wf.clone()).or_default();
        if intent == "start" {
            // `StartTicket`: the workflow's input and the ticket's title
            entry.0 = payload["input"]["created_at"].as_str().and_then(|s| s.parse().ok());
        } else if name == "status_changed" {
            let at: jiff::Timestamp = payload["at"].as_str().and_then(|s| s.parse().ok()).expect("signal instant");
            let to = payload["to"].as_str().unwrap_or_default().to_owned();
            entry.1.push((payload["seq"].as_i64().unwrap_or(0), at, to, delivered.map(jiff_of)));
        }
    }
    let budget = jiff::SignedDuration::from_secs_f64(BUDGET);
    let mut out = BTreeMap::new();
    for (wf, (created, mut events)) in by_wf {
        let number = wf.rsplit('/').next().unwrap_or_default().to_owned();
        let created = created.unwrap_or_else(|| panic!("{wf}: no start intent with `input.created_at`"));
        events.sort_by_key(|e| e.0);
        let (mut elapsed, mut since, mut on) = (jiff::SignedDuration::ZERO, created, true);
        let mut result = Expected { breach: None, contested: false };
        for (_, at, to, delivered) in &events {
            let now_on = running(to);
            if on && !now_on {
                let due = since + (budget - elapsed);
                if due <= *at {
                    result.breach = Some(due);
                    break;
                }
                if delivered.is_some_and(|d| d > due) {
                    result.contested = true;
                }
                elapsed += at.duration_since(since);
            } else if !on && now_on {
                since = *at;
            }
            on = now_on;
            if to == "cancelled" {
                break;
            }
        }
        if result.breach.is_none() && on && !events.iter().any(|e| e.2 == "cancelled") {
            result.breach = Some(since + (budget - elapsed));
        }
        out.insert(number, result);
    }
    out
}

/// Approvals whose stored state is not what their decisions make it (the chain missed or
/// doubled a decision, or has not caught up), each with why.
async fn approval_mismatches(pool: &PgPool, tenant: Uuid) -> Vec<String> {
    let tasks: Vec<(Uuid, Uuid, i32, String, String)> = sqlx::query_as(
        "SELECT t.approval_id, t.step_id, s.ordinal, s.state, t.state FROM approval_tasks t
           JOIN approval_steps s ON s.id = t.step_id WHERE t.tenant_id = $1 ORDER BY s.ordinal",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .expect("tasks");
    let approvals: Vec<(Uuid, String, i32, String)> = sqlx::query_as(
        "SELECT a.id, a.state, k.number, k.status FROM approvals a JOIN tickets k ON k.id = a.ticket_id WHERE a.tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .expect("approvals");
    let mut steps: BTreeMap<Uuid, BTreeMap<i32, (String, Vec<String>)>> = BTreeMap::new();
    for (approval, _step, ordinal, step_state, task_state) in tasks {
        let s = steps.entry(approval).or_default().entry(ordinal).or_insert_with(|| (step_state, Vec::new()));
        s.1.push(task_state);
    }
    let mut bad = Vec::new();
    for (id, state, number, status) in approvals {
        let empty = BTreeMap::new();
        let st = steps.get(&id).unwrap_or(&empty);
        let mut want_state = "pending";
        let mut why = Vec::new();
        for (i, (ordinal, (step_state, tasks))) in st.iter().enumerate() {
            let approved = tasks.iter().filter(|t| *t == "approved").count();
            let rejected = tasks.iter().filter(|t| *t == "rejected").count();
            // step 1: the manager alone decides; step 2: two of three
            let need = if i == 0 { 1 } else { 2 };
            let can_reject = tasks.len() + 1 - need;
            let want = if approved >= need {
                "approved"
            } else if rejected >= can_reject {
                "rejected"
            } else {
                "open"
            };
            if step_state != want {
                why.push(format!("step {ordinal} is {step_state}, its decisions make it {want} ({tasks:?})"));
            }
            if want != "open" && tasks.iter().any(|t| t == "asked") {
                why.push(format!("step {ordinal} is {want} but still asks ({tasks:?})"));
            }
            match want {
                "rejected" => {
                    want_state = "rejected";
                    break;
                }
                "open" => break,
                _ if i + 1 == st.len() && st.len() >= 2 => want_state = "approved",
                _ => {}
            }
        }
        if st.len() == 1 && st.values().next().is_some_and(|(s, _)| s == "approved") {
            why.push("step 1 approved but step 2 never opened".into());
        }
        if state != want_state {
            why.push(format!("the approval is {state}, its steps make it {want_state}"));
        }
        let want_status = match want_state {
            "approved" => "in_progress",
            "rejected" => "rejected",
            _ => "pending_approval",
        };
        if status != want_status {
            why.push(format!("the request is {status}, not {want_status}"));
        }
        if !why.is_empty() {
            bad.push(format!("REQ-{number:06}: {}", why.join("; ")));
        }
    }
    bad
}

/// The signals in a workflow's history: their names, and the `task_id` of each decision.
async fn signals(client: &Client, workflow_id: &str) -> (usize, Vec<Uuid>) {
    let events = archer_tests::temporal::history(client, workflow_id).await;
    let mut n = 0;
    let mut decisions = Vec::new();
    for e in events {
        if e.event_type() != EventType::WorkflowExecutionSignaled {
            continue;
        }
        n += 1;
        if let Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) = e.attributes
            && a.signal_name == "decision"
            && let Some(p) = a.input.and_then(|i| i.payloads.into_iter().next())
            && let Ok(v) = serde_json::from_slice::<Value>(&p.data)
            && let Some(task) = v["task_id"].as_str().and_then(|s| s.parse().ok())
        {
            decisions.push(task);
        }
    }
    (n, decisions)
}

/// Lines of a table, each `label  value`.
struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, label: impl Into<String>, value: impl std::fmt::Display) {
        self.0.push((label.into(), value.to_string()));
    }

    fn print(&self, title: &str) {
        let w = self.0.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
        println!("\n  {title}");
        for (l, v) in &self.0 {
            println!("  {l:<w$}  {v}");
        }
        println!();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apis_and_two_workers_killed_at_random_lose_and_double_nothing() {
    let began = Instant::now();
    let seed = archer_tests::processes::seed("ARCHER_TEST_SEED");
    println!("scale_out: seed {seed} (ARCHER_TEST_SEED={seed} repeats the schedule)");
    let mut rng = Rng::new(seed);

    // provisioning and inspection only: no relay, no worker in this process
    let app = Arc::new(spawn_app_with(Options { worker: false, relay: false }).await);
    let lap = laptop(&app).await;
    let t = &lap.t;
    let agent2 = app.user(t, "Second Agent", &["agent"], None).await;
    app.policy(
        &t.admin,
        json!({"name": "Scale-out resolution", "spec": {
            "applies_to": {"kinds": ["incident"]},
            "targets": [{"metric": "resolution", "durations": archer_tests::sla::durations([20, 20, 20, 20]), "warnings": []}],
            "escalations": [{"name": "Tell the assignee", "metric": "resolution", "when": "breach",
                "actions": [{"type": "notify", "to": {"assignee": true}}]}]
        }}),
    )
    .await;
    let drain_tenant = app.tenant().await;
    app.resolution_policy(&drain_tenant.admin, [3600, 3600, 3600, 3600]).await;

    let temporal = app.temporal().await;
    let http = {
        archer_tests::crypto();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_secs(15))
    .build()
    .expect("http client");
    let ports: Vec<u16> = (0..4).map(|_| archer_api::devstack::free_port().expect("port")).collect();
    let cluster = Cluster::new(
        &app.database_url,
        &app.task_queue,
        app.mail.url().as_str(),
        &format!("http://127.0.0.1:{}", ports[0]),
    );
    let mut procs = Procs {
        apis: vec![cluster.serve("api-a", ports[0]), cluster.serve("api-b", ports[1])],
        workers: vec![cluster.worker("worker-1", ports[2]), cluster.worker("worker-2", ports[3])],
        http: http.clone(),
        temporal: temporal.clone(),
        queue: app.task_queue.clone(),
    };
    procs.apis[0].spawn();
    procs.apis[1].spawn();
    for a in &procs.apis {
        a.ready(&http, &temporal, &app.task_queue).await;
    }
    procs.leader(Duration::from_secs(30)).await;
    let setup = began.elapsed();

    // 1. drain rate: one worker, two, two, one (the order balances a drift of the machine's
    // load), each the best of its two trials (what else runs on the machine only slows a trial)
    let mut trials: Vec<(usize, f64)> = Vec::new();
    for workers in [1, 2, 2, 1] {
        for i in 0..procs.workers.len() {
            if procs.workers[i].is_up() {
                procs.workers[i].kill().await;
            }
        }
        let d = drain(&mut procs, &app, &drain_tenant, workers).await;
        println!(
            "scale_out: drain with {workers} worker(s): {:.1} tickets/s ({:.2} s for the middle 80 %; cpu {})",
            d.rate,
            d.span,
            d.cpu()
        );
        trials.push((workers, d.rate));
    }
    procs.start_worker(1).await;
    let best = |n: usize| trials.iter().filter(|t| t.0 == n).map(|t| t.1).fold(0.0, f64::max);
    let (one, two) = (best(1), best(2));
    let drained = began.elapsed();

    // 2. the operations, while processes die
    let mut approvers: HashMap<Uuid, TestUser> = lap.approvers.iter().map(|u| (u.id, u.clone())).collect();
    approvers.insert(t.manager.id, t.manager.clone());
    let done = Arc::new(AtomicUsize::new(0));
    let world = Arc::new(World {
        app: Arc::clone(&app),
        http: http.clone(),
        apis: [procs.apis[0].base.clone(), procs.apis[1].base.clone()],
        tenant: t.id,
        agents: [t.agent.clone(), agent2.clone()],
        employee: lap.employee.clone(),
        item: lap.item.clone(),
        manager: t.manager.id,
        approvers,
        epoch: Instant::now(),
        issued: AtomicUsize::new(0),
        in_flight: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]),
        done: Arc::clone(&done),
        ledger: Mutex::default(),
        board: Mutex::default(),
        links: Mutex::default(),
    });
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_approvals(Arc::clone(&world), Arc::clone(&stop_watch), rng.fork()));
    let finished = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(chaos(
        procs,
        app.pool.clone(),
        Arc::clone(&done),
        Arc::clone(&world.in_flight),
        Arc::clone(&finished),
        rng.fork(),
    ));
    let clients: Vec<_> = (0..CLIENTS).map(|k| tokio::spawn(client(Arc::clone(&world), k, rng.fork()))).collect();
    for c in clients {
        c.await.expect("client");
    }
    finished.store(true, Ordering::SeqCst);
    let ops_secs = world.epoch.elapsed().as_secs_f64();
    let (procs, chaos) = chaos.await.expect("chaos");
    stop_watch.store(true, Ordering::SeqCst);
    watcher.await.expect("watcher");
    assert!(procs.apis.iter().chain(&procs.workers).all(Archer::is_up), "every process is back");
    for e in &chaos.events {
        println!("scale_out: {e}");
    }

    // 3. settle: delivered, chains caught up, breaches due recorded, emails sent
    let pool = app.pool.clone();
    let delivered = settled(Duration::from_secs(120), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("outbox");
        n == 0
    })
    .await;
    let chains =
        settled(Duration::from_secs(120), || async { approval_mismatches(&pool, t.id).await.is_empty() }).await;
    let outbox: Vec<OutboxRow> = sqlx::query_as(
        "SELECT workflow_id, intent, name, payload, delivered_at FROM outbox
          WHERE tenant_id = $1 AND workflow_id LIKE '%/INC-%' AND (intent = 'start' OR name = 'status_changed') ORDER BY id",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("outbox rows");
    let clocks = expected_clocks(&outbox);
    let last_due = clocks.values().filter_map(|c| c.breach).max();
    if let Some(due) = last_due {
        let wait = jiff::Timestamp::now().duration_until(due).as_secs_f64() + 1.0;
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
    let breaches = || async {
        sqlx::query_as::<_, (i32, i32, OffsetDateTime)>(
            "SELECT k.number, e.cycle, e.at FROM sla_events e JOIN tickets k ON k.id = e.ticket_id
              WHERE e.tenant_id = $1 AND e.kind = 'breach' AND e.metric = 'resolution' AND k.kind = 'incident'",
        )
        .bind(t.id)
        .fetch_all(&pool)
        .await
        .expect("breaches")
    };
    let want_breached: BTreeSet<String> =
        clocks.iter().filter(|(_, c)| c.breach.is_some()).map(|(n, _)| n.clone()).collect();
    let breaches_in = settled(Duration::from_secs(90), || async {
        let got: BTreeSet<String> = breaches().await.into_iter().map(|(n, _, _)| format!("INC-{n:06}")).collect();
        want_breached.is_subset(&got)
    })
    .await;
    let emails_out = settled(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM email_outbox WHERE sent_at IS NULL AND outcome_unknown_at IS NULL AND sending_since IS NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("emails");
        n == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settle_secs = began.elapsed().as_secs_f64();

    let ledger = std::mem::take(&mut *lock(&world.ledger));
    let mut problems: Vec<String> = Vec::new();
    if !delivered {
        problems.push("the outbox did not drain within 120 s".into());
    }
    if !emails_out {
        problems.push("emails still unsent after 60 s".into());
    }
    if !breaches_in {
        problems.push("due breaches still unrecorded 90 s after the last due instant".into());
    }

    // tickets
    let tickets: Vec<(Uuid, String, i32, String, String, String)> = sqlx::query_as(
        "SELECT id, kind, number, title, coalesce(request_fields->>'justification', ''), status FROM tickets WHERE tenant_id = $1",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("tickets");
    let number_of = |kind: &str, n: i32| format!("{}-{n:06}", if kind == "incident" { "INC" } else { "REQ" });
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (_, kind, n, title, justification, _) in &tickets {
        let key = if kind == "incident" {
            title.strip_prefix("scale-out ").map(str::to_owned)
        } else {
            justification.strip_prefix("scale-out ").and_then(|s| s.split_once(':')).map(|(k, _)| k.to_owned())
        };
        if let Some(key) = key {
            by_key.entry(key).or_default().push(number_of(kind, *n));
        }
    }
    let audit: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT request_id, action, entity_id, after->>'state' FROM audit_log WHERE tenant_id = $1 AND request_id LIKE 'so-%'",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("audit");
    let mut audited: HashMap<(String, String), usize> = HashMap::new();
    for (rid, action, _, _) in &audit {
        let key = rid.rsplit_once('.').map_or(rid.as_str(), |(k, _)| k).to_owned();
        *audited.entry((key, action.clone())).or_default() += 1;
    }
    let audits = |key: &str, action: &str| audited.get(&(key.to_owned(), action.to_owned())).copied().unwrap_or(0);

    let (mut lost_tickets, mut doubled_tickets, mut created_answer_lost) = (0, 0, 0);
    for op in &ledger.creates {
        let stored = by_key.get(&op.key).cloned().unwrap_or_default();
        let inserts = audits(&op.key, "tickets.insert");
        match op.outcome {
            Outcome::Acked => {
                if stored.len() != 1 || stored.first() != op.ticket.as_ref() || inserts != 1 {
                    lost_tickets += usize::from(stored.is_empty());
                    problems.push(format!(
                        "create {} acknowledged as {:?}: stored {stored:?}, audited {inserts}",
                        op.key, op.ticket
                    ));
                }
            }
            _ => created_answer_lost += usize::from(stored.len() == 1),
        }
        if stored.len() > 1 || inserts > 1 {
            doubled_tickets += 1;
            problems.push(format!("create {} stored {stored:?} ({inserts} inserts)", op.key));
        }
    }
    for kind in ["incident", "service_request"] {
        let mut numbers: Vec<i32> = tickets.iter().filter(|r| r.1 == kind).map(|r| r.2).collect();
        numbers.sort_unstable();
        if numbers.iter().enumerate().any(|(i, n)| *n != i as i32 + 1) {
            problems.push(format!("{kind} numbers have gaps or repeats: {numbers:?}"));
        }
    }

    // changes and comments
    let mut bad_changes = 0;
    for op in &ledger.changes {
        let n = audits(&op.key, "tickets.update");
        let ok = match op.outcome {
            Outcome::Acked | Outcome::AnswerLost => n == 1,
            Outcome::Refused(_) => n == 0,
            Outcome::Lost => n <= 1,
        };
        if !ok {
            bad_changes += 1;
            problems.push(format!(
                "change {} ({} of {:?}, {:?}) audited {n} times",
                op.key, op.what, op.ticket, op.outcome
            ));
        }
    }
    let comment_bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM ticket_comments WHERE tenant_id = $1 AND body LIKE 'scale-out comment %'")
            .bind(t.id)
            .fetch_all(&pool)
            .await
            .expect("comments");
    let mut comments: HashMap<String, usize> = HashMap::new();
    for b in comment_bodies {
        *comments.entry(b.trim_start_matches("scale-out comment ").to_owned()).or_default() += 1;
    }
    for op in &ledger.comments {
        let (n, a) = (comments.get(&op.key).copied().unwrap_or(0), audits(&op.key, "ticket_comments.insert"));
        let ok = match op.outcome {
            Outcome::Acked | Outcome::AnswerLost => n == 1 && a == 1,
            Outcome::Refused(_) => n == 0,
            Outcome::Lost => n <= 1 && a <= 1,
        };
        if !ok {
            bad_changes += 1;
            problems.push(format!("comment {} on {:?} ({:?}): stored {n}, audited {a}", op.key, op.ticket, op.outcome));
        }
    }

    // decisions
    let tasks: HashMap<Uuid, (String, Option<String>, bool)> =
        sqlx::query_as::<_, (Uuid, String, Option<String>, bool)>(
            "SELECT id, state, via, asked_at IS NOT NULL FROM approval_tasks WHERE tenant_id = $1",
        )
        .bind(t.id)
        .fetch_all(&pool)
        .await
        .expect("tasks")
        .into_iter()
        .map(|(id, s, v, asked)| (id, (s, v, asked)))
        .collect();
    let decided_audits: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT entity_id, count(*) FROM audit_log WHERE tenant_id = $1 AND entity_type = 'approval_tasks'
            AND after->>'state' IN ('approved', 'rejected') GROUP BY entity_id",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("decision audits")
    .into_iter()
    .collect();
    let (mut lost_decisions, mut doubled_decisions) = (0, 0);
    for d in &ledger.decisions {
        let (state, via, _) = tasks.get(&d.task).cloned().unwrap_or_default();
        let mine = audit
            .iter()
            .filter(|(rid, action, entity, _)| {
                rid.starts_with(&format!("{}.", d.op.key))
                    && action == "approval_tasks.update"
                    && entity.as_deref() == Some(d.task.to_string().as_str())
            })
            .filter(|(.., s)| matches!(s.as_deref(), Some("approved" | "rejected")))
            .count();
        let ok = match d.op.outcome {
            Outcome::Acked | Outcome::AnswerLost => state == d.decision && via.as_deref() == Some(d.via) && mine == 1,
            Outcome::Refused(_) => mine == 0,
            Outcome::Lost => mine <= 1,
        };
        if !ok {
            lost_decisions += 1;
            problems.push(format!(
                "decision {} ({} {} by {} on {:?}, {:?}): the task is {state} via {via:?}, audited {mine} times",
                d.op.key, d.decision, d.task, d.via, d.op.ticket, d.op.outcome
            ));
        }
    }
    for (task, n) in &decided_audits {
        if *n > 1 {
            doubled_decisions += 1;
            problems.push(format!("task {task} decided {n} times in the audit log"));
        }
    }
    let mismatched = approval_mismatches(&pool, t.id).await;
    if !chains {
        problems.extend(mismatched.iter().map(|m| format!("chain: {m}")));
    }

    // workflows: exactly one execution of each, nothing else on the queue
    let all_tickets: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT s.slug, k.kind, k.number FROM tickets k JOIN tenants s ON s.id = k.tenant_id")
            .fetch_all(&pool)
            .await
            .expect("all tickets");
    let mut expected: BTreeSet<String> =
        all_tickets.iter().map(|(slug, kind, n)| format!("{slug}/{}", number_of(kind, *n))).collect();
    let chain_ids: Vec<(String, i32)> = sqlx::query_as("SELECT workflow_id, seq FROM approvals WHERE tenant_id = $1")
        .bind(t.id)
        .fetch_all(&pool)
        .await
        .expect("chains");
    for (chain, seq) in &chain_ids {
        expected.insert(chain.clone());
        if let Some((ticket, _)) = chain.rsplit_once("/approval/") {
            expected.insert(format!("{ticket}/request/{seq}"));
        }
    }
    let query = format!("TaskQueue = '{}'", app.task_queue);
    let listing = || async {
        let mut runs: BTreeMap<String, Vec<WorkflowExecutionStatus>> = BTreeMap::new();
        for (id, status) in app.list_workflows(&temporal, &query).await {
            runs.entry(id).or_default().push(status);
        }
        runs
    };
    settled(Duration::from_secs(60), || async { listing().await.keys().cloned().collect::<BTreeSet<_>>() == expected })
        .await;
    let runs = listing().await;
    let listed: BTreeSet<String> = runs.keys().cloned().collect();
    let missing_wf: Vec<&String> = expected.difference(&listed).collect();
    let extra_wf: Vec<&String> = listed.difference(&expected).collect();
    let doubled_wf: Vec<(&String, &Vec<WorkflowExecutionStatus>)> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    if !missing_wf.is_empty() || !extra_wf.is_empty() || !doubled_wf.is_empty() {
        problems.push(format!(
            "workflows missing {missing_wf:?}, unexpected {extra_wf:?}, with several runs {doubled_wf:?}"
        ));
    }
    // each signal intent of the tenant's workflows is in its history once
    let intents: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT workflow_id, count(*) FILTER (WHERE intent = 'signal') FROM outbox WHERE tenant_id = $1 GROUP BY workflow_id",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("intents")
    .into_iter()
    .collect();
    let ids: Vec<String> =
        listed.intersection(&expected).filter(|id| id.starts_with(&format!("{}/", t.slug))).cloned().collect();
    let histories: Vec<(String, (usize, Vec<Uuid>))> = futures::stream::iter(ids)
        .map(|id| {
            let temporal = temporal.clone();
            async move {
                let s = signals(&temporal, &id).await;
                (id, s)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut bad_signals = 0;
    let mut decision_signals: HashMap<Uuid, usize> = HashMap::new();
    for (id, (n, decisions)) in &histories {
        for d in decisions {
            *decision_signals.entry(*d).or_default() += 1;
        }
        if id.contains("/approval/") || id.contains("/request/") {
            continue;
        }
        let want = intents.get(id).copied().unwrap_or(0) as usize;
        if *n != want {
            bad_signals += 1;
            problems.push(format!("{id}: {n} signals in its history, {want} intents in the outbox"));
        }
    }
    for (task, n) in &decision_signals {
        if *n > 1 {
            doubled_decisions += 1;
            problems.push(format!("task {task}: {n} decision signals in its chain's history"));
        }
    }

    // emails
    let rows: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT message_id, sent_at IS NOT NULL, outcome_unknown_at IS NOT NULL, sending_since IS NOT NULL FROM email_outbox",
    )
    .fetch_all(&pool)
    .await
    .expect("email rows");
    let mut received: HashMap<String, usize> = HashMap::new();
    for m in app.mail.messages() {
        *received.entry(m.message_id.clone()).or_default() += 1;
    }
    let emails_twice = received.values().filter(|n| **n > 1).count();
    for (id, n) in received.iter().filter(|(_, n)| **n > 1) {
        problems.push(format!("email {id} received {n} times"));
    }
    let (mut emails_missing, mut emails_unknown, mut stuck_claims, mut never_claimed) = (0, 0, 0, 0);
    let queued: HashSet<&String> = rows.iter().map(|r| &r.0).collect();
    for (id, sent, unknown, claimed) in &rows {
        let got = received.get(id).copied().unwrap_or(0);
        if (*unknown || *claimed) && !sent {
            // its sender died mid-send: it may have gone out (received at most once, checked
            // above) and is never sent again; a claim no retry came back to (the workflow moved
            // on first) is flagged outcome unknown by the relay's sweep 5 min after the claim
            // (`ops::a_send_whose_sender_died_is_flagged_outcome_unknown`)
            emails_unknown += 1;
            stuck_claims += usize::from(!*unknown);
        } else if !sent || got == 0 {
            emails_missing += 1;
            never_claimed += usize::from(!sent);
            let why = explain_email(&app, &temporal, id).await;
            problems.push(format!("email {id}: sent {sent}, received {got}: {why}"));
        }
    }
    for id in received.keys().filter(|id| !queued.contains(id)) {
        problems.push(format!("email {id} received but never queued"));
    }
    for (task, (_, _, asked)) in &tasks {
        let prefix = format!("<approval.{task}.");
        if *asked && !rows.iter().any(|r| r.0.starts_with(&prefix)) {
            emails_missing += 1;
            problems.push(format!("task {task} asked without an email"));
        }
    }

    // breaches
    let recorded = breaches().await;
    let mut got: BTreeMap<String, Vec<(i32, OffsetDateTime)>> = BTreeMap::new();
    for (n, cycle, at) in recorded {
        got.entry(format!("INC-{n:06}")).or_default().push((cycle, at));
    }
    let escalations: HashMap<String, i64> = sqlx::query_as::<_, (i32, i64)>(
        "SELECT k.number, count(*) FROM sla_escalations e JOIN tickets k ON k.id = e.ticket_id
          WHERE e.tenant_id = $1 AND k.kind = 'incident' GROUP BY k.number",
    )
    .bind(t.id)
    .fetch_all(&pool)
    .await
    .expect("escalations")
    .into_iter()
    .map(|(n, c)| (format!("INC-{n:06}"), c))
    .collect();
    let (mut missed, mut doubled_breaches, mut undue, mut contested, mut off) = (0, 0, 0, 0, 0);
    for (number, c) in &clocks {
        let recorded = got.get(number).cloned().unwrap_or_default();
        contested += usize::from(c.contested);
        if c.contested {
            problems.push(format!("{number}: a stop was delivered after the due instant it prevented"));
        }
        match (c.breach, recorded.as_slice()) {
            (Some(_), []) => {
                missed += 1;
                problems.push(format!("{number}: due at {:?}, never breached", c.breach));
            }
            (Some(due), [(_, at)]) => {
                let lag = jiff_of(*at).duration_since(due).as_secs_f64().abs();
                if lag > 1.0 {
                    off += 1;
                    problems.push(format!("{number}: breached at {at}, due at {due}"));
                }
                if escalations.get(number).copied().unwrap_or(0) != 1 {
                    problems.push(format!("{number}: escalated {:?} times", escalations.get(number)));
                    doubled_breaches += 1;
                }
            }
            (None, []) => {}
            (None, r) => {
                undue += 1;
                problems.push(format!("{number}: breached {r:?}, never due"));
            }
            (Some(_), r) => {
                doubled_breaches += 1;
                problems.push(format!("{number}: breached {} times: {r:?}", r.len()));
            }
        }
    }

    // the table
    let count = |ops: &[Op], what: &str| ops.iter().filter(|o| o.what == what).count();
    let outcome = |o: &dyn Fn(Outcome) -> bool| -> usize {
        ledger.creates.iter().chain(&ledger.changes).chain(&ledger.comments).filter(|op| o(op.outcome)).count()
            + ledger.decisions.iter().filter(|d| o(d.op.outcome)).count()
    };
    let total = ledger.creates.len() + ledger.changes.len() + ledger.comments.len() + ledger.decisions.len();
    let retried =
        ledger.creates.iter().chain(&ledger.changes).chain(&ledger.comments).filter(|o| o.attempts > 1).count()
            + ledger.decisions.iter().filter(|d| d.op.attempts > 1).count();
    let cut = ledger.creates.iter().chain(&ledger.changes).chain(&ledger.comments).filter(|o| o.cut).count()
        + ledger.decisions.iter().filter(|d| d.op.cut).count();
    let takeover_max = chaos.takeovers.iter().map(|t| t.0).fold(0.0, f64::max);
    let delivery_max = chaos.takeovers.iter().filter_map(|t| t.1).fold(0.0, f64::max);
    let ratio = two / one;
    let mut table = Table(Vec::new());
    table.row(
        "operations",
        format!(
            "{total} in {ops_secs:.0} s by {CLIENTS} clients over 2 APIs: {} incidents, {} requests, {} changes, {} comments, {} decisions ({} by link, {} in the app)",
            count(&ledger.creates, "incident"),
            count(&ledger.creates, "request"),
            ledger.changes.len(),
            ledger.comments.len(),
            ledger.decisions.len(),
            ledger.decisions.iter().filter(|d| d.via == "email").count(),
            ledger.decisions.iter().filter(|d| d.via == "app").count(),
        ),
    );
    table.row(
        "answers",
        format!(
            "{} acknowledged, {} done with the answer lost, {} refused, {} unanswered; {retried} retried on the other API ({cut} cut off mid-request)",
            outcome(&|o: Outcome| o == Outcome::Acked),
            outcome(&|o: Outcome| o == Outcome::AnswerLost),
            outcome(&|o: Outcome| matches!(o, Outcome::Refused(_))),
            outcome(&|o: Outcome| o == Outcome::Lost),
        ),
    );
    table.row("processes killed (SIGKILL)", format!("{:?}", chaos.kills));
    table.row("tickets lost", lost_tickets);
    table.row("tickets stored twice", doubled_tickets);
    table.row("  (created, answer lost)", created_answer_lost);
    table.row(
        "workflows missing or doubled",
        format!("{} (of {} expected)", missing_wf.len() + extra_wf.len() + doubled_wf.len(), expected.len()),
    );
    table.row(
        "signals missing or doubled",
        format!("{bad_signals} (of {} ticket workflows)", histories.len().saturating_sub(chain_ids.len() * 2)),
    );
    table.row("changes and comments lost or doubled", bad_changes);
    table.row(
        "decisions lost or applied twice",
        format!("{} (chains not matching their decisions: {})", lost_decisions + doubled_decisions, mismatched.len()),
    );
    table.row("emails sent twice", emails_twice);
    table.row(
        "emails missing",
        format!(
            "{emails_missing} (of {} queued; outcome unknown, sender died mid-send: {emails_unknown}, of which awaiting the relay's 5-min sweep: {stuck_claims}; never claimed: {never_claimed})",
            rows.len()
        ),
    );
    table.row(
        "breaches missed or doubled",
        format!(
            "{} ({} due, {} not due; breached though not due {undue}; contested {contested}; instant off by > 1 s {off})",
            missed + doubled_breaches,
            want_breached.len(),
            clocks.len() - want_breached.len()
        ),
    );
    table.row(
        "relay takeover",
        format!(
            "max {takeover_max:.2} s to lead, {delivery_max:.2} s to deliver ({} kills of the leader; bound {} s)",
            chaos.takeovers.len(),
            TAKEOVER_BOUND.as_secs()
        ),
    );
    table.row(
        "drain rate (tickets/s)",
        format!(
            "1 worker {one:.1}, 2 workers {two:.1} (best of 2 each; trials {}): ratio {ratio:.2} (floor {DRAIN_FLOOR})",
            trials.iter().map(|t| format!("{}w {:.0}", t.0, t.1)).collect::<Vec<_>>().join(", ")
        ),
    );
    table.row(
        "time",
        format!(
            "setup {:.0} s, drain {:.0} s, operations {ops_secs:.0} s, settled at {settle_secs:.0} s, total {:.0} s",
            setup.as_secs_f64(),
            (drained - setup).as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
    );
    table.print(&format!("scale-out under chaos (seed {seed})"));
    for p in problems.iter().take(60) {
        println!("  problem: {p}");
    }

    assert_eq!(total, OPS, "every operation issued");
    assert_eq!(lost_tickets, 0, "tickets lost");
    assert_eq!(doubled_tickets, 0, "tickets stored twice");
    assert!(missing_wf.is_empty() && extra_wf.is_empty() && doubled_wf.is_empty(), "workflows missing or doubled");
    assert_eq!(bad_signals, 0, "signals missing or doubled");
    assert_eq!(bad_changes, 0, "changes or comments lost or doubled");
    assert_eq!(lost_decisions + doubled_decisions, 0, "decisions lost or applied twice");
    assert!(mismatched.is_empty(), "chains not matching their decisions: {mismatched:#?}");
    assert_eq!(emails_twice, 0, "emails sent twice");
    assert_eq!(emails_missing, 0, "emails missing");
    assert_eq!(missed + doubled_breaches + undue + off, 0, "breaches missed, doubled or wrong");
    let incidents = tickets.iter().filter(|r| r.1 == "incident").count();
    assert_eq!(clocks.len(), incidents, "every incident's clock computed from its workflow's intents");
    assert!(
        want_breached.len() >= 10 && clocks.len() - want_breached.len() >= 10,
        "the run breaches some clocks and stops others in time"
    );
    assert_eq!(contested, 0, "stops delivered after their due instant (the guard did not hold)");
    assert!(problems.is_empty(), "{} problems (above)", problems.len());
    for (k, min) in [("relay leader", 1), ("standby API", 1), ("worker", 1)] {
        assert!(chaos.kills.get(k).copied().unwrap_or(0) >= min, "at least {min} {k} killed: {:?}", chaos.kills);
    }
    assert!(takeover_max <= TAKEOVER_BOUND.as_secs_f64(), "the standby relay took {takeover_max:.2} s to lead");
    assert!(ratio >= DRAIN_FLOOR, "two workers drain at {ratio:.2} × one worker's rate");
    drop(procs);
}
