//! What a running playbook step opened before it finished: the task ticket of a
//! `ticket.create_task` step, kept in the step's `output` while the run waits for the task, so
//! a retried attempt (or an admin's retry of the run, which keeps the step's idempotency key)
//! finds the task instead of opening a second one.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// Records that step `step_id` of run `run_id` opened `opened` (a JSON object with a
/// `task_ticket_id`), in the transaction that opened it.
pub async fn remember(conn: &mut PgConnection, run_id: Uuid, step_id: &str, opened: &serde_json::Value) -> Result<()> {
    sqlx::query!(
        "UPDATE playbook_steps SET output = $3, updated_at = archer_now() WHERE run_id = $1 AND step_id = $2",
        run_id,
        step_id,
        opened
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The task ticket step `step_id` of run `run_id` opened, if it opened one.
pub async fn opened(conn: &mut PgConnection, run_id: Uuid, step_id: &str) -> Result<Option<Uuid>> {
    let id = sqlx::query_scalar!(
        r#"SELECT (output ->> 'task_ticket_id')::uuid AS "id"
             FROM playbook_steps WHERE run_id = $1 AND step_id = $2 AND output ? 'task_ticket_id'"#,
        run_id,
        step_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(id.flatten())
}
