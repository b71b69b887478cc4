//! Rebuilding a ticket's clocks: an admin's command after fixing a calendar or a policy. This
//! decides which policy version the clocks run under and replays the ticket's history under it;
//! the store loads the history and the policy, and persists what this decides (the ticket's SLA
//! row, the audit entry with the clocks before and after, the signal to its workflow).

use jiff::Timestamp;
use uuid::Uuid;

use crate::sla::engine::{ClockReport, SlaAssignment, SlaEngine, SlaEvent, Summary};
use crate::ticket::Status;

/// What the admin asked for; each part has a default (see [`choose`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// The policy to run the clocks under; default: the one pinned to the ticket.
    pub policy_id: Option<Uuid>,
    /// Its version; default: the current one.
    pub policy_version: Option<i32>,
}

/// The policy version a rebuild runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    /// The policy's current version.
    Current(Uuid),
    /// One named version of the policy.
    Version(Uuid, i32),
}

/// Why a rebuild is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A closed ticket's clocks are final: they are what its SLA reports stand on.
    #[error("the ticket is closed; its clocks are final")]
    Closed,
    /// No policy applied to the ticket and the admin named none.
    #[error("no policy is pinned to this ticket: name one")]
    NoPolicy,
}

/// Which policy version rebuilds the clocks of a ticket in `status` whose pinned policy is
/// `pinned` (none when no policy applied at creation).
pub fn choose(status: Status, pinned: Option<Uuid>, request: Request) -> Result<PolicyChoice, Refusal> {
    if status.is_terminal() {
        return Err(Refusal::Closed);
    }
    let id = request.policy_id.or(pinned).ok_or(Refusal::NoPolicy)?;
    Ok(match request.policy_version {
        Some(version) => PolicyChoice::Version(id, version),
        None => PolicyChoice::Current(id),
    })
}

/// A ticket's clocks replayed under a policy, as of the rebuild.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub assignment: SlaAssignment,
    /// The ticket's events as the clocks saw them; the workflow replays the same ones.
    pub events: Vec<SlaEvent>,
    pub clocks: Vec<ClockReport>,
    pub summary: Summary,
}

impl Rebuilt {
    /// What the audit log says about the rebuild.
    pub fn describe(&self) -> String {
        format!("clocks rebuilt under {} v{}", self.assignment.policy_name, self.assignment.policy_version)
    }
}

/// Replays `events` (the ticket's whole history, oldest first) under `assignment` up to `now`.
pub fn rebuild(assignment: SlaAssignment, events: Vec<SlaEvent>, now: Timestamp) -> Rebuilt {
    let (engine, _) = SlaEngine::replay(assignment.clone(), &events, now);
    Rebuilt { clocks: engine.report(now), summary: engine.summary(now), assignment, events }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::priority::Priority;
    use crate::sla::calendar::CalendarSpec;
    use crate::sla::engine::clocks_as_of;
    use crate::sla::policy::{PolicySpec, Trigger};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// First response in 2 s for every priority, under `calendar`.
    fn assignment(calendar: CalendarSpec) -> SlaAssignment {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "targets": [{"metric": "first_response", "durations": {"1": 2, "2": 2, "3": 2, "4": 2}}]
        }))
        .unwrap();
        SlaAssignment {
            policy_id: Uuid::nil(),
            policy_version: 3,
            policy_name: "fixed".into(),
            policy: spec.compile().unwrap(),
            calendar_id: None,
            calendar_version: None,
            calendar,
        }
    }

    fn created(at: &str) -> SlaEvent {
        SlaEvent { at: t(at), triggers: vec![Trigger::Created], status: Status::New, priority: Priority::P4 }
    }

    #[test]
    fn a_rebuild_runs_under_the_named_policy_else_the_pinned_one_and_never_on_a_closed_ticket() {
        let (pinned, named) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let cases = [
            (
                Status::InProgress,
                Some(pinned),
                Request::default(),
                Ok(PolicyChoice::Current(pinned)),
                "pinned, current",
            ),
            (
                Status::InProgress,
                Some(pinned),
                Request { policy_id: Some(named), policy_version: None },
                Ok(PolicyChoice::Current(named)),
                "the named policy wins",
            ),
            (
                Status::InProgress,
                None,
                Request { policy_id: None, policy_version: Some(2) },
                Err(Refusal::NoPolicy),
                "a version of no policy",
            ),
            (
                Status::InProgress,
                Some(pinned),
                Request { policy_id: None, policy_version: Some(2) },
                Ok(PolicyChoice::Version(pinned, 2)),
                "a version of the pinned policy",
            ),
            (Status::Closed, Some(pinned), Request::default(), Err(Refusal::Closed), "closed"),
            (Status::Closed, None, Request::default(), Err(Refusal::Closed), "closed comes first"),
        ];
        for (status, pinned, request, expected, why) in cases {
            assert_eq!(choose(status, pinned, request), expected, "{why}");
        }
    }

    #[test]
    fn a_rebuild_replays_the_history_from_creation_under_the_new_calendar() {
        let events = vec![created("2026-11-23T10:00:00Z")];
        let r = rebuild(assignment(CalendarSpec::always()), events.clone(), t("2026-11-23T10:00:03Z"));
        assert_eq!(r.events, events);
        assert_eq!(r.clocks.len(), 1);
        assert_eq!(r.clocks[0].state, "breached", "{:?}", r.clocks[0]);
        assert_eq!(r.clocks[0].elapsed_seconds, 3);
        assert_eq!(r.summary.state, "breached");
        assert_eq!(r.describe(), "clocks rebuilt under fixed v3");
    }

    #[test]
    fn recorded_clocks_move_on_to_the_moment_of_the_read() {
        let a = assignment(CalendarSpec::always());
        let recorded = rebuild(a.clone(), vec![created("2026-11-23T10:00:00Z")], t("2026-11-23T10:00:00.500Z")).clocks;
        assert_eq!((recorded[0].state.as_str(), recorded[0].remaining_seconds), ("running", 1));
        let now = clocks_as_of(&a, recorded, t("2026-11-23T10:00:01.500Z"));
        assert_eq!(now[0].remaining_seconds, 0, "due at 10:00:02, read at 10:00:01.5: 0 whole seconds left");
        assert_eq!(now[0].elapsed_seconds, 2);
        assert_eq!(now[0].ongoing.as_ref().map(|o| o.remaining_seconds), Some(0));
        assert!(now[0].within_calendar_hours);
    }
}
