//! Archer's Temporal workers: activities (side effects of workflows) and the worker wiring,
//! plus the Temporal connection shared with the API's outbox relay.
//!
//! Architecture invariant: activities are the only place workflows reach the outside world;
//! every activity is idempotent and has an explicit, stable name.

pub mod activities;
pub mod approvals;
pub mod email;
pub mod links;
pub mod playbooks;
pub mod telemetry;
pub mod temporal;
pub mod worker;

pub use temporal::{TemporalConfig, TemporalError};
pub use worker::{WorkerDeps, WorkerHandle, spawn_worker};
