//! `/catalog` and `/requests`: the service catalog (categories and versioned items with JSON
//! Schema forms; `catalog:admin` to change) and submitting requests from it.

pub mod categories;
pub mod items;
pub mod requests;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(items::browse))
        .routes(routes!(categories::list_categories, categories::create_category))
        .routes(routes!(categories::update_category, categories::delete_category))
        .routes(routes!(items::list_items, items::create_item))
        .routes(routes!(items::get_item, items::update_item, items::deactivate_item))
        .routes(routes!(requests::submit_request))
}
