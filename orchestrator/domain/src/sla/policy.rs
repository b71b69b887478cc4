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
//! - a clock that could never run is refused at validation, decided by meaning rather than by
//!   comparing lists: a start that every event satisfying it also stops (ServiceNow's "start is a
//!   subset of stop", but also `created` with a stop on every status), or a pause that holds
//!   whenever the clock is not stopped.

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

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::Created,
        Trigger::AgentReply,
        Trigger::CustomerReply,
        Trigger::Reopened,
        Trigger::PriorityChanged,
        Trigger::Assigned,
    ];
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

/// Whole business days: the same local time of day on the `days`-th working day after the day the
/// clock starts, or with `end_of_day` the close of that day (see
/// [`Calendar::add_business_days`](crate::sla::calendar::Calendar::add_business_days)).
///
/// Written in a policy as `"3 business days"` (or `"1 business day"`, `"3bd"`, any case), with
/// ` end_of_day` after it for the close of the day: `"3 business days end_of_day"`,
/// `"3bd end_of_day"`. `"0 business days end_of_day"` is the close of the day the clock starts.
/// Shown (and stored) as `"3 business days"` / `"3 business days end_of_day"`. Compiled targets
/// carry it as `{"days": 3}` / `{"days": 3, "end_of_day": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessDays {
    pub days: u16,
    #[serde(default, skip_serializing_if = "is_false")]
    pub end_of_day: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// At most this many business days (about ten years of working days).
pub const MAX_BUSINESS_DAYS: u16 = 2_500;

impl std::fmt::Display for BusinessDays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.days == 1 { "" } else { "s" };
        let end = if self.end_of_day { " end_of_day" } else { "" };
        write!(f, "{} business day{plural}{end}", self.days)
    }
}

impl BusinessDays {
    /// Parses the text form. `None` when the text is not written in business days at all (so it
    /// is read as a business duration); `Some(Err)` when it is, but wrongly.
    pub fn parse(text: &str) -> Option<Result<BusinessDays, String>> {
        let lower = text.trim().to_ascii_lowercase();
        let mut words: Vec<&str> = lower.split_whitespace().collect();
        let end_of_day = words.last() == Some(&"end_of_day");
        if end_of_day {
            words.pop();
        }
        let first = words.first().copied().unwrap_or_default();
        let digits = first.len() - first.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, glued) = first.split_at(digits);
        let unit = std::iter::once(glued).chain(words.iter().skip(1).copied()).filter(|w| !w.is_empty());
        let unit = unit.collect::<Vec<_>>().join(" ");
        if !end_of_day && !unit.contains("business") && unit != "bd" {
            return None;
        }
        let syntax = "write business days as \"3 business days\" or \"3bd\", optionally followed by \" end_of_day\"";
        if !matches!(unit.as_str(), "bd" | "business day" | "business days") {
            return Some(Err(format!("`{text}`: {syntax}")));
        }
        let Ok(days) = number.parse::<u16>() else {
            return Some(Err(format!("`{text}`: expected a whole number of business days ({syntax})")));
        };
        Some(Ok(BusinessDays { days, end_of_day }))
    }
}

/// A target's budget for one priority, as admins write it: business time (`"4h"`, `"1h 30m"`,
/// `"2d"` = 48 hours of business time, or whole seconds `3600`) or whole business days
/// (`"3 business days"`, `"3bd"`, `"3 business days end_of_day"`: [`BusinessDays`]).
///
/// Text that is neither is kept as written ([`TargetDuration::Invalid`]) rather than refused
/// while reading JSON, so that [`PolicySpec::compile`] reports it with its pointer together with
/// every other problem of the policy. Serialized, business time is the canonical text it always
/// was (`3600` → `"1h"`), business days their canonical text, and invalid text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetDuration {
    Business(BusinessDuration),
    Days(BusinessDays),
    /// Not a duration: `written` as given (JSON text if it was not a string), `problem` why.
    Invalid {
        written: String,
        problem: String,
    },
}

impl TargetDuration {
    /// Reads the text form (business days, else a business duration).
    pub fn parse(text: &str) -> TargetDuration {
        let invalid = |problem| TargetDuration::Invalid { written: text.to_owned(), problem };
        match BusinessDays::parse(text) {
            Some(Ok(days)) => TargetDuration::Days(days),
            Some(Err(problem)) => invalid(problem),
            None => match BusinessDuration::try_from(DurationRepr::Text(text.to_owned())) {
                Ok(d) => TargetDuration::Business(d),
                Err(problem) => invalid(problem),
            },
        }
    }
}

impl From<BusinessDuration> for TargetDuration {
    fn from(d: BusinessDuration) -> Self {
        TargetDuration::Business(d)
    }
}

impl From<BusinessDays> for TargetDuration {
    fn from(d: BusinessDays) -> Self {
        TargetDuration::Days(d)
    }
}

impl Serialize for TargetDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetDuration::Business(d) => d.serialize(s),
            TargetDuration::Days(d) => s.collect_str(d),
            TargetDuration::Invalid { written, .. } => s.serialize_str(written),
        }
    }
}

impl<'de> Deserialize<'de> for TargetDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Seconds(u64),
            Text(String),
            Other(serde_json::Value),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Seconds(s) => TargetDuration::Business(BusinessDuration(s)),
            Repr::Text(t) => TargetDuration::parse(&t),
            Repr::Other(v) => TargetDuration::Invalid {
                written: v.to_string(),
                problem: format!("{v} is not a duration: write whole seconds, \"4h\" or \"3 business days\""),
            },
        })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TargetDuration {}
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TargetDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Business time (\"4h\", \"1h 30m\", \"2d\" = 48 h of business time, or whole seconds) or \
                 business days (\"3 business days\", \"3bd\", \"3 business days end_of_day\").",
            ))
            .examples(["4h", "3 business days"])
            .into()
    }
}

/// A target: a business-time budget per priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub metric: Metric,
    /// The budget for each priority, keyed `"1"` to `"4"`; all four are required. Business time
    /// (`"4h"`) or business days (`"3 business days"`), per priority.
    pub durations: BTreeMap<String, TargetDuration>,
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
///
/// Part of every ticket workflow's input and carried state, so its JSON only ever grows by
/// optional fields: a target without business days serializes exactly as it always has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub metric: Metric,
    /// The business-time budget, indexed by priority - 1. For a priority budgeted in business
    /// days ([`Target::business_days`]) this is only a stand-in of 24 hours of business time per
    /// day, used should the calendar be unable to place the days.
    pub durations: [SignedDuration; 4],
    /// Priorities budgeted in business days, indexed by priority - 1; absent when none is.
    #[serde(default, skip_serializing_if = "no_business_days")]
    pub business_days: [Option<BusinessDays>; 4],
    pub warnings: Vec<u8>,
    pub conditions: Conditions,
}

fn no_business_days(days: &[Option<BusinessDays>; 4]) -> bool {
    days.iter().all(Option::is_none)
}

impl Target {
    /// The business-time budget of priority `p` (see [`Target::durations`]).
    pub fn duration(&self, p: Priority) -> SignedDuration {
        self.durations[usize::from(p.get() - 1)]
    }

    /// The budget of priority `p` in business days, if it is given in them. The clock engine
    /// turns it into business time from each cycle's start.
    pub fn business_days(&self, p: Priority) -> Option<BusinessDays> {
        self.business_days[usize::from(p.get() - 1)]
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
            let mut business_days = [None; 4];
            for p in 1..=4u8 {
                let (i, pointer) = (usize::from(p - 1), at(&format!("/durations/{p}")));
                match t.durations.get(&p.to_string()) {
                    Some(TargetDuration::Business(d)) if d.0 == 0 => {
                        err(&mut errors, pointer, "range", "must be positive")
                    }
                    Some(TargetDuration::Business(d)) if d.0 > 10 * 366 * 86_400 => {
                        err(&mut errors, pointer, "range", "must be under ten years")
                    }
                    Some(TargetDuration::Business(d)) => durations[i] = d.signed(),
                    Some(TargetDuration::Days(d)) if d.days == 0 && !d.end_of_day => err(
                        &mut errors,
                        pointer,
                        "range",
                        "must be positive (\"0 business days end_of_day\" is the close of the day the clock starts)",
                    ),
                    Some(TargetDuration::Days(d)) if d.days > MAX_BUSINESS_DAYS => err(
                        &mut errors,
                        pointer,
                        "range",
                        format!("at most {MAX_BUSINESS_DAYS} business days (about ten years)"),
                    ),
                    Some(TargetDuration::Days(d)) => {
                        durations[i] = SignedDuration::from_hours(24 * i64::from(d.days.max(1)));
                        business_days[i] = Some(*d);
                    }
                    Some(TargetDuration::Invalid { problem, .. }) => {
                        err(&mut errors, pointer, "format", problem.clone())
                    }
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
            check_conditions(&mut errors, &at("/conditions"), &conditions, &self.applies_to.kinds);
            targets.push(Target {
                metric: t.metric,
                durations,
                business_days,
                warnings: t.warnings.clone(),
                conditions,
            });
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

/// Where a clock's current cycle is, as [`SlaEngine`](crate::sla::engine::SlaEngine) moves it:
/// `Idle` is no cycle (none yet, or the last one ended for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Idle,
    Running,
    Paused,
    Stopped,
}

impl Conditions {
    /// The phase a clock is in after an event, checking the conditions in the engine's order
    /// (`SlaEngine::apply`; a test there holds the two together).
    pub(crate) fn next_phase(&self, phase: Phase, triggers: &[Trigger], status: Status) -> Phase {
        let holds = |c: &Condition| c.holds(triggers, status);
        let run_or_pause = || if holds(&self.pause) { Phase::Paused } else { Phase::Running };
        // a new cycle, then ended at once if the same event cancels or stops it
        let attach = || {
            if holds(&self.cancel) {
                Phase::Idle
            } else if holds(&self.stop) {
                Phase::Stopped
            } else {
                run_or_pause()
            }
        };
        match phase {
            Phase::Idle if holds(&self.start) => attach(),
            Phase::Idle => Phase::Idle,
            Phase::Stopped if holds(&self.resume) => run_or_pause(),
            Phase::Stopped if holds(&self.start) => attach(),
            Phase::Stopped => Phase::Stopped,
            Phase::Running | Phase::Paused if holds(&self.cancel) => Phase::Idle,
            Phase::Running | Phase::Paused if holds(&self.reset) => run_or_pause(),
            Phase::Running | Phase::Paused if holds(&self.stop) => Phase::Stopped,
            Phase::Running | Phase::Paused => run_or_pause(),
        }
    }

    /// Every phase a clock of a `kind` ticket can reach, over every event such a ticket can
    /// have (one trigger or none, with any status of the kind), in any order.
    fn reachable(&self, kind: TicketKind) -> Vec<Phase> {
        let mut seen = vec![Phase::Idle];
        let mut todo = vec![Phase::Idle];
        while let Some(phase) = todo.pop() {
            for &status in kind.statuses() {
                for triggers in std::iter::once(&[][..]).chain(Trigger::ALL.iter().map(std::slice::from_ref)) {
                    let next = self.next_phase(phase, triggers, status);
                    if !seen.contains(&next) {
                        seen.push(next);
                        todo.push(next);
                    }
                }
            }
        }
        seen
    }
}

/// Checks a target's conditions; `kinds` are the kinds the policy applies to (every kind when
/// empty).
///
/// Whether a clock can run is decided by meaning, not by comparing lists: the conditions are
/// played over every event a ticket of those kinds can have, and a clock that can never reach
/// running is refused, pointing at `start` when it never survives its start (every event that
/// starts it also stops or cancels it, or none can start it) and at `pause` when it only ever
/// waits (every event that does not end it pauses it).
fn check_conditions(errors: &mut Vec<PolicyError>, at: &str, c: &Conditions, kinds: &[TicketKind]) {
    if c.start.is_empty() {
        err(errors, format!("{at}/start"), "required", "a clock needs a start condition");
    }
    if c.stop.is_empty() && c.cancel.is_empty() {
        err(errors, format!("{at}/stop"), "required", "a clock needs a stop or cancel condition");
    }
    let kinds = if kinds.is_empty() { &TicketKind::ALL[..] } else { kinds };
    let reached: Vec<Phase> = kinds.iter().flat_map(|&k| c.reachable(k)).collect();
    if !c.start.is_empty() && !reached.contains(&Phase::Running) {
        let startable = kinds.iter().any(|k| {
            k.statuses().iter().any(|&s| c.start.holds(&[], s) || Trigger::ALL.iter().any(|&t| c.start.holds(&[t], s)))
        });
        let (pointer, code, message) = if reached.contains(&Phase::Paused) {
            (
                "pause",
                "never_runs",
                "every event that neither stops nor cancels this clock pauses it, so it would never run",
            )
        } else if startable {
            (
                "start",
                "never_attaches",
                "every event that starts this clock also stops or cancels it, so it would never run",
            )
        } else {
            (
                "start",
                "never_attaches",
                "no ticket the policy applies to can meet this start condition, so the clock would never run",
            )
        };
        err(errors, format!("{at}/{pointer}"), code, message);
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
            check_conditions(&mut errs, "", &Conditions::default_for(m), &[]);
            assert!(errs.is_empty(), "{m:?}: {errs:?}");
            // and for each kind on its own
            for k in TicketKind::ALL {
                check_conditions(&mut errs, "", &Conditions::default_for(m), &[k]);
                assert!(errs.is_empty(), "{m:?} for {k:?}: {errs:?}");
            }
        }
    }

    const ALL_STATUSES: [&str; 15] = [
        "new",
        "in_progress",
        "waiting_on_customer",
        "resolved",
        "closed",
        "cancelled",
        "assess",
        "authorize",
        "scheduled",
        "implement",
        "review",
        "root_cause_analysis",
        "fix_in_progress",
        "pending_approval",
        "rejected",
    ];

    fn one_target(conditions: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"targets": [{"metric": "resolution", "durations": {"1": "1h", "2": "1h", "3": "1h", "4": "1h"},
            "conditions": conditions}]})
    }

    fn accepted(json: serde_json::Value) -> bool {
        let spec: PolicySpec = serde_json::from_value(json).unwrap();
        spec.compile().is_ok()
    }

    #[test]
    fn a_start_on_created_with_a_stop_on_every_status_is_refused() {
        // the lists share nothing, yet every event has a status and every status stops the clock
        let e =
            errors(one_target(serde_json::json!({"start": {"on": ["created"]}, "stop": {"status_in": ALL_STATUSES}})));
        assert_eq!(e, [("/targets/0/conditions/start".to_owned(), "never_attaches")]);
        // for the kinds the policy applies to, every status they have is enough
        let mut spec = one_target(serde_json::json!({"start": {"on": ["created"]},
            "stop": {"status_in": ["new", "in_progress", "waiting_on_customer", "resolved", "closed", "cancelled"]}}));
        assert!(accepted(spec.clone()), "a change or a problem ticket can still run it");
        spec["applies_to"] = serde_json::json!({"kinds": ["incident"]});
        assert_eq!(errors(spec), [("/targets/0/conditions/start".to_owned(), "never_attaches")]);
        // cancelling what the stop leaves over is no better
        let e = errors(one_target(serde_json::json!({"start": {"on": ["created"]},
            "stop": {"status_in": &ALL_STATUSES[..5]}, "cancel": {"status_in": &ALL_STATUSES[5..]}})));
        assert_eq!(e, [("/targets/0/conditions/start".to_owned(), "never_attaches")]);
    }

    #[test]
    fn a_start_no_ticket_it_applies_to_can_meet_is_refused() {
        let e = errors(serde_json::json!({"applies_to": {"kinds": ["incident"]}, "targets": [{"metric": "resolution",
            "durations": {"1": "1h", "2": "1h", "3": "1h", "4": "1h"},
            "conditions": {"start": {"status_in": ["assess"]}, "stop": {"status_in": ["closed"]}}}]}));
        assert_eq!(e, [("/targets/0/conditions/start".to_owned(), "never_attaches")]);
    }

    #[test]
    fn a_pause_covering_every_status_the_start_allows_is_refused() {
        // whatever status a started clock is in, it is paused (or stopped, or cancelled)
        let e = errors(serde_json::json!({"applies_to": {"kinds": ["incident"]}, "targets": [{"metric": "resolution",
            "durations": {"1": "1h", "2": "1h", "3": "1h", "4": "1h"},
            "conditions": {"start": {"on": ["created"]}, "pause": {"status_in": ["new", "in_progress", "waiting_on_customer"]},
                "stop": {"status_in": ["resolved", "closed"]}, "cancel": {"status_in": ["cancelled"]}}}]}));
        assert_eq!(e, [("/targets/0/conditions/pause".to_owned(), "never_runs")]);
        // over every kind
        let e = errors(one_target(serde_json::json!({"start": {"status_in": ["in_progress"]},
            "pause": {"status_in": &ALL_STATUSES[..11]}, "stop": {"status_in": &ALL_STATUSES[11..]}})));
        assert_eq!(e, [("/targets/0/conditions/pause".to_owned(), "never_runs")]);
    }

    #[test]
    fn clocks_that_can_run_are_accepted() {
        // a clock that starts paused runs once the ticket moves on
        assert!(accepted(one_target(serde_json::json!({"start": {"status_in": ["waiting_on_customer"]},
            "pause": {"status_in": ["waiting_on_customer"]}, "stop": {"status_in": ["resolved"]}}))));
        // a start that always stops at once, revived by a resume
        assert!(accepted(one_target(serde_json::json!({"start": {"status_in": ["resolved"]},
            "stop": {"status_in": ["resolved"]}, "resume": {"on": ["reopened"]}}))));
        // a stop on every status but the one the clock runs in
        assert!(accepted(one_target(serde_json::json!({"start": {"on": ["created"]},
            "stop": {"status_in": &ALL_STATUSES[1..]}}))));
        // the demo's policies
        assert!(accepted(serde_json::json!({"applies_to": {"kinds": ["incident"], "priorities": [1]}, "targets": [
            {"metric": "first_response", "durations": {"1": "15m", "2": "15m", "3": "15m", "4": "15m"}},
            {"metric": "next_response", "durations": {"1": "30m", "2": "30m", "3": "30m", "4": "30m"}},
            {"metric": "resolution", "durations": {"1": "4h", "2": "4h", "3": "4h", "4": "4h"}}]})));
    }

    #[test]
    fn every_budget_and_target_error_is_reported_together() {
        let e = errors(serde_json::json!({"targets": [
            {"metric": "resolution", "durations": {"1": "soon", "2": "1.5 business days", "3": -4}},
            {"metric": "first_response", "durations": {"1": "0 business days", "2": "4h end_of_day", "3": "9999bd", "4": "2bd"},
             "conditions": {"start": {"on": ["created"]}, "stop": {"status_in": ALL_STATUSES}}},
            {"metric": "next_response", "durations": {"1": 1, "2": 1, "3": 1, "4": 1},
             "conditions": {"start": {"on": ["customer_reply"]}, "pause": {"status_in": &ALL_STATUSES[..3]},
                 "stop": {"status_in": &ALL_STATUSES[3..]}}}
        ]}));
        assert_eq!(
            e,
            [
                ("/targets/0/durations/1".to_owned(), "format"),
                ("/targets/0/durations/2".to_owned(), "format"),
                ("/targets/0/durations/3".to_owned(), "format"),
                ("/targets/0/durations/4".to_owned(), "required"),
                ("/targets/1/durations/1".to_owned(), "range"),
                ("/targets/1/durations/2".to_owned(), "format"),
                ("/targets/1/durations/3".to_owned(), "range"),
                ("/targets/1/conditions/start".to_owned(), "never_attaches"),
                ("/targets/2/conditions/pause".to_owned(), "never_runs"),
            ]
        );
    }

    // --- Business days -------------------------------------------------------------------------

    fn duration(json: serde_json::Value) -> TargetDuration {
        serde_json::from_value(json).unwrap()
    }

    fn days(days: u16, end_of_day: bool) -> TargetDuration {
        TargetDuration::Days(BusinessDays { days, end_of_day })
    }

    #[test]
    fn business_days_parse_in_every_documented_form() {
        for (text, expected) in [
            ("3 business days", days(3, false)),
            ("1 business day", days(1, false)),
            ("3bd", days(3, false)),
            ("3 bd", days(3, false)),
            ("  3   Business  Days ", days(3, false)),
            ("3BD", days(3, false)),
            ("3 business days end_of_day", days(3, true)),
            ("3bd end_of_day", days(3, true)),
            ("3BD END_OF_DAY", days(3, true)),
            ("0 business days end_of_day", days(0, true)),
        ] {
            assert_eq!(duration(serde_json::json!(text)), expected, "{text:?}");
        }
        for bad in [
            "1.5 business days",
            "business days",
            "-3 business days",
            "3 business",
            "4h end_of_day",
            "3 bdays",
            "3 busines days",
        ] {
            assert!(matches!(duration(serde_json::json!(bad)), TargetDuration::Invalid { .. }), "{bad:?}");
        }
        // `d` is still 24 hours of business time
        assert_eq!(duration(serde_json::json!("3d")), TargetDuration::Business(BusinessDuration(3 * 86_400)));
        assert_eq!(duration(serde_json::json!("3days")), TargetDuration::Business(BusinessDuration(3 * 86_400)));
    }

    #[test]
    fn business_days_serialize_canonically_and_round_trip() {
        for (text, canonical) in [
            ("3bd", "3 business days"),
            ("1 BD", "1 business day"),
            ("3 business days", "3 business days"),
            ("2bd end_of_day", "2 business days end_of_day"),
            ("1 business day end_of_day", "1 business day end_of_day"),
        ] {
            let d = duration(serde_json::json!(text));
            let json = serde_json::to_value(&d).unwrap();
            assert_eq!(json, serde_json::json!(canonical), "{text:?}");
            assert_eq!(duration(json), d, "{text:?}");
        }
        // a whole policy spec, as stored
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({"targets": [{"metric": "resolution",
            "durations": {"1": "4h", "2": "1bd", "3": "3 business days", "4": "5bd end_of_day"}}]}))
        .unwrap();
        let stored = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            stored["targets"][0]["durations"],
            serde_json::json!({"1": "4h", "2": "1 business day", "3": "3 business days", "4": "5 business days end_of_day"})
        );
        assert_eq!(serde_json::from_value::<PolicySpec>(stored).unwrap(), spec);
    }

    #[test]
    fn old_duration_forms_read_and_serialize_exactly_as_before() {
        for old in [
            serde_json::json!("4h"),
            serde_json::json!("1h 30m"),
            serde_json::json!(7200),
            serde_json::json!("2days"),
            serde_json::json!("1d"),
            serde_json::json!("90s"),
            serde_json::json!(1),
        ] {
            let before: BusinessDuration = serde_json::from_value(old.clone()).unwrap();
            let now = duration(old.clone());
            assert_eq!(now, TargetDuration::Business(before), "{old}");
            assert_eq!(serde_json::to_value(&now).unwrap(), serde_json::to_value(before).unwrap(), "{old}");
        }
        assert_eq!(serde_json::to_value(duration(serde_json::json!(7200))).unwrap(), serde_json::json!("2h"));
        // a stored spec of the old forms comes back byte for byte
        let old = r#"{"applies_to":{},"targets":[{"metric":"resolution","durations":{"1":"4h","2":"1h 30m","3":"2h","4":"2days"},"warnings":[50,80]}],"max_escalations":10,"escalation_cooldown":"0s"}"#;
        let spec: PolicySpec = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), old);
    }

    #[test]
    fn compiled_targets_keep_their_recorded_shape() {
        // as recorded in workflow histories (tests/histories/ticket/incident_sla_breach_escalated.json)
        let recorded = r#"{"metric":"resolution","durations":["PT2S","PT2S","PT2S","PT2S"],"warnings":[],"conditions":{"start":{"on":["created"]},"pause":{"status_in":["waiting_on_customer"]},"resume":{"on":["reopened"]},"stop":{"status_in":["resolved","closed"]},"cancel":{"status_in":["cancelled"]},"reset":{}}}"#;
        let target: Target = serde_json::from_str(recorded).unwrap();
        assert_eq!(target.business_days, [None; 4]);
        assert_eq!(serde_json::to_string(&target).unwrap(), recorded);
        // business days are an optional field of their own
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({"targets": [{"metric": "resolution",
            "durations": {"1": "4h", "2": "1bd", "3": "3bd end_of_day", "4": "0bd end_of_day"}}]}))
        .unwrap();
        let target = spec.compile().unwrap().targets.remove(0);
        let json = serde_json::to_value(&target).unwrap();
        assert_eq!(
            json["business_days"],
            serde_json::json!([null, {"days": 1}, {"days": 3, "end_of_day": true}, {"days": 0, "end_of_day": true}])
        );
        assert_eq!(json["durations"], serde_json::json!(["PT4H", "PT24H", "PT72H", "PT24H"]));
        assert_eq!(serde_json::from_value::<Target>(json).unwrap(), target);
        assert_eq!(target.business_days(Priority::P1), None);
        assert_eq!(target.business_days(Priority::new(2).unwrap()), Some(BusinessDays { days: 1, end_of_day: false }));
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
