//! Service-level agreements: business calendars (pure time arithmetic), policies and the
//! clock engine the ticket workflow runs.

pub mod calendar;
pub mod engine;
pub mod policy;
