//! Approval decisions: who may decide a task, and what deciding it now means.
