//! Ticket commands: opening a ticket, changing one, commenting on one and moving one on after
//! its approval.
//!
//! Each rule about a ticket change lives here once: who may change what (requester rights,
//! the permissions a field needs), the state machine with its approval-only steps, the status
//! side effects (`resolved_at`, `closed_at`), the priority matrix and its override, when a
//! change's type and risk are settled, and what a change sets off (signals to the workflow,
//! approvals started or cancelled). A command reads a [`Ticket`] and answers with a
//! [`Decision`] or a [`Refusal`]; `archer_store::changes` persists the decision. `now` is an
//! argument.

use jiff::Timestamp;
use uuid::Uuid;

use crate::access::{Permission, Permissions};
use crate::approval::Outcome;
use crate::catalog::{ChangeType, Risk};
use crate::{Impact, Priority, Status, TicketKind, TransitionError, Urgency};

/// A ticket as the rules see it: the fields a command reads or changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub kind: TicketKind,
    pub status: Status,
    pub title: String,
    pub description: String,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub impact: Impact,
    pub urgency: Urgency,
    pub priority: Priority,
    /// Why the priority is not the matrix's; `None` while it is derived.
    pub priority_reason: Option<String>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    /// Changes only.
    pub change_type: Option<ChangeType>,
    /// Changes only.
    pub risk: Option<Risk>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

/// Who asks for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorId {
    /// A person, through the API (or a portal).
    User(Uuid),
    /// Archer itself: a workflow, an escalation, a playbook.
    System,
}

/// Who asks for a change, with the permissions they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: ActorId,
    pub permissions: Permissions,
}

impl Actor {
    pub fn user(id: Uuid, permissions: Permissions) -> Self {
        Actor { id: ActorId::User(id), permissions }
    }

    /// Archer itself, which works tickets (every permission): what it does was configured by
    /// someone who had the right to (a playbook, an escalation rule, an approval chain).
    pub fn system() -> Self {
        Actor { id: ActorId::System, permissions: Permissions::new(Permission::ALL.to_vec()) }
    }

    /// The person acting, if it is one (events and comments name them).
    pub fn user_id(&self) -> Option<Uuid> {
        match self.id {
            ActorId::User(id) => Some(id),
            ActorId::System => None,
        }
    }

    /// Whether the actor works tickets (sees and may change all of them) rather than
    /// following their own.
    pub fn works_tickets(&self) -> bool {
        self.permissions.has(Permission::TicketUpdate)
    }

    fn need(&self, permission: Permission) -> Result<(), Refusal> {
        if self.permissions.has(permission) { Ok(()) } else { Err(Refusal::Needs(permission)) }
    }

    fn is(&self, user: Uuid) -> bool {
        self.user_id() == Some(user)
    }
}

/// A priority set by hand instead of derived from impact × urgency, with the reason it must
/// carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityOverride {
    priority: Priority,
    reason: String,
}

impl PriorityOverride {
    /// `None` when `reason` is blank: an override always says why.
    pub fn new(priority: Priority, reason: &str) -> Option<Self> {
        let reason = reason.trim();
        (!reason.is_empty()).then(|| PriorityOverride { priority, reason: reason.to_owned() })
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// One failing field of a command: where (a JSON pointer into the request), a stable code and
/// the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: &'static str,
    pub code: &'static str,
    pub detail: &'static str,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The actor lacks a permission the command needs.
    #[error("this needs the {0} permission")]
    Needs(Permission),
    /// The command's fields do not fit the ticket.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
    /// The kind's state machine does not allow the move.
    #[error(transparent)]
    IllegalTransition(TransitionError),
    /// The state machine allows the move, but only an approval makes it.
    #[error("{}", approval_only_detail(.kind, .from, .to))]
    ApprovalOnly { kind: TicketKind, from: Status, to: Status, allowed: Vec<Status> },
    /// A change's type and risk are settled once it is past assessment.
    #[error("a change's type and risk are settled once it is {status}: send it back to assess first")]
    ChangeSettled { status: Status },
    /// Closed, cancelled and rejected tickets take no comments.
    #[error("the ticket is closed; open a new one")]
    Closed,
}

fn approval_only_detail(kind: &TicketKind, from: &Status, to: &Status) -> String {
    let hint = if matches!(*from, Status::Authorize | Status::PendingApproval) {
        "decide the approval (POST /api/v1/approvals/{id}/approve or reject)"
    } else {
        "requests from the catalog wait for theirs"
    };
    format!("only its approval moves a {kind} from {from} to {to}; {hint}")
}

/// A change the ticket's workflow hears about (one signal each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Status { from: Status, to: Status },
    Priority { from: Priority, to: Priority, reason: Option<String> },
    Assignment { assignee_id: Option<Uuid>, team_id: Option<Uuid> },
}

/// What a decided change sets off besides the ticket's own row and signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// The ticket left the status its approval waits in: the pending approval is cancelled,
    /// for this reason.
    CancelPendingApproval { reason: String },
    /// A change entered authorization: its approval starts, routed by its type.
    StartChangeApproval(ChangeType),
    /// A public note from Archer itself (no author), e.g. why an approval moved the ticket.
    Note(String),
}

/// What a command decided: the ticket as it is now, the signals its workflow gets (in order),
/// what else happens, and whether anything changed at all (nothing to save otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ticket: Ticket,
    pub events: Vec<Event>,
    pub follow_ups: Vec<FollowUp>,
    pub changed: bool,
}

/// The edits one change asks for; `None` leaves a field as it is. For the nullable fields,
/// `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketChange {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<Status>,
    /// Changing impact or urgency without an override derives the priority again (and
    /// clears an override).
    pub impact: Option<Impact>,
    pub urgency: Option<Urgency>,
    pub priority: Option<PriorityOverride>,
    pub assignee_id: Option<Option<Uuid>>,
    pub team_id: Option<Option<Uuid>>,
    pub category: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub change_type: Option<ChangeType>,
    pub risk: Option<Risk>,
}

impl TicketChange {
    /// The permissions the change needs whatever the ticket: assignment needs
    /// `ticket:assign`; impact, urgency, priority, category, tags, type and risk need
    /// `ticket:update`. (Title, description and status depend on the ticket: see
    /// [`Ticket::apply`].) The API checks this before it reads the ticket.
    pub fn authorize(&self, actor: &Actor) -> Result<(), Refusal> {
        if self.assignee_id.is_some() || self.team_id.is_some() {
            actor.need(Permission::TicketAssign)?;
        }
        if self.impact.is_some()
            || self.urgency.is_some()
            || self.priority.is_some()
            || self.category.is_some()
            || self.tags.is_some()
            || self.change_type.is_some()
            || self.risk.is_some()
        {
            actor.need(Permission::TicketUpdate)?;
        }
        Ok(())
    }
}

/// What a requester may do to their own ticket without `ticket:update`: close or reopen it
/// once resolved, cancel it before work starts. Nothing on changes, problems and tasks, which
/// those working tickets move (a task's requester is its parent's, who did not ask for it).
pub fn requester_may(kind: TicketKind, from: Status, to: Status) -> bool {
    match kind {
        TicketKind::Incident | TicketKind::ServiceRequest => matches!(
            (from, to),
            (Status::Resolved, Status::Closed)
                | (Status::Resolved, Status::InProgress)
                | (Status::New, Status::Cancelled)
                | (Status::PendingApproval, Status::Cancelled)
        ),
        _ => false,
    }
}

/// Changes carry a type and a risk; other kinds carry neither. (Opening a ticket checks both
/// ways; a change to an existing ticket can only send them where they do not belong.)
pub fn change_fields(kind: TicketKind, change_type: bool, risk: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut add = |pointer, code, detail| errors.push(FieldError { pointer, code, detail });
    if kind == TicketKind::Change {
        if !change_type {
            add("/change_type", "required", "a change is standard, normal or emergency");
        }
        if !risk {
            add("/risk", "required", "a change's risk is low, medium or high");
        }
    } else {
        if change_type {
            add("/change_type", "kind", "only changes have a change type");
        }
        if risk {
            add("/risk", "kind", "only changes have a risk");
        }
    }
    errors
}

impl Ticket {
    /// Decides `change` asked by `actor` at `now`. Refusals come in a fixed order, so the
    /// answer is the same whatever else is wrong: the change's permissions, the right to edit
    /// the text, type and risk (misplaced, then settled), then the status move (requester
    /// rights, approval-only, the state machine, a change's type before authorization).
    pub fn apply(&self, change: &TicketChange, actor: &Actor, now: Timestamp) -> Result<Decision, Refusal> {
        change.authorize(actor)?;
        if (change.title.is_some() || change.description.is_some())
            && !actor.works_tickets()
            && !actor.is(self.requester_id)
        {
            return Err(Refusal::Needs(Permission::TicketUpdate));
        }
        let mut next = self.clone();
        self.set_change_fields(change, &mut next)?;
        let mut events = Vec::new();
        let mut follow_ups = Vec::new();
        if let Some(to) = change.status.filter(|s| *s != self.status) {
            self.authorize_move(to, actor)?;
            if matches!(self.status, Status::Authorize | Status::PendingApproval) {
                let reason = format!("the ticket moved from {} to {to} before its approval ended", self.status);
                follow_ups.push(FollowUp::CancelPendingApproval { reason });
            } else if to.is_terminal() {
                // an approval a playbook step asked for ends with the ticket
                follow_ups.push(FollowUp::CancelPendingApproval { reason: format!("the ticket was {to}") });
            }
            if self.kind == TicketKind::Change && to == Status::Authorize {
                let change_type = next.change_type.ok_or(Refusal::Invalid(vec![FieldError {
                    pointer: "/change_type",
                    code: "required",
                    detail: "a change needs a type before authorization",
                }]))?;
                follow_ups.push(FollowUp::StartChangeApproval(change_type));
            }
            next.enter(to, now);
            events.push(Event::Status { from: self.status, to });
        }
        next.edit(change);
        if next.priority != self.priority {
            events.push(Event::Priority {
                from: self.priority,
                to: next.priority,
                reason: next.priority_reason.clone(),
            });
        }
        if next.assignee_id != self.assignee_id || next.team_id != self.team_id {
            events.push(Event::Assignment { assignee_id: next.assignee_id, team_id: next.team_id });
        }
        let changed = next != *self;
        Ok(Decision { ticket: next, events, follow_ups, changed })
    }

    /// Type and risk: only on changes, and only until they are authorized.
    fn set_change_fields(&self, change: &TicketChange, next: &mut Ticket) -> Result<(), Refusal> {
        if (change.change_type.is_some() || change.risk.is_some()) && self.kind != TicketKind::Change {
            return Err(Refusal::Invalid(change_fields(
                self.kind,
                change.change_type.is_some(),
                change.risk.is_some(),
            )));
        }
        let moves = change.change_type.is_some_and(|t| self.change_type != Some(t))
            || change.risk.is_some_and(|r| self.risk != Some(r));
        if moves && !matches!(self.status, Status::New | Status::Assess) {
            return Err(Refusal::ChangeSettled { status: self.status });
        }
        next.change_type = change.change_type.or(self.change_type);
        next.risk = change.risk.or(self.risk);
        Ok(())
    }

    /// Whether `actor` may move the ticket to `to` by hand.
    fn authorize_move(&self, to: Status, actor: &Actor) -> Result<(), Refusal> {
        let (kind, from) = (self.kind, self.status);
        if !actor.works_tickets() && !requester_may(kind, from, to) {
            return Err(Refusal::Needs(Permission::TicketUpdate));
        }
        if Status::approval_only(kind, from, to) {
            let allowed =
                from.allowed_next(kind).iter().copied().filter(|s| !Status::approval_only(kind, from, *s)).collect();
            return Err(Refusal::ApprovalOnly { kind, from, to, allowed });
        }
        from.transition(kind, to).map(|_| ()).map_err(Refusal::IllegalTransition)
    }

    /// The status side effects: resolving stamps `resolved_at`, reopening clears it, a
    /// terminal status stamps `closed_at`.
    fn enter(&mut self, to: Status, now: Timestamp) {
        let from = self.status;
        self.status = to;
        if to == Status::Resolved {
            self.resolved_at = Some(now);
        } else if from.is_reopen(to) {
            self.resolved_at = None;
        }
        if to.is_terminal() {
            self.closed_at = Some(now);
        }
    }

    /// The plain edits, and the priority they imply.
    fn edit(&mut self, change: &TicketChange) {
        if let Some(t) = &change.title {
            self.title.clone_from(t);
        }
        if let Some(d) = &change.description {
            self.description.clone_from(d);
        }
        self.impact = change.impact.unwrap_or(self.impact);
        self.urgency = change.urgency.unwrap_or(self.urgency);
        match &change.priority {
            Some(o) => {
                self.priority = o.priority;
                self.priority_reason = Some(o.reason.clone());
            }
            None if change.impact.is_some() || change.urgency.is_some() => {
                self.priority = Priority::derive(self.impact, self.urgency);
                self.priority_reason = None;
            }
            None => {}
        }
        if let Some(a) = change.assignee_id {
            self.assignee_id = a;
        }
        if let Some(t) = change.team_id {
            self.team_id = t;
        }
        if let Some(c) = &change.category {
            self.category.clone_from(c);
        }
        if let Some(t) = &change.tags {
            self.tags.clone_from(t);
        }
    }

    /// Moves the ticket on after its approval ended with `outcome`: to `route.on_approved` or
    /// `route.on_rejected`, with a note saying why. `None` when there is nothing to do: the
    /// approval was cancelled, or the ticket no longer waits in `route.waiting_in` (it was
    /// moved by hand, or a retry finds it moved already).
    pub fn after_approval(
        &self,
        route: ApprovalRoute,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<Option<Decision>, Refusal> {
        let (to, note) = match outcome {
            Outcome::Approved { reason } => (route.on_approved, format!("Approved: {reason}.")),
            Outcome::Rejected { reason } => (route.on_rejected, format!("Rejected: {reason}.")),
            Outcome::Cancelled { .. } => return Ok(None),
        };
        if self.status != route.waiting_in {
            return Ok(None);
        }
        self.status.transition(self.kind, to).map_err(Refusal::IllegalTransition)?;
        let mut next = self.clone();
        next.enter(to, now);
        Ok(Some(Decision {
            ticket: next,
            events: vec![Event::Status { from: self.status, to }],
            follow_ups: vec![FollowUp::Note(note)],
            changed: true,
        }))
    }

    /// Who a comment by `actor` speaks for, or why it may not be written.
    pub fn comment(&self, comment: &NewComment, actor: &Actor) -> Result<Voice, Refusal> {
        comment.authorize(actor)?;
        if self.status.is_terminal() {
            return Err(Refusal::Closed);
        }
        Ok(if actor.is(self.requester_id) || !actor.works_tickets() { Voice::Customer } else { Voice::Agent })
    }
}

/// Where an approval leaves its ticket: the status it waits in, and where each outcome moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRoute {
    pub waiting_in: Status,
    pub on_approved: Status,
    pub on_rejected: Status,
}

/// A comment to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewComment {
    /// Internal notes are never shown to the requester.
    pub internal: bool,
}

impl NewComment {
    /// What the comment needs whatever the ticket: an internal note needs `ticket:update`.
    pub fn authorize(&self, actor: &Actor) -> Result<(), Refusal> {
        if self.internal { actor.need(Permission::TicketUpdate) } else { Ok(()) }
    }
}

/// Whose side a comment speaks for, as SLA clocks care (a reply by the customer or by those
/// working the ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    Customer,
    Agent,
}

/// A ticket to open; the requester defaults to the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub kind: TicketKind,
    pub title: String,
    pub description: String,
    pub impact: Impact,
    pub urgency: Urgency,
    /// Instead of the matrix's priority; needs `ticket:update`.
    pub priority: Option<PriorityOverride>,
    /// On whose behalf; someone else than the actor needs `ticket:update`.
    pub requester_id: Option<Uuid>,
    /// Needs `ticket:assign`.
    pub assignee_id: Option<Uuid>,
    /// Needs `ticket:assign`.
    pub team_id: Option<Uuid>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub change_type: Option<ChangeType>,
    pub risk: Option<Risk>,
}

impl NewTicket {
    /// A catalog request: a service request its requester opens at medium impact and urgency
    /// (the matrix gives its priority), filed under `service_request`. It opens waiting for
    /// approval when its item has an approval chain, whose outcome moves it on.
    pub fn catalog_request(
        title: String,
        description: String,
        needs_approval: bool,
        actor: &Actor,
    ) -> Result<Ticket, Refusal> {
        let request = NewTicket {
            kind: TicketKind::ServiceRequest,
            title,
            description,
            impact: Impact::MEDIUM,
            urgency: Urgency::MEDIUM,
            priority: None,
            requester_id: None,
            assignee_id: None,
            team_id: None,
            category: Some("service_request".into()),
            tags: Vec::new(),
            change_type: None,
            risk: None,
        };
        let mut ticket = request.open(actor)?;
        if needs_approval {
            ticket.status = Status::PendingApproval;
        }
        Ok(ticket)
    }

    /// Decides opening the ticket: it starts `new`, its priority derived from impact ×
    /// urgency unless overridden. Refusals in order: opening at all (`ticket:create`), a task
    /// (`ticket:update` as well: tasks are work handed between those who work tickets, not
    /// something a requester asks for), type and risk for the kind, the override, the
    /// assignment, the requester.
    pub fn open(self, actor: &Actor) -> Result<Ticket, Refusal> {
        actor.need(Permission::TicketCreate)?;
        if self.kind == TicketKind::Task {
            actor.need(Permission::TicketUpdate)?;
        }
        let misplaced = change_fields(self.kind, self.change_type.is_some(), self.risk.is_some());
        if !misplaced.is_empty() {
            return Err(Refusal::Invalid(misplaced));
        }
        if self.priority.is_some() {
            actor.need(Permission::TicketUpdate)?;
        }
        if self.assignee_id.is_some() || self.team_id.is_some() {
            actor.need(Permission::TicketAssign)?;
        }
        let requester_id = match self.requester_id {
            Some(r) if !actor.is(r) => {
                actor.need(Permission::TicketUpdate)?;
                r
            }
            Some(r) => r,
            None => actor.user_id().ok_or(Refusal::Invalid(vec![FieldError {
                pointer: "/requester_id",
                code: "required",
                detail: "a ticket Archer opens itself names its requester",
            }]))?,
        };
        let (priority, priority_reason) = match self.priority {
            Some(o) => (o.priority, Some(o.reason)),
            None => (Priority::derive(self.impact, self.urgency), None),
        };
        Ok(Ticket {
            kind: self.kind,
            status: Status::New,
            title: self.title,
            description: self.description,
            requester_id,
            assignee_id: self.assignee_id,
            team_id: self.team_id,
            impact: self.impact,
            urgency: self.urgency,
            priority,
            priority_reason,
            category: self.category,
            tags: self.tags,
            change_type: self.change_type,
            risk: self.risk,
            resolved_at: None,
            closed_at: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    const REQUESTER: Uuid = Uuid::from_u128(1);
    const AGENT: Uuid = Uuid::from_u128(2);

    fn requester() -> Actor {
        Actor::user(REQUESTER, Permissions::new(vec![Permission::TicketCreate]))
    }

    fn agent() -> Actor {
        Actor::user(
            AGENT,
            Permissions::new(vec![Permission::TicketCreate, Permission::TicketUpdate, Permission::TicketAssign]),
        )
    }

    fn level(v: i64) -> (Impact, Urgency) {
        (Impact::new(v).unwrap(), Urgency::new(v).unwrap())
    }

    fn ticket(kind: TicketKind, status: Status) -> Ticket {
        let (impact, urgency) = level(3);
        Ticket {
            kind,
            status,
            title: "Printer jams".into(),
            description: String::new(),
            requester_id: REQUESTER,
            assignee_id: None,
            team_id: None,
            impact,
            urgency,
            priority: Priority::derive(impact, urgency),
            priority_reason: None,
            category: None,
            tags: Vec::new(),
            change_type: (kind == TicketKind::Change).then_some(ChangeType::Normal),
            risk: (kind == TicketKind::Change).then_some(Risk::Medium),
            resolved_at: None,
            closed_at: None,
        }
    }

    fn to(status: Status) -> TicketChange {
        TicketChange { status: Some(status), ..TicketChange::default() }
    }

    #[test]
    fn requesters_may_only_close_reopen_or_cancel_their_own() {
        let resolved = ticket(TicketKind::Incident, Status::Resolved);
        assert!(resolved.apply(&to(Status::Closed), &requester(), at(0)).is_ok());
        assert!(resolved.apply(&to(Status::InProgress), &requester(), at(0)).is_ok());
        assert!(ticket(TicketKind::Incident, Status::New).apply(&to(Status::Cancelled), &requester(), at(0)).is_ok());
        assert_eq!(
            ticket(TicketKind::Incident, Status::New).apply(&to(Status::Resolved), &requester(), at(0)),
            Err(Refusal::Needs(Permission::TicketUpdate))
        );
        assert!(!requester_may(TicketKind::Change, Status::New, Status::Cancelled));
        // their own text, yes; someone else's, no
        let retitle = TicketChange { title: Some("Printer on fire".into()), ..TicketChange::default() };
        assert!(resolved.apply(&retitle, &requester(), at(0)).unwrap().changed);
        let stranger = Actor::user(Uuid::from_u128(9), requester().permissions);
        assert_eq!(resolved.apply(&retitle, &stranger, at(0)), Err(Refusal::Needs(Permission::TicketUpdate)));
    }

    #[test]
    fn fields_need_their_permissions_before_anything_else() {
        let t = ticket(TicketKind::Incident, Status::New);
        let assign =
            TicketChange { assignee_id: Some(Some(AGENT)), status: Some(Status::Closed), ..Default::default() };
        assert_eq!(t.apply(&assign, &requester(), at(0)), Err(Refusal::Needs(Permission::TicketAssign)));
        let tag = TicketChange { tags: Some(vec!["x".into()]), ..Default::default() };
        assert_eq!(tag.authorize(&requester()), Err(Refusal::Needs(Permission::TicketUpdate)));
        assert_eq!(tag.authorize(&agent()), Ok(()));
    }

    #[test]
    fn status_side_effects_stamp_and_clear_the_instants() {
        let t = ticket(TicketKind::Incident, Status::InProgress);
        let resolved = t.apply(&to(Status::Resolved), &agent(), at(10)).unwrap().ticket;
        assert_eq!((resolved.resolved_at, resolved.closed_at), (Some(at(10)), None));
        let reopened = resolved.apply(&to(Status::InProgress), &agent(), at(20)).unwrap().ticket;
        assert_eq!((reopened.resolved_at, reopened.closed_at), (None, None));
        let closed = resolved.apply(&to(Status::Closed), &agent(), at(30)).unwrap().ticket;
        assert_eq!((closed.resolved_at, closed.closed_at), (Some(at(10)), Some(at(30))));
        let cancelled = t.apply(&to(Status::Cancelled), &agent(), at(40)).unwrap().ticket;
        assert_eq!(cancelled.closed_at, Some(at(40)));
    }

    #[test]
    fn an_illegal_move_lists_the_allowed_ones() {
        let t = ticket(TicketKind::Incident, Status::New);
        let Err(Refusal::IllegalTransition(e)) = t.apply(&to(Status::Closed), &agent(), at(0)) else { panic!() };
        assert_eq!(e.allowed, vec![Status::InProgress, Status::WaitingOnCustomer, Status::Resolved, Status::Cancelled]);
    }

    #[test]
    fn priority_is_derived_unless_overridden_with_a_reason() {
        let t = ticket(TicketKind::Incident, Status::New);
        let (impact, urgency) = level(1);
        let raise = TicketChange { impact: Some(impact), urgency: Some(urgency), ..Default::default() };
        let d = t.apply(&raise, &agent(), at(0)).unwrap();
        assert_eq!(d.ticket.priority, Priority::P1);
        assert_eq!(d.events, vec![Event::Priority { from: t.priority, to: Priority::P1, reason: None }]);

        assert_eq!(PriorityOverride::new(Priority::P4, "  "), None);
        let pin = PriorityOverride::new(Priority::P4, " the CEO's printer ").unwrap();
        let o = TicketChange { priority: Some(pin), ..raise.clone() };
        let pinned = t.apply(&o, &agent(), at(0)).unwrap().ticket;
        assert_eq!((pinned.priority, pinned.priority_reason.as_deref()), (Priority::P4, Some("the CEO's printer")));
        // changing impact again derives it again and drops the override
        let again = pinned.apply(&TicketChange { impact: Some(level(2).0), ..Default::default() }, &agent(), at(0));
        let again = again.unwrap().ticket;
        assert_eq!((again.priority, again.priority_reason), (Priority::derive(level(2).0, level(1).1), None));
    }

    #[test]
    fn an_edit_that_changes_nothing_is_no_change() {
        let t = ticket(TicketKind::Incident, Status::New);
        let same = TicketChange { title: Some(t.title.clone()), status: Some(Status::New), ..Default::default() };
        let d = t.apply(&same, &agent(), at(0)).unwrap();
        assert!(!d.changed && d.events.is_empty() && d.follow_ups.is_empty());
        let assign = TicketChange { assignee_id: Some(Some(AGENT)), ..Default::default() };
        let d = t.apply(&assign, &agent(), at(0)).unwrap();
        assert_eq!(d.events, vec![Event::Assignment { assignee_id: Some(AGENT), team_id: None }]);
    }

    #[test]
    fn a_changes_type_and_risk_are_settled_after_assessment() {
        let retype = TicketChange { change_type: Some(ChangeType::Emergency), ..Default::default() };
        assert!(ticket(TicketKind::Change, Status::Assess).apply(&retype, &agent(), at(0)).is_ok());
        let scheduled = ticket(TicketKind::Change, Status::Scheduled);
        let refused = scheduled.apply(&retype, &agent(), at(0)).unwrap_err();
        assert_eq!(refused, Refusal::ChangeSettled { status: Status::Scheduled });
        assert_eq!(
            refused.to_string(),
            "a change's type and risk are settled once it is scheduled: send it back to assess first"
        );
        // restating the settled type is no change
        let same = TicketChange { change_type: Some(ChangeType::Normal), ..Default::default() };
        assert!(!scheduled.apply(&same, &agent(), at(0)).unwrap().changed);
        // other kinds have neither
        let both = TicketChange { change_type: Some(ChangeType::Normal), risk: Some(Risk::Low), ..Default::default() };
        let Err(Refusal::Invalid(errors)) = ticket(TicketKind::Incident, Status::New).apply(&both, &agent(), at(0))
        else {
            panic!()
        };
        assert_eq!(
            errors.iter().map(|e| (e.pointer, e.code)).collect::<Vec<_>>(),
            [("/change_type", "kind"), ("/risk", "kind")]
        );
    }

    #[test]
    fn approval_only_moves_are_refused_with_what_people_may_do() {
        let sr = ticket(TicketKind::ServiceRequest, Status::PendingApproval);
        let refused = sr.apply(&to(Status::InProgress), &agent(), at(0)).unwrap_err();
        let Refusal::ApprovalOnly { allowed, .. } = &refused else { panic!() };
        assert_eq!(allowed, &[Status::Cancelled]);
        assert_eq!(
            refused.to_string(),
            "only its approval moves a service_request from pending_approval to in_progress; decide the approval \
             (POST /api/v1/approvals/{id}/approve or reject)"
        );
        let new = ticket(TicketKind::ServiceRequest, Status::New);
        assert_eq!(
            new.apply(&to(Status::PendingApproval), &agent(), at(0)).unwrap_err().to_string(),
            "only its approval moves a service_request from new to pending_approval; requests from the catalog wait \
             for theirs"
        );
        let change = ticket(TicketKind::Change, Status::Authorize);
        let Err(Refusal::ApprovalOnly { allowed, .. }) = change.apply(&to(Status::Scheduled), &agent(), at(0)) else {
            panic!()
        };
        assert_eq!(allowed, [Status::Assess, Status::Cancelled]);
    }

    #[test]
    fn authorization_starts_the_changes_approval_and_leaving_it_cancels_it() {
        let assess = ticket(TicketKind::Change, Status::Assess);
        let d = assess.apply(&to(Status::Authorize), &agent(), at(0)).unwrap();
        assert_eq!(d.follow_ups, vec![FollowUp::StartChangeApproval(ChangeType::Normal)]);
        // the type may come with the move
        let untyped = Ticket { change_type: None, ..assess.clone() };
        let typed = TicketChange { change_type: Some(ChangeType::Standard), ..to(Status::Authorize) };
        let d = untyped.apply(&typed, &agent(), at(0)).unwrap();
        assert_eq!(d.follow_ups, vec![FollowUp::StartChangeApproval(ChangeType::Standard)]);
        let Err(Refusal::Invalid(errors)) = untyped.apply(&to(Status::Authorize), &agent(), at(0)) else { panic!() };
        assert_eq!(
            (errors[0].pointer, errors[0].detail),
            ("/change_type", "a change needs a type before authorization")
        );

        let back = ticket(TicketKind::Change, Status::Authorize).apply(&to(Status::Assess), &agent(), at(0)).unwrap();
        assert_eq!(
            back.follow_ups,
            vec![FollowUp::CancelPendingApproval {
                reason: "the ticket moved from authorize to assess before its approval ended".into()
            }]
        );
        let withdrawn = ticket(TicketKind::ServiceRequest, Status::PendingApproval);
        let d = withdrawn.apply(&to(Status::Cancelled), &requester(), at(5)).unwrap();
        assert_eq!(d.events, vec![Event::Status { from: Status::PendingApproval, to: Status::Cancelled }]);
        assert!(matches!(d.follow_ups[..], [FollowUp::CancelPendingApproval { .. }]));
        assert_eq!(d.ticket.closed_at, Some(at(5)));
    }

    #[test]
    fn an_approval_moves_only_a_ticket_still_waiting_for_it() {
        let route = ApprovalRoute {
            waiting_in: Status::Authorize,
            on_approved: Status::Scheduled,
            on_rejected: Status::Rejected,
        };
        let waiting = ticket(TicketKind::Change, Status::Authorize);
        let approved = Outcome::Approved { reason: "2 of 2 approved".into() };
        let d = waiting.after_approval(route, &approved, at(1)).unwrap().unwrap();
        assert_eq!(d.ticket.status, Status::Scheduled);
        assert_eq!(d.events, vec![Event::Status { from: Status::Authorize, to: Status::Scheduled }]);
        assert_eq!(d.follow_ups, vec![FollowUp::Note("Approved: 2 of 2 approved.".into())]);
        let rejected = Outcome::Rejected { reason: "too risky".into() };
        let d = waiting.after_approval(route, &rejected, at(2)).unwrap().unwrap();
        assert_eq!((d.ticket.status, d.ticket.closed_at), (Status::Rejected, Some(at(2))));
        // moved already (a retry), or cancelled: nothing to do
        assert_eq!(d.ticket.after_approval(route, &approved, at(3)), Ok(None));
        assert_eq!(waiting.after_approval(route, &Outcome::Cancelled { reason: "x".into() }, at(3)), Ok(None));
    }

    #[test]
    fn opening_derives_the_priority_and_checks_who_sets_what() {
        let (impact, urgency) = level(1);
        let new = NewTicket {
            kind: TicketKind::Incident,
            title: "Mail is down".into(),
            description: String::new(),
            impact,
            urgency,
            priority: None,
            requester_id: None,
            assignee_id: None,
            team_id: None,
            category: None,
            tags: Vec::new(),
            change_type: None,
            risk: None,
        };
        let t = new.clone().open(&requester()).unwrap();
        assert_eq!((t.status, t.priority, t.requester_id), (Status::New, Priority::P1, REQUESTER));
        let pinned = NewTicket { priority: PriorityOverride::new(Priority::P4, "test"), ..new.clone() };
        assert_eq!(pinned.clone().open(&requester()), Err(Refusal::Needs(Permission::TicketUpdate)));
        assert_eq!(pinned.open(&agent()).unwrap().priority_reason.as_deref(), Some("test"));
        let assigned = NewTicket { team_id: Some(Uuid::from_u128(7)), ..new.clone() };
        assert_eq!(assigned.open(&requester()), Err(Refusal::Needs(Permission::TicketAssign)));
        let on_behalf = NewTicket { requester_id: Some(AGENT), ..new.clone() };
        assert_eq!(on_behalf.clone().open(&requester()), Err(Refusal::Needs(Permission::TicketUpdate)));
        assert_eq!(on_behalf.open(&Actor::system()).unwrap().requester_id, AGENT);
        assert!(matches!(new.clone().open(&Actor::system()), Err(Refusal::Invalid(_))));
        let untyped_change = NewTicket { kind: TicketKind::Change, ..new };
        let Err(Refusal::Invalid(errors)) = untyped_change.open(&agent()) else { panic!() };
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn tasks_are_opened_by_those_who_work_tickets_and_never_carry_change_fields() {
        let (impact, urgency) = level(3);
        let task = NewTicket {
            kind: TicketKind::Task,
            title: "Order a token".into(),
            description: String::new(),
            impact,
            urgency,
            priority: None,
            requester_id: None,
            assignee_id: None,
            team_id: None,
            category: None,
            tags: Vec::new(),
            change_type: None,
            risk: None,
        };
        assert_eq!(task.clone().open(&requester()), Err(Refusal::Needs(Permission::TicketUpdate)));
        let t = task.clone().open(&agent()).unwrap();
        assert_eq!((t.kind, t.status, t.requester_id), (TicketKind::Task, Status::New, AGENT));
        let for_parent = NewTicket { requester_id: Some(REQUESTER), ..task.clone() };
        assert_eq!(for_parent.open(&Actor::system()).unwrap().requester_id, REQUESTER);
        let typed = NewTicket { change_type: Some(ChangeType::Normal), risk: Some(Risk::Low), ..task };
        let Err(Refusal::Invalid(errors)) = typed.open(&agent()) else { panic!() };
        assert_eq!(
            errors.iter().map(|e| (e.pointer, e.code)).collect::<Vec<_>>(),
            [("/change_type", "kind"), ("/risk", "kind")]
        );
        // moved by those who work tickets: done is closed, with no resolution step
        let open = ticket(TicketKind::Task, Status::InProgress);
        assert_eq!(
            open.apply(&to(Status::Cancelled), &requester(), at(0)),
            Err(Refusal::Needs(Permission::TicketUpdate))
        );
        let done = open.apply(&to(Status::Closed), &agent(), at(5)).unwrap().ticket;
        assert_eq!((done.status, done.resolved_at, done.closed_at), (Status::Closed, None, Some(at(5))));
        assert!(matches!(open.apply(&to(Status::Resolved), &agent(), at(0)), Err(Refusal::IllegalTransition(_))));
        let retype = TicketChange { risk: Some(Risk::High), ..TicketChange::default() };
        assert!(matches!(open.apply(&retype, &agent(), at(0)), Err(Refusal::Invalid(_))));
    }

    #[test]
    fn comments_speak_for_a_side_and_closed_tickets_take_none() {
        let t = ticket(TicketKind::Incident, Status::InProgress);
        let public = NewComment { internal: false };
        assert_eq!(t.comment(&public, &requester()), Ok(Voice::Customer));
        assert_eq!(t.comment(&public, &agent()), Ok(Voice::Agent));
        let note = NewComment { internal: true };
        assert_eq!(t.comment(&note, &requester()), Err(Refusal::Needs(Permission::TicketUpdate)));
        let closed = ticket(TicketKind::Incident, Status::Closed);
        assert_eq!(closed.comment(&public, &agent()), Err(Refusal::Closed));
    }

    #[test]
    fn a_catalog_request_opens_medium_and_waits_for_its_approval() {
        let t = NewTicket::catalog_request("Laptop".into(), "".into(), true, &requester()).unwrap();
        assert_eq!(
            (t.kind, t.status, t.requester_id),
            (TicketKind::ServiceRequest, Status::PendingApproval, REQUESTER)
        );
        assert_eq!((t.impact, t.urgency), (Impact::MEDIUM, Urgency::MEDIUM));
        assert_eq!(
            (t.priority, t.priority_reason.as_deref()),
            (Priority::derive(Impact::MEDIUM, Urgency::MEDIUM), None)
        );
        assert_eq!(t.category.as_deref(), Some("service_request"));
        let free = NewTicket::catalog_request("Mouse".into(), "".into(), false, &requester()).unwrap();
        assert_eq!(free.status, Status::New);
        let nobody = Actor::user(REQUESTER, Permissions::default());
        assert_eq!(
            NewTicket::catalog_request("Laptop".into(), "".into(), true, &nobody),
            Err(Refusal::Needs(Permission::TicketCreate))
        );
    }
}
