//! A catalog request's fulfilment: the playbook its item names runs once the request may go
//! ahead (approved, or submitted against an item with no approval chain), started in the same
//! transaction as the change that lets it go ahead.

use archer_orchestrator::TenantSlug;

use crate::changes::ServiceError;
use crate::playbooks::{self, RunRow, StartRun};
use crate::tickets::TicketRow;

/// Starts the fulfilment playbook of the request `ticket`, if its item names a published one.
/// Idempotent: a request already fulfilled (a catalog_fulfilment run exists) starts nothing.
pub async fn start(
    tx: &mut sqlx::PgConnection,
    tenant: &TenantSlug,
    ticket: &TicketRow,
) -> Result<Option<RunRow>, ServiceError> {
    let (Some(item_id), Some(item_version)) = (ticket.catalog_item_id, ticket.catalog_item_version) else {
        return Ok(None);
    };
    let Some(version) = playbooks::fulfilment(tx, item_id, item_version).await? else { return Ok(None) };
    let runs = playbooks::runs_of_ticket(tx, ticket.id).await?;
    if runs.iter().any(|r| r.run.trigger == "catalog_fulfilment") {
        return Ok(None);
    }
    let run = playbooks::start_run(
        tx,
        StartRun {
            version: &version,
            tenant,
            ticket,
            trigger: "catalog_fulfilment",
            event: None,
            inputs: serde_json::json!({}),
            request: None,
            started_by: None,
        },
    )
    .await?;
    Ok(Some(run))
}
