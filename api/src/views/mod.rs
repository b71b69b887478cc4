//! What several route modules show or look up the same way (a ticket, its SLA). Route modules
//! import from here, never from each other.

pub mod approval;
pub mod playbook;
pub mod sla;
pub mod ticket;
