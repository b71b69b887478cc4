//! A ticket as the API shows it, and finding one the caller may see. Shared by every route
//! that answers with a ticket (tickets, catalog requests) or reaches one by reference.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::catalog::{ChangeType, Risk};
use archer_orchestrator::commands::ticket::{Actor, Refusal};
use archer_orchestrator::workflows::ticket as wf;
use archer_orchestrator::{Impact, Priority, Status, TenantSlug, TicketKind, TicketNumber, Urgency};
use archer_store::changes::{self as service, ServiceError};
use archer_store::tickets::{self as store, TicketRow};
use archer_store::{TenantTx, sla};

use super::sla::TicketSla;
use crate::app::AppState;
use crate::auth::Principal;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError};

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<service::CorruptRow> for ApiError {
    fn from(e: service::CorruptRow) -> Self {
        ApiError::internal(e)
    }
}

/// A ticket command's refusal as the API answers it. A missing permission is better refused
/// through [`refused`], which records the refusal in the audit log.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let detail = r.to_string();
        match r {
            Refusal::Needs(_) => ApiError::Forbidden(detail),
            Refusal::Invalid(errors) => {
                ApiError::Validation(errors.into_iter().map(|e| FieldError::new(e.pointer, e.code, e.detail)).collect())
            }
            Refusal::IllegalTransition(e) => {
                ApiError::IllegalTransition { detail, from: e.from, to: e.to, allowed: e.allowed }
            }
            Refusal::ApprovalOnly { from, to, allowed, .. } => {
                ApiError::IllegalTransition { detail, from, to, allowed }
            }
            Refusal::ChangeSettled { .. } | Refusal::Closed => ApiError::Conflict(detail),
        }
    }
}

/// The caller as the domain's commands see them.
pub fn actor(caller: &Caller) -> Actor {
    Actor::user(caller.user_id(), caller.principal.permissions.clone())
}

/// The API's answer to a refused command: a missing permission goes through
/// [`Caller::require`], so the 403 gets its `authz.denied` audit row.
pub async fn refused(caller: &Caller, refusal: Refusal) -> ApiError {
    if let Refusal::Needs(permission) = refusal
        && let Err(e) = caller.require(permission).await
    {
        return e;
    }
    ApiError::from(refusal)
}

/// A command's answer, its refusal mapped by [`refused`].
pub async fn decided<T>(caller: &Caller, decision: Result<T, Refusal>) -> ApiResult<T> {
    match decision {
        Ok(t) => Ok(t),
        Err(r) => Err(refused(caller, r).await),
    }
}

/// A ticket as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct Ticket {
    pub id: Uuid,
    /// Per tenant and kind, without gaps: `INC-000045`.
    #[schema(example = "INC-000045")]
    pub number: String,
    pub kind: TicketKind,
    pub title: String,
    /// Markdown.
    pub description: String,
    pub status: Status,
    /// Where the status may go from here.
    pub allowed_transitions: Vec<Status>,
    pub impact: Impact,
    pub urgency: Urgency,
    /// Derived from impact × urgency unless overridden (then `priority_reason` says why).
    pub priority: Priority,
    pub priority_reason: Option<String>,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    /// Changes: standard (pre-approved), normal (CAB) or emergency (ECAB).
    pub change_type: Option<ChangeType>,
    /// Changes: low, medium or high.
    pub risk: Option<Risk>,
    /// Service requests from the catalog: the item, the version submitted against, the answers.
    pub request: Option<CatalogRequest>,
    /// Also the `ETag`; send it back in `If-Match` to change the ticket safely.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<OffsetDateTime>,
    /// The ticket's durable workflow.
    pub workflow: WorkflowRef,
    /// The SLA policy pinned to the ticket and its clocks (absent when no policy applies).
    pub sla: Option<TicketSla>,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogRequest {
    pub item_id: Uuid,
    pub item_version: i32,
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

pub fn enum_of<T: serde::de::DeserializeOwned>(v: Option<&str>) -> Option<T> {
    v.and_then(|s| serde_json::from_value(serde_json::Value::String(s.to_owned())).ok())
}

#[derive(Serialize, ToSchema)]
pub struct WorkflowRef {
    /// `<tenant>/<number>`.
    pub id: String,
    /// The workflow in the Temporal Web UI, when configured.
    pub url: Option<String>,
}

pub fn to_dto(
    state: &AppState,
    tenant: &TenantSlug,
    row: TicketRow,
    sla: Option<&sla::TicketSlaRow>,
) -> ApiResult<Ticket> {
    let p = service::parse(&row)?;
    let workflow_id = wf::workflow_id(tenant, &p.number);
    let url = state.config.temporal_ui_url.as_ref().map(|ui| {
        format!(
            "{}/namespaces/{}/workflows/{}",
            ui.as_str().trim_end_matches('/'),
            state.config.temporal_namespace,
            form_urlencoded::byte_serialize(workflow_id.as_bytes()).collect::<String>()
        )
    });
    let impact = Impact::new(i64::from(row.impact)).map_err(ApiError::internal)?;
    let urgency = Urgency::new(i64::from(row.urgency)).map_err(ApiError::internal)?;
    Ok(Ticket {
        id: row.id,
        number: p.number.to_string(),
        kind: p.kind,
        title: row.title,
        description: row.description,
        status: p.status,
        allowed_transitions: p.status.allowed_next(p.kind).to_vec(),
        impact,
        urgency,
        priority: p.priority,
        priority_reason: row.priority_reason,
        requester_id: row.requester_id,
        assignee_id: row.assignee_id,
        team_id: row.team_id,
        category: row.category,
        tags: row.tags,
        change_type: enum_of(row.change_type.as_deref()),
        risk: enum_of(row.risk.as_deref()),
        request: match (row.catalog_item_id, row.catalog_item_version) {
            (Some(item_id), Some(item_version)) => Some(CatalogRequest {
                item_id,
                item_version,
                fields: row.request_fields.unwrap_or(serde_json::Value::Null),
            }),
            _ => None,
        },
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        resolved_at: row.resolved_at,
        closed_at: row.closed_at,
        workflow: WorkflowRef { id: workflow_id, url },
        sla: sla.map(|s| super::sla::view(s, state.clock().timestamp())).transpose()?,
    })
}

/// The ticket as the API shows it, with its SLA. When the workflow has not yet applied the
/// ticket's latest change, the clocks are recomputed from the ticket's history with the same
/// engine, so a change's response already shows the due times it causes.
pub async fn dto(state: &AppState, tx: &mut TenantTx, tenant: &TenantSlug, row: TicketRow) -> ApiResult<Ticket> {
    let mut sla_row = sla::ticket_sla(tx, row.id).await?;
    let mut stale = false;
    if let Some(s) = sla_row.as_mut()
        && s.event_seq < row.event_seq
    {
        stale = !super::sla::catch_up(tx, s, &row).await?;
    }
    let mut dto = to_dto(state, tenant, row, sla_row.as_ref())?;
    if let Some(s) = dto.sla.as_mut() {
        s.stale = stale;
    }
    Ok(dto)
}

/// Whether the caller works tickets (sees all of them) or only follows their own.
pub fn is_agent(p: &Principal) -> bool {
    p.can(Permission::TicketUpdate)
}

/// Finds a ticket by id or number in the caller's tenant; a requester sees only their own.
pub async fn find(tx: &mut TenantTx, p: &Principal, reference: &str, lock: bool) -> ApiResult<TicketRow> {
    let row = if let Ok(id) = Uuid::parse_str(reference) {
        if lock { store::lock(tx, id).await? } else { store::get(tx, id).await? }
    } else if let Ok(n) = reference.parse::<TicketNumber>() {
        let row = store::get_by_number(tx, n.kind(), n.seq() as i32).await?;
        if lock { store::lock(tx, row.id).await? } else { row }
    } else {
        return Err(ApiError::NotFound);
    };
    if !is_agent(p) && row.requester_id != p.user_id {
        return Err(ApiError::NotFound);
    }
    tracing::Span::current().record("ticket", format!("{}-{:06}", row.kind.prefix(), row.number).as_str());
    Ok(row)
}
