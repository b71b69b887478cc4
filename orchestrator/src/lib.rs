//! Archer's Temporal workflows, built on the pure domain (`archer-domain`, re-exported here so
//! `archer_orchestrator::sla::...` and `archer_domain::sla::...` name the same items).
//!
//! Architecture invariant: nothing in this crate touches the network, the clock, the database
//! or randomness. Workflow code reads time only from the workflow context, so every workflow
//! replays deterministically. Everything here is either a workflow executing what the domain
//! decides or a typed contract shared by the API, the relay and the workers (workflow ids, task
//! queues, signal and query payloads).

pub use archer_domain::{access, approval, approval_chain, catalog, commands, ids, playbook, priority, sla, ticket};
pub mod workflows;

pub use archer_domain::{
    Impact, LinkKind, Priority, Status, TenantSlug, TicketKind, TicketNumber, TransitionError, Urgency,
};
