//! Commands: every change a person, a worker or a playbook makes is decided here, by pure code
//! that knows the state machine, who may do what, the derived fields and the side effects. `now`
//! is an argument; nothing here reads a clock or a database. The store persists what a command
//! decided (its rows, audit context and outbox rows) in one transaction.

pub mod approval;
pub mod ticket;
