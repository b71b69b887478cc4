//! Archer's domain: what a ticket, a priority, an SLA clock, an approval rule and a catalog item
//! are, and the commands that change them.
//!
//! Architecture invariant: this crate is pure. It depends on no Temporal crate, no database
//! driver, no async runtime and no HTTP stack (Cargo enforces it: see this crate's manifest),
//! and nothing here reads the clock, the network or randomness: `now` is always an argument.
//! The workflows (`archer-orchestrator`) and every writer (`archer-store`'s write path, the API,
//! the workers) are built on top of it.

pub mod access;
pub mod approval;
pub mod approval_chain;
pub mod catalog;
pub mod commands;
pub mod ids;
pub mod playbook;
pub mod priority;
pub mod sla;
pub mod ticket;

pub use ids::{TenantSlug, TicketNumber};
pub use priority::{Impact, Priority, Urgency};
pub use ticket::{LinkKind, Status, TicketKind, TransitionError};
