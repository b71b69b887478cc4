//! The SLA clock engine: pure, deterministic, shared by the ticket workflow (live clocks) and
//! the API (previews, rebuilds from audit history).
//!
//! The engine is advanced in time order. [`SlaEngine::advance`] records every warning, breach
//! and escalation that falls due up to an instant, each with its *true* instant (the moment the
//! budget was reached, not the moment the engine noticed); [`SlaEngine::apply`] then applies a
//! ticket event at its recorded instant. [`SlaEngine::next_wakeup`] says when something next
//! falls due, so the workflow sleeps exactly until then.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::priority::Priority;
use crate::sla::calendar::{Calendar, CalendarSpec};
use crate::sla::policy::{Conditions, EscalationLevel, EscalationTrigger, Metric, Policy, Target, Trigger};
use crate::ticket::Status;

/// Completed cycles kept per clock (older ones are counted, not kept).
const KEPT_CYCLES: usize = 50;

/// The policy (and calendar) a ticket's clocks run under, pinned at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaAssignment {
    pub policy_id: Uuid,
    pub policy_version: i32,
    pub policy_name: String,
    pub policy: Policy,
    /// `None`: the built-in 24×7 calendar.
    pub calendar_id: Option<Uuid>,
    pub calendar_version: Option<i32>,
    pub calendar: CalendarSpec,
}

/// A ticket event, as the clocks see it: what happened and the ticket's state after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaEvent {
    pub at: Timestamp,
    pub triggers: Vec<Trigger>,
    pub status: Status,
    pub priority: Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleState {
    Running,
    Paused,
    /// Stopped by the stop condition; a resume condition may continue it.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub from: Timestamp,
    pub to: Option<Timestamp>,
}

/// One run of a clock, from a start to a stop, cancel or reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    pub number: u32,
    pub started_at: Timestamp,
    /// Periods the clock ran (the last one open while running).
    pub segments: Vec<(Timestamp, Option<Timestamp>)>,
    pub pauses: Vec<Pause>,
    pub state: CycleState,
    pub stopped_at: Option<Timestamp>,
    /// Warnings recorded: (percent, true instant).
    pub warned: Vec<(u8, Timestamp)>,
    pub breached_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Met,
    Breached,
    Cancelled,
    Reset,
}

/// A cycle that has ended for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedCycle {
    pub cycle: Cycle,
    pub ended_at: Timestamp,
    pub outcome: Outcome,
    pub elapsed: SignedDuration,
    pub target: SignedDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    pub metric: Metric,
    pub current: Option<Cycle>,
    pub closed: Vec<ClosedCycle>,
    pub cycles: u32,
}

/// Something the engine recorded as falling due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fact {
    Warning { metric: Metric, cycle: u32, percent: u8, at: Timestamp },
    Breach { metric: Metric, cycle: u32, at: Timestamp },
    Escalation { level: u32, name: String, metric: Metric, cycle: u32, due_at: Timestamp, fired_at: Timestamp },
}

/// The engine's whole state (what a continued-as-new workflow carries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub assignment: SlaAssignment,
    pub status: Status,
    pub priority: Priority,
    pub clocks: Vec<Clock>,
    /// (level, metric, cycle) already fired.
    pub fired: BTreeSet<(u32, Metric, u32)>,
    pub escalations_fired: u32,
    pub last_escalation_at: Option<Timestamp>,
    /// The last instant the engine was advanced to.
    pub now: Timestamp,
}

/// A clock as reported: its completed cycles and the ongoing one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockReport {
    pub metric: Metric,
    /// `idle`, `running`, `paused`, `warning`, `breached`, `met` or `cancelled`.
    pub state: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub due_at: Option<Timestamp>,
    pub target_seconds: i64,
    pub elapsed_seconds: i64,
    pub remaining_seconds: i64,
    pub paused: bool,
    pub within_calendar_hours: bool,
    pub ongoing: Option<CycleReport>,
    pub completed: Vec<CycleReport>,
    /// Cycles ever run, including completed ones no longer listed.
    pub cycles: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CycleReport {
    pub number: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub ended_at: Option<Timestamp>,
    /// `met`, `breached`, `cancelled`, `reset`; none while ongoing.
    pub outcome: Option<Outcome>,
    /// When the budget ran out (the true instant), or when it will.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub breach_at: Option<Timestamp>,
    pub breached: bool,
    pub elapsed_seconds: i64,
    pub remaining_seconds: i64,
    pub paused: bool,
    pub pauses: Vec<PauseReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PauseReport {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub to: Option<Timestamp>,
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Outcome {}
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Outcome {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(["met", "breached", "cancelled", "reset"]))
            .into()
    }
}

/// The live engine: state plus its compiled calendar.
#[derive(Debug, Clone)]
pub struct SlaEngine {
    state: EngineState,
    calendar: Calendar,
}

fn share(d: SignedDuration, percent: u8) -> SignedDuration {
    let n = d.as_nanos() * i128::from(percent) / 100;
    SignedDuration::from_nanos(i64::try_from(n).unwrap_or(i64::MAX))
}

fn secs(d: SignedDuration) -> i64 {
    d.as_secs()
}

impl SlaEngine {
    /// A new engine for a ticket created at `at` (attaches the clocks whose start holds).
    pub fn start(assignment: SlaAssignment, at: Timestamp, status: Status, priority: Priority) -> Self {
        let clocks = assignment
            .policy
            .targets
            .iter()
            .map(|t| Clock { metric: t.metric, current: None, closed: Vec::new(), cycles: 0 })
            .collect();
        let state = EngineState {
            assignment,
            status,
            priority,
            clocks,
            fired: BTreeSet::new(),
            escalations_fired: 0,
            last_escalation_at: None,
            now: at,
        };
        let mut engine = Self::from_state(state);
        engine.apply(&SlaEvent { at, triggers: vec![Trigger::Created], status, priority });
        engine
    }

    /// Rebuilds the engine from carried state.
    pub fn from_state(state: EngineState) -> Self {
        // Specs are validated when saved and the time-zone database is compiled in, so this
        // only falls back if a stored zone was dropped from a later tz release.
        let calendar = state.assignment.calendar.compile().unwrap_or_else(|_| Calendar::always());
        SlaEngine { state, calendar }
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn into_state(self) -> EngineState {
        self.state
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn target(&self, metric: Metric) -> Option<&Target> {
        self.state.assignment.policy.targets.iter().find(|t| t.metric == metric)
    }

    /// The budget of a cycle of `metric` that started at `start`, under the current priority: the
    /// target's business time, or for a target in business days the business time from `start`
    /// to the end of those days ([`Calendar::business_days_budget`]). Converted from the cycle's
    /// start every time it is needed, so a priority or policy change converts the new target
    /// from the same start; a pure function of the state, so replays agree.
    fn budget_from(&self, metric: Metric, start: Timestamp) -> SignedDuration {
        let Some(target) = self.target(metric) else { return SignedDuration::ZERO };
        let p = self.state.priority;
        match target.business_days(p) {
            None => target.duration(p),
            Some(days) => self
                .calendar
                .business_days_budget(start, u32::from(days.days), days.end_of_day)
                // only for a calendar with no business time for decades: the stand-in
                .unwrap_or_else(|_| target.duration(p)),
        }
    }

    /// The budget of a clock as reported: its current cycle's, else its last completed one's
    /// (under the current priority), else as if a cycle started `now`.
    fn clock_budget(&self, clock: &Clock, now: Timestamp) -> SignedDuration {
        let current = clock.current.as_ref().map(|c| c.started_at);
        let start = current.or_else(|| clock.closed.last().map(|c| c.cycle.started_at));
        self.budget_from(clock.metric, start.unwrap_or(now))
    }

    fn elapsed(&self, cycle: &Cycle, now: Timestamp) -> SignedDuration {
        cycle.segments.iter().fold(SignedDuration::ZERO, |acc, (from, to)| {
            let end = to.unwrap_or(now).min(now);
            acc + self.calendar.elapsed(*from, end)
        })
    }

    /// The instant the cycle's business time reaches `amount`, if it has or (running) will.
    fn instant_reaching(&self, cycle: &Cycle, amount: SignedDuration) -> Option<Timestamp> {
        let mut acc = SignedDuration::ZERO;
        for (from, to) in &cycle.segments {
            let need = amount - acc;
            match to {
                None => return self.calendar.add(*from, need).ok(),
                Some(to) => {
                    let e = self.calendar.elapsed(*from, *to);
                    if acc + e >= amount {
                        return self.calendar.add(*from, need).ok();
                    }
                    acc += e;
                }
            }
        }
        None
    }

    /// Records everything that falls due up to `now`, in time order, and returns it.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Fact> {
        let mut facts = Vec::new();
        // the earliest pending instant <= now, one at a time, so that escalation cooldowns and
        // caps see the firings before them
        while let Some((at, item)) = self.pending().into_iter().filter(|(at, _)| *at <= now).min_by_key(|(at, _)| *at) {
            let fact = self.record(item, at, now);
            facts.push(fact);
        }
        if now > self.state.now {
            self.state.now = now;
        }
        facts
    }

    /// When the next warning, breach or escalation falls due, if anything is pending.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.pending().into_iter().map(|(at, _)| at).min()
    }

    /// Everything not yet recorded that will fall due if nothing changes, with its instant.
    fn pending(&self) -> Vec<(Timestamp, Pending)> {
        let mut out = Vec::new();
        for (ci, clock) in self.state.clocks.iter().enumerate() {
            let Some(cycle) = &clock.current else { continue };
            let Some(target) = self.target(clock.metric) else { continue };
            let budget = self.budget_from(clock.metric, cycle.started_at);
            if cycle.state != CycleState::Stopped {
                for &p in &target.warnings {
                    if !cycle.warned.iter().any(|(w, _)| *w == p)
                        && cycle.breached_at.is_none()
                        && let Some(at) = self.instant_reaching(cycle, share(budget, p))
                    {
                        out.push((at, Pending::Warning(ci, p)));
                    }
                }
                if cycle.breached_at.is_none()
                    && let Some(at) = self.instant_reaching(cycle, budget)
                {
                    out.push((at, Pending::Breach(ci)));
                }
            }
            for (li, level) in self.state.assignment.policy.escalations.iter().enumerate() {
                let li = li as u32;
                if level.metric.is_some_and(|m| m != clock.metric)
                    || self.state.fired.contains(&(li, clock.metric, cycle.number))
                    || self.state.escalations_fired >= u32::from(self.state.assignment.policy.max_escalations)
                {
                    continue;
                }
                let due = match level.when {
                    EscalationTrigger::Warning { percent } => {
                        cycle.warned.iter().find(|(w, _)| *w == percent).map(|(_, at)| *at)
                    }
                    EscalationTrigger::Breach => cycle.breached_at,
                    EscalationTrigger::BreachPlus { after } => match cycle.state {
                        CycleState::Stopped => None,
                        _ => cycle.breached_at.and_then(|b| b.checked_add(after.signed()).ok()),
                    },
                };
                if let Some(due) = due {
                    let not_before = self
                        .state
                        .last_escalation_at
                        .and_then(|l| l.checked_add(self.state.assignment.policy.escalation_cooldown).ok())
                        .unwrap_or(due);
                    out.push((due.max(not_before), Pending::Escalation(ci, li, due)));
                }
            }
        }
        out
    }

    fn record(&mut self, item: Pending, at: Timestamp, now: Timestamp) -> Fact {
        match item {
            Pending::Warning(ci, p) => {
                let clock = &mut self.state.clocks[ci];
                let cycle = clock.current.as_mut().expect("pending warnings come from a current cycle");
                cycle.warned.push((p, at));
                Fact::Warning { metric: clock.metric, cycle: cycle.number, percent: p, at }
            }
            Pending::Breach(ci) => {
                let clock = &mut self.state.clocks[ci];
                let cycle = clock.current.as_mut().expect("pending breaches come from a current cycle");
                cycle.breached_at = Some(at);
                Fact::Breach { metric: clock.metric, cycle: cycle.number, at }
            }
            Pending::Escalation(ci, li, due) => {
                let clock = &self.state.clocks[ci];
                let cycle = clock.current.as_ref().map(|c| c.number).unwrap_or(0);
                let metric = clock.metric;
                self.state.fired.insert((li, metric, cycle));
                self.state.escalations_fired += 1;
                // an escalation acts now even when it was due earlier (worker down, cooldown)
                let fired_at = at.max(self.state.now).min(now);
                self.state.last_escalation_at = Some(fired_at);
                let name = self.level(li).map(|l| l.name.clone()).unwrap_or_default();
                Fact::Escalation { level: li, name, metric, cycle, due_at: due, fired_at }
            }
        }
    }

    pub fn level(&self, index: u32) -> Option<&EscalationLevel> {
        self.state.assignment.policy.escalations.get(index as usize)
    }

    /// Applies a ticket event at its instant. Advance to `ev.at` first to record what fell due
    /// before it (the workflow does; [`SlaEngine::replay`] does too).
    pub fn apply(&mut self, ev: &SlaEvent) {
        self.state.status = ev.status;
        self.state.priority = ev.priority;
        let at = ev.at;
        for ci in 0..self.state.clocks.len() {
            let metric = self.state.clocks[ci].metric;
            let Some(conditions) = self.target(metric).map(|t| t.conditions.clone()) else { continue };
            self.apply_to_clock(ci, &conditions, ev, at);
        }
        if at > self.state.now {
            self.state.now = at;
        }
    }

    fn apply_to_clock(&mut self, ci: usize, c: &Conditions, ev: &SlaEvent, at: Timestamp) {
        let holds = |cond: &crate::sla::policy::Condition| cond.holds(&ev.triggers, ev.status);
        let state = self.state.clocks[ci].current.as_ref().map(|c| c.state);
        match state {
            None => {
                if holds(&c.start) {
                    self.begin_cycle(ci, at, holds(&c.pause));
                    self.after_start(ci, c, ev, at);
                }
            }
            Some(CycleState::Stopped) => {
                if holds(&c.resume) {
                    let paused = holds(&c.pause);
                    let cycle = self.state.clocks[ci].current.as_mut().expect("checked");
                    cycle.stopped_at = None;
                    if paused {
                        cycle.state = CycleState::Paused;
                        cycle.pauses.push(Pause { from: at, to: None });
                    } else {
                        cycle.state = CycleState::Running;
                        cycle.segments.push((at, None));
                    }
                } else if holds(&c.start) {
                    self.close_cycle(ci, at, None);
                    self.begin_cycle(ci, at, holds(&c.pause));
                    self.after_start(ci, c, ev, at);
                }
            }
            Some(_) => {
                if holds(&c.cancel) {
                    self.close_cycle(ci, at, Some(Outcome::Cancelled));
                } else if holds(&c.reset) {
                    self.close_cycle(ci, at, Some(Outcome::Reset));
                    self.begin_cycle(ci, at, holds(&c.pause));
                } else if holds(&c.stop) {
                    let cycle = self.state.clocks[ci].current.as_mut().expect("checked");
                    end_open(cycle, at);
                    cycle.state = CycleState::Stopped;
                    cycle.stopped_at = Some(at);
                } else if holds(&c.pause) {
                    let cycle = self.state.clocks[ci].current.as_mut().expect("checked");
                    if cycle.state == CycleState::Running {
                        end_open(cycle, at);
                        cycle.state = CycleState::Paused;
                        cycle.pauses.push(Pause { from: at, to: None });
                    }
                } else {
                    let cycle = self.state.clocks[ci].current.as_mut().expect("checked");
                    if cycle.state == CycleState::Paused {
                        if let Some(p) = cycle.pauses.last_mut() {
                            p.to = Some(at);
                        }
                        cycle.state = CycleState::Running;
                        cycle.segments.push((at, None));
                    }
                }
            }
        }
    }

    /// A cycle that starts on an event that also stops or cancels it ends at once.
    fn after_start(&mut self, ci: usize, c: &Conditions, ev: &SlaEvent, at: Timestamp) {
        let holds = |cond: &crate::sla::policy::Condition| cond.holds(&ev.triggers, ev.status);
        if holds(&c.cancel) {
            self.close_cycle(ci, at, Some(Outcome::Cancelled));
        } else if holds(&c.stop) {
            let cycle = self.state.clocks[ci].current.as_mut().expect("just started");
            end_open(cycle, at);
            cycle.state = CycleState::Stopped;
            cycle.stopped_at = Some(at);
        }
    }

    fn begin_cycle(&mut self, ci: usize, at: Timestamp, paused: bool) {
        let clock = &mut self.state.clocks[ci];
        clock.cycles += 1;
        clock.current = Some(Cycle {
            number: clock.cycles,
            started_at: at,
            segments: if paused { Vec::new() } else { vec![(at, None)] },
            pauses: if paused { vec![Pause { from: at, to: None }] } else { Vec::new() },
            state: if paused { CycleState::Paused } else { CycleState::Running },
            stopped_at: None,
            warned: Vec::new(),
            breached_at: None,
        });
    }

    /// Ends the current cycle for good. `outcome: None` derives met/breached from the cycle.
    fn close_cycle(&mut self, ci: usize, at: Timestamp, outcome: Option<Outcome>) {
        let Some(mut cycle) = self.state.clocks[ci].current.take() else { return };
        let budget = self.budget_from(self.state.clocks[ci].metric, cycle.started_at);
        end_open(&mut cycle, at);
        if let Some(p) = cycle.pauses.last_mut()
            && p.to.is_none()
        {
            p.to = Some(at);
        }
        let ended_at = cycle.stopped_at.unwrap_or(at);
        let elapsed = self.elapsed(&cycle, ended_at);
        let outcome = outcome.unwrap_or(if cycle.breached_at.is_some() { Outcome::Breached } else { Outcome::Met });
        let clock = &mut self.state.clocks[ci];
        clock.closed.push(ClosedCycle { cycle, ended_at, outcome, elapsed, target: budget });
        if clock.closed.len() > KEPT_CYCLES {
            clock.closed.remove(0);
        }
    }

    /// Replays a whole event history from scratch (rebuilds, previews).
    pub fn replay(assignment: SlaAssignment, events: &[SlaEvent], now: Timestamp) -> (SlaEngine, Vec<Fact>) {
        let Some((first, rest)) = events.split_first() else {
            let e = SlaEngine::start(assignment, now, Status::New, Priority::P4);
            return (e, Vec::new());
        };
        let mut engine = SlaEngine::start(assignment, first.at, first.status, first.priority);
        let mut facts = Vec::new();
        for ev in rest {
            facts.extend(engine.advance(ev.at));
            engine.apply(ev);
        }
        facts.extend(engine.advance(now));
        (engine, facts)
    }

    /// The clocks as of `now`.
    pub fn report(&self, now: Timestamp) -> Vec<ClockReport> {
        self.state
            .clocks
            .iter()
            .map(|clock| {
                let budget = self.clock_budget(clock, now);
                let ongoing = clock.current.as_ref().filter(|c| c.state != CycleState::Stopped);
                let stopped = clock.current.as_ref().filter(|c| c.state == CycleState::Stopped);
                let mut completed: Vec<CycleReport> = clock.closed.iter().map(|cc| self.closed_report(cc)).collect();
                if let Some(c) = stopped {
                    completed.push(self.cycle_report(c, now, budget, true));
                }
                let ongoing_report = ongoing.map(|c| self.cycle_report(c, now, budget, false));
                let (state, due_at, elapsed, paused) = match (ongoing, completed.last()) {
                    (Some(c), _) => {
                        let e = self.elapsed(c, now);
                        let state = if c.breached_at.is_some() {
                            "breached"
                        } else if !c.warned.is_empty() {
                            "warning"
                        } else if c.state == CycleState::Paused {
                            "paused"
                        } else {
                            "running"
                        };
                        let due = if c.state == CycleState::Running { self.instant_reaching(c, budget) } else { None };
                        (state, due, e, c.state == CycleState::Paused)
                    }
                    (None, Some(last)) => {
                        let state = match last.outcome {
                            Some(Outcome::Breached) => "breached",
                            Some(Outcome::Cancelled) => "cancelled",
                            _ => "met",
                        };
                        (state, None, SignedDuration::from_secs(last.elapsed_seconds), false)
                    }
                    (None, None) => ("idle", None, SignedDuration::ZERO, false),
                };
                ClockReport {
                    metric: clock.metric,
                    state: state.into(),
                    due_at,
                    target_seconds: secs(budget),
                    elapsed_seconds: secs(elapsed),
                    remaining_seconds: secs(budget - elapsed),
                    paused,
                    within_calendar_hours: self.calendar.is_open(now),
                    ongoing: ongoing_report,
                    completed,
                    cycles: clock.cycles,
                }
            })
            .collect()
    }

    fn cycle_report(&self, c: &Cycle, now: Timestamp, budget: SignedDuration, stopped: bool) -> CycleReport {
        let until = c.stopped_at.unwrap_or(now);
        let elapsed = self.elapsed(c, until);
        CycleReport {
            number: c.number,
            started_at: c.started_at,
            ended_at: c.stopped_at,
            outcome: stopped.then_some(if c.breached_at.is_some() { Outcome::Breached } else { Outcome::Met }),
            breach_at: c.breached_at.or_else(|| self.instant_reaching(c, budget)),
            breached: c.breached_at.is_some(),
            elapsed_seconds: secs(elapsed),
            remaining_seconds: secs(budget - elapsed),
            paused: c.state == CycleState::Paused,
            pauses: c.pauses.iter().map(|p| PauseReport { from: p.from, to: p.to }).collect(),
        }
    }

    fn closed_report(&self, cc: &ClosedCycle) -> CycleReport {
        CycleReport {
            number: cc.cycle.number,
            started_at: cc.cycle.started_at,
            ended_at: Some(cc.ended_at),
            outcome: Some(cc.outcome),
            breach_at: cc.cycle.breached_at,
            breached: cc.cycle.breached_at.is_some(),
            elapsed_seconds: secs(cc.elapsed),
            remaining_seconds: secs(cc.target - cc.elapsed),
            paused: false,
            pauses: cc.cycle.pauses.iter().map(|p| PauseReport { from: p.from, to: p.to }).collect(),
        }
    }

    /// The worst state across clocks and the earliest upcoming breach, for lists and search.
    pub fn summary(&self, now: Timestamp) -> Summary {
        let reports = self.report(now);
        summarize(&reports)
    }
}

/// The ticket-level view of its clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `breached`, `warning`, `running`, `paused`, `met`, `cancelled` or `none`.
    pub state: String,
    pub next_due_at: Option<Timestamp>,
}

pub fn summarize(reports: &[ClockReport]) -> Summary {
    let rank = |s: &str| match s {
        "breached" => 6,
        "warning" => 5,
        "running" => 4,
        "paused" => 3,
        "met" => 2,
        "cancelled" => 1,
        _ => 0,
    };
    let worst = reports.iter().map(|r| r.state.as_str()).max_by_key(|s| rank(s)).filter(|s| rank(s) > 0);
    Summary {
        state: worst.unwrap_or("none").to_owned(),
        next_due_at: reports.iter().filter(|r| r.state != "breached").filter_map(|r| r.due_at).min(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Warning(usize, u8),
    Breach(usize),
    Escalation(usize, u32, Timestamp),
}

fn end_open(cycle: &mut Cycle, at: Timestamp) {
    if let Some(last) = cycle.segments.last_mut()
        && last.1.is_none()
    {
        last.1 = Some(at.max(last.0));
    }
}

/// The triggers a status change produces.
pub fn status_triggers(from: Status, to: Status) -> Vec<Trigger> {
    if from.is_reopen(to) { vec![Trigger::Reopened] } else { Vec::new() }
}

/// Recorded clocks (a ticket's projection, written when its workflow last moved them) as they
/// stand at `now`: a running or warning clock's elapsed and remaining business time move on
/// with `calendar`; paused and finished clocks stay as recorded. Reads between two workflow
/// steps show the same figures the workflow would. A pinned calendar that no longer compiles
/// (it did when it was pinned) counts as 24×7.
pub fn clocks_as_of(assignment: &SlaAssignment, mut clocks: Vec<ClockReport>, now: Timestamp) -> Vec<ClockReport> {
    let calendar = assignment.calendar.compile().unwrap_or_else(|_| Calendar::always());
    for c in &mut clocks {
        if let Some(due) = c.due_at
            && !c.paused
            && matches!(c.state.as_str(), "running" | "warning")
        {
            let remaining =
                if due >= now { calendar.elapsed(now, due).as_secs() } else { -calendar.elapsed(due, now).as_secs() };
            c.remaining_seconds = remaining;
            c.elapsed_seconds = c.target_seconds - remaining;
            if let Some(o) = c.ongoing.as_mut() {
                o.remaining_seconds = remaining;
                o.elapsed_seconds = c.elapsed_seconds;
            }
        }
        c.within_calendar_hours = calendar.is_open(now);
    }
    clocks
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sla::policy::PolicySpec;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy(json: serde_json::Value) -> Policy {
        serde_json::from_value::<PolicySpec>(json).unwrap().compile().unwrap()
    }

    /// Resolution 4s/6s/10s/20s for P1..P4, first response 2s everywhere, 24×7.
    fn assignment(extra: serde_json::Value) -> SlaAssignment {
        let mut spec = serde_json::json!({
            "targets": [
                {"metric": "first_response", "durations": {"1": 2, "2": 2, "3": 2, "4": 2}},
                {"metric": "resolution", "durations": {"1": 4, "2": 6, "3": 10, "4": 20}, "warnings": [50]},
                {"metric": "next_response", "durations": {"1": 3, "2": 3, "3": 3, "4": 3}, "warnings": []}
            ]
        });
        if let (Some(obj), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        SlaAssignment {
            policy_id: Uuid::nil(),
            policy_version: 1,
            policy_name: "test".into(),
            policy: policy(spec),
            calendar_id: None,
            calendar_version: None,
            calendar: CalendarSpec::always(),
        }
    }

    fn p(n: i64) -> Priority {
        Priority::new(n).unwrap()
    }

    fn ev(at: &str, status: Status, priority: i64, triggers: &[Trigger]) -> SlaEvent {
        SlaEvent { at: t(at), triggers: triggers.to_vec(), status, priority: p(priority) }
    }

    fn step(e: &mut SlaEngine, event: SlaEvent) -> Vec<Fact> {
        let facts = e.advance(event.at);
        e.apply(&event);
        facts
    }

    fn breaches(facts: &[Fact]) -> Vec<(Metric, Timestamp)> {
        facts
            .iter()
            .filter_map(|f| match f {
                Fact::Breach { metric, at, .. } => Some((*metric, *at)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_running_target_breaches_exactly_at_its_budget() {
        let mut e =
            SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00.250Z"), Status::New, p(1));
        assert_eq!(e.next_wakeup(), Some(t("2026-11-23T10:00:01.250Z")), "first response's default 50% warning of 2s");
        let facts = e.advance(t("2026-11-23T10:00:10Z"));
        assert_eq!(
            breaches(&facts),
            vec![
                (Metric::FirstResponse, t("2026-11-23T10:00:02.250Z")),
                (Metric::Resolution, t("2026-11-23T10:00:04.250Z"))
            ]
        );
        // facts are recorded once
        assert!(e.advance(t("2026-11-23T10:00:20Z")).is_empty());
        let r = e.report(t("2026-11-23T10:00:10Z"));
        let res = r.iter().find(|c| c.metric == Metric::Resolution).unwrap();
        assert_eq!(res.state, "breached");
        assert_eq!(res.remaining_seconds, -5);
    }

    #[test]
    fn waiting_on_the_customer_moves_the_breach_by_the_pause() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(1));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::InProgress, 1, &[]));
        step(&mut e, ev("2026-11-23T10:00:02Z", Status::WaitingOnCustomer, 1, &[]));
        assert_eq!(e.next_wakeup(), None, "nothing runs while paused");
        let facts = step(&mut e, ev("2026-11-23T10:00:05Z", Status::InProgress, 1, &[]));
        assert!(breaches(&facts).is_empty());
        let facts = e.advance(t("2026-11-23T10:01:00Z"));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-11-23T10:00:07Z"))]);
        let res = e.report(t("2026-11-23T10:00:06Z"));
        let res = res.iter().find(|c| c.metric == Metric::Resolution).unwrap();
        let cycle = res.ongoing.as_ref().unwrap();
        assert_eq!(cycle.pauses.len(), 1);
        assert_eq!(cycle.pauses[0].to, Some(t("2026-11-23T10:00:05Z")));
    }

    #[test]
    fn a_priority_change_keeps_elapsed_time_and_breaches_at_the_true_instant() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(3));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::InProgress, 3, &[]));
        // P3 = 10s; at 3s raised to P1 = 4s: breach at 4s
        let facts = step(&mut e, ev("2026-11-23T10:00:03Z", Status::InProgress, 1, &[Trigger::PriorityChanged]));
        assert!(breaches(&facts).is_empty());
        assert_eq!(
            e.report(t("2026-11-23T10:00:03Z")).iter().find(|c| c.metric == Metric::Resolution).unwrap().due_at,
            Some(t("2026-11-23T10:00:04Z"))
        );
        // at 6s raised again to... already past: the breach is recorded with its true instant 4s
        let mut late = e.clone();
        let facts = step(&mut late, ev("2026-11-23T10:00:09Z", Status::InProgress, 1, &[]));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-11-23T10:00:04Z"))]);
        // a change that puts the clock past its new target breaches at once, at the instant
        // the new target was reached
        let mut e =
            SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::InProgress, p(4));
        let facts = step(&mut e, ev("2026-11-23T10:00:08Z", Status::InProgress, 1, &[Trigger::PriorityChanged]));
        assert!(breaches(&facts).is_empty(), "nothing was due under P4");
        let facts = e.advance(t("2026-11-23T10:00:08Z"));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-11-23T10:00:04Z"))]);
    }

    #[test]
    fn reopening_resumes_resolution_with_its_elapsed_time() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(1));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::InProgress, 1, &[]));
        step(&mut e, ev("2026-11-23T10:00:03Z", Status::Resolved, 1, &[]));
        let r = e.report(t("2026-11-23T10:00:30Z"));
        let res = r.iter().find(|c| c.metric == Metric::Resolution).unwrap();
        assert_eq!((res.state.as_str(), res.elapsed_seconds), ("met", 3));
        // 30 s resolved do not count; reopening continues at 3 s of 4 s
        let facts = step(&mut e, ev("2026-11-23T10:00:33Z", Status::InProgress, 1, &[Trigger::Reopened]));
        assert!(breaches(&facts).is_empty());
        let facts = e.advance(t("2026-11-23T10:01:00Z"));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-11-23T10:00:34Z"))]);
        let r = e.report(t("2026-11-23T10:01:00Z"));
        let res = r.iter().find(|c| c.metric == Metric::Resolution).unwrap();
        assert_eq!(res.cycles, 1, "a resumed cycle is the same cycle");
    }

    #[test]
    fn first_response_stops_on_work_or_a_public_agent_reply() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(1));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::New, 1, &[Trigger::AgentReply]));
        let facts = e.advance(t("2026-11-23T10:00:03Z"));
        assert!(breaches(&facts).iter().all(|(m, _)| *m != Metric::FirstResponse));
        let r = e.report(t("2026-11-23T10:00:03Z"));
        assert_eq!(r.iter().find(|c| c.metric == Metric::FirstResponse).unwrap().state, "met");
    }

    #[test]
    fn next_response_runs_a_cycle_per_unanswered_customer_reply() {
        let mut e =
            SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::InProgress, p(2));
        let nr =
            |e: &SlaEngine, at: &str| e.report(t(at)).into_iter().find(|c| c.metric == Metric::NextResponse).unwrap();
        assert_eq!(nr(&e, "2026-11-23T10:00:00Z").state, "idle");
        step(&mut e, ev("2026-11-23T10:00:10Z", Status::InProgress, 2, &[Trigger::CustomerReply]));
        // a second customer reply before the answer does not restart it
        step(&mut e, ev("2026-11-23T10:00:11Z", Status::InProgress, 2, &[Trigger::CustomerReply]));
        step(&mut e, ev("2026-11-23T10:00:12Z", Status::InProgress, 2, &[Trigger::AgentReply]));
        let c = nr(&e, "2026-11-23T10:00:12Z");
        assert_eq!((c.state.as_str(), c.cycles, c.completed.len()), ("met", 1, 1));
        assert_eq!(c.completed[0].elapsed_seconds, 2);
        step(&mut e, ev("2026-11-23T10:00:20Z", Status::InProgress, 2, &[Trigger::CustomerReply]));
        let facts = e.advance(t("2026-11-23T10:00:30Z"));
        assert_eq!(breaches(&facts), vec![(Metric::NextResponse, t("2026-11-23T10:00:23Z"))]);
        let c = nr(&e, "2026-11-23T10:00:30Z");
        assert_eq!((c.state.as_str(), c.cycles), ("breached", 2));
        assert_eq!(c.ongoing.as_ref().unwrap().number, 2);
    }

    #[test]
    fn warnings_fall_due_at_their_share_of_the_budget() {
        let mut e =
            SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::InProgress, p(3));
        let facts = e.advance(t("2026-11-23T10:00:09Z"));
        let warnings: Vec<_> = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Warning { metric: Metric::Resolution, percent, at, .. } => Some((*percent, *at)),
                _ => None,
            })
            .collect();
        assert_eq!(warnings, vec![(50, t("2026-11-23T10:00:05Z"))]);
        assert_eq!(
            e.report(t("2026-11-23T10:00:09Z")).iter().find(|c| c.metric == Metric::Resolution).unwrap().state,
            "warning"
        );
    }

    #[test]
    fn cancelling_the_ticket_cancels_every_clock() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(1));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::Cancelled, 1, &[]));
        assert!(e.advance(t("2026-11-23T11:00:00Z")).is_empty());
        assert_eq!(e.next_wakeup(), None);
        assert_eq!(e.summary(t("2026-11-23T11:00:00Z")).state, "cancelled");
    }

    #[test]
    fn escalations_fire_once_in_order_with_a_cooldown_and_a_cap() {
        let extra = serde_json::json!({
            "escalations": [
                {"name": "warn the assignee", "metric": "resolution", "when": {"warning": {"percent": 50}},
                 "actions": [{"type": "notify", "to": {"assignee": true}}]},
                {"name": "breach: tell the manager", "metric": "resolution", "when": "breach",
                 "actions": [{"type": "notify", "to": {"assignee_manager": true}}]},
                {"name": "breach + 10s: raise", "metric": "resolution", "when": {"breach_plus": {"after": "10s"}},
                 "actions": [{"type": "raise_priority", "by": 1}]},
                {"name": "never: cap reached", "metric": "resolution", "when": {"breach_plus": {"after": "20s"}},
                 "actions": [{"type": "raise_priority", "by": 1}]}
            ],
            "max_escalations": 3,
            "escalation_cooldown": "3s"
        });
        let mut e = SlaEngine::start(assignment(extra), t("2026-11-23T10:00:00Z"), Status::InProgress, p(3));
        let fired = |facts: &[Fact]| {
            facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Escalation { level, fired_at, .. } => Some((*level, *fired_at)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // warning at 5s, breach at 10s: the breach level waits for nothing (5s > 3s cooldown)
        let f = e.advance(t("2026-11-23T10:00:05Z"));
        assert_eq!(fired(&f), vec![(0, t("2026-11-23T10:00:05Z"))]);
        let f = e.advance(t("2026-11-23T10:00:10Z"));
        assert_eq!(fired(&f), vec![(1, t("2026-11-23T10:00:10Z"))]);
        let f = e.advance(t("2026-11-23T10:01:00Z"));
        assert_eq!(fired(&f), vec![(2, t("2026-11-23T10:00:20Z"))], "the fourth level is over the cap");
        assert!(e.advance(t("2026-11-23T11:00:00Z")).is_empty());

        // with a longer cooldown a due level waits for it
        let extra = serde_json::json!({
            "escalations": [
                {"name": "a", "when": "breach", "metric": "first_response", "actions": [{"type": "notify", "to": {"assignee": true}}]},
                {"name": "b", "when": "breach", "metric": "resolution", "actions": [{"type": "notify", "to": {"assignee": true}}]}
            ],
            "escalation_cooldown": "5s"
        });
        let mut e = SlaEngine::start(assignment(extra), t("2026-11-23T10:00:00Z"), Status::New, p(1));
        let f = e.advance(t("2026-11-23T10:00:02Z"));
        assert_eq!(fired(&f), vec![(0, t("2026-11-23T10:00:02Z"))]);
        assert_eq!(e.next_wakeup(), Some(t("2026-11-23T10:00:04Z")), "the resolution breach itself");
        e.advance(t("2026-11-23T10:00:04Z"));
        assert_eq!(e.next_wakeup(), Some(t("2026-11-23T10:00:07Z")), "its escalation waits for the cooldown");
        let f = e.advance(t("2026-11-23T10:00:07Z"));
        assert_eq!(fired(&f), vec![(1, t("2026-11-23T10:00:07Z"))]);
    }

    /// Resolution in business days on Mon-Fri 08:00-18:00 in Berlin: P1 one, P2 one to the end of
    /// the day, P3 three, P4 five; first response 1h; next response two business days.
    fn business_days_assignment() -> SlaAssignment {
        let mut a = assignment(serde_json::json!({}));
        a.policy = policy(serde_json::json!({"targets": [
            {"metric": "first_response", "durations": {"1": "1h", "2": "1h", "3": "1h", "4": "1h"}},
            {"metric": "resolution", "durations": {"1": "1 business day", "2": "1bd end_of_day", "3": "3bd", "4": "5bd"},
             "warnings": [50]},
            {"metric": "next_response", "durations": {"1": "2bd", "2": "2bd", "3": "2bd", "4": "2bd"}}
        ]}));
        let weekly = ["monday", "tuesday", "wednesday", "thursday", "friday"]
            .map(|day| serde_json::json!({"day": day, "start": "08:00", "end": "18:00"}));
        a.calendar =
            serde_json::from_value(serde_json::json!({"time_zone": "Europe/Berlin", "weekly": weekly})).unwrap();
        a
    }

    fn resolution(e: &SlaEngine, at: &str) -> ClockReport {
        e.report(t(at)).into_iter().find(|c| c.metric == Metric::Resolution).unwrap()
    }

    #[test]
    fn business_days_are_converted_at_the_clock_start_and_pauses_extend_them() {
        // Friday 10:00 CET + 1 business day = Monday 10:00 CEST (DST in between): 10 business hours.
        let mut e =
            SlaEngine::start(business_days_assignment(), t("2026-03-27T10:00:00+01:00"), Status::InProgress, p(1));
        let r = resolution(&e, "2026-03-27T10:00:00+01:00");
        assert_eq!((r.due_at, r.target_seconds), (Some(t("2026-03-30T10:00:00+02:00")), 36_000));
        let facts = e.advance(t("2026-03-27T18:00:00+01:00"));
        assert!(facts.contains(&Fact::Warning {
            metric: Metric::Resolution,
            cycle: 1,
            percent: 50,
            at: t("2026-03-27T15:00:00+01:00")
        }));
        // Waiting on the customer Monday 09:00-11:00 moves it to 12:00.
        step(&mut e, ev("2026-03-30T09:00:00+02:00", Status::WaitingOnCustomer, 1, &[]));
        step(&mut e, ev("2026-03-30T11:00:00+02:00", Status::InProgress, 1, &[]));
        assert_eq!(resolution(&e, "2026-03-30T11:00:00+02:00").due_at, Some(t("2026-03-30T12:00:00+02:00")));
        let facts = e.advance(t("2026-03-30T13:00:00+02:00"));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-03-30T12:00:00+02:00"))]);
        // Resolved: the completed cycle keeps its converted target.
        step(&mut e, ev("2026-03-30T13:00:00+02:00", Status::Resolved, 1, &[]));
        let r = resolution(&e, "2026-03-30T13:00:00+02:00");
        assert_eq!((r.state.as_str(), r.target_seconds, r.elapsed_seconds), ("breached", 36_000, 39_600));
    }

    #[test]
    fn a_priority_change_converts_the_new_business_days_from_the_cycle_start() {
        // Wednesday 10:00 at P3: three business days, due Monday 10:00.
        let mut e =
            SlaEngine::start(business_days_assignment(), t("2026-03-04T10:00:00+01:00"), Status::InProgress, p(3));
        let r = resolution(&e, "2026-03-04T10:00:00+01:00");
        assert_eq!((r.due_at, r.target_seconds), (Some(t("2026-03-09T10:00:00+01:00")), 30 * 3600));
        // Thursday 09:00, raised to P2: one business day to the end of the day from Wednesday 10:00.
        step(&mut e, ev("2026-03-05T09:00:00+01:00", Status::InProgress, 2, &[Trigger::PriorityChanged]));
        let r = resolution(&e, "2026-03-05T09:00:00+01:00");
        assert_eq!((r.due_at, r.target_seconds), (Some(t("2026-03-05T18:00:00+01:00")), 18 * 3600));
        // Thursday 12:00, raised to P1: one business day from Wednesday 10:00 ran out Thursday 10:00.
        let facts = step(&mut e, ev("2026-03-05T12:00:00+01:00", Status::InProgress, 1, &[Trigger::PriorityChanged]));
        assert!(breaches(&facts).is_empty());
        let facts = e.advance(t("2026-03-05T12:00:00+01:00"));
        assert_eq!(breaches(&facts), vec![(Metric::Resolution, t("2026-03-05T10:00:00+01:00"))]);
    }

    #[test]
    fn business_days_from_outside_hours_count_from_the_next_opening() {
        // Saturday noon: the clock counts from Monday 08:00, so one business day is Monday's whole day, and to
        // the end of the day it is Tuesday's close.
        let e = SlaEngine::start(business_days_assignment(), t("2026-03-07T12:00:00+01:00"), Status::New, p(1));
        assert_eq!(resolution(&e, "2026-03-07T12:00:00+01:00").due_at, Some(t("2026-03-09T18:00:00+01:00")));
        let e = SlaEngine::start(business_days_assignment(), t("2026-03-07T12:00:00+01:00"), Status::New, p(2));
        assert_eq!(resolution(&e, "2026-03-07T12:00:00+01:00").due_at, Some(t("2026-03-10T18:00:00+01:00")));
        // An idle clock reports its target as if it started now, a cancelled one that of its last cycle.
        let mut e = SlaEngine::start(business_days_assignment(), t("2026-03-04T10:00:00+01:00"), Status::New, p(4));
        let next_response = e.report(t("2026-03-04T10:00:00+01:00"))[2].clone();
        assert_eq!((next_response.state.as_str(), next_response.target_seconds), ("idle", 20 * 3600));
        step(&mut e, ev("2026-03-04T11:00:00+01:00", Status::Cancelled, 4, &[]));
        let r = resolution(&e, "2026-03-06T11:00:00+01:00");
        assert_eq!(
            (r.state.as_str(), r.target_seconds, r.completed[0].remaining_seconds),
            ("cancelled", 50 * 3600, 49 * 3600)
        );
    }

    #[test]
    fn business_days_replay_and_continue_as_new_like_living_them() {
        let a = business_days_assignment();
        let events = vec![
            ev("2026-03-27T10:00:00+01:00", Status::New, 3, &[Trigger::Created]),
            ev("2026-03-27T11:00:00+01:00", Status::InProgress, 3, &[]),
            ev("2026-03-30T09:00:00+02:00", Status::WaitingOnCustomer, 3, &[]),
            ev("2026-03-31T09:00:00+02:00", Status::InProgress, 1, &[Trigger::PriorityChanged]),
        ];
        let now = t("2026-04-03T12:00:00+02:00");
        let (replayed, facts) = SlaEngine::replay(a.clone(), &events, now);
        let mut live = SlaEngine::start(a, events[0].at, events[0].status, events[0].priority);
        for e in &events[1..] {
            step(&mut live, e.clone());
        }
        live.advance(now);
        assert_eq!(replayed.report(now), live.report(now));
        // P1 from Friday 10:00 is 10 business hours; 8 ran on Friday, the pause held Monday 09:00 to Tuesday 09:00
        // (Monday 08:00-09:00 ran): due Tuesday 10:00.
        assert!(breaches(&facts).contains(&(Metric::Resolution, t("2026-03-31T10:00:00+02:00"))), "{facts:?}");
        let json = serde_json::to_string(live.state()).unwrap();
        let back = SlaEngine::from_state(serde_json::from_str(&json).unwrap());
        assert_eq!(back.state(), live.state());
        assert_eq!(back.report(now), live.report(now));
    }

    mod validation_model {
        use proptest::prelude::*;

        use super::*;
        use crate::sla::policy::{Condition, Phase};
        use crate::ticket::TicketKind;

        fn statuses() -> Vec<Status> {
            let mut all: Vec<Status> = Vec::new();
            for s in TicketKind::ALL.iter().flat_map(|k| k.statuses()) {
                if !all.contains(s) {
                    all.push(*s);
                }
            }
            all
        }

        fn arb_condition() -> impl Strategy<Value = Condition> {
            (
                prop::collection::vec(prop::sample::select(Trigger::ALL.to_vec()), 0..3),
                prop::collection::vec(prop::sample::select(statuses()), 0..5),
            )
                .prop_map(|(on, status_in)| Condition { on, status_in })
        }

        fn arb_conditions() -> impl Strategy<Value = Conditions> {
            let c = arb_condition;
            (c(), c(), c(), c(), c(), c()).prop_map(|(start, pause, resume, stop, cancel, reset)| Conditions {
                start,
                pause,
                resume,
                stop,
                cancel,
                reset,
            })
        }

        fn arb_event() -> impl Strategy<Value = (Option<Trigger>, Status)> {
            (prop::option::of(prop::sample::select(Trigger::ALL.to_vec())), prop::sample::select(statuses()))
        }

        fn phase(e: &SlaEngine) -> Phase {
            match e.state().clocks[0].current.as_ref().map(|c| c.state) {
                None => Phase::Idle,
                Some(CycleState::Running) => Phase::Running,
                Some(CycleState::Paused) => Phase::Paused,
                Some(CycleState::Stopped) => Phase::Stopped,
            }
        }

        proptest! {
            /// Policy validation decides whether a clock can run by playing its conditions through
            /// `Conditions::next_phase`; this holds that model to what the engine does.
            #[test]
            fn the_validation_model_moves_like_the_engine(
                conditions in arb_conditions(),
                created in prop::sample::select(statuses()),
                events in prop::collection::vec(arb_event(), 0..16),
            ) {
                let mut a = assignment(serde_json::json!({}));
                a.policy = Policy {
                    targets: vec![Target {
                        metric: Metric::Resolution,
                        durations: [SignedDuration::from_hours(1); 4],
                        business_days: [None; 4],
                        warnings: Vec::new(),
                        conditions: conditions.clone(),
                    }],
                    escalations: Vec::new(),
                    max_escalations: 10,
                    escalation_cooldown: SignedDuration::ZERO,
                };
                let mut at = t("2026-11-23T10:00:00Z");
                let mut e = SlaEngine::start(a, at, created, p(3));
                let mut model = conditions.next_phase(Phase::Idle, &[Trigger::Created], created);
                prop_assert_eq!(phase(&e), model);
                for (trigger, status) in events {
                    at += SignedDuration::from_mins(1);
                    let triggers: Vec<Trigger> = trigger.into_iter().collect();
                    step(&mut e, SlaEvent { at, triggers: triggers.clone(), status, priority: p(3) });
                    model = conditions.next_phase(model, &triggers, status);
                    prop_assert_eq!(phase(&e), model);
                }
            }
        }
    }

    #[test]
    fn business_hours_count_only_inside_the_calendar() {
        let mut a = assignment(serde_json::json!({}));
        a.calendar = serde_json::from_value(serde_json::json!({
            "time_zone": "Europe/Berlin",
            "weekly": [
                {"day": "monday", "start": "09:00", "end": "17:00"},
                {"day": "friday", "start": "09:00", "end": "17:00"}
            ]
        }))
        .unwrap();
        a.policy.targets[1].durations = [SignedDuration::from_hours(2); 4];
        // Friday 16:00 CET + 2h business → Monday 10:00 CET
        let e = SlaEngine::start(a, t("2026-11-20T15:00:00Z"), Status::InProgress, p(1));
        let r = e.report(t("2026-11-20T15:00:00Z"));
        assert_eq!(r.iter().find(|c| c.metric == Metric::Resolution).unwrap().due_at, Some(t("2026-11-23T09:00:00Z")));
        assert!(r[0].within_calendar_hours);
    }

    #[test]
    fn engine_state_round_trips_through_json_for_continue_as_new() {
        let mut e = SlaEngine::start(assignment(serde_json::json!({})), t("2026-11-23T10:00:00Z"), Status::New, p(2));
        step(&mut e, ev("2026-11-23T10:00:01Z", Status::WaitingOnCustomer, 2, &[]));
        let json = serde_json::to_string(e.state()).unwrap();
        let back = SlaEngine::from_state(serde_json::from_str(&json).unwrap());
        assert_eq!(back.state(), e.state());
        assert_eq!(back.report(t("2026-11-23T10:00:09Z")), e.report(t("2026-11-23T10:00:09Z")));
    }

    #[test]
    fn replaying_a_history_reaches_the_same_state_as_living_it() {
        let a = assignment(serde_json::json!({}));
        let events = vec![
            ev("2026-11-23T10:00:00Z", Status::New, 3, &[Trigger::Created]),
            ev("2026-11-23T10:00:01Z", Status::InProgress, 3, &[]),
            ev("2026-11-23T10:00:02Z", Status::WaitingOnCustomer, 3, &[]),
            ev("2026-11-23T10:00:05Z", Status::InProgress, 1, &[Trigger::PriorityChanged]),
        ];
        let (replayed, facts) = SlaEngine::replay(a.clone(), &events, t("2026-11-23T10:00:30Z"));
        let mut live = SlaEngine::start(a, events[0].at, events[0].status, events[0].priority);
        for e in &events[1..] {
            step(&mut live, e.clone());
        }
        live.advance(t("2026-11-23T10:00:30Z"));
        assert_eq!(replayed.report(t("2026-11-23T10:00:30Z")), live.report(t("2026-11-23T10:00:30Z")));
        assert!(breaches(&facts).contains(&(Metric::Resolution, t("2026-11-23T10:00:07Z"))));
    }
}
