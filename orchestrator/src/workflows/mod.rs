//! Temporal workflow definitions and the typed contracts around them.
//!
//! Names given here (`name = "..."`) are part of every recorded history: renaming one breaks
//! running workflows, so they never change once shipped.

pub mod activities;
pub mod approval;
pub mod playbook;
pub mod playbook_activities;
pub mod search;
pub mod signals;
pub mod ticket;
pub mod wait;

/// The task queue Archer's workers poll unless configured otherwise.
pub const DEFAULT_TASK_QUEUE: &str = "archer";
