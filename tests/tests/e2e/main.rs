//! End-to-end tests against real PostgreSQL and Temporal (run them with `./dev test`).

#![allow(clippy::unwrap_used)]

mod aborts;
mod admin;
mod approval_rules;
mod approvals;
mod auth;
mod bad_input;
mod browser;
mod catalog;
mod clock;
mod concurrency;
mod contract;
mod deploy;
mod devstack;
mod doctor;
mod email;
mod exact;
mod fault;
mod instants;
mod layers;
mod list_plans;
mod openapi;
mod ops;
mod playbook_actions;
mod playbook_runs;
mod playbook_steps;
mod playbook_store;
mod playbook_triggers;
mod playbook_views;
mod playbooks_api;
mod portal;
mod replay;
mod scale_out;
mod sla;
mod store;
mod tenancy;
mod tickets;
mod workflow;
