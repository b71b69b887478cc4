//! Archer's domain and its Temporal workflows.
//!
//! Architecture invariant: nothing in this crate touches the network, the clock, the database
//! or randomness. Workflow code reads time only from the workflow context, so every workflow
//! replays deterministically. Everything here is either a pure function over domain types or a
//! typed contract shared by the API, the relay and the workers (workflow ids, task queues,
//! signal and query payloads).

pub mod approval;
pub mod catalog;
pub mod ids;
pub mod priority;
pub mod sla;
pub mod ticket;
pub mod workflows;

pub use ids::{TenantSlug, TicketNumber};
pub use priority::{Impact, Priority, Urgency};
pub use ticket::{LinkKind, Status, TicketKind, TransitionError};
