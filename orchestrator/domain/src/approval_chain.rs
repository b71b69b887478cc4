//! The approval chain as a pure state machine: what the `approval_chain` workflow does next.
//!
//! Like [`crate::sla::engine::SlaEngine`], it never reads the clock: [`Chain::next`] takes
//! `now` and says what to do (open a step, ask or remind approvers, escalate a step that timed
//! out, close a step or the whole approval, or sleep until an instant or a signal). Results
//! of those actions and the signals people send are fed back with its other methods. The
//! workflow only executes what it says, so reminders, timeouts, escalations, sequential asking
//! and quorums are unit-tested here on virtual time, and a recorded history replays because
//! the machine decides exactly as the workflow did before it existed.
//!
//! Signals are queued as they arrive and applied only when an open step decides (withdrawals
//! first, then decisions, each decision once per task): a decision arriving while a step
//! closes or opens is kept for the next step and dropped there if its task is not one of its.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::{ApproverSpec, ChainSpec, Decision, Mode, OnTimeout, Outcome, Rule, StepSpec, StepTally};

/// An approver's task in a step, in the order they are asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub task_id: Uuid,
    pub approver_id: Uuid,
}

/// An approval as the workflow holds it (its query).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainState {
    pub step: Option<u32>,
    pub tasks: Vec<TaskRef>,
    pub tally: StepTally,
    pub next_reminder: Option<Timestamp>,
    pub timeout: Option<Timestamp>,
    pub escalated: bool,
    pub outcome: Option<Outcome>,
}

/// What the chain's executor does next.
///
/// `Open`, `Escalate`, `Close` and `Finish` are repeated by [`Chain::next`] until their result
/// is fed back ([`Chain::step_opened`] or [`Chain::step_not_opened`], [`Chain::escalation_opened`],
/// [`Chain::step_closed`], [`Chain::approval_closed`]); an `Ask` is taken as done once said.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Open step `index`: resolve its approvers and ask them (only the first of a sequential step).
    Open { index: u32, step: StepSpec },
    /// Ask these tasks' approvers, or with `reminder: Some(n)` send them the n-th reminder.
    Ask { step_id: Uuid, tasks: Vec<Uuid>, reminder: Option<u32> },
    /// The step timed out: add these approvers to it and ask them.
    Escalate { step_id: Uuid, to: Vec<ApproverSpec> },
    /// The step ended: close it with this outcome.
    Close { step_id: Uuid, outcome: Outcome },
    /// The chain ended: close the approval with this outcome.
    Finish(Outcome),
    /// The approval is closed; nothing is left to do.
    Done(Outcome),
    /// Nothing to do until this instant (`None`: until a signal) or until a signal arrives.
    Sleep { until: Option<Timestamp> },
}

/// Signals received and not yet applied, and what was applied.
#[derive(Debug, Clone, Default)]
struct Inbox {
    /// Decisions not yet applied, in arrival order.
    decisions: Vec<(Uuid, Decision)>,
    /// Tasks whose decision was applied (a redelivered signal changes nothing).
    applied: Vec<Uuid>,
    /// Tasks withdrawn (their approver was deactivated), not yet applied.
    withdrawn: Vec<Uuid>,
    /// Why the ticket was cancelled (the first reason received).
    cancelled: Option<String>,
}

impl Inbox {
    /// Applies queued withdrawals, then queued decisions, to the open step's tasks and tally.
    fn apply(&mut self, view: &mut ChainState) {
        // a withdrawn task that has not decided leaves the step (and its tally)
        for task in std::mem::take(&mut self.withdrawn) {
            if let Some(i) = view.tasks.iter().position(|t| t.task_id == task)
                && view.tally.decisions.get(i).is_some_and(Option::is_none)
            {
                view.tasks.remove(i);
                view.tally.decisions.remove(i);
            }
        }
        for (task, decision) in std::mem::take(&mut self.decisions) {
            if self.applied.contains(&task) {
                continue;
            }
            if let Some(i) = view.tasks.iter().position(|t| t.task_id == task)
                && let Some(slot) = view.tally.decisions.get_mut(i)
            {
                *slot = Some(decision);
                self.applied.push(task);
            }
        }
    }
}

/// The open step: what it was asked and what it still waits for.
#[derive(Debug, Clone)]
struct Step {
    index: u32,
    id: Uuid,
    spec: StepSpec,
    /// After an escalation, the rule the escalation approvers decide by.
    escalated_rule: Option<StepSpec>,
    /// Tasks asked so far (opening a step asks the first of a sequential step).
    asked: Vec<Uuid>,
    /// Reminder instants still to come, ascending.
    reminders: Vec<Timestamp>,
    reminders_sent: u32,
    timeout: Option<Timestamp>,
    /// Escalated on timeout: waiting for the escalation approvers' tasks.
    escalating: Option<Vec<ApproverSpec>>,
    /// Settled: waiting for the step to be closed.
    closing: Option<Outcome>,
}

impl Step {
    fn rule(&self) -> &StepSpec {
        self.escalated_rule.as_ref().unwrap_or(&self.spec)
    }

    fn settle(&mut self, outcome: Outcome) -> Next {
        self.closing = Some(outcome.clone());
        Next::Close { step_id: self.id, outcome }
    }

    /// What the open step does at `now`, its signals applied to `view`.
    fn decide(&mut self, view: &mut ChainState, now: Timestamp) -> Next {
        if let Some(outcome) = view.tally.outcome(self.rule()) {
            return self.settle(outcome);
        }
        // a sequential step asks the next approver once the previous one approved
        if let Some(task) = view.tally.current(self.rule()).and_then(|i| view.tasks.get(i)).map(|t| t.task_id)
            && !self.asked.contains(&task)
        {
            self.asked.push(task);
            return Next::Ask { step_id: self.id, tasks: vec![task], reminder: None };
        }
        if self.reminders.first().is_some_and(|at| *at <= now) {
            self.reminders.remove(0);
            self.reminders_sent += 1;
            view.next_reminder = self.reminders.first().copied();
            let undecided =
                view.tasks.iter().zip(&view.tally.decisions).filter(|(_, d)| d.is_none()).map(|(t, _)| t.task_id);
            return Next::Ask { step_id: self.id, tasks: undecided.collect(), reminder: Some(self.reminders_sent) };
        }
        if self.timeout.is_some_and(|at| at <= now) {
            self.timeout = None;
            self.reminders.clear();
            view.timeout = None;
            view.next_reminder = None;
            return self.timed_out();
        }
        Next::Sleep { until: self.reminders.first().copied().into_iter().chain(self.timeout).min() }
    }

    fn timed_out(&mut self) -> Next {
        let name = &self.spec.name;
        match &self.spec.on_timeout {
            OnTimeout::Reject => self.settle(Outcome::Rejected { reason: format!("{name} timed out") }),
            OnTimeout::Approve => self.settle(Outcome::Approved { reason: format!("{name} approved on timeout") }),
            OnTimeout::Escalate(to) => {
                self.escalating = Some(to.clone());
                Next::Escalate { step_id: self.id, to: to.clone() }
            }
        }
    }
}

/// The escalation approvers decide a timed-out step: one approval or rejection settles it.
fn escalation_rule(step: &StepSpec) -> StepSpec {
    StepSpec { mode: Mode::Parallel, approve_when: Rule::Any, reject_when: Some(Rule::Any), ..step.clone() }
}

#[derive(Debug, Clone)]
enum Phase {
    /// Step `index` opens next; past the last step, the chain is approved.
    Before(u32),
    /// Step `index` is being opened.
    Opening(u32, Box<StepSpec>),
    /// A step is open: it asks, reminds, times out and settles.
    Open(Box<Step>),
    /// The chain ended: the approval is being closed.
    Finishing(Outcome),
    /// The approval is closed.
    Done(Outcome),
}

/// One approval chain, from its first step to its outcome.
#[derive(Debug, Clone)]
pub struct Chain {
    steps: Vec<StepSpec>,
    phase: Phase,
    inbox: Inbox,
    view: ChainState,
}

impl Chain {
    /// A chain about to open its first step; with `auto_approve`, one approved at once with
    /// this reason (pre-approved standard changes).
    pub fn new(chain: ChainSpec, auto_approve: Option<String>) -> Self {
        let phase = match auto_approve {
            Some(reason) => Phase::Finishing(Outcome::Approved { reason }),
            None => Phase::Before(0),
        };
        Chain { steps: chain.steps, phase, inbox: Inbox::default(), view: ChainState::default() }
    }

    /// The chain as it stands (the workflow's `state` query).
    pub fn state(&self) -> &ChainState {
        &self.view
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Timestamp) -> Next {
        match &mut self.phase {
            Phase::Before(index) => {
                let index = *index;
                let step = usize::try_from(index).ok().and_then(|i| self.steps.get(i));
                // the chain is approved once its last step is, whatever arrives after
                let Some(step) = step else {
                    let reason = format!("all {} steps approved", self.steps.len());
                    return self.finish(Outcome::Approved { reason });
                };
                if let Some(reason) = self.inbox.cancelled.clone() {
                    return self.finish(Outcome::Cancelled { reason });
                }
                let step = step.clone();
                self.phase = Phase::Opening(index, Box::new(step.clone()));
                Next::Open { index, step }
            }
            Phase::Opening(index, step) => Next::Open { index: *index, step: (**step).clone() },
            Phase::Open(step) => {
                if let Some(outcome) = &step.closing {
                    return Next::Close { step_id: step.id, outcome: outcome.clone() };
                }
                if let Some(to) = &step.escalating {
                    return Next::Escalate { step_id: step.id, to: to.clone() };
                }
                self.inbox.apply(&mut self.view);
                match self.inbox.cancelled.clone() {
                    Some(reason) => step.settle(Outcome::Cancelled { reason }),
                    None => step.decide(&mut self.view, now),
                }
            }
            Phase::Finishing(outcome) => Next::Finish(outcome.clone()),
            Phase::Done(outcome) => Next::Done(outcome.clone()),
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Next {
        self.phase = Phase::Finishing(outcome.clone());
        Next::Finish(outcome)
    }

    /// The step being opened is open: its tasks in the order they are asked, its reminder
    /// instants (ascending) and its timeout. Ignored unless a step is being opened.
    pub fn step_opened(
        &mut self,
        step_id: Uuid,
        tasks: Vec<TaskRef>,
        reminders: Vec<Timestamp>,
        timeout: Option<Timestamp>,
    ) {
        let Phase::Opening(index, spec) = &self.phase else { return };
        let (index, spec) = (*index, (**spec).clone());
        self.view.step = Some(index);
        self.view.tally = StepTally::new(tasks.len());
        self.view.escalated = false;
        self.view.next_reminder = reminders.first().copied();
        self.view.timeout = timeout;
        let asked = tasks.iter().take(1).map(|t| t.task_id).collect();
        self.view.tasks = tasks;
        self.phase = Phase::Open(Box::new(Step {
            index,
            id: step_id,
            spec,
            escalated_rule: None,
            asked,
            reminders,
            reminders_sent: 0,
            timeout,
            escalating: None,
            closing: None,
        }));
    }

    /// The step could not open because the approval had ended meanwhile (the ticket was
    /// cancelled): the chain ends cancelled, for this reason. Ignored unless a step is being
    /// opened.
    pub fn step_not_opened(&mut self, reason: String) {
        if let Phase::Opening(..) = self.phase {
            self.phase = Phase::Finishing(Outcome::Cancelled { reason });
        }
    }

    /// The escalation approvers were added to the timed-out step: these are its tasks now,
    /// and one decision of theirs settles it. Ignored unless the step is escalating.
    pub fn escalation_opened(&mut self, tasks: Vec<TaskRef>) {
        let Phase::Open(step) = &mut self.phase else { return };
        if step.escalating.take().is_none() {
            return;
        }
        step.escalated_rule = Some(escalation_rule(&step.spec));
        self.view.tally = StepTally::new(tasks.len());
        self.view.tasks = tasks;
        self.view.escalated = true;
    }

    /// The settled step was closed: an approved one hands over to the next step, any other
    /// outcome ends the chain. Ignored unless a step was settled.
    pub fn step_closed(&mut self) {
        let Phase::Open(step) = &mut self.phase else { return };
        let Some(outcome) = step.closing.take() else { return };
        self.phase = if outcome.is_approved() { Phase::Before(step.index + 1) } else { Phase::Finishing(outcome) };
    }

    /// The approval was closed with its outcome: the chain is done.
    pub fn approval_closed(&mut self) {
        if let Phase::Finishing(outcome) = &self.phase {
            self.view.outcome = Some(outcome.clone());
            self.phase = Phase::Done(outcome.clone());
        }
    }

    /// An approver decided their task (applied once per task, when its step next decides).
    pub fn decided(&mut self, task_id: Uuid, decision: Decision) {
        self.inbox.decisions.push((task_id, decision));
    }

    /// A task's approver was deactivated with nobody to stand in: if it has not decided, it
    /// leaves its step, which is decided again without it.
    pub fn withdrawn(&mut self, task_id: Uuid) {
        self.inbox.withdrawn.push(task_id);
    }

    /// The ticket was cancelled: the chain ends without a verdict (the first reason is kept).
    pub fn cancelled(&mut self, reason: String) {
        if self.inbox.cancelled.is_none() {
            self.inbox.cancelled = Some(reason);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use jiff::SignedDuration;
    use serde_json::json;

    use super::*;
    use crate::approval::Decision::{Approve, Reject};

    const STEP: Uuid = Uuid::from_u128(0x5717);

    /// Virtual time: `ms` milliseconds after the step opened.
    fn t(ms: i64) -> Timestamp {
        "2026-12-01T09:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_millis(ms)
    }

    fn task(n: u128) -> TaskRef {
        TaskRef { task_id: Uuid::from_u128(n), approver_id: Uuid::from_u128(1_000 + n) }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec(step: serde_json::Value) -> StepSpec {
        let mut step = step;
        step["approvers"] = json!([{"role": "approver"}]);
        serde_json::from_value(step).unwrap()
    }

    fn chain(steps: &[serde_json::Value]) -> Chain {
        Chain::new(ChainSpec { steps: steps.iter().cloned().map(spec).collect() }, None)
    }

    /// Says to open step `index`, and opens it with tasks `tasks`, reminders and timeout (ms).
    fn open(c: &mut Chain, index: u32, tasks: &[u128], reminders: &[i64], timeout: Option<i64>) {
        let Next::Open { index: opened, .. } = c.next(t(0)) else { panic!("expected to open step {index}") };
        assert_eq!(opened, index);
        let tasks = tasks.iter().copied().map(task).collect();
        c.step_opened(STEP, tasks, reminders.iter().copied().map(t).collect(), timeout.map(t));
    }

    fn ask(tasks: &[u128], reminder: Option<u32>) -> Next {
        Next::Ask { step_id: STEP, tasks: tasks.iter().copied().map(id).collect(), reminder }
    }

    fn sleep(until: Option<i64>) -> Next {
        Next::Sleep { until: until.map(t) }
    }

    fn close(outcome: Outcome) -> Next {
        Next::Close { step_id: STEP, outcome }
    }

    fn approved(reason: &str) -> Outcome {
        Outcome::Approved { reason: reason.into() }
    }

    fn rejected(reason: &str) -> Outcome {
        Outcome::Rejected { reason: reason.into() }
    }

    fn cancelled(reason: &str) -> Outcome {
        Outcome::Cancelled { reason: reason.into() }
    }

    /// Closes the settled step and the approval: what the chain finished with.
    fn finish(c: &mut Chain, at: i64) -> Outcome {
        c.step_closed();
        let Next::Finish(outcome) = c.next(t(at)) else { panic!("expected the chain to finish") };
        assert_eq!(c.state().outcome, None, "the outcome shows once the approval is closed");
        c.approval_closed();
        assert_eq!(c.next(t(at)), Next::Done(outcome.clone()));
        assert_eq!(c.state().outcome.as_ref(), Some(&outcome));
        outcome
    }

    #[test]
    fn reminders_fall_due_in_order_then_the_step_times_out_rejected() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        open(&mut c, 0, &[1, 2], &[100, 200], Some(300));
        let s = c.state();
        assert_eq!((s.step, s.tasks.len(), s.next_reminder, s.timeout), (Some(0), 2, Some(t(100)), Some(t(300))));
        assert_eq!(c.next(t(0)), sleep(Some(100)));
        assert_eq!(c.next(t(99)), sleep(Some(100)), "woken early: sleeps again until the same instant");
        assert_eq!(c.next(t(100)), ask(&[1, 2], Some(1)));
        assert_eq!(c.state().next_reminder, Some(t(200)));
        assert_eq!(c.next(t(100)), sleep(Some(200)));
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(150)), sleep(Some(200)));
        assert_eq!(c.state().tally.decisions, [Some(Approve), None]);
        assert_eq!(c.next(t(200)), ask(&[2], Some(2)), "only those who have not decided are reminded");
        assert_eq!(c.next(t(200)), sleep(Some(300)));
        let timed_out = close(rejected("Manager timed out"));
        assert_eq!(c.next(t(300)), timed_out);
        assert_eq!((c.state().timeout, c.state().next_reminder), (None, None));
        assert_eq!(c.next(t(301)), timed_out, "said again until the step is closed");
        assert_eq!(finish(&mut c, 310), rejected("Manager timed out"));
    }

    #[test]
    fn a_late_wake_sends_each_reminder_due_before_timing_out() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        open(&mut c, 0, &[1], &[100, 200], Some(300));
        assert_eq!(c.next(t(450)), ask(&[1], Some(1)));
        assert_eq!(c.next(t(450)), ask(&[1], Some(2)));
        assert_eq!(c.next(t(450)), close(rejected("Manager timed out")));
    }

    #[test]
    fn a_timeout_approves_when_the_step_says_so_and_the_next_step_opens() {
        let mut c = chain(&[json!({"name": "Low risk", "on_timeout": "approve"}), json!({"name": "Owner"})]);
        open(&mut c, 0, &[1], &[], Some(250));
        assert_eq!(c.next(t(0)), sleep(Some(250)));
        assert_eq!(c.next(t(250)), close(approved("Low risk approved on timeout")));
        c.step_closed();
        let Next::Open { index: 1, step } = c.next(t(260)) else { panic!("the second step opens") };
        assert_eq!(step.name, "Owner");
        assert_eq!(c.state().step, Some(0), "the closed step shows until the next one opens");
        c.step_opened(STEP, vec![task(7)], vec![], None);
        assert_eq!((c.state().step, c.state().tasks.clone(), c.state().timeout), (Some(1), vec![task(7)], None));
        assert_eq!(c.next(t(270)), sleep(None), "no timeout: only a signal wakes it");
        c.decided(id(7), Approve);
        assert_eq!(c.next(t(280)), close(approved("1 of 1 approved")));
        assert_eq!(finish(&mut c, 290), approved("all 2 steps approved"));
    }

    #[test]
    fn a_timeout_escalates_and_one_escalation_decision_settles_the_step() {
        let boss = Uuid::from_u128(0xb055);
        let mut c = chain(&[json!({"name": "CAB", "on_timeout": {"escalate": [{"user": boss}]}})]);
        open(&mut c, 0, &[1, 2], &[100], Some(200));
        assert_eq!(c.next(t(100)), ask(&[1, 2], Some(1)));
        assert_eq!(c.next(t(100)), sleep(Some(200)));
        let escalate = Next::Escalate { step_id: STEP, to: vec![ApproverSpec::User(boss)] };
        assert_eq!(c.next(t(200)), escalate);
        assert_eq!(c.next(t(205)), escalate, "said again until the escalation is opened");
        assert!(!c.state().escalated);
        c.escalation_opened(vec![task(9)]);
        let s = c.state();
        assert_eq!((s.escalated, s.tasks.clone(), s.tally.decisions.clone()), (true, vec![task(9)], vec![None]));
        assert_eq!((s.timeout, s.next_reminder), (None, None));
        assert_eq!(c.next(t(210)), sleep(None), "no second timeout: the escalation waits for its decision");
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(220)), sleep(None), "the original approvers no longer decide the step");
        c.decided(id(9), Reject);
        assert_eq!(c.next(t(230)), close(rejected("1 of 1 rejected")), "one rejection settles it");
        assert_eq!(finish(&mut c, 240), rejected("1 of 1 rejected"));
    }

    #[test]
    fn an_escalated_sequential_step_is_decided_by_any_escalation_approver() {
        let mut c = chain(&[json!({"name": "Seq", "mode": "sequential", "on_timeout": {"escalate": ["item_owner"]}})]);
        open(&mut c, 0, &[1, 2], &[], Some(100));
        assert_eq!(c.next(t(100)), Next::Escalate { step_id: STEP, to: vec![ApproverSpec::ItemOwner] });
        c.escalation_opened(vec![task(8), task(9)]);
        assert_eq!(c.next(t(110)), sleep(None), "nobody more is asked one by one");
        c.decided(id(9), Approve);
        assert_eq!(c.next(t(120)), close(approved("1 of 2 approved")));
    }

    #[test]
    fn sequential_steps_ask_one_approver_after_the_other() {
        let mut c = chain(&[json!({"name": "Seq", "mode": "sequential"}), json!({"name": "Next"})]);
        open(&mut c, 0, &[1, 2, 3], &[], None);
        assert_eq!(c.next(t(0)), sleep(None), "opening the step asked the first");
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(10)), ask(&[2], None));
        assert_eq!(c.next(t(10)), sleep(None));
        c.decided(id(1), Reject);
        assert_eq!(c.next(t(15)), sleep(None), "a decision is applied once per task");
        assert_eq!(c.state().tally.decisions, [Some(Approve), None, None]);
        c.decided(id(2), Approve);
        assert_eq!(c.next(t(20)), ask(&[3], None));
        c.decided(id(3), Approve);
        // a decision arriving while the step closes belongs to no task of the next step
        c.decided(id(42), Reject);
        assert_eq!(c.next(t(30)), close(approved("3 of 3 approved")));
        c.step_closed();
        open(&mut c, 1, &[42, 43], &[], None);
        assert_eq!(c.next(t(40)), sleep(None));
        assert_eq!(c.state().tally.decisions, [None, None], "the early decision was dropped");
    }

    /// The reminder names every task that has not decided, asked or not yet (part of recorded
    /// histories); the activity reminds only those asked.
    #[test]
    fn a_sequential_reminder_names_every_undecided_task() {
        let mut c = chain(&[json!({"name": "Seq", "mode": "sequential"})]);
        open(&mut c, 0, &[1, 2, 3], &[100], Some(200));
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(50)), ask(&[2], None));
        assert_eq!(c.next(t(50)), sleep(Some(100)));
        assert_eq!(c.next(t(100)), ask(&[2, 3], Some(1)));
        assert_eq!(c.next(t(100)), sleep(Some(200)));
        assert_eq!(c.next(t(200)), close(rejected("Seq timed out")));
    }

    #[test]
    fn a_sequential_rejection_ends_the_step_without_asking_the_rest() {
        let mut c = chain(&[json!({"name": "Seq", "mode": "sequential"})]);
        open(&mut c, 0, &[1, 2, 3], &[], None);
        c.decided(id(1), Reject);
        let outcome = rejected("1 of 3 rejected: 3 approvals can no longer be reached");
        assert_eq!(c.next(t(5)), close(outcome.clone()));
        assert_eq!(finish(&mut c, 6), outcome);
    }

    #[test]
    fn a_count_quorum_approves_once_reached() {
        let mut c = chain(&[json!({"name": "CAB", "approve_when": {"count": 2}})]);
        open(&mut c, 0, &[1, 2, 3], &[], Some(1_000));
        c.decided(id(1), Approve);
        c.decided(id(2), Reject);
        assert_eq!(c.next(t(10)), sleep(Some(1_000)));
        c.decided(id(3), Approve);
        assert_eq!(c.next(t(20)), close(approved("2 of 3 approved")));
    }

    #[test]
    fn any_approves_on_the_first_approval_and_all_rejects_on_the_first_rejection() {
        let mut any = chain(&[json!({"name": "Any", "approve_when": "any"})]);
        open(&mut any, 0, &[1, 2, 3], &[], None);
        any.decided(id(1), Reject);
        assert_eq!(any.next(t(1)), sleep(None));
        any.decided(id(2), Approve);
        assert_eq!(any.next(t(2)), close(approved("1 of 3 approved")));

        let mut all = chain(&[json!({"name": "All"})]);
        open(&mut all, 0, &[1, 2], &[], None);
        all.decided(id(2), Reject);
        assert_eq!(all.next(t(1)), close(rejected("1 of 2 rejected: 2 approvals can no longer be reached")));
    }

    #[test]
    fn an_unreachable_quorum_ends_the_step_before_its_timeout() {
        let mut c = chain(&[json!({"name": "CAB", "approve_when": {"count": 2}})]);
        open(&mut c, 0, &[1, 2, 3], &[500], Some(1_000));
        c.decided(id(1), Reject);
        assert_eq!(c.next(t(10)), sleep(Some(500)));
        c.decided(id(2), Reject);
        let outcome = rejected("2 of 3 rejected: 2 approvals can no longer be reached");
        assert_eq!(c.next(t(20)), close(outcome.clone()));
        assert_eq!(finish(&mut c, 30), outcome);
    }

    #[test]
    fn a_step_that_can_never_be_approved_closes_as_soon_as_it_opens() {
        let mut c = chain(&[json!({"name": "ECAB", "approve_when": {"count": 2}})]);
        open(&mut c, 0, &[1], &[], Some(1_000));
        assert_eq!(c.next(t(0)), close(rejected(&crate::approval::unsatisfiable(2, 1))));
        let mut c = chain(&[json!({"name": "Nobody"})]);
        open(&mut c, 0, &[], &[], None);
        assert_eq!(c.next(t(0)), close(rejected("no approvers could be found for this step")));
    }

    #[test]
    fn withdrawals_take_undecided_tasks_out_of_the_step() {
        let mut c = chain(&[json!({"name": "CAB", "approve_when": {"count": 2}})]);
        open(&mut c, 0, &[1, 2, 3], &[], Some(1_000));
        c.decided(id(1), Approve);
        c.withdrawn(id(3));
        assert_eq!(c.next(t(10)), sleep(Some(1_000)));
        assert_eq!(c.state().tasks, [task(1), task(2)]);
        assert_eq!(c.state().tally.decisions, [Some(Approve), None]);
        c.withdrawn(id(1));
        assert_eq!(c.next(t(20)), sleep(Some(1_000)), "a task that decided stays");
        assert_eq!(c.state().tasks.len(), 2);
        // withdrawn and decided in the same wake: the withdrawal is applied first
        c.decided(id(2), Approve);
        c.withdrawn(id(2));
        assert_eq!(c.next(t(30)), close(rejected(&crate::approval::unsatisfiable(2, 1))));
    }

    #[test]
    fn withdrawing_the_current_sequential_approver_asks_the_next() {
        let mut c = chain(&[json!({"name": "Seq", "mode": "sequential"})]);
        open(&mut c, 0, &[1, 2], &[], None);
        c.withdrawn(id(1));
        assert_eq!(c.next(t(10)), ask(&[2], None));
        c.decided(id(2), Approve);
        assert_eq!(c.next(t(20)), close(approved("1 of 1 approved")));
    }

    #[test]
    fn a_cancellation_closes_the_open_step_and_then_the_chain() {
        let mut c = chain(&[json!({"name": "Manager"}), json!({"name": "Owner"})]);
        open(&mut c, 0, &[1], &[100], Some(200));
        // the cancellation wins over a decision that arrived in the same wake
        c.decided(id(1), Approve);
        c.cancelled("ticket cancelled".into());
        c.cancelled("a later reason".into());
        assert_eq!(c.next(t(50)), close(cancelled("ticket cancelled")));
        assert_eq!(finish(&mut c, 60), cancelled("ticket cancelled"));
    }

    #[test]
    fn a_cancellation_between_steps_opens_no_further_step() {
        let mut c = chain(&[json!({"name": "Manager"}), json!({"name": "Owner"})]);
        open(&mut c, 0, &[1], &[], None);
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(10)), close(approved("1 of 1 approved")));
        c.cancelled("withdrawn by the requester".into());
        assert_eq!(finish(&mut c, 20), cancelled("withdrawn by the requester"));
    }

    #[test]
    fn a_cancellation_after_the_last_step_approved_changes_nothing() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        open(&mut c, 0, &[1], &[], None);
        c.decided(id(1), Approve);
        assert_eq!(c.next(t(10)), close(approved("1 of 1 approved")));
        c.cancelled("too late".into());
        assert_eq!(finish(&mut c, 20), approved("all 1 steps approved"));
    }

    #[test]
    fn a_chain_cancelled_before_or_while_a_step_opens_asks_nobody() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        c.cancelled("cancelled at once".into());
        assert_eq!(c.next(t(0)), Next::Finish(cancelled("cancelled at once")));
        assert_eq!(c.state().step, None);

        let mut c = chain(&[json!({"name": "Manager"})]);
        let open = c.next(t(0));
        assert!(matches!(open, Next::Open { index: 0, .. }), "{open:?}");
        assert_eq!(c.next(t(1)), open, "said again until the step is opened");
        c.step_not_opened("the ticket was cancelled".into());
        assert_eq!(c.next(t(2)), Next::Finish(cancelled("the ticket was cancelled")));
        c.approval_closed();
        assert_eq!(c.next(t(3)), Next::Done(cancelled("the ticket was cancelled")));
    }

    #[test]
    fn an_auto_approved_chain_finishes_at_once() {
        let mut c = Chain::new(ChainSpec { steps: vec![spec(json!({"name": "CAB"}))] }, Some("standard change".into()));
        assert_eq!(c.next(t(0)), Next::Finish(approved("standard change")));
        c.approval_closed();
        assert_eq!(c.next(t(0)), Next::Done(approved("standard change")));
        assert_eq!(c.state().step, None);
    }

    #[test]
    fn results_fed_out_of_turn_are_ignored() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        c.step_closed();
        c.escalation_opened(vec![task(9)]);
        c.approval_closed();
        c.step_opened(STEP, vec![task(1)], vec![], None);
        assert_eq!(c.state(), &ChainState::default());
        open(&mut c, 0, &[1], &[], Some(100));
        c.step_opened(STEP, vec![task(2)], vec![], None);
        c.escalation_opened(vec![task(9)]);
        c.step_closed();
        assert_eq!(c.state().tasks, [task(1)]);
        assert_eq!(c.next(t(50)), sleep(Some(100)));
    }

    /// The API returns the workflow's `state` query as is: its JSON never changes shape.
    #[test]
    fn the_queried_state_keeps_its_json() {
        let mut c = chain(&[json!({"name": "Manager"})]);
        open(&mut c, 0, &[1, 2], &[100], Some(200));
        c.decided(id(2), Approve);
        c.next(t(10));
        assert_eq!(
            serde_json::to_value(c.state()).unwrap(),
            json!({
                "step": 0,
                "tasks": [
                    {"task_id": id(1), "approver_id": Uuid::from_u128(1_001)},
                    {"task_id": id(2), "approver_id": Uuid::from_u128(1_002)}
                ],
                "tally": {"decisions": [null, "approve"]},
                "next_reminder": "2026-12-01T09:00:00.1Z",
                "timeout": "2026-12-01T09:00:00.2Z",
                "escalated": false,
                "outcome": null
            })
        );
    }
}
