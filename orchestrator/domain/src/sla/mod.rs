//! Service-level agreements: business calendars (pure time arithmetic), policies and the
//! clock engine the ticket workflow runs, and rebuilding a ticket's clocks under another policy.

pub mod calendar;
pub mod engine;
pub mod policy;
pub mod rebuild;
