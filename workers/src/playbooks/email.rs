//! `email.send`: through the existing email path, at most once. The email is queued in
//! `email_outbox` under a Message-ID derived from the run and step (a retry finds the same row),
//! then claimed and sent as the `email.send` activity sends: the claim is committed before the
//! SMTP conversation, so an email already sent, or whose sender died mid-send, is not sent again.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use archer_orchestrator::workflows::playbook_activities::StepCall;
use archer_store::notifications::{self, Claim};
use archer_store::{AuditContext, TenantTx, tenants, tickets};

use super::{PlaybookActivities, StepError, input};
use crate::email::{OutgoingEmail, Recipient};

/// The template every playbook email is rendered with (`templates/email/playbook_message.*`).
pub const TEMPLATE: &str = "playbook_message";

/// `email.send`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// The Message-ID of step `step` of run `run_id`: one per step, whatever the attempt or round.
pub fn message_id(run_id: Uuid, step: &str) -> String {
    let step: String = step
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_string() } else { format!("={:02x}", c as u32) }
        })
        .collect();
    format!("<playbook.{}.{step}@archer>", run_id.simple())
}

/// The recipients, checked: plain addresses, no display names or header tricks.
pub fn recipients(to: &[String]) -> Result<Vec<Recipient>, StepError> {
    if to.is_empty() {
        return Err(StepError::Input("an email needs at least one recipient".into()));
    }
    to.iter()
        .map(|a| {
            let a = a.trim();
            let ok = a.len() <= 254
                && a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
                && !a.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c));
            if ok {
                Ok(Recipient { name: String::new(), address: a.to_owned() })
            } else {
                Err(StepError::Input(format!("{a:?} is not an email address")))
            }
        })
        .collect()
}

/// `email.send`: `{sent}` (1 once the email went out, now or by an earlier attempt; 0 while no
/// mail server is configured and it waits queued).
pub async fn send(acts: &PlaybookActivities, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
    let s: Send = input(call)?;
    let to = recipients(&s.to)?;
    if s.subject.contains(['\r', '\n']) {
        return Err(StepError::Input("the subject is one line".into()));
    }
    acts.run(call, attempt, || async {
        let id = queue(acts, call, &s, &to).await?;
        send_queued(acts, call.run.ticket.tenant_id, id).await
    })
    .await
}

/// Queues the email once (per run and step); its id.
async fn queue(acts: &PlaybookActivities, call: &StepCall, s: &Send, to: &[Recipient]) -> Result<Uuid, StepError> {
    let mut tx = acts.tx(call).await?;
    let ticket = tickets::get(&mut tx, call.run.ticket.ticket_id).await?;
    let tenant = tenants::by_id(&mut tx, call.run.ticket.tenant_id).await?;
    let number = call.run.ticket.number.to_string();
    let data = json!({
        "subject": s.subject,
        "body": s.body,
        "ticket": {
            "number": number,
            "title": ticket.title,
            "url": format!("{}/portal/tickets/{number}", acts.public_url.trim_end_matches('/')),
        },
        "tenant": {"name": tenant.name},
        "playbook": {"name": call.run.playbook},
    });
    let recipients = serde_json::to_value(to).map_err(|e| StepError::Internal(e.to_string()))?;
    let id = notifications::queue_email(
        &mut tx,
        call.run.ticket.tenant_id,
        &message_id(call.run.run_id, &call.step),
        &recipients,
        TEMPLATE,
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Claims and sends queued email `id` (never twice).
async fn send_queued(acts: &PlaybookActivities, tenant_id: Uuid, id: Uuid) -> Result<Value, StepError> {
    let Some(mailer) = &acts.mailer else {
        tracing::warn!(%id, "no mailer configured; the playbook's email stays queued");
        return Ok(json!({"sent": 0}));
    };
    let mut tx = TenantTx::begin(&acts.pool, tenant_id, &AuditContext::default()).await?;
    let claim = notifications::claim_email(&mut tx, id).await?;
    let date = tx.now();
    tx.commit().await?;
    let mail = match claim {
        Claim::Send(mail) => mail,
        Claim::Done => return Ok(json!({"sent": 1})),
        Claim::Unknown(mail) => {
            archer_store::metrics::metrics().emails.with_label_values(&["unknown"]).inc();
            tracing::warn!(message_id = %mail.message_id, "an earlier attempt stopped mid-send; not sending again");
            return Ok(json!({"sent": 1}));
        }
    };
    let to: Vec<Recipient> =
        serde_json::from_value(mail.recipients.clone()).map_err(|e| StepError::Internal(e.to_string()))?;
    let out = OutgoingEmail { to, template: mail.template, data: mail.data, message_id: mail.message_id.clone(), date };
    let result = mailer.send(&out).await;
    let mut tx = TenantTx::begin(&acts.pool, tenant_id, &AuditContext::default()).await?;
    match result {
        Ok(()) => {
            notifications::email_sent(&mut tx, id).await?;
            tx.commit().await?;
            Ok(json!({"sent": 1}))
        }
        Err(e) => {
            notifications::email_failed(&mut tx, id, &e.to_string()).await?;
            tx.commit().await?;
            let why = format!("sending {}: {e}", mail.message_id);
            Err(if e.is_transient() { StepError::Unavailable(why) } else { StepError::BadRequest(why) })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_message_id_per_run_and_step() {
        let run = Uuid::from_u128(0xabc);
        let id = message_id(run, "notify_manager");
        assert_eq!(id, "<playbook.00000000000000000000000000000abc.notify_manager@archer>");
        assert_eq!(message_id(run, "a b"), "<playbook.00000000000000000000000000000abc.a=20b@archer>");
        assert_ne!(message_id(run, "a"), message_id(Uuid::from_u128(1), "a"));
    }

    #[test]
    fn recipients_are_plain_addresses() {
        let ok = recipients(&["riley@acme.example".into(), " m.m@x.y ".into()]).unwrap();
        assert_eq!(ok[1].address, "m.m@x.y");
        for bad in ["riley", "@acme.example", "a@b", "a@b.c\r\nBcc: x@y.z", "Riley <r@acme.example>", "a,b@c.d"] {
            assert!(matches!(recipients(&[bad.into()]), Err(StepError::Input(_))), "{bad:?}");
        }
        assert!(recipients(&[]).is_err());
    }
}
