//! `/approvals`: each approver's inbox, an approval's state (steps, who was asked, who decided
//! what and when, what is pending, the next reminder and timeout), in-app decisions, the
//! tenant's change routing and out-of-office delegation; and, outside `/api/v1`, the pages
//! behind the links of approval emails ([`pages`]).
//!
//! A decision is recorded (once per approver and step, audited) in the same transaction as the
//! outbox row that signals it to the chain's workflow, which applies it exactly once. Whether
//! it is recorded is the domain's call (`archer_orchestrator::commands::approval`), the same
//! for the app and the links; these handlers read the rows and answer in HTTP.

pub mod deciding;
pub mod inbox;
pub mod out_of_office;
pub mod pages;
pub mod routing;
pub mod views;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

/// The approval routes under `/api/v1`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbox::inbox))
        .routes(routes!(views::get_approval))
        .routes(routes!(views::live_state))
        .routes(routes!(deciding::approve))
        .routes(routes!(deciding::reject))
        .routes(routes!(views::ticket_approvals))
        .routes(routes!(routing::get_change_routing, routing::put_change_routing))
        .routes(routes!(
            out_of_office::get_out_of_office,
            out_of_office::put_out_of_office,
            out_of_office::delete_out_of_office
        ))
}
