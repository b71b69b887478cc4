//! SLA policies: which tickets they apply to, their targets per priority, the conditions that
//! drive each target's clock, and the escalation levels keyed to clock events.
//!
//! Admins author a [`PolicySpec`] (JSON); [`PolicySpec::compile`] validates it, reporting every
//! problem with a JSON pointer, and yields a [`Policy`] the clock engine runs.
//!
//! Clock conditions follow ServiceNow's model (start, pause, resume, stop, cancel, reset) with
//! its documented traps designed out:
//! - the start condition is evaluated only to attach a clock; it is never re-checked while the
//!   clock runs, so "a start that excludes the pause status" cannot cancel a paused clock
//!   (cancelling is the cancel condition's job alone);
//! - a start that every event satisfying it also stops ("a start that is a subset of stop") is
//!   refused at validation, since such a clock could never run.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::priority::Priority;
use crate::ticket::{Status, TicketKind};

/// What a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// From creation to the first response (public agent reply or work started).
    FirstResponse,
    /// From a customer reply to the next public agent reply (one cycle per reply).
    NextResponse,
    /// From creation to resolution; reopening resumes it.
    Resolution,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::FirstResponse, Metric::NextResponse, Metric::Resolution];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FirstResponse => "first_response",
            Metric::NextResponse => "next_response",
            Metric::Resolution => "resolution",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::FirstResponse => "First response",
            Metric::NextResponse => "Next response",
            Metric::Resolution => "Resolution",
        }
    }
}

/// Something that happens to a ticket, as far as clock conditions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Created,
    /// A public comment by someone working the ticket.
    AgentReply,
    /// A public comment by the requester's side.
    CustomerReply,
    /// A resolved ticket went back to work.
    Reopened,
    PriorityChanged,
    Assigned,
}

/// Holds for an event when the event is one of `on`, or when the ticket's status after the
/// event is one of `status_in`. An empty condition never holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Trigger>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_in: Vec<Status>,
}

impl Condition {
    pub fn holds(&self, triggers: &[Trigger], status: Status) -> bool {
        self.status_in.contains(&status) || self.on.iter().any(|t| triggers.contains(t))
    }

    fn is_empty(&self) -> bool {
        self.on.is_empty() && self.status_in.is_empty()
    }

    fn of(on: &[Trigger], status_in: &[Status]) -> Self {
        Condition { on: on.to_vec(), status_in: status_in.to_vec() }
    }
}

/// The conditions that drive a target's clock.
///
/// - `start` attaches a clock (a new cycle) when it is idle or its last cycle has ended;
/// - `pause` holds → the clock is paused; stops holding → it runs again;
/// - `stop` ends the cycle (met, or breached if it ran out);
/// - `resume` continues a stopped cycle with its elapsed time kept (a reopened ticket);
/// - `cancel` ends the cycle without a verdict;
/// - `reset` ends the cycle and starts a new one at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default)]
    pub start: Condition,
    #[serde(default)]
    pub pause: Condition,
    #[serde(default)]
    pub resume: Condition,
    #[serde(default)]
    pub stop: Condition,
    #[serde(default)]
    pub cancel: Condition,
    #[serde(default)]
    pub reset: Condition,
}

impl Conditions {
    /// Archer's defaults per metric: waiting on the customer (or on an approval) pauses every
    /// clock; the first public agent reply or work starting stops first response; resolving
    /// stops resolution and reopening resumes it; cancelling or rejecting the ticket cancels
    /// every clock.
    pub fn default_for(metric: Metric) -> Self {
        use Status::*;
        use Trigger::*;
        let cancelled = Condition::of(&[], &[Cancelled, Rejected]);
        // waiting on the customer, or on an approval: not the service desk's time
        let waiting = Condition::of(&[], &[WaitingOnCustomer, PendingApproval]);
        match metric {
            Metric::FirstResponse => Conditions {
                start: Condition::of(&[Created], &[]),
                pause: waiting,
                stop: Condition::of(
                    &[AgentReply],
                    &[
                        InProgress,
                        Resolved,
                        Closed,
                        Assess,
                        Authorize,
                        Scheduled,
                        Implement,
                        Review,
                        RootCauseAnalysis,
                        FixInProgress,
                    ],
                ),
                cancel: cancelled,
                ..Default::default()
            },
            Metric::NextResponse => Conditions {
                start: Condition::of(&[CustomerReply], &[]),
                pause: waiting,
                stop: Condition::of(&[AgentReply], &[Resolved, Closed]),
                cancel: cancelled,
                ..Default::default()
            },
            Metric::Resolution => Conditions {
                start: Condition::of(&[Created], &[]),
                pause: waiting,
                stop: Condition::of(&[], &[Resolved, Closed]),
                resume: Condition::of(&[Reopened], &[]),
                cancel: cancelled,
                ..Default::default()
            },
        }
    }
}

/// A duration as admins write it: whole seconds (`3600`) or text (`"4h"`, `"1h 30m"`, `"2s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "DurationRepr", into = "DurationRepr")]
#[cfg_attr(feature = "openapi", schema(value_type = String, example = "4h"))]
pub struct BusinessDuration(pub u64);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Seconds(u64),
    Text(String),
}

impl TryFrom<DurationRepr> for BusinessDuration {
    type Error = String;
    fn try_from(r: DurationRepr) -> Result<Self, String> {
        match r {
            DurationRepr::Seconds(s) => Ok(BusinessDuration(s)),
            DurationRepr::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| format!("`{t}` is not a duration like \"4h\" or \"1h 30m\": {e}"))
                .and_then(|d| {
                    if d.subsec_nanos() != 0 {
                        Err(format!("`{t}`: durations are whole seconds"))
                    } else {
                        Ok(BusinessDuration(d.as_secs()))
                    }
                }),
        }
    }
}

impl From<BusinessDuration> for DurationRepr {
    fn from(d: BusinessDuration) -> Self {
        DurationRepr::Text(humantime::format_duration(std::time::Duration::from_secs(d.0)).to_string())
    }
}

impl BusinessDuration {
    pub fn signed(self) -> SignedDuration {
        SignedDuration::from_secs(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

/// A target: a business-time budget per priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub metric: Metric,
    /// The budget for each priority, keyed `"1"` to `"4"`; all four are required.
    pub durations: BTreeMap<String, BusinessDuration>,
    /// Warn when this share of the budget is used (percent, ascending, 1–99).
    #[serde(default = "default_warnings")]
    pub warnings: Vec<u8>,
    /// Overrides the metric's default conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

fn default_warnings() -> Vec<u8> {
    vec![50, 80]
}

/// Which tickets a policy applies to: every list given must contain the ticket's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Applicability {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<TicketKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<Priority>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<Uuid>,
}

/// What a ticket looks like to policy matching.
pub struct MatchInput<'a> {
    pub kind: TicketKind,
    pub priority: Priority,
    pub category: Option<&'a str>,
    pub team_id: Option<Uuid>,
}

impl Applicability {
    pub fn matches(&self, t: &MatchInput<'_>) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&t.kind))
            && (self.priorities.is_empty() || self.priorities.contains(&t.priority))
            && (self.categories.is_empty() || t.category.is_some_and(|c| self.categories.iter().any(|x| x == c)))
            && (self.teams.is_empty() || t.team_id.is_some_and(|id| self.teams.contains(&id)))
    }
}

/// When an escalation level fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EscalationTrigger {
    /// When the target's warning at `percent` fires (must be one of its warnings).
    Warning { percent: u8 },
    /// At the breach instant.
    Breach,
    /// This long (wall-clock) after the breach instant.
    BreachPlus { after: BusinessDuration },
}

/// Who hears about an escalation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Recipients {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Uuid>,
    /// Every member of these teams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<Uuid>,
    #[serde(default)]
    pub assignee: bool,
    /// The assignee's manager (their `manager_id`).
    #[serde(default)]
    pub assignee_manager: bool,
    /// The members of the ticket's team.
    #[serde(default)]
    pub ticket_team: bool,
}

/// What an escalation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EscalationAction {
    /// An in-app notification to each recipient, and an email unless `email` is false.
    Notify {
        to: Recipients,
        #[serde(default = "yes")]
        email: bool,
    },
    /// Raise the ticket's priority by `by` levels (P3 → P1 with 2), not beyond P1.
    RaisePriority { by: u8 },
    /// Move the ticket to this team.
    Reassign { team_id: Uuid },
    /// Add an internal note to the ticket.
    InternalComment { body: String },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    pub name: String,
    /// The target this level watches; all targets when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    pub when: EscalationTrigger,
    pub actions: Vec<EscalationAction>,
}

/// A policy as admins author it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub applies_to: Applicability,
    pub targets: Vec<TargetSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<EscalationLevel>,
    /// At most this many escalation levels fire per ticket (a stop for loops).
    #[serde(default = "default_max_escalations")]
    pub max_escalations: u8,
    /// At least this long (wall-clock) between two escalations of the same ticket.
    #[serde(default = "default_cooldown")]
    pub escalation_cooldown: BusinessDuration,
}

fn default_max_escalations() -> u8 {
    10
}

fn default_cooldown() -> BusinessDuration {
    BusinessDuration(0)
}

/// A validation failure with the JSON pointer of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct PolicyError {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

fn err(errors: &mut Vec<PolicyError>, pointer: String, code: &'static str, message: impl Into<String>) {
    errors.push(PolicyError { pointer, code, message: message.into() });
}

/// A compiled target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub metric: Metric,
    /// Indexed by priority - 1.
    pub durations: [SignedDuration; 4],
    pub warnings: Vec<u8>,
    pub conditions: Conditions,
}

impl Target {
    pub fn duration(&self, p: Priority) -> SignedDuration {
        self.durations[usize::from(p.get() - 1)]
    }
}

/// A compiled policy: what the clock engine runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub targets: Vec<Target>,
    pub escalations: Vec<EscalationLevel>,
    pub max_escalations: u8,
    pub escalation_cooldown: SignedDuration,
}

impl PolicySpec {
    /// Validates the spec, reporting every problem at once.
    pub fn compile(&self) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        if self.targets.is_empty() {
            err(&mut errors, "/targets".into(), "required", "a policy needs at least one target");
        }
        let mut targets = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = |f: &str| format!("/targets/{i}{f}");
            if self.targets[..i].iter().any(|o| o.metric == t.metric) {
                err(&mut errors, at("/metric"), "duplicate", format!("{} has two targets", t.metric.as_str()));
            }
            let mut durations = [SignedDuration::ZERO; 4];
            for p in 1..=4u8 {
                match t.durations.get(&p.to_string()) {
                    Some(d) if d.0 == 0 => {
                        err(&mut errors, at(&format!("/durations/{p}")), "range", "must be positive")
                    }
                    Some(d) if d.0 > 10 * 366 * 86_400 => {
                        err(&mut errors, at(&format!("/durations/{p}")), "range", "must be under ten years")
                    }
                    Some(d) => durations[usize::from(p - 1)] = d.signed(),
                    None => err(
                        &mut errors,
                        at(&format!("/durations/{p}")),
                        "required",
                        format!("no {} target for priority {p}", t.metric.as_str()),
                    ),
                }
            }
            for k in t.durations.keys() {
                if !matches!(k.as_str(), "1" | "2" | "3" | "4") {
                    err(&mut errors, at(&format!("/durations/{k}")), "unknown_field", "priorities are \"1\" to \"4\"");
                }
            }
            if t.warnings.iter().any(|w| !(1..=99).contains(w)) {
                err(&mut errors, at("/warnings"), "range", "warnings are percentages from 1 to 99");
            }
            if t.warnings.windows(2).any(|w| w[0] >= w[1]) {
                err(&mut errors, at("/warnings"), "order", "warnings must be ascending without repeats");
            }
            let conditions = t.conditions.clone().unwrap_or_else(|| Conditions::default_for(t.metric));
            check_conditions(&mut errors, &at("/conditions"), &conditions);
            targets.push(Target { metric: t.metric, durations, warnings: t.warnings.clone(), conditions });
        }
        for (i, level) in self.escalations.iter().enumerate() {
            let at = |f: &str| format!("/escalations/{i}{f}");
            if level.name.trim().is_empty() {
                err(&mut errors, at("/name"), "required", "an escalation level needs a name");
            }
            if let Some(m) = level.metric
                && !self.targets.iter().any(|t| t.metric == m)
            {
                err(&mut errors, at("/metric"), "unknown", format!("the policy has no {} target", m.as_str()));
            }
            if let EscalationTrigger::Warning { percent } = level.when {
                let watched: Vec<&TargetSpec> =
                    self.targets.iter().filter(|t| level.metric.is_none_or(|m| m == t.metric)).collect();
                if watched.is_empty() || !watched.iter().all(|t| t.warnings.contains(&percent)) {
                    err(
                        &mut errors,
                        at("/when/warning/percent"),
                        "unknown",
                        format!("no warning at {percent}% on the watched targets"),
                    );
                }
            }
            if level.actions.is_empty() {
                err(&mut errors, at("/actions"), "required", "an escalation level needs at least one action");
            }
            for (j, a) in level.actions.iter().enumerate() {
                match a {
                    EscalationAction::RaisePriority { by } if !(1..=3).contains(by) => {
                        err(&mut errors, at(&format!("/actions/{j}/by")), "range", "raise by 1 to 3 levels")
                    }
                    EscalationAction::InternalComment { body } if body.trim().is_empty() => {
                        err(&mut errors, at(&format!("/actions/{j}/body")), "required", "the comment needs a body")
                    }
                    EscalationAction::Notify { to, .. }
                        if to.users.is_empty()
                            && to.teams.is_empty()
                            && !to.assignee
                            && !to.assignee_manager
                            && !to.ticket_team =>
                    {
                        err(
                            &mut errors,
                            at(&format!("/actions/{j}")),
                            "required",
                            "notify whom? name users, teams or roles",
                        )
                    }
                    _ => {}
                }
            }
        }
        if self.max_escalations == 0 && !self.escalations.is_empty() {
            err(&mut errors, "/max_escalations".into(), "range", "must be at least 1 when levels are defined");
        }
        if errors.is_empty() {
            Ok(Policy {
                targets,
                escalations: self.escalations.clone(),
                max_escalations: self.max_escalations,
                escalation_cooldown: self.escalation_cooldown.signed(),
            })
        } else {
            Err(errors)
        }
    }

    /// The users and teams the policy names, so the API can check they exist in the tenant.
    pub fn ids_referenced(&self) -> (Vec<Uuid>, Vec<Uuid>) {
        let mut users = Vec::new();
        let mut teams = self.applies_to.teams.clone();
        for level in &self.escalations {
            for a in &level.actions {
                match a {
                    EscalationAction::Notify { to, .. } => {
                        users.extend(to.users.iter().copied());
                        teams.extend(to.teams.iter().copied());
                    }
                    EscalationAction::Reassign { team_id } => teams.push(*team_id),
                    _ => {}
                }
            }
        }
        (users, teams)
    }
}

fn check_conditions(errors: &mut Vec<PolicyError>, at: &str, c: &Conditions) {
    if c.start.is_empty() {
        err(errors, format!("{at}/start"), "required", "a clock needs a start condition");
    }
    if c.stop.is_empty() && c.cancel.is_empty() {
        err(errors, format!("{at}/stop"), "required", "a clock needs a stop or cancel condition");
    }
    // A start that is a subset of stop never attaches: every event that starts it stops it.
    let start_triggers_stop = c.start.on.iter().all(|t| c.stop.on.contains(t));
    let start_statuses_stop = c.start.status_in.iter().all(|s| c.stop.status_in.contains(s));
    if !c.start.is_empty() && start_triggers_stop && start_statuses_stop {
        err(
            errors,
            format!("{at}/start"),
            "never_attaches",
            "every event that starts this clock also stops it, so it would never run",
        );
    }
    for (name, other) in [("stop", &c.stop), ("cancel", &c.cancel)] {
        if let Some(s) = c.pause.status_in.iter().find(|s| other.status_in.contains(s)) {
            err(errors, format!("{at}/pause/status_in"), "conflict", format!("{s} both pauses and {name}s the clock"));
        }
    }
    if let Some(s) = c.stop.status_in.iter().find(|s| c.cancel.status_in.contains(s)) {
        err(errors, format!("{at}/cancel/status_in"), "conflict", format!("{s} both stops and cancels the clock"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn errors(json: serde_json::Value) -> Vec<(String, &'static str)> {
        let spec: PolicySpec = serde_json::from_value(json).unwrap();
        spec.compile().unwrap_err().into_iter().map(|e| (e.pointer, e.code)).collect()
    }

    #[test]
    fn durations_are_seconds_or_text() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "targets": [{"metric": "resolution", "durations": {"1": "4h", "2": "1h 30m", "3": 7200, "4": "2days"}}]
        }))
        .unwrap();
        let p = spec.compile().unwrap();
        let secs: Vec<i64> = p.targets[0].durations.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [14_400, 5_400, 7_200, 172_800]);
        assert_eq!(p.targets[0].warnings, [50, 80]);
        assert_eq!(p.targets[0].conditions, Conditions::default_for(Metric::Resolution));
        assert!(serde_json::from_value::<BusinessDuration>(serde_json::json!("soon")).is_err());
        assert!(serde_json::from_value::<BusinessDuration>(serde_json::json!("1.5s")).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let e = errors(serde_json::json!({
            "targets": [
                {"metric": "resolution", "durations": {"1": "4h", "2": "8h", "3": 0}, "warnings": [80, 50]},
                {"metric": "resolution", "durations": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}}
            ],
            "escalations": [{"name": "", "when": {"warning": {"percent": 90}}, "actions": []}]
        }));
        for expected in [
            ("/targets/0/durations/3", "range"),
            ("/targets/0/durations/4", "required"),
            ("/targets/0/warnings", "order"),
            ("/targets/1/metric", "duplicate"),
            ("/targets/1/durations/5", "unknown_field"),
            ("/escalations/0/name", "required"),
            ("/escalations/0/when/warning/percent", "unknown"),
            ("/escalations/0/actions", "required"),
        ] {
            assert!(e.contains(&(expected.0.to_owned(), expected.1)), "missing {expected:?} in {e:?}");
        }
        assert!(errors(serde_json::json!({"targets": []})).contains(&("/targets".to_owned(), "required")));
    }

    #[test]
    fn clocks_that_could_never_run_or_are_ambiguous_are_refused() {
        let all = serde_json::json!({"1": 1, "2": 1, "3": 1, "4": 1});
        // ServiceNow's trap: a start that is a subset of stop never attaches
        let e = errors(serde_json::json!({"targets": [{"metric": "resolution", "durations": all,
            "conditions": {"start": {"status_in": ["in_progress"]}, "stop": {"status_in": ["in_progress", "resolved"]}}}]}));
        assert!(e.contains(&("/targets/0/conditions/start".to_owned(), "never_attaches")), "{e:?}");
        let e = errors(serde_json::json!({"targets": [{"metric": "resolution", "durations": all,
            "conditions": {"start": {"on": ["created"]}, "pause": {"status_in": ["resolved"]}, "stop": {"status_in": ["resolved"]}}}]}));
        assert!(e.contains(&("/targets/0/conditions/pause/status_in".to_owned(), "conflict")), "{e:?}");
        let e = errors(serde_json::json!({"targets": [{"metric": "resolution", "durations": all,
            "conditions": {"pause": {"status_in": ["waiting_on_customer"]}}}]}));
        assert!(e.contains(&("/targets/0/conditions/start".to_owned(), "required")), "{e:?}");
        assert!(e.contains(&("/targets/0/conditions/stop".to_owned(), "required")), "{e:?}");
    }

    #[test]
    fn the_default_conditions_are_valid() {
        for m in Metric::ALL {
            let mut errs = Vec::new();
            check_conditions(&mut errs, "", &Conditions::default_for(m));
            assert!(errs.is_empty(), "{m:?}: {errs:?}");
        }
    }

    #[test]
    fn applicability_matches_every_given_list() {
        let a: Applicability =
            serde_json::from_value(serde_json::json!({"kinds": ["incident"], "priorities": [1, 2]})).unwrap();
        let m = |kind, p: i64| MatchInput { kind, priority: Priority::new(p).unwrap(), category: None, team_id: None };
        assert!(a.matches(&m(TicketKind::Incident, 1)));
        assert!(!a.matches(&m(TicketKind::Incident, 3)));
        assert!(!a.matches(&m(TicketKind::Change, 1)));
        assert!(Applicability::default().matches(&m(TicketKind::Problem, 4)));
    }
}
