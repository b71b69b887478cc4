//! End-to-end tests against real PostgreSQL and Temporal (run them with `./dev test`).

mod admin;
mod auth;
mod bad_input;
mod concurrency;
mod fault;
mod openapi;
mod replay;
mod tenancy;
mod tickets;
mod workflow;
