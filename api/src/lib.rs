//! Archer's HTTP API, outbox relay and the `archer` binary's commands.
//!
//! Architecture invariant: this is the only crate that speaks HTTP or knows problem+json;
//! nothing depends on it. Handlers validate, authorize and call store functions inside a
//! tenant-scoped transaction that also records workflow intents (the outbox); the relay
//! delivers those intents to Temporal.

pub mod app;
pub mod approvals;
pub mod auth;
pub mod caller;
pub mod config;
pub mod devstack;
pub mod doctor;
pub mod error;
pub mod extract;
pub mod forms;
pub mod idempotency;
pub mod ops;
pub mod pages;
pub mod portal;
pub mod relay;
pub mod routes;
pub mod seed;
pub mod serde_ext;
pub mod server;
pub mod telemetry;
pub mod validate;
pub mod views;
