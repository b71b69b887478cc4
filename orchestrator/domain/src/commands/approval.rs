//! Approval decisions: who may decide a task, and what deciding it now means.
//!
//! One set of rules for every way a decision arrives: in the app (`POST /approvals/{id}/approve`
//! and `/reject`), by an emailed link (its confirmation page and its form) and, next, from a
//! playbook. A caller reads the rows (the task, its step and approval, the ticket's requester,
//! who is deciding and how) and [`decide`] says what deciding now means: record it, a retry of
//! the same decision recorded already, or a [`Refusal`] saying why not. The store records a
//! decision (`archer_store::approval_changes::decide`) after re-reading the task under lock; if
//! it changed meanwhile (another tab, the chain closing the step), the caller asks [`judge`]
//! again with what the store found.
//!
//! Who is asked in the first place (a delegate for someone out of office, nobody twice, only
//! active people, never the requester) is [`approvers`]; how many a step asks when it opens is
//! [`asked_at_open`]; how long an emailed link may decide is [`link_expires_at`].

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::approval::{Decision, Mode, Outcome};

/// A state name read from a row that is none of the states it can be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} state `{value}`")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
}

/// `as_str`, `FromStr` and `Display` for a state enum, by the names its rows store.
macro_rules! state_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name rows store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Where an approver's task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Not asked yet: a sequential step asks its approvers one by one.
    Waiting,
    /// Asked: their decision is awaited.
    Asked,
    Approved,
    Rejected,
    /// The step closed, or was escalated, before they decided.
    Superseded,
    /// Taken back: the approver was deactivated and nobody could take it over.
    Withdrawn,
}

state_names!(TaskState, "task", {
    Waiting => "waiting",
    Asked => "asked",
    Approved => "approved",
    Rejected => "rejected",
    Superseded => "superseded",
    Withdrawn => "withdrawn",
});

impl TaskState {
    /// The decision a decided task holds.
    pub fn decision(self) -> Option<Decision> {
        match self {
            TaskState::Approved => Some(Decision::Approve),
            TaskState::Rejected => Some(Decision::Reject),
            _ => None,
        }
    }
}

/// Where a step of an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    Open,
    Approved,
    Rejected,
    Cancelled,
}

state_names!(StepState, "step", {
    Open => "open",
    Approved => "approved",
    Rejected => "rejected",
    Cancelled => "cancelled",
});

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Cancelled,
}

state_names!(ApprovalState, "approval", {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
    Cancelled => "cancelled",
});

impl From<&Outcome> for StepState {
    /// The state a step closes in when it ends so.
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Approved { .. } => StepState::Approved,
            Outcome::Rejected { .. } => StepState::Rejected,
            Outcome::Cancelled { .. } => StepState::Cancelled,
        }
    }
}

impl From<&Outcome> for ApprovalState {
    /// The state an approval finishes in when its chain ends so.
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Approved { .. } => ApprovalState::Approved,
            Outcome::Rejected { .. } => ApprovalState::Rejected,
            Outcome::Cancelled { .. } => ApprovalState::Cancelled,
        }
    }
}

/// A task as a decision finds it: whose it is, and where it, its step and its approval stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub approver: Uuid,
    pub state: TaskState,
    pub step: StepState,
    pub approval: ApprovalState,
}

/// Who is deciding, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// In the app, the signed-in user; by link, the approver the link was sent to (whoever is at
    /// the keyboard).
    pub user: Uuid,
    /// Whether `user`'s account is active.
    pub active: bool,
    pub via: Via,
}

/// The way a decision arrives. Roles play no part in either: being asked by a step is the
/// permission to decide that task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Signed in, in the app.
    App,
    /// An emailed link whose signature holds.
    Link(Link),
}

impl Via {
    /// How a decision's row records the way it came (`app` or `email`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::App => "app",
            Via::Link(_) => "email",
        }
    }
}

/// An emailed decision link, as the page it opens finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Who is signed in (a valid bearer token) where the link was opened, if anyone.
    pub signed_in: Option<Uuid>,
    /// When the link decided already: a link decides once.
    pub used_at: Option<Timestamp>,
    pub expires_at: Timestamp,
}

/// What a decision that is not refused comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Record it now.
    Record,
    /// The same decision is recorded already (a second click, another tab): nothing changes,
    /// and the caller answers as for the first.
    AlreadyDecided,
}

/// Why a decision is not taken. The texts are those the app answers with; the emailed links'
/// pages say the same things in words of their own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An access token outlives a deactivation by up to its lifetime; a link outlives it by
    /// days: a deactivated person decides nothing.
    #[error("your account is deactivated")]
    Deactivated,
    #[error("you cannot decide on your own request")]
    OwnRequest,
    /// The actor has no task in the approval: only those asked decide.
    #[error("you are not asked to decide this approval")]
    NotAsked,
    /// A link opened where someone else is signed in: only its approver may use it.
    #[error("you are signed in as someone other than the approver this link was sent to")]
    OtherApprover,
    #[error("this link was used already")]
    LinkUsed { at: Timestamp },
    /// Decided already, otherwise (or, in the app, in a step the chain has moved past): a
    /// decision cannot be changed.
    #[error("you already decided this; a decision cannot be changed")]
    Decided { decided: Decision },
    /// Nothing is left for this task to decide.
    #[error("{0}")]
    Closed(Closed),
    #[error("this link has expired")]
    LinkExpired { at: Timestamp },
}

/// Why a task decides nothing any more (or not yet), in the words the app and the pages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    /// The task a link names was handed to someone else (its approver went out of office or
    /// was deactivated).
    #[error("this task was handed to another approver")]
    HandedOver,
    #[error("this approval was cancelled (the ticket was cancelled or sent back): nothing is left to decide")]
    Cancelled,
    #[error("the step was escalated to someone else after its timeout: your decision is no longer needed")]
    Escalated,
    #[error("it is not your turn yet: this step asks its approvers one by one")]
    NotYourTurn,
    /// The step's rule was met (either way) by the others' decisions.
    #[error("this step was already {0} without your decision")]
    StepSettled(StepState),
    #[error("this approval is already {0}")]
    Approval(ApprovalState),
}

impl Closed {
    /// Why a task that is not asked, or whose step or approval closed, takes no decision: the
    /// most telling reason first.
    pub fn of(task: TaskState, step: StepState, approval: ApprovalState) -> Closed {
        if approval == ApprovalState::Cancelled {
            return Closed::Cancelled;
        }
        if task == TaskState::Superseded && step == StepState::Open {
            return Closed::Escalated;
        }
        if task == TaskState::Waiting {
            return Closed::NotYourTurn;
        }
        match step {
            StepState::Approved | StepState::Rejected => Closed::StepSettled(step),
            StepState::Open | StepState::Cancelled => Closed::Approval(approval),
        }
    }
}

impl Actor {
    /// Whether this person may decide anything this way at all, before any approval is looked
    /// at: not a deactivated account; by link, not while someone else is signed in, and once.
    pub fn may_act(&self) -> Result<(), Refusal> {
        match &self.via {
            Via::App => {}
            Via::Link(link) => {
                if link.signed_in.is_some_and(|user| user != self.user) {
                    return Err(Refusal::OtherApprover);
                }
            }
        }
        if !self.active {
            return Err(Refusal::Deactivated);
        }
        if let Via::Link(Link { used_at: Some(at), .. }) = &self.via {
            return Err(Refusal::LinkUsed { at: *at });
        }
        Ok(())
    }
}

/// Who may decide `task` (`None`: the actor has no task in the approval), whatever its state.
///
/// First [`Actor::may_act`]. In the app, then: never the requester on their own request, and
/// only the approver the task asks (the person a delegate stands in for is not asked). By link:
/// the link decides for the approver it was sent to, not after their task was handed to
/// someone else. A requester is never sent a link (see [`approvers`]).
pub fn may_decide(actor: &Actor, requester: Uuid, task: Option<&Task>) -> Result<(), Refusal> {
    actor.may_act()?;
    match (&actor.via, task) {
        (Via::App, _) if actor.user == requester => Err(Refusal::OwnRequest),
        (Via::App, Some(t)) if t.approver == actor.user => Ok(()),
        (_, None) | (Via::App, Some(_)) => Err(Refusal::NotAsked),
        (Via::Link(_), Some(t)) if t.approver != actor.user => Err(Refusal::Closed(Closed::HandedOver)),
        (Via::Link(_), Some(_)) => Ok(()),
    }
}

/// What deciding `task` with `decision` now means, for someone [`may_decide`] allows.
///
/// A decided task keeps its decision: the same one again is a retry, anything else is refused.
/// In the app the same decision is a retry only while its step is open: once the chain moved
/// past that step, the answer says what was decided and when rather than `already_decided`,
/// which would read as a decision on the step open now. A link names one task, so opening it
/// again shows the decision it made. A task neither decided nor asked, or whose step or
/// approval closed, decides nothing ([`Closed::of`]). An expired link decides nothing, but it
/// still says how things stand.
pub fn judge(task: &Task, via: &Via, decision: Decision, now: Timestamp) -> Result<Verdict, Refusal> {
    if let Some(decided) = task.state.decision() {
        let retry = decided == decision
            && match via {
                Via::App => task.step == StepState::Open,
                Via::Link(_) => true,
            };
        return if retry { Ok(Verdict::AlreadyDecided) } else { Err(Refusal::Decided { decided }) };
    }
    if task.state != TaskState::Asked || task.step != StepState::Open || task.approval != ApprovalState::Pending {
        return Err(Refusal::Closed(Closed::of(task.state, task.step, task.approval)));
    }
    if let Via::Link(link) = via
        && expired(link, now)
    {
        return Err(Refusal::LinkExpired { at: link.expires_at });
    }
    Ok(Verdict::Record)
}

/// A link is good through the whole second it expires in (its expiry is in whole seconds).
fn expired(link: &Link, now: Timestamp) -> bool {
    link.expires_at.as_second() < now.as_second()
}

/// [`may_decide`], then [`judge`]: the one call every way of deciding makes.
pub fn decide(
    actor: &Actor,
    requester: Uuid,
    task: Option<&Task>,
    decision: Decision,
    now: Timestamp,
) -> Result<Verdict, Refusal> {
    may_decide(actor, requester, task)?;
    match task {
        Some(t) => judge(t, &actor.via, decision, now),
        None => Err(Refusal::NotAsked),
    }
}

/// Whether `decision` must say why: a rejection must (the requester sees it); an approval may.
pub fn needs_comment(decision: Decision) -> bool {
    decision == Decision::Reject
}

/// Someone a step's approver specs name, as found when the step opens (or is escalated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub user: Uuid,
    /// Their out-of-office delegate, while a delegation is in force.
    pub delegate: Option<Uuid>,
    /// Whether whoever would be asked (the delegate, if any) is active.
    pub active: bool,
}

/// Someone a step asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approver {
    pub user: Uuid,
    /// The person out of office they stand in for.
    pub on_behalf_of: Option<Uuid>,
}

/// Who a step asks, in the order its specs name them: a delegate instead of someone out of
/// office (on their behalf), nobody twice, only active people, and never the requester (who
/// cannot decide on their own request).
pub fn approvers(named: &[Named], requester: Uuid) -> Vec<Approver> {
    let mut out: Vec<Approver> = Vec::new();
    for n in named {
        let asked = match n.delegate {
            Some(d) => Approver { user: d, on_behalf_of: Some(n.user) },
            None => Approver { user: n.user, on_behalf_of: None },
        };
        if asked.user == requester || !n.active || out.iter().any(|a| a.user == asked.user) {
            continue;
        }
        out.push(asked);
    }
    out
}

/// How many of a step's tasks (in order) are asked when it opens: all of a parallel step's,
/// the first of a sequential one's (the next is asked when the one before decides).
pub fn asked_at_open(mode: Mode, tasks: usize) -> usize {
    match mode {
        Mode::Parallel => tasks,
        Mode::Sequential => tasks.min(1),
    }
}

/// Whether an email asking for (or reminding of) a decision goes to this task: only to someone
/// asked, in a step still open.
pub fn awaits_decision(task: TaskState, step: StepState) -> bool {
    task == TaskState::Asked && step == StepState::Open
}

/// How long a decision link sent at `now` stays valid when its step has no timeout.
pub const LINK_TTL: SignedDuration = SignedDuration::from_hours(14 * 24);

/// Until when a decision link sent at `now` may decide: an hour past its step's timeout, else
/// [`LINK_TTL`] from now.
pub fn link_expires_at(timeout_at: Option<Timestamp>, now: Timestamp) -> Timestamp {
    let (from, valid) = match timeout_at {
        Some(t) => (t, SignedDuration::from_hours(1)),
        None => (now, LINK_TTL),
    };
    from.checked_add(valid).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use ApprovalState as A;
    use Decision::{Approve, Reject};
    use StepState as S;
    use TaskState as T;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const ANN: u128 = 1;
    const BEN: u128 = 2;
    const REQUESTER: u128 = 9;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn task(state: TaskState, step: StepState, approval: ApprovalState) -> Task {
        Task { approver: id(ANN), state, step, approval }
    }

    fn asked() -> Task {
        task(T::Asked, S::Open, A::Pending)
    }

    fn in_app(user: u128) -> Actor {
        Actor { user: id(user), active: true, via: Via::App }
    }

    fn link() -> Link {
        Link { signed_in: None, used_at: None, expires_at: at(2_000) }
    }

    fn by_link(l: Link) -> Actor {
        Actor { user: id(ANN), active: true, via: Via::Link(l) }
    }

    fn decide_now(actor: &Actor, t: Option<&Task>, d: Decision) -> Result<Verdict, Refusal> {
        decide(actor, id(REQUESTER), t, d, at(1_000))
    }

    #[test]
    fn state_names_round_trip_and_unknown_ones_are_refused() {
        for t in [T::Waiting, T::Asked, T::Approved, T::Rejected, T::Superseded, T::Withdrawn] {
            assert_eq!(t.as_str().parse::<TaskState>(), Ok(t));
        }
        for s in [S::Open, S::Approved, S::Rejected, S::Cancelled] {
            assert_eq!(s.to_string().parse::<StepState>(), Ok(s));
        }
        for a in [A::Pending, A::Approved, A::Rejected, A::Cancelled] {
            assert_eq!(a.as_str().parse::<ApprovalState>(), Ok(a));
        }
        let e = "decided".parse::<TaskState>().unwrap_err();
        assert_eq!(e.to_string(), "unknown task state `decided`");
    }

    #[test]
    fn an_asked_approver_in_an_open_step_records_either_decision() {
        for d in [Approve, Reject] {
            assert_eq!(decide_now(&in_app(ANN), Some(&asked()), d), Ok(Verdict::Record));
            assert_eq!(decide_now(&by_link(link()), Some(&asked()), d), Ok(Verdict::Record));
        }
    }

    #[test]
    fn a_deactivated_account_decides_nothing_in_the_app_or_by_link() {
        let app = Actor { active: false, ..in_app(ANN) };
        assert_eq!(decide_now(&app, Some(&asked()), Approve), Err(Refusal::Deactivated));
        let l = Actor { active: false, ..by_link(link()) };
        assert_eq!(decide_now(&l, Some(&asked()), Approve), Err(Refusal::Deactivated));
        assert_eq!(Refusal::Deactivated.to_string(), "your account is deactivated");
    }

    #[test]
    fn in_the_app_deactivation_is_refused_before_the_requester_and_not_asked() {
        let app = Actor { active: false, ..in_app(REQUESTER) };
        assert_eq!(decide_now(&app, None, Approve), Err(Refusal::Deactivated));
    }

    #[test]
    fn who_may_act_at_all_is_known_before_any_approval_is_looked_at() {
        assert_eq!(in_app(ANN).may_act(), Ok(()));
        assert_eq!(Actor { active: false, ..in_app(ANN) }.may_act(), Err(Refusal::Deactivated));
        let l = Link { used_at: Some(at(7)), ..link() };
        assert_eq!(by_link(l).may_act(), Err(Refusal::LinkUsed { at: at(7) }));
        let l = Link { signed_in: Some(id(BEN)), ..link() };
        assert_eq!(by_link(l).may_act(), Err(Refusal::OtherApprover));
    }

    #[test]
    fn the_requester_cannot_decide_their_own_request_even_when_asked() {
        let t = Task { approver: id(REQUESTER), ..asked() };
        let r = decide_now(&in_app(REQUESTER), Some(&t), Approve);
        assert_eq!(r, Err(Refusal::OwnRequest));
        assert_eq!(Refusal::OwnRequest.to_string(), "you cannot decide on your own request");
    }

    #[test]
    fn only_the_approver_a_task_asks_decides_it() {
        assert_eq!(decide_now(&in_app(BEN), None, Approve), Err(Refusal::NotAsked));
        // a task of someone else (the person a delegate stands in for is not its approver)
        assert_eq!(decide_now(&in_app(BEN), Some(&asked()), Approve), Err(Refusal::NotAsked));
        assert_eq!(Refusal::NotAsked.to_string(), "you are not asked to decide this approval");
    }

    #[test]
    fn a_link_opened_where_someone_else_is_signed_in_decides_nothing() {
        let l = Link { signed_in: Some(id(BEN)), ..link() };
        assert_eq!(decide_now(&by_link(l), Some(&asked()), Approve), Err(Refusal::OtherApprover));
        // its own approver signed in is fine
        let l = Link { signed_in: Some(id(ANN)), ..link() };
        assert_eq!(decide_now(&by_link(l), Some(&asked()), Approve), Ok(Verdict::Record));
    }

    #[test]
    fn a_link_refuses_someone_else_signed_in_before_deactivation_and_use() {
        let l = Link { signed_in: Some(id(BEN)), used_at: Some(at(5)), ..link() };
        let actor = Actor { active: false, ..by_link(l) };
        assert_eq!(decide_now(&actor, Some(&asked()), Approve), Err(Refusal::OtherApprover));
        let l = Link { used_at: Some(at(5)), ..link() };
        let actor = Actor { active: false, ..by_link(l) };
        assert_eq!(decide_now(&actor, Some(&asked()), Approve), Err(Refusal::Deactivated));
    }

    #[test]
    fn a_link_decides_once() {
        let l = Link { used_at: Some(at(900)), ..link() };
        let decided = task(T::Approved, S::Open, A::Pending);
        assert_eq!(decide_now(&by_link(l), Some(&decided), Approve), Err(Refusal::LinkUsed { at: at(900) }));
    }

    #[test]
    fn a_link_to_a_task_handed_to_someone_else_is_closed() {
        let t = Task { approver: id(BEN), ..asked() };
        let r = decide_now(&by_link(link()), Some(&t), Approve);
        assert_eq!(r, Err(Refusal::Closed(Closed::HandedOver)));
        assert_eq!(Closed::HandedOver.to_string(), "this task was handed to another approver");
    }

    #[test]
    fn the_same_decision_again_in_an_open_step_is_a_retry() {
        let approved = task(T::Approved, S::Open, A::Pending);
        let rejected = task(T::Rejected, S::Open, A::Pending);
        assert_eq!(decide_now(&in_app(ANN), Some(&approved), Approve), Ok(Verdict::AlreadyDecided));
        assert_eq!(decide_now(&in_app(ANN), Some(&rejected), Reject), Ok(Verdict::AlreadyDecided));
        assert_eq!(decide_now(&by_link(link()), Some(&rejected), Reject), Ok(Verdict::AlreadyDecided));
    }

    #[test]
    fn a_decision_cannot_be_changed() {
        let approved = task(T::Approved, S::Open, A::Pending);
        let want = Err(Refusal::Decided { decided: Approve });
        assert_eq!(decide_now(&in_app(ANN), Some(&approved), Reject), want);
        assert_eq!(decide_now(&by_link(link()), Some(&approved), Reject), want);
    }

    #[test]
    fn in_the_app_the_same_decision_in_a_step_since_closed_says_what_was_decided() {
        let past = task(T::Approved, S::Approved, A::Pending);
        let r = decide_now(&in_app(ANN), Some(&past), Approve);
        assert_eq!(r, Err(Refusal::Decided { decided: Approve }));
    }

    #[test]
    fn a_link_shows_its_decision_again_whatever_became_of_the_step() {
        let past = task(T::Approved, S::Approved, A::Approved);
        assert_eq!(decide_now(&by_link(link()), Some(&past), Approve), Ok(Verdict::AlreadyDecided));
        // even once expired: the decision stands and the link says so
        let expired = Link { expires_at: at(10), ..link() };
        assert_eq!(decide_now(&by_link(expired), Some(&past), Approve), Ok(Verdict::AlreadyDecided));
    }

    #[test]
    fn a_closed_step_or_approval_decides_nothing() {
        let cases = [
            (task(T::Asked, S::Open, A::Cancelled), Closed::Cancelled),
            (task(T::Superseded, S::Cancelled, A::Cancelled), Closed::Cancelled),
            (task(T::Superseded, S::Open, A::Pending), Closed::Escalated),
            (task(T::Waiting, S::Open, A::Pending), Closed::NotYourTurn),
            (task(T::Superseded, S::Approved, A::Pending), Closed::StepSettled(S::Approved)),
            (task(T::Asked, S::Rejected, A::Rejected), Closed::StepSettled(S::Rejected)),
            (task(T::Asked, S::Cancelled, A::Rejected), Closed::Approval(A::Rejected)),
            (task(T::Asked, S::Open, A::Approved), Closed::Approval(A::Approved)),
            // a withdrawn task in a step still open: as it always said
            (task(T::Withdrawn, S::Open, A::Pending), Closed::Approval(A::Pending)),
        ];
        for (t, why) in cases {
            for actor in [in_app(ANN), by_link(link())] {
                assert_eq!(decide_now(&actor, Some(&t), Approve), Err(Refusal::Closed(why)), "{t:?}");
            }
        }
    }

    #[test]
    fn closed_reasons_read_as_the_app_and_pages_say_them() {
        let said = [
            (
                Closed::Cancelled,
                "this approval was cancelled (the ticket was cancelled or sent back): nothing is left to decide",
            ),
            (
                Closed::Escalated,
                "the step was escalated to someone else after its timeout: your decision is no longer needed",
            ),
            (Closed::NotYourTurn, "it is not your turn yet: this step asks its approvers one by one"),
            (Closed::StepSettled(S::Rejected), "this step was already rejected without your decision"),
            (Closed::Approval(A::Approved), "this approval is already approved"),
        ];
        for (closed, text) in said {
            assert_eq!(closed.to_string(), text);
            assert_eq!(Refusal::Closed(closed).to_string(), text);
        }
    }

    #[test]
    fn an_expired_link_decides_nothing_but_closed_comes_first() {
        let l = Link { expires_at: at(999), ..link() };
        let r = decide_now(&by_link(l.clone()), Some(&asked()), Approve);
        assert_eq!(r, Err(Refusal::LinkExpired { at: at(999) }));
        let closed = task(T::Asked, S::Approved, A::Approved);
        let r = decide_now(&by_link(l), Some(&closed), Approve);
        assert_eq!(r, Err(Refusal::Closed(Closed::StepSettled(S::Approved))));
    }

    #[test]
    fn a_link_is_good_through_the_second_it_expires_in() {
        let now = at(1_000).checked_add(SignedDuration::from_millis(999)).unwrap();
        let l = Link { expires_at: at(1_000), ..link() };
        assert_eq!(judge(&asked(), &Via::Link(l.clone()), Approve, now), Ok(Verdict::Record));
        let later = at(1_001);
        assert_eq!(judge(&asked(), &Via::Link(l), Approve, later), Err(Refusal::LinkExpired { at: at(1_000) }));
    }

    #[test]
    fn the_app_has_no_expiry() {
        assert_eq!(judge(&asked(), &Via::App, Approve, Timestamp::MAX), Ok(Verdict::Record));
    }

    #[test]
    fn a_decision_is_recorded_as_coming_from_the_app_or_email() {
        assert_eq!(Via::App.as_str(), "app");
        assert_eq!(Via::Link(link()).as_str(), "email");
    }

    #[test]
    fn a_rejection_needs_a_comment_an_approval_does_not() {
        assert!(needs_comment(Reject));
        assert!(!needs_comment(Approve));
    }

    fn named(user: u128, delegate: Option<u128>, active: bool) -> Named {
        Named { user: id(user), delegate: delegate.map(id), active }
    }

    #[test]
    fn a_step_asks_each_active_person_once_never_the_requester() {
        let got = approvers(
            &[
                named(ANN, None, true),
                named(REQUESTER, None, true),
                named(BEN, None, false),
                named(ANN, None, true),
                named(3, None, true),
            ],
            id(REQUESTER),
        );
        let want = vec![Approver { user: id(ANN), on_behalf_of: None }, Approver { user: id(3), on_behalf_of: None }];
        assert_eq!(got, want);
    }

    #[test]
    fn a_delegate_is_asked_on_behalf_of_someone_out_of_office() {
        // Ben is out; Cat stands in (once, even if named herself later); a delegate who is the
        // requester is not asked
        let got = approvers(
            &[named(BEN, Some(3), true), named(3, None, true), named(ANN, Some(REQUESTER), true)],
            id(REQUESTER),
        );
        assert_eq!(got, vec![Approver { user: id(3), on_behalf_of: Some(id(BEN)) }]);
        // an inactive delegate is not asked (whether the person they stand in for is active)
        assert!(approvers(&[named(BEN, Some(3), false)], id(REQUESTER)).is_empty());
    }

    #[test]
    fn a_parallel_step_asks_everyone_at_once_a_sequential_one_the_first() {
        assert_eq!(asked_at_open(Mode::Parallel, 3), 3);
        assert_eq!(asked_at_open(Mode::Sequential, 3), 1);
        assert_eq!(asked_at_open(Mode::Sequential, 0), 0);
    }

    #[test]
    fn emails_go_only_to_those_asked_in_an_open_step() {
        assert!(awaits_decision(T::Asked, S::Open));
        for t in [T::Waiting, T::Approved, T::Rejected, T::Superseded, T::Withdrawn] {
            assert!(!awaits_decision(t, S::Open), "{t}");
        }
        for s in [S::Approved, S::Rejected, S::Cancelled] {
            assert!(!awaits_decision(T::Asked, s), "{s}");
        }
    }

    #[test]
    fn a_link_lasts_an_hour_past_the_timeout_else_two_weeks() {
        assert_eq!(link_expires_at(Some(at(10_000)), at(5)), at(13_600));
        assert_eq!(link_expires_at(None, at(5)), at(5 + 14 * 24 * 3600));
        assert_eq!(link_expires_at(Some(Timestamp::MAX), at(5)), Timestamp::MAX);
    }

    #[test]
    fn an_outcome_closes_a_step_and_an_approval_in_its_state() {
        let reason = String::new;
        assert_eq!(StepState::from(&Outcome::Approved { reason: reason() }), S::Approved);
        assert_eq!(StepState::from(&Outcome::Rejected { reason: reason() }), S::Rejected);
        assert_eq!(ApprovalState::from(&Outcome::Cancelled { reason: reason() }), A::Cancelled);
        assert_eq!(ApprovalState::from(&Outcome::Approved { reason: reason() }).as_str(), "approved");
    }
}
