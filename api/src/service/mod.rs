//! Application services: the writes behind the handlers (and the demo seed), each with the
//! outbox rows that tell Temporal about them, in the caller's transaction.

pub mod tickets;
