//! The approval benchmark: how long after an approver decides a step do the next step's
//! approvers have their emails? Run it with `./dev bench approvals [--requests N]`.
//!
//! Every request goes through the demo laptop item's chain: the requester's manager (step 1),
//! then two of three hardware approvers (step 2, one email each). First all requests are
//! submitted and every step-1 email awaited (setup, not measured). Then step 1 of each is
//! approved by the manager, `--concurrency` decisions at a time (default 4, so it measures
//! latency rather than a queue): in the app (`POST /api/v1/approvals/{id}/approve`) or, with
//! `--via link`, by posting the emailed link's confirmation form. The figure is, per decision,
//! from the decision request being sent to the last step-2 email being received by the SMTP
//! listener (its own receive stamp, not when this program looked).
//!
//! Then a breakdown from the rows the decision left (PostgreSQL clock, same machine): the
//! decision's outbox row written and delivered (the relay), step 1 closed and step 2 opened
//! (activities), the step-2 emails queued and marked sent; medians and p99 of each stage.
//!
//! Every figure is also printed as `FIGURE <key> <value>` for `./dev bench`'s summary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use archer_tests::approvals::{Laptop, decision_links, laptop, laptop_answers};
use archer_tests::smtp::ReceivedMail;
use archer_tests::{Options, TestApp, spawn_app_with};
use futures::StreamExt;
use serde_json::json;
use temporalio_client::Client;
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

struct Args {
    requests: usize,
    concurrency: usize,
    /// Decide by the emailed link's form instead of the API.
    via_link: bool,
}

fn args() -> Args {
    let mut a = Args { requests: 200, concurrency: 4, via_link: false };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next();
        let num = value.and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
        match (flag.as_str(), num, value.map(String::as_str)) {
            ("--requests", Some(n), _) => a.requests = n,
            ("--concurrency", Some(n), _) => a.concurrency = n,
            ("--via", _, Some("app")) => a.via_link = false,
            ("--via", _, Some("link")) => a.via_link = true,
            _ => {
                eprintln!("usage: approval-bench [--requests N] [--concurrency N] [--via app|link]");
                std::process::exit(2);
            }
        }
    }
    a
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Every approval email the sink received, by ticket number: (recipient, received at, mail).
type Inbox = Arc<Mutex<HashMap<String, Vec<(String, Instant, ReceivedMail)>>>>;

/// The ticket number of an approval email (`[REQ-000012] Approval needed: ...`).
fn ticket_of(mail: &ReceivedMail) -> Option<String> {
    let rest = mail.subject.strip_prefix('[')?;
    Some(rest.split_once(']')?.0.to_owned())
}

/// Files every message the sink receives into `inbox`, as it arrives.
fn record(app: &Arc<TestApp>, inbox: Inbox) -> tokio::task::JoinHandle<()> {
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let new = app.mail.messages_since(seen);
            seen += new.len();
            if !new.is_empty() {
                let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
                for m in new {
                    if let Some(number) = ticket_of(&m) {
                        let to = m.to.first().cloned().unwrap_or_default();
                        inbox.entry(number).or_default().push((to, m.received_at, m));
                    }
                }
            }
            // the receive instant is the sink's own stamp: this poll only delays the reader
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// The latest receive instant of `ticket`'s emails to each of `to`, once all have arrived.
async fn mails_to(inbox: &Inbox, ticket: &str, to: &[&str], timeout: Duration) -> Option<Vec<(Instant, ReceivedMail)>> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
            let mails = inbox.get(ticket).map(Vec::as_slice).unwrap_or_default();
            let found: Vec<(Instant, ReceivedMail)> = to
                .iter()
                .filter_map(|addr| mails.iter().find(|(a, _, _)| a == addr).map(|(_, at, m)| (*at, m.clone())))
                .collect();
            if found.len() == to.len() {
                return Some(found);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One request waiting in step 1: its number, approval id and the manager's approve link.
struct Pending {
    number: String,
    approval_id: String,
    approve_link: String,
}

async fn submit_all(app: &TestApp, s: &Laptop, inbox: &Inbox, n: usize) -> Vec<Pending> {
    let started = Instant::now();
    let pending: Vec<Pending> = futures::stream::iter(0..n)
        .map(|_| async {
            let r = app.submit(&s.employee, &s.item, laptop_answers()).await;
            assert_eq!(r.status, 201, "submit: {}", r.body);
            let number = r.json["number"].as_str().expect("number").to_owned();
            let got = mails_to(inbox, &number, &[s.t.manager.email.as_str()], Duration::from_secs(300)).await;
            let (_, mail) = got.and_then(|g| g.into_iter().next()).expect("the manager's email in time");
            let approve_link = decision_links(&mail).0;
            let approval_id = app.approval_of(&s.t.agent, &number).await["id"].as_str().expect("id").to_owned();
            Pending { number, approval_id, approve_link }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    println!("  {n} requests submitted, every step-1 email in, after {:.1}s", started.elapsed().as_secs_f64());
    pending
}

/// Approves step 1 and returns (decision sent at, seconds to the first and to the last step-2
/// email).
async fn decide(app: &TestApp, s: &Laptop, inbox: &Inbox, p: &Pending, via_link: bool) -> (SystemTime, f64, f64) {
    let sent_wall = SystemTime::now();
    let sent = Instant::now();
    if via_link {
        let (status, page) = app.confirm(&p.approve_link, None, None).await;
        assert_eq!(status, 200, "decision by link: {page}");
    } else {
        let path = format!("/api/v1/approvals/{}/approve", p.approval_id);
        let r = app.post(Some(&s.t.manager.token), &path, &json!({})).await;
        assert_eq!(r.status, 200, "decision: {}", r.body);
    }
    let to: Vec<&str> = s.approvers.iter().map(|a| a.email.as_str()).collect();
    let got = mails_to(inbox, &p.number, &to, Duration::from_secs(120))
        .await
        .unwrap_or_else(|| panic!("step-2 emails of {} did not arrive within 120s", p.number));
    let secs = |at: Instant| at.saturating_duration_since(sent).as_secs_f64();
    let first = got.iter().map(|(at, _)| secs(*at)).fold(f64::MAX, f64::min);
    let last = got.iter().map(|(at, _)| secs(*at)).fold(0.0, f64::max);
    (sent_wall, first, last)
}

/// Stage instants (epoch seconds) of each decided request, from the rows it left.
const STAGES: &str = r#"
SELECT t.number_text,
       EXTRACT(EPOCH FROM o.created_at)::float8, EXTRACT(EPOCH FROM o.delivered_at)::float8,
       EXTRACT(EPOCH FROM s1.closed_at)::float8, EXTRACT(EPOCH FROM s2.started_at)::float8,
       (SELECT EXTRACT(EPOCH FROM max(e.created_at))::float8 FROM email_outbox e
         WHERE e.data->'ticket'->>'number' = t.number_text AND e.template = 'approval_request'
           AND e.created_at >= s2.started_at),
       (SELECT EXTRACT(EPOCH FROM max(e.sent_at))::float8 FROM email_outbox e
         WHERE e.data->'ticket'->>'number' = t.number_text AND e.created_at >= s2.started_at)
  FROM (SELECT a.id AS approval_id, a.ticket_id, x.number_text
          FROM approvals a JOIN unnest($1::text[], $2::uuid[]) AS x(number_text, approval_id) ON x.approval_id = a.id) t
  JOIN approval_steps s1 ON s1.approval_id = t.approval_id AND s1.ordinal = 0
  JOIN approval_steps s2 ON s2.approval_id = t.approval_id AND s2.ordinal = 1
  JOIN LATERAL (SELECT created_at, delivered_at FROM outbox
                 WHERE intent = 'signal' AND name = 'decision'
                   AND workflow_id LIKE '%/' || t.number_text || '/approval/%'
                 ORDER BY id LIMIT 1) o ON true
"#;

/// One request's stamps: number, outbox row written and delivered, step 1 closed, step 2
/// opened, its emails queued and marked sent.
type StageRow = (String, f64, Option<f64>, Option<f64>, f64, Option<f64>, Option<f64>);

/// Prints the median and p99 of each stage: decision sent -> outbox row -> delivered ->
/// step 1 closed -> step 2 opened -> emails queued -> marked sent.
async fn breakdown(app: &TestApp, decided: &[(String, String, SystemTime, f64)]) {
    let numbers: Vec<String> = decided.iter().map(|d| d.0.clone()).collect();
    let ids: Vec<uuid::Uuid> = decided.iter().filter_map(|d| d.1.parse().ok()).collect();
    let rows: Vec<StageRow> = match sqlx::query_as(STAGES).bind(&numbers).bind(&ids).fetch_all(&app.pool).await {
        Ok(r) => r,
        Err(e) => {
            println!("  (no breakdown: {e})");
            return;
        }
    };
    let sent: HashMap<&str, (f64, f64)> = decided
        .iter()
        .map(|d| {
            let at = d.2.duration_since(SystemTime::UNIX_EPOCH).map(|x| x.as_secs_f64()).unwrap_or_default();
            (d.0.as_str(), (at, at + d.3))
        })
        .collect();
    let names = [
        "decision sent -> outbox row (API)",
        "outbox row -> delivered (relay)",
        "delivered -> step 1 closed",
        "step 1 closed -> step 2 opened",
        "step 2 opened -> emails queued",
        "emails queued -> marked sent",
        "marked sent -> last received",
    ];
    let mut stages: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for (number, created, delivered, closed, opened, queued, marked) in rows {
        let Some((sent_at, received)) = sent.get(number.as_str()).copied() else { continue };
        let points = [Some(sent_at), Some(created), delivered, closed, Some(opened), queued, marked, Some(received)];
        for (i, w) in points.windows(2).enumerate() {
            if let [Some(a), Some(b)] = w {
                stages[i].push(b - a);
            }
        }
    }
    println!("  breakdown (PostgreSQL's stamps; median / p99 in ms):");
    for (name, mut v) in names.iter().zip(stages) {
        v.sort_by(f64::total_cmp);
        let (m, p) = (percentile(&v, 0.5) * 1000.0, percentile(&v, 0.99) * 1000.0);
        println!("    {name:<36} {m:>7.1} / {p:>7.1}");
    }
}

/// A history event's label (its type, with the activity's name for a scheduled activity) and
/// time in epoch seconds.
fn event_point(e: &HistoryEvent) -> (String, f64) {
    let at = e.event_time.as_ref().map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9).unwrap_or_default();
    let kind = format!("{:?}", e.event_type());
    let label = match &e.attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
            format!("{kind} {}", a.activity_type.as_ref().map(|t| t.name.as_str()).unwrap_or_default())
        }
        _ => kind,
    };
    (label, at)
}

/// The chain's events from the decision signal to the step-2 emails' activity completing, as
/// (label, seconds after the signal); `sent` is when the decision request was sent.
async fn chain_events(client: &Client, workflow_id: &str, sent: f64) -> Vec<(String, f64)> {
    let events = archer_tests::temporal::history(client, workflow_id).await;
    let Some(start) = events.iter().position(|e| e.event_type() == EventType::WorkflowExecutionSignaled) else {
        return Vec::new();
    };
    let signal_at = event_point(&events[start]).1;
    let mut out = vec![("decision sent (before the signal)".to_owned(), sent - signal_at)];
    let mut sends = 0;
    for e in &events[start..] {
        let (label, at) = event_point(e);
        let done = label.ends_with("email.send");
        out.push((label, at - signal_at));
        if done {
            sends += 1;
        }
        if sends == 1 && e.event_type() == EventType::ActivityTaskCompleted {
            break;
        }
    }
    out
}

/// Prints the median offset of each event after the decision signal, over the chains whose
/// event sequence is the most common one.
async fn history_breakdown(app: &TestApp, slug: &str, decided: &[(String, String, SystemTime, f64)]) {
    let client = app.temporal().await;
    let mut seqs = Vec::new();
    for (number, _, at, _) in decided.iter().take(100) {
        let sent = at.duration_since(SystemTime::UNIX_EPOCH).map(|x| x.as_secs_f64()).unwrap_or_default();
        seqs.push(chain_events(&client, &format!("{slug}/{number}/approval/1"), sent).await);
    }
    let mut shapes: HashMap<Vec<String>, Vec<Vec<f64>>> = HashMap::new();
    for seq in seqs {
        let (labels, times): (Vec<String>, Vec<f64>) = seq.into_iter().unzip();
        shapes.entry(labels).or_default().push(times);
    }
    let Some((labels, runs)) = shapes.into_iter().max_by_key(|(_, runs)| runs.len()) else { return };
    println!("  the chain's history after the decision signal ({} chains of this shape; median ms):", runs.len());
    for (i, label) in labels.iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i] * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        println!("    {:>8.1}  {label}", percentile(&v, 0.5));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let app = Arc::new(spawn_app_with(Options::default()).await);
    let inbox: Inbox = Arc::default();
    let recorder = record(&app, Arc::clone(&inbox));
    let s = laptop(&app).await;
    println!(
        "approval-bench: {} requests, two sequential steps, {} decisions at a time, decided {}",
        args.requests,
        args.concurrency,
        if args.via_link { "by the emailed link" } else { "in the app" }
    );
    let pending = submit_all(&app, &s, &inbox, args.requests).await;
    app.outbox_drained().await;

    let started = Instant::now();
    let decided: Vec<(String, String, SystemTime, f64, f64)> = futures::stream::iter(&pending)
        .map(|p| {
            let (app, s, inbox) = (&app, &s, &inbox);
            async move {
                let (at, first, last) = decide(app, s, inbox, p, args.via_link).await;
                (p.number.clone(), p.approval_id.clone(), at, first, last)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut last: Vec<f64> = decided.iter().map(|d| d.4).collect();
    let mut first: Vec<f64> = decided.iter().map(|d| d.3).collect();
    last.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&last, 0.5), percentile(&last, 0.99));
    let max = last.last().copied().unwrap_or(f64::NAN);
    println!("  {} decisions in {elapsed:.1}s", decided.len());
    println!(
        "  decision -> first step-2 email   p50 {:.3}s  p99 {:.3}s",
        percentile(&first, 0.5),
        percentile(&first, 0.99)
    );
    println!("  decision -> every step-2 email   p50 {p50:.3}s  p99 {p99:.3}s  max {max:.3}s");
    let timed: Vec<(String, String, SystemTime, f64)> =
        decided.iter().map(|d| (d.0.clone(), d.1.clone(), d.2, d.4)).collect();
    breakdown(&app, &timed).await;
    history_breakdown(&app, &s.t.slug, &timed).await;
    println!("FIGURE approvals.requests {}", decided.len());
    println!("FIGURE approvals.decision_to_email_p50_s {p50:.4}");
    println!("FIGURE approvals.decision_to_email_p99_s {p99:.4}");
    println!("FIGURE approvals.decision_to_email_max_s {max:.4}");
    recorder.abort();
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => eprintln!("approval-bench: the app is still shared; not stopping it cleanly"),
    }
}
