//! Ticket kinds, their status state machines and link kinds.
//!
//! The state machine is data: [`Status::allowed_next`] lists, per kind, where a ticket may go
//! from where it is. The API enforces it on every change (an illegal transition is a 409 that
//! lists the allowed ones) and the ticket workflow trusts what the API recorded.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The four ITIL record kinds Archer keeps, and the tasks work on them is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    Incident,
    ServiceRequest,
    Change,
    Problem,
    /// A piece of work for a team on behalf of another ticket (its parent, linked
    /// [`LinkKind::TaskOf`]): what a playbook's `ticket.create_task` opens, or an agent by hand.
    ///
    /// Its state machine is the smallest that work handed to a team needs: `new` →
    /// `in_progress` ⇄ `waiting_on_customer` (the status the other kinds pause their clocks
    /// in, so SLA policies treat a task waiting for an answer the same way) → `closed`, and
    /// `cancelled` from every open status. There is no `resolved`: nobody confirms a task
    /// (its parent's requester did not ask for it), so whoever does the work closes it, and a
    /// closed task is final (a new one is opened instead of reopening it), which is what a
    /// playbook step waiting for "closed or cancelled" needs. No approval statuses: a task is
    /// already the approved work.
    Task,
}

impl TicketKind {
    pub const ALL: [TicketKind; 5] = [Self::Incident, Self::ServiceRequest, Self::Change, Self::Problem, Self::Task];

    pub fn prefix(self) -> &'static str {
        match self {
            Self::Incident => "INC",
            Self::ServiceRequest => "REQ",
            Self::Change => "CHG",
            Self::Problem => "PRB",
            Self::Task => "TASK",
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// The name used in the database, the API and search attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incident => "incident",
            Self::ServiceRequest => "service_request",
            Self::Change => "change",
            Self::Problem => "problem",
            Self::Task => "task",
        }
    }

    /// Every status a ticket of this kind can have, in lifecycle order.
    pub fn statuses(self) -> &'static [Status] {
        use Status::*;
        match self {
            Self::Incident => &[New, InProgress, WaitingOnCustomer, Resolved, Closed, Cancelled],
            Self::ServiceRequest => {
                &[New, PendingApproval, InProgress, WaitingOnCustomer, Resolved, Closed, Cancelled, Rejected]
            }
            Self::Change => &[New, Assess, Authorize, Scheduled, Implement, Review, Closed, Cancelled, Rejected],
            Self::Problem => &[New, Assess, RootCauseAnalysis, FixInProgress, Resolved, Closed, Cancelled],
            Self::Task => &[New, InProgress, WaitingOnCustomer, Closed, Cancelled],
        }
    }
}

impl fmt::Display for TicketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown ticket kind `{0}` (expected incident, service_request, change, problem or task)")]
pub struct UnknownKind(pub String);

impl FromStr for TicketKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Every status of every kind. Which ones a kind uses is [`TicketKind::statuses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    InProgress,
    WaitingOnCustomer,
    Resolved,
    Closed,
    Cancelled,
    // change
    Assess,
    Authorize,
    Scheduled,
    Implement,
    Review,
    // problem
    RootCauseAnalysis,
    FixInProgress,
    // approvals (service requests, changes)
    PendingApproval,
    Rejected,
}

/// A status change the kind's state machine does not allow.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{kind} tickets cannot go from {from} to {to}")]
pub struct TransitionError {
    pub kind: TicketKind,
    pub from: Status,
    pub to: Status,
    /// Where the ticket may go from `from`.
    pub allowed: Vec<Status>,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InProgress => "in_progress",
            Self::WaitingOnCustomer => "waiting_on_customer",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
            Self::Assess => "assess",
            Self::Authorize => "authorize",
            Self::Scheduled => "scheduled",
            Self::Implement => "implement",
            Self::Review => "review",
            Self::RootCauseAnalysis => "root_cause_analysis",
            Self::FixInProgress => "fix_in_progress",
            Self::PendingApproval => "pending_approval",
            Self::Rejected => "rejected",
        }
    }

    const ALL: [Status; 15] = [
        Self::New,
        Self::InProgress,
        Self::WaitingOnCustomer,
        Self::Resolved,
        Self::Closed,
        Self::Cancelled,
        Self::Assess,
        Self::Authorize,
        Self::Scheduled,
        Self::Implement,
        Self::Review,
        Self::RootCauseAnalysis,
        Self::FixInProgress,
        Self::PendingApproval,
        Self::Rejected,
    ];

    /// Closed, cancelled and rejected tickets never change again; their workflow completes.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Cancelled | Self::Rejected)
    }

    /// Transitions only an approval makes (people cannot): into and out of waiting for one.
    pub fn approval_only(kind: TicketKind, from: Status, to: Status) -> bool {
        use Status::*;
        match kind {
            TicketKind::ServiceRequest => {
                to == PendingApproval || to == Rejected || (from == PendingApproval && to == InProgress)
            }
            TicketKind::Change => from == Authorize && matches!(to, Scheduled | Rejected),
            _ => false,
        }
    }

    /// The statuses a ticket of `kind` may move to from `self`.
    pub fn allowed_next(self, kind: TicketKind) -> &'static [Status] {
        use Status::*;
        match kind {
            TicketKind::Incident => match self {
                New => &[InProgress, WaitingOnCustomer, Resolved, Cancelled],
                InProgress => &[WaitingOnCustomer, Resolved, Cancelled],
                WaitingOnCustomer => &[InProgress, Resolved, Cancelled],
                // reopen goes back to work
                Resolved => &[Closed, InProgress],
                _ => &[],
            },
            TicketKind::ServiceRequest => match self {
                New => &[PendingApproval, InProgress, WaitingOnCustomer, Resolved, Cancelled],
                // an approval moves it on to fulfilment or rejects it
                PendingApproval => &[InProgress, Rejected, Cancelled],
                InProgress => &[WaitingOnCustomer, Resolved, Cancelled],
                WaitingOnCustomer => &[InProgress, Resolved, Cancelled],
                Resolved => &[Closed, InProgress],
                _ => &[],
            },
            TicketKind::Change => match self {
                New => &[Assess, Cancelled],
                Assess => &[Authorize, Cancelled],
                // authorization approves (scheduled), rejects, or sends it back for more assessment
                Authorize => &[Scheduled, Rejected, Assess, Cancelled],
                Scheduled => &[Implement, Cancelled],
                Implement => &[Review],
                Review => &[Closed],
                _ => &[],
            },
            TicketKind::Problem => match self {
                New => &[Assess, Cancelled],
                Assess => &[RootCauseAnalysis, Cancelled],
                RootCauseAnalysis => &[FixInProgress, Resolved, Cancelled],
                FixInProgress => &[Resolved, Cancelled],
                // reopen goes back to analysis
                Resolved => &[Closed, RootCauseAnalysis],
                _ => &[],
            },
            // done is closed (no resolved, no reopening): see `TicketKind::Task`
            TicketKind::Task => match self {
                New => &[InProgress, WaitingOnCustomer, Closed, Cancelled],
                InProgress => &[WaitingOnCustomer, Closed, Cancelled],
                WaitingOnCustomer => &[InProgress, Closed, Cancelled],
                _ => &[],
            },
        }
    }

    /// Checks one step of the kind's state machine.
    pub fn transition(self, kind: TicketKind, to: Status) -> Result<Status, TransitionError> {
        let allowed = self.allowed_next(kind);
        if allowed.contains(&to) {
            Ok(to)
        } else {
            Err(TransitionError { kind, from: self, to, allowed: allowed.to_vec() })
        }
    }

    /// Whether moving from `self` to `to` reopens a resolved ticket.
    pub fn is_reopen(self, to: Status) -> bool {
        self == Self::Resolved && !to.is_terminal()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// How two tickets relate. Links are directed: `from` *kind* `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    DuplicateOf,
    BlockedBy,
    CausedBy,
    RelatesTo,
    /// `from` is a task (`TicketKind::Task`) done for `to`, its parent: a parent lists its tasks
    /// as its incoming `task_of` links.
    TaskOf,
}

impl LinkKind {
    pub const ALL: [LinkKind; 5] = [Self::DuplicateOf, Self::BlockedBy, Self::CausedBy, Self::RelatesTo, Self::TaskOf];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DuplicateOf => "duplicate_of",
            Self::BlockedBy => "blocked_by",
            Self::CausedBy => "caused_by",
            Self::RelatesTo => "relates_to",
            Self::TaskOf => "task_of",
        }
    }
}

impl FromStr for LinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown link kind `{s}`"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_starts_new_and_can_reach_closed() {
        for kind in TicketKind::ALL {
            // breadth-first over the kind's machine
            let mut seen = vec![Status::New];
            let mut i = 0;
            while i < seen.len() {
                for next in seen[i].allowed_next(kind) {
                    assert!(kind.statuses().contains(next), "{kind}: {next} is not one of its statuses");
                    if !seen.contains(next) {
                        seen.push(*next);
                    }
                }
                i += 1;
            }
            assert!(seen.contains(&Status::Closed), "{kind} cannot reach closed");
            for s in kind.statuses() {
                assert!(seen.contains(s), "{kind}: {s} is unreachable");
            }
        }
    }

    #[test]
    fn terminal_statuses_go_nowhere() {
        for kind in TicketKind::ALL {
            for s in kind.statuses().iter().filter(|s| s.is_terminal()) {
                assert!(s.allowed_next(kind).is_empty());
            }
        }
    }

    #[test]
    fn illegal_transition_lists_the_allowed_ones() {
        let err = Status::New.transition(TicketKind::Incident, Status::Closed).unwrap_err();
        assert_eq!(
            err.allowed,
            vec![Status::InProgress, Status::WaitingOnCustomer, Status::Resolved, Status::Cancelled]
        );
        assert_eq!(Status::Resolved.transition(TicketKind::Incident, Status::InProgress), Ok(Status::InProgress));
        assert!(Status::Resolved.is_reopen(Status::InProgress));
    }

    #[test]
    fn a_task_is_closed_when_done_and_never_reopened() {
        use Status::*;
        let task = TicketKind::Task;
        assert_eq!(task.prefix(), "TASK");
        assert_eq!("task".parse::<TicketKind>(), Ok(task));
        assert_eq!(TicketKind::from_prefix("TASK"), Some(task));
        // work, wait for an answer, work again, done
        let mut at = New;
        for next in [InProgress, WaitingOnCustomer, InProgress, Closed] {
            at = at.transition(task, next).unwrap();
        }
        assert!(at.is_terminal() && at.allowed_next(task).is_empty(), "a closed task is final");
        // done at once, or called off from any open status
        assert_eq!(New.transition(task, Closed), Ok(Closed));
        for open in [New, InProgress, WaitingOnCustomer] {
            assert_eq!(open.transition(task, Cancelled), Ok(Cancelled));
        }
        // no resolution step, no approvals, none of the other kinds' statuses
        let err = InProgress.transition(task, Resolved).unwrap_err();
        assert_eq!(err.allowed, vec![WaitingOnCustomer, Closed, Cancelled]);
        for other in [Resolved, PendingApproval, Rejected, Assess, Review] {
            assert!(!task.statuses().contains(&other), "{other}");
            assert!(New.transition(task, other).is_err(), "{other}");
        }
        assert!(!Status::approval_only(task, New, InProgress));
        assert_eq!("task_of".parse::<LinkKind>(), Ok(LinkKind::TaskOf));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for k in TicketKind::ALL {
            assert_eq!(k.as_str().parse::<TicketKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
            assert_eq!(TicketKind::from_prefix(k.prefix()), Some(k));
        }
        for l in LinkKind::ALL {
            assert_eq!(l.as_str().parse::<LinkKind>().unwrap(), l);
            assert_eq!(serde_json::to_value(l).unwrap(), serde_json::json!(l.as_str()));
        }
    }
}
