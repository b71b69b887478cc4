//! `/tickets`: incidents, service requests, changes and problems; their comments and links;
//! and `/saved-views`, an agent's named ticket lists.
//!
//! The handlers parse, authorize, call the domain's ticket commands
//! (`archer_orchestrator::commands::ticket`) and persist what they decide through
//! `archer_store::changes`, which records each change's workflow intent in the same
//! transaction.

pub mod comments;
pub mod links;
pub mod queries;
pub mod records;
pub mod saved_views;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

pub use queries::{BreachedTarget, SlaStateFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queries::list_tickets, records::create_ticket))
        .routes(routes!(records::get_ticket, records::update_ticket))
        .routes(routes!(comments::list_comments, comments::add_comment))
        .routes(routes!(links::list_links, links::add_link))
        .routes(routes!(links::delete_link))
        .routes(routes!(saved_views::list_views, saved_views::create_view))
        .routes(routes!(saved_views::delete_view))
}
