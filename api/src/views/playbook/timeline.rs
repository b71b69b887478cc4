//! The playbook entries of a ticket's timeline, read from the rows the playbook tables audit
//! with the ticket's id: a run started, ran again or ended (`playbook_run`), a step's state with
//! its attempt, reason, error or a short output (`playbook_step`), and a run following the
//! ticket's changes (`playbook_run`). One line each; an output shows only its short plain
//! fields, never a body, headers or a field named like a credential.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use archer_store::StoreError;
use archer_store::audit::AuditEntry;
use archer_store::playbooks::{self as store, RunRow, StepRow};

/// The longest error, reason or output line an entry shows (characters).
const LINE: usize = 160;
/// The longest single output value an entry shows (characters).
const VALUE: usize = 60;
/// Output fields never shown, by a part of their name: they carry whole answers or may carry
/// credentials (an `outputs` mapping may copy anything from an answer).
const HIDDEN: [&str; 9] =
    ["body", "header", "secret", "token", "password", "authorization", "cookie", "key", "credential"];

/// A run as its entries name it.
struct RunName {
    playbook: String,
    version: i32,
    number: i32,
}

/// Names for a ticket's playbook entries: each run's playbook, version and number, and each
/// step's action (a step's audited change carries only what changed).
#[derive(Default)]
pub struct PlaybookNames {
    runs: HashMap<Uuid, RunName>,
    actions: HashMap<(Uuid, String), String>,
}

/// The run an audited playbook row belongs to: a run's own id, a step's `<run>/<step>`, a
/// watch's run.
fn run_of(h: &AuditEntry) -> Option<Uuid> {
    let entity = h.entity_id.as_deref()?;
    entity.split_once('/').map_or(entity, |(run, _)| run).parse().ok()
}

impl PlaybookNames {
    /// The names for `history` (the ticket's audited rows): the ticket's own runs, and the
    /// runs of other tickets that follow it (a task a run opened).
    pub async fn of_ticket(
        conn: &mut PgConnection,
        ticket_id: Uuid,
        history: &[AuditEntry],
    ) -> Result<Self, StoreError> {
        let mut names = Self::default();
        for d in store::runs_of_ticket(conn, ticket_id).await? {
            names.add(d.run, d.steps);
        }
        let others: BTreeSet<Uuid> = history
            .iter()
            .filter(|h| h.action.starts_with("playbook_"))
            .filter_map(run_of)
            .filter(|id| !names.runs.contains_key(id))
            .collect();
        for id in others {
            match store::run_row(conn, id).await {
                Ok(run) => names.add(run, Vec::new()),
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(names)
    }

    fn add(&mut self, run: RunRow, steps: Vec<StepRow>) {
        for s in steps {
            self.actions.insert((run.id, s.step_id), s.action);
        }
        self.runs.insert(run.id, RunName { playbook: run.playbook, version: run.version, number: run.run_number });
    }

    /// The kind and summary of a playbook table's audited row; `None` for other rows.
    pub fn describe(&self, h: &AuditEntry) -> Option<(&'static str, String)> {
        let run = self.run_label(h);
        let described = match h.action.as_str() {
            "playbook_runs.insert" => {
                ("playbook_run", format!("{run} started (trigger: {})", text(&h.after, "trigger")))
            }
            "playbook_runs.update" => ("playbook_run", run_changed(&run, h)),
            "playbook_steps.insert" | "playbook_steps.update" => ("playbook_step", self.step_changed(h)),
            "playbook_watches.insert" => ("playbook_run", format!("{run} follows this ticket's changes")),
            "playbook_watches.delete" => ("playbook_run", format!("{run} no longer follows this ticket")),
            _ => return None,
        };
        Some(described)
    }

    /// `playbook onboarding v3, run 1` (`playbook run` when the run cannot be found).
    fn run_label(&self, h: &AuditEntry) -> String {
        match run_of(h).and_then(|id| self.runs.get(&id)) {
            Some(r) => format!("playbook {} v{}, run {}", r.playbook, r.version, r.number),
            None => "playbook run".to_owned(),
        }
    }

    fn step_changed(&self, h: &AuditEntry) -> String {
        let entity = h.entity_id.as_deref().unwrap_or_default();
        let step = entity.split_once('/').map_or(entity, |(_, step)| step);
        let action = match field(&h.after, "action").and_then(Value::as_str) {
            Some(a) => a.to_owned(),
            None => run_of(h).and_then(|run| self.actions.get(&(run, step.to_owned()))).cloned().unwrap_or_default(),
        };
        let label = if action.is_empty() { format!("step {step}") } else { format!("step {step} ({action})") };
        let round = match field(&h.after, "round").and_then(Value::as_i64) {
            Some(r) if r > 0 => format!(", round {r}"),
            _ => String::new(),
        };
        let attempts = field(&h.after, "attempts").and_then(Value::as_i64);
        match field(&h.after, "status").and_then(Value::as_str) {
            Some("running") => match attempts {
                Some(n) => format!("{label} running (attempt {n}{round})"),
                None => format!("{label} running{round}"),
            },
            Some("succeeded") => match field(&h.after, "output").map(output_line).filter(|o| !o.is_empty()) {
                Some(output) => format!("{label} succeeded: {output}"),
                None => format!("{label} succeeded"),
            },
            Some("failed") => {
                let why = field(&h.after, "error").or(field(&h.after, "reason")).and_then(Value::as_str);
                format!("{label} failed: {}", short(why.unwrap_or("no reason recorded"), LINE))
            }
            Some("skipped") => format!("{label} skipped: {}", short(&text(&h.after, "reason"), LINE)),
            Some(other) => format!("{label} {other}{round}"),
            None => match attempts {
                Some(n) => format!("{label} attempt {n}{round}"),
                None if field(&h.after, "task_ticket_id").is_some() => format!("{label} waits on the task it opened"),
                None => format!("{label} updated"),
            },
        }
    }
}

/// A run's status change: running (again, after a retry), succeeded, failed or cancelled.
fn run_changed(run: &str, h: &AuditEntry) -> String {
    let error = short(&text(&h.after, "error"), LINE);
    match field(&h.after, "status").and_then(Value::as_str) {
        Some("running") if text(&h.before, "status") == "failed" => format!("{run} running again (retried)"),
        Some("failed") => format!("{run} failed: {error}"),
        Some("cancelled") => format!("{run} cancelled: {error}"),
        Some(status) => format!("{run} {status}"),
        None => format!("{run} updated"),
    }
}

/// A step's output in a line: its plain fields (`comment_id=…, status=201`), without bodies,
/// headers and fields named like credentials; empty when nothing is left.
fn output_line(output: &Value) -> String {
    let Some(fields) = output.as_object() else { return String::new() };
    if fields.get("_truncated") == Some(&Value::Bool(true)) {
        return "(an output too large to keep)".to_owned();
    }
    let shown: Vec<String> = fields
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !HIDDEN.iter().any(|h| k.contains(h))
        })
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => short(s, VALUE),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some(format!("{k}={v}"))
        })
        .collect();
    short(&shown.join(", "), LINE)
}

/// At most `max` characters, with `…` when cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn field<'a>(v: &'a Option<Value>, k: &str) -> Option<&'a Value> {
    v.as_ref().and_then(|v| v.get(k)).filter(|v| !v.is_null())
}

/// A field as text (strings as they are, other values as JSON; empty when absent or null).
fn text(v: &Option<Value>, k: &str) -> String {
    field(v, k).map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;

    fn row(action: &str, entity: &str, before: Option<Value>, after: Value) -> AuditEntry {
        AuditEntry {
            id: 1,
            at: OffsetDateTime::UNIX_EPOCH,
            actor_id: None,
            action: action.to_owned(),
            entity_type: action.split('.').next().unwrap().to_owned(),
            entity_id: Some(entity.to_owned()),
            before,
            after: Some(after),
            request_id: None,
            ip: None,
            detail: None,
        }
    }

    fn names(run: Uuid) -> PlaybookNames {
        let mut n = PlaybookNames::default();
        n.runs.insert(run, RunName { playbook: "triage".into(), version: 2, number: 1 });
        n.actions.insert((run, "note".into()), "ticket.comment".into());
        n
    }

    #[test]
    fn runs_show_their_playbook_version_trigger_and_end() {
        let run = Uuid::now_v7();
        let n = names(run);
        let id = run.to_string();
        let started = row("playbook_runs.insert", &id, None, json!({"trigger": "manual", "status": "pending"}));
        assert_eq!(
            n.describe(&started),
            Some(("playbook_run", "playbook triage v2, run 1 started (trigger: manual)".to_owned()))
        );
        let failed = row(
            "playbook_runs.update",
            &id,
            Some(json!({"status": "running"})),
            json!({"status": "failed", "error": "note: boom"}),
        );
        assert_eq!(n.describe(&failed).unwrap().1, "playbook triage v2, run 1 failed: note: boom");
        let again = row("playbook_runs.update", &id, Some(json!({"status": "failed"})), json!({"status": "running"}));
        assert_eq!(n.describe(&again).unwrap().1, "playbook triage v2, run 1 running again (retried)");
        let unknown = row("playbook_runs.update", &Uuid::now_v7().to_string(), None, json!({"status": "succeeded"}));
        assert_eq!(n.describe(&unknown).unwrap().1, "playbook run succeeded");
        assert_eq!(n.describe(&row("tickets.update", &id, None, json!({}))), None);
    }

    #[test]
    fn steps_show_state_attempts_reasons_and_a_short_output_without_secrets() {
        let run = Uuid::now_v7();
        let n = names(run);
        let entity = format!("{run}/note");
        let cases = [
            (json!({"status": "running", "attempts": 1}), "step note (ticket.comment) running (attempt 1)"),
            (json!({"attempts": 2}), "step note (ticket.comment) attempt 2"),
            (
                json!({"status": "running", "attempts": 1, "round": 1}),
                "step note (ticket.comment) running (attempt 1, round 1)",
            ),
            (
                json!({"status": "succeeded", "output": {"comment_id": "c-1", "api_token": "s3cr3t", "body": {"x": 1}}}),
                "step note (ticket.comment) succeeded: comment_id=c-1",
            ),
            (json!({"status": "failed", "error": "refused"}), "step note (ticket.comment) failed: refused"),
            (
                json!({"status": "skipped", "reason": "dependency `a` failed"}),
                "step note (ticket.comment) skipped: dependency `a` failed",
            ),
        ];
        for (after, want) in cases {
            let h = row("playbook_steps.update", &entity, None, after);
            assert_eq!(n.describe(&h), Some(("playbook_step", want.to_owned())));
        }
        let inserted =
            row("playbook_steps.insert", &format!("{run}/other"), None, json!({"action": "wait", "status": "pending"}));
        assert_eq!(n.describe(&inserted).unwrap().1, "step other (wait) pending");
    }

    #[test]
    fn outputs_are_cut_short() {
        let long = "x".repeat(500);
        let line = output_line(&json!({"a": long, "b": 2}));
        assert!(line.chars().count() <= LINE, "{line}");
        assert!(line.starts_with("a=xxx") && line.contains('…'), "{line}");
        assert_eq!(output_line(&json!({"_truncated": true, "note": "big"})), "(an output too large to keep)");
        assert_eq!(output_line(&json!({"headers": {"set-cookie": "k"}, "status": 201})), "status=201");
    }
}
