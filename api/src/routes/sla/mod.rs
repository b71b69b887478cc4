//! `/sla`: business calendars and SLA policies (versioned; `sla:admin` to change) and
//! previews. A ticket's own clocks, rebuilds and timeline are in `ticket_sla`.

pub mod calendars;
pub mod policies;
pub mod preview;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(calendars::list_calendars, calendars::create_calendar))
        .routes(routes!(calendars::get_calendar, calendars::update_calendar, calendars::archive_calendar))
        .routes(routes!(policies::list_policies, policies::create_policy))
        .routes(routes!(policies::get_policy, policies::update_policy, policies::deactivate_policy))
        .routes(routes!(preview::preview))
}
