//! HTTP handlers, one module per resource. Each handler carries its OpenAPI description.

pub mod approvals;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod health;
pub mod notifications;
pub mod playbooks;
pub mod problems;
pub mod sla;
pub mod teams;
pub mod ticket_sla;
pub mod tickets;
pub mod users;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Everything under `/api/v1`.
pub fn v1(config: &crate::config::Config) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router(config))
        .merge(users::router())
        .merge(teams::router())
        .merge(tickets::router())
        .merge(audit::router())
        .merge(sla::router())
        .merge(ticket_sla::router())
        .merge(notifications::router())
        .merge(catalog::router())
        .merge(approvals::router())
        .merge(playbooks::router())
}

/// Page size bounds shared by list endpoints.
pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 200;
/// The highest page number a list accepts (deeper: use the cursor).
pub const MAX_PAGE: i64 = 1_000_000;
