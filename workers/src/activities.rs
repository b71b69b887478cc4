//! The activities of the ticket workflow: recording SLA facts and projections, running
//! escalation levels, sending queued email. Each is idempotent, so Temporal's retries (and a
//! worker killed mid-way) never record a breach twice, escalate twice or send an email twice:
//! facts and escalations are claimed by unique keys, notifications deduplicated per cause and
//! recipient, and emails carry a deterministic Message-ID and are marked sent once accepted.

use std::sync::Arc;

use futures::StreamExt;

use jiff::Timestamp;
use serde_json::json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::Priority;
use archer_orchestrator::commands::ticket::{Actor, PriorityOverride, TicketChange};
use archer_orchestrator::sla::engine::{ClockReport, Fact};
use archer_orchestrator::sla::policy::{EscalationAction, EscalationTrigger, Recipients};
use archer_orchestrator::workflows::activities::{Escalate, Escalated, RecordSla, SendEmails};
use archer_store::changes;
use archer_store::notifications::{self, NewNotification};
use archer_store::playbooks;
use archer_store::tickets;
use archer_store::{AuditContext, Db, StoreError, TenantTx, sla};

use crate::email::{Mailer, OutgoingEmail, Recipient};

/// What the activities need: the database (and its clock), the mailer and where people reach
/// the API.
pub struct TicketActivities {
    pub pool: Db,
    pub mailer: Option<Mailer>,
    pub public_url: String,
}

fn fail(e: impl std::fmt::Display) -> ActivityError {
    ActivityError::from(anyhow::anyhow!("{e}"))
}

fn odt(t: Timestamp) -> Result<OffsetDateTime, ActivityError> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).map_err(fail)
}

/// Audit context for writes a workflow makes: no person, the workflow as the request.
fn workflow_ctx(tenant: &str, number: &str) -> AuditContext {
    AuditContext { actor_id: None, request_id: Some(format!("workflow:{tenant}/{number}")), ip: None }
}

#[activities]
impl TicketActivities {
    /// Records warnings and breaches (once each, with their true instants; a new one starts the
    /// playbooks its `sla_warning`/`sla_breach` trigger names) and the clocks' projection
    /// (unless a newer one is there).
    #[activity(name = "sla.record")]
    pub async fn record(self: Arc<Self>, _ctx: ActivityContext, input: RecordSla) -> Result<(), ActivityError> {
        let t = &input.ticket;
        let ctx = workflow_ctx(t.tenant.as_str(), &t.number.to_string());
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &ctx).await.map_err(fail)?;
        // (breach?, due instant) of each fact new in this transaction, counted once it commits
        let mut recorded: Vec<(bool, Timestamp)> = Vec::new();
        for fact in &input.facts {
            let (metric, cycle, kind, at) = match fact {
                Fact::Warning { metric, cycle, percent, at } => (metric, cycle, format!("warning_{percent}"), at),
                Fact::Breach { metric, cycle, at } => (metric, cycle, "breach".to_owned(), at),
                Fact::Escalation { .. } => continue,
            };
            let new =
                sla::record_event(&mut tx, t.tenant_id, t.ticket_id, metric.as_str(), *cycle as i32, &kind, odt(*at)?)
                    .await
                    .map_err(fail)?;
            if new {
                recorded.push((matches!(fact, Fact::Breach { .. }), *at));
                tracing::info!(ticket = %t.number, metric = metric.as_str(), cycle, kind, at = %at, "SLA event recorded");
                // playbooks with an `sla_warning`/`sla_breach` trigger start in the transaction
                // that recorded the fact, so a retried activity (the fact no longer new) never
                // starts them twice
                let runs = playbooks::fire_sla_trigger(&mut tx, &t.tenant, t.ticket_id, fact).await.map_err(fail)?;
                if !runs.is_empty() {
                    tracing::info!(ticket = %t.number, kind, runs = runs.len(), "SLA trigger started playbook runs");
                }
            }
        }
        let clocks = serde_json::to_value(&input.clocks).map_err(fail)?;
        let due = input.summary.next_due_at.map(odt).transpose()?;
        sla::project(&mut tx, t.ticket_id, input.seq as i64, input.ticket_seq, &clocks, &input.summary.state, due)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let m = archer_store::metrics::metrics();
        let now = self.pool.now();
        for (breach, at) in recorded {
            if breach {
                m.sla_breaches.inc();
                let lag = odt(at).map(|due| (now - due).as_seconds_f64()).unwrap_or(0.0);
                m.sla_breach_lag.observe(lag.max(0.0));
            } else {
                m.sla_warnings.inc();
            }
        }
        Ok(())
    }

    /// Runs one escalation level once: notifications (in-app and email), priority raise,
    /// reassignment, internal note. Returns the emails to send.
    #[activity(name = "sla.escalate")]
    pub async fn escalate(self: Arc<Self>, _ctx: ActivityContext, input: Escalate) -> Result<Escalated, ActivityError> {
        let t = &input.ticket;
        let number = t.number.to_string();
        let ctx = workflow_ctx(t.tenant.as_str(), &number);
        let mut tx = TenantTx::begin(&self.pool, t.tenant_id, &ctx).await.map_err(fail)?;
        let ticket = tickets::lock(&mut tx, t.ticket_id).await.map_err(fail)?;
        let actions = serde_json::to_value(&input.level.actions).map_err(fail)?;
        let claimed = sla::claim_escalation(
            &mut tx,
            t.tenant_id,
            t.ticket_id,
            input.metric.as_str(),
            input.cycle as i32,
            input.level_index as i32,
            &input.level.name,
            odt(input.due_at)?,
            odt(input.fired_at)?,
            &actions,
        )
        .await
        .map_err(fail)?
        .is_some();
        let breach = !matches!(input.level.when, EscalationTrigger::Warning { .. });
        let key = format!("{}.{}.{}.{}", t.ticket_id, input.metric.as_str(), input.cycle, input.level_index);
        let time_zone = sla::ticket_sla(&mut tx, t.ticket_id)
            .await
            .map_err(fail)?
            .and_then(|s| s.assignment.pointer("/calendar/time_zone").and_then(|z| z.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "UTC".into());
        let tenant_name = archer_store::tenants::by_id(&mut tx, t.tenant_id).await.map_err(fail)?.name;
        let mut emails = Vec::new();
        // what the level changes goes through the same ticket command as every other writer
        let mut change = TicketChange::default();
        for action in &input.level.actions {
            match action {
                // notifications are deduplicated per recipient, so a retry repeats them harmlessly
                EscalationAction::Notify { to, email } => {
                    for user in recipients(&mut tx, to, &ticket).await.map_err(fail)? {
                        let title = format!(
                            "[{number}] {} {}",
                            input.metric.label(),
                            if breach { "SLA breached" } else { "SLA warning" }
                        );
                        let data = template_data(&input, &ticket, &self.public_url, &time_zone, &tenant_name, &user.1);
                        notifications::notify(
                            &mut tx,
                            NewNotification {
                                tenant_id: t.tenant_id,
                                user_id: user.0,
                                ticket_id: Some(t.ticket_id),
                                kind: if breach { "sla_breach" } else { "sla_warning" },
                                title: &title,
                                body: &ticket.title,
                                data: &data,
                                dedup_key: &format!("escalation.{key}"),
                            },
                        )
                        .await
                        .map_err(fail)?;
                        if *email {
                            let message_id = format!("<escalation.{key}.{}@archer>", user.0);
                            let recipients = json!([{"name": user.1, "address": user.2}]);
                            let template = if breach { "sla_breach" } else { "sla_warning" };
                            let id = notifications::queue_email(
                                &mut tx,
                                t.tenant_id,
                                &message_id,
                                &recipients,
                                template,
                                &data,
                            )
                            .await
                            .map_err(fail)?;
                            emails.push(id);
                        }
                    }
                }
                // changes to the ticket happen once, on the attempt that claimed the level
                EscalationAction::RaisePriority { by } if claimed => {
                    // several raises in one level add up, as they always did
                    let current = change.priority.as_ref().map_or(ticket.priority, |o| i16::from(o.priority().get()));
                    let p = current.saturating_sub(i16::from(*by)).max(1);
                    if p != current {
                        let to = Priority::new(i64::from(p)).map_err(fail)?;
                        change.priority = PriorityOverride::new(to, &format!("escalation: {}", input.level.name));
                    }
                }
                EscalationAction::Reassign { team_id } if claimed && ticket.team_id != Some(*team_id) => {
                    change.team_id = Some(Some(*team_id));
                    change.assignee_id = Some(None);
                }
                EscalationAction::InternalComment { body } if claimed => {
                    changes::note(&mut tx, &ticket, body, true).await.map_err(fail)?;
                }
                _ => {}
            }
        }
        if claimed && change != TicketChange::default() && !ticket.status.is_terminal() {
            let now = changes::to_jiff(tx.now());
            let decision =
                changes::snapshot(&ticket).map_err(fail)?.apply(&change, &Actor::system(), now).map_err(fail)?;
            changes::apply(&mut tx, &t.tenant, &ticket, decision, &Actor::system()).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        tracing::info!(ticket = %number, level = %input.level.name, claimed, emails = emails.len(), "escalation ran");
        Ok(Escalated { emails })
    }

    /// Sends queued emails not sent yet, up to [`SEND_CONCURRENCY`] at a time (each over its
    /// own pooled SMTP connection: a mail server's per-message round trips then overlap, so
    /// the last of a step's emails goes out about as soon as the first). Transient SMTP
    /// failures are retried by Temporal (after every other email of the batch was tried);
    /// permanent ones are recorded on the email and not retried.
    #[activity(name = "email.send")]
    pub async fn send_emails(self: Arc<Self>, _ctx: ActivityContext, input: SendEmails) -> Result<u32, ActivityError> {
        let Some(mailer) = &self.mailer else {
            tracing::warn!(count = input.ids.len(), "no mailer configured; emails stay queued");
            return Ok(0);
        };
        let results: Vec<Result<bool, ActivityError>> = futures::stream::iter(input.ids.iter().copied())
            .map(|id| self.send_one(mailer, input.tenant_id, id))
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let mut sent = 0;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }
}

/// Emails one `send_emails` sends at once.
const SEND_CONCURRENCY: usize = 4;

impl TicketActivities {
    /// Sends one queued email unless it was sent (or an attempt stopped mid-send); `true` if
    /// this call sent it. A transient failure is an error (the activity is retried).
    async fn send_one(&self, mailer: &Mailer, tenant_id: Uuid, id: Uuid) -> Result<bool, ActivityError> {
        // the claim is committed before sending: a sender that dies mid-send leaves it
        // claimed, and the retry does not send it again (never twice)
        let mut tx = TenantTx::begin(&self.pool, tenant_id, &AuditContext::default()).await.map_err(fail)?;
        let claim = notifications::claim_email(&mut tx, id).await.map_err(fail)?;
        let date = tx.now();
        tx.commit().await.map_err(fail)?;
        let mail = match claim {
            notifications::Claim::Send(mail) => mail,
            notifications::Claim::Done => return Ok(false),
            notifications::Claim::Unknown(mail) => {
                archer_store::metrics::metrics().emails.with_label_values(&["unknown"]).inc();
                tracing::warn!(
                    message_id = %mail.message_id,
                    "an earlier attempt stopped mid-send; not sending again (check the mail server's log)"
                );
                return Ok(false);
            }
        };
        let stored: Vec<StoredRecipient> = serde_json::from_value(mail.recipients.clone()).map_err(fail)?;
        let to = stored.into_iter().map(|r| Recipient { name: r.name, address: r.address }).collect();
        let out = OutgoingEmail {
            to,
            template: mail.template.clone(),
            data: mail.data.clone(),
            message_id: mail.message_id.clone(),
            date,
        };
        let result = mailer.send(&out).await;
        let mut tx = TenantTx::begin(&self.pool, tenant_id, &AuditContext::default()).await.map_err(fail)?;
        match result {
            Ok(()) => {
                notifications::email_sent(&mut tx, id).await.map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                notifications::email_failed(&mut tx, id, &e.to_string()).await.map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Err(fail(format!("sending {}: {e}", mail.message_id)))
            }
            Err(e) => {
                tracing::error!(message_id = %mail.message_id, error = %e, "email refused for good");
                notifications::email_failed(&mut tx, id, &e.to_string()).await.map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(false)
            }
        }
    }
}

/// A recipient as queued in `email_outbox.recipients`.
#[derive(serde::Deserialize)]
struct StoredRecipient {
    name: String,
    address: String,
}

/// (id, display name, email) of each active recipient, without repeats.
async fn recipients(
    tx: &mut TenantTx,
    to: &Recipients,
    ticket: &tickets::TicketRow,
) -> Result<Vec<(Uuid, String, String)>, StoreError> {
    let mut ids: Vec<Uuid> = to.users.clone();
    for team in &to.teams {
        ids.extend(archer_store::teams::get(tx, *team).await.map(|t| t.members).unwrap_or_default());
    }
    if to.ticket_team
        && let Some(team) = ticket.team_id
    {
        ids.extend(archer_store::teams::get(tx, team).await.map(|t| t.members).unwrap_or_default());
    }
    if let Some(assignee) = ticket.assignee_id {
        if to.assignee {
            ids.push(assignee);
        }
        if to.assignee_manager
            && let Ok(u) = archer_store::users::get(tx, assignee).await
            && let Some(m) = u.manager_id
        {
            ids.push(m);
        }
    }
    let mut out: Vec<(Uuid, String, String)> = Vec::new();
    for id in ids {
        if out.iter().any(|(u, _, _)| *u == id) {
            continue;
        }
        if let Ok(u) = archer_store::users::get(tx, id).await
            && u.active
        {
            out.push((u.id, u.display_name, u.email));
        }
    }
    Ok(out)
}

/// An instant in the IANA zone `zone` (UTC if unknown), as emails show instants
/// (`23 Nov 2026, 17:00 CET`).
fn local(t: Timestamp, zone: &str) -> String {
    let tz = jiff::tz::TimeZoneDatabase::bundled().get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    crate::email::human_time(t, &tz)
}

fn human(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (h, m) = (s / 3600, (s % 3600) / 60);
    let text = if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    };
    if secs < 0 { format!("-{text}") } else { text }
}

fn template_data(
    input: &Escalate,
    ticket: &tickets::TicketRow,
    public_url: &str,
    zone: &str,
    tenant_name: &str,
    recipient: &str,
) -> serde_json::Value {
    let clock: Option<&ClockReport> = input.clock.as_ref();
    let number = format!("{}-{:06}", ticket.kind.prefix(), ticket.number);
    let breached_at = clock.and_then(|c| c.ongoing.as_ref().or(c.completed.last())).and_then(|c| c.breach_at);
    let mut data = json!({
        "recipient": {"name": recipient},
        "tenant": {"name": tenant_name},
        "ticket": {
            "number": number,
            "title": ticket.title,
            "priority": ticket.priority,
            "status": ticket.status,
            "url": format!("{}/portal/tickets/{number}", public_url.trim_end_matches('/')),
        },
        "target": {"name": input.metric.as_str(), "label": input.metric.label()},
        "due_at": local(breached_at.unwrap_or(input.due_at), zone),
        "elapsed": clock.map(|c| human(c.elapsed_seconds)).unwrap_or_default(),
        "escalation": {"level": input.level_index + 1, "name": input.level.name},
    });
    match input.level.when {
        EscalationTrigger::Warning { percent } => {
            data["threshold_percent"] = json!(percent);
            data["remaining"] = json!(clock.map(|c| human(c.remaining_seconds)).unwrap_or_default());
        }
        _ => {
            data["breached_at"] = json!(local(breached_at.unwrap_or(input.due_at), zone));
        }
    }
    data
}
