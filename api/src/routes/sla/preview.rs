//! Previews: when each target of a ticket created now would be due. Creates nothing.

use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use archer_orchestrator::sla::engine::{ClockReport, SlaEngine};
use archer_orchestrator::sla::policy::MatchInput;
use archer_orchestrator::{Impact, Priority, Status, TicketKind, Urgency};
use archer_store::sla;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::AppQuery;
use crate::validate::Errors;
use crate::views::sla::PolicyRef;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    kind: TicketKind,
    #[param(value_type = Impact)]
    impact: i64,
    #[param(value_type = Urgency)]
    urgency: i64,
    category: Option<String>,
    team: Option<Uuid>,
    /// RFC 3339; defaults to now.
    #[param(format = DateTime)]
    at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// None when no policy applies (no clocks would run).
    policy: Option<PolicyRef>,
    priority: Priority,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    targets: Vec<ClockReport>,
}

/// "If I create this ticket now, when is each target due?" Creates nothing.
#[utoipa::path(get, path = "/sla/preview", tag = "sla", params(PreviewQuery), security(("bearer" = [])), responses(
    (status = 200, body = Preview),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn preview(caller: Caller, AppQuery(q): AppQuery<PreviewQuery>) -> ApiResult<Json<Preview>> {
    let input = PreviewInput::parse(q, caller.now())?;
    let mut tx = caller.begin().await?;
    let resolved = sla::resolve(&mut tx, &input.matching()).await?;
    tx.commit().await?;
    let (priority, at) = (input.priority, input.at);
    Ok(Json(match resolved {
        None => Preview { policy: None, priority, created_at: at, targets: Vec::new() },
        Some(r) => {
            let engine = SlaEngine::start(r.assignment.clone(), at, Status::New, priority);
            Preview {
                policy: Some(PolicyRef::from(&r.assignment)),
                priority,
                created_at: at,
                targets: engine.report(at),
            }
        }
    }))
}

/// A preview's query, checked: the priority its impact and urgency derive, and its instant.
struct PreviewInput {
    kind: TicketKind,
    priority: Priority,
    category: Option<String>,
    team: Option<Uuid>,
    at: Timestamp,
}

impl PreviewInput {
    fn matching(&self) -> MatchInput<'_> {
        MatchInput { kind: self.kind, priority: self.priority, category: self.category.as_deref(), team_id: self.team }
    }
}

impl PreviewInput {
    /// Checks the query; without `at`, the preview is for `now`.
    fn parse(q: PreviewQuery, now: Timestamp) -> ApiResult<Self> {
        let mut errors = Errors::new();
        let impact = Impact::new(q.impact).map_err(|e| errors.add("?impact", "range", e.to_string())).ok();
        let urgency = Urgency::new(q.urgency).map_err(|e| errors.add("?urgency", "range", e.to_string())).ok();
        let at = match q.at.as_deref() {
            None => Some(now),
            Some(s) => {
                s.parse::<Timestamp>().map_err(|_| errors.add("?at", "format", "must be an RFC 3339 date-time")).ok()
            }
        };
        // each part is missing exactly when its failure was recorded
        match (impact, urgency, at) {
            (Some(impact), Some(urgency), Some(at)) => Ok(PreviewInput {
                kind: q.kind,
                priority: Priority::derive(impact, urgency),
                category: q.category,
                team: q.team,
                at,
            }),
            _ => Err(ApiError::Validation(errors.into_fields())),
        }
    }
}
