//! Approval chains: ordered steps, each asking a set of approvers in parallel or one by one,
//! decided by a quorum rule (all, any, N, a percentage) with an explicit rejection rule, a
//! timeout with reminders, and an outcome on timeout (reject, approve, or escalate to someone).
//!
//! [`ChainSpec`] is what admins author (a catalog item's chain, the change routing); the
//! evaluator [`StepTally::outcome`] is pure so the workflow and the API agree on it. A step
//! whose quorum can no longer be reached ends rejected at once instead of waiting forever.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sla::policy::BusinessDuration;

/// Who is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApproverSpec {
    /// A named user.
    User(Uuid),
    /// Every active user with this role (resolved when the step starts).
    Role(String),
    /// Every member of this team.
    Team(Uuid),
    /// The requester's manager.
    RequesterManager,
    /// The owner of the requested catalog item.
    ItemOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Everyone is asked at once.
    #[default]
    Parallel,
    /// One at a time, in order; the next is asked when the previous approves.
    Sequential,
}

/// How many decisions of a kind settle a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    All,
    Any,
    /// At least this many.
    Count(u32),
    /// At least this share of the approvers (rounded up), 1–100.
    Percent(u8),
}

impl Rule {
    /// How many of `of` approvers it takes. A count is never lowered to the approvers there
    /// are: "any two" with one approver needs two, and so cannot be met (the step fails closed).
    pub fn needed(self, of: u32) -> u32 {
        match self {
            Rule::All => of,
            Rule::Any => of.min(1),
            Rule::Count(n) => n,
            Rule::Percent(p) => (of * u32::from(p)).div_ceil(100).min(of),
        }
    }
}

/// What happens when a step times out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OnTimeout {
    #[default]
    Reject,
    /// For pre-approved, low-risk work.
    Approve,
    /// Ask these instead; they decide the step (one approval or rejection settles it).
    Escalate(Vec<ApproverSpec>),
}

/// How time is counted for reminders and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    #[default]
    Wall,
    /// In business time: the calendar of the ticket's SLA policy (24×7 when none applies).
    Business,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    /// When the step times out, counted from its start.
    pub after: BusinessDuration,
    /// When to remind the approvers who have not decided, counted from the step's start.
    #[serde(default)]
    pub reminders: Vec<BusinessDuration>,
    #[serde(default)]
    pub clock: Clock,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    pub approvers: Vec<ApproverSpec>,
    #[serde(default)]
    pub mode: Mode,
    /// Approved when this many approve (default: all).
    #[serde(default = "all")]
    pub approve_when: Rule,
    /// Rejected when this many reject (default: as soon as approval can no longer be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_when: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

fn all() -> Rule {
    Rule::All
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    pub steps: Vec<StepSpec>,
}

/// A validation failure with the JSON pointer of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ChainError {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

impl ChainSpec {
    /// Every problem at once.
    pub fn validate(&self) -> Result<(), Vec<ChainError>> {
        let mut errors = Vec::new();
        let mut err = |pointer: String, code: &'static str, message: &str| {
            errors.push(ChainError { pointer, code, message: message.to_owned() })
        };
        if self.steps.is_empty() {
            err("/steps".into(), "required", "a chain needs at least one step");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let at = |f: &str| format!("/steps/{i}{f}");
            if s.name.trim().is_empty() {
                err(at("/name"), "required", "a step needs a name");
            }
            if s.approvers.is_empty() {
                err(at("/approvers"), "required", "a step needs approvers");
            }
            for rule in [Some(s.approve_when), s.reject_when].into_iter().flatten() {
                match rule {
                    Rule::Count(0) => err(at("/approve_when"), "range", "a count must be at least 1"),
                    Rule::Percent(p) if p == 0 || p > 100 => {
                        err(at("/approve_when"), "range", "a percentage is 1 to 100")
                    }
                    _ => {}
                }
            }
            if s.mode == Mode::Sequential && s.approve_when != Rule::All {
                err(at("/approve_when"), "conflict", "sequential steps ask one by one until everyone approved");
            }
            if let Some(t) = &s.timeout {
                if t.after.0 == 0 {
                    err(at("/timeout/after"), "range", "must be positive");
                }
                if t.reminders.iter().any(|r| r.0 == 0 || r.0 >= t.after.0) {
                    err(at("/timeout/reminders"), "range", "reminders fall between the step's start and its timeout");
                }
                if t.reminders.windows(2).any(|w| w[0].0 >= w[1].0) {
                    err(at("/timeout/reminders"), "order", "reminders must be ascending");
                }
            } else if s.on_timeout != OnTimeout::Reject {
                err(at("/on_timeout"), "conflict", "an outcome on timeout needs a timeout");
            }
            if let OnTimeout::Escalate(to) = &s.on_timeout
                && to.is_empty()
            {
                err(at("/on_timeout/escalate"), "required", "escalate to whom?");
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// How a step or a chain ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Approved { reason: String },
    Rejected { reason: String },
    Cancelled { reason: String },
}

impl Outcome {
    pub fn is_approved(&self) -> bool {
        matches!(self, Outcome::Approved { .. })
    }
}

/// The decisions of one step so far, in the order its approvers are asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTally {
    /// One entry per approver: their decision so far.
    pub decisions: Vec<Option<Decision>>,
}

impl StepTally {
    pub fn new(approvers: usize) -> Self {
        StepTally { decisions: vec![None; approvers] }
    }

    fn count(&self, d: Decision) -> u32 {
        self.decisions.iter().filter(|x| **x == Some(d)).count() as u32
    }

    /// Whether the step is settled, and how. `None`: still waiting.
    pub fn outcome(&self, step: &StepSpec) -> Option<Outcome> {
        let of = self.decisions.len() as u32;
        if of == 0 {
            return Some(Outcome::Rejected { reason: "no approvers could be found for this step".into() });
        }
        let (approved, rejected) = (self.count(Decision::Approve), self.count(Decision::Reject));
        let pending = of - approved - rejected;
        let needed = step.approve_when.needed(of);
        if needed > of {
            return Some(Outcome::Rejected { reason: unsatisfiable(needed, of) });
        }
        if approved >= needed {
            return Some(Outcome::Approved { reason: format!("{approved} of {of} approved") });
        }
        if let Some(rule) = step.reject_when
            && rejected >= rule.needed(of)
        {
            return Some(Outcome::Rejected { reason: format!("{rejected} of {of} rejected") });
        }
        // a quorum that can no longer be reached ends the step now rather than never
        if approved + pending < needed {
            return Some(Outcome::Rejected {
                reason: format!("{rejected} of {of} rejected: {needed} approvals can no longer be reached"),
            });
        }
        None
    }

    /// Whether a step with this many approvers can ever be approved by its rule.
    pub fn satisfiable(step: &StepSpec, approvers: usize) -> bool {
        step.approve_when.needed(approvers as u32) <= approvers as u32 && approvers > 0
    }

    /// Sequential steps ask one approver at a time: the first who has not decided.
    pub fn current(&self, step: &StepSpec) -> Option<usize> {
        match step.mode {
            Mode::Sequential => self.decisions.iter().position(Option::is_none),
            Mode::Parallel => None,
        }
    }
}

/// Why a step whose rule asks for more approvals than it has approvers is rejected.
pub fn unsatisfiable(needed: u32, of: u32) -> String {
    let found = if of == 1 { "only 1 approver was".to_owned() } else { format!("only {of} approvers were") };
    format!("this step needs {needed} approvals but {found} found: it cannot be approved")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn step(json: serde_json::Value) -> StepSpec {
        serde_json::from_value(json).unwrap()
    }

    fn tally(ds: &[Option<Decision>]) -> StepTally {
        StepTally { decisions: ds.to_vec() }
    }

    use Decision::*;

    /// Issue 8, item 7: "any two" with one approver is not authorized by one person.
    #[test]
    fn a_count_is_never_lowered_to_the_approvers_there_are() {
        let s = step(
            serde_json::json!({"name": "ECAB", "approvers": [{"role": "cab_member"}], "approve_when": {"count": 2}}),
        );
        let o = tally(&[None]).outcome(&s).unwrap();
        assert!(
            matches!(o, Outcome::Rejected { ref reason } if reason.contains("needs 2 approvals but only 1 approver")),
            "{o:?}"
        );
        let o = tally(&[Some(Approve)]).outcome(&s).unwrap();
        assert!(!o.is_approved(), "{o:?}");
        assert!(!StepTally::satisfiable(&s, 1));
        assert!(StepTally::satisfiable(&s, 2));
        assert!(tally(&[Some(Approve), Some(Approve)]).outcome(&s).unwrap().is_approved());
        let all = step(serde_json::json!({"name": "all", "approvers": [{"role": "x"}]}));
        assert!(!StepTally::satisfiable(&all, 0));
        assert!(StepTally::satisfiable(&all, 1));
    }

    #[test]
    fn quorum_two_of_three() {
        let s = step(
            serde_json::json!({"name": "CAB", "approvers": [{"role": "cab_member"}], "approve_when": {"count": 2}}),
        );
        assert_eq!(tally(&[Some(Approve), None, None]).outcome(&s), None);
        assert!(tally(&[Some(Approve), None, Some(Approve)]).outcome(&s).unwrap().is_approved());
        // one rejection leaves two who could still make it
        assert_eq!(tally(&[Some(Reject), None, None]).outcome(&s), None);
        // two rejections: the quorum can no longer be reached, rejected at once
        let o = tally(&[Some(Reject), None, Some(Reject)]).outcome(&s).unwrap();
        assert!(matches!(o, Outcome::Rejected { ref reason } if reason.contains("can no longer")), "{o:?}");
    }

    #[test]
    fn all_any_and_percent() {
        let all = step(serde_json::json!({"name": "a", "approvers": [{"role": "x"}]}));
        assert_eq!(tally(&[Some(Approve), None]).outcome(&all), None);
        assert!(matches!(tally(&[Some(Approve), Some(Reject)]).outcome(&all), Some(Outcome::Rejected { .. })));
        assert!(
            matches!(tally(&[None, Some(Reject)]).outcome(&all), Some(Outcome::Rejected { .. })),
            "one rejection sinks an all-rule at once"
        );
        let any = step(serde_json::json!({"name": "a", "approvers": [{"role": "x"}], "approve_when": "any"}));
        assert!(tally(&[None, Some(Approve), None]).outcome(&any).unwrap().is_approved());
        assert_eq!(tally(&[Some(Reject), None]).outcome(&any), None);
        let pct = step(serde_json::json!({"name": "a", "approvers": [{"role": "x"}], "approve_when": {"percent": 60}}));
        assert_eq!(Rule::Percent(60).needed(5), 3);
        assert!(tally(&[Some(Approve), Some(Approve), Some(Approve), None, None]).outcome(&pct).unwrap().is_approved());
    }

    #[test]
    fn explicit_rejection_rules_and_empty_steps() {
        let s = step(
            serde_json::json!({"name": "a", "approvers": [{"role": "x"}], "approve_when": "any", "reject_when": "any"}),
        );
        assert!(matches!(tally(&[Some(Reject), None, None]).outcome(&s), Some(Outcome::Rejected { .. })));
        assert!(matches!(StepTally::new(0).outcome(&s), Some(Outcome::Rejected { .. })));
    }

    #[test]
    fn sequential_steps_ask_the_first_undecided() {
        let s = step(serde_json::json!({"name": "a", "approvers": [{"role": "x"}], "mode": "sequential"}));
        assert_eq!(tally(&[Some(Approve), None, None]).current(&s), Some(1));
        assert_eq!(tally(&[Some(Approve), Some(Approve)]).current(&s), None);
    }

    #[test]
    fn validation_reports_every_problem() {
        let chain: ChainSpec = serde_json::from_value(serde_json::json!({"steps": [
            {"name": "", "approvers": []},
            {"name": "s", "approvers": [{"user": Uuid::nil()}], "mode": "sequential", "approve_when": "any"},
            {"name": "t", "approvers": ["requester_manager"], "on_timeout": "approve"},
            {"name": "u", "approvers": ["item_owner"], "timeout": {"after": "4s", "reminders": ["5s"]}}
        ]}))
        .unwrap();
        let errs: Vec<(String, &str)> =
            chain.validate().unwrap_err().into_iter().map(|e| (e.pointer, e.code)).collect();
        for e in [
            ("/steps/0/name", "required"),
            ("/steps/0/approvers", "required"),
            ("/steps/1/approve_when", "conflict"),
            ("/steps/2/on_timeout", "conflict"),
            ("/steps/3/timeout/reminders", "range"),
        ] {
            assert!(errs.contains(&(e.0.to_owned(), e.1)), "{e:?} not in {errs:?}");
        }
    }
}
