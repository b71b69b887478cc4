//! What a running playbook step opened before it finished: the task ticket of a
//! `ticket.create_task` step and the round that last waited on it, kept on the step's row
//! (`task_ticket_id`, `task_round`) so that a retried attempt finds the task instead of opening a
//! second one, and an admin's retry of the run can decide whether to wait on it again. The
//! step's `output` shows the task while the run waits, but the run's bookkeeping clears it when a
//! retry sets the step pending again, so it is not where the task is remembered.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// The task a step waits on: the ticket, and the round (0, then one per retry of the run) that
/// last waited on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTask {
    pub ticket_id: Uuid,
    pub round: u32,
}

/// Records that step `step_id` of run `run_id` waits on `task` (in the transaction that opened
/// it, or that took it over in a later round); `shown` is the step's output meanwhile.
pub async fn remember(
    conn: &mut PgConnection,
    run_id: Uuid,
    step_id: &str,
    task: StepTask,
    shown: &serde_json::Value,
) -> Result<()> {
    let round = i32::try_from(task.round).unwrap_or(i32::MAX);
    sqlx::query!(
        "UPDATE playbook_steps SET task_ticket_id = $3, task_round = $4, output = $5, updated_at = archer_now()
          WHERE run_id = $1 AND step_id = $2",
        run_id,
        step_id,
        task.ticket_id,
        round,
        shown
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The task step `step_id` of run `run_id` last waited on, if it opened one.
pub async fn opened(conn: &mut PgConnection, run_id: Uuid, step_id: &str) -> Result<Option<StepTask>> {
    let row = sqlx::query!(
        r#"SELECT task_ticket_id AS "ticket_id!", task_round AS "round!"
             FROM playbook_steps WHERE run_id = $1 AND step_id = $2 AND task_ticket_id IS NOT NULL"#,
        run_id,
        step_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| StepTask { ticket_id: r.ticket_id, round: u32::try_from(r.round).unwrap_or(0) }))
}
