//! In-app notifications and the email outbox.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct Notification {
    pub id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub read_at: Option<OffsetDateTime>,
}

pub struct NewNotification<'a> {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: &'a serde_json::Value,
    pub dedup_key: &'a str,
}

/// Notifies a user once per `dedup_key`; returns whether it was new.
pub async fn notify(conn: &mut PgConnection, n: NewNotification<'_>) -> Result<bool> {
    let id = sqlx::query_scalar!(
        "INSERT INTO notifications (id, tenant_id, user_id, ticket_id, kind, title, body, data, dedup_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (user_id, dedup_key) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        n.tenant_id,
        n.user_id,
        n.ticket_id,
        n.kind,
        n.title,
        n.body,
        n.data,
        n.dedup_key
    )
    .fetch_optional(conn)
    .await?;
    Ok(id.is_some())
}

/// A user's notifications, newest first.
pub async fn inbox(
    conn: &mut PgConnection,
    user_id: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<Notification>, i64)> {
    let rows = sqlx::query_as!(
        Notification,
        "SELECT id, ticket_id, kind, title, body, data, created_at, read_at FROM notifications
          WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL) AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4",
        user_id,
        unread_only,
        before,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    let unread = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM notifications WHERE user_id = $1 AND read_at IS NULL"#,
        user_id
    )
    .fetch_one(conn)
    .await?;
    Ok((rows, unread))
}

pub async fn mark_read(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> Result<Notification> {
    sqlx::query_as!(
        Notification,
        "UPDATE notifications SET read_at = COALESCE(read_at, archer_now()) WHERE id = $1 AND user_id = $2
         RETURNING id, ticket_id, kind, title, body, data, created_at, read_at",
        id,
        user_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn mark_all_read(conn: &mut PgConnection, user_id: Uuid) -> Result<u64> {
    let done =
        sqlx::query!("UPDATE notifications SET read_at = archer_now() WHERE user_id = $1 AND read_at IS NULL", user_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// Queues an email once per Message-ID; returns its id (the existing one on a repeat).
pub async fn queue_email(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    message_id: &str,
    recipients: &serde_json::Value,
    template: &str,
    data: &serde_json::Value,
) -> Result<Uuid> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO email_outbox (id, tenant_id, message_id, recipients, template, data)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        tenant_id,
        message_id,
        recipients,
        template,
        data
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => Ok(sqlx::query_scalar!("SELECT id FROM email_outbox WHERE message_id = $1", message_id)
            .fetch_one(conn)
            .await?),
    }
}

#[derive(Debug, Clone)]
pub struct QueuedEmail {
    pub id: Uuid,
    pub message_id: String,
    pub recipients: serde_json::Value,
    pub template: String,
    pub data: serde_json::Value,
    pub sent_at: Option<OffsetDateTime>,
    pub sending_since: Option<OffsetDateTime>,
    pub outcome_unknown_at: Option<OffsetDateTime>,
}

/// What claiming an email for sending found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Claimed: send it, then [`email_sent`] or [`email_failed`].
    Send(QueuedEmail),
    /// Sent already, or given up on: nothing to do.
    Done,
    /// A sender claimed it and stopped (its process died) without saying whether the SMTP
    /// server took it. It may have gone out, so it is not sent again (an email is never sent
    /// twice); it is marked `outcome_unknown_at` for operators, who can look its Message-ID up
    /// in the mail server's log.
    Unknown(QueuedEmail),
}

/// Claims a queued email for sending, committing the claim before anything is sent, so that a
/// sender that dies mid-send leaves a trace instead of a duplicate.
pub async fn claim_email(conn: &mut PgConnection, id: Uuid) -> Result<Claim> {
    let Some(mail) = sqlx::query_as!(
        QueuedEmail,
        "SELECT id, message_id, recipients, template, data, sent_at, sending_since, outcome_unknown_at
           FROM email_outbox WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Claim::Done);
    };
    if mail.sent_at.is_some() || mail.outcome_unknown_at.is_some() {
        return Ok(Claim::Done);
    }
    if mail.sending_since.is_some() {
        sqlx::query!(
            "UPDATE email_outbox SET outcome_unknown_at = archer_now(), sending_since = NULL,
                    last_error = 'the sender stopped while sending: it may have been delivered, so it is not sent again'
              WHERE id = $1",
            id
        )
        .execute(conn)
        .await?;
        return Ok(Claim::Unknown(mail));
    }
    sqlx::query!("UPDATE email_outbox SET sending_since = archer_now(), attempts = attempts + 1 WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(Claim::Send(mail))
}

/// The SMTP server accepted the email.
pub async fn email_sent(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE email_outbox SET sent_at = archer_now(), sending_since = NULL, last_error = NULL WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The SMTP server refused the email or could not be reached: it was not sent.
pub async fn email_failed(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<()> {
    sqlx::query!("UPDATE email_outbox SET sending_since = NULL, last_error = $2 WHERE id = $1", id, error)
        .execute(conn)
        .await?;
    Ok(())
}

/// Flags as outcome unknown the emails whose sender claimed them more than `stalled` before
/// `now` and has not finished: it died mid-send (the email may or may not have gone out), and
/// no retry of its activity came back to them, as happens when the workflow moved on first
/// (the approver decided before the retry ran). They are never sent again. Returns how many.
pub async fn flag_stalled_sends(conn: &mut PgConnection, now: OffsetDateTime, stalled: time::Duration) -> Result<u64> {
    let r = sqlx::query!(
        "UPDATE email_outbox SET outcome_unknown_at = $1, sending_since = NULL,
                last_error = 'the sender stopped while sending: it may have been delivered, so it is not sent again'
          WHERE sending_since < $1::timestamptz - make_interval(secs => $2)
            AND sent_at IS NULL AND outcome_unknown_at IS NULL",
        now,
        stalled.as_seconds_f64()
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}
